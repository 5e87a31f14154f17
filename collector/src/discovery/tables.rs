//! What a host that answered tells beyond its system group: interfaces (IF-MIB), its own
//! addresses (IP-MIB), its serial number (ENTITY-MIB) and LLDP.
//!
//! Every table is optional and read on its own: an agent without it (noSuchObject,
//! endOfMibView, a walk that leaves the subtree at once) gives an empty table, and an
//! error while reading one (a timeout, an agent that loops) loses that table only, never
//! the facts already read. Columns are read up to [`MAX_TABLE_ROWS`] rows.
use std::net::IpAddr;

use cdot_crds::wire::discovery::{FoundInterface, MAX_TABLE_ROWS, SnmpFacts};
use tracing::debug;

use super::{
    lldp, oids,
    values::{bytes, mac, number, text},
};
use crate::snmp::{
    SnmpError, oids as if_mib,
    session::{Request, Session},
    walk::{Row, index_columns, walk_columns_up_to},
};

/// IF-MIB columns read, in the order of the `IF_*` positions below.
const IF_COLUMNS: [&[u64]; 7] = [
    if_mib::IF_DESCR,
    if_mib::IF_NAME,
    if_mib::IF_ALIAS,
    oids::IF_PHYS_ADDRESS,
    if_mib::IF_SPEED,
    if_mib::IF_HIGH_SPEED,
    if_mib::IF_OPER_STATUS,
];
const IF_DESCR: usize = 0;
const IF_NAME: usize = 1;
const IF_ALIAS: usize = 2;
const IF_PHYS_ADDRESS: usize = 3;
const IF_SPEED: usize = 4;
const IF_HIGH_SPEED: usize = 5;
const IF_OPER_STATUS: usize = 6;

/// lldpRemTable columns read, in the order of [`lldp`]'s `REM_*` positions.
const LLDP_REM_COLUMNS: [&[u64]; 6] = [
    oids::LLDP_REM_CHASSIS_ID_SUBTYPE,
    oids::LLDP_REM_CHASSIS_ID,
    oids::LLDP_REM_PORT_ID_SUBTYPE,
    oids::LLDP_REM_PORT_ID,
    oids::LLDP_REM_PORT_DESC,
    oids::LLDP_REM_SYS_NAME,
];

/// InetAddressType of ipAddressTable's index.
const INET_IPV4: u64 = 1;
const INET_IPV6: u64 = 2;
const INET_IPV4Z: u64 = 3;
const INET_IPV6Z: u64 = 4;

/// Reads the optional tables into `facts`; returns how many of them failed.
pub(super) async fn read(session: &mut Session, facts: &mut SnmpFacts) -> u32 {
    let mut tables = Tables { session, failed: 0 };
    facts.interfaces = interfaces(&tables.walk("ifTable", &IF_COLUMNS).await);
    let old = tables.walk("ipAddrTable", &[oids::IP_AD_ENT_ADDR]).await;
    let new = tables
        .walk("ipAddressTable", &[oids::IP_ADDRESS_IF_INDEX])
        .await;
    facts.addresses = addresses(&old, &new);
    let entities = tables
        .walk("entPhysicalTable", &[oids::ENT_PHYSICAL_SERIAL_NUM])
        .await;
    facts.serial = serial(&entities);
    facts.chassis_id = tables.chassis_id().await;
    let rem = tables.walk("lldpRemTable", &LLDP_REM_COLUMNS).await;
    if rem.iter().any(|column| !column.is_empty()) {
        let man = tables
            .walk("lldpRemManAddrTable", &[oids::LLDP_REM_MAN_ADDR_IF_SUBTYPE])
            .await;
        let local = tables
            .walk(
                "lldpLocPortTable",
                &[oids::LLDP_LOC_PORT_ID_SUBTYPE, oids::LLDP_LOC_PORT_ID],
            )
            .await;
        let mut neighbours = lldp::neighbours(&rem, man.first().map_or(&[], Vec::as_slice), &local);
        neighbours.truncate(MAX_TABLE_ROWS);
        facts.neighbours = neighbours;
    }
    tables.failed
}

/// A session reading optional tables, counting those that failed.
struct Tables<'a> {
    session: &'a mut Session,
    failed: u32,
}

