//! The one place that maps the sensor's SQLite index
//! (`capture/engine/src/index/schema.rs`) onto the central index
//! ([`super::schema`]): for each central table, the SQLite query that reads
//! a batch of calls' rows, and for each central column the SQLite
//! expression that fills it and how its value is converted.
//!
//! A new column (a branch that adds one to the local index, or a value the
//! central index can derive) is one line here plus a central migration
//! adding it. Columns the local index cannot fill yet are shipped as NULL,
//! each with the branch it waits for:
//!
//! | central column | waiting for |
//! |---|---|
//! | `calls.call_group` | "Call model" (logical call of a leg) |
//! | `streams.decoded` | "Codecs" (per-stream decoded flag; the codec column is filled) |
//!
//! Every per-call query takes `?1` < call id <= `?2` (a batch of local call
//! ids) and `?3`, the rows' version (0 when first shipped, the local change
//! number when a changed call is sent again). [`NONCALL`]'s queries read the
//! whole local table (a snapshot the sensor replaces) with `?1` = version.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, BytesMut};
use rusqlite::types::ValueRef;
use tokio_postgres::types::{IsNull, ToSql, Type, to_sql_checked};

/// How a local value becomes a central one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Int8,
    Int4,
    Int2,
    Real,
    Bool,
    Text,
    /// Nanoseconds since the epoch -> timestamptz (microseconds).
    TimeNs,
    /// `ip`, `ip:port` or `[v6]:port` -> inet.
    Inet,
    /// The port of `ip:port` -> integer.
    Port,
    /// Comma-separated addresses -> inet[].
    InetList,
    /// Comma-separated words -> text[].
    TextList,
    /// The user part of a SIP URI (`sip:1234@host` -> `1234`) -> text.
    UriUser,
    /// JSON text -> jsonb.
    Json,
}

impl Kind {
    /// The column's type in SQL (the sensor's staging tables).
    pub fn sql_type(self) -> &'static str {
        match self {
            Kind::Int8 => "bigint",
            Kind::Int4 | Kind::Port => "integer",
            Kind::Int2 => "smallint",
            Kind::Real => "real",
            Kind::Bool => "boolean",
            Kind::Text | Kind::UriUser => "text",
            Kind::TimeNs => "timestamptz",
            Kind::Inet => "inet",
            Kind::InetList => "inet[]",
            Kind::TextList => "text[]",
            Kind::Json => "jsonb",
        }
    }

    pub fn pg_type(self) -> Type {
        match self {
            Kind::Int8 => Type::INT8,
            Kind::Int4 | Kind::Port => Type::INT4,
            Kind::Int2 => Type::INT2,
            Kind::Real => Type::FLOAT4,
            Kind::Bool => Type::BOOL,
            Kind::Text | Kind::UriUser => Type::TEXT,
            Kind::TimeNs => Type::TIMESTAMPTZ,
            Kind::Inet => Type::INET,
            Kind::InetList => Type::INET_ARRAY,
            Kind::TextList => Type::TEXT_ARRAY,
            Kind::Json => Type::JSONB,
        }
    }
}

/// One central column and the SQLite expression that fills it.
#[derive(Clone, Copy, Debug)]
pub struct Col {
    pub central: &'static str,
    pub kind: Kind,
    pub local: &'static str,
}

const fn col(central: &'static str, kind: Kind, local: &'static str) -> Col {
    Col {
        central,
        kind,
        local,
    }
}

/// A central table and how to read a batch of its rows locally.
#[derive(Clone, Copy, Debug)]
pub struct TableMap {
    pub central: &'static str,
    pub cols: &'static [Col],
    /// `FROM ... WHERE ...` with `?1` < call id <= `?2`; None while the
    /// local index has no source for the table.
    pub from: Option<&'static str>,
}

