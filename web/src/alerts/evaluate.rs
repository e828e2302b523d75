//! The evaluation loop: every `interval_seconds`, read what changed (new
//! calls by row id, the registration failure total, the sensor status),
//! compute each rule's value, and turn state changes into history rows and
//! notifications.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use voxtap_engine::index::{IndexError, RecentCall};

use super::measure::{CallWindow, Counter, Liveness, lost_frames};
use super::rules::{MAX_WINDOW_SECONDS, Metric, Rule};
use super::{Alerts, Event, Notifier, Origin, RuleStatus};
use crate::Db;

const NS: u64 = 1_000_000_000;

/// What the loop remembers between ticks.
#[derive(Default)]
struct Memory {
    calls: CallWindow,
    /// The window the calls are kept for; a longer rule reloads them.
    kept_seconds: u64,
    registration_failures: Counter,
    capture_loss: Counter,
    liveness: Liveness,
}

/// One tick's reading of the index and the status files.
struct Reading {
    upto: i64,
    new_calls: Vec<RecentCall>,
    registration_failures: u64,
    statuses: BTreeMap<String, Value>,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

impl Alerts {
    /// Starts the sinks and the evaluation loop (needs a Tokio runtime).
    pub fn spawn(self: &Arc<Self>, db: Arc<Db>, data: PathBuf) {
        let _ = self.notifier.set(Notifier::start(&self.cfg));
        let me = self.clone();
        let every = Duration::from_secs(self.cfg.interval_seconds.unwrap_or(5).clamp(1, 300));
        tokio::spawn(async move {
            let mut mem = Memory::default();
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let t = Instant::now();
                if let Err(e) = me.tick(&db, &data, &mut mem).await {
                    tracing::warn!(error = %e, "alert evaluation failed");
                }
                me.evaluations.fetch_add(1, Ordering::Relaxed);
                me.last_eval_us
                    .store(t.elapsed().as_micros() as u64, Ordering::Relaxed);
            }
        });
    }

    async fn tick(
        &self,
        db: &Arc<Db>,
        data: &std::path::Path,
        mem: &mut Memory,
    ) -> Result<(), IndexError> {
        let rules = self.rules();
        let now = now_ns();
        let keep = rules
            .iter()
            .filter(|(r, _)| r.metric.over_calls())
            .map(|(r, _)| r.window_seconds)
            .max()
            .unwrap_or(0);
        if keep > mem.kept_seconds {
            // A longer window than the calls kept: read them again.
            mem.calls = CallWindow::default();
            mem.kept_seconds = keep;
        }
        let reading = read(db, data, &rules, mem.calls.last_id, now, mem.kept_seconds).await?;
        mem.calls.add(
            reading.new_calls,
            reading.upto,
            now.saturating_sub(mem.kept_seconds * NS),
        );
        self.calls_kept
            .store(mem.calls.len() as u64, Ordering::Relaxed);
        let counter_keep = MAX_WINDOW_SECONDS.min(
            rules
                .iter()
                .map(|(r, _)| r.window_seconds)
                .max()
                .unwrap_or(0),
        ) * NS;
        mem.registration_failures
            .sample(now, reading.registration_failures, counter_keep);
        if let Some(s) = reading.statuses.get("sensor") {
            mem.capture_loss.sample(now, lost_frames(s), counter_keep);
        }
        let mut events = Vec::new();
        for (rule, _) in &rules {
            let value = value(rule, mem, &reading.statuses, now);
            if let Some(e) = self.apply(rule, value, now) {
                events.push(e);
            }
        }
        events.extend(self.forget_removed(&rules, now));
        self.publish(events).await;
        Ok(())
    }

    /// Records the rule's new value; an event when it changed state.
    pub(super) fn apply(&self, rule: &Rule, value: Option<f64>, now: u64) -> Option<Event> {
        let firing = value.is_some_and(|v| rule.op.holds(v, rule.threshold));
        let mut all = self.status.lock().unwrap_or_else(|p| p.into_inner());
        let s = all.entry(rule.name.clone()).or_default();
        let changed = s.firing != firing;
        *s = RuleStatus {
            value,
            firing,
            since_ns: if changed { now } else { s.since_ns },
            evaluated_ns: now,
        };
        changed.then(|| self.event(rule, firing, value, now, rule.to_string()))
    }

