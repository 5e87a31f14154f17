//! Alerts, their history, silences and the notification outbox in PostgreSQL.
use std::collections::BTreeMap;

use cdot_crds::wire::alert::{
    Acknowledgement, Alert, AlertEvent, AlertState, Matcher, NotificationKind, Silence,
};
use serde_json::Value;
use sqlx::{PgConnection, Row, postgres::PgRow};
use uuid::Uuid;

use super::engine::OpenAlert;
use crate::store::{Store, StoreError};

/// RFC 3339 of a timestamptz column, UTC, seconds.
macro_rules! rfc3339 {
    ($col:literal) => {
        concat!(
            "to_char(",
            $col,
            " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"
        )
    };
}

/// Unix milliseconds of a timestamptz column.
macro_rules! millis {
    ($col:literal) => {
        concat!("(extract(epoch FROM ", $col, ") * 1000)::bigint")
    };
}

macro_rules! alert_columns {
    () => {
        concat!(
    "id, namespace, rule, device, site, metric, series, labels, severity, state, value, peak, threshold, summary, description, ",
    rfc3339!("started_at"),
    " AS started, ",
    rfc3339!("fired_at"),
    " AS fired, ",
    rfc3339!("resolved_at"),
    " AS resolved, acknowledged_by, ",
    rfc3339!("acknowledged_at"),
    " AS acked, ack_comment, tickets"
        )
    };
}

fn map(v: Value) -> BTreeMap<String, String> {
    serde_json::from_value(v).unwrap_or_default()
}

fn decode_alert(row: &PgRow) -> Alert {
    let acknowledged = row
        .get::<Option<String>, _>("acknowledged_by")
        .map(|by| Acknowledgement {
            by,
            at: row.get::<Option<String>, _>("acked").unwrap_or_default(),
            comment: row.get("ack_comment"),
        });
    Alert {
        id: row.get("id"),
        namespace: row.get("namespace"),
        rule: row.get("rule"),
        device: row.get("device"),
        site: row.get("site"),
        metric: row.get("metric"),
        series: map(row.get("series")),
        labels: map(row.get("labels")),
        severity: serde_json::from_value(Value::String(row.get("severity"))).unwrap_or_default(),
        state: AlertState::from_name(row.get::<&str, _>("state")).unwrap_or(AlertState::Resolved),
        value: row.get("value"),
        peak: row.get("peak"),
        threshold: row.get("threshold"),
        summary: row.get("summary"),
        description: row.get("description"),
        started_at: row.get("started"),
        fired_at: row.get("fired"),
        resolved_at: row.get("resolved"),
        acknowledged,
        suppressed: None,
        tickets: map(row.get("tickets")),
    }
}

/// A new alert, as first written.
#[derive(Debug, Clone)]
pub struct NewAlert<'a> {
    pub id: Uuid,
    pub namespace: &'a str,
    pub rule: &'a str,
    pub rule_uid: Uuid,
    pub device: &'a str,
    pub device_uid: Uuid,
    pub site: Option<&'a str>,
    pub metric: &'a str,
    pub series: &'a BTreeMap<String, String>,
    pub labels: &'a BTreeMap<String, String>,
    pub severity: &'a str,
    pub state: AlertState,
    pub value: f64,
    pub threshold: f64,
    pub summary: &'a str,
    pub description: &'a str,
    pub started_ms: i64,
    pub fired_ms: Option<i64>,
}

/// A notification to queue in the outbox with the transition that causes it.
#[derive(Debug, Clone)]
pub struct OutboxRow<'a> {
    pub key: String,
    pub alert_id: Uuid,
    pub namespace: &'a str,
    pub channel: &'a str,
    pub rule: &'a str,
    pub group_key: &'a str,
    pub kind: NotificationKind,
}

/// Filters of the alert list.
#[derive(Debug, Clone, Default)]
pub struct AlertFilter {
    pub namespace: Option<String>,
    pub states: Vec<AlertState>,
    pub severity: Option<String>,
    pub rule: Option<String>,
    pub device: Option<String>,
    pub site: Option<String>,
    /// Only alerts on these catalogue metrics (empty: any).
    pub metrics: Vec<String>,
    /// Alerts open at some time within [from, to] (Unix ms).
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub limit: i64,
}

