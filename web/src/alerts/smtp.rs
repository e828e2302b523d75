//! A small SMTP client (RFC 5321) for the operator's relay: TLS from the
//! first byte (implicit TLS, "submissions" on port 465, RFC 8314) or EHLO
//! then STARTTLS (RFC 3207) when configured, AUTH PLAIN or LOGIN (RFC 4954)
//! with the configured credentials (only over TLS), MAIL, RCPT, DATA,
//! QUIT. Every reply is checked, so a refused recipient is a failed send.
//! The credentials are never logged nor put in an error.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::tls::{self, Io};

/// Longest a whole conversation may take.
const TIMEOUT: Duration = Duration::from_secs(30);

pub struct Mail<'a> {
    pub relay: &'a str,
    pub helo: &'a str,
    pub from: &'a str,
    pub to: &'a [String],
    pub subject: &'a str,
    pub body: &'a str,
    pub date: &'a str,
    pub message_id: &'a str,
    /// How the connection is protected.
    pub tls: Secure<'a>,
    /// User and password for AUTH (over TLS only).
    pub auth: Option<(&'a str, &'a str)>,
}

/// The protection of an SMTP connection.
#[derive(Clone, Copy)]
pub enum Secure<'a> {
    /// None: the relay is trusted (loopback, a private network).
    Plain,
    /// STARTTLS with this configuration before anything else (the relay
    /// must offer it).
    StartTls(&'a Arc<rustls::ClientConfig>),
    /// TLS from the connection's first byte, before the relay's greeting.
    Implicit(&'a Arc<rustls::ClientConfig>),
}

pub async fn send(m: &Mail<'_>) -> Result<(), String> {
    tokio::time::timeout(TIMEOUT, conversation(m))
        .await
        .map_err(|_| format!("SMTP {}: no answer within {} s", m.relay, TIMEOUT.as_secs()))?
}

/// One SMTP connection: replies read line by line, commands written and
/// flushed (a TLS stream holds them otherwise).
struct Conn {
    io: BufReader<Box<dyn Io>>,
}

impl Conn {
    fn new(io: Box<dyn Io>) -> Conn {
        Conn {
            io: BufReader::new(io),
        }
    }

    async fn say(&mut self, line: &str) -> Result<(), String> {
        let w = self.io.get_mut();
        w.write_all(format!("{line}\r\n").as_bytes())
            .await
            .map_err(|e| format!("SMTP: {e}"))?;
        w.flush().await.map_err(|e| format!("SMTP: {e}"))
    }

    /// `line`, then its reply, which must be `code`: the reply's lines'
    /// texts. `what` stands for the line in an error (it may be secret).
    async fn cmd(&mut self, line: &str, what: &str, code: u16) -> Result<Vec<String>, String> {
        self.say(line).await?;
        self.expect(code)
            .await
            .map_err(|e| format!("{e} (after {what})"))
    }

    /// Reads one reply (all its lines) and checks its code.
    async fn expect(&mut self, code: u16) -> Result<Vec<String>, String> {
        let mut texts = Vec::new();
        loop {
            let mut line = String::new();
            let n = (&mut self.io)
                .take(4096)
                .read_line(&mut line)
                .await
                .map_err(|e| format!("SMTP: {e}"))?;
            if n == 0 {
                return Err(format!("SMTP: connection closed waiting for {code}"));
            }
            let got: u16 = line.get(..3).and_then(|c| c.parse().ok()).unwrap_or(0);
            if got != code {
                return Err(format!("SMTP: wanted {code}, got {}", line.trim_end()));
            }
            texts.push(line.get(4..).unwrap_or("").trim_end().to_string());
            if line.as_bytes().get(3) != Some(&b'-') {
                return Ok(texts);
            }
        }
    }
}

async fn conversation(m: &Mail<'_>) -> Result<(), String> {
    let s = TcpStream::connect(m.relay)
        .await
        .map_err(|e| format!("SMTP {}: {e}", m.relay))?;
    let mut c = match m.tls {
        Secure::Implicit(cfg) => Conn::new(tls::wrap(s, m.relay, cfg).await?),
        _ => Conn::new(Box::new(s)),
    };
    c.expect(220).await?;
    let ehlo = format!("EHLO {}", m.helo);
    let mut caps = c.cmd(&ehlo, "EHLO", 250).await?;
    if let Secure::StartTls(cfg) = m.tls {
        if !has(&caps, "STARTTLS") {
            return Err(format!("SMTP {}: the relay offers no STARTTLS", m.relay));
        }
        c.cmd("STARTTLS", "STARTTLS", 220).await?;
        c = Conn::new(tls::wrap(c.io.into_inner(), m.relay, cfg).await?);
        // RFC 3207 4.2: what the relay said before TLS is forgotten.
        caps = c.cmd(&ehlo, "EHLO", 250).await?;
    }
    if let Some((user, password)) = m.auth {
        auth(&mut c, &caps, user, password).await?;
    }
    c.cmd(&format!("MAIL FROM:<{}>", m.from), "MAIL", 250)
        .await?;
    for to in m.to {
        c.cmd(&format!("RCPT TO:<{to}>"), "RCPT", 250).await?;
    }
    c.cmd("DATA", "DATA", 354).await?;
    let w = c.io.get_mut();
    w.write_all(message(m).as_bytes())
        .await
        .map_err(|e| format!("SMTP: {e}"))?;
    w.flush().await.map_err(|e| format!("SMTP: {e}"))?;
    c.expect(250).await?;
    // The relay has the message; its goodbye does not matter.
    let _ = c.cmd("QUIT", "QUIT", 221).await;
    Ok(())
}

/// Whether the EHLO reply offers `ext` (its first word).
fn has(caps: &[String], ext: &str) -> bool {
    caps.iter().any(|l| {
        l.split_whitespace()
            .next()
            .is_some_and(|w| w.eq_ignore_ascii_case(ext))
    })
}

/// The AUTH mechanisms the EHLO reply offers (`AUTH PLAIN LOGIN`, or the
/// old `AUTH=LOGIN`), upper case.
fn mechanisms(caps: &[String]) -> Vec<String> {
    caps.iter()
        .filter_map(|l| {
            let u = l.to_ascii_uppercase();
            u.strip_prefix("AUTH ")
                .or_else(|| u.strip_prefix("AUTH="))
                .map(str::to_string)
        })
        .flat_map(|m| m.split_whitespace().map(String::from).collect::<Vec<_>>())
        .collect()
}

/// AUTH PLAIN if offered, else LOGIN.
async fn auth(c: &mut Conn, caps: &[String], user: &str, password: &str) -> Result<(), String> {
    let offered = mechanisms(caps);
    if offered.iter().any(|m| m == "PLAIN") {
        let token = B64.encode(format!("\0{user}\0{password}"));
        c.cmd(&format!("AUTH PLAIN {token}"), "AUTH PLAIN", 235)
            .await?;
    } else if offered.iter().any(|m| m == "LOGIN") {
        c.cmd("AUTH LOGIN", "AUTH LOGIN", 334).await?;
        c.cmd(&B64.encode(user), "the user name", 334).await?;
        c.cmd(&B64.encode(password), "the password", 235).await?;
    } else {
        return Err(format!(
            "SMTP: the relay offers no AUTH PLAIN or LOGIN (it offers {offered:?})"
        ));
    }
    Ok(())
}

/// Header lines may not break: CR and LF become spaces.
fn header(s: &str) -> String {
    s.replace(['\r', '\n'], " ")
}

/// The message with its headers, dot-stuffed, ending in `.`.
fn message(m: &Mail<'_>) -> String {
    let mut out = format!(
        "From: <{}>\r\nTo: {}\r\nSubject: {}\r\nDate: {}\r\nMessage-ID: <{}>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
        header(m.from),
        m.to.iter()
            .map(|t| format!("<{}>", header(t)))
            .collect::<Vec<_>>()
            .join(", "),
        header(m.subject),
        m.date,
        header(m.message_id),
    );
    for line in m.body.lines() {
        if line.starts_with('.') {
            out.push('.');
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str(".\r\n");
    out
}

/// `Wed, 02 Dec 2026 23:10:00 +0000` (RFC 5322).
pub fn date(unix: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = unix / 86_400;
    let rem = unix % 86_400;
    let (y, mo, d) = voxtap_engine::output::civil_from_days(days as i64);
    format!(
        "{}, {d:02} {} {y:04} {:02}:{:02}:{:02} +0000",
        DAYS[(days % 7) as usize],
        MONTHS[(mo as usize).saturating_sub(1) % 12],
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_dot_stuffing() {
        // date -u -d @1700000000 -R
        assert_eq!(date(1_700_000_000), "Tue, 14 Nov 2023 22:13:20 +0000");
        let to = vec!["noc@example.net".to_string()];
        let m = Mail {
            relay: "",
            helo: "h",
            from: "a@b",
            to: &to,
            subject: "x\r\nBcc: evil@example.net",
            body: "one\n.two\n",
            date: "D",
            message_id: "1@h",
            tls: Secure::Plain,
            auth: None,
        };
        let text = message(&m);
        assert!(text.contains("Subject: x  Bcc: evil@example.net\r\n"));
        assert!(text.ends_with("one\r\n..two\r\n.\r\n"), "{text}");
    }

    #[test]
    fn extensions_and_mechanisms() {
        let caps: Vec<String> = [
            "mail.test",
            "8BITMIME",
            "AUTH LOGIN plain",
            "AUTH=CRAM-MD5",
            "STARTTLS",
        ]
        .map(String::from)
        .to_vec();
        assert!(has(&caps, "starttls") && !has(&caps, "SMTPUTF8"));
        assert_eq!(mechanisms(&caps), ["LOGIN", "PLAIN", "CRAM-MD5"]);
        assert!(mechanisms(&caps[..2]).is_empty());
    }

    /// A relay that offers AUTH LOGIN only, scripted: the client's lines
    /// must be these, in order (the base64 from coreutils' `base64`).
    #[tokio::test]
    async fn auth_login_when_plain_is_not_offered() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay = l.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            let (s, _) = l.accept().await.unwrap();
            let (r, mut w) = s.into_split();
            let mut r = BufReader::new(r);
            let script = [
                ("", "220 relay.test ESMTP"),
                ("EHLO h", "250-relay.test\r\n250 AUTH LOGIN"),
                ("AUTH LOGIN", "334 VXNlcm5hbWU6"),
                ("dm94dGFw", "334 UGFzc3dvcmQ6"),
                ("cGE6c3M=", "235 2.7.0 Authentication successful"),
                ("MAIL FROM:<a@b>", "250 ok"),
                ("RCPT TO:<noc@example.net>", "250 ok"),
                ("DATA", "354 go on"),
            ];
            for (want, answer) in script {
                if !want.is_empty() {
                    let mut line = String::new();
                    r.read_line(&mut line).await.unwrap();
                    assert_eq!(line, format!("{want}\r\n"));
                }
                w.write_all(format!("{answer}\r\n").as_bytes())
                    .await
                    .unwrap();
            }
            let mut line = String::new();
            while line != ".\r\n" {
                line.clear();
                r.read_line(&mut line).await.unwrap();
            }
            w.write_all(b"250 queued\r\n221 bye\r\n").await.unwrap();
        });
        let to = vec!["noc@example.net".to_string()];
        let m = Mail {
            relay: &relay,
            helo: "h",
            from: "a@b",
            to: &to,
            subject: "s",
            body: "b",
            date: "D",
            message_id: "1@h",
            tls: Secure::Plain,
            auth: Some(("voxtap", "pa:ss")),
        };
        send(&m).await.unwrap();
        server.await.unwrap();
        // STARTTLS asked of a relay that does not offer it: refused, never
        // sent in clear.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay = l.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            s.write_all(b"220 relay.test\r\n250 relay.test\r\n")
                .await
                .unwrap();
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink).await;
        });
        // (No handshake is reached: no roots needed.)
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let cfg = Arc::new(cfg);
        let m = Mail {
            relay: &relay,
            tls: Secure::StartTls(&cfg),
            ..m
        };
        let e = send(&m).await.unwrap_err();
        assert!(e.contains("offers no STARTTLS"), "{e}");
    }
}
