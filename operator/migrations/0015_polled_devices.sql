-- A Device polled over SNMP has no agent, but every poll that answers says it is alive:
-- kept per device like an agent's heartbeat (one narrow row, never a rewrite of the object)
-- and merged into status as `polling`, apart from `agent`. Liveness reads both, so a
-- network device goes offline (deviceOffline, Ready=False) when its polls stop answering.
CREATE TABLE device_polls (
    device_uid uuid PRIMARY KEY,
    collector text NOT NULL,
    last_seen timestamptz NOT NULL,
    interval_secs integer NOT NULL
) WITH (fillfactor = 70);

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
       END
       || CASE WHEN p.device_uid IS NULL THEN '{}'::jsonb ELSE
              jsonb_build_object('polling', jsonb_build_object(
                  'collector', p.collector,
                  'lastSeen', to_char(p.last_seen AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                  'intervalSeconds', p.interval_secs))
          END AS status
FROM objects o
LEFT JOIN device_heartbeats h ON h.device_uid = o.uid
LEFT JOIN device_polls p ON p.device_uid = o.uid;
