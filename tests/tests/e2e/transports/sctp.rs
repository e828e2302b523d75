//! SIP over SCTP: the SIP of a corpus call (two SIPp calls over UDP) moved
//! onto one SCTP association the way an SCTP stack would carry it — an
//! INIT/INIT-ACK/COOKIE handshake, one stream per call, INVITEs fragmented
//! over three DATA chunks that arrive out of order, 100 Trying bundled with
//! 180 Ringing in one packet, SACKs bundled before DATA, one DATA chunk
//! retransmitted — with the RTP left as it was. tshark reads the same file.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use voxtap_e2e::{corpus, import, read_csv, tshark_rtp_streams};
use voxtap_proto::decode::{Decoder, L4};
use voxtap_proto::pcapio::{LinkType, PcapReader, PcapWriter};
use voxtap_proto::wire::sctp::{self, DataRepr, append_chunk, chunk_type, data_flags};
use voxtap_proto::wire::{Emit, ipv4};

use super::{our_ladder, tshark_ladder};

/// One direction of the association: next TSN and per-stream SSNs.
#[derive(Default)]
struct Dir {
    tsn: u32,
    ssn: HashMap<u16, u16>,
}

struct Builder {
    w: PcapWriter<std::fs::File>,
    client: SocketAddr,
    dirs: [Dir; 2],
    streams: HashMap<Vec<u8>, u16>,
    /// A 100 Trying waiting to share a packet with the next message.
    held: Option<(u64, [u8; 14], usize, Vec<u8>)>,
    retransmitted: bool,
}

impl Builder {
    fn dir(&self, src: SocketAddr) -> usize {
        usize::from(src != self.client)
    }

    /// A frame from `src` to `dst` carrying `chunks` after the SCTP header.
    fn packet(&mut self, ts: u64, eth: [u8; 14], src: SocketAddr, dst: SocketAddr, chunks: &[u8]) {
        let (IpAddr::V4(s), IpAddr::V4(d)) = (src.ip(), dst.ip()) else {
            panic!("IPv4 only")
        };
        let mut f = eth.to_vec();
        let ip = ipv4::Repr {
            src_addr: s,
            dst_addr: d,
            protocol: 132,
            payload_len: sctp::HEADER_LEN + chunks.len(),
            ttl: 64,
            tos: 0,
            ident: 0,
            dont_frag: true,
            more_frags: false,
            frag_offset: 0,
            options: &[],
        };
        ip.append(&mut f).unwrap();
        let at = f.len();
        sctp::Repr {
            src_port: src.port(),
            dst_port: dst.port(),
            verification_tag: 0x5ca1_ab1e,
        }
        .append(&mut f)
        .unwrap();
        f.extend_from_slice(chunks);
        sctp::Packet::new_unchecked(&mut f[at..]).fill_checksum();
        self.w.write_packet(ts, f.len() as u32, &f).unwrap();
    }

    /// A DATA chunk of `data` on the message's stream, taking the next TSN.
    fn data(&mut self, d: usize, stream: u16, flags: u8, ssn: u16, data: &[u8], out: &mut Vec<u8>) {
        let tsn = self.dirs[d].tsn;
        self.dirs[d].tsn += 1;
        DataRepr {
            flags,
            tsn,
            stream_id: stream,
            ssn,
            ppid: 0,
            data_len: data.len(),
        }
        .append_with(out, data)
        .unwrap();
    }

    /// A SACK of everything the other direction sent so far.
    fn sack(&self, d: usize, out: &mut Vec<u8>) {
        let cum = self.dirs[1 - d].tsn.wrapping_sub(1);
        let mut v = cum.to_be_bytes().to_vec();
        v.extend_from_slice(&65535u32.to_be_bytes());
        v.extend_from_slice(&[0, 0, 0, 0]);
        append_chunk(out, chunk_type::SACK, 0, &v).unwrap();
    }

