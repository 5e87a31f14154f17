//! What a PatchPolicy decides about one update: deny wins over everything, then an
//! `approve` pattern (a commit), then automatic approval of its classification once the
//! deferral has passed since the update was first reported; anything else waits for a
//! manual approval. Updates outside the policy's classifications are not its business.
use cdot_crds::{
    patch_policy::{ApprovalMode, Classification, PatchPolicySpec},
    wire::patch::Decision,
};
use jiff::Timestamp;
use regex::Regex;

/// A policy's approval settings, compiled once per policy generation.
#[derive(Debug)]
pub struct Approver {
    classifications: Vec<Classification>,
    approve: Vec<(String, Regex)>,
    deny: Vec<(String, Regex)>,
    automatic: Vec<(Classification, u32)>,
}

/// One decision and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    pub decision: Decision,
    pub reason: String,
}

impl Approver {
    /// Compiles the spec's patterns; a pattern that does not compile (the spec was
    /// validated, so only a bypassed validation) matches nothing.
    pub fn new(spec: &PatchPolicySpec) -> Self {
        let compile = |list: &[String]| {
            list.iter()
                .filter_map(|p| Regex::new(p).ok().map(|r| (p.clone(), r)))
                .collect()
        };
        Self {
            classifications: spec.classifications.clone(),
            approve: compile(&spec.approval.approve),
            deny: compile(&spec.approval.deny),
            automatic: spec
                .approval
                .rules
                .iter()
                .filter(|r| r.mode == ApprovalMode::Automatic)
                .map(|r| (r.classification, r.deferral_days.unwrap_or(0)))
                .collect(),
        }
    }

    /// Whether the policy cares about updates of `classification` at all.
    pub fn in_scope(&self, classification: Classification) -> bool {
        self.classifications.contains(&classification)
    }

    /// Whether `name` matches a `deny` pattern.
    pub fn denied(&self, name: &str) -> bool {
        self.deny.iter().any(|(_, r)| r.is_match(name))
    }

    /// The decision about `name` of `classification`, first reported at `first_seen`;
    /// `None` when the classification is out of scope.
    pub fn decide(
        &self,
        name: &str,
        classification: Classification,
        first_seen: Timestamp,
        now: Timestamp,
    ) -> Option<Decided> {
        if !self.in_scope(classification) {
            return None;
        }
        let decided = |decision, reason: String| Some(Decided { decision, reason });
        if let Some((pattern, _)) = self.deny.iter().find(|(_, r)| r.is_match(name)) {
            return decided(Decision::Denied, format!("denied by {pattern:?}"));
        }
        if let Some((pattern, _)) = self.approve.iter().find(|(_, r)| r.is_match(name)) {
            return decided(Decision::Install, format!("approved by {pattern:?}"));
        }
        if let Some((_, days)) = self.automatic.iter().find(|(c, _)| *c == classification) {
            let ends = first_seen
                .checked_add(jiff::SignedDuration::from_hours(24 * i64::from(*days)))
                .unwrap_or(first_seen);
            return if now >= ends {
                decided(
                    Decision::Install,
                    format!("approved automatically ({classification:?}, {days} day(s) deferral)"),
                )
            } else {
                decided(
                    Decision::Deferred,
                    format!(
                        "approved automatically at {ends} ({days} day(s) after it was first seen)"
                    ),
                )
            };
        }
        decided(
            Decision::NotApproved,
            "waits for an approve pattern (a commit)".into(),
        )
    }

    /// One line per update name that both an `approve` and a `deny` pattern match (deny
    /// wins): a reviewer should see that the approval does nothing.
    pub fn overlaps<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
        let mut out = Vec::new();
        for name in names {
            let approve = self.approve.iter().position(|(_, r)| r.is_match(name));
            let deny = self.deny.iter().position(|(_, r)| r.is_match(name));
            if let (Some(a), Some(d)) = (approve, deny) {
                out.push(format!(
                    "{name} matches approval.approve[{a}] {:?} and approval.deny[{d}] {:?}: denied (deny wins)",
                    self.approve[a].0, self.deny[d].0
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy(approval: serde_json::Value) -> Approver {
        let spec: PatchPolicySpec = serde_json::from_value(json!({
            "classifications": ["security", "bugfix"],
            "approval": approval,
        }))
        .expect("spec");
        Approver::new(&spec)
    }

    fn t(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    #[test]
    fn deny_wins_over_approve_and_automatic() {
        let a = policy(json!({
            "rules": [{"classification": "security", "mode": "Automatic"}],
            "approve": ["^openssl$"],
            "deny": ["^openssl", "^postgresql-1[0-9]"],
        }));
        let now = t("2026-12-07T00:00:00Z");
        let d = a
            .decide("openssl", Classification::Security, now, now)
            .expect("in scope");
        assert_eq!(d.decision, Decision::Denied);
        assert_eq!(d.reason, "denied by \"^openssl\"");
        assert_eq!(
            a.overlaps(["openssl", "curl"]),
            vec![
                "openssl matches approval.approve[0] \"^openssl$\" and approval.deny[0] \"^openssl\": denied (deny wins)"
            ]
        );
        let d = a
            .decide("curl", Classification::Security, now, now)
            .expect("in scope");
        assert_eq!(d.decision, Decision::Install, "{d:?}");
    }

    #[test]
    fn automatic_approval_waits_for_its_deferral() {
        let a = policy(json!({
            "rules": [{"classification": "security", "mode": "Automatic", "deferralDays": 2}],
        }));
        let seen = t("2026-12-01T10:00:00Z");
        let early = a
            .decide(
                "curl",
                Classification::Security,
                seen,
                t("2026-12-03T09:59:59Z"),
            )
            .expect("in scope");
        assert_eq!(early.decision, Decision::Deferred);
        assert!(
            early.reason.contains("2026-12-03T10:00:00Z"),
            "{}",
            early.reason
        );
        let late = a
            .decide(
                "curl",
                Classification::Security,
                seen,
                t("2026-12-03T10:00:00Z"),
            )
            .expect("in scope");
        assert_eq!(late.decision, Decision::Install);
        let manual = a
            .decide(
                "bash",
                Classification::Bugfix,
                seen,
                t("2027-01-01T00:00:00Z"),
            )
            .expect("in scope");
        assert_eq!(manual.decision, Decision::NotApproved);
        assert_eq!(
            a.decide("x", Classification::ThirdParty, seen, seen),
            None,
            "out of scope"
        );
    }
}
