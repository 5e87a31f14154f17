//! What a found host becomes: the Device a scan registers (or proposes), what an existing
//! Device learns in `status.discovery`, and the spec changes discovery may make to the
//! Devices it created itself. Pure: the engine stores the results.
use std::collections::BTreeMap;

use cdot_crds::{
    SITE_LABEL,
    device::{DeviceClass, DeviceSpec, DiscoveredDevice},
    discovery_scan::DiscoveryScanSpec,
    wire::discovery::FoundHost,
};
use serde_json::{Value, json};

use super::identity::Keys;

pub use cdot_crds::ORIGIN_LABEL;
/// Label naming the scan that registered a Device.
pub const SCAN_LABEL: &str = "rmm.cdot.io/discovery-scan";
/// Most management addresses a spec holds (the schema's bound).
const MAX_ADDRESSES: usize = 16;

/// A free Device name for a host: its sysName made an RFC 1123 name, else `host-<address>`;
/// `-2`, `-3`, ... when `taken`.
pub fn device_name(host: &FoundHost, taken: impl Fn(&str) -> bool) -> String {
    let from_sys_name = host
        .snmp
        .as_ref()
        .map(|f| dns_label(f.sys_name.split('.').next().unwrap_or_default()))
        .filter(|n| !n.is_empty());
    let base =
        from_sys_name.unwrap_or_else(|| format!("host-{}", dns_label(&host.address.to_string())));
    if !taken(&base) {
        return base;
    }
    (2..)
        .map(|n| format!("{}-{n}", &base[..base.len().min(56)]))
        .find(|name| !taken(name))
        .unwrap_or(base)
}

/// Lower case letters, digits and dashes, no dash at either end, at most 63 characters.
fn dns_label(s: &str) -> String {
    let mapped: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    let trimmed = mapped.trim_matches('-');
    let mut out = String::with_capacity(trimmed.len());
    for c in trimmed.chars() {
        if !(c == '-' && out.ends_with('-')) {
            out.push(c);
        }
    }
    out.truncate(63);
    out.trim_end_matches('-').to_owned()
}

/// The addresses a spec lists for a host: the one it answered on first, then the others it
/// reported, at most [`MAX_ADDRESSES`].
fn addresses_of(host: &FoundHost, keys: &Keys) -> Vec<String> {
    let mut out = vec![host.address.to_string()];
    out.extend(
        keys.addresses
            .iter()
            .filter(|a| **a != host.address)
            .map(ToString::to_string),
    );
    out.truncate(MAX_ADDRESSES);
    out
}

/// Labels and spec of a new Device: where it came from, its site, the scan's labels; SNMP
/// polling with the credential that answered, by the collector that found it, so interface
/// polling starts by itself (whatever the sites say).
pub fn new_device(
    scan_name: &str,
    scan: &DiscoveryScanSpec,
    collector: &str,
    host: &FoundHost,
    keys: &Keys,
    class: DeviceClass,
) -> (BTreeMap<String, String>, Value) {
    let mut labels = scan.registration.labels.clone();
    labels.insert(ORIGIN_LABEL.into(), "discovery".into());
    labels.insert(SCAN_LABEL.into(), scan_name.into());
    if let Some(site) = &scan.site {
        labels.insert(SITE_LABEL.into(), site.clone());
    }
    let mut spec = json!({
        "class": class,
        "managementAddresses": addresses_of(host, keys),
    });
    if let Some(site) = &scan.site {
        spec["site"] = json!(site);
    }
    if let Some(facts) = &host.snmp {
        if !facts.sys_name.is_empty() {
            spec["displayName"] = json!(cut(&facts.sys_name, 128));
        }
        if !facts.sys_descr.is_empty() {
            spec["description"] = json!(cut(&facts.sys_descr, 1024));
        }
        if let Some(snmp) = &scan.methods.snmp
            && let Some(credential) = snmp.credentials.get(usize::from(facts.credential))
        {
            spec["snmp"] = snmp_settings(credential, snmp.port, host, collector);
        }
    }
    (labels, spec)
}

/// `spec.snmp` of a found host: the credential that answered, polled by `collector`.
fn snmp_settings(
    credential: &cdot_crds::discovery_scan::SnmpCredential,
    port: u16,
    host: &FoundHost,
    collector: &str,
) -> Value {
    json!({
        "version": credential.version,
        "address": host.address.to_string(),
        "port": port,
        "credentialsSecretRef": credential.secret_ref,
        "collector": collector,
    })
}

