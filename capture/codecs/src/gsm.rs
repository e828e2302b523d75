//! GSM 06.10 full rate through libgsm: RTP payloads of whole 33-octet
//! frames (RFC 3551 section 4.5.8), 160 samples each.
//!
//! Loss: libgsm has no concealment, so we do what GSM 06.11 recommends:
//! repeat the last good frame's parameters, muting step by step until
//! silence after 320 ms.

use crate::ffi;
use crate::{AudioDecoder, CodecError, Concealment};

const FRAME: usize = 33;
/// 16 frames = 320 ms of substitution before full muting (GSM 06.11).
const MUTE_AFTER: u32 = 16;

pub struct GsmDecoder {
    lib: ffi::Gsm,
    last: Option<[u8; FRAME]>,
    lost_run: u32,
    pcm: [i16; 160],
}

impl GsmDecoder {
    pub fn new() -> Result<GsmDecoder, CodecError> {
        Ok(GsmDecoder {
            lib: ffi::Gsm::new().ok_or(CodecError::Init("libgsm"))?,
            last: None,
            lost_run: 0,
            pcm: [0; 160],
        })
    }
}

impl AudioDecoder for GsmDecoder {
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), CodecError> {
        if payload.is_empty() || !payload.len().is_multiple_of(FRAME) {
            return Err(CodecError::Malformed(
                "GSM payload is not whole 33-octet frames",
            ));
        }
        if payload.chunks_exact(FRAME).any(|f| f[0] >> 4 != 0xD) {
            return Err(CodecError::Malformed("GSM frame without its 0xD signature"));
        }
        out.reserve(payload.len() / FRAME * 160);
        for f in payload.chunks_exact(FRAME) {
            let mut frame = [0u8; FRAME];
            frame.copy_from_slice(f);
            self.lib.decode(&frame, &mut self.pcm);
            out.extend_from_slice(&self.pcm);
            self.last = Some(frame);
        }
        self.lost_run = 0;
        Ok(())
    }

    fn conceal(&mut self, frames: usize, out: &mut Vec<i16>) {
        let target = out.len() + frames;
        while out.len() < target {
            self.lost_run += 1;
            match self.last {
                Some(frame) if self.lost_run <= MUTE_AFTER => {
                    self.lib.decode(&frame, &mut self.pcm);
                    let gain = 1.0 - (self.lost_run - 1) as f32 / MUTE_AFTER as f32;
                    out.extend(self.pcm.iter().map(|&s| (f32::from(s) * gain) as i16));
                }
                _ => out.resize(out.len() + 160, 0),
            }
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
