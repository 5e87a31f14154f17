//! DiscoveryScan: how many addresses it covers and whether a collector could run it.
//! Nothing runs scans yet, so `Ready` says the scan is accepted, not that it is scheduled.
use cdot_crds::{
    SITE_LABEL,
    common::selector_matches,
    device::DeviceClass,
    discovery_scan::{DiscoveryScanSpec, DiscoveryScanStatus, ScanPhase, ScanProgress},
    kind::Kind,
};
use serde::Deserialize;

use super::{Observation, World};
use crate::store::StoredObject;

/// Ends the `Ready` message until discovery scanning exists.
pub const NOT_SCANNED: &str = "not scanned yet: discovery scanning is not implemented";

pub fn observe(
    spec: &DiscoveryScanSpec,
    object: &StoredObject,
    world: &World<'_>,
) -> Observation<DiscoveryScanStatus> {
    let previous: DiscoveryScanStatus =
        serde_json::from_value(object.status.clone()).unwrap_or_default();
    // Validation already refused specs whose address count cannot be computed.
    let total = spec.address_count().unwrap_or_default();
    // The scanner owns phase and progress once it runs; before that the scan is pending.
    let progress = previous
        .progress
        .unwrap_or(ScanProgress { scanned: 0, total });
    let progress = ScanProgress { total, ..progress };
    let phase = previous.phase.unwrap_or(ScanPhase::Pending);
    let status = DiscoveryScanStatus {
        phase: Some(phase),
        progress: Some(progress),
        ..DiscoveryScanStatus::default()
    };

    let site = spec
        .site
        .as_deref()
        .or_else(|| object.labels.get(SITE_LABEL).map(String::as_str));
    let collectors = world
        .of_kind(&object.namespace, Kind::Device)
        .filter(|device| {
            device
                .spec
                .get("class")
                .and_then(|class| DeviceClass::deserialize(class).ok())
                == Some(DeviceClass::Collector)
        })
        .filter(|device| match &spec.collector {
            Some(selection) if selection.name.is_some() || selection.selector.is_some() => {
                selection
                    .name
                    .as_ref()
                    .is_none_or(|name| *name == device.name)
                    && selection
                        .selector
                        .as_ref()
                        .is_none_or(|s| selector_matches(s, device.labels))
            }
            _ => site.is_none_or(|site| {
                device.labels.get(SITE_LABEL).map(String::as_str) == Some(site)
                    || device.spec.get("site").and_then(|s| s.as_str()) == Some(site)
            }),
        })
        .count();
    if collectors == 0 {
        let place = site.map_or_else(
            || "this namespace".to_owned(),
            |site| format!("site {site}"),
        );
        return Observation::not_ready(
            status,
            "NoCollector",
            format!("no Collector device for {place}: a scan needs one to run from; {NOT_SCANNED}"),
        );
    }
    let covers = format!(
        "{total} address(es) across {} target(s)",
        spec.targets.len()
    );
    if spec.suspend {
        return Observation::ready(
            status,
            "Suspended",
            format!("suspended by spec.suspend; {covers}"),
        );
    }
    Observation::ready(
        status,
        "Accepted",
        format!("valid; {covers}; {NOT_SCANNED}"),
    )
}

#[cfg(test)]
mod tests {
    use cdot_crds::common::ConditionStatus;
    use serde_json::json;

    use super::*;
    use crate::reconcile::tests::stored;

    fn scan_with(devices: &[StoredObject]) -> Observation<DiscoveryScanStatus> {
        let scan = stored(
            "DiscoveryScan",
            "acme",
            "lan",
            json!({ "targets": ["10.0.0.0/30"] }),
            json!({}),
        );
        let spec: DiscoveryScanSpec = serde_json::from_value(scan.spec.clone()).expect("spec");
        observe(&spec, &scan, &World::new(devices))
    }

    /// It said `Scheduled` while nothing schedules or runs scans.
    #[test]
    fn ready_does_not_claim_the_scan_is_scheduled() {
        let collector = stored(
            "Device",
            "acme",
            "collector-1",
            json!({ "class": "Collector" }),
            json!({}),
        );
        let o = scan_with(&[collector]);
        assert_eq!((o.ready.0, o.ready.1), (ConditionStatus::True, "Accepted"));
        assert_eq!(
            o.ready.2,
            "valid; 4 address(es) across 1 target(s); not scanned yet: discovery scanning is not implemented"
        );
        assert_eq!(o.status.phase, Some(ScanPhase::Pending));
        assert_eq!(
            o.status.progress,
            Some(ScanProgress {
                scanned: 0,
                total: 4
            })
        );

        let o = scan_with(&[]);
        assert_eq!(
            (o.ready.0, o.ready.1),
            (ConditionStatus::False, "NoCollector")
        );
        assert!(
            !o.ready.2.contains("enroll a collector to run"),
            "{}",
            o.ready.2
        );
    }
}
