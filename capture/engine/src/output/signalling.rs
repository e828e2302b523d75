//! registrations.csv, pings.csv and transactions.csv: the SIP that is not a
//! call. Registrations and pings are tables of bounded size, rewritten whole
//! (a live sensor refreshes them); transactions are appended as they finish.

use std::fs::File;
use std::io::{BufWriter, Write};

use super::csv::CsvWriter;
use super::{CallWriter, OutputError, format_ts, io_err, write_csv};
use crate::signalling::{Binding, PeerPings, SignallingSnapshot, Transaction};

/// One row per binding (address of record, contact).
pub const REGISTRATIONS_HEADER: &[&str] = &[
    "user",
    "aor",
    "contact",
    "client",
    "registrar",
    "outcome",
    "last_status",
    "expires",
    "requests",
    "registered",
    "refreshes",
    "challenges",
    "failures",
    "unanswered",
    "first",
    "last",
    "call_id",
];

/// One row per pair of peers (who pings whom).
pub const PINGS_HEADER: &[&str] = &[
    "src",
    "dst",
    "pings",
    "requests",
    "retransmissions",
    "responses",
    "codes",
    "unanswered",
    "loss_pct",
    "rtt_min_ms",
    "rtt_avg_ms",
    "rtt_max_ms",
    "keepalives",
    "first",
    "last",
];

/// One row per transaction outside any call.
pub const TRANSACTIONS_HEADER: &[&str] = &[
    "method",
    "call_id",
    "cseq",
    "from",
    "to",
    "request_uri",
    "src",
    "dst",
    "requests",
    "responses",
    "status",
    "first",
    "response_ms",
];

fn ms(ns: u64) -> String {
    format!("{:.3}", ns as f64 / 1e6)
}

pub fn registration_row(b: &Binding) -> Vec<String> {
    vec![
        b.user.clone(),
        b.aor.clone(),
        b.contact.clone(),
        b.client.to_string(),
        b.registrar.to_string(),
        b.outcome().to_string(),
        b.last_status.map(|c| c.to_string()).unwrap_or_default(),
        b.expires.map(|e| e.to_string()).unwrap_or_default(),
        b.requests.to_string(),
        b.registered.to_string(),
        b.refreshes().to_string(),
        b.challenges.to_string(),
        b.failures.to_string(),
        b.unanswered.to_string(),
        format_ts(b.first_ns),
        format_ts(b.last_ns),
        b.call_id.clone(),
    ]
}

pub fn ping_row(p: &PeerPings) -> Vec<String> {
    vec![
        p.src.to_string(),
        p.dst.to_string(),
        p.pings().to_string(),
        p.requests.to_string(),
        p.retransmissions.to_string(),
        p.responses.to_string(),
        p.codes_text(),
        p.unanswered.to_string(),
        format!("{:.1}", p.loss_pct()),
        p.rtt_min_ns.map(ms).unwrap_or_default(),
        p.rtt_avg_ns().map(ms).unwrap_or_default(),
        if p.rtt_min_ns.is_some() {
            ms(p.rtt_max_ns)
        } else {
            String::new()
        },
        p.keepalives.to_string(),
        format_ts(p.first_ns),
        format_ts(p.last_ns),
    ]
}

pub fn transaction_row(t: &Transaction) -> Vec<String> {
    vec![
        t.method.clone(),
        t.call_id.clone(),
        t.cseq.to_string(),
        t.from_user.clone(),
        t.to_user.clone(),
        t.request_uri.clone(),
        t.src.to_string(),
        t.dst.to_string(),
        t.requests.to_string(),
        t.responses.to_string(),
        t.status.map(|c| c.to_string()).unwrap_or_default(),
        format_ts(t.first_ns),
        t.response_time_ns().map(ms).unwrap_or_default(),
    ]
}

impl CallWriter {
    /// Rewrite registrations.csv and pings.csv from the tables as they are
    /// now (each written beside and renamed over, so a reader never sees
    /// half a file). Registrations that failed come first.
    pub fn write_signalling(&mut self, s: &SignallingSnapshot) -> Result<(), OutputError> {
        let mut regs: Vec<&Binding> = s.registrations.iter().collect();
        regs.sort_by_key(|b| {
            (
                !matches!(b.outcome(), "failed" | "challenged" | "unanswered"),
                b.first_ns,
            )
        });
        let rows: Vec<(u64, Vec<String>)> = regs
            .iter()
            .map(|b| (b.first_ns, registration_row(b)))
            .collect();
        self.replace_csv("registrations.csv", REGISTRATIONS_HEADER, &rows)?;
        let rows: Vec<(u64, Vec<String>)> =
            s.pings.iter().map(|p| (p.first_ns, ping_row(p))).collect();
        self.replace_csv("pings.csv", PINGS_HEADER, &rows)
    }

    fn replace_csv(
        &self,
        name: &str,
        header: &[&str],
        rows: &[(u64, Vec<String>)],
    ) -> Result<(), OutputError> {
        let tmp = self.dir.join(format!(".{name}.tmp"));
        write_csv(&tmp, header, rows)?;
        let path = self.dir.join(name);
        std::fs::rename(&tmp, &path).map_err(io_err(&path))
    }

    /// Append finished transactions to transactions.csv.
    pub fn write_transactions(&mut self, done: &[Transaction]) -> Result<(), OutputError> {
        if done.is_empty() {
            return Ok(());
        }
        let path = self.dir.join("transactions.csv");
        let w = self.transactions_writer()?;
        for t in done {
            w.row(transaction_row(t).iter().map(String::as_str))
                .map_err(io_err(&path))?;
        }
        w.get_mut().flush().map_err(io_err(&path))
    }

    fn transactions_writer(&mut self) -> Result<&mut CsvWriter<BufWriter<File>>, OutputError> {
        let path = self.dir.join("transactions.csv");
        if self.transactions.is_none() {
            let f = File::create(&path).map_err(io_err(&path))?;
            let mut w = CsvWriter::new(BufWriter::new(f));
            w.row(TRANSACTIONS_HEADER.iter().copied())
                .map_err(io_err(&path))?;
            self.transactions = Some(w);
        }
        self.transactions
            .as_mut()
            .ok_or_else(|| io_err(&path)(std::io::ErrorKind::Other.into()))
    }

    /// transactions.csv exists (with its header) and is flushed.
    pub(super) fn finish_transactions(&mut self) -> Result<(), OutputError> {
        let path = self.dir.join("transactions.csv");
        self.transactions_writer()?
            .get_mut()
            .flush()
            .map_err(io_err(&path))
    }
}
