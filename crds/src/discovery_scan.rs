//! `DiscoveryScan` (`ds`): a collector sweeps CIDRs with ICMP and SNMP and may register Devices.

use std::{collections::BTreeMap, net::IpAddr};

use ipnet::IpNet;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    common::{
        CRON_PATTERN, Condition, DURATION_PATTERN, LabelSelector, SITE_PATTERN, SecretRef,
        check_cron, check_duration_into, check_site_label, check_time_zone, parse_cidr,
        validate_selector,
    },
    device::{DeviceClass, SnmpVersion},
    validation::{Errors, FieldError, Validate, check_label_key, check_label_value},
};

/// Most addresses one scan may cover (targets minus excludes): a /16.
pub const MAX_ADDRESSES: u64 = 65_536;

/// CEL on each target: an address, or a CIDR no larger than /16 (IPv4) or /112 (IPv6).
pub const TARGET_RULE: &str = "self.all(t, isIP(t) || (isCIDR(t) && cidr(t).prefixLength() >= (cidr(t).ip().family() == 4 ? 16 : 112)))";
/// CEL on each exclude: an address or a CIDR.
pub const EXCLUDE_RULE: &str = "self.all(t, isIP(t) || isCIDR(t))";

/// Desired state of a discovery scan.
#[derive(CustomResource, KubeSchema, Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[kube(
    group = "rmm.cdot.io",
    version = "v1alpha1",
    kind = "DiscoveryScan",
    namespaced,
    status = "DiscoveryScanStatus",
    shortname = "ds",
    category = "rmm",
    doc = "A network discovery run by a collector: ICMP and SNMP sweeps of CIDRs, optionally registering Devices.",
    printcolumn(name = "Site", type_ = "string", json_path = ".spec.site"),
    printcolumn(
        name = "Schedule",
        type_ = "string",
        json_path = ".spec.schedule",
        priority = 1
    ),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Scanned",
        type_ = "integer",
        json_path = ".status.progress.scanned"
    ),
    printcolumn(
        name = "Total",
        type_ = "integer",
        json_path = ".status.progress.total"
    ),
    printcolumn(name = "Found", type_ = "integer", json_path = ".status.lastRun.found"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DiscoveryScanSpec {
    /// Site being scanned; must equal the `rmm.cdot.io/site` label when both are set. Registered Devices get this site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = SITE_PATTERN), length(max = 63))]
    pub site: Option<String>,
    /// Which collector runs the scan; defaults to any collector of the same site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collector: Option<CollectorSelection>,
    /// Networks to scan: CIDRs (at most a /16 each) or single addresses. At most 65,536 addresses in total.
    #[schemars(length(min = 1, max = 64), inner(length(min = 2, max = 64)))]
    #[x_kube(validation = Rule::new(TARGET_RULE).message("each target must be an IP address or a CIDR of at most /16 (IPv4) or /112 (IPv6)"))]
    pub targets: Vec<String>,
    /// Addresses or CIDRs inside the targets that are never probed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(min = 2, max = 64)))]
    #[x_kube(validation = Rule::new(EXCLUDE_RULE).message("each exclude must be an IP address or a CIDR"))]
    pub excludes: Vec<String>,
    /// Discovery methods.
    #[serde(default)]
    pub methods: Methods,
    /// Cron schedule for repeated scans; omitted runs once (re-run by changing the spec).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = CRON_PATTERN))]
    pub schedule: Option<String>,
    /// IANA time zone of `schedule` (default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: Option<String>,
    /// Probe packets per second across the whole scan.
    #[serde(default = "default_rate")]
    #[schemars(range(min = 1, max = 10000))]
    pub rate_limit: u32,
    /// Addresses probed at the same time.
    #[serde(default = "default_concurrency")]
    #[schemars(range(min = 1, max = 1024))]
    pub concurrency: u32,
    /// Timeout of one probe, e.g. `1s`.
    #[serde(default = "default_timeout")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub timeout: String,
    /// Retries after a timeout.
    #[serde(default = "default_retries")]
    #[schemars(range(min = 0, max = 5))]
    pub retries: u8,
    /// What happens with found hosts.
    #[serde(default)]
    pub registration: Registration,
    /// Do not start new runs.
    #[serde(default)]
    pub suspend: bool,
}

fn default_rate() -> u32 {
    100
}
fn default_concurrency() -> u32 {
    64
}
fn default_timeout() -> String {
    "1s".into()
}
fn default_retries() -> u8 {
    1
}
fn default_true() -> bool {
    true
}
fn default_snmp_port() -> u16 {
    161
}

/// Which collector runs the scan.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CollectorSelection {
    /// Name of a Collector-class Device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub name: Option<String>,
    /// Labels of Collector-class Devices; one of the matching collectors runs the scan.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

/// Discovery methods.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Methods {
    /// ICMP echo sweep (one echo per address, `retries` more on timeout).
    #[serde(default = "default_true")]
    pub icmp: bool,
    /// SNMP probing of every responder: system group, ifTable/ifXTable, ipAddrTable and
    /// ipAddressTable, ENTITY-MIB serial, LLDP-MIB chassis id and neighbours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snmp: Option<SnmpDiscovery>,
}