/// Inserts a new alert; `false` when an open alert of the same rule, device and series
/// exists already (another replica evaluated the same series).
pub async fn insert_alert(tx: &mut PgConnection, a: &NewAlert<'_>) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "INSERT INTO alerts (id, namespace, rule, rule_uid, device, device_uid, site, metric, series, labels,
                             severity, state, value, peak, threshold, summary, description, started_at, fired_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $13, $14, $15, $16,
                 to_timestamp($17::float8 / 1000), to_timestamp($18::float8 / 1000))
         ON CONFLICT DO NOTHING",
    )
    .bind(a.id)
    .bind(a.namespace)
    .bind(a.rule)
    .bind(a.rule_uid)
    .bind(a.device)
    .bind(a.device_uid)
    .bind(a.site)
    .bind(a.metric)
    .bind(serde_json::to_value(a.series).unwrap_or_default())
    .bind(serde_json::to_value(a.labels).unwrap_or_default())
    .bind(a.severity)
    .bind(a.state.as_str())
    .bind(a.value)
    .bind(a.threshold)
    .bind(a.summary)
    .bind(a.description)
    .bind(a.started_ms as f64)
    .bind(a.fired_ms.map(|m| m as f64))
    .execute(&mut *tx)
    .await
    .map_err(StoreError::query("insert an alert"))?;
    Ok(done.rows_affected() == 1)
}

/// Moves an open alert to `state` at `at_ms`; `false` when it is not open (already
/// resolved by another writer).
pub async fn update_state(
    tx: &mut PgConnection,
    id: Uuid,
    state: AlertState,
    at_ms: i64,
    value: f64,
    peak: f64,
    summary: Option<&str>,
) -> Result<bool, StoreError> {
    let done = sqlx::query(
        "UPDATE alerts SET state = $2, value = $4, peak = $5, summary = coalesce($6, summary),
                fired_at = CASE WHEN $2 = 'firing' THEN to_timestamp($3::float8 / 1000) ELSE fired_at END,
                resolved_at = CASE WHEN $2 = 'resolved' THEN to_timestamp($3::float8 / 1000) ELSE resolved_at END
         WHERE id = $1 AND state <> 'resolved'",
    )
    .bind(id)
    .bind(state.as_str())
    .bind(at_ms as f64)
    .bind(value)
    .bind(peak)
    .bind(summary)
    .execute(&mut *tx)
    .await
    .map_err(StoreError::query("update an alert's state"))?;
    Ok(done.rows_affected() == 1)
}

pub async fn add_event(
    tx: &mut PgConnection,
    alert: Uuid,
    at_ms: Option<i64>,
    event: &str,
    value: Option<f64>,
    actor: &str,
    detail: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO alert_events (alert_id, at, event, value, actor, detail)
         VALUES ($1, coalesce(to_timestamp($2::float8 / 1000), now()), $3, $4, $5, $6)",
    )
    .bind(alert)
    .bind(at_ms.map(|m| m as f64))
    .bind(event)
    .bind(value)
    .bind(actor)
    .bind(detail)
    .execute(&mut *tx)
    .await
    .map_err(StoreError::query("record an alert event"))?;
    Ok(())
}

/// Queues notifications and marks their alerts notified (so repeats count from now).
pub async fn enqueue(tx: &mut PgConnection, rows: &[OutboxRow<'_>]) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    let keys: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
    let alerts: Vec<Uuid> = rows.iter().map(|r| r.alert_id).collect();
    let namespaces: Vec<&str> = rows.iter().map(|r| r.namespace).collect();
    let channels: Vec<&str> = rows.iter().map(|r| r.channel).collect();
    let rules: Vec<&str> = rows.iter().map(|r| r.rule).collect();
    let groups: Vec<&str> = rows.iter().map(|r| r.group_key).collect();
    let kinds: Vec<&str> = rows.iter().map(|r| r.kind.as_str()).collect();
    sqlx::query(
        "INSERT INTO notification_outbox (key, alert_id, namespace, channel, rule, group_key, kind)
         SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
         ON CONFLICT (key) DO NOTHING",
    )
    .bind(&keys)
    .bind(&alerts)
    .bind(&namespaces)
    .bind(&channels)
    .bind(&rules)
    .bind(&groups)
    .bind(&kinds)
    .execute(&mut *tx)
    .await
    .map_err(StoreError::query("queue notifications"))?;
    sqlx::query("UPDATE alerts SET last_notified_at = now() WHERE id = ANY($1)")
        .bind(&alerts)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("mark alerts notified"))?;
    Ok(())
}

