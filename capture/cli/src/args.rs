//! Flags that several subcommands share, defined once.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use voxtap_engine::calls::CallConfig;
use voxtap_engine::calls::legs::IpNet;
use voxtap_engine::import::{load_tls_keys, parse_ports};
use voxtap_engine::media::{ManualKey, MediaOptions};
use voxtap_engine::pipeline::{PipelineConfig, TunnelConfig};
use voxtap_proto::tls::TlsKeys;
use voxtap_sensor::hep::export::HepExport;
use voxtap_sensor::hep::{CollectorConfig, HepConfig};

/// How the pipeline finds SIP and closes calls.
#[derive(Args, Clone, Debug)]
pub struct PipelineArgs {
    /// Ports where SIP is expected (SIP is also found by content on any port).
    #[arg(long, default_value = "5060,5061", value_parser = parse_ports)]
    pub sip_ports: std::vec::Vec<u16>,
    /// Close a call after this many seconds of capture time without a packet.
    #[arg(long, default_value_t = 300)]
    pub idle_timeout: u64,
    /// Do not look for SIP by content on non-SIP ports.
    #[arg(long)]
    pub no_sip_by_content: bool,
    /// UDP destination port of VXLAN (0: not unwrapped; Linux's own default is 8472).
    #[arg(long, default_value_t = TunnelConfig::default().vxlan_port)]
    pub vxlan_port: u16,
    /// UDP destination port of Geneve (0: not unwrapped).
    #[arg(long, default_value_t = TunnelConfig::default().geneve_port)]
    pub geneve_port: u16,
    /// UDP destination port of GTP-U (0: not unwrapped).
    #[arg(long, default_value_t = TunnelConfig::default().gtpu_port)]
    pub gtpu_port: u16,
    /// Encapsulation headers (VLAN tags, MPLS labels, tunnel headers) followed per frame.
    #[arg(long, default_value_t = TunnelConfig::default().max_depth,
          value_parser = clap::value_parser!(u16).range(1..=i64::from(voxtap_proto::decode::MAX_DEPTH_LIMIT)))]
    pub max_encap_depth: u16,
    #[command(flatten)]
    pub limits: LimitArgs,
    /// Make every SIP dialog a call (REGISTER, OPTIONS, SUBSCRIBE...), as
    /// before registrations.csv, pings.csv and transactions.csv existed.
    #[arg(long)]
    pub all_dialogs: bool,
    /// A media relay or SBC address (IP or CIDR) whose streams on two legs
    /// may be the same media forwarded; repeatable. A relay with one
    /// address is recognised without it.
    #[arg(long = "media-relay", value_parser = parse_net)]
    pub media_relays: Vec<IpNet>,
    /// A media destination that many calls send to (address:port, such as a
    /// media server's single port); repeatable. With --engine-workers above
    /// 1, its streams are spread over the workers by both ends instead of
    /// all going to the worker of that one destination. An endpoint not
    /// listed that 16 calls' SDP name within 60 s is logged as a warning.
    #[arg(long = "shared-media")]
    pub shared_media: Vec<SocketAddr>,
}

fn parse_net(s: &str) -> Result<IpNet, String> {
    IpNet::parse(s).ok_or_else(|| format!("{s:?} is not an IP address or network"))
}

impl PipelineArgs {
    pub fn config(&self) -> PipelineConfig {
        let mut c = PipelineConfig {
            sip_ports: self.sip_ports.clone(),
            sip_by_content: !self.no_sip_by_content,
            tunnels: TunnelConfig {
                vxlan_port: self.vxlan_port,
                geneve_port: self.geneve_port,
                gtpu_port: self.gtpu_port,
                max_depth: self.max_encap_depth,
            },
            shared_media: self.shared_media.clone(),
            ..Default::default()
        };
        c.calls.idle_timeout_ns = self.idle_timeout.saturating_mul(1_000_000_000);
        self.limits.apply(&mut c.calls);
        c.calls.all_dialogs = self.all_dialogs;
        c.calls.legs.relays = self.media_relays.clone();
        c
    }
}

/// What a sender on the wire may make the capture hold (docs/security.md);
/// the same as `[limits]` in the `voxtap run` configuration.
#[derive(Args, Clone, Debug)]
pub struct LimitArgs {
    /// SIP text kept in memory per call for sip.txt, the index and the call
    /// page (bytes, or with K/M/G/KiB/MiB/GiB); call.pcap has every message.
    #[arg(long, default_value = "1MiB", value_parser = parse_bytes)]
    pub call_sip_bytes: usize,
    /// SIP text kept in memory by all open calls together.
    #[arg(long, default_value = "256MiB", value_parser = parse_bytes)]
    pub sip_bytes_total: usize,
    /// Memory the open calls may hold (estimated); past it, new dialogs are
    /// summarised in floods.csv instead of recorded.
    #[arg(long, default_value = "1GiB", value_parser = parse_bytes)]
    pub memory_bytes: usize,
    /// New INVITE dialogs per second from one source, with as many open and
    /// unanswered, past which they are summarised in floods.csv (0: never).
    #[arg(long, default_value_t = 100)]
    pub flood_invites_per_s: u32,
    /// Open calls at most; new Call-IDs past it are counted and ignored.
    #[arg(long, default_value_t = 1_000_000)]
    pub max_open_calls: usize,
}

impl LimitArgs {
    pub fn apply(&self, c: &mut CallConfig) {
        c.call_sip_bytes = self.call_sip_bytes;
        c.sip_bytes_total = self.sip_bytes_total;
        c.memory_bytes = self.memory_bytes;
        c.flood_invites_per_s = self.flood_invites_per_s;
        c.max_calls = self.max_open_calls;
    }
}

