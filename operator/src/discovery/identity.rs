//! Which Device a found host is. Strong keys first (LLDP chassis id, chassis serial, a MAC
//! address of one of its interfaces), then any of its addresses, so one router answering on
//! five addresses is one Device, however many scans find it and in whatever order: the
//! fault LibreNMS users meet as the same router registered over and over (librenms#2975).
//!
//! Keys that say nothing about one box are ignored: all-zero and multicast MACs, the
//! virtual-router MACs of VRRP and HSRP (shared by every router of a group), and any key
//! that two Devices already share.
use std::{
    collections::{BTreeSet, HashMap},
    net::IpAddr,
};

use cdot_crds::{
    device::{DeviceSpec, DeviceStatus},
    wire::discovery::FoundHost,
};

/// How a host was matched (for the logs and the run's counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchedOn {
    ChassisId,
    Serial,
    Mac,
    Address,
}

impl MatchedOn {
    pub fn as_str(self) -> &'static str {
        match self {
            MatchedOn::ChassisId => "chassis id",
            MatchedOn::Serial => "serial",
            MatchedOn::Mac => "MAC address",
            MatchedOn::Address => "address",
        }
    }
}

/// The identity keys of one box.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Keys {
    pub chassis_id: Option<String>,
    pub serial: Option<String>,
    pub macs: BTreeSet<String>,
    pub addresses: BTreeSet<IpAddr>,
}

impl Keys {
    /// A found host's keys: what it said over SNMP, and the address it answered on.
    pub fn of_host(host: &FoundHost) -> Self {
        let mut keys = Keys::default();
        keys.addresses.insert(host.address);
        if let Some(facts) = &host.snmp {
            keys.chassis_id = facts.chassis_id.as_deref().and_then(normalise_id);
            keys.serial = facts.serial.as_deref().and_then(normalise_id);
            keys.macs.extend(
                facts
                    .interfaces
                    .iter()
                    .filter_map(|i| i.mac.as_deref())
                    .filter_map(normalise_mac),
            );
            keys.addresses
                .extend(facts.addresses.iter().filter(|a| !a.is_loopback()));
        }
        keys
    }

    /// A Device's keys: its spec's addresses, and what discovery and its agent reported.
    pub fn of_device(spec: &DeviceSpec, status: &DeviceStatus) -> Self {
        let mut keys = Keys::default();
        let parsed = |s: &String| s.parse::<IpAddr>().ok();
        keys.addresses
            .extend(spec.management_addresses.iter().filter_map(parsed));
        keys.addresses.extend(
            spec.snmp
                .iter()
                .filter_map(|s| s.address.as_ref())
                .filter_map(parsed),
        );
        if let Some(d) = &status.discovery {
            keys.chassis_id = d.chassis_id.as_deref().and_then(normalise_id);
            keys.serial = d.serial.as_deref().and_then(normalise_id);
            keys.macs
                .extend(d.macs.iter().filter_map(|m| normalise_mac(m)));
            keys.addresses.extend(d.addresses.iter().filter_map(parsed));
        }
        if let Some(inventory) = &status.inventory {
            if keys.serial.is_none() {
                keys.serial = inventory.serial.as_deref().and_then(normalise_id);
            }
            for nic in &inventory.nics {
                keys.macs.extend(nic.mac.as_deref().and_then(normalise_mac));
                keys.addresses.extend(
                    nic.addresses
                        .iter()
                        .filter_map(|a| a.split('/').next()?.parse::<IpAddr>().ok())
                        .filter(|a| !a.is_loopback()),
                );
            }
        }
        keys
    }
}

/// Ids compare without case and surrounding blanks; empty and placeholder ids say nothing.
fn normalise_id(id: &str) -> Option<String> {
    let id = id.trim().to_ascii_lowercase();
    let placeholder = id.is_empty()
        || id.chars().all(|c| c == '0' || c == ':' || c == ' ')
        || matches!(
            id.as_str(),
            "none" | "n/a" | "unknown" | "to be filled by o.e.m."
        );
    (!placeholder).then_some(id)
}

