//! The hub's dashboards: the same page as a sensor's (`crate::dashboards`),
//! summed from the central index's rollups (central migrations 4 and 7,
//! `voxtap_sensor::central::rollups`), optionally of one sensor. Buckets of
//! whole hours read the hourly rollups and the minutes only at the range's
//! ends, as the sensor's own dashboards do; a dashboard never reads calls.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio_postgres::types::ToSql;
use voxtap_engine::index::{Bucket, Counts, DashQuery};
use voxtap_sensor::central::rollups::COLS;

use super::{Hub, unavailable};
use crate::handlers::AppError;

const MINUTE_NS: u64 = 60_000_000_000;
const HOUR_NS: u64 = 60 * MINUTE_NS;

fn time(ns: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ns)
}

fn ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Sums in [`COLS`] order as the engine's `Counts`.
fn counts(v: &[i64]) -> Counts {
    let at = |k: usize| v.get(k).copied().unwrap_or(0);
    let arr = |from: usize| -> [i64; 6] { std::array::from_fn(|k| at(from + k)) };
    Counts {
        attempts: at(0),
        answered: at(1),
        ner_ok: at(2),
        answered_ms: at(3),
        pdd_ms: at(4),
        pdd_n: at(5),
        classes: std::array::from_fn(|k| at(6 + k)),
        codes: arr(13),
        mos: arr(19),
        one_way: at(25),
        capture_loss: at(26),
        rtp_lost: at(27),
        rtp_expected: at(28),
        active_ms: at(29),
    }
}

type Param = Box<dyn ToSql + Sync + Send>;

/// The filters of `q` and `sensor` on rollup rows, their parameters
/// pushed to `params` ("true" without any).
fn filters(q: &DashQuery, sensor: Option<&str>, params: &mut Vec<Param>) -> String {
    let mut conds = vec!["true".to_string()];
    for (col, v) in [
        ("trunk", q.trunk.as_deref()),
        ("codec", q.codec.as_deref()),
        ("sensor", sensor),
    ] {
        if let Some(v) = v {
            params.push(Box::new(v.to_string()));
            let p = format!("${}", params.len());
            conds.push(if col == "sensor" {
                format!("sensor = (SELECT id FROM voxtap.sensors WHERE name = {p})")
            } else {
                format!("{col} = {p}")
            });
        }
    }
    conds.join(" AND ")
}

/// Where the rollup rows of [from_ns, to_ns) (widened to whole minutes)
/// are read: whole hours from `rollup_hour` (central migration 7) when
/// `hourly`, the minutes at either end from `rollup_minute`. As (table,
/// key column, from, to), empty parts left out.
fn parts(from_ns: u64, to_ns: u64, hourly: bool) -> Vec<(&'static str, &'static str, u64, u64)> {
    let (lo, hi) = (from_ns / MINUTE_NS, to_ns.div_ceil(MINUTE_NS));
    let minutes = |a: u64, b: u64| ("rollup_minute", "minute", a * MINUTE_NS, b * MINUTE_NS);
    let (h_lo, h_hi) = (lo.div_ceil(60), hi / 60);
    let v = if hourly && h_lo < h_hi {
        vec![
            minutes(lo, h_lo * 60),
            ("rollup_hour", "hour", h_lo * HOUR_NS, h_hi * HOUR_NS),
            minutes(h_hi * 60, hi),
        ]
    } else {
        vec![minutes(lo, hi)]
    };
    v.into_iter().filter(|p| p.2 < p.3).collect()
}

/// The rollup rows of `q` (and `sensor`) with `cols` (`{k}`: the row's
/// time), whole hours from the hourly rollups when `hourly`: a UNION ALL
/// and its parameters (None when the range is empty).
fn rows_sql(
    q: &DashQuery,
    sensor: Option<&str>,
    cols: &str,
    hourly: bool,
) -> Option<(String, Vec<Param>)> {
    let mut params = Vec::new();
    let cond = filters(q, sensor, &mut params);
    let mut selects = Vec::new();
    for (table, key, from, to) in parts(q.from_ns, q.to_ns, hourly) {
        params.push(Box::new(time(from)));
        params.push(Box::new(time(to)));
        let n = params.len();
        selects.push(format!(
            "SELECT {} FROM voxtap.{table} WHERE {key} >= ${} AND {key} < ${n} AND {cond}",
            cols.replace("{k}", key),
            n - 1
        ));
    }
    (!selects.is_empty()).then(|| (selects.join(" UNION ALL "), params))
}

