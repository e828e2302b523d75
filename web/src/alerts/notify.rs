//! Where firing and resolved alerts go: a webhook (JSON POST, retried with
//! back-off), syslog (RFC 5424 over UDP or to the local `/dev/log`) and
//! mail (SMTP to a relay, STARTTLS and AUTH when configured). Each sink has its own bounded queue and task, so
//! a webhook retrying does not hold up syslog; an event that finds a queue
//! full is dropped and counted.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::smtp;
use super::tls;

/// A password from the config: never in a log line or a Debug print.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `[alerting]`: how often rules are evaluated and where alerts go.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertingConfig {
    /// Seconds between evaluations (default 5; 1 to 300).
    pub interval_seconds: Option<u64>,
    /// Events waiting per sink at most (default 1000).
    pub queue: Option<u32>,
    /// `http://HOST:PORT/PATH` or `https://...` receiving each event as
    /// JSON.
    pub webhook: Option<String>,
    /// Further attempts after a failed POST (default 5), waiting 1, 2, 4...
    /// seconds (at most 60) between them.
    pub webhook_retries: Option<u32>,
    /// `udp://HOST:PORT` (RFC 5424 over UDP) or a local socket path such
    /// as `/dev/log`.
    pub syslog: Option<String>,
    /// `HOST:PORT` of an SMTP relay.
    pub smtp_relay: Option<String>,
    pub smtp_from: Option<String>,
    #[serde(default)]
    pub smtp_to: Vec<String>,
    /// STARTTLS before anything else (the relay must offer it); the same
    /// as `smtp_tls = "starttls"`.
    pub smtp_starttls: Option<bool>,
    /// `"starttls"`, `"implicit"` (TLS from the first byte: port 465,
    /// RFC 8314) or `"none"` (default: none, or STARTTLS with
    /// `smtp_starttls = true`).
    pub smtp_tls: Option<SmtpTls>,
    /// AUTH PLAIN or LOGIN (whichever the relay offers, PLAIN first) with
    /// this user and `smtp_password`; only over TLS.
    pub smtp_user: Option<String>,
    pub smtp_password: Option<Secret>,
    /// A PEM file of the CA(s) the HTTPS webhook's and the SMTP relay's
    /// certificates are checked against (default: the system's roots).
    pub tls_ca: Option<PathBuf>,
}

/// A webhook's URL: whether it is HTTPS, `host:port`, path.
#[derive(Debug, PartialEq, Eq)]
pub struct HttpUrl {
    pub tls: bool,
    pub authority: String,
    pub path: String,
}

/// `http[s]://host[:port]/path` split; None when it is not one.
pub fn parse_http_url(url: &str) -> Option<HttpUrl> {
    let (tls, rest, port) = match url.strip_prefix("https://") {
        Some(r) => (true, r, 443),
        None => (false, url.strip_prefix("http://")?, 80),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let authority = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_string()
    } else {
        format!("{authority}:{port}")
    };
    let ok = !authority.starts_with(':')
        && !path.contains(['\r', '\n', ' '])
        && !authority.contains(['@', ' ']);
    ok.then(|| HttpUrl {
        tls,
        authority,
        path: path.to_string(),
    })
}

