//! The web side of "Hardening": throttled logins and bearer tokens that
//! cost the same for every name, sessions bound to their credentials,
//! same-site `next=`, no overflow panics, queued imports that are never
//! lost, capture filters compiled off the runtime, the Host check without
//! login, roles and the audit log, and call pages that stay small on huge
//! calls. Each test failed on the code before these changes.

use crate::common;

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use common::*;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, RETRY_AFTER, SET_COOKIE};
use voxtap_web::config::{Config, Role, UserConfig};
use voxtap_web::{Running, ServeOptions};

async fn serve(data: &Path, config: Config) -> (Running, String) {
    let running = voxtap_web::start(ServeOptions {
        data: data.to_path_buf(),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        config,
        insecure_no_auth: false,
    })
    .await
    .expect("server starts");
    let base = format!("http://{}", running.addr);
    (running, base)
}

/// The login form's cookie and token (reusable: the token is checked
/// against the cookie only).
async fn login_form(base: &str) -> (String, String) {
    let page = client().get(format!("{base}/login")).send().await.unwrap();
    let cookie = page.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    (cookie, hidden_csrf(&page.text().await.unwrap()))
}

async fn post_login(
    base: &str,
    form: &(String, String),
    user: &str,
    pw: &str,
) -> reqwest::Response {
    client()
        .post(format!("{base}/login"))
        .header(COOKIE, &form.0)
        .form(&[("user", user), ("password", pw), ("csrf", &form.1)])
        .send()
        .await
        .unwrap()
}

fn user(
    name: &str,
    password: &'static str,
    token: Option<&'static str>,
    role: Option<Role>,
) -> UserConfig {
    UserConfig {
        name: name.into(),
        password_hash: voxtap_web::auth::hash_password(password).unwrap(),
        api_token_hash: token.map(|t| voxtap_web::auth::hash_password(t).unwrap()),
        role,
    }
}

async fn get_status(base: &str, path: &str, auth: &str) -> u16 {
    let mut r = client().get(format!("{base}{path}"));
    r = if auth.starts_with("voxtap_session=") {
        r.header(COOKIE, auth)
    } else {
        r.bearer_auth(auth)
    };
    r.send().await.unwrap().status().as_u16()
}

async fn json(r: reqwest::RequestBuilder) -> serde_json::Value {
    serde_json::from_slice(&r.send().await.unwrap().bytes().await.unwrap()).unwrap()
}