/// `aa:bb:cc:dd:ee:ff` of a MAC that identifies one interface, else `None`.
pub fn normalise_mac(mac: &str) -> Option<String> {
    let hex: String = mac
        .chars()
        .filter(char::is_ascii_hexdigit)
        .collect::<String>()
        .to_ascii_lowercase();
    if hex.len() != 12 {
        return None;
    }
    let bytes: Vec<u8> = (0..6)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16))
        .collect::<Result<_, _>>()
        .ok()?;
    let zero = bytes.iter().all(|b| *b == 0);
    let multicast = bytes[0] & 1 == 1;
    // VRRP (00:00:5e:00:01/02:xx) and HSRP (00:00:0c:07:ac:xx, 00:00:0c:9f:fx:xx).
    let virtual_router = bytes[..4] == [0x00, 0x00, 0x5e, 0x00]
        || bytes[..5] == [0x00, 0x00, 0x0c, 0x07, 0xac]
        || (bytes[..4] == [0x00, 0x00, 0x0c, 0x9f] && bytes[4] & 0xf0 == 0xf0);
    if zero || multicast || virtual_router {
        return None;
    }
    Some(
        bytes
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
    )
}

/// Every Device's keys by kind, for matching many hosts at once. Kept current as the
/// registrar creates and updates Devices, so the second address of a router found in the
/// same run already matches the Device the first one made.
#[derive(Debug, Default)]
pub struct Directory {
    keys: HashMap<String, Keys>,
    chassis: HashMap<String, Owner>,
    serials: HashMap<String, Owner>,
    macs: HashMap<String, Owner>,
    addresses: HashMap<IpAddr, Owner>,
}

/// Who holds a key: one Device, or several (then the key decides nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Owner {
    One(String),
    Shared,
}

fn claim<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Owner>, key: K, device: &str) {
    map.entry(key)
        .and_modify(|o| {
            if *o != Owner::One(device.to_owned()) {
                *o = Owner::Shared;
            }
        })
        .or_insert_with(|| Owner::One(device.to_owned()));
}

impl Directory {
    /// Adds (or widens) a Device's keys.
    pub fn insert(&mut self, device: &str, keys: Keys) {
        if let Some(id) = &keys.chassis_id {
            claim(&mut self.chassis, id.clone(), device);
        }
        if let Some(serial) = &keys.serial {
            claim(&mut self.serials, serial.clone(), device);
        }
        for mac in &keys.macs {
            claim(&mut self.macs, mac.clone(), device);
        }
        for address in &keys.addresses {
            claim(&mut self.addresses, *address, device);
        }
        let entry = self.keys.entry(device.to_owned()).or_default();
        entry.chassis_id = entry.chassis_id.take().or(keys.chassis_id);
        entry.serial = entry.serial.take().or(keys.serial);
        entry.macs.extend(keys.macs);
        entry.addresses.extend(keys.addresses);
    }

    /// The Device these keys belong to: the first strong key held by exactly one Device,
    /// else the first address held by exactly one.
    pub fn find(&self, keys: &Keys) -> Option<(String, MatchedOn)> {
        let one = |owner: Option<&Owner>| match owner {
            Some(Owner::One(name)) => Some(name.clone()),
            _ => None,
        };
        let strong = keys
            .chassis_id
            .as_ref()
            .and_then(|k| one(self.chassis.get(k)))
            .map(|d| (d, MatchedOn::ChassisId))
            .or_else(|| {
                keys.serial
                    .as_ref()
                    .and_then(|k| one(self.serials.get(k)))
                    .map(|d| (d, MatchedOn::Serial))
            })
            .or_else(|| {
                keys.macs
                    .iter()
                    .find_map(|k| one(self.macs.get(k)))
                    .map(|d| (d, MatchedOn::Mac))
            });
        strong.or_else(|| {
            keys.addresses
                .iter()
                .find_map(|a| one(self.addresses.get(a)))
                .map(|d| (d, MatchedOn::Address))
        })
    }

    /// The Device holding this LLDP chassis id or management address, for topology links.
    pub fn by_chassis_or_address(&self, chassis: &str, address: Option<IpAddr>) -> Option<String> {
        let one = |owner: Option<&Owner>| match owner {
            Some(Owner::One(name)) => Some(name.clone()),
            _ => None,
        };
        normalise_id(chassis)
            .and_then(|c| one(self.chassis.get(&c)))
            .or_else(|| normalise_mac(chassis).and_then(|m| one(self.macs.get(&m))))
            .or_else(|| address.and_then(|a| one(self.addresses.get(&a))))
    }