impl Default for Methods {
    fn default() -> Self {
        Self {
            icmp: true,
            snmp: None,
        }
    }
}

/// SNMP discovery settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SnmpDiscovery {
    /// Credentials tried in order; the first that answers is recorded on registered Devices.
    #[schemars(length(min = 1, max = 8))]
    pub credentials: Vec<SnmpCredential>,
    /// UDP port.
    #[serde(default = "default_snmp_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    /// Also ask addresses that did not answer ICMP (hosts behind filters that drop echo
    /// requests); slower: every silent address waits out the SNMP timeouts.
    #[serde(default)]
    pub silent_hosts: bool,
}

/// One SNMP credential set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SnmpCredential {
    /// SNMP version.
    #[serde(default)]
    pub version: SnmpVersion,
    /// Secret with `community` (v1/v2c) or `username`, `authProtocol`, `authPassword`,
    /// `privProtocol`, `privPassword` (v3).
    pub secret_ref: SecretRef,
}

/// What a scan does with the hosts it finds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RegistrationMode {
    /// Only report them in the scan's status (and update Devices they match).
    #[default]
    Report,
    /// Create a Device (source Discovery) for every host no Device matches.
    Register,
    /// Write a Device manifest for every new host into the operator's `discovered/` folder
    /// (one file per namespace and scan) for a person to review and commit.
    Propose,
}

/// What happens with found hosts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Registration {
    /// `Report` (default), `Register` or `Propose`. A host that matches an existing Device
    /// (by LLDP chassis id, serial, an agent's machine id or MAC, then any address) updates
    /// it in every mode: discovery never registers the same box twice.
    #[serde(default)]
    pub mode: RegistrationMode,
    /// Labels put on created Devices (the site label is added from `site`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Class rules, first match wins; hosts matching none get `defaultClass`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub class_rules: Vec<ClassRule>,
    /// Class of hosts matching no rule.
    #[serde(default)]
    pub default_class: DeviceClass,
}

/// Maps SNMP identity to a device class.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("has(self.sysObjectIdPrefix) || has(self.sysDescrPattern)").message("set sysObjectIdPrefix, sysDescrPattern or both"))]
pub struct ClassRule {
    /// sysObjectID prefix in numeric form, e.g. `1.3.6.1.4.1.9.1` (Cisco products).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)*$"), length(max = 128))]
    pub sys_object_id_prefix: Option<String>,
    /// Regular expression on sysDescr.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub sys_descr_pattern: Option<String>,
    /// Class given to matching hosts.
    pub class: DeviceClass,
}

/// Phase of the current (or last) run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ScanPhase {
    /// Waiting for a collector or the schedule.
    Pending,
    /// Running.
    Running,
    /// Last run completed.
    Succeeded,
    /// Last run failed.
    Failed,
}

/// Progress of the current run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScanProgress {
    /// Addresses probed.
    #[serde(default)]
    pub scanned: u64,
    /// Addresses to probe.
    #[serde(default)]
    pub total: u64,
    /// Hosts that answered so far.
    #[serde(default)]
    pub found: u64,
    /// Devices created so far (mode `Register`) or proposed (mode `Propose`).
    #[serde(default)]
    pub registered: u64,
    /// Existing Devices the run matched and updated so far.
    #[serde(default)]
    pub updated: u64,
}