impl AlertingConfig {
    pub fn check(&self) -> Result<(), String> {
        if let Some(i) = self.interval_seconds.filter(|i| !(1..=300).contains(i)) {
            return Err(format!("[alerting] interval_seconds = {i}: 1 to 300"));
        }
        if let Some(q) = self.queue.filter(|q| !(1..=1_000_000).contains(q)) {
            return Err(format!("[alerting] queue = {q}: 1 to 1000000"));
        }
        if let Some(u) = self
            .webhook
            .as_deref()
            .filter(|u| parse_http_url(u).is_none())
        {
            return Err(format!(
                "[alerting] webhook {u:?}: an http:// or https://HOST:PORT/PATH URL"
            ));
        }
        if let Some(ca) = &self.tls_ca {
            tls::client_config(Some(ca)).map_err(|e| format!("[alerting] tls_ca: {e}"))?;
        }
        if let Some(s) = self.syslog.as_deref() {
            let udp = s.strip_prefix("udp://").is_some_and(|a| {
                a.rsplit_once(':')
                    .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            });
            if !udp && !s.starts_with('/') {
                return Err(format!(
                    "[alerting] syslog {s:?}: udp://HOST:PORT or a socket path (/dev/log)"
                ));
            }
        }
        if self.smtp_relay.is_some() && (self.smtp_from.is_none() || self.smtp_to.is_empty()) {
            return Err("[alerting] smtp_relay needs smtp_from and smtp_to".into());
        }
        if self.smtp_user.is_some() != self.smtp_password.is_some() {
            return Err("[alerting] smtp_user and smtp_password go together".into());
        }
        if self.smtp_starttls == Some(true) && self.smtp_tls.is_some_and(|t| t != SmtpTls::Starttls)
        {
            return Err("[alerting] smtp_starttls = true contradicts smtp_tls".into());
        }
        if self.smtp_user.is_some() && self.smtp_secure() == SmtpTls::None {
            return Err(
                "[alerting] smtp_user needs smtp_tls = \"starttls\" or \"implicit\" (or smtp_starttls = true): the password must not cross the network in clear"
                    .into(),
            );
        }
        Ok(())
    }

    /// How the SMTP relay is reached.
    pub fn smtp_secure(&self) -> SmtpTls {
        match (self.smtp_tls, self.smtp_starttls) {
            (Some(t), _) => t,
            (None, Some(true)) => SmtpTls::Starttls,
            (None, _) => SmtpTls::None,
        }
    }

    /// The TLS client the sinks use, when one needs it.
    fn tls(&self) -> Option<Arc<rustls::ClientConfig>> {
        let https = self
            .webhook
            .as_deref()
            .and_then(parse_http_url)
            .is_some_and(|u| u.tls);
        if !https && self.smtp_secure() == SmtpTls::None {
            return None;
        }
        match tls::client_config(self.tls_ca.as_deref()) {
            Ok(c) => Some(c),
            Err(e) => {
                // Each send then fails and is counted: the sink stays visible.
                tracing::error!(error = %e, "alert notifications: no TLS client");
                None
            }
        }
    }
}

/// One firing or resolved alert, as the webhook receives it.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    pub rule: String,
    /// `firing` or `resolved`.
    pub state: &'static str,
    pub metric: &'static str,
    pub op: &'static str,
    pub threshold: f64,
    /// The value that made it change; None when the metric has none (no
    /// calls in the window, the rule removed).
    pub value: Option<f64>,
    pub window_seconds: u64,
    pub scope: String,
    /// The rule in words: `ASR % < 40 over 300 s (all calls)`.
    pub summary: String,
    /// RFC 3339, UTC.
    pub at: String,
    pub at_unix_ms: u64,
    pub host: String,
}

impl Event {
    /// `FIRING low-asr: ASR % < 40 over 300 s (all calls); value 12.5`.
    pub fn line(&self) -> String {
        let v = self.value.map_or("none".to_string(), |v| format!("{v:.2}"));
        format!(
            "{} {}: {}; value {v}",
            self.state.to_uppercase(),
            self.rule,
            self.summary
        )
    }
}

/// Per sink: events sent, given up on, dropped at a full queue, retried.
#[derive(Default)]
pub struct SinkCounters {
    pub sent: AtomicU64,
    pub failed: AtomicU64,
    pub dropped: AtomicU64,
    pub retries: AtomicU64,
}

struct Sink {
    name: &'static str,
    tx: mpsc::Sender<Arc<Event>>,
    counters: Arc<SinkCounters>,
}

/// The sinks the config names.
#[derive(Default)]
pub struct Notifier {
    sinks: Vec<Sink>,
}

