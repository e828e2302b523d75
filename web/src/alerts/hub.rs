//! Alerts on a hub (`[central]`): the same rules, evaluated over the fleet
//! instead of a local index. `sensor_silent` names a sensor in `component`
//! and measures the seconds since its last contact: its last shipping round
//! in the central index or its last live push through the tunnel, the more
//! recent. The call metrics (`asr`, `mos_below`, `sip_status`) and
//! `capture_loss` sum the central per-minute rollups of the calls that
//! started in the window (by minute), of the sensor named in `component`
//! or of the whole fleet; the rollups hold no addresses, so a scoped rule
//! has no value on a hub, `mos_below` needs one of the histogram's bounds
//! (2, 3, 3.5, 4) and `sip_status` one of the rollups' codes (404, 408,
//! 480, 486, 487, 503). `registration_failures` has no value on a hub.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use voxtap_engine::index::{Counts, DashQuery, MOS_BOUNDS, NOTABLE_CODES};

use super::rules::{Metric, Rule};
use super::{Alerts, Notifier};
use crate::handlers::AppError;
use crate::hub::Hub;

const NS: u64 = 1_000_000_000;

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
        m if (m.over_calls() || m == Metric::CaptureLoss) && rule.prefix().is_none() => {
            let sensor = rule.component.as_deref().filter(|c| !c.is_empty());
            let q = DashQuery {
                from_ns: now.saturating_sub(rule.window_seconds * NS),
                to_ns: now,
                step_minutes: 1440,
                ..Default::default()
            };
            let mut c = Counts::default();
            for b in hub.dashboard(&q, sensor).await? {
                c.add(&b.counts);
            }
            Ok(value_of(rule, &c))
        }
        _ => Ok(None),
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
