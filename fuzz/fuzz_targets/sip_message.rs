#![no_main]
//! Any bytes through the SIP message parser and every accessor.

use libfuzzer_sys::fuzz_target;
use voxtap_proto::sip;

fuzz_target!(|data: &[u8]| {
    let _ = sip::looks_like_sip(data);
    if let Some(p) = sip::find_start(data) {
        assert!(p < data.len());
    }
    for parsed in [sip::parse(data), sip::parse_stream(data)] {
        if let Ok(m) = parsed {
            assert!(m.len() <= data.len());
            assert!(m.raw().len() <= m.len());
            // The layout the dispatcher hands the replicas reads back, from a
            // copy, as the same message.
            let layout = m.layout(data).expect("a parse's parts are in its buffer");
            let copy = data.to_vec();
            let again = layout.message(&copy).expect("spans within the copy");
            assert_eq!(again.layout(&copy), Some(layout));
            assert_eq!(again.len(), m.len());
            let _ = (m.call_id(), m.cseq(), m.content_type(), m.content_length());
            for na in [m.from(), m.to()].into_iter().flatten() {
                let _ = (sip::uri_user(na.uri), sip::uri_host(na.uri));
            }
            if let sip::StartLine::Request { method, uri } = m.start() {
                let _ = (method.as_str(), sip::uri_user(uri), sip::uri_host(uri));
            }
            for (n, v) in m.headers() {
                let _ = (n.len(), v.len());
            }
            let _ = m.header_all("Via").count();
            if let Some(sdp) = m.sdp() {
                let _ = voxtap_proto::sdp::parse(sdp);
            }
        }
    }
});
