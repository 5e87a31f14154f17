//! Workflow: which devices it covers and whether what it refers to exists. Nothing runs
//! workflows yet, so `Ready` says the workflow is accepted, not that it is armed.
use cdot_crds::{
    common::selector_matches,
    kind::Kind,
    workflow::{WorkflowSpec, WorkflowStatus},
};

use super::{Observation, World, count};
use crate::store::StoredObject;

/// Ends the `Ready` message until workflow execution exists.
pub const NOT_RUN: &str = "never run yet: workflow execution is not implemented";

pub fn observe(
    spec: &WorkflowSpec,
    object: &StoredObject,
    world: &World<'_>,
) -> Observation<WorkflowStatus> {
    let matched = count(
        world
            .of_kind(&object.namespace, Kind::Device)
            .filter(|device| selector_matches(&spec.selector, device.labels)),
    );
    let status = WorkflowStatus {
        matched_devices: Some(matched),
        ..WorkflowStatus::default()
    };
    let namespace = object.namespace.as_str();
    let mut missing = Vec::new();
    if let Some(rule) = &spec.trigger.alert_rule
        && !world.exists(namespace, Kind::AlertRule, rule)
    {
        missing.push(format!("AlertRule {rule} (spec.trigger.alertRule)"));
    }
    for (index, step) in spec.steps.iter().enumerate() {
        if let Some(channel) = &step.channel
            && !world.exists(namespace, Kind::NotificationChannel, channel)
        {
            missing.push(format!(
                "NotificationChannel {channel} (spec.steps[{index}].channel)"
            ));
        }
    }
    if !missing.is_empty() {
        return Observation::not_ready(
            status,
            "ReferenceNotFound",
            format!("not found in namespace {namespace}: {}", missing.join(", ")),
        );
    }
    if spec.paused {
        return Observation::ready(
            status,
            "Paused",
            format!("paused by spec.paused; selects {matched} device(s)"),
        );
    }
    Observation::ready(
        status,
        "Accepted",
        format!("valid; selects {matched} device(s); {NOT_RUN}"),
    )
}

#[cfg(test)]
mod tests {
    use cdot_crds::common::ConditionStatus;
    use serde_json::json;

    use super::*;
    use crate::reconcile::tests::stored;

    /// It said "armed" (reason `Armed`) while nothing runs workflows.
    #[test]
    fn ready_does_not_claim_the_workflow_is_armed() {
        let mut device = stored(
            "Device",
            "acme",
            "web-01",
            json!({ "class": "Server" }),
            json!({}),
        );
        device.labels.insert("role".into(), "web".into());
        let workflow = stored(
            "Workflow",
            "acme",
            "restart",
            json!({
                "selector": { "matchLabels": { "role": "web" } },
                "trigger": { "type": "Manual" },
                "steps": [{ "name": "restart", "type": "RestartService", "service": "nginx" }],
            }),
            json!({}),
        );
        let spec: WorkflowSpec = serde_json::from_value(workflow.spec.clone()).expect("spec");
        let observation = observe(&spec, &workflow, &World::new(&[device]));
        assert_eq!(observation.status.matched_devices, Some(1));
        assert_eq!(
            (observation.ready.0, observation.ready.1),
            (ConditionStatus::True, "Accepted")
        );
        assert_eq!(
            observation.ready.2,
            "valid; selects 1 device(s); never run yet: workflow execution is not implemented"
        );
    }
}
