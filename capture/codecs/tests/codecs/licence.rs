//! The default build carries no GPL code: no GPL crate in the workspace's
//! dependency graph, and no GPL library linked. The `gpl-codecs` feature
//! is what adds bcg729 (GPL-3), and it is off by default.

use std::process::Command;

use voxtap_codecs::{AmrParams, CodecKind, Decoder};

/// A licence expression that cannot be taken without the GPL (or LGPL):
/// every `OR` alternative names it.
fn gpl_only(expr: &str) -> bool {
    expr.split(" OR ")
        .all(|alt| alt.to_ascii_uppercase().contains("GPL"))
}

#[test]
fn default_workspace_graph_has_no_gpl_crate() {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--manifest-path"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../../Cargo.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut offenders = Vec::new();
    for p in meta["packages"].as_array().unwrap() {
        let licence = p["license"].as_str().unwrap_or("");
        if gpl_only(licence) {
            offenders.push(format!("{} {}: {licence}", p["name"], p["version"]));
        }
    }
    assert!(offenders.is_empty(), "GPL-only crates: {offenders:?}");
    // The feature exists and nothing turns it on in a default build.
    let codecs = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "voxtap-codecs")
        .unwrap();
    assert!(codecs["features"]["gpl-codecs"].is_array());
    let default = codecs["features"]["default"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(!default.iter().any(|f| f == "gpl-codecs"));
    for node in meta["resolve"]["nodes"].as_array().unwrap() {
        if node["id"].as_str().unwrap_or("").contains("codecs") {
            let features = node["features"].as_array().unwrap();
            assert!(!features.iter().any(|f| f == "gpl-codecs"), "{node}");
        }
    }
}

/// The libraries this test binary links, as `ldd` reports them. The
/// decoders are built first so the linker keeps every library they use.
#[test]
fn bcg729_is_linked_only_with_the_feature() {
    let g729 = Decoder::new(CodecKind::G729);
    assert_eq!(g729.is_ok(), cfg!(feature = "gpl-codecs"));
    for k in [
        CodecKind::Gsm,
        CodecKind::Amr(AmrParams::default()),
        CodecKind::Speex { rate: 8000 },
    ] {
        assert!(Decoder::new(k).is_ok());
    }
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("ldd").arg(&exe).output().unwrap();
    let libs = String::from_utf8_lossy(&out.stdout);
    // The check sees the libraries at all...
    for lib in ["libgsm", "libopencore-amrnb", "libspeex"] {
        assert!(libs.contains(lib), "{lib} missing from:\n{libs}");
    }
    // ...and bcg729 comes with the feature only.
    assert_eq!(
        libs.contains("libbcg729"),
        cfg!(feature = "gpl-codecs"),
        "{libs}"
    );
}
