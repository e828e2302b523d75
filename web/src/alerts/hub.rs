//! Alerts on a hub (`[central]`): the same rules, evaluated over the fleet
//! instead of a local index. `sensor_silent` names a sensor in `component`
//! and measures the seconds since its last contact: its last shipping round
//! in the central index or its last live push through the tunnel, the more
//! recent. The call metrics (`asr`, `mos_below`, `sip_status`) and
//! `capture_loss` sum the central rollups of the calls that started in the
//! window (by minute), of the sensor named in `component` or of the whole
//! fleet; the rollups hold no addresses, so `mos_below` needs one of the
//! histogram's bounds (2, 3, 3.5, 4) and `sip_status` one of the rollups'
//! codes (404, 408, 480, 486, 487, 503). A call metric with a peer
//! `scope` (a trunk's IP prefix) counts the calls instead, through the
//! address table `call_ips` (any code, any MOS limit).
//! `registration_failures` sums the failures the sensors' REGISTER
//! bindings gained in the window (central migration 7's
//! `rollup_reg_failures`), of `component` or the fleet.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use voxtap_engine::index::{Counts, DashQuery, MOS_BOUNDS, NOTABLE_CODES};

use super::rules::{Metric, Rule};
use super::{Alerts, Notifier};
use crate::handlers::AppError;
use crate::hub::{Hub, unavailable};

const NS: u64 = 1_000_000_000;
const MINUTE_NS: u64 = 60 * NS;

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// What one tick reads once for every rule: seconds since each sensor's
/// last shipping round and last live push.
struct Contacts {
    shipped: Vec<(String, u64)>,
    pushed: HashMap<String, u64>,
}

impl Alerts {
    /// Starts the sinks and the hub's evaluation loop (needs Tokio).
    pub fn spawn_hub(self: &Arc<Self>, hub: Arc<Hub>) {
        let _ = self.notifier.set(Notifier::start(&self.cfg));
        let me = self.clone();
        let every = Duration::from_secs(self.cfg.interval_seconds.unwrap_or(5).clamp(1, 300));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let t = Instant::now();
                if let Err(e) = me.hub_tick(&hub).await {
                    tracing::warn!(error = %e.message(), "hub alert evaluation failed");
                }
                me.evaluations.fetch_add(1, Ordering::Relaxed);
                me.last_eval_us
                    .store(t.elapsed().as_micros() as u64, Ordering::Relaxed);
            }
        });
    }

    async fn hub_tick(&self, hub: &Hub) -> Result<(), AppError> {
        let rules = self.rules();
        let now = now_ns();
        let contacts = Contacts {
            shipped: hub.contact_ages().await?,
            pushed: hub.live.last_push_ago(),
        };
        let mut events = Vec::new();
        for (rule, _) in &rules {
            let value = hub_value(hub, rule, &contacts, now).await?;
            if let Some(e) = self.apply(rule, value, now) {
                events.push(e);
            }
        }
        events.extend(self.forget_removed(&rules, now));
        self.publish(events).await;
        Ok(())
    }
}

async fn hub_value(
    hub: &Hub,
    rule: &Rule,
    contacts: &Contacts,
    now: u64,
) -> Result<Option<f64>, AppError> {
    match rule.metric {
        Metric::SensorSilent => {
            let name = rule.component();
            let shipped = contacts
                .shipped
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, a)| *a);
            let pushed = contacts.pushed.get(name).copied();
            let latest = match (shipped, pushed) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            Ok(latest.map(|s| s as f64))
        }
        Metric::RegistrationFailures => {
            let (from, to) = window(rule, now);
            let n = hub.registration_failures(from, to, sensor_of(rule)).await?;
            Ok(Some(n as f64))
        }
        m if m.over_calls() && rule.prefix().is_some() => {
            let (from, to) = window(rule, now);
            let scope = rule.scope.as_deref().unwrap_or("").trim();
            let f = hub.scoped_figures(rule, scope, from, to).await?;
            Ok(scoped_value(rule, &f))
        }
        m if m.over_calls() || m == Metric::CaptureLoss => {
            let (from_ns, to_ns) = window(rule, now);
            let q = DashQuery {
                from_ns,
                to_ns,
                step_minutes: 1440,
                ..Default::default()
            };
            let mut c = Counts::default();
            for b in hub.dashboard(&q, sensor_of(rule)).await? {
                c.add(&b.counts);
            }
            Ok(value_of(rule, &c))
        }
        _ => Ok(None),
    }
}

/// The sensor a rule is limited to (`component`); None: the fleet.
fn sensor_of(rule: &Rule) -> Option<&str> {
    rule.component.as_deref().filter(|c| !c.is_empty())
}

/// The rule's window ending now, widened to whole minutes as the rollups
/// are kept (the same calls whether counted from rollups or calls).
fn window(rule: &Rule, now: u64) -> (u64, u64) {
    let from = now.saturating_sub(rule.window_seconds * NS);
    (
        from / MINUTE_NS * MINUTE_NS,
        now.div_ceil(MINUTE_NS) * MINUTE_NS,
    )
}

/// The INVITE calls of a peer scope in a window: all, answered, ended
/// with the rule's code, with a MOS, with a MOS below the rule's limit.
#[derive(Debug, Default, PartialEq)]
struct Scoped {
    calls: i64,
    answered: i64,
    with_code: i64,
    with_mos: i64,
    mos_below: i64,
}

