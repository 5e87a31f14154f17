//! The discovery engine: one task that, every pass (a few seconds, or when a collector's
//! report arrives),
//!
//! 1. starts the runs that are due on a Ready collector of the scan, hands a run whose
//!    collector stopped reporting to another, and fails a run that outlived its budget;
//! 2. matches every found host to a Device and registers, proposes or reports it;
//! 3. settles finished runs: Devices the run no longer found are marked not responding,
//!    LLDP links are stored, proposals written;
//! 4. writes each scan's status (phase, progress, last run, next run, hosts).
//!
//! Everything it decides from is in PostgreSQL (runs, hosts) or the index, so a restarted
//! operator carries on where the last one stopped. Host processing is serialised here, so
//! two overlapping scans never register the same box twice.
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::IpAddr,
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use cdot_crds::{
    device::{DeviceClass, DeviceSpec, DeviceStatus, DiscoveredDevice},
    discovery_scan::{
        DiscoveryScanSpec, DiscoveryScanStatus, RegistrationMode, ScanHost, ScanPhase,
        ScanProgress, ScanRun,
    },
    kind::Kind,
    validation::Validate,
};
use ipnet::IpNet;
use jiff::Timestamp;
use serde_json::{Value, json};
use tokio::{
    sync::{Notify, watch},
    task::JoinHandle,
};
use uuid::Uuid;

use super::{
    classify::Classifier,
    collectors::{self, Collector},
    identity::{Directory, Keys},
    register,
    schedule::{self, History, Schedule},
    store::{Link, NewRun, PendingHost, Run},
};
use crate::{
    changes::Changes,
    index::Index,
    kubernetes::devices::ClusterDevices,
    secrets::Secrets,
    store::{StatusPatch, Store, StoreError, StoredObject},
};

/// The advisory lock one discovery engine holds (`cdot-discovery` as an int8).
const DISCOVERY_LOCK: i64 = 0x6364_6f74_6469_7363;
/// Hosts processed per pass.
const HOSTS_PER_PASS: i64 = 2_000;
/// Hosts listed in a scan's status (the API lists all).
const STATUS_HOSTS: usize = 256;
/// A run whose collector is not Ready this long goes to another collector.
const REASSIGN_AFTER_MS: i64 = 60_000;
/// Shortest budget of a run, whatever its size.
const MIN_BUDGET_MS: i64 = 10 * 60_000;

/// Settings of the engine (flags of `standalone` and `kubernetes`).
#[derive(Debug, Clone, clap::Args)]
pub struct Settings {
    /// How often discovery starts due runs and registers what collectors found (a report
    /// also wakes it).
    #[arg(long = "discovery-interval", env = "CDOT_DISCOVERY_INTERVAL", value_parser = crate::cli::parse_duration, default_value = "5s")]
    pub interval: Duration,
    /// Where DiscoveryScans in mode `Propose` write the Device manifests they propose
    /// (`<dir>/<namespace>/<scan>.yaml`), for a person to review and commit.
    #[arg(
        long = "discovered-dir",
        env = "CDOT_DISCOVERED_DIR",
        default_value = "discovered"
    )]
    pub proposals_dir: PathBuf,
}

/// Wakes the engine (a report arrived) from the API.
#[derive(Clone, Default)]
pub struct Discovery {
    wake: Arc<Notify>,
}

impl Discovery {
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Starts the engine; it ends when `shutdown` turns true.
    /// Starts the engine; its passes begin once `ready` (the first desired state, Secrets
    /// included, is loaded: before it, every credential would look missing).
    #[allow(clippy::too_many_arguments)]
    pub fn spawn(
        &self,
        store: Store,
        index: Index,
        secrets: Arc<Secrets>,
        cluster: Option<Arc<ClusterDevices>>,
        changes: Changes,
        settings: Settings,
        ready: Arc<std::sync::atomic::AtomicBool>,
        mut shutdown: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        let wake = self.wake.clone();
        let mut engine = Engine {
            lock: None,
            store,
            index,
            secrets,
            cluster,
            changes,
            settings,
            written: HashMap::new(),
            hosts_of: HashMap::new(),
        };
        tokio::spawn(async move {
            loop {
                let pass = tracing::info_span!("discovery_pass");
                if !ready.load(std::sync::atomic::Ordering::Acquire) {
                    tokio::select! {
                        _ = shutdown.wait_for(|stop| *stop) => break,
                        () = tokio::time::sleep(Duration::from_millis(200)) => continue,
                    }
                }
                if let Err(e) =
                    tracing::Instrument::instrument(engine.pass(Timestamp::now()), pass).await
                {
                    tracing::warn!(error = %e, "discovery pass failed; retrying");
                }
                tokio::select! {
                    _ = shutdown.wait_for(|stop| *stop) => break,
                    () = wake.notified() => {}
                    () = tokio::time::sleep(engine.settings.interval) => {}
                }
            }
        })
    }
}

