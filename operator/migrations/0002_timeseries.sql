-- Metric time series reported by agents, and installed software.
--
-- Raw samples and 1-minute rollups are natively partitioned by day (UTC); the operator
-- creates partitions ahead of time and drops those older than the retention settings
-- (`--metrics-retention`, `--metrics-rollup-retention`). Nothing here depends on an
-- extension.

-- The series dictionary: one row per (device, metric, series labels). Writers cache it.
CREATE TABLE metric_series (
    id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    device_uid uuid        NOT NULL,
    metric     text        NOT NULL,
    labels     jsonb       NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (device_uid, metric, labels)
);

-- Raw samples, one row each. Partitions: metric_samples_pYYYYMMDD.
CREATE TABLE metric_samples (
    series_id bigint           NOT NULL,
    at        timestamptz      NOT NULL,
    value     double precision NOT NULL
) PARTITION BY RANGE (at);

-- Range reads of one series (queries with a step under a minute).
CREATE INDEX metric_samples_series_at ON metric_samples (series_id, at);
-- Range scans of whole minutes (the rollup job); rows arrive roughly in time order.
CREATE INDEX metric_samples_at ON metric_samples USING brin (at);

-- Batches already stored, so that a retried batch is acknowledged but not stored twice.
-- Pruned after the longest time a batch can be retried (samples older than
-- `wire::MAX_SAMPLE_AGE_MS` are refused anyway).
CREATE TABLE ingested_batches (
    device_uid  uuid        NOT NULL,
    batch_id    uuid        NOT NULL,
    samples     integer     NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (device_uid, batch_id)
);

CREATE INDEX ingested_batches_received_at ON ingested_batches USING brin (received_at);

-- 1-minute rollups of the raw samples. Partitions: metric_rollup_1m_pYYYYMMDD.
CREATE TABLE metric_rollup_1m (
    series_id bigint           NOT NULL,
    bucket    timestamptz      NOT NULL,
    min       double precision NOT NULL,
    max       double precision NOT NULL,
    sum       double precision NOT NULL,
    count     bigint           NOT NULL,
    PRIMARY KEY (series_id, bucket)
) PARTITION BY RANGE (bucket);

-- Every minute before the watermark has been folded into metric_rollup_1m (once).
CREATE TABLE metric_rollup_state (
    id        smallint    PRIMARY KEY CHECK (id = 1),
    watermark timestamptz NOT NULL
);

INSERT INTO metric_rollup_state (id, watermark) VALUES (1, date_trunc('minute', now(), 'UTC'));

-- Minutes before the watermark that received late samples and must be folded again.
CREATE TABLE metric_rollup_dirty (
    bucket timestamptz PRIMARY KEY
);

-- Installed software of each device, replaced by every inventory report.
CREATE TABLE device_software (
    device_uid uuid NOT NULL,
    name       text NOT NULL,
    version    text NOT NULL,
    PRIMARY KEY (device_uid, name, version)
);
