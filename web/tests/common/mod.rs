//! Test helpers: a data directory imported from the shared corpus, a
//! running server with one user, tshark.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use reqwest::StatusCode;
use reqwest::header::{COOKIE, SET_COOKIE};

use voxtap_engine::import::{ImportOptions, run_import};
use voxtap_engine::pipeline::PipelineConfig;
use voxtap_web::config::{Config, Role, UserConfig};
use voxtap_web::{Running, ServeOptions};

pub const USER: &str = "alice";
pub const PASSWORD: &str = "correct horse battery staple";
pub const API_USER: &str = "grafana";
pub const API_TOKEN: &str = "0123456789abcdef-token";

/// `shared/corpus` beside the repository (CI clones the repo next to it).
pub fn corpus(rel: &str) -> PathBuf {
    let p = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/corpus/")).join(rel);
    assert!(
        p.exists(),
        "corpus file {} is missing: the tests need ../shared/corpus beside the repository",
        p.display()
    );
    p
}

/// `voxtap import --out DATA FILE` into a fresh data directory.
pub fn data_dir_with(file: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    run_import(&ImportOptions {
        files: vec![file.to_path_buf()],
        out: dir.path().to_path_buf(),
        pipeline: PipelineConfig::default(),
        progress: false,
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

pub fn tshark(args: &[&str]) -> String {
    let out = Command::new("tshark")
        .args(args)
        .output()
        .expect("tshark must be installed (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "tshark {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// (epoch time, length) of every frame matching `filter`.
pub fn frames(file: &Path, filter: Option<&str>) -> Vec<String> {
    let mut args = vec![
        "-r",
        file.to_str().unwrap(),
        "-T",
        "fields",
        "-e",
        "frame.time_epoch",
        "-e",
        "frame.len",
    ];
    if let Some(f) = filter {
        args.extend(["-Y", f]);
    }
    tshark(&args)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(String::from)
        .collect()
}

/// The frames tshark attributes to a call in the original capture: its SIP
/// by Call-ID, and UDP between the media endpoints its SDP announced.
pub fn tshark_call_frames(file: &Path, call_id: &str) -> Vec<String> {
    let sdp = tshark(&[
        "-r",
        file.to_str().unwrap(),
        "-Y",
        &format!("sip.Call-ID == \"{call_id}\" && sdp"),
        "-T",
        "fields",
        "-e",
        "sdp.connection_info.address",
        "-e",
        "sdp.media.port",
    ]);
    let eps: Vec<(String, String)> = sdp
        .lines()
        .filter_map(|l| {
            let (a, p) = l.split_once('\t')?;
            Some((
                a.split(',').next()?.to_string(),
                p.split(',').next()?.to_string(),
            ))
        })
        .collect();
    assert!(!eps.is_empty(), "tshark found no SDP for {call_id}");
    let side = |dir: &str| {
        eps.iter()
            .map(|(a, p)| format!("(ip.{dir}=={a} && udp.{dir}port=={p})"))
            .collect::<Vec<_>>()
            .join(" || ")
    };
    let filter = format!(
        "sip.Call-ID == \"{call_id}\" || (udp && !sip && !icmp && ({}) && ({}))",
        side("src"),
        side("dst")
    );
    frames(file, Some(&filter))
}

pub fn sip_message_count(file: &Path, call_id: &str) -> usize {
    frames(file, Some(&format!("sip.Call-ID == \"{call_id}\""))).len()
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub fn hidden_csrf(html: &str) -> String {
    let i = html.find("name=\"csrf\" value=\"").expect("csrf field") + 19;
    html[i..i + 64].to_string()
}

/// Log in through the form; returns the `voxtap_session=...` cookie pair.
pub async fn login(base: &str, user: &str, password: &str) -> Result<String, StatusCode> {
    let c = client();
    let page = c.get(format!("{base}/login")).send().await.unwrap();
    let login_cookie = page.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let csrf = hidden_csrf(&page.text().await.unwrap());
    let r = c
        .post(format!("{base}/login"))
        .header(COOKIE, login_cookie)
        .form(&[("user", user), ("password", password), ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    if r.status() != StatusCode::SEE_OTHER {
        return Err(r.status());
    }
    let set = r
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|v| v.starts_with("voxtap_session="))
        .expect("session cookie");
    // Cookie hardening.
    assert!(set.contains("HttpOnly"), "{set}");
    assert!(set.contains("SameSite=Strict"), "{set}");
    assert!(!set.contains("Secure"), "no TLS here: {set}");
    Ok(set.split(';').next().unwrap().to_string())
}
