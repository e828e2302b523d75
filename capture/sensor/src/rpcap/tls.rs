//! `rpcaps`: RPCAP over TLS, as rpcapd does it with `-S`. The client starts
//! the TLS handshake right after the TCP connect of the control connection,
//! and again right after connecting the TCP data channel (rpcapd's
//! `daemon_msg_startcap_req` waits for it in `ssl_promotion`). rpcapd has no
//! DTLS, so a UDP data channel is refused with TLS.
//!
//! Unlike libpcap's own client, which skips verification when no CA file is
//! given, the server's certificate is always verified: against the CA file
//! when one is configured (only that CA: a private CA pinned for the
//! capture hosts), else against the system's roots, and always for the
//! host's name or address (or `tls_server_name`).
//!
//! The TLS stack is the `tls` cargo feature (default on): rustls with ring.
//! Without it (the macOS type-check in CI, where ring's C code would need
//! Apple's SDK) an rpcaps host is a clear error.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
#[cfg(feature = "tls")]
use std::sync::Arc;
use std::time::Duration;
#[cfg(feature = "tls")]
use std::time::Instant;

#[cfg(feature = "tls")]
use rustls::pki_types::pem::PemObject;
#[cfg(feature = "tls")]
use rustls::pki_types::{CertificateDer, ServerName};
#[cfg(feature = "tls")]
use rustls::{ClientConnection, StreamOwned};
use thiserror::Error;

use super::client::RpcapError;

/// TLS settings of one host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM file with the CA certificate(s) that sign the servers'
    /// certificates; `None`: the system's roots.
    pub ca_file: Option<PathBuf>,
    /// The name to check the certificate against when it is not the
    /// address we connect to (e.g. connecting by IP to a cert for a name).
    pub server_name: Option<String>,
}

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("reading CA file {path}: {reason}")]
    CaFile { path: String, reason: String },
    #[error("CA file {0} holds no certificate")]
    CaFileEmpty(String),
    #[error("no system CA certificates found (give a CA file with ca_file or --ca-file)")]
    NoSystemRoots,
    #[error("'{0}' is not a valid TLS server name")]
    BadName(String),
    #[error("{0}")]
    Rustls(String),
    #[error("this voxtap was built without TLS (cargo feature `tls`): rpcaps is not available")]
    NotBuilt,
}

/// What a TLS session needs for each of its connections (control, data).
#[cfg(feature = "tls")]
pub(crate) struct TlsCtx {
    cfg: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
    settings: TlsSettings,
    addr: String,
}

#[cfg(feature = "tls")]
impl TlsCtx {
    pub fn new(settings: &TlsSettings, addr: &str) -> Result<TlsCtx, RpcapError> {
        let setup = |source| RpcapError::TlsSetup {
            addr: addr.to_string(),
            source,
        };
        Ok(TlsCtx {
            cfg: client_config(settings).map_err(setup)?,
            name: server_name(settings, addr).map_err(setup)?,
            settings: settings.clone(),
            addr: addr.to_string(),
        })
    }

    /// The TLS handshake on a fresh TCP connection, within `timeout`.
    pub fn handshake(
        &self,
        tcp: TcpStream,
        timeout: Duration,
        what: &'static str,
    ) -> Result<Conn, RpcapError> {
        let addr = self.addr.clone();
        handshake(tcp, self.cfg.clone(), self.name.clone(), timeout).map_err(|e| match e {
            HandshakeError::Timeout => RpcapError::Timeout {
                addr,
                what: "the TLS handshake",
                timeout,
            },
            HandshakeError::Io(source) if source.kind() == io::ErrorKind::UnexpectedEof => {
                RpcapError::Closed {
                    addr,
                    what: "the TLS handshake",
                }
            }
            HandshakeError::Io(source) => RpcapError::Io {
                addr,
                what: "TLS handshake",
                source,
            },
            HandshakeError::Tls(e) => RpcapError::TlsRefused {
                addr,
                what,
                reason: explain(&e, &self.name, &self.settings),
            },
        })
    }
}

/// Without the `tls` feature there is no TLS session to have.
#[cfg(not(feature = "tls"))]
pub(crate) enum TlsCtx {}

#[cfg(not(feature = "tls"))]
impl TlsCtx {
    pub fn new(_settings: &TlsSettings, addr: &str) -> Result<TlsCtx, RpcapError> {
        Err(RpcapError::TlsSetup {
            addr: addr.to_string(),
            source: TlsError::NotBuilt,
        })
    }

    pub fn handshake(
        &self,
        _tcp: TcpStream,
        _timeout: Duration,
        _what: &'static str,
    ) -> Result<Conn, RpcapError> {
        match *self {}
    }
}

