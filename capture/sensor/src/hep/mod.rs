//! HEP v3 (Homer Encapsulation Protocol): export what the pipeline sees to
//! one or more collectors (Homer, heplify-server...), and listen for HEP that
//! SIP servers (Kamailio, OpenSIPS, FreeSWITCH) mirror, feeding it to the same
//! pipeline as a capture. See docs/hep.md.
//!
//! - [`wire`]: the packet format (pure).
//! - [`json`]: RTCP and per-stream quality reports as the JSON Homer stores.
//! - [`export`]: the pipeline tap, bounded queues and the collector threads.
//! - [`listen`]: UDP/TCP listener, rebuilding frames for the pipeline.

pub mod export;
mod json;
pub mod listen;
mod sock;

use std::path::PathBuf;

use serde::Deserialize;

/// The `[hep]` section of the configuration (export from `voxtap run`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HepConfig {
    /// Export at all (off by default).
    pub enabled: bool,
    /// Capture agent id (chunk 0x000c): names this sensor in Homer.
    pub capture_agent_id: u32,
    /// Authentication key (chunk 0x000e); empty: not sent.
    pub auth_key: String,
    /// Packets queued per collector before new ones are dropped (counted).
    pub queue_packets: usize,
    /// What to send: every SIP message, RTCP as JSON, a quality report per
    /// RTP stream when its call ends.
    pub sip: bool,
    pub rtcp: bool,
    pub reports: bool,
    pub collectors: Vec<CollectorConfig>,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }
}

#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CollectorConfig {
    /// host:port of the collector.
    pub address: String,
    #[serde(default = "default_transport")]
    pub transport: Transport,
    /// TLS: PEM file of the CA certificate(s) to trust (default: the system
    /// bundle, /etc/ssl/certs/ca-certificates.crt).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// TLS: the name the certificate must carry (default: the host part of
    /// `address`).
    #[serde(default)]
    pub server_name: Option<String>,
    /// TCP/TLS: give up a connect or a blocked write after this long, then
    /// reconnect (a collector that stops reading cannot stall us).
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_transport() -> Transport {
    Transport::Udp
}

fn default_timeout_ms() -> u64 {
    2000
}

impl Default for HepConfig {
    fn default() -> Self {
        HepConfig {
            enabled: false,
            capture_agent_id: 2001,
            auth_key: String::new(),
            queue_packets: 4096,
            sip: true,
            rtcp: true,
            reports: true,
            collectors: Vec::new(),
        }
    }
}

impl CollectorConfig {
    pub fn new(address: &str, transport: Transport) -> Self {
        CollectorConfig {
            address: address.to_string(),
            transport,
            ca_file: None,
            server_name: None,
            timeout_ms: default_timeout_ms(),
        }
    }

    /// `udp://host:port`, `tcp://host:port`, `tls://host:port` or a bare
    /// `host:port` (UDP), as given on the command line.
    pub fn parse_url(s: &str) -> Result<Self, String> {
        let (t, addr) = match s.split_once("://") {
            Some(("udp", a)) => (Transport::Udp, a),
            Some(("tcp", a)) => (Transport::Tcp, a),
            Some(("tls", a)) => (Transport::Tls, a),
            Some((other, _)) => return Err(format!("unknown HEP transport {other:?} in {s:?}")),
            None => (Transport::Udp, s),
        };
        if addr
            .rsplit_once(':')
            .is_none_or(|(_, p)| p.parse::<u16>().is_err())
        {
            return Err(format!("HEP collector {s:?}: want host:port"));
        }
        Ok(CollectorConfig::new(addr, t))
    }
}

impl HepConfig {
    pub fn validate(&self) -> Result<(), String> {
        if !self.enabled {
            return Ok(());
        }
        if self.collectors.is_empty() {
            return Err("hep.enabled = true but hep.collectors is empty".into());
        }
        if self.queue_packets == 0 {
            return Err("hep.queue_packets must be positive".into());
        }
        for c in &self.collectors {
            if c.address
                .rsplit_once(':')
                .is_none_or(|(_, p)| p.parse::<u16>().is_err())
            {
                return Err(format!(
                    "hep collector address {:?}: want host:port",
                    c.address
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collector_urls() {
        let c = CollectorConfig::parse_url("tcp://127.0.0.1:9060").unwrap();
        assert_eq!(
            (c.address.as_str(), c.transport),
            ("127.0.0.1:9060", Transport::Tcp)
        );
        let c = CollectorConfig::parse_url("[::1]:9060").unwrap();
        assert_eq!(c.transport, Transport::Udp);
        assert!(CollectorConfig::parse_url("sctp://h:1").is_err());
        assert!(CollectorConfig::parse_url("host").is_err());
    }

    #[test]
    fn config_section() {
        let c: HepConfig = toml::from_str(
            "enabled = true\ncapture_agent_id = 7\n[[collectors]]\naddress = \"h:9060\"\ntransport = \"tls\"\n",
        )
        .unwrap();
        assert_eq!(c.collectors[0].transport, Transport::Tls);
        assert_eq!(c.collectors[0].timeout_ms, 2000);
        assert!(c.validate().is_ok());
        let empty = HepConfig {
            enabled: true,
            ..Default::default()
        };
        assert!(empty.validate().is_err());
    }
}
