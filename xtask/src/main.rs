//! Project tasks: `cargo xtask <setup|test|fuzz|demo>`.
//!
//! * `setup`: runs `scripts/setup.sh` (root, Debian).
//! * `test`: fmt check, clippy `-D warnings` (also with the `gpl-codecs`
//!   feature), a type-check of the capture crate for macOS
//!   (`x86_64-apple-darwin`), build (including the XDP object), the
//!   `gpl-codecs` tests, the default members' tests, then every fuzz target for
//!   `VOXTAP_FUZZ_SECONDS` (default 20) seconds each; `VOXTAP_SKIP_FUZZ=1`
//!   skips the fuzz step.
//! * `fuzz [--seconds N] [target...]`: runs cargo-fuzz targets (all targets in
//!   `fuzz/Cargo.toml` by default), seeded from `fuzz/seeds/<target>/`.
//! * `demo` (root): live capture demo — SIPp calls on a mirrored namespace
//!   lab captured through XDP by `voxtap run` (see xtask/src/live.rs).
//! * `demo-import`: imports the shared corpus captures into `out/demo`.
//! * `bench-live [--count N] [--rates a,b,max] [--rings N] [--pipeline N]` (root): voxtap vs
//!   `tcpdump -w` loss at fixed offered rates.
//! * `bench`: `voxtap import` against tshark and sngrep on a synthetic capture.
//! * `bench-import`: `voxtap import` (every output, CSV-only) against
//!   `tshark -z rtp,streams`, wall and CPU time (xtask/src/bench_import.rs).
//! * `bench-scale`: the parallel engine with 1, 2, 4, 8 media workers, CPU
//!   per packet of each thread at two call lengths, fitted per packet and
//!   per call and projected to a saturated 10 GbE (xtask/src/bench_scale.rs).

use std::{
    env,
    ffi::OsStr,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

mod bench;
mod bench_import;
mod bench_scale;
mod live;

const DEFAULT_FUZZ_SECONDS: u64 = 20;

fn main() -> Result<()> {
    let args: Vec<String> = env::args().skip(1).collect();
    let root = workspace_root();
    env::set_current_dir(&root).with_context(|| format!("cd {}", root.display()))?;
    match args.first().map(String::as_str) {
        Some("setup") => setup(&root),
        Some("test") => test(&root),
        Some("fuzz") => fuzz(&root, &args[1..]),
        Some("demo") => {
            ensure_tools(&root)?;
            live::demo(&root)
        }
        Some("demo-import") => demo(&root),
        Some("bench-live") => live::bench_live(&root, &args[1..]),
        Some("bench") => bench::bench(&root, &args[1..]),
        Some("bench-import") => bench_import::bench_import(&root, &args[1..]),
        Some("bench-scale") => bench_scale::bench_scale(&root, &args[1..]),
        Some("bench-index") => bench_index(),
        Some("bench-web") => bench_web(),
        Some("soak") => bench::soak(&root, &args[1..]),
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\n\
                 commands:\n  \
                 setup                          install system packages and Rust tools (root)\n  \
                 test                           fmt, clippy, build, tests, fuzz (VOXTAP_SKIP_FUZZ=1 skips fuzz)\n  \
                 fuzz [--seconds N] [target..]  run cargo-fuzz targets (default: all, {DEFAULT_FUZZ_SECONDS}s each)\n  \
                 demo                           live demo: SIPp calls captured through XDP (root)\n  \
                 demo-import                    import the corpus captures into out/demo\n  \
                 bench-live [--count N] [--rates a,b,max] [--rings N] [--pipeline N]  voxtap vs tcpdump -w loss (root)\n  \
                 bench [--calls N] [--seconds S] [--mem-calls N] [--store-mib N]  import vs tshark/sngrep, memory per call, store write vs dd\n  \
                 bench-import [--calls N] [--seconds S] [--workers N] [--repeat R]  import (every output, CSV-only) vs tshark, wall and CPU\n  \
                 bench-scale [--calls N] [--seconds S1,S2] [--engine-workers 1,2,4,8] [--voxtap PATH] [--instructions | --cache-misses]  parallel engine: CPU per packet and per call per thread, projected to 10 GbE\n  \
                 bench-index                    call index: insert 1M synthetic calls, time each query kind\n  \
                 bench-web                      every page and API with 1M calls in the index: p50/p95 ms\n  \
                 soak [--minutes N] [--cps R] [--call-seconds S] [--no-writer]  steady calls, RSS flat or not"
            );
            bail!("unknown or missing command");
        }
    }
}

