//! The web UI in headless Chromium through chromedriver (WebDriver).
//!
//! One browser at a time in a test binary: two Chromiums beside the other
//! tests on a 2-core machine make the page waits a matter of luck.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The WebDriver client [`browser`] returns.
pub use fantoccini::Client;
use fantoccini::ClientBuilder;
use tokio::sync::{Mutex, MutexGuard};

use crate::{free_port, wait_until};

static ONE_BROWSER: Mutex<()> = Mutex::const_new(());

/// chromedriver on a free port with its own Chromium profile; killed when
/// dropped, which lets the next test have a browser.
pub struct Driver {
    child: Child,
    _profile: tempfile::TempDir,
    _turn: MutexGuard<'static, ()>,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for this binary's browser to be free, starts chromedriver and
/// opens a WebDriver session in a 1366x900 headless Chromium.
pub async fn browser() -> (Driver, Client) {
    let turn = ONE_BROWSER.lock().await;
    let port = free_port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver must be installed (Debian chromium-driver)");
    let driver = Driver {
        child,
        _profile: tempfile::tempdir().unwrap(),
        _turn: turn,
    };
    wait_until(Duration::from_secs(10), "chromedriver listening", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--window-size=1366,900",
                format!("--user-data-dir={}", driver._profile.path().display()),
            ],
        }),
    );
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{port}"))
        .await
        .expect("WebDriver session");
    (driver, client)
}

/// `target/screenshots/`, created if need be.
pub fn screenshots_dir() -> PathBuf {
    let d = crate::workspace_root().join("target/screenshots");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Fills the login form the browser is on with `user` and `password` and
/// submits it (the caller waits for the page it expects next).
pub async fn log_in(c: &Client, user: &str, password: &str) {
    use fantoccini::Locator;
    for (css, v) in [
        ("input[name=user]", user),
        ("input[name=password]", password),
    ] {
        c.find(Locator::Css(css))
            .await
            .unwrap()
            .send_keys(v)
            .await
            .unwrap();
    }
    c.find(Locator::Css("form.login button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}
