//! The fleet CA of `voxtap central ca` (tests and small sites; a site with
//! its own PKI uses that instead): one ECDSA P-256 CA that signs the
//! PostgreSQL server's and the hub's certificates and each sensor's client
//! certificate (CN = the sensor's role, which `hostssl ... cert` in
//! pg_hba.conf checks against the login).
//!
//! Files in the CA directory: `ca.crt`, `ca.key` (mode 0600), `ca.cn`;
//! issued pairs go to `<out>/<name>.crt` and `<name>.key` (0600).

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, date_time_ymd,
};
use voxtap_engine::output::civil_from_days;

use super::CentralError;

pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
const CA_CN: &str = "ca.cn";

fn cert_err(e: rcgen::Error) -> CentralError {
    CentralError::Cert(e.to_string())
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> CentralError + '_ {
    move |source| CentralError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `data` to `path`, readable by its owner only when `secret`.
fn write_file(path: &Path, data: &[u8], secret: bool) -> Result<(), CentralError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(path)
        .map_err(io(path))?;
    f.write_all(data).map_err(io(path))
}

/// Validity from yesterday (clocks differ) to `days` from today.
fn validity(params: &mut CertificateParams, days: u32) {
    let today = (crate::status::now_unix() / 86_400) as i64;
    let ymd = |d: i64| {
        let (y, m, dd) = civil_from_days(d);
        date_time_ymd(y as i32, m as u8, dd as u8)
    };
    params.not_before = ymd(today - 1);
    params.not_after = ymd(today + i64::from(days.max(1)));
}

fn ca_params(cn: &str, days: u32) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut p, days);
    p
}

/// A new CA in `dir` (refuses to overwrite one).
pub fn init(dir: &Path, cn: &str, days: u32) -> Result<PathBuf, CentralError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let key_path = dir.join(CA_KEY);
    if key_path.exists() {
        return Err(CentralError::Cert(format!(
            "{} exists: a CA is already there",
            key_path.display()
        )));
    }
    let key = KeyPair::generate().map_err(cert_err)?;
    let cert = ca_params(cn, days).self_signed(&key).map_err(cert_err)?;
    write_file(&key_path, key.serialize_pem().as_bytes(), true)?;
    let crt = dir.join(CA_CERT);
    write_file(&crt, cert.pem().as_bytes(), false)?;
    write_file(&dir.join(CA_CN), cn.as_bytes(), false)?;
    Ok(crt)
}

/// A certificate for `name` (its CN) with `sans` (DNS names or IP
/// addresses), usable as server and client, signed by the CA in `dir`;
/// written to `out/<name>.crt` and `out/<name>.key`.
pub fn issue(
    dir: &Path,
    name: &str,
    sans: &[String],
    days: u32,
    out: &Path,
) -> Result<(PathBuf, PathBuf), CentralError> {
    if name.is_empty() || name.contains(['/', '\\', '\0']) || name.starts_with('.') {
        return Err(CentralError::Cert(format!("bad certificate name {name:?}")));
    }
    let cn_path = dir.join(CA_CN);
    let ca_cn = std::fs::read_to_string(&cn_path).map_err(io(&cn_path))?;
    let ca_key_path = dir.join(CA_KEY);
    let ca_pem = std::fs::read_to_string(&ca_key_path).map_err(io(&ca_key_path))?;
    let ca_key = KeyPair::from_pem(&ca_pem).map_err(cert_err)?;
    // The issuer is rebuilt from the CA's name and key: the subject and the
    // key identifier rcgen derives are the CA certificate's.
    let issuer = Issuer::new(ca_params(ca_cn.trim(), 1), ca_key);
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    p.distinguished_name = dn;
    for s in sans {
        p.subject_alt_names.push(match s.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                s.as_str()
                    .try_into()
                    .map_err(|e: rcgen::Error| CentralError::Cert(format!("{s}: {e}")))?,
            ),
        });
    }
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    validity(&mut p, days);
    let key = KeyPair::generate().map_err(cert_err)?;
    let cert = p.signed_by(&key, &issuer).map_err(cert_err)?;
    std::fs::create_dir_all(out).map_err(io(out))?;
    let crt = out.join(format!("{name}.crt"));
    let keyf = out.join(format!("{name}.key"));
    write_file(&crt, cert.pem().as_bytes(), false)?;
    write_file(&keyf, key.serialize_pem().as_bytes(), true)?;
    Ok((crt, keyf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

    /// The issued certificate verifies against the CA with rustls' webpki,
    /// for its IP and DNS names; a second CA's does not.
    #[test]
    fn issued_certificates_chain_to_the_ca() {
        let d = tempfile::tempdir().unwrap();
        let ca = init(d.path(), "test fleet CA", 30).unwrap();
        assert!(init(d.path(), "again", 30).is_err());
        let sans = ["127.0.0.1".to_string(), "hub.example".to_string()];
        let (crt, key) = issue(d.path(), "vx_s1", &sans, 30, &d.path().join("out")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let roots = super::super::pg::root_store(Some(&ca)).unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let v = rustls::client::WebPkiServerVerifier::builder_with_provider(roots.into(), provider)
            .build()
            .unwrap();
        let leaf: CertificateDer = super::super::pg::read_certs(&crt).unwrap().remove(0);
        for name in ["127.0.0.1", "hub.example"] {
            let sn = ServerName::try_from(name).unwrap();
            v.verify_server_cert(&leaf, &[], &sn, &[], UnixTime::now())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let bad = ServerName::try_from("other.example").unwrap();
        assert!(
            v.verify_server_cert(&leaf, &[], &bad, &[], UnixTime::now())
                .is_err()
        );
        let d2 = tempfile::tempdir().unwrap();
        let ca2 = init(d2.path(), "other CA", 30).unwrap();
        let roots2 = super::super::pg::root_store(Some(&ca2)).unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let v2 =
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots2.into(), provider)
                .build()
                .unwrap();
        let sn = ServerName::try_from("127.0.0.1").unwrap();
        assert!(
            v2.verify_server_cert(&leaf, &[], &sn, &[], UnixTime::now())
                .is_err()
        );
    }
}
