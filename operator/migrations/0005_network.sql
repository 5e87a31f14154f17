-- Network performance data reported by collectors: flow aggregates, interface samples and
-- probe results, with their 1-minute and 1-hour rollups.
--
-- Every time-series table is natively partitioned by day (UTC), created ahead and dropped
-- by the `--network-*-retention` settings (see jobs/network.rs). Dictionaries keep the
-- rows narrow: a flow row names its exporter by a 4-byte id, a sample its interface or
-- probe by one.

-- Flow exporters (routers, switches) as seen by one collector. The exporter is matched to
-- a Device of the namespace whose spec.managementAddresses lists the address; its site is
-- that Device's site, else the collector's.
CREATE TABLE net_exporters (
    id            integer     GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    namespace     text        NOT NULL,
    collector_uid uuid        NOT NULL,
    address       inet        NOT NULL,
    device_uid    uuid,
    device_name   text,
    site          text,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (namespace, collector_uid, address)
);

CREATE INDEX net_exporters_namespace ON net_exporters (namespace, site);

-- Polled interfaces. last_status/last_at let ingest count ifOperStatus changes across
-- batches.
CREATE TABLE net_interfaces (
    id          integer     GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_uid  uuid        NOT NULL,
    if_index    bigint      NOT NULL,
    namespace   text        NOT NULL,
    device_name text        NOT NULL,
    site        text,
    name        text        NOT NULL,
    alias       text        NOT NULL DEFAULT '',
    speed_bps   bigint      NOT NULL DEFAULT 0,
    last_status smallint,
    last_at     timestamptz,
    UNIQUE (device_uid, if_index)
);

CREATE INDEX net_interfaces_namespace ON net_interfaces (namespace, site, device_name);

-- Probes: (device, probe name, target).
CREATE TABLE net_probes (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_uid  uuid    NOT NULL,
    probe       text    NOT NULL,
    target      text    NOT NULL,
    namespace   text    NOT NULL,
    device_name text    NOT NULL,
    site        text,
    UNIQUE (device_uid, probe, target)
);

CREATE INDEX net_probes_namespace ON net_probes (namespace, site, device_name);

-- Flow traffic per minute as the collector aggregated it: one row per top key, and one
-- row per (exporter, interface pair) with src IS NULL for the rest ("other").
CREATE TABLE net_flows_1m (
    exporter_id integer     NOT NULL,
    minute      timestamptz NOT NULL,
    in_if       bigint      NOT NULL,
    out_if      bigint      NOT NULL,
    src         inet,
    dst         inet,
    proto       smallint,
    sp          integer,
    dp          integer,
    bytes       bigint      NOT NULL,
    packets     bigint      NOT NULL,
    flows       bigint      NOT NULL
) PARTITION BY RANGE (minute);

CREATE INDEX net_flows_1m_exporter ON net_flows_1m (exporter_id, minute);
CREATE INDEX net_flows_1m_minute ON net_flows_1m USING brin (minute);

-- Flow traffic per hour: per (exporter, hour) the top keys by bytes, where a key is
-- (interface pair, src, dst, protocol, service port = the lower of the two ports, since
-- the other is usually ephemeral), and per (exporter, hour, interface pair) an "other" row
-- (src IS NULL) with everything else, so totals stay exact.
CREATE TABLE net_flows_1h (
    exporter_id integer     NOT NULL,
    hour        timestamptz NOT NULL,
    in_if       bigint      NOT NULL,
    out_if      bigint      NOT NULL,
    src         inet,
    dst         inet,
    proto       smallint,
    port        integer,
    bytes       bigint      NOT NULL,
    packets     bigint      NOT NULL,
    flows       bigint      NOT NULL
) PARTITION BY RANGE (hour);

CREATE INDEX net_flows_1h_exporter ON net_flows_1h (exporter_id, hour);

-- One interface poll: rates over interval_ms, errors and discards during it, and whether
-- ifOperStatus differs from the previous poll.
CREATE TABLE net_if_samples (
    interface_id   integer          NOT NULL,
    at             timestamptz      NOT NULL,
    oper_status    smallint         NOT NULL,
    status_changed boolean          NOT NULL,
    in_bps         double precision NOT NULL,
    out_bps        double precision NOT NULL,
    in_pps         double precision NOT NULL,
    out_pps        double precision NOT NULL,
    in_errors      bigint           NOT NULL,
    out_errors     bigint           NOT NULL,
    in_discards    bigint           NOT NULL,
    out_discards   bigint           NOT NULL
) PARTITION BY RANGE (at);

