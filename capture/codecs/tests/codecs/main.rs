//! The codecs crate's integration tests, one binary: each decoder against
//! its reference decoder (`reference`), the licence check (`licence`) and
//! the ignored decode-speed benchmark (`bench`). The reference programs in
//! `tests/reference/*.c` are built with gcc by `common`.

mod common;

mod bench;
mod licence;
mod reference;
