//! Network isolation of a device: the nftables rule set an agent applies for an
//! [`Isolate`](super::work::Isolate) step, rendered here so that the operator's dry-run
//! plan shows the exact rules the agent will load.
//!
//! The rules live in a table of their own ([`NFT_TABLE`]) so that applying and releasing
//! never touch the host's other rules: a script for `nft -f` recreates it whole (one
//! transaction: either the new rules or the old ones), and releasing deletes it.
use std::{fmt::Write, net::IpAddr};

pub use ipnet::IpNet;

/// The nftables table holding the isolation rules (family and name).
pub const NFT_TABLE: &str = "inet cdot_isolation";

/// An `allow` entry that is neither an address nor a CIDR.
#[derive(Debug, thiserror::Error)]
#[error("invalid isolation allow entry {entry:?}: expected an IP address or a CIDR")]
pub struct InvalidAllow {
    /// The entry.
    pub entry: String,
}

/// Parses `allow` entries: plain addresses (as /32 or /128) or CIDRs.
pub fn parse_allow(entries: &[String]) -> Result<Vec<IpNet>, InvalidAllow> {
    entries
        .iter()
        .map(|entry| {
            let entry = entry.trim();
            entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                .map(|net| net.trunc())
                .map_err(|_| InvalidAllow {
                    entry: entry.to_owned(),
                })
        })
        .collect()
}

/// The `nft -f` script that (re)creates the isolation table: input and output drop
/// everything except loopback, neighbour discovery, DHCP and traffic from/to `allow`.
pub fn nft_ruleset(allow: &[IpNet]) -> String {
    let mut v4: Vec<String> = Vec::new();
    let mut v6: Vec<String> = Vec::new();
    for net in allow {
        // A host is written without its prefix length, as `nft list` shows it.
        let text = if net.prefix_len() == net.max_prefix_len() {
            net.addr().to_string()
        } else {
            net.trunc().to_string()
        };
        let list = match net {
            IpNet::V4(_) => &mut v4,
            IpNet::V6(_) => &mut v6,
        };
        if !list.contains(&text) {
            list.push(text);
        }
    }
    let mut out = release_script();
    let _ = writeln!(out, "table {NFT_TABLE} {{");
    for (name, kind, elements) in [("allow4", "ipv4_addr", &v4), ("allow6", "ipv6_addr", &v6)] {
        let _ = writeln!(out, "\tset {name} {{\n\t\ttype {kind}\n\t\tflags interval");
        // nft refuses an empty `elements = { }`.
        if !elements.is_empty() {
            let _ = writeln!(out, "\t\telements = {{ {} }}", elements.join(", "));
        }
        out.push_str("\t}\n");
    }
    for (chain, hook, dir, iface, dhcp) in [
        (
            "input",
            "input",
            "saddr",
            "iif",
            "udp sport { 67, 547 } udp dport { 68, 546 }",
        ),
        (
            "output",
            "output",
            "daddr",
            "oif",
            "udp sport { 68, 546 } udp dport { 67, 547 }",
        ),
    ] {
        let _ = write!(
            out,
            "\tchain {chain} {{\n\
             \t\ttype filter hook {hook} priority -10; policy drop;\n\
             \t\t{iface} \"lo\" accept\n\
             \t\ticmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, nd-router-advert }} accept\n\
             \t\t# DHCP, so that the device keeps its address (and its path to the operator).\n\
             \t\t{dhcp} accept\n\
             \t\tip {dir} @allow4 accept\n\
             \t\tip6 {dir} @allow6 accept\n\
             \t}}\n"
        );
    }
    out.push_str("}\n");
    out
}

/// The `nft -f` script that deletes the isolation table, and does not fail when it is
/// absent (declaring an empty table first makes sure there is one to delete).
pub fn release_script() -> String {
    format!("table {NFT_TABLE} {{}}\ndelete table {NFT_TABLE}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_entries_are_addresses_or_cidrs() {
        let parsed = parse_allow(&[
            "10.0.0.1".into(),
            "192.168.7.9/24".into(),
            "2001:db8::1".into(),
        ])
        .expect("parse");
        assert_eq!(
            parsed,
            vec![
                "10.0.0.1/32".parse::<IpNet>().expect("net"),
                "192.168.7.0/24".parse().expect("net"),
                "2001:db8::1/128".parse().expect("net"),
            ]
        );
        let err = parse_allow(&["rmm.example.com".into()]).expect_err("a name");
        assert!(err.to_string().contains("rmm.example.com"), "{err}");
    }

    #[test]
    fn the_rule_set_recreates_one_table_with_both_families() {
        let allow = parse_allow(&[
            "10.0.0.1".into(),
            "10.0.0.1".into(),
            "192.168.7.0/24".into(),
            "2001:db8::1".into(),
        ])
        .expect("parse");
        let rules = nft_ruleset(&allow);
        assert!(rules.starts_with(
            "table inet cdot_isolation {}\ndelete table inet cdot_isolation\ntable inet cdot_isolation {\n"
        ));
        assert!(
            rules.contains("elements = { 10.0.0.1, 192.168.7.0/24 }"),
            "{rules}"
        );
        assert!(rules.contains("elements = { 2001:db8::1 }"), "{rules}");
        assert!(rules.contains("type filter hook input priority -10; policy drop;"));
        assert!(rules.contains("type filter hook output priority -10; policy drop;"));
        assert!(
            rules.contains("ip saddr @allow4 accept") && rules.contains("ip6 daddr @allow6 accept")
        );
        // No IPv6 address: the set is declared without elements.
        let v4_only = nft_ruleset(&allow[..1]);
        assert_eq!(v4_only.matches("elements").count(), 1, "{v4_only}");
    }
}