impl TableMap {
    /// The SQLite query of one batch.
    pub fn local_sql(&self) -> Option<String> {
        let from = self.from?;
        let exprs: Vec<&str> = self.cols.iter().map(|c| c.local).collect();
        Some(format!("SELECT {} {from}", exprs.join(", ")))
    }

    pub fn central_cols(&self) -> String {
        let names: Vec<&str> = self.cols.iter().map(|c| c.central).collect();
        names.join(", ")
    }

    /// The sensor's session-local staging table for this map (it cannot
    /// `CREATE TABLE ... AS SELECT` from a table it may not read).
    pub fn stage_ddl(&self) -> String {
        let cols: Vec<String> = self
            .cols
            .iter()
            .map(|c| format!("{} {}", c.central, c.kind.sql_type()))
            .collect();
        format!(
            "CREATE TEMP TABLE IF NOT EXISTS stage_{} ({}) ON COMMIT DELETE ROWS",
            self.central,
            cols.join(", ")
        )
    }

    pub fn types(&self) -> Vec<Type> {
        self.cols.iter().map(|c| c.kind.pg_type()).collect()
    }
}

use Kind::*;

/// The IP part of a stream's or message's `ip:port` (IPv6 keeps its
/// brackets, which [`Kind::Inet`] accepts).
macro_rules! ip_of {
    ($e:literal) => {
        concat!("rtrim(rtrim(", $e, ", '0123456789'), ':')")
    };
}

/// A stream sent from the first SIP message's source address ("fwd").
macro_rules! fwd {
    () => {
        concat!(
            ip_of!("s.src"),
            " = (SELECT ",
            ip_of!("m.src"),
            " FROM sip_messages m WHERE m.call = c.id ORDER BY m.seq LIMIT 1)"
        )
    };
}

macro_rules! per_dir {
    ($agg:literal, $dir:literal) => {
        concat!(
            "(SELECT ",
            $agg,
            " FROM streams s WHERE s.call = c.id AND ",
            $dir,
            "(",
            fwd!(),
            "))"
        )
    };
}

