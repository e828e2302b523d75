//! Live capture tasks (root): `demo` (SIPp calls captured through XDP on a
//! mirrored namespace lab) and `bench-live` (voxtap vs `tcpdump -w` at fixed
//! offered rates). Both build the lab with `scripts/netns-mirror.sh` and tear
//! it down on every exit path.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{cargo, run};

/// The lab; `down` on drop, so errors and panics clean up too.
struct Lab {
    script: PathBuf,
    p: String,
}

impl Lab {
    fn up(root: &Path, p: &str, n: u8) -> Result<Lab> {
        let script = root.join("scripts/netns-mirror.sh");
        let lab = Lab {
            script: script.clone(),
            p: p.to_owned(),
        };
        let mut c = Command::new(&script);
        c.args(["up", p, &n.to_string()]);
        run(c)?;
        Ok(lab)
    }
    fn ns(&self, w: char) -> String {
        format!("{}{w}", self.p)
    }
    fn sensor_if(&self) -> String {
        format!("{}S", self.p)
    }
    fn mirror_if(&self) -> String {
        format!("{}M", self.p)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new(&self.script).args(["down", &self.p]).status();
    }
}

/// A child killed on drop if still running.
struct Bg(Option<Child>);

impl Bg {
    fn spawn(mut c: Command, log: &Path) -> Result<Bg> {
        let f = std::fs::File::create(log).with_context(|| format!("{}", log.display()))?;
        let child = c
            .stdout(f.try_clone()?)
            .stderr(f)
            .spawn()
            .with_context(|| format!("starting {:?}", c.get_program()))?;
        Ok(Bg(Some(child)))
    }
    fn interrupt(&self) {
        if let Some(c) = &self.0 {
            let _ = Command::new("kill")
                .args(["-INT", &c.id().to_string()])
                .status();
        }
    }
    fn wait(mut self, limit: Duration) -> Result<()> {
        let Some(mut c) = self.0.take() else {
            return Ok(());
        };
        let t0 = Instant::now();
        while c.try_wait()?.is_none() {
            if t0.elapsed() > limit {
                let _ = c.kill();
                bail!("process did not stop within {limit:?}");
            }
            thread::sleep(Duration::from_millis(50));
        }
        let st = c.wait()?;
        if !st.success() {
            bail!("exited with {st}");
        }
        Ok(())
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn in_ns(ns: &str, args: &[&str]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]).args(args);
    c
}

fn require_root() -> Result<()> {
    let out = Command::new("id").arg("-u").output()?;
    if String::from_utf8_lossy(&out.stdout).trim() != "0" {
        bail!("this task creates network namespaces and loads XDP: run it as root");
    }
    Ok(())
}

fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
}

/// `cargo xtask demo`: real SIPp calls, captured live through XDP.
pub fn demo(root: &Path) -> Result<()> {
    require_root()?;
    // Everything, the web UI's binary included (`voxtap serve` runs it).
    let mut c = cargo();
    c.arg("build");
    run(c)?;
    let voxtap = target_dir(root).join("debug/voxtap");
    let out = root.join("out/demo-live");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;
    let lab = Lab::up(root, "vxdemo", 220)?;
    let cfg = root.join("config/voxtap.toml");
    let store = out.join("store");
    let calls = out.join("calls");
    let vox = start_capture(&lab, &voxtap, &cfg, &store, &calls, &out.join("voxtap.log"))?;
    // Held until the demo returns: on an error below, dropping it kills the
    // UAS before the lab is torn down.
    let uas = place_calls(&lab, &out.join("sipp"))?;
    // Calls close 5 s after their BYE (late packets still count).
    thread::sleep(Duration::from_secs(6));
    uas.interrupt();
    vox.interrupt();
    vox.wait(Duration::from_secs(30)).context("voxtap run")?;
    drop(lab);
    print_outputs(&out, &store, &calls);
    serve_ui(&voxtap, &out, &calls)
}

/// Starts `voxtap run` on the lab's sensor side (120 s at most), logging to
/// `log`, and gives it time to attach XDP before any call is placed.
fn start_capture(
    lab: &Lab,
    voxtap: &Path,
    cfg: &Path,
    store: &Path,
    calls: &Path,
    log: &Path,
) -> Result<Bg> {
    let mut c = in_ns(
        &lab.ns('s'),
        &[
            voxtap.to_str().context("path")?,
            "run",
            "--config",
            cfg.to_str().context("path")?,
            "--iface",
            &lab.sensor_if(),
            "--store",
            store.to_str().context("path")?,
            "--out",
            calls.to_str().context("path")?,
            "--duration",
            "120",
        ],
    );
    c.env("RUST_LOG", "info");
    let vox = Bg::spawn(c, log)?;
    thread::sleep(Duration::from_millis(1500));
    eprintln!(
        "xtask: voxtap is capturing on {} (log: {})",
        lab.sensor_if(),
        log.display()
    );
    Ok(vox)
}

