//! Media outputs checked against independent facts: RFC 3711 / libsrtp
//! vectors, the source WAVs of the generated calls, sox's A-law decoder,
//! tshark's view of the decrypted pcap, the known DTMF digits, and E-model
//! figures from G.107.

use std::path::{Path, PathBuf};
use std::process::Command;

use voxtap_e2e::{corpus, read_csv, tshark};
use voxtap_engine::import::{ImportOptions, run_import};
use voxtap_engine::media::dtmf::detect_rtp;
use voxtap_engine::media::quality::{self, Arrival, CodecImpairment, QualityParams};
use voxtap_engine::media::{MediaOptions, process_call};
use voxtap_engine::output::CallFrame;
use voxtap_engine::pipeline::PipelineConfig;
use voxtap_proto::srtp::{SrtpContext, SrtpKeys, Suite, derive};

/// (key||salt, plaintext, protected) as libsrtp made them.
type KeyPlainProtected = (Vec<u8>, Vec<u8>, Vec<u8>);

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

fn import_media(file: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    run_import(&ImportOptions {
        files: vec![file.to_path_buf()],
        out: dir.path().to_path_buf(),
        pipeline: PipelineConfig::default(),
        call_files: true,
        media: Some(MediaOptions::default()),
    })
    .expect("import");
    dir
}

/// The only call folder of an import.
pub(crate) fn call_folder(dir: &Path) -> PathBuf {
    let calls = read_csv(&dir.join("calls.csv"));
    let invites: Vec<_> = calls.iter().filter(|c| c["method"] == "INVITE").collect();
    assert_eq!(invites.len(), 1, "{calls:?}");
    dir.join(&invites[0]["pcap"])
        .parent()
        .unwrap()
        .to_path_buf()
}

pub(crate) fn read_wav(p: &Path) -> (u32, u16, Vec<f64>) {
    let mut r = hound::WavReader::open(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let spec = r.spec();
    let s: Vec<f64> = r.samples::<i16>().map(|x| f64::from(x.unwrap())).collect();
    (spec.sample_rate, spec.channels, s)
}

fn channel(s: &[f64], channels: u16, c: usize) -> Vec<f64> {
    s.chunks_exact(usize::from(channels))
        .map(|f| f[c])
        .collect()
}

/// Normalised cross-correlation of `a` against `b` at lag `lag` (a[i + lag]
/// vs b[i]) over their overlap.
fn ncc_at(a: &[f64], b: &[f64], lag: isize) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (i, &y) in b.iter().enumerate() {
        let j = i as isize + lag;
        if j < 0 || j as usize >= a.len() {
            continue;
        }
        let x = a[j as usize];
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    if aa == 0.0 || bb == 0.0 {
        0.0
    } else {
        ab / (aa * bb).sqrt()
    }
}

/// Best normalised cross-correlation over lags within ±max_lag samples:
/// coarse search on block-averaged signals, then a fine search around it.
pub(crate) fn best_ncc(a: &[f64], b: &[f64], max_lag: usize) -> (f64, isize) {
    let d = (max_lag / 1000).max(1);
    // Coarse alignment on the energy envelope: averaging raw samples over
    // `d` would low-pass speech to nothing at 16 kHz and more, and the
    // coarse peak would land anywhere. The fine search on the full signals
    // then finds the exact lag.
    let dec = |x: &[f64]| -> Vec<f64> {
        x.chunks(d)
            .map(|c| c.iter().map(|v| v.abs()).sum::<f64>() / c.len() as f64)
            .collect()
    };
    let (ad, bd) = (dec(a), dec(b));
    let m = (max_lag / d) as isize;
    let mut best = (f64::MIN, 0isize);
    for lag in -m..=m {
        let c = ncc_at(&ad, &bd, lag);
        if c > best.0 {
            best = (c, lag);
        }
    }
    let centre = best.1 * d as isize;
    let mut fine = (f64::MIN, 0isize);
    for lag in centre - 2 * d as isize..=centre + 2 * d as isize {
        let c = ncc_at(a, b, lag);
        if c > fine.0 {
            fine = (c, lag);
        }
    }
    fine
}

pub(crate) fn quality_json(folder: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(folder.join("quality.json")).unwrap()).unwrap()
}