pub const CALLS: TableMap = TableMap {
    central: "calls",
    from: Some("FROM calls c WHERE c.id > ?1 AND c.id <= ?2"),
    cols: &[
        col("local_id", Int8, "c.id"),
        col("call_id", Text, "c.call_id"),
        col("call_group", Text, "NULL"), // waiting: Call model
        col("method", Text, "c.method"),
        col("start_at", TimeNs, "c.start_ns"),
        col("ringing_at", TimeNs, "c.ringing_ns"),
        col("answer_at", TimeNs, "c.answer_ns"),
        col("end_at", TimeNs, "c.end_ns"),
        col("duration_ms", Int8, "c.duration_ms"),
        col("talk_ms", Int8, "c.talk_ms"),
        col("from_user", Text, "c.from_user"),
        col("to_user", Text, "c.to_user"),
        col("from_uri", Text, "c.from_uri"),
        col("to_uri", Text, "c.to_uri"),
        col("request_uri", Text, "c.request_uri"),
        col("ruri_user", UriUser, "c.request_uri"),
        col("state", Text, "c.state"),
        col("status_code", Int2, "c.status_code"),
        col("end_reason", Text, "c.end_reason"),
        col("sip_packets", Int8, "c.sip_packets"),
        col("rtp_packets", Int8, "c.rtp_packets"),
        col("rtcp_packets", Int8, "c.rtcp_packets"),
        col("stream_count", Int2, "c.stream_count"),
        col(
            "sig_src",
            Inet,
            "(SELECT m.src FROM sip_messages m WHERE m.call = c.id ORDER BY m.seq LIMIT 1)",
        ),
        col(
            "sig_dst",
            Inet,
            "(SELECT m.dst FROM sip_messages m WHERE m.call = c.id ORDER BY m.seq LIMIT 1)",
        ),
        col(
            "ips",
            InetList,
            "(SELECT group_concat(ip, ',') FROM call_ips WHERE call = c.id)",
        ),
        col(
            "codecs",
            TextList,
            "(SELECT group_concat(DISTINCT codec) FROM streams WHERE call = c.id)",
        ),
        col("mos", Real, "c.mos"),
        col("mos_fwd", Real, per_dir!("min(s.mos)", "")),
        col("mos_rev", Real, per_dir!("min(s.mos)", "NOT ")),
        col(
            "loss_fwd",
            Real,
            per_dir!(
                "CAST(sum(max(s.lost, 0)) AS REAL) / nullif(sum(s.expected), 0)",
                ""
            ),
        ),
        col(
            "loss_rev",
            Real,
            per_dir!(
                "CAST(sum(max(s.lost, 0)) AS REAL) / nullif(sum(s.expected), 0)",
                "NOT "
            ),
        ),
        col("jitter_fwd", Real, per_dir!("max(s.max_jitter_ms)", "")),
        col("jitter_rev", Real, per_dir!("max(s.max_jitter_ms)", "NOT ")),
        col("capture_loss", Int8, "c.capture_loss"),
        col("encap", Text, "c.outer_path"),
        col("folder", Text, "c.folder"),
        col("pcap", Text, "c.pcap"),
        col(
            "fax_at",
            TimeNs,
            "(SELECT turned_ns FROM fax WHERE call = c.id)",
        ),
        col("sip_oversized", Int8, "c.sip_oversized"),
        col("sip_truncated", Int8, "c.sip_truncated"),
        col("encrypted_signalling", Text, "c.encrypted_signalling"),
        col("indexed_at", TimeNs, "c.indexed_at"),
        col("version", Int8, "?3"),
        // The dashboards' figures (central migration 4, rollups.rs).
        col("trunk", Text, "c.trunk"),
        col("codec", Text, "c.codec"),
        col("one_way", Bool, "c.one_way"),
        col(
            "rtp_lost",
            Int8,
            "(SELECT sum(max(s.lost, 0)) FROM streams s WHERE s.call = c.id)",
        ),
        col(
            "rtp_expected",
            Int8,
            "(SELECT sum(s.expected) FROM streams s WHERE s.call = c.id)",
        ),
    ],
};

pub const STREAMS: TableMap = TableMap {
    central: "streams",
    from: Some("FROM streams s JOIN calls c ON c.id = s.call WHERE s.call > ?1 AND s.call <= ?2"),
    cols: &[
        col("call_start", TimeNs, "c.start_ns"),
        col("call_id", Text, "c.call_id"),
        col(
            "ordinal",
            Int2,
            "row_number() OVER (PARTITION BY s.call ORDER BY s.id) - 1",
        ),
        col("ssrc", Int8, "s.ssrc"),
        col("src_ip", Inet, "s.src"),
        col("src_port", Port, "s.src"),
        col("dst_ip", Inet, "s.dst"),
        col("dst_port", Port, "s.dst"),
        col("payload_type", Int2, "s.payload_type"),
        col("codec", Text, "s.codec"),
        col("first_at", TimeNs, "s.first_ns"),
        col("last_at", TimeNs, "s.last_ns"),
        col("packets", Int8, "s.packets"),
        col("expected", Int8, "s.expected"),
        col("lost", Int8, "s.lost"),
        col("out_of_order", Int8, "s.out_of_order"),
        col("duplicates", Int8, "s.duplicates"),
        col("jitter_ms", Real, "s.jitter_ms"),
        col("max_jitter_ms", Real, "s.max_jitter_ms"),
        col("max_delta_ms", Real, "s.max_delta_ms"),
        col("ptime_ms", Real, "s.ptime_ms"),
        col("rtcp_reports", Int4, "s.rtcp_reports"),
        col("rtcp_fraction_lost", Int2, "s.rtcp_fraction_lost"),
        col("rtcp_cumulative_lost", Int4, "s.rtcp_cumulative_lost"),
        col("rtcp_jitter_ms", Real, "s.rtcp_jitter_ms"),
        col("mos", Real, "s.mos"),
        col("decoded", Bool, "s.audio_decodable"),
        col("audio_reason", Text, "s.audio_reason"),
        col("version", Int8, "?3"),
    ],
};

