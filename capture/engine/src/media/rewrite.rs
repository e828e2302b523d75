//! Replace the UDP payload of a captured frame (SRTP -> RTP) and fix what
//! depends on its length: UDP length and checksum, IPv4 total length and
//! header checksum, IPv6 payload length, for the innermost IP header and
//! every tunnel header around it. Everything else is copied unchanged.

use voxtap_proto::pcapio::LinkType;

/// Where the UDP header of a frame is, and the IP headers around it
/// (outermost first).
#[derive(Debug, Clone)]
struct Located {
    ips: Vec<(usize, u8)>, // (offset, version)
    udp: usize,
}

fn locate(link: LinkType, f: &[u8]) -> Option<Located> {
    let mut off = match link {
        LinkType::Ethernet => {
            let mut o = 12;
            loop {
                let ty = u16::from_be_bytes([*f.get(o)?, *f.get(o + 1)?]);
                match ty {
                    0x8100 | 0x88A8 | 0x9100 => o += 4,
                    0x0800 | 0x86DD => break o + 2,
                    _ => return None,
                }
                if o > 12 + 4 * 8 {
                    return None;
                }
            }
        }
        LinkType::LinuxSll => 16,
        LinkType::LinuxSll2 => 20,
        LinkType::Null | LinkType::Loop => 4,
        LinkType::Raw | LinkType::Ipv4 | LinkType::Ipv6 => 0,
    };
    let mut ips = Vec::new();
    for _ in 0..5 {
        let v = *f.get(off)? >> 4;
        ips.push((off, v));
        let (next, hl) = match v {
            4 => {
                let ihl = usize::from(f.get(off)? & 0x0F) * 4;
                // Fragments are left alone: their checksum spans other frames.
                let frag = u16::from_be_bytes([*f.get(off + 6)?, *f.get(off + 7)?]);
                if frag & 0x3FFF != 0 || ihl < 20 {
                    return None;
                }
                (*f.get(off + 9)?, ihl)
            }
            6 => {
                let mut nh = *f.get(off + 6)?;
                let mut hl = 40;
                while matches!(nh, 0 | 43 | 60) {
                    let e = off + hl;
                    nh = *f.get(e)?;
                    hl += (usize::from(*f.get(e + 1)?) + 1) * 8;
                }
                (nh, hl)
            }
            _ => return None,
        };
        off += hl;
        match next {
            17 => return Some(Located { ips, udp: off }),
            4 | 41 => continue,
            _ => return None,
        }
    }
    None
}

fn csum_add(mut sum: u32, data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [b] = chunks.remainder() {
        sum += u32::from(*b) << 8;
    }
    sum
}

fn csum_fold(mut sum: u32) -> u16 {
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}

