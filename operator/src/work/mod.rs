//! The agent work channel (`GET /v1/agent/work`, `POST /v1/agent/work/reports`): an agent
//! holds one long-poll request open on its authenticated connection, and is answered as
//! soon as its pending work changes, so an approval commit reaches it in about a second.
//!
//! What changes work: desired state (the index's version moves on every applied commit),
//! and what the operator learns about one device or one namespace (a scan, a report, a
//! ring the patching engine opened), which wakes the waiters through [`Work::wake_device`]
//! and [`Work::wake_namespace`]. A waiter recomputes its list on a wake and answers only if
//! the list's revision differs from the one the agent already has.
//!
//! Patch installs are its first items; workflow steps will be its next ([`WorkKind`]).
//!
//! [`WorkKind`]: cdot_crds::wire::work::WorkKind
use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use axum::{
    Json, Router,
    body::Body,
    extract::{Query, State},
    http::HeaderMap,
    routing::{get, post},
};
use cdot_crds::wire::{
    BatchAck,
    patch::PatchState,
    work::{
        MAX_WORK_WAIT_SECS, StepResult, WORK_REPORT_ROUTE, WORK_ROUTE, WorkItem, WorkKind,
        WorkList, WorkReport,
    },
};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use uuid::Uuid;

use crate::{
    api::{ApiError, AppState, agent_auth::DeviceIdentity, body::read_json},
    patching,
};

/// Default `wait` when the agent sends none.
const DEFAULT_WAIT_SECS: u64 = 25;

/// Wakes waiting agents; cheap to clone.
#[derive(Clone, Default)]
pub struct Work {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    devices: Mutex<HashMap<Uuid, watch::Sender<u64>>>,
    namespaces: Mutex<HashMap<String, watch::Sender<u64>>>,
    /// Longest hold, below the API's request timeout (set by `api::app`).
    max_wait_ms: AtomicU64,
}

fn channel<K: std::hash::Hash + Eq + Clone>(
    map: &Mutex<HashMap<K, watch::Sender<u64>>>,
    key: &K,
) -> watch::Receiver<u64> {
    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
    map.entry(key.clone())
        .or_insert_with(|| watch::channel(0).0)
        .subscribe()
}

fn bump<K: std::hash::Hash + Eq>(map: &Mutex<HashMap<K, watch::Sender<u64>>>, key: &K) {
    let mut map = map.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(tx) = map.get(key) {
        tx.send_modify(|v| *v += 1);
        // Nobody waits on it any more: forget it, or the map grows with every device.
        if tx.receiver_count() == 0 {
            map.remove(key);
        }
    }
}

impl Work {
    /// Something about `device` changed: its waiting request recomputes.
    pub fn wake_device(&self, device: Uuid) {
        bump(&self.inner.devices, &device);
    }

    /// Something about every device of `namespace` may have changed.
    pub fn wake_namespace(&self, namespace: &str) {
        bump(&self.inner.namespaces, &namespace.to_owned());
    }

