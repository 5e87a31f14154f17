-- Faster top talkers (ADR 12): a 10-minute flow rollup per exporter, and per-site rollups
-- (10-minute and hour) of the top keys with an exact "other", for queries without a device.
--
-- Partitioned by day like every network table (jobs/network.rs creates and drops them).

-- Flow traffic per 10 minutes: as net_flows_1h, per (exporter, 10 minutes).
CREATE TABLE net_flows_10m (
    exporter_id integer     NOT NULL,
    bucket      timestamptz NOT NULL,
    in_if       bigint      NOT NULL,
    out_if      bigint      NOT NULL,
    src         inet,
    dst         inet,
    proto       smallint,
    port        integer,
    bytes       bigint      NOT NULL,
    packets     bigint      NOT NULL,
    flows       bigint      NOT NULL
) PARTITION BY RANGE (bucket);

CREATE INDEX net_flows_10m_exporter ON net_flows_10m (exporter_id, bucket);

-- Flow traffic per (namespace, site) and bucket, folded from the exporter rollup of the
-- same bucket size: the top keys (src, dst, protocol, service port) by bytes over every
-- exporter and interface of the site, and one "other" row (src IS NULL) with the rest, so
-- totals stay exact. `site` is the exporter's site when the bucket was folded ('' for none).
CREATE TABLE net_flows_site_10m (
    namespace text        NOT NULL,
    site      text        NOT NULL,
    bucket    timestamptz NOT NULL,
    src       inet,
    dst       inet,
    proto     smallint,
    port      integer,
    bytes     bigint      NOT NULL,
    packets   bigint      NOT NULL,
    flows     bigint      NOT NULL
) PARTITION BY RANGE (bucket);

CREATE INDEX net_flows_site_10m_scope ON net_flows_site_10m (namespace, bucket);

CREATE TABLE net_flows_site_1h (LIKE net_flows_site_10m) PARTITION BY RANGE (bucket);

CREATE INDEX net_flows_site_1h_scope ON net_flows_site_1h (namespace, bucket);

-- The new folds start where their source's data starts (the oldest day partition), so the
-- data stored before this migration is folded too; empty buckets fold quickly.
INSERT INTO net_rollup_state (fold, watermark)
SELECT f.fold, COALESCE(
    (SELECT min(to_date(right(c.relname, 8), 'YYYYMMDD'))::timestamp AT TIME ZONE 'UTC'
     FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
     WHERE i.inhparent = f.source::regclass AND c.relname ~ '_p[0-9]{8}$'),
    date_trunc('hour', now(), 'UTC'))
FROM (VALUES ('flows_10m', 'net_flows_1m'),
             ('flow_sites_10m', 'net_flows_1m'),
             ('flow_sites_1h', 'net_flows_1h')) AS f(fold, source);