impl Notifier {
    /// Starts one task per configured sink (needs a Tokio runtime).
    pub fn start(cfg: &AlertingConfig) -> Notifier {
        let depth = cfg.queue.unwrap_or(1000) as usize;
        let mut n = Notifier::default();
        let tls = cfg.tls();
        if let Some(url) = cfg.webhook.clone() {
            let retries = cfg.webhook_retries.unwrap_or(5);
            let tls = tls.clone();
            n.add("webhook", depth, move |e, c| {
                let (url, tls) = (url.clone(), tls.clone());
                async move { webhook(&url, tls.as_ref(), &e, retries, &c).await }
            });
        }
        if let Some(target) = cfg.syslog.clone() {
            n.add("syslog", depth, move |e, _| {
                let target = target.clone();
                async move { syslog(&target, &e).await }
            });
        }
        if let (Some(relay), Some(from)) = (cfg.smtp_relay.clone(), cfg.smtp_from.clone()) {
            let relay = Arc::new(Relay {
                addr: relay,
                from,
                to: cfg.smtp_to.clone(),
                secure: cfg.smtp_secure(),
                tls: tls.clone(),
                auth: cfg.smtp_user.clone().zip(cfg.smtp_password.clone()),
            });
            n.add("smtp", depth, move |e, _| {
                let relay = relay.clone();
                async move { mail(&relay, &e).await }
            });
        }
        n
    }

