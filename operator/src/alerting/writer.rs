//! Persists alert transitions and, in the same transaction, the notifications they cause
//! (the outbox): a firing alert is never recorded without its notifications queued, nor
//! queued without being recorded.
use std::collections::BTreeMap;

use cdot_crds::{
    alert_rule::Op,
    kind::Kind,
    notification_channel::NotificationChannelSpec,
    wire::alert::{AlertState, NotificationKind, Silence},
};
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{
    engine::{Ended, Transition},
    rules::Rule,
    store::{self as alerts, NewAlert, OutboxRow},
    suppress,
};
use crate::{
    index::{DeviceEntry, Snapshot},
    store::{Store, StoreError},
};

/// What a transition or repeat is decided against.
pub struct Context<'a> {
    pub snapshot: &'a Snapshot,
    pub silences: &'a [Silence],
    pub now: jiff::Timestamp,
}

/// The variables of summary and description templates (see `cdot_crds::template`).
#[derive(Serialize)]
struct TemplateContext<'a> {
    device: &'a str,
    namespace: &'a str,
    site: &'a str,
    rule: &'a str,
    metric: &'a str,
    unit: &'a str,
    value: f64,
    peak: f64,
    threshold: f64,
    op: &'static str,
    severity: &'a str,
    state: &'static str,
    series: &'a BTreeMap<String, String>,
    labels: &'a BTreeMap<String, String>,
    device_labels: &'a BTreeMap<String, String>,
}

fn op_str(op: Op) -> &'static str {
    match op {
        Op::Gt => ">",
        Op::Ge => ">=",
        Op::Lt => "<",
        Op::Le => "<=",
        Op::Eq => "==",
        Op::Ne => "!=",
    }
}

/// Two decimals are what people read; templates can format further.
fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

pub fn severity_str(rule: &Rule) -> &'static str {
    match rule.spec.severity {
        cdot_crds::alert_rule::Severity::Info => "Info",
        cdot_crds::alert_rule::Severity::Warning => "Warning",
        cdot_crds::alert_rule::Severity::Critical => "Critical",
    }
}

/// Rendered (summary, description); a template that fails at render time (a series label
/// the sample lacks) falls back to a plain line rather than losing the alert.
pub fn render(
    t: &Transition,
    device: &str,
    device_labels: &BTreeMap<String, String>,
    site: Option<&str>,
) -> (String, String) {
    let (rule, series, state, value, peak) = (&t.rule, &t.series, t.to, t.value, t.peak);
    let ctx = TemplateContext {
        device,
        namespace: &rule.namespace,
        site: site.unwrap_or(""),
        rule: &rule.name,
        metric: rule.metric,
        unit: rule.spec.metric.info().unit,
        value: round2(value),
        peak: round2(peak),
        threshold: rule.spec.condition.threshold,
        op: op_str(rule.spec.condition.op),
        severity: severity_str(rule),
        state: state.as_str(),
        series,
        labels: &rule.spec.labels,
        device_labels,
    };
    let summary = cdot_crds::template::render(&rule.spec.summary, &ctx).unwrap_or_else(|e| {
        tracing::warn!(rule = %rule.name, namespace = %rule.namespace, error = %e, "summary template failed");
        format!("{} on {device} is {} (threshold {})", rule.metric, ctx.value, ctx.threshold)
    });
    let description = rule
        .spec
        .description
        .as_deref()
        .map(|d| {
            cdot_crds::template::render(d, &ctx).unwrap_or_else(|e| {
                tracing::warn!(rule = %rule.name, namespace = %rule.namespace, error = %e, "description template failed");
                String::new()
            })
        })
        .unwrap_or_default();
    (summary, description)
}

/// The notification group of an alert: the values of the rule's `groupBy` labels; one
/// group per alert when the rule has none.
pub fn group_key(
    rule: &Rule,
    alert: Uuid,
    device: &str,
    series: &BTreeMap<String, String>,
    device_labels: &BTreeMap<String, String>,
) -> String {
    if rule.spec.group_by.is_empty() {
        return alert.to_string();
    }
    let values: BTreeMap<&str, &str> = rule
        .spec
        .group_by
        .iter()
        .map(|label| {
            let value = match label.as_str() {
                "device" => device,
                "metric" => rule.metric,
                other => series
                    .get(other)
                    .or_else(|| device_labels.get(other))
                    .map_or("", String::as_str),
            };
            (label.as_str(), value)
        })
        .collect();
    serde_json::to_string(&values).unwrap_or_default()
}

/// The alert a notification decision is about.
pub struct Subject<'a> {
    pub id: Uuid,
    pub rule: &'a Rule,
    pub device: &'a str,
    pub device_uid: Uuid,
    pub device_entry: Option<&'a DeviceEntry>,
    pub series: &'a BTreeMap<String, String>,
    pub kind: NotificationKind,
    /// Distinguishes repeats from each other in the idempotency key.
    pub sequence: String,
}

