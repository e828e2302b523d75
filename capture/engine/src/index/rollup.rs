//! Dashboards: each call classified into a trunk group, and per-minute
//! rollups (minute of the call's start x trunk x codec) kept as calls are
//! indexed, so a dashboard over a month reads tens of thousands of rollup
//! rows, never a million calls.
//!
//! Every figure is derived from the call's row in the index (and its IPs
//! and streams), so [`rebuild`] after a trunk change gives exactly what the
//! incremental path gave. Only INVITE dialogs count.

use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, SocketAddr};

use rusqlite::{OptionalExtension, Transaction, params, params_from_iter};
use serde::Serialize;

use super::{i, u};

/// A trunk group: calls whose SIP or media used an IP in one of
/// `ip_prefixes` (CIDR, or a bare address), or whose From, To or
/// request-URI user starts with one of `number_prefixes`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrunkRule {
    pub name: String,
    pub ip_prefixes: Vec<String>,
    pub number_prefixes: Vec<String>,
}

/// Final responses that count as the network having done its job (ITU-T
/// E.425's user-side outcomes: busy, no answer, rejected by the user).
pub const NER_CODES: &[u16] = &[480, 486, 487, 600, 603];

/// Codes with their own column (beyond the class counts).
pub const NOTABLE_CODES: [u16; 6] = [404, 408, 480, 486, 487, 503];

/// The MOS histogram's upper bounds (a call's worst-stream MOS below the
/// first bound is bucket 1; at or above the last, bucket 5).
pub const MOS_BOUNDS: [f64; 4] = [2.0, 3.0, 3.5, 4.0];

/// A long call adds its in-progress time to at most this many minutes (a
/// week): a broken end time must not make one insert write millions of rows.
const MAX_SPAN_MINUTES: u64 = 7 * 24 * 60;

const MINUTE_NS: u64 = 60_000_000_000;

/// The rollup's summed columns, in [`Counts`] field order (the central
/// index's fleet rollups use the same names).
pub const COLS: [&str; 30] = [
    "attempts",
    "answered",
    "ner_ok",
    "answered_ms",
    "pdd_ms",
    "pdd_n",
    "r_none",
    "r1",
    "r2",
    "r3",
    "r4",
    "r5",
    "r6",
    "c404",
    "c408",
    "c480",
    "c486",
    "c487",
    "c503",
    "mos_none",
    "mos1",
    "mos2",
    "mos3",
    "mos4",
    "mos5",
    "one_way",
    "capture_loss",
    "rtp_lost",
    "rtp_expected",
    "active_ms",
];

/// Sums over a bucket. Field order is [`COLS`]'s.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub attempts: i64,
    pub answered: i64,
    /// Answered, or ended with one of [`NER_CODES`].
    pub ner_ok: i64,
    /// Talk time of the answered calls.
    pub answered_ms: i64,
    /// Sum and number of post-dial delays (INVITE to first 18x or 2xx).
    pub pdd_ms: i64,
    pub pdd_n: i64,
    /// Final response classes: none (no final response), 1xx..6xx.
    pub classes: [i64; 7],
    /// Per [`NOTABLE_CODES`].
    pub codes: [i64; 6],
    /// MOS histogram: none, then the buckets of [`MOS_BOUNDS`].
    pub mos: [i64; 6],
    pub one_way: i64,
    pub capture_loss: i64,
    pub rtp_lost: i64,
    pub rtp_expected: i64,
    /// Milliseconds of calls in progress inside the bucket.
    pub active_ms: i64,
}

impl Counts {
    /// The values in [`COLS`] order (active_ms last).
    pub(crate) fn values(&self) -> [i64; COLS.len()] {
        let mut v = [0; COLS.len()];
        let fields = [
            self.attempts,
            self.answered,
            self.ner_ok,
            self.answered_ms,
            self.pdd_ms,
            self.pdd_n,
        ]
        .into_iter()
        .chain(self.classes)
        .chain(self.codes)
        .chain(self.mos)
        .chain([
            self.one_way,
            self.capture_loss,
            self.rtp_lost,
            self.rtp_expected,
            self.active_ms,
        ]);
        for (slot, x) in v.iter_mut().zip(fields) {
            *slot = x;
        }
        v
    }

