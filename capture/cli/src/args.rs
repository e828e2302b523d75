//! Flags that several subcommands share, defined once.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use voxtap_engine::calls::legs::IpNet;
use voxtap_engine::import::parse_ports;
use voxtap_engine::media::{ManualKey, MediaOptions};
use voxtap_engine::pipeline::PipelineConfig;
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
    /// Make every SIP dialog a call (REGISTER, OPTIONS, SUBSCRIBE...), as
    /// before registrations.csv, pings.csv and transactions.csv existed.
    #[arg(long)]
    pub all_dialogs: bool,
    /// A media relay or SBC address (IP or CIDR) whose streams on two legs
    /// may be the same media forwarded; repeatable. A relay with one
    /// address is recognised without it.
    #[arg(long = "media-relay", value_parser = parse_net)]
    pub media_relays: Vec<IpNet>,
}

fn parse_net(s: &str) -> Result<IpNet, String> {
    IpNet::parse(s).ok_or_else(|| format!("{s:?} is not an IP address or network"))
}

impl PipelineArgs {
    pub fn config(&self) -> PipelineConfig {
        let mut c = PipelineConfig {
            sip_ports: self.sip_ports.clone(),
            sip_by_content: !self.no_sip_by_content,
            ..Default::default()
        };
        c.calls.idle_timeout_ns = self.idle_timeout.saturating_mul(1_000_000_000);
        c.calls.all_dialogs = self.all_dialogs;
        c.calls.legs.relays = self.media_relays.clone();
        c
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
