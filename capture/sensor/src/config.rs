//! `voxtap run` configuration, read from TOML (see `config/voxtap.toml` for
//! every key with its meaning). Every key has a default, so an empty file (or
//! no file) is a valid configuration; command-line flags override the file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub capture: CaptureConfig,
    pub workers: WorkersConfig,
    pub store: StoreConfig,
    pub output: OutputConfig,
    pub security: SecurityConfig,
    pub testing: TestingConfig,
    /// S3 upload of closed rolling files and call artifacts (off by default).
    pub upload: crate::upload::UploadConfig,
    /// HEP export to Homer-style collectors (docs/hep.md).
    pub hep: crate::hep::HepConfig,
    /// What a sender on the wire may make the sensor hold (docs/security.md).
    pub limits: LimitsConfig,
    /// Keys that decrypt SIP over TLS.
    pub tls: TlsConfig,
    /// Shipping to the fleet's central index and the hub tunnel
    /// (docs/fleet.md). Off while `url` is empty.
    #[cfg(feature = "central")]
    pub central: crate::central::CentralConfig,
}

/// Budgets in bytes and rates (see `config/voxtap.toml`); the defaults are
/// the engine's (`CallConfig`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// SIP text kept in memory per call (sip.txt, the index, the call page).
    pub call_sip_bytes: usize,
    /// SIP text kept in memory by all open calls together.
    pub sip_bytes_total: usize,
    /// Memory the open calls may hold (estimated); past it new dialogs are
    /// summarised in floods.csv.
    pub memory_bytes: usize,
    /// New unanswered INVITE dialogs per second from one source past which
    /// they are summarised in floods.csv (0: never).
    pub flood_invites_per_s: u32,
    /// Open calls at most.
    pub max_open_calls: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let c = voxtap_engine::calls::CallConfig::default();
        LimitsConfig {
            call_sip_bytes: c.call_sip_bytes,
            sip_bytes_total: c.sip_bytes_total,
            memory_bytes: c.memory_bytes,
            flood_invites_per_s: c.flood_invites_per_s,
            max_open_calls: c.max_calls,
        }
    }
}

impl LimitsConfig {
    /// Sets these limits on a call table's configuration.
    pub fn apply(&self, c: &mut voxtap_engine::calls::CallConfig) {
        c.call_sip_bytes = self.call_sip_bytes;
        c.sip_bytes_total = self.sip_bytes_total;
        c.memory_bytes = self.memory_bytes;
        c.flood_invites_per_s = self.flood_invites_per_s;
        c.max_calls = self.max_open_calls;
    }
}

/// Keys that decrypt SIP over TLS (README, "SIP transports").
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// An NSS key log file (SSLKEYLOGFILE format) that the SIP servers or
    /// TLS proxies write; the sensor reads what is added to it as it grows.
    /// Empty: none.
    pub keylog: PathBuf,
    /// RSA private keys (PEM) of TLS servers that use RSA key exchange
    /// (TLS 1.2), as "IP:PORT,FILE".
    pub rsa_keys: Vec<String>,
}

