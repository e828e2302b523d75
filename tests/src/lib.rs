//! Helpers for the end-to-end tests in `tests/`: importing a capture (they
//! need voxtap's types), and the test kit's corpus, tshark and CSV helpers.

use std::path::PathBuf;

pub use voxtap_testkit::corpus;
pub use voxtap_testkit::csv::read_csv;
pub use voxtap_testkit::tshark::{
    TsharkStream, call_filter, sdp_endpoints, tshark, tshark_call_ids, tshark_frames,
    tshark_lenient, tshark_rtp_streams,
};

use voxtap_engine::import::{ImportOptions, ImportReport, run_import};
use voxtap_engine::pipeline::PipelineConfig;

/// Every capture in the corpus (walked, so new files are covered too),
/// sorted; at least 30, or the corpus is incomplete.
pub fn corpus_captures() -> Vec<PathBuf> {
    fn walk(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("pcap" | "pcapng")
            ) {
                out.push(p);
            }
        }
    }
    let mut v = Vec::new();
    walk(&corpus(""), &mut v);
    v.sort();
    assert!(
        v.len() >= 30,
        "corpus looks incomplete: {} captures",
        v.len()
    );
    v
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
