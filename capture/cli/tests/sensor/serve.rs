//! `voxtap serve` is the web UI in the voxtap process itself: started from
//! the one binary, with a user whose password hash `voxtap hash-password`
//! made, it logs the user in and serves the calls of a data directory that
//! `voxtap import` made; the socket it listens on is its own, and it starts
//! no other process.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use voxtap_testkit::csv::read_csv;
use voxtap_testkit::http::reqwest::{StatusCode, header::COOKIE};
use voxtap_testkit::http::{client, login};

const VOXTAP: &str = env!("CARGO_BIN_EXE_voxtap");
const PASSWORD: &str = "correct horse battery staple";

/// `voxtap hash-password` with `input` on stdin.
fn hash_password(input: &str) -> std::process::Output {
    let mut c = Command::new(VOXTAP)
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    c.wait_with_output().unwrap()
}

fn hash(password: &str) -> String {
    let out = hash_password(&format!("{password}\n"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn hash_password_prints_a_salted_argon2id_hash() {
    let h = hash(PASSWORD);
    assert!(h.starts_with("$argon2id$"), "{h}");
    assert_eq!(h.lines().count(), 1, "{h}");
    assert_ne!(h, hash(PASSWORD), "a new salt each time");
    let out = hash_password("\n");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("empty password"), "{err}");
}

/// Kills `voxtap serve` at the end, also on failure.
struct Serve(Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn serve_runs_the_web_ui_in_the_voxtap_process() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = Command::new(VOXTAP)
        .args(["import", "--out", data.to_str().unwrap()])
        .arg(voxtap_testkit::corpus(
            "generated/sipp-netns-udp-2calls.pcap",
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cfg = dir.path().join("voxtap-web.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[users]]\nname = \"alice\"\npassword_hash = \"{}\"\n",
            hash(PASSWORD)
        ),
    )
    .unwrap();
    let mut serve = Serve(
        Command::new(VOXTAP)
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(&data)
            .arg("--config")
            .arg(&cfg)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // "voxtap web UI on ADDR" once it listens.
    let mut line = String::new();
    BufReader::new(serve.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr: std::net::SocketAddr = line
        .trim()
        .strip_prefix("voxtap web UI on ")
        .unwrap_or_else(|| panic!("voxtap serve said {line:?}"))
        .parse()
        .unwrap();
    let base = format!("http://{addr}");
    let page = tokio::runtime::Runtime::new().unwrap().block_on(async {
        assert_eq!(
            login(&base, "alice", "not the password").await,
            Err(StatusCode::UNAUTHORIZED)
        );
        let cookie = login(&base, "alice", PASSWORD).await.expect("login");
        let r = client()
            .get(format!("{base}/calls"))
            .header(COOKIE, cookie)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        r.text().await.unwrap()
    });
    let calls: BTreeSet<String> = read_csv(&data.join("calls.csv"))
        .into_iter()
        .map(|c| c["call_id"].clone())
        .collect();
    assert_eq!(calls.len(), 2);
    for cid in &calls {
        assert!(page.contains(cid.as_str()), "{cid} not on the calls page");
    }

    let pid = serve.0.id();
    let holders = socket_holders(listening_inode(addr.port()));
    assert_eq!(holders, vec![pid], "processes holding the listening socket");
    assert_eq!(children(pid), Vec::<u32>::new(), "processes voxtap started");
}

/// The inode of the TCP socket listening on 127.0.0.1:`port`.
fn listening_inode(port: u16) -> String {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let local = format!("0100007F:{port:04X}");
    table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        // sl local rem st(0A = LISTEN) queues tr retrnsmt uid timeout inode
        .find(|f| f.len() > 9 && f[1] == local && f[3] == "0A")
        .unwrap_or_else(|| panic!("nothing listens on {local} in {table}"))[9]
        .to_string()
}

/// Every process with a file descriptor on socket `inode`.
fn socket_holders(inode: String) -> Vec<u32> {
    let link = format!("socket:[{inode}]");
    let mut pids = Vec::new();
    for p in processes() {
        let Ok(fds) = std::fs::read_dir(Path::new("/proc").join(p.to_string()).join("fd")) else {
            continue;
        };
        let holds = fds
            .filter_map(Result::ok)
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == link.as_str()));
        if holds {
            pids.push(p);
        }
    }
    pids
}

/// The processes whose parent is `pid`.
fn children(pid: u32) -> Vec<u32> {
    processes()
        .into_iter()
        .filter(|p| {
            // pid (comm) state ppid ...: comm may hold spaces and ')'.
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    let rest = &s[s.rfind(')')? + 1..];
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

fn processes() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}
