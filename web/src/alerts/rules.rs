//! Alert rules: what is measured (`Metric`), over which calls (`scope`, a
//! peer IP prefix), compared how (`op`, `threshold`) over which window. The
//! same struct is a `[[alerts]]` table of the web config and a row the
//! admins edit in the UI (stored as JSON in `alerts.sqlite`).

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Longest window: the evaluator keeps the calls of the longest window in
/// memory and reads at most this far back at start-up.
pub const MAX_WINDOW_SECONDS: u64 = 6 * 3600;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Answer-seizure ratio, percent: answered INVITEs of those that ended
    /// in the window.
    Asr,
    /// Percent of the calls with a MOS that ended in the window whose MOS
    /// is below `mos`.
    MosBelow,
    /// Calls that ended in the window with final response `code`.
    SipStatus,
    /// Frames the sensor lost (`capture_loss` + `dropped_total` of its
    /// status file) during the window.
    CaptureLoss,
    /// Seconds since the sensor last wrote its status file or last saw a
    /// new frame, whichever is longer ago.
    SensorSilent,
    /// REGISTER transactions refused or unanswered during the window.
    RegistrationFailures,
}

impl Metric {
    pub const ALL: [Metric; 6] = [
        Metric::Asr,
        Metric::MosBelow,
        Metric::SipStatus,
        Metric::CaptureLoss,
        Metric::SensorSilent,
        Metric::RegistrationFailures,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Asr => "asr",
            Metric::MosBelow => "mos_below",
            Metric::SipStatus => "sip_status",
            Metric::CaptureLoss => "capture_loss",
            Metric::SensorSilent => "sensor_silent",
            Metric::RegistrationFailures => "registration_failures",
        }
    }

    pub fn parse(s: &str) -> Option<Metric> {
        Metric::ALL.into_iter().find(|m| m.as_str() == s)
    }

    /// Whether the metric is computed from the calls of the index (and so
    /// takes a scope).
    pub fn over_calls(self) -> bool {
        matches!(self, Metric::Asr | Metric::MosBelow | Metric::SipStatus)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub enum Op {
    #[serde(rename = "<")]
    Lt,
    #[serde(rename = "<=")]
    Le,
    #[serde(rename = ">")]
    Gt,
    #[serde(rename = ">=")]
    Ge,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
        }
    }

    pub fn parse(s: &str) -> Option<Op> {
        [Op::Lt, Op::Le, Op::Gt, Op::Ge]
            .into_iter()
            .find(|o| o.as_str() == s.trim())
    }

    pub fn holds(self, value: f64, threshold: f64) -> bool {
        match self {
            Op::Lt => value < threshold,
            Op::Le => value <= threshold,
            Op::Gt => value > threshold,
            Op::Ge => value >= threshold,
        }
    }
}

fn default_window() -> u64 {
    300
}

/// One `[[alerts]]` rule.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Unique; names the rule in notifications and in `/metrics`.
    pub name: String,
    pub metric: Metric,
    pub op: Op,
    pub threshold: f64,
    /// Seconds of history the metric covers (default 300).
    #[serde(default = "default_window")]
    pub window_seconds: u64,
    /// Call metrics: only calls with an IP in this prefix (`10.1.0.0/16`,
    /// `2001:db8::/32`, or one address); none = all calls.
    pub scope: Option<String>,
    /// `sip_status`: the final response code counted.
    pub code: Option<u16>,
    /// `mos_below`: the MOS a call must be under to count.
    pub mos: Option<f64>,
    /// `asr`, `mos_below`: fewer calls in the window than this give no
    /// value (the rule cannot fire on two calls). Default 1.
    pub min_calls: Option<u32>,
    /// `sensor_silent`: the status file watched (default `sensor`).
    pub component: Option<String>,
}

/// An IP prefix: `10.1.0.0/16`, or one address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefix {
    net: IpAddr,
    len: u8,
}

impl Prefix {
    pub fn parse(s: &str) -> Option<Prefix> {
        let (ip, len) = match s.trim().split_once('/') {
            Some((ip, len)) => (ip.parse::<IpAddr>().ok()?, Some(len.parse::<u8>().ok()?)),
            None => (s.trim().parse::<IpAddr>().ok()?, None),
        };
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let len = len.unwrap_or(max);
        (len <= max).then_some(Prefix { net: ip, len })
    }

    pub fn contains(&self, ip: &IpAddr) -> bool {
        fn bits(ip: &IpAddr) -> (u128, u8) {
            match ip {
                IpAddr::V4(a) => (u128::from(u32::from(*a)) << 96, 32),
                IpAddr::V6(a) => (u128::from(*a), 128),
            }
        }
        let ((net, w1), (addr, w2)) = (bits(&self.net), bits(ip));
        if w1 != w2 {
            return false;
        }
        let mask = u128::MAX
            .checked_shl(128 - u32::from(self.len))
            .unwrap_or(0);
        net & mask == addr & mask
    }
}

impl Rule {
    /// The parsed scope (validated by [`Rule::check`]).
    pub fn prefix(&self) -> Option<Prefix> {
        self.scope
            .as_deref()
            .filter(|s| !s.trim().is_empty() && s.trim() != "all")
            .and_then(Prefix::parse)
    }

