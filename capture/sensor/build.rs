//! Builds the XDP program (`capture-ebpf`) for `bpfel-unknown-none` with a
//! nested cargo and hands its path to the crate as `VOXTAP_EBPF_OBJ` (loaded
//! with `aya::include_bytes_aligned!`); builds it again with its `log`
//! feature (aya-log debug records) as `VOXTAP_EBPF_DEBUG_OBJ`, which
//! `voxtap run --xdp-debug` loads instead. Does nothing unless the target OS
//! is Linux.
//!
//! Needs `rust-src` (for `-Z build-std=core`, enabled on stable through
//! `RUSTC_BOOTSTRAP=1`) and `bpf-linker` 0.13; `scripts/setup.sh` installs both.

#[path = "build_btf.rs"]
mod build_btf;

use std::{
    env,
    ffi::OsString,
    path::{Path, PathBuf},
    process::Command,
};

const SETUP_HINT: &str =
    "run `sudo scripts/setup.sh` (or `cargo xtask setup`) from the workspace root";

fn main() {
    println!("cargo:rerun-if-env-changed=VOXTAP_EBPF_OBJ_OVERRIDE");
    println!("cargo:rerun-if-env-changed=VOXTAP_EBPF_DEBUG_OBJ_OVERRIDE");
    if env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let root = manifest_dir
        .ancestors()
        .nth(2)
        .expect("workspace root")
        .to_path_buf();
    for p in [
        "capture-ebpf/src",
        "capture-ebpf/build.rs",
        "capture-ebpf/Cargo.toml",
        "common/src",
        "common/Cargo.toml",
        "capture/sensor/build_btf.rs",
        "Cargo.lock",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(p).display());
    }

    // Escape hatch for machines that cannot build BPF (prebuilt objects; the
    // debug one defaults to the same object, which then has no log ring and
    // `--xdp-debug` says so).
    if let Some(obj) = env::var_os("VOXTAP_EBPF_OBJ_OVERRIDE") {
        let debug = env::var_os("VOXTAP_EBPF_DEBUG_OBJ_OVERRIDE").unwrap_or_else(|| obj.clone());
        for (var, path) in [("VOXTAP_EBPF_OBJ", obj), ("VOXTAP_EBPF_DEBUG_OBJ", debug)] {
            println!("cargo:rustc-env={var}={}", PathBuf::from(path).display());
        }
        return;
    }

    let rustc = env::var_os("RUSTC").unwrap_or_else(|| OsString::from("rustc"));
    check_rust_src(&rustc);
    check_bpf_linker();

    // Two target dirs: cargo keeps one binary per name and profile, so one
    // dir would rebuild the program at every switch of features (each dir
    // builds `core` once).
    let target_dir = ebpf_target_dir();
    for (var, dir, features) in [
        ("VOXTAP_EBPF_OBJ", target_dir.clone(), None),
        (
            "VOXTAP_EBPF_DEBUG_OBJ",
            target_dir.with_file_name("ebpf-log"),
            Some("log"),
        ),
    ] {
        build_ebpf(&root, &dir, features);
        let fixed = repaired_object(&dir);
        println!("cargo:rustc-env={var}={}", fixed.display());
    }
}

/// The object the nested build wrote to `dir`, with its BTF repaired,
/// written beside it.
fn repaired_object(dir: &Path) -> PathBuf {
    let obj = dir.join("bpfel-unknown-none/release/voxtap-xdp");
    assert!(
        obj.is_file(),
        "nested cargo succeeded but {} is missing",
        obj.display()
    );
    let fixed = obj.with_extension("btf-repaired");
    let mut bytes = std::fs::read(&obj).expect("reading the XDP object");
    build_btf::repair(&mut bytes)
        .unwrap_or_else(|e| panic!("repairing the BTF of {}: {e}", obj.display()));
    std::fs::write(&fixed, bytes).expect("writing the repaired XDP object");
    fixed
}

/// Variables the outer cargo (or clippy, or cargo-fuzz) sets that would
/// leak into the BPF build: a clippy-driver wrapper, host/sanitizer flags, a
/// forced host target, the outer target dir.
const LEAKING_VARS: &[&str] = &[
    "RUSTC",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTDOC",
    "RUSTFLAGS",
    "RUSTDOCFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_ENCODED_RUSTDOCFLAGS",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_BUILD_DIR",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_PROFILE_RELEASE_LTO",
    "CARGO_PROFILE_RELEASE_PANIC",
    "CARGO_INCREMENTAL",
];

/// Builds capture-ebpf (with `features`, if any) for `bpfel-unknown-none`
/// with a nested cargo into `target_dir`; panics with the nested output and
/// a hint on failure.
fn build_ebpf(root: &Path, target_dir: &Path, features: Option<&str>) {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args([
            "build",
            "-p",
            "capture-ebpf",
            "--release",
            "--target",
            "bpfel-unknown-none",
            "-Z",
            "build-std=core",
            "--target-dir",
        ])
        .arg(target_dir)
        .env("RUSTC_BOOTSTRAP", "1");
    if let Some(f) = features {
        cmd.args(["--features", f]);
    }
    for var in LEAKING_VARS {
        cmd.env_remove(var);
    }
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run nested cargo for capture-ebpf: {e}"));
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let hint = if stderr.contains("bpf-linker") {
            format!("\nbpf-linker failed or is missing: {SETUP_HINT}")
        } else if stderr.contains("rust-src") || stderr.contains("library/Cargo.lock") {
            format!("\nrust-src is missing: {SETUP_HINT}")
        } else {
            String::new()
        };
        panic!(
            "building the XDP program (capture-ebpf) failed: {}\n{}\n{}{hint}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            stderr
        );
    }
}

/// `<outer target dir>/<profile>/ebpf`, stable across rebuilds of this script
/// so the BPF crate and `core` are rebuilt only when they change.
fn ebpf_target_dir() -> PathBuf {
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    // OUT_DIR = <target>/<profile>/build/<pkg>-<hash>/out
    let profile_dir = out_dir
        .ancestors()
        .nth(3)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| out_dir.clone());
    profile_dir.join("ebpf")
}

fn check_rust_src(rustc: &OsString) {
    let sysroot = Command::new(rustc)
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()));
    if let Some(sysroot) = sysroot {
        let core = sysroot.join("lib/rustlib/src/rust/library/core");
        if !core.is_dir() {
            panic!(
                "the rust-src component is missing ({} not found); it is needed to build the XDP \
                 program with -Z build-std=core.\nInstall it: `rustup component add rust-src`, or {SETUP_HINT}",
                core.display()
            );
        }
    }
}

fn check_bpf_linker() {
    match Command::new("bpf-linker").arg("--version").output() {
        Ok(o) if o.status.success() => {}
        _ => panic!(
            "bpf-linker is not installed or not on PATH; it links the XDP program.\nInstall it \
             (needs llvm-22-dev): `LLVM_PREFIX=/usr/lib/llvm-22 LLVM_SYS_221_PREFIX=/usr/lib/llvm-22 \
             cargo install bpf-linker@0.13.0 --locked --no-default-features --features llvm-22`, or {SETUP_HINT}"
        ),
    }
}
