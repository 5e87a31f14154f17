//! Reads of network data for the query API: what is in scope (dictionaries), then the
//! numbers from the rollups (never from raw samples).
use sqlx::{Row, postgres::PgRow};

use super::talkers::{Dim, SiteLists};
use super::{HOUR_MS, MINUTE_MS, TEN_MINUTES_MS};
use crate::store::{Store, StoreError};
use cdot_crds::wire::network::Resolution as WireResolution;
pub use cdot_crds::wire::network::{Rank, TalkerKey};

/// Which rollup a query reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    Minute,
    Hour,
}

impl Resolution {
    pub fn wire(self) -> WireResolution {
        match self {
            Resolution::Minute => WireResolution::Minute,
            Resolution::Hour => WireResolution::Hour,
        }
    }

    /// The minute or the hour table.
    fn of(self, minute: &'static str, hour: &'static str) -> &'static str {
        match self {
            Resolution::Minute => minute,
            Resolution::Hour => hour,
        }
    }
}

/// SQL for "in the namespace `$1`, site `$2` and device `$3`" (`NULL`: any) of a dictionary.
macro_rules! in_scope {
    () => {
        "namespace = $1 AND ($2::text IS NULL OR site = $2) AND ($3::text IS NULL OR device_name = $3)"
    };
}

/// SQL for the start (Unix ms) of the step `$4` that holds a rollup row's bucket.
macro_rules! step_start {
    () => {
        "((extract(epoch FROM bucket) * 1000)::int8 / $4) * $4"
    };
}

/// Which flow rollup a top-talkers query reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowResolution {
    Minute,
    TenMinutes,
    Hour,
}

impl FlowResolution {
    pub fn wire(self) -> WireResolution {
        match self {
            FlowResolution::Minute => WireResolution::Minute,
            FlowResolution::TenMinutes => WireResolution::TenMinutes,
            FlowResolution::Hour => WireResolution::Hour,
        }
    }

    pub fn bucket_ms(self) -> i64 {
        match self {
            FlowResolution::Minute => MINUTE_MS,
            FlowResolution::TenMinutes => TEN_MINUTES_MS,
            FlowResolution::Hour => HOUR_MS,
        }
    }
}

/// What part of a namespace a query covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope<'a> {
    pub namespace: &'a str,
    pub site: Option<&'a str>,
    pub device: Option<&'a str>,
}

/// Result columns (src, dst, protocol, port) of a key, its GROUP BY, and which rows count
/// only in the totals: "other" rows (no hosts), and for ports the host pairs whose ports
/// were folded (ADR 22).
fn talker_columns(
    key: TalkerKey,
    resolution: FlowResolution,
) -> (&'static str, &'static str, &'static str) {
    const HOSTLESS: &str = "src IS NULL";
    match (key, resolution) {
        (TalkerKey::Pairs, _) => (
            "host(src), host(dst), NULL::int2, NULL::int4",
            "src, dst",
            HOSTLESS,
        ),
        (TalkerKey::Sources, _) => (
            "host(src), NULL::text, NULL::int2, NULL::int4",
            "src",
            HOSTLESS,
        ),
        (TalkerKey::Destinations, _) => (
            "NULL::text, host(dst), NULL::int2, NULL::int4",
            "dst",
            HOSTLESS,
        ),
        (TalkerKey::Protocols, _) => (
            "NULL::text, NULL::text, proto, NULL::int4",
            "proto",
            HOSTLESS,
        ),
        (TalkerKey::Ports, FlowResolution::Minute) => (
            "NULL::text, NULL::text, proto, LEAST(sp, dp)",
            "proto, LEAST(sp, dp)",
            "src IS NULL OR sp IS NULL",
        ),
        (TalkerKey::Ports, _) => (
            "NULL::text, NULL::text, proto, port",
            "proto, port",
            "src IS NULL OR port IS NULL",
        ),
    }
}

/// Whose flows a top-talkers query adds up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowScope {
    /// These exporters, optionally only traffic in or out of these ifIndexes: read from the
    /// per-exporter rollups.
    Exporters {
        ids: Vec<i32>,
        if_indexes: Option<Vec<i64>>,
    },
    /// Every exporter of a namespace, or of one of its sites: top talkers and series of
    /// one key over 10-minute and hour buckets read the ranked site lists
    /// ([`super::talkers`]); everything else the exporters' rollups.
    Site {
        namespace: String,
        site: Option<String>,
    },
}