/// Starts a SIPp UAS (RTP echo) on side b and places 10 G.711 calls from
/// side a with `uac_pcap`, working in `work`; returns the still-running UAS.
fn place_calls(lab: &Lab, work: &Path) -> Result<Bg> {
    std::fs::create_dir_all(work)?;
    let _ = std::os::unix::fs::symlink("/usr/share/sip-tester", work.join("pcap"));
    let mut uas = in_ns(
        &lab.ns('b'),
        &[
            "timeout",
            "60",
            "sipp",
            "-sn",
            "uas",
            "-i",
            "10.220.0.2",
            "-p",
            "5060",
            "-rtp_echo",
            "-mp",
            "16000",
            "-nostdin",
        ],
    );
    uas.current_dir(work);
    let uas = Bg::spawn(uas, &work.join("uas.log"))?;
    thread::sleep(Duration::from_millis(500));
    eprintln!("xtask: SIPp places 10 calls with G.711 RTP (about 10 s)");
    let mut uac = in_ns(
        &lab.ns('a'),
        &[
            "timeout",
            "60",
            "sipp",
            "-sn",
            "uac_pcap",
            "10.220.0.2:5060",
            "-i",
            "10.220.0.1",
            "-p",
            "5061",
            "-m",
            "10",
            "-l",
            "10",
            "-r",
            "5",
            "-mp",
            "17000",
            "-nostdin",
        ],
    );
    uac.current_dir(work).stdout(Stdio::null());
    run(uac)?;
    Ok(uas)
}

/// Tells the user what the capture produced and where.
fn print_outputs(out: &Path, store: &Path, calls: &Path) {
    let log = std::fs::read_to_string(out.join("voxtap.log")).unwrap_or_default();
    if let Some(line) = log.lines().find(|l| l.starts_with("live capture on")) {
        println!("{line}");
    }
    println!(
        "per-call outputs: {}/calls.csv, streams.csv and one folder per call",
        calls.display()
    );
    println!(
        "rolling store:    {} (extract a call: voxtap extract --store {} --call CALL_ID --out call.pcap)",
        store.display(),
        store.display()
    );
}

/// Serves the captured calls in the web UI until Ctrl-C (only when the
/// build has `voxtap serve`; `VOXTAP_DEMO_NO_SERVE=1` prints the command
/// instead).
fn serve_ui(voxtap: &Path, out: &Path, calls: &Path) -> Result<()> {
    let serve = Command::new(voxtap)
        .args(["serve", "--help"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !serve {
        return Ok(());
    }
    let web_cfg = out.join("web.toml");
    let password = make_demo_user(voxtap, &web_cfg)?;
    let listen = std::env::var("VOXTAP_DEMO_LISTEN").unwrap_or_else(|_| "127.0.0.1:8080".into());
    println!("web UI:           http://{listen}/  user: demo  password: {password}");
    if std::env::var("VOXTAP_DEMO_NO_SERVE").as_deref() == Ok("1") {
        println!(
            "(VOXTAP_DEMO_NO_SERVE=1: not serving; run {} serve --data {} --config {} --listen {listen})",
            voxtap.display(),
            calls.display(),
            web_cfg.display()
        );
        return Ok(());
    }
    println!("serving until Ctrl-C");
    let mut c = Command::new(voxtap);
    c.arg("serve")
        .arg("--data")
        .arg(calls)
        .arg("--config")
        .arg(&web_cfg)
        .args(["--listen", &listen]);
    run(c)
}

/// The UI needs a login, demo or not: writes `web_cfg` with a one-off user
/// `demo` and a random password, and returns the password to print.
fn make_demo_user(voxtap: &Path, web_cfg: &Path) -> Result<String> {
    let mut raw = [0u8; 9];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut raw))
        .context("reading /dev/urandom")?;
    let password: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let mut h = Command::new(voxtap);
    h.arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = h.spawn().context("voxtap hash-password")?;
    if let Some(mut stdin) = child.stdin.take() {
        std::io::Write::write_all(&mut stdin, format!("{password}\n").as_bytes())?;
    }
    let out_h = child.wait_with_output()?;
    anyhow::ensure!(out_h.status.success(), "voxtap hash-password failed");
    let hash = String::from_utf8_lossy(&out_h.stdout).trim().to_string();
    std::fs::write(
        web_cfg,
        format!("[[users]]\nname = \"demo\"\npassword_hash = \"{hash}\"\n"),
    )?;
    Ok(password)
}

