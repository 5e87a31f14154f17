-- Alerts: one row per alert from its first breach to its end, kept after it resolves
-- (history, with retention). At most one open alert per rule, device and series.
CREATE TABLE alerts (
    id uuid PRIMARY KEY,
    namespace text NOT NULL,
    rule text NOT NULL,
    rule_uid uuid NOT NULL,
    device text NOT NULL,
    device_uid uuid NOT NULL,
    site text,
    metric text NOT NULL,
    series jsonb NOT NULL DEFAULT '{}',
    labels jsonb NOT NULL DEFAULT '{}',
    severity text NOT NULL,
    state text NOT NULL CHECK (state IN ('pending', 'firing', 'resolved')),
    value double precision NOT NULL,
    peak double precision NOT NULL,
    threshold double precision NOT NULL,
    summary text NOT NULL,
    description text NOT NULL DEFAULT '',
    started_at timestamptz NOT NULL,
    fired_at timestamptz,
    resolved_at timestamptz,
    resolving_since timestamptz,
    last_notified_at timestamptz,
    acknowledged_by text,
    acknowledged_at timestamptz,
    ack_comment text NOT NULL DEFAULT '',
    tickets jsonb NOT NULL DEFAULT '{}'
);
CREATE UNIQUE INDEX alerts_one_open ON alerts (rule_uid, device_uid, series) WHERE state <> 'resolved';
CREATE INDEX alerts_by_namespace ON alerts (namespace, started_at DESC);
CREATE INDEX alerts_open_by_device ON alerts (device_uid) WHERE state <> 'resolved';
CREATE INDEX alerts_resolved_at ON alerts (resolved_at) WHERE state = 'resolved';

-- Every transition, acknowledgement and notification of an alert.
CREATE TABLE alert_events (
    id bigserial PRIMARY KEY,
    alert_id uuid NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    at timestamptz NOT NULL DEFAULT now(),
    event text NOT NULL,
    value double precision,
    actor text NOT NULL DEFAULT '',
    detail text NOT NULL DEFAULT ''
);
CREATE INDEX alert_events_by_alert ON alert_events (alert_id, id);

-- Silences created through the API.
CREATE TABLE silences (
    id uuid PRIMARY KEY,
    namespace text NOT NULL,
    matchers jsonb NOT NULL,
    starts_at timestamptz NOT NULL,
    ends_at timestamptz NOT NULL,
    created_by text NOT NULL,
    comment text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK (ends_at > starts_at)
);
CREATE INDEX silences_active ON silences (namespace, ends_at);

-- The outbox: one row per (alert, transition, channel), written in the transaction of the
-- transition; grouped into deliveries by the dispatcher after a short group wait.
CREATE TABLE notification_outbox (
    key text PRIMARY KEY,
    alert_id uuid NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    namespace text NOT NULL,
    channel text NOT NULL,
    rule text NOT NULL,
    group_key text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('firing', 'repeat', 'resolved')),
    created_at timestamptz NOT NULL DEFAULT now(),
    delivery_id bigint
);
CREATE INDEX notification_outbox_ungrouped ON notification_outbox (created_at) WHERE delivery_id IS NULL;

-- One delivery of one notification to one channel, retried until delivered or given up.
CREATE TABLE notification_deliveries (
    id bigserial PRIMARY KEY,
    idempotency_key text NOT NULL UNIQUE,
    namespace text NOT NULL,
    channel text NOT NULL,
    kind text NOT NULL,
    payload jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    attempts integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    delivered_at timestamptz,
    failed_at timestamptz,
    last_error text
);
CREATE INDEX notification_deliveries_due ON notification_deliveries (next_attempt_at)
    WHERE delivered_at IS NULL AND failed_at IS NULL;
CREATE INDEX notification_deliveries_by_channel ON notification_deliveries (namespace, channel, created_at DESC);
