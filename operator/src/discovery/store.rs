//! Discovery's tables (migration 0014): runs, the hosts they found, LLDP links; and the
//! Devices discovery creates and updates in standalone mode.
use std::net::IpAddr;

use cdot_crds::wire::discovery::{FoundHost, ScanCounts, ScanReport, ScanState};
use serde_json::{Value, json};
use sqlx::{Postgres, Row, Transaction, postgres::PgRow};
use uuid::Uuid;

use crate::store::{Store, StoreError};

/// `managed_by` of Devices discovery created: manifests never prune them, and a manifest of
/// the same name takes them over (then discovery writes only their status).
pub const MANAGED_BY: &str = "discovery";

/// A run as the scheduler and the status writer see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub id: Uuid,
    pub namespace: String,
    pub scan: String,
    pub scan_uid: Uuid,
    pub generation: i64,
    pub collector: String,
    pub collector_uid: Uuid,
    pub state: String,
    pub message: Option<String>,
    pub created_ms: i64,
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
    pub last_report_ms: Option<i64>,
    pub restarts: i32,
    pub total: i64,
    pub scanned: i64,
    pub counts: ScanCounts,
    pub settled: bool,
    /// Devices of earlier runs this one no longer found.
    pub missing: i32,
    /// Hosts found, and what processing made of them so far.
    pub found: i64,
    pub registered: i64,
    pub updated: i64,
}

impl Run {
    pub fn is_active(&self) -> bool {
        matches!(self.state.as_str(), "Pending" | "Running")
    }
}

/// A run to create.
#[derive(Debug, Clone)]
pub struct NewRun<'a> {
    pub namespace: &'a str,
    pub scan: &'a str,
    pub scan_uid: Uuid,
    pub generation: i64,
    pub collector: &'a str,
    pub collector_uid: Uuid,
    pub total: u64,
}

/// A found host waiting to be matched and registered.
#[derive(Debug, Clone)]
pub struct PendingHost {
    pub run: Uuid,
    pub namespace: String,
    pub scan: String,
    /// The collector that ran the run (it polls what the run registers).
    pub collector: String,
    pub host: FoundHost,
}

/// One LLDP link as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub device: String,
    pub local_port: String,
    pub remote_chassis: String,
    pub remote_port: String,
    pub remote_device: Option<String>,
    pub remote_name: String,
    pub remote_address: Option<IpAddr>,
}

const RUN_COLUMNS: &str = "r.id, r.namespace, r.scan, r.scan_uid, r.generation, r.collector, r.collector_uid,
    r.state, r.message, (extract(epoch FROM r.created_at) * 1000)::int8 AS created_ms,
    (extract(epoch FROM r.started_at) * 1000)::int8 AS started_ms,
    (extract(epoch FROM r.finished_at) * 1000)::int8 AS finished_ms,
    (extract(epoch FROM r.last_report_at) * 1000)::int8 AS last_report_ms,
    r.restarts, r.total, r.scanned, r.counts, r.settled, r.missing,
    (SELECT count(*) FROM discovery_hosts h WHERE h.run = r.id) AS found,
    (SELECT count(DISTINCT device) FROM discovery_hosts h WHERE h.run = r.id AND h.outcome IN ('registered', 'proposed')) AS registered,
    (SELECT count(DISTINCT device) FROM discovery_hosts h WHERE h.run = r.id AND h.outcome = 'updated') AS updated";

fn run_of(row: &PgRow) -> Run {
    Run {
        id: row.get("id"),
        namespace: row.get("namespace"),
        scan: row.get("scan"),
        scan_uid: row.get("scan_uid"),
        generation: row.get("generation"),
        collector: row.get("collector"),
        collector_uid: row.get("collector_uid"),
        state: row.get("state"),
        message: row.get("message"),
        created_ms: row.get("created_ms"),
        started_ms: row.get("started_ms"),
        finished_ms: row.get("finished_ms"),
        last_report_ms: row.get("last_report_ms"),
        restarts: row.get("restarts"),
        total: row.get("total"),
        scanned: row.get("scanned"),
        counts: serde_json::from_value(row.get("counts")).unwrap_or_default(),
        settled: row.get("settled"),
        missing: row.get("missing"),
        found: row.get("found"),
        registered: row.get("registered"),
        updated: row.get("updated"),
    }
}