/// What the scheduler decided for a scan, for its status.
#[derive(Debug, Clone, Default)]
struct Planned {
    next_run: Option<Timestamp>,
    problems: Vec<String>,
}

/// A DiscoveryScan with a valid spec.
struct Scan {
    namespace: String,
    name: String,
    uid: Uuid,
    generation: i64,
    created: Timestamp,
    labels: BTreeMap<String, String>,
    spec: DiscoveryScanSpec,
}

struct Engine {
    /// The connection holding the discovery lock: one engine of all replicas works at a
    /// time (its lock goes with the connection when a replica dies).
    lock: Option<sqlx::pool::PoolConnection<sqlx::Postgres>>,
    store: Store,
    index: Index,
    secrets: Arc<Secrets>,
    /// Kubernetes mode: registered Devices are created through the API server.
    cluster: Option<Arc<ClusterDevices>>,
    changes: Changes,
    settings: Settings,
    /// The status last written per scan, so unchanged ones are not written again.
    written: HashMap<(String, String), Value>,
    /// The status hosts of a settled run, read once.
    hosts_of: HashMap<Uuid, Vec<ScanHost>>,
}

impl Engine {
    /// Whether this engine holds the discovery lock (taking it when free).
    async fn holds_lock(&mut self) -> Result<bool, StoreError> {
        if let Some(conn) = &mut self.lock {
            if sqlx::query("SELECT 1").execute(&mut **conn).await.is_ok() {
                return Ok(true);
            }
            // The connection died, and the lock with it.
            self.lock = None;
        }
        let mut conn = self
            .store
            .pool()
            .acquire()
            .await
            .map_err(StoreError::query(
                "take a connection for the discovery lock",
            ))?;
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(DISCOVERY_LOCK)
            .fetch_one(&mut *conn)
            .await
            .map_err(StoreError::query("take the discovery lock"))?;
        if got {
            tracing::info!("discovery engine active on this replica");
            self.lock = Some(conn);
        }
        Ok(got)
    }

    async fn pass(&mut self, now: Timestamp) -> Result<(), StoreError> {
        if !self.holds_lock().await? {
            return Ok(());
        }
        let scans = self.scans().await?;
        let runs = self.store.discovery_latest_runs().await?;
        let now_text = now.to_string();
        let collectors: Vec<Collector> = self
            .store
            .devices_of_class("Collector")
            .await?
            .iter()
            .filter_map(|o| Collector::of(o, &now_text))
            .collect();
        // A run whose scan was deleted (or recreated: another uid) ends, so the scan's name
        // is free for new runs.
        for run in runs.iter().filter(|r| r.is_active()) {
            let exists = scans.iter().any(|s| {
                s.namespace == run.namespace && s.name == run.scan && s.uid == run.scan_uid
            });
            if !exists
                && self
                    .index
                    .snapshot()
                    .get(Kind::DiscoveryScan, &run.namespace, &run.scan)
                    .is_none_or(|o| o.uid != run.scan_uid)
            {
                self.store
                    .discovery_fail_run(run.id, "the DiscoveryScan was deleted")
                    .await?;
            }
        }
        let mut next_runs = HashMap::new();
        for scan in &scans {
            let planned = self.schedule(scan, &runs, &collectors, now).await?;
            next_runs.insert((scan.namespace.clone(), scan.name.clone()), planned);
        }
        self.register(&scans, &now_text).await?;
        let runs = self.store.discovery_latest_runs().await?;
        for run in runs.iter().filter(|r| !r.is_active() && !r.settled) {
            if !self.store.discovery_has_pending(run.id).await? {
                self.settle(run, &scans).await?;
            }
        }
        self.write_statuses(&scans, &runs, &next_runs).await
    }

