//! Media endpoint bookkeeping: the (address, port) pairs each call's SDP
//! announced for receiving RTP and RTCP, plus the sources latched behind NAT,
//! and which call a media packet between two addresses belongs to.

use std::collections::HashMap;
use std::net::SocketAddr;

use super::call::MediaInfo;
use super::endpoint_uses::Uses;

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
    /// The m= line (index into the call's media) that announced it:
    /// [`Self::media_idx`] (32 bits keep a use in 16 bytes).
    media: u32,
    /// That m= line is T.38 fax (UDPTL), not RTP.
    pub fax: bool,
}

impl EndpointUse {
    pub fn new(call: u64, role: Role, media_idx: usize, fax: bool) -> Self {
        EndpointUse {
            call,
            role,
            media: u32::try_from(media_idx).unwrap_or(u32::MAX),
            fax,
        }
    }

    /// The m= line (index into the call's media) that announced it.
    pub fn media_idx(&self) -> usize {
        self.media as usize
    }
}

/// An IPv6 endpoint as the map keys it: 19 bytes instead of a
/// `SocketAddr`'s 32, so a map entry takes 40 bytes, not 56.
type EpKey = super::Endpoint;

/// The receiving endpoints, in two maps: IPv4 ones keyed by one `u64`
/// (address and port), so an entry takes 24 bytes rather than 40 (a call
/// has four, some 200 bytes of every open call with the map's spare
/// slots); IPv6 ones by their [`EpKey`]. The family tells which map, as it
/// told keys apart in one.
#[derive(Default)]
struct ByEndpoint {
    v4: HashMap<u64, Uses, AddrHash>,
    v6: HashMap<EpKey, Uses, AddrHash>,
}

enum Key {
    V4(u64),
    V6(EpKey),
}

impl Key {
    fn of(a: SocketAddr) -> Key {
        match a {
            SocketAddr::V4(v4) => Key::V4(super::endpoint::v4_word(*v4.ip(), v4.port())),
            SocketAddr::V6(_) => Key::V6(a.into()),
        }
    }
}

impl ByEndpoint {
    fn get(&self, k: &Key) -> Option<&Uses> {
        match k {
            Key::V4(k) => self.v4.get(k),
            Key::V6(k) => self.v6.get(k),
        }
    }

    fn get_mut(&mut self, k: &Key) -> Option<&mut Uses> {
        match k {
            Key::V4(k) => self.v4.get_mut(k),
            Key::V6(k) => self.v6.get_mut(k),
        }
    }

    /// The uses at `k`, made empty if there were none.
    fn entry(&mut self, k: Key) -> &mut Uses {
        match k {
            Key::V4(k) => self.v4.entry(k).or_default(),
            Key::V6(k) => self.v6.entry(k).or_default(),
        }
    }

    fn remove(&mut self, k: &Key) {
        match k {
            Key::V4(k) => self.v4.remove(k),
            Key::V6(k) => self.v6.remove(k),
        };
    }
}

/// The hasher of the maps looked up per media packet by address: foldhash
/// instead of SipHash (two lookups per packet were about 15 % of a CSV
/// import). The addresses are chosen by whoever sends SDP, so the hash is
/// keyed: foldhash's `RandomState` draws a per-process random seed, and
/// colliding keys cannot be precomputed.
pub(super) type AddrHash = foldhash::fast::RandomState;

#[derive(Default)]
pub(super) struct Endpoints {
    /// Receiving endpoints, newest use last.
    uses: ByEndpoint,
    /// `None` unless a live sensor asked for them: import has no filter to
    /// update and must not accumulate events.
    events: Option<Vec<EndpointEvent>>,
}

impl Endpoints {
    /// Shrinks the map once most of its calls closed.
    pub fn give_back(&mut self) {
        super::trim::shrink_map(&mut self.uses.v4);
        super::trim::shrink_map(&mut self.uses.v6);
    }

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
            .get_mut(&Key::of(ep))
            .and_then(|v| v.use_mut(u.call, u.role))
            && x.fax != u.fax
        {
            *x = u;
            return;
        }
        self.add(ep, u, Some(u.role));
    }

    /// `u.call` latched media from `src`: traffic sent back to it is the
    /// call's too.
    pub fn latch(&mut self, src: SocketAddr, u: EndpointUse) {
        self.add(src, u, None);
    }

    /// Adds `u` unless its call already uses `ep` (in `role`, if given).
    fn add(&mut self, ep: SocketAddr, u: EndpointUse, role: Option<Role>) {
        let uses = self.uses.entry(Key::of(ep));
        if uses.is_empty()
            && let Some(ev) = &mut self.events
        {
            ev.push(EndpointEvent::Added(ep));
        }
        if !uses.has(u.call, role) {
            uses.push(u);
        }
    }

    /// Call `call` no longer receives at `ep`.
    pub fn release(&mut self, call: u64, ep: SocketAddr) {
        let key = Key::of(ep);
        let Some(uses) = self.uses.get_mut(&key) else {
            return;
        };
        uses.remove_call(call);
        if uses.is_empty() {
            self.uses.remove(&key);
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
        let d = self.uses.get(&Key::of(dst));
        let s = self.uses.get(&Key::of(src));
        if let (Some(d), Some(s)) = (d, s)
            && let Some(u) = d.newest_shared_with(s)
        {
            return Some((u, true));
        }
        if let Some(u) = d.and_then(Uses::newest) {
            let src_known = s.is_some_and(|s| s.has(u.call, None));
            return Some((u, src_known));
        }
        s.and_then(Uses::newest).map(|u| (u, true))
    }
}