/// The call index benchmark (an ignored test, release build);
/// VOXTAP_BENCH_CALLS overrides the million.
fn bench_index() -> Result<()> {
    let mut cmd = cargo();
    cmd.args([
        "test",
        "--release",
        "-p",
        "voxtap-engine",
        "--lib",
        "index::tests::bench_index_million_calls",
        "--",
        "--ignored",
        "--nocapture",
    ]);
    run(cmd)
}

/// Every page of the web UI timed against a large index (an ignored test,
/// release build); VOXTAP_BENCH_CALLS overrides the million.
fn bench_web() -> Result<()> {
    let mut cmd = cargo();
    cmd.args([
        "test",
        "--release",
        "-p",
        "voxtap-web",
        "--test",
        "web",
        "page_bench::",
        "--",
        "--ignored",
        "--nocapture",
    ]);
    run(cmd)
}

fn workspace_root() -> PathBuf {
    let manifest = env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("xtask"));
    manifest
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn cargo() -> Command {
    Command::new(env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Runs `cmd` with inherited stdio; fails with the command line on error.
fn run(mut cmd: Command) -> Result<()> {
    let line = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args()
            .map(OsStr::to_string_lossy)
            .collect::<Vec<_>>()
            .join(" ")
    );
    eprintln!("xtask: $ {line}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot run `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed: {status}");
    }
    Ok(())
}

fn setup(root: &Path) -> Result<()> {
    run(Command::new(root.join("scripts/setup.sh")))
}

fn test(root: &Path) -> Result<()> {
    let mut c = cargo();
    c.args(["fmt", "--all", "--check"]);
    run(c)?;
    let mut c = cargo();
    c.args(["clippy", "--all-targets", "--", "-D", "warnings"]);
    run(c)?;
    // The opt-in G.729 decoder (bcg729, GPL-3) and its tests compile only
    // with the feature.
    let mut c = cargo();
    c.args([
        "clippy",
        "-p",
        "voxtap-codecs",
        "-p",
        "voxtap-e2e",
        "--all-targets",
    ]);
    c.args(["--features", "gpl-codecs", "--", "-D", "warnings"]);
    run(c)?;
    clippy_ebpf(root)?;
    check_macos()?;
    let mut c = cargo();
    c.arg("build");
    run(c)?;
    if env::var("VOXTAP_SKIP_FUZZ").as_deref() == Ok("1") {
        eprintln!("xtask: VOXTAP_SKIP_FUZZ=1: skipping the fuzz step");
    } else {
        let seconds = match env::var("VOXTAP_FUZZ_SECONDS") {
            Ok(s) => s
                .parse()
                .with_context(|| format!("VOXTAP_FUZZ_SECONDS={s:?} is not a number"))?,
            Err(_) => DEFAULT_FUZZ_SECONDS,
        };
        run_fuzz(root, seconds, &fuzz_targets(root)?)?;
    }
    gpl_codecs_tests()?;
    // Last, streamed as it runs; the per-binary `test result:` lines are
    // added up into one closing line (the last binary, a doc-test run with
    // nothing in it, would otherwise close the output on "0 passed").
    let mut c = cargo();
    c.arg("test").stdout(std::process::Stdio::piped());
    eprintln!("xtask: $ cargo test");
    let mut child = c.spawn().context("starting cargo test")?;
    let (mut passed, mut failed, mut ignored) = (0u64, 0u64, 0u64);
    if let Some(out) = child.stdout.take() {
        use std::io::BufRead;
        for line in std::io::BufReader::new(out).lines() {
            let line = line?;
            println!("{line}");
            if let Some(rest) = line.strip_prefix("test result: ") {
                let count = |word: &str| {
                    rest.split(';')
                        .find_map(|p| {
                            p.trim()
                                .strip_suffix(word)?
                                .trim()
                                .rsplit(' ')
                                .next()?
                                .parse::<u64>()
                                .ok()
                        })
                        .unwrap_or(0)
                };
                passed += count("passed");
                failed += count("failed");
                ignored += count("ignored");
            }
        }
    }
    let status = child.wait()?;
    println!("tests: {passed} passed, {failed} failed, {ignored} skipped");
    if !status.success() {
        bail!("cargo test failed ({status})");
    }
    Ok(())
}

