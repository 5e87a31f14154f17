//! Device: where it came from, whether it is enrolled, and whether it is reporting.
//!
//! A device with an agent is `Ready` while its last report (`status.agent.lastSeen`, the
//! operator's receive time) is at most [`MISSED_INTERVALS`] metrics intervals old.
use cdot_crds::{
    common::{Condition, ConditionStatus, parse_duration},
    device::{DeviceSource, DeviceSpec, DeviceStatus},
    wire::AgentConfig,
};

use super::{Observation, World};
use crate::store::StoredObject;

/// The interval liveness allows three of: the one the agent says it reports at (it may
/// override the configured one locally), else the configured one.
pub fn liveness_interval(configured: u64, reported: Option<u64>) -> u64 {
    reported.filter(|&s| s > 0).unwrap_or(configured)
}

/// Says how often the agent really reports, and the configured interval when it differs.
fn ready_message(configured: u64, reported: Option<u64>) -> String {
    match reported {
        Some(every) if every > 0 && every != configured => format!(
            "the agent reports every {every}s (a local override; spec.agent.metricsInterval asks for {configured}s)"
        ),
        Some(every) if every > 0 => format!("the agent reports every {every}s"),
        _ => format!("the agent reports; it is configured to report every {configured}s"),
    }
}

/// A device that missed this many metrics intervals is offline.
pub const MISSED_INTERVALS: i64 = 3;

/// What the device's spec asks of its agent; defaults from [`AgentConfig::default`].
pub fn agent_config(spec: &DeviceSpec) -> AgentConfig {
    let default = AgentConfig::default();
    let Some(agent) = &spec.agent else {
        return default;
    };
    AgentConfig {
        metrics_interval_secs: duration_secs(
            &agent.metrics_interval,
            default.metrics_interval_secs,
        ),
        inventory_interval_secs: duration_secs(
            &agent.inventory_interval,
            default.inventory_interval_secs,
        ),
        monitored_services: agent.monitored_services.clone(),
    }
}

/// Whole seconds of a spec duration, at least 1; `fallback` when it does not parse.
pub fn duration_secs(s: &str, fallback: u64) -> u64 {
    parse_duration(s)
        .map(|d| d.as_secs().max(1))
        .unwrap_or(fallback)
}

