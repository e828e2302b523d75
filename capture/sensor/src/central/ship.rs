//! The shipper: finished calls from the sensor's own index (`index.sqlite`,
//! which stays its index and is its outbox) to the central index.
//!
//! A round reads the calls after the high-water mark (`ship_marks`, a table
//! the shipper makes in the local index) in batches, creates the days'
//! partitions if needed, and in one PostgreSQL transaction COPYs (binary)
//! each mapped table's rows into a session-local staging table and inserts
//! them with `ON CONFLICT DO NOTHING`; only after the commit does the mark move. A crash between the
//! two re-sends the batch, which the unique keys (Call-ID, sensor, start)
//! absorb: nothing lost, nothing doubled. Files confirmed in S3 follow the
//! same way from the upload queue, by upload time, and media-only streams
//! (RTP no SIP claimed) by their local id after a mark of their own.
//!
//! A call can change after it was shipped (the media step's MOS, a
//! stream's figures): triggers the shipper puts on the local index note
//! each change in `ship_changes` (an increasing number per change), and
//! each round sends the changed calls that are behind the mark again with
//! that number as their version; `voxtap.update_from_stage` replaces the
//! central rows whose version is older. Registrations and pings are
//! snapshots the sensor replaces: every few seconds the shipper sends the
//! rows that differ from what it sent last (all of them once after a
//! start), upserted the same way.
//!
//! While the centre is away the sensor keeps working alone (the local index
//! grows, `pending` in `status/central.json` says how much), and the
//! shipper reconnects with backoff and catches up.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Transaction};

use super::mapping::{self, TableMap, Val};
use super::pg::PgTarget;
use super::{CentralConfig, CentralError, schema};
use crate::upload::UploadConfig;
use voxtap_engine::index::{INDEX_FILE, Index};
use voxtap_engine::output::civil_from_days;

/// Status file component name (`status/central.json`).
pub const STATUS: &str = "central";

const DAY_NS: i64 = 86_400_000_000_000;
/// Files uploaded this long before the mark are looked at again: uploads
/// that committed out of order are not missed (duplicates are absorbed).
const FILE_SLACK_MS: i64 = 5_000;
const HEARTBEAT: Duration = Duration::from_secs(5);
/// Rounds `drain` tries when PostgreSQL picks it as a deadlock's victim.
const DRAIN_ATTEMPTS: u32 = 3;