    /// Whether a Device of this name exists (for choosing a free name).
    pub fn contains(&self, device: &str) -> bool {
        self.keys.contains_key(device)
    }
}

#[cfg(test)]
mod tests {
    use cdot_crds::wire::discovery::{FoundInterface, SnmpFacts};

    use super::*;

    fn router(address: &str, others: &[&str]) -> FoundHost {
        FoundHost {
            address: address.parse().expect("ip"),
            rtt_ms: Some(0.3),
            snmp: Some(SnmpFacts {
                sys_name: "rtr-1".into(),
                chassis_id: Some("00:11:22:33:44:55".into()),
                serial: Some("FTX1234ABCD".into()),
                addresses: others.iter().map(|a| a.parse().expect("ip")).collect(),
                interfaces: vec![
                    FoundInterface {
                        if_index: 1,
                        name: "Gi0/0".into(),
                        mac: Some("00:11:22:33:44:56".into()),
                        ..Default::default()
                    },
                    FoundInterface {
                        if_index: 2,
                        name: "Vlan10".into(),
                        mac: Some("00:00:5e:00:01:0a".into()),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }),
        }
    }

    #[test]
    fn one_router_with_many_addresses_is_one_device() {
        let mut dir = Directory::default();
        let first = Keys::of_host(&router("10.0.0.1", &["10.0.0.1", "10.0.1.1", "127.0.0.1"]));
        assert!(!first.addresses.iter().any(IpAddr::is_loopback));
        assert!(dir.find(&first).is_none());
        dir.insert("rtr-1", first);
        // The same box on another address, found later: matched on its chassis id.
        let second = Keys::of_host(&router("192.168.5.1", &[]));
        assert_eq!(
            dir.find(&second),
            Some(("rtr-1".into(), MatchedOn::ChassisId))
        );
        // Without LLDP, the serial; without either, a MAC; without SNMP, an address.
        let mut no_lldp = second.clone();
        no_lldp.chassis_id = None;
        assert_eq!(dir.find(&no_lldp).map(|m| m.1), Some(MatchedOn::Serial));
        no_lldp.serial = None;
        assert_eq!(dir.find(&no_lldp).map(|m| m.1), Some(MatchedOn::Mac));
        let bare = Keys::of_host(&FoundHost {
            address: "10.0.1.1".parse().expect("ip"),
            rtt_ms: None,
            snmp: None,
        });
        assert_eq!(dir.find(&bare), Some(("rtr-1".into(), MatchedOn::Address)));
    }

    #[test]
    fn keys_shared_by_two_devices_decide_nothing() {
        let mut dir = Directory::default();
        let a = Keys::of_host(&router("10.0.0.1", &[]));
        let mut b = a.clone();
        b.addresses = ["10.0.0.2".parse().expect("ip")].into();
        dir.insert("a", a.clone());
        dir.insert("b", b);
        let mut probe = a;
        probe.addresses.clear();
        assert_eq!(
            dir.find(&probe),
            None,
            "chassis, serial and MAC are all shared"
        );
        probe.addresses.insert("10.0.0.2".parse().expect("ip"));
        assert_eq!(dir.find(&probe), Some(("b".into(), MatchedOn::Address)));
    }

    #[test]
    fn macs_that_name_no_single_interface_are_ignored() {
        assert_eq!(
            normalise_mac("00-11-22-AA-BB-CC").as_deref(),
            Some("00:11:22:aa:bb:cc")
        );
        assert_eq!(
            normalise_mac("0011.22aa.bbcc").as_deref(),
            Some("00:11:22:aa:bb:cc")
        );
        for mac in [
            "00:00:00:00:00:00",
            "01:00:5e:00:00:01",
            "00:00:5e:00:01:0a",
            "00:00:0c:07:ac:01",
            "00:00:0c:9f:f0:01",
            "00:11:22",
        ] {
            assert_eq!(normalise_mac(mac), None, "{mac}");
        }
        assert_eq!(normalise_id("  FTX1234ABCD "), Some("ftx1234abcd".into()));
        assert_eq!(normalise_id("To Be Filled By O.E.M."), None);
        assert_eq!(normalise_id("00:00:00:00:00:00"), None);
    }
}