impl FlowScope {
    /// Whether nothing can match (no exporter in scope).
    fn is_empty(&self) -> bool {
        matches!(self, FlowScope::Exporters { ids, .. } if ids.is_empty())
    }

    /// The exporter table (and its time column) a query reads at `resolution`.
    fn source(resolution: FlowResolution) -> (&'static str, &'static str) {
        match resolution {
            FlowResolution::Minute => ("net_flows_1m", "minute"),
            FlowResolution::TenMinutes => ("net_flows_10m", "bucket"),
            FlowResolution::Hour => ("net_flows_1h", "hour"),
        }
    }

    /// SQL for "in scope" with its values as parameters `$first` and `$first + 1`, the
    /// second only where the scope has it (see [`FlowScope::bind`]), so it must be the
    /// query's last parameter: PostgreSQL refuses parameters a query lacks.
    fn filter(&self, first: usize) -> String {
        let (a, b) = (first, first + 1);
        match self {
            FlowScope::Exporters {
                if_indexes: None, ..
            } => format!("exporter_id = ANY(${a})"),
            FlowScope::Exporters { .. } => {
                format!("exporter_id = ANY(${a}) AND (in_if = ANY(${b}) OR out_if = ANY(${b}))")
            }
            FlowScope::Site { site: None, .. } => {
                format!("exporter_id IN (SELECT id FROM net_exporters WHERE namespace = ${a})")
            }
            FlowScope::Site { .. } => format!(
                "exporter_id IN (SELECT id FROM net_exporters WHERE namespace = ${a} AND site = ${b})"
            ),
        }
    }

    /// Binds the values of [`FlowScope::filter`].
    fn bind<'q>(
        &'q self,
        query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        match self {
            FlowScope::Exporters {
                ids,
                if_indexes: Some(indexes),
            } => query.bind(ids).bind(indexes),
            FlowScope::Exporters { ids, .. } => query.bind(ids),
            FlowScope::Site {
                namespace,
                site: Some(site),
            } => query.bind(namespace).bind(site),
            FlowScope::Site { namespace, .. } => query.bind(namespace),
        }
    }
}

/// Which traffic a series follows: any combination of source, destination, protocol and
/// service port (none: all traffic in scope).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TalkerFilter {
    pub src: Option<std::net::IpAddr>,
    pub dst: Option<std::net::IpAddr>,
    pub protocol: Option<u8>,
    pub port: Option<u16>,
}

/// A traffic series query over flow rollups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficQuery {
    pub scope: FlowScope,
    pub talker: TalkerFilter,
    pub from_ms: i64,
    pub to_ms: i64,
    /// A multiple of the resolution's bucket.
    pub step_ms: i64,
    pub resolution: FlowResolution,
}

/// Traffic of one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrafficPoint {
    /// Start of the step, Unix ms.
    pub at_ms: i64,
    pub bytes: i64,
    pub packets: i64,
    /// Most and fewest bytes of one rollup bucket of the step.
    pub bucket_bytes: (i64, i64),
}

/// A top-talkers query over flow rollups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TalkerQuery {
    pub scope: FlowScope,
    pub key: TalkerKey,
    pub rank: Rank,
    pub from_ms: i64,
    pub to_ms: i64,
    pub resolution: FlowResolution,
    pub limit: i64,
}

/// One ranked key; fields outside the key are `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Talker {
    pub src: Option<String>,
    pub dst: Option<String>,
    pub proto: Option<i16>,
    pub port: Option<i32>,
    pub bytes: i64,
    pub packets: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopTalkers {
    pub items: Vec<Talker>,
    /// All traffic in scope, including what the collectors and the hour rollup kept as "other".
    pub total_bytes: i64,
    pub total_packets: i64,
}

/// A polled interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceInfo {
    pub id: i32,
    pub device: String,
    pub site: Option<String>,
    pub if_index: i64,
    pub name: String,
    pub alias: String,
    pub speed_bps: i64,
    pub oper_status: Option<i16>,
}