    /// The scans of the index whose spec is valid.
    async fn scans(&self) -> Result<Vec<Scan>, StoreError> {
        let snapshot = self.index.snapshot();
        let mut out = Vec::new();
        for object in snapshot.of_kind(Kind::DiscoveryScan) {
            let Ok(spec) = serde_json::from_value::<DiscoveryScanSpec>(object.spec.clone()) else {
                continue;
            };
            if !spec.validate().is_empty() {
                continue;
            }
            out.push(Scan {
                namespace: object.namespace.clone(),
                name: object.name.clone(),
                uid: object.uid,
                generation: object.generation,
                created: Timestamp::UNIX_EPOCH,
                labels: object.labels.clone(),
                spec,
            });
        }
        // Creation times are not in the index; a schedule counts from the stored object.
        let stored = self.store.objects_of_kind(Kind::DiscoveryScan).await?;
        for scan in &mut out {
            if let Some(o) = stored
                .iter()
                .find(|o| o.namespace == scan.namespace && o.name == scan.name)
            {
                scan.created = o.created_at.parse().unwrap_or(Timestamp::UNIX_EPOCH);
            }
        }
        Ok(out)
    }

    /// Supervises the scan's unfinished run and starts a new one when due; the next run
    /// time and what keeps a due run from starting.
    async fn schedule(
        &self,
        scan: &Scan,
        runs: &[Run],
        collectors: &[Collector],
        now: Timestamp,
    ) -> Result<Planned, StoreError> {
        let mine: Vec<&Run> = runs
            .iter()
            .filter(|r| r.namespace == scan.namespace && r.scan == scan.name)
            .collect();
        let active = mine.iter().find(|r| r.is_active()).copied();
        let site = collectors::scan_site(&scan.spec, &scan.labels);
        let candidates: Vec<&Collector> = collectors
            .iter()
            .filter(|c| collectors::selects(&scan.spec, site, &scan.namespace, c))
            .collect();
        let load = |uid: Uuid| {
            runs.iter()
                .filter(|r| r.is_active() && r.collector_uid == uid)
                .count()
        };
        if let Some(run) = active {
            self.supervise(scan, run, &candidates, &load, now).await?;
        }
        let schedule = match &scan.spec.schedule {
            Some(expression) => match Schedule::parse(expression, scan.spec.time_zone.as_deref()) {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::warn!(namespace = %scan.namespace, scan = %scan.name, "{e}");
                    return Ok(Planned {
                        next_run: None,
                        problems: vec![e],
                    });
                }
            },
            None => None,
        };
        let ran_this_generation = if schedule.is_none() {
            self.store
                .discovery_ran_generation(scan.uid, scan.generation)
                .await?
        } else {
            false
        };
        let history = History {
            active: active.is_some(),
            last_created: mine
                .iter()
                .map(|r| r.created_ms)
                .max()
                .and_then(|ms| Timestamp::from_millisecond(ms).ok()),
            ran_this_generation,
        };
        let decision = schedule::decide(
            schedule.as_ref(),
            scan.spec.suspend,
            scan.created,
            history,
            now,
        );
        let mut problems =
            super::assign::credential_problems(&scan.spec, &scan.namespace, &self.secrets);
        let chosen = collectors::choose(candidates.iter().copied(), load);
        if decision.start_now && chosen.is_none() {
            let names: Vec<&str> = candidates.iter().map(|c| c.name.as_str()).collect();
            problems.push(if names.is_empty() {
                "a run is due but no Collector device is selected for it".to_owned()
            } else {
                format!(
                    "a run is due but no selected collector is Ready (reporting): {}",
                    names.join(", ")
                )
            });
        }
        if decision.start_now
            && let Some(collector) = chosen
        {
            let total = scan.spec.address_count().unwrap_or_default();
            let created = self
                .store
                .discovery_create_run(&NewRun {
                    namespace: &scan.namespace,
                    scan: &scan.name,
                    scan_uid: scan.uid,
                    generation: scan.generation,
                    collector: &collector.name,
                    collector_uid: collector.uid,
                    total,
                })
                .await?;
            if let Some(run) = created {
                tracing::info!(namespace = %scan.namespace, scan = %scan.name, %run, collector = %collector.name, addresses = total, "discovery run started");
            }
        }
        Ok(Planned {
            next_run: decision.next_run,
            problems,
        })
    }

    /// Hands a run whose collector stopped reporting to another Ready one; fails a run that
    /// outlived its budget.
    async fn supervise(
        &self,
        scan: &Scan,
        run: &Run,
        candidates: &[&Collector],
        load: &impl Fn(Uuid) -> usize,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let now_ms = now.as_millisecond();
        let budget = budget_ms(&scan.spec);
        if now_ms - run.created_ms > budget {
            let message = format!(
                "timed out: not finished {}s after it started (the budget for {} addresses at {}/s)",
                budget / 1000,
                run.total,
                scan.spec.rate_limit
            );
            tracing::warn!(namespace = %scan.namespace, scan = %scan.name, run = %run.id, "{message}");
            return self.store.discovery_fail_run(run.id, &message).await;
        }
        let own_ready = candidates
            .iter()
            .any(|c| c.uid == run.collector_uid && c.ready);
        let quiet_since = run.last_report_ms.unwrap_or(run.created_ms);
        if own_ready || now_ms - quiet_since < REASSIGN_AFTER_MS {
            return Ok(());
        }
        let others = candidates
            .iter()
            .copied()
            .filter(|c| c.uid != run.collector_uid);
        if let Some(next) = collectors::choose(others, load) {
            let why = format!(
                "collector {} stopped reporting; handed to {} (starting over)",
                run.collector, next.name
            );
            tracing::warn!(namespace = %scan.namespace, scan = %scan.name, run = %run.id, "{why}");
            self.store
                .discovery_reassign_run(run.id, &next.name, next.uid, &why)
                .await?;
        }
        Ok(())
    }

    /// Matches and registers found hosts, a namespace at a time.
    async fn register(&self, scans: &[Scan], now: &str) -> Result<(), StoreError> {
        let pending = self.store.discovery_pending_hosts(HOSTS_PER_PASS).await?;
        let mut by_namespace: BTreeMap<String, Vec<PendingHost>> = BTreeMap::new();
        for host in pending {
            by_namespace
                .entry(host.namespace.clone())
                .or_default()
                .push(host);
        }
        for (namespace, hosts) in by_namespace {
            let devices = self.store.list_objects(&namespace, Kind::Device).await?;
            let mut registrar = Registrar::new(&namespace, &devices, now);
            for (name, host) in self.store.discovery_proposed(&namespace).await? {
                registrar.directory.insert(&name, Keys::of_host(&host));
                registrar.proposed.insert(name);
            }
            for pending in &hosts {
                let scan = scans
                    .iter()
                    .find(|s| s.namespace == namespace && s.name == pending.scan);
                registrar
                    .host(&self.store, self.cluster.as_deref(), scan, pending)
                    .await?;
            }
            let Registrar {
                patches,
                done,
                created,
                ..
            } = registrar;
            self.store.patch_statuses(&patches).await?;
            let done: Vec<(Uuid, IpAddr, &str, Option<&str>)> = done
                .iter()
                .map(|(run, address, outcome, device)| {
                    (*run, *address, *outcome, device.as_deref())
                })
                .collect();
            self.store.discovery_mark_processed(&done).await?;
            for name in patches.iter().map(|p| &p.name).chain(&created) {
                self.changes.changed(Kind::Device, &namespace, name);
            }
        }
        Ok(())
    }

    /// After a finished run's hosts are processed: marks the Devices it no longer found,
    /// stores the LLDP links of those it found, writes proposals.
    async fn settle(&mut self, run: &Run, scans: &[Scan]) -> Result<(), StoreError> {
        let hosts = self.store.discovery_run_hosts(run.id).await?;
        let scan = scans
            .iter()
            .find(|s| s.namespace == run.namespace && s.name == run.scan);
        let devices = self
            .store
            .list_objects(&run.namespace, Kind::Device)
            .await?;
        let mut directory = Directory::default();
        for d in &devices {
            if let (Ok(spec), Ok(status)) = (
                serde_json::from_value::<DeviceSpec>(d.spec.clone()),
                serde_json::from_value::<DeviceStatus>(d.status.clone()),
            ) {
                directory.insert(&d.name, Keys::of_device(&spec, &status));
            }
        }
        // LLDP links, resolved against every Device known now.
        for (host, _, device) in &hosts {
            let (Some(device), Some(facts)) = (device, &host.snmp) else {
                continue;
            };
            let links: Vec<Link> = facts
                .neighbours
                .iter()
                .map(|n| Link {
                    device: device.clone(),
                    local_port: n.local_port.clone(),
                    remote_chassis: n.chassis_id.clone(),
                    remote_port: n.port_id.clone(),
                    remote_device: directory
                        .by_chassis_or_address(&n.chassis_id, n.management_address)
                        .filter(|d| d != device),
                    remote_name: n.sys_name.clone(),
                    remote_address: n.management_address,
                })
                .collect();
            self.store
                .discovery_replace_links(&run.namespace, device, &links)
                .await?;
        }
        let mut not_found = 0;
        if let Some(scan) = scan.filter(|_| run.state == "Succeeded") {
            let seen: HashSet<&str> = hosts.iter().filter_map(|h| h.2.as_deref()).collect();
            let patches = missing(scan, &devices, &seen);
            not_found = patches.len();
            if !patches.is_empty() {
                tracing::info!(namespace = %run.namespace, scan = %run.scan, devices = patches.len(), "devices not found again; marked not responding");
                self.store.patch_statuses(&patches).await?;
                for p in &patches {
                    self.changes.changed(Kind::Device, &p.namespace, &p.name);
                }
            }
            if scan.spec.registration.mode == RegistrationMode::Propose {
                self.write_proposals(scan, &run.collector, &hosts);
            }
        }
        self.hosts_of.remove(&run.id);
        self.store.discovery_settle(run.id, not_found).await
    }

    /// Writes the Device manifests of mode `Propose` for review: one file per scan.
    fn write_proposals(
        &self,
        scan: &Scan,
        collector: &str,
        hosts: &[(
            cdot_crds::wire::discovery::FoundHost,
            Option<String>,
            Option<String>,
        )],
    ) {
        let classifier = Classifier::new(&scan.spec.registration);
        // One Device per proposed name, however many of its addresses answered.
        let mut proposed: BTreeMap<&str, (BTreeMap<String, String>, Value)> = BTreeMap::new();
        for (host, outcome, device) in hosts {
            let (Some("proposed"), Some(name)) = (outcome.as_deref(), device) else {
                continue;
            };
            let keys = Keys::of_host(host);
            match proposed.get_mut(name.as_str()) {
                Some((_, spec)) => {
                    if let Some(wider) =
                        register::widened_spec(spec, &scan.spec, collector, host, &keys)
                    {
                        *spec = wider;
                    }
                }
                None => {
                    let class = classify(&classifier, host);
                    let made =
                        register::new_device(&scan.name, &scan.spec, collector, host, &keys, class);
                    proposed.insert(name, made);
                }
            }
        }
        let documents: Vec<Value> = proposed
            .iter()
            .map(|(name, (labels, spec))| register::manifest(&scan.namespace, name, labels, spec))
            .collect();
        let dir = self.settings.proposals_dir.join(&scan.namespace);
        let path = dir.join(format!("{}.yaml", scan.name));
        let mut text = format!(
            "# Devices DiscoveryScan {}/{} found that no Device matches: review, then commit\n# the ones to keep into the manifests. Rewritten after every run.\n",
            scan.namespace, scan.name
        );
        for d in &documents {
            match serde_saphyr::to_string(d) {
                Ok(yaml) => {
                    text.push_str("---\n");
                    text.push_str(&yaml);
                }
                Err(e) => tracing::warn!(error = %e, "failed to render a proposed Device"),
            }
        }
        let written = std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, text));
        match written {
            Ok(()) => {
                tracing::info!(path = %path.display(), devices = documents.len(), "proposed Devices written")
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "failed to write proposed Devices")
            }
        }
    }

    /// Each scan's status: its newest run's phase and progress, the last finished run, the
    /// next scheduled time, the hosts of the last finished run.
    async fn write_statuses(
        &mut self,
        scans: &[Scan],
        runs: &[Run],
        planned: &HashMap<(String, String), Planned>,
    ) -> Result<(), StoreError> {
        let mut patches = Vec::new();
        for scan in scans {
            let key = (scan.namespace.clone(), scan.name.clone());
            let mine = runs
                .iter()
                .filter(|r| r.namespace == scan.namespace && r.scan == scan.name);
            let newest = mine.clone().max_by_key(|r| r.created_ms);
            let finished = match mine.filter(|r| !r.is_active()).max_by_key(|r| r.created_ms) {
                Some(run) => Some(run.clone()),
                None => {
                    self.store
                        .discovery_last_finished(&scan.namespace, &scan.name)
                        .await?
                }
            };
            let hosts = match finished.as_ref().filter(|r| r.settled) {
                Some(run) => self.status_hosts(run.id).await?,
                None => Vec::new(),
            };
            let status = DiscoveryScanStatus {
                phase: Some(newest.map_or(ScanPhase::Pending, |r| phase(&r.state))),
                progress: newest.map(|r| ScanProgress {
                    scanned: u64::try_from(r.scanned).unwrap_or_default(),
                    total: u64::try_from(r.total).unwrap_or_default(),
                    found: u64::try_from(r.found).unwrap_or_default(),
                    registered: u64::try_from(r.registered).unwrap_or_default(),
                    updated: u64::try_from(r.updated).unwrap_or_default(),
                }),
                last_run: finished.as_ref().map(summary),
                next_run: planned
                    .get(&key)
                    .and_then(|p| p.next_run)
                    .map(|t| t.to_string()),
                problems: planned
                    .get(&key)
                    .map(|p| p.problems.clone())
                    .unwrap_or_default(),
                hosts,
                ..Default::default()
            };
            let mut value = serde_json::to_value(&status).unwrap_or_default();
            // Owned here: absent fields are written as null so that a stale one goes away.
            for field in [
                "phase", "progress", "lastRun", "nextRun", "problems", "hosts",
            ] {
                value
                    .as_object_mut()
                    .map(|m| m.entry(field).or_insert(Value::Null));
            }
            if let Some(m) = value.as_object_mut() {
                m.remove("conditions");
            }
            if self.written.get(&key) != Some(&value) {
                patches.push(StatusPatch {
                    kind: Kind::DiscoveryScan,
                    namespace: scan.namespace.clone(),
                    name: scan.name.clone(),
                    status: value.clone(),
                });
                self.written.insert(key, value);
            }
        }
        if !patches.is_empty() {
            self.store.patch_statuses(&patches).await?;
            for p in &patches {
                self.changes.status_changed(p.kind, &p.namespace, &p.name);
            }
        }
        Ok(())
    }

    async fn status_hosts(&mut self, run: Uuid) -> Result<Vec<ScanHost>, StoreError> {
        if let Some(hosts) = self.hosts_of.get(&run) {
            return Ok(hosts.clone());
        }
        let hosts: Vec<ScanHost> = self
            .store
            .discovery_run_hosts(run)
            .await?
            .into_iter()
            .take(STATUS_HOSTS)
            .map(|(host, outcome, device)| ScanHost {
                address: host.address.to_string(),
                sys_name: host
                    .snmp
                    .as_ref()
                    .map(|f| f.sys_name.clone())
                    .filter(|s| !s.is_empty()),
                class: None,
                device,
                outcome: outcome.unwrap_or_default(),
            })
            .collect();
        self.hosts_of.insert(run, hosts.clone());
        Ok(hosts)
    }
}

