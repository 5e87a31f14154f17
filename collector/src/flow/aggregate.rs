//! Per-minute aggregation of flow records into [`FlowGroup`]s.
//!
//! Records are grouped by (minute, exporter, in_if, out_if) and, inside a group, summed
//! by five-tuple (src, dst, proto, src port, dst port). When a minute is flushed each group
//! keeps its top N five-tuples by bytes with their ports, and sums every other five-tuple
//! under its host pair and protocol: hosts stay exact, only ports fold (ADR 22).
//!
//! Memory is bounded whatever the input: a group tracks at most `key_cap` five-tuples and
//! all groups together at most `max_keys`; past either, a new five-tuple is summed under its
//! host pair straight away, and all groups together track at most `max_hosts` such pairs
//! (past that, the traffic counts only in the group's `other`). At most `max_groups` groups
//! are open (past that, records of new groups are refused and counted by the caller).
use std::{
    collections::HashMap,
    hash::{Hash, Hasher},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use cdot_crds::wire::collector::{Counts, FlowCount, FlowGroup, HostCount};
use foldhash::fast::RandomState;

use super::record::FlowRecord;

/// Length of an aggregation interval.
pub const MINUTE_MS: i64 = 60_000;

/// Start of the minute `unix_ms` falls in.
pub fn minute_of(unix_ms: i64) -> i64 {
    unix_ms - unix_ms.rem_euclid(MINUTE_MS)
}

/// Limits of an [`Aggregator`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Five-tuples kept with their ports per group at flush; the rest is summed by host pair.
    pub top_n: usize,
    /// Distinct five-tuples one group tracks.
    pub key_cap: usize,
    /// Distinct five-tuples all open groups track together.
    pub max_keys: usize,
    /// Host pairs all open groups track for five-tuples past `key_cap` or `max_keys`.
    pub max_hosts: usize,
    /// Open groups (minute × exporter × interface pair).
    pub max_groups: usize,
}

/// What became of one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Added {
    /// Counted under its own five-tuple.
    Key,
    /// Counted under its host pair because a five-tuple limit was reached.
    Host,
    /// Counted in its group's `other` because the host pair limit was reached too.
    Other,
    /// Not counted: it would have opened a group past `max_groups`.
    Refused,
}

/// An address as 128 bits plus its family, cheap to hash and compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Addr {
    bits: u128,
    v6: bool,
}

impl From<IpAddr> for Addr {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self {
                bits: u128::from(u32::from(v4)),
                v6: false,
            },
            IpAddr::V6(v6) => Self {
                bits: u128::from(v6),
                v6: true,
            },
        }
    }
}

impl From<Addr> for IpAddr {
    fn from(addr: Addr) -> Self {
        if addr.v6 {
            IpAddr::V6(Ipv6Addr::from(addr.bits))
        } else {
            // Only ever built from a u32 above, so the cast keeps every bit.
            IpAddr::V4(Ipv4Addr::from(addr.bits as u32))
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct GroupKey {
    minute_ms: i64,
    exporter: Addr,
    in_if: u32,
    out_if: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FlowKey {
    src: Addr,
    dst: Addr,
    proto: u8,
    sp: u16,
    dp: u16,
}

// Hand-written so that a key hashes as three integers instead of field by field.
impl Hash for FlowKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u128(self.src.bits);
        state.write_u128(self.dst.bits);
        state.write_u64(
            u64::from(self.sp)
                | u64::from(self.dp) << 16
                | u64::from(self.proto) << 32
                | u64::from(self.src.v6) << 40
                | u64::from(self.dst.v6) << 41,
        );
    }
}

/// A host pair and protocol: what a five-tuple folds into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct HostKey {
    src: Addr,
    dst: Addr,
    proto: u8,
}

impl Hash for HostKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u128(self.src.bits);
        state.write_u128(self.dst.bits);
        state.write_u32(
            u32::from(self.proto) | u32::from(self.src.v6) << 8 | u32::from(self.dst.v6) << 9,
        );
    }
}

impl From<FlowKey> for HostKey {
    fn from(k: FlowKey) -> Self {
        Self {
            src: k.src,
            dst: k.dst,
            proto: k.proto,
        }
    }
}

