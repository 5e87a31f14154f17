//! The compliance report: per device, per site and for the namespace, what is installed,
//! what is missing by classification, what failed, who waits for a reboot, and how long
//! since the last successful install. JSON is the contract; CSV and a printable HTML page
//! carry the same numbers.
use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
};

use cdot_crds::{
    patch_policy::Classification,
    wire::patch::{ComplianceCounts, ComplianceReport, Decision, DeviceCompliance},
};
use jiff::Timestamp;
use uuid::Uuid;

use super::{
    store::{ScanRow, classification_name},
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

/// What the report needs of one device, counted in PostgreSQL.
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
/// made once per distinct update (a few thousand), and the per-device counting is done by
/// PostgreSQL over the update rows, so 10,000 devices with 50 updates each are not read
/// row by row.
pub async fn facts(
    store: &Store,
    namespace: &str,
    policies: &[Policy],
    devices: &[ReportDevice<'_>],
    now: Timestamp,
) -> Result<HashMap<Uuid, DeviceFacts>, StoreError> {
    let mut scans = store.patch_scans(namespace).await?;
    let totals = store.patch_install_totals(namespace).await?;
    let candidates = store.patch_candidates(namespace).await?;
    let mut out: HashMap<Uuid, DeviceFacts> = HashMap::new();
    for (i, policy) in policies.iter().enumerate() {
        let mine: Vec<Uuid> = devices
            .iter()
            .filter(|d| first_policy(policies, d.labels) == Some(i))
            .map(|d| d.uid)
            .collect();
        if mine.is_empty() {
            continue;
        }
        let classes: Vec<&str> = policy
            .spec
            .classifications
            .iter()
            .map(|c| classification_name(*c))
            .collect();
        let mut denied: Vec<&str> = Vec::new();
        let mut approved: Vec<(&str, &str)> = Vec::new();
        for c in &candidates {
            match policy
                .approver
                .decide(&c.name, c.classification, c.first_seen, now)
                .map(|d| d.decision)
            {
                Some(Decision::Denied) => denied.push(&c.name),
                Some(Decision::Install) => approved.push((&c.name, &c.to)),
                _ => {}
            }
        }
        denied.sort_unstable();
        denied.dedup();
        for uid in &mine {
            let (failed, last_success) = totals.get(uid).copied().unwrap_or_default();
            out.insert(
                *uid,
                DeviceFacts {
                    scan: scans.remove(uid),
                    failed,
                    last_success,
                    ..DeviceFacts::default()
                },
            );
        }
        for m in store
            .patch_missing(&mine, &classes, &denied, &approved)
            .await?
        {
            if let Some(f) = out.get_mut(&m.device) {
                *f.missing.entry(m.classification).or_default() += m.missing;
                f.approved_missing += m.approved;
            }
        }
    }
    Ok(out)
}

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
