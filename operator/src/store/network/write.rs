//! Storing one collector batch: idempotency record, dictionaries, rows, late buckets, the
//! collector's heartbeat, all in one transaction.
use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    net::IpAddr,
};

use cdot_crds::wire::collector::{CollectorBatch, FlowGroup};
use sqlx::{Postgres, Row, Transaction};
use uuid::Uuid;

use super::{NetTable, floor_to, rollup::Fold};
use crate::store::partitions::{day_of, partition_name};
use crate::store::{
    Store, StoreError,
    heartbeats::{self, Heartbeat, Poll},
};

/// `sqlx::query(sql)` with the arguments bound in order as `$1`, `$2`, ...
macro_rules! bound {
    ($sql:expr, $($arg:expr),+ $(,)?) => {
        sqlx::query($sql)$(.bind($arg))+
    };
}

/// Rows of buckets that ended this long before their commit may already be folded: their
/// bucket is marked for folding again (half the fold lag, as for agent metrics).
pub const LATE_MS: i64 = super::rollup::FOLD_LAG_MS / 2;

/// A Device of the collector's namespace that samples name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRef {
    pub uid: Uuid,
    pub name: String,
    /// `spec.site`, else the `rmm.cdot.io/site` label.
    pub site: Option<String>,
}

/// The collector a batch came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collector {
    pub namespace: String,
    /// Its Device name.
    pub name: String,
    pub uid: Uuid,
    pub site: Option<String>,
}

/// What storing a batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteSummary {
    /// The batch had been stored before; nothing was written.
    pub duplicate: bool,
    pub flow_rows: u64,
    pub interface_rows: u64,
    pub probe_rows: u64,
    /// Rows older than the oldest partition of their table (past retention), not stored.
    pub expired: u64,
    /// Discovery reports of runs that are not (or no longer) the collector's.
    pub scan_reports_ignored: u64,
}

impl WriteSummary {
    pub fn stored(&self) -> u64 {
        self.flow_rows + self.interface_rows + self.probe_rows
    }
}

impl Store {
    /// The named Devices of `namespace`, by name; names that do not exist are absent.
    pub async fn network_devices(
        &self,
        namespace: &str,
        names: &[&str],
    ) -> Result<HashMap<String, DeviceRef>, StoreError> {
        let rows = sqlx::query(
            "SELECT name, uid, COALESCE(spec->>'site', labels->>'rmm.cdot.io/site')
             FROM objects WHERE kind = 'Device' AND namespace = $1 AND name = ANY($2)",
        )
        .bind(namespace)
        .bind(names)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("resolve devices of a collector batch"))?;
        Ok(rows
            .iter()
            .map(|r| {
                let name: String = r.get(0);
                (
                    name.clone(),
                    DeviceRef {
                        uid: r.get(1),
                        name,
                        site: r.get(2),
                    },
                )
            })
            .collect())
    }

    /// Stores a validated collector batch in one transaction, unless the collector sent it
    /// before. `devices` resolves every device name of its interface samples and probe
    /// results. Buckets that ended before `now_ms - LATE_MS` are marked for folding again.
    pub async fn write_collector_batch(
        &self,
        collector: &Collector,
        collector_version: &str,
        batch: &CollectorBatch,
        devices: &HashMap<String, DeviceRef>,
        now_ms: i64,
    ) -> Result<WriteSummary, StoreError> {
        let mut tx = self
            .pool
            .begin()
            .await
            .map_err(StoreError::query("begin collector batch transaction"))?;
        let items = batch.flows.iter().map(FlowGroup::rows).sum::<usize>()
            + batch.interfaces.len()
            + batch.probes.len();
        let fresh = sqlx::query(
            "INSERT INTO ingested_batches (device_uid, batch_id, samples) VALUES ($1, $2, $3)
             ON CONFLICT (device_uid, batch_id) DO NOTHING",
        )
        .bind(collector.uid)
        .bind(batch.batch_id)
        .bind(i32::try_from(items).unwrap_or(i32::MAX))
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("record collector batch"))?;
        let mut summary = WriteSummary::default();
        if fresh.rows_affected() == 0 {
            summary.duplicate = true;
        } else {
            let existing = existing_partitions(&mut tx, batch).await?;
            let mut late = Late::new(now_ms - LATE_MS);
            summary.flow_rows =
                write_flows(&mut tx, collector, batch, &existing, &mut late).await?;
            summary.interface_rows =
                write_interfaces(&mut tx, collector, batch, devices, &existing, &mut late).await?;
            summary.probe_rows =
                write_probes(&mut tx, collector, batch, devices, &existing, &mut late).await?;
            late.mark(&mut tx).await?;
            heartbeats::record_polls(&mut *tx, &polls(collector, batch, devices)).await?;
            summary.scan_reports_ignored =
                crate::discovery::store::record_reports(&mut tx, collector.uid, &batch.scans)
                    .await?;
            let total = batch
                .flows
                .iter()
                .map(|g| (g.top.len() + g.hosts.len()) as u64 + u64::from(!g.other.is_zero()))
                .sum::<u64>()
                + batch.interfaces.len() as u64
                + batch.probes.len() as u64;
            summary.expired = total.saturating_sub(summary.stored());
        }
        // A collector that reports is alive, duplicate or not (as an agent's metrics are).
        heartbeats::record(
            &mut *tx,
            &[Heartbeat {
                device_uid: collector.uid,
                agent_version: collector_version.to_owned(),
                last_seen_ms: now_ms,
                last_metrics: None,
                report_interval_secs: batch.interval_secs,
            }],
        )
        .await?;
        tx.commit()
            .await
            .map_err(StoreError::query("commit collector batch transaction"))?;
        Ok(summary)
    }
}

