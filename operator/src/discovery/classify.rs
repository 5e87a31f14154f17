//! The class of a found host, from its SNMP identity: the scan's `classRules` first (first
//! match wins), then the built-in rules below, then the scan's `defaultClass`. The built-in
//! rules key on the IANA enterprise number in sysObjectID (`1.3.6.1.4.1.<enterprise>...`)
//! and refine it with sysDescr where one vendor makes several classes; they are documented
//! in the README (Discovery) and ADR 26.
use cdot_crds::{
    device::DeviceClass,
    discovery_scan::{ClassRule, Registration},
};
use regex::Regex;

/// sysObjectID prefix of private enterprises.
const ENTERPRISES: &str = "1.3.6.1.4.1.";

/// The class rules of a scan, compiled once per pass.
#[derive(Debug)]
pub struct Classifier {
    rules: Vec<(Option<String>, Option<Regex>, DeviceClass)>,
    default: DeviceClass,
}

impl Classifier {
    /// Rules whose pattern does not compile are skipped (validation refuses them anyway).
    pub fn new(registration: &Registration) -> Self {
        Self {
            rules: registration
                .class_rules
                .iter()
                .map(
                    |ClassRule {
                         sys_object_id_prefix,
                         sys_descr_pattern,
                         class,
                     }| {
                        (
                            sys_object_id_prefix.clone(),
                            sys_descr_pattern
                                .as_deref()
                                .and_then(|p| Regex::new(p).ok()),
                            *class,
                        )
                    },
                )
                .collect(),
            default: registration.default_class,
        }
    }

    /// The class of a host that answered SNMP with these values; `None` facts (no SNMP
    /// answer) get the default.
    pub fn classify(&self, facts: Option<(&str, &str)>) -> DeviceClass {
        let Some((object_id, descr)) = facts else {
            return self.default;
        };
        let object_id = object_id.trim_start_matches('.');
        let spec_rule = self.rules.iter().find(|(prefix, pattern, _)| {
            prefix
                .as_deref()
                .is_none_or(|p| oid_has_prefix(object_id, p))
                && pattern.as_ref().is_none_or(|r| r.is_match(descr))
        });
        spec_rule
            .map(|(_, _, class)| *class)
            .or_else(|| built_in(object_id, descr))
            .unwrap_or(self.default)
    }
}

/// Whether `oid` starts with `prefix` on an arc boundary (`1.3.6.1.4.1.9` is not a prefix
/// of `1.3.6.1.4.1.99`).
fn oid_has_prefix(oid: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_start_matches('.');
    oid == prefix
        || oid
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('.'))
}

/// The enterprise number of a sysObjectID under `1.3.6.1.4.1`.
fn enterprise(oid: &str) -> Option<u32> {
    oid.strip_prefix(ENTERPRISES)?
        .split('.')
        .next()?
        .parse()
        .ok()
}

