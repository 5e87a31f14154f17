//! The addresses a run probes: its targets minus its excludes, each address once, in
//! ascending order (IPv4 first).
//!
//! Targets and excludes become inclusive ranges of integers, merged and subtracted; the
//! addresses are produced one at a time from those ranges, so a /16 is never held as a
//! list. An IPv4 CIDR shorter than /31 leaves out its network and broadcast addresses, as
//! `fping -g` does; IPv6 has no broadcast, so an IPv6 CIDR keeps every address.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use cdot_crds::{common::parse_cidr, discovery_scan::MAX_ADDRESSES};
use ipnet::IpNet;

/// Why a run's addresses cannot be worked out.
#[derive(Debug, thiserror::Error)]
pub(super) enum TargetError {
    #[error("{list} {value:?} is neither an IP address nor a CIDR: {message}")]
    Invalid {
        /// `target` or `exclude`.
        list: &'static str,
        value: String,
        message: String,
    },
    #[error("the targets cover {count} addresses after the excludes, more than {MAX_ADDRESSES}")]
    TooMany { count: u128 },
}

/// An inclusive range of addresses of one family, as integers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Span {
    v6: bool,
    first: u128,
    last: u128,
}

impl Span {
    fn len(&self) -> u128 {
        self.last - self.first + 1
    }

    fn addresses(self) -> impl Iterator<Item = IpAddr> {
        (self.first..=self.last).map(move |n| {
            if self.v6 {
                IpAddr::V6(Ipv6Addr::from(n))
            } else {
                IpAddr::V4(Ipv4Addr::from(u32::try_from(n).unwrap_or(u32::MAX)))
            }
        })
    }
}

/// The addresses of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct AddressSet {
    /// Sorted, disjoint, not adjacent.
    spans: Vec<Span>,
}

impl AddressSet {
    /// `targets` minus `excludes` (addresses or CIDRs); at most [`MAX_ADDRESSES`].
    pub(super) fn new(targets: &[String], excludes: &[String]) -> Result<Self, TargetError> {
        let targets = parse("target", targets, host_span)?;
        let excludes = parse("exclude", excludes, whole_span)?;
        let set = Self {
            spans: subtract(merge(targets), &merge(excludes)),
        };
        let count = set.spans.iter().map(Span::len).sum::<u128>();
        if count > u128::from(MAX_ADDRESSES) {
            return Err(TargetError::TooMany { count });
        }
        Ok(set)
    }

    /// Number of addresses.
    pub(super) fn len(&self) -> u64 {
        let count = self.spans.iter().map(Span::len).sum::<u128>();
        u64::try_from(count).unwrap_or(u64::MAX)
    }

    /// Whether any address is IPv4, and whether any is IPv6.
    pub(super) fn families(&self) -> (bool, bool) {
        (
            self.spans.iter().any(|s| !s.v6),
            self.spans.iter().any(|s| s.v6),
        )
    }

    /// The addresses, ascending, produced as they are taken.
    pub(super) fn iter(&self) -> impl Iterator<Item = IpAddr> + Send + 'static {
        self.spans.clone().into_iter().flat_map(Span::addresses)
    }
}

fn parse(
    list: &'static str,
    values: &[String],
    span: fn(&IpNet) -> Span,
) -> Result<Vec<Span>, TargetError> {
    let mut spans = Vec::with_capacity(values.len());
    for value in values {
        let net = parse_cidr(value.trim()).map_err(|message| TargetError::Invalid {
            list,
            value: value.clone(),
            message,
        })?;
        spans.push(span(&net));
    }
    Ok(spans)
}

/// Every address of `net`.
fn whole_span(net: &IpNet) -> Span {
    match net {
        IpNet::V4(net) => Span {
            v6: false,
            first: u32::from(net.network()).into(),
            last: u32::from(net.broadcast()).into(),
        },
        IpNet::V6(net) => Span {
            v6: true,
            first: u128::from(net.network()),
            last: u128::from(net.broadcast()),
        },
    }
}

/// The hosts of `net`: without the network and broadcast addresses of an IPv4 CIDR
/// shorter than /31 (which has at least four addresses).
fn host_span(net: &IpNet) -> Span {
    let span = whole_span(net);
    match net {
        IpNet::V4(v4) if v4.prefix_len() < 31 => Span {
            first: span.first + 1,
            last: span.last - 1,
            ..span
        },
        _ => span,
    }
}

/// Sorts spans and joins overlapping or adjacent ones.
fn merge(mut spans: Vec<Span>) -> Vec<Span> {
    spans.sort();
    let mut merged: Vec<Span> = Vec::with_capacity(spans.len());
    for span in spans {
        match merged.last_mut() {
            Some(last) if last.v6 == span.v6 && span.first <= last.last.saturating_add(1) => {
                last.last = last.last.max(span.last);
            }
            _ => merged.push(span),
        }
    }
    merged
}

