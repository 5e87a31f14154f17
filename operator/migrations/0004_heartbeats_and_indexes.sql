-- What changes with every agent report (receive time, agent version, latest metric
-- summary) lives in this narrow table instead of objects.status. At thousands of reports
-- a second, rewriting whole object rows (spec, labels, conditions, inventory) competed with
-- the metric writers for the disk; these rows are small and updated in place (HOT).
-- Readers see the fields merged into status through objects_with_heartbeats.
CREATE TABLE device_heartbeats (
    device_uid    uuid        PRIMARY KEY,
    agent_version text        NOT NULL,
    last_seen     timestamptz NOT NULL,
    last_metrics  jsonb
) WITH (fillfactor = 70);

CREATE INDEX objects_uid ON objects (uid);

-- Every lookup of one object names (kind, namespace, name). With only (kind, namespace)
-- indexed, stale statistics during an enrollment storm made the planner scan a whole
-- namespace per row of a batched status update (10,000 devices: 20 s per update).
DROP INDEX objects_kind;
CREATE UNIQUE INDEX objects_kind_name ON objects (kind, namespace, name);

CREATE VIEW objects_with_heartbeats AS
SELECT o.kind, o.namespace, o.name, o.uid, o.generation, o.resource_version, o.labels,
       o.annotations, o.spec, o.created_at,
       CASE WHEN h.device_uid IS NULL THEN o.status ELSE
           o.status
           || jsonb_build_object('agent',
                  CASE WHEN jsonb_typeof(o.status->'agent') = 'object' THEN o.status->'agent' ELSE '{}'::jsonb END
                  || jsonb_build_object(
                         'id', h.device_uid::text,
                         'version', h.agent_version,
                         'lastSeen', to_char(h.last_seen AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')))
           || CASE WHEN h.last_metrics IS NULL THEN '{}'::jsonb
                   ELSE jsonb_build_object('lastMetrics', h.last_metrics) END
       END AS status
FROM objects o
LEFT JOIN device_heartbeats h ON h.device_uid = o.uid;
-- Finer BRIN ranges on sample time: with 128 pages per range a one-minute fold read 2.5
-- rows for every row it needed (measured: 4.0 M read for 1.57 M kept), because writers
-- commit batches slightly out of time order.
DROP INDEX metric_samples_at;
CREATE INDEX metric_samples_at ON metric_samples USING brin (at) WITH (pages_per_range = 16);