fn phase(state: &str) -> ScanPhase {
    match state {
        "Running" => ScanPhase::Running,
        "Succeeded" => ScanPhase::Succeeded,
        "Failed" => ScanPhase::Failed,
        _ => ScanPhase::Pending,
    }
}

fn rfc3339(ms: Option<i64>) -> Option<String> {
    ms.and_then(|ms| Timestamp::from_millisecond(ms).ok())
        .map(|t| t.to_string())
}

fn summary(run: &Run) -> ScanRun {
    let started = run.started_ms.unwrap_or(run.created_ms);
    ScanRun {
        id: run.id.to_string(),
        collector: Some(run.collector.clone()),
        phase: Some(phase(&run.state)),
        started: rfc3339(Some(started)).unwrap_or_default(),
        finished: rfc3339(run.finished_ms),
        duration_seconds: run
            .finished_ms
            .map(|end| (end - started).max(0) as f64 / 1000.0),
        scanned: u64::try_from(run.scanned).unwrap_or_default(),
        total: u64::try_from(run.total).unwrap_or_default(),
        found: u64::try_from(run.found).unwrap_or_default(),
        registered: u64::try_from(run.registered).unwrap_or_default(),
        updated: u64::try_from(run.updated).unwrap_or_default(),
        missing: u64::try_from(run.missing).unwrap_or_default(),
        icmp_probed: run.counts.icmp_probed,
        icmp_answered: run.counts.icmp_answered,
        snmp_probed: run.counts.snmp_probed,
        snmp_answered: run.counts.snmp_answered,
        errors: run.counts.errors.clone(),
        restarts: u32::try_from(run.restarts).unwrap_or_default(),
        message: run.message.clone(),
    }
}

