//! Rings: which ring a device is in, and when a rollout of one package version may move
//! from one ring to the next.
//!
//! A rollout starts when a version is first approved: ring 0 opens after its `delay`. Ring
//! k opens once every device of ring k-1 that needs the version has finished (installed or
//! failed), and `max(delay of ring k, soak of ring k-1)` has passed since the last of them
//! finished. While ring k-1 runs and soaks, a failed install beyond its
//! `maxFailurePercent` (default 0: any failure), or an alert that fired on one of its
//! devices after it opened, halts the rollout: no later ring opens until a commit changes
//! the policy. No anchor gates rings on its own monitoring; this is the point of doing
//! patching inside the monitoring system.
use std::time::Duration;

use cdot_crds::{
    common::{parse_duration, selector_matches},
    patch_policy::PatchPolicySpec,
};
use jiff::{SignedDuration, Timestamp};
use std::collections::BTreeMap;

/// Name of the single ring of a policy without rings.
pub const DEFAULT_RING: &str = "all";

/// The ring of a device with `labels`: the first whose selector matches (a ring without
/// one takes every device left); `None` when no ring takes it.
pub fn ring_of(spec: &PatchPolicySpec, labels: &BTreeMap<String, String>) -> Option<usize> {
    if spec.rings.is_empty() {
        return Some(0);
    }
    spec.rings.iter().position(|ring| {
        ring.selector
            .as_ref()
            .is_none_or(|s| selector_matches(s, labels))
    })
}

/// The name of ring `index`.
pub fn ring_name(spec: &PatchPolicySpec, index: usize) -> &str {
    spec.rings
        .get(index)
        .map_or(DEFAULT_RING, |r| r.name.as_str())
}

/// How many rings the policy has (1 without rings).
pub fn ring_count(spec: &PatchPolicySpec) -> usize {
    spec.rings.len().max(1)
}

/// What one ring's devices did with one package version.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RingFacts {
    /// Devices of the ring that need the version (still offered, or carried by an install).
    pub devices: u32,
    /// Of those, installed.
    pub installed: u32,
    /// Of those, failed (their latest attempt).
    pub failed: u32,
    /// The last install of the ring that finished, installed or failed.
    pub last_finished: Option<Timestamp>,
    /// Alerts that fired on the ring's devices since it opened: `rule on device`.
    pub alerts_since_open: Vec<String>,
}

impl RingFacts {
    fn finished(&self) -> bool {
        self.installed + self.failed >= self.devices
    }
}

/// What the engine should do with one rollout now.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Nothing to do.
    Wait,
    /// Open ring `ring` (record it as open from `at`).
    Open { ring: usize, at: Timestamp },
    /// Halt before ring `ring + 1`, because of what ring `ring` did.
    Halt { ring: usize, reason: String },
}

/// The step of a rollout of `package` whose rings are `opened` (the open time of rings
/// 0..n, in order), whose ring facts are `facts` (one per ring), approved first at
/// `approved`.
pub fn step(
    spec: &PatchPolicySpec,
    package: &str,
    approved: Timestamp,
    opened: &[Timestamp],
    facts: &[RingFacts],
    now: Timestamp,
) -> Step {
    let rings = ring_count(spec);
    let Some(last) = opened.len().checked_sub(1) else {
        let at = after(approved, delay(spec, 0));
        return if now >= at {
            Step::Open { ring: 0, at }
        } else {
            Step::Wait
        };
    };
    let Some(current) = facts.get(last) else {
        return Step::Wait;
    };
    let ring = ring_name(spec, last);
    let allowed = spec
        .rings
        .get(last)
        .and_then(|r| r.max_failure_percent)
        .unwrap_or(0);
    if current.failed > 0
        && u64::from(current.failed) * 100 > u64::from(allowed) * u64::from(current.devices)
    {
        return Step::Halt {
            ring: last,
            reason: format!(
                "{} of {} install(s) of {package} in ring {ring} failed (at most {allowed}% may)",
                current.failed, current.devices
            ),
        };
    }
    if let Some(alert) = current.alerts_since_open.first() {
        return Step::Halt {
            ring: last,
            reason: format!(
                "alert {alert} fired in ring {ring} after {package} was rolled out to it"
            ),
        };
    }
    if last + 1 >= rings || !current.finished() {
        return Step::Wait;
    }
    let done = current
        .last_finished
        .unwrap_or(opened[last])
        .max(opened[last]);
    let wait = if current.devices == 0 {
        delay(spec, last + 1)
    } else {
        delay(spec, last + 1).max(soak(spec, last))
    };
    let at = after(done, wait);
    if now >= at {
        Step::Open { ring: last + 1, at }
    } else {
        Step::Wait
    }
}