impl TlsConfig {
    /// `rsa_keys` as (server, file).
    pub fn rsa_key_files(&self) -> Result<Vec<(std::net::SocketAddr, PathBuf)>> {
        self.rsa_keys
            .iter()
            .map(|e| {
                let (addr, file) = e
                    .split_once(',')
                    .with_context(|| format!("tls.rsa_keys: {e:?} is not IP:PORT,FILE"))?;
                let addr = addr
                    .trim()
                    .parse()
                    .with_context(|| format!("tls.rsa_keys: {addr:?} is not IP:PORT"))?;
                Ok((addr, PathBuf::from(file.trim())))
            })
            .collect()
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CaptureConfig {
    /// Interfaces to attach to. `voxtap run` captures one interface per
    /// process; `--iface` overrides the first.
    pub interfaces: Vec<String>,
    pub sip_ports: Vec<u16>,
    /// Keep UDP that looks like RTP/RTCP even before its SDP is seen.
    pub heuristic_rtp: bool,
    /// Keep every IP fragment of every UDP datagram.
    pub keep_fragments: bool,
    /// XDP_DROP what is not kept (a dedicated mirror port only).
    pub drop_unkept: bool,
    /// XDP_DROP kept frames too, once copied to their ring (a dedicated
    /// mirror port only: the kernel stack then does nothing for them).
    pub drop_after_copy: bool,
    /// XDP attach mode: "auto" (native, falling back to SKB), "native", "skb".
    pub attach_mode: String,
    /// Load the XDP program built with aya-log debug records (one per frame
    /// with its innermost addresses, ports and tunnel kinds, one with its
    /// verdict), logged at INFO with target `voxtap_xdp`. For debugging:
    /// about 170 ns more per frame in the kernel (README).
    pub xdp_debug: bool,
    /// Size of each kernel ring buffer in use (`workers.rings`) in bytes
    /// (power of two, multiple of the page size); 0 keeps the program's own
    /// 64 MiB.
    pub ring_bytes: u32,
    /// Entries of the kernel's media endpoint map (RTP and RTCP endpoints
    /// announced in SDP: about 4 per call, 2 with rtcp-mux). The default,
    /// 262,144, covers the 52,500 concurrent calls of a saturated 10 GbE
    /// with room to spare; the kernel preallocates the map, about 24 MiB at
    /// that size. Endpoints that do not fit are counted
    /// (`media_endpoints.insert_failures` in status/sensor.json).
    pub media_endpoints: u32,
    /// Wake the reader once per this many frames per CPU.
    pub wakeup_every: u32,
    /// UDP destination ports of VXLAN, Geneve and GTP-U (0: not unwrapped).
    pub vxlan_port: u16,
    pub geneve_port: u16,
    pub gtpu_port: u16,
    /// Encapsulation headers followed per frame (kernel and pipeline), at
    /// most `voxtap_common::MAX_DEPTH_LIMIT`.
    pub max_encap_depth: u16,
}

/// `workers.media_queue_bytes` by default: about 0.37 s of one of two
/// workers' share of a saturated 1 GbE mirror of G.711 (525,000 frames/s;
/// only the payload, about 172 bytes, is queued).
pub const DEFAULT_MEDIA_QUEUE_BYTES: u64 = 16 << 20;

/// Media workers at most (`workers.pipeline`).
pub const MAX_PIPELINE: usize = 16;

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WorkersConfig {
    /// Media workers rebuilding the calls, 1 to [`MAX_PIPELINE`]. 1: one
    /// pipeline thread owns the call table. N > 1: the pipeline thread
    /// dispatches to N media workers (threads `voxtap-media-K`), each a
    /// replica of the call table that sees every SIP message and its share
    /// of the media (`voxtap_engine::parallel`, as `voxtap import
    /// --engine-workers N`; see docs/live.md).
    pub pipeline: usize,
    /// Kernel ring buffers, each with its own reader thread, 1 to
    /// `voxtap_common::MAX_RINGS`: ring 0 carries SIP and what is not plain
    /// media, rings 1.. the media, by a hash of the destination endpoint
    /// (`voxtap_common::steer_ring`). 1: everything on one ring.
    pub rings: u32,
    /// CPU cores to pin the threads to, in order: ring reader + store writer,
    /// pipeline worker, call output/index, then the readers of rings 1..,
    /// then the media workers (`pipeline` > 1). Missing entries: not pinned.
    pub cores: Vec<usize>,
    /// `pipeline` > 1: bytes queued to one media worker above which the
    /// dispatcher drops that worker's own media (never SIP) and charges it
    /// to that worker's calls, instead of waiting for it (docs/live.md).
    pub media_queue_bytes: u64,
    /// `pipeline` > 1: media destinations ("address:port") that many calls
    /// send to, such as a media server's single port. Their streams are
    /// spread over the media workers by both ends instead of all going to
    /// the worker of that one destination (`voxtap import --shared-media`).
    pub shared_media: Vec<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Directory of the rolling PCAP files and `store.sqlite`.
    pub path: PathBuf,
    /// Start a new file when the current one would pass this size.
    pub roll_bytes: u64,
    /// ... or when its first packet is this old.
    pub roll_seconds: u64,
    /// Delete the oldest files while the store holds more than this (0: no limit).
    pub max_bytes: u64,
    /// Delete files whose last packet is older than this (0: no limit).
    pub max_age_seconds: u64,
    /// Delete the oldest files while the disk has less free space (0: no limit).
    pub min_free_bytes: u64,
    /// Write buffer of the rolling file (bytes written per write(2)).
    pub write_buffer_bytes: usize,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OutputConfig {
    /// Where calls.csv, streams.csv and the per-call folders go.
    pub dir: PathBuf,
    /// Write per-call folders (call.pcap, sip.txt), not only the CSV files.
    pub call_files: bool,
    /// Close a call after this many seconds without a packet.
    pub idle_timeout_seconds: u64,
    /// Every SIP dialog is a call (REGISTER, OPTIONS, SUBSCRIBE...), as
    /// before non-call traffic had tables of its own.
    pub all_dialogs: bool,
    /// Media relays and SBCs (IP or CIDR) whose streams on two legs may be
    /// the same media; a relay with one address needs no entry.
    pub media_relays: Vec<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityConfig {
    /// After attaching, drop every capability and set no_new_privs.
    pub drop_capabilities: bool,
    /// Also switch to this user (the store and output directories are
    /// handed to it first). Empty: stay root without capabilities.
    pub user: String,
}

/// Knobs for tests that need a misbehaving sensor; leave at 0.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TestingConfig {
    /// After this many frames, the reader of ring `stall_reader_ring` stops
    /// reading for `stall_reader_ms` once (0: never).
    pub stall_reader_after_frames: u64,
    pub stall_reader_ms: u64,
    pub stall_reader_ring: u32,
    /// After this many frames of its own, media worker
    /// `stall_media_worker` (`workers.pipeline` > 1) stops for
    /// `stall_media_worker_ms` once (0: never). Honoured only by debug
    /// builds (the tests').
    pub stall_media_worker_after_frames: u64,
    pub stall_media_worker_ms: u64,
    pub stall_media_worker: usize,
}

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            interfaces: Vec::new(),
            sip_ports: voxtap_common::DEFAULT_SIP_PORTS.to_vec(),
            heuristic_rtp: true,
            keep_fragments: true,
            drop_unkept: false,
            drop_after_copy: false,
            attach_mode: "auto".into(),
            xdp_debug: false,
            ring_bytes: 0,
            media_endpoints: voxtap_common::MEDIA_ENDPOINTS_MAX_ENTRIES,
            wakeup_every: voxtap_common::XdpConfig::DEFAULT_WAKEUP_EVERY,
            vxlan_port: voxtap_common::DEFAULT_VXLAN_PORT,
            geneve_port: voxtap_common::DEFAULT_GENEVE_PORT,
            gtpu_port: voxtap_common::DEFAULT_GTPU_PORT,
            max_encap_depth: voxtap_common::DEFAULT_MAX_DEPTH,
        }
    }
}