fn scoped_value(rule: &Rule, f: &Scoped) -> Option<f64> {
    let min = rule.min_calls() as i64;
    let ratio = |n: i64, of: i64| (of >= min).then(|| 100.0 * n as f64 / of as f64);
    match rule.metric {
        Metric::Asr => ratio(f.answered, f.calls),
        Metric::MosBelow => ratio(f.mos_below, f.with_mos),
        Metric::SipStatus => Some(f.with_code as f64),
        _ => None,
    }
}

fn time(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

impl Hub {
    /// [`Scoped`] figures of the calls that started in [from_ns, to_ns)
    /// with an address in `prefix` (of the rule's sensor): the address
    /// table's index finds them by prefix and time.
    async fn scoped_figures(
        &self,
        rule: &Rule,
        prefix: &str,
        from_ns: u64,
        to_ns: u64,
    ) -> Result<Scoped, AppError> {
        let c = self.client().await?;
        let code = rule.code.map(i32::from);
        let r = c
            .query_one(
                "SELECT count(*)::int8, count(*) FILTER (WHERE c.answer_at IS NOT NULL)::int8, \
                   count(*) FILTER (WHERE c.status_code = $4::int4)::int8, count(c.mos)::int8, \
                   count(*) FILTER (WHERE c.mos < $5::float8)::int8 \
                 FROM voxtap.calls c \
                 WHERE c.start_at >= $1 AND c.start_at < $2 AND c.method = 'INVITE' \
                   AND ($6::text IS NULL OR c.sensor = (SELECT id FROM voxtap.sensors WHERE name = $6)) \
                   AND (c.start_at, c.id) IN (SELECT i.call_start, i.id FROM voxtap.call_ips i \
                        WHERE i.ip <<= $3::text::inet AND i.call_start >= $1 AND i.call_start < $2)",
                &[
                    &time(from_ns),
                    &time(to_ns),
                    &prefix,
                    &code,
                    &rule.mos,
                    &sensor_of(rule),
                ],
            )
            .await
            .map_err(unavailable)?;
        Ok(Scoped {
            calls: r.get(0),
            answered: r.get(1),
            with_code: r.get(2),
            with_mos: r.get(3),
            mos_below: r.get(4),
        })
    }

    /// REGISTER failures the bindings gained in [from_ns, to_ns) (of
    /// `sensor`), from central migration 7's per-minute counts.
    async fn registration_failures(
        &self,
        from_ns: u64,
        to_ns: u64,
        sensor: Option<&str>,
    ) -> Result<i64, AppError> {
        let c = self.client().await?;
        let r = c
            .query_one(
                "SELECT coalesce(sum(failures), 0)::int8 FROM voxtap.rollup_reg_failures \
                 WHERE minute >= $1 AND minute < $2 \
                   AND ($3::text IS NULL OR sensor = (SELECT id FROM voxtap.sensors WHERE name = $3))",
                &[&time(from_ns), &time(to_ns), &sensor],
            )
            .await
            .map_err(unavailable)?;
        Ok(r.get(0))
    }
}

/// A call metric's value from rollup sums; None when it has none.
fn value_of(rule: &Rule, c: &Counts) -> Option<f64> {
    let min = rule.min_calls() as i64;
    let ratio = |n: i64, of: i64| (of >= min).then(|| 100.0 * n as f64 / of as f64);
    match rule.metric {
        Metric::Asr => ratio(c.answered, c.attempts),
        Metric::MosBelow => {
            let limit = rule.mos?;
            let k = MOS_BOUNDS.iter().position(|b| (b - limit).abs() < 1e-9)?;
            // Histogram bucket 1 is below the first bound, k + 1 below bound k.
            let low: i64 = c.mos[1..=k + 1].iter().sum();
            ratio(low, c.mos[1..].iter().sum())
        }
        Metric::SipStatus => {
            let k = NOTABLE_CODES.iter().position(|n| Some(*n) == rule.code)?;
            Some(c.codes[k] as f64)
        }
        Metric::CaptureLoss => Some(c.capture_loss as f64),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::rules::Op;

    fn rule(metric: Metric) -> Rule {
        Rule {
            name: "r".into(),
            metric,
            op: Op::Gt,
            threshold: 0.0,
            window_seconds: 60,
            scope: None,
            code: None,
            mos: None,
            min_calls: None,
            component: None,
        }
    }

    #[test]
    fn rollup_values() {
        let c = Counts {
            attempts: 10,
            answered: 4,
            codes: [0, 0, 0, 0, 0, 6],
            mos: [6, 1, 1, 0, 1, 1],
            ..Default::default()
        };
        assert_eq!(value_of(&rule(Metric::Asr), &c), Some(40.0));
        let mut r = rule(Metric::SipStatus);
        r.code = Some(503);
        assert_eq!(value_of(&r, &c), Some(6.0));
        r.code = Some(500);
        assert_eq!(value_of(&r, &c), None, "not a rolled-up code");
        let mut r = rule(Metric::MosBelow);
        r.mos = Some(3.5);
        // 2 of the 4 calls with a MOS are below 3.5.
        assert_eq!(value_of(&r, &c), Some(50.0));
        r.mos = Some(3.7);
        assert_eq!(value_of(&r, &c), None, "not a histogram bound");
        assert_eq!(value_of(&rule(Metric::Asr), &Counts::default()), None);
    }
}
