-- Ranked talker lists per site (ADR 25): the site rollups hold, per (namespace, site,
-- bucket), every pair, source, destination, protocol and service port with its sums and
-- its rank by bytes and by packets, plus one total row. A top-talkers query over many
-- buckets reads the head of each bucket's list and looks up only the keys that can win
-- (store/network/talkers.rs), instead of adding up every pair of every bucket.
--
-- The layout changes, so the tables are made again (same names, same daily partitions)
-- and their folds start over from the exporter rollups they are folded from.
CREATE TEMPORARY TABLE site_partitions ON COMMIT DROP AS
SELECT c.relname AS name, p.relname AS parent, pg_get_expr(c.relpartbound, c.oid) AS bounds
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
JOIN pg_class p ON p.oid = i.inhparent
WHERE p.relname IN ('net_flows_site_10m', 'net_flows_site_1h');

DROP TABLE net_flows_site_10m;
DROP TABLE net_flows_site_1h;

-- `dim`: 0 the total of the bucket (every flow, hosts or not; k = ''), 1 pairs (src, dst),
-- 2 sources, 3 destinations, 4 protocols, 5 service ports (proto, port; only keys that kept
-- their port, ADR 22). `k` names the key within its dimension (its columns' text joined
-- by spaces), so a key is looked up by one indexed value and read back from the index.
CREATE TABLE net_flows_site_10m (
    namespace    text        NOT NULL,
    site         text        NOT NULL,
    bucket       timestamptz NOT NULL,
    dim          smallint    NOT NULL,
    k            text        NOT NULL,
    src          inet,
    dst          inet,
    proto        smallint,
    port         integer,
    bytes        bigint      NOT NULL,
    packets      bigint      NOT NULL,
    flows        bigint      NOT NULL,
    rank_bytes   integer     NOT NULL,
    rank_packets integer     NOT NULL
) PARTITION BY RANGE (bucket);

CREATE TABLE net_flows_site_1h (LIKE net_flows_site_10m) PARTITION BY RANGE (bucket);

-- Lookups of keys (and of the totals, k = '') over a range of buckets, from the index alone.
CREATE INDEX net_flows_site_10m_key ON net_flows_site_10m (namespace, dim, k, bucket)
    INCLUDE (site, bytes, packets);
CREATE INDEX net_flows_site_1h_key ON net_flows_site_1h (namespace, dim, k, bucket)
    INCLUDE (site, bytes, packets);
-- The head of each bucket's lists, from the index alone; deeper than 16384 a query adds up
-- the whole range (talkers.rs DEPTH_INDEXED names the same bound).
CREATE INDEX net_flows_site_10m_by_bytes ON net_flows_site_10m (namespace, dim, bucket, rank_bytes)
    INCLUDE (site, k, bytes, packets) WHERE rank_bytes <= 16384;
CREATE INDEX net_flows_site_10m_by_packets ON net_flows_site_10m (namespace, dim, bucket, rank_packets)
    INCLUDE (site, k, bytes, packets) WHERE rank_packets <= 16384;
CREATE INDEX net_flows_site_1h_by_bytes ON net_flows_site_1h (namespace, dim, bucket, rank_bytes)
    INCLUDE (site, k, bytes, packets) WHERE rank_bytes <= 16384;
CREATE INDEX net_flows_site_1h_by_packets ON net_flows_site_1h (namespace, dim, bucket, rank_packets)
    INCLUDE (site, k, bytes, packets) WHERE rank_packets <= 16384;

DO $$
DECLARE
    p record;
BEGIN
    FOR p IN SELECT * FROM site_partitions LOOP
        EXECUTE format('CREATE TABLE %I PARTITION OF %I %s', p.name, p.parent, p.bounds);
    END LOOP;
END
$$;

-- Fold again from the oldest day the exporter rollups hold (empty buckets fold quickly).
UPDATE net_rollup_state s SET watermark = COALESCE(
    (SELECT min(to_date(right(c.relname, 8), 'YYYYMMDD'))::timestamp AT TIME ZONE 'UTC'
     FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
     WHERE i.inhparent = f.source::regclass AND c.relname ~ '_p[0-9]{8}$'),
    s.watermark), provisional_at = NULL
FROM (VALUES ('flow_sites_10m', 'net_flows_10m'),
             ('flow_sites_1h', 'net_flows_1h')) AS f(fold, source)
WHERE s.fold = f.fold;

DELETE FROM net_rollup_dirty WHERE fold IN ('flow_sites_10m', 'flow_sites_1h');
