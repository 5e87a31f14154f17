//! The runs a collector is handed in its assignments, with the SNMP credentials resolved
//! from the scan's Secrets (so they travel only over the collector's mutual-TLS
//! connection). A credential whose Secret is missing or incomplete is left out and said
//! why (by key name, never value); the run goes on with the others.
use cdot_crds::{
    common::parse_duration,
    discovery_scan::DiscoveryScanSpec,
    kind::Kind,
    wire::discovery::{ScanAssignment, ScanCredential, ScanSnmp},
};
use uuid::Uuid;

use crate::{api::assignments::credentials, index::Snapshot, secrets::Secrets};

/// The assignment of `run` of the scan `namespace/scan`, and what had to be left out.
/// `None` when the scan is gone or invalid (the run ends at the next engine pass).
pub fn assignment(
    snapshot: &Snapshot,
    secrets: &Secrets,
    namespace: &str,
    scan: &str,
    run: Uuid,
) -> Option<(ScanAssignment, Vec<String>)> {
    let object = snapshot.get(Kind::DiscoveryScan, namespace, scan)?;
    let spec: DiscoveryScanSpec = serde_json::from_value(object.spec.clone()).ok()?;
    let mut problems = Vec::new();
    let snmp = spec.methods.snmp.as_ref().map(|snmp| ScanSnmp {
        port: snmp.port,
        silent_hosts: snmp.silent_hosts,
        credentials: snmp
            .credentials
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                let path = format!("spec.methods.snmp.credentials[{i}]");
                let Some(data) = secrets.get(namespace, &c.secret_ref.name) else {
                    problems.push(format!(
                        "DiscoveryScan {namespace}/{scan}: {path}: Secret {:?} not found; credential skipped",
                        c.secret_ref.name
                    ));
                    return None;
                };
                match credentials(c.version, &data) {
                    Ok(credentials) => Some(ScanCredential {
                        index: u8::try_from(i).ok()?,
                        version: c.version,
                        credentials,
                    }),
                    Err(message) => {
                        problems.push(format!(
                            "DiscoveryScan {namespace}/{scan}: {path}: Secret {:?}: {message}; credential skipped",
                            c.secret_ref.name
                        ));
                        None
                    }
                }
            })
            .collect(),
    });
    let assignment = ScanAssignment {
        run,
        scan: scan.to_owned(),
        targets: spec.targets.clone(),
        excludes: spec.excludes.clone(),
        icmp: spec.methods.icmp,
        snmp,
        rate_limit: spec.rate_limit,
        concurrency: spec.concurrency,
        timeout_ms: parse_duration(&spec.timeout)
            .map_or(1_000, |d| d.as_millis().clamp(50, 30_000) as u64),
        retries: spec.retries,
    };
    Some((assignment, problems))
}

/// Credential problems of a scan as one line for its status (empty: none).
pub fn credential_problems(
    spec: &DiscoveryScanSpec,
    namespace: &str,
    secrets: &Secrets,
) -> Vec<String> {
    let Some(snmp) = &spec.methods.snmp else {
        return Vec::new();
    };
    snmp.credentials
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let path = format!("spec.methods.snmp.credentials[{i}].secretRef");
            match secrets.get(namespace, &c.secret_ref.name) {
                None => Some(format!("{path}: Secret {:?} not found", c.secret_ref.name)),
                Some(data) => credentials(c.version, &data)
                    .err()
                    .map(|m| format!("{path}: Secret {:?}: {m}", c.secret_ref.name)),
            }
        })
        .collect()
}