    pub(super) fn from_sums(v: &[i64]) -> Counts {
        let arr = |at: usize| -> [i64; 6] { v[at..at + 6].try_into().unwrap_or_default() };
        Counts {
            attempts: v[0],
            answered: v[1],
            ner_ok: v[2],
            answered_ms: v[3],
            pdd_ms: v[4],
            pdd_n: v[5],
            classes: v[6..13].try_into().unwrap_or_default(),
            codes: arr(13),
            mos: arr(19),
            one_way: v[25],
            capture_loss: v[26],
            rtp_lost: v[27],
            rtp_expected: v[28],
            active_ms: v[29],
        }
    }

    /// Column-wise sum, through [`values`](Self::values) so a new column
    /// cannot be left out of it (the output thread adds one per call).
    pub fn add(&mut self, o: &Counts) {
        let mut sum = self.values();
        for (a, b) in sum.iter_mut().zip(o.values()) {
            *a += b;
        }
        *self = Counts::from_sums(&sum);
    }

    /// Answer-seizure ratio, answered / attempts.
    pub fn asr(&self) -> Option<f64> {
        (self.attempts > 0).then(|| self.answered as f64 / self.attempts as f64)
    }

    /// Average call duration (answered calls' talk time), seconds.
    pub fn acd_s(&self) -> Option<f64> {
        (self.answered > 0).then(|| self.answered_ms as f64 / 1000.0 / self.answered as f64)
    }

    /// Network effectiveness ratio, ner_ok / attempts.
    pub fn ner(&self) -> Option<f64> {
        (self.attempts > 0).then(|| self.ner_ok as f64 / self.attempts as f64)
    }

    /// Mean post-dial delay, ms.
    pub fn pdd_ms(&self) -> Option<f64> {
        (self.pdd_n > 0).then(|| self.pdd_ms as f64 / self.pdd_n as f64)
    }

    /// RTP packets lost / expected, percent.
    pub fn rtp_loss_pct(&self) -> Option<f64> {
        (self.rtp_expected > 0).then(|| 100.0 * self.rtp_lost as f64 / self.rtp_expected as f64)
    }
}

/// What one call adds to its start minute's rollup row.
#[derive(Clone, Debug, Default)]
struct Facts {
    method: String,
    start_ns: u64,
    end_ns: u64,
    trunk: String,
    codec: String,
    one_way: bool,
    /// The row holds a trunk or one-way flag that may differ (a rebuild).
    stale: bool,
    counts: Counts,
}

/// A parsed IP prefix.
#[derive(Clone, Copy, Debug)]
struct Cidr {
    net: IpAddr,
    bits: u32,
}

impl Cidr {
    fn parse(s: &str) -> Option<Cidr> {
        let (ip, bits) = match s.split_once('/') {
            Some((ip, b)) => (ip.parse::<IpAddr>().ok()?, Some(b.parse::<u32>().ok()?)),
            None => (s.parse::<IpAddr>().ok()?, None),
        };
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let bits = bits.unwrap_or(max);
        (bits <= max).then_some(Cidr { net: ip, bits })
    }

    fn contains(&self, ip: IpAddr) -> bool {
        let mask = |max: u32| -> u128 {
            if self.bits == 0 {
                0
            } else {
                (!0u128) << (max - self.bits)
            }
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let m = mask(32) as u32;
                u32::from(n) & m == u32::from(a) & m
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let m = mask(128);
                u128::from(n) & m == u128::from(a) & m
            }
            _ => false,
        }
    }
}

/// Whether every prefix of `r` parses; the first that does not, else None.
pub fn bad_prefix(r: &TrunkRule) -> Option<&str> {
    r.ip_prefixes
        .iter()
        .find(|p| Cidr::parse(p).is_none())
        .map(String::as_str)
}

/// The trunk rules as the index holds them, parsed.
struct Rules(Vec<(String, Vec<Cidr>, Vec<String>)>);

impl Rules {
    fn load(tx: &Transaction<'_>) -> rusqlite::Result<Rules> {
        let rules = stored_trunks(tx)?
            .into_iter()
            .map(|r| {
                let cidrs = r
                    .ip_prefixes
                    .iter()
                    .filter_map(|p| Cidr::parse(p))
                    .collect();
                (r.name, cidrs, r.number_prefixes)
            })
            .collect();
        Ok(Rules(rules))
    }

