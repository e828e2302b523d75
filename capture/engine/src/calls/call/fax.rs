//! T.38 fax on a call: once an offer/answer turned a media line into
//! `m=image ... udptl t38`, the packets on it are UDPTL (ITU-T T.38 clause
//! 9.1), never RTP, and are counted per direction here.

use std::net::SocketAddr;

use super::Call;

/// One direction of a fax: its UDPTL packets.
#[derive(Clone, Debug)]
pub struct FaxStream {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub packets: u64,
    /// UDPTL payload bytes (primary IFP packets and their redundancy).
    pub bytes: u64,
    pub first_ns: u64,
    pub last_ns: u64,
    pub first_seq: u16,
    /// The highest sequence number seen, extended past wraps, relative to
    /// the first packet's.
    max_ext: i64,
    /// Packets whose sequence number was behind the highest one seen
    /// (reordered or repeated).
    pub late: u64,
}

impl FaxStream {
    fn new(src: SocketAddr, dst: SocketAddr, ts_ns: u64, seq: u16) -> Self {
        FaxStream {
            src,
            dst,
            packets: 0,
            bytes: 0,
            first_ns: ts_ns,
            last_ns: ts_ns,
            first_seq: seq,
            max_ext: 0,
            late: 0,
        }
    }

    fn update(&mut self, ts_ns: u64, seq: u16, len: usize) {
        let max_seq = self.first_seq.wrapping_add(self.max_ext as u16);
        let ext = self.max_ext + i64::from(seq.wrapping_sub(max_seq) as i16);
        if self.packets > 0 && ext <= self.max_ext {
            self.late += 1;
        }
        self.max_ext = self.max_ext.max(ext);
        self.packets += 1;
        self.bytes += len as u64;
        self.first_ns = self.first_ns.min(ts_ns);
        self.last_ns = self.last_ns.max(ts_ns);
    }

    /// The highest sequence number seen.
    pub fn last_seq(&self) -> u16 {
        self.first_seq.wrapping_add(self.max_ext as u16)
    }

    /// Packets the sequence numbers say were sent, from the first to the
    /// highest seen.
    pub fn expected(&self) -> u64 {
        self.max_ext.max(0) as u64 + 1
    }

    /// Sequence gaps: expected minus received (negative with repeats).
    pub fn lost(&self) -> i64 {
        self.expected() as i64 - self.packets as i64
    }

    pub fn duration_s(&self) -> f64 {
        self.last_ns.saturating_sub(self.first_ns) as f64 / 1e9
    }
}

use crate::calls::endpoints::is_fax as is_t38;

impl Call {
    /// A UDPTL datagram from `src` to `dst` on a fax media line (its packets
    /// were noted with the call's media). False when it is too short to
    /// carry a sequence number.
    pub(in crate::calls) fn on_udptl(
        &mut self,
        src: SocketAddr,
        dst: SocketAddr,
        ts_ns: u64,
        payload: &[u8],
    ) -> bool {
        let Some(seq) = payload.first_chunk::<2>().map(|b| u16::from_be_bytes(*b)) else {
            return false;
        };
        let fax = &mut self.rare_mut().fax;
        let i = match fax.iter().position(|f| f.src == src && f.dst == dst) {
            Some(i) => i,
            None => {
                fax.push(FaxStream::new(src, dst, ts_ns, seq));
                fax.len() - 1
            }
        };
        fax[i].update(ts_ns, seq, payload.len());
        true
    }

    /// An SDP turned m= line `media_idx` into T.38: the call turned into
    /// fax at the answer that agreed to it (a T.38 line carried by another
    /// kind of message than an earlier one), until then at the offer.
    pub(in crate::calls) fn note_t38(&mut self, media_idx: usize) {
        let Some(m) = self.media.get(media_idx) else {
            return;
        };
        let earlier = || self.media[..media_idx].iter().filter(|o| is_t38(o));
        let answers = earlier().any(|o| o.announced_by() != m.announced_by());
        let answered_before =
            earlier().any(|o| earlier().any(|x| x.announced_by() != o.announced_by()));
        let fax_ns = m.announced_ns;
        if self.fax_ns().is_none() || (answers && !answered_before) {
            self.rare_mut().fax_ns = Some(fax_ns);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequence_gaps_wraps_and_late_packets() {
        let a: SocketAddr = "10.0.0.1:4000".parse().unwrap();
        let b: SocketAddr = "10.0.0.2:4000".parse().unwrap();
        let mut f = FaxStream::new(a, b, 0, 65530);
        for (i, seq) in [65530u16, 65531, 65533, 65532, 0, 1, 3].iter().enumerate() {
            f.update(i as u64 * 20_000_000, *seq, 30);
        }
        assert_eq!(f.packets, 7);
        assert_eq!(f.last_seq(), 3);
        assert_eq!(f.expected(), 10);
        assert_eq!(f.lost(), 3);
        assert_eq!(f.late, 1);
        assert!((f.duration_s() - 0.12).abs() < 1e-9);
    }
}