/// Partitions the batch's rows would land in that exist (those before retention do not).
async fn existing_partitions(
    tx: &mut Transaction<'_, Postgres>,
    batch: &CollectorBatch,
) -> Result<HashSet<String>, StoreError> {
    let mut wanted = BTreeSet::new();
    for g in &batch.flows {
        wanted.insert(partition_name(NetTable::Flows1m, day_of(g.minute_ms)));
    }
    for s in &batch.interfaces {
        wanted.insert(partition_name(NetTable::InterfaceSamples, day_of(s.t)));
    }
    for p in &batch.probes {
        wanted.insert(partition_name(NetTable::ProbeSamples, day_of(p.t)));
    }
    let wanted: Vec<String> = wanted.into_iter().collect();
    let found: Vec<String> = sqlx::query_scalar(
        "SELECT n FROM unnest($1::text[]) AS n WHERE to_regclass(n) IS NOT NULL",
    )
    .bind(&wanted)
    .fetch_all(&mut **tx)
    .await
    .map_err(StoreError::query("look up network partitions"))?;
    Ok(found.into_iter().collect())
}

/// Buckets of closed (possibly folded) periods that received rows, per fold.
struct Late {
    before_ms: i64,
    buckets: BTreeSet<(&'static str, i64)>,
}

impl Late {
    fn new(before_ms: i64) -> Self {
        Self {
            before_ms,
            buckets: BTreeSet::new(),
        }
    }

    fn note(&mut self, fold: Fold, t: i64) {
        let size = fold.bucket_ms();
        let bucket = floor_to(t, size);
        if bucket + size <= self.before_ms {
            self.buckets.insert((fold.name(), bucket));
        }
    }

