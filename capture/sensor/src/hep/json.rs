//! The JSON payloads Homer stores beside SIP: RTCP (HEP type 5) in the field
//! layout heplify sends, and one quality report per RTP stream (HEP type 34)
//! with rtpagent's upper-case keys.

use serde_json::{Value, json};

use voxtap_engine::calls::{Call, Stream};

pub use voxtap_proto::hep::rtcp_json;

/// The quality figures of one stream at the end of its call.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StreamReport {
    pub mos: Option<f64>,
    pub r_factor: Option<f64>,
    pub jitter_ms: f64,
    pub max_jitter_ms: f64,
    pub mean_jitter_ms: f64,
    pub packets: u64,
    pub expected: u64,
    pub lost: i64,
    pub json: Value,
}

fn unix_s(ns: u64) -> u64 {
    ns / 1_000_000_000
}

/// The report for `stream` of `call`: the same summary E-model estimate as
/// streams.csv (random loss, 60 ms jitter buffer) and the RFC 3550 figures.
pub(crate) fn stream_report(call: &Call, stream: &Stream) -> StreamReport {
    let sum = stream.stats.summary();
    let pt = sum.payload_types.first().copied().unwrap_or(0);
    let codec = call.codec_name(stream, pt);
    let est = voxtap_engine::media::quality::summary_estimate(
        &codec,
        sum.lost,
        sum.expected,
        sum.ptime_ms,
    );
    let loss_pct = if sum.expected > 0 {
        100.0 * sum.lost.max(0) as f64 / sum.expected as f64
    } else {
        0.0
    };
    let round = |v: f64| (v * 1000.0).round() / 1000.0;
    let k = stream.key;
    let json = json!({
        "CORRELATION_ID": call.call_id(),
        "RTP_SIP_CALL_ID": call.call_id(),
        "TYPE": "FINAL",
        "REPORT_NAME": "voxtap",
        "REPORT_TS": unix_s(sum.last_ns),
        "REPORT_START": unix_s(sum.first_ns),
        "REPORT_END": unix_s(sum.last_ns),
        "SRC_IP": k.src.ip().to_string(),
        "SRC_PORT": k.src.port(),
        "DST_IP": k.dst.ip().to_string(),
        "DST_PORT": k.dst.port(),
        "SSRC": format!("0x{:08X}", k.ssrc),
        "CODEC_PT": pt,
        "CODEC_NAME": codec,
        "CLOCK": stream.clock_rate(),
        "TOTAL_PK": sum.packets,
        "EXPECTED_PK": sum.expected,
        "PACKET_LOSS": sum.lost,
        "LOSS_PCT": round(loss_pct),
        "OUT_ORDER": sum.out_of_order,
        "DUPLICATES": sum.duplicates,
        // Mean interarrival jitter, as streams.csv's jitter_ms (Wireshark's
        // "Mean Jitter"); LAST_JITTER is RFC 3550's running value at the end.
        "JITTER": round(sum.mean_jitter_ms),
        "LAST_JITTER": round(sum.jitter_ms),
        "MAX_JITTER": round(sum.max_jitter_ms),
        "MEAN_JITTER": round(sum.mean_jitter_ms),
        "MAX_DELTA": round(sum.max_delta_ms),
        "MOS": est.map(|e| round(e.1)),
        "MIN_MOS": est.map(|e| round(e.1)),
        "MEAN_MOS": est.map(|e| round(e.1)),
        "RFACTOR": est.map(|e| round(e.0)),
        "MIN_RFACTOR": est.map(|e| round(e.0)),
        "MEAN_RFACTOR": est.map(|e| round(e.0)),
        "RTCP_REPORTS": stream.rtcp.reports,
        "RTCP_FRACTION_LOST": stream.rtcp.fraction_lost,
        "RTCP_CUMULATIVE_LOST": stream.rtcp.cumulative_lost,
    });
    StreamReport {
        mos: est.map(|e| e.1),
        r_factor: est.map(|e| e.0),
        jitter_ms: sum.jitter_ms,
        max_jitter_ms: sum.max_jitter_ms,
        mean_jitter_ms: sum.mean_jitter_ms,
        packets: sum.packets,
        expected: sum.expected,
        lost: sum.lost,
        json,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtcp_sr_with_block_and_sdes() {
        // SR from 0x11223344 with one block about 0xAABBCCDD, then SDES.
        let mut p = vec![0x81, 200, 0, 12];
        p.extend_from_slice(&0x1122_3344u32.to_be_bytes());
        for v in [10u32, 20, 30, 40, 50] {
            p.extend_from_slice(&v.to_be_bytes());
        }
        p.extend_from_slice(&0xAABB_CCDDu32.to_be_bytes());
        p.extend_from_slice(&[5, 0xff, 0xff, 0xfe]); // fraction 5, cumulative -2
        for v in [1000u32, 77, 88, 99] {
            p.extend_from_slice(&v.to_be_bytes());
        }
        p.extend_from_slice(&[0x81, 202, 0, 2]);
        p.extend_from_slice(&0x1122_3344u32.to_be_bytes());
        p.extend_from_slice(&[0, 0, 0, 0]);
        let mut out = Vec::new();
        assert!(rtcp_json(&p, &mut out));
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["type"], 200);
        assert_eq!(v["ssrc"], 0x1122_3344u32);
        assert_eq!(v["sender_information"]["packets"], 40);
        assert_eq!(v["report_blocks"][0]["source_ssrc"], 0xAABB_CCDDu32);
        assert_eq!(v["report_blocks"][0]["fraction_lost"], 5);
        assert_eq!(v["report_blocks"][0]["packets_lost"], -2);
        assert_eq!(v["report_blocks"][0]["ia_jitter"], 77);
        assert_eq!(v["sdes_ssrc"], 0x1122_3344u32);
    }

    #[test]
    fn rtcp_without_reports_is_not_sent() {
        let mut out = vec![1];
        assert!(!rtcp_json(&[0x80, 203, 0, 1, 0, 0, 0, 1], &mut out));
        assert!(out.is_empty());
        assert!(!rtcp_json(b"junk", &mut out));
    }
}