/// One measured run.
struct Point {
    target_pps: Option<u64>,
    sent: u64,
    achieved_pps: f64,
    voxtap: u64,
    voxtap_kernel_lost: u64,
    tcpdump: u64,
}

impl Point {
    /// Frames sent that voxtap did not store; the `min` keeps it from
    /// underflowing when voxtap counts more frames than were sent.
    fn voxtap_loss(&self) -> u64 {
        self.sent - self.voxtap.min(self.sent)
    }
    /// `tcpdump` is already capped at what its own run sent.
    fn tcpdump_loss(&self) -> u64 {
        self.sent - self.tcpdump
    }
}

fn parse_after(text: &str, key: &str) -> Option<u64> {
    let i = text.find(key)? + key.len();
    text[i..]
        .trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn parse_before(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.contains(key))?;
    line.split_whitespace().next()?.parse().ok()
}

/// Replays `count` frames of `pcap` into the sensor's veth at `pps` (None:
/// top speed); returns (sent, achieved pps).
fn replay(lab: &Lab, pcap: &Path, count: u64, pps: Option<u64>) -> Result<(u64, f64)> {
    let mut args = vec![
        "tcpreplay".to_string(),
        "-i".into(),
        lab.mirror_if(),
        // Loop the synthetic capture as often as needed; --limit bounds it.
        "--loop=0".into(),
        format!("--limit={count}"),
    ];
    match pps {
        Some(r) => args.push(format!("--pps={r}")),
        None => args.push("--topspeed".into()),
    }
    args.push(pcap.to_string_lossy().into_owned());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = in_ns(&lab.ns('a'), &refs).output()?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        bail!(
            "tcpreplay failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let sent = parse_after(&text, "Successful packets:").context("tcpreplay output")?;
    let rate = text
        .lines()
        .find(|l| l.contains("Rated:"))
        .and_then(|l| {
            let parts: Vec<&str> = l.split(',').collect();
            parts
                .iter()
                .find(|p| p.contains("pps"))
                .and_then(|p| p.split_whitespace().next()?.parse::<f64>().ok())
        })
        .unwrap_or(0.0);
    Ok((sent, rate))
}

/// `cargo xtask bench-live [--count N] [--rates a,b,c] [--rings N]
/// [--pipeline N]`.
pub fn bench_live(root: &Path, args: &[String]) -> Result<()> {
    require_root()?;
    let (count, rates, shape) = parse_live_args(args)?;
    let mut c = cargo();
    c.args(["build", "--release", "-p", "voxtap", "--bin", "voxtap"]);
    run(c)?;
    let voxtap = target_dir(root).join("release/voxtap");
    let dir = root.join("out/bench-live");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let pcap = dir.join("synth.pcap");
    // 220 calls x 10 s x 2 directions x 50 pps = 220k RTP frames + SIP.
    let mut c = Command::new(&voxtap);
    c.args(["synth", "--calls", "220", "--seconds", "10", "--out"])
        .arg(&pcap);
    run(c)?;
    let lab = Lab::up(root, "vxbench", 221)?;
    let mut points = Vec::new();
    for &pps in &rates {
        points.push(measure_point(
            &lab,
            &voxtap,
            &pcap,
            &dir,
            (count, shape),
            pps,
        )?);
    }
    drop(lab);
    let vbest = held_rate(&points, Point::voxtap_loss);
    let tbest = held_rate(&points, Point::tcpdump_loss);
    println!(
        "\nvoxtap: workers.rings = {}, workers.pipeline = {}",
        shape.0, shape.1
    );
    print_live_table(&points, vbest, tbest);
    write_live_json(root, &points, (vbest, tbest), shape)
}

/// voxtap's `workers.rings` and `workers.pipeline`.
type Shape = (u32, u32);

/// `--count N` (frames per run), `--rates a,b,max` (paced pps; `max`
/// is top speed, `None`), `--rings N` and `--pipeline N` (voxtap's
/// `workers.rings` and `workers.pipeline`), with their defaults.
fn parse_live_args(args: &[String]) -> Result<(u64, Vec<Option<u64>>, Shape)> {
    let mut count: u64 = 300_000;
    let mut rings: u32 = 1;
    let mut pipeline: u32 = 1;
    let mut rates: Vec<Option<u64>> = vec![
        Some(50_000),
        Some(100_000),
        Some(200_000),
        Some(300_000),
        Some(400_000),
        Some(500_000),
        None,
    ];
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--count" => count = it.next().context("--count N")?.parse()?,
            "--rings" => rings = it.next().context("--rings N")?.parse()?,
            "--pipeline" => pipeline = it.next().context("--pipeline N")?.parse()?,
            "--rates" => {
                rates = it
                    .next()
                    .context("--rates a,b,max")?
                    .split(',')
                    .map(|r| {
                        if r == "max" {
                            Ok(None)
                        } else {
                            r.parse().map(Some)
                        }
                    })
                    .collect::<Result<_, _>>()?;
            }
            o => bail!("unknown bench-live option {o}"),
        }
    }
    Ok((count, rates, (rings, pipeline)))
}

