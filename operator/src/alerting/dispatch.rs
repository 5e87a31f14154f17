//! The outbox dispatcher: groups queued notifications into deliveries (one per channel,
//! rule, `groupBy` group and kind, after a short group wait), then delivers each, at
//! least once, with the same idempotency key on every attempt. A failed attempt is retried
//! with capped exponential backoff and jitter; each delivery runs on its own task, so a
//! receiver that hangs never holds up another channel.
use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use cdot_crds::{
    kind::Kind,
    notification_channel::NotificationChannelSpec,
    wire::alert::{AlertNotification, NOTIFICATION_VERSION, NotificationKind},
};
use rand::Rng;
use sha2::{Digest, Sha256};
use tokio::{sync::watch, task::JoinSet};
use uuid::Uuid;

use super::{
    Alerting, AlertingArgs,
    store::{self as alerts, Claimed, Outcome, Queued},
};
use crate::{
    metrics::{DeliveryLabels, Metrics},
    notify::{DeliveryError, Notifier, Target},
    secrets::Secrets,
    store::{Store, StoreError},
};

/// Deliveries in flight at once (over all channels).
const MAX_IN_FLIGHT: usize = 64;
/// A claimed attempt not finished by then (the process died) is taken up again.
const LEASE_MS: i64 = 120_000;
/// Longest sleep when nothing is due.
const IDLE: Duration = Duration::from_secs(1);

/// What delivering needs besides the outbox: the senders, the Secrets they read, and
/// whether the first desired state (which brings the Secrets) is loaded.
#[derive(Clone)]
pub struct Outlets {
    pub notifier: Notifier,
    pub secrets: Arc<Secrets>,
    pub ready: Arc<std::sync::atomic::AtomicBool>,
}

/// Everything one delivery attempt uses; shared by the attempts in flight.
struct Worker {
    alerting: Alerting,
    store: Store,
    metrics: Arc<Metrics>,
    outlets: Outlets,
    limits: RateLimits,
    args: AlertingArgs,
}

pub async fn run(
    alerting: Alerting,
    store: Store,
    metrics: Arc<Metrics>,
    outlets: Outlets,
    args: AlertingArgs,
    mut shutdown: watch::Receiver<bool>,
) {
    // Secrets arrive with the first desired state: before it, every channel that reads
    // one would fail.
    while !outlets.ready.load(std::sync::atomic::Ordering::Acquire) {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(100)) => {}
            _ = shutdown.changed() => return,
        }
    }
    let group_wait = args.notify_group_wait;
    let worker = Arc::new(Worker {
        alerting: alerting.clone(),
        store: store.clone(),
        metrics: metrics.clone(),
        outlets,
        limits: RateLimits::default(),
        args,
    });
    let mut in_flight: JoinSet<()> = JoinSet::new();
    let group_wait_ms = i64::try_from(group_wait.as_millis()).unwrap_or(0);
    loop {
        if let Err(e) = group(&store, group_wait_ms).await {
            crate::jobs::failed(&metrics, "group notifications", &e);
        }
        let room = MAX_IN_FLIGHT.saturating_sub(in_flight.len());
        if room > 0 && !*shutdown.borrow() {
            match store.claim_deliveries(room as i64, LEASE_MS).await {
                Ok(claimed) => {
                    for d in claimed {
                        in_flight.spawn(worker.clone().deliver(d));
                    }
                }
                Err(e) => crate::jobs::failed(&metrics, "claim notifications", &e),
            }
        }
        let wait = match store.next_delivery_in().await {
            Ok(Some(ms)) => Duration::from_millis(ms.clamp(0, 1000) as u64).min(IDLE),
            _ => IDLE,
        };
        tokio::select! {
            () = alerting.inner.outbox.notified() => {
                // Let the group gather.
                tokio::time::sleep(group_wait).await;
            }
            () = tokio::time::sleep(wait.max(Duration::from_millis(20))) => {}
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            _ = shutdown.changed() => {
                // Attempts in flight finish (or time out); claimed ones left are retried
                // after their lease by whoever runs next.
                while in_flight.join_next().await.is_some() {}
                return;
            }
        }
    }
}