/// `1048576`, `64K`, `1MiB`, `2G`...: powers of 1024 either way.
pub fn parse_bytes(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: usize = num.parse().map_err(|_| format!("bad size '{s}'"))?;
    let shift = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(format!("bad size unit in '{s}' (K, M, G)")),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("size '{s}' too large"))
}

/// Keys that decrypt SIP over TLS.
#[derive(Args, Clone, Debug, Default)]
pub struct TlsArgs {
    /// An NSS key log file (SSLKEYLOGFILE format, TLS 1.2 and 1.3) with the
    /// secrets of the TLS connections in the capture. Repeatable.
    #[arg(long = "tls-keylog")]
    pub keylogs: Vec<PathBuf>,
    /// `IP:PORT,FILE`: the RSA private key (PEM) of the TLS server at
    /// IP:PORT, for TLS 1.2 with RSA key exchange. Repeatable.
    #[arg(long = "tls-key", value_parser = parse_tls_key)]
    pub rsa_keys: Vec<(SocketAddr, PathBuf)>,
}

fn parse_tls_key(s: &str) -> Result<(SocketAddr, PathBuf), String> {
    let (addr, file) = s
        .split_once(',')
        .ok_or_else(|| format!("{s:?}: expected IP:PORT,FILE"))?;
    let addr: SocketAddr = addr
        .trim()
        .parse()
        .map_err(|e| format!("{addr:?}: not IP:PORT ({e})"))?;
    Ok((addr, PathBuf::from(file.trim())))
}

impl TlsArgs {
    /// The keys, read from the files; says how many secrets each key log
    /// gave, so an empty or wrong file does not go unnoticed.
    pub fn load(&self) -> Result<TlsKeys> {
        let keys = load_tls_keys(&self.keylogs, &self.rsa_keys)?;
        if !self.keylogs.is_empty() {
            let k = keys.keylog();
            println!(
                "TLS key log: {} connections' secrets from {} lines{}",
                k.connections(),
                k.lines(),
                if k.bad_lines() > 0 {
                    format!(" ({} lines not understood)", k.bad_lines())
                } else {
                    String::new()
                }
            );
        }
        Ok(keys)
    }
}

/// What the media step writes.
#[derive(Args, Clone, Debug)]
pub struct MediaArgs {
    /// Do not write WAV files (decrypted pcaps, DTMF and quality still are).
    #[arg(long)]
    pub no_audio: bool,
    /// An SRTP key for captures without SDES in SIP: `ssrc=0x1234ABCD,SUITE,BASE64`,
    /// `src=IP:PORT,SUITE,BASE64` or `flow=IP:PORT-IP:PORT,SUITE,BASE64`. Repeatable.
    #[arg(long = "srtp-key")]
    pub srtp_keys: Vec<ManualKey>,
}

impl MediaArgs {
    pub fn options(&self) -> MediaOptions {
        MediaOptions {
            audio: !self.no_audio,
            keys: self.srtp_keys.clone(),
            ..Default::default()
        }
    }
}

/// HEP export from an import (`voxtap run` takes the `[hep]` config section).
#[derive(Args, Clone, Debug)]
pub struct HepArgs {
    /// Send every SIP message, RTCP (JSON) and a quality report per stream to
    /// this HEP3 collector: udp://HOST:PORT, tcp://HOST:PORT, tls://HOST:PORT
    /// or HOST:PORT (UDP). Repeatable.
    #[arg(long = "hep", value_parser = CollectorConfig::parse_url)]
    pub collectors: Vec<CollectorConfig>,
    /// HEP capture agent id.
    #[arg(long, default_value_t = 2001)]
    pub hep_agent_id: u32,
    /// HEP authentication key.
    #[arg(long, default_value = "")]
    pub hep_auth_key: String,
    /// TLS collectors: PEM file of the CA to trust.
    #[arg(long)]
    pub hep_ca_file: Option<PathBuf>,
}

impl HepArgs {
    /// The exporter, when collectors were given; its status goes to `status_dir`.
    pub fn export(&self, status_dir: PathBuf) -> Result<Option<HepExport>> {
        if self.collectors.is_empty() {
            return Ok(None);
        }
        let mut collectors = self.collectors.clone();
        for c in &mut collectors {
            c.ca_file = self.hep_ca_file.clone();
        }
        let cfg = HepConfig {
            enabled: true,
            capture_agent_id: self.hep_agent_id,
            auth_key: self.hep_auth_key.clone(),
            collectors,
            ..Default::default()
        };
        HepExport::new(cfg, Some(status_dir))
            .map(Some)
            .map_err(anyhow::Error::msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("1048576"), Ok(1 << 20));
        assert_eq!(parse_bytes("1MiB"), Ok(1 << 20));
        assert_eq!(parse_bytes("64k"), Ok(64 << 10));
        assert_eq!(parse_bytes("2G"), Ok(2 << 30));
        assert!(parse_bytes("1T").is_err());
        assert!(parse_bytes("x").is_err());
    }

    /// The flags' defaults are the engine's.
    #[test]
    fn limit_defaults_are_the_engines() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            limits: LimitArgs,
        }
        let mut c = CallConfig::default();
        let before = format!("{c:?}");
        Cli::parse_from(["x"]).limits.apply(&mut c);
        assert_eq!(format!("{c:?}"), before);
    }
}