    /// The first rule the call matches, "" for none.
    fn classify(&self, ips: &[IpAddr], numbers: &[&str]) -> &str {
        for (name, cidrs, prefixes) in &self.0 {
            let ip_hit = ips.iter().any(|ip| cidrs.iter().any(|c| c.contains(*ip)));
            let num_hit = numbers
                .iter()
                .any(|n| !n.is_empty() && prefixes.iter().any(|p| n.starts_with(p.as_str())));
            if ip_hit || num_hit {
                return name;
            }
        }
        ""
    }
}

/// The trunk rules stored in the index, in order.
pub(super) fn stored_trunks(tx: &rusqlite::Connection) -> rusqlite::Result<Vec<TrunkRule>> {
    let split = |s: String| s.split_whitespace().map(String::from).collect();
    tx.prepare_cached("SELECT name, ip_prefixes, number_prefixes FROM trunks ORDER BY pos")?
        .query_map([], |r| {
            Ok(TrunkRule {
                name: r.get(0)?,
                ip_prefixes: split(r.get(1)?),
                number_prefixes: split(r.get(2)?),
            })
        })?
        .collect()
}

/// Store `rules` if they differ from the stored ones, then reclassify every
/// call and rebuild the rollups. Returns whether anything changed.
pub(super) fn set_trunks(tx: &Transaction<'_>, rules: &[TrunkRule]) -> rusqlite::Result<bool> {
    if stored_trunks(tx)? == rules {
        return Ok(false);
    }
    tx.execute("DELETE FROM trunks", [])?;
    for (pos, r) in rules.iter().enumerate() {
        tx.execute(
            "INSERT INTO trunks (pos, name, ip_prefixes, number_prefixes) VALUES (?1, ?2, ?3, ?4)",
            params![
                pos as i64,
                r.name,
                r.ip_prefixes.join(" "),
                r.number_prefixes.join(" ")
            ],
        )?;
    }
    rebuild(tx)?;
    Ok(true)
}

/// Empty the rollups and add every call again.
pub(super) fn rebuild(tx: &Transaction<'_>) -> rusqlite::Result<()> {
    // The hours first: the minutes' delete trigger then finds no hour row
    // to update (migration 8's triggers refill the hours as calls are added).
    tx.execute("DELETE FROM rollup_hour", [])?;
    tx.execute("DELETE FROM rollup_minute", [])?;
    let ids: Vec<i64> = tx
        .prepare("SELECT id FROM calls ORDER BY id")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    add_calls(tx, &ids)
}

/// What the rollups take from one call, as its rows in `calls`,
/// `call_ips` and `streams` hold it: read back from them ([`add_calls`]),
/// or handed over by the writer that just inserted them
/// ([`add_new_calls`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct CallRows {
    pub method: String,
    pub start_ns: u64,
    pub ringing_ns: Option<u64>,
    pub answer_ns: Option<u64>,
    pub end_ns: u64,
    pub talk_ms: Option<i64>,
    pub status_code: Option<u16>,
    pub mos: Option<f64>,
    pub codec: String,
    pub capture_loss: i64,
    /// From user, To user, and the request-URI's user ("" without one).
    pub numbers: [String; 3],
    /// The row holds a trunk or one-way flag (false for a fresh row).
    pub stale: bool,
    pub ips: Vec<IpAddr>,
    pub streams: Vec<StreamRow>,
}

/// A stream's row as the rollups read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct StreamRow {
    /// Source and destination IPs (None when an address does not parse).
    pub ips: Option<(IpAddr, IpAddr)>,
    pub packets: i64,
    pub lost: i64,
    pub expected: i64,
}

/// Classify the calls `ids` (already in `calls`), store their trunk and
/// one-way flag, and add them to the rollups. Ids of 0 (media-only
/// records) are skipped.
pub(super) fn add_calls(tx: &Transaction<'_>, ids: &[i64]) -> rusqlite::Result<()> {
    let rules = Rules::load(tx)?;
    let mut sums = Sums::default();
    for &id in ids.iter().filter(|id| **id > 0) {
        let Some(rows) = read_rows(tx, id)? else {
            continue;
        };
        add_one(tx, id, &rows, &rules, &mut sums)?;
    }
    sums.write(tx)
}

