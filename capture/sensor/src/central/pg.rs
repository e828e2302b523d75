//! Connections to the central PostgreSQL: TLS through rustls (ring), with
//! a client certificate when one is given (`hostssl ... cert` in
//! pg_hba.conf makes the server refuse a sensor without one).
//!
//! The URL is libpq's: `sslcert`, `sslkey` and `sslrootcert` are taken out
//! of it here (tokio-postgres does not read files), everything else goes to
//! tokio-postgres as is.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_postgres::Client;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::CentralError;

/// Where to connect and with which files.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PgTarget {
    /// The URL without the file parameters.
    pub url: String,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub ca: Option<PathBuf>,
}

const FILE_KEYS: [&str; 3] = ["sslcert", "sslkey", "sslrootcert"];

impl PgTarget {
    /// Splits the file parameters out of a libpq URL (`postgresql://...?a=b`)
    /// or key/value string (`host=... sslcert=...`).
    pub fn parse(url: &str) -> PgTarget {
        let mut t = PgTarget::default();
        let mut take = |k: &str, v: &str| {
            let p = Some(PathBuf::from(v));
            match k {
                "sslcert" => t.client_cert = p,
                "sslkey" => t.client_key = p,
                _ => t.ca = p,
            }
        };
        let url = url.trim();
        let rest = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let (base, query) = url.split_once('?').unwrap_or((url, ""));
            let kept: Vec<&str> = query
                .split('&')
                .filter(|kv| !kv.is_empty())
                .filter(|kv| match kv.split_once('=') {
                    Some((k, v)) if FILE_KEYS.contains(&k) => {
                        take(k, v);
                        false
                    }
                    _ => true,
                })
                .collect();
            if kept.is_empty() {
                base.to_string()
            } else {
                format!("{base}?{}", kept.join("&"))
            }
        } else {
            url.split_whitespace()
                .filter(|kv| match kv.split_once('=') {
                    Some((k, v)) if FILE_KEYS.contains(&k) => {
                        take(k, v);
                        false
                    }
                    _ => true,
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        t.url = rest;
        t
    }

    /// Files given in the configuration win over the URL's.
    pub fn with_files(
        mut self,
        cert: Option<&Path>,
        key: Option<&Path>,
        ca: Option<&Path>,
    ) -> PgTarget {
        if let Some(c) = cert {
            self.client_cert = Some(c.to_path_buf());
        }
        if let Some(k) = key {
            self.client_key = Some(k.to_path_buf());
        }
        if let Some(c) = ca {
            self.ca = Some(c.to_path_buf());
        }
        self
    }

    /// Opens a connection; its I/O runs as a task of the current tokio
    /// runtime until the client is dropped.
    pub async fn connect(&self) -> Result<Client, CentralError> {
        let tls = MakeRustlsConnect::new(self.tls_config()?);
        let (client, conn) = tokio_postgres::connect(&self.url, tls).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("central index connection ended: {e}");
            }
        });
        Ok(client)
    }

    fn tls_config(&self) -> Result<rustls::ClientConfig, CentralError> {
        let roots = root_store(self.ca.as_deref())?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| CentralError::Tls(e.to_string()))?
            .with_root_certificates(roots);
        match (&self.client_cert, &self.client_key) {
            (Some(c), Some(k)) => {
                let (certs, key) = load_identity(c, k)?;
                builder
                    .with_client_auth_cert(certs, key)
                    .map_err(|e| CentralError::Tls(format!("{}: {e}", c.display())))
            }
            (None, None) => Ok(builder.with_no_client_auth()),
            _ => Err(CentralError::Config(
                "a client certificate needs its key and a key its certificate".into(),
            )),
        }
    }
}

/// The CA file's certificates, or the system's roots.
pub fn root_store(ca: Option<&Path>) -> Result<rustls::RootCertStore, CentralError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(p) => {
            for c in read_certs(p)? {
                roots
                    .add(c)
                    .map_err(|e| CentralError::Tls(format!("{}: {e}", p.display())))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
    }
    Ok(roots)
}

pub fn read_certs(p: &Path) -> Result<Vec<CertificateDer<'static>>, CentralError> {
    let bad = |e: &dyn std::fmt::Display| CentralError::Tls(format!("{}: {e}", p.display()));
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(p)
        .map_err(|e| bad(&e))?
        .collect::<Result<_, _>>()
        .map_err(|e| bad(&e))?;
    if certs.is_empty() {
        return Err(bad(&"no certificate in the file"));
    }
    Ok(certs)
}

/// A certificate chain and its private key (PEM files).
pub fn load_identity(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), CentralError> {
    let certs = read_certs(cert)?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| CentralError::Tls(format!("{}: {e}", key.display())))?;
    Ok((certs, key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_parameters_are_taken_out() {
        let t = PgTarget::parse(
            "postgresql://vx_s1@127.0.0.1:5432/voxtap?sslmode=require&sslcert=/a/s1.crt&sslkey=/a/s1.key&sslrootcert=/a/ca.crt",
        );
        assert_eq!(
            t.url,
            "postgresql://vx_s1@127.0.0.1:5432/voxtap?sslmode=require"
        );
        assert_eq!(t.client_cert.as_deref(), Some(Path::new("/a/s1.crt")));
        assert_eq!(t.client_key.as_deref(), Some(Path::new("/a/s1.key")));
        assert_eq!(t.ca.as_deref(), Some(Path::new("/a/ca.crt")));
        let t = PgTarget::parse("host=/tmp port=5 user=x sslcert=/c");
        assert_eq!(t.url, "host=/tmp port=5 user=x");
        assert_eq!(t.client_cert.as_deref(), Some(Path::new("/c")));
        let t = PgTarget::parse("postgres://u@h/db?sslrootcert=/ca");
        assert_eq!(t.url, "postgres://u@h/db");
    }
}
