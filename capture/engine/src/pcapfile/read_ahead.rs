//! Reading a capture on a thread of its own, ahead of the parser: an
//! import of one file spent about a tenth of its reading thread's time in
//! `read(2)` (copying the page cache, or waiting for the disk), time the
//! parser could not use. Here a reading thread fills 1 MiB buffers while
//! the caller parses the previous one; three buffers go round (one being
//! parsed, one filled, one waiting), so memory stays at 3 MiB whatever the
//! file's size. It lowers the wall time on two cores or more, not the CPU.

use std::io::{self, Read};
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, bounded};

/// Bytes read per buffer: large enough that the channel hand-over (two
/// channel operations) is nothing beside filling it.
const CHUNK: usize = 1 << 20;

/// Buffers going round between the two threads.
const BUFFERS: usize = 3;

/// A filled buffer and how much of it is filled, or the read error.
type Filled = io::Result<(Vec<u8>, usize)>;

/// A `Read` whose bytes are read from `R` by another thread, in order. A
/// read error reaches the caller after every byte read before it, as it
/// would have without the thread.
pub struct ReadAhead {
    /// Filled buffers and how much of each is filled, in file order (an
    /// error ends them).
    full: Option<Receiver<Filled>>,
    /// Emptied buffers, back to the reading thread.
    empty: Option<Sender<Vec<u8>>>,
    cur: Vec<u8>,
    /// Bytes of `cur` filled, and read by the caller.
    len: usize,
    at: usize,
    done: bool,
    thread: Option<JoinHandle<()>>,
}

impl ReadAhead {
    /// Starts the reading thread on `r`.
    pub fn new<R: Read + Send + 'static>(r: R) -> io::Result<ReadAhead> {
        let (full_tx, full) = bounded(BUFFERS);
        let (empty, empty_rx) = bounded(BUFFERS);
        let thread = std::thread::Builder::new()
            .name("read-ahead".into())
            .spawn(move || fill(r, &full_tx, &empty_rx))?;
        Ok(ReadAhead {
            full: Some(full),
            empty: Some(empty),
            cur: Vec::new(),
            len: 0,
            at: 0,
            done: false,
            thread: Some(thread),
        })
    }

    /// Makes the next filled buffer current; false at the end (the reading
    /// thread has finished and every buffer was taken).
    fn next_buffer(&mut self) -> io::Result<bool> {
        let Some(full) = &self.full else {
            return Ok(false);
        };
        let (next, len) = match full.recv() {
            Ok(Ok(filled)) => filled,
            Ok(Err(e)) => {
                self.done = true;
                return Err(e);
            }
            Err(_) => {
                self.done = true;
                return Ok(false);
            }
        };
        let used = std::mem::replace(&mut self.cur, next);
        self.len = len;
        self.at = 0;
        // The reading thread may have stopped (end of file); the buffer
        // is then simply dropped.
        if used.capacity() > 0
            && let Some(empty) = &self.empty
        {
            let _ = empty.try_send(used);
        }
        Ok(true)
    }
}

/// The reading thread: fills buffers until the end of `r` or an error,
/// sending each in order. Stops early when the `ReadAhead` is dropped.
fn fill<R: Read>(mut r: R, full: &Sender<io::Result<(Vec<u8>, usize)>>, empty: &Receiver<Vec<u8>>) {
    let mut made = 0;
    loop {
        // Zeroed once, when made: zeroing each time cost as many
        // instructions as the file has bytes.
        let mut buf = if made < BUFFERS {
            made += 1;
            vec![0u8; CHUNK]
        } else {
            match empty.recv() {
                Ok(b) => b,
                Err(_) => return,
            }
        };
        let (n, res) = read_chunk(&mut r, &mut buf);
        let end = res.is_err() || n < CHUNK;
        // Bytes read before an error go first, then the error.
        let sent = match res {
            Ok(()) if n == 0 => return,
            Ok(()) => full.send(Ok((buf, n))),
            Err(e) if n == 0 => full.send(Err(e)),
            Err(e) => full.send(Ok((buf, n))).and_then(|()| full.send(Err(e))),
        };
        if sent.is_err() || end {
            return;
        }
    }
}

