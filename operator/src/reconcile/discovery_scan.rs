//! DiscoveryScan: whether a collector could run it. The discovery engine
//! (`crate::discovery`) owns the rest of the status: phase, progress, last and next run,
//! problems, hosts.
use cdot_crds::{
    SITE_LABEL,
    device::DeviceClass,
    discovery_scan::{DiscoveryScanSpec, DiscoveryScanStatus},
    kind::Kind,
};
use serde::Deserialize;

use super::{Observation, World};
use crate::store::StoredObject;

pub fn observe(
    spec: &DiscoveryScanSpec,
    object: &StoredObject,
    world: &World<'_>,
) -> Observation<DiscoveryScanStatus> {
    // Owned by the engine: left out so neither overwrites the other.
    let status = DiscoveryScanStatus::default();
    let site = crate::discovery::collectors::scan_site(spec, &object.labels);
    let collectors: Vec<&str> = world
        .of_kind(&object.namespace, Kind::Device)
        .filter(|device| {
            device
                .spec
                .get("class")
                .and_then(|class| DeviceClass::deserialize(class).ok())
                == Some(DeviceClass::Collector)
        })
        .filter(|device| {
            let device_site = device
                .spec
                .get("site")
                .and_then(|s| s.as_str())
                .or_else(|| device.labels.get(SITE_LABEL).map(String::as_str));
            crate::discovery::collectors::selects_device(
                spec,
                site,
                device.name,
                device_site,
                device.labels,
            )
        })
        .map(|device| device.name)
        .collect();
    if collectors.is_empty() {
        let place = site.map_or_else(
            || "this namespace".to_owned(),
            |site| format!("site {site}"),
        );
        return Observation::not_ready(
            status,
            "NoCollector",
            format!(
                "no Collector device for {place}: enroll a collector there (cdot-collector enroll) to run this scan"
            ),
        );
    }
    let total = spec.address_count().unwrap_or_default();
    let covers = format!(
        "{total} address(es) across {} target(s), run by {}",
        spec.targets.len(),
        collectors.join(", ")
    );
    if spec.suspend {
        return Observation::ready(
            status,
            "Suspended",
            format!("suspended by spec.suspend: no new runs; {covers}"),
        );
    }
    let when = spec.schedule.as_ref().map_or_else(
        || "once per spec change".to_owned(),
        |s| {
            format!(
                "on schedule {s:?} ({})",
                spec.time_zone.as_deref().unwrap_or("UTC")
            )
        },
    );
    Observation::ready(status, "Scheduled", format!("runs {when}; {covers}"))
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

    #[test]
    fn ready_says_when_and_where_the_scan_runs() {
        let collector = stored(
            "Device",
            "acme",
            "collector-1",
            json!({ "class": "Collector" }),
            json!({}),
        );
        let o = scan_with(&[collector]);
        assert_eq!((o.ready.0, o.ready.1), (ConditionStatus::True, "Scheduled"));
        assert_eq!(
            o.ready.2,
            "runs once per spec change; 4 address(es) across 1 target(s), run by collector-1"
        );
        assert_eq!(
            o.status,
            DiscoveryScanStatus::default(),
            "the engine's fields are left out"
        );

        let o = scan_with(&[]);
        assert_eq!(
            (o.ready.0, o.ready.1),
            (ConditionStatus::False, "NoCollector")
        );
    }
}
