//! The compliance report: per device, per site and for the namespace, what is installed,
//! what is missing by classification, what failed, who waits for a reboot, and how long
//! since the last successful install. JSON is the contract; CSV and a printable HTML page
//! carry the same numbers.
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    fmt::Write as _,
    hash::{BuildHasherDefault, Hasher},
};

use cdot_crds::{
    patch_policy::Classification,
    wire::patch::{ComplianceCounts, ComplianceReport, Decision, DeviceCompliance},
};
use jiff::Timestamp;
use uuid::Uuid;

use super::{
    approve::Approver,
    store::{Candidate, OfferedScan, ScanRow, UpdateId},
    work::Policy,
};
use crate::store::{Store, StoreError};

/// A device of the namespace, as the report names it.
pub struct ReportDevice<'a> {
    pub uid: Uuid,
    pub name: &'a str,
    pub site: Option<&'a str>,
    pub labels: &'a BTreeMap<String, String>,
}

/// What the report needs of one device.
#[derive(Debug, Default, Clone)]
pub struct DeviceFacts {
    pub scan: Option<ScanRow>,
    /// Updates in scope, not installed, not denied, by classification.
    pub missing: BTreeMap<Classification, u32>,
    /// Of those, approved.
    pub approved_missing: u32,
    pub failed: u32,
    pub last_success: Option<Timestamp>,
}

/// Gathers the facts of `devices` under the first policy that selects each. Decisions are
/// made once per distinct update of the namespace's catalogue (a few thousand at most),
/// and each device's updates are counted here over its scan's catalogue ids, so 10,000
/// devices with 50 updates each are neither read nor joined row by row.
pub async fn facts(
    store: &Store,
    namespace: &str,
    policies: &[Policy],
    devices: &[ReportDevice<'_>],
    now: Timestamp,
) -> Result<HashMap<Uuid, DeviceFacts>, StoreError> {
    let (mut scans, totals, candidates, installed) = futures::try_join!(
        store.patch_offered(namespace),
        store.patch_install_totals(namespace),
        store.patch_candidates(namespace),
        store.patch_installed(namespace),
    )?;
    let candidates = offered_candidates(candidates, scans.values());
    let installed = installed_by_device(installed);
    let mut out: HashMap<Uuid, DeviceFacts> = HashMap::new();
    for (i, policy) in policies.iter().enumerate() {
        let verdicts = Verdicts::new(&policy.approver, &candidates, now);
        for d in devices
            .iter()
            .filter(|d| first_policy(policies, d.labels) == Some(i))
        {
            let (failed, last_success) = totals.get(&d.uid).copied().unwrap_or_default();
            let mut f = DeviceFacts {
                failed,
                last_success,
                ..DeviceFacts::default()
            };
            if let Some(offered) = scans.remove(&d.uid) {
                let none = Vec::new();
                verdicts.count(
                    &offered.updates,
                    installed.get(&d.uid).unwrap_or(&none),
                    &mut f,
                );
                f.scan = Some(offered.scan);
            }
            out.insert(d.uid, f);
        }
    }
    Ok(out)
}

/// The catalogue entries the scans offer: decisions are made on those alone, as an entry
/// awaiting pruning would otherwise approve its version under another classification.
pub fn offered_candidates<'a>(
    mut candidates: Vec<Candidate>,
    scans: impl IntoIterator<Item = &'a OfferedScan>,
) -> Vec<Candidate> {
    let mut offered: HashMap<UpdateId, bool, BuildHasherDefault<IdHasher>> =
        candidates.iter().map(|c| (c.id, false)).collect();
    for id in scans.into_iter().flat_map(|s| &s.updates) {
        if let Some(seen) = offered.get_mut(id) {
            *seen = true;
        }
    }
    candidates.retain(|c| offered[&c.id]);
    candidates
}

/// `Store::patch_installed`'s pairs by device.
pub fn installed_by_device(pairs: Vec<(Uuid, UpdateId)>) -> HashMap<Uuid, Vec<UpdateId>> {
    let mut out: HashMap<Uuid, Vec<UpdateId>> = HashMap::new();
    for (device, id) in pairs {
        out.entry(device).or_default().push(id);
    }
    out
}

/// What one policy makes of the catalogue entries that count as missing when a device
/// lacks them: those of its classifications whose name it does not deny, and whether the
/// version is approved.
pub struct Verdicts(HashMap<UpdateId, Verdict, BuildHasherDefault<IdHasher>>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    pub classification: Classification,
    pub approved: bool,
}