// ------------------------------------------------------------ 6: throttle

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_guesses_are_throttled_per_name_and_address() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config();
    // A back-off longer than the test: which attempts were checked does
    // not depend on how fast the machine is.
    cfg.login.backoff_seconds = Some(600);
    let (running, base) = serve(dir.path(), cfg).await;
    let st = running.state.clone();
    let form = login_form(&base).await;

    // 200 wrong passwords, 20 at a time: the first 3 are checked.
    let before = st.password_checks();
    let mut statuses = std::collections::BTreeMap::<u16, u32>::new();
    for round in 0..10 {
        let mut tasks = Vec::new();
        for i in 0..20 {
            let (b, f) = (base.clone(), form.clone());
            tasks.push(tokio::spawn(async move {
                let r = post_login(&b, &f, USER, &format!("wrong {round} {i}")).await;
                let status = r.status().as_u16();
                if r.status() == StatusCode::TOO_MANY_REQUESTS {
                    let secs: u64 = r.headers()[RETRY_AFTER].to_str().unwrap().parse().unwrap();
                    assert!(secs > 0 && secs <= 600, "Retry-After {secs}");
                    assert!(r.text().await.unwrap().contains("Too many failed attempts"));
                }
                status
            }));
        }
        for t in tasks {
            *statuses.entry(t.await.unwrap()).or_default() += 1;
        }
    }
    let checked = st.password_checks() - before;
    println!("200 wrong passwords: {statuses:?}, {checked} argon2 verifications");
    assert_eq!(checked, 3, "{statuses:?}");
    assert_eq!(statuses.get(&401), Some(&3));
    assert_eq!(statuses.get(&429), Some(&197));
    // Now even the right password waits: it is not checked.
    let r = post_login(&base, &form, USER, PASSWORD).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(st.password_checks() - before, 3);

    // An unknown name is counted exactly like a known one (the answers do
    // not tell which names exist).
    let mut zed = Vec::new();
    for _ in 0..5 {
        zed.push(post_login(&base, &form, "zed", "x").await.status().as_u16());
    }
    assert_eq!(zed, [401, 401, 401, 429, 429]);
    assert_eq!(st.password_checks() - before, 6);

    // Per address: 20 checked attempts whatever the names, then refusals.
    let mut answered = 0;
    for i in 0..30 {
        if post_login(&base, &form, &format!("name{i}"), "x")
            .await
            .status()
            == 401
        {
            answered += 1;
        }
    }
    assert_eq!(answered, 14, "20 per address, 6 used above");
    assert_eq!(st.password_checks() - before, 20);
    let m = client()
        .get(format!("{base}/api/throttle"))
        .bearer_auth(format!("{API_USER}:{API_TOKEN}"))
        .send()
        .await
        .unwrap();
    // The address is in back-off: even a good token waits.
    assert_eq!(m.status(), StatusCode::TOO_MANY_REQUESTS);
    running.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_cost_one_verification_whoever_they_name() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.login.backoff_seconds = Some(600);
    let (running, base) = serve(dir.path(), cfg).await;
    let st = running.state.clone();
    // Unknown user, a user without a token, a wrong token, no colon, and
    // the right token: one argon2 verification each.
    for (token, want) in [
        ("zed:x".to_string(), 401),
        (format!("{USER}:{API_TOKEN}"), 401),
        (format!("{API_USER}:wrong"), 401),
        (API_TOKEN.to_string(), 401),
        (format!("{API_USER}:{API_TOKEN}"), 200),
    ] {
        let before = st.password_checks();
        assert_eq!(
            get_status(&base, "/api/calls", &token).await,
            want,
            "{token}"
        );
        assert_eq!(st.password_checks() - before, 1, "{token}");
    }
    // Guessing one user's token: 3 checked, then 429 with Retry-After.
    let before = st.password_checks();
    let mut statuses = Vec::new();
    for i in 0..50 {
        let r = client()
            .get(format!("{base}/api/calls"))
            .bearer_auth(format!("{API_USER}:guess{i}"))
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            assert!(r.headers().contains_key(RETRY_AFTER));
        }
        statuses.push(r.status().as_u16());
    }
    assert_eq!(st.password_checks() - before, 3);
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 47);
    running.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_clears_a_lock_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config();
    cfg.login.lockout_after = Some(3);
    cfg.login.free_attempts = Some(5);
    cfg.users
        .push(user("vera", "vera's password", None, Some(Role::Viewer)));
    let (running, base) = serve(dir.path(), cfg).await;
    let admin = login(&base, USER, PASSWORD).await.unwrap();
    let viewer = login(&base, "vera", "vera's password").await.unwrap();
    let form = login_form(&base).await;
    for _ in 0..3 {
        assert_eq!(
            post_login(&base, &form, API_USER, "wrong").await.status(),
            401
        );
    }
    let r = post_login(&base, &form, API_USER, "another one").await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(r.text().await.unwrap().contains("locked"));
    let rows = json(
        client()
            .get(format!("{base}/api/throttle"))
            .header(COOKIE, &admin),
    )
    .await;
    let row = rows["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == API_USER)
        .cloned()
        .unwrap();
    assert_eq!(row["kind"], "user");
    assert!(row["locked_seconds"].as_u64().unwrap() > 0, "{row}");
    // The users page shows it; a viewer may not clear it.
    let page = client()
        .get(format!("{base}/admin/users"))
        .header(COOKIE, &admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("locked"), "{page}");
    let csrf = hidden_csrf(&page);
    assert_eq!(get_status(&base, "/admin/users", &viewer).await, 403);
    let vcsrf = hidden_csrf(
        &client()
            .get(format!("{base}/calls"))
            .header(COOKIE, &viewer)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    let r = client()
        .post(format!("{base}/admin/unlock"))
        .header(COOKIE, &viewer)
        .form(&[("csrf", vcsrf.as_str()), ("user", API_USER)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // The admin clears it (and a CSRF token is still required).
    let r = client()
        .post(format!("{base}/admin/unlock"))
        .header(COOKIE, &admin)
        .form(&[("user", API_USER)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let r = client()
        .post(format!("{base}/admin/unlock"))
        .header(COOKIE, &admin)
        .header("accept", "application/json")
        .form(&[
            ("csrf", csrf.as_str()),
            ("user", API_USER),
            ("address", "127.0.0.1"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let j: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(j["cleared"][0], format!("user {API_USER}"), "{j}");
    assert_eq!(
        post_login(&base, &form, API_USER, "another one")
            .await
            .status(),
        303
    );
    // The unlock is in the audit log.
    let log = json(
        client()
            .get(format!("{base}/api/audit?action=unlock"))
            .header(COOKIE, &admin),
    )
    .await;
    assert_eq!(log["entries"][0]["user"], USER, "{log}");
    running.task.abort();
}

// ------------------------------------------------------------ 7: sessions

fn session_of(r: &reqwest::Response) -> String {
    r.headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|v| v.starts_with("voxtap_session="))
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_end_with_their_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().canonicalize().unwrap();
    let cfg = config();
    let (a, base) = serve(&data, cfg.clone()).await;
    let alice = login(&base, USER, PASSWORD).await.unwrap();
    let graf = login(&base, API_USER, "another one").await.unwrap();
    a.task.abort();
    drop(a);

    // Same config: both sessions survive the restart.
    let (b, base) = serve(&data, cfg.clone()).await;
    assert_eq!(get_status(&base, "/calls", &alice).await, 200);
    assert_eq!(get_status(&base, "/calls", &graf).await, 200);
    b.task.abort();
    drop(b);

    // alice's password changed: her session ends, grafana's does not.
    let mut changed = cfg.clone();
    changed.users[0].password_hash = voxtap_web::auth::hash_password("a new one").unwrap();
    let (c, base) = serve(&data, changed.clone()).await;
    assert_eq!(get_status(&base, "/calls", &alice).await, 303);
    assert_eq!(get_status(&base, "/calls", &graf).await, 200);
    c.task.abort();
    drop(c);

    // grafana's API token changed: its password session ends too.
    let mut token = changed.clone();
    token.users[1].api_token_hash = Some(voxtap_web::auth::hash_password("new token").unwrap());
    let (d, base) = serve(&data, token.clone()).await;
    assert_eq!(get_status(&base, "/calls", &graf).await, 303);
    let graf = login(&base, API_USER, "another one").await.unwrap();
    d.task.abort();
    drop(d);

    // grafana removed from the config: the session ends.
    let mut removed = token.clone();
    removed.users.truncate(1);
    let (e, base) = serve(&data, removed).await;
    assert_eq!(get_status(&base, "/calls", &graf).await, 303);

    // Log out everywhere: two sessions of alice, one button.
    let form = login_form(&base).await;
    let s1 = session_of(&post_login(&base, &form, USER, "a new one").await);
    let s2 = session_of(&post_login(&base, &form, USER, "a new one").await);
    assert_eq!(get_status(&base, "/calls", &s1).await, 200);
    let page = client()
        .get(format!("{base}/calls"))
        .header(COOKIE, &s1)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("action=\"/logout/everywhere\""));
    let r = client()
        .post(format!("{base}/logout/everywhere"))
        .header(COOKIE, &s1)
        .form(&[("csrf", hidden_csrf(&page))])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::SEE_OTHER);
    assert_eq!(get_status(&base, "/calls", &s1).await, 303);
    assert_eq!(
        get_status(&base, "/calls", &s2).await,
        303,
        "the other browser too"
    );
    e.task.abort();
}

// ------------------------------------------------------------ 8: next=

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn next_accepts_only_a_path_on_this_site() {
    let dir = tempfile::tempdir().unwrap();
    let (running, base) = serve(dir.path(), config()).await;
    let form = login_form(&base).await;
    for (next, want) in [
        ("/calls/7?x=1", "/calls/7?x=1"),
        ("/\t/evil.example/", "/calls"),
        ("/\n/evil.example/", "/calls"),
        ("/\r\nSet-Cookie: x=1", "/calls"),
        ("/x\0y", "/calls"),
        ("//evil.example/", "/calls"),
        ("/\\evil.example/", "/calls"),
        ("\\\\evil.example/", "/calls"),
        ("https://evil.example/", "/calls"),
        ("/a b", "/calls"),
    ] {
        let r = client()
            .post(format!("{base}/login"))
            .header(COOKIE, &form.0)
            .form(&[
                ("user", USER),
                ("password", PASSWORD),
                ("csrf", form.1.as_str()),
                ("next", next),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::SEE_OTHER, "{next:?}");
        assert_eq!(r.headers()[LOCATION], want, "{next:?}");
    }
    // The login page does not carry a bad next into its form either.
    let page = client()
        .get(format!("{base}/login?next=%2F%09%2Fevil.example%2F"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("name=\"next\" value=\"/calls\""), "{page}");
    running.task.abort();
}

// ------------------------------------------------------------ 9: overflow

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_numbers_are_answered_not_panicked_on() {
    let src = corpus("generated/sipp-netns-udp-2calls.pcap");
    let dir = data_dir_with(&src);
    let (running, base) = serve(dir.path(), config()).await;
    let s = login(&base, USER, PASSWORD).await.unwrap();
    for q in [
        "page=18446744073709551615",
        "page=18446744073709551615&per_page=500",
        "from=9999-12-31T23:59",
        "to=99999999999999999999-01-01",
    ] {
        for path in ["/api/calls", "/calls/rows"] {
            let r = client()
                .get(format!("{base}{path}?{q}"))
                .header(COOKIE, &s)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{path}?{q}");
            let body = r.text().await.unwrap();
            assert!(
                body.contains("out of range") || body.contains("1970 to 2554"),
                "{body}"
            );
        }
        // The list page shows the message beside the form.
        let r = client()
            .get(format!("{base}/calls?{q}"))
            .header(COOKIE, &s)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "/calls?{q}");
        assert!(r.text().await.unwrap().contains("class=\"error\""));
    }
    let id =
        json(client().get(format!("{base}/api/calls")).header(COOKIE, &s)).await["rows"][0]["id"]
            .as_i64()
            .unwrap();
    assert_eq!(
        get_status(&base, &format!("/calls/{id}?msgs=18446744073709551615"), &s).await,
        200
    );
    assert_eq!(
        get_status(&base, &format!("/calls/{id}?msgs=x"), &s).await,
        400
    );
    assert_eq!(
        get_status(&base, &format!("/calls/{id}/sip/18446744073709551616"), &s).await,
        400
    );
    assert_eq!(
        get_status(&base, &format!("/calls/{id}/sip/9999"), &s).await,
        404
    );
    running.task.abort();

    // session_hours out of range: a config error, not a panic.
    for hours in [0, 8761, u64::MAX] {
        let mut cfg = config();
        cfg.server.session_hours = Some(hours);
        let dir = tempfile::tempdir().unwrap();
        let err = voxtap_web::start(ServeOptions {
            data: dir.path().to_path_buf(),
            listen: Some("127.0.0.1:0".parse().unwrap()),
            config: cfg,
            insecure_no_auth: false,
        })
        .await
        .err()
        .unwrap_or_else(|| panic!("session_hours = {hours} accepted"));
        let msg = format!("{err:#}");
        assert!(
            msg.contains("session_hours") && msg.contains("out of range"),
            "{msg}"
        );
    }
}

// ------------------------------------------------------------ 10: imports

async fn upload(base: &str, auth: &str, files: Vec<(String, Vec<u8>)>) -> reqwest::Response {
    let mut form = reqwest::multipart::Form::new();
    for (name, bytes) in files {
        form = form.part(
            "files",
            reqwest::multipart::Part::bytes(bytes).file_name(name),
        );
    }
    client()
        .post(format!("{base}/import"))
        .bearer_auth(auth)
        .multipart(form)
        .send()
        .await
        .unwrap()
}

/// Polls a job until it ends; whether it was ever seen queued.
async fn wait_job(base: &str, auth: &str, status: &str) -> (serde_json::Value, bool) {
    let mut queued = false;
    for _ in 0..1200 {
        let j = json(client().get(format!("{base}{status}")).bearer_auth(auth)).await;
        queued |= j["queued"] == true;
        if j["state"] != "running" {
            return (j, queued);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("job {status} never ended");
}

fn operator_config(concurrent: u32) -> Config {
    let mut cfg = config();
    cfg.users[1].role = Some(Role::Operator);
    cfg.import.concurrent = Some(concurrent);
    cfg
}

/// Eight 18 MB captures (one call with 300 × 60 KB of SIP each) uploaded
/// at once: before, their merges into the index overlapped and 4 of 8
/// failed with "database is locked", their calls never indexed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_parallel_imports_are_all_indexed() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("big.pcap");
    huge_call_pcap(&p, 300, 60_000);
    let big = std::fs::read(&p).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().canonicalize().unwrap();
    // All eight run at once, so their merges into the index overlap.
    let (running, base) = serve(&data, operator_config(8)).await;
    let auth = format!("{API_USER}:{API_TOKEN}");
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (b, a) = (base.clone(), auth.clone());
        let files = vec![(format!("big{i}.pcap"), big.clone())];
        tasks.push(tokio::spawn(async move {
            let r = upload(&b, &a, files).await;
            assert_eq!(r.status(), StatusCode::ACCEPTED);
            let j: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
            wait_job(&b, &a, j["status"].as_str().unwrap()).await.0
        }));
    }
    for t in tasks {
        let j = t.await.unwrap();
        assert_eq!(j["state"], "done", "{j}");
        assert_eq!(j["calls"], 1, "{j}");
    }
    let list = json(client().get(format!("{base}/api/calls")).bearer_auth(&auth)).await;
    assert_eq!(list["total"], 8, "every upload's call is in the index");
    for row in list["rows"].as_array().unwrap() {
        assert_eq!(row["sip_packets"], 305, "{row}");
    }
    let leftovers = std::fs::read_dir(data.join("imports"))
        .unwrap()
        .flatten()
        .filter(|d| d.file_name().to_string_lossy().ends_with(".upload"))
        .count();
    assert_eq!(leftovers, 0);
    running.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_wait_in_a_queue_and_big_fields_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (running, base) = serve(dir.path(), operator_config(1)).await;
    let auth = format!("{API_USER}:{API_TOKEN}");
    let pcap = std::fs::read(corpus("generated/sipp-netns-udp-2calls.pcap")).unwrap();
    let mut tasks = Vec::new();
    for i in 0..4 {
        let (b, a, p) = (base.clone(), auth.clone(), pcap.clone());
        tasks.push(tokio::spawn(async move {
            let r = upload(&b, &a, vec![(format!("q{i}.pcap"), p)]).await;
            let j: serde_json::Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
            wait_job(&b, &a, j["status"].as_str().unwrap()).await
        }));
    }
    let mut seen_queued = 0;
    for t in tasks {
        let (j, queued) = t.await.unwrap();
        assert_eq!(j["state"], "done", "{j}");
        seen_queued += u32::from(queued);
    }
    assert!(seen_queued >= 1, "one import at a time: the others wait");
    // A form field other than the files is capped.
    let form = reqwest::multipart::Form::new()
        .text("note", "x".repeat(100_000))
        .part(
            "files",
            reqwest::multipart::Part::bytes(pcap).file_name("n.pcap"),
        );
    let r = client()
        .post(format!("{base}/import"))
        .bearer_auth(&auth)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("'note' is longer than 4096 bytes")
    );
    running.task.abort();
}

// ------------------------------------------------------------ 11: filters

/// `n` host terms or'ed: libpcap's optimiser takes seconds for a few hundred.
fn slow_filter(n: u32) -> String {
    (0..n)
        .map(|i| format!("host 10.0.{}.{}", i / 250, i % 250 + 1))
        .collect::<Vec<_>>()
        .join(" or ")
}

/// On a single-threaded runtime: a compile on the async thread would stop
/// the server (and this test) until libpcap returned.
#[tokio::test]
async fn filters_compile_off_the_runtime_within_a_limit() {
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts.toml");
    std::fs::write(
        &hosts,
        "[environments.lab.regions.local.hosts.lo]\naddress = \"127.0.0.1\"\nport = 9\ninterfaces = [\"lo\"]\n",
    )
    .unwrap();
    let mut cfg = config();
    cfg.remote.hosts = Some(hosts);
    cfg.remote.max_filter_bytes = Some(8192);
    cfg.remote.filter_timeout_seconds = Some(1);
    let (running, base) = serve(&dir.path().join("data"), cfg).await;
    let s = login(&base, USER, PASSWORD).await.unwrap();
    let page = client()
        .get(format!("{base}/hosts"))
        .header(COOKIE, &s)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = hidden_csrf(&page);
    let start = |filter: String| {
        let (b, s, c) = (base.clone(), s.clone(), csrf.clone());
        tokio::spawn(async move {
            let r = client()
                .post(format!("{b}/hosts/start"))
                .header(COOKIE, s)
                .header("accept", "application/json")
                .form(&[
                    ("csrf", c.as_str()),
                    ("host", "lab/local/lo"),
                    ("filter", &filter),
                ])
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        })
    };
    let filter = slow_filter(400);
    assert!(filter.len() < 8192);
    let posts = [start(filter.clone()), start(filter)];
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The health check answers while both compiles are pending.
    let r = client()
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(
        posts.iter().all(|p| !p.is_finished()),
        "/healthz waited for the filter compiles"
    );
    let mut answers = Vec::new();
    for p in posts {
        answers.push(p.await.unwrap());
    }
    // One timed out compiling, the other waited for the worker in vain.
    answers.sort();
    assert_eq!(answers[0].0, 400, "{answers:?}");
    assert!(answers[0].1.contains("took longer than 1 s"), "{answers:?}");
    assert_eq!(answers[1].0, 503, "{answers:?}");
    // Longer than the limit: refused before libpcap sees it.
    let r = start(slow_filter(1000)).await.unwrap();
    assert_eq!(r.0, 400);
    assert!(r.1.contains("max_filter_bytes"), "{}", r.1);
    assert!(
        !dir.path().join("data/remote").exists(),
        "no capture started"
    );
    running.task.abort();
}

// ------------------------------------------------------------ 12: no-auth

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_login_the_host_must_be_the_listening_address() {
    let dir = tempfile::tempdir().unwrap();
    let running = voxtap_web::start(ServeOptions {
        data: dir.path().to_path_buf(),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        config: Default::default(),
        insecure_no_auth: true,
    })
    .await
    .unwrap();
    let port = running.addr.port();
    let get = |host: String| {
        client()
            .get(format!("http://{}/api/calls", running.addr))
            .header("host", host)
            .send()
    };
    for host in [format!("127.0.0.1:{port}"), format!("localhost:{port}")] {
        assert_eq!(get(host.clone()).await.unwrap().status(), 200, "{host}");
    }
    for host in [
        format!("rebound.evil.example:{port}"),
        "rebound.evil.example".to_string(),
        format!("127.0.0.1:{}", port.wrapping_add(1)),
    ] {
        assert_eq!(get(host.clone()).await.unwrap().status(), 421, "{host}");
    }
    running.task.abort();

    // Duplicate names and session_hours = 0 in a config file.
    let hash = voxtap_web::auth::hash_password("x").unwrap();
    let p = dir.path().join("web.toml");
    let two = format!(
        "[[users]]\nname = \"a\"\npassword_hash = \"{hash}\"\n[[users]]\nname = \"a\"\npassword_hash = \"{hash}\"\n"
    );
    std::fs::write(&p, &two).unwrap();
    let e = Config::load(&p).unwrap_err().to_string();
    assert!(e.contains("user 'a' is defined twice"), "{e}");
    std::fs::write(
        &p,
        format!("[server]\nsession_hours = 0\n[[users]]\nname = \"a\"\npassword_hash = \"{hash}\"\nrole = \"admin\"\n"),
    )
    .unwrap();
    let e = Config::load(&p).unwrap_err().to_string();
    assert!(e.contains("session_hours = 0 is out of range"), "{e}");
    std::fs::write(
        &p,
        format!("[[users]]\nname = \"a\"\npassword_hash = \"{hash}\"\nrole = \"root\"\n"),
    )
    .unwrap();
    assert!(
        Config::load(&p)
            .unwrap_err()
            .to_string()
            .contains("unknown variant")
    );
}

// ------------------------------------------------------------ 13: roles

fn roles_config() -> Config {
    let mut cfg = config();
    for (name, role) in [
        ("vera", Some(Role::Viewer)),
        ("lina", Some(Role::Listener)),
        ("otto", Some(Role::Operator)),
        ("nora", None),
    ] {
        cfg.users.push(user(name, "pw", Some("tok"), role));
    }
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_gate_media_imports_and_admin_and_the_audit_names_the_listener() {
    let src = corpus("generated/sipp-netns-udp-2calls.pcap");
    let dir = data_dir_with(&src);
    let data = dir.path().canonicalize().unwrap();
    let idx =
        voxtap_engine::index::Index::open(&data.join(voxtap_engine::index::INDEX_FILE)).unwrap();
    let call = idx
        .search(&voxtap_engine::index::CallQuery {
            limit: 1,
            ..Default::default()
        })
        .unwrap()
        .rows
        .remove(0);
    let id = call.id;
    std::fs::write(data.join(call.folder.unwrap()).join("a.wav"), wav()).unwrap();
    let (running, base) = serve(&data, roles_config()).await;
    let c = format!("/calls/{id}");
    // What a viewer, a listener and an operator get.
    let table = [
        (c.clone(), [200, 200, 200]),
        (format!("/api/calls/{id}"), [200, 200, 200]),
        (format!("{c}/download/sip"), [200, 200, 200]),
        (format!("{c}/download/report"), [200, 200, 200]),
        (format!("{c}/download/pcap"), [403, 200, 200]),
        (format!("{c}/download/zip"), [403, 200, 200]),
        (format!("{c}/files/a.wav"), [403, 200, 200]),
        (format!("{c}/waveform/a.wav"), [403, 200, 200]),
        // CDR exports are call metadata, like the call list: every role,
        // audited below.
        (
            "/calls/export/calls.csv?state=answered".to_string(),
            [200, 200, 200],
        ),
        ("/calls/export/calls.json".to_string(), [200, 200, 200]),
        ("/import".to_string(), [403, 403, 200]),
        ("/hosts".to_string(), [403, 403, 200]),
        ("/api/audit".to_string(), [403, 403, 403]),
        ("/admin/users".to_string(), [403, 403, 403]),
        ("/admin/audit".to_string(), [403, 403, 403]),
    ];
    for (path, want) in &table {
        for (who, want) in ["vera", "lina", "otto"].iter().zip(want) {
            let got = get_status(&base, path, &format!("{who}:tok")).await;
            assert_eq!(got, *want, "{who} {path}");
        }
    }
    // A user without a role is a viewer.
    assert_eq!(
        get_status(&base, &format!("{c}/download/pcap"), "nora:tok").await,
        403
    );
    // The viewer's call page offers no media.
    let page = client()
        .get(format!("{base}{c}"))
        .bearer_auth("vera:tok")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        !page.contains("dl-pcap") && !page.contains("<audio"),
        "viewer sees media"
    );
    assert!(page.contains("dl-sip"));
    let page = client()
        .get(format!("{base}{c}"))
        .bearer_auth("lina:tok")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("dl-pcap") && page.contains("<audio"));
    // The admin (a session) sees everything, and who listened to the call.
    let admin = login(&base, USER, PASSWORD).await.unwrap();
    for (path, _) in &table {
        assert_eq!(get_status(&base, path, &admin).await, 200, "admin {path}");
    }
    running.task.abort();
    drop(running);

    // After a restart the audit log still answers for the call.
    let (running, base) = serve(&data, roles_config()).await;
    let admin = login(&base, USER, PASSWORD).await.unwrap();
    let log = json(
        client()
            .get(format!("{base}/api/audit?call={id}"))
            .header(COOKIE, &admin),
    )
    .await;
    let got: Vec<(String, String, String)> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["remote"], "127.0.0.1");
            assert!(e["ts_ns"].as_u64().unwrap() > 1_700_000_000_000_000_000);
            (
                e["user"].as_str().unwrap().into(),
                e["action"].as_str().unwrap().into(),
                e["detail"].as_str().unwrap().into(),
            )
        })
        .collect();
    let has = |u: &str, a: &str, d: &str| got.contains(&(u.into(), a.into(), d.into()));
    assert!(has("lina", "audio", "a.wav"), "{got:?}");
    assert!(
        has("lina", "download", "pcap") && has("lina", "download", "zip"),
        "{got:?}"
    );
    assert!(
        has("vera", "view", "") && has("vera", "download", "sip"),
        "{got:?}"
    );
    assert!(
        !got.iter()
            .any(|(u, a, _)| u == "vera" && a != "view" && a != "download")
    );
    assert!(
        !has("vera", "download", "pcap"),
        "a refused download is not served"
    );
    // Each export is in the audit log with its user, file and search.
    let exports = json(
        client()
            .get(format!("{base}/api/audit?action=export"))
            .header(COOKIE, &admin),
    )
    .await;
    let exports: Vec<(String, String)> = exports["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["user"].as_str().unwrap().into(),
                e["detail"].as_str().unwrap().into(),
            )
        })
        .collect();
    for who in ["vera", "lina", "otto", USER] {
        for detail in ["calls.csv?state=answered", "calls.json?"] {
            assert!(
                exports.contains(&(who.into(), detail.into())),
                "{who} {detail}: {exports:?}"
            );
        }
    }
    // The audit page filters by call.
    let page = client()
        .get(format!("{base}/admin/audit?call={id}&action=audio"))
        .header(COOKIE, &admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("<td>lina</td>") && page.contains("a.wav"),
        "{page}"
    );
    assert!(!page.contains("<td>vera</td>"));
    // An import by an operator is there too.
    let pcap = std::fs::read(&src).unwrap();
    let r = upload(&base, "otto:tok", vec![("o.pcap".into(), pcap.clone())]).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let r = upload(&base, "lina:tok", vec![("l.pcap".into(), pcap)]).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let log = json(
        client()
            .get(format!("{base}/api/audit?action=import"))
            .header(COOKIE, &admin),
    )
    .await;
    assert_eq!(log["entries"].as_array().unwrap().len(), 1);
    assert_eq!(log["entries"][0]["user"], "otto");
    running.task.abort();
}

