//! The transitions worth telling people about, found by comparing an object's status before
//! and after a change. Pure: Kubernetes mode publishes them as Events, standalone mode logs
//! them; both see the same list.
use cdot_crds::kind::Kind;
use serde_json::Value;

use super::DEGRADED;

/// Whether an event reports normal progress or something a person should look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Normal,
    Warning,
}

/// One transition: `reason` is a CamelCase word (the Event's reason), `action` what the
/// operator did or saw, `note` a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub severity: Severity,
    pub reason: &'static str,
    pub action: &'static str,
    pub note: String,
}

/// The transitions between `before` and `after`, statuses of an object of `kind`.
pub fn transitions(kind: Kind, before: &Value, after: &Value) -> Vec<Transition> {
    let mut out = Vec::new();
    let became = |type_: &str, status: &str| {
        let now = condition(after, type_);
        let was = condition(before, type_);
        now.is_some_and(|c| c["status"] == status) && was.is_none_or(|c| c["status"] != status)
    };
    let message = |type_: &str| {
        condition(after, type_)
            .and_then(|c| c["message"].as_str())
            .unwrap_or_default()
            .to_owned()
    };
    if became(DEGRADED, "True") {
        out.push(Transition {
            severity: Severity::Warning,
            reason: "InvalidSpec",
            action: "Validate",
            note: message(DEGRADED),
        });
    }
    match kind {
        Kind::Device => {
            if became("Enrolled", "True") {
                out.push(Transition {
                    severity: Severity::Normal,
                    reason: "Enrolled",
                    action: "Enroll",
                    note: message("Enrolled"),
                });
            }
            let reason = |s: &Value| {
                condition(s, "Ready").and_then(|c| c["reason"].as_str().map(str::to_owned))
            };
            match (reason(before).as_deref(), reason(after).as_deref()) {
                (Some(was), Some("Offline")) if was != "Offline" => out.push(Transition {
                    severity: Severity::Warning,
                    reason: "Offline",
                    action: "Monitor",
                    note: message("Ready"),
                }),
                (Some("Offline"), Some("Reporting")) => out.push(Transition {
                    severity: Severity::Normal,
                    reason: "Online",
                    action: "Monitor",
                    note: message("Ready"),
                }),
                _ => {}
            }
            if became("Responding", "False") {
                out.push(Transition {
                    severity: Severity::Warning,
                    reason: "NotResponding",
                    action: "Discover",
                    note: message("Responding"),
                });
            }
        }
        Kind::DiscoveryScan => {
            let phase = |s: &Value| s["phase"].as_str().map(str::to_owned);
            let run = &after["lastRun"];
            match (phase(before).as_deref(), phase(after).as_deref()) {
                (was, Some("Running")) if was != Some("Running") => out.push(Transition {
                    severity: Severity::Normal,
                    reason: "ScanStarted",
                    action: "Scan",
                    note: format!(
                        "a run over {} addresses started",
                        after["progress"]["total"]
                    ),
                }),
                (was, Some(now @ ("Succeeded" | "Failed"))) if was != Some(now) => {
                    let mut note = format!(
                        "scan {}: {} of {} addresses, {} found, {} registered, {} updated",
                        now.to_lowercase(),
                        run["scanned"],
                        run["total"],
                        run["found"],
                        run["registered"],
                        run["updated"]
                    );
                    if let Some(why) = run["message"].as_str() {
                        note.push_str(&format!(": {why}"));
                    }
                    out.push(Transition {
                        severity: if now == "Failed" {
                            Severity::Warning
                        } else {
                            Severity::Normal
                        },
                        reason: if now == "Failed" {
                            "ScanFailed"
                        } else {
                            "ScanFinished"
                        },
                        action: "Scan",
                        note,
                    });
                }
                _ => {}
            }
        }
        Kind::PatchPolicy => {
            let failed = |s: &Value, ring: &str| {
                s["rings"]
                    .as_array()
                    .and_then(|rings| rings.iter().find(|r| r["name"] == ring))
                    .and_then(|r| r["failed"].as_u64())
                    .unwrap_or(0)
            };
            for ring in after["rings"].as_array().into_iter().flatten() {
                let name = ring["name"].as_str().unwrap_or_default();
                let (was, now) = (failed(before, name), failed(after, name));
                if now > was {
                    out.push(Transition {
                        severity: Severity::Warning,
                        reason: "PatchFailed",
                        action: "Patch",
                        note: format!(
                            "{} more device(s) failed to patch in ring {name} ({now} in all)",
                            now - was
                        ),
                    });
                }
            }
            let rollout = |s: &Value| s["rollout"]["state"].as_str().map(str::to_owned);
            match (rollout(before).as_deref(), rollout(after).as_deref()) {
                (was, Some("Halted")) if was != Some("Halted") => out.push(Transition {
                    severity: Severity::Warning,
                    reason: "RolloutHalted",
                    action: "Patch",
                    note: after["rollout"]["message"]
                        .as_str()
                        .unwrap_or("the rollout halted")
                        .to_owned(),
                }),
                (Some("Halted"), Some(now)) if now != "Halted" => out.push(Transition {
                    severity: Severity::Normal,
                    reason: "RolloutResumed",
                    action: "Patch",
                    note: after["rollout"]["message"]
                        .as_str()
                        .unwrap_or("the rollout goes on")
                        .to_owned(),
                }),
                _ => {}
            }
        }
        Kind::AlertRule | Kind::NotificationChannel | Kind::Workflow | Kind::Silence => {}
    }
    out
}

