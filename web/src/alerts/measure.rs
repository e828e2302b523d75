//! The figures rules compare: the calls that ended in the longest window
//! (kept in memory and topped up by row id each tick), counters sampled each
//! tick and differenced over a window, and the sensor's signs of life.

use std::collections::{HashMap, VecDeque};

use serde_json::Value;
use voxtap_engine::index::RecentCall;

use super::rules::{Metric, Rule};

const NS: u64 = 1_000_000_000;

/// The calls that ended in the last `keep_ns`, in row order.
#[derive(Default)]
pub struct CallWindow {
    /// The highest row id read; None before the first look.
    pub last_id: Option<i64>,
    calls: Vec<RecentCall>,
}

impl CallWindow {
    /// Adds newly read calls and forgets those that ended before `oldest_ns`.
    pub fn add(&mut self, new: Vec<RecentCall>, upto: i64, oldest_ns: u64) {
        self.calls.extend(new);
        self.calls.retain(|c| c.end_ns >= oldest_ns);
        self.last_id = Some(upto);
    }

    pub fn len(&self) -> usize {
        self.calls.len()
    }

    /// The rule's value over the calls it covers; None when too few.
    pub fn value(&self, rule: &Rule, now_ns: u64) -> Option<f64> {
        let since = now_ns.saturating_sub(rule.window_seconds * NS);
        let prefix = rule.prefix();
        let calls = self
            .calls
            .iter()
            .filter(|c| c.end_ns >= since && c.end_ns <= now_ns)
            .filter(|c| prefix.is_none_or(|p| c.ips.iter().any(|ip| p.contains(ip))));
        let ratio =
            |n: usize, of: usize| (of >= rule.min_calls()).then(|| 100.0 * n as f64 / of as f64);
        match rule.metric {
            Metric::Asr => {
                let (mut answered, mut all) = (0, 0);
                for c in calls.filter(|c| c.method == "INVITE") {
                    all += 1;
                    answered += usize::from(c.state == "answered");
                }
                ratio(answered, all)
            }
            Metric::MosBelow => {
                let limit = rule.mos.unwrap_or(0.0);
                let (mut low, mut all) = (0, 0);
                for m in calls.filter_map(|c| c.mos) {
                    all += 1;
                    low += usize::from(m < limit);
                }
                ratio(low, all)
            }
            Metric::SipStatus => {
                let n = calls.filter(|c| c.status_code == rule.code).count();
                Some(n as f64)
            }
            _ => None,
        }
    }
}

/// A counter sampled each tick: its increase over a window, resets (a
/// counter that went down: a restarted sensor, a rebuilt index) counted
/// from zero.
#[derive(Default)]
pub struct Counter {
    samples: VecDeque<(u64, u64)>,
}

impl Counter {
    pub fn sample(&mut self, now_ns: u64, v: u64, keep_ns: u64) {
        self.samples.push_back((now_ns, v));
        // Keep one sample older than the window as the baseline.
        while self.samples.len() > 2 && self.samples[1].0 + keep_ns < now_ns {
            self.samples.pop_front();
        }
    }

    /// The increase over the last `window_ns`; None before two samples.
    pub fn increase(&self, now_ns: u64, window_ns: u64) -> Option<f64> {
        let since = now_ns.saturating_sub(window_ns);
        let start = self
            .samples
            .iter()
            .rposition(|(t, _)| *t <= since)
            .unwrap_or(0);
        let pts: Vec<u64> = self.samples.iter().skip(start).map(|(_, v)| *v).collect();
        if pts.len() < 2 {
            return None;
        }
        let up: u64 = pts
            .windows(2)
            .map(|w| if w[1] >= w[0] { w[1] - w[0] } else { w[1] })
            .sum();
        Some(up as f64)
    }
}

/// When each status file's writer last showed life: its `updated_unix`, and
/// when its `frames_total` last grew (seen by this evaluator).
#[derive(Default)]
pub struct Liveness {
    frames: HashMap<String, (u64, u64)>,
}

