//! Workflow: which devices it covers and whether what it refers to exists. `Ready` means
//! armed: the automation engine (`crate::automation`) starts runs when the trigger fires,
//! and writes `runs`, `failures` and `lastRun`.
use cdot_crds::{
    common::selector_matches,
    kind::Kind,
    workflow::{WorkflowSpec, WorkflowStatus},
};

use super::{Observation, World, count};
use crate::store::StoredObject;

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
    for (field, r) in spec.config_map_refs() {
        if let Some(Err(what)) = world.config_map_key(namespace, &r.name, &r.key) {
            missing.push(format!("{what} ({field})"));
        }
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
        "Armed",
        format!(
            "armed: runs on {}; selects {matched} device(s)",
            trigger_text(spec)
        ),
    )
}

/// The trigger in words, for the `Ready` message.
fn trigger_text(spec: &WorkflowSpec) -> String {
    use cdot_crds::workflow::TriggerType as T;
    let t = &spec.trigger;
    match t.type_ {
        T::AlertFiring | T::AlertResolved => format!(
            "{} alerts {}",
            t.alert_rule.as_deref().unwrap_or("any AlertRule's"),
            if t.type_ == T::AlertFiring {
                "firing"
            } else {
                "resolving"
            }
        ),
        T::DeviceOffline => format!(
            "a device offline for {}",
            t.offline_for.as_deref().unwrap_or("0s")
        ),
        T::DeviceOnline => match t.offline_for.as_deref() {
            Some(d) => format!("a device back after at least {d} offline"),
            None => "a device back from offline".into(),
        },
        T::ServiceFailed => format!(
            "{} failing {} time(s){}",
            t.service.as_deref().unwrap_or("a monitored service"),
            t.count.unwrap_or(1),
            t.within
                .as_deref()
                .map(|w| format!(" within {w}"))
                .unwrap_or_default()
        ),
        T::PatchFailed => "a failed patch install".into(),
        T::Schedule => format!(
            "schedule {} ({})",
            t.schedule.as_deref().unwrap_or_default(),
            t.time_zone.as_deref().unwrap_or("UTC")
        ),
        T::Manual => "request (POST .../workflows/NAME:run)".into(),
    }
}

#[cfg(test)]
mod tests {
    use cdot_crds::common::ConditionStatus;
    use serde_json::json;

    use super::*;
    use crate::{config_maps::ConfigMaps, reconcile::tests::stored};

    /// `Ready` says the workflow is armed and what starts it.
    #[test]
    fn ready_says_what_starts_a_run() {
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
            (ConditionStatus::True, "Armed")
        );
        assert_eq!(
            observation.ready.2,
            "armed: runs on request (POST .../workflows/NAME:run); selects 1 device(s)"
        );
    }

    /// A RunScript step's ConfigMap (and its key) must exist where ConfigMaps are known;
    /// a missing one makes the Workflow not Ready, naming the step.
    #[test]
    fn a_missing_script_config_map_is_a_missing_reference() {
        let workflow = stored(
            "Workflow",
            "acme",
            "cleanup",
            json!({
                "trigger": { "type": "Manual" },
                "steps": [
                    { "name": "inline", "type": "RunScript", "script": { "body": "true" } },
                    { "name": "kept", "type": "RunScript",
                      "script": { "configMapRef": { "name": "scripts", "key": "clean.sh" } } },
                ],
            }),
            json!({}),
        );
        let spec: WorkflowSpec = serde_json::from_value(workflow.spec.clone()).expect("spec");
        let maps = ConfigMaps::default();
        let ready = |maps: &ConfigMaps| {
            let o = observe(&spec, &workflow, &World::new(&[]).with_config_maps(maps));
            (o.ready.0, o.ready.1.to_owned(), o.ready.2)
        };
        assert_eq!(
            ready(&maps),
            (
                ConditionStatus::False,
                "ReferenceNotFound".to_owned(),
                "not found in namespace acme: ConfigMap scripts (spec.steps[1].script.configMapRef)"
                    .to_owned()
            )
        );
        let version = maps.version();
        let map = |key: &str| {
            vec![(
                "acme".to_owned(),
                "scripts".to_owned(),
                [(key.to_owned(), "rm -rf /tmp/x".to_owned())].into(),
            )]
        };
        maps.replace(map("other.sh"));
        assert_eq!(
            ready(&maps).2,
            "not found in namespace acme: key clean.sh of ConfigMap scripts \
             (spec.steps[1].script.configMapRef)"
        );
        maps.replace(map("clean.sh"));
        assert_eq!(ready(&maps).1, "Armed");
        assert_eq!(maps.version(), version + 2);
        maps.replace(map("clean.sh"));
        assert_eq!(
            maps.version(),
            version + 2,
            "an unchanged replace is no news"
        );
    }
}