    pub fn min_calls(&self) -> usize {
        self.min_calls.unwrap_or(1).max(1) as usize
    }

    pub fn component(&self) -> &str {
        self.component.as_deref().unwrap_or("sensor")
    }

    /// Everything a rule must satisfy, as a sentence for the config error
    /// or the admin's form.
    pub fn check(&self) -> Result<(), String> {
        let n = &self.name;
        if n.is_empty()
            || n.len() > 64
            || !n
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(format!(
                "alert name {n:?}: 1 to 64 letters, digits, '-', '_' or '.'"
            ));
        }
        if !self.threshold.is_finite() {
            return Err(format!("alert {n}: threshold must be a number"));
        }
        if !(1..=MAX_WINDOW_SECONDS).contains(&self.window_seconds) {
            return Err(format!(
                "alert {n}: window_seconds must be 1 to {MAX_WINDOW_SECONDS}"
            ));
        }
        if let Some(s) = self.scope.as_deref().map(str::trim)
            && !s.is_empty()
            && s != "all"
            && Prefix::parse(s).is_none()
        {
            return Err(format!(
                "alert {n}: scope {s:?} is not an IP prefix (10.1.0.0/16) or \"all\""
            ));
        }
        self.check_metric_fields()
    }

    fn check_metric_fields(&self) -> Result<(), String> {
        let n = &self.name;
        match self.metric {
            Metric::SipStatus if !self.code.is_some_and(|c| (100..=699).contains(&c)) => Err(
                format!("alert {n}: sip_status needs code = a SIP response code (100 to 699)"),
            ),
            Metric::MosBelow if !self.mos.is_some_and(|m| (1.0..=5.0).contains(&m)) => Err(
                format!("alert {n}: mos_below needs mos = the MOS limit (1 to 5)"),
            ),
            m if !m.over_calls() && self.prefix().is_some() => Err(format!(
                "alert {n}: {} is not a call metric and takes no scope",
                m.as_str()
            )),
            _ => Ok(()),
        }
    }

    /// What the value measures, for people.
    fn what(&self) -> String {
        match self.metric {
            Metric::Asr => "ASR %".into(),
            Metric::MosBelow => format!("% of calls with MOS < {}", self.mos.unwrap_or(0.0)),
            Metric::SipStatus => format!("calls ended with SIP {}", self.code.unwrap_or(0)),
            Metric::CaptureLoss => "frames lost by the capture".into(),
            Metric::SensorSilent => format!("seconds {} silent", self.component()),
            Metric::RegistrationFailures => "registration failures".into(),
        }
    }

    /// The scope, for people.
    pub fn scope_text(&self) -> String {
        match self.prefix() {
            Some(_) => format!("peers {}", self.scope.as_deref().unwrap_or("").trim()),
            None if self.metric.over_calls() => "all calls".into(),
            None => "sensor".into(),
        }
    }
}

/// `ASR % < 40 over 300 s (all calls)`.
impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.what(), self.op.as_str(), self.threshold)?;
        if self.metric != Metric::SensorSilent {
            write!(f, " over {} s", self.window_seconds)?;
        }
        write!(f, " ({})", self.scope_text())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_match_their_addresses_only() {
        let p = Prefix::parse("10.1.0.0/16").unwrap();
        assert!(p.contains(&"10.1.255.3".parse().unwrap()));
        assert!(!p.contains(&"10.2.0.1".parse().unwrap()));
        assert!(!p.contains(&"::ffff:10.1.0.1".parse().unwrap()));
        let one = Prefix::parse("192.0.2.7").unwrap();
        assert!(one.contains(&"192.0.2.7".parse().unwrap()));
        assert!(!one.contains(&"192.0.2.8".parse().unwrap()));
        let v6 = Prefix::parse("2001:db8::/32").unwrap();
        assert!(v6.contains(&"2001:db8:1::5".parse().unwrap()));
        assert!(
            Prefix::parse("0.0.0.0/0")
                .unwrap()
                .contains(&"8.8.8.8".parse().unwrap())
        );
        assert!(Prefix::parse("10.0.0.0/33").is_none());
        assert!(Prefix::parse("nope").is_none());
    }

    #[test]
    fn rules_are_checked_and_described() {
        let r: Rule = toml::from_str(
            "name = \"trunk-503\"\nmetric = \"sip_status\"\ncode = 503\nop = \">\"\nthreshold = 50\nwindow_seconds = 60\nscope = \"10.1.0.0/16\"",
        )
        .unwrap();
        r.check().unwrap();
        assert_eq!(
            r.to_string(),
            "calls ended with SIP 503 > 50 over 60 s (peers 10.1.0.0/16)"
        );
        let mut bad = r.clone();
        bad.code = None;
        assert!(bad.check().unwrap_err().contains("code"));
        bad = r.clone();
        bad.scope = Some("10.1/16".into());
        assert!(bad.check().unwrap_err().contains("scope"));
        bad = r.clone();
        bad.metric = Metric::SensorSilent;
        assert!(bad.check().unwrap_err().contains("no scope"));
        bad = r;
        bad.name = "a b".into();
        assert!(bad.check().is_err());
        assert!(Op::Lt.holds(39.9, 40.0) && !Op::Lt.holds(40.0, 40.0));
        assert!(Op::Ge.holds(40.0, 40.0));
    }
}