/// The shipper's own state in the local index, made by the shipper rather
/// than by an index migration: only a sensor that ships needs it, and the
/// index's migration numbers stay with the index's own tables. How far
/// each target has been sent (calls by id, uploaded files by time), and the
/// way from an uploaded file's folder back to its call.
const SHIP_TABLES: &str = "
CREATE TABLE IF NOT EXISTS ship_marks (
    target        TEXT PRIMARY KEY,
    last_call     INTEGER NOT NULL,
    last_file_ms  INTEGER NOT NULL,
    updated_ns    INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS calls_folder ON calls(folder);
CREATE TABLE IF NOT EXISTS ship_changes (
    seq   INTEGER PRIMARY KEY AUTOINCREMENT,
    call  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS ship_changes_call ON ship_changes(call);
";

/// A change of a local call's shipped columns is noted in `ship_changes`
/// (`UPDATE OF` the columns the mapping copies, so a change the central
/// index does not hold sends nothing), and so is a new address of a call
/// (its `call_ips` row: the central IP search follows it).
///
/// One row per call: a change replaces the call's earlier row with a new,
/// higher number, so while the centre is away the table holds at most one
/// row per changed call however often the calls change (a call still ships
/// its latest state: it is read when sent), and a deleted call (retention)
/// takes its row along. Every target whose change mark is below the new
/// number sends it; none is skipped.
fn change_triggers() -> String {
    let calls = mapping::plain_columns(&mapping::CALLS, "c").join(", ");
    let streams = mapping::plain_columns(&mapping::STREAMS, "s").join(", ");
    let note = |call: &str| {
        format!(
            "DELETE FROM ship_changes WHERE call = {call}; \
             INSERT INTO ship_changes (call) VALUES ({call});"
        )
    };
    format!(
        "DROP TRIGGER IF EXISTS ship_call_changed; DROP TRIGGER IF EXISTS ship_stream_changed;
         DROP TRIGGER IF EXISTS ship_call_address; DROP TRIGGER IF EXISTS ship_call_deleted;
         CREATE TRIGGER ship_call_changed AFTER UPDATE OF {calls} ON calls \
         BEGIN {} END;
         CREATE TRIGGER ship_stream_changed AFTER UPDATE OF {streams} ON streams \
         BEGIN {} END;
         CREATE TRIGGER ship_call_address AFTER INSERT ON call_ips \
         WHEN EXISTS (SELECT 1 FROM ship_marks WHERE last_call >= NEW.call) \
         BEGIN {} END;
         CREATE TRIGGER ship_call_deleted AFTER DELETE ON calls \
         BEGIN DELETE FROM ship_changes WHERE call = OLD.id; END;",
        note("NEW.id"),
        note("NEW.call"),
        note("NEW.call"),
    )
}

/// A changed call: (local id, version).
type Changed = (i64, i64);

/// What to ship where.
#[derive(Clone, Debug)]
pub struct ShipOptions {
    pub target: PgTarget,
    pub sensor_id: String,
    /// The directory of `index.sqlite` (and of `status/central.json`).
    pub out_dir: PathBuf,
    /// The store directory holding `upload.sqlite`, when files go to S3.
    pub store: Option<PathBuf>,
    pub upload: Option<UploadConfig>,
    pub batch: usize,
    pub interval: Duration,
}

impl ShipOptions {
    /// From a sensor configuration's `[central]` (None when it has no URL).
    pub fn from_config(cfg: &crate::Config) -> Option<ShipOptions> {
        let c: &CentralConfig = &cfg.central;
        c.enabled().then(|| ShipOptions {
            target: PgTarget::parse(&c.url).with_files(
                c.client_cert.as_deref(),
                c.client_key.as_deref(),
                c.ca.as_deref(),
            ),
            sensor_id: c.sensor_id.clone(),
            out_dir: cfg.output.dir.clone(),
            store: cfg.upload.enabled.then(|| cfg.store.path.clone()),
            upload: cfg.upload.enabled.then(|| cfg.upload.clone()),
            batch: c.batch(),
            interval: c.interval(),
        })
    }
}

/// `status/central.json`.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ShipStatus {
    pub sensor_id: String,
    pub connected: bool,
    pub shipped_calls: u64,
    pub shipped_files: u64,
    /// Calls sent again because they changed after shipping; central rows
    /// those replaced.
    pub resent_calls: u64,
    pub updated_rows: u64,
    /// Media-only streams (RTP no SIP claimed) sent.
    pub shipped_media: u64,
    /// Registration and ping rows sent (new or changed).
    pub shipped_noncall: u64,
    pub pending_calls: u64,
    /// Local id of the last call shipped.
    pub high_water_mark: i64,
    pub calls_per_second: f64,
    pub reconnects: u64,
    /// Rounds of `drain` run again after losing a deadlock or a
    /// serialization conflict.
    pub transient_retries: u64,
    pub last_error: Option<String>,
    pub last_ship_unix: Option<u64>,
}

pub struct Shipper {
    opts: ShipOptions,
    /// The mark's key: one mark per central index.
    mark_key: String,
    local: Connection,
    queue_attached: bool,
    client: Option<Client>,
    /// Days whose partitions this connection knows exist.
    days: BTreeSet<i64>,
    status: ShipStatus,
    last_heartbeat: Option<Instant>,
    /// (when, calls shipped then) for the rate.
    rate_from: (Instant, u64),
    /// Hashes of the registration and ping rows sent last (per table), and
    /// when: a row not among them has changed since.
    noncall_sent: [std::collections::HashSet<u64>; 2],
    noncall_at: Option<Instant>,
}

fn local_err(path: &Path) -> impl Fn(rusqlite::Error) -> CentralError + '_ {
    move |source| CentralError::Local {
        path: path.to_path_buf(),
        source,
    }
}

/// `YYYY-MM-DD` of a day number.
fn date(day: i64) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