/// An interface over a time range.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct InterfaceStats {
    pub id: i32,
    pub samples: i64,
    /// Average, 95th percentile of the buckets' averages, and maximum (bits/s).
    pub in_bps: (f64, f64, f64),
    pub out_bps: (f64, f64, f64),
    pub in_errors: i64,
    pub out_errors: i64,
    pub in_discards: i64,
    pub out_discards: i64,
    pub status_changes: i64,
}

/// One interface in one step: rates in bits/s (average, and the highest and lowest poll),
/// errors and discards in the step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InterfacePoint {
    pub id: i32,
    /// Start of the step, Unix ms.
    pub at_ms: i64,
    pub in_bps: (f64, f64, f64),
    pub out_bps: (f64, f64, f64),
    pub errors: (i64, i64),
    pub discards: (i64, i64),
}

/// A probe (device, name, target).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeInfo {
    pub id: i32,
    pub device: String,
    pub site: Option<String>,
    pub probe: String,
    pub target: String,
}

/// A probe over a time range or one step.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProbeStats {
    pub id: i32,
    /// Step start (ms) for series points; the range start for summaries.
    pub at_ms: i64,
    pub sent: i64,
    pub received: i64,
    pub rtt_avg_ms: Option<f64>,
    pub rtt_min_ms: Option<f64>,
    pub rtt_max_ms: Option<f64>,
    pub jitter_ms: Option<f64>,
}

impl ProbeStats {
    /// Share of probes lost, in percent; `None` when nothing was sent.
    pub fn loss_percent(&self) -> Option<f64> {
        (self.sent > 0)
            .then(|| (self.sent - self.received).max(0) as f64 * 100.0 / self.sent as f64)
    }
}