/// `now` is the pass's time (RFC 3339).
pub fn observe(
    spec: &DeviceSpec,
    object: &StoredObject,
    _world: &World<'_>,
    now: &str,
) -> Observation<DeviceStatus> {
    let status: DeviceStatus = serde_json::from_value(object.status.clone()).unwrap_or_default();
    // The creator (enrollment, discovery) owns `source`; a device only in manifests is Manual.
    let source = status.source.unwrap_or(DeviceSource::Manual);
    let owned = DeviceStatus {
        source: Some(source),
        ..DeviceStatus::default()
    };
    let paused = spec.maintenance.as_ref().is_some_and(|m| m.paused);
    let agent_seen = status.agent.as_ref().and_then(|a| a.last_seen.as_deref());
    let configured = agent_config(spec).metrics_interval_secs;
    let reported = status
        .agent
        .as_ref()
        .and_then(|a| a.report_interval_seconds);
    // The newer sign of life decides: the agent's report or an SNMP poll that answered
    // (same RFC 3339 form, so they compare as text).
    let polled = status
        .polling
        .as_ref()
        .filter(|p| agent_seen.is_none_or(|seen| p.last_seen.as_str() > seen));
    let (last_seen, interval, reporting, missed) = match polled {
        Some(p) => (
            Some(p.last_seen.as_str()),
            p.interval_seconds.max(1),
            format!(
                "polled over SNMP by {} every {}s",
                p.collector, p.interval_seconds
            ),
            "no SNMP poll answered",
        ),
        None => (
            agent_seen,
            liveness_interval(configured, reported),
            ready_message(configured, reported),
            "no report",
        ),
    };
    let mut observation = match (paused, last_seen) {
        (true, _) => Observation::not_ready(
            owned,
            "MaintenancePaused",
            "monitoring is paused by spec.maintenance.paused",
        ),
        (false, Some(_)) if is_ready(paused, last_seen, now, interval) => {
            Observation::ready(owned, "Reporting", reporting)
        }
        (false, Some(seen)) => Observation::not_ready(
            owned,
            "Offline",
            format!("{missed} since {seen}: {MISSED_INTERVALS} intervals of {interval}s missed"),
        ),
        (false, None) => Observation::not_ready(
            owned,
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
    if let Some(found) = &status.discovery {
        // Discovery's view: whether the last scan covering the device still found it.
        let seen = found.last_seen.as_deref().unwrap_or("an earlier run");
        observation.extra.push(if found.responding {
            Condition::new(
                "Responding",
                ConditionStatus::True,
                "Found",
                format!("found by DiscoveryScan {} at {seen}", found.scan),
                "",
            )
        } else {
            Condition::new(
                "Responding",
                ConditionStatus::False,
                "NotFound",
                format!(
                    "DiscoveryScan {}'s last run did not find it; last found at {seen}",
                    found.scan
                ),
                "",
            )
        });
    }
    observation
}

/// Whether a device is `Ready` as of `now`: not paused, and its last report at most
/// [`MISSED_INTERVALS`] metrics intervals old. The liveness pass uses this to find the
/// devices to reconcile; [`observe`] to decide.
pub fn is_ready(paused: bool, last_seen: Option<&str>, now: &str, interval_secs: u64) -> bool {
    !paused && last_seen.is_some_and(|seen| !is_overdue(seen, now, interval_secs))
}

/// Whether more than [`MISSED_INTERVALS`] intervals passed between `last_seen` and `now`.
/// Unparsable times count as overdue only when `now` parses (a broken clock is not an outage).
fn is_overdue(last_seen: &str, now: &str, interval_secs: u64) -> bool {
    let Ok(now) = now.parse::<jiff::Timestamp>() else {
        return false;
    };
    let Ok(seen) = last_seen.parse::<jiff::Timestamp>() else {
        return true;
    };
    let allowed = MISSED_INTERVALS * i64::try_from(interval_secs).unwrap_or(i64::MAX / 4);
    now.as_second() - seen.as_second() > allowed
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::reconcile::tests::stored;

    const NOW: &str = "2026-11-25T10:00:20Z";

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
        let observation = observe(&spec, &device, &World::new(&[]), NOW);
        assert_eq!(observation.status.source, Some(DeviceSource::Manual));
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
        let observation = observe(&spec, &device, &World::new(&[]), NOW);
        assert_eq!(observation.status.source, Some(DeviceSource::Agent));
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
            observe(&spec, &device, &World::new(&[]), NOW).ready.1,
            "MaintenancePaused"
        );
    }

    fn reporting(last_seen: &str, spec: serde_json::Value) -> Observation<DeviceStatus> {
        observe_agent(
            spec,
            json!({ "id": "a1", "version": "0.1.0", "lastSeen": last_seen }),
        )
    }

    /// Observes a Device whose `status.agent` is `agent`.
    fn observe_agent(
        spec: serde_json::Value,
        agent: serde_json::Value,
    ) -> Observation<DeviceStatus> {
        let status = json!({ "source": "Agent", "agent": agent });
        let device = stored("Device", "acme", "web-01", spec, status);
        let spec: DeviceSpec = serde_json::from_value(device.spec.clone()).expect("spec");
        observe(&spec, &device, &World::new(&[]), NOW)
    }

    #[test]
    fn a_device_that_missed_three_intervals_is_offline_until_it_reports_again() {
        let spec = json!({ "class": "Server", "agent": { "metricsInterval": "10s" } });
        // 30 s is exactly three intervals: still Ready.
        let o = reporting("2026-11-25T09:59:50Z", spec.clone());
        assert_eq!((o.ready.0, o.ready.1), (ConditionStatus::True, "Reporting"));
        // 31 s: offline, and the message says since when.
        let o = reporting("2026-11-25T09:59:49Z", spec.clone());
        assert_eq!((o.ready.0, o.ready.1), (ConditionStatus::False, "Offline"));
        assert!(o.ready.2.contains("2026-11-25T09:59:49Z"), "{}", o.ready.2);
        // The next report makes it Ready again.
        let o = reporting("2026-11-25T10:00:19Z", spec);
        assert_eq!(o.ready.0, ConditionStatus::True);
    }

    #[test]
    fn the_interval_comes_from_the_spec_or_the_agent_default() {
        // With 60s, 2 minutes of silence is fine, 3m01s is not.
        let spec = json!({ "class": "Server", "agent": { "metricsInterval": "60s" } });
        assert_eq!(
            reporting("2026-11-25T09:58:20Z", spec.clone()).ready.0,
            ConditionStatus::True
        );
        assert_eq!(
            reporting("2026-11-25T09:57:19Z", spec).ready.0,
            ConditionStatus::False
        );
        // No agent section: AgentConfig's default of 10s.
        let spec = json!({ "class": "Server" });
        assert_eq!(
            reporting("2026-11-25T09:59:49Z", spec).ready.0,
            ConditionStatus::False
        );
    }

    #[test]
    fn the_ready_message_names_the_interval_the_agent_is_sent() {
        let spec = json!({ "class": "Server", "agent": { "metricsInterval": "1m" } });
        let o = reporting("2026-11-25T09:59:50Z", spec.clone());
        let sent = agent_config(&serde_json::from_value(spec).expect("spec")).metrics_interval_secs;
        assert_eq!(sent, 60);
        assert_eq!(
            o.ready.2,
            "the agent reports; it is configured to report every 60s"
        );
        let o = reporting("2026-11-25T09:59:50Z", json!({ "class": "Server" }));
        assert!(o.ready.2.ends_with("every 10s"), "{}", o.ready.2);
        let o = reporting(
            "2026-11-25T09:55:00Z",
            json!({ "class": "Server", "agent": { "metricsInterval": "2m" } }),
        );
        assert_eq!(o.ready.0, ConditionStatus::True);
        assert!(o.ready.2.ends_with("every 120s"), "{}", o.ready.2);
    }

    /// Issue 11: the message said "every 10s" whatever the agent really did.
    #[test]
    fn an_agent_reporting_at_its_own_interval_is_judged_by_it() {
        let with_interval = |last_seen: &str, every: u64| {
            observe_agent(
                json!({ "class": "Server" }),
                json!({ "id": "a1", "version": "0.1.0", "lastSeen": last_seen, "reportIntervalSeconds": every }),
            )
        };
        // Every second, while the spec asks for 10 s: the message says both.
        let o = with_interval("2026-11-25T10:00:19Z", 1);
        assert_eq!(o.ready.0, ConditionStatus::True);
        assert_eq!(
            o.ready.2,
            "the agent reports every 1s (a local override; spec.agent.metricsInterval asks for 10s)"
        );
        // Three of its own intervals missed is offline, though three of 10 s are not.
        let o = with_interval("2026-11-25T10:00:15Z", 1);
        assert_eq!((o.ready.0, o.ready.1), (ConditionStatus::False, "Offline"));
        assert!(o.ready.2.contains("intervals of 1s"), "{}", o.ready.2);
        // A slower agent is not called offline at the spec's pace.
        let o = with_interval("2026-11-25T09:58:30Z", 60);
        assert_eq!(o.ready.0, ConditionStatus::True);
        assert_eq!(
            with_interval("2026-11-25T09:59:59Z", 10).ready.2,
            "the agent reports every 10s"
        );
    }

    #[test]
    fn agent_config_follows_the_spec() {
        let spec: DeviceSpec = serde_json::from_value(json!({
            "class": "Server",
            "agent": { "metricsInterval": "30s", "inventoryInterval": "1h", "monitoredServices": ["nginx.service"] }
        }))
        .expect("spec");
        assert_eq!(
            agent_config(&spec),
            AgentConfig {
                metrics_interval_secs: 30,
                inventory_interval_secs: 3600,
                monitored_services: vec!["nginx.service".into()],
            }
        );
        assert_eq!(agent_config(&DeviceSpec::default()), AgentConfig::default());
    }

    /// A device discovery found says so, and says when a later scan no longer found it.
    #[test]
    fn a_discovered_device_says_whether_the_last_scan_found_it() {
        let discovered = |responding: bool| {
            let status = json!({ "source": "Discovery", "discovery": {
                "scan": "lan", "lastSeen": "2026-11-25T09:00:00Z", "responding": responding } });
            let device = stored(
                "Device",
                "acme",
                "printer-1",
                json!({ "class": "Printer" }),
                status,
            );
            let spec: DeviceSpec = serde_json::from_value(device.spec.clone()).expect("spec");
            let o = observe(&spec, &device, &World::new(&[]), NOW);
            o.extra
                .into_iter()
                .find(|c| c.type_ == "Responding")
                .expect("a Responding condition")
        };
        let found = discovered(true);
        assert_eq!(
            (found.status, found.reason.as_str()),
            (ConditionStatus::True, "Found")
        );
        let lost = discovered(false);
        assert_eq!(
            (lost.status, lost.reason.as_str()),
            (ConditionStatus::False, "NotFound")
        );
        assert_eq!(
            lost.message,
            "DiscoveryScan lan's last run did not find it; last found at 2026-11-25T09:00:00Z"
        );
    }

    /// A network device without an agent is Ready while its SNMP polls answer, and says
    /// when they stopped.
    #[test]
    fn a_polled_device_is_ready_while_its_polls_answer() {
        let polled = |last_seen: &str| {
            let status = json!({ "source": "Discovery",
                "polling": { "collector": "col-1", "lastSeen": last_seen, "intervalSeconds": 60 } });
            let device = stored(
                "Device",
                "acme",
                "rtr-1",
                json!({ "class": "Router" }),
                status,
            );
            let spec: DeviceSpec = serde_json::from_value(device.spec.clone()).expect("spec");
            observe(&spec, &device, &World::new(&[]), NOW)
        };
        let o = polled("2026-11-25T09:58:00Z");
        assert_eq!((o.ready.0, o.ready.1), (ConditionStatus::True, "Reporting"));
        assert_eq!(o.ready.2, "polled over SNMP by col-1 every 60s");
        let o = polled("2026-11-25T09:56:00Z");
        assert_eq!((o.ready.0, o.ready.1), (ConditionStatus::False, "Offline"));
        assert_eq!(
            o.ready.2,
            "no SNMP poll answered since 2026-11-25T09:56:00Z: 3 intervals of 60s missed"
        );
    }
}
