//! Alerts: rules from the config (`[[alerts]]`) and from the admins (the
//! Alerts admin page, kept in `alerts.sqlite`), evaluated every few seconds
//! in the web server over the call index and the sensor's status file; each
//! change between firing and resolved is recorded in the history, sent to
//! the configured sinks (`notify`) and shown in `/metrics`.
//!
//! On a hub the same rules run over the fleet (`hub`: silent sensors, the
//! central rollups).
//!
//! Semantics, without hysteresis: a rule fires when its value over its
//! window satisfies `op threshold`, and resolves at the first evaluation
//! where it does not (or has no value: no calls in the window).

mod evaluate;
mod hub;
mod measure;
pub mod notify;
pub mod rules;
mod smtp;
pub mod store;
mod tls;
pub mod views;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, RwLock};

use serde::Serialize;

pub use notify::{AlertingConfig, Event, Notifier, Secret, SmtpTls};
pub use rules::Rule;
use store::Store;

/// Where a rule comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Config,
    /// Added or changed by an admin in the UI.
    Web,
}

/// A rule's latest evaluation.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RuleStatus {
    pub value: Option<f64>,
    pub firing: bool,
    /// When it last changed state (0: never).
    pub since_ns: u64,
    pub evaluated_ns: u64,
}

pub struct Alerts {
    config_rules: Vec<Rule>,
    rules: RwLock<Vec<(Rule, Origin)>>,
    status: Mutex<BTreeMap<String, RuleStatus>>,
    pub store: Store,
    cfg: AlertingConfig,
    notifier: OnceLock<Notifier>,
    host: String,
    evaluations: AtomicU64,
    last_eval_us: AtomicU64,
    /// Calls in the evaluator's memory (those of the longest window).
    calls_kept: AtomicU64,
}

impl Alerts {
    pub fn open(
        data: &std::path::Path,
        rules: &[Rule],
        cfg: &AlertingConfig,
    ) -> rusqlite::Result<Alerts> {
        let a = Alerts {
            config_rules: rules.to_vec(),
            rules: RwLock::new(Vec::new()),
            status: Mutex::new(BTreeMap::new()),
            store: Store::open(data)?,
            cfg: cfg.clone(),
            notifier: OnceLock::new(),
            host: hostname(),
            evaluations: AtomicU64::new(0),
            last_eval_us: AtomicU64::new(0),
            calls_kept: AtomicU64::new(0),
        };
        a.reload()?;
        Ok(a)
    }

    /// Rebuilds the rule list: the config's, with the admins' changes.
    pub fn reload(&self) -> rusqlite::Result<()> {
        let mut list: Vec<(Rule, Origin)> = self
            .config_rules
            .iter()
            .map(|r| (r.clone(), Origin::Config))
            .collect();
        for (name, rule) in self.store.overrides()? {
            list.retain(|(r, _)| r.name != name);
            if let Some(r) = rule.filter(|r| r.check().is_ok()) {
                list.push((r, Origin::Web));
            }
        }
        list.sort_by(|a, b| a.0.name.cmp(&b.0.name));
        *self.rules.write().unwrap_or_else(|p| p.into_inner()) = list;
        Ok(())
    }

    pub fn rules(&self) -> Vec<(Rule, Origin)> {
        self.rules.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether `name` is one of the config's rules.
    pub fn in_config(&self, name: &str) -> bool {
        self.config_rules.iter().any(|r| r.name == name)
    }

    pub fn status(&self) -> BTreeMap<String, RuleStatus> {
        self.status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Prometheus text: each rule's state and value, the sinks' counters.
    pub fn exposition(&self) -> String {
        let status = self.status();
        let rules = self.rules();
        let mut o = String::new();
        let l = |s: &str| {
            s.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n")
        };
        o.push_str("# HELP voxtap_alert_firing Whether each alert rule fires (1) or not (0).\n# TYPE voxtap_alert_firing gauge\n");
        for (r, _) in &rules {
            let firing = status.get(&r.name).is_some_and(|s| s.firing);
            let _ = writeln!(
                o,
                "voxtap_alert_firing{{rule=\"{}\",metric=\"{}\"}} {}",
                l(&r.name),
                r.metric.as_str(),
                u8::from(firing)
            );
        }
        o.push_str("# HELP voxtap_alert_value The value each rule had at its last evaluation (absent when it has none).\n# TYPE voxtap_alert_value gauge\n");
        for (r, _) in &rules {
            if let Some(v) = status.get(&r.name).and_then(|s| s.value) {
                let _ = writeln!(
                    o,
                    "voxtap_alert_value{{rule=\"{}\",metric=\"{}\"}} {v}",
                    l(&r.name),
                    r.metric.as_str()
                );
            }
        }
        o.push_str("# HELP voxtap_alert_threshold Each rule's threshold.\n# TYPE voxtap_alert_threshold gauge\n");
        for (r, _) in &rules {
            let _ = writeln!(
                o,
                "voxtap_alert_threshold{{rule=\"{}\",metric=\"{}\"}} {}",
                l(&r.name),
                r.metric.as_str(),
                r.threshold
            );
        }
        self.sink_exposition(&mut o);
        o
    }

    fn sink_exposition(&self, o: &mut String) {
        let _ = write!(
            o,
            "# HELP voxtap_alert_evaluations_total Evaluations of the alert rules.\n# TYPE voxtap_alert_evaluations_total counter\nvoxtap_alert_evaluations_total {}\n\
             # HELP voxtap_alert_evaluation_seconds How long the last evaluation took.\n# TYPE voxtap_alert_evaluation_seconds gauge\nvoxtap_alert_evaluation_seconds {}\n\
             # HELP voxtap_alert_calls_kept Calls the evaluator keeps in memory (those that ended in the longest window).\n# TYPE voxtap_alert_calls_kept gauge\nvoxtap_alert_calls_kept {}\n",
            self.evaluations.load(Ordering::Relaxed),
            self.last_eval_us.load(Ordering::Relaxed) as f64 / 1e6,
            self.calls_kept.load(Ordering::Relaxed)
        );
        let Some(n) = self.notifier.get() else { return };
        o.push_str("# HELP voxtap_alert_notifications_total Alert notifications by sink and outcome (dropped: the sink's queue was full).\n# TYPE voxtap_alert_notifications_total counter\n");
        for (sink, c) in n.counters() {
            for (outcome, v) in [
                ("sent", &c.sent),
                ("failed", &c.failed),
                ("dropped", &c.dropped),
                ("retried", &c.retries),
            ] {
                let _ = writeln!(
                    o,
                    "voxtap_alert_notifications_total{{sink=\"{sink}\",outcome=\"{outcome}\"}} {}",
                    v.load(Ordering::Relaxed)
                );
            }
        }
    }
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `len` bytes into the buffer we own.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if r != 0 {
        return String::new();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end])
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .collect()
}