/// An `m=image ... udptl` line: T.38 fax, whose packets are UDPTL.
pub(super) fn is_fax(m: &MediaInfo) -> bool {
    m.kind().eq_ignore_ascii_case("image") && m.proto().to_ascii_lowercase().contains("udptl")
}

/// The endpoints an enabled m= line (number `media_idx` of call `call`)
/// claims: its RTP one, and its RTCP one unless muxed onto it.
pub(super) fn claims(
    call: u64,
    media_idx: usize,
    m: &MediaInfo,
) -> impl Iterator<Item = (SocketAddr, EndpointUse)> {
    let rtp = (
        m.rtp.to_socket_addr(),
        EndpointUse::new(call, Role::Rtp, media_idx, is_fax(m)),
    );
    let rtcp = (m.rtcp != m.rtp).then_some((
        m.rtcp.to_socket_addr(),
        EndpointUse::new(call, Role::Rtcp, media_idx, is_fax(m)),
    ));
    std::iter::once(rtp).chain(rtcp)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Four map entries a call: their size is what the compact keys are
    /// for.
    #[test]
    fn a_map_entry_takes_24_bytes_for_ipv4_and_40_for_ipv6() {
        assert_eq!(std::mem::size_of::<(u64, Uses)>(), 24);
        assert_eq!(std::mem::size_of::<(EpKey, Uses)>(), 40);
    }

    #[test]
    fn keys_tell_family_address_and_port_apart() {
        let k = |s: &str| EpKey::from(s.parse::<SocketAddr>().unwrap());
        assert!(k("10.0.0.1:4000") == k("10.0.0.1:4000"));
        assert!(k("10.0.0.1:4000") != k("10.0.0.1:4001"));
        assert!(k("10.0.0.1:4000") != k("10.0.0.2:4000"));
        assert!(k("10.0.0.1:4000") != k("[::ffff:10.0.0.1]:4000"));
        assert!(k("10.0.0.1:4000") != k("[a00:1::]:4000"));
        assert!(k("[2001:db8::1]:4000") == k("[2001:db8::1]:4000"));
    }

    /// With the hand-written hash, every announced endpoint is found, and
    /// its neighbours (next port, next address, the other family) are not.
    #[test]
    fn find_names_the_announced_endpoint_and_nothing_near_it() {
        let mut eps = Endpoints::default();
        let v4 = |i: u32| SocketAddr::from((std::net::Ipv4Addr::from(0x0a00_0000 + i), 4000));
        let v6 = |i: u32| {
            SocketAddr::from((
                std::net::Ipv6Addr::from(0x2001_0db8_u128 << 96 | u128::from(i)),
                4000,
            ))
        };
        for i in 0..2_000 {
            eps.announce(v4(i), EndpointUse::new(u64::from(i), Role::Rtp, 0, false));
            eps.announce(
                v6(i),
                EndpointUse::new(u64::from(i) + 10_000, Role::Rtp, 0, false),
            );
        }
        let far: SocketAddr = "192.0.2.1:9".parse().unwrap();
        for i in 0..2_000 {
            assert_eq!(
                eps.find(far, v4(i)).map(|(u, _)| u.call),
                Some(u64::from(i))
            );
            assert_eq!(
                eps.find(far, v6(i)).map(|(u, _)| u.call),
                Some(u64::from(i) + 10_000)
            );
            let mut next_port = v4(i);
            next_port.set_port(4001);
            assert!(eps.find(far, next_port).is_none());
            let mapped = SocketAddr::new(
                std::net::IpAddr::V6(std::net::Ipv4Addr::from(0x0a00_0000 + i).to_ipv6_mapped()),
                4000,
            );
            assert!(eps.find(far, mapped).is_none());
        }
        assert!(eps.find(far, v4(2_000)).is_none());
        assert!(eps.find(far, v6(2_000)).is_none());
    }
}
