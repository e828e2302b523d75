//! tshark, the independent reference the tests check voxtap against: frame
//! lists and counts, SIP Call-IDs, SDP endpoints, RTP streams, and the one
//! definition of "the frames of a call" (its SIP by Call-ID, and UDP between
//! two endpoints its SDP announced).

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::process::Command;

thread_local! {
    /// `-d` (decode as) rules every tshark run of this thread adds.
    static DECODE_AS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with tshark told to decode as `rules` (`-d` arguments, e.g.
/// `mpls.label==201,pwethnocw`) in every helper it calls: for traffic
/// tshark cannot recognise on its own, as in Wireshark's "Decode As".
/// Thread-local, so tests running in parallel do not see each other's.
pub fn with_decode_as<T>(rules: &[&str], f: impl FnOnce() -> T) -> T {
    DECODE_AS.with(|d| *d.borrow_mut() = rules.iter().map(|r| r.to_string()).collect());
    let r = f();
    DECODE_AS.with(|d| d.borrow_mut().clear());
    r
}

fn tshark_command(args: &[&str]) -> Command {
    let mut c = Command::new("tshark");
    DECODE_AS.with(|d| {
        for rule in d.borrow().iter() {
            c.args(["-d", rule]);
        }
    });
    c.args(args);
    c
}

/// Runs tshark and returns its stdout; panics with its stderr on failure.
pub fn tshark(args: &[&str]) -> String {
    let out = tshark_command(args)
        .output()
        .expect("tshark must be installed (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "tshark {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs tshark on a capture that is damaged on purpose: tshark prints what
/// it could read and exits non-zero; returns that output.
pub fn tshark_lenient(args: &[&str]) -> String {
    let out = tshark_command(args)
        .output()
        .expect("tshark must be installed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The number of frames of `file` (matching the display filter, if any).
pub fn count(file: &Path, filter: Option<&str>) -> usize {
    let mut a = vec![
        "-r",
        file.to_str().unwrap(),
        "-T",
        "fields",
        "-e",
        "frame.number",
    ];
    if let Some(f) = filter {
        a.extend(["-Y", f]);
    }
    tshark(&a).lines().count()
}

/// Every frame of a capture as (epoch time, frame length), in order, for
/// comparing a cut-out call against the original.
pub fn tshark_frames(file: &Path, filter: Option<&str>) -> Vec<(String, u32)> {
    let mut args = vec![
        "-r",
        file.to_str().unwrap(),
        "-T",
        "fields",
        "-e",
        "frame.time_epoch",
        "-e",
        "frame.len",
    ];
    if let Some(f) = filter {
        args.extend(["-Y", f]);
    }
    tshark(&args)
        .lines()
        .filter_map(|l| {
            let (t, n) = l.split_once('\t')?;
            Some((t.to_string(), n.trim().parse().ok()?))
        })
        .collect()
}

/// Each frame as a line of header fields that do not depend on when or
/// where it was captured, sorted: a multiset to compare two captures of the
/// same traffic.
pub fn frame_keys(file: &Path, filter: Option<&str>) -> Vec<String> {
    let mut a = vec![
        "-r",
        file.to_str().unwrap(),
        "-o",
        "rtp.heuristic_rtp:TRUE",
        "-T",
        "fields",
        "-e",
        "ip.src",
        "-e",
        "udp.srcport",
        "-e",
        "ip.dst",
        "-e",
        "udp.dstport",
        "-e",
        "frame.len",
        "-e",
        "ip.id",
        "-e",
        "rtp.ssrc",
        "-e",
        "rtp.seq",
        "-e",
        "sip.CSeq",
    ];
    if let Some(f) = filter {
        a.extend(["-Y", f]);
    }
    let mut v: Vec<String> = tshark(&a).lines().map(str::to_string).collect();
    v.sort();
    v
}

/// Media endpoints of each Call-ID from tshark's own SDP dissection: every
/// announced (address, port) and its port + 1 (RTCP).
pub fn sdp_endpoints(file: &Path) -> HashMap<String, BTreeSet<(String, u16)>> {
    let out = tshark(&[
        "-r",
        file.to_str().unwrap(),
        "-Y",
        "sdp",
        "-T",
        "fields",
        "-E",
        "separator=|",
        "-e",
        "sip.Call-ID",
        "-e",
        "sdp.connection_info.address",
        "-e",
        "sdp.media.port",
    ]);
    let mut m: HashMap<String, BTreeSet<(String, u16)>> = HashMap::new();
    for line in out.lines() {
        let f: Vec<&str> = line.split('|').collect();
        if f.len() < 3 {
            continue;
        }
        let addr = f[1]
            .split(',')
            .next()
            .unwrap_or("")
            .trim_matches(['[', ']'])
            .to_string();
        for port in f[2].split(',').filter_map(|p| p.parse::<u16>().ok()) {
            if port != 0 {
                let eps = m.entry(f[0].to_string()).or_default();
                eps.insert((addr.clone(), port));
                eps.insert((addr.clone(), port + 1));
            }
        }
    }
    m
}

/// The display filter for the frames of one call: its SIP by Call-ID, and
/// UDP (not ICMP quoting it) from one of `eps` to one of `eps`.
pub fn call_filter(cid: &str, eps: &BTreeSet<(String, u16)>) -> String {
    let side = |dir: &str| {
        eps.iter()
            .map(|(a, p)| {
                let ipf = if a.contains(':') { "ipv6" } else { "ip" };
                format!("({ipf}.{dir}=={a} && udp.{dir}port=={p})")
            })
            .collect::<Vec<_>>()
            .join(" || ")
    };
    format!(
        "sip.Call-ID == \"{cid}\" || (udp && !sip && !icmp && !icmpv6 && ({}) && ({}))",
        side("src"),
        side("dst")
    )
}

/// The frames tshark attributes to a call in `file` (`call_filter` with the
/// endpoints its SDP announced), as (epoch time, length).
pub fn tshark_call_frames(file: &Path, cid: &str) -> Vec<(String, u32)> {
    let eps = sdp_endpoints(file);
    let eps = eps
        .get(cid)
        .unwrap_or_else(|| panic!("tshark found no SDP for {cid}"));
    tshark_frames(file, Some(&call_filter(cid, eps)))
}

/// Call-IDs tshark finds in a capture, sorted.
pub fn tshark_call_ids(file: &Path) -> Vec<String> {
    let out = tshark(&[
        "-r",
        file.to_str().unwrap(),
        "-Y",
        "sip",
        "-T",
        "fields",
        "-e",
        "sip.Call-ID",
    ]);
    let mut ids: Vec<String> = out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// One row of `tshark -z rtp,streams`.
#[derive(Clone, Debug, PartialEq)]
pub struct TsharkStream {
    pub src: String,
    pub dst: String,
    pub ssrc: u32,
    pub packets: u64,
    pub lost: i64,
    pub max_delta_ms: f64,
    pub mean_jitter_ms: f64,
    pub max_jitter_ms: f64,
}

/// RTP streams as tshark sees them (heuristic RTP on, like our import).
pub fn tshark_rtp_streams(file: &Path) -> Vec<TsharkStream> {
    let out = tshark(&[
        "-q",
        "-r",
        file.to_str().unwrap(),
        "-o",
        "rtp.heuristic_rtp:TRUE",
        "-z",
        "rtp,streams",
    ]);
    out.lines().filter_map(stream_row).collect()
}

/// start end src sport dst dport ssrc payload... pkts lost (pct) min mean
/// max minj meanj maxj [X]
fn stream_row(line: &str) -> Option<TsharkStream> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let ssrc_idx = f.iter().position(|t| t.starts_with("0x"))?;
    if ssrc_idx != 6 {
        return None;
    }
    let lost_idx = f
        .iter()
        .position(|t| t.starts_with('(') && t.ends_with("%)"))?;
    let num = |i: usize| {
        f.get(i)
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    let fmt_addr = |ip: &str, port: &str| {
        if ip.contains(':') {
            format!("[{ip}]:{port}")
        } else {
            format!("{ip}:{port}")
        }
    };
    Some(TsharkStream {
        src: fmt_addr(f[2], f[3]),
        dst: fmt_addr(f[4], f[5]),
        ssrc: u32::from_str_radix(f[6].trim_start_matches("0x"), 16).unwrap(),
        packets: f[lost_idx - 2].parse().unwrap(),
        lost: f[lost_idx - 1].parse().unwrap(),
        max_delta_ms: num(lost_idx + 3),
        mean_jitter_ms: num(lost_idx + 5),
        max_jitter_ms: num(lost_idx + 6),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_filter_names_both_families() {
        let eps: BTreeSet<(String, u16)> =
            [("10.0.0.1".into(), 4000), ("2001:db8::2".into(), 5000)]
                .into_iter()
                .collect();
        assert_eq!(
            call_filter("c1", &eps),
            "sip.Call-ID == \"c1\" || (udp && !sip && !icmp && !icmpv6 && \
             ((ip.src==10.0.0.1 && udp.srcport==4000) || (ipv6.src==2001:db8::2 && udp.srcport==5000)) && \
             ((ip.dst==10.0.0.1 && udp.dstport==4000) || (ipv6.dst==2001:db8::2 && udp.dstport==5000)))"
        );
    }
}