impl Hash for GroupKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_i64(self.minute_ms);
        state.write_u128(self.exporter.bits);
        state.write_u64(u64::from(self.in_if) | u64::from(self.out_if) << 32);
        state.write_u8(u8::from(self.exporter.v6));
    }
}

struct Group {
    key: GroupKey,
    flows: HashMap<FlowKey, Counts, RandomState>,
    hosts: HashMap<HostKey, Counts, RandomState>,
    other: Counts,
}

fn add_counts(counts: &mut Counts, bytes: u64, packets: u64) {
    counts.b = counts.b.saturating_add(bytes);
    counts.p = counts.p.saturating_add(packets);
    counts.f = counts.f.saturating_add(1);
}

fn merge_counts(counts: &mut Counts, more: Counts) {
    counts.b = counts.b.saturating_add(more.b);
    counts.p = counts.p.saturating_add(more.p);
    counts.f = counts.f.saturating_add(more.f);
}

/// Sums flow records per minute and interface pair; one per receiving thread.
pub struct Aggregator {
    limits: Limits,
    groups: Vec<Group>,
    index: HashMap<GroupKey, usize, RandomState>,
    keys: usize,
    hosts: usize,
    /// Recently used groups by a cheap slot of their interfaces: a datagram's records
    /// come from a handful of interface pairs, and this saves hashing the group key.
    recent: [Option<(GroupKey, usize)>; RECENT],
    hasher: RandomState,
}

/// Slots of [`Aggregator::recent`] (a power of two).
const RECENT: usize = 16;

fn recent_slot(key: &GroupKey) -> usize {
    let mix = key.in_if.wrapping_mul(0x9e37_79b9)
        ^ key.out_if.wrapping_mul(0x85eb_ca6b)
        ^ (key.exporter.bits as u32);
    (mix >> 28) as usize % RECENT
}

impl Aggregator {
    pub fn new(limits: Limits) -> Self {
        let hasher = RandomState::default();
        Self {
            limits,
            groups: Vec::new(),
            index: HashMap::with_hasher(hasher.clone()),
            keys: 0,
            hosts: 0,
            recent: [None; RECENT],
            hasher,
        }
    }

    /// Counts `record` in the minute starting at `minute_ms`.
    pub fn add(&mut self, minute_ms: i64, record: &FlowRecord) -> Added {
        let key = GroupKey {
            minute_ms,
            exporter: record.exporter.into(),
            in_if: record.in_if,
            out_if: record.out_if,
        };
        let Some(at) = self.group_index(key) else {
            return Added::Refused;
        };
        let flow = FlowKey {
            src: record.src.into(),
            dst: record.dst.into(),
            proto: record.proto,
            sp: record.src_port,
            dp: record.dst_port,
        };
        let group = &mut self.groups[at];
        if let Some(counts) = group.flows.get_mut(&flow) {
            add_counts(counts, record.bytes, record.packets);
            return Added::Key;
        }
        if group.flows.len() < self.limits.key_cap && self.keys < self.limits.max_keys {
            let mut counts = Counts::default();
            add_counts(&mut counts, record.bytes, record.packets);
            group.flows.insert(flow, counts);
            self.keys += 1;
            return Added::Key;
        }
        let host = HostKey::from(flow);
        if let Some(counts) = group.hosts.get_mut(&host) {
            add_counts(counts, record.bytes, record.packets);
            return Added::Host;
        }
        if self.hosts < self.limits.max_hosts {
            let mut counts = Counts::default();
            add_counts(&mut counts, record.bytes, record.packets);
            group.hosts.insert(host, counts);
            self.hosts += 1;
            return Added::Host;
        }
        add_counts(&mut group.other, record.bytes, record.packets);
        Added::Other
    }

