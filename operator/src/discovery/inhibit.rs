//! Alert inhibition from the topology: a `deviceOffline` notification of a Device is held
//! back while a Device that every path from its site's collector runs through (see
//! [`super::topology`]) has a firing `deviceOffline` alert of its own. Both alerts' history
//! names the other, so the one page that goes out says what it explains.
//!
//! Checked when queued notifications are grouped (after the group wait). Devices behind a
//! dead router do not all go offline in the router's pass: each missed its last poll at its
//! own moment, so one may fire a poll interval before the router. A notification whose
//! Device has an upstream Device that is late (it missed a report or poll) but not yet
//! offline is therefore deferred, until that Device's alert fires (then it is inhibited) or
//! it reports again (then it goes out), at most as long as the upstream Device takes to be
//! declared offline.
use std::collections::BTreeMap;

use cdot_crds::wire::alert::Alert;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::{store::links_in, topology::Graph};
use crate::store::StoreError;

/// An alert held back: by which Device's alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inhibited {
    pub alert: Uuid,
    pub device: String,
    pub upstream_device: String,
    pub upstream_alert: Uuid,
}

/// What the topology says of queued offline notifications.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    /// Held back for good: an upstream Device's alert explains them.
    pub inhibited: Vec<Inhibited>,
    /// Not yet: an upstream Device is late; looked at again shortly.
    pub deferred: Vec<Uuid>,
}

/// A Device is late when its newest report or poll is older than its interval and this.
const LATE_GRACE_MS: i64 = 5_000;
/// How many intervals a Device may miss before it is offline (as liveness counts them).
const MISSED: i64 = 3;

/// Which of `alerts` (firing `deviceOffline` ones are looked at, others pass) an upstream
/// Device's firing `deviceOffline` alert inhibits, and which wait for a late one.
pub async fn decide(
    tx: &mut PgConnection,
    alerts: &[Alert],
    now_ms: i64,
) -> Result<Decision, StoreError> {
    let mut out = Decision::default();
    let mut by_namespace: BTreeMap<&str, Vec<&Alert>> = BTreeMap::new();
    for a in alerts.iter().filter(|a| a.metric == "deviceOffline") {
        by_namespace.entry(&a.namespace).or_default().push(a);
    }
    for (namespace, offline) in by_namespace {
        let links = links_in(&mut *tx, namespace).await?;
        if links.is_empty() {
            continue;
        }
        let graph = Graph::new(&links);
        let down = firing_offline(&mut *tx, namespace).await?;
        let collectors = collectors(&mut *tx, namespace).await?;
        let seen = last_seen(&mut *tx, namespace).await?;
        // Late: missed a report or poll; how long until it counts as offline.
        let late: Vec<(&str, i64)> = seen
            .iter()
            .filter(|(_, (at, every))| now_ms - at > every + LATE_GRACE_MS)
            .map(|(device, (at, every))| (device.as_str(), at + MISSED * every))
            .collect();
        for alert in offline {
            let upstream_of = |candidates: &mut dyn Iterator<Item = &str>| {
                let candidates: Vec<&str> = candidates.filter(|d| *d != alert.device).collect();
                collectors
                    .iter()
                    .filter(|(_, site, _)| site.is_none() || *site == alert.site)
                    .find_map(|(name, _, addresses)| {
                        let roots = Graph::roots(&links, name, addresses);
                        graph
                            .upstream(&roots, &alert.device, candidates.iter().copied())
                            .map(str::to_owned)
                    })
            };
            if let Some(upstream) = upstream_of(&mut down.iter().map(|(d, _)| d.as_str()))
                && let Some((_, id)) = down.iter().find(|(d, _)| *d == upstream)
            {
                out.inhibited.push(Inhibited {
                    alert: alert.id,
                    device: alert.device.clone(),
                    upstream_device: upstream,
                    upstream_alert: *id,
                });
                continue;
            }
            // A late Device upstream: wait until it is declared offline (or reports).
            let waiting = upstream_of(&mut late.iter().map(|(d, _)| *d)).and_then(|upstream| {
                late.iter()
                    .find(|(d, _)| *d == upstream)
                    .map(|(_, offline_at)| now_ms <= offline_at + LATE_GRACE_MS)
            });
            if waiting == Some(true) {
                out.deferred.push(alert.id);
            }
        }
    }
    Ok(out)
}

/// Every Device's newest report or poll and its interval, Unix ms: device → (at, every).
async fn last_seen(
    tx: &mut PgConnection,
    namespace: &str,
) -> Result<BTreeMap<String, (i64, i64)>, StoreError> {
    let rows = sqlx::query(
        "SELECT o.name,
                (extract(epoch FROM greatest(h.last_seen, p.last_seen)) * 1000)::int8,
                (CASE WHEN p.last_seen > h.last_seen OR h.device_uid IS NULL THEN p.interval_secs
                      ELSE coalesce(h.report_interval_secs, 60) END)::int8 * 1000
         FROM objects o
         LEFT JOIN device_heartbeats h ON h.device_uid = o.uid
         LEFT JOIN device_polls p ON p.device_uid = o.uid
         WHERE o.namespace = $1 AND o.kind = 'Device'
           AND (h.device_uid IS NOT NULL OR p.device_uid IS NOT NULL)",
    )
    .bind(namespace)
    .fetch_all(&mut *tx)
    .await
    .map_err(StoreError::query("read the devices' last reports"))?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let at: Option<i64> = r.get(1);
            let every: Option<i64> = r.get(2);
            Some((r.get(0), (at?, every?)))
        })
        .collect())
}

/// Devices with a firing `deviceOffline` alert, the oldest first: (device, alert).
async fn firing_offline(
    tx: &mut PgConnection,
    namespace: &str,
) -> Result<Vec<(String, Uuid)>, StoreError> {
    let rows = sqlx::query(
        "SELECT device, id FROM alerts
         WHERE namespace = $1 AND metric = 'deviceOffline' AND state = 'firing'
         ORDER BY fired_at, id",
    )
    .bind(namespace)
    .fetch_all(&mut *tx)
    .await
    .map_err(StoreError::query("read firing offline alerts"))?;
    Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
}

/// The namespace's collectors: (name, site, management addresses).
async fn collectors(
    tx: &mut PgConnection,
    namespace: &str,
) -> Result<Vec<(String, Option<String>, Vec<String>)>, StoreError> {
    let rows = sqlx::query(
        "SELECT name, COALESCE(spec->>'site', labels->>'rmm.cdot.io/site'),
                COALESCE(spec->'managementAddresses', '[]'::jsonb)
         FROM objects WHERE kind = 'Device' AND namespace = $1 AND spec->>'class' = 'Collector'",
    )
    .bind(namespace)
    .fetch_all(&mut *tx)
    .await
    .map_err(StoreError::query("read collectors for inhibition"))?;
    Ok(rows
        .iter()
        .map(|r| {
            let addresses: serde_json::Value = r.get(2);
            (
                r.get(0),
                r.get(1),
                serde_json::from_value(addresses).unwrap_or_default(),
            )
        })
        .collect())
}