    async fn mark(self, tx: &mut Transaction<'_, Postgres>) -> Result<(), StoreError> {
        if self.buckets.is_empty() {
            return Ok(());
        }
        let folds: Vec<&str> = self.buckets.iter().map(|b| b.0).collect();
        let buckets: Vec<i64> = self.buckets.iter().map(|b| b.1).collect();
        sqlx::query(
            "INSERT INTO net_rollup_dirty (fold, bucket)
             SELECT f, 'epoch'::timestamptz + b * interval '1 millisecond'
             FROM unnest($1::text[], $2::int8[]) AS u(f, b)
             ON CONFLICT DO NOTHING",
        )
        .bind(&folds)
        .bind(&buckets)
        .execute(&mut **tx)
        .await
        .map_err(StoreError::query("mark late network buckets"))?;
        Ok(())
    }
}

/// Exporter ids of `addresses` (created, and matched to a Device by its management
/// addresses, when new; the match and site follow later Device changes).
async fn exporter_ids(
    tx: &mut Transaction<'_, Postgres>,
    collector: &Collector,
    addresses: &BTreeSet<IpAddr>,
) -> Result<HashMap<IpAddr, i32>, StoreError> {
    let texts: Vec<String> = addresses.iter().map(ToString::to_string).collect();
    sqlx::query(
        "INSERT INTO net_exporters AS e (namespace, collector_uid, address, device_uid, device_name, site)
         SELECT $1, $2, a::inet, d.uid, d.name, COALESCE(d.site, $3)
         FROM unnest($4::text[]) AS a
         LEFT JOIN LATERAL (
             SELECT o.uid, o.name, COALESCE(o.spec->>'site', o.labels->>'rmm.cdot.io/site') AS site
             FROM objects o
             WHERE o.kind = 'Device' AND o.namespace = $1
               AND o.spec->'managementAddresses' ? host(a::inet)
             ORDER BY o.name LIMIT 1
         ) d ON true
         ON CONFLICT (namespace, collector_uid, address) DO UPDATE SET
             device_uid = EXCLUDED.device_uid, device_name = EXCLUDED.device_name, site = EXCLUDED.site
         WHERE (e.device_uid, e.device_name, e.site)
               IS DISTINCT FROM (EXCLUDED.device_uid, EXCLUDED.device_name, EXCLUDED.site)",
    )
    .bind(&collector.namespace)
    .bind(collector.uid)
    .bind(&collector.site)
    .bind(&texts)
    .execute(&mut **tx)
    .await
    .map_err(StoreError::query("record flow exporters"))?;
    let rows = sqlx::query(
        "SELECT id, host(address) FROM net_exporters
         WHERE namespace = $1 AND collector_uid = $2 AND address = ANY($3::inet[])",
    )
    .bind(&collector.namespace)
    .bind(collector.uid)
    .bind(&texts)
    .fetch_all(&mut **tx)
    .await
    .map_err(StoreError::query("read flow exporters"))?;
    Ok(rows
        .iter()
        .filter_map(|r| {
            let address: String = r.get(1);
            Some((address.parse().ok()?, r.get(0)))
        })
        .collect())
}

async fn write_flows(
    tx: &mut Transaction<'_, Postgres>,
    collector: &Collector,
    batch: &CollectorBatch,
    existing: &HashSet<String>,
    late: &mut Late,
) -> Result<u64, StoreError> {
    let groups: Vec<_> = batch
        .flows
        .iter()
        .filter(|g| existing.contains(&partition_name(NetTable::Flows1m, day_of(g.minute_ms))))
        .collect();
    if groups.is_empty() {
        return Ok(0);
    }
    let addresses: BTreeSet<IpAddr> = groups.iter().map(|g| g.exporter).collect();
    let ids = exporter_ids(tx, collector, &addresses).await?;
    let n: usize = groups.iter().map(|g| g.rows()).sum();
    let mut cols = FlowColumns::with_capacity(n);
    for g in groups {
        let Some(&exporter) = ids.get(&g.exporter) else {
            continue;
        };
        late.note(Fold::Flows10m, g.minute_ms);
        late.note(Fold::Flows1h, g.minute_ms);
        for c in &g.top {
            cols.push(
                (exporter, g.minute_ms, g.in_if, g.out_if),
                Some((c.src, c.dst, c.proto, Some((c.sp, c.dp)))),
                (c.b, c.p, c.f),
            );
        }
        for h in &g.hosts {
            cols.push(
                (exporter, g.minute_ms, g.in_if, g.out_if),
                Some((h.src, h.dst, h.proto, None)),
                (h.b, h.p, h.f),
            );
        }
        if !g.other.is_zero() {
            cols.push(
                (exporter, g.minute_ms, g.in_if, g.out_if),
                None,
                (g.other.b, g.other.p, g.other.f),
            );
        }
    }
    cols.insert(tx).await
}

/// Flow rows laid out as arrays for one `unnest` insert.
#[derive(Default)]
struct FlowColumns {
    exporter: Vec<i32>,
    minute: Vec<i64>,
    in_if: Vec<i64>,
    out_if: Vec<i64>,
    src: Vec<Option<String>>,
    dst: Vec<Option<String>>,
    proto: Vec<Option<i16>>,
    sp: Vec<Option<i32>>,
    dp: Vec<Option<i32>>,
    bytes: Vec<i64>,
    packets: Vec<i64>,
    flows: Vec<i64>,
}

/// (src, dst, protocol, (source port, destination port)) of a row: ports are `None` for a
/// host pair's folded ports, the whole key `None` for "other".
type FlowKey = Option<(IpAddr, IpAddr, u8, Option<(u16, u16)>)>;

impl FlowColumns {
    fn with_capacity(n: usize) -> Self {
        Self {
            exporter: Vec::with_capacity(n),
            minute: Vec::with_capacity(n),
            in_if: Vec::with_capacity(n),
            out_if: Vec::with_capacity(n),
            src: Vec::with_capacity(n),
            dst: Vec::with_capacity(n),
            proto: Vec::with_capacity(n),
            sp: Vec::with_capacity(n),
            dp: Vec::with_capacity(n),
            bytes: Vec::with_capacity(n),
            packets: Vec::with_capacity(n),
            flows: Vec::with_capacity(n),
        }
    }