#[test]
fn srtp_rfc3711_and_libsrtp_vectors() {
    let text = std::fs::read_to_string(corpus("srtp-vectors/RFC3711_appendixB.txt")).unwrap();
    let val = |key: &str| -> Vec<u8> {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(key))
            .unwrap();
        hex(line.split('=').nth(1).unwrap().split('(').next().unwrap())
    };
    let (mk, ms) = (val("master_key"), val("master_salt"));
    assert_eq!(derive(&mk, &ms, 0, 16), val("cipher_key"));
    assert_eq!(derive(&mk, &ms, 2, 14), val("cipher_salt"));
    // The 94-byte auth key spans three lines after its label.
    let i = text
        .lines()
        .position(|l| l.starts_with("auth_key"))
        .unwrap();
    let auth: String = text.lines().skip(i + 1).take(3).collect();
    assert_eq!(derive(&mk, &ms, 1, 94), hex(&auth));
    let mut vectors = 2;

    let lib = std::fs::read_to_string(corpus("srtp-vectors/srtp_libsrtp_vectors.txt")).unwrap();
    let get = |suite: &str, key: &str| -> Option<Vec<u8>> {
        lib.lines()
            .find(|l| {
                l.starts_with(&format!("{suite} {key} "))
                    || (suite.is_empty() && l.starts_with(key))
            })
            .map(|l| hex(l.split_whitespace().last().unwrap()))
    };
    let key_salt = get("", "master_key_salt_hex").unwrap();
    let plain_rtp = get("", "rtp_plaintext_hex").unwrap();
    let mut suites = 0;
    for suite in Suite::ALL {
        let Some(srtp) = get(suite.name(), "srtp_packet_hex") else {
            continue;
        };
        suites += 1;
        let mut ctx = SrtpContext::new(SrtpKeys::from_key_salt(suite, &key_salt).unwrap());
        assert_eq!(
            ctx.unprotect_rtp(&srtp).unwrap().packet,
            plain_rtp,
            "{suite:?} SRTP"
        );
        let srtcp = get(suite.name(), "srtcp_packet_hex").unwrap();
        let rtcp = get(suite.name(), "rtcp_plaintext_hex").unwrap();
        assert_eq!(
            ctx.unprotect_rtcp(&srtcp).unwrap().packet,
            rtcp,
            "{suite:?} SRTCP"
        );
        // A flipped bit must fail authentication and be counted.
        let mut bad = srtp.clone();
        bad[14] ^= 1;
        assert!(ctx.unprotect_rtp(&bad).is_err());
        assert_eq!(ctx.auth_failures, 1);
        vectors += 2;
    }
    assert!(suites >= 2, "the libsrtp file holds AES_CM_128 _80 and _32");
    eprintln!("SRTP vectors passed: {vectors}");
}

