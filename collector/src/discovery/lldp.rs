//! LLDP-MIB: the host's own chassis id and its neighbours (lldpRemTable with the management
//! addresses of lldpRemManAddrTable and the local port names of lldpLocPortTable).
//!
//! Ids are formatted so that one device's chassis id reads the same in its own
//! lldpLocChassisId and in its neighbours' lldpRemChassisId: a MAC address subtype as
//! `aa:bb:cc:dd:ee:ff`, printable text as text, anything else as hex.
use std::{collections::BTreeMap, net::IpAddr};

use cdot_crds::wire::discovery::LldpNeighbour;

use super::values::{bytes, hex, mac, number, printable, text};
use crate::snmp::{session::SnmpValue, walk::Row};

/// LldpChassisIdSubtype macAddress(4).
pub(super) const CHASSIS_MAC: u64 = 4;
/// LldpPortIdSubtype macAddress(3).
pub(super) const PORT_MAC: u64 = 3;
/// AddressFamilyNumbers ipV4(1) and ipV6(2), as lldpRemManAddrSubtype.
const FAMILY_IPV4: u64 = 1;
const FAMILY_IPV6: u64 = 2;

/// Positions of the lldpRemTable columns walked (see [`super::oids`]).
pub(super) const REM_CHASSIS_SUBTYPE: usize = 0;
pub(super) const REM_CHASSIS_ID: usize = 1;
pub(super) const REM_PORT_SUBTYPE: usize = 2;
pub(super) const REM_PORT_ID: usize = 3;
pub(super) const REM_PORT_DESC: usize = 4;
pub(super) const REM_SYS_NAME: usize = 5;

/// A neighbour's row: lldpRemTimeMark, lldpRemLocalPortNum, lldpRemIndex.
type RemKey = (u64, u64, u64);

/// An LLDP id of the given subtype: as a MAC address when the subtype says so and the
/// length fits, else as text when printable, else as hex.
pub(super) fn format_id(subtype: Option<u64>, mac_subtype: u64, id: &[u8]) -> String {
    if subtype == Some(mac_subtype)
        && id.len() == 6
        && let Some(mac) = mac(id)
    {
        return mac;
    }
    printable(id).unwrap_or_else(|| hex(id))
}

/// lldpLocChassisId formatted by its subtype; `None` when the agent has none.
pub(super) fn chassis_id(subtype: Option<&SnmpValue>, id: Option<&SnmpValue>) -> Option<String> {
    let id = bytes(id).filter(|id| !id.is_empty())?;
    Some(format_id(number(subtype), CHASSIS_MAC, id))
}

/// The neighbours: `rem` holds the lldpRemTable columns (`REM_*` order), `man` the rows of
/// lldpRemManAddrIfSubtype, `local` lldpLocPortIdSubtype and lldpLocPortId. The first
/// management address of a neighbour is kept.
pub(super) fn neighbours(rem: &[Vec<Row>], man: &[Row], local: &[Vec<Row>]) -> Vec<LldpNeighbour> {
    let mut rows: BTreeMap<RemKey, Vec<Option<&SnmpValue>>> = BTreeMap::new();
    for (c, column) in rem.iter().enumerate() {
        for (index, value) in column {
            if let [time_mark, port, rem_index] = index.as_slice() {
                rows.entry((*time_mark, *port, *rem_index))
                    .or_insert_with(|| vec![None; rem.len()])[c] = Some(value);
            }
        }
    }
    let mut addresses: BTreeMap<RemKey, IpAddr> = BTreeMap::new();
    for (index, _) in man {
        if let Some((key, address)) = management_address(index) {
            addresses.entry(key).or_insert(address);
        }
    }
    let local_ports = local_ports(local);
    rows.into_iter()
        .map(|(key, values)| {
            let value = |c: usize| values.get(c).copied().flatten();
            let id = |subtype: usize, id: usize, mac_subtype: u64| {
                format_id(
                    number(value(subtype)),
                    mac_subtype,
                    bytes(value(id)).unwrap_or_default(),
                )
            };
            LldpNeighbour {
                local_port: local_ports
                    .get(&key.1)
                    .cloned()
                    .unwrap_or_else(|| key.1.to_string()),
                chassis_id: id(REM_CHASSIS_SUBTYPE, REM_CHASSIS_ID, CHASSIS_MAC),
                port_id: id(REM_PORT_SUBTYPE, REM_PORT_ID, PORT_MAC),
                port_descr: text(value(REM_PORT_DESC)),
                sys_name: text(value(REM_SYS_NAME)),
                management_address: addresses.get(&key).copied(),
            }
        })
        .collect()
}

/// lldpLocPortId by lldpLocPortNum, formatted by its subtype (columns: subtype, id).
fn local_ports(local: &[Vec<Row>]) -> BTreeMap<u64, String> {
    let [subtypes, ids] = local else {
        return BTreeMap::new();
    };
    let subtypes: BTreeMap<&[u64], &SnmpValue> =
        subtypes.iter().map(|(i, v)| (i.as_slice(), v)).collect();
    ids.iter()
        .filter_map(|(index, id)| {
            let [port] = index.as_slice() else {
                return None;
            };
            let id = bytes(Some(id)).filter(|id| !id.is_empty())?;
            let subtype = number(subtypes.get(index.as_slice()).copied());
            Some((*port, format_id(subtype, PORT_MAC, id)))
        })
        .collect()
}