/// One offered rate: voxtap alone, then `tcpdump -w` alone, on the same
/// frames at the same rate; prints the rate's line.
fn measure_point(
    lab: &Lab,
    voxtap: &Path,
    pcap: &Path,
    dir: &Path,
    (count, shape): (u64, Shape),
    pps: Option<u64>,
) -> Result<Point> {
    let label = pps.map_or("max".to_string(), |r| r.to_string());
    let run_dir = dir.join(format!("voxtap-{label}"));
    let (sent, achieved, got, klost) =
        voxtap_run(lab, voxtap, pcap, &run_dir, (count, shape), pps)?;
    let td = dir.join(format!("tcpdump-{label}.pcap"));
    let tlog = dir.join(format!("tcpdump-{label}.log"));
    let (sent2, tgot) = tcpdump_run(lab, pcap, &td, &tlog, count, pps)?;
    let _ = std::fs::remove_file(&td);
    let _ = std::fs::remove_dir_all(run_dir.join("store"));
    if sent2 != sent {
        eprintln!("xtask: note: tcpreplay sent {sent} then {sent2} frames");
    }
    let p = Point {
        target_pps: pps,
        sent,
        achieved_pps: achieved,
        voxtap: got,
        voxtap_kernel_lost: klost,
        tcpdump: tgot.min(sent2),
    };
    println!(
        "rate {label:>7} pps (achieved {:.0}): sent {}; voxtap stored {} (loss {}, kernel lost_ring_full {}); tcpdump -w captured {} (loss {})",
        p.achieved_pps,
        p.sent,
        p.voxtap,
        p.voxtap_loss(),
        p.voxtap_kernel_lost,
        tgot,
        sent2 - p.tcpdump
    );
    Ok(p)
}

/// voxtap alone in `run_dir`: returns (frames sent, achieved pps, frames
/// voxtap stored, kernel `lost_ring_full`).
fn voxtap_run(
    lab: &Lab,
    voxtap: &Path,
    pcap: &Path,
    run_dir: &Path,
    (count, (rings, pipeline)): (u64, Shape),
    pps: Option<u64>,
) -> Result<(u64, f64, u64, u64)> {
    std::fs::create_dir_all(run_dir)?;
    let cfgp = run_dir.join("voxtap.toml");
    std::fs::write(
        &cfgp,
        format!(
            "[store]\npath = \"{0}/store\"\nmin_free_bytes = 0\n[output]\ndir = \"{0}/calls\"\n[workers]\nrings = {rings}\npipeline = {pipeline}\n",
            run_dir.display()
        ),
    )?;
    let c = in_ns(
        &lab.ns('s'),
        &[
            voxtap.to_str().context("path")?,
            "run",
            "--config",
            cfgp.to_str().context("path")?,
            "--iface",
            &lab.sensor_if(),
            "--duration",
            "300",
        ],
    );
    let log = run_dir.join("voxtap.log");
    let vox = Bg::spawn(c, &log)?;
    thread::sleep(Duration::from_millis(1500));
    let (sent, achieved) = replay(lab, pcap, count, pps)?;
    // Same grace as tcpdump below (voxtap's reader polls every 20 ms).
    thread::sleep(Duration::from_millis(2000));
    vox.interrupt();
    vox.wait(Duration::from_secs(120)).context("voxtap run")?;
    let text = std::fs::read_to_string(&log)?;
    let got = parse_before(
        text.lines()
            .find(|l| l.starts_with("live capture on"))
            .map(|l| l.split(": ").nth(1).unwrap_or(""))
            .unwrap_or(""),
        "frames",
    )
    .context("voxtap summary line")?;
    let klost = parse_after(&text, "lost_ring_full").unwrap_or(0);
    Ok((sent, achieved, got, klost))
}