/// Suites the corpus has no vectors for, cross-checked against libsrtp
/// (pylibsrtp, installed by scripts/setup.sh): it protects, we unprotect, including a
/// stream that starts after a sequence wrap with loss and reordering.
#[test]
fn srtp_all_suites_against_libsrtp() {
    let script = r#"
import sys, pylibsrtp
P = pylibsrtp.Policy
profiles = {'AES_CM_128_HMAC_SHA1_80': P.SRTP_PROFILE_AES128_CM_SHA1_80, 'AES_CM_128_HMAC_SHA1_32': P.SRTP_PROFILE_AES128_CM_SHA1_32,
            'AEAD_AES_128_GCM': getattr(P, 'SRTP_PROFILE_AEAD_AES_128_GCM', None), 'AEAD_AES_256_GCM': getattr(P, 'SRTP_PROFILE_AEAD_AES_256_GCM', None)}
lens = {'AES_CM_128_HMAC_SHA1_80': 30, 'AES_CM_128_HMAC_SHA1_32': 30, 'AEAD_AES_128_GCM': 28, 'AEAD_AES_256_GCM': 44}
for name, prof in profiles.items():
    if prof is None: continue
    key = bytes(range(1, lens[name] + 1))
    s = pylibsrtp.Session(P(key=key, ssrc_type=P.SSRC_ANY_OUTBOUND, srtp_profile=prof))
    # seq from 65500 through the wrap to 100 (ROC 0 -> 1)
    for i in range(136):
        seq = (65500 + i) & 0xffff
        pkt = bytes([0x80, 0x00]) + seq.to_bytes(2, 'big') + (160 * i).to_bytes(4, 'big') + bytes.fromhex('deadbeef') + bytes([i & 0xff]) * 160
        print(name, key.hex(), pkt.hex(), s.protect(pkt).hex())
    rtcp = bytes.fromhex('81c80006deadbeef') + bytes(range(20))
    print(name + '_RTCP', key.hex(), rtcp.hex(), s.protect_rtcp(rtcp).hex())
"#;
    let out = match Command::new("python3").args(["-c", script]).output() {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        Ok(o) => panic!(
            "the libsrtp oracle failed (scripts/setup.sh installs pylibsrtp): {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("python3: {e}"),
    };
    let mut by_suite: std::collections::BTreeMap<String, Vec<KeyPlainProtected>> =
        Default::default();
    for l in out.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        by_suite
            .entry(f[0].to_string())
            .or_default()
            .push((hex(f[1]), hex(f[2]), hex(f[3])));
    }
    let mut checked = Vec::new();
    for (name, pkts) in &by_suite {
        if name.ends_with("_RTCP") {
            continue;
        }
        let suite = Suite::from_name(name).unwrap();
        let keys = SrtpKeys::from_key_salt(suite, &pkts[0].0).unwrap();
        // Capture starts after the wrap (ROC 1): drop the first 40 packets,
        // lose every 7th, swap neighbours.
        let mut ctx = SrtpContext::new(keys.clone());
        let mut sel: Vec<_> = pkts
            .iter()
            .enumerate()
            .skip(40)
            .filter(|(i, _)| i % 7 != 0)
            .map(|(_, p)| p)
            .collect();
        for k in (0..sel.len() - 1).step_by(5) {
            sel.swap(k, k + 1);
        }
        for (_, plain, prot) in &sel {
            assert_eq!(
                &ctx.unprotect_rtp(prot).map(|u| u.packet),
                &Ok(plain.clone()),
                "{name}"
            );
        }
        assert_eq!(ctx.roc(), 1);
        // And from the start, through the wrap.
        let mut ctx = SrtpContext::new(keys);
        for (_, plain, prot) in pkts {
            assert_eq!(
                &ctx.unprotect_rtp(prot).unwrap().packet,
                plain,
                "{name} from start"
            );
        }
        let (_, rtcp_plain, rtcp_prot) = &by_suite[&format!("{name}_RTCP")][0];
        assert_eq!(
            &ctx.unprotect_rtcp(rtcp_prot).unwrap().packet,
            rtcp_plain,
            "{name} SRTCP"
        );
        checked.push(name.clone());
    }
    eprintln!("cross-checked against libsrtp: {checked:?}");
    assert!(checked.len() >= 2);
}

