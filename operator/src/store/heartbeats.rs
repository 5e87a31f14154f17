//! Device heartbeats: the report-owned status fields that change with every report
//! (`agent.version`, `agent.lastSeen`, `lastMetrics`), one narrow row per device.
//! Object reads merge them into status (the `objects_with_heartbeats` view), so readers see
//! one status while writers never rewrite object rows per report.
use serde_json::Value;
use sqlx::PgExecutor;
use uuid::Uuid;

use super::{Store, StoreError, StoredObject, objects};

/// What decides a Device's `Ready`, read without decoding whole objects.
#[derive(Debug, Clone, PartialEq)]
pub struct Liveness {
    pub namespace: String,
    pub name: String,
    /// `spec.agent.metricsInterval`, when set.
    pub metrics_interval: Option<String>,
    /// The interval the agent says it reports at (or, when its polls are the newer sign of
    /// life, the SNMP poll interval).
    pub report_interval_secs: Option<u64>,
    /// `spec.maintenance.paused`.
    pub paused: bool,
    /// The newer of `status.agent.lastSeen` and `status.polling.lastSeen` (RFC 3339), when
    /// the device ever reported or answered a poll.
    pub last_seen: Option<String>,
    /// The stored `Ready` condition's status (`"True"`, `"False"`, ...), when there is one.
    pub ready: Option<String>,
}

/// namespace, name, metricsInterval, paused, lastSeen, Ready status.
type LivenessRow = (
    String,
    String,
    Option<String>,
    Option<i32>,
    Option<bool>,
    Option<String>,
    Option<String>,
);

/// The latest report of one device.
#[derive(Debug, Clone, PartialEq)]
pub struct Heartbeat {
    pub device_uid: Uuid,
    pub agent_version: String,
    /// Operator receive time of the report, Unix milliseconds.
    pub last_seen_ms: i64,
    /// `lastMetrics` ([`cdot_crds::device::MetricSummary`]); `None` keeps the stored one.
    pub last_metrics: Option<Value>,
    /// Seconds between reports as the agent says; `None` keeps the stored one.
    pub report_interval_secs: Option<u32>,
}

impl Store {
    /// Records the heartbeats of many devices in one statement. A replayed (older) report
    /// never moves `lastSeen` back.
    pub async fn record_heartbeats(&self, beats: &[Heartbeat]) -> Result<u64, StoreError> {
        record(&self.pool, beats).await
    }

    /// The liveness inputs of every Device: a narrow read, so that the liveness pass can
    /// find the few devices whose `Ready` changes without decoding all of them.
    pub async fn device_liveness(&self) -> Result<Vec<Liveness>, StoreError> {
        let rows: Vec<LivenessRow> =
            sqlx::query_as(
                // Base tables, not the view: no merged status documents are built, and
                // containment tests the Ready condition without expanding the array.
                "SELECT o.namespace, o.name, o.spec->'agent'->>'metricsInterval',
                        CASE WHEN p.last_seen > h.last_seen OR h.device_uid IS NULL THEN p.interval_secs
                             ELSE h.report_interval_secs END,
                        (o.spec->'maintenance'->>'paused')::boolean,
                        coalesce(to_char(greatest(h.last_seen, p.last_seen) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'),
                                 o.status->'agent'->>'lastSeen'),
                        CASE WHEN o.status->'conditions' @> '[{\"type\": \"Ready\", \"status\": \"True\"}]' THEN 'True'
                             WHEN o.status->'conditions' @> '[{\"type\": \"Ready\", \"status\": \"False\"}]' THEN 'False'
                             WHEN o.status->'conditions' @> '[{\"type\": \"Ready\"}]' THEN 'Unknown'
                        END
                 FROM objects o LEFT JOIN device_heartbeats h ON h.device_uid = o.uid
                 LEFT JOIN device_polls p ON p.device_uid = o.uid
                 WHERE o.kind = 'Device'",
            )
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query("read device liveness"))?;
        Ok(rows
            .into_iter()
            .map(
                |(namespace, name, metrics_interval, reported, paused, last_seen, ready)| {
                    Liveness {
                        namespace,
                        name,
                        metrics_interval,
                        report_interval_secs: reported.and_then(|s: i32| u64::try_from(s).ok()),
                        paused: paused.unwrap_or(false),
                        last_seen,
                        ready,
                    }
                },
            )
            .collect())
    }