impl Liveness {
    /// Seconds `component` has been silent; None without its status file.
    pub fn silent_seconds(
        &mut self,
        component: &str,
        status: Option<&Value>,
        now_unix: u64,
    ) -> Option<f64> {
        let v = status?;
        let updated = v.get("updated_unix").and_then(Value::as_u64).unwrap_or(0);
        let mut last_sign = updated;
        if let Some(f) = v.get("frames_total").and_then(Value::as_u64) {
            let e = self
                .frames
                .entry(component.to_string())
                .or_insert((f, updated.min(now_unix)));
            if f != e.0 {
                *e = (f, now_unix);
            }
            last_sign = last_sign.min(e.1);
        }
        Some(now_unix.saturating_sub(last_sign) as f64)
    }
}

/// The frames lost according to a sensor status: ring overruns, malformed
/// frames and gaps in captured streams.
pub fn lost_frames(status: &Value) -> u64 {
    let n = |k: &str| status.get(k).and_then(Value::as_u64).unwrap_or(0);
    n("capture_loss") + n("dropped_total")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(toml_text: &str) -> Rule {
        toml::from_str(toml_text).unwrap()
    }

    fn call(id: i64, end_s: u64, state: &str, code: u16, ip: &str) -> RecentCall {
        RecentCall {
            id,
            method: "INVITE".into(),
            state: state.into(),
            status_code: Some(code),
            mos: (state == "answered").then_some(4.1),
            end_ns: end_s * NS,
            ips: vec![ip.parse().unwrap()],
        }
    }

    #[test]
    fn call_metrics_cover_their_window_and_scope() {
        let mut w = CallWindow::default();
        w.add(
            vec![
                call(1, 100, "failed", 503, "10.1.0.1"),
                call(2, 150, "failed", 503, "10.2.0.1"),
                call(3, 160, "answered", 200, "10.1.0.2"),
                call(4, 10, "answered", 200, "10.1.0.2"),
            ],
            4,
            50 * NS,
        );
        assert_eq!(w.len(), 3, "the call that ended before the window is gone");
        let asr = rule("name='a'\nmetric='asr'\nop='<'\nthreshold=40\nwindow_seconds=100");
        let v = w.value(&asr, 170 * NS).unwrap();
        assert!((v - 100.0 / 3.0).abs() < 1e-9);
        let scoped = Rule {
            scope: Some("10.1.0.0/16".into()),
            ..asr.clone()
        };
        assert_eq!(w.value(&scoped, 170 * NS), Some(50.0));
        let short = Rule {
            window_seconds: 15,
            ..asr.clone()
        };
        assert_eq!(w.value(&short, 170 * NS), Some(100.0));
        let few = Rule {
            min_calls: Some(4),
            ..asr
        };
        assert_eq!(w.value(&few, 170 * NS), None);
        let s503 = rule(
            "name='b'\nmetric='sip_status'\ncode=503\nop='>'\nthreshold=1\nwindow_seconds=100",
        );
        assert_eq!(w.value(&s503, 170 * NS), Some(2.0));
        let mos =
            rule("name='c'\nmetric='mos_below'\nmos=4.2\nop='>'\nthreshold=10\nwindow_seconds=100");
        assert_eq!(w.value(&mos, 170 * NS), Some(100.0));
    }

    #[test]
    fn counters_increase_over_the_window_and_survive_resets() {
        let mut c = Counter::default();
        assert_eq!(c.increase(0, 10 * NS), None);
        for (t, v) in [(0, 5), (5, 5), (10, 8), (15, 2), (20, 4)] {
            c.sample(t * NS, v, 100 * NS);
        }
        // From t=10 (8) on: reset to 2 counts 2, then +2.
        assert_eq!(c.increase(20 * NS, 10 * NS), Some(4.0));
        assert_eq!(c.increase(20 * NS, 100 * NS), Some(7.0));
    }

    #[test]
    fn a_sensor_is_silent_without_updates_or_new_frames() {
        let mut l = Liveness::default();
        assert_eq!(l.silent_seconds("sensor", None, 100), None);
        let v = serde_json::json!({"updated_unix": 90, "frames_total": 7});
        assert_eq!(l.silent_seconds("sensor", Some(&v), 100), Some(10.0));
        // Fresh status, same frame count: silent since the first look.
        let v = serde_json::json!({"updated_unix": 200, "frames_total": 7});
        assert_eq!(l.silent_seconds("sensor", Some(&v), 200), Some(110.0));
        let v = serde_json::json!({"updated_unix": 201, "frames_total": 9});
        assert_eq!(l.silent_seconds("sensor", Some(&v), 201), Some(0.0));
    }
}
