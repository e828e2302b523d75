#![no_main]
//! Any bytes through the lenient SDP parser and its helpers.

use libfuzzer_sys::fuzz_target;
use std::net::{IpAddr, Ipv4Addr};
use voxtap_proto::sdp;

fuzz_target!(|data: &[u8]| {
    if let Ok(sd) = sdp::parse(data) {
        for m in &sd.media {
            let _ = sd.media_addr(m, IpAddr::V4(Ipv4Addr::LOCALHOST));
            let _ = sd.media_direction(m);
            let _ = m.is_srtp();
            for pt in &m.formats {
                let _ = m.rtpmap_for(*pt);
            }
        }
    }
});
