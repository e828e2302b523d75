//! Opus (RFC 7587) through libopus, at 48 kHz, mono or stereo as the
//! fmtp's `stereo=1` says. Loss: libopus's concealment.

use crate::{AudioDecoder, CodecError, Concealment};

/// 120 ms at 48 kHz: the longest Opus packet.
const MAX_FRAMES: usize = 5760;

pub struct OpusDecoder {
    dec: opus::Decoder,
    channels: u8,
    buf: Vec<i16>,
    /// Samples per channel of the last packet: the size of a concealed frame.
    last_frames: usize,
}

impl OpusDecoder {
    pub fn new(channels: u8) -> Result<OpusDecoder, CodecError> {
        let (ch, n) = if channels == 2 {
            (opus::Channels::Stereo, 2)
        } else {
            (opus::Channels::Mono, 1)
        };
        let dec = opus::Decoder::new(48_000, ch).map_err(|e| CodecError::Opus(e.to_string()))?;
        Ok(OpusDecoder {
            dec,
            channels: n,
            buf: vec![0; MAX_FRAMES * 2],
            last_frames: 960,
        })
    }
}

impl AudioDecoder for OpusDecoder {
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), CodecError> {
        if payload.is_empty() {
            return Err(CodecError::Malformed("empty Opus payload"));
        }
        let ch = usize::from(self.channels);
        let buf = &mut self.buf[..MAX_FRAMES * ch];
        let n = self
            .dec
            .decode(payload, buf, false)
            .map_err(|e| CodecError::Opus(e.to_string()))?;
        out.extend_from_slice(&buf[..(n * ch).min(buf.len())]);
        if n > 0 {
            self.last_frames = n;
        }
        Ok(())
    }

    fn conceal(&mut self, frames: usize, out: &mut Vec<i16>) {
        let ch = usize::from(self.channels);
        let target = out.len() + frames * ch;
        while out.len() < target {
            let buf = &mut self.buf[..self.last_frames.min(MAX_FRAMES) * ch];
            match self.dec.decode(&[], buf, false) {
                Ok(n) if n > 0 => out.extend_from_slice(&buf[..n * ch]),
                _ => out.resize(target, 0),
            }
        }
        out.truncate(target);
    }

    fn sample_rate(&self) -> u32 {
        48_000
    }

    fn channels(&self) -> u8 {
        self.channels
    }

    fn concealment(&self) -> Concealment {
        Concealment::Plc
    }
}