/// Whether `device` has a firing `deviceOffline` alert (which inhibits its others).
pub async fn device_offline_firing(
    tx: &mut PgConnection,
    device: Uuid,
) -> Result<bool, StoreError> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM alerts WHERE device_uid = $1 AND metric = 'deviceOffline' AND state = 'firing')",
    )
    .bind(device)
    .fetch_one(&mut *tx)
    .await
    .map_err(StoreError::query("check for an offline alert"))
}

/// Whether the alert ever got a notification out (a resolved notification follows only
/// a firing one that was sent).
pub async fn was_notified(tx: &mut PgConnection, alert: Uuid) -> Result<bool, StoreError> {
    sqlx::query_scalar("SELECT last_notified_at IS NOT NULL FROM alerts WHERE id = $1")
        .bind(alert)
        .fetch_optional(&mut *tx)
        .await
        .map(|v| v.unwrap_or(false))
        .map_err(StoreError::query("read an alert's notification time"))
}

impl Store {
    /// Pending and firing alerts, to continue after a restart.
    pub async fn open_alerts(&self) -> Result<Vec<OpenAlert>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT id, rule_uid, device_uid, series, state, value, peak, ",
            millis!("started_at"),
            " AS started, ",
            millis!("fired_at"),
            " AS fired, ",
            millis!("resolving_since"),
            " AS resolving FROM alerts WHERE state <> 'resolved'"
        ))
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::query("read open alerts"))?;
        Ok(rows
            .iter()
            .map(|r| OpenAlert {
                id: r.get("id"),
                rule_uid: r.get("rule_uid"),
                device_uid: r.get("device_uid"),
                series: map(r.get("series")),
                state: AlertState::from_name(r.get::<&str, _>("state"))
                    .unwrap_or(AlertState::Pending),
                started_ms: r.get("started"),
                fired_ms: r.get("fired"),
                resolving_since_ms: r.get("resolving"),
                value: r.get("value"),
                peak: r.get("peak"),
            })
            .collect())
    }

    /// Stores the latest value and peak of open alerts.
    pub async fn update_alert_values(&self, values: &[(Uuid, f64, f64)]) -> Result<(), StoreError> {
        if values.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = values.iter().map(|v| v.0).collect();
        let vals: Vec<f64> = values.iter().map(|v| v.1).collect();
        let peaks: Vec<f64> = values.iter().map(|v| v.2).collect();
        sqlx::query(
            "UPDATE alerts a SET value = d.value, peak = d.peak
             FROM unnest($1::uuid[], $2::float8[], $3::float8[]) AS d(id, value, peak)
             WHERE a.id = d.id AND a.state <> 'resolved'",
        )
        .bind(&ids)
        .bind(&vals)
        .bind(&peaks)
        .execute(self.pool())
        .await
        .map_err(StoreError::query("update alert values"))?;
        Ok(())
    }

    pub async fn list_alerts(&self, f: &AlertFilter) -> Result<Vec<Alert>, StoreError> {
        let states: Vec<&str> = f.states.iter().map(|s| s.as_str()).collect();
        let rows = sqlx::query(concat!("SELECT ", alert_columns!(), " FROM alerts
             WHERE ($1::text IS NULL OR namespace = $1)
               AND (cardinality($2::text[]) = 0 OR state = ANY($2))
               AND ($3::text IS NULL OR severity = $3)
               AND ($4::text IS NULL OR rule = $4)
               AND ($5::text IS NULL OR device = $5)
               AND ($6::text IS NULL OR site = $6)
               AND ($7::float8 IS NULL OR coalesce(resolved_at, 'infinity') >= to_timestamp($7 / 1000))
               AND ($8::float8 IS NULL OR started_at <= to_timestamp($8 / 1000))
               AND (cardinality($10::text[]) = 0 OR metric = ANY($10))
             ORDER BY started_at DESC, id LIMIT $9"))
        .bind(&f.namespace)
        .bind(&states)
        .bind(&f.severity)
        .bind(&f.rule)
        .bind(&f.device)
        .bind(&f.site)
        .bind(f.from_ms.map(|m| m as f64))
        .bind(f.to_ms.map(|m| m as f64))
        .bind(f.limit)
        .bind(&f.metrics)
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::query("list alerts"))?;
        Ok(rows.iter().map(decode_alert).collect())
    }

    pub async fn alert(&self, namespace: &str, id: Uuid) -> Result<Option<Alert>, StoreError> {
        let row = sqlx::query(concat!(
            "SELECT ",
            alert_columns!(),
            " FROM alerts WHERE namespace = $1 AND id = $2"
        ))
        .bind(namespace)
        .bind(id)
        .fetch_optional(self.pool())
        .await
        .map_err(StoreError::query("read an alert"))?;
        Ok(row.as_ref().map(decode_alert))
    }

    pub async fn alerts_by_id(&self, ids: &[Uuid]) -> Result<Vec<Alert>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            alert_columns!(),
            " FROM alerts WHERE id = ANY($1) ORDER BY started_at, id"
        ))
        .bind(ids)
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::query("read alerts"))?;
        Ok(rows.iter().map(decode_alert).collect())
    }

    pub async fn alert_history(&self, id: Uuid) -> Result<Vec<AlertEvent>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            rfc3339!("at"),
            " AS at, event, value, actor, detail FROM alert_events WHERE alert_id = $1 ORDER BY id"
        ))
        .bind(id)
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::query("read an alert's history"))?;
        Ok(rows
            .iter()
            .map(|r| AlertEvent {
                at: r.get("at"),
                event: r.get("event"),
                value: r.get("value"),
                actor: r.get("actor"),
                detail: r.get("detail"),
            })
            .collect())
    }

    /// Acknowledges (or with `ack = None`, unacknowledges) an open alert; `false` when
    /// there is no such open alert.
    pub async fn acknowledge_alert(
        &self,
        namespace: &str,
        id: Uuid,
        ack: Option<(&str, &str)>,
        actor: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self
            .pool()
            .begin()
            .await
            .map_err(StoreError::query("begin an acknowledgement"))?;
        let done = sqlx::query(
            "UPDATE alerts SET acknowledged_by = $3, acknowledged_at = CASE WHEN $3::text IS NULL THEN NULL ELSE now() END,
                               ack_comment = coalesce($4, '')
             WHERE namespace = $1 AND id = $2 AND state <> 'resolved'",
        )
        .bind(namespace)
        .bind(id)
        .bind(ack.map(|a| a.0))
        .bind(ack.map(|a| a.1))
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("acknowledge an alert"))?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        let (event, detail) = match ack {
            Some((_, comment)) => ("acknowledged", comment),
            None => ("unacknowledged", ""),
        };
        add_event(&mut tx, id, None, event, None, actor, detail).await?;
        tx.commit()
            .await
            .map_err(StoreError::query("commit an acknowledgement"))?;
        Ok(true)
    }

    pub async fn create_silence(&self, s: &Silence) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO silences (id, namespace, matchers, starts_at, ends_at, created_by, comment)
             VALUES ($1, $2, $3, $4::timestamptz, $5::timestamptz, $6, $7)",
        )
        .bind(s.id)
        .bind(&s.namespace)
        .bind(serde_json::to_value(&s.matchers).unwrap_or_default())
        .bind(&s.starts_at)
        .bind(&s.ends_at)
        .bind(&s.created_by)
        .bind(&s.comment)
        .execute(self.pool())
        .await
        .map_err(StoreError::query("create a silence"))?;
        Ok(())
    }

    /// Silences not yet ended (of one namespace, or all).
    pub async fn silences(&self, namespace: Option<&str>) -> Result<Vec<Silence>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT id, namespace, matchers, ",
            rfc3339!("starts_at"),
            " AS starts, ",
            rfc3339!("ends_at"),
            " AS ends, created_by, comment FROM silences
             WHERE ends_at > now() AND ($1::text IS NULL OR namespace = $1) ORDER BY starts_at, id"
        ))
        .bind(namespace)
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::query("list silences"))?;
        Ok(rows
            .iter()
            .map(|r| Silence {
                id: r.get("id"),
                namespace: r.get("namespace"),
                matchers: serde_json::from_value::<Vec<Matcher>>(r.get("matchers"))
                    .unwrap_or_default(),
                starts_at: r.get("starts"),
                ends_at: r.get("ends"),
                created_by: r.get("created_by"),
                comment: r.get("comment"),
                name: None,
            })
            .collect())
    }

    /// Ends a silence now; `false` when there is no such silence.
    pub async fn expire_silence(&self, namespace: &str, id: Uuid) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE silences SET ends_at = greatest(starts_at + interval '1 millisecond', now())
             WHERE namespace = $1 AND id = $2 AND ends_at > now()",
        )
        .bind(namespace)
        .bind(id)
        .execute(self.pool())
        .await
        .map_err(StoreError::query("expire a silence"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Firing, unacknowledged alerts last notified before `before_ms` (or never): the
    /// candidates for a repeat (or a first notification once a silence ended).
    /// Each with its rule's uid and its last notification time (Unix ms).
    pub async fn alerts_to_renotify(
        &self,
        before_ms: i64,
    ) -> Result<Vec<(Alert, Uuid, Option<i64>)>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            alert_columns!(),
            ", rule_uid, ",
            millis!("last_notified_at"),
            " AS notified FROM alerts
             WHERE state = 'firing' AND acknowledged_by IS NULL
               AND (last_notified_at IS NULL OR last_notified_at < to_timestamp($1::float8 / 1000))
             LIMIT 10000"
        ))
        .bind(before_ms as f64)
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::query("find alerts to notify again"))?;
        Ok(rows
            .iter()
            .map(|r| (decode_alert(r), r.get("rule_uid"), r.get("notified")))
            .collect())
    }

    /// Open alerts by rule and by device, for statuses: ((namespace, rule), firing) and
    /// ((namespace, device), firing).
    pub async fn firing_counts(
        &self,
    ) -> Result<(Vec<(String, String, i64)>, Vec<(String, String, i64)>), StoreError> {
        let by_rule = sqlx::query_as(
            "SELECT namespace, rule, count(*) FILTER (WHERE state = 'firing') FROM alerts
             WHERE state <> 'resolved' GROUP BY namespace, rule",
        )
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::query("count firing alerts by rule"))?;
        let by_device = sqlx::query_as(
            "SELECT namespace, device, count(*) FILTER (WHERE state = 'firing') FROM alerts
             WHERE state <> 'resolved' GROUP BY namespace, device",
        )
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::query("count firing alerts by device"))?;
        Ok((by_rule, by_device))
    }

    /// Deletes resolved alerts (with their history) that ended before `before_ms`, and
    /// finished deliveries older than it.
    pub async fn prune_alerts(&self, before_ms: i64) -> Result<u64, StoreError> {
        let alerts = sqlx::query(
            "DELETE FROM alerts WHERE state = 'resolved' AND resolved_at < to_timestamp($1::float8 / 1000)",
        )
        .bind(before_ms as f64)
        .execute(self.pool())
        .await
        .map_err(StoreError::query("prune resolved alerts"))?;
        sqlx::query(
            "DELETE FROM notification_deliveries
             WHERE coalesce(delivered_at, failed_at) < to_timestamp($1::float8 / 1000)",
        )
        .bind(before_ms as f64)
        .execute(self.pool())
        .await
        .map_err(StoreError::query("prune notification deliveries"))?;
        Ok(alerts.rows_affected())
    }
}