#[cfg(feature = "tls")]
/// Builds the rustls client configuration for `s` (ring provider, TLS 1.2
/// and 1.3: rpcapd's OpenSSL negotiates either).
pub(crate) fn client_config(s: &TlsSettings) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    match &s.ca_file {
        Some(path) => {
            let shown = path.display().to_string();
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| TlsError::CaFile {
                    path: shown.clone(),
                    reason: e.to_string(),
                })?
                .collect::<Result<_, _>>()
                .map_err(|e| TlsError::CaFile {
                    path: shown.clone(),
                    reason: e.to_string(),
                })?;
            if certs.is_empty() {
                return Err(TlsError::CaFileEmpty(shown));
            }
            for c in certs {
                roots.add(c).map_err(|e| TlsError::CaFile {
                    path: shown.clone(),
                    reason: e.to_string(),
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::debug!("system CA certificates: {e}");
            }
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(TlsError::NoSystemRoots);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

#[cfg(feature = "tls")]
/// The name the certificate must hold: `tls_server_name`, else the host
/// part of `host:port` (an IP address is checked against the certificate's
/// IP SANs).
pub fn server_name(s: &TlsSettings, addr: &str) -> Result<ServerName<'static>, TlsError> {
    let host = match &s.server_name {
        Some(n) => n.as_str(),
        None => host_of(addr),
    };
    ServerName::try_from(host.to_string()).map_err(|_| TlsError::BadName(host.to_string()))
}

/// `host` of `host:port` / `[v6]:port`.
#[cfg(feature = "tls")]
fn host_of(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match addr.rsplit_once(':') {
        Some((h, _)) => h,
        None => addr,
    }
}

#[cfg(feature = "tls")]
/// Why a handshake failed, in words an operator can act on.
pub(crate) fn explain(e: &rustls::Error, name: &ServerName<'_>, s: &TlsSettings) -> String {
    use rustls::{AlertDescription, CertificateError, Error};
    let trust = match &s.ca_file {
        Some(p) => format!("the CA in {}", p.display()),
        None => "the system's CA certificates".to_string(),
    };
    let name = name.to_str();
    match e {
        Error::InvalidCertificate(CertificateError::UnknownIssuer)
        | Error::InvalidCertificate(CertificateError::BadSignature) => {
            format!("the server's certificate is not signed by {trust}")
        }
        Error::InvalidCertificate(CertificateError::NotValidForName)
        | Error::InvalidCertificate(CertificateError::NotValidForNameContext { .. }) => {
            format!(
                "the server's certificate is not valid for '{name}' (wrong host, or set tls_server_name to the name in the certificate): {e}"
            )
        }
        Error::InvalidCertificate(CertificateError::Expired)
        | Error::InvalidCertificate(CertificateError::ExpiredContext { .. }) => {
            format!("the server's certificate has expired: {e}")
        }
        Error::AlertReceived(AlertDescription::HandshakeFailure) => {
            "the server refused the TLS handshake (an rpcapd without -S answers a TLS client this way)".to_string()
        }
        Error::InvalidMessage(_) => format!(
            "the server does not speak TLS (an rpcapd without -S, or not rpcapd): {e}"
        ),
        _ => e.to_string(),
    }
}

/// A control or data connection, plain or TLS.
pub enum Conn {
    Plain(TcpStream),
    #[cfg(feature = "tls")]
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Conn {
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(s) => s,
            #[cfg(feature = "tls")]
            Conn::Tls(t) => &t.sock,
        }
    }

    pub fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        self.tcp().set_read_timeout(t)
    }

    /// Sends TLS close_notify (best effort).
    pub fn shutdown(&mut self) {
        #[cfg(feature = "tls")]
        if let Conn::Tls(t) = self {
            t.conn.send_close_notify();
            let _ = t.conn.complete_io(&mut t.sock);
        }
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            #[cfg(feature = "tls")]
            Conn::Tls(t) => t.read(buf),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            #[cfg(feature = "tls")]
            Conn::Tls(t) => t.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            #[cfg(feature = "tls")]
            Conn::Tls(t) => t.flush(),
        }
    }
}

#[cfg(feature = "tls")]
#[derive(Debug)]
pub enum HandshakeError {
    Timeout,
    Io(io::Error),
    Tls(rustls::Error),
}

#[cfg(feature = "tls")]
/// Runs the TLS handshake over `tcp` within `timeout`.
pub fn handshake(
    tcp: TcpStream,
    cfg: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
    timeout: Duration,
) -> Result<Conn, HandshakeError> {
    let mut conn = ClientConnection::new(cfg, name).map_err(HandshakeError::Tls)?;
    let mut tcp = tcp;
    let deadline = Instant::now() + timeout;
    while conn.is_handshaking() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HandshakeError::Timeout);
        }
        tcp.set_read_timeout(Some(left))
            .map_err(HandshakeError::Io)?;
        match conn.complete_io(&mut tcp) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => {
                // rustls reports its own failures as InvalidData wrapping
                // the rustls::Error; keep that, it says what was wrong.
                if let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
                    return Err(HandshakeError::Tls(inner.clone()));
                }
                return Err(HandshakeError::Io(e));
            }
        }
    }
    Ok(Conn::Tls(Box::new(StreamOwned::new(conn, tcp))))
}

/// Resolves a relative CA path against the directory of the file naming it.
pub(crate) fn resolve_ca(ca: &Path, base: Option<&Path>) -> PathBuf {
    match base {
        Some(b) if ca.is_relative() => b.join(ca),
        _ => ca.to_path_buf(),
    }
}

#[cfg(all(test, feature = "tls"))]
mod tests {
    use super::*;

    #[test]
    fn rpcap_tls_names() {
        let s = TlsSettings::default();
        assert_eq!(
            server_name(&s, "127.0.0.1:2002").unwrap().to_str(),
            "127.0.0.1"
        );
        assert_eq!(server_name(&s, "[::1]:2002").unwrap().to_str(), "::1");
        assert_eq!(
            server_name(&s, "sbc-1.example.net:2002").unwrap().to_str(),
            "sbc-1.example.net"
        );
        let s = TlsSettings {
            server_name: Some("rpcapd.lab".into()),
            ..Default::default()
        };
        assert_eq!(
            server_name(&s, "10.0.0.1:2002").unwrap().to_str(),
            "rpcapd.lab"
        );
    }

    #[test]
    fn rpcap_tls_bad_ca_files() {
        let d = tempfile::tempdir().unwrap();
        let missing = TlsSettings {
            ca_file: Some(d.path().join("nope.pem")),
            ..Default::default()
        };
        let e = client_config(&missing).unwrap_err().to_string();
        assert!(e.contains("nope.pem"), "{e}");
        let empty = d.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = client_config(&TlsSettings {
            ca_file: Some(empty),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("holds no certificate"), "{e}");
    }
}