impl Verdicts {
    /// A name denied under any classification is denied, and a version approved under any
    /// classification is approved.
    pub fn new(approver: &Approver, candidates: &[Candidate], now: Timestamp) -> Self {
        let mut denied: HashSet<&str> = HashSet::new();
        let mut approved: HashSet<(&str, &str)> = HashSet::new();
        for c in candidates {
            match approver
                .decide(&c.name, c.classification, c.first_seen, now)
                .map(|d| d.decision)
            {
                Some(Decision::Denied) => {
                    denied.insert(&c.name);
                }
                Some(Decision::Install) => {
                    approved.insert((&c.name, &c.to));
                }
                _ => {}
            }
        }
        Self(
            candidates
                .iter()
                .filter(|c| approver.in_scope(c.classification) && !denied.contains(&*c.name))
                .map(|c| {
                    (
                        c.id,
                        Verdict {
                            classification: c.classification,
                            approved: approved.contains(&(&*c.name, &*c.to)),
                        },
                    )
                })
                .collect(),
        )
    }

    /// Adds a device's missing updates to `facts`: those of `offered` that count and are
    /// not among the `installed` ones.
    pub fn count(&self, offered: &[UpdateId], installed: &[UpdateId], facts: &mut DeviceFacts) {
        let mut missing = [0_u32; CLASSES.len()];
        for id in offered {
            let Some(v) = self.0.get(id) else {
                continue;
            };
            if installed.contains(id) {
                continue;
            }
            missing[v.classification as usize] += 1;
            facts.approved_missing += u32::from(v.approved);
        }
        for (c, _) in CLASSES {
            let n = missing[c as usize];
            if n > 0 {
                *facts.missing.entry(c).or_default() += n;
            }
        }
    }
}

/// Catalogue ids are distinct small integers: one multiplication spreads them over a hash
/// table at a fraction of SipHash's cost (a report looks up every update of every device).
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(FIBONACCI);
        }
    }

    fn write_i32(&mut self, n: i32) {
        self.0 = u64::from(n.cast_unsigned()).wrapping_mul(FIBONACCI);
    }
}

/// 2^64 / φ, odd.
const FIBONACCI: u64 = 0x9e37_79b9_7f4a_7c15;

fn first_policy(policies: &[Policy], labels: &BTreeMap<String, String>) -> Option<usize> {
    policies
        .iter()
        .position(|p| cdot_crds::common::selector_matches(&p.spec.selector, labels))
}