/// [`add_calls`] for calls the caller has just inserted, with what it
/// wrote: reading every row back cost about as much as the inserts of an
/// import's index. `calls` pairs each id with its rows; ids of 0 are
/// skipped.
pub(super) fn add_new_calls(
    tx: &Transaction<'_>,
    calls: &[(i64, CallRows)],
) -> rusqlite::Result<()> {
    let rules = Rules::load(tx)?;
    let mut sums = Sums::default();
    for (id, rows) in calls.iter().filter(|(id, _)| *id > 0) {
        add_one(tx, *id, rows, &rules, &mut sums)?;
    }
    sums.write(tx)
}

fn add_one(
    tx: &Transaction<'_>,
    id: i64,
    rows: &CallRows,
    rules: &Rules,
    sums: &mut Sums,
) -> rusqlite::Result<()> {
    let f = facts(rows, rules);
    // A fresh row already holds the defaults ('' and 0).
    if !f.trunk.is_empty() || f.one_way || f.stale {
        tx.prepare_cached("UPDATE calls SET trunk = ?2, one_way = ?3 WHERE id = ?1")?
            .execute(params![id, f.trunk, f.one_way])?;
    }
    if f.method == "INVITE" {
        sums.add(f);
    }
    Ok(())
}

/// A rollup row's key: minute (or hour), trunk, codec.
type Key = (u64, String, String);

/// What a batch of calls adds to the rollups, summed per row and written
/// once per row: a call's upserts (its counts, through the hour trigger,
/// and its in-progress time per minute and hour) cost about 100,000
/// instructions, most of an import's rollup time, and an import's calls
/// share a few rows. Every column is a sum and both tables are WITHOUT
/// ROWID, so the rows come out as the per-call writes left them; a row a
/// per-call write would have created (an in-progress time of 0 ms
/// included) is written here too.
#[derive(Default)]
struct Sums {
    counts: BTreeMap<Key, Counts>,
    minute_active: BTreeMap<Key, i64>,
    hour_active: BTreeMap<Key, i64>,
}

impl Sums {
    /// The call's counts to its start minute, its in-progress time to
    /// every minute it spans and to their hours (hours only where it is
    /// not 0, as one write per hour skipped them).
    fn add(&mut self, f: Facts) {
        let key = |at: u64| (at, f.trunk.clone(), f.codec.clone());
        let first = f.start_ns / MINUTE_NS;
        self.counts.entry(key(first)).or_default().add(&f.counts);
        let last = (f.end_ns.max(f.start_ns) / MINUTE_NS).min(first + MAX_SPAN_MINUTES);
        let mut hour = (first / 60, 0i64);
        for m in first..=last {
            let lo = f.start_ns.max(m * MINUTE_NS);
            let hi = f.end_ns.min((m + 1) * MINUTE_NS);
            if hi > lo {
                let ms = i((hi - lo) / 1_000_000);
                *self.minute_active.entry(key(m)).or_default() += ms;
                if m / 60 != hour.0 {
                    self.add_hour(key(hour.0), hour.1);
                    hour = (m / 60, 0);
                }
                hour.1 += ms;
            }
        }
        self.add_hour(key(hour.0), hour.1);
    }

    fn add_hour(&mut self, key: Key, ms: i64) {
        if ms != 0 {
            *self.hour_active.entry(key).or_default() += ms;
        }
    }

    fn write(&self, tx: &Transaction<'_>) -> rusqlite::Result<()> {
        for ((minute, trunk, codec), c) in &self.counts {
            upsert(tx, *minute, trunk, codec, c)?;
        }
        for ((m, trunk, codec), ms) in &self.minute_active {
            // Only the one column: the statement of a long call's every
            // minute stays small (and fires no hour trigger).
            tx.prepare_cached(
                "INSERT INTO rollup_minute (minute, trunk, codec, active_ms) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (minute, trunk, codec) DO UPDATE SET active_ms = active_ms + excluded.active_ms",
            )?
            .execute(params![i(*m), trunk, codec, ms])?;
        }
        for ((hour, trunk, codec), ms) in &self.hour_active {
            tx.prepare_cached(
                "INSERT INTO rollup_hour (hour, trunk, codec, active_ms) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT (hour, trunk, codec) DO UPDATE SET active_ms = active_ms + excluded.active_ms",
            )?
            .execute(params![i(*hour), trunk, codec, ms])?;
        }
        Ok(())
    }
}

