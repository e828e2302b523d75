//! Media endpoint bookkeeping: the (address, port) pairs each call's SDP
//! announced for receiving RTP and RTCP, plus the sources latched behind NAT,
//! and which call a media packet between two addresses belongs to.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::call::MediaInfo;
use voxtap_proto::sdp;

/// A receiving endpoint that started or stopped being used by any open call,
/// for a live sensor that keeps its kernel filter in step with the table
/// (collected only after [`super::CallTable::track_endpoints`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointEvent {
    Added(SocketAddr),
    Removed(SocketAddr),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Role {
    Rtp,
    Rtcp,
}

/// One call's use of an endpoint.
#[derive(Clone, Copy, Debug)]
pub(super) struct EndpointUse {
    pub call: u64,
    pub role: Role,
    /// The m= line (index into the call's media) that announced it.
    pub media_idx: usize,
    /// That m= line is T.38 fax (UDPTL), not RTP.
    pub fax: bool,
}

#[derive(Default)]
pub(super) struct Endpoints {
    /// Receiving endpoints, newest use last.
    uses: HashMap<SocketAddr, Vec<EndpointUse>>,
    /// `None` unless a live sensor asked for them: import has no filter to
    /// update and must not accumulate events.
    events: Option<Vec<EndpointEvent>>,
}

impl Endpoints {
    pub fn track_events(&mut self) {
        self.events.get_or_insert_with(Vec::new);
    }

    /// Moves the events since the last drain into `out`.
    pub fn drain_events(&mut self, out: &mut Vec<EndpointEvent>) {
        if let Some(ev) = &mut self.events {
            out.append(ev);
        }
    }

    /// `u.call` receives at `ep` as its SDP announced. A re-INVITE that
    /// repeats an endpoint keeps the first use (its media index names the
    /// m= line the stream started under), unless it turns the media into
    /// fax or back (T.38): from then on the packets are the new line's.
    pub fn announce(&mut self, ep: SocketAddr, u: EndpointUse) {
        if let Some(x) = self
            .uses
            .get_mut(&ep)
            .and_then(|v| v.iter_mut().find(|x| x.call == u.call && x.role == u.role))
            && x.fax != u.fax
        {
            *x = u;
            return;
        }
        self.add(ep, u, |x| x.call == u.call && x.role == u.role);
    }

    /// `u.call` latched media from `src`: traffic sent back to it is the
    /// call's too.
    pub fn latch(&mut self, src: SocketAddr, u: EndpointUse) {
        self.add(src, u, |x| x.call == u.call);
    }

    fn add(&mut self, ep: SocketAddr, u: EndpointUse, known: impl Fn(&EndpointUse) -> bool) {
        let uses = self.uses.entry(ep).or_default();
        if uses.is_empty()
            && let Some(ev) = &mut self.events
        {
            ev.push(EndpointEvent::Added(ep));
        }
        if !uses.iter().any(known) {
            // Most endpoints serve one call: no room for three more.
            super::call::push_tight(uses, u);
        }
    }

    /// Call `call` no longer receives at `ep`.
    pub fn release(&mut self, call: u64, ep: SocketAddr) {
        let Some(uses) = self.uses.get_mut(&ep) else {
            return;
        };
        uses.retain(|u| u.call != call);
        if uses.is_empty() {
            self.uses.remove(&ep);
            if let Some(ev) = &mut self.events {
                ev.push(EndpointEvent::Removed(ep));
            }
        }
    }

    /// Which call a UDP packet between `src` and `dst` belongs to, by the
    /// endpoints its SDP announced: a call that names both ends wins, then the
    /// newest call receiving at `dst`, then the newest one sending from `src`
    /// (symmetric RTP sends from the port it receives on). The flag says
    /// whether `src` is a known endpoint of that call.
    pub fn find(&self, src: SocketAddr, dst: SocketAddr) -> Option<(EndpointUse, bool)> {
        let d = self.uses.get(&dst);
        let s = self.uses.get(&src);
        if let (Some(d), Some(s)) = (d, s)
            && let Some(u) = d.iter().rev().find(|u| s.iter().any(|x| x.call == u.call))
        {
            return Some((*u, true));
        }
        if let Some(u) = d.and_then(|d| d.last().copied()) {
            let src_known = s.is_some_and(|s| s.iter().any(|x| x.call == u.call));
            return Some((u, src_known));
        }
        s.and_then(|s| s.last().copied()).map(|u| (u, true))
    }
}

/// One m= line of an SDP from `src` at `ts_ns`, carried by `by`: where that
/// side receives RTP and RTCP.
pub(super) fn media_info(
    desc: &sdp::SessionDescription,
    m: &sdp::MediaDescription,
    src: SocketAddr,
    ts_ns: u64,
    by: &str,
) -> MediaInfo {
    let ip = desc.media_addr(m, src.ip());
    let rtp = SocketAddr::new(ip, m.port);
    let rtcp = match m.rtcp {
        Some((port, addr)) => SocketAddr::new(addr.unwrap_or(ip), port),
        None if m.rtcp_mux => rtp,
        None => SocketAddr::new(ip, m.port.wrapping_add(1)),
    };
    MediaInfo {
        rtp,
        rtcp,
        rtcp_mux: m.rtcp_mux,
        kind: m.media.clone(),
        proto: m.proto.clone(),
        direction: desc.media_direction(m),
        rtpmap: m.rtpmap.clone(),
        fmtp: m.fmtp.clone(),
        crypto: m.crypto.clone(),
        ptime: m.ptime,
        announced_ns: ts_ns,
        announced_by: by.to_string(),
        disabled: m.port == 0 || ip.is_unspecified(),
    }
}

/// An `m=image ... udptl` line: T.38 fax, whose packets are UDPTL.
pub(super) fn is_fax(m: &MediaInfo) -> bool {
    m.kind.eq_ignore_ascii_case("image") && m.proto.to_ascii_lowercase().contains("udptl")
}

/// The endpoints an enabled m= line (number `media_idx` of call `call`)
/// claims: its RTP one, and its RTCP one unless muxed onto it.
pub(super) fn claims(
    call: u64,
    media_idx: usize,
    m: &MediaInfo,
) -> impl Iterator<Item = (SocketAddr, EndpointUse)> {
    let rtp = (
        m.rtp,
        EndpointUse {
            call,
            role: Role::Rtp,
            media_idx,
            fax: is_fax(m),
        },
    );
    let rtcp = (m.rtcp != m.rtp).then_some((
        m.rtcp,
        EndpointUse {
            call,
            role: Role::Rtcp,
            media_idx,
            fax: is_fax(m),
        },
    ));
    std::iter::once(rtp).chain(rtcp)
}