    fn group_index(&mut self, key: GroupKey) -> Option<usize> {
        let slot = recent_slot(&key);
        if let Some((recent, at)) = self.recent[slot]
            && recent == key
        {
            return Some(at);
        }
        let at = match self.index.get(&key) {
            Some(&at) => at,
            None if self.groups.len() >= self.limits.max_groups => return None,
            None => {
                self.groups.push(Group {
                    key,
                    flows: HashMap::with_hasher(self.hasher.clone()),
                    hosts: HashMap::with_hasher(self.hasher.clone()),
                    other: Counts::default(),
                });
                let at = self.groups.len() - 1;
                self.index.insert(key, at);
                at
            }
        };
        self.recent[slot] = Some((key, at));
        Some(at)
    }

    /// Number of open groups.
    pub fn groups(&self) -> usize {
        self.groups.len()
    }

    /// Start of the oldest open minute, if any.
    pub fn oldest_minute(&self) -> Option<i64> {
        self.groups.iter().map(|g| g.key.minute_ms).min()
    }

    /// Takes every group of a minute that started before `before_ms`.
    pub fn flush_before(&mut self, before_ms: i64) -> Vec<FlowGroup> {
        if self
            .oldest_minute()
            .is_none_or(|oldest| oldest >= before_ms)
        {
            return Vec::new();
        }
        let (closed, open): (Vec<Group>, Vec<Group>) = std::mem::take(&mut self.groups)
            .into_iter()
            .partition(|g| g.key.minute_ms < before_ms);
        self.groups = open;
        self.index.clear();
        self.keys = 0;
        self.hosts = 0;
        for (at, group) in self.groups.iter().enumerate() {
            self.index.insert(group.key, at);
            self.keys += group.flows.len();
            self.hosts += group.hosts.len();
        }
        self.recent = [None; RECENT];
        closed
            .into_iter()
            .flat_map(|g| finish(g, self.limits.top_n))
            .collect()
    }

    /// Takes every open group (at shutdown).
    pub fn flush_all(&mut self) -> Vec<FlowGroup> {
        self.flush_before(i64::MAX)
    }
}

/// Rows of one shipped piece of a group: a minute with tens of thousands of host pairs
/// would otherwise exceed the operator's body limit in one item.
pub const PIECE_ROWS: usize = 10_000;