/// The call's rows (None if it is gone).
pub(super) fn read_rows(tx: &Transaction<'_>, id: i64) -> rusqlite::Result<Option<CallRows>> {
    let row = tx
        .prepare_cached(
            "SELECT method, start_ns, ringing_ns, answer_ns, end_ns, talk_ms, status_code, mos, \
             codec, capture_loss, from_user, to_user, request_uri, trunk != '' OR one_way != 0 \
             FROM calls WHERE id = ?1",
        )?
        .query_row([id], |r| {
            Ok(CallRows {
                method: r.get(0)?,
                start_ns: u(r.get(1)?),
                ringing_ns: r.get::<_, Option<i64>>(2)?.map(u),
                answer_ns: r.get::<_, Option<i64>>(3)?.map(u),
                end_ns: u(r.get(4)?),
                talk_ms: r.get(5)?,
                status_code: r.get(6)?,
                mos: r.get(7)?,
                codec: r.get(8)?,
                capture_loss: r.get(9)?,
                numbers: [
                    r.get::<_, String>(10)?,
                    r.get::<_, String>(11)?,
                    super::uri_user(&r.get::<_, String>(12)?)
                        .unwrap_or_default()
                        .to_string(),
                ],
                stale: r.get(13)?,
                ..Default::default()
            })
        })
        .optional()?;
    let Some(mut rows) = row else {
        return Ok(None);
    };
    rows.ips = tx
        .prepare_cached("SELECT ip FROM call_ips WHERE call = ?1")?
        .query_map([id], |r| r.get::<_, String>(0))?
        .filter_map(|ip| ip.ok().and_then(|s| s.parse().ok()))
        .collect();
    let mut st =
        tx.prepare_cached("SELECT src, dst, packets, lost, expected FROM streams WHERE call = ?1")?;
    let mut q = st.query([id])?;
    while let Some(r) = q.next()? {
        let (src, dst): (String, String) = (r.get(0)?, r.get(1)?);
        let ip = |s: &str| s.parse::<SocketAddr>().ok().map(|a| a.ip());
        rows.streams.push(StreamRow {
            ips: ip(&src).zip(ip(&dst)),
            packets: r.get(2)?,
            lost: r.get(3)?,
            expected: r.get(4)?,
        });
    }
    Ok(Some(rows))
}

/// The call's figures.
fn facts(rows: &CallRows, rules: &Rules) -> Facts {
    let mut f = Facts {
        method: rows.method.clone(),
        start_ns: rows.start_ns,
        end_ns: rows.end_ns,
        codec: rows.codec.clone(),
        stale: rows.stale,
        ..Default::default()
    };
    f.counts = call_counts(
        f.start_ns,
        rows.ringing_ns,
        rows.answer_ns,
        rows.talk_ms,
        rows.status_code,
        rows.mos,
    );
    f.counts.capture_loss = rows.capture_loss;
    let nums: Vec<&str> = rows.numbers.iter().map(String::as_str).collect();
    f.trunk = rules.classify(&rows.ips, &nums).to_string();
    media_facts(&rows.streams, &mut f);
    f
}

/// RTP loss and whether media flowed one way only (an answered call whose
/// streams with packets all go one way between two IPs: none back).
fn media_facts(streams: &[StreamRow], f: &mut Facts) {
    let mut dirs: HashSet<(IpAddr, IpAddr)> = HashSet::new();
    for s in streams {
        f.counts.rtp_lost += s.lost.max(0);
        f.counts.rtp_expected += s.expected;
        if let (Some(d), true) = (s.ips, s.packets > 0) {
            dirs.insert(d);
        }
    }
    f.one_way = f.counts.answered > 0
        && !dirs.is_empty()
        && !dirs.iter().any(|(s, d)| dirs.contains(&(*d, *s)));
    f.counts.one_way = i64::from(f.one_way);
}

