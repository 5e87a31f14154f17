//! Exact top talkers of a namespace or site over many buckets, from the ranked lists of the
//! site rollups (ADR 25).
//!
//! Adding up every pair of every bucket is exact but reads millions of rows for a day of a
//! large namespace. Each (site, bucket) of `net_flows_site_10m` / `net_flows_site_1h` holds
//! its keys ranked by bytes and by packets, so a query runs Fagin's threshold algorithm:
//!
//! 1. read the head of every list, the keys ranked `depth` or better (sorted access);
//! 2. a key missing from a full head has at most that head's last value there, so no key
//!    missing from every head can total more than the sum of those values (`unseen_max`);
//! 3. the keys that can still reach the top `limit` are looked up in every bucket (random
//!    access) and ranked by their exact totals;
//! 4. the answer is exact once the last of the top `limit` totals more than `unseen_max`;
//!    otherwise the heads are read deeper, and past [`DEPTH_INDEXED`] the range is added
//!    up whole.
//!
//! Traffic is heavy-tailed, so the heads decide after tens of rows per bucket.
use std::collections::HashMap;

use sqlx::{
    Postgres, Row,
    postgres::{PgArguments, PgRow},
    query::Query,
};

use super::query::{
    FlowResolution, Rank, Talker, TalkerFilter, TalkerKey, TalkerQuery, TopTalkers, TrafficPoint,
    TrafficQuery, traffic_point,
};
use super::{HOUR_MS, TEN_MINUTES_MS};
use crate::store::{Store, StoreError};

/// Ranks indexed per list (the partial indexes of `migrations/0013_ranked_site_talkers.sql`).
pub const DEPTH_INDEXED: i64 = 16_384;
/// The first depth read, for the smallest limits: heads come from the index alone, so a
/// deeper first read costs little and saves a second one and many lookups.
const FIRST_DEPTH: i64 = 256;
/// More contenders than this are not looked up one by one: the range is added up whole.
const MAX_CONTENDERS: usize = 50_000;

/// The ranked site lists of one bucket size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SiteLists {
    table: &'static str,
    bucket_ms: i64,
}

impl SiteLists {
    /// The lists a query of `resolution` reads (minutes have none: they are read whole).
    pub fn of(resolution: FlowResolution) -> Option<SiteLists> {
        match resolution {
            FlowResolution::Minute => None,
            FlowResolution::TenMinutes => Some(SiteLists {
                table: "net_flows_site_10m",
                bucket_ms: TEN_MINUTES_MS,
            }),
            FlowResolution::Hour => Some(SiteLists {
                table: "net_flows_site_1h",
                bucket_ms: HOUR_MS,
            }),
        }
    }
}

/// A dimension of the site lists (`dim` of the tables).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dim {
    Total = 0,
    Pairs = 1,
    Sources = 2,
    Destinations = 3,
    Protocols = 4,
    Ports = 5,
}

impl Dim {
    pub fn of_key(key: TalkerKey) -> Dim {
        match key {
            TalkerKey::Pairs => Dim::Pairs,
            TalkerKey::Sources => Dim::Sources,
            TalkerKey::Destinations => Dim::Destinations,
            TalkerKey::Protocols => Dim::Protocols,
            TalkerKey::Ports => Dim::Ports,
        }
    }

    /// The dimension whose keys are exactly what `filter` follows, if one is: a port
    /// without its protocol, or a pair with a protocol, has none.
    pub fn of_filter(filter: &TalkerFilter) -> Option<Dim> {
        match (
            filter.src.is_some(),
            filter.dst.is_some(),
            filter.protocol.is_some(),
            filter.port.is_some(),
        ) {
            (false, false, false, false) => Some(Dim::Total),
            (true, true, false, false) => Some(Dim::Pairs),
            (true, false, false, false) => Some(Dim::Sources),
            (false, true, false, false) => Some(Dim::Destinations),
            (false, false, true, false) => Some(Dim::Protocols),
            (false, false, true, true) => Some(Dim::Ports),
            _ => None,
        }
    }
}