    fn handshake(&mut self, ts: u64, eth: [u8; 14], c: SocketAddr, s: SocketAddr) {
        let init = |tag: u32, tsn: u32| {
            let mut v = tag.to_be_bytes().to_vec();
            v.extend_from_slice(&65535u32.to_be_bytes());
            v.extend_from_slice(&[0, 10, 0, 10]);
            v.extend_from_slice(&tsn.to_be_bytes());
            v
        };
        let mut p = Vec::new();
        append_chunk(&mut p, chunk_type::INIT, 0, &init(0x5ca1_ab1e, 1000)).unwrap();
        self.packet(ts - 4000, eth, c, s, &p);
        let mut v = init(0x5ca1_ab1e, 5000);
        v.extend_from_slice(&[0, 7, 0, 8, 1, 2, 3, 4]); // state cookie
        p.clear();
        append_chunk(&mut p, chunk_type::INIT_ACK, 0, &v).unwrap();
        self.packet(ts - 3000, eth, s, c, &p);
        p.clear();
        append_chunk(&mut p, chunk_type::COOKIE_ECHO, 0, &[1, 2, 3, 4]).unwrap();
        self.packet(ts - 2000, eth, c, s, &p);
        p.clear();
        append_chunk(&mut p, chunk_type::COOKIE_ACK, 0, &[]).unwrap();
        self.packet(ts - 1000, eth, s, c, &p);
        self.dirs = [
            Dir {
                tsn: 1000,
                ..Default::default()
            },
            Dir {
                tsn: 5000,
                ..Default::default()
            },
        ];
    }

    fn flush_held(&mut self, server: SocketAddr) {
        if let Some((ts, eth, d, msg)) = self.held.take() {
            let (src, dst) = self.ends(d, server);
            let stream = self.stream_of(&msg);
            let ssn = self.next_ssn(d, stream);
            let mut p = Vec::new();
            self.data(
                d,
                stream,
                data_flags::BEGIN | data_flags::END,
                ssn,
                &msg,
                &mut p,
            );
            self.packet(ts, eth, src, dst, &p);
        }
    }

    fn ends(&self, d: usize, server: SocketAddr) -> (SocketAddr, SocketAddr) {
        if d == 0 {
            (self.client, server)
        } else {
            (server, self.client)
        }
    }

    fn stream_of(&mut self, msg: &[u8]) -> u16 {
        let cid = voxtap_proto::sip::parse(msg)
            .unwrap()
            .call_id()
            .unwrap()
            .to_vec();
        let n = self.streams.len() as u16 + 1;
        *self.streams.entry(cid).or_insert(n)
    }

    fn next_ssn(&mut self, d: usize, stream: u16) -> u16 {
        let s = self.dirs[d].ssn.entry(stream).or_default();
        *s += 1;
        *s - 1
    }

    /// One SIP message as SCTP packets (see the module docs).
    fn message(&mut self, ts: u64, eth: [u8; 14], server: SocketAddr, d: usize, msg: &[u8]) {
        let start = msg.split(|b| *b == b'\r').next().unwrap().to_vec();
        if start.starts_with(b"SIP/2.0 100") && self.held.is_none() {
            self.held = Some((ts, eth, d, msg.to_vec()));
            return;
        }
        let (src, dst) = self.ends(d, server);
        let stream = self.stream_of(msg);
        let ssn = self.next_ssn(d, stream);
        let mut p = Vec::new();
        self.sack(d, &mut p);
        match self.held.take() {
            Some((_, _, hd, held)) if hd == d => {
                let hs = self.stream_of(&held);
                let hssn = self.next_ssn(d, hs);
                self.data(
                    d,
                    hs,
                    data_flags::BEGIN | data_flags::END,
                    hssn,
                    &held,
                    &mut p,
                );
            }
            other => {
                self.held = other;
                self.flush_held(server);
            }
        }
        if start.starts_with(b"INVITE") {
            // Three fragments on consecutive TSNs, sent 2nd, 1st, 3rd.
            let n = msg.len().div_ceil(3);
            let parts: Vec<&[u8]> = msg.chunks(n).collect();
            let flags = [data_flags::BEGIN, 0, data_flags::END];
            let mut frags = Vec::new();
            for (part, fl) in parts.iter().zip(flags) {
                let mut c = Vec::new();
                self.data(d, stream, fl, ssn, part, &mut c);
                frags.push(c);
            }
            let mut first = p;
            first.extend_from_slice(&frags[1]);
            self.packet(ts, eth, src, dst, &first);
            self.packet(ts + 1000, eth, src, dst, &frags[0]);
            self.packet(ts + 2000, eth, src, dst, &frags[2]);
            return;
        }
        self.data(
            d,
            stream,
            data_flags::BEGIN | data_flags::END,
            ssn,
            msg,
            &mut p,
        );
        self.packet(ts, eth, src, dst, &p);
        if !self.retransmitted && start.starts_with(b"SIP/2.0 200") {
            // The same chunk again, as a stack that missed the SACK would.
            self.retransmitted = true;
            self.packet(ts + 1000, eth, src, dst, &p);
        }
    }
}