/// Queues the notifications of one alert event, unless something holds them back (then
/// the reason goes into the alert's history). Returns how many were queued.
pub async fn notify(
    tx: &mut PgConnection,
    ctx: &Context<'_>,
    s: &Subject<'_>,
) -> Result<usize, StoreError> {
    let rule = s.rule;
    if rule.spec.channels.is_empty() {
        return Ok(0);
    }
    let empty = BTreeMap::new();
    let device_labels = s.device_entry.map_or(&empty, |d| &d.object.labels);
    let site = s.device_entry.and_then(|d| d.site());
    // A resolved notification goes out even in maintenance: it closes what was sent.
    if s.kind != NotificationKind::Resolved {
        let labels = suppress::alert_labels(rule, s.device, site, s.series);
        let reason = s
            .device_entry
            .and_then(|d| suppress::device_maintenance(d, ctx.now))
            .map(str::to_owned)
            .or_else(|| {
                suppress::silenced_by(ctx.silences, &rule.namespace, &labels, ctx.now)
                    .map(|silence| format!("silenced by {}", silence.id))
            });
        let reason = match reason {
            Some(r) => Some(r),
            None if rule.metric != "deviceOffline"
                && alerts::device_offline_firing(tx, s.device_uid).await? =>
            {
                Some("inhibited by the device's deviceOffline alert".to_owned())
            }
            None => None,
        };
        if let Some(reason) = reason {
            alerts::add_event(tx, s.id, None, "suppressed", None, "", &reason).await?;
            return Ok(0);
        }
    }
    let group = group_key(rule, s.id, s.device, s.series, device_labels);
    let mut rows = Vec::new();
    for channel in &rule.spec.channels {
        let spec: Option<NotificationChannelSpec> = ctx
            .snapshot
            .get(Kind::NotificationChannel, &rule.namespace, channel)
            .and_then(|o| serde_json::from_value(o.spec.clone()).ok());
        let Some(spec) = spec else {
            alerts::add_event(
                tx,
                s.id,
                None,
                "notificationFailed",
                None,
                channel,
                &format!(
                    "NotificationChannel {}/{channel} does not exist or is invalid",
                    rule.namespace
                ),
            )
            .await?;
            continue;
        };
        if spec
            .min_severity
            .is_some_and(|min| rule.spec.severity < min)
            || (s.kind == NotificationKind::Resolved && !spec.send_resolved)
        {
            continue;
        }
        rows.push(OutboxRow {
            key: format!("{}:{}:{}:{channel}", s.id, s.kind.as_str(), s.sequence),
            alert_id: s.id,
            namespace: &rule.namespace,
            channel,
            rule: &rule.name,
            group_key: &group,
            kind: s.kind,
        });
    }
    alerts::enqueue(tx, &rows).await?;
    Ok(rows.len())
}

/// Writes a batch of transitions in one transaction; returns the notifications queued.
pub async fn persist(
    store: &Store,
    ctx: &Context<'_>,
    transitions: &[Transition],
) -> Result<usize, StoreError> {
    let mut tx = store
        .pool()
        .begin()
        .await
        .map_err(StoreError::query("begin writing alert transitions"))?;
    let mut queued = 0;
    for t in transitions {
        queued += apply(&mut tx, ctx, t).await?;
    }
    tx.commit()
        .await
        .map_err(StoreError::query("commit alert transitions"))?;
    Ok(queued)
}

async fn apply(
    tx: &mut PgConnection,
    ctx: &Context<'_>,
    t: &Transition,
) -> Result<usize, StoreError> {
    let rule = &t.rule;
    let entry = ctx.snapshot.device_by_uid(&t.device_uid);
    let empty = BTreeMap::new();
    let device_name = entry.map_or("", |d| d.object.name.as_str());
    let device_labels = entry.map_or(&empty, |d| &d.object.labels);
    let site = entry.and_then(|d| d.site());
    let (summary, description) = render(t, device_name, device_labels, site);
    let event = t.to.as_str();
    match t.from {
        None => {
            let inserted = alerts::insert_alert(
                tx,
                &NewAlert {
                    id: t.alert_id,
                    namespace: &rule.namespace,
                    rule: &rule.name,
                    rule_uid: rule.uid,
                    device: device_name,
                    device_uid: t.device_uid,
                    site,
                    metric: rule.metric,
                    series: &t.series,
                    labels: &rule.spec.labels,
                    severity: severity_str(rule),
                    state: t.to,
                    value: t.value,
                    threshold: rule.spec.condition.threshold,
                    summary: &summary,
                    description: &description,
                    started_ms: t.started_ms,
                    fired_ms: t.fired_ms,
                },
            )
            .await?;
            if !inserted {
                return Ok(0);
            }
        }
        Some(_) => {
            // A Device that is gone keeps the summary it had.
            let summary = entry.map(|_| summary.as_str());
            if !alerts::update_state(tx, t.alert_id, t.to, t.at_ms, t.value, t.peak, summary)
                .await?
            {
                return Ok(0);
            }
        }
    }
    let detail = match t.ended {
        Some(Ended::Unselected) => {
            "the rule was removed, paused, changed or no longer selects the device"
        }
        Some(Ended::Recovered) if t.from == Some(AlertState::Pending) => "recovered before firing",
        Some(Ended::Recovered) => "recovered",
        None => "",
    };
    alerts::add_event(
        tx,
        t.alert_id,
        Some(t.at_ms),
        event,
        Some(t.value),
        "",
        detail,
    )
    .await?;
    let kind = match (t.from, t.to) {
        (_, AlertState::Firing) => NotificationKind::Firing,
        (Some(AlertState::Firing), AlertState::Resolved)
            if alerts::was_notified(tx, t.alert_id).await? =>
        {
            NotificationKind::Resolved
        }
        _ => return Ok(0),
    };
    let subject = Subject {
        id: t.alert_id,
        rule,
        device: device_name,
        device_uid: t.device_uid,
        device_entry: entry.map(|e| e.as_ref()),
        series: &t.series,
        kind,
        sequence: String::new(),
    };
    notify(tx, ctx, &subject).await
}