    /// Rules removed (or renamed) since the last tick: a firing one resolves.
    pub(super) fn forget_removed(&self, rules: &[(Rule, Origin)], now: u64) -> Vec<Event> {
        let mut all = self.status.lock().unwrap_or_else(|p| p.into_inner());
        let gone: Vec<String> = all
            .keys()
            .filter(|n| !rules.iter().any(|(r, _)| &r.name == *n))
            .cloned()
            .collect();
        let mut events = Vec::new();
        for name in gone {
            if all.remove(&name).is_some_and(|s| s.firing) {
                events.push(Event {
                    rule: name,
                    state: "resolved",
                    metric: "",
                    op: "",
                    threshold: 0.0,
                    value: None,
                    window_seconds: 0,
                    scope: String::new(),
                    summary: "the rule was removed".into(),
                    at: voxtap_engine::output::format_ts(now),
                    at_unix_ms: now / 1_000_000,
                    host: self.host.clone(),
                });
            }
        }
        events
    }

    fn event(
        &self,
        rule: &Rule,
        firing: bool,
        value: Option<f64>,
        now: u64,
        summary: String,
    ) -> Event {
        Event {
            rule: rule.name.clone(),
            state: if firing { "firing" } else { "resolved" },
            metric: rule.metric.as_str(),
            op: rule.op.as_str(),
            threshold: rule.threshold,
            value,
            window_seconds: rule.window_seconds,
            scope: rule.scope_text(),
            summary,
            at: voxtap_engine::output::format_ts(now),
            at_unix_ms: now / 1_000_000,
            host: self.host.clone(),
        }
    }

    /// History rows first (the page shows what was sent), then the sinks.
    pub(super) async fn publish(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        for e in &events {
            tracing::info!(rule = %e.rule, state = e.state, value = ?e.value, "alert {}", e.state);
            let ts = e.at_unix_ms * 1_000_000;
            if let Err(err) = self.store.record(ts, &e.rule, e.state, e.value, &e.summary) {
                tracing::error!(error = %err, "recording alert history");
            }
        }
        if let Some(n) = self.notifier.get() {
            for e in events {
                n.send(e);
            }
        }
    }
}

fn value(
    rule: &Rule,
    mem: &mut Memory,
    statuses: &BTreeMap<String, Value>,
    now: u64,
) -> Option<f64> {
    let window = rule.window_seconds * NS;
    match rule.metric {
        m if m.over_calls() => mem.calls.value(rule, now),
        Metric::CaptureLoss => mem.capture_loss.increase(now, window),
        Metric::RegistrationFailures => mem.registration_failures.increase(now, window),
        Metric::SensorSilent => {
            let c = rule.component();
            mem.liveness.silent_seconds(c, statuses.get(c), now / NS)
        }
        _ => None,
    }
}

/// The index and status files, off the async threads.
async fn read(
    db: &Arc<Db>,
    data: &std::path::Path,
    rules: &[(Rule, Origin)],
    last_id: Option<i64>,
    now: u64,
    keep_seconds: u64,
) -> Result<Reading, IndexError> {
    let mut components: Vec<String> = rules
        .iter()
        .filter(|(r, _)| r.metric == Metric::SensorSilent)
        .map(|(r, _)| r.component().to_string())
        .collect();
    components.push("sensor".into());
    let data = data.to_path_buf();
    let oldest = now.saturating_sub(keep_seconds * NS);
    db.run(move |idx| {
        let upto = idx.max_call_id()?;
        // Fewer rows than seen: the index was replaced; look afresh.
        let last_id = last_id.filter(|l| *l <= upto);
        let new_calls = match last_id {
            _ if keep_seconds == 0 => Vec::new(),
            Some(after) => idx.calls_added(after, upto, oldest)?,
            // The first look: by start time, calls up to the longest window
            // before the oldest end kept.
            None => {
                idx.calls_ended_since(upto, oldest.saturating_sub(MAX_WINDOW_SECONDS * NS), oldest)?
            }
        };
        let statuses = components
            .into_iter()
            .filter_map(|c| voxtap_sensor::status::read(&data, &c).map(|v| (c, v)))
            .collect();
        Ok(Reading {
            upto,
            new_calls,
            registration_failures: idx.registration_failures_total()?,
            statuses,
        })
    })
    .await
}