    /// One row: (exporter id, minute ms, in ifIndex, out ifIndex), key, (bytes, packets, flows).
    /// Counts were checked to fit `i64` by validation; larger ones saturate.
    fn push(&mut self, at: (i32, i64, u32, u32), key: FlowKey, counts: (u64, u64, u64)) {
        let signed = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.exporter.push(at.0);
        self.minute.push(at.1);
        self.in_if.push(i64::from(at.2));
        self.out_if.push(i64::from(at.3));
        self.src.push(key.map(|k| k.0.to_string()));
        self.dst.push(key.map(|k| k.1.to_string()));
        self.proto.push(key.map(|k| i16::from(k.2)));
        let ports = key.and_then(|k| k.3);
        self.sp.push(ports.map(|p| i32::from(p.0)));
        self.dp.push(ports.map(|p| i32::from(p.1)));
        self.bytes.push(signed(counts.0));
        self.packets.push(signed(counts.1));
        self.flows.push(signed(counts.2));
    }

    fn is_empty(&self) -> bool {
        self.exporter.is_empty()
    }

    async fn insert(&self, tx: &mut Transaction<'_, Postgres>) -> Result<u64, StoreError> {
        if self.is_empty() {
            return Ok(0);
        }
        let done = bound!(
            "INSERT INTO net_flows_1m (exporter_id, minute, in_if, out_if, src, dst, proto, sp, dp, bytes, packets, flows)
             SELECT e, 'epoch'::timestamptz + m * interval '1 millisecond', i, o, s::inet, d::inet, pr, sp, dp, b, p, f
             FROM unnest($1::int4[], $2::int8[], $3::int8[], $4::int8[], $5::text[], $6::text[],
                         $7::int2[], $8::int4[], $9::int4[], $10::int8[], $11::int8[], $12::int8[])
                  AS u(e, m, i, o, s, d, pr, sp, dp, b, p, f)",
            &self.exporter,
            &self.minute,
            &self.in_if,
            &self.out_if,
            &self.src,
            &self.dst,
            &self.proto,
            &self.sp,
            &self.dp,
            &self.bytes,
            &self.packets,
            &self.flows,
        )
        .execute(&mut **tx)
        .await
        .map_err(StoreError::query("insert flow rows"))?;
        Ok(done.rows_affected())
    }
}

async fn write_interfaces(
    tx: &mut Transaction<'_, Postgres>,
    collector: &Collector,
    batch: &CollectorBatch,
    devices: &HashMap<String, DeviceRef>,
    existing: &HashSet<String>,
    late: &mut Late,
) -> Result<u64, StoreError> {
    // Per interface, its samples in time order (the newest names it).
    let mut by_key: BTreeMap<(Uuid, u32), Vec<usize>> = BTreeMap::new();
    for (i, s) in batch.interfaces.iter().enumerate() {
        let Some(device) = devices.get(&s.device) else {
            continue;
        };
        if existing.contains(&partition_name(NetTable::InterfaceSamples, day_of(s.t))) {
            by_key.entry((device.uid, s.if_index)).or_default().push(i);
        }
    }
    if by_key.is_empty() {
        return Ok(0);
    }
    for samples in by_key.values_mut() {
        samples.sort_by_key(|i| batch.interfaces[*i].t);
    }
    let newest: Vec<&cdot_crds::wire::collector::InterfaceSample> = by_key
        .values()
        .filter_map(|v| v.last().map(|i| &batch.interfaces[*i]))
        .collect();
    let uids: Vec<Uuid> = by_key.keys().map(|k| k.0).collect();
    let indexes: Vec<i64> = by_key.keys().map(|k| i64::from(k.1)).collect();
    let names: Vec<&str> = newest.iter().map(|s| s.name.as_str()).collect();
    let aliases: Vec<&str> = newest.iter().map(|s| s.alias.as_str()).collect();
    let speeds: Vec<i64> = newest
        .iter()
        .map(|s| i64::try_from(s.speed_bps).unwrap_or(i64::MAX))
        .collect();
    let device_names: Vec<&str> = newest.iter().map(|s| s.device.as_str()).collect();
    let sites: Vec<Option<&str>> = newest
        .iter()
        .map(|s| {
            devices
                .get(&s.device)
                .and_then(|d| d.site.as_deref())
                .or(collector.site.as_deref())
        })
        .collect();
    bound!(
        "INSERT INTO net_interfaces (device_uid, if_index, namespace, device_name, site, name, alias, speed_bps)
         SELECT d, i, $3, n, s, nm, a, sp
         FROM unnest($1::uuid[], $2::int8[], $4::text[], $5::text[], $6::text[], $7::text[], $8::int8[])
              AS u(d, i, n, s, nm, a, sp)
         ON CONFLICT (device_uid, if_index) DO NOTHING",
        &uids,
        &indexes,
        &collector.namespace,
        &device_names,
        &sites,
        &names,
        &aliases,
        &speeds,
    )
    .execute(&mut **tx)
    .await
    .map_err(StoreError::query("record interfaces"))?;
    // Locked, so that concurrent batches of one interface count status changes in turn.
    let rows = sqlx::query(
        "SELECT n.id, n.device_uid, n.if_index, n.last_status,
                (extract(epoch FROM n.last_at) * 1000)::int8
         FROM net_interfaces n JOIN unnest($1::uuid[], $2::int8[]) AS u(d, i)
           ON n.device_uid = u.d AND n.if_index = u.i
         ORDER BY n.id FOR UPDATE OF n",
    )
    .bind(&uids)
    .bind(&indexes)
    .fetch_all(&mut **tx)
    .await
    .map_err(StoreError::query("lock interfaces"))?;
    // Per interface: its id and the (time, status) of its newest poll so far.
    let mut known: HashMap<(Uuid, u32), (i32, LastPoll)> = HashMap::new();
    for r in &rows {
        let index: i64 = r.get(2);
        let last = match (r.get::<Option<i16>, _>(3), r.get::<Option<i64>, _>(4)) {
            (Some(status), Some(at)) => Some((at, status)),
            _ => None,
        };
        known.insert(
            (r.get(1), u32::try_from(index).unwrap_or_default()),
            (r.get(0), last),
        );
    }
    let mut cols = InterfaceColumns::default();
    let mut updates: Vec<(i32, usize)> = Vec::new();
    for (key, samples) in &by_key {
        let Some((id, mut last)) = known.get(key).copied() else {
            continue;
        };
        for i in samples {
            let s = &batch.interfaces[*i];
            let status = i16::from(s.oper_status);
            let changed = matches!(last, Some((at, previous)) if at < s.t && previous != status);
            if last.is_none_or(|(at, _)| s.t > at) {
                last = Some((s.t, status));
            }
            late.note(Fold::Interfaces1m, s.t);
            cols.push(id, s, changed);
        }
        if let Some(i) = samples.last() {
            updates.push((id, *i));
        }
    }
    let ids: Vec<i32> = updates.iter().map(|u| u.0).collect();
    let pick = |f: &dyn Fn(&cdot_crds::wire::collector::InterfaceSample) -> i64| -> Vec<i64> {
        updates.iter().map(|u| f(&batch.interfaces[u.1])).collect()
    };
    let at = pick(&|s| s.t);
    let status = pick(&|s| i64::from(s.oper_status));
    let speed = pick(&|s| i64::try_from(s.speed_bps).unwrap_or(i64::MAX));
    let name: Vec<&str> = updates
        .iter()
        .map(|u| batch.interfaces[u.1].name.as_str())
        .collect();
    let alias: Vec<&str> = updates
        .iter()
        .map(|u| batch.interfaces[u.1].alias.as_str())
        .collect();
    let site: Vec<Option<&str>> = updates
        .iter()
        .map(|u| {
            devices
                .get(&batch.interfaces[u.1].device)
                .and_then(|d| d.site.as_deref())
                .or(collector.site.as_deref())
        })
        .collect();
    // Names, speed and status follow the newest poll; a replayed older poll changes nothing.
    bound!(
        "UPDATE net_interfaces n SET
             name = u.name, alias = u.alias, speed_bps = u.speed, site = u.site,
             last_status = u.status::int2,
             last_at = 'epoch'::timestamptz + u.at * interval '1 millisecond'
         FROM unnest($1::int4[], $2::int8[], $3::int8[], $4::int8[], $5::text[], $6::text[], $7::text[])
              AS u(id, at, status, speed, name, alias, site)
         WHERE n.id = u.id
           AND (n.last_at IS NULL OR n.last_at < 'epoch'::timestamptz + u.at * interval '1 millisecond')",
        &ids,
        &at,
        &status,
        &speed,
        &name,
        &alias,
        &site,
    )
    .execute(&mut **tx)
    .await
    .map_err(StoreError::query("update interfaces"))?;
    cols.insert(tx).await
}

type LastPoll = Option<(i64, i16)>;

#[derive(Default)]
struct InterfaceColumns {
    id: Vec<i32>,
    at: Vec<i64>,
    status: Vec<i16>,
    changed: Vec<bool>,
    rates: [Vec<f64>; 4],
    counters: [Vec<i64>; 4],
}

impl InterfaceColumns {
    fn push(&mut self, id: i32, s: &cdot_crds::wire::collector::InterfaceSample, changed: bool) {
        let signed = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.id.push(id);
        self.at.push(s.t);
        self.status.push(i16::from(s.oper_status));
        self.changed.push(changed);
        for (col, v) in self
            .rates
            .iter_mut()
            .zip([s.in_bps, s.out_bps, s.in_pps, s.out_pps])
        {
            col.push(v);
        }
        for (col, v) in
            self.counters
                .iter_mut()
                .zip([s.in_errors, s.out_errors, s.in_discards, s.out_discards])
        {
            col.push(signed(v));
        }
    }

