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
    // 2: whether this build decodes a stream's codec, and why not (the
    // call page's "Audio" column). NULL in rows indexed before.
    r#"
ALTER TABLE streams ADD COLUMN audio_decodable INTEGER;
ALTER TABLE streams ADD COLUMN audio_reason TEXT;
"#,
    // 3: the call model: why legs were linked, T.38 fax, media without
    // signalling, and the SIP that is not a call (registrations, pings).
    r#"
ALTER TABLE legs ADD COLUMN detail TEXT;

-- When an offer/answer turned a call into T.38 fax, and its UDPTL streams.
CREATE TABLE fax (
    call      INTEGER PRIMARY KEY REFERENCES calls(id) ON DELETE CASCADE,
    turned_ns INTEGER NOT NULL
);
CREATE TABLE fax_streams (
    call      INTEGER NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
    src       TEXT NOT NULL,
    dst       TEXT NOT NULL,
    first_ns  INTEGER NOT NULL,
    last_ns   INTEGER NOT NULL,
    packets   INTEGER NOT NULL,
    expected  INTEGER NOT NULL,
    lost      INTEGER NOT NULL,
    late      INTEGER NOT NULL,
    bytes     INTEGER NOT NULL
);
CREATE INDEX fax_streams_call ON fax_streams(call);

-- RTP no SIP claimed: one row per stream, grouped by the folder of its
-- record (a pair of endpoints).
CREATE TABLE media_streams (
    id              INTEGER PRIMARY KEY,
    folder          TEXT,
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
    jitter_ms       REAL NOT NULL,
    max_jitter_ms   REAL NOT NULL,
    max_delta_ms    REAL NOT NULL,
    mos             REAL,
    indexed_at      INTEGER NOT NULL
);
CREATE INDEX media_streams_first ON media_streams(first_ns);

-- One row per registration binding (address of record, contact), as the
-- latest import or sensor snapshot left it.
CREATE TABLE registrations (
    id          INTEGER PRIMARY KEY,
    user        TEXT NOT NULL,
    aor         TEXT NOT NULL,
    contact     TEXT NOT NULL,
    client      TEXT NOT NULL,
    client_ip   TEXT NOT NULL,
    registrar   TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    last_status INTEGER,
    expires     INTEGER,
    requests    INTEGER NOT NULL,
    registered  INTEGER NOT NULL,
    refreshes   INTEGER NOT NULL,
    challenges  INTEGER NOT NULL,
    failures    INTEGER NOT NULL,
    unanswered  INTEGER NOT NULL,
    first_ns    INTEGER NOT NULL,
    last_ns     INTEGER NOT NULL,
    call_id     TEXT NOT NULL
);
CREATE INDEX registrations_user ON registrations(user);
CREATE INDEX registrations_client_ip ON registrations(client_ip);

-- Keep-alives per pair of peers (who pings whom).
CREATE TABLE pings (
    src          TEXT NOT NULL,
    dst          TEXT NOT NULL,
    pings        INTEGER NOT NULL,
    requests     INTEGER NOT NULL,
    responses    INTEGER NOT NULL,
    codes        TEXT NOT NULL,
    unanswered   INTEGER NOT NULL,
    loss_pct     REAL NOT NULL,
    rtt_avg_ms   REAL,
    rtt_max_ms   REAL,
    keepalives   INTEGER NOT NULL,
    first_ns     INTEGER NOT NULL,
    last_ns      INTEGER NOT NULL,
    PRIMARY KEY (src, dst)
) WITHOUT ROWID;
"#,
    // 4: SIP messages past the limits a SIP stack takes (attributed anyway)
    // and SIP messages whose text was not kept (over the call's SIP budget).
    r#"
ALTER TABLE calls ADD COLUMN sip_oversized INTEGER NOT NULL DEFAULT 0;
ALTER TABLE calls ADD COLUMN sip_truncated INTEGER NOT NULL DEFAULT 0;
"#,
    // 5: how the signalling was protected: '' (clear), 'tls (decrypted)',
    // or 'tls (not decrypted: why)' for a TLS connection listed in place of
    // the calls it hid.
    r#"
