//! Device: where it came from, whether it is enrolled, and whether it is reporting.
use cdot_crds::{
    common::{Condition, ConditionStatus},
    device::{DeviceSource, DeviceSpec, DeviceStatus},
};
use serde_json::json;

use super::{Observation, World};
use crate::store::StoredObject;

pub fn observe(spec: &DeviceSpec, object: &StoredObject, _world: &World<'_>) -> Observation {
    let status: DeviceStatus = serde_json::from_value(object.status.clone()).unwrap_or_default();
    // The creator (enrollment, discovery) owns `source`; a device only in manifests is Manual.
    let source = status.source.unwrap_or(DeviceSource::Manual);
    let fields = json!({ "source": source });
    let paused = spec.maintenance.as_ref().is_some_and(|m| m.paused);
    let reporting = status.agent.as_ref().is_some_and(|a| a.last_seen.is_some());
    let mut observation = match (paused, reporting) {
        (true, _) => Observation::not_ready(
            fields,
            "MaintenancePaused",
            "monitoring is paused by spec.maintenance.paused",
        ),
        (false, true) => Observation::ready(fields, "Reporting", "the device reports"),
        (false, false) => Observation::not_ready(
            fields,
            "NotReporting",
            "no agent or collector has reported for this device yet",
        ),
    };
    let enrolled = match &status.agent {
        Some(agent) => Condition::new(
            "Enrolled",
            ConditionStatus::True,
            "Enrolled",
            format!("agent {} enrolled", agent.id),
            "",
        ),
        None => Condition::new(
            "Enrolled",
            ConditionStatus::False,
            "NotEnrolled",
            "no agent has enrolled as this device",
            "",
        ),
    };
    observation.extra.push(enrolled);
    observation
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::tests::stored;

    #[test]
    fn a_manifest_device_is_manual_and_not_reporting() {
        let device = stored(
            "Device",
            "acme",
            "web-01",
            json!({ "class": "Server" }),
            json!({}),
        );
        let spec: DeviceSpec = serde_json::from_value(device.spec.clone()).expect("spec");
        let observation = observe(&spec, &device, &World::new(&[]));
        assert_eq!(observation.fields["source"], "Manual");
        assert_eq!(observation.ready.0, ConditionStatus::False);
        assert_eq!(observation.ready.1, "NotReporting");
        assert_eq!(observation.extra[0].status, ConditionStatus::False);
    }

    #[test]
    fn an_enrolled_reporting_device_is_ready_and_keeps_its_source() {
        let status = json!({ "source": "Agent", "agent": { "id": "a1", "version": "0.1.0", "lastSeen": "2026-11-25T10:00:00Z" } });
        let device = stored(
            "Device",
            "acme",
            "web-01",
            json!({ "class": "Server" }),
            status,
        );
        let spec: DeviceSpec = serde_json::from_value(device.spec.clone()).expect("spec");
        let observation = observe(&spec, &device, &World::new(&[]));
        assert_eq!(observation.fields["source"], "Agent");
        assert_eq!(observation.ready.0, ConditionStatus::True);
        assert_eq!(observation.extra[0].status, ConditionStatus::True);
    }

    #[test]
    fn maintenance_pause_wins() {
        let device = stored(
            "Device",
            "acme",
            "web-01",
            json!({ "class": "Server", "maintenance": { "paused": true } }),
            json!({}),
        );
        let spec: DeviceSpec = serde_json::from_value(device.spec.clone()).expect("spec");
        assert_eq!(
            observe(&spec, &device, &World::new(&[])).ready.1,
            "MaintenancePaused"
        );
    }
}