impl Dim {
    /// The key's values from its name `k` (PostgreSQL's text of them, joined by spaces, as
    /// the fold writes it), as a talker with the given sums.
    pub fn talker(self, k: &str, bytes: i64, packets: i64) -> Talker {
        let mut parts = k.split(' ');
        let mut next = || parts.next().map(str::to_owned);
        let proto = |v: Option<String>| v.and_then(|v| v.parse::<i16>().ok());
        let port = |v: Option<String>| v.and_then(|v| v.parse::<i32>().ok());
        let (src, dst, proto, port) = match self {
            Dim::Total => (None, None, None, None),
            Dim::Pairs => (next(), next(), None, None),
            Dim::Sources => (next(), None, None, None),
            Dim::Destinations => (None, next(), None, None),
            Dim::Protocols => (None, None, proto(next()), None),
            Dim::Ports => {
                let p = proto(next());
                (None, None, p, port(next()))
            }
        };
        Talker {
            src,
            dst,
            proto,
            port,
            bytes,
            packets,
        }
    }
}

/// The measure a ranking orders by, then the other one.
fn measures(rank: Rank, bytes: i64, packets: i64) -> (i64, i64) {
    match rank {
        Rank::Bytes => (bytes, packets),
        Rank::Packets => (packets, bytes),
    }
}

/// One entry of a list head: the list's (site, bucket), the key and its measure there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub list: (String, i64),
    pub key: String,
    pub value: i64,
}

/// What the heads of the lists, read to one depth, say about every key.
#[derive(Debug, Default)]
pub struct Heads {
    /// The most a key missing from every head can total.
    unseen_max: i64,
    /// Per key seen: its total over the heads it is in (a lower bound), and the sum of
    /// those heads' last values (so its upper bound is `lower + unseen_max - covered`).
    seen: HashMap<String, (i64, i64)>,
    /// The `limit`-th best lower bound (0 when fewer keys were seen).
    kth_lower: i64,
}

impl Heads {
    /// Reads heads of `depth` entries (fewer: the whole list) for a top `limit` (≥ 1).
    pub fn read(entries: Vec<Listed>, depth: i64, limit: usize) -> Heads {
        let mut lists: HashMap<&(String, i64), (i64, i64)> = HashMap::new();
        for e in &entries {
            let (count, last) = lists.entry(&e.list).or_insert((0, i64::MAX));
            *count += 1;
            *last = (*last).min(e.value);
        }
        // Each list's last value; a list read whole hides nothing.
        let bounds: HashMap<(String, i64), i64> = lists
            .into_iter()
            .map(|(list, (count, last))| (list.clone(), if count >= depth { last } else { 0 }))
            .collect();
        let unseen_max = bounds.values().sum();
        let mut seen: HashMap<String, (i64, i64)> = HashMap::new();
        for e in entries {
            let covered = bounds.get(&e.list).copied().unwrap_or(0);
            let (lower, covers) = seen.entry(e.key).or_default();
            *lower += e.value;
            *covers += covered;
        }
        let mut lowers: Vec<i64> = seen.values().map(|(lower, _)| *lower).collect();
        let kth_lower = if limit == 0 || lowers.len() < limit {
            0
        } else {
            *lowers.select_nth_unstable_by(limit - 1, |a, b| b.cmp(a)).1
        };
        Heads {
            unseen_max,
            seen,
            kth_lower,
        }
    }

    /// Whether the top `limit` are among the keys seen: the `limit`-th best lower bound
    /// exceeds what an unseen key can total (an equal one might win on the other measure).
    pub fn settled(&self) -> bool {
        self.unseen_max == 0 || self.kth_lower > self.unseen_max
    }

    /// The keys whose upper bound reaches the `limit`-th best lower bound (only they can be
    /// in the top `limit`), with that bound, highest first.
    pub fn contenders(&self) -> Vec<(String, i64)> {
        let kth = self.kth_lower;
        let mut contenders: Vec<(String, i64)> = self
            .seen
            .iter()
            .map(|(key, (lower, covered))| (key.clone(), lower + self.unseen_max - covered))
            .filter(|(_, upper)| *upper >= kth)
            .collect();
        contenders.sort_by_key(|(_, upper)| std::cmp::Reverse(*upper));
        contenders
    }

