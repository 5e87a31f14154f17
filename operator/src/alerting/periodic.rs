//! Alerting work on a clock: `deviceOffline` from the heartbeat state, repeat
//! notifications, silences, alert values and statuses, retention.
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use cdot_crds::{kind::Kind, wire::alert::NotificationKind};
use serde_json::json;
use tokio::sync::watch;

use super::{Alerting, AlertingArgs, engine::Sample, suppress, writer};
use crate::{
    changes::Changes,
    jobs::{self, liveness},
    metrics::{Metrics, StateLabels},
    store::{StatusPatch, Store, StoreError},
};

/// How often absence is evaluated and repeats are looked for.
const TICK: Duration = Duration::from_secs(5);
/// Windows no sample reached for this long are forgotten.
const IDLE: Duration = Duration::from_secs(3600);

pub async fn run(
    alerting: Alerting,
    store: Store,
    metrics: Arc<Metrics>,
    changes: Changes,
    args: AlertingArgs,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut interval = jobs::interval(TICK);
    let mut statuses = StatusWriter::default();
    let mut ticks: u64 = 0;
    loop {
        tokio::select! {
            running = jobs::tick(&mut interval, &mut shutdown) => if !running { return },
            () = alerting.inner.silences_changed.notified() => {
                refresh_silences(&alerting, &store, &metrics).await;
                continue;
            }
        }
        ticks += 1;
        refresh_silences(&alerting, &store, &metrics).await;
        let now = jiff::Timestamp::now();
        let result = evaluate_offline(&alerting, &store, now).await;
        if let Err(e) = result {
            jobs::failed(&metrics, "deviceOffline evaluation", &e);
        }
        if let Err(e) = renotify(&alerting, &store, now).await {
            jobs::failed(&metrics, "repeat notifications", &e);
        }
        match store.outbox_depth().await {
            Ok((depth, oldest)) => {
                metrics.alerting.outbox_depth.set(depth);
                metrics.alerting.outbox_oldest_seconds.set(oldest);
            }
            Err(e) => jobs::failed(&metrics, "measure the outbox", &e),
        }
        let values = alerting.inner.engine.take_changed_values();
        if let Err(e) = store.update_alert_values(&values).await {
            jobs::failed(&metrics, "store alert values", &e);
        }
        let (pending, firing) = alerting.inner.engine.count_open();
        for (state, n) in [("pending", pending), ("firing", firing)] {
            metrics
                .alerting
                .alerts
                .get_or_create(&StateLabels {
                    state: state.into(),
                })
                .set(n as i64);
        }
        if let Err(e) = statuses.write(&alerting, &store, &changes).await {
            jobs::failed(&metrics, "alert statuses", &e);
        }
        if ticks % 720 == 1 {
            let before = now.as_millisecond()
                - i64::try_from(args.alert_retention.as_millis()).unwrap_or(i64::MAX);
            match store.prune_alerts(before).await {
                Ok(n) if n > 0 => {
                    tracing::info!(alerts = n, "pruned resolved alerts past retention")
                }
                Ok(_) => {}
                Err(e) => jobs::failed(&metrics, "alert retention", &e),
            }
            alerting
                .inner
                .engine
                .forget_idle(now.as_millisecond(), IDLE.as_millis() as i64);
        }
    }
}

/// Silences made through the API and those of the desired state, together.
async fn refresh_silences(alerting: &Alerting, store: &Store, metrics: &Arc<Metrics>) {
    match store.silences(None).await {
        Ok(mut s) => {
            s.extend(suppress::manifest_silences(
                &alerting.inner.index.snapshot(),
            ));
            alerting.inner.silences.store(Arc::new(s));
        }
        Err(e) => jobs::failed(metrics, "load silences", &e),
    }
}

/// `deviceOffline` is 1 for a device that reported once and then missed three of its
/// intervals (or is paused: then it is not evaluated at all). A device that never
/// reported is not offline, it is not monitored yet.
async fn evaluate_offline(
    alerting: &Alerting,
    store: &Store,
    now: jiff::Timestamp,
) -> Result<(), StoreError> {
    let rules = alerting.inner.engine.rules();
    let watched: HashSet<uuid::Uuid> = rules
        .selections()
        .filter(|(rule, _)| rule.metric == "deviceOffline")
        .map(|(_, device)| device)
        .collect();
    if watched.is_empty() {
        return Ok(());
    }
    let snapshot = alerting.inner.index.snapshot();
    let now_text = now.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let no_labels = BTreeMap::new();
    for d in store.device_liveness().await? {
        let Some(entry) = snapshot.device(&d.namespace, &d.name) else {
            continue;
        };
        if d.paused || d.last_seen.is_none() || !watched.contains(&entry.object.uid) {
            continue;
        }
        let offline = !liveness::is_ready(&d, &now_text);
        alerting.observe(
            entry.object.uid,
            [Sample {
                metric: "deviceOffline",
                labels: &no_labels,
                t_ms: now.as_millisecond(),
                value: if offline { 1.0 } else { 0.0 },
            }],
        );
    }
    Ok(())
}