    /// Requests are held at most `limit` (the API's request timeout less a margin).
    pub fn set_max_wait(&self, limit: Duration) {
        self.inner.max_wait_ms.store(
            u64::try_from(limit.as_millis()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    fn max_wait(&self) -> Duration {
        match self.inner.max_wait_ms.load(Ordering::Relaxed) {
            0 => Duration::from_secs(MAX_WORK_WAIT_SECS),
            ms => Duration::from_millis(ms).min(Duration::from_secs(MAX_WORK_WAIT_SECS)),
        }
    }
}

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(WORK_ROUTE, get(work))
        .route(WORK_REPORT_ROUTE, post(report))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkQuery {
    wait: Option<String>,
    seen: Option<String>,
}

fn revision(items: &[WorkItem], scan_interval: u64) -> String {
    let mut h = Sha256::new();
    for item in items {
        h.update(item.id.as_bytes());
    }
    h.update(scan_interval.to_be_bytes());
    hex::encode(&h.finalize()[..12])
}

async fn current(state: &AppState, identity: &DeviceIdentity) -> Result<WorkList, ApiError> {
    let snapshot = state.index.snapshot();
    let (mut items, interval) =
        patching::work::device_work(&state.store, &snapshot, identity, jiff::Timestamp::now())
            .await?;
    // Workflow steps first: they answer an event now; installs wait for windows anyway.
    let steps = state.store.device_step_work(identity.uid).await?;
    items.splice(0..0, steps);
    Ok(WorkList {
        revision: revision(&items, interval),
        items,
        patch_scan_interval_secs: interval,
    })
}

/// `GET /v1/agent/work?wait=SECONDS&seen=REVISION`
async fn work(
    State(state): State<AppState>,
    identity: DeviceIdentity,
    Query(query): Query<WorkQuery>,
) -> Result<Json<WorkList>, ApiError> {
    let wait = match query.wait.as_deref() {
        None => Duration::from_secs(DEFAULT_WAIT_SECS),
        Some(w) => w
            .parse::<u64>()
            .ok()
            .filter(|w| *w <= MAX_WORK_WAIT_SECS)
            .map(Duration::from_secs)
            .ok_or_else(|| {
                ApiError::bad_request(
                    format!("wait must be whole seconds from 0 to {MAX_WORK_WAIT_SECS}"),
                    "query.wait",
                )
            })?,
    }
    .min(state.work.max_wait());
    // Subscribe before computing, so a change between the two is not missed.
    let mut desired = state.index.subscribe();
    let mut device = channel(&state.work.inner.devices, &identity.uid);
    let mut namespace = channel(&state.work.inner.namespaces, &identity.namespace);
    let mut list = current(&state, &identity).await?;
    if query.seen.as_deref() != Some(list.revision.as_str()) || wait.is_zero() {
        return Ok(Json(list));
    }
    let seen = list.revision.clone();
    // Counted down on drop: a request the agent abandons ends here too.
    let _waiting = Waiting::new(&state.metrics.patching.work_waiting);
    let deadline = tokio::time::Instant::now() + wait;
    let outcome = async {
        loop {
            tokio::select! {
                _ = desired.changed() => {}
                _ = device.changed() => {}
                _ = namespace.changed() => {}
                () = tokio::time::sleep_until(deadline) => return Ok(list),
            }
            list = current(&state, &identity).await?;
            if list.revision != seen {
                return Ok(list);
            }
        }
    }
    .await;
    outcome.map(Json)
}

struct Waiting<'a>(&'a prometheus_client::metrics::gauge::Gauge);

impl<'a> Waiting<'a> {
    fn new(gauge: &'a prometheus_client::metrics::gauge::Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// `POST /v1/agent/work/reports`: answered after the report is committed, with the
/// acknowledgement every spooled batch gets (`batchId` is the `reportId`), so the agent's
/// delivery loop drains its report spool as it drains metrics.
async fn report(
    State(state): State<AppState>,
    identity: DeviceIdentity,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<BatchAck>, ApiError> {
    let count = |reason| state.metrics.ingest.reject(reason);
    let report: WorkReport = read_json(&headers, body, count).await?;
    patching::check::check_report(&report).map_err(|r| {
        count(r.reason);
        ApiError::from(r)
    })?;
    let now = jiff::Timestamp::now();
    if let Some(step) = &report.step {
        return step_report(&state, &identity, &report, step, now).await;
    }
    // What the item was, to file its progress under its policy and ring; an item no longer
    // pending (finished, or the policy changed) is recognised by its stored installs.
    let (items, _) =
        patching::work::device_work(&state.store, &state.index.snapshot(), &identity, now).await?;
    let install = items
        .iter()
        .find(|i| i.id == report.item)
        .and_then(|i| match &i.kind {
            WorkKind::PatchInstall(install) => Some(install.clone()),
            _ => None,
        });
    let opening = install
        .as_ref()
        .and_then(|i| i.window.as_ref())
        .and_then(|w| {
            let at = jiff::Timestamp::from_millisecond(report.at_ms).unwrap_or(now);
            w.opening_at(at).map(|(start, _)| start)
        });
    let filed = match &install {
        Some(i) => Some((i.policy.clone(), i.ring.clone())),
        None if !report.patches.is_empty() => {
            state
                .store
                .patch_install_owner(
                    identity.uid,
                    &report.patches[0].name,
                    &report.patches[0].version,
                )
                .await?
        }
        None => None,
    };
    let fresh = state
        .store
        .apply_work_report(
            identity.uid,
            &identity.namespace,
            report.report_id,
            report.item,
            filed
                .as_ref()
                .map(|(policy, ring)| (policy.as_str(), ring.as_str(), opening)),
            &report.patches,
            report.done,
            now,
        )
        .await?;
    let labels = crate::metrics::ResultLabels {
        result: if fresh { "applied" } else { "duplicate" }.into(),
    };
    state
        .metrics
        .patching
        .work_reports
        .get_or_create(&labels)
        .inc();
    if fresh {
        for p in &report.patches {
            let labels = crate::metrics::StateLabels {
                state: p.state.as_str().into(),
            };
            state.metrics.patching.progress.get_or_create(&labels).inc();
        }
        let failed = report
            .patches
            .iter()
            .filter(|p| p.state == PatchState::Failed)
            .count();
        tracing::info!(device = %identity.name, namespace = %identity.namespace, item = %report.item,
            entries = report.patches.len(), failed, done = report.done, "work report");
        state.work.wake_device(identity.uid);
        state.patching.wake();
        crate::automation::triggers::patch_failures(
            &state.automation,
            &identity.namespace,
            identity.uid,
            &identity.name,
            report.report_id,
            &report.patches,
        );
    }
    Ok(Json(BatchAck {
        batch_id: report.report_id,
        stored: if fresh {
            u32::try_from(report.patches.len()).unwrap_or(u32::MAX)
        } else {
            0
        },
        duplicate: !fresh,
    }))
}

/// A workflow step's report: applied to its attempt (a final state is kept once written,
/// so a repeated or late report changes nothing), then the run moves at once.
async fn step_report(
    state: &AppState,
    identity: &DeviceIdentity,
    report: &WorkReport,
    step: &StepResult,
    now: jiff::Timestamp,
) -> Result<Json<BatchAck>, ApiError> {
    let run = state
        .store
        .apply_step_report(identity.uid, report.item, step, now)
        .await?;
    let labels = crate::metrics::ResultLabels {
        result: if run.is_some() {
            "applied"
        } else {
            "duplicate"
        }
        .into(),
    };
    state
        .metrics
        .patching
        .work_reports
        .get_or_create(&labels)
        .inc();
    if let Some(run) = run {
        tracing::info!(device = %identity.name, namespace = %identity.namespace, item = %report.item,
            %run, state = ?step.state, exit_code = ?step.exit_code, "workflow step report");
        if step.state.is_final() {
            state.work.wake_device(identity.uid);
        }
        state.automation.wake_run(run);
    }
    Ok(Json(BatchAck {
        batch_id: report.report_id,
        stored: u32::from(run.is_some()),
        duplicate: run.is_none(),
    }))
}