/// Reads into `buf` until it is full or `r` ends: how many bytes it holds
/// (on an error too, with what was read before it).
fn read_chunk<R: Read>(r: &mut R, buf: &mut [u8]) -> (usize, io::Result<()>) {
    let mut n = 0;
    let res = loop {
        let Some(rest) = buf.get_mut(n..).filter(|s| !s.is_empty()) else {
            break Ok(());
        };
        match r.read(rest) {
            Ok(0) => break Ok(()),
            Ok(k) => n += k.min(rest.len()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => break Err(e),
        }
    };
    (n, res)
}

impl Read for ReadAhead {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        while self.at >= self.len {
            if self.done || !self.next_buffer()? {
                return Ok(0);
            }
        }
        let src = self.cur.get(self.at..self.len).unwrap_or(&[]);
        let n = src.len().min(out.len());
        out[..n].copy_from_slice(&src[..n]);
        self.at += n;
        Ok(n)
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        // Closing both channels wakes the reading thread wherever it waits.
        self.full = None;
        self.empty = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes no two offsets of which repeat in a short period (a 64-bit
    /// LCG's high byte), so a chunk out of order or repeated shows.
    fn bytes(n: usize) -> Vec<u8> {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                (x >> 56) as u8
            })
            .collect()
    }

    /// Reads everything with reads of `step` bytes.
    fn read_all(mut r: impl Read, step: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; step];
        loop {
            match r.read(&mut buf)? {
                0 => return Ok(out),
                n => out.extend_from_slice(&buf[..n]),
            }
        }
    }

    #[test]
    fn gives_every_byte_in_order() {
        for n in [0, 1, 16, CHUNK - 1, CHUNK, CHUNK + 1, 7 * CHUNK / 2] {
            let data = bytes(n);
            for step in [1 << 16, 16, 4097] {
                if n > 2 * CHUNK && step < 4096 {
                    continue; // the same path, only slower
                }
                let r = ReadAhead::new(io::Cursor::new(data.clone())).unwrap();
                let got = read_all(r, step).unwrap();
                assert!(got == data, "{n} bytes in reads of {step}: {}", got.len());
            }
        }
    }

    /// A reader giving a few bytes a call, and failing after `fail_at`.
    struct Dribble {
        data: Vec<u8>,
        at: usize,
        fail_at: usize,
    }

    impl Read for Dribble {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.at >= self.fail_at {
                return Err(io::Error::other("disk on fire"));
            }
            let n = out.len().min(1000).min(self.fail_at - self.at);
            let n = n.min(self.data.len() - self.at);
            out[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    #[test]
    fn an_error_comes_after_the_bytes_before_it() {
        for fail_at in [0, 5_000, CHUNK, CHUNK + 5_000] {
            let data = bytes(2 * CHUNK);
            let mut r = ReadAhead::new(Dribble {
                data: data.clone(),
                at: 0,
                fail_at,
            })
            .unwrap();
            let mut got = Vec::new();
            let mut buf = vec![0u8; 3000];
            let err = loop {
                match r.read(&mut buf) {
                    Ok(0) => panic!("end of file instead of the error"),
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) => break e,
                }
            };
            assert_eq!(err.to_string(), "disk on fire");
            assert!(
                got == data[..fail_at],
                "{} bytes before failing at {fail_at}",
                got.len()
            );
            // After the error: the end, as a reader that stopped.
            assert_eq!(r.read(&mut buf).unwrap(), 0);
        }
    }

    #[test]
    fn dropped_before_the_end_stops_its_thread() {
        let mut r = ReadAhead::new(io::Cursor::new(bytes(10 * CHUNK))).unwrap();
        let mut buf = [0u8; 100];
        assert_eq!(r.read(&mut buf).unwrap(), 100);
        // Drop joins the thread: a thread blocked on a full channel would
        // hang this test.
        drop(r);
    }
}