/// Firing, unacknowledged alerts whose rule's repeat interval passed since the last
/// notification, or that were never notified (held back by a silence or maintenance that
/// has since ended): queue them again.
async fn renotify(
    alerting: &Alerting,
    store: &Store,
    now: jiff::Timestamp,
) -> Result<(), StoreError> {
    let rules = alerting.inner.engine.rules();
    let Some(shortest) = rules
        .rules
        .iter()
        .filter(|r| !r.spec.channels.is_empty())
        .map(|r| {
            if r.repeat_ms > 0 {
                r.repeat_ms
            } else {
                i64::MAX
            }
        })
        .min()
    else {
        return Ok(());
    };
    let candidates = store
        .alerts_to_renotify(
            now.as_millisecond()
                .saturating_sub(shortest.min(now.as_millisecond())),
        )
        .await?;
    if candidates.is_empty() {
        return Ok(());
    }
    let snapshot = alerting.inner.index.snapshot();
    let silences = alerting.silences();
    let ctx = writer::Context {
        snapshot: &snapshot,
        silences: &silences,
        now,
    };
    let mut tx = store
        .pool()
        .begin()
        .await
        .map_err(StoreError::query("begin repeat notifications"))?;
    let mut queued = 0;
    for (alert, rule_uid, last_notified) in candidates {
        let Some(rule) = rules.rule(&rule_uid) else {
            continue;
        };
        // The query took the shortest repeat interval of all rules; this rule's own decides.
        let notified = last_notified.is_some();
        if last_notified
            .is_some_and(|t| rule.repeat_ms == 0 || now.as_millisecond() - t < rule.repeat_ms)
        {
            continue;
        }
        let entry = snapshot.device(&alert.namespace, &alert.device);
        let subject = writer::Subject {
            id: alert.id,
            rule,
            device: &alert.device,
            device_uid: entry.map_or(uuid::Uuid::nil(), |e| e.object.uid),
            device_entry: entry.map(|e| e.as_ref()),
            series: &alert.series,
            kind: if notified {
                NotificationKind::Repeat
            } else {
                NotificationKind::Firing
            },
            sequence: now.as_millisecond().to_string(),
        };
        queued += writer::notify(&mut tx, &ctx, &subject).await?;
    }
    tx.commit()
        .await
        .map_err(StoreError::query("commit repeat notifications"))?;
    if queued > 0 {
        alerting.inner.outbox.notify_one();
    }
    Ok(())
}

/// Writes `firing` and `lastEvaluation` of AlertRules and `firingAlerts` of Devices when
/// they change.
#[derive(Default)]
struct StatusWriter {
    last: HashMap<(Kind, String, String), serde_json::Value>,
}

impl StatusWriter {
    async fn write(
        &mut self,
        alerting: &Alerting,
        store: &Store,
        changes: &Changes,
    ) -> Result<(), StoreError> {
        let (by_rule, by_device) = store.firing_counts().await?;
        let by_rule: HashMap<(String, String), i64> =
            by_rule.into_iter().map(|(ns, n, c)| ((ns, n), c)).collect();
        let by_device: HashMap<(String, String), i64> = by_device
            .into_iter()
            .map(|(ns, n, c)| ((ns, n), c))
            .collect();
        let rules = alerting.inner.engine.rules();
        let mut wanted: HashMap<(Kind, String, String), serde_json::Value> = HashMap::new();
        for rule in &rules.rules {
            let firing = by_rule
                .get(&(rule.namespace.clone(), rule.name.clone()))
                .copied()
                .unwrap_or(0);
            let mut status = json!({ "firing": firing });
            let last = rule.last_evaluated_ms.load(Ordering::Relaxed);
            // Minute precision: a status write per rule per sample would be churn.
            if last > 0
                && let Ok(t) = jiff::Timestamp::from_millisecond(last - last % 60_000)
            {
                status["lastEvaluation"] = json!(t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string());
            }
            wanted.insert(
                (Kind::AlertRule, rule.namespace.clone(), rule.name.clone()),
                status,
            );
        }
        for (ns, channel, delivered, failed, last_delivery, last_error) in
            store.channel_deliveries().await?
        {
            let mut status = json!({ "delivered": delivered, "failed": failed });
            if let Some(t) = last_delivery {
                status["lastDelivery"] = json!(t);
            }
            if let Some(e) = last_error {
                status["lastError"] = json!(e);
            }
            wanted.insert((Kind::NotificationChannel, ns, channel), status);
        }
        for ((ns, device), firing) in &by_device {
            wanted.insert(
                (Kind::Device, ns.clone(), device.clone()),
                json!({ "firingAlerts": firing }),
            );
        }
        // Devices that had alerts and have none now go back to 0.
        for key in self.last.keys() {
            if key.0 == Kind::Device && !wanted.contains_key(key) {
                wanted.insert(key.clone(), json!({ "firingAlerts": 0 }));
            }
        }
        let patches: Vec<StatusPatch> = wanted
            .iter()
            .filter(|(k, v)| self.last.get(*k) != Some(*v))
            .map(|((kind, ns, name), status)| StatusPatch {
                kind: *kind,
                namespace: ns.clone(),
                name: name.clone(),
                status: status.clone(),
            })
            .collect();
        if !patches.is_empty() {
            store.patch_statuses(&patches).await?;
            for p in &patches {
                changes.status_changed(p.kind, &p.namespace, &p.name);
            }
        }
        wanted.retain(|k, v| k.0 != Kind::Device || v["firingAlerts"] != 0);
        self.last = wanted;
        Ok(())
    }
}
