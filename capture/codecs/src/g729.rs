//! G.729 / G.729A / G.729B through bcg729 (GPL-3, so only in a build with
//! the `gpl-codecs` feature): payloads of 10-octet frames (10 ms each),
//! possibly ending with a 2-octet Annex B SID frame (RFC 3551 section
//! 4.5.6). Loss and DTX gaps: bcg729's erasure concealment, or comfort
//! noise when the last frame was a SID.

use crate::ffi::{self, G729Frame};
use crate::{AudioDecoder, CodecError, Concealment};

pub struct G729Decoder {
    lib: ffi::Bcg729,
    pcm: [i16; 80],
}

impl G729Decoder {
    pub fn new() -> Result<G729Decoder, CodecError> {
        Ok(G729Decoder {
            lib: ffi::Bcg729::new().ok_or(CodecError::Init("bcg729"))?,
            pcm: [0; 80],
        })
    }
}

impl AudioDecoder for G729Decoder {
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), CodecError> {
        let sid = match payload.len() % 10 {
            0 => false,
            2 => true,
            _ => {
                return Err(CodecError::Malformed(
                    "G.729 payload is not 10-octet frames",
                ));
            }
        };
        if payload.is_empty() {
            return Err(CodecError::Malformed("empty G.729 payload"));
        }
        let speech = payload.len() / 10;
        out.reserve((speech + usize::from(sid)) * 80);
        for f in payload.chunks_exact(10) {
            let mut frame = [0u8; 10];
            frame.copy_from_slice(f);
            self.lib.decode(G729Frame::Speech(&frame), &mut self.pcm);
            out.extend_from_slice(&self.pcm);
        }
        if sid {
            let s = [payload[speech * 10], payload[speech * 10 + 1]];
            self.lib.decode(G729Frame::Sid(&s), &mut self.pcm);
            out.extend_from_slice(&self.pcm);
        }
        Ok(())
    }

    fn conceal(&mut self, frames: usize, out: &mut Vec<i16>) {
        let target = out.len() + frames;
        while out.len() < target {
            self.lib.decode(G729Frame::Missing, &mut self.pcm);
            out.extend_from_slice(&self.pcm);
        }
        out.truncate(target);
    }

    fn sample_rate(&self) -> u32 {
        8000
    }

    fn channels(&self) -> u8 {
        1
    }

    fn concealment(&self) -> Concealment {
        Concealment::Plc
    }
}