#[test]
fn baresip_srtp_call_decrypts_and_matches_source() {
    let dir = import_media(&corpus("generated/baresip-srtp-sdes-pcmu-1call.pcap"));
    let folder = call_folder(dir.path());
    let q = quality_json(&folder);
    let streams = q["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 2, "{q:#}");
    for s in streams {
        assert_eq!(s["srtp"], true);
        assert_eq!(s["srtp_auth_failures"], 0, "{s:#}");
        assert_eq!(s["srtp_suite"], "AES_CM_128_HMAC_SHA1_80");
        assert_eq!(s["received"], 451);
    }
    // SRTCP: the sender reports and BYEs decrypt; baresip's two "PINGPONG"
    // RTCP APP keep-alives per side are not SRTCP we can authenticate.
    eprintln!(
        "SRTCP decrypted {}, failed {}",
        q["srtcp_decrypted"], q["srtcp_auth_failures"]
    );
    assert!(q["srtcp_decrypted"].as_u64().unwrap() >= 4);
    let (_, _, src) = read_wav(&corpus("generated/baresip-srtp-sdes-pcmu-1call.source.wav"));
    for name in ["caller.wav", "callee.wav"] {
        let (rate, ch, ours) = read_wav(&folder.join(name));
        assert_eq!((rate, ch), (8000, 1));
        let (c, lag) = best_ncc(&ours, &src, 16000);
        eprintln!("SRTP PCMU {name}: ncc {c:.5} at lag {lag}");
        assert!(c >= 0.99, "{name}: {c}");
    }
    // The decrypted pcap: tshark reads it, finds no checksum or other
    // errors, and its RTP payloads are the plaintext we decrypted (the
    // PCMU bytes that decode to caller.wav/callee.wav).
    // In call-decrypted.pcap the SDP says RTP/AVP (rewritten), so tshark
    // follows the SIP and dissects the media as plain RTP, without the
    // heuristic: 902 RTP packets, no SRTP.
    let mdec = folder.join("media-decrypted.pcap");
    let dec = folder.join("call-decrypted.pcap");
    let d = dec.to_str().unwrap();
    let rtp_by_sdp = tshark(&[
        "-r",
        d,
        "-Y",
        "rtp.payload",
        "-T",
        "fields",
        "-e",
        "rtp.payload",
    ]);
    let rtp_by_sdp: Vec<&str> = rtp_by_sdp.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(rtp_by_sdp.len(), 902);
    assert!(
        tshark(&["-r", d, "-Y", "srtp.enc_payload"])
            .trim()
            .is_empty(),
        "SRTP left in call-decrypted.pcap"
    );
    let payloads = tshark(&[
        "-r",
        mdec.to_str().unwrap(),
        "-o",
        "rtp.heuristic_rtp:TRUE",
        "-Y",
        "rtp",
        "-T",
        "fields",
        "-e",
        "rtp.payload",
    ]);
    let payloads: Vec<&str> = payloads.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(payloads.len(), 902);
    let ours = plaintext_payloads(&folder);
    assert_eq!(payloads.len(), ours.len());
    for (t, o) in payloads.iter().zip(&ours) {
        assert_eq!(hex(t), *o);
    }
    let errs = tshark(&[
        "-r",
        d,
        "-o",
        "rtp.heuristic_rtp:TRUE",
        "-o",
        "udp.check_checksum:TRUE",
        "-o",
        "ip.check_checksum:TRUE",
        "-Y",
        "(udp.srcport == 20090 || udp.srcport == 21090) && (_ws.malformed || ip.checksum.status == 0 || udp.checksum.status == 0)",
    ]);
    assert!(errs.trim().is_empty(), "tshark complains:\n{errs}");
    let good = tshark(&[
        "-r",
        d,
        "-o",
        "udp.check_checksum:TRUE",
        "-o",
        "ip.check_checksum:TRUE",
        "-Y",
        "udp.checksum.status == 1 && ip.checksum.status == 1",
    ]);
    assert!(
        good.lines().count() >= 902,
        "verified-good checksums: {}",
        good.lines().count()
    );
    // Only the rewritten (media) frames are checked: the SIP frames are
    // copied as captured, with loopback checksum offload.
    // The raw media.pcap is all 902 RTP + the SRTCP frames; sizes differ by the tag.
    assert!(folder.join("media.pcap").exists() && folder.join("media-decrypted.pcap").exists());
}

/// Our plaintext RTP payloads, in capture order, by decrypting again through
/// the library (same frames as the call's call.pcap).
fn plaintext_payloads(folder: &Path) -> Vec<Vec<u8>> {
    let frames = read_frames(&folder.join("call.pcap"));
    let mut out = Vec::new();
    let mut dec = voxtap_proto::decode::Decoder::new(Default::default());
    let mut ctxs: std::collections::HashMap<u16, SrtpContext> = Default::default();
    // Keys straight from the SDP text in sip.txt: port -> inline key.
    let sip = std::fs::read_to_string(folder.join("sip.txt")).unwrap();
    let mut keys = std::collections::HashMap::new();
    for msg in sip.split("\n\n") {
        let port = msg
            .lines()
            .find_map(|l| l.strip_prefix("m=audio "))
            .and_then(|r| r.split(' ').next())
            .and_then(|p| p.parse::<u16>().ok());
        let key = msg
            .lines()
            .find_map(|l| l.split("inline:").nth(1))
            .map(|k| k.split('|').next().unwrap().trim().to_string());
        if let (Some(p), Some(k)) = (port, key) {
            keys.insert(p, k);
        }
    }
    for (i, f) in frames.iter().enumerate() {
        let Ok(Some(d)) = dec.decode(f.link, f.ts_ns, i as u64, &f.data) else {
            continue;
        };
        let pl = d.payload.to_vec();
        let sport = d.src.port();
        if pl.len() < 12 || pl[0] >> 6 != 2 || (192..=223).contains(&pl[1]) {
            continue;
        }
        let Some(k) = keys.get(&sport) else { continue };
        let ctx = ctxs.entry(sport).or_insert_with(|| {
            let mk: ManualKeyLike = k.parse().unwrap();
            SrtpContext::new(mk.0)
        });
        let p = ctx.unprotect_rtp(&pl).unwrap().packet;
        out.push(p[12..].to_vec());
    }
    out
}

struct ManualKeyLike(SrtpKeys);
impl std::str::FromStr for ManualKeyLike {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mk: voxtap_engine::media::ManualKey =
            format!("ssrc=1,AES_CM_128_HMAC_SHA1_80,{s}").parse()?;
        Ok(ManualKeyLike(mk.keys))
    }
}

fn read_frames(path: &Path) -> Vec<CallFrame> {
    let mut r = voxtap_engine::pcapfile::open(path).unwrap();
    let mut v = Vec::new();
    while let Some(rec) = r.next_packet().unwrap() {
        v.push(CallFrame {
            ts_ns: rec.ts_ns,
            orig_len: rec.orig_len,
            link: rec.link,
            data: rec.data.into(),
        });
    }
    v
}

/// Both directions of the G.722 call decode to the source speech.
#[test]
fn g722_call_matches_source() {
    let dir = import_media(&corpus("generated/baresip-g722-1call.pcap"));
    let folder = call_folder(dir.path());
    let (srate, _, src) = read_wav(&corpus("generated/baresip-g722-1call.source.wav"));
    assert_eq!(srate, 16000);
    for name in ["caller.wav", "callee.wav"] {
        let (rate, ch, ours) = read_wav(&folder.join(name));
        assert_eq!((rate, ch), (16000, 1));
        let (c, lag) = best_ncc(&ours, &src, 32000);
        eprintln!("G.722 {name}: ncc {c:.5} at lag {lag}");
        assert!(c >= 0.99, "{name}: {c}");
    }
}

#[test]
fn opus_stereo_call_matches_source() {
    let dir = import_media(&corpus("generated/baresip-opus-stereo-1call.pcap"));
    let folder = call_folder(dir.path());
    let (srate, sch, src) = read_wav(&corpus("generated/baresip-opus-stereo-1call.source.wav"));
    assert_eq!((srate, sch), (48000, 2));
    for name in ["caller.wav", "callee.wav"] {
        let (rate, ch, ours) = read_wav(&folder.join(name));
        assert_eq!((rate, ch), (48000, 2));
        for c in 0..2 {
            let (n, lag) = best_ncc(&channel(&ours, 2, c), &channel(&src, 2, c), 96000);
            eprintln!("Opus {name} channel {c}: ncc {n:.5} at lag {lag}");
            assert!(n >= 0.99, "{name} ch{c}: {n}");
        }
    }
}

/// SIPp's A-law stream (no SIP): our decoding equals sox's decoding of the
/// same payload bytes.
#[test]
fn sipp_alaw_matches_sox() {
    let frames = read_frames(&corpus("sipp/g711a.pcap"));
    let tmp = tempfile::tempdir().unwrap();
    let sum = process_call(None, &frames, tmp.path(), &MediaOptions::default()).unwrap();
    assert_eq!(sum.streams.len(), 1);
    let s = &sum.streams[0];
    let mut pk = s.packets.clone();
    pk.sort_by_key(|p| p.seq);
    let raw: Vec<u8> = pk.iter().flat_map(|p| p.payload.clone()).collect();
    assert_eq!(raw.len(), 236 * 240);
    std::fs::write(tmp.path().join("raw.al"), &raw).unwrap();
    let st = Command::new("sox")
        .current_dir(tmp.path())
        .args([
            "-t",
            "al",
            "-r",
            "8000",
            "-c",
            "1",
            "raw.al",
            "-e",
            "signed-integer",
            "-b",
            "16",
            "sox.wav",
        ])
        .status()
        .expect("sox must be installed");
    assert!(st.success());
    let (_, _, sox) = read_wav(&tmp.path().join("sox.wav"));
    let wav = sum
        .wavs
        .iter()
        .find(|p| p.to_string_lossy().contains("stream-"))
        .unwrap();
    let (rate, _, ours) = read_wav(wav);
    assert_eq!(rate, 8000);
    // Contiguous stream: our layout has the same samples in the same places.
    assert_eq!(ours.len(), sox.len());
    assert_eq!(ours, sox, "sample-exact A-law decoding");
    let (c, lag) = best_ncc(&ours, &sox, 800);
    eprintln!("A-law vs sox: ncc {c:.6} at lag {lag}");
}

#[test]
fn dtmf_baresip_rfc4733() {
    let dir = import_media(&corpus("generated/baresip-pcma-hold-resume-dtmf-rtcp.pcap"));
    let folder = call_folder(dir.path());
    let rows = read_csv(&folder.join("dtmf.csv"));
    let digits: String = rows.iter().map(|r| r["digit"].clone()).collect();
    assert_eq!(digits, "159#", "{rows:?}");
    assert!(
        rows.iter()
            .all(|r| r["source"] == "rfc4733" && r["ended"] == "true")
    );
    // RTCP figures sit beside ours.
    let q = quality_json(&folder);
    assert!(
        q["streams"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| !s["rtcp"].is_null()),
        "{q:#}"
    );
}

#[test]
fn dtmf_sipp_bare_rtp() {
    let names = [
        ("0", '0'),
        ("1", '1'),
        ("2", '2'),
        ("3", '3'),
        ("4", '4'),
        ("5", '5'),
        ("6", '6'),
        ("7", '7'),
        ("8", '8'),
        ("9", '9'),
        ("star", '*'),
        ("pound", '#'),
    ];
    for (n, want) in names {
        let frames = read_frames(&corpus(&format!("sipp/dtmf_2833_{n}.pcap")));
        let mut dec = voxtap_proto::decode::Decoder::new(Default::default());
        let mut pkts = Vec::new();
        for (i, f) in frames.iter().enumerate() {
            if let Ok(Some(d)) = dec.decode(f.link, f.ts_ns, i as u64, &f.data) {
                pkts.push((f.ts_ns, d.payload.to_vec()));
            }
        }
        let ev = detect_rtp(pkts.iter().map(|(t, p)| (*t, p.as_slice())), &[]);
        assert_eq!(ev.len(), 1, "{n}: {ev:?}");
        assert_eq!(ev[0].digit, want);
        assert!(ev[0].ended);
    }
}

/// Synthetic 20 ms G.711 streams: 0, 1, 5, 20 % random loss and a bursty
/// pattern; MOS falls monotonically and sits in G.107's ranges.
#[test]
fn mos_falls_with_loss() {
    fn stream(lost: impl Fn(u64) -> bool, n: u64) -> Vec<Arrival> {
        (0..n)
            .filter(|&i| !lost(i))
            .map(|i| Arrival {
                seq: (i % 65536) as u16,
                timestamp: (i * 160) as u32,
                arrival_ns: 1_000_000_000 + i * 20_000_000,
            })
            .collect()
    }
    // A fixed LCG keeps the test reproducible without a rand crate.
    let rnd = |i: u64| {
        (i.wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407)
            >> 33)
            % 10_000
    };
    let n = 10_000;
    let p = QualityParams::default();
    let c = CodecImpairment::G711_PLC;
    let mut last = f64::MAX;
    let mut table = Vec::new();
    for pct in [0u64, 1, 5, 20] {
        let q = quality::assess(&stream(|i| rnd(i) < pct * 100, n), 8000, c, p);
        table.push((
            format!("{pct}% random"),
            q.loss_pct,
            q.burst_ratio,
            q.r,
            q.mos,
        ));
        assert!(q.mos < last, "{pct}%: {} !< {last}", q.mos);
        last = q.mos;
        if pct == 0 {
            assert!(
                (q.r - 93.2).abs() < 0.01 && (q.mos - 4.41).abs() < 0.01,
                "{q:?}"
            );
        }
    }
    // 5 % loss in bursts of 5: worse than 5 % random.
    let bursty = quality::assess(&stream(|i| i % 100 < 5, n), 8000, c, p);
    let random5 = quality::assess(&stream(|i| rnd(i) < 500, n), 8000, c, p);
    table.push((
        "5% bursty".into(),
        bursty.loss_pct,
        bursty.burst_ratio,
        bursty.r,
        bursty.mos,
    ));
    assert!(bursty.burst_ratio > 3.0 && bursty.mos < random5.mos);
    // Published E-model figures (G.113 appendix I, Bpl 25.1 with PLC):
    // 1 % -> Ie,eff ~3.6, 5 % -> ~15.8, 20 % -> ~42.2.
    let r1 = quality::r_factor(c, 1.0, 1.0, 0.0);
    assert!((93.2 - r1 - 3.63).abs() < 0.1, "{r1}");
    // Jitter beyond the buffer is loss: every 10th packet 80 ms late.
    let late: Vec<Arrival> = stream(|_| false, 1000)
        .into_iter()
        .map(|mut a| {
            if a.seq % 10 == 5 {
                a.arrival_ns += 80_000_000
            }
            a
        })
        .collect();
    let jq = quality::assess(&late, 8000, c, p);
    assert_eq!(jq.jb_discards, 100);
    for (name, loss, br, r, mos) in &table {
        eprintln!("{name:>12}: loss {loss:6.2} %  BurstR {br:5.2}  R {r:6.2}  MOS {mos:4.2}");
    }
}