ALTER TABLE calls ADD COLUMN encrypted_signalling TEXT NOT NULL DEFAULT '';
"#,
    // 6: the encapsulations a call's SIP came in (`erspan(7)/vlan(100)`).
    r#"
ALTER TABLE calls ADD COLUMN outer_path TEXT NOT NULL DEFAULT '';
"#,
    // 7: dashboards. Per call: its trunk (the first `trunks` rule it
    // matches), main codec, whether its media flowed one way only, and the
    // packets the sensor lost while it was open; per minute (of the call's
    // start) x trunk x codec: the counts ASR, ACD, NER, PDD, the response
    // mix, the MOS histogram and loss are summed from, kept as calls are
    // indexed (rollup.rs), never recomputed per view.
    r#"
ALTER TABLE calls ADD COLUMN trunk TEXT NOT NULL DEFAULT '';
ALTER TABLE calls ADD COLUMN codec TEXT NOT NULL DEFAULT '';
ALTER TABLE calls ADD COLUMN one_way INTEGER NOT NULL DEFAULT 0;
ALTER TABLE calls ADD COLUMN capture_loss INTEGER NOT NULL DEFAULT 0;
UPDATE calls SET codec = coalesce(
    (SELECT codec FROM streams WHERE streams.call = calls.id ORDER BY packets DESC, id LIMIT 1), '');
CREATE INDEX calls_trunk_start ON calls(trunk, start_ns);
CREATE INDEX calls_codec_start ON calls(codec, start_ns);

-- The trunk groups calls are classified by (written from the web config's
-- [[trunks]]); prefixes are space separated.
CREATE TABLE trunks (
    pos             INTEGER PRIMARY KEY,
    name            TEXT NOT NULL,
    ip_prefixes     TEXT NOT NULL,
    number_prefixes TEXT NOT NULL
);

CREATE TABLE rollup_minute (
    minute        INTEGER NOT NULL,   -- start_ns / 60e9
    trunk         TEXT NOT NULL,
    codec         TEXT NOT NULL,
    attempts      INTEGER NOT NULL DEFAULT 0,
    answered      INTEGER NOT NULL DEFAULT 0,
    ner_ok        INTEGER NOT NULL DEFAULT 0,
    answered_ms   INTEGER NOT NULL DEFAULT 0,
    pdd_ms        INTEGER NOT NULL DEFAULT 0,
    pdd_n         INTEGER NOT NULL DEFAULT 0,
    r_none        INTEGER NOT NULL DEFAULT 0,
    r1 INTEGER NOT NULL DEFAULT 0, r2 INTEGER NOT NULL DEFAULT 0,
    r3 INTEGER NOT NULL DEFAULT 0, r4 INTEGER NOT NULL DEFAULT 0,
    r5 INTEGER NOT NULL DEFAULT 0, r6 INTEGER NOT NULL DEFAULT 0,
    c404 INTEGER NOT NULL DEFAULT 0, c408 INTEGER NOT NULL DEFAULT 0,
    c480 INTEGER NOT NULL DEFAULT 0, c486 INTEGER NOT NULL DEFAULT 0,
    c487 INTEGER NOT NULL DEFAULT 0, c503 INTEGER NOT NULL DEFAULT 0,
    -- MOS (the call's worst stream): none, <2, 2-3, 3-3.5, 3.5-4, >=4.
    mos_none INTEGER NOT NULL DEFAULT 0,
    mos1 INTEGER NOT NULL DEFAULT 0, mos2 INTEGER NOT NULL DEFAULT 0,
    mos3 INTEGER NOT NULL DEFAULT 0, mos4 INTEGER NOT NULL DEFAULT 0,
    mos5 INTEGER NOT NULL DEFAULT 0,
    one_way       INTEGER NOT NULL DEFAULT 0,
    capture_loss  INTEGER NOT NULL DEFAULT 0,
    rtp_lost      INTEGER NOT NULL DEFAULT 0,
    rtp_expected  INTEGER NOT NULL DEFAULT 0,
    -- Milliseconds of calls in progress within this minute (of every call
    -- overlapping it, whenever it started): / 60000 = mean concurrent calls.
    active_ms     INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (minute, trunk, codec)
) WITHOUT ROWID;
"#,
];