/// The `gpl-codecs` build: what only it compiles (the G.729 decoder
/// against bcg729's reference, the G.729 call end to end) and the licence
/// check the other way round (bcg729 linked). The default build's licence
/// check runs with every other test.
fn gpl_codecs_tests() -> Result<()> {
    for args in [
        &[
            "-p",
            "voxtap-codecs",
            "--lib",
            "--test",
            "codecs",
            "licence::",
        ][..],
        &["-p", "voxtap-codecs", "--test", "codecs", "reference::g729"],
        &["-p", "voxtap-e2e", "--test", "e2e", "codecs::g729"],
    ] {
        let mut c = cargo();
        c.arg("test").args(args).args(["--features", "gpl-codecs"]);
        run(c)?;
    }
    Ok(())
}

/// Type-checks the sensor crate (and the engine, protocol and codecs crates
/// under it) for macOS (RPCAP is meant to run there).
/// Only Rust is checked: nothing is linked, and C that would need Apple's
/// SDK is kept out: no `tls` feature (ring's C), the system SQLite instead
/// of the bundled one (capture/engine/Cargo.toml), and libopus "found" in a
/// directory instead of built from source (OPUS_LIB_DIR; never linked).
fn check_macos() -> Result<()> {
    let mut c = cargo();
    c.env("OPUS_LIB_DIR", "/nonexistent-opus-for-check").args([
        "check",
        "-p",
        "voxtap-sensor",
        "--target",
        "x86_64-apple-darwin",
        "--no-default-features",
    ]);
    run(c)
}

/// Clippy on the XDP crate, which is not a default member (BPF target
/// only): without and with its `log` feature (debug records), the two
/// objects the sensor's build.rs builds.
fn clippy_ebpf(root: &Path) -> Result<()> {
    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("ebpf-clippy");
    for features in [&[][..], &["--features", "log"][..]] {
        let mut c = cargo();
        c.env("RUSTC_BOOTSTRAP", "1")
            .args([
                "clippy",
                "-p",
                "capture-ebpf",
                "--release",
                "--target",
                "bpfel-unknown-none",
                "-Z",
                "build-std=core",
            ])
            .args(features)
            .arg("--target-dir")
            .arg(&target_dir)
            .args(["--", "-D", "warnings"]);
        run(c)?;
    }
    Ok(())
}

fn fuzz(root: &Path, args: &[String]) -> Result<()> {
    let mut seconds = DEFAULT_FUZZ_SECONDS;
    let mut targets = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => {
                let v = it.next().context("--seconds needs a value")?;
                seconds = v.parse().with_context(|| format!("bad --seconds {v:?}"))?;
            }
            s if s.starts_with("--seconds=") => {
                let v = &s["--seconds=".len()..];
                seconds = v.parse().with_context(|| format!("bad --seconds {v:?}"))?;
            }
            s if s.starts_with('-') => bail!("unknown fuzz option {s}"),
            t => targets.push(t.to_owned()),
        }
    }
    let known = fuzz_targets(root)?;
    if targets.is_empty() {
        targets = known;
    } else if let Some(t) = targets.iter().find(|t| !known.contains(t)) {
        bail!(
            "unknown fuzz target {t}; fuzz/Cargo.toml lists: {}",
            known.join(", ")
        );
    }
    run_fuzz(root, seconds, &targets)
}

/// `[[bin]]` names in fuzz/Cargo.toml (read without a TOML dependency).
fn fuzz_targets(root: &Path) -> Result<Vec<String>> {
    let path = root.join("fuzz/Cargo.toml");
    let text = fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
    let mut targets = Vec::new();
    let mut in_bin = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
            continue;
        }
        if in_bin
            && let Some(rest) = line.strip_prefix("name")
            && let Some(v) = rest.trim_start().strip_prefix('=')
        {
            targets.push(v.trim().trim_matches('"').to_owned());
        }
    }
    if targets.is_empty() {
        bail!("no [[bin]] fuzz targets in {}", path.display());
    }
    Ok(targets)
}