CREATE INDEX net_if_samples_interface ON net_if_samples (interface_id, at);
CREATE INDEX net_if_samples_at ON net_if_samples USING brin (at);

-- Interface rollups (1-minute from samples, 1-hour from 1-minute): averages are
-- sum / samples; the 95th percentile is taken over the buckets' averages at query time.
CREATE TABLE net_if_1m (
    interface_id   integer          NOT NULL,
    bucket         timestamptz      NOT NULL,
    samples        integer          NOT NULL,
    in_bps_sum     double precision NOT NULL,
    in_bps_max     double precision NOT NULL,
    out_bps_sum    double precision NOT NULL,
    out_bps_max    double precision NOT NULL,
    in_pps_sum     double precision NOT NULL,
    out_pps_sum    double precision NOT NULL,
    in_errors      bigint           NOT NULL,
    out_errors     bigint           NOT NULL,
    in_discards    bigint           NOT NULL,
    out_discards   bigint           NOT NULL,
    status_changes integer          NOT NULL,
    last_status    smallint         NOT NULL,
    PRIMARY KEY (interface_id, bucket)
) PARTITION BY RANGE (bucket);

CREATE TABLE net_if_1h (LIKE net_if_1m) PARTITION BY RANGE (bucket);
ALTER TABLE net_if_1h ADD PRIMARY KEY (interface_id, bucket);

-- One probe interval.
CREATE TABLE net_probe_samples (
    probe_id   integer          NOT NULL,
    at         timestamptz      NOT NULL,
    sent       integer          NOT NULL,
    received   integer          NOT NULL,
    rtt_min_ms double precision,
    rtt_avg_ms double precision,
    rtt_max_ms double precision,
    jitter_ms  double precision
) PARTITION BY RANGE (at);

CREATE INDEX net_probe_samples_probe ON net_probe_samples (probe_id, at);
CREATE INDEX net_probe_samples_at ON net_probe_samples USING brin (at);

-- Probe rollups: loss = 1 - received / sent; latency is the mean of the intervals' mean
-- round-trip times weighted by replies (rtt_sum / rtt_weight); jitter the mean of the
-- intervals' jitter.
CREATE TABLE net_probe_1m (
    probe_id     integer          NOT NULL,
    bucket       timestamptz      NOT NULL,
    samples      integer          NOT NULL,
    sent         bigint           NOT NULL,
    received     bigint           NOT NULL,
    rtt_sum      double precision NOT NULL,
    rtt_weight   bigint           NOT NULL,
    rtt_min_ms   double precision,
    rtt_max_ms   double precision,
    jitter_sum   double precision NOT NULL,
    jitter_count integer          NOT NULL,
    PRIMARY KEY (probe_id, bucket)
) PARTITION BY RANGE (bucket);

CREATE TABLE net_probe_1h (LIKE net_probe_1m) PARTITION BY RANGE (bucket);
ALTER TABLE net_probe_1h ADD PRIMARY KEY (probe_id, bucket);

-- Each rollup ("fold") has folded every bucket before its watermark (once, unless late rows
-- arrive); the open bucket of an hour fold is folded provisionally every few minutes.
CREATE TABLE net_rollup_state (
    fold           text        PRIMARY KEY,
    watermark      timestamptz NOT NULL,
    provisional_at timestamptz
);

INSERT INTO net_rollup_state (fold, watermark) VALUES
    ('flows_1h', date_trunc('hour', now(), 'UTC')),
    ('interfaces_1m', date_trunc('minute', now(), 'UTC')),
    ('interfaces_1h', date_trunc('hour', now(), 'UTC')),
    ('probes_1m', date_trunc('minute', now(), 'UTC')),
    ('probes_1h', date_trunc('hour', now(), 'UTC'));

-- Buckets before a fold's watermark that received late rows and must be folded again.
CREATE TABLE net_rollup_dirty (
    fold   text        NOT NULL,
    bucket timestamptz NOT NULL,
    PRIMARY KEY (fold, bucket)
);