/// The counts one call adds (without its media and concurrency figures).
fn call_counts(
    start: u64,
    ringing: Option<u64>,
    answer: Option<u64>,
    talk_ms: Option<i64>,
    code: Option<u16>,
    mos: Option<f64>,
) -> Counts {
    let mut c = Counts {
        attempts: 1,
        ..Default::default()
    };
    if answer.is_some() {
        c.answered = 1;
        c.answered_ms = talk_ms.unwrap_or(0).max(0);
    }
    if answer.is_some() || code.is_some_and(|k| NER_CODES.contains(&k)) {
        c.ner_ok = 1;
    }
    // Post-dial delay: INVITE to the first 18x, or to the 2xx without one.
    if let Some(t) = ringing.into_iter().chain(answer).min() {
        c.pdd_ms = i(t.saturating_sub(start) / 1_000_000);
        c.pdd_n = 1;
    }
    let class = code.map_or(0, |k| usize::from(k / 100).min(6));
    c.classes[class] = 1;
    if let Some(k) = code.and_then(|k| NOTABLE_CODES.iter().position(|n| *n == k)) {
        c.codes[k] = 1;
    }
    c.mos[mos_bucket(mos)] = 1;
    c
}

fn mos_bucket(mos: Option<f64>) -> usize {
    match mos {
        None => 0,
        Some(m) => 1 + MOS_BOUNDS.iter().filter(|b| m >= **b).count(),
    }
}

/// The upsert of one rollup row, built once.
static UPSERT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "INSERT INTO rollup_minute (minute, trunk, codec, {}) VALUES (?1, ?2, ?3, {}) \
         ON CONFLICT (minute, trunk, codec) DO UPDATE SET {}",
        COLS.join(", "),
        (4..4 + COLS.len())
            .map(|n| format!("?{n}"))
            .collect::<Vec<_>>()
            .join(", "),
        COLS.iter()
            .map(|c| format!("{c} = {c} + excluded.{c}"))
            .collect::<Vec<_>>()
            .join(", "),
    )
});

fn upsert(
    tx: &Transaction<'_>,
    minute: u64,
    trunk: &str,
    codec: &str,
    c: &Counts,
) -> rusqlite::Result<()> {
    // In-progress time goes through `Sums`, which adds it to the hours
    // too; the hour triggers copy every column but that one.
    debug_assert_eq!(c.active_ms, 0);
    let mut args: Vec<rusqlite::types::Value> = vec![
        i(minute).into(),
        trunk.to_string().into(),
        codec.to_string().into(),
    ];
    args.extend(c.values().into_iter().map(rusqlite::types::Value::from));
    tx.prepare_cached(&UPSERT)?
        .execute(params_from_iter(args))?;
    Ok(())
}

/// Move an INVITE call from its old MOS bucket to the one of `mos` (the
/// media work set its MOS after it was indexed).
pub(super) fn move_mos(tx: &Transaction<'_>, id: i64, mos: Option<f64>) -> rusqlite::Result<()> {
    let row = tx
        .query_row(
            "SELECT start_ns, trunk, codec, mos FROM calls WHERE id = ?1 AND method = 'INVITE'",
            [id],
            |r| {
                Ok((
                    u(r.get(0)?) / MINUTE_NS,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<f64>>(3)?,
                ))
            },
        )
        .optional()?;
    let Some((minute, trunk, codec, old)) = row else {
        return Ok(());
    };
    let (from, to) = (mos_bucket(old), mos_bucket(mos));
    if from != to {
        let col = |b: usize| COLS[19 + b];
        tx.execute(
            &format!(
                "UPDATE rollup_minute SET {0} = {0} - 1, {1} = {1} + 1 \
                 WHERE minute = ?1 AND trunk = ?2 AND codec = ?3",
                col(from),
                col(to)
            ),
            params![i(minute), trunk, codec],
        )?;
    }
    Ok(())
}

/// A dashboard's question: buckets of `step_minutes` over the calls that
/// started in [from_ns, to_ns), optionally of one trunk and one codec.
#[derive(Clone, Debug, Default)]
pub struct DashQuery {
    pub from_ns: u64,
    pub to_ns: u64,
    pub step_minutes: u64,
    pub trunk: Option<String>,
    pub codec: Option<String>,
}

/// One bucket with any call in it (empty buckets are left out).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Bucket {
    pub start_ns: u64,
    pub counts: Counts,
}