    async fn insert(&self, tx: &mut Transaction<'_, Postgres>) -> Result<u64, StoreError> {
        if self.id.is_empty() {
            return Ok(0);
        }
        let [in_bps, out_bps, in_pps, out_pps] = &self.rates;
        let [in_err, out_err, in_disc, out_disc] = &self.counters;
        let done = bound!(
            "INSERT INTO net_if_samples (interface_id, at, oper_status, status_changed, in_bps, out_bps,
                                         in_pps, out_pps, in_errors, out_errors, in_discards, out_discards)
             SELECT i, 'epoch'::timestamptz + t * interval '1 millisecond', s, c, ib, ob, ip, op, ie, oe, id, od
             FROM unnest($1::int4[], $2::int8[], $3::int2[], $4::bool[], $5::float8[], $6::float8[],
                         $7::float8[], $8::float8[], $9::int8[], $10::int8[], $11::int8[], $12::int8[])
                  AS u(i, t, s, c, ib, ob, ip, op, ie, oe, id, od)",
            &self.id,
            &self.at,
            &self.status,
            &self.changed,
            in_bps,
            out_bps,
            in_pps,
            out_pps,
            in_err,
            out_err,
            in_disc,
            out_disc,
        )
        .execute(&mut **tx)
        .await
        .map_err(StoreError::query("insert interface samples"))?;
        Ok(done.rows_affected())
    }
}