/// Summary of a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScanRun {
    /// The run's id (as the collector and the operator's logs name it).
    #[serde(default)]
    pub id: String,
    /// The collector that ran it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collector: Option<String>,
    /// `Succeeded` or `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ScanPhase>,
    /// Start (RFC 3339).
    #[serde(default)]
    pub started: String,
    /// End (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    /// Seconds from start to end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_seconds: Option<f64>,
    /// Addresses probed, of the total.
    #[serde(default)]
    pub scanned: u64,
    #[serde(default)]
    pub total: u64,
    /// Hosts that answered.
    #[serde(default)]
    pub found: u64,
    /// Devices created (or proposed).
    #[serde(default)]
    pub registered: u64,
    /// Existing Devices matched and updated.
    #[serde(default)]
    pub updated: u64,
    /// Devices of earlier runs this one did not find (marked not responding).
    #[serde(default)]
    pub missing: u64,
    /// Addresses that answered ICMP, of those probed.
    #[serde(default)]
    pub icmp_answered: u64,
    #[serde(default)]
    pub icmp_probed: u64,
    /// Addresses that answered SNMP, of those asked.
    #[serde(default)]
    pub snmp_answered: u64,
    #[serde(default)]
    pub snmp_probed: u64,
    /// Failures by reason (`timeout`, `authentication`, `malformed`, `unreachable`, `error`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub errors: BTreeMap<String, u64>,
    /// Times the collector restarted the run (it starts over from the first address).
    #[serde(default)]
    pub restarts: u32,
    /// Why the run failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Observed state of a discovery scan.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveryScanStatus {
    /// The `metadata.generation` last reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions: `Ready` (`True` with reason `Scheduled` or `Suspended` once the spec is
    /// valid and a Collector Device can run the scan; `False` with reason `NoCollector`
    /// otherwise; `problems` says when that collector is not reporting), `Reconciling` (`False` with reason `Reconciled` once
    /// `observedGeneration` is reconciled), `Degraded` (`True` with reason `ValidationFailed`
    /// when the spec is invalid, the message naming each field; `False` otherwise).
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Phase of the current or last run: `Pending` (waiting for its collector to start it,
    /// or for the first run), `Running`, `Succeeded`, `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ScanPhase>,
    /// Progress of the current (or last) run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<ScanProgress>,
    /// The last finished run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<ScanRun>,
    /// When the schedule starts the next run (RFC 3339); absent for one-shot scans and while
    /// suspended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run: Option<String>,
    /// What keeps the scan from running as asked: a due run with no Ready collector to run
    /// it, a credential whose Secret is missing or incomplete (the run goes on without it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// Hosts of the last run (at most 256), for a review in mode `Propose`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<ScanHost>,
}

/// A host a run found, and what became of it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScanHost {
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sys_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<DeviceClass>,
    /// The Device it is (or would be, in mode `Propose`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// `registered`, `updated`, `proposed`, `reported` or `matched`.
    pub outcome: String,
}

/// Inclusive address range in one family (false = IPv4, true = IPv6).
type Range = (bool, u128, u128);

fn range_of(net: &IpNet) -> Range {
    let (a, b) = (net.network(), net.broadcast());
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (false, u32::from(a).into(), u32::from(b).into()),
        (IpAddr::V6(a), IpAddr::V6(b)) => (true, u128::from(a), u128::from(b)),
        _ => (false, 0, 0),
    }
}

fn merge(mut ranges: Vec<Range>) -> Vec<Range> {
    ranges.sort();
    let mut out: Vec<Range> = Vec::new();
    for r in ranges {
        match out.last_mut() {
            Some(last) if last.0 == r.0 && r.1 <= last.2.saturating_add(1) => {
                last.2 = last.2.max(r.2);
            }
            _ => out.push(r),
        }
    }
    out
}

