//! Downloads of a call whose folder was uploaded to S3 and deleted locally
//! are the same bytes as before, through a real S3 API server (s3s-fs,
//! installed by scripts/setup.sh) started on loopback and killed on drop.

use crate::common;

use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use common::*;
use voxtap_engine::index::{CallQuery, INDEX_FILE, Index};
use voxtap_sensor::upload::{UploadConfig, Uploader};
use voxtap_testkit::{S3_ACCESS as ACCESS, S3_SECRET as SECRET, aws_env, s3s_fs};

pub(crate) struct S3Server(Child);

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn start_s3(dir: &Path) -> (S3Server, String) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    std::fs::create_dir_all(dir).unwrap();
    let child = Command::new(s3s_fs())
        .args(["--host", "127.0.0.1", "--port"])
        .arg(port.to_string())
        .args(["--access-key", ACCESS, "--secret-key", SECRET])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("s3s-fs must be installed (scripts/setup.sh)");
    let guard = S3Server(child);
    let t = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "s3s-fs did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    (guard, format!("http://127.0.0.1:{port}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn downloads_of_an_s3_held_call_equal_the_local_ones() {
    // The standard AWS credential chain, as in production.
    aws_env();
    let dir = data_dir_with(&corpus("generated/sipp-netns-udp-2calls.pcap"));
    let data = dir.path().canonicalize().unwrap();
    let s3dir = tempfile::tempdir().unwrap();
    let (_srv, endpoint) = start_s3(&s3dir.path().join("s3"));
    let row = Index::open(&data.join(INDEX_FILE))
        .unwrap()
        .search(&CallQuery {
            limit: 1,
            ..Default::default()
        })
        .unwrap()
        .rows
        .remove(0);
    let folder = data.join(row.folder.as_deref().unwrap());
    let pcap = std::fs::read(folder.join("call.pcap")).unwrap();
    let sip = std::fs::read(folder.join("sip.txt")).unwrap();

    let cfg = UploadConfig {
        enabled: true,
        endpoint,
        bucket: "voxtap-web".into(),
        sensor: "s1".into(),
        path_style: true,
        raw: false,
        delete_after_upload: true,
        ..Default::default()
    };
    let (cfg2, data2) = (cfg.clone(), data.clone());
    let uploaded = tokio::task::spawn_blocking(move || {
        let store = data2.join("store");
        let mut up = Uploader::new(&cfg2, &store, Some(&data2), Some(&data2)).unwrap();
        up.s3().create_bucket().unwrap();
        assert!(
            up.drain(&AtomicBool::new(false), Duration::from_secs(30))
                .unwrap()
        );
        up.status().uploads
    })
    .await
    .unwrap();
    // Two calls x (call.pcap, sip.txt).
    assert_eq!(uploaded, 4);
    assert!(!folder.join("call.pcap").exists() && !folder.join("sip.txt").exists());
    assert!(folder.join(".remote.json").exists());

    let running = start(&data).await;
    let base = format!("http://{}", running.addr);
    let c = reqwest::Client::new();
    let get = |kind: &str| {
        c.get(format!("{base}/calls/{}/download/{kind}", row.id))
            .header("authorization", format!("Bearer {API_USER}:{API_TOKEN}"))
            .send()
    };
    let r = get("pcap").await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    assert!(r.bytes().await.unwrap() == pcap);
    let r = get("sip").await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.bytes().await.unwrap() == sip);
    let r = get("zip").await.unwrap();
    assert_eq!(r.status(), 200);
    let body = r.bytes().await.unwrap().to_vec();
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(body)).unwrap();
    let mut names: Vec<_> = z.file_names().map(|n| n.unwrap().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["call.pcap", "report.json", "sip.txt"]);
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut z.by_name("call.pcap").unwrap(), &mut got).unwrap();
    assert!(got == pcap);
    // The uploader's status reaches /metrics.
    let metrics = c
        .get(format!("{base}/metrics"))
        .header("authorization", format!("Bearer {API_USER}:{API_TOKEN}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lines: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("voxtap_upload_"))
        .collect();
    println!("{}", lines.join("\n"));
    for want in [
        "voxtap_upload_uploaded_files 4",
        "voxtap_upload_s3_reachable 1",
        "voxtap_upload_local_deleted_files 4",
        "voxtap_upload_spool_cap_reached 0",
    ] {
        assert!(lines.contains(&want), "{want} not in {lines:?}");
    }
    // The manifest itself is not served.
    let r = c
        .get(format!("{base}/calls/{}/files/.remote.json", row.id))
        .header("authorization", format!("Bearer {API_USER}:{API_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}