/// The frame with its UDP payload replaced by `payload`, or None when the
/// frame is not a plain (unfragmented) UDP frame we can rewrite.
pub fn replace_udp_payload(link: LinkType, frame: &[u8], payload: &[u8]) -> Option<Vec<u8>> {
    let loc = locate(link, frame)?;
    let udp = loc.udp;
    let old_udp_len = usize::from(u16::from_be_bytes([
        *frame.get(udp + 4)?,
        *frame.get(udp + 5)?,
    ]));
    if old_udp_len < 8 || udp + old_udp_len > frame.len() {
        return None;
    }
    let new_udp_len = 8 + payload.len();
    let new_udp_len16 = u16::try_from(new_udp_len).ok()?;
    let delta = new_udp_len as isize - old_udp_len as isize;
    let mut out = Vec::with_capacity(frame.len() + payload.len());
    out.extend_from_slice(&frame[..udp + 8]);
    out.extend_from_slice(payload);
    out.extend_from_slice(&frame[udp + old_udp_len..]);
    out[udp + 4..udp + 6].copy_from_slice(&new_udp_len16.to_be_bytes());
    for &(off, v) in &loc.ips {
        if v == 4 {
            let tl = u16::from_be_bytes([out[off + 2], out[off + 3]]) as isize + delta;
            out[off + 2..off + 4].copy_from_slice(&u16::try_from(tl).ok()?.to_be_bytes());
            let ihl = usize::from(out[off] & 0x0F) * 4;
            out[off + 10] = 0;
            out[off + 11] = 0;
            let c = csum_fold(csum_add(0, &out[off..off + ihl]));
            out[off + 10..off + 12].copy_from_slice(&c.to_be_bytes());
        } else {
            let pl = u16::from_be_bytes([out[off + 4], out[off + 5]]) as isize + delta;
            out[off + 4..off + 6].copy_from_slice(&u16::try_from(pl).ok()?.to_be_bytes());
        }
    }
    // UDP checksum over the innermost IP's pseudo-header.
    let &(ip, v) = loc.ips.last()?;
    let old_ck = u16::from_be_bytes([frame[udp + 6], frame[udp + 7]]);
    if v == 4 && old_ck == 0 {
        return Some(out); // IPv4 UDP without checksum stays without one
    }
    out[udp + 6] = 0;
    out[udp + 7] = 0;
    let mut sum = if v == 4 {
        csum_add(0, &out[ip + 12..ip + 20])
    } else {
        csum_add(0, &out[ip + 8..ip + 40])
    };
    sum += 17 + new_udp_len as u32;
    sum = csum_add(sum, &out[udp..udp + new_udp_len]);
    let mut c = csum_fold(sum);
    if c == 0 {
        c = 0xFFFF;
    }
    out[udp + 6..udp + 8].copy_from_slice(&c.to_be_bytes());
    Some(out)
}

/// A SIP message whose SDP offers SRTP (`RTP/SAVP`, `RTP/SAVPF`) rewritten
/// to announce plain RTP, with its Content-Length fixed; None when there is
/// nothing to rewrite.
pub fn plain_sdp(sip: &[u8]) -> Option<Vec<u8>> {
    let split = memchr::memmem::find(sip, b"\r\n\r\n")? + 4;
    let (head, body) = sip.split_at(split);
    memchr::memmem::find(body, b"RTP/SAVP")?;
    let mut new_body = Vec::with_capacity(body.len());
    let mut rest = body;
    while let Some(i) = memchr::memmem::find(rest, b"RTP/SAVP") {
        new_body.extend_from_slice(&rest[..i]);
        new_body.extend_from_slice(b"RTP/AVP");
        rest = &rest[i + b"RTP/SAVP".len()..];
    }
    new_body.extend_from_slice(rest);
    let mut out = Vec::with_capacity(sip.len());
    let mut fixed = false;
    for line in head.split_inclusive(|&b| b == b'\n') {
        let name_end = line.iter().position(|&b| b == b':');
        let is_cl = name_end.is_some_and(|e| {
            let n = line[..e].trim_ascii();
            n.eq_ignore_ascii_case(b"content-length") || n.eq_ignore_ascii_case(b"l")
        });
        if is_cl && !fixed {
            let e = name_end.unwrap_or(0);
            out.extend_from_slice(&line[..=e]);
            out.extend_from_slice(format!(" {}\r\n", new_body.len()).as_bytes());
            fixed = true;
        } else {
            out.extend_from_slice(line);
        }
    }
    if !fixed {
        return None;
    }
    out.extend_from_slice(&new_body);
    Some(out)
}

#[cfg(test)]
mod sdp_tests {
    use super::*;

    #[test]
    fn savp_becomes_avp_with_length_fixed() {
        let body =
            "v=0\r\nm=audio 4000 RTP/SAVP 0\r\na=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:x\r\n";
        let msg = format!(
            "INVITE sip:b@x SIP/2.0\r\nCall-ID: a\r\nl: {}\r\n\r\n{body}",
            body.len()
        );
        let out = plain_sdp(msg.as_bytes()).unwrap();
        let m = voxtap_proto::sip::parse(&out).unwrap();
        assert_eq!(m.content_length(), Some(body.len() - 1));
        assert_eq!(m.body(), body.replace("RTP/SAVP", "RTP/AVP").as_bytes());
        assert!(plain_sdp(b"INVITE sip:b@x SIP/2.0\r\nl: 0\r\n\r\n").is_none());
    }
}
