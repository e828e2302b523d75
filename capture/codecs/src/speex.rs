//! Speex (RFC 5574) through libspeex: a payload holds one or more frames
//! back to back (optionally ended by a terminator); narrowband 8 kHz,
//! wideband 16 kHz or ultra-wideband 32 kHz as the rtpmap's clock says.
//! Loss: libspeex's own concealment. The perceptual enhancer is on, as is
//! libspeex's default.

use crate::ffi::{self, SPEEX_MAX_FRAME, SpeexFrame};
use crate::{AudioDecoder, CodecError, Concealment, Unavailable};

pub struct SpeexDecoder {
    lib: ffi::Speex,
    rate: u32,
    pcm: [i16; SPEEX_MAX_FRAME],
}

impl SpeexDecoder {
    pub fn new(rate: u32) -> Result<SpeexDecoder, CodecError> {
        let mode = match rate {
            8000 => 0,
            16_000 => 1,
            32_000 => 2,
            _ => return Err(Unavailable::Mode("Speex at this clock rate").into()),
        };
        Ok(SpeexDecoder {
            lib: ffi::Speex::new(mode).ok_or(CodecError::Init("libspeex"))?,
            rate,
            pcm: [0; SPEEX_MAX_FRAME],
        })
    }
}

impl AudioDecoder for SpeexDecoder {
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), CodecError> {
        if payload.is_empty() {
            return Err(CodecError::Malformed("empty Speex payload"));
        }
        self.lib.load(payload);
        let n = self.lib.frame_size();
        let mut frames = 0;
        loop {
            match self.lib.next_frame(&mut self.pcm) {
                SpeexFrame::Decoded => {
                    out.extend_from_slice(&self.pcm[..n]);
                    frames += 1;
                }
                SpeexFrame::End => break,
                // Keep what decoded before the damage.
                SpeexFrame::Corrupt if frames > 0 => break,
                SpeexFrame::Corrupt => return Err(CodecError::Malformed("corrupt Speex frame")),
            }
        }
        if frames == 0 {
            return Err(CodecError::Malformed("no Speex frame in the payload"));
        }
        Ok(())
    }

    fn conceal(&mut self, frames: usize, out: &mut Vec<i16>) {
        let n = self.lib.frame_size();
        let target = out.len() + frames;
        while out.len() < target {
            self.lib.conceal(&mut self.pcm);
            out.extend_from_slice(&self.pcm[..n]);
        }
        out.truncate(target);
    }

    fn sample_rate(&self) -> u32 {
        self.rate
    }

    fn channels(&self) -> u8 {
        1
    }

    fn concealment(&self) -> Concealment {
        Concealment::Plc
    }
}
