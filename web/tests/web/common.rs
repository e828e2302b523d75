//! Test helpers that need voxtap's types: a data directory imported from
//! the shared corpus, a running server with its users; and the kit's
//! helpers (corpus, tshark, login, browser) the modules use.

use std::path::Path;

use voxtap_engine::import::{ImportOptions, run_import};
use voxtap_engine::pipeline::PipelineConfig;
pub use voxtap_testkit::browser::{browser, log_in, screenshots_dir};
pub use voxtap_testkit::http::{client, hidden_csrf, login};
pub use voxtap_testkit::tshark::{tshark, tshark_call_frames, tshark_frames};
pub use voxtap_testkit::{corpus, free_port};
use voxtap_web::config::{Config, Role, UserConfig};
use voxtap_web::{Running, ServeOptions};

pub const USER: &str = "alice";
pub const PASSWORD: &str = "correct horse battery staple";
pub const API_USER: &str = "grafana";
pub const API_TOKEN: &str = "0123456789abcdef-token";

/// `voxtap import --out DATA FILE` into a fresh data directory.
pub fn data_dir_with(file: &Path) -> tempfile::TempDir {
    data_dir_with_pipeline(file, PipelineConfig::default())
}

/// [`data_dir_with`], imported with `pipeline` (limits, ports).
pub fn data_dir_with_pipeline(file: &Path, pipeline: PipelineConfig) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    run_import(&ImportOptions {
        files: vec![file.to_path_buf()],
        out: dir.path().to_path_buf(),
        pipeline,
        call_files: true,
        // No media outputs: the browser test places its own WAV to check
        // the player appears only where one exists.
        media: None,
    })
    .expect("import");
    dir
}

/// The same hash each time: a new salt would be a changed password, and
/// changed credentials end the sessions begun with the old ones.
fn hash_of(secret: &'static str) -> String {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static HASHES: OnceLock<Mutex<HashMap<&'static str, String>>> = OnceLock::new();
    let mut m = HASHES.get_or_init(Default::default).lock().unwrap();
    m.entry(secret)
        .or_insert_with(|| voxtap_web::auth::hash_password(secret).unwrap())
        .clone()
}

/// alice (admin) logs in with a password; grafana (listener) uses the API
/// with a token.
pub fn config() -> Config {
    Config {
        users: vec![
            UserConfig {
                name: USER.into(),
                password_hash: hash_of(PASSWORD),
                api_token_hash: None,
                role: Some(Role::Admin),
            },
            UserConfig {
                name: API_USER.into(),
                password_hash: hash_of("another one"),
                api_token_hash: Some(hash_of(API_TOKEN)),
                role: Some(Role::Listener),
            },
        ],
        ..Default::default()
    }
}

pub async fn start(data: &Path) -> Running {
    voxtap_web::start(ServeOptions {
        data: data.to_path_buf(),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        config: config(),
        insecure_no_auth: false,
    })
    .await
    .expect("server starts")
}

pub fn sip_message_count(file: &Path, call_id: &str) -> usize {
    tshark_frames(file, Some(&format!("sip.Call-ID == \"{call_id}\""))).len()
}

/// The body of `GET {base}{path}` with the session `cookie`, whatever its
/// status (the callers check what the page holds).
pub async fn get_page(base: &str, cookie: &str, path: &str) -> String {
    client()
        .get(format!("{base}{path}"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}