/// Alerts by id, inside a transaction.
pub async fn alerts_in(tx: &mut PgConnection, ids: &[Uuid]) -> Result<Vec<Alert>, StoreError> {
    let rows = sqlx::query(concat!(
        "SELECT ",
        alert_columns!(),
        " FROM alerts WHERE id = ANY($1) ORDER BY started_at, id"
    ))
    .bind(ids)
    .fetch_all(&mut *tx)
    .await
    .map_err(StoreError::query("read alerts"))?;
    Ok(rows.iter().map(decode_alert).collect())
}

/// An outbox row not yet part of a delivery.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Queued {
    pub key: String,
    pub alert_id: Uuid,
    pub namespace: String,
    pub channel: String,
    pub rule: String,
    pub group_key: String,
    pub kind: String,
}

/// Takes (locks) outbox rows older than `wait_ms` that are in no delivery yet.
pub async fn take_queued(tx: &mut PgConnection, wait_ms: i64) -> Result<Vec<Queued>, StoreError> {
    sqlx::query_as(
        "SELECT key, alert_id, namespace, channel, rule, group_key, kind FROM notification_outbox
         WHERE delivery_id IS NULL AND created_at <= now() - make_interval(secs => $1::float8 / 1000)
         ORDER BY created_at LIMIT 5000 FOR UPDATE SKIP LOCKED",
    )
    .bind(wait_ms as f64)
    .fetch_all(&mut *tx)
    .await
    .map_err(StoreError::query("take queued notifications"))
}

