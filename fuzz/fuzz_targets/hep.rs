//! HEP3 on arbitrary bytes: the packet view, the TCP framing, the listener's
//! path (decode, rebuild an IP packet, the pipeline) and the RTCP-to-JSON
//! export must never panic; what decodes must re-encode to the same fields.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voxtap_engine::calls::PacketRef;
use voxtap_proto::hep::{Hep, HepFields, HepPacket, frame_len, rtcp_json};
use voxtap_proto::wire::emit::build_frame;
use voxtap_proto::pcapio::LinkType;
use voxtap_engine::pipeline::{Pipeline, PipelineConfig};

fuzz_target!(|data: &[u8]| {
    // A TCP stream of packets.
    let mut rest = data;
    let mut pipeline = Pipeline::new(PipelineConfig::default());
    let mut frame = Vec::new();
    while let Ok(Some(n)) = frame_len(rest) {
        let Some(pkt) = rest.get(..n) else { break };
        rest = &rest[n..];
        if let Ok(p) = HepPacket::new_checked(pkt) {
            for c in p.chunks() {
                let _ = (c.vendor, c.kind, c.value.len());
            }
        }
        let Ok(h) = Hep::parse(pkt) else { continue };
        if let (Some((src, dst)), Some(payload), Some(ts)) = (h.endpoints(), h.payload, h.ts_ns()) {
            let fields = HepFields {
                src,
                dst,
                ip_proto: h.ip_proto.unwrap_or(17),
                ts_ns: ts,
                proto_type: h.proto_type.unwrap_or(1),
                capture_id: h.capture_id.unwrap_or(0),
                auth_key: h.auth_key.unwrap_or(b""),
                correlation_id: h.correlation_id.unwrap_or(b""),
                payload,
            };
            let mut out = Vec::new();
            if fields.encode(&mut out).is_ok() {
                let back = Hep::parse(&out).expect("our own encoding parses");
                assert_eq!(back.payload, Some(payload));
                assert_eq!(back.ts_ns(), Some(ts));
                assert_eq!(back.correlation_id.unwrap_or(b""), fields.correlation_id);
            }
            let seq = (h.ip_proto == Some(6)).then_some(ts as u32);
            if payload.len() <= 65_000 {
                build_frame(&mut frame, src, dst, seq, payload);
                pipeline.process(LinkType::Raw, ts, PacketRef::new(0, 0), &frame);
            }
            let mut json = Vec::new();
            if rtcp_json(payload, &mut json) {
                serde_json_check(&json);
            }
        }
    }
    pipeline.finish();
    let _ = pipeline.drain_ended();
    let mut json = Vec::new();
    if rtcp_json(data, &mut json) {
        serde_json_check(&json);
    }
});

/// The RTCP JSON is plain ASCII with balanced braces (serde_json is not a
/// dependency of this crate).
fn serde_json_check(j: &[u8]) {
    assert!(j.is_ascii());
    let open = j.iter().filter(|&&b| b == b'{').count();
    let close = j.iter().filter(|&&b| b == b'}').count();
    assert_eq!(open, close);
}
