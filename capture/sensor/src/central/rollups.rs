//! Fleet-wide dashboards: per-minute rollups in the central index (central
//! migration 4), the same sums as the sensor's own `rollup_minute`
//! (`capture/engine/src/index/rollup.rs`, docs/web.md "Dashboards") per
//! sensor, minute of the call's start, trunk and codec.
//!
//! They are kept by statement-level triggers on `calls`, from the rows a
//! statement really added (transition table: a call shipped twice adds
//! nothing twice) and, for an UPDATE (a changed call sent again), the old
//! rows subtracted and the new ones added; a DELETE subtracts. A dashboard sums rollup rows,
//! never calls. The triggers run as the owner, so sensors need no
//! privilege on the rollups; rows are keyed by sensor, so two sensors'
//! batches never touch the same row.
//!
//! `rollup_minute` is split by UTC day like every partitioned table of the
//! schema (`ensure_days` makes its days, retention drops them). A call's
//! in-progress time reaches minutes after its start day (at most 7 days,
//! as locally): the trigger makes those days of the rollups first.

/// The summed columns, in `voxtap_engine::index::Counts` field order: the
/// engine's own rollup table's.
pub use voxtap_engine::index::ROLLUP_COLS as COLS;

/// Central migration 4 (see [`super::schema::MIGRATIONS`]).
pub const MIGRATION_4: &str = r#"
-- What the sensor's index knows of a call for its dashboards (its trunk
-- group, main codec, one-way flag, RTP loss): shipped with the call.
ALTER TABLE voxtap.calls
    ADD COLUMN trunk text,
    ADD COLUMN codec text,
    ADD COLUMN one_way boolean,
    ADD COLUMN rtp_lost bigint,
    ADD COLUMN rtp_expected bigint;

CREATE TABLE voxtap.rollup_minute (
    sensor        smallint NOT NULL,
    minute        timestamptz NOT NULL,
    trunk         text NOT NULL,
    codec         text NOT NULL,
    attempts      bigint NOT NULL DEFAULT 0,
    answered      bigint NOT NULL DEFAULT 0,
    ner_ok        bigint NOT NULL DEFAULT 0,
    answered_ms   bigint NOT NULL DEFAULT 0,
    pdd_ms        bigint NOT NULL DEFAULT 0,
    pdd_n         bigint NOT NULL DEFAULT 0,
    r_none        bigint NOT NULL DEFAULT 0,
    r1            bigint NOT NULL DEFAULT 0,
    r2            bigint NOT NULL DEFAULT 0,
    r3            bigint NOT NULL DEFAULT 0,
    r4            bigint NOT NULL DEFAULT 0,
    r5            bigint NOT NULL DEFAULT 0,
    r6            bigint NOT NULL DEFAULT 0,
    c404          bigint NOT NULL DEFAULT 0,
    c408          bigint NOT NULL DEFAULT 0,
    c480          bigint NOT NULL DEFAULT 0,
    c486          bigint NOT NULL DEFAULT 0,
    c487          bigint NOT NULL DEFAULT 0,
    c503          bigint NOT NULL DEFAULT 0,
    mos_none      bigint NOT NULL DEFAULT 0,
    mos1          bigint NOT NULL DEFAULT 0,
    mos2          bigint NOT NULL DEFAULT 0,
    mos3          bigint NOT NULL DEFAULT 0,
    mos4          bigint NOT NULL DEFAULT 0,
    mos5          bigint NOT NULL DEFAULT 0,
    one_way       bigint NOT NULL DEFAULT 0,
    capture_loss  bigint NOT NULL DEFAULT 0,
    rtp_lost      bigint NOT NULL DEFAULT 0,
    rtp_expected  bigint NOT NULL DEFAULT 0,
    active_ms     bigint NOT NULL DEFAULT 0
) PARTITION BY RANGE (minute);
CREATE UNIQUE INDEX rollup_minute_key ON voxtap.rollup_minute (minute, sensor, trunk, codec);

-- One day's partition of the rollups (a call's in-progress time can reach
-- days the shipper did not make); only this table's: a trigger on `calls`
-- cannot add partitions to `calls` itself.
CREATE FUNCTION voxtap.ensure_rollup_day(d date) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, voxtap AS $f$
DECLARE
    part text := 'rollup_minute_' || to_char(d, 'YYYYMMDD');
