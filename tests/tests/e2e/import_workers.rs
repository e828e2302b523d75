//! `import --workers N`: the call folders written by writer threads are the
//! files one thread writes, byte for byte (the index: the same rows but for
//! the time of the run), and a folder a writer cannot write is a clear
//! error that does not lose the other calls.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use voxtap_e2e::{corpus, read_csv};
use voxtap_engine::import::{ImportOptions, ImportReport, run_import_with_workers};
use voxtap_engine::media::MediaOptions;
use voxtap_engine::pipeline::PipelineConfig;

fn import_n(files: &[PathBuf], out: &Path, workers: usize) -> Result<ImportReport, String> {
    let opts = ImportOptions {
        files: files.to_vec(),
        out: out.to_path_buf(),
        pipeline: PipelineConfig::default(),
        call_files: true,
        media: Some(MediaOptions::default()),
    };
    run_import_with_workers(&opts, workers, &|_| {}).map_err(|e| e.to_string())
}

/// Every file under `dir` but the index, by relative path.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            if p.is_dir() {
                stack.push(p);
            } else if !rel.starts_with("index.sqlite") {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// Every row of every table of the index, `indexed_at` (the time of the
/// run) left out.
fn index_rows(dir: &Path) -> BTreeMap<String, Vec<Vec<String>>> {
    let db = rusqlite::Connection::open(dir.join("index.sqlite")).unwrap();
    let tables: Vec<String> = db
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut out = BTreeMap::new();
    for t in tables {
        let mut st = db.prepare(&format!("SELECT * FROM \"{t}\"")).unwrap();
        let names: Vec<String> = st.column_names().map(str::to_string).collect();
        let mut rows: Vec<Vec<String>> = st
            .query_map([], |r| {
                Ok((0..names.len())
                    .filter(|&i| names[i] != "indexed_at")
                    .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                    .collect())
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        rows.sort();
        out.insert(t, rows);
    }
    out
}

/// The synthetic capture: `calls` G.711 calls with loss and jitter.
fn synth(dir: &Path, calls: u32) -> PathBuf {
    let pcap = dir.join(format!("synth-{calls}.pcap"));
    let cfg = voxtap_engine::synth::SynthConfig {
        calls,
        seconds: 2,
        ramp_seconds: 2,
        loss_pct: 1.0,
        jitter_ms: 5.0,
        seed: 11,
        media_server: None,
    };
    voxtap_engine::synth::generate(&cfg, std::fs::File::create(&pcap).unwrap()).unwrap();
    pcap
}

/// G.711 with WAVs and DTMF, SRTP, a B2BUA's two legs (the bundle pcap),
/// TCP, and 300 synthetic calls: every output file the same with 1 and 4
/// writers, and the same index rows.
#[test]
fn four_writers_write_the_files_one_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: Vec<PathBuf> = vec![
        corpus("generated/baresip-pcma-hold-resume-dtmf-rtcp.pcap"),
        corpus("generated/baresip-srtp-sdes-pcmu-1call.pcap"),
        corpus("generated/baresip-b2bua-2legs-srtp-to-rtp.pcap"),
        corpus("generated/sipp-netns-tcp-2calls.pcap"),
        corpus("generated/sipp-loopback-3calls-rtpecho.pcap"),
        synth(tmp.path(), 300),
    ];
    for (i, file) in cases.iter().enumerate() {
        let (one, four) = (
            tmp.path().join(format!("{i}-1")),
            tmp.path().join(format!("{i}-4")),
        );
        let r1 = import_n(std::slice::from_ref(file), &one, 1).unwrap();
        let r4 = import_n(std::slice::from_ref(file), &four, 4).unwrap();
        let name = file.display();
        assert_eq!(r1.calls, r4.calls, "{name}");
        assert_eq!(r1.call_packets_written, r4.call_packets_written, "{name}");
        let (f1, f4) = (files(&one), files(&four));
        assert!(
            f1.keys().any(|k| k.ends_with("/call.pcap")),
            "{name}: no call folder"
        );
        assert_eq!(
            f1.keys().collect::<Vec<_>>(),
            f4.keys().collect::<Vec<_>>(),
            "{name}: the same files"
        );
        for (k, v) in &f1 {
            assert!(f4[k] == *v, "{name}: {k} differs between 1 and 4 writers");
        }
        assert_eq!(index_rows(&one), index_rows(&four), "{name}: index rows");
    }
    // What the cases cover, so that a corpus change cannot make this pass
    // on less: WAVs, decrypted SRTP, a multi-leg bundle, many calls.
    let all: Vec<String> = (0..cases.len())
        .flat_map(|i| files(&tmp.path().join(format!("{i}-4"))).into_keys())
        .collect();
    for want in [
        "/caller.wav",
        "/stereo.wav",
        "/call-decrypted.pcap",
        "/sip-plus-media-decrypted.pcap",
        "/dtmf.csv",
        "/quality.json",
    ] {
        assert!(all.iter().any(|k| k.ends_with(want)), "no {want} written");
    }
    let synth_calls = read_csv(&tmp.path().join(format!("{}-4/calls.csv", cases.len() - 1)));
    assert_eq!(synth_calls.len(), 300);
}

/// One call's folder cannot be created (a file is in its way): the import
/// fails naming that folder and the cause, and every other call is written
/// (its folder, its calls.csv row).
#[test]
fn a_folder_a_writer_cannot_write_is_reported_and_the_others_are_written() {
    let tmp = tempfile::tempdir().unwrap();
    let pcap = synth(tmp.path(), 40);
    let reference = tmp.path().join("reference");
    import_n(std::slice::from_ref(&pcap), &reference, 1).unwrap();
    let rows = read_csv(&reference.join("calls.csv"));
    assert_eq!(rows.len(), 40);
    let folder_of =
        |r: &HashMap<String, String>| r["pcap"].trim_end_matches("/call.pcap").to_string();
    let blocked = folder_of(&rows[17]);

    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join(&blocked), b"in the way").unwrap();
    let err = import_n(std::slice::from_ref(&pcap), &out, 4).unwrap_err();
    assert!(err.contains("1 call folder(s) not written"), "{err}");
    assert!(err.contains(&blocked), "names the folder: {err}");
    assert!(
        err.contains("exists") || err.contains("directory"),
        "says why: {err}"
    );

    let got = read_csv(&out.join("calls.csv"));
    assert_eq!(got.len(), 40, "every call has its row");
    let want = files(&reference);
    let have = files(&out);
    for r in &rows {
        let f = folder_of(r);
        if f == blocked {
            continue;
        }
        for (k, v) in want.iter().filter(|(k, _)| k.starts_with(&format!("{f}/"))) {
            assert!(have.get(k) == Some(v), "{k} missing or different");
        }
    }
}

/// The same with one writer: the folders are written by import's output
/// thread, which stops at the first failure; the import returns that
/// failure (naming the folder) instead of waiting on a stopped thread.
#[test]
fn a_folder_the_output_thread_cannot_write_fails_the_import() {
    let tmp = tempfile::tempdir().unwrap();
    let pcap = synth(tmp.path(), 40);
    let reference = tmp.path().join("reference");
    import_n(std::slice::from_ref(&pcap), &reference, 1).unwrap();
    let rows = read_csv(&reference.join("calls.csv"));
    let blocked = rows[5]["pcap"].trim_end_matches("/call.pcap").to_string();

    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join(&blocked), b"in the way").unwrap();
    let err = import_n(std::slice::from_ref(&pcap), &out, 1).unwrap_err();
    assert!(err.contains(&blocked), "names the folder: {err}");
    assert!(
        err.contains("exists") || err.contains("directory"),
        "says why: {err}"
    );
}
