//! A small SMTP client (RFC 5321) for a relay on the operator's network:
//! EHLO, MAIL, RCPT, DATA, QUIT; no TLS or AUTH (a local relay does those).
//! Every reply is checked, so a refused recipient is a failed send.

use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

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
}

pub async fn send(m: &Mail<'_>) -> Result<(), String> {
    tokio::time::timeout(TIMEOUT, conversation(m))
        .await
        .map_err(|_| format!("SMTP {}: no answer within {} s", m.relay, TIMEOUT.as_secs()))?
}

async fn conversation(m: &Mail<'_>) -> Result<(), String> {
    let s = TcpStream::connect(m.relay)
        .await
        .map_err(|e| format!("SMTP {}: {e}", m.relay))?;
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    expect(&mut r, 220).await?;
    say(&mut w, &format!("EHLO {}", m.helo)).await?;
    expect(&mut r, 250).await?;
    say(&mut w, &format!("MAIL FROM:<{}>", m.from)).await?;
    expect(&mut r, 250).await?;
    for to in m.to {
        say(&mut w, &format!("RCPT TO:<{to}>")).await?;
        expect(&mut r, 250).await?;
    }
    say(&mut w, "DATA").await?;
    expect(&mut r, 354).await?;
    w.write_all(message(m).as_bytes())
        .await
        .map_err(|e| format!("SMTP: {e}"))?;
    expect(&mut r, 250).await?;
    say(&mut w, "QUIT").await?;
    // The relay has the message; its goodbye does not matter.
    let _ = expect(&mut r, 221).await;
    Ok(())
}

async fn say(w: &mut tokio::net::tcp::OwnedWriteHalf, line: &str) -> Result<(), String> {
    w.write_all(format!("{line}\r\n").as_bytes())
        .await
        .map_err(|e| format!("SMTP: {e}"))
}

/// Reads one reply (all its lines) and checks its code.
async fn expect<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R, code: u16) -> Result<(), String> {
    loop {
        let mut line = String::new();
        let n = r
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
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok(());
        }
    }
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
        };
        let text = message(&m);
        assert!(text.contains("Subject: x  Bcc: evil@example.net\r\n"));
        assert!(text.ends_with("one\r\n..two\r\n.\r\n"), "{text}");
    }
}
