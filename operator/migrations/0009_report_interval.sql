-- The interval an agent says it reports at (a local override of spec.agent.metricsInterval
-- included): liveness and the Ready message follow what the agent really does.
ALTER TABLE device_heartbeats ADD COLUMN report_interval_secs integer;

CREATE OR REPLACE VIEW objects_with_heartbeats AS
SELECT o.kind, o.namespace, o.name, o.uid, o.generation, o.resource_version, o.labels,
       o.annotations, o.spec, o.created_at,
       CASE WHEN h.device_uid IS NULL THEN o.status ELSE
           o.status
           || jsonb_build_object('agent',
                  CASE WHEN jsonb_typeof(o.status->'agent') = 'object' THEN o.status->'agent' ELSE '{}'::jsonb END
                  || jsonb_build_object(
                         'id', h.device_uid::text,
                         'version', h.agent_version,
                         'lastSeen', to_char(h.last_seen AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'))
                  || CASE WHEN h.report_interval_secs IS NULL THEN '{}'::jsonb
                          ELSE jsonb_build_object('reportIntervalSeconds', h.report_interval_secs) END)
           || CASE WHEN h.last_metrics IS NULL THEN '{}'::jsonb
                   ELSE jsonb_build_object('lastMetrics', h.last_metrics) END
       END AS status
FROM objects o
LEFT JOIN device_heartbeats h ON h.device_uid = o.uid;
