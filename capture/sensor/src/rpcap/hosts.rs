//! `hosts.toml`: the rpcapd hosts by environment, region and sub-region,
//! and selection of a set of them by path (`env/region/host`, `*` for any
//! one level, a prefix for everything below it).
//!
//! ```toml
//! [defaults]
//! port = 2002
//! interfaces = ["eth0"]
//!
//! [environments.lab.regions.local.hosts.loopback]
//! address = "127.0.0.1"
//! interfaces = ["lo"]
//!
//! [environments.prod.regions.eu-west.subregions.az1.hosts.sbc-1]
//! address = "10.10.1.11"
//! user = "voxtap"
//! password_env = "VOXTAP_RPCAP_PASSWORD"   # never the password itself
//! tls = true                  # rpcaps (rpcapd -S); certificate always verified
//! ca_file = "rpcap-ca.pem"    # the CA signing the servers (default: system roots)
//! tls_server_name = "sbc-1.example.net"  # name in the certificate, if not the address
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use thiserror::Error;

use super::tls::{TlsSettings, resolve_ca};
use voxtap_proto::rpcap::Credentials;

#[derive(Debug, Error)]
pub enum HostsError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("host {host}: {message}")]
    Host { host: String, message: String },
    #[error("--select '{0}' matches no host in the hosts file")]
    NoMatch(String),
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    defaults: Entry,
    #[serde(default)]
    environments: BTreeMap<String, Environment>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Environment {
    #[serde(default)]
    regions: BTreeMap<String, Region>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Region {
    #[serde(default)]
    hosts: BTreeMap<String, Entry>,
    #[serde(default)]
    subregions: BTreeMap<String, Region>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Entry {
    address: Option<String>,
    port: Option<u16>,
    interfaces: Option<Vec<String>>,
    user: Option<String>,
    /// Name of the environment variable holding the password: passwords do
    /// not belong in a file checked into a repository.
    password_env: Option<String>,
    /// rpcaps; implied by ca_file.
    tls: Option<bool>,
    /// PEM CA file for rpcaps, relative to the hosts file.
    ca_file: Option<String>,
    tls_server_name: Option<String>,
}

/// One rpcapd host, resolved against the defaults.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    /// environment, region, sub-regions..., host name.
    pub path: Vec<String>,
    pub address: String,
    pub port: u16,
    pub interfaces: Vec<String>,
    pub credentials: Credentials,
    /// `Some`: rpcaps.
    pub tls: Option<TlsSettings>,
}

impl Host {
    /// `env/region/host`.
    pub fn id(&self) -> String {
        self.path.join("/")
    }

    /// `address:port`, bracketing IPv6 literals.
    pub fn addr(&self) -> String {
        if self.address.contains(':') && !self.address.starts_with('[') {
            format!("[{}]:{}", self.address, self.port)
        } else {
            format!("{}:{}", self.address, self.port)
        }
    }
}

pub fn load(path: &Path) -> Result<Vec<Host>, HostsError> {
    let text = std::fs::read_to_string(path).map_err(|source| HostsError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let mut hosts = parse(&text, &path.display().to_string(), &|k| {
        std::env::var(k).ok()
    })?;
    for h in &mut hosts {
        if let Some(t) = h.tls.as_mut()
            && let Some(ca) = t.ca_file.as_mut()
        {
            *ca = resolve_ca(ca, path.parent());
        }
    }
    Ok(hosts)
}

/// Parses the file; `env` looks up password variables.
pub fn parse(
    text: &str,
    name: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Host>, HostsError> {
    let f: File = toml::from_str(text).map_err(|e| HostsError::Parse {
        path: name.to_string(),
        message: e.to_string(),
    })?;
    let mut out = Vec::new();
    for (env_name, e) in &f.environments {
        for (rname, r) in &e.regions {
            walk(
                &f.defaults,
                vec![env_name.clone(), rname.clone()],
                r,
                env,
                &mut out,
            )?;
        }
    }
    Ok(out)
}

fn walk(
    d: &Entry,
    path: Vec<String>,
    r: &Region,
    env: &dyn Fn(&str) -> Option<String>,
    out: &mut Vec<Host>,
) -> Result<(), HostsError> {
    for (name, h) in &r.hosts {
        let mut p = path.clone();
        p.push(name.clone());
        let id = p.join("/");
        let err = |message: String| HostsError::Host {
            host: id.clone(),
            message,
        };
        let address = h.address.clone().ok_or_else(|| err("no address".into()))?;
        let interfaces = h
            .interfaces
            .clone()
            .or_else(|| d.interfaces.clone())
            .unwrap_or_default();
        if interfaces.is_empty() {
            return Err(err(
                "no interfaces (give interfaces = [...] here or in [defaults])".into(),
            ));
        }
        let user = h.user.clone().or_else(|| d.user.clone());
        let pw_env = h.password_env.clone().or_else(|| d.password_env.clone());
        let credentials = match (user, pw_env) {
            (None, None) => Credentials::Null,
            (Some(user), Some(var)) => {
                let password = env(&var).ok_or_else(|| {
                    err(format!(
                        "password variable {var} (for user '{user}') is not set"
                    ))
                })?;
                Credentials::Password { user, password }
            }
            (Some(user), None) => {
                return Err(err(format!(
                    "user '{user}' needs password_env (the variable holding its password)"
                )));
            }
            (None, Some(_)) => return Err(err("password_env given without user".into())),
        };
        let ca_file = h.ca_file.clone().or_else(|| d.ca_file.clone());
        let tls = h.tls.or(d.tls).unwrap_or(ca_file.is_some());
        if !tls && h.ca_file.is_some() {
            return Err(err("ca_file given with tls = false".into()));
        }
        let tls = tls.then(|| TlsSettings {
            ca_file: ca_file.map(Into::into),
            server_name: h.tls_server_name.clone(),
        });
        out.push(Host {
            path: p,
            address,
            port: h.port.or(d.port).unwrap_or(2002),
            interfaces,
            credentials,
            tls,
        });
    }
    for (name, sub) in &r.subregions {
        let mut p = path.clone();
        p.push(name.clone());
        walk(d, p, sub, env, out)?;
    }
    Ok(())
}

fn matches(pattern: &str, path: &[String]) -> bool {
    let pattern = pattern.trim().trim_matches('/');
    if pattern.is_empty() || pattern == "*" || pattern == "all" {
        return true;
    }
    let segs: Vec<&str> = pattern.split('/').collect();
    if segs.len() > path.len() {
        return false;
    }
    // A pattern naming the host directly (`env/region/host`) also finds a
    // host inside a sub-region: the last segment is compared with the host.
    let prefix_ok = segs
        .iter()
        .zip(path)
        .all(|(s, p)| *s == "*" || *s == p.as_str());
    let host_ok = segs.len() >= 2
        && path.last().map(String::as_str) == segs.last().copied()
        && segs[..segs.len() - 1]
            .iter()
            .zip(path)
            .all(|(s, p)| *s == "*" || *s == p.as_str());
    prefix_ok || host_ok
}

/// The hosts any pattern selects, in file order; a pattern matching nothing
/// is an error (a typo must not silently capture nothing).
pub fn select(hosts: &[Host], patterns: &[String]) -> Result<Vec<Host>, HostsError> {
    if patterns.is_empty() {
        return Ok(hosts.to_vec());
    }
    for p in patterns {
        if !hosts.iter().any(|h| matches(p, &h.path)) {
            return Err(HostsError::NoMatch(p.clone()));
        }
    }
    Ok(hosts
        .iter()
        .filter(|h| patterns.iter().any(|p| matches(p, &h.path)))
        .cloned()
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"
[defaults]
port = 2002
interfaces = ["eth0"]

[environments.lab.regions.local.hosts.loopback]
address = "127.0.0.1"
port = 2100
interfaces = ["lo"]

[environments.prod.regions.eu-west.subregions.az1.hosts.sbc-1]
address = "fd00::11"
user = "voxtap"
password_env = "PW"

[environments.prod.regions.eu-west.hosts.media-1]
address = "10.0.0.2"
ca_file = "ca.pem"
tls_server_name = "media-1.example.net"
"#;

    #[test]
    fn rpcap_hosts_parse_and_select() {
        let hosts = parse(TEXT, "t", &|k| (k == "PW").then(|| "s3cret".into())).unwrap();
        let ids: Vec<String> = hosts.iter().map(Host::id).collect();
        assert_eq!(
            ids,
            [
                "lab/local/loopback",
                "prod/eu-west/media-1",
                "prod/eu-west/az1/sbc-1"
            ]
        );
        assert_eq!(hosts[0].addr(), "127.0.0.1:2100");
        assert_eq!(hosts[0].interfaces, ["lo"]);
        assert_eq!(hosts[0].tls, None);
        assert_eq!(
            hosts[1].tls,
            Some(TlsSettings {
                ca_file: Some("ca.pem".into()),
                server_name: Some("media-1.example.net".into())
            })
        );
        assert_eq!(hosts[2].addr(), "[fd00::11]:2002");
        assert_eq!(hosts[2].interfaces, ["eth0"]);
        assert_eq!(
            hosts[2].credentials,
            Credentials::Password {
                user: "voxtap".into(),
                password: "s3cret".into()
            }
        );
        let sel = |p: &[&str]| {
            select(&hosts, &p.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .map(|v| v.iter().map(Host::id).collect::<Vec<_>>())
        };
        assert_eq!(
            sel(&["lab/local/loopback"]).unwrap(),
            ["lab/local/loopback"]
        );
        assert_eq!(sel(&["prod"]).unwrap().len(), 2);
        assert_eq!(
            sel(&["prod/eu-west/sbc-1"]).unwrap(),
            ["prod/eu-west/az1/sbc-1"]
        );
        assert_eq!(sel(&["*/*/media-1"]).unwrap(), ["prod/eu-west/media-1"]);
        let e = sel(&["prod/us-east"]).unwrap_err().to_string();
        assert!(e.contains("'prod/us-east' matches no host"), "{e}");
    }

    #[test]
    fn rpcap_hosts_errors_are_clear() {
        let e = parse(TEXT, "t", &|_| None).unwrap_err().to_string();
        assert!(
            e.contains("prod/eu-west/az1/sbc-1") && e.contains("PW") && e.contains("not set"),
            "{e}"
        );
        let e = parse(
            "[environments.a.regions.b.hosts.c]\nport = 1\n",
            "f.toml",
            &|_| None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("a/b/c: no address"), "{e}");
        let e = parse(
            "[environments.a.regions.b.hosts.c]\nadress = \"x\"\n",
            "f.toml",
            &|_| None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("f.toml") && e.contains("adress"), "{e}");
    }

    #[test]
    fn rpcap_hosts_shipped_file_parses() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/hosts.toml");
        let text = std::fs::read_to_string(&p).unwrap();
        let hosts = parse(&text, "hosts.toml", &|_| Some("x".into())).unwrap();
        assert!(hosts.iter().any(|h| h.id() == "lab/local/loopback"));
    }
}
