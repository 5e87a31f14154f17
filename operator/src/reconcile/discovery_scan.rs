//! DiscoveryScan: how many addresses it covers and whether a collector can run it.
use cdot_crds::{
    SITE_LABEL,
    common::selector_matches,
    device::DeviceClass,
    discovery_scan::{DiscoveryScanSpec, DiscoveryScanStatus, ScanPhase, ScanProgress},
    kind::Kind,
};
use serde_json::json;

use super::{Observation, World};
use crate::store::StoredObject;

pub fn observe(spec: &DiscoveryScanSpec, object: &StoredObject, world: &World<'_>) -> Observation {
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
    let fields = json!({ "phase": phase, "progress": progress });

    let site = spec
        .site
        .as_deref()
        .or_else(|| object.labels.get(SITE_LABEL).map(String::as_str));
    let collector_class = json!(DeviceClass::Collector);
    let collectors = world
        .of_kind(&object.namespace, Kind::Device)
        .filter(|device| device.spec.get("class") == Some(&collector_class))
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
            fields,
            "NoCollector",
            format!("no Collector device for {place} yet; enroll a collector to run this scan"),
        );
    }
    if spec.suspend {
        return Observation::ready(
            fields,
            "Suspended",
            "scheduling is suspended by spec.suspend",
        );
    }
    Observation::ready(
        fields,
        "Scheduled",
        format!(
            "{total} address(es) across {} target(s)",
            spec.targets.len()
        ),
    )
}