impl Shipper {
    /// Opens (and migrates) the local index; connects later.
    pub fn open(opts: ShipOptions) -> Result<Shipper, CentralError> {
        let path = opts.out_dir.join(INDEX_FILE);
        let err = local_err(&path);
        drop(Index::open(&path).map_err(|e| CentralError::Config(e.to_string()))?);
        let local = Connection::open(&path).map_err(&err)?;
        local.busy_timeout(Duration::from_secs(10)).map_err(&err)?;
        local.execute_batch(SHIP_TABLES).map_err(&err)?;
        // Marks added after the table: changes sent, media-only streams sent.
        for mark in ["last_change", "last_media"] {
            let has: bool = local
                .query_row(
                    "SELECT count(*) > 0 FROM pragma_table_info('ship_marks') WHERE name = ?1",
                    [mark],
                    |r| r.get(0),
                )
                .map_err(&err)?;
            if !has {
                local
                    .execute_batch(&format!(
                        "ALTER TABLE ship_marks ADD COLUMN {mark} INTEGER NOT NULL DEFAULT 0"
                    ))
                    .map_err(&err)?;
            }
        }
        local.execute_batch(&change_triggers()).map_err(&err)?;
        let mark_key = format!("central:{}", opts.target.url);
        let status = ShipStatus {
            sensor_id: opts.sensor_id.clone(),
            ..Default::default()
        };
        Ok(Shipper {
            opts,
            mark_key,
            local,
            queue_attached: false,
            client: None,
            days: BTreeSet::new(),
            status,
            last_heartbeat: None,
            rate_from: (Instant::now(), 0),
            noncall_sent: Default::default(),
            noncall_at: None,
        })
    }

    pub fn status(&self) -> &ShipStatus {
        &self.status
    }

    fn index_path(&self) -> PathBuf {
        self.opts.out_dir.join(INDEX_FILE)
    }