/// Where the rows of minutes [lo, hi) are read: whole hours from
/// `rollup_hour` (migration 8) when each bucket is whole hours, the minutes
/// at either end from `rollup_minute`. As (table, key column, minutes per
/// key, first key, end key), empty parts left out.
fn parts(lo: u64, hi: u64, hourly: bool) -> Vec<(&'static str, &'static str, u64, u64, u64)> {
    let minutes = |a: u64, b: u64| ("rollup_minute", "minute", 1, a, b);
    let (h_lo, h_hi) = (lo.div_ceil(60), hi / 60);
    let v = if hourly && h_lo < h_hi {
        vec![
            minutes(lo, h_lo * 60),
            ("rollup_hour", "hour", 60, h_lo, h_hi),
            minutes(h_hi * 60, hi),
        ]
    } else {
        vec![minutes(lo, hi)]
    };
    v.into_iter().filter(|p| p.3 < p.4).collect()
}

/// The rollup rows of `parts` with `cols` (`{k}` is the part's minute),
/// for trunk ?1 and codec ?2 when they are not NULL; the ranges are ?3...
fn union_sql(parts: &[(&str, &str, u64, u64, u64)], cols: &str) -> String {
    parts
        .iter()
        .enumerate()
        .map(|(n, (table, key, per, _, _))| {
            let minute = if *per == 1 {
                key.to_string()
            } else {
                format!("{key} * {per}")
            };
            format!(
                "SELECT {} FROM {table} WHERE {key} >= ?{} AND {key} < ?{} \
                 AND (?1 IS NULL OR trunk = ?1) AND (?2 IS NULL OR codec = ?2)",
                cols.replace("{k}", &minute),
                3 + 2 * n,
                4 + 2 * n
            )
        })
        .collect::<Vec<_>>()
        .join(" UNION ALL ")
}

fn union_args(
    parts: &[(&str, &str, u64, u64, u64)],
    trunk: Option<&str>,
    codec: Option<&str>,
) -> Vec<rusqlite::types::Value> {
    let opt = |v: Option<&str>| v.map_or(rusqlite::types::Value::Null, |s| s.to_string().into());
    let mut args = vec![opt(trunk), opt(codec)];
    for p in parts {
        args.push(i(p.3).into());
        args.push(i(p.4).into());
    }
    args
}

/// The buckets of `q`, oldest first. Buckets of whole hours sum the hourly
/// rollups (a month per day: ~700 rows per trunk and codec, not ~43 000).
pub(super) fn dashboard(
    conn: &rusqlite::Connection,
    q: &DashQuery,
) -> rusqlite::Result<Vec<Bucket>> {
    let step = q.step_minutes.max(1);
    let (lo, hi) = (q.from_ns / MINUTE_NS, q.to_ns.div_ceil(MINUTE_NS));
    let parts = parts(lo, hi, step.is_multiple_of(60));
    if parts.is_empty() {
        return Ok(Vec::new());
    }
    let sums = COLS
        .iter()
        .map(|c| format!("sum({c})"))
        .collect::<Vec<_>>()
        .join(", ");
    let inner = union_sql(&parts, &format!("{{k}} / {step} AS b, {}", COLS.join(", ")));
    let sql = format!("SELECT b, {sums} FROM ({inner}) GROUP BY b ORDER BY b");
    let args = union_args(&parts, q.trunk.as_deref(), q.codec.as_deref());
    let mut st = conn.prepare_cached(&sql)?;
    let rows = st.query_map(params_from_iter(args), |r| {
        let b: i64 = r.get(0)?;
        let v = (1..=30)
            .map(|k| r.get::<_, Option<i64>>(k).map(|x| x.unwrap_or(0)))
            .collect::<rusqlite::Result<Vec<i64>>>()?;
        Ok(Bucket {
            start_ns: u(b) * step * MINUTE_NS,
            counts: Counts::from_sums(&v),
        })
    })?;
    rows.collect()
}

/// The codecs with calls in [from_ns, to_ns) (whole hours from the hourly
/// rollups).
pub(super) fn codecs(
    conn: &rusqlite::Connection,
    from_ns: u64,
    to_ns: u64,
) -> rusqlite::Result<Vec<String>> {
    let parts = parts(from_ns / MINUTE_NS, to_ns.div_ceil(MINUTE_NS), true);
    if parts.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT DISTINCT codec FROM ({}) ORDER BY codec",
        union_sql(&parts, "codec")
    );
    conn.prepare_cached(&sql)?
        .query_map(params_from_iter(union_args(&parts, None, None)), |r| {
            r.get(0)
        })?
        .collect()
}