    /// The top `limit` of the contenders' exact totals, if they are the top of every key.
    pub fn winners(&self, mut exact: Vec<Talker>, rank: Rank, limit: usize) -> Option<Vec<Talker>> {
        exact.sort_by_key(|t| std::cmp::Reverse(measures(rank, t.bytes, t.packets)));
        exact.truncate(limit);
        let decided = match exact.last() {
            _ if self.unseen_max == 0 => true,
            Some(last) if exact.len() == limit => {
                measures(rank, last.bytes, last.packets).0 > self.unseen_max
            }
            _ => false,
        };
        decided.then_some(exact)
    }
}

/// Which contenders to look up, in batches, highest upper bound first: once the `limit`-th
/// exact total found so far exceeds the upper bound of every contender left, none of them
/// can win, so the true winners (with high bounds) are found after few lookups.
#[derive(Debug)]
pub struct Verify {
    limit: usize,
    next: usize,
    batch: usize,
}

impl Verify {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            next: 0,
            batch: (2 * limit).max(32),
        }
    }

    /// The next keys of `contenders` (as [`Heads::contenders`] orders them) to look up,
    /// given the totals `exact` found so far; `None` when no more can win.
    pub fn next<'c>(
        &mut self,
        contenders: &'c [(String, i64)],
        exact: &[Talker],
        rank: Rank,
    ) -> Option<&'c [(String, i64)]> {
        let left = contenders.get(self.next..).filter(|l| !l.is_empty())?;
        if exact.len() >= self.limit {
            let mut found: Vec<i64> = exact
                .iter()
                .map(|t| measures(rank, t.bytes, t.packets).0)
                .collect();
            let (_, kth, _) = found.select_nth_unstable_by(self.limit - 1, |a, b| b.cmp(a));
            // An equal bound might still win on the other measure.
            if left[0].1 < *kth {
                return None;
            }
        }
        let batch = &left[..self.batch.min(left.len())];
        self.next += batch.len();
        self.batch *= 2;
        Some(batch)
    }
}

/// SQL for "in the namespace `$1`, dimension `$2`, site `$3` (`NULL`: any) and buckets in
/// `[$4, $5)`" of the site lists (bound by [`ListScope::query`]).
macro_rules! in_lists {
    () => {
        concat!(
            "namespace = $1 AND dim = $2 AND ($3::text IS NULL OR site = $3) AND bucket >= ",
            at_ms!(4),
            " AND bucket < ",
            at_ms!(5)
        )
    };
}

/// The lists one query reads: a dimension of a namespace (or site) over a range.
#[derive(Debug, Clone, Copy)]
struct ListScope<'a> {
    lists: SiteLists,
    namespace: &'a str,
    dim: Dim,
    site: Option<&'a str>,
    range: (i64, i64),
}

impl<'a> ListScope<'a> {
    /// `sql` (built from this module's constants only) with `$1` to `$5` bound.
    fn query(&self, sql: String) -> Query<'a, Postgres, PgArguments> {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(self.namespace)
            .bind(self.dim as i16)
            .bind(self.site)
            .bind(self.range.0)
            .bind(self.range.1)
    }

    /// Rows of `k, bytes, packets` as talkers of the dimension.
    fn talkers(&self, rows: &[PgRow]) -> Vec<Talker> {
        rows.iter()
            .map(|r| self.dim.talker(r.get(0), r.get(1), r.get(2)))
            .collect()
    }
}