pub const LEGS: TableMap = TableMap {
    central: "legs",
    from: Some(
        "FROM legs l JOIN calls c ON c.id = l.call JOIN calls o ON o.id = l.other_call \
         WHERE l.call > ?1 AND l.call <= ?2",
    ),
    cols: &[
        col("call_start", TimeNs, "c.start_ns"),
        col("call_id", Text, "c.call_id"),
        col("other_call_id", Text, "o.call_id"),
        col("other_start", TimeNs, "o.start_ns"),
        col("method", Text, "l.method"),
        col("confidence", Real, "l.confidence"),
        col("detail", Text, "l.detail"),
    ],
};

pub const CALL_SIP: TableMap = TableMap {
    central: "call_sip",
    from: Some("FROM calls c WHERE c.id > ?1 AND c.id <= ?2"),
    cols: &[
        col("call_start", TimeNs, "c.start_ns"),
        col("call_id", Text, "c.call_id"),
        col(
            "messages",
            Json,
            "(SELECT coalesce(json_group_array(json_object('ts_ns', ts_ns, 'src', src, 'dst', dst, \
             'transport', transport, 'summary', summary, 'text', text)), '[]') \
             FROM (SELECT * FROM sip_messages WHERE call = c.id ORDER BY seq))",
        ),
        col(
            "dtmf",
            Json,
            "(SELECT coalesce(json_group_array(json_object('ts_ns', ts_ns, 'digit', digit, \
             'duration_ms', duration_ms, 'source', source)), '[]') \
             FROM (SELECT * FROM dtmf WHERE call = c.id ORDER BY ts_ns))",
        ),
        col("version", Int8, "?3"),
    ],
};

/// A fax call's UDPTL streams (central migration 5), in the order the
/// sensor recorded them; written once with the call, never changed.
pub const CALL_FAX: TableMap = TableMap {
    central: "call_fax",
    from: Some(
        "FROM fax_streams f JOIN calls c ON c.id = f.call WHERE f.call > ?1 AND f.call <= ?2",
    ),
    cols: &[
        col("call_start", TimeNs, "c.start_ns"),
        col("call_id", Text, "c.call_id"),
        col(
            "ordinal",
            Int2,
            "row_number() OVER (PARTITION BY f.call ORDER BY f.rowid) - 1",
        ),
        col("src", Text, "f.src"),
        col("dst", Text, "f.dst"),
        col("first_at", TimeNs, "f.first_ns"),
        col("last_at", TimeNs, "f.last_ns"),
        col("packets", Int8, "f.packets"),
        col("expected", Int8, "f.expected"),
        col("lost", Int8, "f.lost"),
        col("late", Int8, "f.late"),
        col("bytes", Int8, "f.bytes"),
    ],
};

/// RTP no SIP claimed (the local `media_streams`, central migration 5):
/// shipped by their own local id (`?1` < id <= `?2`), once; the partition
/// key is the stream's first packet (its indexing time when it has none).
pub const MEDIA_STREAMS: TableMap = TableMap {
    central: "media_streams",
    from: Some("FROM media_streams m WHERE m.id > ?1 AND m.id <= ?2"),
    cols: &[
        col("first_at", TimeNs, "coalesce(m.first_ns, m.indexed_at)"),
        col("local_id", Int8, "m.id"),
        col("last_at", TimeNs, "m.last_ns"),
        col("folder", Text, "m.folder"),
        col("ssrc", Int8, "m.ssrc"),
        col("src", Text, "m.src"),
        col("dst", Text, "m.dst"),
        col("payload_type", Int2, "m.payload_type"),
        col("codec", Text, "m.codec"),
        col("packets", Int8, "m.packets"),
        col("expected", Int8, "m.expected"),
        col("lost", Int8, "m.lost"),
        col("jitter_ms", Real, "m.jitter_ms"),
        col("max_jitter_ms", Real, "m.max_jitter_ms"),
        col("max_delta_ms", Real, "m.max_delta_ms"),
        col("mos", Real, "m.mos"),
        col("indexed_at", TimeNs, "m.indexed_at"),
    ],
};