impl DiscoveryScanSpec {
    /// The Secrets the scan refers to: (field path, Secret name, key; `None`: the whole
    /// Secret).
    pub fn secret_refs(&self) -> Vec<(String, &str, Option<&str>)> {
        self.methods
            .snmp
            .iter()
            .flat_map(|snmp| snmp.credentials.iter().enumerate())
            .map(|(i, c)| {
                (
                    format!("spec.methods.snmp.credentials[{i}].secretRef"),
                    c.secret_ref.name.as_str(),
                    None,
                )
            })
            .collect()
    }

    /// Number of distinct addresses the scan probes: targets minus excludes, de-duplicated.
    pub fn address_count(&self) -> Result<u64, String> {
        let parse = |list: &[String]| -> Result<Vec<Range>, String> {
            list.iter()
                .map(|s| parse_cidr(s).map(|n| range_of(&n)))
                .collect()
        };
        let targets = merge(parse(&self.targets)?);
        let excludes = merge(parse(&self.excludes)?);
        let mut total: u128 = 0;
        for (fam, start, end) in targets {
            let mut count = end - start + 1;
            for &(efam, es, ee) in &excludes {
                if efam != fam || ee < start || es > end {
                    continue;
                }
                count -= ee.min(end) - es.max(start) + 1;
            }
            total = total.saturating_add(count);
        }
        u64::try_from(total).map_err(|_| "address count exceeds 2^64".to_owned())
    }
}

impl Validate for DiscoveryScanSpec {
    fn validate(&self) -> Vec<FieldError> {
        let mut errs = Errors::default();
        if self.targets.is_empty() {
            errs.push("spec.targets", "at least one target is required");
        }
        let mut targets = Vec::new();
        for (i, t) in self.targets.iter().enumerate() {
            let path = format!("spec.targets[{i}]");
            if let Some(net) = errs.check(path.clone(), parse_cidr(t)) {
                let too_big = match net {
                    IpNet::V4(n) => n.prefix_len() < 16,
                    IpNet::V6(n) => n.prefix_len() < 112,
                };
                if too_big {
                    errs.push(
                        path,
                        format!("{t} is larger than a /16 (IPv4) or /112 (IPv6)"),
                    );
                }
                targets.push(net);
            }
        }
        let mut excludes_ok = true;
        for (i, e) in self.excludes.iter().enumerate() {
            let path = format!("spec.excludes[{i}]");
            match errs.check(path.clone(), parse_cidr(e)) {
                Some(net) => {
                    if !targets.iter().any(|t| t.contains(&net)) {
                        errs.push(path, format!("{e} is not inside any target"));
                    }
                }
                None => excludes_ok = false,
            }
        }
        if targets.len() == self.targets.len()
            && excludes_ok
            && let Ok(n) = self.address_count()
        {
            if n > MAX_ADDRESSES {
                errs.push(
                    "spec.targets",
                    format!("{n} addresses to scan; at most {MAX_ADDRESSES} (a /16) per DiscoveryScan, split it"),
                );
            } else if n == 0 {
                errs.push("spec.excludes", "excludes remove every target address");
            }
        }
        if let Some(c) = &self.collector {
            if c.name.is_none() && c.selector.is_none() {
                errs.push(
                    "spec.collector",
                    "set name, selector or both (or omit collector)",
                );
            }
            if let Some(s) = &c.selector {
                validate_selector(s, "spec.collector.selector", &mut errs);
            }
        }
        if !self.methods.icmp && self.methods.snmp.is_none() {
            errs.push("spec.methods", "enable at least one method (icmp or snmp)");
        }
        if let Some(snmp) = &self.methods.snmp {
            for (i, c) in snmp.credentials.iter().enumerate() {
                c.secret_ref.validate_into(
                    &format!("spec.methods.snmp.credentials[{i}].secretRef"),
                    &mut errs,
                );
            }
        }
        if let Some(s) = &self.schedule {
            errs.check("spec.schedule", check_cron(s));
        }
        if let Some(z) = &self.time_zone {
            if self.schedule.is_none() {
                errs.push("spec.timeZone", "only used with schedule");
            }
            errs.check("spec.timeZone", check_time_zone(z));
        }
        if let Some(d) = check_duration_into(&mut errs, "spec.timeout", &self.timeout, true)
            && d > std::time::Duration::from_secs(30)
        {
            errs.push("spec.timeout", "must be at most 30s");
        }
        for (k, v) in &self.registration.labels {
            errs.check(format!("spec.registration.labels.{k}"), check_label_key(k));
            errs.check(
                format!("spec.registration.labels.{k}"),
                check_label_value(v),
            );
        }
        for (i, r) in self.registration.class_rules.iter().enumerate() {
            let path = format!("spec.registration.classRules[{i}]");
            if r.sys_object_id_prefix.is_none() && r.sys_descr_pattern.is_none() {
                errs.push(
                    path.clone(),
                    "set sysObjectIdPrefix, sysDescrPattern or both",
                );
            }
            if let Some(p) = &r.sys_descr_pattern
                && let Err(e) = regex::Regex::new(p)
            {
                errs.push(
                    format!("{path}.sysDescrPattern"),
                    format!("invalid regular expression: {e}"),
                );
            }
        }
        errs.into_vec()
    }