/// How long a run may take: four times what its probes need at the spec's rate, timeout
/// and concurrency (every address silent, every retry used), and at least ten minutes.
fn budget_ms(spec: &DiscoveryScanSpec) -> i64 {
    let addresses = spec.address_count().unwrap_or_default() as f64;
    let tries = f64::from(spec.retries) + 1.0;
    let timeout_ms =
        cdot_crds::common::parse_duration(&spec.timeout).map_or(1_000.0, |d| d.as_millis() as f64);
    let by_rate = addresses * tries * 1_000.0 / f64::from(spec.rate_limit.max(1));
    let by_timeouts = addresses * tries * timeout_ms / f64::from(spec.concurrency.max(1));
    let snmp = if spec.methods.snmp.is_some() {
        2.0
    } else {
        1.0
    };
    ((by_rate.max(by_timeouts) * snmp * 4.0) as i64).max(MIN_BUDGET_MS)
}

fn classify(classifier: &Classifier, host: &cdot_crds::wire::discovery::FoundHost) -> DeviceClass {
    classifier.classify(
        host.snmp
            .as_ref()
            .map(|f| (f.sys_object_id.as_str(), f.sys_descr.as_str())),
    )
}

/// The Devices an earlier run of this scan found, whose addresses this run covered, that it
/// did not find: `status.discovery.responding` turns false (kept, never deleted).
fn missing(scan: &Scan, devices: &[StoredObject], seen: &HashSet<&str>) -> Vec<StatusPatch> {
    let parse = |list: &[String]| -> Vec<IpNet> {
        list.iter()
            .filter_map(|s| cdot_crds::common::parse_cidr(s).ok())
            .collect()
    };
    let (targets, excludes) = (parse(&scan.spec.targets), parse(&scan.spec.excludes));
    let covered = |a: &IpAddr| {
        targets.iter().any(|t| t.contains(a)) && !excludes.iter().any(|e| e.contains(a))
    };
    devices
        .iter()
        .filter(|d| !seen.contains(d.name.as_str()))
        .filter_map(|d| {
            let status: DeviceStatus = serde_json::from_value(d.status.clone()).ok()?;
            let found = status.discovery?;
            let covers = found
                .addresses
                .iter()
                .filter_map(|a| a.parse::<IpAddr>().ok())
                .any(|a| covered(&a));
            (found.scan == scan.name && found.responding && covers).then(|| StatusPatch {
                kind: Kind::Device,
                namespace: d.namespace.clone(),
                name: d.name.clone(),
                status: json!({ "discovery": DiscoveredDevice { responding: false, ..found } }),
            })
        })
        .collect()
}