/// Creates a delivery for outbox rows `keys` (or finds the one of the same key).
pub async fn create_delivery(
    tx: &mut PgConnection,
    idempotency_key: &str,
    namespace: &str,
    channel: &str,
    kind: &str,
    payload: &Value,
    keys: &[&str],
) -> Result<i64, StoreError> {
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO notification_deliveries (idempotency_key, namespace, channel, kind, payload)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (idempotency_key) DO UPDATE SET idempotency_key = EXCLUDED.idempotency_key
         RETURNING id",
    )
    .bind(idempotency_key)
    .bind(namespace)
    .bind(channel)
    .bind(kind)
    .bind(payload)
    .fetch_one(&mut *tx)
    .await
    .map_err(StoreError::query("create a notification delivery"))?;
    sqlx::query("UPDATE notification_outbox SET delivery_id = $1 WHERE key = ANY($2)")
        .bind(id)
        .bind(keys)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("assign notifications to a delivery"))?;
    Ok(id)
}

/// A delivery claimed for one attempt.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    pub id: i64,
    pub idempotency_key: String,
    pub namespace: String,
    pub channel: String,
    pub kind: String,
    pub payload: Value,
    pub attempts: i32,
    pub created_ms: i64,
}

/// A delivery's outcome.
#[derive(Debug, Clone)]
pub enum Outcome {
    Delivered {
        detail: String,
    },
    Retry {
        after_ms: i64,
        error: String,
    },
    Failed {
        error: String,
    },
    /// Held back by the channel's rate limit: not an attempt.
    Deferred {
        after_ms: i64,
    },
}

