-- 1-hour rollups of the 1-minute rollups, one row per (device, hour), per-series arrays as
-- in metric_points_1m, plus the lowest and highest minute average of each series: a
-- backtest (ADR 20) asks "could any window average in this hour cross the threshold?" and
-- reads minutes only for the hours where the answer is yes. Long ranges of the query API
-- can read it too. Partitioned by day like the minute tier and kept as long.
CREATE TABLE metric_points_1h (
    device_uid uuid               NOT NULL,
    bucket     timestamptz        NOT NULL,
    series_ids bigint[]           NOT NULL,
    mins       double precision[] NOT NULL,
    maxs       double precision[] NOT NULL,
    sums       double precision[] NOT NULL,
    counts     bigint[]           NOT NULL,
    avg_mins   double precision[] NOT NULL,
    avg_maxs   double precision[] NOT NULL,
    PRIMARY KEY (device_uid, bucket),
    CHECK (cardinality(mins) = cardinality(series_ids) AND cardinality(maxs) = cardinality(series_ids)
           AND cardinality(sums) = cardinality(series_ids) AND cardinality(counts) = cardinality(series_ids)
           AND cardinality(avg_mins) = cardinality(series_ids) AND cardinality(avg_maxs) = cardinality(series_ids))
) PARTITION BY RANGE (bucket);

-- Partitions for every day the minute tier holds, so that folding its past fits.
DO $$
DECLARE
    p record;
BEGIN
    FOR p IN
        SELECT c.relname::text AS name, pg_get_expr(c.relpartbound, c.oid) AS bound
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'metric_points_1m'::regclass
    LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF metric_points_1h %s',
                       regexp_replace(p.name, '^metric_points_1m', 'metric_points_1h'), p.bound);
    END LOOP;
END $$;

-- Every hour before the watermark is folded; `next_device` is where the fold of the hour at
-- the watermark goes on (it is folded in slices of the device space, a few per run, so that
-- it never holds a core for long).
CREATE TABLE metric_rollup_1h_state (
    id          smallint    PRIMARY KEY CHECK (id = 1),
    watermark   timestamptz NOT NULL,
    next_device uuid        NOT NULL
);

-- Starts at the oldest minute held, so that the minutes already stored are folded too.
INSERT INTO metric_rollup_1h_state (id, watermark, next_device)
SELECT 1, date_trunc('hour', coalesce((SELECT min(bucket) FROM metric_points_1m), now()), 'UTC'),
       '00000000-0000-0000-0000-000000000000';

-- Hours before the watermark whose minutes were folded again (late samples): folded again.
CREATE TABLE metric_rollup_1h_dirty (
    bucket timestamptz PRIMARY KEY
);