/// Matches the hosts of one namespace against its Devices, one at a time, so that a box
/// found on two addresses becomes one Device.
struct Registrar<'a> {
    namespace: &'a str,
    now: &'a str,
    directory: Directory,
    /// Devices by name: (labels, spec) — for widening the specs of those discovery owns.
    devices: HashMap<String, (BTreeMap<String, String>, Value)>,
    patches: Vec<StatusPatch>,
    done: Vec<(Uuid, IpAddr, &'static str, Option<String>)>,
    created: Vec<String>,
    /// Names proposed in this pass (mode Propose): a host matching one is the same proposal.
    proposed: HashSet<String>,
}

impl<'a> Registrar<'a> {
    fn new(namespace: &'a str, devices: &[StoredObject], now: &'a str) -> Self {
        let mut directory = Directory::default();
        let mut by_name = HashMap::new();
        for d in devices {
            let spec: DeviceSpec = serde_json::from_value(d.spec.clone()).unwrap_or_default();
            let status: DeviceStatus = serde_json::from_value(d.status.clone()).unwrap_or_default();
            directory.insert(&d.name, Keys::of_device(&spec, &status));
            by_name.insert(d.name.clone(), (d.labels.clone(), d.spec.clone()));
        }
        Self {
            namespace,
            now,
            directory,
            devices: by_name,
            patches: Vec::new(),
            done: Vec::new(),
            created: Vec::new(),
            proposed: HashSet::new(),
        }
    }

