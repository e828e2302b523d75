//! DTMF: RFC 4733 (ex-2833) telephone-events in RTP, and SIP INFO digits
//! (application/dtmf-relay `Signal=`, application/dtmf). Pure.

use std::collections::HashMap;
use std::net::SocketAddr;

use voxtap_proto::rtp::RtpPacket;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtmfSource {
    Rfc4733,
    SipInfo,
}

impl DtmfSource {
    pub fn as_str(self) -> &'static str {
        match self {
            DtmfSource::Rfc4733 => "rfc4733",
            DtmfSource::SipInfo => "sip_info",
        }
    }
}

/// One key press, reported once.
#[derive(Clone, Debug, PartialEq)]
pub struct DtmfEvent {
    /// Capture time of the first packet/message of the event.
    pub ts_ns: u64,
    pub digit: char,
    pub source: DtmfSource,
    /// RFC 4733: the longest duration seen (end packet's), in ms. SIP INFO:
    /// the Duration= field if any.
    pub duration_ms: Option<f64>,
    pub src: Option<SocketAddr>,
    pub dst: Option<SocketAddr>,
    pub ssrc: Option<u32>,
    /// RFC 4733 volume (dBm0 below 0), if any.
    pub volume: Option<u8>,
    /// RFC 4733: an end-of-event packet was seen.
    pub ended: bool,
}

/// RFC 4733 section 3.2 event codes 0-16 as characters.
pub(crate) fn event_char(code: u8) -> Option<char> {
    Some(match code {
        0..=9 => char::from(b'0' + code),
        10 => '*',
        11 => '#',
        12..=15 => char::from(b'A' + code - 12),
        16 => '!', // hook flash
        _ => return None,
    })
}

/// Collects RFC 4733 events from RTP packets. One event is one (SSRC, RTP
/// timestamp) pair: every update and the three end-of-event retransmissions
/// share it, so the event is reported once with its final duration.
#[derive(Default)]
pub(crate) struct Rfc4733Detector {
    events: Vec<DtmfEvent>,
    index: HashMap<(u32, u32), usize>,
}

impl Rfc4733Detector {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed one RTP payload already known to be telephone-event.
    #[allow(clippy::too_many_arguments)]
    pub fn push_payload(
        &mut self,
        ts_ns: u64,
        src: Option<SocketAddr>,
        dst: Option<SocketAddr>,
        ssrc: u32,
        rtp_ts: u32,
        clock_rate: u32,
        payload: &[u8],
    ) {
        // Only the first event block matters for digits; redundancy (RFC
        // 4733 section 2.5.1.5, several blocks) repeats older events.
        let [code, flags, d0, d1, ..] = *payload else {
            return;
        };
        let Some(digit) = event_char(code) else {
            return;
        };
        let dur_ms =
            f64::from(u16::from_be_bytes([d0, d1])) * 1000.0 / f64::from(clock_rate.max(1));
        let ended = flags & 0x80 != 0;
        match self.index.get(&(ssrc, rtp_ts)) {
            Some(&i) => {
                let e = &mut self.events[i];
                if e.duration_ms.is_none_or(|d| dur_ms > d) {
                    e.duration_ms = Some(dur_ms);
                }
                e.ended |= ended;
            }
            None => {
                self.index.insert((ssrc, rtp_ts), self.events.len());
                self.events.push(DtmfEvent {
                    ts_ns,
                    digit,
                    source: DtmfSource::Rfc4733,
                    duration_ms: Some(dur_ms),
                    src,
                    dst,
                    ssrc: Some(ssrc),
                    volume: Some(flags & 0x3F),
                    ended,
                });
            }
        }
    }

    pub fn finish(mut self) -> Vec<DtmfEvent> {
        self.events.sort_by_key(|e| e.ts_ns);
        self.events
    }
}