/// `tcpdump -w td` alone, logging to `tlog`: returns (frames sent, packets
/// tcpdump says it captured).
fn tcpdump_run(
    lab: &Lab,
    pcap: &Path,
    td: &Path,
    tlog: &Path,
    count: u64,
    pps: Option<u64>,
) -> Result<(u64, u64)> {
    let c = in_ns(
        &lab.ns('s'),
        &[
            "tcpdump",
            "-i",
            &lab.sensor_if(),
            "-w",
            td.to_str().context("path")?,
            "udp",
        ],
    );
    let tcpd = Bg::spawn(c, tlog)?;
    thread::sleep(Duration::from_millis(1000));
    let (sent2, _) = replay(lab, pcap, count, pps)?;
    // tcpdump hands over a TPACKET_V3 block when it is full or after its
    // 1 s timeout; stopping earlier would drop the last block unread.
    thread::sleep(Duration::from_millis(2000));
    tcpd.interrupt();
    tcpd.wait(Duration::from_secs(60)).context("tcpdump")?;
    let ttext = std::fs::read_to_string(tlog)?;
    let tgot = parse_before(&ttext, "packets captured").context("tcpdump summary")?;
    Ok((sent2, tgot))
}

/// "Holds" a rate: zero loss there and at every lower paced rate. Top speed
/// is bursty (its average understates its peaks), so it is reported in the
/// table but not used here.
fn held_rate(points: &[Point], loss: fn(&Point) -> u64) -> f64 {
    let mut paced: Vec<&Point> = points.iter().filter(|p| p.target_pps.is_some()).collect();
    paced.sort_by(|a, b| a.achieved_pps.total_cmp(&b.achieved_pps));
    paced
        .iter()
        .take_while(|p| loss(p) == 0)
        .map(|p| p.achieved_pps)
        .fold(0.0f64, f64::max)
}

fn print_live_table(points: &[Point], vbest: f64, tbest: f64) {
    println!("\n| offered (pps) | achieved (pps) | frames | voxtap loss | tcpdump -w loss |");
    println!("|---|---|---|---|---|");
    for p in points {
        println!(
            "| {} | {:.0} | {} | {} ({:.2}%) | {} ({:.2}%) |",
            p.target_pps.map_or("max".into(), |r| r.to_string()),
            p.achieved_pps,
            p.sent,
            p.voxtap_loss(),
            p.voxtap_loss() as f64 * 100.0 / p.sent.max(1) as f64,
            p.tcpdump_loss(),
            p.tcpdump_loss() as f64 * 100.0 / p.sent.max(1) as f64,
        );
    }
    println!(
        "\nhighest paced rate held with zero loss (and zero loss at every lower rate): voxtap {vbest:.0} pps, tcpdump -w {tbest:.0} pps"
    );
}

/// `target/bench/live.json`, for `cargo xtask bench`'s combined table.
fn write_live_json(
    root: &Path,
    points: &[Point],
    (vbest, tbest): (f64, f64),
    (rings, pipeline): Shape,
) -> Result<()> {
    let bench = target_dir(root).join("bench");
    std::fs::create_dir_all(&bench)?;
    let rows: Vec<String> = points
        .iter()
        .map(|p| {
            format!(
                "{{\"offered_pps\": {}, \"achieved_pps\": {:.0}, \"sent\": {}, \"voxtap_loss\": {}, \"tcpdump_loss\": {}}}",
                p.target_pps.map_or("null".into(), |r| r.to_string()),
                p.achieved_pps,
                p.sent,
                p.voxtap_loss(),
                p.tcpdump_loss()
            )
        })
        .collect();
    std::fs::write(
        bench.join("live.json"),
        format!(
            "{{\"rings\": {rings}, \"pipeline\": {pipeline}, \"voxtap_zero_loss_pps\": {vbest:.0}, \"tcpdump_zero_loss_pps\": {tbest:.0}, \"points\": [{}]}}\n",
            rows.join(", ")
        ),
    )?;
    Ok(())
}
