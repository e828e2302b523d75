//! SIP over SCTP, WebSocket and TLS, checked against tshark on the same
//! captures: the SCTP capture is built here from a corpus call (Linux on
//! this machine has no SCTP, so SIPp cannot speak it); the WebSocket and TLS
//! ones are made here by real peers (the `websockets` package, SIPp and
//! baresip through OpenSSL relays that write a key log) in a network
//! namespace of the test's own, captured with tcpdump.

mod peers;
mod sctp;
mod tls;
mod ws;

use std::collections::BTreeMap;
use std::path::Path;

use voxtap_e2e::tshark;
use voxtap_engine::index::{CallQuery, Index};

/// One SIP message as a ladder shows it: time (epoch, 9 decimals), source,
/// destination, and its start line.
pub(crate) type Rung = (String, String, String, String);

/// Each Call-ID's messages in order, from our index.
pub(crate) fn our_ladder(out: &Path) -> BTreeMap<String, Vec<Rung>> {
    let idx = Index::open(&out.join("index.sqlite")).unwrap();
    let page = idx
        .search(&CallQuery {
            limit: 1000,
            ..Default::default()
        })
        .unwrap();
    let mut m = BTreeMap::new();
    for c in page.rows {
        let d = idx.call_detail(c.id).unwrap().unwrap();
        let rungs: Vec<Rung> = d
            .sip
            .iter()
            .map(|s| {
                let first = s.text.lines().next().unwrap_or("").to_string();
                let t = format!("{}.{:09}", s.ts_ns / 1_000_000_000, s.ts_ns % 1_000_000_000);
                (t, s.src.clone(), s.dst.clone(), first)
            })
            .collect();
        if !rungs.is_empty() {
            m.insert(c.call_id.clone(), rungs);
        }
    }
    m
}

/// Each Call-ID's messages in order, as tshark dissects them with `args`
/// (preferences, decode-as); `port` names the transport's port fields
/// (`tcp` or `sctp`). Several messages in one frame keep their order.
pub(crate) fn tshark_ladder(file: &Path, args: &[&str], port: &str) -> BTreeMap<String, Vec<Rung>> {
    let (sp, dp) = (format!("{port}.srcport"), format!("{port}.dstport"));
    let mut a = vec!["-r", file.to_str().unwrap()];
    a.extend_from_slice(args);
    a.extend([
        "-Y",
        "sip",
        "-T",
        "fields",
        "-E",
        "aggregator=|",
        "-E",
        "separator=\t",
        "-e",
        "frame.time_epoch",
        "-e",
        "ip.src",
        "-e",
        &sp,
        "-e",
        "ip.dst",
        "-e",
        &dp,
        "-e",
        "sip.Call-ID",
        "-e",
        "sip.Request-Line",
        "-e",
        "sip.Status-Line",
    ]);
    let out = tshark(&a);
    let mut m: BTreeMap<String, Vec<Rung>> = BTreeMap::new();
    for line in out.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let (t, src, dst) = (
            f[0],
            format!("{}:{}", f[1], f[2]),
            format!("{}:{}", f[3], f[4]),
        );
        let cids: Vec<&str> = f[5].split('|').collect();
        let (req, st) = (f[6], f[7]);
        assert!(
            req.is_empty() || st.is_empty(),
            "a frame with both requests and responses: order unknown ({line})"
        );
        let lines: Vec<&str> = if req.is_empty() { st } else { req }.split('|').collect();
        assert_eq!(cids.len(), lines.len(), "{line}");
        for (cid, l) in cids.iter().zip(lines) {
            m.entry(cid.to_string()).or_default().push((
                t.to_string(),
                src.clone(),
                dst.clone(),
                l.to_string(),
            ));
        }
    }
    m
}

/// The calls.csv rows of an import output.
pub(crate) fn calls_csv(out: &Path) -> Vec<std::collections::HashMap<String, String>> {
    voxtap_e2e::read_csv(&out.join("calls.csv"))
}
