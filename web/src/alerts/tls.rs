//! TLS for the notification sinks: a webhook over HTTPS and SMTP after
//! STARTTLS, verified against the configured CA file (`tls_ca`) or the
//! system's roots, with rustls (ring, as the rest of voxtap).

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;

/// A connection the sinks talk over: plain TCP or TLS on top of it.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// The client configuration the sinks share: roots from `ca` (a PEM file)
/// or the system's.
pub fn client_config(ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, String> {
    let roots = voxtap_sensor::central::pg::root_store(ca).map_err(|e| e.to_string())?;
    if roots.is_empty() {
        return Err(
            "no CA certificate: set [alerting] tls_ca or install the system's roots".into(),
        );
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// The name the server's certificate must carry: `host` of `host:port`
/// (an IP address, or a DNS name; IPv6 in brackets).
pub fn server_name(authority: &str) -> Result<ServerName<'static>, String> {
    let host = match authority.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => h,
        _ => authority,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(ServerName::IpAddress(ip.into()));
    }
    ServerName::try_from(host.to_string()).map_err(|_| format!("{host:?} is not a host name"))
}

/// TLS over `io`, the server checked as `authority`'s host.
pub async fn wrap<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    io: S,
    authority: &str,
    cfg: &Arc<rustls::ClientConfig>,
) -> Result<Box<dyn Io>, String> {
    let name = server_name(authority)?;
    let s = TlsConnector::from(cfg.clone())
        .connect(name, io)
        .await
        .map_err(|e| format!("TLS with {authority}: {e}"))?;
    Ok(Box::new(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names() {
        assert_eq!(
            server_name("127.0.0.1:8443").unwrap(),
            ServerName::IpAddress("127.0.0.1".parse::<IpAddr>().unwrap().into())
        );
        assert_eq!(
            server_name("[::1]:25").unwrap(),
            ServerName::IpAddress("::1".parse::<IpAddr>().unwrap().into())
        );
        assert_eq!(
            server_name("mail.example.net:587").unwrap(),
            ServerName::try_from("mail.example.net").unwrap()
        );
        assert!(server_name("bad host:25").is_err());
    }
}
