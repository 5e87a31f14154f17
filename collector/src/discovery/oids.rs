//! The OIDs discovery reads (numeric: no MIB files needed). IF-MIB columns are the
//! poller's ([`crate::snmp::oids`]).

/// SNMPv2-MIB system group scalars.
pub const SYS_DESCR: &[u64] = &[1, 3, 6, 1, 2, 1, 1, 1, 0];
pub const SYS_OBJECT_ID: &[u64] = &[1, 3, 6, 1, 2, 1, 1, 2, 0];
pub const SYS_UPTIME: &[u64] = &[1, 3, 6, 1, 2, 1, 1, 3, 0];
pub const SYS_NAME: &[u64] = &[1, 3, 6, 1, 2, 1, 1, 5, 0];
pub const SYS_LOCATION: &[u64] = &[1, 3, 6, 1, 2, 1, 1, 6, 0];

/// IF-MIB ifPhysAddress (ifEntry column 6).
pub const IF_PHYS_ADDRESS: &[u64] = &[1, 3, 6, 1, 2, 1, 2, 2, 1, 6];

/// IP-MIB ipAdEntAddr (IPv4 only; the index is the address).
pub const IP_AD_ENT_ADDR: &[u64] = &[1, 3, 6, 1, 2, 1, 4, 20, 1, 1];
/// IP-MIB ipAddressIfIndex (IPv4 and IPv6; the index is addrType.length.bytes).
pub const IP_ADDRESS_IF_INDEX: &[u64] = &[1, 3, 6, 1, 2, 1, 4, 34, 1, 3];

/// ENTITY-MIB entPhysicalSerialNum.
pub const ENT_PHYSICAL_SERIAL_NUM: &[u64] = &[1, 3, 6, 1, 2, 1, 47, 1, 1, 1, 1, 11];

/// LLDP-MIB lldpLocChassisIdSubtype.0 and lldpLocChassisId.0.
pub const LLDP_LOC_CHASSIS_ID_SUBTYPE: &[u64] = &[1, 0, 8802, 1, 1, 2, 1, 3, 1, 0];
pub const LLDP_LOC_CHASSIS_ID: &[u64] = &[1, 0, 8802, 1, 1, 2, 1, 3, 2, 0];
/// LLDP-MIB lldpLocPortTable columns (index lldpLocPortNum).
pub const LLDP_LOC_PORT_ID_SUBTYPE: &[u64] = &[1, 0, 8802, 1, 1, 2, 1, 3, 7, 1, 2];
pub const LLDP_LOC_PORT_ID: &[u64] = &[1, 0, 8802, 1, 1, 2, 1, 3, 7, 1, 3];
/// LLDP-MIB lldpRemTable columns (index timeMark.localPortNum.remIndex).
pub const LLDP_REM_CHASSIS_ID_SUBTYPE: &[u64] = &[1, 0, 8802, 1, 1, 2, 1, 4, 1, 1, 4];
pub const LLDP_REM_CHASSIS_ID: &[u64] = &[1, 0, 8802, 1, 1, 2, 1, 4, 1, 1, 5];
pub const LLDP_REM_PORT_ID_SUBTYPE: &[u64] = &[1, 0, 8802, 1, 1, 2, 1, 4, 1, 1, 6];
pub const LLDP_REM_PORT_ID: &[u64] = &[1, 0, 8802, 1, 1, 2, 1, 4, 1, 1, 7];
pub const LLDP_REM_PORT_DESC: &[u64] = &[1, 0, 8802, 1, 1, 2, 1, 4, 1, 1, 8];
pub const LLDP_REM_SYS_NAME: &[u64] = &[1, 0, 8802, 1, 1, 2, 1, 4, 1, 1, 9];
/// LLDP-MIB lldpRemManAddrIfSubtype: its index carries the management address
/// (timeMark.localPortNum.remIndex.addrSubtype.addrLength.addrBytes).
pub const LLDP_REM_MAN_ADDR_IF_SUBTYPE: &[u64] = &[1, 0, 8802, 1, 1, 2, 1, 4, 2, 1, 3];