impl WorkersConfig {
    /// `shared_media` parsed.
    pub fn shared_media_endpoints(&self) -> Result<Vec<SocketAddr>> {
        self.shared_media
            .iter()
            .map(|s| {
                s.parse().map_err(|_| {
                    anyhow!("workers.shared_media: {s:?} is not an address and port (\"192.0.2.10:5004\", \"[2001:db8::1]:5004\")")
                })
            })
            .collect()
    }
}

impl Default for WorkersConfig {
    fn default() -> Self {
        WorkersConfig {
            pipeline: 1,
            rings: 1,
            media_queue_bytes: DEFAULT_MEDIA_QUEUE_BYTES,
            cores: Vec::new(),
            shared_media: Vec::new(),
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: PathBuf::from("/var/lib/voxtap/store"),
            roll_bytes: 512 << 20,
            roll_seconds: 300,
            max_bytes: 0,
            max_age_seconds: 0,
            min_free_bytes: 1 << 30,
            write_buffer_bytes: 4 << 20,
        }
    }
}

impl Default for OutputConfig {
    fn default() -> Self {
        OutputConfig {
            dir: PathBuf::from("/var/lib/voxtap/calls"),
            call_files: true,
            idle_timeout_seconds: 300,
            all_dialogs: false,
            media_relays: Vec::new(),
        }
    }
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            drop_capabilities: true,
            user: String::new(),
        }
    }
}