/// The corpus call with its SIP moved onto SCTP; returns the file.
fn build(src_pcap: &Path, out: &Path) -> usize {
    let mut r = PcapReader::new(std::io::BufReader::new(
        std::fs::File::open(src_pcap).unwrap(),
    ))
    .unwrap();
    let mut dec = Decoder::new(Default::default());
    let mut b = Builder {
        w: PcapWriter::new(
            std::fs::File::create(out).unwrap(),
            LinkType::Ethernet,
            65535,
        )
        .unwrap(),
        client: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
        dirs: Default::default(),
        streams: HashMap::new(),
        held: None,
        retransmitted: false,
    };
    let mut server = b.client;
    let mut messages = 0;
    while let Some(p) = r.next_packet().unwrap() {
        assert_eq!(p.link, LinkType::Ethernet);
        let (ts, data) = (p.ts_ns, p.data.to_vec());
        let sip = match dec.decode(LinkType::Ethernet, ts, 0, &data) {
            Ok(Some(g)) if g.l4 == L4::Udp && (g.src.port() == 5060 || g.dst.port() == 5060) => {
                Some((g.src, g.dst, g.payload.to_vec()))
            }
            _ => None,
        };
        let Some((src, dst, msg)) = sip else {
            b.flush_held(server);
            b.w.write_packet(ts, data.len() as u32, &data).unwrap();
            continue;
        };
        let eth: [u8; 14] = data[..14].try_into().unwrap();
        if b.client.port() == 0 {
            b.client = src;
            server = dst;
            b.handshake(ts, eth, src, dst);
        }
        let d = b.dir(src);
        b.message(ts, eth, server, d, &msg);
        messages += 1;
    }
    b.flush_held(server);
    b.w.flush().unwrap();
    messages
}

#[test]
fn sip_over_sctp_matches_tshark() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("sctp-2calls.pcap");
    let sent = build(&corpus("generated/sipp-netns-udp-2calls.pcap"), &file);
    assert_eq!(sent, 12);
    // Our CRC32c is the one tshark checks.
    let f = file.to_str().unwrap();
    let good = voxtap_e2e::tshark(&[
        "-r",
        f,
        "-o",
        "sctp.checksum:CRC-32C",
        "-Y",
        "sctp.checksum.status == 1",
    ]);
    let all = voxtap_e2e::tshark(&["-r", f, "-Y", "sctp"]);
    assert_eq!(good.lines().count(), all.lines().count());
    assert!(all.lines().count() >= 21);
    let (out, report) = import(std::slice::from_ref(&file));
    let s = &report.stats.sctp;
    eprintln!("{:?}", report.transport_lines());
    assert_eq!((s.sip_messages, s.reassembled, s.duplicates), (12, 2, 1));
    // Every SIP message, once, as tshark reassembles them (retransmitted
    // DATA is not a new message), with the same times and endpoints.
    let ours = our_ladder(out.path());
    let theirs = tshark_ladder(&file, &["-Y", "sip && !sctp.retransmission"], "sctp");
    assert_eq!(theirs.len(), 2, "{theirs:?}");
    assert_eq!(ours, theirs);
    for (cid, rungs) in &ours {
        assert_eq!(rungs.len(), 6, "{cid}");
    }
    // The media (UDP, untouched) belongs to the calls as it did.
    let streams = read_csv(&out.path().join("streams.csv"));
    let mut t = tshark_rtp_streams(&file);
    assert_eq!(streams.len(), t.len());
    for row in &streams {
        let i = t
            .iter()
            .position(|x| {
                x.src == row["src"]
                    && x.dst == row["dst"]
                    && format!("0x{:08X}", x.ssrc) == row["ssrc_hex"]
            })
            .unwrap_or_else(|| panic!("{row:?} not in tshark's streams"));
        let x = t.remove(i);
        assert_eq!(row["packets"], x.packets.to_string());
        assert_eq!(row["lost"], x.lost.to_string());
        assert!(!row["call_id"].is_empty());
    }
    // SCTP as SIP's transport, in sip.txt and the index.
    let idx = voxtap_engine::index::Index::open(&out.path().join("index.sqlite")).unwrap();
    let page = idx.search(&Default::default()).unwrap();
    for c in page.rows {
        let d = idx.call_detail(c.id).unwrap().unwrap();
        assert!(d.sip.iter().all(|m| m.transport == "SCTP"));
    }
}