impl Tables<'_> {
    /// The rows of `columns`; none when the walk fails.
    async fn walk(&mut self, table: &'static str, columns: &[&[u64]]) -> Vec<Vec<Row>> {
        match walk_columns_up_to(self.session, columns, MAX_TABLE_ROWS).await {
            Ok(rows) => rows,
            Err(error) => self.lost(table, &error),
        }
    }

    /// lldpLocChassisId with its subtype; `None` when absent or unreadable.
    async fn chassis_id(&mut self) -> Option<String> {
        let request = Request::Get(&[oids::LLDP_LOC_CHASSIS_ID_SUBTYPE, oids::LLDP_LOC_CHASSIS_ID]);
        let response = match self.session.request(request).await {
            // A v1 agent answers noSuchName (an error status) for an object it lacks.
            Ok(response) if response.error_status != 0 => return None,
            Ok(response) => response,
            Err(error) => return self.lost("lldpLocChassisId", &error),
        };
        let value = |oid: &[u64]| {
            response
                .varbinds
                .iter()
                .find(|vb| vb.oid == oid)
                .map(|vb| &vb.value)
        };
        lldp::chassis_id(
            value(oids::LLDP_LOC_CHASSIS_ID_SUBTYPE),
            value(oids::LLDP_LOC_CHASSIS_ID),
        )
    }

    fn lost<T: Default>(&mut self, table: &'static str, error: &SnmpError) -> T {
        debug!(table, %error, "optional table not read");
        self.failed += 1;
        T::default()
    }
}

/// ifTable/ifXTable rows by ifIndex.
fn interfaces(columns: &[Vec<Row>]) -> Vec<FoundInterface> {
    let mut found: Vec<FoundInterface> = index_columns(columns)
        .into_iter()
        .map(|(if_index, values)| {
            let value = |c: usize| values.get(c).copied().flatten();
            let if_name = text(value(IF_NAME));
            let speed_bps = match number(value(IF_HIGH_SPEED)) {
                Some(mbps) if mbps > 0 => mbps.saturating_mul(1_000_000),
                _ => number(value(IF_SPEED)).unwrap_or(0),
            };
            FoundInterface {
                if_index,
                name: if if_name.is_empty() {
                    text(value(IF_DESCR))
                } else {
                    if_name
                },
                alias: text(value(IF_ALIAS)),
                mac: bytes(value(IF_PHYS_ADDRESS)).and_then(mac),
                speed_bps,
                oper_status: number(value(IF_OPER_STATUS))
                    .and_then(|v| u8::try_from(v).ok())
                    .unwrap_or(0),
            }
        })
        .collect();
    found.truncate(MAX_TABLE_ROWS);
    found
}

/// The host's own addresses from ipAddrTable and ipAddressTable, each once, in the order
/// read, without those that say nothing about the host (see [`identifies`]).
fn addresses(ip_addr_table: &[Vec<Row>], ip_address_table: &[Vec<Row>]) -> Vec<IpAddr> {
    let old = ip_addr_table.iter().flatten().filter_map(|(index, _)| {
        let octets = index
            .iter()
            .map(|&arc| u8::try_from(arc).ok())
            .collect::<Option<Vec<u8>>>()?;
        <[u8; 4]>::try_from(octets).ok().map(IpAddr::from)
    });
    let new = ip_address_table
        .iter()
        .flatten()
        .filter_map(|(index, _)| ip_address_index(index));
    let mut found: Vec<IpAddr> = Vec::new();
    for address in old.chain(new).filter(|a| identifies(*a)) {
        if found.len() >= MAX_TABLE_ROWS {
            break;
        }
        if !found.contains(&address) {
            found.push(address);
        }
    }
    found
}

/// The address in an ipAddressTable index: addrType.length.bytes, where a zoned address
/// (ipv4z, ipv6z) carries its zone after the address.
fn ip_address_index(index: &[u64]) -> Option<IpAddr> {
    let [kind, length, address @ ..] = index else {
        return None;
    };
    if usize::try_from(*length).ok()? != address.len() {
        return None;
    }
    let octets = address
        .iter()
        .map(|&arc| u8::try_from(arc).ok())
        .collect::<Option<Vec<u8>>>()?;
    match (*kind, octets.len()) {
        (INET_IPV4, 4) | (INET_IPV4Z, 8) => {
            <[u8; 4]>::try_from(&octets[..4]).ok().map(IpAddr::from)
        }
        (INET_IPV6, 16) | (INET_IPV6Z, 20) => {
            <[u8; 16]>::try_from(&octets[..16]).ok().map(IpAddr::from)
        }
        _ => None,
    }
}

/// Whether an address can stand for this host: not a loopback, unspecified, multicast or
/// link-local address (link-local ones repeat on every device).
fn identifies(address: IpAddr) -> bool {
    let common = address.is_loopback() || address.is_unspecified() || address.is_multicast();
    let link_local = match address {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_unicast_link_local(),
    };
    !common && !link_local
}

