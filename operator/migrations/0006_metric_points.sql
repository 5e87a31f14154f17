-- Samples stored the way agents send them: one row per (device, instant) holding the
-- batch's series ids and values as parallel arrays, and one rollup row per (device, minute)
-- with per-series arrays. See docs/adr/0008-metric-points-one-row-per-batch.md.
--
-- With one row per sample, 10,000 agents (60 series each, every 10 s) meant 60,000 heap
-- rows and 60,000 random btree inserts a second (WAL-bound), and folding a minute
-- re-read 3.6 M rows into 600,000 rollup rows (11-22 s, ingest p99 of seconds). Here a
-- second is 1,000 rows of ~1 KB and one index entry each, and a minute folds ~60,000
-- rows into ~10,000. Series ids still come from metric_series; a query finds rows by
-- device and unnests them.

CREATE TABLE metric_points (
    device_uid uuid               NOT NULL,
    at         timestamptz        NOT NULL,
    series_ids bigint[]           NOT NULL,
    vals       double precision[] NOT NULL,
    CHECK (cardinality(series_ids) = cardinality(vals))
) PARTITION BY RANGE (at);

-- Reads of a device's series over a time range.
CREATE INDEX metric_points_device_at ON metric_points (device_uid, at);
-- Range scans of whole minutes (the rollup fold); rows arrive roughly in time order.
CREATE INDEX metric_points_at ON metric_points USING brin (at) WITH (pages_per_range = 16);

CREATE TABLE metric_points_1m (
    device_uid uuid               NOT NULL,
    bucket     timestamptz        NOT NULL,
    series_ids bigint[]           NOT NULL,
    mins       double precision[] NOT NULL,
    maxs       double precision[] NOT NULL,
    sums       double precision[] NOT NULL,
    counts     bigint[]           NOT NULL,
    PRIMARY KEY (device_uid, bucket),
    CHECK (cardinality(mins) = cardinality(series_ids) AND cardinality(maxs) = cardinality(series_ids)
           AND cardinality(sums) = cardinality(series_ids) AND cardinality(counts) = cardinality(series_ids))
) PARTITION BY RANGE (bucket);

-- The new tables get a partition for every day the old ones hold (same bounds, names
-- metric_points_pYYYYMMDD and metric_points_1m_pYYYYMMDD), so that the rows below fit and
-- retention keeps dropping them by age.
DO $$
DECLARE
    p record;
BEGIN
    FOR p IN
        SELECT c.relname::text AS name, pg_get_expr(c.relpartbound, c.oid) AS bound,
               i.inhparent = 'metric_samples'::regclass AS samples
        FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent IN ('metric_samples'::regclass, 'metric_rollup_1m'::regclass)
    LOOP
        IF p.samples THEN
            EXECUTE format('CREATE TABLE %I PARTITION OF metric_points %s',
                           regexp_replace(p.name, '^metric_samples', 'metric_points'), p.bound);
        ELSE
            EXECUTE format('CREATE TABLE %I PARTITION OF metric_points_1m %s',
                           regexp_replace(p.name, '^metric_rollup_1m', 'metric_points_1m'), p.bound);
        END IF;
    END LOOP;
END $$;

-- Every stored sample moves (series ids come from the dictionary, whose rows are never
-- deleted). Arrays are in series order, as the writers produce them.
INSERT INTO metric_points (device_uid, at, series_ids, vals)
SELECT m.device_uid, s.at, array_agg(s.series_id ORDER BY s.series_id), array_agg(s.value ORDER BY s.series_id)
FROM metric_samples s JOIN metric_series m ON m.id = s.series_id
GROUP BY m.device_uid, s.at;

-- Folded minutes move too; the watermark and the late minutes stay valid as they are.
INSERT INTO metric_points_1m (device_uid, bucket, series_ids, mins, maxs, sums, counts)
SELECT m.device_uid, r.bucket, array_agg(r.series_id ORDER BY r.series_id),
       array_agg(r.min ORDER BY r.series_id), array_agg(r.max ORDER BY r.series_id),
       array_agg(r.sum ORDER BY r.series_id), array_agg(r.count ORDER BY r.series_id)
FROM metric_rollup_1m r JOIN metric_series m ON m.id = r.series_id
GROUP BY m.device_uid, r.bucket;

DROP TABLE metric_samples;
DROP TABLE metric_rollup_1m;