/// Registration bindings: the local table is the latest snapshot, one row
/// per (address of record, contact, client) since its first REGISTER.
pub const REGISTRATIONS: TableMap = TableMap {
    central: "registrations",
    from: Some("FROM registrations r"),
    cols: &[
        col("first_at", TimeNs, "r.first_ns"),
        col("last_at", TimeNs, "r.last_ns"),
        col("user_name", Text, "r.user"),
        col("aor", Text, "r.aor"),
        col("contact", Text, "r.contact"),
        col("client", Text, "r.client"),
        col("client_ip", Inet, "r.client_ip"),
        col("registrar", Text, "r.registrar"),
        col("outcome", Text, "r.outcome"),
        col("last_status", Int2, "r.last_status"),
        col("expires", Int4, "r.expires"),
        col("requests", Int8, "r.requests"),
        col("registered", Int8, "r.registered"),
        col("refreshes", Int8, "r.refreshes"),
        col("challenges", Int8, "r.challenges"),
        col("failures", Int8, "r.failures"),
        col("unanswered", Int8, "r.unanswered"),
        col("call_id", Text, "r.call_id"),
        col("version", Int8, "?1"),
    ],
};

/// OPTIONS pings and CRLF keep-alives per pair of peers (a snapshot too).
pub const PINGS: TableMap = TableMap {
    central: "pings",
    from: Some("FROM pings p"),
    cols: &[
        col("first_at", TimeNs, "p.first_ns"),
        col("last_at", TimeNs, "p.last_ns"),
        col("src", Text, "p.src"),
        col("dst", Text, "p.dst"),
        col("src_ip", Inet, "p.src"),
        col("dst_ip", Inet, "p.dst"),
        col("pings", Int8, "p.pings"),
        col("requests", Int8, "p.requests"),
        col("responses", Int8, "p.responses"),
        col("codes", Text, "p.codes"),
        col("unanswered", Int8, "p.unanswered"),
        col("loss_pct", Real, "p.loss_pct"),
        col("rtt_avg_ms", Real, "p.rtt_avg_ms"),
        col("rtt_max_ms", Real, "p.rtt_max_ms"),
        col("keepalives", Int8, "p.keepalives"),
        col("version", Int8, "?1"),
    ],
};

/// Shipped per batch of calls, in this order (a call's children after it).
pub const PER_CALL: [TableMap; 5] = [CALLS, STREAMS, LEGS, CALL_SIP, CALL_FAX];

/// What a changed call re-sends over its central rows (legs only add).
pub const RESENT: [&str; 3] = ["calls", "streams", "call_sip"];

/// The snapshots shipped when they change, not per call.
pub const NONCALL: [TableMap; 2] = [REGISTRATIONS, PINGS];

/// The local columns of `m` that its rows copy as they are (`alias.col`),
/// which the shipper watches for changes after a call was shipped.
pub fn plain_columns(m: &TableMap, alias: &str) -> Vec<&'static str> {
    m.cols
        .iter()
        .filter_map(|c| c.local.strip_prefix(alias)?.strip_prefix('.'))
        .filter(|n| n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .fold(Vec::new(), |mut v, n| {
            if !v.contains(&n) {
                v.push(n);
            }
            v
        })
}