impl Store {
    /// Flow exporters in scope (exporters matched to a Device carry its name).
    pub async fn exporters_in(&self, scope: Scope<'_>) -> Result<Vec<i32>, StoreError> {
        sqlx::query_scalar(concat!(
            "SELECT id FROM net_exporters WHERE ",
            in_scope!(),
            " ORDER BY id"
        ))
        .bind(scope.namespace)
        .bind(scope.site)
        .bind(scope.device)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("list flow exporters in scope"))
    }

    /// Interfaces in scope, optionally one by name or ifIndex, by device and ifIndex.
    pub async fn interfaces_in(
        &self,
        scope: Scope<'_>,
        interface: Option<&str>,
    ) -> Result<Vec<InterfaceInfo>, StoreError> {
        let sql = concat!(
            "SELECT id, device_name, site, if_index, name, alias, speed_bps, last_status
             FROM net_interfaces WHERE ",
            in_scope!(),
            " AND ($4::text IS NULL OR name = $4 OR if_index::text = $4)
             ORDER BY device_name, if_index"
        );
        let rows = self
            .named_in_scope(sql, scope, interface, "list interfaces in scope")
            .await?;
        Ok(rows
            .iter()
            .map(|r| InterfaceInfo {
                id: r.get(0),
                device: r.get(1),
                site: r.get(2),
                if_index: r.get(3),
                name: r.get(4),
                alias: r.get(5),
                speed_bps: r.get(6),
                oper_status: r.get(7),
            })
            .collect())
    }

    /// Probes in scope, optionally one by name.
    pub async fn probes_in(
        &self,
        scope: Scope<'_>,
        probe: Option<&str>,
    ) -> Result<Vec<ProbeInfo>, StoreError> {
        let sql = concat!(
            "SELECT id, device_name, site, probe, target FROM net_probes WHERE ",
            in_scope!(),
            " AND ($4::text IS NULL OR probe = $4) ORDER BY device_name, probe, target"
        );
        let rows = self
            .named_in_scope(sql, scope, probe, "list probes in scope")
            .await?;
        Ok(rows
            .iter()
            .map(|r| ProbeInfo {
                id: r.get(0),
                device: r.get(1),
                site: r.get(2),
                probe: r.get(3),
                target: r.get(4),
            })
            .collect())
    }

    /// The top keys of the traffic in scope in `[from, to)`, with the total of all of it.
    #[tracing::instrument(skip(self), fields(resolution = ?q.resolution))]
    pub async fn top_talkers(&self, q: &TalkerQuery) -> Result<TopTalkers, StoreError> {
        if q.scope.is_empty() {
            return Ok(TopTalkers::default());
        }
        if let (FlowScope::Site { namespace, site }, Some(lists)) =
            (&q.scope, SiteLists::of(q.resolution))
        {
            return self
                .ranked_top_talkers(lists, namespace, site.as_deref(), q)
                .await;
        }
        let (select, group, hostless) = talker_columns(q.key, q.resolution);
        let (table, time) = FlowScope::source(q.resolution);
        let scope = q.scope.filter(4);
        let (first, second) = match q.rank {
            Rank::Bytes => ("b", "p"),
            Rank::Packets => ("p", "b"),
        };
        // Fragments are constants of this module; nothing of the request is spliced in.
        // Rows without the key's values ("other", folded ports) form groups that sort last
        // and count in the totals only.
        let sql = format!(
            "SELECT {select}, sum(bytes)::int8 AS b, sum(packets)::int8 AS p,
                    (sum(sum(bytes)) OVER ())::int8, (sum(sum(packets)) OVER ())::int8,
                    bool_or({hostless}) AS other
             FROM {table}
             WHERE {time} >= {from} AND {time} < {to} AND {scope}
             GROUP BY {group}
             ORDER BY other, {first} DESC, {second} DESC
             LIMIT $3",
            from = at_ms!(1),
            to = at_ms!(2),
        );
        let query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(q.from_ms)
            .bind(q.to_ms)
            .bind(q.limit + 1);
        let query = q.scope.bind(query);
        let rows = query
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query("rank top talkers"))?;
        let mut out = TopTalkers::default();
        for r in &rows {
            out.total_bytes = r.get(6);
            out.total_packets = r.get(7);
            if r.get::<bool, _>(8) || out.items.len() as i64 >= q.limit {
                continue;
            }
            out.items.push(Talker {
                src: r.get(0),
                dst: r.get(1),
                proto: r.get(2),
                port: r.get(3),
                bytes: r.get(4),
                packets: r.get(5),
            });
        }
        Ok(out)
    }

    /// Traffic in scope matching `q.talker` by step: bytes and packets of each step, and
    /// the most and fewest bytes of one rollup bucket in it (buckets with traffic).
    #[tracing::instrument(skip(self), fields(resolution = ?q.resolution))]
    pub async fn traffic_points(&self, q: &TrafficQuery) -> Result<Vec<TrafficPoint>, StoreError> {
        if q.scope.is_empty() {
            return Ok(Vec::new());
        }
        if let (FlowScope::Site { namespace, site }, Some(lists), Some(dim)) = (
            &q.scope,
            SiteLists::of(q.resolution),
            Dim::of_filter(&q.talker),
        ) {
            return self
                .ranked_traffic_points(lists, dim, namespace, site.as_deref(), q)
                .await;
        }
        let (table, time) = FlowScope::source(q.resolution);
        let scope = q.scope.filter(8);
        let port = match q.resolution {
            FlowResolution::Minute => "LEAST(sp, dp)",
            FlowResolution::TenMinutes | FlowResolution::Hour => "port",
        };
        // Fragments are constants of this module; the talker's values are parameters.
        let sql = format!(
            "SELECT ((extract(epoch FROM t) * 1000)::int8 / $3) * $3 AS step,
                    sum(b)::int8, sum(p)::int8, max(b)::int8, min(b)::int8
             FROM (SELECT {time} AS t, sum(bytes) AS b, sum(packets) AS p FROM {table}
                   WHERE {time} >= {from} AND {time} < {to} AND {scope}
                     AND ($4::text IS NULL OR src = $4::text::inet)
                     AND ($5::text IS NULL OR dst = $5::text::inet)
                     AND ($6::int2 IS NULL OR proto = $6) AND ($7::int4 IS NULL OR {port} = $7)
                   GROUP BY 1) buckets
             GROUP BY 1 ORDER BY 1",
            from = at_ms!(1),
            to = at_ms!(2),
        );
        let t = &q.talker;
        let query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(q.from_ms)
            .bind(q.to_ms)
            .bind(q.step_ms)
            .bind(t.src.map(|ip| ip.to_string()))
            .bind(t.dst.map(|ip| ip.to_string()))
            .bind(t.protocol.map(i16::from))
            .bind(t.port.map(i32::from));
        let rows = q
            .scope
            .bind(query)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query("read flow traffic by step"))?;
        Ok(rows.iter().map(traffic_point).collect())
    }

    /// Each interface's averages, 95th percentiles, maxima and counts in `[from, to)`.
    pub async fn interface_stats(
        &self,
        ids: &[i32],
        from_ms: i64,
        to_ms: i64,
        resolution: Resolution,
    ) -> Result<Vec<InterfaceStats>, StoreError> {
        let read = RollupRead {
            select: "interface_id, sum(samples)::int8,
                sum(in_bps_sum) / sum(samples), percentile_cont(0.95) WITHIN GROUP (ORDER BY in_bps_sum / samples), max(in_bps_max),
                sum(out_bps_sum) / sum(samples), percentile_cont(0.95) WITHIN GROUP (ORDER BY out_bps_sum / samples), max(out_bps_max),
                sum(in_errors)::int8, sum(out_errors)::int8, sum(in_discards)::int8, sum(out_discards)::int8,
                sum(status_changes)::int8",
            table: resolution.of("net_if_1m", "net_if_1h"),
            filter: "interface_id = ANY($1) AND samples > 0",
            group: "1",
            operation: "summarise interfaces",
        };
        let rows = self.rollup_rows(read, ids, (from_ms, to_ms), None).await?;
        Ok(rows
            .iter()
            .map(|r| InterfaceStats {
                id: r.get(0),
                samples: r.get(1),
                in_bps: (r.get(2), r.get(3), r.get(4)),
                out_bps: (r.get(5), r.get(6), r.get(7)),
                in_errors: r.get(8),
                out_errors: r.get(9),
                in_discards: r.get(10),
                out_discards: r.get(11),
                status_changes: r.get(12),
            })
            .collect())
    }

    /// Bandwidth points of interfaces in `[from, to)` by `step_ms` (a multiple of the
    /// resolution), ordered by interface and time.
    pub async fn interface_points(
        &self,
        ids: &[i32],
        from_ms: i64,
        to_ms: i64,
        step_ms: i64,
        resolution: Resolution,
    ) -> Result<Vec<InterfacePoint>, StoreError> {
        let read = RollupRead {
            select: concat!(
                "interface_id, ",
                step_start!(),
                ", sum(in_bps_sum) / sum(samples), sum(out_bps_sum) / sum(samples),
                 max(in_bps_max), max(out_bps_max),
                 min(COALESCE(in_bps_min, in_bps_sum / samples)),
                 min(COALESCE(out_bps_min, out_bps_sum / samples)),
                 sum(in_errors)::int8, sum(out_errors)::int8,
                 sum(in_discards)::int8, sum(out_discards)::int8"
            ),
            table: resolution.of("net_if_1m", "net_if_1h"),
            filter: "interface_id = ANY($1) AND samples > 0",
            group: "1, 2",
            operation: "read interface bandwidth",
        };
        let rows = self
            .rollup_rows(read, ids, (from_ms, to_ms), Some(step_ms))
            .await?;
        Ok(rows.iter().map(interface_point).collect())
    }

    /// The sum of the bandwidth of `ids` in `[from, to)` by `step_ms` (points with id 0):
    /// per rollup bucket the interfaces' averages added up, then per step the average,
    /// highest and lowest of those totals, and errors and discards added up.
    pub async fn interface_total_points(
        &self,
        ids: &[i32],
        from_ms: i64,
        to_ms: i64,
        step_ms: i64,
        resolution: Resolution,
    ) -> Result<Vec<InterfacePoint>, StoreError> {
        // Every fragment is a constant of this module.
        let sql = format!(
            "SELECT 0, ((extract(epoch FROM bucket) * 1000)::int8 / $4) * $4,
                    avg(tin), avg(tout), max(tin), max(tout), min(tin), min(tout),
                    sum(ein)::int8, sum(eout)::int8, sum(din)::int8, sum(dout)::int8
             FROM (SELECT bucket, sum(in_bps_sum / samples) AS tin, sum(out_bps_sum / samples) AS tout,
                          sum(in_errors) AS ein, sum(out_errors) AS eout,
                          sum(in_discards) AS din, sum(out_discards) AS dout
                   FROM {} WHERE interface_id = ANY($1) AND samples > 0
                     AND bucket >= {} AND bucket < {}
                   GROUP BY bucket) totals
             GROUP BY 2 ORDER BY 2",
            resolution.of("net_if_1m", "net_if_1h"),
            at_ms!(2),
            at_ms!(3)
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(ids)
            .bind(from_ms)
            .bind(to_ms)
            .bind(step_ms)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query("add up interface bandwidth"))?;
        Ok(rows.iter().map(interface_point).collect())
    }

    /// Probe results of `ids` in `[from, to)` by `step_ms`, ordered by probe and time.
    pub async fn probe_points(
        &self,
        ids: &[i32],
        from_ms: i64,
        to_ms: i64,
        step_ms: i64,
        resolution: Resolution,
    ) -> Result<Vec<ProbeStats>, StoreError> {
        let read = RollupRead {
            select: concat!(
                "probe_id, ",
                step_start!(),
                ", sum(sent)::int8, sum(received)::int8,
                 sum(rtt_sum) / NULLIF(sum(rtt_weight), 0), min(rtt_min_ms), max(rtt_max_ms),
                 sum(jitter_sum) / NULLIF(sum(jitter_count), 0)"
            ),
            table: resolution.of("net_probe_1m", "net_probe_1h"),
            filter: "probe_id = ANY($1)",
            group: "1, 2",
            operation: "read probe results",
        };
        let rows = self
            .rollup_rows(read, ids, (from_ms, to_ms), Some(step_ms))
            .await?;
        Ok(rows
            .iter()
            .map(|r| ProbeStats {
                id: r.get(0),
                at_ms: r.get(1),
                sent: r.get(2),
                received: r.get(3),
                rtt_avg_ms: r.get(4),
                rtt_min_ms: r.get(5),
                rtt_max_ms: r.get(6),
                jitter_ms: r.get(7),
            })
            .collect())
    }

    /// Rows of a dictionary `sql` in `scope` (`$1` to `$3`) with `$4` an optional name.
    async fn named_in_scope(
        &self,
        sql: &'static str,
        scope: Scope<'_>,
        name: Option<&str>,
        operation: &'static str,
    ) -> Result<Vec<PgRow>, StoreError> {
        sqlx::query(sql)
            .bind(scope.namespace)
            .bind(scope.site)
            .bind(scope.device)
            .bind(name)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query(operation))
    }

    /// Runs `read` over the buckets in `[from, to)` of the ids `$1`, with `$4` the step of
    /// a series.
    async fn rollup_rows(
        &self,
        read: RollupRead,
        ids: &[i32],
        (from_ms, to_ms): (i64, i64),
        step_ms: Option<i64>,
    ) -> Result<Vec<PgRow>, StoreError> {
        let RollupRead {
            select,
            table,
            filter,
            group,
            operation,
        } = read;
        // Every fragment is a constant of this module.
        let sql = format!(
            "SELECT {select} FROM {table}
             WHERE {filter} AND bucket >= {} AND bucket < {}
             GROUP BY {group} ORDER BY {group}",
            at_ms!(2),
            at_ms!(3)
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(ids)
            .bind(from_ms)
            .bind(to_ms);
        if let Some(step) = step_ms {
            query = query.bind(step);
        }
        query
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query(operation))
    }
}

/// A row of `step, bytes, packets, most bytes, fewest bytes` of a traffic series.
pub(super) fn traffic_point(r: &PgRow) -> TrafficPoint {
    TrafficPoint {
        at_ms: r.get(0),
        bytes: r.get(1),
        packets: r.get(2),
        bucket_bytes: (r.get(3), r.get(4)),
    }
}

/// A row of `id, step, avg in, avg out, max in, max out, min in, min out, errors in, out,
/// discards in, out` of a bandwidth series.
fn interface_point(r: &PgRow) -> InterfacePoint {
    InterfacePoint {
        id: r.get(0),
        at_ms: r.get(1),
        in_bps: (r.get(2), r.get(4), r.get(6)),
        out_bps: (r.get(3), r.get(5), r.get(7)),
        errors: (r.get(8), r.get(9)),
        discards: (r.get(10), r.get(11)),
    }
}

/// One read of an interface or probe rollup (see [`Store::rollup_rows`]).
struct RollupRead {
    select: &'static str,
    table: &'static str,
    filter: &'static str,
    /// The leading columns grouped and ordered by.
    group: &'static str,
    /// What failed, for the error.
    operation: &'static str,
}
