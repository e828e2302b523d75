//! The index schema as ordered migrations. `PRAGMA user_version` holds how
//! many have been applied; a migration is never edited once released, a
//! schema change is a new entry at the end.

/// Migration `i` brings the schema from version `i` to `i + 1`.
pub(crate) const MIGRATIONS: &[&str] = &[
    // 1: calls and everything hanging off them.
    r#"
CREATE TABLE calls (
    id            INTEGER PRIMARY KEY,
    call_id       TEXT NOT NULL,
    method        TEXT NOT NULL,
    from_user     TEXT NOT NULL,
    to_user       TEXT NOT NULL,
    from_uri      TEXT NOT NULL,
    to_uri        TEXT NOT NULL,
    request_uri   TEXT NOT NULL,
    start_ns      INTEGER NOT NULL,
    ringing_ns    INTEGER,
    answer_ns     INTEGER,
    end_ns        INTEGER NOT NULL,
    duration_ms   INTEGER NOT NULL,
    talk_ms       INTEGER,
    state         TEXT NOT NULL,
    status_code   INTEGER,
    end_reason    TEXT,
    sip_packets   INTEGER NOT NULL,
    rtp_packets   INTEGER NOT NULL,
    rtcp_packets  INTEGER NOT NULL,
    stream_count  INTEGER NOT NULL,
    -- Worst stream MOS; NULL until the media work computes it.
    mos           REAL,
    -- Relative to the directory holding index.sqlite; NULL when the
    -- import wrote only the CSV files.
    folder        TEXT,
    pcap          TEXT,
    indexed_at    INTEGER NOT NULL
);
CREATE INDEX calls_start ON calls(start_ns);
CREATE INDEX calls_call_id ON calls(call_id);
CREATE INDEX calls_state_start ON calls(state, start_ns);
CREATE INDEX calls_mos ON calls(mos);
CREATE INDEX calls_duration ON calls(duration_ms);

-- Every number and URI a call is known by (From/To user and URI, request
-- URI and its user part), so "find by number" is one index range scan
-- instead of five LIKEs over a million rows.
CREATE TABLE call_parties (
    call    INTEGER NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
    value   TEXT NOT NULL,
    PRIMARY KEY (value, call)
) WITHOUT ROWID;
CREATE INDEX call_parties_call ON call_parties(call);

-- Every IP a call's SIP or media used.
CREATE TABLE call_ips (
    call    INTEGER NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
    ip      TEXT NOT NULL,
    PRIMARY KEY (ip, call)
) WITHOUT ROWID;
CREATE INDEX call_ips_call ON call_ips(call);

CREATE TABLE sip_messages (
    call      INTEGER NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
    seq       INTEGER NOT NULL,
    ts_ns     INTEGER NOT NULL,
    src       TEXT NOT NULL,
    dst       TEXT NOT NULL,
    transport TEXT NOT NULL,
    summary   TEXT NOT NULL,
    text      TEXT NOT NULL,
    PRIMARY KEY (call, seq)
) WITHOUT ROWID;

CREATE TABLE streams (
    id              INTEGER PRIMARY KEY,
    call            INTEGER NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
    ssrc            INTEGER NOT NULL,
    src             TEXT NOT NULL,
    dst             TEXT NOT NULL,
    payload_type    INTEGER NOT NULL,
    codec           TEXT NOT NULL,
    first_ns        INTEGER,
    last_ns         INTEGER,
    packets         INTEGER NOT NULL,
    expected        INTEGER NOT NULL,
    lost            INTEGER NOT NULL,
    out_of_order    INTEGER NOT NULL,
    duplicates      INTEGER NOT NULL,
    jitter_ms       REAL NOT NULL,
    max_jitter_ms   REAL NOT NULL,
    max_delta_ms    REAL NOT NULL,
    ptime_ms        REAL,
    rtcp_reports    INTEGER NOT NULL,
    rtcp_fraction_lost INTEGER,
    rtcp_cumulative_lost INTEGER,
    rtcp_jitter_ms  REAL,
    mos             REAL
);
CREATE INDEX streams_call ON streams(call);

-- A B2BUA or SBC call is several dialogs (legs); leg linking fills this.
CREATE TABLE legs (
    call        INTEGER NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
    other_call  INTEGER NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
    -- How the link was found: "sdp-media", "x-header", "number-time"...
    method      TEXT NOT NULL,
    confidence  REAL,
    PRIMARY KEY (call, other_call)
) WITHOUT ROWID;
CREATE INDEX legs_other ON legs(other_call);

CREATE TABLE dtmf (
    call        INTEGER NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
    ts_ns       INTEGER NOT NULL,
    digit       TEXT NOT NULL,
    duration_ms INTEGER,
    -- "rfc4733", "sip-info" or "inband".
    source      TEXT NOT NULL,
    stream      INTEGER REFERENCES streams(id) ON DELETE CASCADE
);
CREATE INDEX dtmf_call ON dtmf(call);

-- Quality over time, per stream and interval.
CREATE TABLE quality (
    call        INTEGER NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
    stream      INTEGER REFERENCES streams(id) ON DELETE CASCADE,
    start_ns    INTEGER NOT NULL,
    end_ns      INTEGER NOT NULL,
    mos         REAL,
    r_factor    REAL,
    loss_pct    REAL,
    jitter_ms   REAL
);
CREATE INDEX quality_call ON quality(call);

-- Who looked at or downloaded which recording.
CREATE TABLE access_log (
    id       INTEGER PRIMARY KEY,
    ts_ns    INTEGER NOT NULL,
    user     TEXT NOT NULL,
    remote   TEXT NOT NULL,
    action   TEXT NOT NULL,
    call     INTEGER,
    detail   TEXT NOT NULL
);
CREATE INDEX access_log_ts ON access_log(ts_ns);
"#,
    // 2: shipping to a central index (voxtap-sensor's `central`): how far
    // each target has been sent (calls by id, uploaded files by time), and
    // the way from an uploaded file's folder back to its call.
    r#"
CREATE TABLE ship_marks (
    target        TEXT PRIMARY KEY,
    last_call     INTEGER NOT NULL,
    last_file_ms  INTEGER NOT NULL,
    updated_ns    INTEGER NOT NULL
);
CREATE INDEX calls_folder ON calls(folder);
"#,
];