/// The neighbour and the address in an lldpRemManAddrTable index:
/// timeMark.localPortNum.remIndex.addrSubtype.addrLength.addrBytes (IPv4 or IPv6 only).
pub(super) fn management_address(index: &[u64]) -> Option<(RemKey, IpAddr)> {
    let [time_mark, port, rem_index, family, length, address @ ..] = index else {
        return None;
    };
    if usize::try_from(*length).ok()? != address.len() {
        return None;
    }
    let octets = address
        .iter()
        .map(|&arc| u8::try_from(arc).ok())
        .collect::<Option<Vec<u8>>>()?;
    let address = match *family {
        FAMILY_IPV4 => IpAddr::from(<[u8; 4]>::try_from(octets).ok()?),
        FAMILY_IPV6 => IpAddr::from(<[u8; 16]>::try_from(octets).ok()?),
        _ => return None,
    };
    Some(((*time_mark, *port, *rem_index), address))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn octets(bytes: &[u8]) -> SnmpValue {
        SnmpValue::OctetString(bytes.to_vec())
    }

    #[test]
    fn ids_by_subtype() {
        let mac = [0x02, 0x00, 0xaa, 0xbb, 0xcc, 0x01];
        assert_eq!(format_id(Some(4), CHASSIS_MAC, &mac), "02:00:aa:bb:cc:01");
        assert_eq!(format_id(Some(3), PORT_MAC, &mac), "02:00:aa:bb:cc:01");
        // A port id of subtype 4 (networkAddress) is not a MAC address.
        assert_eq!(format_id(Some(4), PORT_MAC, &mac), "0200aabbcc01");
        assert_eq!(format_id(Some(5), PORT_MAC, b"Gi0/24"), "Gi0/24");
        assert_eq!(format_id(Some(4), CHASSIS_MAC, b"short"), "short");
        assert_eq!(format_id(None, CHASSIS_MAC, &[0x01, 0xff]), "01ff");
        assert_eq!(
            chassis_id(Some(&SnmpValue::Integer(4)), Some(&octets(&mac))).as_deref(),
            Some("02:00:aa:bb:cc:01")
        );
        assert_eq!(chassis_id(None, Some(&SnmpValue::NoSuchObject)), None);
        assert_eq!(chassis_id(None, Some(&octets(&[]))), None);
    }

    #[test]
    fn management_addresses_are_read_from_the_index() {
        assert_eq!(
            management_address(&[0, 2, 1, 1, 4, 10, 231, 7, 11]),
            Some(((0, 2, 1), IpAddr::from([10, 231, 7, 11])))
        );
        let mut v6 = vec![0, 1, 3, 2, 16, 0x20, 0x01, 0x0d, 0xb8];
        v6.extend([0; 11]);
        v6.push(1);
        assert_eq!(
            management_address(&v6),
            Some(((0, 1, 3), "2001:db8::1".parse().expect("ip")))
        );
        // Wrong length, a byte over 255, an unknown family, too short.
        assert_eq!(management_address(&[0, 2, 1, 1, 4, 10, 231, 7]), None);
        assert_eq!(management_address(&[0, 2, 1, 1, 4, 10, 231, 7, 256]), None);
        assert_eq!(management_address(&[0, 2, 1, 16, 4, 10, 231, 7, 1]), None);
        assert_eq!(management_address(&[0, 2]), None);
    }

    #[test]
    fn neighbours_join_the_three_tables() {
        let row = |port: u64, value: SnmpValue| (vec![0, port, 1], value);
        let rem = vec![
            vec![row(1, SnmpValue::Integer(4)), row(2, SnmpValue::Integer(7))],
            vec![
                row(1, octets(&[2, 0, 0, 0, 0, 0x11])),
                row(2, octets(b"v3-host")),
            ],
            vec![row(1, SnmpValue::Integer(5)), row(2, SnmpValue::Integer(3))],
            vec![
                row(1, octets(b"Gi0/24")),
                row(2, octets(&[2, 0, 0, 0, 0, 0x12])),
            ],
            vec![row(1, octets(b"uplink"))],
            vec![row(1, octets(b"sw-1")), row(2, octets(b"srv-1"))],
        ];
        let man = vec![
            (vec![0, 1, 1, 1, 4, 10, 0, 0, 11], SnmpValue::Integer(2)),
            (vec![0, 1, 1, 1, 4, 10, 0, 0, 99], SnmpValue::Integer(2)),
        ];
        let local = vec![
            vec![(vec![1], SnmpValue::Integer(5))],
            vec![(vec![1], octets(b"Gi0/1"))],
        ];
        let found = neighbours(&rem, &man, &local);
        assert_eq!(
            found,
            [
                LldpNeighbour {
                    local_port: "Gi0/1".into(),
                    chassis_id: "02:00:00:00:00:11".into(),
                    port_id: "Gi0/24".into(),
                    port_descr: "uplink".into(),
                    sys_name: "sw-1".into(),
                    management_address: Some(IpAddr::from([10, 0, 0, 11])),
                },
                LldpNeighbour {
                    local_port: "2".into(),
                    chassis_id: "v3-host".into(),
                    port_id: "02:00:00:00:00:12".into(),
                    port_descr: String::new(),
                    sys_name: "srv-1".into(),
                    management_address: None,
                },
            ]
        );
        assert!(neighbours(&[], &[], &[]).is_empty());
    }
}
