//! The OIDs polled (numeric: no MIB files needed) and dotted formatting for messages.

/// SNMPv2-MIB sysUpTime.0 (TimeTicks, hundredths of a second since the agent started).
pub const SYS_UPTIME: &[u64] = &[1, 3, 6, 1, 2, 1, 1, 3, 0];

/// IF-MIB ifTable columns (ifEntry 1.3.6.1.2.1.2.2.1.N).
pub const IF_DESCR: &[u64] = &[1, 3, 6, 1, 2, 1, 2, 2, 1, 2];
pub const IF_SPEED: &[u64] = &[1, 3, 6, 1, 2, 1, 2, 2, 1, 5];
pub const IF_OPER_STATUS: &[u64] = &[1, 3, 6, 1, 2, 1, 2, 2, 1, 8];
pub const IF_IN_OCTETS: &[u64] = &[1, 3, 6, 1, 2, 1, 2, 2, 1, 10];
pub const IF_IN_UCAST_PKTS: &[u64] = &[1, 3, 6, 1, 2, 1, 2, 2, 1, 11];
pub const IF_IN_DISCARDS: &[u64] = &[1, 3, 6, 1, 2, 1, 2, 2, 1, 13];
pub const IF_IN_ERRORS: &[u64] = &[1, 3, 6, 1, 2, 1, 2, 2, 1, 14];
pub const IF_OUT_OCTETS: &[u64] = &[1, 3, 6, 1, 2, 1, 2, 2, 1, 16];
pub const IF_OUT_UCAST_PKTS: &[u64] = &[1, 3, 6, 1, 2, 1, 2, 2, 1, 17];
pub const IF_OUT_DISCARDS: &[u64] = &[1, 3, 6, 1, 2, 1, 2, 2, 1, 19];
pub const IF_OUT_ERRORS: &[u64] = &[1, 3, 6, 1, 2, 1, 2, 2, 1, 20];

/// IF-MIB ifXTable columns (ifXEntry 1.3.6.1.2.1.31.1.1.1.N).
pub const IF_NAME: &[u64] = &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 1];
pub const IF_HC_IN_OCTETS: &[u64] = &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 6];
pub const IF_HC_IN_UCAST_PKTS: &[u64] = &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 7];
pub const IF_HC_OUT_OCTETS: &[u64] = &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 10];
pub const IF_HC_OUT_UCAST_PKTS: &[u64] = &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 11];
pub const IF_HIGH_SPEED: &[u64] = &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 15];
pub const IF_ALIAS: &[u64] = &[1, 3, 6, 1, 2, 1, 31, 1, 1, 1, 18];

/// `1.3.6.1...` for messages.
pub fn dotted(oid: &[u64]) -> String {
    oid.iter().map(u64::to_string).collect::<Vec<_>>().join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_form() {
        assert_eq!(dotted(SYS_UPTIME), "1.3.6.1.2.1.1.3.0");
        assert_eq!(dotted(&[]), "");
    }
}