fn run_fuzz(root: &Path, seconds: u64, targets: &[String]) -> Result<()> {
    for t in targets {
        let corpus = root.join("fuzz/corpus").join(t);
        fs::create_dir_all(&corpus).with_context(|| format!("mkdir {}", corpus.display()))?;
        let mut c = cargo();
        c.current_dir(root.join("fuzz"))
            .env("RUSTC_BOOTSTRAP", "1")
            .args(["fuzz", "run", t])
            .arg(&corpus);
        let seeds = root.join("fuzz/seeds").join(t);
        if seeds.is_dir() {
            // Extra corpus dirs are read-only inputs; new inputs go to `corpus`.
            c.arg(&seeds);
        }
        c.arg("--").arg(format!("-max_total_time={seconds}"));
        // libFuzzer prints a line per new input: keep it in a log and show
        // its summary, or its tail when the target fails.
        let logs = root.join("target/fuzz-logs");
        fs::create_dir_all(&logs)?;
        let log_path = logs.join(format!("{t}.log"));
        let log = fs::File::create(&log_path)?;
        c.stdout(log.try_clone()?).stderr(log);
        eprintln!(
            "xtask: fuzzing {t} for {seconds} s (log: {})",
            log_path.display()
        );
        let status = c
            .status()
            .with_context(|| format!("starting cargo fuzz for {t}"))?;
        let text = fs::read_to_string(&log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        if !status.success() {
            for l in &lines[lines.len().saturating_sub(60)..] {
                eprintln!("  {l}");
            }
            // A crash makes cargo-fuzz exit non-zero (artifact in fuzz/artifacts/<t>/).
            bail!(
                "fuzz target {t} failed (see fuzz/artifacts/{t}/ and {})",
                log_path.display()
            );
        }
        let done = lines
            .iter()
            .rev()
            .find(|l| l.starts_with("Done "))
            .copied()
            .unwrap_or("done");
        eprintln!("xtask: fuzz {t}: {done}, no crash");
    }
    Ok(())
}

/// Captures of the shared corpus (`../shared/corpus`, recursively).
fn corpus_captures(root: &Path) -> Result<Vec<PathBuf>> {
    let dir = root.join("../shared/corpus");
    let mut out = Vec::new();
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        let entries = fs::read_dir(&d).with_context(|| format!("read {}", d.display()))?;
        for e in entries {
            let p = e?.path();
            if p.is_dir() {
                stack.push(p);
            } else if matches!(
                p.extension().and_then(OsStr::to_str),
                Some("pcap" | "pcapng" | "cap")
            ) {
                out.push(p);
            }
        }
    }
    out.sort();
    if out.is_empty() {
        bail!("no .pcap/.pcapng/.cap captures under {}", dir.display());
    }
    Ok(out)
}

/// Run the set-up script when a tool the demo needs is missing (a fresh
/// machine), so one command is enough.
fn ensure_tools(root: &Path) -> Result<()> {
    let tools_ok = ["tshark", "sipp", "bpf-linker", "tcpdump"].iter().all(|t| {
        Command::new("sh")
            .args(["-c", &format!("command -v {t} >/dev/null")])
            .status()
            .is_ok_and(|s| s.success())
    });
    if !tools_ok {
        setup(root)?;
    }
    Ok(())
}

fn demo(root: &Path) -> Result<()> {
    ensure_tools(root)?;
    let mut c = cargo();
    c.arg("build");
    run(c)?;
    let files = corpus_captures(root)?;
    let target_dir = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    // One output folder per capture: several corpus files are copies of the
    // same calls (re-tagged with a VLAN), which one merged import would join.
    for f in &files {
        let stem = f.file_stem().and_then(OsStr::to_str).unwrap_or("capture");
        let mut c = Command::new(target_dir.join("debug/voxtap"));
        c.args(["import", "--quiet", "--out"])
            .arg(Path::new("out/demo").join(stem))
            .arg(f);
        run(c)?;
    }
    println!(
        "demo outputs: out/demo/<capture>/calls.csv, streams.csv, legs.csv and one folder per call"
    );
    Ok(())
}