    async fn host(
        &mut self,
        store: &Store,
        cluster: Option<&ClusterDevices>,
        scan: Option<&Scan>,
        pending: &PendingHost,
    ) -> Result<(), StoreError> {
        let host = &pending.host;
        let Some(scan) = scan else {
            // The scan was deleted since: nothing to register with.
            self.done
                .push((pending.run, host.address, "reported", None));
            return Ok(());
        };
        let keys = Keys::of_host(host);
        let classifier = Classifier::new(&scan.spec.registration);
        let class = classify(&classifier, host);
        let discovered = register::discovered(&scan.name, host, &keys, class, self.now);
        if let Some((name, _)) = self
            .directory
            .find(&keys)
            .filter(|(name, _)| self.proposed.contains(name))
        {
            self.directory.insert(&name, keys);
            self.done
                .push((pending.run, host.address, "proposed", Some(name)));
            return Ok(());
        }
        if let Some((name, on)) = self.directory.find(&keys) {
            tracing::debug!(namespace = self.namespace, address = %host.address, device = %name, matched_on = on.as_str(), "found host matches a Device");
            let outcome = self
                .update(store, scan, pending, &name, &keys, discovered)
                .await?;
            self.done
                .push((pending.run, host.address, outcome, Some(name)));
            return Ok(());
        }
        match scan.spec.registration.mode {
            RegistrationMode::Report => {
                self.done
                    .push((pending.run, host.address, "reported", None));
            }
            RegistrationMode::Propose => {
                let name = register::device_name(host, |n| {
                    self.directory.contains(n) || self.devices.contains_key(n)
                });
                // Known from now on, so its other addresses are not proposed again.
                self.directory.insert(&name, keys);
                self.proposed.insert(name.clone());
                self.done
                    .push((pending.run, host.address, "proposed", Some(name)));
            }
            RegistrationMode::Register => {
                let (labels, spec) = register::new_device(
                    &scan.name,
                    &scan.spec,
                    &pending.collector,
                    host,
                    &keys,
                    class,
                );
                let status = json!({ "source": "Discovery", "discovery": discovered });
                let mut name = String::new();
                for _ in 0..8 {
                    name = register::device_name(host, |n| {
                        self.directory.contains(n) || self.devices.contains_key(n) || n == name
                    });
                    let created = match cluster {
                        Some(cluster) => {
                            let manifest =
                                register::manifest(self.namespace, &name, &labels, &spec);
                            match cluster
                                .create(store, self.namespace, &name, &manifest, status.clone())
                                .await
                            {
                                Ok(created) => created,
                                Err(e) => {
                                    // Tried again at the next pass: the host stays pending.
                                    tracing::warn!(error = %e, "failed to register a discovered device");
                                    return Ok(());
                                }
                            }
                        }
                        None => {
                            store
                                .discovery_create_device(
                                    self.namespace,
                                    &name,
                                    &json!(labels),
                                    &spec,
                                    &status,
                                    &scan.name,
                                )
                                .await?
                        }
                    };
                    if created {
                        break;
                    }
                    // Taken meanwhile (a manifest or an enrollment): the next name.
                    self.devices
                        .insert(name.clone(), (BTreeMap::new(), Value::Null));
                }
                tracing::info!(namespace = self.namespace, scan = %scan.name, address = %host.address, device = %name, ?class, "registered a discovered device");
                self.directory.insert(&name, keys);
                self.devices.insert(name.clone(), (labels, spec));
                self.created.push(name.clone());
                self.done
                    .push((pending.run, host.address, "registered", Some(name)));
            }
        }
        Ok(())
    }

