//! What the index keeps besides calls: media-only streams, registration
//! bindings and pings per pair of peers, with the queries the web UI and
//! `/metrics` make of them.

use rusqlite::{Row, Transaction, params};
use serde::Serialize;

use super::{Index, IndexError, u};

/// A registration binding as the Registrations page shows it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RegistrationRow {
    pub user: String,
    pub aor: String,
    pub contact: String,
    pub client: String,
    pub registrar: String,
    pub outcome: String,
    pub last_status: Option<u16>,
    pub expires: Option<u32>,
    pub requests: u64,
    pub registered: u64,
    pub refreshes: u64,
    pub challenges: u64,
    pub failures: u64,
    pub unanswered: u64,
    pub first_ns: u64,
    pub last_ns: u64,
    pub call_id: String,
}

impl RegistrationRow {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(RegistrationRow {
            user: r.get(0)?,
            aor: r.get(1)?,
            contact: r.get(2)?,
            client: r.get(3)?,
            registrar: r.get(4)?,
            outcome: r.get(5)?,
            last_status: r.get(6)?,
            expires: r.get(7)?,
            requests: u(r.get(8)?),
            registered: u(r.get(9)?),
            refreshes: u(r.get(10)?),
            challenges: u(r.get(11)?),
            failures: u(r.get(12)?),
            unanswered: u(r.get(13)?),
            first_ns: u(r.get(14)?),
            last_ns: u(r.get(15)?),
            call_id: r.get(16)?,
        })
    }
}

/// A search of the registrations: `text` is a user (a prefix when it ends
/// with `*`) or an IP of the client; empty lists all. Failed, challenged and
/// unanswered bindings come first.
#[derive(Clone, Debug, Default)]
pub struct RegistrationQuery {
    pub text: Option<String>,
    pub limit: u32,
    pub offset: u64,
}

/// Pings between a pair of peers.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct PingRow {
    pub src: String,
    pub dst: String,
    pub pings: u64,
    pub responses: u64,
    pub codes: String,
    pub unanswered: u64,
    pub loss_pct: f64,
    pub rtt_avg_ms: Option<f64>,
    pub rtt_max_ms: Option<f64>,
    pub keepalives: u64,
    pub first_ns: u64,
    pub last_ns: u64,
}

/// A stream of RTP that no SIP claimed.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct MediaStreamRow {
    pub id: i64,
    /// The folder with its pcap and audio, relative to the index.
    pub folder: Option<String>,
    pub ssrc: u32,
    pub src: String,
    pub dst: String,
    pub payload_type: u8,
    pub codec: String,
    pub first_ns: Option<u64>,
    pub last_ns: Option<u64>,
    pub packets: u64,
    pub expected: u64,
    pub lost: i64,
    pub jitter_ms: f64,
    pub max_jitter_ms: f64,
    pub max_delta_ms: f64,
    pub mos: Option<f64>,
}

const MEDIA_COLS: &str = "id, folder, ssrc, src, dst, payload_type, codec, first_ns, last_ns, packets, \
    expected, lost, jitter_ms, max_jitter_ms, max_delta_ms, mos";

impl MediaStreamRow {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(MediaStreamRow {
            id: r.get(0)?,
            folder: r.get(1)?,
            ssrc: r.get(2)?,
            src: r.get(3)?,
            dst: r.get(4)?,
            payload_type: r.get(5)?,
            codec: r.get(6)?,
            first_ns: r.get::<_, Option<i64>>(7)?.map(u),
            last_ns: r.get::<_, Option<i64>>(8)?.map(u),
            packets: u(r.get(9)?),
            expected: u(r.get(10)?),
            lost: r.get(11)?,
            jitter_ms: r.get(12)?,
            max_jitter_ms: r.get(13)?,
            max_delta_ms: r.get(14)?,
            mos: r.get(15)?,
        })
    }
}

/// Totals for `/metrics`.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct SignallingTotals {
    pub bindings: u64,
    /// Bindings whose latest outcome is failed, challenged or unanswered.
    pub bindings_failing: u64,
    /// Final failures (403, 404, 5xx...), 401/407 challenges, unanswered.
    pub failures: u64,
    pub challenges: u64,
    pub unanswered: u64,
    pub media_streams: u64,
}

impl Index {
    /// Registration bindings matching `q`, failed ones first.
    pub fn registrations(&self, q: &RegistrationQuery) -> Result<Vec<RegistrationRow>, IndexError> {
        let text = q.text.as_deref().map(str::trim).unwrap_or_default();
        let (cond, arg) = match text.strip_suffix('*') {
            _ if text.is_empty() => ("?1 = ''", String::new()),
            Some(prefix) => (
                "user >= ?1 AND user < ?1 || char(1114111)",
                prefix.to_string(),
            ),
            None if text.parse::<std::net::IpAddr>().is_ok() => {
                ("client_ip = ?1", text.to_string())
            }
            None => ("user = ?1", text.to_string()),
        };
        let sql = format!(
            "SELECT user, aor, contact, client, registrar, outcome, last_status, expires, requests, registered, \
             refreshes, challenges, failures, unanswered, first_ns, last_ns, call_id FROM registrations \
             WHERE {cond} ORDER BY outcome IN ('failed', 'challenged', 'unanswered') DESC, \
             failures + unanswered DESC, last_ns DESC, id LIMIT {} OFFSET {}",
            q.limit.clamp(1, 1000),
            q.offset
        );
        self.rows(&sql, [arg], RegistrationRow::from_row)
    }