/// The call files confirmed in S3, from the upload queue (`up.queue`,
/// attached) joined to their call by folder: `?1` = uploaded since (ms),
/// `?2`..`?5` = the upload configuration's endpoint, region, bucket,
/// path style. `q.path` is `<folder>/<file>` (call folders are one level).
pub const CALL_FILES: TableMap = TableMap {
    central: "call_files",
    from: Some(
        "FROM up.queue q JOIN calls c ON c.folder = substr(q.path, 1, instr(q.path, '/') - 1) \
         WHERE q.kind = 'call' AND q.state = 'uploaded' AND q.uploaded_ms >= ?1 AND q.sha256 IS NOT NULL",
    ),
    cols: &[
        col("call_start", TimeNs, "c.start_ns"),
        col("call_id", Text, "c.call_id"),
        col("name", Text, "substr(q.path, instr(q.path, '/') + 1)"),
        col("endpoint", Text, "?2"),
        col("region", Text, "?3"),
        col("bucket", Text, "?4"),
        col("path_style", Bool, "?5"),
        col("key", Text, "q.key"),
        col("bytes", Int8, "q.bytes"),
        col("sha256", Text, "q.sha256"),
        col("uploaded_at", TimeNs, "q.uploaded_ms * 1000000"),
    ],
};

/// A value on its way to the central index.
#[derive(Clone, Debug, PartialEq)]
pub enum Val {
    Null,
    I64(i64),
    I32(i32),
    I16(i16),
    F32(f32),
    Bool(bool),
    Text(String),
    Time(SystemTime),
    Inet(IpAddr),
    Inets(Vec<IpAddr>),
    Texts(Vec<String>),
    /// JSON text, sent as jsonb (version byte 1 + text).
    Json(String),
}

/// `ip`, `ip:port`, `[v6]:port` or `[v6]`.
pub fn parse_ip(s: &str) -> Option<IpAddr> {
    let s = s.trim();
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    s.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .ok()
}

/// The user part of a SIP URI (`sip:1234@host;x` -> `1234`), as the local
/// index's party search derives it.
pub fn uri_user(uri: &str) -> &str {
    let Some(rest) = uri
        .strip_prefix("sips:")
        .or_else(|| uri.strip_prefix("sip:"))
        .or_else(|| uri.strip_prefix("tel:"))
    else {
        return "";
    };
    let end = rest.find(['@', ';', '?', '>']).unwrap_or(rest.len());
    &rest[..end]
}

impl Val {
    /// Converts one SQLite value by `kind`; a value that does not convert
    /// (a malformed address) becomes NULL rather than stopping the shipper.
    pub fn from_local(kind: Kind, v: ValueRef<'_>) -> Val {
        let int = match v {
            ValueRef::Integer(i) => Some(i),
            ValueRef::Real(f) => Some(f as i64),
            _ => None,
        };
        let text = match v {
            ValueRef::Text(t) => std::str::from_utf8(t).ok(),
            _ => None,
        };
        let or_null = |o: Option<Val>| o.unwrap_or(Val::Null);
        match kind {
            Int8 => or_null(int.map(Val::I64)),
            Int4 => {
                or_null(int.map(|i| Val::I32(i.clamp(i32::MIN.into(), i32::MAX.into()) as i32)))
            }
            Int2 => {
                or_null(int.map(|i| Val::I16(i.clamp(i16::MIN.into(), i16::MAX.into()) as i16)))
            }
            Bool => or_null(int.map(|i| Val::Bool(i != 0))),
            Real => match v {
                ValueRef::Real(f) => Val::F32(f as f32),
                ValueRef::Integer(i) => Val::F32(i as f32),
                _ => Val::Null,
            },
            Text => or_null(text.map(|t| Val::Text(t.to_string()))),
            UriUser => Val::Text(text.map(uri_user).unwrap_or("").to_string()),
            TimeNs => or_null(
                int.map(|ns| Val::Time(UNIX_EPOCH + Duration::from_nanos(ns.max(0) as u64))),
            ),
            Inet => or_null(text.and_then(parse_ip).map(Val::Inet)),
            Port => or_null(
                text.and_then(|t| t.parse::<SocketAddr>().ok())
                    .map(|sa| Val::I32(i32::from(sa.port()))),
            ),
            InetList => Val::Inets(text.unwrap_or("").split(',').filter_map(parse_ip).collect()),
            TextList => Val::Texts(
                text.unwrap_or("")
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect(),
            ),
            // jsonb refuses the NUL character that a SIP text may hold.
            Json => Val::Json(text.unwrap_or("[]").replace("\\u0000", "\\ufffd")),
        }
    }
}