fn cut(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// A Device discovery created, after another sighting: its new addresses added, SNMP
/// polling filled in when it had none. `None` when nothing changes. Only for Devices
/// discovery owns: a spec written by a person is never touched.
pub fn widened_spec(
    current: &Value,
    scan: &DiscoveryScanSpec,
    collector: &str,
    host: &FoundHost,
    keys: &Keys,
) -> Option<Value> {
    let spec: DeviceSpec = serde_json::from_value(current.clone()).ok()?;
    let mut next = current.clone();
    let mut addresses = spec.management_addresses.clone();
    for a in addresses_of(host, keys) {
        if addresses.len() < MAX_ADDRESSES && !addresses.contains(&a) {
            addresses.push(a);
        }
    }
    next["managementAddresses"] = json!(addresses);
    if spec.snmp.is_none()
        && let (Some(facts), Some(snmp)) = (&host.snmp, &scan.methods.snmp)
        && let Some(credential) = snmp.credentials.get(usize::from(facts.credential))
    {
        next["snmp"] = snmp_settings(credential, snmp.port, host, collector);
    }
    (next != *current).then_some(next)
}

/// What `status.discovery` says after this sighting (`now` RFC 3339).
pub fn discovered(
    scan_name: &str,
    host: &FoundHost,
    keys: &Keys,
    class: DeviceClass,
    now: &str,
) -> DiscoveredDevice {
    let facts = host.snmp.as_ref();
    let text = |s: &str| (!s.is_empty()).then(|| cut(s, 1024));
    DiscoveredDevice {
        scan: scan_name.to_owned(),
        last_seen: Some(now.to_owned()),
        responding: true,
        addresses: keys.addresses.iter().map(ToString::to_string).collect(),
        chassis_id: keys.chassis_id.clone(),
        serial: keys.serial.clone(),
        macs: keys.macs.iter().cloned().collect(),
        sys_name: facts.and_then(|f| text(&f.sys_name)),
        sys_descr: facts.and_then(|f| text(&f.sys_descr)),
        sys_object_id: facts.and_then(|f| text(&f.sys_object_id)),
        sys_location: facts.and_then(|f| text(&f.sys_location)),
        class: Some(class),
        interfaces: facts.map(|f| u32::try_from(f.interfaces.len()).unwrap_or(u32::MAX)),
    }
}

/// The Device manifest of a found host: for a person to review (mode `Propose`), or for the
/// API server (mode `Register` in Kubernetes mode).
pub fn manifest(
    namespace: &str,
    name: &str,
    labels: &BTreeMap<String, String>,
    spec: &Value,
) -> Value {
    json!({
        "apiVersion": "rmm.cdot.io/v1alpha1",
        "kind": "Device",
        "metadata": { "name": name, "namespace": namespace, "labels": labels },
        "spec": spec,
    })
}

#[cfg(test)]
mod tests {
    use cdot_crds::{
        common::SecretRef,
        device::SnmpVersion,
        discovery_scan::{Methods, SnmpCredential, SnmpDiscovery},
        validation::Validate,
        wire::discovery::SnmpFacts,
    };

    use super::*;

    fn scan() -> DiscoveryScanSpec {
        DiscoveryScanSpec {
            site: Some("london".into()),
            targets: vec!["10.0.0.0/24".into()],
            methods: Methods {
                icmp: true,
                snmp: Some(SnmpDiscovery {
                    credentials: vec![
                        SnmpCredential {
                            version: SnmpVersion::V2c,
                            secret_ref: SecretRef {
                                name: "snmp-v2".into(),
                            },
                        },
                        SnmpCredential {
                            version: SnmpVersion::V3,
                            secret_ref: SecretRef {
                                name: "snmp-v3".into(),
                            },
                        },
                    ],
                    port: 161,
                    silent_hosts: false,
                }),
            },
            ..Default::default()
        }
    }

    fn host(sys_name: &str, credential: u8) -> FoundHost {
        FoundHost {
            address: "10.0.0.1".parse().expect("ip"),
            rtt_ms: Some(0.2),
            snmp: Some(SnmpFacts {
                credential,
                sys_name: sys_name.into(),
                sys_descr: "Cisco IOS Software".into(),
                addresses: vec![
                    "10.0.0.1".parse().expect("ip"),
                    "10.0.1.1".parse().expect("ip"),
                ],
                ..Default::default()
            }),
        }
    }

    #[test]
    fn names_come_from_sys_name_and_never_collide() {
        let h = host("RTR_1.corp.example", 0);
        assert_eq!(device_name(&h, |_| false), "rtr-1");
        assert_eq!(
            device_name(&h, |n| n == "rtr-1" || n == "rtr-1-2"),
            "rtr-1-3"
        );
        let bare = FoundHost {
            snmp: None,
            ..host("", 0)
        };
        assert_eq!(device_name(&bare, |_| false), "host-10-0-0-1");
        assert_eq!(dns_label("--a__b--"), "a-b");
    }

    #[test]
    fn a_registered_device_is_valid_and_polled_with_the_credential_that_answered() {
        let h = host("rtr-1", 1);
        let keys = Keys::of_host(&h);
        let (labels, spec) = new_device("lan", &scan(), "col-1", &h, &keys, DeviceClass::Router);
        assert_eq!(labels[ORIGIN_LABEL], "discovery");
        assert_eq!(labels[SCAN_LABEL], "lan");
        assert_eq!(labels[SITE_LABEL], "london");
        let decoded: DeviceSpec = serde_json::from_value(spec.clone()).expect("a DeviceSpec");
        assert!(decoded.validate().is_empty(), "{:?}", decoded.validate());
        assert_eq!(decoded.management_addresses, ["10.0.0.1", "10.0.1.1"]);
        let snmp = decoded.snmp.expect("snmp");
        assert_eq!(snmp.version, SnmpVersion::V3);
        assert_eq!(snmp.credentials_secret_ref.name, "snmp-v3");
        assert_eq!(
            snmp.collector.as_deref(),
            Some("col-1"),
            "polled by who found it"
        );
        assert_eq!(decoded.class, DeviceClass::Router);
    }

    #[test]
    fn another_sighting_only_adds() {
        let h = host("rtr-1", 0);
        let keys = Keys::of_host(&h);
        let (_, spec) = new_device("lan", &scan(), "col-1", &h, &keys, DeviceClass::Router);
        assert_eq!(
            widened_spec(&spec, &scan(), "col-1", &h, &keys),
            None,
            "nothing new"
        );
        let mut other = h.clone();
        other.address = "192.168.9.1".parse().expect("ip");
        let keys = Keys::of_host(&other);
        let wider = widened_spec(&spec, &scan(), "col-1", &other, &keys).expect("changed");
        assert_eq!(
            wider["managementAddresses"],
            json!(["10.0.0.1", "10.0.1.1", "192.168.9.1"])
        );
        assert_eq!(wider["snmp"], spec["snmp"], "polling settings kept");
    }
}