    /// (last call id, last file upload ms) shipped.
    fn mark(&self) -> Result<(i64, i64), CentralError> {
        let p = self.index_path();
        Ok(self
            .local
            .query_row(
                "SELECT last_call, last_file_ms FROM ship_marks WHERE target = ?1",
                [&self.mark_key],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(local_err(&p))?
            .unwrap_or((0, 0)))
    }

    fn set_mark(&self, last_call: i64, last_file_ms: i64) -> Result<(), CentralError> {
        let p = self.index_path();
        self.local
            .execute(
                "INSERT INTO ship_marks (target, last_call, last_file_ms, updated_ns) \
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (target) DO UPDATE SET \
                 last_call = ?2, last_file_ms = ?3, updated_ns = ?4",
                params![self.mark_key, last_call, last_file_ms, now_ns()],
            )
            .map_err(local_err(&p))?;
        Ok(())
    }

    /// Calls in the local index not shipped yet.
    pub fn pending(&self) -> Result<u64, CentralError> {
        let (last, _) = self.mark()?;
        let p = self.index_path();
        self.local
            .query_row("SELECT count(*) FROM calls WHERE id > ?1", [last], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n.max(0) as u64)
            .map_err(local_err(&p))
    }

    /// Connects if needed: TLS, schema version, and that the role is this
    /// sensor's; creates the staging tables.
    async fn client(&mut self) -> Result<&Client, CentralError> {
        if self.client.as_ref().is_some_and(|c| !c.is_closed()) {
            return Ok(self.client.as_ref().expect("checked"));
        }
        self.client = None;
        self.days.clear();
        let client = self.opts.target.connect().await?;
        schema::check_version(&client).await?;
        let name: Option<String> = client
            .query_one("SELECT voxtap.current_sensor_name()", &[])
            .await?
            .get(0);
        match name {
            Some(n) if n == self.opts.sensor_id => {}
            Some(n) => {
                return Err(CentralError::Config(format!(
                    "the central index knows this login as sensor {n:?}, not {:?} (central.sensor_id)",
                    self.opts.sensor_id
                )));
            }
            None => {
                return Err(CentralError::Config(format!(
                    "this login is not a sensor of the central index: `voxtap central add-sensor --name {}` first",
                    self.opts.sensor_id
                )));
            }
        }
        for m in mapping::PER_CALL
            .iter()
            .chain(&mapping::NONCALL)
            .chain([&mapping::CALL_FILES, &mapping::MEDIA_STREAMS])
        {
            client.batch_execute(&m.stage_ddl()).await?;
        }
        tracing::info!(sensor = %self.opts.sensor_id, "connected to the central index");
        self.status.connected = true;
        Ok(self.client.insert(client))
    }

    /// Creates the partitions of `days` that this connection has not seen.
    async fn ensure_days(&mut self, days: BTreeSet<i64>) -> Result<(), CentralError> {
        let missing: Vec<i64> = days.difference(&self.days).copied().collect();
        if missing.is_empty() {
            return Ok(());
        }
        let client = self.client().await?;
        // Contiguous runs, one call each.
        let mut runs: Vec<(i64, i64)> = Vec::new();
        for d in &missing {
            match runs.last_mut() {
                Some(r) if r.1 + 1 == *d && *d - r.0 < 400 => r.1 = *d,
                _ => runs.push((*d, *d)),
            }
        }
        for (a, b) in runs {
            client
                .execute(
                    "SELECT voxtap.ensure_days($1::text::date, $2::text::date)",
                    &[&date(a), &date(b)],
                )
                .await?;
        }
        self.days.extend(missing);
        Ok(())
    }

    fn read_rows(
        &self,
        m: &TableMap,
        params: &[&dyn rusqlite::ToSql],
    ) -> Result<Vec<Vec<Val>>, CentralError> {
        let Some(sql) = m.local_sql() else {
            return Ok(Vec::new());
        };
        let p = self.index_path();
        let err = local_err(&p);
        let mut st = self.local.prepare_cached(&sql).map_err(&err)?;
        // The tables' queries share one parameter list; each binds those it names.
        let n = st.parameter_count().min(params.len());
        let mut rows = st.query(&params[..n]).map_err(&err)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(&err)? {
            let mut row = Vec::with_capacity(m.cols.len());
            for (i, c) in m.cols.iter().enumerate() {
                row.push(Val::from_local(c.kind, r.get_ref(i).map_err(&err)?));
            }
            out.push(row);
        }
        Ok(out)
    }

    /// The days (since the epoch) of the calls with ids in (lo, hi].
    fn call_days(&self, lo: i64, hi: i64) -> Result<BTreeSet<i64>, CentralError> {
        let p = self.index_path();
        let err = local_err(&p);
        let mut st = self
            .local
            .prepare_cached("SELECT DISTINCT start_ns / ?3 FROM calls WHERE id > ?1 AND id <= ?2")
            .map_err(&err)?;
        let days = st
            .query_map(params![lo, hi, DAY_NS], |r| r.get::<_, i64>(0))
            .map_err(&err)?
            .collect::<Result<BTreeSet<i64>, _>>()
            .map_err(&err)?;
        Ok(days)
    }

    /// Ships the next batch of calls; returns how many (0: none left).
    pub async fn ship_calls(&mut self) -> Result<u64, CentralError> {
        self.client().await?;
        let (lo, files_ms) = self.mark()?;
        let p = self.index_path();
        let hi: Option<i64> = self
            .local
            .query_row(
                "SELECT max(id) FROM (SELECT id FROM calls WHERE id > ?1 ORDER BY id LIMIT ?2)",
                params![lo, self.opts.batch as i64],
                |r| r.get(0),
            )
            .map_err(local_err(&p))?;
        let Some(hi) = hi else {
            return Ok(0);
        };
        let days = self.call_days(lo, hi)?;
        self.ensure_days(days).await?;
        let mut tables = Vec::new();
        for m in mapping::PER_CALL {
            tables.push((m, self.read_rows(&m, &[&lo, &hi, &0i64])?));
        }
        let n = tables[0].1.len() as u64;
        let client = self.client.as_mut().ok_or(CentralError::NotConnected)?;
        let tx = client.transaction().await?;
        for (m, rows) in &tables {
            copy_rows(&tx, m, rows, false).await?;
        }
        tx.commit().await?;
        self.set_mark(hi, files_ms)?;
        self.status.shipped_calls += n;
        self.status.high_water_mark = hi;
        Ok(n)
    }

    /// Ships the next batch of media-only streams (RTP no SIP claimed),
    /// by local id after their own mark; returns how many (0: none left).
    pub async fn ship_media(&mut self) -> Result<u64, CentralError> {
        self.client().await?;
        let p = self.index_path();
        let err = local_err(&p);
        let lo: i64 = self
            .local
            .query_row(
                "SELECT last_media FROM ship_marks WHERE target = ?1",
                [&self.mark_key],
                |r| r.get(0),
            )
            .optional()
            .map_err(&err)?
            .unwrap_or(0);
        let hi: Option<i64> = self
            .local
            .query_row(
                "SELECT max(id) FROM (SELECT id FROM media_streams WHERE id > ?1 ORDER BY id LIMIT ?2)",
                params![lo, self.opts.batch as i64],
                |r| r.get(0),
            )
            .map_err(&err)?;
        let Some(hi) = hi else {
            return Ok(0);
        };
        let rows = self.read_rows(&mapping::MEDIA_STREAMS, &[&lo, &hi])?;
        self.ensure_days(rows.iter().filter_map(|r| day_of(&r[0])).collect())
            .await?;
        let client = self.client.as_mut().ok_or(CentralError::NotConnected)?;
        let tx = client.transaction().await?;
        copy_rows(&tx, &mapping::MEDIA_STREAMS, &rows, false).await?;
        tx.commit().await?;
        self.local
            .execute(
                "INSERT INTO ship_marks (target, last_call, last_file_ms, updated_ns, last_media) \
                 VALUES (?1, 0, 0, ?2, ?3) ON CONFLICT (target) DO UPDATE SET \
                 last_media = ?3, updated_ns = ?2",
                params![self.mark_key, now_ns(), hi],
            )
            .map_err(&err)?;
        self.status.shipped_media += rows.len() as u64;
        Ok(rows.len() as u64)
    }

    /// The change mark: `ship_changes` up to it were sent.
    fn change_mark(&self) -> Result<i64, CentralError> {
        let p = self.index_path();
        Ok(self
            .local
            .query_row(
                "SELECT last_change FROM ship_marks WHERE target = ?1",
                [&self.mark_key],
                |r| r.get(0),
            )
            .optional()
            .map_err(local_err(&p))?
            .unwrap_or(0))
    }

    /// Moves the change mark to `seq` and forgets the changes every target
    /// has sent.
    fn set_change_mark(&self, seq: i64) -> Result<(), CentralError> {
        let p = self.index_path();
        self.local
            .execute_batch(&format!(
                "UPDATE ship_marks SET last_change = {seq} WHERE target = '{}';
                 DELETE FROM ship_changes WHERE seq <= (SELECT min(last_change) FROM ship_marks);",
                self.mark_key.replace('\'', "''")
            ))
            .map_err(local_err(&p))
    }

    /// The calls up to the mark changed since the change mark, each with
    /// its newest change number (its version), and the newest change
    /// number of all.
    fn changed_calls(
        &self,
        since: i64,
        last_call: i64,
    ) -> Result<(Vec<Changed>, Option<i64>), CentralError> {
        let p = self.index_path();
        let err = local_err(&p);
        let top: Option<i64> = self
            .local
            .query_row("SELECT max(seq) FROM ship_changes", [], |r| r.get(0))
            .map_err(&err)?;
        let mut st = self
            .local
            .prepare_cached(
                "SELECT call, max(seq) FROM ship_changes WHERE seq > ?1 AND seq <= ?2 AND call <= ?3 \
                 GROUP BY call ORDER BY call",
            )
            .map_err(&err)?;
        let calls = st
            .query_map(params![since, top.unwrap_or(0), last_call], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(&err)?
            .collect::<Result<Vec<Changed>, _>>()
            .map_err(&err)?;
        Ok((calls, top.filter(|t| *t > since)))
    }

    /// Sends again the calls that changed after they were shipped (calls
    /// past the mark are sent as they are now by [`Self::ship_calls`]);
    /// returns how many.
    pub async fn resend_changed(&mut self) -> Result<u64, CentralError> {
        let (last_call, _) = self.mark()?;
        let since = self.change_mark()?;
        let (calls, top) = self.changed_calls(since, last_call)?;
        let Some(top) = top else {
            return Ok(0);
        };
        for chunk in calls.chunks(self.opts.batch.max(1)) {
            let mut tables: Vec<(TableMap, Vec<Vec<Val>>)> =
                mapping::PER_CALL.iter().map(|m| (*m, Vec::new())).collect();
            let mut days = BTreeSet::new();
            for (id, version) in chunk {
                days.extend(self.call_days(id - 1, *id)?);
                for (m, rows) in tables.iter_mut() {
                    rows.extend(self.read_rows(m, &[&(id - 1), id, version])?);
                }
            }
            self.ensure_days(days).await?;
            let client = self.client.as_mut().ok_or(CentralError::NotConnected)?;
            let tx = client.transaction().await?;
            let mut updated = 0;
            for (m, rows) in &tables {
                updated += copy_rows(&tx, m, rows, mapping::RESENT.contains(&m.central))
                    .await?
                    .1;
            }
            tx.commit().await?;
            self.status.resent_calls += chunk.len() as u64;
            self.status.updated_rows += updated;
        }
        self.set_change_mark(top)?;
        Ok(calls.len() as u64)
    }

    /// Sends the registration and ping rows that differ from those sent
    /// last (every row once after a start; the central index keeps what
    /// did not change). Returns how many rows were sent.
    pub async fn ship_noncall(&mut self) -> Result<u64, CentralError> {
        self.client().await?;
        let version = now_ns();
        let mut sent = 0;
        for (i, m) in mapping::NONCALL.iter().enumerate() {
            let rows = self.read_rows(m, &[&version])?;
            // The version (the last column) is not part of what changed.
            let hashes: Vec<u64> = rows.iter().map(|r| row_hash(&r[..r.len() - 1])).collect();
            let changed: Vec<Vec<Val>> = rows
                .into_iter()
                .zip(&hashes)
                .filter(|(_, h)| !self.noncall_sent[i].contains(h))
                .map(|(r, _)| r)
                .collect();
            if !changed.is_empty() {
                let days: BTreeSet<i64> = changed.iter().filter_map(|r| day_of(&r[0])).collect();
                self.ensure_days(days).await?;
                let client = self.client.as_mut().ok_or(CentralError::NotConnected)?;
                let tx = client.transaction().await?;
                let (_, updated) = copy_rows(&tx, m, &changed, true).await?;
                tx.commit().await?;
                sent += changed.len() as u64;
                self.status.updated_rows += updated;
            }
            self.noncall_sent[i] = hashes.into_iter().collect();
        }
        self.noncall_at = Some(Instant::now());
        self.status.shipped_noncall += sent;
        Ok(sent)
    }

    /// Attaches the upload queue once it exists.
    fn attach_queue(&mut self) -> Result<bool, CentralError> {
        if self.queue_attached {
            return Ok(true);
        }
        let Some(store) = &self.opts.store else {
            return Ok(false);
        };
        let q = store.join(crate::upload::QUEUE_FILE);
        if !q.exists() {
            return Ok(false);
        }
        let uri = format!("file:{}?mode=ro", q.display());
        self.local
            .execute("ATTACH DATABASE ?1 AS up", [uri])
            .map_err(local_err(&q))?;
        self.queue_attached = true;
        Ok(true)
    }

    /// Ships the call files confirmed in S3 since the mark.
    pub async fn ship_files(&mut self) -> Result<u64, CentralError> {
        let Some(up) = self.opts.upload.clone() else {
            return Ok(0);
        };
        if !self.attach_queue()? {
            return Ok(0);
        }
        self.client().await?;
        let (calls_mark, mark) = self.mark()?;
        let p = self.index_path();
        let newest: Option<i64> = self
            .local
            .query_row(
                "SELECT max(uploaded_ms) FROM up.queue WHERE kind = 'call' AND state = 'uploaded'",
                [],
                |r| r.get(0),
            )
            .map_err(local_err(&p))?;
        let Some(newest) = newest.filter(|n| *n > mark) else {
            return Ok(0);
        };
        let since = mark - FILE_SLACK_MS;
        let rows = self.read_rows(
            &mapping::CALL_FILES,
            &[&since, &up.endpoint, &up.region, &up.bucket, &up.path_style],
        )?;
        let days: BTreeSet<i64> = rows
            .iter()
            .filter_map(|r| r.first().and_then(day_of))
            .collect();
        self.ensure_days(days).await?;
        let client = self.client.as_mut().ok_or(CentralError::NotConnected)?;
        let tx = client.transaction().await?;
        let (n, _) = copy_rows(&tx, &mapping::CALL_FILES, &rows, false).await?;
        tx.commit().await?;
        self.set_mark(calls_mark, newest)?;
        self.status.shipped_files += n;
        Ok(n)
    }

    /// Last contact, version and rate for the hub's Sensors page.
    async fn heartbeat(&mut self) -> Result<(), CentralError> {
        if self.last_heartbeat.is_some_and(|t| t.elapsed() < HEARTBEAT) {
            return Ok(());
        }
        let (t0, n0) = self.rate_from;
        let secs = t0.elapsed().as_secs_f64().max(1e-3);
        self.status.calls_per_second = (self.status.shipped_calls - n0) as f64 / secs;
        self.rate_from = (Instant::now(), self.status.shipped_calls);
        let pending = self.pending()? as i64;
        let shipped = self.status.shipped_calls as i64;
        let rate = self.status.calls_per_second as f32;
        let host = hostname();
        self.client()
            .await?
            .execute(
                "INSERT INTO voxtap.sensor_contacts (version, host, shipped_total, pending, calls_per_s) \
                 VALUES ($1, $2, $3, $4, $5)",
                &[&env!("CARGO_PKG_VERSION"), &host, &shipped, &pending, &rate],
            )
            .await?;
        self.last_heartbeat = Some(Instant::now());
        Ok(())
    }

    /// Connects if needed, ships every pending batch and the new S3 files,
    /// and sends the heartbeat. Returns the calls shipped.
    pub async fn round(&mut self) -> Result<u64, CentralError> {
        self.client().await?;
        let mut total = 0;
        loop {
            let n = self.ship_calls().await?;
            total += n;
            if n < self.opts.batch as u64 {
                break;
            }
        }
        while self.ship_media().await? >= self.opts.batch as u64 {}
        self.resend_changed().await?;
        self.ship_files().await?;
        if self.noncall_at.is_none_or(|t| t.elapsed() >= HEARTBEAT) {
            self.ship_noncall().await?;
        }
        self.heartbeat().await?;
        self.status.pending_calls = self.pending()?;
        self.status.last_error = None;
        self.status.last_ship_unix = Some(crate::status::now_unix());
        Ok(total)
    }

    /// The round failed: drop the connection, remember why.
    fn failed(&mut self, e: &CentralError) {
        if self.status.connected {
            self.status.reconnects += 1;
        }
        self.status.connected = false;
        self.client = None;
        self.status.last_error = Some(e.to_string());
        if let Ok(p) = self.pending() {
            self.status.pending_calls = p;
        }
    }

    fn publish(&self) {
        if let Err(e) = crate::status::write(&self.opts.out_dir, STATUS, &self.status) {
            tracing::debug!("writing status/central.json: {e}");
        }
    }

    /// Until `stop`: a round every interval, reconnecting with backoff
    /// (1 s doubling to 30 s) while the centre is away; one last round at
    /// the end.
    pub async fn run(&mut self, stop: &AtomicBool) {
        let mut backoff = Duration::from_secs(1);
        let mut next = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            if Instant::now() >= next {
                match self.round().await {
                    Ok(_) => {
                        backoff = Duration::from_secs(1);
                        next = Instant::now() + self.opts.interval;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, retry_s = backoff.as_secs(), "central index: shipping paused, calls wait in the local index");
                        self.failed(&e);
                        next = Instant::now() + backoff;
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                    }
                }
                self.publish();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.noncall_at = None;
        let last = tokio::time::timeout(Duration::from_secs(10), self.round()).await;
        if let Ok(Err(e)) = &last {
            self.failed(e);
        }
        self.publish();
    }

    /// Ships everything now (after an import); fails if the centre cannot
    /// be reached.
    /// A round that loses a deadlock (or a serialization conflict) is run
    /// again, up to [`DRAIN_ATTEMPTS`] times: each transaction was rolled
    /// back whole, so a retry neither loses nor doubles a call. (`run`
    /// retries every failure after its backoff anyway.)
    pub async fn drain(&mut self) -> Result<u64, CentralError> {
        let mut attempt = 1;
        let r = loop {
            self.noncall_at = None;
            match self.round().await {
                Err(e) if e.is_transient() && attempt < DRAIN_ATTEMPTS => {
                    tracing::info!(error = %e, attempt, "central index: round lost a conflict, shipping again");
                    self.status.transient_retries += 1;
                    attempt += 1;
                }
                r => break r,
            }
        };
        if let Err(e) = &r {
            self.failed(e);
        }
        self.publish();
        r
    }
}

/// COPY `rows` into the staging table and from there into the central
/// table; with `update`, rows already there with an older version are
/// replaced from the staging table too. Returns (rows inserted, rows
/// updated).
async fn copy_rows(
    tx: &Transaction<'_>,
    m: &TableMap,
    rows: &[Vec<Val>],
    update: bool,
) -> Result<(u64, u64), CentralError> {
    if rows.is_empty() {
        return Ok((0, 0));
    }
    let cols = m.central_cols();
    let sink = tx
        .copy_in(&format!(
            "COPY stage_{} ({cols}) FROM STDIN BINARY",
            m.central
        ))
        .await?;
    let writer = BinaryCopyInWriter::new(sink, &m.types());
    let mut writer = std::pin::pin!(writer);
    for r in rows {
        let refs: Vec<&(dyn ToSql + Sync)> = r.iter().map(|v| v as &(dyn ToSql + Sync)).collect();
        writer.as_mut().write(&refs).await?;
    }
    writer.finish().await?;
    let n = tx
        .execute(
            &format!(
                "INSERT INTO voxtap.{t} ({cols}) SELECT {cols} FROM stage_{t} ON CONFLICT DO NOTHING",
                t = m.central
            ),
            &[],
        )
        .await?;
    let updated: i64 = if update {
        tx.query_one("SELECT voxtap.update_from_stage($1)", &[&m.central])
            .await?
            .get(0)
    } else {
        0
    };
    Ok((n, updated.max(0) as u64))
}

fn row_hash(row: &[Val]) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    format!("{row:?}").hash(&mut h);
    h.finish()
}

/// The day (since the epoch) of a time value.
fn day_of(v: &Val) -> Option<i64> {
    match v {
        Val::Time(t) => t
            .duration_since(std::time::UNIX_EPOCH)
            .ok()
            .map(|d| d.as_nanos() as i64 / DAY_NS),
        _ => None,
    }
}

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The shipper as a thread of `voxtap run`: its own small runtime, until
/// `stop`.
pub fn spawn(
    opts: ShipOptions,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<Result<(), CentralError>>> {
    std::thread::Builder::new()
        .name("central".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| CentralError::Config(format!("runtime: {e}")))?;
            let mut s = Shipper::open(opts)?;
            rt.block_on(s.run(&stop));
            Ok(())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The change triggers note an update of a shipped column (a call's
    /// MOS, a stream's; since the fleet dashboards also the trunk, which the
    /// central rollups are kept by), and nothing for an insert.
    #[test]
    fn changes_of_shipped_columns_are_noted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(INDEX_FILE);
        drop(Index::open(&path).unwrap());
        let db = Connection::open(&path).unwrap();
        db.execute_batch(SHIP_TABLES).unwrap();
        db.execute_batch(&change_triggers()).unwrap();
        // Again (a shipper's restart): the triggers are replaced, not doubled.
        db.execute_batch(&change_triggers()).unwrap();
        db.execute_batch(
            "INSERT INTO calls (id, call_id, method, start_ns, end_ns, duration_ms, from_user, to_user, \
             from_uri, to_uri, request_uri, state, sip_packets, rtp_packets, rtcp_packets, stream_count, \
             folder, pcap, indexed_at) VALUES (7, 'c@x', 'INVITE', 1, 2, 0, 'a', 'b', '', '', '', \
             'answered', 2, 0, 0, 0, 'f', 'f/call.pcap', 3)",
        )
        .unwrap();
        let noted = |db: &Connection| -> Vec<i64> {
            let mut st = db
                .prepare("SELECT call FROM ship_changes ORDER BY seq")
                .unwrap();
            st.query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        assert!(noted(&db).is_empty(), "an insert is shipped as it is");
        db.execute("UPDATE calls SET trunk = 't1' WHERE id = 7", [])
            .unwrap();
        assert_eq!(noted(&db), [7], "the trunk is shipped (fleet rollups)");
        for i in 0..100 {
            db.execute(
                "UPDATE calls SET mos = ?1 WHERE id = 7",
                [1.0 + f64::from(i) / 100.0],
            )
            .unwrap();
        }
        assert_eq!(noted(&db), [7], "one row per changed call, however often");
        let last_seq = |db: &Connection| -> i64 {
            db.query_row("SELECT max(seq) FROM ship_changes", [], |r| r.get(0))
                .unwrap()
        };
        let before = last_seq(&db);
        // A new address of a call not shipped anywhere yet: it ships whole.
        db.execute(
            "INSERT INTO call_ips (call, ip) VALUES (7, '192.0.2.9')",
            [],
        )
        .unwrap();
        assert_eq!(last_seq(&db), before);
        db.execute(
            "INSERT INTO ship_marks (target, last_call, last_file_ms, updated_ns) VALUES ('t', 7, 0, 0)",
            [],
        )
        .unwrap();
        db.execute(
            "INSERT INTO call_ips (call, ip) VALUES (7, '192.0.2.10')",
            [],
        )
        .unwrap();
        assert_eq!(noted(&db), [7]);
        assert!(
            last_seq(&db) > before,
            "a shipped call's new address is a change"
        );
        db.execute("DELETE FROM calls WHERE id = 7", []).unwrap();
        assert!(
            noted(&db).is_empty(),
            "a deleted call takes its change along"
        );
    }
}