/// The first non-empty entPhysicalSerialNum.
fn serial(columns: &[Vec<Row>]) -> Option<String> {
    columns
        .iter()
        .flatten()
        .map(|(_, value)| text(Some(value)))
        .find(|serial| !serial.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snmp::session::SnmpValue;

    fn octets(bytes: &[u8]) -> SnmpValue {
        SnmpValue::OctetString(bytes.to_vec())
    }

    #[test]
    fn ip_address_table_indexes_of_every_type() {
        assert_eq!(
            ip_address_index(&[1, 4, 10, 231, 7, 200]),
            Some(IpAddr::from([10, 231, 7, 200]))
        );
        let mut v6 = vec![2, 16, 0x20, 0x01, 0x0d, 0xb8];
        v6.extend([0; 11]);
        v6.push(5);
        assert_eq!(
            ip_address_index(&v6),
            Some("2001:db8::5".parse().expect("ip"))
        );
        // ipv6z: fe80::1 in zone 2.
        let mut v6z = vec![4, 20, 0xfe, 0x80];
        v6z.extend([0; 13]);
        v6z.extend([1, 0, 0, 0, 2]);
        assert_eq!(ip_address_index(&v6z), Some("fe80::1".parse().expect("ip")));
        assert_eq!(
            ip_address_index(&[3, 8, 10, 0, 0, 1, 0, 0, 0, 7]),
            Some(IpAddr::from([10, 0, 0, 1]))
        );
        // Length that does not match, a byte beyond 255, unknown type, nothing.
        assert_eq!(ip_address_index(&[1, 4, 10, 0, 0]), None);
        assert_eq!(ip_address_index(&[1, 4, 10, 0, 0, 300]), None);
        assert_eq!(ip_address_index(&[16, 4, 10, 0, 0, 1]), None);
        assert_eq!(ip_address_index(&[]), None);
    }

    #[test]
    fn addresses_are_merged_without_loopback_or_link_local() {
        let row = |index: Vec<u64>| (index, SnmpValue::Integer(1));
        let old = vec![vec![
            row(vec![10, 0, 0, 1]),
            row(vec![127, 0, 0, 1]),
            row(vec![10, 0, 0, 200]),
        ]];
        let mut link_local = vec![2, 16, 0xfe, 0x80];
        link_local.extend([0; 13]);
        link_local.push(1);
        let mut global = vec![2, 16, 0x20, 0x01, 0x0d, 0xb8];
        global.extend([0; 11]);
        global.push(1);
        let new = vec![vec![
            row(vec![1, 4, 10, 0, 0, 1]),
            row(vec![1, 4, 169, 254, 1, 1]),
            row(link_local),
            row(global),
        ]];
        let found: Vec<String> = addresses(&old, &new)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(found, ["10.0.0.1", "10.0.0.200", "2001:db8::1"]);
    }

    #[test]
    fn interfaces_take_names_speeds_and_hardware_addresses() {
        let at = |index: u64, value: SnmpValue| (vec![index], value);
        let mut columns = vec![Vec::new(); IF_COLUMNS.len()];
        columns[IF_DESCR] = vec![at(1, octets(b"lo")), at(2, octets(b"eth0 descr"))];
        columns[IF_NAME] = vec![at(2, octets(b"eth0"))];
        columns[IF_ALIAS] = vec![at(2, octets(b"uplink"))];
        columns[IF_PHYS_ADDRESS] =
            vec![at(1, octets(&[])), at(2, octets(&[0x02, 0xcd, 0, 0, 0, 1]))];
        columns[IF_SPEED] = vec![
            at(1, SnmpValue::Unsigned32(10_000_000)),
            at(2, SnmpValue::Unsigned32(u32::MAX)),
        ];
        columns[IF_HIGH_SPEED] = vec![at(2, SnmpValue::Unsigned32(10_000))];
        columns[IF_OPER_STATUS] = vec![at(1, SnmpValue::Integer(1)), at(2, SnmpValue::Integer(2))];
        let found = interfaces(&columns);
        assert_eq!(
            found,
            [
                FoundInterface {
                    if_index: 1,
                    name: "lo".into(),
                    speed_bps: 10_000_000,
                    oper_status: 1,
                    ..Default::default()
                },
                FoundInterface {
                    if_index: 2,
                    name: "eth0".into(),
                    alias: "uplink".into(),
                    mac: Some("02:cd:00:00:00:01".into()),
                    speed_bps: 10_000_000_000,
                    oper_status: 2,
                },
            ]
        );
    }

    #[test]
    fn serial_is_the_first_non_empty_one() {
        let columns = vec![vec![
            (vec![1], octets(b"")),
            (vec![2], octets(b" FTX1234ABCD ")),
            (vec![3], octets(b"other")),
        ]];
        assert_eq!(serial(&columns).as_deref(), Some("FTX1234ABCD"));
        assert_eq!(serial(&[]), None);
    }
}