    /// Every pair of pinging peers, the lossiest first.
    pub fn pings(&self, limit: u32) -> Result<Vec<PingRow>, IndexError> {
        self.rows(
            "SELECT src, dst, pings, responses, codes, unanswered, loss_pct, rtt_avg_ms, rtt_max_ms, keepalives, \
             first_ns, last_ns FROM pings ORDER BY loss_pct DESC, src, dst LIMIT ?1",
            [limit],
            |r| {
                Ok(PingRow {
                    src: r.get(0)?,
                    dst: r.get(1)?,
                    pings: u(r.get(2)?),
                    responses: u(r.get(3)?),
                    codes: r.get(4)?,
                    unanswered: u(r.get(5)?),
                    loss_pct: r.get(6)?,
                    rtt_avg_ms: r.get(7)?,
                    rtt_max_ms: r.get(8)?,
                    keepalives: u(r.get(9)?),
                    first_ns: u(r.get(10)?),
                    last_ns: u(r.get(11)?),
                })
            },
        )
    }

    /// Media-only streams, newest first.
    pub fn media_streams(
        &self,
        limit: u32,
        offset: u64,
    ) -> Result<Vec<MediaStreamRow>, IndexError> {
        self.rows(
            &format!(
                "SELECT {MEDIA_COLS} FROM media_streams ORDER BY first_ns DESC, id DESC LIMIT {} OFFSET {offset}",
                limit.clamp(1, 1000)
            ),
            [],
            MediaStreamRow::from_row,
        )
    }

    /// The media-only stream `id`.
    pub fn media_stream(&self, id: i64) -> Result<Option<MediaStreamRow>, IndexError> {
        Ok(self
            .rows(
                &format!("SELECT {MEDIA_COLS} FROM media_streams WHERE id = ?1"),
                [id],
                MediaStreamRow::from_row,
            )?
            .pop())
    }

    /// Registration and media-only totals for `/metrics`.
    pub fn signalling_totals(&self) -> Result<SignallingTotals, IndexError> {
        let (bindings, failing, failures, challenges, unanswered): (i64, i64, i64, i64, i64) = self
            .conn
            .query_row(
                "SELECT count(*), coalesce(sum(outcome IN ('failed', 'challenged', 'unanswered')), 0), \
                 coalesce(sum(failures), 0), coalesce(sum(challenges), 0), coalesce(sum(unanswered), 0) \
                 FROM registrations",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .map_err(self.err())?;
        let media: i64 = self
            .conn
            .query_row("SELECT count(*) FROM media_streams", [], |r| r.get(0))
            .map_err(self.err())?;
        Ok(SignallingTotals {
            bindings: u(bindings),
            bindings_failing: u(failing),
            failures: u(failures),
            challenges: u(challenges),
            unanswered: u(unanswered),
            media_streams: u(media),
        })
    }
}

/// `absorb`'s part for these tables: copy them from the attached `src`,
/// call ids moved by `offset`, folders prefixed with `prefix`.
pub(super) fn absorb(tx: &Transaction<'_>, offset: i64, prefix: &str) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO main.fax SELECT call + ?1, turned_ns FROM src.fax",
        [offset],
    )?;
    tx.execute(
        "INSERT INTO main.fax_streams SELECT call + ?1, src, dst, first_ns, last_ns, packets, expected, lost, \
         late, bytes FROM src.fax_streams",
        [offset],
    )?;
    tx.execute(
        "INSERT INTO main.media_streams (folder, ssrc, src, dst, payload_type, codec, first_ns, last_ns, packets, \
         expected, lost, jitter_ms, max_jitter_ms, max_delta_ms, mos, indexed_at) \
         SELECT CASE WHEN folder IS NULL THEN NULL ELSE ?1 || folder END, ssrc, src, dst, payload_type, codec, \
         first_ns, last_ns, packets, expected, lost, jitter_ms, max_jitter_ms, max_delta_ms, mos, indexed_at \
         FROM src.media_streams",
        params![prefix],
    )?;
    tx.execute(
        "INSERT INTO main.registrations (user, aor, contact, client, client_ip, registrar, outcome, last_status, \
         expires, requests, registered, refreshes, challenges, failures, unanswered, first_ns, last_ns, call_id) \
         SELECT user, aor, contact, client, client_ip, registrar, outcome, last_status, expires, requests, \
         registered, refreshes, challenges, failures, unanswered, first_ns, last_ns, call_id FROM src.registrations",
        [],
    )?;
    tx.execute(
        "INSERT OR REPLACE INTO main.pings SELECT * FROM src.pings",
        [],
    )?;
    Ok(())
}