fn refs(params: &[Param]) -> Vec<&(dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| p.as_ref() as &(dyn ToSql + Sync))
        .collect()
}

impl Hub {
    /// The non-empty buckets of `q`, oldest first.
    pub async fn dashboard(
        &self,
        q: &DashQuery,
        sensor: Option<&str>,
    ) -> Result<Vec<Bucket>, AppError> {
        let step = q.step_minutes.clamp(1, 1440);
        let cols = format!("{{k}} AS k, {}", COLS.join(", "));
        let Some((rows, params)) = rows_sql(q, sensor, &cols, step.is_multiple_of(60)) else {
            return Ok(Vec::new());
        };
        let sums: Vec<String> = COLS.iter().map(|c| format!("sum({c})::int8")).collect();
        // Buckets aligned to the epoch, as the sensor's (`minute / step`).
        let sql = format!(
            "SELECT date_bin(make_interval(mins => {step}), k, timestamptz '1970-01-01 00:00:00+00') AS b, {} \
             FROM ({rows}) r GROUP BY b ORDER BY b",
            sums.join(", "),
        );
        let c = self.client().await?;
        let rows = c.query(&sql, &refs(&params)).await.map_err(unavailable)?;
        Ok(rows
            .iter()
            .map(|r| {
                let v: Vec<i64> = (1..=COLS.len()).map(|k| r.get::<_, i64>(k)).collect();
                Bucket {
                    start_ns: ns(r.get(0)),
                    counts: counts(&v),
                }
            })
            .collect())
    }

    /// The distinct values of `col` (trunk or codec) in the rollups of
    /// [from_ns, to_ns).
    pub async fn dashboard_values(
        &self,
        col: &str,
        from_ns: u64,
        to_ns: u64,
    ) -> Result<Vec<String>, AppError> {
        let col = if col == "trunk" { "trunk" } else { "codec" };
        let q = DashQuery {
            from_ns,
            to_ns,
            ..Default::default()
        };
        let Some((rows, params)) = rows_sql(&q, None, col, true) else {
            return Ok(Vec::new());
        };
        let c = self.client().await?;
        let rows = c
            .query(
                &format!("SELECT DISTINCT {col} FROM ({rows}) r ORDER BY 1"),
                &refs(&params),
            )
            .await
            .map_err(unavailable)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Every sensor's name.
    pub async fn sensor_names(&self) -> Result<Vec<String>, AppError> {
        let c = self.client().await?;
        let rows = c
            .query("SELECT name FROM voxtap.sensors ORDER BY name", &[])
            .await
            .map_err(unavailable)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// The newest call's start (of `sensor`), which places the default
    /// range (one index seek per partition).
    pub async fn newest_start(&self, sensor: Option<&str>) -> Result<Option<u64>, AppError> {
        let c = self.client().await?;
        let row = c
            .query_one(
                "SELECT max(start_at) FROM voxtap.calls \
                 WHERE $1::text IS NULL OR sensor = (SELECT id FROM voxtap.sensors WHERE name = $1)",
                &[&sensor],
            )
            .await
            .map_err(unavailable)?;
        Ok(row.get::<_, Option<SystemTime>>(0).map(ns))
    }

    /// Seconds since each sensor's last shipping round (since it was
    /// added when it never shipped).
    pub async fn contact_ages(&self) -> Result<Vec<(String, u64)>, AppError> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT s.name, extract(epoch FROM now() - coalesce( \
                   (SELECT max(sc.at) FROM voxtap.sensor_contacts sc WHERE sc.sensor = s.id), s.added_at))::float8 \
                 FROM voxtap.sensors s ORDER BY s.name",
                &[],
            )
            .await
            .map_err(unavailable)?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get::<_, f64>(1).max(0.0) as u64))
            .collect())
    }
}