impl CaptureConfig {
    /// The tunnel settings the pipeline's decoder uses (the XDP program
    /// gets the same ones through its config map).
    pub fn tunnels(&self) -> voxtap_engine::pipeline::TunnelConfig {
        voxtap_engine::pipeline::TunnelConfig {
            vxlan_port: self.vxlan_port,
            geneve_port: self.geneve_port,
            gtpu_port: self.gtpu_port,
            max_depth: self.max_encap_depth,
        }
    }
}

impl Config {
    pub fn from_toml(text: &str) -> Result<Self> {
        let c: Config = toml::from_str(text).context("parsing the configuration")?;
        c.validate()?;
        Ok(c)
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading configuration {}", path.display()))?;
        Self::from_toml(&text).with_context(|| format!("in {}", path.display()))
    }

    pub fn validate(&self) -> Result<()> {
        let pipeline = self.workers.pipeline;
        if !(1..=MAX_PIPELINE).contains(&pipeline) {
            bail!("workers.pipeline = {pipeline}: from 1 to {MAX_PIPELINE}");
        }
        if self.capture.sip_ports.is_empty() {
            bail!("capture.sip_ports is empty");
        }
        let shared = self.workers.shared_media_endpoints()?.len();
        let max_shared = voxtap_common::SHARED_MEDIA_MAX_ENTRIES as usize;
        if shared > max_shared {
            bail!(
                "workers.shared_media lists {shared} endpoints: at most {max_shared} (the XDP program's map of them)"
            );
        }
        let max_ports = voxtap_common::SIP_PORTS_MAX_ENTRIES as usize;
        if self.capture.sip_ports.len() > max_ports {
            bail!(
                "capture.sip_ports lists {} ports: at most {max_ports}",
                self.capture.sip_ports.len()
            );
        }
        if self.capture.media_endpoints == 0 {
            bail!("capture.media_endpoints must be positive");
        }
        if !matches!(self.capture.attach_mode.as_str(), "auto" | "native" | "skb") {
            bail!(
                "capture.attach_mode = {:?}: use \"auto\", \"native\" or \"skb\"",
                self.capture.attach_mode
            );
        }
        let depth = self.capture.max_encap_depth;
        if !(1..=voxtap_common::MAX_DEPTH_LIMIT).contains(&depth) {
            bail!(
                "capture.max_encap_depth = {depth}: from 1 to {}",
                voxtap_common::MAX_DEPTH_LIMIT
            );
        }
        let rings = self.workers.rings;
        if !(1..=voxtap_common::MAX_RINGS).contains(&rings) {
            bail!(
                "workers.rings = {rings}: from 1 to {}",
                voxtap_common::MAX_RINGS
            );
        }
        let ring = self.capture.ring_bytes;
        if ring != 0 && (!ring.is_power_of_two() || ring < 4096) {
            bail!("capture.ring_bytes = {ring}: a power of two of at least 4096, or 0");
        }
        if self.store.roll_bytes < 4096 {
            bail!(
                "store.roll_bytes = {}: at least 4096",
                self.store.roll_bytes
            );
        }
        if self.store.roll_seconds == 0 {
            bail!("store.roll_seconds must be positive");
        }
        if self.limits.max_open_calls == 0 || self.limits.call_sip_bytes == 0 {
            bail!("limits.max_open_calls and limits.call_sip_bytes must be positive");
        }
        if let Some(bad) = self
            .output
            .media_relays
            .iter()
            .find(|r| voxtap_engine::calls::legs::IpNet::parse(r).is_none())
        {
            bail!("output.media_relays: {bad:?} is not an IP address or network");
        }
        self.upload.validate()?;
        self.tls.rsa_key_files()?;
        if let Err(e) = self.hep.validate() {
            bail!("{e}");
        }
        #[cfg(feature = "central")]
        if let Err(e) = self.central.validate() {
            bail!("{e}");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses_and_matches_defaults_where_documented() {
        let text = include_str!("../../../config/voxtap.toml");
        let c = Config::from_toml(text).unwrap();
        assert_eq!(c.capture.sip_ports, vec![5060, 5061]);
        assert_eq!(c.store.roll_bytes, 512 << 20);
        assert_eq!(c.store.roll_seconds, 300);
        assert_eq!(c.workers.pipeline, 1);
        assert_eq!(c.limits, LimitsConfig::default());
        assert_eq!(
            c.capture,
            CaptureConfig {
                interfaces: vec!["eth1".into()],
                ..CaptureConfig::default()
            }
        );
    }

    #[test]
    fn media_relays_must_be_networks() {
        let c = Config::from_toml("[output]\nmedia_relays = [\"192.0.2.1\", \"10.0.0.0/8\"]\n")
            .unwrap();
        assert_eq!(c.output.media_relays.len(), 2);
        assert!(Config::from_toml("[output]\nmedia_relays = [\"sbc-1\"]\n").is_err());
    }

    /// The kernel's map of shared endpoints has a fixed size: a longer list
    /// is refused when the configuration is read, naming the limit.
    #[test]
    fn shared_media_fits_the_kernel_map() {
        let list = |n: usize| {
            let eps: Vec<String> = (0..n)
                .map(|i| format!("\"192.0.{}.{}:5004\"", i / 250, i % 250))
                .collect();
            format!("[workers]\nshared_media = [{}]\n", eps.join(", "))
        };
        let max = voxtap_common::SHARED_MEDIA_MAX_ENTRIES as usize;
        let c = Config::from_toml(&list(max)).unwrap();
        assert_eq!(c.workers.shared_media_endpoints().unwrap().len(), max);
        let err = format!("{:#}", Config::from_toml(&list(max + 1)).unwrap_err());
        assert!(err.contains(&format!("at most {max}")), "{err}");
    }

    #[test]
    fn empty_is_default_and_unknown_keys_fail() {
        assert_eq!(Config::from_toml("").unwrap(), Config::default());
        assert!(Config::from_toml("[store]\nrol_bytes = 1\n").is_err());
        assert_eq!(
            Config::from_toml("[workers]\npipeline = 2\n")
                .unwrap()
                .workers
                .pipeline,
            2
        );
        assert!(Config::from_toml("[workers]\npipeline = 0\n").is_err());
        assert!(Config::from_toml("[workers]\npipeline = 17\n").is_err());
    }

    /// HEP export with several media workers: the parallel engine hands
    /// each message to the exporter once (`voxtap_engine::parallel`).
    #[test]
    fn hep_export_is_taken_with_several_media_workers() {
        let c = Config::from_toml(
            "[workers]\npipeline = 4\n[hep]\nenabled = true\n\
             [[hep.collectors]]\naddress = \"127.0.0.1:9060\"\n",
        )
        .unwrap();
        assert_eq!((c.workers.pipeline, c.hep.enabled), (4, true));
        assert_eq!(c.hep.collectors.len(), 1);
    }
}
