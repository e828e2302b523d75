//! Helpers shared by the tests of every voxtap crate: where the corpus is,
//! tshark as the independent reference, CSV reading, the network-namespace
//! lab of the live tests, and (features `http`, `browser`) logging in to the
//! web UI and driving it in headless Chromium.
//!
//! It depends on no voxtap crate, so any of them can dev-depend on it; a
//! helper that needs a voxtap type stays in that crate's tests.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub mod csv;
#[cfg(target_os = "linux")]
pub mod lab;
#[cfg(target_os = "linux")]
pub mod pg;
pub mod tshark;

#[cfg(feature = "browser")]
pub mod browser;
#[cfg(feature = "http")]
pub mod http;

/// The repository's root (this crate is `tests/kit` in it).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `shared/corpus` beside the repository (CI clones the repo next to it).
pub fn corpus_dir() -> PathBuf {
    workspace_root().join("../shared/corpus")
}

/// A file of the corpus; panics when it is missing, so that a test that
/// cannot read its input fails instead of passing.
pub fn corpus(rel: &str) -> PathBuf {
    let p = corpus_dir().join(rel);
    assert!(
        p.exists(),
        "corpus file {} is missing: the tests need ../shared/corpus beside the repository",
        p.display()
    );
    p
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Polls `f` every 20 ms until it gives `Some`; panics naming `what` after
/// `limit`. The way to wait for something to be ready: never a fixed sleep.
pub fn wait_until<T>(limit: Duration, what: &str, f: impl FnMut() -> Option<T>) -> T {
    poll_until(limit, f).unwrap_or_else(|| panic!("timed out after {limit:?}: {what}"))
}

/// [`wait_until`] that gives `None` after `limit` instead of panicking,
/// for a caller that tries again another way.
pub fn poll_until<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if t0.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The `s3s-fs` binary (an S3 server on a directory) that scripts/setup.sh
/// installs with cargo.
pub fn s3s_fs() -> PathBuf {
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    let cargo = home.join(".cargo/bin/s3s-fs");
    if cargo.is_file() {
        return cargo;
    }
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("s3s-fs"))
                .find(|p| p.is_file())
        })
        .expect("s3s-fs is not installed: run scripts/setup.sh")
}

/// The credentials the tests start s3s-fs with (`--access-key`,
/// `--secret-key`) and give voxtap.
pub const S3_ACCESS: &str = "AKIATESTKEY";
pub const S3_SECRET: &str = "testsecret123";

/// Points the standard AWS credential chain (the environment, as in
/// production) at the test servers' credentials, once per process; every
/// caller sets the same values.
pub fn aws_env() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // SAFETY: set once, always to the same values, before the calling
        // test starts an S3 client. Other tests of the binary may be running:
        // std's own environment reads (std::env, Command) take the lock that
        // set_var takes, and none of them reads these variables; no C code
        // of these tests walks the environment while they run.
        unsafe {
            std::env::set_var("AWS_ACCESS_KEY_ID", S3_ACCESS);
            std::env::set_var("AWS_SECRET_ACCESS_KEY", S3_SECRET);
            std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
            std::env::set_var("AWS_CONFIG_FILE", "/nonexistent/voxtap-test");
            std::env::set_var("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/voxtap-test");
        }
    });
}