    /// The named Devices (namespace, name pairs), with heartbeats merged into status.
    pub async fn devices_named(
        &self,
        names: &[(String, String)],
    ) -> Result<Vec<StoredObject>, StoreError> {
        let namespaces: Vec<&str> = names.iter().map(|(ns, _)| ns.as_str()).collect();
        let names: Vec<&str> = names.iter().map(|(_, n)| n.as_str()).collect();
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{} WHERE kind = 'Device' AND (namespace, name) IN (
                 SELECT * FROM unnest($1::text[], $2::text[]))",
            objects::SELECT_OBJECTS
        )))
        .bind(&namespaces)
        .bind(&names)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("read named devices"))?;
        Ok(rows.iter().filter_map(objects::decode_object).collect())
    }

    /// Forgets the heartbeats and polls of devices that no longer exist; returns how many.
    pub async fn prune_heartbeats(&self) -> Result<u64, StoreError> {
        let mut pruned = 0;
        for statement in [
            "DELETE FROM device_heartbeats h
             WHERE NOT EXISTS (SELECT 1 FROM objects o WHERE o.uid = h.device_uid)",
            "DELETE FROM device_polls p
             WHERE NOT EXISTS (SELECT 1 FROM objects o WHERE o.uid = p.device_uid)",
        ] {
            pruned += sqlx::query(statement)
                .execute(&self.pool)
                .await
                .map_err(StoreError::query("prune heartbeats of deleted devices"))?
                .rows_affected();
        }
        Ok(pruned)
    }
}

pub(super) async fn record<'e>(
    executor: impl PgExecutor<'e>,
    beats: &[Heartbeat],
) -> Result<u64, StoreError> {
    if beats.is_empty() {
        return Ok(0);
    }
    let uids: Vec<Uuid> = beats.iter().map(|b| b.device_uid).collect();
    let versions: Vec<&str> = beats.iter().map(|b| b.agent_version.as_str()).collect();
    let seen: Vec<i64> = beats.iter().map(|b| b.last_seen_ms).collect();
    let metrics: Vec<Option<&Value>> = beats.iter().map(|b| b.last_metrics.as_ref()).collect();
    let intervals: Vec<Option<i32>> = beats
        .iter()
        .map(|b| b.report_interval_secs.and_then(|s| i32::try_from(s).ok()))
        .collect();
    let done = sqlx::query(
        "INSERT INTO device_heartbeats AS h (device_uid, agent_version, last_seen, last_metrics, report_interval_secs)
         SELECT uid, version, 'epoch'::timestamptz + seen * interval '1 millisecond', metrics, every
         FROM unnest($1::uuid[], $2::text[], $3::int8[], $4::jsonb[], $5::int4[]) AS d(uid, version, seen, metrics, every)
         ON CONFLICT (device_uid) DO UPDATE SET
             agent_version = excluded.agent_version,
             last_seen = greatest(h.last_seen, excluded.last_seen),
             last_metrics = coalesce(excluded.last_metrics, h.last_metrics),
             report_interval_secs = coalesce(excluded.report_interval_secs, h.report_interval_secs)",
    )
    .bind(&uids)
    .bind(&versions)
    .bind(&seen)
    .bind(&metrics)
    .bind(&intervals)
    .execute(executor)
    .await
    .map_err(StoreError::query("record device heartbeats"))?;
    Ok(done.rows_affected())
}

/// The latest successful SNMP poll of one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Poll {
    pub device_uid: Uuid,
    /// The collector that polled it.
    pub collector: String,
    /// Time of the poll (the collector's clock, validated), Unix milliseconds.
    pub last_seen_ms: i64,
    pub interval_secs: u32,
}

/// Records polls; an older one (a replayed batch) never moves `lastSeen` back.
pub(super) async fn record_polls<'e>(
    executor: impl PgExecutor<'e>,
    polls: &[Poll],
) -> Result<u64, StoreError> {
    if polls.is_empty() {
        return Ok(0);
    }
    let uids: Vec<Uuid> = polls.iter().map(|p| p.device_uid).collect();
    let collectors: Vec<&str> = polls.iter().map(|p| p.collector.as_str()).collect();
    let seen: Vec<i64> = polls.iter().map(|p| p.last_seen_ms).collect();
    let every: Vec<i32> = polls
        .iter()
        .map(|p| i32::try_from(p.interval_secs).unwrap_or(i32::MAX))
        .collect();
    let done = sqlx::query(
        "INSERT INTO device_polls AS p (device_uid, collector, last_seen, interval_secs)
         SELECT uid, collector, 'epoch'::timestamptz + seen * interval '1 millisecond', every
         FROM unnest($1::uuid[], $2::text[], $3::int8[], $4::int4[]) AS d(uid, collector, seen, every)
         ON CONFLICT (device_uid) DO UPDATE SET
             collector = excluded.collector,
             last_seen = greatest(p.last_seen, excluded.last_seen),
             interval_secs = excluded.interval_secs",
    )
    .bind(&uids)
    .bind(&collectors)
    .bind(&seen)
    .bind(&every)
    .execute(executor)
    .await
    .map_err(StoreError::query("record device polls"))?;
    Ok(done.rows_affected())
}