async fn write_probes(
    tx: &mut Transaction<'_, Postgres>,
    collector: &Collector,
    batch: &CollectorBatch,
    devices: &HashMap<String, DeviceRef>,
    existing: &HashSet<String>,
    late: &mut Late,
) -> Result<u64, StoreError> {
    let kept: Vec<(&DeviceRef, &cdot_crds::wire::collector::ProbeResult)> = batch
        .probes
        .iter()
        .filter(|p| existing.contains(&partition_name(NetTable::ProbeSamples, day_of(p.t))))
        .filter_map(|p| Some((devices.get(&p.device)?, p)))
        .collect();
    if kept.is_empty() {
        return Ok(0);
    }
    let keys: BTreeSet<(Uuid, &str, &str, &str, Option<&str>)> = kept
        .iter()
        .map(|(d, p)| {
            (
                d.uid,
                p.probe.as_str(),
                p.target.as_str(),
                d.name.as_str(),
                d.site.as_deref().or(collector.site.as_deref()),
            )
        })
        .collect();
    let uids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
    let probes: Vec<&str> = keys.iter().map(|k| k.1).collect();
    let targets: Vec<&str> = keys.iter().map(|k| k.2).collect();
    let names: Vec<&str> = keys.iter().map(|k| k.3).collect();
    let sites: Vec<Option<&str>> = keys.iter().map(|k| k.4).collect();
    bound!(
        "INSERT INTO net_probes AS p (device_uid, probe, target, namespace, device_name, site)
         SELECT d, pr, t, $4, n, s FROM unnest($1::uuid[], $2::text[], $3::text[], $5::text[], $6::text[])
              AS u(d, pr, t, n, s)
         ON CONFLICT (device_uid, probe, target) DO UPDATE SET site = EXCLUDED.site
         WHERE p.site IS DISTINCT FROM EXCLUDED.site",
        &uids,
        &probes,
        &targets,
        &collector.namespace,
        &names,
        &sites,
    )
    .execute(&mut **tx)
    .await
    .map_err(StoreError::query("record probes"))?;
    let rows = sqlx::query(
        "SELECT p.id, p.device_uid, p.probe, p.target FROM net_probes p
         JOIN unnest($1::uuid[], $2::text[], $3::text[]) AS u(d, pr, t)
           ON p.device_uid = u.d AND p.probe = u.pr AND p.target = u.t",
    )
    .bind(&uids)
    .bind(&probes)
    .bind(&targets)
    .fetch_all(&mut **tx)
    .await
    .map_err(StoreError::query("read probes"))?;
    let ids: HashMap<(Uuid, String, String), i32> = rows
        .iter()
        .map(|r| ((r.get(1), r.get(2), r.get(3)), r.get(0)))
        .collect();
    let mut id = Vec::with_capacity(kept.len());
    let mut at = Vec::with_capacity(kept.len());
    let mut sent = Vec::with_capacity(kept.len());
    let mut received = Vec::with_capacity(kept.len());
    let mut rtt: [Vec<Option<f64>>; 4] = Default::default();
    for (d, p) in &kept {
        let Some(probe) = ids.get(&(d.uid, p.probe.clone(), p.target.clone())) else {
            continue;
        };
        late.note(Fold::Probes1m, p.t);
        id.push(*probe);
        at.push(p.t);
        sent.push(i32::try_from(p.sent).unwrap_or(i32::MAX));
        received.push(i32::try_from(p.received).unwrap_or(i32::MAX));
        for (col, v) in rtt
            .iter_mut()
            .zip([p.rtt_min_ms, p.rtt_avg_ms, p.rtt_max_ms, p.jitter_ms])
        {
            col.push(v);
        }
    }
    let [min, avg, max, jitter] = &rtt;
    let done = bound!(
        "INSERT INTO net_probe_samples (probe_id, at, sent, received, rtt_min_ms, rtt_avg_ms, rtt_max_ms, jitter_ms)
         SELECT i, 'epoch'::timestamptz + t * interval '1 millisecond', s, r, mn, av, mx, j
         FROM unnest($1::int4[], $2::int8[], $3::int4[], $4::int4[], $5::float8[], $6::float8[],
                     $7::float8[], $8::float8[]) AS u(i, t, s, r, mn, av, mx, j)",
        &id,
        &at,
        &sent,
        &received,
        min,
        avg,
        max,
        jitter,
    )
    .execute(&mut **tx)
    .await
    .map_err(StoreError::query("insert probe samples"))?;
    Ok(done.rows_affected())
}

/// Each polled device's newest interface sample: an SNMP poll that answered.
fn polls(
    collector: &Collector,
    batch: &CollectorBatch,
    devices: &HashMap<String, DeviceRef>,
) -> Vec<Poll> {
    let mut latest: HashMap<&str, (i64, u64)> = HashMap::new();
    for s in &batch.interfaces {
        let entry = latest
            .entry(s.device.as_str())
            .or_insert((s.t, s.interval_ms));
        if s.t > entry.0 {
            *entry = (s.t, s.interval_ms);
        }
    }
    latest
        .into_iter()
        .filter_map(|(name, (t, interval_ms))| {
            Some(Poll {
                device_uid: devices.get(name)?.uid,
                collector: collector.name.clone(),
                last_seen_ms: t,
                interval_secs: u32::try_from(interval_ms.div_ceil(1000).max(1)).unwrap_or(u32::MAX),
            })
        })
        .collect()
}
