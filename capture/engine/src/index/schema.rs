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
    // 8: hourly rollups beside the minute ones, so a dashboard of whole
    // hours reads 60 times fewer rows. The counts follow `rollup_minute` by
    // triggers (every write path: a recorded call's row, a MOS moved, a
    // rebuild); the in-progress time (`active_ms`, up to a row per minute
    // of a call) is added to the hours by the index code, one write per
    // hour, not through a trigger per minute. A row with counts always has
    // `attempts` (a call adds 1). Rows are never re-keyed.
    r#"
CREATE TABLE rollup_hour (
    hour  INTEGER NOT NULL,   -- minute / 60
    trunk TEXT NOT NULL,
    codec TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, answered INTEGER NOT NULL DEFAULT 0,
    ner_ok INTEGER NOT NULL DEFAULT 0, answered_ms INTEGER NOT NULL DEFAULT 0,
    pdd_ms INTEGER NOT NULL DEFAULT 0, pdd_n INTEGER NOT NULL DEFAULT 0,
    r_none INTEGER NOT NULL DEFAULT 0, r1 INTEGER NOT NULL DEFAULT 0,
    r2 INTEGER NOT NULL DEFAULT 0, r3 INTEGER NOT NULL DEFAULT 0,
    r4 INTEGER NOT NULL DEFAULT 0, r5 INTEGER NOT NULL DEFAULT 0,
    r6 INTEGER NOT NULL DEFAULT 0, c404 INTEGER NOT NULL DEFAULT 0,
    c408 INTEGER NOT NULL DEFAULT 0, c480 INTEGER NOT NULL DEFAULT 0,
    c486 INTEGER NOT NULL DEFAULT 0, c487 INTEGER NOT NULL DEFAULT 0,
    c503 INTEGER NOT NULL DEFAULT 0, mos_none INTEGER NOT NULL DEFAULT 0,
    mos1 INTEGER NOT NULL DEFAULT 0, mos2 INTEGER NOT NULL DEFAULT 0,
    mos3 INTEGER NOT NULL DEFAULT 0, mos4 INTEGER NOT NULL DEFAULT 0,
    mos5 INTEGER NOT NULL DEFAULT 0, one_way INTEGER NOT NULL DEFAULT 0,
    capture_loss INTEGER NOT NULL DEFAULT 0, rtp_lost INTEGER NOT NULL DEFAULT 0,
    rtp_expected INTEGER NOT NULL DEFAULT 0, active_ms INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (hour, trunk, codec)
) WITHOUT ROWID;

INSERT INTO rollup_hour (hour, trunk, codec,
    attempts, answered, ner_ok, answered_ms, pdd_ms, pdd_n, r_none, r1, r2, r3, r4, r5,
    r6, c404, c408, c480, c486, c487, c503, mos_none, mos1, mos2, mos3, mos4, mos5,
    one_way, capture_loss, rtp_lost, rtp_expected, active_ms)
SELECT minute / 60, trunk, codec,
    sum(attempts), sum(answered), sum(ner_ok), sum(answered_ms), sum(pdd_ms),
    sum(pdd_n), sum(r_none), sum(r1), sum(r2), sum(r3), sum(r4), sum(r5), sum(r6),
    sum(c404), sum(c408), sum(c480), sum(c486), sum(c487), sum(c503), sum(mos_none),
    sum(mos1), sum(mos2), sum(mos3), sum(mos4), sum(mos5), sum(one_way),
    sum(capture_loss), sum(rtp_lost), sum(rtp_expected), sum(active_ms)
FROM rollup_minute GROUP BY minute / 60, trunk, codec;

CREATE TRIGGER rollup_minute_to_hour_insert AFTER INSERT ON rollup_minute
WHEN new.attempts <> 0 BEGIN
    INSERT INTO rollup_hour (hour, trunk, codec,
        attempts, answered, ner_ok, answered_ms, pdd_ms, pdd_n, r_none, r1, r2, r3, r4,
        r5, r6, c404, c408, c480, c486, c487, c503, mos_none, mos1, mos2, mos3, mos4,
        mos5, one_way, capture_loss, rtp_lost, rtp_expected)
    VALUES (new.minute / 60, new.trunk, new.codec,
        new.attempts, new.answered, new.ner_ok, new.answered_ms, new.pdd_ms, new.pdd_n,
        new.r_none, new.r1, new.r2, new.r3, new.r4, new.r5, new.r6, new.c404, new.c408,
        new.c480, new.c486, new.c487, new.c503, new.mos_none, new.mos1, new.mos2,
        new.mos3, new.mos4, new.mos5, new.one_way, new.capture_loss, new.rtp_lost,
        new.rtp_expected)
    ON CONFLICT (hour, trunk, codec) DO UPDATE SET
        attempts = attempts + excluded.attempts,
        answered = answered + excluded.answered, ner_ok = ner_ok + excluded.ner_ok,
        answered_ms = answered_ms + excluded.answered_ms,
        pdd_ms = pdd_ms + excluded.pdd_ms, pdd_n = pdd_n + excluded.pdd_n,
        r_none = r_none + excluded.r_none, r1 = r1 + excluded.r1, r2 = r2 + excluded.r2,
        r3 = r3 + excluded.r3, r4 = r4 + excluded.r4, r5 = r5 + excluded.r5,
        r6 = r6 + excluded.r6, c404 = c404 + excluded.c404, c408 = c408 + excluded.c408,
        c480 = c480 + excluded.c480, c486 = c486 + excluded.c486,
        c487 = c487 + excluded.c487, c503 = c503 + excluded.c503,
        mos_none = mos_none + excluded.mos_none, mos1 = mos1 + excluded.mos1,
        mos2 = mos2 + excluded.mos2, mos3 = mos3 + excluded.mos3,
        mos4 = mos4 + excluded.mos4, mos5 = mos5 + excluded.mos5,
        one_way = one_way + excluded.one_way,
        capture_loss = capture_loss + excluded.capture_loss,
        rtp_lost = rtp_lost + excluded.rtp_lost,
        rtp_expected = rtp_expected + excluded.rtp_expected;
