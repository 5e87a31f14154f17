//! Alert inhibition from the topology: a `deviceOffline` notification of a Device is held
//! back while a Device that every path from its site's collector runs through (see
//! [`super::topology`]) has a firing `deviceOffline` alert of its own. Both alerts' history
//! names the other, so the one page that goes out says what it explains.
//!
//! Checked when queued notifications are grouped (after the group wait), so that alerts
//! firing in the same evaluation pass, in whatever order, are decided alike.
use std::collections::BTreeMap;

use cdot_crds::wire::alert::Alert;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use super::{store::Link, topology::Graph};
use crate::store::StoreError;

/// An alert held back: by which Device's alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inhibited {
    pub alert: Uuid,
    pub device: String,
    pub upstream_device: String,
    pub upstream_alert: Uuid,
}

/// Which of `alerts` (firing `deviceOffline` ones are looked at, others pass) an upstream
/// Device's firing `deviceOffline` alert inhibits.
pub async fn inhibited(
    tx: &mut PgConnection,
    alerts: &[Alert],
) -> Result<Vec<Inhibited>, StoreError> {
    let mut out = Vec::new();
    let mut by_namespace: BTreeMap<&str, Vec<&Alert>> = BTreeMap::new();
    for a in alerts.iter().filter(|a| a.metric == "deviceOffline") {
        by_namespace.entry(&a.namespace).or_default().push(a);
    }
    for (namespace, offline) in by_namespace {
        let links = links(&mut *tx, namespace).await?;
        if links.is_empty() {
            continue;
        }
        let graph = Graph::new(&links);
        let down = firing_offline(&mut *tx, namespace).await?;
        let collectors = collectors(&mut *tx, namespace).await?;
        for alert in offline {
            let candidates = down
                .iter()
                .filter(|(device, _)| *device != alert.device)
                .map(|(device, _)| device.as_str());
            let upstream = collectors
                .iter()
                .filter(|(_, site, _)| site.is_none() || *site == alert.site)
                .find_map(|(name, _, addresses)| {
                    let roots = Graph::roots(&links, name, addresses);
                    graph.upstream(&roots, &alert.device, candidates.clone())
                });
            if let Some(upstream) = upstream
                && let Some((_, id)) = down.iter().find(|(d, _)| d == upstream)
            {
                out.push(Inhibited {
                    alert: alert.id,
                    device: alert.device.clone(),
                    upstream_device: upstream.to_owned(),
                    upstream_alert: *id,
                });
            }
        }
    }
    Ok(out)
}

async fn links(tx: &mut PgConnection, namespace: &str) -> Result<Vec<Link>, StoreError> {
    let rows = sqlx::query(
        "SELECT device, local_port, remote_chassis, remote_port, remote_device, remote_name,
                host(remote_address)
         FROM topology_links WHERE namespace = $1",
    )
    .bind(namespace)
    .fetch_all(&mut *tx)
    .await
    .map_err(StoreError::query("read the topology for inhibition"))?;
    Ok(rows
        .iter()
        .map(|r| Link {
            device: r.get(0),
            local_port: r.get(1),
            remote_chassis: r.get(2),
            remote_port: r.get(3),
            remote_device: r.get(4),
            remote_name: r.get(5),
            remote_address: r.get::<Option<String>, _>(6).and_then(|a| a.parse().ok()),
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