/// DTMF events in bare RTP packets `(capture time, RTP packet)`, e.g. a
/// capture without SIP. `event_pts`: the telephone-event payload types if
/// known (from SDP); when empty, a dynamic PT (96-127) whose payloads are
/// all 4-byte event blocks with a valid code and marker on the first packet
/// of an event is taken as telephone-event.
pub fn detect_rtp<'a>(
    packets: impl IntoIterator<Item = (u64, &'a [u8])>,
    event_pts: &[u8],
) -> Vec<DtmfEvent> {
    let mut det = Rfc4733Detector::new();
    for (ts_ns, pkt) in packets {
        let Ok(rtp) = RtpPacket::new_checked(pkt) else {
            continue;
        };
        let (pt, payload) = (rtp.payload_type(), rtp.payload());
        let is_event = if event_pts.is_empty() {
            (96..=127).contains(&pt)
                && matches!(payload, [code, flags, _, _] if *code <= 16 && flags & 0x40 == 0)
        } else {
            event_pts.contains(&pt)
        };
        if !is_event {
            continue;
        }
        det.push_payload(
            ts_ns,
            None,
            None,
            rtp.ssrc(),
            rtp.timestamp(),
            8000,
            payload,
        );
    }
    det.finish()
}

/// A digit from a SIP INFO body, if the body is DTMF: `application/dtmf-relay`
/// (`Signal=5` / `Duration=160`) or `application/dtmf` (the digit alone).
pub(crate) fn sip_info_digit(content_type: &str, body: &str) -> Option<(char, Option<f64>)> {
    let ct = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match ct.as_str() {
        "application/dtmf-relay" => {
            let mut digit = None;
            let mut dur = None;
            for line in body.lines() {
                let Some((k, v)) = line.split_once('=') else {
                    continue;
                };
                let v = v.trim();
                match k.trim().to_ascii_lowercase().as_str() {
                    "signal" => digit = signal_char(v),
                    "duration" => dur = v.parse::<f64>().ok(),
                    _ => {}
                }
            }
            digit.map(|d| (d, dur))
        }
        "application/dtmf" => signal_char(body.trim()).map(|d| (d, None)),
        _ => None,
    }
}

/// `5`, `*`, `#`, `A`, or the numeric codes 10/11 some phones send.
fn signal_char(v: &str) -> Option<char> {
    let mut ch = v.chars();
    match (ch.next(), ch.next()) {
        (Some(c), None) if c.is_ascii_digit() || matches!(c, '*' | '#') => Some(c),
        (Some(c), None) if ('A'..='D').contains(&c.to_ascii_uppercase()) => {
            Some(c.to_ascii_uppercase())
        }
        _ => v.parse::<u8>().ok().and_then(event_char),
    }
}

/// The DTMF digits of a call's SIP INFO requests (`(capture time, src, dst,
/// whole message text)`).
pub(crate) fn sip_info_events<'a>(
    messages: impl IntoIterator<Item = (u64, SocketAddr, SocketAddr, &'a str)>,
) -> Vec<DtmfEvent> {
    let mut out = Vec::new();
    for (ts_ns, src, dst, text) in messages {
        if !text.starts_with("INFO ") {
            continue;
        }
        let (head, body) = text
            .split_once("\r\n\r\n")
            .or_else(|| text.split_once("\n\n"))
            .unwrap_or((text, ""));
        let ct = head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            let k = k.trim();
            (k.eq_ignore_ascii_case("content-type") || k == "c").then(|| v.trim())
        });
        if let Some((digit, dur)) = ct.and_then(|ct| sip_info_digit(ct, body)) {
            out.push(DtmfEvent {
                ts_ns,
                digit,
                source: DtmfSource::SipInfo,
                duration_ms: dur,
                src: Some(src),
                dst: Some(dst),
                ssrc: None,
                volume: None,
                ended: true,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_bodies() {
        assert_eq!(
            sip_info_digit("application/dtmf-relay", "Signal=5\r\nDuration=160\r\n"),
            Some(('5', Some(160.0)))
        );
        assert_eq!(sip_info_digit("application/dtmf", "#"), Some(('#', None)));
        assert_eq!(
            sip_info_digit("application/dtmf-relay", "Signal=11\r\n"),
            Some(('#', None))
        );
        assert_eq!(sip_info_digit("text/plain", "Signal=5"), None);
    }

    #[test]
    fn end_retransmissions_report_once() {
        let mut d = Rfc4733Detector::new();
        for (dur, end) in [
            (160u16, false),
            (320, false),
            (480, true),
            (480, true),
            (480, true),
        ] {
            let b = dur.to_be_bytes();
            d.push_payload(
                1,
                None,
                None,
                7,
                1000,
                8000,
                &[1, if end { 0x8A } else { 0x0A }, b[0], b[1]],
            );
        }
        let ev = d.finish();
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].digit, '1');
        assert_eq!(ev[0].duration_ms, Some(60.0));
        assert!(ev[0].ended);
    }
}