/// One second of 8 kHz 16-bit silence.
fn wav() -> Vec<u8> {
    let mut cur = std::io::Cursor::new(Vec::new());
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::new(&mut cur, spec).unwrap();
    for _ in 0..8000 {
        w.write_sample(0i16).unwrap();
    }
    w.finalize().unwrap();
    cur.into_inner()
}

// ------------------------------------------------------------ 14: huge calls

/// A call with `n` INFO messages of `body` bytes each, over UDP, one
/// datagram per message (as captured with offloads on).
fn huge_call_pcap(path: &Path, n: usize, body: usize) {
    use voxtap_proto::pcapio::{LinkType, PcapWriter};
    let f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut w = PcapWriter::new(f, LinkType::Ethernet, 262_144).unwrap();
    let a = (Ipv4Addr::new(10, 9, 0, 1), 5060);
    let b = (Ipv4Addr::new(10, 9, 0, 2), 5060);
    let msg = |start: &str, cseq: &str, to_tag: bool, body: &str| {
        let ctype = match body {
            "" => "",
            b if b.starts_with("v=0") => "Content-Type: application/sdp\r\n",
            _ => "Content-Type: text/plain\r\n",
        };
        format!(
            "{start}\r\nVia: SIP/2.0/UDP 10.9.0.1:5060;branch=z9hG4bK{}\r\nFrom: <sip:alice@10.9.0.1>;tag=a1\r\nTo: <sip:bob@10.9.0.2>{}\r\nCall-ID: huge@10.9.0.1\r\nCSeq: {cseq}\r\nContact: <sip:alice@10.9.0.1:5060>\r\nMax-Forwards: 70\r\n{ctype}Content-Length: {}\r\n\r\n{body}",
            cseq.replace(' ', ""),
            if to_tag { ";tag=b1" } else { "" },
            body.len()
        )
    };
    let sdp = "v=0\r\no=- 1 1 IN IP4 10.9.0.1\r\ns=-\r\nc=IN IP4 10.9.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";
    let filler: String = "0123456789abcdef".repeat(body / 16 + 1)[..body].to_string();
    let mut msgs = vec![
        (
            a,
            b,
            msg("INVITE sip:bob@10.9.0.2 SIP/2.0", "1 INVITE", false, sdp),
        ),
        (b, a, msg("SIP/2.0 200 OK", "1 INVITE", true, sdp)),
        (a, b, msg("ACK sip:bob@10.9.0.2 SIP/2.0", "1 ACK", true, "")),
    ];
    for i in 0..n {
        let cseq = format!("{} INFO", i + 2);
        msgs.push((
            a,
            b,
            msg("INFO sip:bob@10.9.0.2 SIP/2.0", &cseq, true, &filler),
        ));
    }
    let bye = format!("{} BYE", n + 2);
    msgs.push((a, b, msg("BYE sip:bob@10.9.0.2 SIP/2.0", &bye, true, "")));
    msgs.push((b, a, msg("SIP/2.0 200 OK", &bye, true, "")));
    let mut frame = Vec::new();
    for (i, (src, dst, text)) in msgs.iter().enumerate() {
        voxtap_engine::synth::udp_frame(&mut frame, *src, *dst, text.as_bytes());
        let ts = 1_767_225_600_000_000_000 + i as u64 * 1_000_000;
        w.write_packet(ts, frame.len() as u32, &frame).unwrap();
    }
    w.flush().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_call_pages_its_messages_and_streams_its_zip() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("huge.pcap");
    huge_call_pcap(&p, 1000, 60_000);
    // The capture side keeps 1 MiB of SIP text per call by default
    // (docs/security.md, "Capture side"); an operator may allow more, and
    // then the web must still cope with a call of 60 MB of SIP text.
    let mut pipeline = voxtap_engine::pipeline::PipelineConfig::default();
    pipeline.calls.call_sip_bytes = 128 << 20;
    pipeline.calls.sip_bytes_total = 256 << 20;
    let dir = data_dir_with_pipeline(&p, pipeline);
    let (running, base) = serve(dir.path(), config()).await;
    let s = login(&base, USER, PASSWORD).await.unwrap();
    let row =
        json(client().get(format!("{base}/api/calls")).header(COOKIE, &s)).await["rows"][0].clone();
    assert_eq!(row["sip_packets"], 1005);
    let id = row["id"].as_i64().unwrap();
    let get = |path: String| {
        client()
            .get(format!("{base}{path}"))
            .header(COOKIE, &s)
            .send()
    };
    let page = get(format!("/calls/{id}"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    println!("call page: {} bytes", page.len());
    assert!(page.len() < 2 << 20, "call page of {} bytes", page.len());
    assert_eq!(
        page.matches("class=\"msg ").count(),
        200,
        "200 arrows a page"
    );
    assert_eq!(page.matches("class=\"sipmsg\"").count(), 200);
    assert!(page.contains("Messages 1–200 of 1005"));
    assert!(
        page.contains(&format!("href=\"/calls/{id}/sip/3\"")),
        "full-message link"
    );
    // The last page, and a message in full.
    let last = get(format!("/calls/{id}?msgs=6"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(last.contains("Messages 1001–1005 of 1005") && last.contains("id=\"msg-1004\""));
    let full = get(format!("/calls/{id}/sip/3")).await.unwrap();
    assert_eq!(full.headers()["content-type"], "text/plain; charset=utf-8");
    let full = full.text().await.unwrap();
    assert!(full.starts_with("INFO sip:bob@10.9.0.2") && full.len() > 60_000);
    // The zip is streamed (no length known up front) and whole.
    let r = get(format!("/calls/{id}/download/zip")).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers().get("content-length").is_none(),
        "zip built before sending"
    );
    let body = r.bytes().await.unwrap();
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(body.to_vec())).unwrap();
    let mut report = String::new();
    std::io::Read::read_to_string(&mut z.by_name("report.json").unwrap(), &mut report).unwrap();
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["sip"].as_array().unwrap().len(), 1005);
    assert_eq!(report["call"]["id"], id);
    let mut sip = Vec::new();
    std::io::Read::read_to_end(&mut z.by_name("sip.txt").unwrap(), &mut sip).unwrap();
    assert!(sip.len() > 60_000_000);
    running.task.abort();
}
