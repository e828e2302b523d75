//! A socket address as the call table keeps it: 19 bytes instead of a
//! `SocketAddr`'s 32. A call holds about a dozen (its streams' keys, its
//! media lines, its SIP entries, its first INVITE), so this is some 150
//! bytes of every open call.
//!
//! Endpoints come from SDP and packet headers, whose IPv6 flow label and
//! scope are always 0 (the decoders build `SocketAddr`s from the address
//! and port alone), so nothing is lost: [`Endpoint::to_socket_addr`] gives
//! back the address it was made from, and equal endpoints are equal
//! addresses. It prints, orders and compares as that `SocketAddr` does.

use std::cmp::Ordering;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// An address (IPv4 in the first four bytes, the rest zero), a port and a
/// family. Alignment 1, and the family an enum, so that an
/// `Option<Endpoint>` takes no more room.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    ip: [u8; 16],
    port: [u8; 2],
    family: Family,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Endpoint {
    pub fn to_socket_addr(self) -> SocketAddr {
        SocketAddr::new(self.ip(), self.port())
    }

    pub fn ip(&self) -> IpAddr {
        match self.family {
            Family::V4 => {
                let [a, b, c, d, ..] = self.ip;
                IpAddr::V4(Ipv4Addr::new(a, b, c, d))
            }
            Family::V6 => IpAddr::V6(Ipv6Addr::from(self.ip)),
        }
    }

    pub fn port(&self) -> u16 {
        u16::from_be_bytes(self.port)
    }

    pub fn is_ipv4(&self) -> bool {
        self.family == Family::V4
    }

    pub fn is_ipv6(&self) -> bool {
        self.family == Family::V6
    }

    /// Eight bytes of the address as one word (for hashing IPv6).
    fn word(&self, i: usize) -> u64 {
        let mut b = [0u8; 8];
        if let Some(s) = self.ip.get(i..i + 8) {
            b.copy_from_slice(s);
        }
        u64::from_le_bytes(b)
    }
}

/// An IPv4 address and port as one word: how the call table hashes an IPv4
/// endpoint, and how its endpoint map keys one.
pub(crate) fn v4_word(ip: Ipv4Addr, port: u16) -> u64 {
    u64::from(ip.to_bits()) << 16 | u64::from(port)
}

impl From<SocketAddr> for Endpoint {
    fn from(a: SocketAddr) -> Self {
        let (ip, family) = match a.ip() {
            IpAddr::V4(v4) => {
                let mut b = [0u8; 16];
                b[..4].copy_from_slice(&v4.octets());
                (b, Family::V4)
            }
            IpAddr::V6(v6) => (v6.octets(), Family::V6),
        };
        Endpoint {
            ip,
            port: a.port().to_be_bytes(),
            family,
        }
    }
}

impl From<Endpoint> for SocketAddr {
    fn from(e: Endpoint) -> Self {
        e.to_socket_addr()
    }
}

impl std::str::FromStr for Endpoint {
    type Err = std::net::AddrParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse::<SocketAddr>().map(Endpoint::from)
    }
}

impl PartialEq<SocketAddr> for Endpoint {
    fn eq(&self, other: &SocketAddr) -> bool {
        self.to_socket_addr() == *other
    }
}

impl PartialEq<Endpoint> for SocketAddr {
    fn eq(&self, other: &Endpoint) -> bool {
        *self == other.to_socket_addr()
    }
}

/// Hashed as one `u64` for IPv4 (address and port fit in it: the other
/// bytes are zero) and as three words for IPv6, instead of the derived
/// hash of 19 bytes (a length and a byte slice: foldhash's slow path for
/// more than 16 bytes, about 3 % of a CSV-only import, twice per media
/// packet). Equal endpoints hash alike: the hash is a function of the
/// bytes, the family choosing the branch.
impl std::hash::Hash for Endpoint {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        let port = u64::from(self.port());
        match self.family {
            Family::V4 => {
                let [a, b, c, d, ..] = self.ip;
                h.write_u64(v4_word(Ipv4Addr::new(a, b, c, d), self.port()));
            }
            Family::V6 => {
                h.write_u64(self.word(0));
                h.write_u64(self.word(8));
                h.write_u64(port);
            }
        }
    }
}

/// `SocketAddr`'s order (IPv4 before IPv6, then address, then port).
impl Ord for Endpoint {
    fn cmp(&self, other: &Self) -> Ordering {
        self.to_socket_addr().cmp(&other.to_socket_addr())
    }
}

impl PartialOrd for Endpoint {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.to_socket_addr(), f)
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.to_socket_addr(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADDRS: [&str; 8] = [
        "10.0.0.1:5060",
        "10.0.0.1:5061",
        "10.0.0.2:0",
        "255.255.255.255:65535",
        "0.0.0.0:0",
        "[2001:db8::1]:4000",
        "[::ffff:10.0.0.1]:5060",
        "[::]:0",
    ];

    fn all() -> Vec<SocketAddr> {
        ADDRS.iter().map(|s| s.parse().unwrap()).collect()
    }

    /// Back to the same address, printed, ordered and compared as it.
    #[test]
    fn an_endpoint_is_the_socket_addr_it_was_made_from() {
        for a in all() {
            let e = Endpoint::from(a);
            assert_eq!(e.to_socket_addr(), a);
            assert_eq!(e.to_string(), a.to_string());
            assert_eq!(format!("{e:?}"), format!("{a:?}"));
            assert_eq!((e.ip(), e.port()), (a.ip(), a.port()));
            assert_eq!(e.is_ipv4(), a.is_ipv4());
            for b in all() {
                let f = Endpoint::from(b);
                assert_eq!(e == f, a == b, "{a} {b}");
                assert_eq!(e == b, a == b);
                assert_eq!(e.cmp(&f), a.cmp(&b), "{a} {b}");
            }
        }
    }

    #[test]
    fn an_endpoint_takes_19_bytes_and_its_option_as_many() {
        assert_eq!(std::mem::size_of::<Endpoint>(), 19);
        assert_eq!(std::mem::size_of::<Option<Endpoint>>(), 19);
        assert_eq!(std::mem::size_of::<Option<(Endpoint, Endpoint)>>(), 38);
    }
}