/// The built-in rules: vendor by enterprise number, refined by sysDescr.
fn built_in(object_id: &str, descr: &str) -> Option<DeviceClass> {
    use DeviceClass::*;
    let d = descr.to_ascii_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| d.contains(w));
    // Printers say so whoever made them.
    if has(&[
        "printer",
        "laserjet",
        "officejet",
        "imagerunner",
        "bizhub",
        "workcentre",
    ]) {
        return Some(Printer);
    }
    let class = match enterprise(object_id)? {
        // Cisco
        9 if has(&["adaptive security", "asa", "firepower"]) => Firewall,
        9 if has(&["aironet", "access point", "ap software"]) => AccessPoint,
        9 if has(&["catalyst", "nexus", "switch", "nx-os"]) => Switch,
        9 => Router,
        // Juniper
        2636 if has(&["srx"]) => Firewall,
        2636 if has(&["ex2", "ex3", "ex4", "qfx", "switch"]) => Switch,
        2636 => Router,
        // HP / HPE / Aruba switches
        11 | 25506 | 47196 if has(&["procurve", "aruba", "switch", "comware"]) => Switch,
        11 => Server,
        // Fortinet, Palo Alto, Check Point, SonicWall, WatchGuard, Sophos
        12356 | 25461 | 2620 | 8741 | 3097 | 21067 => Firewall,
        // MikroTik, Ubiquiti EdgeRouter, Vyatta/VyOS
        14988 => Router,
        41112 if has(&["edgeos", "edgerouter"]) => Router,
        41112 => AccessPoint,
        30803 | 44641 => Router,
        // Aruba Instant / Ruckus wireless
        14823 | 25053 => AccessPoint,
        // Arista, Netgear, D-Link, TP-Link, Extreme, Brocade/Ruckus ICX, Dell networking
        30065 | 4526 | 171 | 11863 | 1916 | 1991 | 6027 => Switch,
        // Printer makers: Brother, Canon, Ricoh, Xerox, Kyocera, Lexmark, Epson
        2435 | 1602 | 367 | 253 | 1347 | 641 | 1248 => Printer,
        // Windows, net-snmp on Linux/BSD, VMware ESXi, Dell iDRAC, HPE iLO hosts
        311 | 8072 | 6876 | 674 | 232 => Server,
        _ => return None,
    };
    Some(class)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classifier(rules: Vec<ClassRule>, default: DeviceClass) -> Classifier {
        Classifier::new(&Registration {
            class_rules: rules,
            default_class: default,
            ..Default::default()
        })
    }

    #[test]
    fn built_in_rules_know_the_usual_vendors() {
        let c = classifier(Vec::new(), DeviceClass::Other);
        let class = |oid, descr| c.classify(Some((oid, descr)));
        assert_eq!(
            class("1.3.6.1.4.1.9.1.1208", "Cisco IOS Software, C2900"),
            DeviceClass::Router
        );
        assert_eq!(
            class(
                ".1.3.6.1.4.1.9.1.2",
                "Cisco IOS Software, Catalyst L3 Switch"
            ),
            DeviceClass::Switch
        );
        assert_eq!(
            class("1.3.6.1.4.1.9.1.745", "Cisco Adaptive Security Appliance"),
            DeviceClass::Firewall
        );
        assert_eq!(
            class("1.3.6.1.4.1.12356.101.1.3", "FortiGate-60F"),
            DeviceClass::Firewall
        );
        assert_eq!(
            class("1.3.6.1.4.1.14988.1", "RouterOS CCR1009"),
            DeviceClass::Router
        );
        assert_eq!(
            class(
                "1.3.6.1.4.1.11.2.3.9.1",
                "HP ETHERNET MULTI-ENVIRONMENT,ROM, LaserJet"
            ),
            DeviceClass::Printer
        );
        assert_eq!(
            class("1.3.6.1.4.1.8072.3.2.10", "Linux web-01 6.1.0"),
            DeviceClass::Server
        );
        assert_eq!(
            class("1.3.6.1.4.1.99999.1", "Something"),
            DeviceClass::Other
        );
        assert_eq!(class("1.3.6.1.4.1.99.1", "Something"), DeviceClass::Other);
        assert_eq!(c.classify(None), DeviceClass::Other);
    }

    #[test]
    fn spec_rules_come_first_and_match_on_arc_boundaries() {
        let c = classifier(
            vec![
                ClassRule {
                    sys_object_id_prefix: Some("1.3.6.1.4.1.9.1.1208".into()),
                    sys_descr_pattern: None,
                    class: DeviceClass::Firewall,
                },
                ClassRule {
                    sys_object_id_prefix: None,
                    sys_descr_pattern: Some("(?i)door".into()),
                    class: DeviceClass::Other,
                },
            ],
            DeviceClass::Server,
        );
        assert_eq!(
            c.classify(Some(("1.3.6.1.4.1.9.1.1208", "Cisco IOS"))),
            DeviceClass::Firewall
        );
        assert_eq!(
            c.classify(Some(("1.3.6.1.4.1.9.1.12080", "Cisco IOS"))),
            DeviceClass::Router,
            "not a prefix on an arc boundary: the built-in rule decides"
        );
        assert_eq!(
            c.classify(Some(("1.3.6.1.4.1.8072.3", "Door controller"))),
            DeviceClass::Other
        );
        assert_eq!(c.classify(None), DeviceClass::Server, "the default");
    }
}