/// Groups queued rows older than the group wait into deliveries, in one transaction.
async fn group(store: &Store, wait_ms: i64) -> Result<(), StoreError> {
    let mut tx = store
        .pool()
        .begin()
        .await
        .map_err(StoreError::query("begin grouping notifications"))?;
    let mut queued = alerts::take_queued(&mut tx, wait_ms).await?;
    if queued.is_empty() {
        return Ok(());
    }
    inhibit(&mut tx, &mut queued).await?;
    let mut groups: BTreeMap<(String, String, String, String, String), Vec<Queued>> =
        BTreeMap::new();
    for q in queued {
        groups
            .entry((
                q.namespace.clone(),
                q.channel.clone(),
                q.rule.clone(),
                q.group_key.clone(),
                q.kind.clone(),
            ))
            .or_default()
            .push(q);
    }
    for ((namespace, channel, rule, group_key, kind), rows) in groups {
        let ids: Vec<Uuid> = rows.iter().map(|r| r.alert_id).collect();
        let alerts = alerts::alerts_in(&mut tx, &ids).await?;
        let Some(kind) = NotificationKind::from_name(&kind) else {
            continue;
        };
        let mut keys: Vec<&str> = rows.iter().map(|r| r.key.as_str()).collect();
        keys.sort_unstable();
        // One row: its own key; a group: a digest of its members', so a regrouping after
        // a crash (same members) gives the same key.
        let idempotency_key = if keys.len() == 1 {
            keys[0].to_owned()
        } else {
            let mut h = Sha256::new();
            for k in &keys {
                h.update(k.as_bytes());
                h.update(b"\n");
            }
            format!("group:{}", hex::encode(&h.finalize()[..16]))
        };
        let notification = build(
            &idempotency_key,
            kind,
            &namespace,
            &channel,
            &rule,
            &group_key,
            alerts,
        );
        let payload = serde_json::to_value(&notification).unwrap_or_default();
        alerts::create_delivery(
            &mut tx,
            &idempotency_key,
            &namespace,
            &channel,
            kind.as_str(),
            &payload,
            &keys,
        )
        .await?;
    }
    tx.commit()
        .await
        .map_err(StoreError::query("commit grouped notifications"))
}

/// Drops the firing notifications of `deviceOffline` alerts the topology explains (a
/// Device upstream is offline too, see `crate::discovery::inhibit`): out of the outbox,
/// with why in both alerts' history.
async fn inhibit(tx: &mut sqlx::PgConnection, queued: &mut Vec<Queued>) -> Result<(), StoreError> {
    let firing: Vec<Uuid> = queued
        .iter()
        .filter(|q| q.kind == NotificationKind::Firing.as_str())
        .map(|q| q.alert_id)
        .collect();
    if firing.is_empty() {
        return Ok(());
    }
    let candidates = alerts::alerts_in(&mut *tx, &firing).await?;
    let now_ms = jiff::Timestamp::now().as_millisecond();
    let decision = crate::discovery::inhibit::decide(&mut *tx, &candidates, now_ms).await?;
    if !decision.deferred.is_empty() {
        // Looked at again a second later, when the late Device may have been declared
        // offline (or reported).
        let keys: Vec<String> = queued
            .iter()
            .filter(|q| decision.deferred.contains(&q.alert_id))
            .map(|q| q.key.clone())
            .collect();
        sqlx::query(
            "UPDATE notification_outbox SET created_at = now() + interval '1 second' WHERE key = ANY($1)",
        )
        .bind(&keys)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("defer notifications"))?;
        queued.retain(|q| !keys.contains(&q.key));
    }
    let held = decision.inhibited;
    if held.is_empty() {
        return Ok(());
    }
    for h in &held {
        let why = format!(
            "inhibited: {} is behind {}, whose deviceOffline alert {} is firing (topology)",
            h.device, h.upstream_device, h.upstream_alert
        );
        alerts::add_event(&mut *tx, h.alert, None, "suppressed", None, "", &why).await?;
        let explains = format!(
            "explains the deviceOffline alert {} of {} (behind it in the topology)",
            h.alert, h.device
        );
        alerts::add_event(
            &mut *tx,
            h.upstream_alert,
            None,
            "inhibits",
            None,
            "",
            &explains,
        )
        .await?;
    }
    let keys: Vec<String> = queued
        .iter()
        .filter(|q| {
            q.kind == NotificationKind::Firing.as_str()
                && held.iter().any(|h| h.alert == q.alert_id)
        })
        .map(|q| q.key.clone())
        .collect();
    sqlx::query("DELETE FROM notification_outbox WHERE key = ANY($1)")
        .bind(&keys)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("drop inhibited notifications"))?;
    queued.retain(|q| !keys.contains(&q.key));
    Ok(())
}