fn condition<'a>(status: &'a Value, type_: &str) -> Option<&'a Value> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ready(reason: &str, status: &str) -> Value {
        json!({ "type": "Ready", "status": status, "reason": reason, "message": "m" })
    }

    #[test]
    fn a_device_going_offline_and_back_is_told_once_each_way() {
        let reporting = json!({ "conditions": [ready("Reporting", "True")] });
        let offline = json!({ "conditions": [ready("Offline", "False")] });
        let down = transitions(Kind::Device, &reporting, &offline);
        assert_eq!(down.len(), 1);
        assert_eq!(
            (down[0].reason, down[0].severity),
            ("Offline", Severity::Warning)
        );
        assert!(transitions(Kind::Device, &offline, &offline).is_empty());
        assert_eq!(
            transitions(Kind::Device, &offline, &reporting)[0].reason,
            "Online"
        );
    }

    #[test]
    fn enrollment_and_invalid_specs_are_told() {
        let enrolled = json!({ "conditions": [{ "type": "Enrolled", "status": "True", "message": "agent a1 enrolled" }] });
        let told = transitions(Kind::Device, &json!({}), &enrolled);
        assert_eq!(told[0].reason, "Enrolled");
        assert_eq!(told[0].note, "agent a1 enrolled");

        let invalid = json!({ "conditions": [{ "type": "Degraded", "status": "True", "message": "spec.for: bad duration" }] });
        let told = transitions(Kind::AlertRule, &json!({}), &invalid);
        assert_eq!(told[0].reason, "InvalidSpec");
        assert!(transitions(Kind::AlertRule, &invalid, &invalid).is_empty());
    }

    #[test]
    fn scans_finishing_and_patches_failing_are_told() {
        let pending = json!({ "phase": "Pending" });
        let running = json!({ "phase": "Running", "progress": { "scanned": 0, "total": 254 } });
        let told = transitions(Kind::DiscoveryScan, &pending, &running);
        assert_eq!(told[0].reason, "ScanStarted");
        assert_eq!(told[0].note, "a run over 254 addresses started");
        let done = json!({ "phase": "Succeeded", "lastRun": {
            "scanned": 254, "total": 254, "found": 7, "registered": 5, "updated": 1 } });
        let told = transitions(Kind::DiscoveryScan, &running, &done);
        assert_eq!(told[0].reason, "ScanFinished");
        assert_eq!(
            told[0].note,
            "scan succeeded: 254 of 254 addresses, 7 found, 5 registered, 1 updated"
        );
        let failed = json!({ "phase": "Failed", "lastRun": {
            "scanned": 3, "total": 254, "found": 0, "registered": 0, "updated": 0,
            "message": "timed out" } });
        let told = transitions(Kind::DiscoveryScan, &running, &failed);
        assert_eq!(
            (told[0].reason, told[0].severity),
            ("ScanFailed", Severity::Warning)
        );
        assert!(told[0].note.ends_with(": timed out"), "{}", told[0].note);
        let responding = json!({ "conditions": [{ "type": "Responding", "status": "True" }] });
        let lost = json!({ "conditions": [{ "type": "Responding", "status": "False", "message": "not found" }] });
        let told = transitions(Kind::Device, &responding, &lost);
        assert_eq!(
            (told[0].reason, told[0].note.as_str()),
            ("NotResponding", "not found")
        );

        let before = json!({ "rings": [{ "name": "pilot", "failed": 1 }] });
        let after = json!({ "rings": [{ "name": "pilot", "failed": 3 }] });
        let told = transitions(Kind::PatchPolicy, &before, &after);
        assert_eq!(told[0].reason, "PatchFailed");
        assert!(told[0].note.starts_with("2 more"), "{}", told[0].note);
    }
}