    /// An existing Device found again: its `status.discovery` refreshed and, when discovery
    /// made it, its spec widened (new addresses, SNMP polling).
    async fn update(
        &mut self,
        store: &Store,
        scan: &Scan,
        pending: &PendingHost,
        name: &str,
        keys: &Keys,
        mut discovered: DiscoveredDevice,
    ) -> Result<&'static str, StoreError> {
        let host = &pending.host;
        self.directory.insert(name, keys.clone());
        // Addresses of earlier sightings stay.
        if let Some(previous) = self
            .patches
            .iter()
            .rev()
            .find(|p| p.name == name)
            .and_then(|p| {
                serde_json::from_value::<DiscoveredDevice>(p.status["discovery"].clone()).ok()
            })
        {
            discovered.addresses.extend(previous.addresses);
            discovered.addresses.sort();
            discovered.addresses.dedup();
            discovered.macs.extend(previous.macs);
            discovered.macs.sort();
            discovered.macs.dedup();
        }
        if let Some((labels, spec)) = self.devices.get(name).cloned()
            && labels.get(register::ORIGIN_LABEL).map(String::as_str) == Some("discovery")
            && let Some(wider) =
                register::widened_spec(&spec, &scan.spec, &pending.collector, host, keys)
            && store
                .discovery_update_device_spec(self.namespace, name, &wider)
                .await?
        {
            self.devices.insert(name.to_owned(), (labels, wider));
        }
        self.patches.push(StatusPatch {
            kind: Kind::Device,
            namespace: self.namespace.to_owned(),
            name: name.to_owned(),
            status: json!({ "discovery": discovered }),
        });
        Ok("updated")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_budget_covers_silent_addresses_at_the_spec_rate() {
        let spec = |targets: &str, rate: u32| DiscoveryScanSpec {
            targets: vec![targets.into()],
            rate_limit: rate,
            concurrency: 64,
            timeout: "1s".into(),
            retries: 1,
            ..Default::default()
        };
        assert_eq!(budget_ms(&spec("10.0.0.0/24", 100)), MIN_BUDGET_MS);
        // A /16 at 100/s, 64 at a time: 65,536 × 2 tries × 1 s / 64 = 2,048 s of timeouts
        // (more than the 1,311 s the rate allows), four times over.
        assert_eq!(budget_ms(&spec("10.0.0.0/16", 100)), 8_192_000);
    }
}