fn build(
    key: &str,
    kind: NotificationKind,
    namespace: &str,
    channel: &str,
    rule: &str,
    group_key: &str,
    alerts: Vec<cdot_crds::wire::alert::Alert>,
) -> AlertNotification {
    let severity = alerts.iter().map(|a| a.severity).max().unwrap_or_default();
    let first = alerts.first().map_or("", |a| a.summary.as_str());
    let more = match alerts.len() {
        0 | 1 => String::new(),
        n => format!(" (and {} more)", n - 1),
    };
    let label = match kind {
        NotificationKind::Firing => "FIRING",
        NotificationKind::Repeat => "STILL FIRING",
        NotificationKind::Resolved => "RESOLVED",
    };
    AlertNotification {
        version: NOTIFICATION_VERSION.into(),
        idempotency_key: key.into(),
        kind,
        namespace: namespace.into(),
        channel: channel.into(),
        rule: rule.into(),
        severity,
        // Per-alert groups are keyed by the alert id, not by labels.
        group: serde_json::from_str(group_key).unwrap_or_default(),
        title: format!("[{label}] {first}{more}"),
        alerts,
        created_at: crate::reconcile::now_rfc3339(),
    }
}

impl Worker {
    /// One attempt at one delivery, and its bookkeeping.
    async fn deliver(self: Arc<Self>, d: Claimed) {
        let (alerting, store, metrics, limits, args) = (
            &self.alerting,
            &self.store,
            &self.metrics,
            &self.limits,
            &self.args,
        );
        let (notifier, secrets) = (&self.outlets.notifier, &self.outlets.secrets);
        let span = tracing::info_span!("notification", namespace = %d.namespace, channel = %d.channel, key = %d.idempotency_key, attempt = d.attempts);
        tracing::Instrument::instrument(
        async move {
            let notification: Option<AlertNotification> = serde_json::from_value(d.payload.clone()).ok();
            let ids: Vec<Uuid> = notification
                .as_ref()
                .map(|n| n.alerts.iter().map(|a| a.id).collect())
                .unwrap_or_default();
            let snapshot = alerting.index().snapshot();
            let spec: Option<NotificationChannelSpec> = snapshot
                .get(Kind::NotificationChannel, &d.namespace, &d.channel)
                .and_then(|o| serde_json::from_value(o.spec.clone()).ok());
            let start = Instant::now();
            let (outcome, tickets) = match (notification, spec) {
                (None, _) => (Outcome::Failed { error: "the stored notification does not decode".into() }, BTreeMap::new()),
                (_, None) => (
                    Outcome::Failed {
                        error: format!("NotificationChannel {}/{} does not exist or is invalid", d.namespace, d.channel),
                    },
                    BTreeMap::new(),
                ),
                (Some(n), Some(spec)) => {
                    if let Some(wait) = limits.take(&d.namespace, &d.channel, &spec) {
                        (Outcome::Deferred { after_ms: wait.as_millis() as i64 }, BTreeMap::new())
                    } else {
                        let known = store.tickets(&d.channel, &ids).await.unwrap_or_default();
                        let target = Target { namespace: &d.namespace, name: &d.channel, spec: &spec };
                        match notifier.deliver(&target, secrets, &n, &known).await {
                            Ok(done) => (Outcome::Delivered { detail: done.detail }, done.tickets),
                            Err(e) => {
                                let tickets = e.tickets().clone();
                                (failure(&d, e, args), tickets)
                            }
                        }
                    }
                }
            };
            metrics.alerting.delivery_duration.observe(start.elapsed().as_secs_f64());
            let result = match &outcome {
                Outcome::Delivered { .. } => "delivered",
                Outcome::Retry { .. } => "retry",
                Outcome::Failed { .. } => "failed",
                Outcome::Deferred { .. } => "rate_limited",
            };
            metrics
                .alerting
                .deliveries
                .get_or_create(&DeliveryLabels {
                    namespace: d.namespace.clone(),
                    channel: d.channel.clone(),
                    result: result.into(),
                })
                .inc();
            match &outcome {
                Outcome::Delivered { detail } => tracing::info!(%detail, "notification delivered"),
                Outcome::Retry { error, after_ms } => tracing::warn!(%error, retry_in_ms = after_ms, "notification delivery failed; will retry"),
                Outcome::Failed { error } => tracing::error!(%error, "notification delivery failed for good"),
                Outcome::Deferred { after_ms } => tracing::debug!(after_ms, "notification held back by the channel's rate limit"),
            }
            // The outcome must be stored; if the store is down, the lease runs out and the
            // attempt is made again (same key), which at-least-once allows.
            if let Err(e) = store.finish_delivery(&d, &ids, &outcome, &tickets).await {
                crate::jobs::failed(metrics, "record a notification outcome", &e);
            }
        },
        span,
    )
    .await;
    }
}