    fn validate_metadata(&self, labels: &BTreeMap<String, String>) -> Vec<FieldError> {
        check_site_label(self.site.as_deref(), labels)
            .into_iter()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::DiscoveryScanSpec;
    use crate::test_support::{doc, err_at, ok};

    fn base() -> Value {
        doc(
            "DiscoveryScan",
            json!({
                "site": "london",
                "targets": ["10.0.0.0/24", "10.0.1.0/24"],
                "excludes": ["10.0.0.0/30"],
                "methods": {"snmp": {"credentials": [{"version": "V2c", "secretRef": {"name": "snmp"}}]}},
                "schedule": "0 1 * * *",
                "timeZone": "Europe/London",
                "registration": {"mode": "Register", "labels": {"discovered": "true"}, "classRules": [{"sysObjectIdPrefix": "1.3.6.1.4.1.9", "class": "Switch"}]},
            }),
        )
    }

    fn spec(targets: &[&str], excludes: &[&str]) -> DiscoveryScanSpec {
        DiscoveryScanSpec {
            targets: targets.iter().map(|s| (*s).to_owned()).collect(),
            excludes: excludes.iter().map(|s| (*s).to_owned()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn address_count() {
        assert_eq!(spec(&["10.0.0.0/24"], &[]).address_count(), Ok(256));
        assert_eq!(
            spec(&["10.0.0.0/24", "10.0.0.128/25"], &[]).address_count(),
            Ok(256)
        );
        assert_eq!(
            spec(
                &["10.0.0.0/24", "10.0.1.0/24"],
                &["10.0.0.0/30", "10.0.0.1"]
            )
            .address_count(),
            Ok(508)
        );
        assert_eq!(
            spec(&["10.0.0.5", "2001:db8::/120"], &[]).address_count(),
            Ok(257)
        );
        assert_eq!(spec(&["10.0.0.0/16"], &[]).address_count(), Ok(65_536));
        assert!(spec(&["nope"], &[]).address_count().is_err());
    }

    #[test]
    fn base_is_valid_with_defaults() {
        ok(&base(), json!({}));
        let crate::manifest::Document::Resource(o) = crate::manifest::validate_document(&doc(
            "DiscoveryScan",
            json!({"targets": ["192.168.1.0/24"]}),
        ))
        .expect("valid") else {
            panic!("not a resource")
        };
        assert_eq!(o.spec["methods"], json!({"icmp": true}));
        assert_eq!(o.spec["rateLimit"], 100);
        assert_eq!(o.spec["timeout"], "1s");
        assert_eq!(o.spec["registration"]["mode"], "Report");
    }

    #[test]
    fn schema_level() {
        err_at(&base(), json!({"spec": {"targets": []}}), "spec.targets");
        err_at(&base(), json!({"spec": {"rateLimit": 0}}), "spec.rateLimit");
        err_at(
            &base(),
            json!({"spec": {"concurrency": 5000}}),
            "spec.concurrency",
        );
        err_at(&base(), json!({"spec": {"retries": 9}}), "spec.retries");
        err_at(
            &base(),
            json!({"spec": {"registration": {"defaultClass": "Robot"}}}),
            "spec.registration.defaultClass",
        );
        err_at(
            &base(),
            json!({"spec": {"registration": {"classRules": [{"sysObjectIdPrefix": "iso.3.6", "class": "Switch"}]}}}),
            "spec.registration.classRules[0].sysObjectIdPrefix",
        );
        err_at(
            &base(),
            json!({"spec": {"methods": {"snmp": {"credentials": [{"version": "V4", "secretRef": {"name": "s"}}]}}}}),
            "spec.methods.snmp.credentials[0].version",
        );
    }

    #[test]
    fn targets_parse_and_are_small_enough() {
        err_at(
            &base(),
            json!({"spec": {"targets": ["10.0.0.0/24", "10.0.0.0/33"], "excludes": null}}),
            "spec.targets[1]",
        );
        err_at(
            &base(),
            json!({"spec": {"targets": ["10.0.0.0/24", "office-lan"], "excludes": null}}),
            "spec.targets[1]",
        );
        err_at(
            &base(),
            json!({"spec": {"targets": ["10.0.0.0/15"], "excludes": null}}),
            "spec.targets[0]",
        );
        ok(
            &base(),
            json!({"spec": {"targets": ["10.0.0.0/16"], "excludes": null}}),
        );
        err_at(
            &base(),
            json!({"spec": {"targets": ["10.0.0.0/16", "10.1.0.0/24"], "excludes": null}}),
            "spec.targets",
        );
        ok(
            &base(),
            json!({"spec": {"targets": ["10.0.0.0/16", "10.0.5.0/24"], "excludes": null}}),
        );
    }

    #[test]
    fn excludes_within_targets() {
        err_at(
            &base(),
            json!({"spec": {"excludes": ["192.168.0.1"]}}),
            "spec.excludes[0]",
        );
        err_at(
            &base(),
            json!({"spec": {"excludes": ["10.0.0.0/30", "not-an-ip"]}}),
            "spec.excludes[1]",
        );
        err_at(
            &base(),
            json!({"spec": {"targets": ["10.0.0.0/30"], "excludes": ["10.0.0.0/30"]}}),
            "spec.excludes",
        );
    }

    #[test]
    fn methods_collector_schedule() {
        err_at(
            &base(),
            json!({"spec": {"methods": {"icmp": false, "snmp": null}}}),
            "spec.methods",
        );
        err_at(
            &base(),
            json!({"spec": {"methods": {"snmp": {"credentials": [{"secretRef": {"name": "Bad!"}}]}}}}),
            "spec.methods.snmp.credentials[0].secretRef.name",
        );
        err_at(
            &base(),
            json!({"spec": {"collector": {}}}),
            "spec.collector",
        );
        ok(
            &base(),
            json!({"spec": {"collector": {"selector": {"matchLabels": {"role": "collector"}}}}}),
        );
        err_at(
            &base(),
            json!({"spec": {"schedule": "0 25 * * *"}}),
            "spec.schedule",
        );
        err_at(
            &base(),
            json!({"spec": {"schedule": null}}),
            "spec.timeZone",
        );
        err_at(
            &base(),
            json!({"spec": {"timeZone": "Not/AZone"}}),
            "spec.timeZone",
        );
        err_at(&base(), json!({"spec": {"timeout": "45s"}}), "spec.timeout");
    }

    #[test]
    fn registration_rules() {
        err_at(
            &base(),
            json!({"spec": {"registration": {"labels": {"a": "bad value!"}}}}),
            "spec.registration.labels.a",
        );
        err_at(
            &base(),
            json!({"spec": {"registration": {"classRules": [{"class": "Printer"}]}}}),
            "spec.registration.classRules[0]",
        );
        err_at(
            &base(),
            json!({"spec": {"registration": {"classRules": [{"sysDescrPattern": "(", "class": "Printer"}]}}}),
            "spec.registration.classRules[0].sysDescrPattern",
        );
    }

    #[test]
    fn site_label_must_agree() {
        err_at(
            &base(),
            json!({"metadata": {"labels": {"rmm.cdot.io/site": "leeds"}}}),
            "spec.site",
        );
        ok(
            &base(),
            json!({"metadata": {"labels": {"rmm.cdot.io/site": "london"}}}),
        );
    }
}