END;

CREATE TRIGGER rollup_minute_to_hour_update AFTER UPDATE OF
    attempts, answered, ner_ok, answered_ms, pdd_ms, pdd_n, r_none, r1, r2, r3, r4, r5,
    r6, c404, c408, c480, c486, c487, c503, mos_none, mos1, mos2, mos3, mos4, mos5,
    one_way, capture_loss, rtp_lost, rtp_expected
ON rollup_minute BEGIN
    INSERT INTO rollup_hour (hour, trunk, codec,
        attempts, answered, ner_ok, answered_ms, pdd_ms, pdd_n, r_none, r1, r2, r3, r4,
        r5, r6, c404, c408, c480, c486, c487, c503, mos_none, mos1, mos2, mos3, mos4,
        mos5, one_way, capture_loss, rtp_lost, rtp_expected)
    VALUES (new.minute / 60, new.trunk, new.codec,
        new.attempts - old.attempts, new.answered - old.answered,
        new.ner_ok - old.ner_ok, new.answered_ms - old.answered_ms,
        new.pdd_ms - old.pdd_ms, new.pdd_n - old.pdd_n, new.r_none - old.r_none,
        new.r1 - old.r1, new.r2 - old.r2, new.r3 - old.r3, new.r4 - old.r4,
        new.r5 - old.r5, new.r6 - old.r6, new.c404 - old.c404, new.c408 - old.c408,
        new.c480 - old.c480, new.c486 - old.c486, new.c487 - old.c487,
        new.c503 - old.c503, new.mos_none - old.mos_none, new.mos1 - old.mos1,
        new.mos2 - old.mos2, new.mos3 - old.mos3, new.mos4 - old.mos4,
        new.mos5 - old.mos5, new.one_way - old.one_way,
        new.capture_loss - old.capture_loss, new.rtp_lost - old.rtp_lost,
        new.rtp_expected - old.rtp_expected)
    ON CONFLICT (hour, trunk, codec) DO UPDATE SET
        attempts = attempts + excluded.attempts,
        answered = answered + excluded.answered, ner_ok = ner_ok + excluded.ner_ok,
        answered_ms = answered_ms + excluded.answered_ms,
        pdd_ms = pdd_ms + excluded.pdd_ms, pdd_n = pdd_n + excluded.pdd_n,
        r_none = r_none + excluded.r_none, r1 = r1 + excluded.r1, r2 = r2 + excluded.r2,
        r3 = r3 + excluded.r3, r4 = r4 + excluded.r4, r5 = r5 + excluded.r5,
        r6 = r6 + excluded.r6, c404 = c404 + excluded.c404, c408 = c408 + excluded.c408,
        c480 = c480 + excluded.c480, c486 = c486 + excluded.c486,
        c487 = c487 + excluded.c487, c503 = c503 + excluded.c503,
        mos_none = mos_none + excluded.mos_none, mos1 = mos1 + excluded.mos1,
        mos2 = mos2 + excluded.mos2, mos3 = mos3 + excluded.mos3,
        mos4 = mos4 + excluded.mos4, mos5 = mos5 + excluded.mos5,
        one_way = one_way + excluded.one_way,
        capture_loss = capture_loss + excluded.capture_loss,
        rtp_lost = rtp_lost + excluded.rtp_lost,
        rtp_expected = rtp_expected + excluded.rtp_expected;
END;

CREATE TRIGGER rollup_minute_to_hour_delete AFTER DELETE ON rollup_minute BEGIN
    UPDATE rollup_hour SET
        attempts = attempts - old.attempts, answered = answered - old.answered,
        ner_ok = ner_ok - old.ner_ok, answered_ms = answered_ms - old.answered_ms,
        pdd_ms = pdd_ms - old.pdd_ms, pdd_n = pdd_n - old.pdd_n,
        r_none = r_none - old.r_none, r1 = r1 - old.r1, r2 = r2 - old.r2,
        r3 = r3 - old.r3, r4 = r4 - old.r4, r5 = r5 - old.r5, r6 = r6 - old.r6,
        c404 = c404 - old.c404, c408 = c408 - old.c408, c480 = c480 - old.c480,
        c486 = c486 - old.c486, c487 = c487 - old.c487, c503 = c503 - old.c503,
        mos_none = mos_none - old.mos_none, mos1 = mos1 - old.mos1,
        mos2 = mos2 - old.mos2, mos3 = mos3 - old.mos3, mos4 = mos4 - old.mos4,
        mos5 = mos5 - old.mos5, one_way = one_way - old.one_way,
        capture_loss = capture_loss - old.capture_loss,
        rtp_lost = rtp_lost - old.rtp_lost,
        rtp_expected = rtp_expected - old.rtp_expected,
        active_ms = active_ms - old.active_ms
    WHERE hour = old.minute / 60 AND trunk = old.trunk AND codec = old.codec;
END;
"#,
];