/// The report over `devices` (those no policy selects are left out).
pub fn report(
    namespace: &str,
    policies: &[Policy],
    devices: &[ReportDevice<'_>],
    facts: &HashMap<Uuid, DeviceFacts>,
    now: Timestamp,
) -> ComplianceReport {
    let mut out = Vec::new();
    for d in devices {
        let Some(policy) = first_policy(policies, d.labels).map(|i| &policies[i]) else {
            continue;
        };
        let f = facts.get(&d.uid).cloned().unwrap_or_default();
        let scan = f.scan.as_ref();
        let problem = scan.and_then(|s| s.problem.clone());
        out.push(DeviceCompliance {
            device: d.name.to_owned(),
            site: d.site.map(str::to_owned),
            policy: policy.name.clone(),
            scanned_at: scan.map(|s| s.scanned_at.to_string()),
            installed: scan.map_or(0, |s| s.installed_packages),
            compliant: scan.is_some() && problem.is_none() && f.approved_missing == 0,
            problem,
            missing: f.missing,
            failed: f.failed,
            pending_reboot: scan.is_some_and(|s| s.reboot_required),
            last_success_at: f.last_success.map(|t| t.to_string()),
            days_since_success: f.last_success.map(|t| {
                u32::try_from(now.duration_since(t).as_secs().max(0) / 86_400).unwrap_or(u32::MAX)
            }),
        });
    }
    out.sort_by(|a, b| a.device.cmp(&b.device));
    let mut totals = ComplianceCounts::default();
    let mut sites: BTreeMap<String, ComplianceCounts> = BTreeMap::new();
    for d in &out {
        for counts in [
            &mut totals,
            sites.entry(d.site.clone().unwrap_or_default()).or_default(),
        ] {
            add(counts, d);
        }
    }
    ComplianceReport {
        namespace: namespace.to_owned(),
        generated_at: now.to_string(),
        totals,
        sites,
        devices: out,
    }
}

fn add(counts: &mut ComplianceCounts, d: &DeviceCompliance) {
    counts.devices += 1;
    counts.compliant += u32::from(d.compliant);
    counts.unknown += u32::from(d.scanned_at.is_none() || d.problem.is_some());
    counts.installed += u64::from(d.installed);
    for (c, n) in &d.missing {
        *counts.missing.entry(*c).or_default() += u64::from(*n);
    }
    counts.failed += u64::from(d.failed);
    counts.pending_reboot += u32::from(d.pending_reboot);
}

const CLASSES: [(Classification, &str); 5] = [
    (Classification::Security, "security"),
    (Classification::Critical, "critical"),
    (Classification::Bugfix, "bugfix"),
    (Classification::Feature, "feature"),
    (Classification::ThirdParty, "third_party"),
];

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// One row per device (RFC 4180).
pub fn csv(report: &ComplianceReport) -> String {
    let mut out = String::from("device,site,policy,scanned_at,installed");
    for (_, name) in CLASSES {
        let _ = write!(out, ",missing_{name}");
    }
    out.push_str(",failed,pending_reboot,last_success_at,days_since_success,compliant,problem\r\n");
    for d in &report.devices {
        let mut row = vec![
            csv_field(&d.device),
            csv_field(d.site.as_deref().unwrap_or_default()),
            csv_field(&d.policy),
            d.scanned_at.clone().unwrap_or_default(),
            d.installed.to_string(),
        ];
        for (c, _) in CLASSES {
            row.push(d.missing.get(&c).copied().unwrap_or(0).to_string());
        }
        row.push(d.failed.to_string());
        row.push(d.pending_reboot.to_string());
        row.push(d.last_success_at.clone().unwrap_or_default());
        row.push(
            d.days_since_success
                .map(|n| n.to_string())
                .unwrap_or_default(),
        );
        row.push(d.compliant.to_string());
        row.push(csv_field(d.problem.as_deref().unwrap_or_default()));
        out.push_str(&row.join(","));
        out.push_str("\r\n");
    }
    out
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn missing_cells(m: &BTreeMap<Classification, u64>) -> String {
    CLASSES
        .iter()
        .map(|(c, _)| format!("<td>{}</td>", m.get(c).copied().unwrap_or(0)))
        .collect()
}

/// A printable page: the namespace's totals, one row per site, one row per device.
pub fn html(report: &ComplianceReport) -> String {
    let ns = html_escape(&report.namespace);
    let mut out = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Patch compliance: {ns}</title>\n\
         <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;margin-bottom:2em}}\
         th,td{{border:1px solid #999;padding:.25em .6em;text-align:right}}th:first-child,td:first-child{{text-align:left}}\
         .no{{background:#fdd}}@media print{{body{{margin:0}}}}</style></head><body>\n\
         <h1>Patch compliance: {ns}</h1>\n<p>Generated {}</p>\n",
        html_escape(&report.generated_at)
    );
    let head = "<tr><th></th><th>Devices</th><th>Compliant</th><th>Unknown</th><th>Installed</th>\
                <th>Missing security</th><th>critical</th><th>bugfix</th><th>feature</th><th>third party</th>\
                <th>Failed</th><th>Pending reboot</th></tr>\n";
    let counts_row = |label: &str, c: &ComplianceCounts| {
        format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>{}<td>{}</td><td>{}</td></tr>\n",
            html_escape(label),
            c.devices,
            c.compliant,
            c.unknown,
            c.installed,
            missing_cells(&c.missing),
            c.failed,
            c.pending_reboot
        )
    };
    out.push_str("<h2>Summary</h2>\n<table>\n");
    out.push_str(head);
    out.push_str(&counts_row("All sites", &report.totals));
    for (site, c) in &report.sites {
        out.push_str(&counts_row(
            if site.is_empty() { "(no site)" } else { site },
            c,
        ));
    }
    out.push_str("</table>\n<h2>Devices</h2>\n<table>\n<tr><th>Device</th><th>Site</th><th>Policy</th>\
                  <th>Installed</th><th>Missing security</th><th>critical</th><th>bugfix</th><th>feature</th>\
                  <th>third party</th><th>Failed</th><th>Pending reboot</th><th>Days since success</th>\
                  <th>Compliant</th></tr>\n");
    for d in &report.devices {
        let missing: BTreeMap<Classification, u64> =
            d.missing.iter().map(|(c, n)| (*c, u64::from(*n))).collect();
        let _ = writeln!(
            out,
            "<tr{}><td>{}</td><td>{}</td><td>{}</td><td>{}</td>{}<td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            if d.compliant { "" } else { " class=\"no\"" },
            html_escape(&d.device),
            html_escape(d.site.as_deref().unwrap_or_default()),
            html_escape(&d.policy),
            d.installed,
            missing_cells(&missing),
            d.failed,
            if d.pending_reboot { "yes" } else { "no" },
            d.days_since_success
                .map(|n| n.to_string())
                .unwrap_or_else(|| "never".into()),
            match (&d.problem, d.compliant) {
                (Some(p), _) => format!("unknown: {}", html_escape(p)),
                (None, _) if d.scanned_at.is_none() => "unknown: no scan yet".into(),
                (None, true) => "yes".into(),
                (None, false) => "no".into(),
            }
        );
    }
    out.push_str("</table>\n</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use cdot_crds::patch_policy::PatchPolicySpec;
    use serde_json::json;

    use super::*;

    fn approver() -> Approver {
        let spec: PatchPolicySpec = serde_json::from_value(json!({
            "classifications": ["security", "bugfix"],
            "approval": {
                "rules": [{"classification": "security", "mode": "Automatic", "deferralDays": 2}],
                "approve": ["^lib"],
                "deny": ["^postgresql"],
            },
        }))
        .expect("spec");
        Approver::new(&spec)
    }

    fn t(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn candidate(id: UpdateId, name: &str, to: &str, c: Classification, seen: &str) -> Candidate {
        Candidate {
            id,
            name: name.into(),
            to: to.into(),
            classification: c,
            first_seen: t(seen),
        }
    }

    #[test]
    fn counts_what_is_in_scope_not_denied_and_not_installed() {
        use Classification::{Bugfix, Security, ThirdParty};
        let candidates = [
            candidate(1, "curl", "2", Security, "2026-12-01T00:00:00Z"),
            candidate(2, "bash", "5", Bugfix, "2026-12-01T00:00:00Z"),
            candidate(3, "libfoo", "1", Bugfix, "2026-12-06T00:00:00Z"),
            candidate(4, "postgresql-15", "15.9", Security, "2026-12-01T00:00:00Z"),
            candidate(5, "docker-ce", "27", ThirdParty, "2026-12-01T00:00:00Z"),
            candidate(6, "tzdata", "2026a", Security, "2026-12-06T00:00:00Z"),
            // The same version under another classification is approved with it.
            candidate(7, "curl", "2", Bugfix, "2026-12-01T00:00:00Z"),
            // Out of scope: neither decided nor counted.
            candidate(
                8,
                "postgresql-16",
                "16.5",
                ThirdParty,
                "2026-12-01T00:00:00Z",
            ),
        ];
        let verdicts = Verdicts::new(&approver(), &candidates, t("2026-12-07T00:00:00Z"));
        let mut facts = DeviceFacts::default();
        verdicts.count(&[1, 2, 3, 4, 5, 6, 7, 8], &[], &mut facts);
        assert_eq!(
            facts.missing,
            BTreeMap::from([(Security, 2), (Bugfix, 3)]),
            "curl, tzdata; bash, libfoo, curl"
        );
        assert_eq!(
            facts.approved_missing, 3,
            "curl (both), libfoo; tzdata deferred"
        );

        let mut facts = DeviceFacts::default();
        verdicts.count(&[1, 2, 6], &[1, 4], &mut facts);
        assert_eq!(facts.missing, BTreeMap::from([(Security, 1), (Bugfix, 1)]));
        assert_eq!(facts.approved_missing, 0);
    }

    #[test]
    fn decisions_are_made_on_the_offered_entries_only() {
        use Classification::{Bugfix, Security};
        let scan = |updates: Vec<UpdateId>| OfferedScan {
            scan: ScanRow {
                scanned_at: t("2026-12-07T00:00:00Z"),
                problem: None,
                installed_packages: 1,
                reboot_required: false,
            },
            updates,
        };
        let candidates = vec![
            // No scan offers it any more (it awaits pruning): it must not approve curl 2.
            candidate(1, "curl", "2", Security, "2026-12-01T00:00:00Z"),
            candidate(2, "curl", "2", Bugfix, "2026-12-01T00:00:00Z"),
            candidate(3, "bash", "5", Bugfix, "2026-12-01T00:00:00Z"),
        ];
        let scans = [scan(vec![2, 3]), scan(vec![]), scan(vec![2])];
        let offered = offered_candidates(candidates, &scans);
        assert_eq!(offered.iter().map(|c| c.id).collect::<Vec<_>>(), vec![2, 3]);
        let verdicts = Verdicts::new(&approver(), &offered, t("2026-12-07T00:00:00Z"));
        let mut facts = DeviceFacts::default();
        verdicts.count(&scans[0].updates, &[], &mut facts);
        assert_eq!(facts.missing, BTreeMap::from([(Bugfix, 2)]));
        assert_eq!(facts.approved_missing, 0);

        let a = Uuid::from_u128(1);
        let installed = installed_by_device(vec![(a, 3), (Uuid::from_u128(2), 4), (a, 9)]);
        assert_eq!(installed[&a], vec![3, 9]);
    }
}