/// Keeps the top `top_n` five-tuples by bytes and sums the rest under their host pairs,
/// in pieces of at most [`PIECE_ROWS`] rows (the first carries `other`).
fn finish(group: Group, top_n: usize) -> Vec<FlowGroup> {
    let order = |a: &(FlowKey, Counts), b: &(FlowKey, Counts)| {
        (b.1.b, b.1.p, b.1.f)
            .cmp(&(a.1.b, a.1.p, a.1.f))
            .then_with(|| {
                let key = |k: &FlowKey| {
                    (
                        IpAddr::from(k.src),
                        IpAddr::from(k.dst),
                        k.proto,
                        k.sp,
                        k.dp,
                    )
                };
                key(&a.0).cmp(&key(&b.0))
            })
    };
    let mut flows: Vec<(FlowKey, Counts)> = group.flows.into_iter().collect();
    let mut hosts = group.hosts;
    if flows.len() > top_n {
        if top_n > 0 {
            flows.select_nth_unstable_by(top_n - 1, order);
        }
        for (key, counts) in flows.drain(top_n..) {
            merge_counts(hosts.entry(HostKey::from(key)).or_default(), counts);
        }
    }
    flows.sort_unstable_by(order);
    let mut hosts: Vec<HostCount> = hosts
        .into_iter()
        .map(|(k, c)| HostCount {
            src: k.src.into(),
            dst: k.dst.into(),
            proto: k.proto,
            b: c.b,
            p: c.p,
            f: c.f,
        })
        .collect();
    hosts.sort_unstable_by(|a, b| {
        (b.b, b.p, b.f)
            .cmp(&(a.b, a.p, a.f))
            .then_with(|| (a.src, a.dst, a.proto).cmp(&(b.src, b.dst, b.proto)))
    });
    let mut top = flows.into_iter().map(|(k, c)| FlowCount {
        src: k.src.into(),
        dst: k.dst.into(),
        proto: k.proto,
        sp: k.sp,
        dp: k.dp,
        b: c.b,
        p: c.p,
        f: c.f,
    });
    let mut hosts = hosts.into_iter();
    let mut pieces = Vec::new();
    let mut other = group.other;
    loop {
        let top: Vec<FlowCount> = top.by_ref().take(PIECE_ROWS).collect();
        let hosts: Vec<HostCount> = hosts.by_ref().take(PIECE_ROWS - top.len()).collect();
        if !pieces.is_empty() && top.is_empty() && hosts.is_empty() {
            return pieces;
        }
        pieces.push(FlowGroup {
            minute_ms: group.key.minute_ms,
            exporter: group.key.exporter.into(),
            in_if: group.key.in_if,
            out_if: group.key.out_if,
            top,
            hosts,
            other: std::mem::take(&mut other),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        top_n: 1000,
        key_cap: 10_000,
        max_keys: 100_000,
        max_hosts: 100_000,
        max_groups: 100,
    };

    fn record(src: u8, bytes: u64) -> FlowRecord {
        FlowRecord {
            exporter: IpAddr::from([192, 0, 2, 1]),
            in_if: 1,
            out_if: 2,
            src: IpAddr::from([10, 0, 0, src]),
            dst: "2001:db8::1".parse().expect("ip"),
            proto: 6,
            src_port: 1000,
            dst_port: 443,
            bytes,
            packets: 1,
        }
    }

    #[test]
    fn minutes_start_on_the_minute() {
        assert_eq!(minute_of(1_764_064_859_999), 1_764_064_800_000);
        assert_eq!(minute_of(1_764_064_860_000), 1_764_064_860_000);
        assert_eq!(minute_of(-1), -60_000);
    }

    #[test]
    fn same_keys_sum_and_groups_split_by_minute_and_interfaces() {
        let mut agg = Aggregator::new(LIMITS);
        assert_eq!(agg.add(0, &record(1, 100)), Added::Key);
        assert_eq!(agg.add(0, &record(1, 50)), Added::Key);
        assert_eq!(agg.add(60_000, &record(1, 7)), Added::Key);
        let mut other_if = record(1, 9);
        other_if.out_if = 3;
        agg.add(0, &other_if);
        assert_eq!(agg.groups(), 3);
        let groups = agg.flush_before(60_000);
        assert_eq!(groups.len(), 2);
        let main = groups.iter().find(|g| g.out_if == 2).expect("group");
        assert_eq!((main.minute_ms, main.in_if), (0, 1));
        assert_eq!(main.exporter, IpAddr::from([192, 0, 2, 1]));
        assert_eq!(main.top.len(), 1);
        assert_eq!((main.top[0].b, main.top[0].p, main.top[0].f), (150, 2, 2));
        assert_eq!(main.top[0].src, IpAddr::from([10, 0, 0, 1]));
        assert_eq!(
            main.top[0].dst,
            "2001:db8::1".parse::<IpAddr>().expect("ip")
        );
        assert_eq!(
            (main.top[0].proto, main.top[0].sp, main.top[0].dp),
            (6, 1000, 443)
        );
        assert!(main.other.is_zero());
        // The next minute is still open, and is flushed later.
        assert_eq!(agg.groups(), 1);
        assert!(agg.flush_before(60_000).is_empty());
        let later = agg.flush_all();
        assert_eq!(later[0].minute_ms, 60_000);
        assert_eq!(agg.groups(), 0);
    }

    #[test]
    fn top_n_keeps_the_largest_with_ports_and_sums_the_rest_by_host_pair() {
        let mut agg = Aggregator::new(Limits { top_n: 3, ..LIMITS });
        for src in 1..=10u8 {
            agg.add(0, &record(src, u64::from(src) * 10));
            // The same hosts on another port: folds into the pair unless in the top.
            let mut again = record(src, 1);
            again.src_port = 2000;
            agg.add(0, &again);
        }
        let group = &agg.flush_all()[0];
        let bytes: Vec<u64> = group.top.iter().map(|c| c.b).collect();
        assert_eq!(bytes, vec![100, 90, 80]);
        let hosts: Vec<(IpAddr, u64, u64)> =
            group.hosts.iter().map(|h| (h.src, h.b, h.f)).collect();
        let mut expected: Vec<(IpAddr, u64, u64)> = (1..=7u8)
            .rev()
            .map(|src| (IpAddr::from([10, 0, 0, src]), u64::from(src) * 10 + 1, 2))
            .collect();
        // Ties in address order.
        expected.extend((8..=10u8).map(|src| (IpAddr::from([10, 0, 0, src]), 1, 1)));
        assert_eq!(hosts, expected);
        assert!(group.other.is_zero());
        let mut agg = Aggregator::new(Limits { top_n: 0, ..LIMITS });
        agg.add(0, &record(1, 5));
        let group = &agg.flush_all()[0];
        assert!(group.top.is_empty());
        assert_eq!((group.hosts[0].b, group.hosts[0].p), (5, 1));
    }

    #[test]
    fn past_the_key_cap_new_five_tuples_count_under_their_hosts_then_in_other() {
        let mut agg = Aggregator::new(Limits {
            key_cap: 2,
            max_hosts: 1,
            ..LIMITS
        });
        assert_eq!(agg.add(0, &record(1, 10)), Added::Key);
        assert_eq!(agg.add(0, &record(2, 10)), Added::Key);
        assert_eq!(agg.add(0, &record(3, 1000)), Added::Host);
        let mut other_port = record(3, 5);
        other_port.dst_port = 80;
        assert_eq!(agg.add(0, &other_port), Added::Host);
        assert_eq!(agg.add(0, &record(4, 7)), Added::Other);
        assert_eq!(agg.add(0, &record(1, 10)), Added::Key);
        let group = &agg.flush_all()[0];
        assert_eq!(group.top.len(), 2);
        assert_eq!(group.top[0].b, 20);
        assert_eq!(
            (group.hosts.len(), group.hosts[0].b, group.hosts[0].f),
            (1, 1005, 2)
        );
        assert_eq!(group.other, Counts { b: 7, p: 1, f: 1 });
    }

    #[test]
    fn a_minute_of_many_host_pairs_ships_in_pieces_that_add_up() {
        let mut agg = Aggregator::new(Limits {
            key_cap: 1_000,
            ..LIMITS
        });
        let mut total = 0;
        for i in 0..25_000u32 {
            let mut r = record(0, u64::from(i % 97) + 1);
            r.src = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            total += r.bytes;
            agg.add(0, &r);
        }
        let pieces = agg.flush_all();
        assert_eq!(pieces.len(), 3);
        assert!(pieces.iter().all(|p| p.rows() <= PIECE_ROWS + 1));
        let pairs: std::collections::HashSet<IpAddr> = pieces
            .iter()
            .flat_map(|p| {
                p.top
                    .iter()
                    .map(|c| c.src)
                    .chain(p.hosts.iter().map(|h| h.src))
            })
            .collect();
        assert_eq!(pairs.len(), 25_000, "every host pair is kept");
        let bytes: u64 = pieces
            .iter()
            .flat_map(|p| p.top.iter().map(|c| c.b).chain(p.hosts.iter().map(|h| h.b)))
            .sum();
        assert_eq!(bytes, total);
    }

    #[test]
    fn total_key_and_group_limits_bound_memory() {
        let mut agg = Aggregator::new(Limits {
            max_keys: 2,
            max_hosts: 1,
            max_groups: 2,
            ..LIMITS
        });
        assert_eq!(agg.add(0, &record(1, 1)), Added::Key);
        let mut second = record(2, 1);
        second.in_if = 9;
        assert_eq!(agg.add(0, &second), Added::Key);
        assert_eq!(agg.add(0, &record(3, 1)), Added::Host);
        assert_eq!(agg.add(0, &record(4, 1)), Added::Other);
        assert_eq!(agg.add(60_000, &record(1, 1)), Added::Refused);
        // Flushing frees the budget.
        assert_eq!(agg.flush_all().len(), 2);
        assert_eq!(agg.add(60_000, &record(1, 1)), Added::Key);
    }

    #[test]
    fn counts_saturate_instead_of_overflowing() {
        let mut agg = Aggregator::new(LIMITS);
        agg.add(0, &record(1, u64::MAX));
        agg.add(0, &record(1, u64::MAX));
        assert_eq!(agg.flush_all()[0].top[0].b, u64::MAX);
    }
}