/// `spans` without the addresses of `excludes` (both merged).
fn subtract(spans: Vec<Span>, excludes: &[Span]) -> Vec<Span> {
    let mut out = Vec::with_capacity(spans.len());
    for span in spans {
        let mut rest = Some(span);
        for exclude in excludes.iter().filter(|e| e.v6 == span.v6) {
            let Some(current) = rest else {
                break;
            };
            if exclude.last < current.first || exclude.first > current.last {
                continue;
            }
            if exclude.first > current.first {
                out.push(Span {
                    last: exclude.first - 1,
                    ..current
                });
            }
            rest = (exclude.last < current.last).then(|| Span {
                first: exclude.last + 1,
                ..current
            });
        }
        out.extend(rest);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| (*v).to_owned()).collect()
    }

    fn set(targets: &[&str], excludes: &[&str]) -> AddressSet {
        AddressSet::new(&strings(targets), &strings(excludes)).expect("valid")
    }

    fn listed(set: &AddressSet) -> Vec<String> {
        set.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn ipv4_cidrs_leave_out_network_and_broadcast_like_fping() {
        let s = set(&["10.0.0.0/24"], &[]);
        assert_eq!(s.len(), 254);
        let all = listed(&s);
        assert_eq!(all.first().map(String::as_str), Some("10.0.0.1"));
        assert_eq!(all.last().map(String::as_str), Some("10.0.0.254"));
        assert_eq!(
            listed(&set(&["10.0.0.4/30"], &[])),
            ["10.0.0.5", "10.0.0.6"]
        );
        assert_eq!(
            listed(&set(&["10.0.0.4/31"], &[])),
            ["10.0.0.4", "10.0.0.5"]
        );
        assert_eq!(listed(&set(&["10.0.0.4/32"], &[])), ["10.0.0.4"]);
        assert_eq!(listed(&set(&["10.0.0.4"], &[])), ["10.0.0.4"]);
        // Host bits set: the CIDR's network is meant.
        assert_eq!(set(&["10.0.0.77/24"], &[]), s);
    }

    #[test]
    fn excludes_remove_addresses_and_ranges() {
        let s = set(
            &["10.0.0.0/24"],
            &["10.0.0.1", "10.0.0.128/26", "10.0.1.0/24"],
        );
        assert_eq!(s.len(), 254 - 1 - 64);
        let all = listed(&s);
        assert_eq!(all[0], "10.0.0.2");
        assert!(all.contains(&"10.0.0.127".to_owned()));
        assert!(!all.contains(&"10.0.0.128".to_owned()));
        assert!(!all.contains(&"10.0.0.191".to_owned()));
        assert!(all.contains(&"10.0.0.192".to_owned()));
        // Excluding everything leaves nothing.
        assert_eq!(set(&["10.0.0.0/30"], &["10.0.0.0/24"]).len(), 0);
    }

    #[test]
    fn overlapping_targets_give_each_address_once_in_order() {
        let s = set(
            &["10.0.0.8/29", "10.0.0.0/28", "10.0.0.3", "2001:db8::/126"],
            &[],
        );
        let all = listed(&s);
        // 10.0.0.0/28 keeps .1-.14; the /29 inside it adds nothing new.
        assert_eq!(all.len(), 14 + 4);
        assert_eq!(all[0], "10.0.0.1");
        assert_eq!(all[13], "10.0.0.14");
        assert_eq!(all[14], "2001:db8::");
        assert_eq!(all[17], "2001:db8::3");
        assert_eq!(s.families(), (true, true));
    }

    #[test]
    fn ipv6_excludes_and_families() {
        let s = set(&["2001:db8::/120"], &["2001:db8::/121", "10.0.0.0/8"]);
        assert_eq!(s.len(), 128);
        assert_eq!(listed(&s).first().map(String::as_str), Some("2001:db8::80"));
        assert_eq!(s.families(), (false, true));
    }

    #[test]
    fn a_slash_16_is_the_most_and_is_never_listed_up_front() {
        let s = set(&["10.1.0.0/16"], &[]);
        assert_eq!(s.len(), 65_534);
        assert_eq!(s.spans.len(), 1);
        let two_16s = AddressSet::new(&strings(&["10.1.0.0/16", "10.2.0.0/16"]), &[]);
        assert!(
            matches!(two_16s, Err(TargetError::TooMany { count: 131_068 })),
            "{two_16s:?}"
        );
        let huge = AddressSet::new(&strings(&["2001:db8::/64"]), &[]);
        assert!(matches!(huge, Err(TargetError::TooMany { .. })));
    }

    #[test]
    fn invalid_entries_are_named() {
        let error = AddressSet::new(&strings(&["10.0.0.0/33"]), &[]).expect_err("invalid");
        assert!(
            error.to_string().contains("target \"10.0.0.0/33\""),
            "{error}"
        );
        let error =
            AddressSet::new(&strings(&["10.0.0.0/24"]), &strings(&["nope"])).expect_err("invalid");
        assert!(error.to_string().starts_with("exclude \"nope\""), "{error}");
    }
}
