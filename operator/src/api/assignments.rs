//! `GET /v1/agent/collector/assignments`: what a collector polls, probes and scans.
//!
//! A collector polls every Device of its namespace whose `spec.snmp.collector` names it, or
//! that names no collector and is in the collector's site; it runs the probes of those
//! Devices, of the other Devices of its site and its own. SNMP credentials are resolved from
//! the referenced Secret here, so they travel only over the collector's mutual-TLS
//! connection; a Device whose Secret is missing or incomplete is left out and logged (by
//! key name, never value).
use axum::{Json, Router, extract::State, routing::get};
use cdot_crds::{
    device::{DeviceSpec, SnmpVersion},
    kind::Kind,
    wire::collector::{
        CollectorAssignments, ProbeTarget, SiteDevice, SnmpAuthProtocol, SnmpCredentials,
        SnmpPrivProtocol, SnmpTarget,
    },
};

use super::{ApiError, AppState, agent_auth::DeviceIdentity};
use crate::{
    reconcile::device::duration_secs,
    secrets::{SecretData, Secrets},
    store::StoredObject,
};

pub fn routes() -> Router<AppState> {
    Router::new().route("/collector/assignments", get(assignments))
}

async fn assignments(
    State(state): State<AppState>,
    identity: DeviceIdentity,
) -> Result<Json<CollectorAssignments>, ApiError> {
    let devices = state
        .store
        .list_objects(&identity.namespace, Kind::Device)
        .await?;
    let collector = devices
        .iter()
        .find(|d| d.name == identity.name && d.uid == identity.uid)
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "Device {}/{} (uid {}) no longer exists; enroll again",
                identity.namespace, identity.name, identity.uid
            ))
        })?;
    let (mut assignments, mut problems) = assign(collector, &devices, &state.secrets);
    let snapshot = state.index.snapshot();
    for (run, scan) in state.store.discovery_runs_of(identity.uid).await? {
        if let Some((scan, skipped)) = crate::discovery::assign::assignment(
            &snapshot,
            &state.secrets,
            &identity.namespace,
            &scan,
            run,
        ) {
            assignments.scans.push(scan);
            problems.extend(skipped);
        }
    }
    for problem in problems {
        tracing::warn!(collector = %identity.name, namespace = %identity.namespace, "{problem}");
    }
    Ok(Json(assignments))
}

/// The assignments of `collector` among `devices` (all of its namespace), and what had to be
/// left out and why.
pub fn assign(
    collector: &StoredObject,
    devices: &[StoredObject],
    secrets: &Secrets,
) -> (CollectorAssignments, Vec<String>) {
    let site = spec_of(collector).site;
    let mut out = CollectorAssignments {
        site: site.clone(),
        ..Default::default()
    };
    let mut problems = Vec::new();
    for device in devices {
        let spec = spec_of(device);
        let same_site = site.is_some() && spec.site == site;
        let mine = device.uid == collector.uid;
        let polled_here = spec
            .snmp
            .as_ref()
            .is_some_and(|snmp| match &snmp.collector {
                Some(name) => *name == collector.name,
                None => same_site,
            });
        if let Some(snmp) = spec.snmp.as_ref().filter(|_| polled_here) {
            let address = snmp
                .address
                .clone()
                .or_else(|| spec.management_addresses.first().cloned());
            let secret = secrets.get(&device.namespace, &snmp.credentials_secret_ref.name);
            match (address, secret) {
                (None, _) => problems.push(format!(
                    "Device {}: spec.snmp has no address and the device no managementAddresses; not polled",
                    device.name
                )),
                (_, None) => problems.push(format!(
                    "Device {}: Secret {:?} (spec.snmp.credentialsSecretRef) not found; not polled",
                    device.name, snmp.credentials_secret_ref.name
                )),
                (Some(address), Some(data)) => match credentials(snmp.version, &data) {
                    Ok(credentials) => out.snmp.push(SnmpTarget {
                        device: device.name.clone(),
                        address,
                        port: snmp.port,
                        version: snmp.version,
                        credentials,
                        poll_interval_secs: duration_secs(&snmp.poll_interval, 60),
                        timeout_ms: cdot_crds::common::parse_duration(&snmp.timeout)
                            .map_or(2_000, |d| d.as_millis().clamp(100, 30_000) as u64),
                        retries: snmp.retries,
                        interfaces: snmp.interfaces.clone(),
                    }),
                    Err(message) => problems.push(format!(
                        "Device {}: Secret {:?}: {message}; not polled",
                        device.name, snmp.credentials_secret_ref.name
                    )),
                },
            }
        }
        if same_site || polled_here {
            // sFlow agents push interface counters from these addresses (ADR 9).
            let mut addresses = spec.management_addresses.clone();
            if let Some(address) = spec.snmp.as_ref().and_then(|s| s.address.clone())
                && !addresses.contains(&address)
            {
                addresses.push(address);
            }
            if !addresses.is_empty() {
                out.devices.push(SiteDevice {
                    device: device.name.clone(),
                    addresses,
                });
            }
        }
        if mine || same_site || polled_here {
            out.probes.extend(spec.probes.iter().map(|p| ProbeTarget {
                device: device.name.clone(),
                name: p.name.clone(),
                type_: p.type_,
                target: p.target.clone(),
                port: p.port,
                interval_secs: duration_secs(&p.interval, 30),
            }));
        }
    }
    (out, problems)
}