impl Store {
    /// The top talkers of a namespace (or site) from the ranked lists of `lists`: exact,
    /// as [`Store::top_talkers`] is over the exporter rollups.
    #[tracing::instrument(skip(self, q), fields(key = ?q.key, rank = ?q.rank))]
    pub(super) async fn ranked_top_talkers(
        &self,
        lists: SiteLists,
        namespace: &str,
        site: Option<&str>,
        q: &TalkerQuery,
    ) -> Result<TopTalkers, StoreError> {
        let scope = ListScope {
            lists,
            namespace,
            dim: Dim::Total,
            site,
            range: (q.from_ms, q.to_ms),
        };
        let (total_bytes, total_packets): (i64, i64) = {
            let sql = format!(
                "SELECT COALESCE(sum(bytes), 0)::int8, COALESCE(sum(packets), 0)::int8
                 FROM {} WHERE {} AND k = ''",
                lists.table,
                in_lists!()
            );
            let row = scope
                .query(sql)
                .fetch_one(&self.pool)
                .await
                .map_err(StoreError::query("add up site flow totals"))?;
            (row.get(0), row.get(1))
        };
        let scope = ListScope {
            dim: Dim::of_key(q.key),
            ..scope
        };
        let limit = usize::try_from(q.limit).unwrap_or(0);
        let mut depth = (8 * q.limit).clamp(FIRST_DEPTH, DEPTH_INDEXED);
        let items = loop {
            let entries = self.list_heads(scope, q.rank, depth).await?;
            let heads = Heads::read(entries, depth, limit);
            if !heads.settled() && depth < DEPTH_INDEXED {
                depth = (depth * 4).min(DEPTH_INDEXED);
                continue;
            }
            let contenders = heads.contenders();
            if contenders.len() <= MAX_CONTENDERS {
                let mut exact = Vec::new();
                let mut verify = Verify::new(limit);
                while let Some(keys) = verify.next(&contenders, &exact, q.rank) {
                    exact.extend(self.list_sums(scope, keys).await?);
                }
                if let Some(items) = heads.winners(exact, q.rank, limit) {
                    break items;
                }
            }
            tracing::debug!(depth, "list heads undecided, adding up the range");
            break self.list_whole(scope, q.rank, q.limit).await?;
        };
        Ok(TopTalkers {
            items,
            total_bytes,
            total_packets,
        })
    }