    fn add<F, Fut>(&mut self, name: &'static str, depth: usize, deliver: F)
    where
        F: Fn(Arc<Event>, Arc<SinkCounters>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<(), String>> + Send,
    {
        let (tx, mut rx) = mpsc::channel::<Arc<Event>>(depth);
        let counters = Arc::new(SinkCounters::default());
        let c = counters.clone();
        tokio::spawn(async move {
            while let Some(e) = rx.recv().await {
                match deliver(e.clone(), c.clone()).await {
                    Ok(()) => c.sent.fetch_add(1, Ordering::Relaxed),
                    Err(err) => {
                        tracing::warn!(sink = name, rule = %e.rule, error = %err, "alert notification failed");
                        c.failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        });
        self.sinks.push(Sink { name, tx, counters });
    }

    /// Queues `e` on every sink; never waits.
    pub fn send(&self, e: Event) {
        let e = Arc::new(e);
        for s in &self.sinks {
            if s.tx.try_send(e.clone()).is_err() {
                s.counters.dropped.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(sink = s.name, rule = %e.rule, "alert queue full: notification dropped");
            }
        }
    }

    /// (sink, counters) for `/metrics`.
    pub fn counters(&self) -> impl Iterator<Item = (&'static str, &SinkCounters)> {
        self.sinks.iter().map(|s| (s.name, &*s.counters))
    }
}

/// POSTs `e`, retrying with a doubling back-off.
async fn webhook(
    url: &str,
    tls: Option<&Arc<rustls::ClientConfig>>,
    e: &Event,
    retries: u32,
    c: &SinkCounters,
) -> Result<(), String> {
    let body = serde_json::to_string(e).map_err(|e| e.to_string())?;
    let mut wait = Duration::from_secs(1);
    let mut attempt = 0;
    loop {
        let r = tokio::time::timeout(Duration::from_secs(10), post(url, tls, &body))
            .await
            .unwrap_or_else(|_| Err("no answer within 10 s".into()));
        match r {
            Ok(()) => return Ok(()),
            Err(err) if attempt >= retries => {
                return Err(format!("{url}: {err} ({} attempts)", attempt + 1));
            }
            Err(err) => {
                tracing::debug!(%url, error = %err, "webhook failed; retrying");
                c.retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(60));
                attempt += 1;
            }
        }
    }
}

/// One HTTP/1.1 POST (over TLS for https://); a 2xx status is success.
async fn post(
    url: &str,
    tls: Option<&Arc<rustls::ClientConfig>>,
    body: &str,
) -> Result<(), String> {
    let HttpUrl {
        tls: https,
        authority,
        path,
    } = parse_http_url(url).ok_or("not an http(s):// URL")?;
    let tcp = tokio::net::TcpStream::connect(&authority)
        .await
        .map_err(|e| e.to_string())?;
    let mut s: Box<dyn tls::Io> = match (https, tls) {
        (false, _) => Box::new(tcp),
        (true, Some(cfg)) => tls::wrap(tcp, &authority, cfg).await?,
        (true, None) => return Err("HTTPS without a TLS client (see the start's error)".into()),
    };
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: voxtap/{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        env!("CARGO_PKG_VERSION"),
        body.len()
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    s.flush().await.map_err(|e| e.to_string())?;
    let mut head = [0u8; 64];
    let mut n = 0;
    while n < 12 {
        let k = s.read(&mut head[n..]).await.map_err(|e| e.to_string())?;
        if k == 0 {
            break;
        }
        n += k;
    }
    let line = String::from_utf8_lossy(&head[..n]);
    match line.split(' ').nth(1).and_then(|c| c.parse::<u16>().ok()) {
        Some(code) if (200..300).contains(&code) => Ok(()),
        Some(code) => Err(format!("HTTP {code}")),
        None => Err("no HTTP status line".into()),
    }
}

/// An SD-PARAM value: `"`, `\` and `]` escaped (RFC 5424 6.3.3).
fn sd_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace(']', "\\]")
}

/// The RFC 5424 line: facility local0, warning when firing and notice
/// when resolved; 32473 is the enterprise number RFC 5612 sets aside for
/// examples and documentation.
pub fn syslog_line(e: &Event) -> String {
    let pri = 16 * 8 + if e.state == "firing" { 4 } else { 5 };
    let value = e.value.map_or(String::new(), |v| format!("{v}"));
    format!(
        "<{pri}>1 {} {} voxtap {} alert [voxtap@32473 rule=\"{}\" state=\"{}\" metric=\"{}\" value=\"{}\" threshold=\"{}\"] {}",
        e.at,
        if e.host.is_empty() { "-" } else { &e.host },
        std::process::id(),
        sd_value(&e.rule),
        e.state,
        e.metric,
        value,
        e.threshold,
        e.line()
    )
}

async fn syslog(target: &str, e: &Event) -> Result<(), String> {
    let line = syslog_line(e);
    match target.strip_prefix("udp://") {
        Some(addr) => {
            // IPv6 sockets reach IPv4 addresses too (mapped), unless IPv6 is off.
            let s = match tokio::net::UdpSocket::bind("[::]:0").await {
                Ok(s) => s,
                Err(_) => tokio::net::UdpSocket::bind("0.0.0.0:0")
                    .await
                    .map_err(|e| e.to_string())?,
            };
            s.send_to(line.as_bytes(), addr)
                .await
                .map_err(|e| format!("{addr}: {e}"))?;
        }
        None => {
            let s = tokio::net::UnixDatagram::unbound().map_err(|e| e.to_string())?;
            s.send_to(line.as_bytes(), target)
                .await
                .map_err(|e| format!("{target}: {e}"))?;
        }
    }
    Ok(())
}

/// How the SMTP sink protects its connection (`[alerting] smtp_tls`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    #[default]
    None,
    Starttls,
    Implicit,
}

/// The SMTP sink's relay and envelope.
struct Relay {
    addr: String,
    from: String,
    to: Vec<String>,
    secure: SmtpTls,
    tls: Option<Arc<rustls::ClientConfig>>,
    auth: Option<(String, Secret)>,
}

async fn mail(relay: &Relay, e: &Event) -> Result<(), String> {
    let secure = match (relay.secure, &relay.tls) {
        (SmtpTls::None, _) => smtp::Secure::Plain,
        (SmtpTls::Starttls, Some(cfg)) => smtp::Secure::StartTls(cfg),
        (SmtpTls::Implicit, Some(cfg)) => smtp::Secure::Implicit(cfg),
        (_, None) => {
            return Err("SMTP over TLS without a TLS client (see the start's error)".into());
        }
    };
    let subject = format!("[voxtap] {} {}", e.state.to_uppercase(), e.rule);
    let body = format!(
        "{}\n\nrule: {}\nstate: {}\nmetric: {} {} {}\nvalue: {}\nwindow: {} s\nscope: {}\nat: {}\nhost: {}\n",
        e.line(),
        e.rule,
        e.state,
        e.metric,
        e.op,
        e.threshold,
        e.value.map_or("none".to_string(), |v| format!("{v}")),
        e.window_seconds,
        e.scope,
        e.at,
        e.host
    );
    let host = if e.host.is_empty() { "voxtap" } else { &e.host };
    smtp::send(&smtp::Mail {
        relay: &relay.addr,
        helo: host,
        from: &relay.from,
        to: &relay.to,
        subject: &subject,
        body: &body,
        date: &smtp::date(e.at_unix_ms / 1000),
        message_id: &format!("{}.{}.{}@{host}", e.at_unix_ms, e.rule, e.state),
        tls: secure,
        auth: relay.auth.as_ref().map(|(u, p)| (u.as_str(), p.0.as_str())),
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_syslog_lines() {
        let url = |tls, authority: &str, path: &str| {
            Some(HttpUrl {
                tls,
                authority: authority.into(),
                path: path.into(),
            })
        };
        assert_eq!(
            parse_http_url("http://127.0.0.1:9000/hook?a=1"),
            url(false, "127.0.0.1:9000", "/hook?a=1")
        );
        assert_eq!(
            parse_http_url("http://alerts.example"),
            url(false, "alerts.example:80", "/")
        );
        assert_eq!(parse_http_url("https://x/"), url(true, "x:443", "/"));
        assert_eq!(parse_http_url("ftp://x/"), None);
        assert_eq!(parse_http_url("http://x/a b"), None);
        let e = Event {
            rule: "r1".into(),
            state: "firing",
            metric: "asr",
            op: "<",
            threshold: 40.0,
            value: Some(12.5),
            window_seconds: 300,
            scope: "all calls".into(),
            summary: "ASR % < 40 over 300 s (all calls)".into(),
            at: "2026-12-02T23:10:00.000000Z".into(),
            at_unix_ms: 0,
            host: "box".into(),
        };
        let l = syslog_line(&e);
        assert!(
            l.starts_with("<132>1 2026-12-02T23:10:00.000000Z box voxtap "),
            "{l}"
        );
        assert!(l.contains(" alert [voxtap@32473 rule=\"r1\" state=\"firing\" metric=\"asr\" value=\"12.5\" threshold=\"40\"] FIRING r1: ASR % < 40 over 300 s (all calls); value 12.50"), "{l}");
        assert_eq!(sd_value("a]\"\\"), "a\\]\\\"\\\\");
    }

    #[test]
    fn smtp_credentials_are_checked_and_never_printed() {
        let cfg: AlertingConfig = toml::from_str(
            "smtp_relay = \"mail.test:587\"\nsmtp_from = \"a@test\"\nsmtp_to = [\"b@test\"]\n\
             smtp_user = \"voxtap\"\nsmtp_password = \"s3cret-pw\"\n",
        )
        .unwrap();
        assert!(!format!("{cfg:?}").contains("s3cret-pw"), "{cfg:?}");
        assert!(cfg.check().unwrap_err().contains("smtp_tls"));
        let implicit = AlertingConfig {
            smtp_tls: Some(SmtpTls::Implicit),
            ..cfg.clone()
        };
        assert_eq!(implicit.check(), Ok(()));
        assert_eq!(implicit.smtp_secure(), SmtpTls::Implicit);
        let contradiction = AlertingConfig {
            smtp_starttls: Some(true),
            ..implicit
        };
        assert!(contradiction.check().unwrap_err().contains("contradicts"));
        let t: AlertingConfig = toml::from_str("smtp_tls = \"implicit\"").unwrap();
        assert_eq!(t.smtp_secure(), SmtpTls::Implicit);
        assert!(toml::from_str::<AlertingConfig>("smtp_tls = \"ssl\"").is_err());
        let cfg = AlertingConfig {
            smtp_starttls: Some(true),
            ..cfg
        };
        assert_eq!(cfg.check(), Ok(()));
        assert_eq!(cfg.smtp_secure(), SmtpTls::Starttls);
        let cfg = AlertingConfig {
            smtp_password: None,
            ..cfg
        };
        assert!(cfg.check().unwrap_err().contains("go together"));
    }
}