/// When the rollout's next ring opens, if it is only waiting for time.
pub fn next_opening(
    spec: &PatchPolicySpec,
    approved: Timestamp,
    opened: &[Timestamp],
    facts: &[RingFacts],
) -> Option<Timestamp> {
    let Some(last) = opened.len().checked_sub(1) else {
        return Some(after(approved, delay(spec, 0)));
    };
    let current = facts.get(last)?;
    if last + 1 >= ring_count(spec) || !current.finished() {
        return None;
    }
    let done = current
        .last_finished
        .unwrap_or(opened[last])
        .max(opened[last]);
    let wait = if current.devices == 0 {
        delay(spec, last + 1)
    } else {
        delay(spec, last + 1).max(soak(spec, last))
    };
    Some(after(done, wait))
}

fn delay(spec: &PatchPolicySpec, ring: usize) -> Duration {
    spec.rings
        .get(ring)
        .and_then(|r| parse_duration(&r.delay).ok())
        .unwrap_or_default()
}

fn soak(spec: &PatchPolicySpec, ring: usize) -> Duration {
    spec.rings
        .get(ring)
        .and_then(|r| parse_duration(&r.soak).ok())
        .unwrap_or_default()
}

fn after(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec() -> PatchPolicySpec {
        serde_json::from_value(json!({
            "rings": [
                {"name": "pilot", "selector": {"matchLabels": {"ring": "pilot"}}, "soak": "10m"},
                {"name": "broad", "delay": "1h"},
            ]
        }))
        .expect("spec")
    }

    fn t(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn ring(devices: u32, installed: u32, failed: u32, last: Option<&str>) -> RingFacts {
        RingFacts {
            devices,
            installed,
            failed,
            last_finished: last.map(t),
            alerts_since_open: vec![],
        }
    }

    #[test]
    fn devices_fall_into_the_first_ring_that_takes_them() {
        let s = spec();
        let pilot = BTreeMap::from([("ring".to_owned(), "pilot".to_owned())]);
        assert_eq!(ring_of(&s, &pilot), Some(0));
        assert_eq!(ring_of(&s, &BTreeMap::new()), Some(1));
        assert_eq!(ring_name(&s, 1), "broad");
    }

    #[test]
    fn the_next_ring_waits_for_the_first_to_finish_and_soak() {
        let s = spec();
        let approved = t("2026-12-07T10:00:00Z");
        assert_eq!(
            step(&s, "openssl", approved, &[], &[], approved),
            Step::Open {
                ring: 0,
                at: approved
            }
        );
        let opened = [approved];
        // One of two pilot devices still installing.
        let busy = [
            ring(2, 1, 0, Some("2026-12-07T10:05:00Z")),
            ring(5, 0, 0, None),
        ];
        assert_eq!(
            step(
                &s,
                "openssl",
                approved,
                &opened,
                &busy,
                t("2026-12-08T00:00:00Z")
            ),
            Step::Wait
        );
        // Both done at 10:06: broad opens at 11:06 (its 1h delay outlasts the 10m soak).
        let done = [
            ring(2, 2, 0, Some("2026-12-07T10:06:00Z")),
            ring(5, 0, 0, None),
        ];
        assert_eq!(
            step(
                &s,
                "openssl",
                approved,
                &opened,
                &done,
                t("2026-12-07T11:05:59Z")
            ),
            Step::Wait
        );
        assert_eq!(
            next_opening(&s, approved, &opened, &done),
            Some(t("2026-12-07T11:06:00Z"))
        );
        assert_eq!(
            step(
                &s,
                "openssl",
                approved,
                &opened,
                &done,
                t("2026-12-07T11:06:00Z")
            ),
            Step::Open {
                ring: 1,
                at: t("2026-12-07T11:06:00Z")
            }
        );
    }

    #[test]
    fn a_failure_or_a_new_alert_in_the_ring_halts_the_rollout() {
        let s = spec();
        let approved = t("2026-12-07T10:00:00Z");
        let failed = [
            ring(2, 1, 1, Some("2026-12-07T10:06:00Z")),
            ring(5, 0, 0, None),
        ];
        let Step::Halt { ring: 0, reason } = step(
            &s,
            "openssl",
            approved,
            &[approved],
            &failed,
            t("2026-12-08T00:00:00Z"),
        ) else {
            panic!("a failed install in the pilot must halt");
        };
        assert_eq!(
            reason,
            "1 of 2 install(s) of openssl in ring pilot failed (at most 0% may)"
        );
        let mut alerted = [
            ring(2, 2, 0, Some("2026-12-07T10:06:00Z")),
            ring(5, 0, 0, None),
        ];
        alerted[0].alerts_since_open = vec!["cpu-high on pc-1".into()];
        let Step::Halt { reason, .. } = step(
            &s,
            "openssl",
            approved,
            &[approved],
            &alerted,
            t("2026-12-07T10:07:00Z"),
        ) else {
            panic!("a new alert in the pilot must halt");
        };
        assert!(reason.contains("cpu-high on pc-1"), "{reason}");
    }
}
