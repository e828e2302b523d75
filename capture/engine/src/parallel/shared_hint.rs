//! Destinations that many calls' SDP name but that are not listed as
//! shared (`PipelineConfig::shared_media`): a media server's or
//! conference bridge's single port. All their streams go to the one worker
//! their address hashes to, which then carries that server's whole load.
//!
//! The dispatcher cannot switch such an endpoint to pair hashing by itself:
//! the streams already flowing to it would split over two replicas. It says
//! so instead, once per endpoint, for the operator to list it. It counts
//! distinct Call-IDs naming an endpoint within a window of capture time
//! (re-INVITEs and retransmissions of one call count once), so a phone that
//! reuses its port call after call stays below the mark.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

use voxtap_proto::sdp::SessionDescription;

use super::Owners;

/// Distinct calls naming one endpoint within [`WINDOW_NS`] that make it a
/// suspected shared endpoint.
pub(super) const CALLS: usize = 16;
/// The window of capture time the calls are counted in.
const WINDOW_NS: u64 = 60_000_000_000;
/// Endpoints counted at once: beyond, new endpoints are not counted until
/// the window ends (`budget_hits`), so SDP from the wire cannot grow this.
const MAX_ENDPOINTS: usize = 16_384;
/// Suspects remembered (each is reported once).
const MAX_FOUND: usize = 256;

#[derive(Default)]
pub(super) struct SharedHints {
    window_start_ns: u64,
    /// Per endpoint (port's low bit cleared, as `Owners` folds RTCP onto
    /// RTP): the hashes of the distinct Call-IDs that named it.
    counting: HashMap<SocketAddr, Vec<u32>>,
    found: Vec<SocketAddr>,
    reported: HashSet<SocketAddr>,
    /// Endpoints not counted because `counting` was full.
    pub budget_hits: u64,
}

impl SharedHints {
    /// A SIP message with an SDP body, from `src`, of call `call_id`, at
    /// capture time `now_ns`.
    pub fn observe(
        &mut self,
        now_ns: u64,
        call_id: &[u8],
        src: IpAddr,
        sdp: &SessionDescription,
        owners: &Owners,
    ) {
        if now_ns.saturating_sub(self.window_start_ns) >= WINDOW_NS {
            self.window_start_ns = now_ns;
            self.counting.clear();
        }
        let call = call_hash(call_id);
        for m in sdp.media.iter().filter(|m| m.port != 0) {
            let ip = sdp.media_addr(m, src).to_canonical();
            let ep = SocketAddr::new(ip, m.port & !1);
            if owners.is_shared(ep) || self.reported.contains(&ep) {
                continue;
            }
            self.count(ep, call);
        }
    }

    fn count(&mut self, ep: SocketAddr, call: u32) {
        if !self.counting.contains_key(&ep) && self.counting.len() >= MAX_ENDPOINTS {
            self.budget_hits += 1;
            return;
        }
        let calls = self.counting.entry(ep).or_default();
        if calls.contains(&call) {
            return;
        }
        calls.push(call);
        if calls.len() < CALLS {
            return;
        }
        self.counting.remove(&ep);
        if self.found.len() < MAX_FOUND {
            self.reported.insert(ep);
            self.found.push(ep);
            tracing::warn!(
                endpoint = %ep,
                "{CALLS} calls' SDP named media endpoint {ep} within {} s of capture: all its \
                 streams go to one media worker; list it in workers.shared_media \
                 (import: --shared-media {ep}) to spread them over the workers",
                WINDOW_NS / 1_000_000_000
            );
        }
    }

    /// The suspected shared endpoints, in the order they were found.
    pub fn found(&self) -> &[SocketAddr] {
        &self.found
    }
}

/// FNV-1a of a Call-ID, folded to 32 bits: a collision only undercounts an
/// endpoint's calls, and this is advice, not a routing decision.
fn call_hash(call_id: &[u8]) -> u32 {
    let h = call_id.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (h ^ (h >> 32)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(addr: &str, port: u16) -> SessionDescription {
        let body = format!(
            "v=0\r\no=- 1 1 IN IP4 {addr}\r\ns=-\r\nc=IN IP4 {addr}\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP 0\r\n"
        );
        voxtap_proto::sdp::parse(body.as_bytes()).unwrap()
    }

    const SRC: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));

    /// The 16th distinct call naming one endpoint (its RTCP port too)
    /// makes it a suspect, once; re-offers of one call, other endpoints,
    /// and a listed endpoint do not.
    #[test]
    fn an_endpoint_named_by_many_calls_is_found_once() {
        let owners = Owners::new(&["192.0.2.20:7000".parse().unwrap()], 4);
        let mut h = SharedHints::default();
        let server = offer("192.0.2.10", 5004);
        for i in 0..CALLS - 1 {
            let id = format!("call-{i}");
            for _ in 0..3 {
                h.observe(1, id.as_bytes(), SRC, &server, &owners);
            }
            h.observe(
                1,
                id.as_bytes(),
                SRC,
                &offer("198.51.100.7", 4000 + i as u16 * 2),
                &owners,
            );
            h.observe(1, id.as_bytes(), SRC, &offer("192.0.2.20", 7000), &owners);
        }
        assert!(h.found().is_empty());
        h.observe(2, b"call-last", SRC, &offer("192.0.2.10", 5005), &owners);
        assert_eq!(
            h.found(),
            ["192.0.2.10:5004".parse::<SocketAddr>().unwrap()]
        );
        for i in 0..CALLS {
            h.observe(3, format!("more-{i}").as_bytes(), SRC, &server, &owners);
        }
        assert_eq!(h.found().len(), 1, "reported once");
    }

    /// Calls spread over more than the window never add up, and the
    /// endpoints counted at once are bounded (what is not counted is
    /// counted as a budget hit).
    #[test]
    fn counting_is_windowed_and_bounded() {
        let owners = Owners::new(&[], 4);
        let mut h = SharedHints::default();
        let phone = offer("198.51.100.7", 4000);
        for i in 0..10 * CALLS as u64 {
            let at = i * (WINDOW_NS / (CALLS as u64 - 1) + 1);
            h.observe(at, format!("c{i}").as_bytes(), SRC, &phone, &owners);
        }
        assert!(h.found().is_empty());
        for i in 0..MAX_ENDPOINTS + 10 {
            let sdp = offer(
                &format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255),
                4000,
            );
            h.observe(u64::MAX / 2, b"one", SRC, &sdp, &owners);
        }
        assert_eq!(h.counting.len(), MAX_ENDPOINTS);
        assert_eq!(h.budget_hits, 10);
    }
}