impl ToSql for Val {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Val::Null => Ok(IsNull::Yes),
            Val::I64(v) => v.to_sql(ty, out),
            Val::I32(v) => v.to_sql(ty, out),
            Val::I16(v) => v.to_sql(ty, out),
            Val::F32(v) => v.to_sql(ty, out),
            Val::Bool(v) => v.to_sql(ty, out),
            Val::Text(v) => v.to_sql(ty, out),
            Val::Time(v) => v.to_sql(ty, out),
            Val::Inet(v) => v.to_sql(ty, out),
            Val::Inets(v) => v.to_sql(ty, out),
            Val::Texts(v) => v.to_sql(ty, out),
            Val::Json(s) => {
                out.put_u8(1);
                out.extend_from_slice(s.as_bytes());
                Ok(IsNull::No)
            }
        }
    }

    fn accepts(_: &Type) -> bool {
        // The column types come from the mapping, which picked the variant.
        true
    }

    to_sql_checked!();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        let t = |s: &'static str| ValueRef::Text(s.as_bytes());
        assert_eq!(
            Val::from_local(Inet, t("10.0.0.1:5060")),
            Val::Inet("10.0.0.1".parse().unwrap())
        );
        assert_eq!(
            Val::from_local(Inet, t("[2001:db8::1]")),
            Val::Inet("2001:db8::1".parse().unwrap())
        );
        assert_eq!(Val::from_local(Port, t("[::1]:5004")), Val::I32(5004));
        assert_eq!(Val::from_local(Inet, t("garbage")), Val::Null);
        assert_eq!(
            Val::from_local(InetList, t("10.0.0.1,::1")),
            Val::Inets(vec!["10.0.0.1".parse().unwrap(), "::1".parse().unwrap()])
        );
        assert_eq!(
            Val::from_local(UriUser, t("sip:4930123@h;user=phone")),
            Val::Text("4930123".into())
        );
        assert_eq!(
            Val::from_local(UriUser, ValueRef::Null),
            Val::Text("".into())
        );
        assert_eq!(
            Val::from_local(TimeNs, ValueRef::Integer(1_500)),
            Val::Time(UNIX_EPOCH + Duration::from_nanos(1_500))
        );
        assert_eq!(
            Val::from_local(Int2, ValueRef::Integer(70_000)),
            Val::I16(i16::MAX)
        );
        assert_eq!(Val::from_local(Text, ValueRef::Null), Val::Null);
    }

    /// Every mapped query runs against a fresh local index (the columns it
    /// names exist), and the directions' IP rule compares IPs, not ports.
    #[test]
    fn local_queries_prepare() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.sqlite");
        drop(voxtap_engine::index::Index::open(&path).unwrap());
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "ATTACH ':memory:' AS up; CREATE TABLE up.queue (kind, state, path, key, bytes, sha256, uploaded_ms);",
        )
        .unwrap();
        for m in PER_CALL
            .iter()
            .chain(&NONCALL)
            .chain([&CALL_FILES, &MEDIA_STREAMS])
        {
            if let Some(sql) = m.local_sql() {
                conn.prepare(&sql)
                    .unwrap_or_else(|e| panic!("{}: {e}\n{sql}", m.central));
            }
        }
        let ip: String = conn
            .query_row(&format!("SELECT {}", ip_of!("'[::1]:5004'")), [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(ip, "[::1]");
    }
}