    /// The entries ranked `depth` or better of every list in the range.
    async fn list_heads(
        &self,
        scope: ListScope<'_>,
        rank: Rank,
        depth: i64,
    ) -> Result<Vec<Listed>, StoreError> {
        let rank_column = match rank {
            Rank::Bytes => "rank_bytes",
            Rank::Packets => "rank_packets",
        };
        // One index range per bucket: PostgreSQL 15 cannot skip through (bucket, rank).
        // The constant bound lets the planner use the partial index.
        let sql = format!(
            "SELECT l.site, b.at, l.k, l.bytes, l.packets
             FROM generate_series($4::int8, $5::int8 - 1, $6::int8) AS b(at),
             LATERAL (SELECT site, k, bytes, packets FROM {table}
                      WHERE namespace = $1 AND dim = $2 AND ($3::text IS NULL OR site = $3)
                        AND bucket = 'epoch'::timestamptz + b.at * interval '1 millisecond'
                        AND {rank_column} <= $7 AND {rank_column} <= {DEPTH_INDEXED}) l",
            table = scope.lists.table,
        );
        let rows = scope
            .query(sql)
            .bind(scope.lists.bucket_ms)
            .bind(depth)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query("read the heads of site talker lists"))?;
        Ok(rows
            .iter()
            .map(|r| Listed {
                list: (r.get(0), r.get(1)),
                key: r.get(2),
                value: measures(rank, r.get(3), r.get(4)).0,
            })
            .collect())
    }

    /// The exact totals of `keys` over the range.
    async fn list_sums(
        &self,
        scope: ListScope<'_>,
        keys: &[(String, i64)],
    ) -> Result<Vec<Talker>, StoreError> {
        let keys: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
        let sql = format!(
            "SELECT k, sum(bytes)::int8, sum(packets)::int8
             FROM {} WHERE {} AND k = ANY($6) GROUP BY k",
            scope.lists.table,
            in_lists!()
        );
        let rows = scope
            .query(sql)
            .bind(&keys)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query("add up site talkers"))?;
        Ok(scope.talkers(&rows))
    }

    /// The top `limit` over the range, every key added up (the heads did not decide).
    async fn list_whole(
        &self,
        scope: ListScope<'_>,
        rank: Rank,
        limit: i64,
    ) -> Result<Vec<Talker>, StoreError> {
        let order = match rank {
            Rank::Bytes => "2 DESC, 3 DESC",
            Rank::Packets => "3 DESC, 2 DESC",
        };
        let sql = format!(
            "SELECT k, sum(bytes)::int8, sum(packets)::int8
             FROM {} WHERE {} GROUP BY k ORDER BY {order} LIMIT $6",
            scope.lists.table,
            in_lists!()
        );
        let rows = scope
            .query(sql)
            .bind(limit)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query("add up every site talker"))?;
        Ok(scope.talkers(&rows))
    }

    /// Traffic of one key of `dim` (the filter's) by step, from the site lists.
    #[tracing::instrument(skip(self, q))]
    pub(super) async fn ranked_traffic_points(
        &self,
        lists: SiteLists,
        dim: Dim,
        namespace: &str,
        site: Option<&str>,
        q: &TrafficQuery,
    ) -> Result<Vec<TrafficPoint>, StoreError> {
        let scope = ListScope {
            lists,
            namespace,
            dim,
            site,
            range: (q.from_ms, q.to_ms),
        };
        // The key is named by PostgreSQL's own text of the values, as the fold names it.
        let sql = format!(
            "SELECT ((extract(epoch FROM bucket) * 1000)::int8 / $6) * $6 AS step,
                    sum(b)::int8, sum(p)::int8, max(b)::int8, min(b)::int8
             FROM (SELECT bucket, sum(bytes) AS b, sum(packets) AS p FROM {}
                   WHERE {} AND k = concat_ws(' ', host($7::text::inet), host($8::text::inet), $9::int2, $10::int4)
                   GROUP BY bucket) buckets
             GROUP BY 1 ORDER BY 1",
            lists.table,
            in_lists!()
        );
        let t = &q.talker;
        let rows = scope
            .query(sql)
            .bind(q.step_ms)
            .bind(t.src.map(|ip| ip.to_string()))
            .bind(t.dst.map(|ip| ip.to_string()))
            .bind(t.protocol.map(i16::from))
            .bind(t.port.map(i32::from))
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query("read site traffic by step"))?;
        Ok(rows.iter().map(traffic_point).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift), so failures repeat.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    /// Lists of `buckets` buckets over `keys` keys, heavy-tailed or flat, each sorted by
    /// bytes as the fold ranks them.
    fn lists(rng: &mut Rng, buckets: i64, keys: usize, heavy: bool) -> Vec<Vec<Talker>> {
        let mut lists = Vec::new();
        for _ in 0..buckets {
            let mut list = Vec::new();
            for k in 0..keys {
                if rng.next().is_multiple_of(4) {
                    continue;
                }
                let base = if heavy {
                    1_000_000_000 / (k as i64 + 1)
                } else {
                    1_000_000
                };
                let bytes = base / 2 + (rng.next() % (base as u64)) as i64;
                list.push(Talker {
                    src: Some(format!("10.0.0.{k}")),
                    dst: None,
                    proto: None,
                    port: None,
                    bytes,
                    packets: bytes / 1000 + 1,
                });
            }
            list.sort_by_key(|t: &Talker| std::cmp::Reverse((t.bytes, t.packets)));
            lists.push(list);
        }
        lists
    }

    /// The algorithm of `ranked_top_talkers` over lists in memory.
    fn ranked(lists: &[Vec<Talker>], limit: usize) -> Option<Vec<Talker>> {
        let mut depth = (4 * limit as i64).max(FIRST_DEPTH);
        loop {
            let entries: Vec<Listed> = lists
                .iter()
                .enumerate()
                .flat_map(|(b, list)| {
                    list.iter().take(depth as usize).map(move |t| Listed {
                        list: (String::new(), b as i64),
                        key: t.src.clone().unwrap_or_default(),
                        value: t.bytes,
                    })
                })
                .collect();
            let heads = Heads::read(entries, depth, limit);
            if !heads.settled() && depth < DEPTH_INDEXED {
                depth = (depth * 4).min(DEPTH_INDEXED);
                continue;
            }
            let contenders = heads.contenders();
            let all = whole(lists);
            let mut exact: Vec<Talker> = Vec::new();
            let mut verify = Verify::new(limit);
            while let Some(keys) = verify.next(&contenders, &exact, Rank::Bytes) {
                exact.extend(
                    all.iter()
                        .filter(|t| keys.iter().any(|(k, _)| Some(k) == t.src.as_ref()))
                        .cloned(),
                );
            }
            return heads.winners(exact, Rank::Bytes, limit);
        }
    }

    /// Every key added up, best first.
    fn whole(lists: &[Vec<Talker>]) -> Vec<Talker> {
        let mut sums: HashMap<String, Talker> = HashMap::new();
        for t in lists.iter().flatten() {
            let sum = sums
                .entry(t.src.clone().unwrap_or_default())
                .or_insert_with(|| Talker {
                    bytes: 0,
                    packets: 0,
                    ..t.clone()
                });
            sum.bytes += t.bytes;
            sum.packets += t.packets;
        }
        let mut all: Vec<Talker> = sums.into_values().collect();
        all.sort_by_key(|t| std::cmp::Reverse((t.bytes, t.packets)));
        all
    }

    #[test]
    fn heads_find_the_exact_top_of_heavy_tailed_lists() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        for (buckets, keys, limit) in [(24, 5_000, 10), (144, 2_000, 100), (6, 300, 25)] {
            let lists = lists(&mut rng, buckets, keys, true);
            let top = ranked(&lists, limit).expect("heavy-tailed heads decide");
            let expected: Vec<Talker> = whole(&lists).into_iter().take(limit).collect();
            assert_eq!(
                top, expected,
                "{buckets} buckets of {keys} keys, top {limit}"
            );
        }
    }

    #[test]
    fn flat_lists_are_decided_deeper_or_handed_to_the_whole_sum() {
        let mut rng = Rng(7);
        let lists = lists(&mut rng, 24, 3_000, false);
        if let Some(top) = ranked(&lists, 10) {
            let expected: Vec<Talker> = whole(&lists).into_iter().take(10).collect();
            assert_eq!(top, expected);
        }
    }

    #[test]
    fn short_lists_are_read_whole() {
        let entries = vec![
            Listed {
                list: ("a".into(), 0),
                key: "x".into(),
                value: 5,
            },
            Listed {
                list: ("b".into(), 0),
                key: "y".into(),
                value: 3,
            },
        ];
        let heads = Heads::read(entries, 64, 10);
        assert!(
            heads.settled(),
            "a list shorter than the depth hides nothing"
        );
        assert_eq!(
            heads.contenders(),
            [("x".to_owned(), 5), ("y".to_owned(), 3)]
        );
    }

    #[test]
    fn key_names_read_back_as_talkers() {
        let pair = Dim::Pairs.talker("10.0.0.1 2001:db8::1", 5, 1);
        assert_eq!(
            (pair.src.as_deref(), pair.dst.as_deref(), pair.bytes),
            (Some("10.0.0.1"), Some("2001:db8::1"), 5)
        );
        let port = Dim::Ports.talker("6 443", 1, 1);
        assert_eq!(
            (port.proto, port.port, port.src),
            (Some(6), Some(443), None)
        );
        assert_eq!(
            Dim::Destinations.talker("10.0.0.9", 1, 1).dst.as_deref(),
            Some("10.0.0.9")
        );
        assert_eq!(Dim::Protocols.talker("17", 1, 1).proto, Some(17));
    }

    #[test]
    fn filters_map_to_the_dimension_that_keys_them() {
        let ip = Some("10.0.0.1".parse().expect("address"));
        let f = |src, dst, protocol, port| TalkerFilter {
            src,
            dst,
            protocol,
            port,
        };
        assert_eq!(Dim::of_filter(&f(None, None, None, None)), Some(Dim::Total));
        assert_eq!(Dim::of_filter(&f(ip, ip, None, None)), Some(Dim::Pairs));
        assert_eq!(
            Dim::of_filter(&f(None, None, Some(6), Some(443))),
            Some(Dim::Ports)
        );
        assert_eq!(Dim::of_filter(&f(None, None, None, Some(443))), None);
        assert_eq!(Dim::of_filter(&f(ip, None, Some(6), None)), None);
    }
}
