//! SRTP/SRTCP unprotect on arbitrary bytes and keys: must never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use voxtap_proto::srtp::{SrtpContext, SrtpKeys, Suite};

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else { return };
    let suite = Suite::ALL[usize::from(sel) % Suite::ALL.len()];
    let need = suite.key_len() + suite.salt_len();
    if rest.len() < need {
        return;
    }
    let (key, pkts) = rest.split_at(need);
    let Ok(keys) = SrtpKeys::from_key_salt(suite, key) else { return };
    let mut ctx = SrtpContext::new(keys);
    // Several packets: split on a marker so ROC state is exercised too.
    for p in pkts.split(|&b| b == 0xA5).take(8) {
        let _ = ctx.unprotect_rtp(p);
        let _ = ctx.unprotect_rtcp(p);
    }
    // SDES parsing on the same bytes as text.
    let text = String::from_utf8_lossy(pkts);
    let _ = SrtpKeys::from_sdes("AES_CM_128_HMAC_SHA1_80", &[text.to_string()], &[]);
});