impl Store {
    /// Claims up to `limit` due deliveries for `lease_ms` (a crashed attempt is retried
    /// after it).
    pub async fn claim_deliveries(
        &self,
        limit: i64,
        lease_ms: i64,
    ) -> Result<Vec<Claimed>, StoreError> {
        sqlx::query_as(concat!(
            "UPDATE notification_deliveries d SET attempts = d.attempts + 1,
                    next_attempt_at = now() + make_interval(secs => $2::float8 / 1000)
             WHERE d.id IN (SELECT id FROM notification_deliveries
                            WHERE delivered_at IS NULL AND failed_at IS NULL AND next_attempt_at <= now()
                            ORDER BY next_attempt_at LIMIT $1 FOR UPDATE SKIP LOCKED)
             RETURNING d.id, d.idempotency_key, d.namespace, d.channel, d.kind, d.payload, d.attempts, ",
            millis!("d.created_at"),
            " AS created_ms"
        ))
        .bind(limit)
        .bind(lease_ms as f64)
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::query("claim notification deliveries"))
    }

    /// Milliseconds until the next delivery is due (None: nothing pending).
    pub async fn next_delivery_in(&self) -> Result<Option<i64>, StoreError> {
        sqlx::query_scalar(concat!(
            "SELECT greatest(0, ",
            millis!("min(next_attempt_at)"),
            " - ",
            millis!("now()"),
            ") FROM notification_deliveries WHERE delivered_at IS NULL AND failed_at IS NULL"
        ))
        .fetch_one(self.pool())
        .await
        .map_err(StoreError::query("find the next notification due"))
    }

    /// Ticket ids `channel` opened, by alert.
    pub async fn tickets(
        &self,
        channel: &str,
        alerts: &[Uuid],
    ) -> Result<BTreeMap<Uuid, String>, StoreError> {
        let rows: Vec<(Uuid, Option<String>)> =
            sqlx::query_as("SELECT id, tickets->>$1 FROM alerts WHERE id = ANY($2)")
                .bind(channel)
                .bind(alerts)
                .fetch_all(self.pool())
                .await
                .map_err(StoreError::query("read alert tickets"))?;
        Ok(rows
            .into_iter()
            .filter_map(|(id, t)| t.map(|t| (id, t)))
            .collect())
    }

    /// Records an attempt's outcome, tickets opened, and the alerts' history.
    pub async fn finish_delivery(
        &self,
        d: &Claimed,
        alerts: &[Uuid],
        outcome: &Outcome,
        tickets: &BTreeMap<Uuid, String>,
    ) -> Result<(), StoreError> {
        let mut tx = self
            .pool()
            .begin()
            .await
            .map_err(StoreError::query("begin recording a delivery"))?;
        let (event, detail) = match outcome {
            Outcome::Delivered { detail } => {
                sqlx::query("UPDATE notification_deliveries SET delivered_at = now(), last_error = NULL WHERE id = $1")
                    .bind(d.id)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::query("mark a notification delivered"))?;
                (Some("notified"), detail.clone())
            }
            Outcome::Retry { after_ms, error } => {
                sqlx::query(
                    "UPDATE notification_deliveries SET last_error = $2,
                            next_attempt_at = now() + make_interval(secs => $3::float8 / 1000) WHERE id = $1",
                )
                .bind(d.id)
                .bind(error)
                .bind(*after_ms as f64)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query("schedule a notification retry"))?;
                (None, String::new())
            }
            Outcome::Failed { error } => {
                sqlx::query("UPDATE notification_deliveries SET failed_at = now(), last_error = $2 WHERE id = $1")
                    .bind(d.id)
                    .bind(error)
                    .execute(&mut *tx)
                    .await
                    .map_err(StoreError::query("mark a notification failed"))?;
                (Some("notificationFailed"), error.clone())
            }
            Outcome::Deferred { after_ms } => {
                sqlx::query(
                    "UPDATE notification_deliveries SET attempts = greatest(0, attempts - 1),
                            next_attempt_at = now() + make_interval(secs => $2::float8 / 1000) WHERE id = $1",
                )
                .bind(d.id)
                .bind(*after_ms as f64)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query("defer a rate-limited notification"))?;
                (None, String::new())
            }
        };
        if let Some(event) = event {
            let detail = format!("{} ({}): {detail}", d.kind, d.idempotency_key);
            for alert in alerts {
                add_event(&mut tx, *alert, None, event, None, &d.channel, &detail).await?;
            }
        }
        for (alert, ticket) in tickets {
            sqlx::query("UPDATE alerts SET tickets = tickets || jsonb_build_object($2::text, $3::text) WHERE id = $1")
                .bind(alert)
                .bind(&d.channel)
                .bind(ticket)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query("store a ticket id"))?;
        }
        tx.commit()
            .await
            .map_err(StoreError::query("commit a delivery outcome"))
    }

    /// (undelivered notifications, age of the oldest in seconds).
    pub async fn outbox_depth(&self) -> Result<(i64, i64), StoreError> {
        sqlx::query_as(concat!(
            "SELECT (SELECT count(*) FROM notification_outbox o WHERE o.delivery_id IS NULL)
                  + (SELECT count(*) FROM notification_deliveries WHERE delivered_at IS NULL AND failed_at IS NULL),
                    coalesce((", millis!("now()"), " - ", millis!("(SELECT min(created_at) FROM notification_deliveries WHERE delivered_at IS NULL AND failed_at IS NULL)"), ") / 1000, 0)"
        ))
        .fetch_one(self.pool())
        .await
        .map_err(StoreError::query("measure the outbox"))
    }

    /// Per channel: delivered, failed, last delivery (RFC 3339), last error.
    pub async fn channel_deliveries(
        &self,
    ) -> Result<Vec<(String, String, i64, i64, Option<String>, Option<String>)>, StoreError> {
        sqlx::query_as(concat!(
            "SELECT namespace, channel, count(*) FILTER (WHERE delivered_at IS NOT NULL),
                    count(*) FILTER (WHERE failed_at IS NOT NULL), ",
            rfc3339!("max(delivered_at)"),
            ", (array_agg(last_error ORDER BY id DESC) FILTER (WHERE last_error IS NOT NULL))[1]
             FROM notification_deliveries GROUP BY namespace, channel"
        ))
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::query("count deliveries by channel"))
    }
}
