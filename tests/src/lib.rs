//! Helpers for the end-to-end tests in `tests/`: where the shared corpus is,
//! running tshark, importing a capture, and reading our CSV output.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use voxtap_engine::import::{ImportOptions, ImportReport, run_import};
use voxtap_engine::pipeline::PipelineConfig;

/// `../shared/corpus` beside the repository (CI clones the repo next to it).
pub fn corpus(rel: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/corpus")
        .join(rel);
    assert!(
        p.exists(),
        "corpus file {} is missing: the tests need ../shared/corpus beside the repository",
        p.display()
    );
    p
}

/// Run tshark and return its stdout; panics with its stderr on failure.
pub fn tshark(args: &[&str]) -> String {
    let out = Command::new("tshark")
        .args(args)
        .output()
        .expect("tshark must be installed (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "tshark {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run tshark on a capture that is damaged on purpose: tshark prints what
/// it could read and exits non-zero; return that output.
pub fn tshark_lenient(args: &[&str]) -> String {
    let out = Command::new("tshark")
        .args(args)
        .output()
        .expect("tshark must be installed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Import `files` into a fresh temporary directory.
pub fn import(files: &[PathBuf]) -> (tempfile::TempDir, ImportReport) {
    import_with(files, PipelineConfig::default())
}

pub fn import_with(
    files: &[PathBuf],
    pipeline: PipelineConfig,
) -> (tempfile::TempDir, ImportReport) {
    let dir = tempfile::tempdir().expect("temp dir");
    let report = run_import(&ImportOptions {
        files: files.to_vec(),
        out: dir.path().to_path_buf(),
        pipeline,
        call_files: true,
        media: None,
    })
    .expect("import");
    (dir, report)
}

/// Import with the media outputs (SRTP decryption, WAV, DTMF, quality),
/// as `voxtap import` does by default.
pub fn import_with_media(files: &[PathBuf]) -> (tempfile::TempDir, ImportReport) {
    let dir = tempfile::tempdir().expect("temp dir");
    let report = run_import(&ImportOptions {
        files: files.to_vec(),
        out: dir.path().to_path_buf(),
        pipeline: PipelineConfig::default(),
        call_files: true,
        media: Some(voxtap_engine::media::MediaOptions::default()),
    })
    .expect("import");
    (dir, report)
}

/// Read one of our CSV files as rows of column -> value.
pub fn read_csv(path: &Path) -> Vec<HashMap<String, String>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut rows = parse_csv(&text).into_iter();
    let header = rows.next().expect("CSV header");
    rows.map(|r| header.iter().cloned().zip(r).collect())
        .collect()
}

fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') => quoted = true,
            (false, ',') => row.push(std::mem::take(&mut field)),
            (false, '\r') => {}
            (false, '\n') => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (false, c) => field.push(c),
        }
    }
    if !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    rows
}

/// Call-IDs tshark finds in a capture, sorted.
pub fn tshark_call_ids(file: &Path) -> Vec<String> {
    let out = tshark(&[
        "-r",
        file.to_str().unwrap(),
        "-Y",
        "sip",
        "-T",
        "fields",
        "-e",
        "sip.Call-ID",
    ]);
    let mut ids: Vec<String> = out
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// One row of `tshark -z rtp,streams`.
#[derive(Clone, Debug, PartialEq)]
pub struct TsharkStream {
    pub src: String,
    pub dst: String,
    pub ssrc: u32,
    pub packets: u64,
    pub lost: i64,
    pub max_delta_ms: f64,
    pub mean_jitter_ms: f64,
    pub max_jitter_ms: f64,
}

/// RTP streams as tshark sees them (heuristic RTP on, like our import).
pub fn tshark_rtp_streams(file: &Path) -> Vec<TsharkStream> {
    let out = tshark(&[
        "-q",
        "-r",
        file.to_str().unwrap(),
        "-o",
        "rtp.heuristic_rtp:TRUE",
        "-z",
        "rtp,streams",
    ]);
    let mut v = Vec::new();
    for line in out.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        // start end src sport dst dport ssrc payload... pkts lost (pct) min mean max minj meanj maxj [X]
        let Some(ssrc_idx) = f.iter().position(|t| t.starts_with("0x")) else {
            continue;
        };
        if ssrc_idx != 6 {
            continue;
        }
        let Some(lost_idx) = f
            .iter()
            .position(|t| t.starts_with('(') && t.ends_with("%)"))
        else {
            continue;
        };
        let num = |i: usize| {
            f.get(i)
                .and_then(|s| s.parse::<f64>().ok())
                .unwrap_or(f64::NAN)
        };
        let fmt_addr = |ip: &str, port: &str| {
            if ip.contains(':') {
                format!("[{ip}]:{port}")
            } else {
                format!("{ip}:{port}")
            }
        };
        v.push(TsharkStream {
            src: fmt_addr(f[2], f[3]),
            dst: fmt_addr(f[4], f[5]),
            ssrc: u32::from_str_radix(f[6].trim_start_matches("0x"), 16).unwrap(),
            packets: f[lost_idx - 2].parse().unwrap(),
            lost: f[lost_idx - 1].parse().unwrap(),
            max_delta_ms: num(lost_idx + 3),
            mean_jitter_ms: num(lost_idx + 5),
            max_jitter_ms: num(lost_idx + 6),
        });
    }
    v
}

/// Every frame of a capture as (epoch time, frame length), in order, for
/// comparing a cut-out call against the original.
pub fn tshark_frames(file: &Path, filter: Option<&str>) -> Vec<(String, u32)> {
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
        args.push("-Y");
        args.push(f);
    }
    tshark(&args)
        .lines()
        .filter_map(|l| {
            let (t, n) = l.split_once('\t')?;
            Some((t.to_string(), n.trim().parse().ok()?))
        })
        .collect()
}