BEGIN
    IF to_regclass(format('voxtap.%I', part)) IS NULL THEN
        PERFORM pg_advisory_xact_lock(7243001);
        BEGIN
            EXECUTE format('CREATE TABLE voxtap.%I PARTITION OF voxtap.rollup_minute FOR VALUES FROM (%L) TO (%L)',
                part, d::timestamp AT TIME ZONE 'UTC', (d + 1)::timestamp AT TIME ZONE 'UTC');
        EXCEPTION WHEN duplicate_table THEN
            NULL;
        END;
    END IF;
END $f$;

-- The statements that add (sign 1) or remove (-1) the INVITE calls of the
-- relation `src` (a trigger's transition table, or voxtap.calls) to or
-- from the rollups: the days they reach, their counts to their start
-- minute, their in-progress time to every minute they span (at most 7
-- days). Run by EXECUTE in the trigger functions themselves: a transition
-- table is visible only there (not in a function they call), and reading
-- it in place keeps a bulk INSERT's rows out of memory.
CREATE FUNCTION voxtap.rollup_statements(src text, sign integer) RETURNS text[]
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, voxtap AS $f$
SELECT ARRAY[
    format($q$SELECT voxtap.ensure_rollup_day(d) FROM (
        SELECT DISTINCT generate_series((c.start_at AT TIME ZONE 'UTC')::date,
                 (least(greatest(c.end_at, c.start_at), c.start_at + interval '7 days') AT TIME ZONE 'UTC')::date,
                 interval '1 day')::date AS d
        FROM %1$s c WHERE c.method = 'INVITE') x$q$, src),
    format($q$INSERT INTO voxtap.rollup_minute AS r (sensor, minute, trunk, codec,
        attempts, answered, ner_ok, answered_ms, pdd_ms, pdd_n,
        r_none, r1, r2, r3, r4, r5, r6, c404, c408, c480, c486, c487, c503,
        mos_none, mos1, mos2, mos3, mos4, mos5, one_way, capture_loss, rtp_lost, rtp_expected)
    SELECT sensor, minute, trunk, codec,
        %2$s * count(*), %2$s * sum(ans), %2$s * sum(ner), %2$s * sum(ans_ms), %2$s * sum(pdd), %2$s * sum(pdd_n),
        %2$s * count(*) FILTER (WHERE cls = 0), %2$s * count(*) FILTER (WHERE cls = 1), %2$s * count(*) FILTER (WHERE cls = 2),
        %2$s * count(*) FILTER (WHERE cls = 3), %2$s * count(*) FILTER (WHERE cls = 4), %2$s * count(*) FILTER (WHERE cls = 5),
        %2$s * count(*) FILTER (WHERE cls = 6),
        %2$s * count(*) FILTER (WHERE code = 404), %2$s * count(*) FILTER (WHERE code = 408), %2$s * count(*) FILTER (WHERE code = 480),
        %2$s * count(*) FILTER (WHERE code = 486), %2$s * count(*) FILTER (WHERE code = 487), %2$s * count(*) FILTER (WHERE code = 503),
        %2$s * count(*) FILTER (WHERE mos IS NULL), %2$s * count(*) FILTER (WHERE mos < 2), %2$s * count(*) FILTER (WHERE mos >= 2 AND mos < 3),
        %2$s * count(*) FILTER (WHERE mos >= 3 AND mos < 3.5), %2$s * count(*) FILTER (WHERE mos >= 3.5 AND mos < 4),
        %2$s * count(*) FILTER (WHERE mos >= 4),
        %2$s * sum(ow), %2$s * sum(cl), %2$s * sum(lost), %2$s * sum(expected)
    FROM (
        SELECT c.sensor,
            date_bin('1 minute', c.start_at, timestamptz '1970-01-01 00:00:00+00') AS minute,
            coalesce(c.trunk, '') AS trunk, coalesce(c.codec, '') AS codec,
            (c.answer_at IS NOT NULL)::int AS ans,
            coalesce(c.answer_at IS NOT NULL OR c.status_code IN (480, 486, 487, 600, 603), false)::int AS ner,
            CASE WHEN c.answer_at IS NOT NULL THEN greatest(coalesce(c.talk_ms, 0), 0) ELSE 0 END AS ans_ms,
            coalesce(greatest(floor(extract(epoch FROM least(c.ringing_at, c.answer_at) - c.start_at) * 1000), 0)::bigint, 0) AS pdd,
            (least(c.ringing_at, c.answer_at) IS NOT NULL)::int AS pdd_n,
            CASE WHEN c.status_code IS NULL OR c.status_code < 100 THEN 0
                 ELSE least(c.status_code / 100, 6) END AS cls,
            coalesce(c.status_code, 0) AS code,
            c.mos,
            coalesce(c.one_way, false)::int AS ow,
            coalesce(c.capture_loss, 0) AS cl,
            greatest(coalesce(c.rtp_lost, 0), 0) AS lost,
            coalesce(c.rtp_expected, 0) AS expected
        FROM %1$s c WHERE c.method = 'INVITE'
    ) f
    GROUP BY sensor, minute, trunk, codec
    ON CONFLICT (minute, sensor, trunk, codec) DO UPDATE SET
        attempts = r.attempts + excluded.attempts, answered = r.answered + excluded.answered,
        ner_ok = r.ner_ok + excluded.ner_ok, answered_ms = r.answered_ms + excluded.answered_ms,
        pdd_ms = r.pdd_ms + excluded.pdd_ms, pdd_n = r.pdd_n + excluded.pdd_n,
        r_none = r.r_none + excluded.r_none, r1 = r.r1 + excluded.r1, r2 = r.r2 + excluded.r2,
        r3 = r.r3 + excluded.r3, r4 = r.r4 + excluded.r4, r5 = r.r5 + excluded.r5, r6 = r.r6 + excluded.r6,
        c404 = r.c404 + excluded.c404, c408 = r.c408 + excluded.c408, c480 = r.c480 + excluded.c480,
        c486 = r.c486 + excluded.c486, c487 = r.c487 + excluded.c487, c503 = r.c503 + excluded.c503,
        mos_none = r.mos_none + excluded.mos_none, mos1 = r.mos1 + excluded.mos1,
        mos2 = r.mos2 + excluded.mos2, mos3 = r.mos3 + excluded.mos3, mos4 = r.mos4 + excluded.mos4,
        mos5 = r.mos5 + excluded.mos5, one_way = r.one_way + excluded.one_way,
        capture_loss = r.capture_loss + excluded.capture_loss, rtp_lost = r.rtp_lost + excluded.rtp_lost,
        rtp_expected = r.rtp_expected + excluded.rtp_expected$q$, src, sign),
    format($q$INSERT INTO voxtap.rollup_minute AS r (sensor, minute, trunk, codec, active_ms)
    SELECT sensor, m, trunk, codec, %2$s * sum(ms) FROM (
        SELECT c.sensor, m, coalesce(c.trunk, '') AS trunk, coalesce(c.codec, '') AS codec,
            floor(extract(epoch FROM least(c.end_at, m + interval '1 minute') - greatest(c.start_at, m)) * 1000)::bigint AS ms
        FROM %1$s c,
            generate_series(date_bin('1 minute', c.start_at, timestamptz '1970-01-01 00:00:00+00'),
                            date_bin('1 minute', least(greatest(c.end_at, c.start_at),
                                     date_bin('1 minute', c.start_at, timestamptz '1970-01-01 00:00:00+00') + interval '7 days'),
                                     timestamptz '1970-01-01 00:00:00+00'),
                            interval '1 minute') m
        WHERE c.method = 'INVITE'
    ) s WHERE ms > 0
    GROUP BY sensor, m, trunk, codec
    ON CONFLICT (minute, sensor, trunk, codec) DO UPDATE SET active_ms = r.active_ms + excluded.active_ms$q$, src, sign)
]
$f$;
REVOKE EXECUTE ON FUNCTION voxtap.ensure_rollup_day(date), voxtap.rollup_statements(text, integer) FROM PUBLIC;

CREATE FUNCTION voxtap.calls_added_rollup() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, voxtap AS $f$
DECLARE
    q text;
BEGIN
    FOREACH q IN ARRAY voxtap.rollup_statements('added', 1) LOOP
        EXECUTE q;
    END LOOP;
    RETURN NULL;
END $f$;
CREATE FUNCTION voxtap.calls_changed_rollup() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, voxtap AS $f$
DECLARE
    q text;
BEGIN
    FOREACH q IN ARRAY voxtap.rollup_statements('gone', -1) || voxtap.rollup_statements('came', 1) LOOP
        EXECUTE q;
    END LOOP;
    RETURN NULL;
END $f$;
CREATE FUNCTION voxtap.calls_deleted_rollup() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, voxtap AS $f$
DECLARE
    q text;
BEGIN
    FOREACH q IN ARRAY voxtap.rollup_statements('gone', -1) LOOP
        EXECUTE q;
    END LOOP;
    RETURN NULL;
END $f$;
REVOKE EXECUTE ON FUNCTION voxtap.calls_added_rollup(), voxtap.calls_changed_rollup(),
    voxtap.calls_deleted_rollup() FROM PUBLIC;

-- The calls already there (ensure_days inside makes their days).
DO $$
DECLARE
    q text;
BEGIN
    FOREACH q IN ARRAY voxtap.rollup_statements('voxtap.calls', 1) LOOP
        EXECUTE q;
    END LOOP;
END $$;

CREATE TRIGGER calls_rollup_added AFTER INSERT ON voxtap.calls
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION voxtap.calls_added_rollup();
CREATE TRIGGER calls_rollup_changed AFTER UPDATE ON voxtap.calls
    REFERENCING OLD TABLE AS gone NEW TABLE AS came FOR EACH STATEMENT EXECUTE FUNCTION voxtap.calls_changed_rollup();
-- Retention drops whole days (no DELETE); a call deleted on its own leaves.
CREATE TRIGGER calls_rollup_deleted AFTER DELETE ON voxtap.calls
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION voxtap.calls_deleted_rollup();

ALTER TABLE voxtap.rollup_minute ENABLE ROW LEVEL SECURITY;
CREATE POLICY hub_reads ON voxtap.rollup_minute FOR SELECT TO voxtap_hub USING (true);
GRANT SELECT ON voxtap.rollup_minute TO voxtap_hub;
"#;

/// Central migration 7: hourly rollups and registration failures per
/// minute.
///
/// `rollup_hour` holds the sums of `rollup_minute` by hour (same columns,
/// key `hour`), kept by statement-level triggers on `rollup_minute` from
/// the rows each statement changed (new rows added, updated rows' old
/// values subtracted and new ones added, deleted rows subtracted), so an
/// hour is exactly the sum of its minutes, whatever path changed them. A
/// dashboard of whole-hour buckets reads the hours and the minutes only at
/// the range's ends (as the sensor's index since its migration 8): a
/// 30-day range reads ~720 rows per sensor, trunk and codec, not ~43 200.
///
/// `rollup_reg_failures`: the REGISTER failures (refused or unanswered) a
/// binding's row gained, at the minute of its `last_at`: a binding is a
/// snapshot the sensor re-sends as it changes (migration 3), so its
/// growth between two versions is what happened since the previous one
/// (the hub's `registration_failures` alerts sum it over their window).
///
/// Both are split by UTC day (`ensure_rollup_day` now makes the day of
/// all three tables, `ensure_days` and retention treat them as every
/// partitioned table). Names matter for locks: `voxtap.lock_parents`
/// (migration 6) takes every parent in name order after `calls`; a
/// registrations shipment holds `registrations` and then writes
/// `rollup_reg_failures`, which sorts after it, so a partition maker
/// waiting at `registrations` holds nothing the shipment still needs.
pub const MIGRATION_7: &str = r#"
-- The minute rollup's columns, by hour.
CREATE TABLE voxtap.rollup_hour (LIKE voxtap.rollup_minute INCLUDING DEFAULTS)
    PARTITION BY RANGE (minute);
ALTER TABLE voxtap.rollup_hour RENAME COLUMN minute TO hour;
CREATE UNIQUE INDEX rollup_hour_key ON voxtap.rollup_hour (hour, sensor, trunk, codec);

CREATE TABLE voxtap.rollup_reg_failures (
    sensor        smallint NOT NULL,
    minute        timestamptz NOT NULL,
    failures      bigint NOT NULL DEFAULT 0
) PARTITION BY RANGE (minute);
CREATE UNIQUE INDEX rollup_reg_failures_key ON voxtap.rollup_reg_failures (minute, sensor);

-- The days rollup_minute already has (ensure_days makes the new ones).
DO $$
DECLARE
    r record;
    d date;
    t text;
BEGIN
    FOR r IN SELECT c.relname AS part FROM pg_inherits i
             JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'voxtap.rollup_minute'::regclass AND c.relname ~ '_[0-9]{8}$' LOOP
        d := to_date(right(r.part, 8), 'YYYYMMDD');
        FOREACH t IN ARRAY ARRAY['rollup_hour', 'rollup_reg_failures'] LOOP
            EXECUTE format('CREATE TABLE voxtap.%I PARTITION OF voxtap.%I FOR VALUES FROM (%L) TO (%L)',
                t || '_' || right(r.part, 8), t,
                d::timestamp AT TIME ZONE 'UTC', (d + 1)::timestamp AT TIME ZONE 'UTC');
        END LOOP;
    END LOOP;
END $$;

-- One day's partition of each rollup table, in name order as
-- lock_parents (a trigger cannot make them through ensure_days: that locks
-- calls, whose statement fires it).
CREATE OR REPLACE FUNCTION voxtap.ensure_rollup_day(d date) RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, voxtap AS $f$
DECLARE
    t text;
    part text;
BEGIN
    FOREACH t IN ARRAY ARRAY['rollup_hour', 'rollup_minute', 'rollup_reg_failures'] LOOP
        part := t || '_' || to_char(d, 'YYYYMMDD');
        IF to_regclass(format('voxtap.%I', part)) IS NULL THEN
            PERFORM pg_advisory_xact_lock(7243001);
            BEGIN
                EXECUTE format('CREATE TABLE voxtap.%I PARTITION OF voxtap.%I FOR VALUES FROM (%L) TO (%L)',
                    part, t, d::timestamp AT TIME ZONE 'UTC', (d + 1)::timestamp AT TIME ZONE 'UTC');
            EXCEPTION WHEN duplicate_table THEN
                NULL;
            END;
        END IF;
    END LOOP;
END $f$;

-- The statement adding (sign 1) or removing (-1) the minute rows of the
-- relation `src` to or from their hours.
CREATE FUNCTION voxtap.hour_statement(src text, sign integer) RETURNS text
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, voxtap AS $f$
WITH c(col) AS (SELECT unnest(ARRAY['attempts', 'answered', 'ner_ok', 'answered_ms', 'pdd_ms', 'pdd_n',
    'r_none', 'r1', 'r2', 'r3', 'r4', 'r5', 'r6', 'c404', 'c408', 'c480', 'c486', 'c487', 'c503',
    'mos_none', 'mos1', 'mos2', 'mos3', 'mos4', 'mos5', 'one_way', 'capture_loss', 'rtp_lost',
    'rtp_expected', 'active_ms']))
SELECT format($q$INSERT INTO voxtap.rollup_hour AS r (sensor, hour, trunk, codec, %3$s)
    SELECT sensor, date_bin('1 hour', minute, timestamptz '1970-01-01 00:00:00+00'), trunk, codec, %4$s
    FROM %1$s GROUP BY 1, 2, 3, 4
    ON CONFLICT (hour, sensor, trunk, codec) DO UPDATE SET %5$s$q$,
    src, sign,
    (SELECT string_agg(col, ', ') FROM c),
    (SELECT string_agg(format('(%s * sum(%I))::int8', sign, col), ', ') FROM c),
    (SELECT string_agg(format('%1$I = r.%1$I + excluded.%1$I', col), ', ') FROM c))
$f$;

-- The days of the minutes of `src`, made in every rollup table.
CREATE FUNCTION voxtap.rollup_days_statement(src text, col text) RETURNS text
    LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, voxtap AS $f$
SELECT format('SELECT voxtap.ensure_rollup_day(d) FROM (SELECT DISTINCT (%2$I AT TIME ZONE ''UTC'')::date AS d FROM %1$s) x',
    src, col)
$f$;

CREATE FUNCTION voxtap.minutes_added_hour() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, voxtap AS $f$
BEGIN
    EXECUTE voxtap.rollup_days_statement('added', 'minute');
    EXECUTE voxtap.hour_statement('added', 1);
    RETURN NULL;
END $f$;
CREATE FUNCTION voxtap.minutes_changed_hour() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, voxtap AS $f$
BEGIN
    EXECUTE voxtap.rollup_days_statement('came', 'minute');
    EXECUTE voxtap.hour_statement('gone', -1);
    EXECUTE voxtap.hour_statement('came', 1);
    RETURN NULL;
END $f$;
CREATE FUNCTION voxtap.minutes_deleted_hour() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, voxtap AS $f$
BEGIN
    EXECUTE voxtap.hour_statement('gone', -1);
    RETURN NULL;
END $f$;

-- The hours of the minutes already there.
DO $$ BEGIN EXECUTE voxtap.hour_statement('voxtap.rollup_minute', 1); END $$;

CREATE TRIGGER minutes_hour_added AFTER INSERT ON voxtap.rollup_minute
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION voxtap.minutes_added_hour();
CREATE TRIGGER minutes_hour_changed AFTER UPDATE ON voxtap.rollup_minute
    REFERENCING OLD TABLE AS gone NEW TABLE AS came FOR EACH STATEMENT EXECUTE FUNCTION voxtap.minutes_changed_hour();
CREATE TRIGGER minutes_hour_deleted AFTER DELETE ON voxtap.rollup_minute
    REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION voxtap.minutes_deleted_hour();

-- Registration failures: a new binding's at its last minute; a changed
-- binding's growth (its counters are cumulative) at its new last minute.
CREATE FUNCTION voxtap.registrations_added_failures() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, voxtap AS $f$
BEGIN
    EXECUTE voxtap.rollup_days_statement('added', 'last_at');
    INSERT INTO voxtap.rollup_reg_failures AS r (sensor, minute, failures)
        SELECT sensor, date_bin('1 minute', last_at, timestamptz '1970-01-01 00:00:00+00'),
               sum(failures + unanswered)::int8
        FROM added WHERE failures + unanswered <> 0 GROUP BY 1, 2
        ON CONFLICT (minute, sensor) DO UPDATE SET failures = r.failures + excluded.failures;
    RETURN NULL;
END $f$;
CREATE FUNCTION voxtap.registrations_changed_failures() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, voxtap AS $f$
BEGIN
    EXECUTE voxtap.rollup_days_statement('came', 'last_at');
    INSERT INTO voxtap.rollup_reg_failures AS r (sensor, minute, failures)
        SELECT n.sensor, date_bin('1 minute', n.last_at, timestamptz '1970-01-01 00:00:00+00'),
               sum((n.failures + n.unanswered) - (o.failures + o.unanswered))::int8
        FROM came n JOIN gone o ON o.sensor = n.sensor AND o.aor = n.aor AND o.contact = n.contact
                                AND o.client = n.client AND o.first_at = n.first_at
        WHERE (n.failures + n.unanswered) <> (o.failures + o.unanswered) GROUP BY 1, 2
        ON CONFLICT (minute, sensor) DO UPDATE SET failures = r.failures + excluded.failures;
    RETURN NULL;
END $f$;
REVOKE EXECUTE ON FUNCTION voxtap.hour_statement(text, integer), voxtap.rollup_days_statement(text, text),
    voxtap.minutes_added_hour(), voxtap.minutes_changed_hour(), voxtap.minutes_deleted_hour(),
    voxtap.registrations_added_failures(), voxtap.registrations_changed_failures() FROM PUBLIC;

DO $$ BEGIN EXECUTE voxtap.rollup_days_statement('voxtap.registrations', 'last_at'); END $$;
INSERT INTO voxtap.rollup_reg_failures (sensor, minute, failures)
    SELECT sensor, date_bin('1 minute', last_at, timestamptz '1970-01-01 00:00:00+00'),
           sum(failures + unanswered)::int8
    FROM voxtap.registrations WHERE failures + unanswered <> 0 GROUP BY 1, 2;

CREATE TRIGGER registrations_failures_added AFTER INSERT ON voxtap.registrations
    REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION voxtap.registrations_added_failures();
CREATE TRIGGER registrations_failures_changed AFTER UPDATE ON voxtap.registrations
    REFERENCING OLD TABLE AS gone NEW TABLE AS came FOR EACH STATEMENT
    EXECUTE FUNCTION voxtap.registrations_changed_failures();

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['rollup_hour', 'rollup_reg_failures'] LOOP
        EXECUTE format('ALTER TABLE voxtap.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('CREATE POLICY hub_reads ON voxtap.%I FOR SELECT TO voxtap_hub USING (true)', t);
        EXECUTE format('GRANT SELECT ON voxtap.%I TO voxtap_hub', t);
    END LOOP;
END $$;
"#;