/// Retry with backoff, or give up (permanent error, or too old).
fn failure(d: &Claimed, e: DeliveryError, args: &AlertingArgs) -> Outcome {
    let age_ms = jiff::Timestamp::now().as_millisecond() - d.created_ms;
    let give_up_ms = i64::try_from(args.notify_give_up_after.as_millis()).unwrap_or(i64::MAX);
    match e {
        DeliveryError::Permanent { message, .. } => Outcome::Failed { error: message },
        DeliveryError::Retryable { message, .. } if age_ms >= give_up_ms => Outcome::Failed {
            error: format!("gave up after {} attempts: {message}", d.attempts),
        },
        DeliveryError::Retryable {
            message,
            retry_after,
            ..
        } => {
            let max = args.notify_max_backoff.as_millis() as i64;
            let after_ms = backoff_ms(d.attempts, max, retry_after);
            Outcome::Retry {
                after_ms,
                error: message,
            }
        }
    }
}

/// 1 s, 2 s, 4 s, ... up to `max_ms`, each ±25 % at random so that many deliveries to
/// one receiver that came back do not arrive in step; at least what the receiver asked.
pub fn backoff_ms(attempts: i32, max_ms: i64, retry_after: Option<Duration>) -> i64 {
    let exp = 1_000i64.saturating_mul(1i64 << attempts.clamp(1, 20).saturating_sub(1));
    let base = exp.min(max_ms.max(1));
    let jitter = rand::rng().random_range(0.75..1.25);
    let mut ms = (base as f64 * jitter) as i64;
    if let Some(asked) = retry_after {
        ms = ms.max((asked.as_millis() as i64).min(3_600_000));
    }
    ms.max(100)
}

/// Per-channel token buckets from `spec.rateLimit` (per minute and per hour).
#[derive(Default)]
struct RateLimits {
    /// Send times of the last hour, per (namespace, channel).
    sent: std::sync::Mutex<HashMap<ChannelKey, Vec<Instant>>>,
}

type ChannelKey = (String, String);

impl RateLimits {
    /// `None` when the channel may send now (and counts it); else how long to wait.
    fn take(
        &self,
        namespace: &str,
        channel: &str,
        spec: &NotificationChannelSpec,
    ) -> Option<Duration> {
        let limit = spec.rate_limit.as_ref()?;
        let windows: Vec<(Duration, u32)> = [
            limit.max_per_minute.map(|n| (Duration::from_secs(60), n)),
            limit.max_per_hour.map(|n| (Duration::from_secs(3600), n)),
        ]
        .into_iter()
        .flatten()
        .collect();
        let mut all = self
            .sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let sent = all
            .entry((namespace.to_owned(), channel.to_owned()))
            .or_default();
        let now = Instant::now();
        sent.retain(|t| now.duration_since(*t) < Duration::from_secs(3600));
        for (window, max) in &windows {
            let in_window = sent.iter().filter(|t| now.duration_since(**t) < *window);
            let count = in_window.clone().count();
            if count as u32 >= *max {
                let oldest = in_window.min().copied().unwrap_or(now);
                return Some(
                    (*window)
                        .saturating_sub(now.duration_since(oldest))
                        .max(Duration::from_millis(100)),
                );
            }
        }
        sent.push(now);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap_and_honours_retry_after() {
        for (attempt, base) in [
            (1, 1_000),
            (2, 2_000),
            (3, 4_000),
            (10, 300_000),
            (40, 300_000),
        ] {
            let ms = backoff_ms(attempt, 300_000, None);
            assert!(
                (base * 3 / 4..=base * 5 / 4).contains(&ms),
                "attempt {attempt}: {ms}"
            );
        }
        assert!(backoff_ms(1, 300_000, Some(Duration::from_secs(30))) >= 30_000);
        assert!(backoff_ms(1, 300_000, Some(Duration::from_secs(86_400))) <= 3_600_000);
    }
}
