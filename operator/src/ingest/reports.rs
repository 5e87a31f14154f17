//! The latest report of each device, kept in memory and written as heartbeats in one
//! statement every couple of seconds: at a thousand reports per second, a write per
//! request would cost more than the samples themselves.
use std::{collections::HashMap, sync::Mutex};

use cdot_crds::device::MetricSummary;
use uuid::Uuid;

use super::{
    DeviceIdentity,
    validate::{LatestMetrics, newer},
};
use crate::store::{Store, StoreError, heartbeats::Heartbeat};

#[derive(Debug, Clone)]
struct Entry {
    version: String,
    report_interval_secs: Option<u32>,
    last_seen_ms: i64,
    latest: LatestMetrics,
    dirty: bool,
}

/// Latest report per device uid, with a dirty flag per device.
#[derive(Debug, Default)]
pub struct DeviceReports {
    devices: Mutex<HashMap<Uuid, Entry>>,
}

impl DeviceReports {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Entry>> {
        self.devices
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records a report of `identity` received at `seen_ms`.
    pub fn observe(
        &self,
        identity: &DeviceIdentity,
        version: &str,
        report_interval_secs: Option<u32>,
        seen_ms: i64,
        latest: &LatestMetrics,
    ) {
        let mut devices = self.lock();
        let entry = devices.entry(identity.uid).or_insert_with(|| Entry {
            version: String::new(),
            report_interval_secs: None,
            last_seen_ms: 0,
            latest: LatestMetrics::default(),
            dirty: true,
        });
        if entry.version != version {
            version.clone_into(&mut entry.version);
        }
        entry.last_seen_ms = entry.last_seen_ms.max(seen_ms);
        if report_interval_secs.is_some() {
            entry.report_interval_secs = report_interval_secs;
        }
        for (slot, new) in [
            (&mut entry.latest.cpu, latest.cpu),
            (&mut entry.latest.memory, latest.memory),
            (&mut entry.latest.disk_max, latest.disk_max),
        ] {
            if let Some((t, v)) = new {
                newer(slot, t, v);
            }
        }
        entry.dirty = true;
    }

    /// The reports changed since the last call, as heartbeats; they are marked clean.
    pub fn take_dirty(&self) -> Vec<Heartbeat> {
        let mut devices = self.lock();
        devices
            .iter_mut()
            .filter(|(_, e)| e.dirty)
            .map(|(uid, e)| {
                e.dirty = false;
                to_heartbeat(*uid, e)
            })
            .collect()
    }

    /// Marks devices dirty again (their write failed).
    pub fn mark_dirty(&self, uids: impl IntoIterator<Item = Uuid>) {
        let mut devices = self.lock();
        for uid in uids {
            if let Some(e) = devices.get_mut(&uid) {
                e.dirty = true;
            }
        }
    }

    /// Writes the changed reports; on failure they stay dirty for the next flush.
    pub async fn flush(&self, store: &Store) -> Result<usize, StoreError> {
        let beats = self.take_dirty();
        if beats.is_empty() {
            return Ok(0);
        }
        match store.record_heartbeats(&beats).await {
            Ok(_) => Ok(beats.len()),
            Err(e) => {
                self.mark_dirty(beats.iter().map(|b| b.device_uid));
                Err(e)
            }
        }
    }
}

fn to_heartbeat(uid: Uuid, e: &Entry) -> Heartbeat {
    let l = &e.latest;
    let at = [l.cpu, l.memory, l.disk_max]
        .into_iter()
        .flatten()
        .map(|(t, _)| t)
        .max();
    let last_metrics = at.map(|at| MetricSummary {
        at: rfc3339_ms(at),
        cpu_percent: l.cpu.map(|(_, v)| v),
        memory_percent: l.memory.map(|(_, v)| v),
        disk_percent_max: l.disk_max.map(|(_, v)| v),
    });
    Heartbeat {
        device_uid: uid,
        agent_version: e.version.clone(),
        last_seen_ms: e.last_seen_ms,
        last_metrics: last_metrics.and_then(|m| serde_json::to_value(m).ok()),
        report_interval_secs: e.report_interval_secs,
    }
}

/// RFC 3339 in UTC with second precision, as the rest of the status uses.
pub fn rfc3339_ms(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity() -> DeviceIdentity {
        DeviceIdentity {
            namespace: "acme".into(),
            name: "web-01".into(),
            uid: Uuid::from_u128(7),
        }
    }

    #[test]
    fn keeps_the_newest_value_of_each_summary_metric() {
        let reports = DeviceReports::default();
        let t = 1_764_000_000_000;
        reports.observe(
            &identity(),
            "0.1.0",
            Some(10),
            t,
            &LatestMetrics {
                cpu: Some((t, 10.0)),
                memory: Some((t, 50.0)),
                disk_max: None,
            },
        );
        // An older batch (a spool replay) does not overwrite newer values.
        reports.observe(
            &identity(),
            "0.1.0",
            Some(10),
            t + 5_000,
            &LatestMetrics {
                cpu: Some((t - 60_000, 99.0)),
                memory: None,
                disk_max: Some((t - 60_000, 80.0)),
            },
        );
        let dirty = reports.take_dirty();
        assert_eq!(dirty.len(), 1);
        let beat = &dirty[0];
        assert_eq!(beat.last_seen_ms, t + 5_000);
        assert_eq!(beat.device_uid, Uuid::from_u128(7));
        assert_eq!(beat.agent_version, "0.1.0");
        let last = beat.last_metrics.as_ref().expect("a metric summary");
        assert_eq!(last["cpuPercent"], 10.0);
        assert_eq!(last["memoryPercent"], 50.0);
        assert_eq!(last["diskPercentMax"], 80.0);
        assert_eq!(last["at"], rfc3339_ms(t));
        assert!(reports.take_dirty().is_empty(), "clean after take");
        reports.mark_dirty([Uuid::from_u128(7)]);
        assert_eq!(reports.take_dirty().len(), 1);
    }
}