fn state_name(state: ScanState) -> &'static str {
    match state {
        ScanState::Running => "Running",
        ScanState::Succeeded => "Succeeded",
        ScanState::Failed => "Failed",
    }
}

impl Store {
    /// Every scan's newest run and its unfinished one (the same run while one is active).
    pub async fn discovery_latest_runs(&self) -> Result<Vec<Run>, StoreError> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM discovery_runs r WHERE r.id IN (
                 SELECT DISTINCT ON (namespace, scan) id FROM discovery_runs
                 ORDER BY namespace, scan, created_at DESC)
             OR r.state IN ('Pending', 'Running')
             OR NOT r.settled"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(self.pool())
            .await
            .map_err(StoreError::query("read the latest discovery runs"))?;
        Ok(rows.iter().map(run_of).collect())
    }

    /// The newest finished run of a scan.
    pub async fn discovery_last_finished(
        &self,
        namespace: &str,
        scan: &str,
    ) -> Result<Option<Run>, StoreError> {
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM discovery_runs r
             WHERE r.namespace = $1 AND r.scan = $2 AND r.state IN ('Succeeded', 'Failed')
             ORDER BY r.created_at DESC LIMIT 1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(namespace)
            .bind(scan)
            .fetch_optional(self.pool())
            .await
            .map_err(StoreError::query("read a scan's last finished run"))?;
        Ok(row.as_ref().map(run_of))
    }

    /// Whether the scan (this uid) has a run for `generation` (one-shot scans run once).
    pub async fn discovery_ran_generation(
        &self,
        scan_uid: Uuid,
        generation: i64,
    ) -> Result<bool, StoreError> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM discovery_runs WHERE scan_uid = $1 AND generation = $2)",
        )
        .bind(scan_uid)
        .bind(generation)
        .fetch_one(self.pool())
        .await
        .map_err(StoreError::query("check a scan's runs"))
    }

    /// Creates a Pending run unless the scan has an unfinished one; the run's id if created.
    pub async fn discovery_create_run(&self, run: &NewRun<'_>) -> Result<Option<Uuid>, StoreError> {
        let id = Uuid::new_v4();
        let done = sqlx::query(
            "INSERT INTO discovery_runs (id, namespace, scan, scan_uid, generation, collector, collector_uid, state, total)
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'Pending', $8)
             ON CONFLICT (namespace, scan) WHERE state IN ('Pending', 'Running') DO NOTHING",
        )
        .bind(id)
        .bind(run.namespace)
        .bind(run.scan)
        .bind(run.scan_uid)
        .bind(run.generation)
        .bind(run.collector)
        .bind(run.collector_uid)
        .bind(i64::try_from(run.total).unwrap_or(i64::MAX))
        .execute(self.pool())
        .await
        .map_err(StoreError::query("create a discovery run"))?;
        Ok((done.rows_affected() == 1).then_some(id))
    }

    /// Ends an unfinished run as Failed with `message`.
    pub async fn discovery_fail_run(&self, id: Uuid, message: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE discovery_runs SET state = 'Failed', message = $2, finished_at = now()
             WHERE id = $1 AND state IN ('Pending', 'Running')",
        )
        .bind(id)
        .bind(message)
        .execute(self.pool())
        .await
        .map_err(StoreError::query("fail a discovery run"))?;
        Ok(())
    }

    /// Hands an unfinished run to another collector; it starts over there.
    pub async fn discovery_reassign_run(
        &self,
        id: Uuid,
        collector: &str,
        collector_uid: Uuid,
        why: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE discovery_runs SET collector = $2, collector_uid = $3, state = 'Pending',
                    message = $4, restarts = restarts + 1, collector_started_ms = NULL, scanned = 0
             WHERE id = $1 AND state IN ('Pending', 'Running')",
        )
        .bind(id)
        .bind(collector)
        .bind(collector_uid)
        .bind(why)
        .execute(self.pool())
        .await
        .map_err(StoreError::query("reassign a discovery run"))?;
        Ok(())
    }

    /// The unfinished runs assigned to a collector: (run, scan name).
    pub async fn discovery_runs_of(
        &self,
        collector_uid: Uuid,
    ) -> Result<Vec<(Uuid, String)>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, scan FROM discovery_runs
             WHERE collector_uid = $1 AND state IN ('Pending', 'Running') ORDER BY created_at",
        )
        .bind(collector_uid)
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::query("read a collector's discovery runs"))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Every unprocessed host of every run, oldest first, at most `limit`.
    pub async fn discovery_pending_hosts(
        &self,
        limit: i64,
    ) -> Result<Vec<PendingHost>, StoreError> {
        let rows = sqlx::query(
            "SELECT h.run, r.namespace, r.scan, h.facts, r.collector FROM discovery_hosts h
             JOIN discovery_runs r ON r.id = h.run
             WHERE NOT h.processed ORDER BY h.found_at LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::query("read found hosts to register"))?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                Some(PendingHost {
                    run: r.get(0),
                    namespace: r.get(1),
                    scan: r.get(2),
                    collector: r.get(4),
                    host: serde_json::from_value(r.get(3)).ok()?,
                })
            })
            .collect())
    }

    /// Records what processing made of hosts: (run, address, outcome, device).
    pub async fn discovery_mark_processed(
        &self,
        done: &[(Uuid, IpAddr, &str, Option<&str>)],
    ) -> Result<(), StoreError> {
        if done.is_empty() {
            return Ok(());
        }
        let runs: Vec<Uuid> = done.iter().map(|d| d.0).collect();
        let addresses: Vec<String> = done.iter().map(|d| d.1.to_string()).collect();
        let outcomes: Vec<&str> = done.iter().map(|d| d.2).collect();
        let devices: Vec<Option<&str>> = done.iter().map(|d| d.3).collect();
        sqlx::query(
            "UPDATE discovery_hosts h SET processed = true, outcome = d.outcome, device = d.device
             FROM unnest($1::uuid[], $2::inet[], $3::text[], $4::text[]) AS d(run, address, outcome, device)
             WHERE h.run = d.run AND h.address = d.address",
        )
        .bind(&runs)
        .bind(&addresses)
        .bind(&outcomes)
        .bind(&devices)
        .execute(self.pool())
        .await
        .map_err(StoreError::query("mark found hosts processed"))?;
        Ok(())
    }

    /// The hosts of unsettled runs of a namespace already proposed: (Device name, host), so
    /// that another address of the same box, processed later, joins its proposal.
    pub async fn discovery_proposed(
        &self,
        namespace: &str,
    ) -> Result<Vec<(String, FoundHost)>, StoreError> {
        let rows = sqlx::query(
            "SELECT h.device, h.facts FROM discovery_hosts h JOIN discovery_runs r ON r.id = h.run
             WHERE r.namespace = $1 AND NOT r.settled AND h.outcome = 'proposed'",
        )
        .bind(namespace)
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::query("read proposed hosts"))?;
        Ok(rows
            .iter()
            .filter_map(|r| {
                Some((
                    r.get::<Option<String>, _>(0)?,
                    serde_json::from_value(r.get(1)).ok()?,
                ))
            })
            .collect())
    }

    /// Whether a finished run still has hosts to process.
    pub async fn discovery_has_pending(&self, run: Uuid) -> Result<bool, StoreError> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM discovery_hosts WHERE run = $1 AND NOT processed)",
        )
        .bind(run)
        .fetch_one(self.pool())
        .await
        .map_err(StoreError::query("check a run's pending hosts"))
    }

    /// The hosts of a run with their outcome: (address, facts, outcome, device).
    pub async fn discovery_run_hosts(
        &self,
        run: Uuid,
    ) -> Result<Vec<(FoundHost, Option<String>, Option<String>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT facts, outcome, device FROM discovery_hosts WHERE run = $1 ORDER BY address",
        )
        .bind(run)
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::query("read a run's hosts"))?;
        Ok(rows
            .iter()
            .filter_map(|r| Some((serde_json::from_value(r.get(0)).ok()?, r.get(1), r.get(2))))
            .collect())
    }

    /// Marks a finished run as processed, with the number of Devices it no longer found.
    pub async fn discovery_settle(&self, run: Uuid, missing: usize) -> Result<(), StoreError> {
        sqlx::query("UPDATE discovery_runs SET settled = true, missing = $2 WHERE id = $1")
            .bind(run)
            .bind(i32::try_from(missing).unwrap_or(i32::MAX))
            .execute(self.pool())
            .await
            .map_err(StoreError::query("settle a discovery run"))?;
        Ok(())
    }

    /// Replaces the LLDP links a Device reported.
    pub async fn discovery_replace_links(
        &self,
        namespace: &str,
        device: &str,
        links: &[Link],
    ) -> Result<(), StoreError> {
        let mut tx = self
            .pool()
            .begin()
            .await
            .map_err(StoreError::query("begin topology update"))?;
        sqlx::query("DELETE FROM topology_links WHERE namespace = $1 AND device = $2")
            .bind(namespace)
            .bind(device)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("forget a device's links"))?;
        for l in links {
            sqlx::query(
                "INSERT INTO topology_links (namespace, device, local_port, remote_chassis, remote_port,
                     remote_device, remote_name, remote_address, seen_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::inet, now())
                 ON CONFLICT DO NOTHING",
            )
            .bind(namespace)
            .bind(device)
            .bind(&l.local_port)
            .bind(&l.remote_chassis)
            .bind(&l.remote_port)
            .bind(&l.remote_device)
            .bind(&l.remote_name)
            .bind(l.remote_address.map(|a| a.to_string()))
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("store an LLDP link"))?;
        }
        tx.commit()
            .await
            .map_err(StoreError::query("commit topology update"))
    }

    /// Every link of a namespace.
    pub async fn discovery_links(&self, namespace: &str) -> Result<Vec<Link>, StoreError> {
        links_in(self.pool(), namespace).await
    }

    /// Creates a Device discovery found (standalone mode). False when the name is taken.
    pub async fn discovery_create_device(
        &self,
        namespace: &str,
        name: &str,
        labels: &Value,
        spec: &Value,
        status: &Value,
        scan: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO objects (namespace, kind, name, uid, labels, spec, status, managed_by, source)
             VALUES ($1, 'Device', $2, gen_random_uuid(), $3, $4, $5, $6, $7)
             ON CONFLICT (namespace, kind, name) DO NOTHING",
        )
        .bind(namespace)
        .bind(name)
        .bind(labels)
        .bind(spec)
        .bind(status)
        .bind(MANAGED_BY)
        .bind(format!("DiscoveryScan {namespace}/{scan}"))
        .execute(self.pool())
        .await
        .map_err(StoreError::query("create a discovered device"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Replaces the spec of a Device discovery owns; a Device someone else took over (a
    /// manifest of the same name) is left alone. True when it changed.
    pub async fn discovery_update_device_spec(
        &self,
        namespace: &str,
        name: &str,
        spec: &Value,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE objects SET spec = $3, generation = generation + 1,
                    resource_version = nextval('object_resource_version'), updated_at = now()
             WHERE namespace = $1 AND kind = 'Device' AND name = $2 AND managed_by = $4
               AND spec IS DISTINCT FROM $3",
        )
        .bind(namespace)
        .bind(name)
        .bind(spec)
        .bind(MANAGED_BY)
        .execute(self.pool())
        .await
        .map_err(StoreError::query("update a discovered device"))?;
        Ok(done.rows_affected() == 1)
    }
}

/// Stores the scan reports of a collector batch inside its transaction: progress and counts
/// on the run (a new `startedMs` counts a restart), found hosts (a host found again keeps
/// the newer facts and is processed again). Reports of runs that are not this collector's
/// or already ended (a reassigned run's old collector) are ignored; their number returned.
pub async fn record_reports(
    tx: &mut Transaction<'_, Postgres>,
    collector_uid: Uuid,
    reports: &[ScanReport],
) -> Result<u64, StoreError> {
    let mut ignored = 0;
    for report in reports {
        let finished = report.state != ScanState::Running;
        let updated = sqlx::query(
            "UPDATE discovery_runs SET
                 state = $3,
                 message = $4,
                 started_at = CASE WHEN collector_started_ms IS DISTINCT FROM $5
                                   THEN to_timestamp($5 / 1000.0) ELSE started_at END,
                 restarts = restarts + (collector_started_ms IS NOT NULL AND collector_started_ms <> $5)::int,
                 collector_started_ms = $5,
                 last_report_at = to_timestamp($6 / 1000.0),
                 finished_at = CASE WHEN $9 THEN to_timestamp($6 / 1000.0) END,
                 total = $7, scanned = $8, counts = $10
             WHERE id = $1 AND collector_uid = $2 AND state IN ('Pending', 'Running')",
        )
        .bind(report.run)
        .bind(collector_uid)
        .bind(state_name(report.state))
        .bind(&report.error)
        .bind(report.started_ms)
        .bind(report.t)
        .bind(i64::try_from(report.total).unwrap_or(i64::MAX))
        .bind(i64::try_from(report.scanned).unwrap_or(i64::MAX))
        .bind(finished)
        .bind(json!(report.counts))
        .execute(&mut **tx)
        .await
        .map_err(StoreError::query("record a discovery report"))?;
        if updated.rows_affected() == 0 {
            ignored += 1;
            continue;
        }
        if report.hosts.is_empty() {
            continue;
        }
        let addresses: Vec<String> = report.hosts.iter().map(|h| h.address.to_string()).collect();
        let facts: Vec<Value> = report.hosts.iter().map(|h| json!(h)).collect();
        sqlx::query(
            "INSERT INTO discovery_hosts (run, address, facts, found_at)
             SELECT $1, d.address, d.facts, to_timestamp($4 / 1000.0)
             FROM unnest($2::inet[], $3::jsonb[]) AS d(address, facts)
             ON CONFLICT (run, address) DO UPDATE SET facts = EXCLUDED.facts,
                 found_at = EXCLUDED.found_at, processed = false",
        )
        .bind(report.run)
        .bind(&addresses)
        .bind(&facts)
        .bind(report.t)
        .execute(&mut **tx)
        .await
        .map_err(StoreError::query("record found hosts"))?;
    }
    Ok(ignored)
}

/// Every link of a namespace, on any connection (the inhibition check reads them inside its
/// transaction).
pub async fn links_in<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    namespace: &str,
) -> Result<Vec<Link>, StoreError> {
    let rows = sqlx::query(
        "SELECT device, local_port, remote_chassis, remote_port, remote_device, remote_name,
                host(remote_address)
         FROM topology_links WHERE namespace = $1 ORDER BY device, local_port",
    )
    .bind(namespace)
    .fetch_all(executor)
    .await
    .map_err(StoreError::query("read the topology"))?;
    Ok(rows
        .iter()
        .map(|r| Link {
            device: r.get(0),
            local_port: r.get(1),
            remote_chassis: r.get(2),
            remote_port: r.get(3),
            remote_device: r.get(4),
            remote_name: r.get(5),
            remote_address: r.get::<Option<String>, _>(6).and_then(|a| a.parse().ok()),
        })
        .collect())
}