fn spec_of(object: &StoredObject) -> DeviceSpec {
    serde_json::from_value(object.spec.clone()).unwrap_or_default()
}

/// SNMP credentials from a Secret's keys (Devices' polling and DiscoveryScans' credentials): `community` for v1/v2c; `username`,
/// `authProtocol` (SHA, SHA-256, SHA-512; default SHA), `authPassword`, and optionally
/// `privProtocol` (AES, AES-256; default AES) with `privPassword` for v3.
pub(crate) fn credentials(
    version: SnmpVersion,
    data: &SecretData,
) -> Result<SnmpCredentials, String> {
    let text = |key: &str| -> Result<Option<String>, String> {
        data.get(key)
            .map(|v| String::from_utf8(v.clone()).map_err(|_| format!("key {key:?} is not UTF-8")))
            .transpose()
    };
    let required = |key: &str| -> Result<String, String> {
        text(key)?
            .filter(|v| !v.is_empty())
            .ok_or_else(|| format!("key {key:?} is missing"))
    };
    match version {
        SnmpVersion::V1 | SnmpVersion::V2c => Ok(SnmpCredentials::Community {
            community: required("community")?,
        }),
        SnmpVersion::V3 => {
            let auth_protocol = match text("authProtocol")?.as_deref() {
                None | Some("SHA" | "SHA1" | "SHA-1") => SnmpAuthProtocol::Sha1,
                Some("SHA-256" | "SHA256") => SnmpAuthProtocol::Sha256,
                Some("SHA-512" | "SHA512") => SnmpAuthProtocol::Sha512,
                Some(other) => {
                    return Err(format!(
                        "authProtocol {other:?} is not one of SHA, SHA-256, SHA-512"
                    ));
                }
            };
            let priv_password = text("privPassword")?.filter(|v| !v.is_empty());
            let priv_protocol = match (text("privProtocol")?.as_deref(), &priv_password) {
                (_, None) => None,
                (None | Some("AES" | "AES-128" | "AES128"), Some(_)) => {
                    Some(SnmpPrivProtocol::Aes128)
                }
                (Some("AES-256" | "AES256"), Some(_)) => Some(SnmpPrivProtocol::Aes256),
                (Some(other), Some(_)) => {
                    return Err(format!("privProtocol {other:?} is not one of AES, AES-256"));
                }
            };
            Ok(SnmpCredentials::Usm {
                username: required("username")?,
                auth_protocol,
                auth_password: required("authPassword")?,
                priv_protocol,
                priv_password,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;
    use uuid::Uuid;

    use super::*;

    fn device(name: &str, spec: serde_json::Value) -> StoredObject {
        StoredObject {
            kind: Kind::Device,
            namespace: "acme".into(),
            name: name.into(),
            uid: Uuid::new_v4(),
            generation: 1,
            resource_version: 1,
            labels: BTreeMap::new(),
            annotations: BTreeMap::new(),
            spec,
            status: json!({}),
            created_at: String::new(),
        }
    }

    fn secrets() -> Secrets {
        let secrets = Secrets::default();
        let data = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
                .collect::<BTreeMap<_, _>>()
        };
        secrets.replace([
            ("acme".into(), "v2".into(), data(&[("community", "s3cret")])),
            (
                "acme".into(),
                "v3".into(),
                data(&[
                    ("username", "monitor"),
                    ("authPassword", "authpass1"),
                    ("privProtocol", "AES"),
                    ("privPassword", "privpass1"),
                ]),
            ),
            ("acme".into(), "broken".into(), data(&[("user", "x")])),
        ]);
        secrets
    }

    #[test]
    fn a_collector_polls_its_site_and_its_named_devices_with_resolved_credentials() {
        let collector = device(
            "col-1",
            json!({ "class": "Collector", "site": "london",
                    "probes": [{ "name": "gw", "target": "10.0.0.1" }] }),
        );
        let devices = vec![
            collector.clone(),
            device(
                "sw-1",
                json!({ "class": "Switch", "site": "london", "managementAddresses": ["10.0.0.2"],
                        "snmp": { "credentialsSecretRef": { "name": "v2" } } }),
            ),
            device(
                "rtr-leeds",
                json!({ "class": "Router", "site": "leeds",
                        "snmp": { "version": "V3", "address": "10.9.0.1", "collector": "col-1",
                                  "credentialsSecretRef": { "name": "v3" } } }),
            ),
            device(
                "sw-leeds",
                json!({ "class": "Switch", "site": "leeds", "managementAddresses": ["10.9.0.2"],
                        "snmp": { "credentialsSecretRef": { "name": "v2" } },
                        "probes": [{ "name": "x", "target": "10.9.0.9" }] }),
            ),
            device(
                "fw-1",
                json!({ "class": "Firewall", "site": "london", "managementAddresses": ["10.0.0.3"],
                        "snmp": { "version": "V3", "credentialsSecretRef": { "name": "broken" } } }),
            ),
        ];
        let (out, problems) = assign(&collector, &devices, &secrets());
        assert_eq!(out.site.as_deref(), Some("london"));
        let polled: Vec<&str> = out.snmp.iter().map(|t| t.device.as_str()).collect();
        assert_eq!(polled, ["sw-1", "rtr-leeds"]);
        assert_eq!(out.snmp[0].address, "10.0.0.2");
        assert_eq!(out.snmp[0].port, 161);
        assert_eq!(
            out.snmp[0].credentials,
            SnmpCredentials::Community {
                community: "s3cret".into()
            }
        );
        assert!(matches!(
            &out.snmp[1].credentials,
            SnmpCredentials::Usm { username, priv_protocol: Some(SnmpPrivProtocol::Aes128), .. } if username == "monitor"
        ));
        let probes: Vec<&str> = out.probes.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(probes, ["gw"]);
        let addressed: Vec<(&str, &[String])> = out
            .devices
            .iter()
            .map(|d| (d.device.as_str(), d.addresses.as_slice()))
            .collect();
        assert_eq!(
            addressed,
            [
                ("sw-1", &["10.0.0.2".to_owned()][..]),
                ("rtr-leeds", &["10.9.0.1".to_owned()][..]),
                ("fw-1", &["10.0.0.3".to_owned()][..]),
            ]
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("fw-1") && problems[0].contains("username"));
        assert!(
            !problems[0].contains("x\""),
            "no secret value in {problems:?}"
        );
    }
}
