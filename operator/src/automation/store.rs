//! Automation's tables (migration 0017): runs, their lanes (one per device), every attempt
//! of every step, approvals and service failures. The engine changes them in transactions
//! that also append the audit entries of the change.
use std::collections::{BTreeMap, HashMap};

use cdot_crds::{
    wire::{
        automation::{
            Approval, AttemptState, AttemptView, Event, LaneState, LaneView, RunState, RunSummary,
            RunView,
        },
        work::{StepResult, WorkItem},
    },
    workflow::{StepType, TriggerType},
};
use jiff::Timestamp;
use serde_json::Value;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::store::{Store, StoreError};

/// Where a lane is within its current step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Make the next attempt.
    Start,
    /// An attempt is out (an agent step, a wait): look again at `next_at` or when woken.
    Wait,
    /// The delay before the next attempt.
    Retry,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "Start",
            Self::Wait => "Wait",
            Self::Retry => "Retry",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "Wait" => Self::Wait,
            "Retry" => Self::Retry,
            _ => Self::Start,
        }
    }
}

/// A run to insert.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub id: Uuid,
    pub namespace: String,
    pub workflow: String,
    pub generation: i64,
    pub spec: Value,
    pub event: Event,
    pub trigger: TriggerType,
    pub started_by: String,
    pub state: RunState,
    pub waiting_for: Option<String>,
    pub dedup_key: Option<String>,
    /// (device uid, name, held past a blast-radius limit)
    pub lanes: Vec<(Uuid, String, bool)>,
}

/// A lane with what the engine needs to move it.
#[derive(Debug, Clone)]
pub struct LaneRow {
    pub run: Uuid,
    pub namespace: String,
    pub workflow: String,
    pub spec: Value,
    pub event: Event,
    pub started_by: String,
    pub device: Uuid,
    pub device_name: String,
    pub state: LaneState,
    pub step: usize,
    pub attempt: u32,
    pub phase: Phase,
    pub next_at: Option<Timestamp>,
    pub vars: BTreeMap<String, Value>,
    pub outputs: BTreeMap<String, Value>,
    pub failed_any: bool,
    /// When the run started.
    pub run_started: Timestamp,
}

/// One attempt as stored.
#[derive(Debug, Clone)]
pub struct AttemptRow {
    pub state: AttemptState,
    pub started: Timestamp,
    pub deadline: Option<Timestamp>,
    pub result: Option<StepResult>,
    pub message: String,
}

/// Times are bound as Unix milliseconds (`to_timestamp($n::float8 / 1000)`) and read as
/// such (`extract(epoch FROM col) * 1000`), as patching's tables are.
fn ts(t: Timestamp) -> i64 {
    t.as_millisecond()
}

fn from_ts(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn rfc3339(ms: i64) -> String {
    from_ts(ms).to_string()
}

fn trigger_str(t: TriggerType) -> String {
    serde_json::to_value(t)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn parse_trigger(s: &str) -> TriggerType {
    serde_json::from_value(Value::String(s.to_owned())).unwrap_or(TriggerType::Manual)
}

fn step_type_str(t: StepType) -> String {
    serde_json::to_value(t)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn map_of(v: Value) -> BTreeMap<String, Value> {
    match v {
        Value::Object(m) => m.into_iter().collect(),
        _ => BTreeMap::new(),
    }
}

/// Inserts a run with its lanes; `false` when a run of the same trigger occurrence exists.
pub async fn insert_run(
    conn: &mut PgConnection,
    run: &NewRun,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let event = serde_json::to_value(&run.event).unwrap_or(Value::Null);
    let inserted = sqlx::query(
        "INSERT INTO workflow_runs (id, namespace, workflow, generation, spec, event, trigger,
                                    started_by, state, waiting_for, started, dedup_key)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, to_timestamp($11::float8 / 1000), $12)
         ON CONFLICT (namespace, workflow, dedup_key) WHERE dedup_key IS NOT NULL DO NOTHING",
    )
    .bind(run.id)
    .bind(&run.namespace)
    .bind(&run.workflow)
    .bind(run.generation)
    .bind(&run.spec)
    .bind(&event)
    .bind(trigger_str(run.trigger))
    .bind(&run.started_by)
    .bind(run.state.as_str())
    .bind(&run.waiting_for)
    .bind(ts(now))
    .bind(&run.dedup_key)
    .execute(&mut *conn)
    .await
    .map_err(StoreError::query("insert a workflow run"))?
    .rows_affected();
    if inserted == 0 {
        return Ok(false);
    }
    let devices: Vec<Uuid> = run.lanes.iter().map(|l| l.0).collect();
    let names: Vec<&str> = run.lanes.iter().map(|l| l.1.as_str()).collect();
    let states: Vec<&str> = run
        .lanes
        .iter()
        .map(|l| {
            if l.2 {
                LaneState::Held.as_str()
            } else {
                LaneState::Running.as_str()
            }
        })
        .collect();
    let positions: Vec<i32> = (0..run.lanes.len() as i32).collect();
    let started: Vec<Option<i64>> = run.lanes.iter().map(|l| (!l.2).then(|| ts(now))).collect();
    sqlx::query(
        "INSERT INTO workflow_lanes (run, device, device_name, position, state, started)
         SELECT $1, d, n, p, s, to_timestamp(t::float8 / 1000)
         FROM UNNEST($2::uuid[], $3::text[], $4::int[], $5::text[], $6::int8[]) AS u(d, n, p, s, t)",
    )
    .bind(run.id)
    .bind(&devices)
    .bind(&names)
    .bind(&positions)
    .bind(&states)
    .bind(&started)
    .execute(&mut *conn)
    .await
    .map_err(StoreError::query("insert workflow lanes"))?;
    Ok(true)
}

impl Store {
    /// Devices (of `devices`) with an unfinished lane of `workflow`, with the lane's run.
    pub async fn active_workflow_lanes(
        &self,
        namespace: &str,
        workflow: &str,
        devices: &[Uuid],
    ) -> Result<Vec<(Uuid, Uuid)>, StoreError> {
        let rows = sqlx::query(
            "SELECT l.device, l.run FROM workflow_lanes l JOIN workflow_runs r ON r.id = l.run
             WHERE r.namespace = $1 AND r.workflow = $2 AND l.device = ANY($3)
               AND l.state IN ('Held', 'Running', 'AwaitingApproval')",
        )
        .bind(namespace)
        .bind(workflow)
        .bind(devices)
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::query("read active workflow lanes"))?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// When `workflow` last started on each of `devices` (for the cooldown).
    pub async fn last_workflow_starts(
        &self,
        namespace: &str,
        workflow: &str,
        devices: &[Uuid],
    ) -> Result<HashMap<Uuid, Timestamp>, StoreError> {
        let rows = sqlx::query(
            "SELECT l.device, (extract(epoch FROM max(l.started)) * 1000)::int8 FROM workflow_lanes l
             JOIN workflow_runs r ON r.id = l.run
             WHERE r.namespace = $1 AND r.workflow = $2 AND l.device = ANY($3)
               AND l.started IS NOT NULL
             GROUP BY l.device",
        )
        .bind(namespace)
        .bind(workflow)
        .bind(devices)
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::query("read the last workflow starts"))?;
        Ok(rows.iter().map(|r| (r.get(0), from_ts(r.get(1)))).collect())
    }

    /// The cron time of each Schedule workflow's newest run, by (namespace, workflow): where
    /// a restarted engine picks its schedules up.
    pub async fn last_schedule_times(
        &self,
    ) -> Result<HashMap<(String, String), Timestamp>, StoreError> {
        let rows = sqlx::query(
            "SELECT namespace, workflow,
                    (extract(epoch FROM max((event->>'at')::timestamptz)) * 1000)::int8
             FROM workflow_runs WHERE trigger = $1 AND event ? 'at'
             GROUP BY namespace, workflow",
        )
        .bind(trigger_str(TriggerType::Schedule))
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::query("read the last scheduled runs"))?;
        Ok(rows
            .iter()
            .map(|r| ((r.get(0), r.get(1)), from_ts(r.get(2))))
            .collect())
    }

    /// Devices `workflow` started on since `since` (the per-hour blast radius).
    pub async fn workflow_devices_since(
        &self,
        namespace: &str,
        workflow: &str,
        since: Timestamp,
    ) -> Result<u32, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM workflow_lanes l JOIN workflow_runs r ON r.id = l.run
             WHERE r.namespace = $1 AND r.workflow = $2 AND l.started >= to_timestamp($3::float8 / 1000)",
        )
        .bind(namespace)
        .bind(workflow)
        .bind(ts(since))
        .fetch_one(self.pool())
        .await
        .map_err(StoreError::query("count devices a workflow started on"))?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// Lanes to move now: running and due, or `runs` (just started or woken).
    pub async fn due_lanes(
        &self,
        now: Timestamp,
        runs: &[Uuid],
        limit: i64,
    ) -> Result<Vec<LaneRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT l.run, r.namespace, r.workflow, r.spec, r.event, r.started_by, l.device,
                    l.device_name, l.state, l.step, l.attempt, l.phase,
                    (extract(epoch FROM l.next_at) * 1000)::int8, l.vars,
                    l.outputs, l.failed_any, (extract(epoch FROM r.started) * 1000)::int8
             FROM workflow_lanes l JOIN workflow_runs r ON r.id = l.run
             WHERE l.state = 'Running' AND (l.next_at IS NULL OR l.next_at <= to_timestamp($1::float8 / 1000) OR l.run = ANY($2))
             ORDER BY l.next_at NULLS FIRST
             LIMIT $3",
        )
        .bind(ts(now))
        .bind(runs)
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::query("read due workflow lanes"))?;
        Ok(rows.into_iter().map(lane_row).collect())
    }

    /// One running lane, as [`Store::due_lanes`] reads it.
    pub async fn running_lane(
        &self,
        run: Uuid,
        device: Uuid,
    ) -> Result<Option<LaneRow>, StoreError> {
        let row = sqlx::query(
            "SELECT l.run, r.namespace, r.workflow, r.spec, r.event, r.started_by, l.device,
                    l.device_name, l.state, l.step, l.attempt, l.phase,
                    (extract(epoch FROM l.next_at) * 1000)::int8, l.vars,
                    l.outputs, l.failed_any, (extract(epoch FROM r.started) * 1000)::int8
             FROM workflow_lanes l JOIN workflow_runs r ON r.id = l.run
             WHERE l.run = $1 AND l.device = $2 AND l.state = 'Running'",
        )
        .bind(run)
        .bind(device)
        .fetch_optional(self.pool())
        .await
        .map_err(StoreError::query("read a workflow lane"))?;
        Ok(row.map(lane_row))
    }

    /// The soonest `next_at` of a running lane (the engine sleeps until then).
    pub async fn next_lane_due(&self) -> Result<Option<Timestamp>, StoreError> {
        let t: Option<i64> =
            sqlx::query_scalar(
                "SELECT (extract(epoch FROM min(next_at)) * 1000)::int8 FROM workflow_lanes WHERE state = 'Running'",
            )
                .fetch_one(self.pool())
                .await
                .map_err(StoreError::query("read the next due workflow lane"))?;
        Ok(t.map(from_ts))
    }

    /// Agent steps out for `device`: its work items.
    pub async fn device_step_work(&self, device: Uuid) -> Result<Vec<WorkItem>, StoreError> {
        let rows: Vec<Value> = sqlx::query_scalar(
            "SELECT work FROM workflow_attempts
             WHERE device = $1 AND state IN ('Dispatched', 'Running') AND work IS NOT NULL
             ORDER BY started",
        )
        .bind(device)
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::query("read a device's workflow steps"))?;
        Ok(rows
            .into_iter()
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect())
    }

    /// Applies an agent's report of a step: `Some(run)` when it changed the attempt (a
    /// final state is never changed again), `None` for an unknown item, another device's
    /// item or a repeat.
    pub async fn apply_step_report(
        &self,
        device: Uuid,
        work_id: Uuid,
        result: &StepResult,
        now: Timestamp,
    ) -> Result<Option<Uuid>, StoreError> {
        let state = match result.state {
            cdot_crds::wire::work::StepState::Running => AttemptState::Running,
            cdot_crds::wire::work::StepState::Succeeded => AttemptState::Succeeded,
            cdot_crds::wire::work::StepState::Failed => AttemptState::Failed,
            cdot_crds::wire::work::StepState::TimedOut => AttemptState::TimedOut,
        };
        let finished = state.is_final().then(|| ts(now));
        let run: Option<Uuid> = sqlx::query_scalar(
            "UPDATE workflow_attempts SET state = $3, result = $4, finished = to_timestamp($5::float8 / 1000),
                    message = CASE WHEN $6 = '' THEN message ELSE $6 END
             WHERE work_id = $1 AND device = $2 AND state IN ('Dispatched', 'Running')
               AND NOT ($3 = 'Running' AND state = 'Running')
             RETURNING run",
        )
        .bind(work_id)
        .bind(device)
        .bind(state.as_str())
        .bind(serde_json::to_value(result).unwrap_or(Value::Null))
        .bind(finished)
        .bind(&result.message)
        .fetch_optional(self.pool())
        .await
        .map_err(StoreError::query("apply a workflow step report"))?;
        Ok(run)
    }

    /// Records a service failure seen on ingest.
    pub async fn record_service_failure(
        &self,
        device: Uuid,
        service: &str,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO service_failures (device, service, at) VALUES ($1, $2, to_timestamp($3::float8 / 1000))",
        )
        .bind(device)
        .bind(service)
        .bind(ts(at))
        .execute(self.pool())
        .await
        .map_err(StoreError::query("record a service failure"))?;
        Ok(())
    }

    /// Failures of `service` on `device` since `since`.
    pub async fn service_failures_since(
        &self,
        device: Uuid,
        service: &str,
        since: Timestamp,
    ) -> Result<u32, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM service_failures
             WHERE device = $1 AND service = $2 AND at >= to_timestamp($3::float8 / 1000)",
        )
        .bind(device)
        .bind(service)
        .bind(ts(since))
        .fetch_one(self.pool())
        .await
        .map_err(StoreError::query("count service failures"))?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// Deletes runs that finished before `before` (lanes, attempts and approvals with
    /// them); returns how many.
    pub async fn prune_runs(&self, before: Timestamp) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "DELETE FROM workflow_runs WHERE finished < to_timestamp($1::float8 / 1000)",
        )
        .bind(ts(before))
        .execute(self.pool())
        .await
        .map_err(StoreError::query("prune finished workflow runs"))?
        .rows_affected())
    }

    /// Forgets service failures older than `before`.
    pub async fn prune_service_failures(&self, before: Timestamp) -> Result<u64, StoreError> {
        Ok(
            sqlx::query("DELETE FROM service_failures WHERE at < to_timestamp($1::float8 / 1000)")
                .bind(ts(before))
                .execute(self.pool())
                .await
                .map_err(StoreError::query("prune service failures"))?
                .rows_affected(),
        )
    }

    /// Runs of a namespace, newest first.
    pub async fn list_runs(
        &self,
        namespace: &str,
        workflow: Option<&str>,
        state: Option<RunState>,
        limit: i64,
    ) -> Result<Vec<RunSummary>, StoreError> {
        let rows = sqlx::query(
            "SELECT r.id, r.workflow, r.state, r.trigger, r.started_by,
                    (extract(epoch FROM r.started) * 1000)::int8, (extract(epoch FROM r.finished) * 1000)::int8,
                    r.waiting_for, (SELECT count(*) FROM workflow_lanes l WHERE l.run = r.id)
             FROM workflow_runs r
             WHERE r.namespace = $1 AND ($2::text IS NULL OR r.workflow = $2)
               AND ($3::text IS NULL OR r.state = $3)
             ORDER BY r.started DESC LIMIT $4",
        )
        .bind(namespace)
        .bind(workflow)
        .bind(state.map(RunState::as_str))
        .bind(limit)
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::query("list workflow runs"))?;
        Ok(rows.iter().map(summary_row).collect())
    }

    /// One run with its lanes, attempts and approvals.
    pub async fn run_view(&self, namespace: &str, id: Uuid) -> Result<Option<RunView>, StoreError> {
        let Some(row) = sqlx::query(
            "SELECT r.id, r.workflow, r.state, r.trigger, r.started_by,
                    (extract(epoch FROM r.started) * 1000)::int8, (extract(epoch FROM r.finished) * 1000)::int8,
                    r.waiting_for, (SELECT count(*) FROM workflow_lanes l WHERE l.run = r.id),
                    r.event, r.generation, r.spec
             FROM workflow_runs r WHERE r.namespace = $1 AND r.id = $2",
        )
        .bind(namespace)
        .bind(id)
        .fetch_optional(self.pool())
        .await
        .map_err(StoreError::query("read a workflow run"))?
        else {
            return Ok(None);
        };
        let summary = summary_row(&row);
        let event: Event = serde_json::from_value(row.get(9)).unwrap_or_default();
        let generation: i64 = row.get(10);
        let spec: Value = row.get(11);
        let step_names: Vec<String> = spec["steps"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|s| s["name"].as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        let approvals = sqlx::query(
            "SELECT what, by_whom, (extract(epoch FROM at) * 1000)::int8, comment FROM workflow_approvals WHERE run = $1 ORDER BY at",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::query("read a run's approvals"))?
        .iter()
        .map(|r| Approval {
            what: r.get(0),
            by: r.get(1),
            at: rfc3339(r.get(2)),
            comment: r.get(3),
        })
        .collect();
        let lanes = sqlx::query(
            "SELECT device, device_name, state, step, vars FROM workflow_lanes
             WHERE run = $1 ORDER BY position",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::query("read a run's lanes"))?;
        let attempts = sqlx::query(
            "SELECT device, step, type, attempt, state, work_id, (extract(epoch FROM started) * 1000)::int8,
                    (extract(epoch FROM finished) * 1000)::int8, result, message
             FROM workflow_attempts WHERE run = $1 ORDER BY started, step_index, attempt",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::query("read a run's attempts"))?;
        let mut by_device: HashMap<Uuid, Vec<AttemptView>> = HashMap::new();
        for a in &attempts {
            let type_: String = a.get(2);
            by_device.entry(a.get(0)).or_default().push(AttemptView {
                step: a.get(1),
                type_: serde_json::from_value(Value::String(type_)).unwrap_or(StepType::Wait),
                attempt: u32::try_from(a.get::<i32, _>(3)).unwrap_or(0),
                state: AttemptState::parse(a.get(4)).unwrap_or(AttemptState::Failed),
                work_id: a.get(5),
                started: rfc3339(a.get(6)),
                finished: a.get::<Option<i64>, _>(7).map(rfc3339),
                result: a
                    .get::<Option<Value>, _>(8)
                    .and_then(|v| serde_json::from_value(v).ok()),
                message: a.get(9),
            });
        }
        let lanes = lanes
            .iter()
            .map(|l| {
                let state = LaneState::parse(l.get(2)).unwrap_or(LaneState::Failed);
                let step: i32 = l.get(3);
                LaneView {
                    device: l.get(1),
                    state,
                    step: (!state.is_final())
                        .then(|| step_names.get(step as usize).cloned())
                        .flatten(),
                    vars: map_of(l.get(4)),
                    attempts: by_device.remove(&l.get::<Uuid, _>(0)).unwrap_or_default(),
                }
            })
            .collect();
        Ok(Some(RunView {
            summary,
            event,
            generation,
            approvals,
            lanes,
        }))
    }

    /// Runs and failures of each workflow of a namespace, and its newest run.
    pub async fn workflow_counts(
        &self,
        namespace: &str,
    ) -> Result<HashMap<String, (u64, u64, Option<RunSummary>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT workflow, count(*), count(*) FILTER (WHERE state IN ('Failed', 'PartiallyFailed'))
             FROM workflow_runs WHERE namespace = $1 GROUP BY workflow",
        )
        .bind(namespace)
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::query("count workflow runs"))?;
        let latest = sqlx::query(
            "SELECT DISTINCT ON (r.workflow) r.id, r.workflow, r.state, r.trigger, r.started_by,
                    (extract(epoch FROM r.started) * 1000)::int8, (extract(epoch FROM r.finished) * 1000)::int8, r.waiting_for,
                    (SELECT count(*) FROM workflow_lanes l WHERE l.run = r.id)
             FROM workflow_runs r WHERE r.namespace = $1 ORDER BY r.workflow, r.started DESC",
        )
        .bind(namespace)
        .fetch_all(self.pool())
        .await
        .map_err(StoreError::query("read the newest workflow runs"))?;
        let mut out: HashMap<String, (u64, u64, Option<RunSummary>)> = rows
            .iter()
            .map(|r| {
                (
                    r.get::<String, _>(0),
                    (
                        u64::try_from(r.get::<i64, _>(1)).unwrap_or(0),
                        u64::try_from(r.get::<i64, _>(2)).unwrap_or(0),
                        None,
                    ),
                )
            })
            .collect();
        for r in &latest {
            let s = summary_row(r);
            if let Some(e) = out.get_mut(&s.workflow) {
                e.2 = Some(s);
            }
        }
        Ok(out)
    }
}

fn summary_row(r: &sqlx::postgres::PgRow) -> RunSummary {
    RunSummary {
        id: r.get(0),
        workflow: r.get(1),
        state: RunState::parse(r.get(2)).unwrap_or(RunState::Failed),
        trigger: parse_trigger(r.get(3)),
        started_by: r.get(4),
        started: rfc3339(r.get(5)),
        finished: r.get::<Option<i64>, _>(6).map(rfc3339),
        devices: u32::try_from(r.get::<i64, _>(8)).unwrap_or(0),
        waiting_for: r.get(7),
    }
}

fn lane_row(r: sqlx::postgres::PgRow) -> LaneRow {
    LaneRow {
        run: r.get(0),
        namespace: r.get(1),
        workflow: r.get(2),
        spec: r.get(3),
        event: serde_json::from_value(r.get(4)).unwrap_or_default(),
        started_by: r.get(5),
        device: r.get(6),
        device_name: r.get(7),
        state: LaneState::parse(r.get(8)).unwrap_or(LaneState::Failed),
        step: usize::try_from(r.get::<i32, _>(9)).unwrap_or(0),
        attempt: u32::try_from(r.get::<i32, _>(10)).unwrap_or(0),
        phase: Phase::parse(r.get(11)),
        next_at: r.get::<Option<i64>, _>(12).map(from_ts),
        vars: map_of(r.get(13)),
        outputs: map_of(r.get(14)),
        failed_any: r.get(15),
        run_started: from_ts(r.get(16)),
    }
}

/// Locks a lane for a change and re-reads its position (another engine pass or an API
/// call may have moved it since it was read).
pub async fn lock_lane(
    conn: &mut PgConnection,
    run: Uuid,
    device: Uuid,
) -> Result<Option<(LaneState, usize, u32, Phase)>, StoreError> {
    let row = sqlx::query(
        "SELECT state, step, attempt, phase FROM workflow_lanes WHERE run = $1 AND device = $2 FOR UPDATE",
    )
    .bind(run)
    .bind(device)
    .fetch_optional(&mut *conn)
    .await
    .map_err(StoreError::query("lock a workflow lane"))?;
    Ok(row.map(|r| {
        (
            LaneState::parse(r.get(0)).unwrap_or(LaneState::Failed),
            usize::try_from(r.get::<i32, _>(1)).unwrap_or(0),
            u32::try_from(r.get::<i32, _>(2)).unwrap_or(0),
            Phase::parse(r.get(3)),
        )
    }))
}

/// The lane's new position.
#[derive(Debug, Clone)]
pub struct LaneUpdate<'a> {
    pub state: LaneState,
    pub step: usize,
    pub attempt: u32,
    pub phase: Phase,
    pub next_at: Option<Timestamp>,
    pub vars: &'a BTreeMap<String, Value>,
    pub outputs: &'a BTreeMap<String, Value>,
    pub failed_any: bool,
}

pub async fn update_lane(
    conn: &mut PgConnection,
    run: Uuid,
    device: Uuid,
    u: &LaneUpdate<'_>,
    now: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE workflow_lanes SET state = $3, step = $4, attempt = $5, phase = $6, next_at = to_timestamp($7::float8 / 1000),
                vars = $8, outputs = $9, failed_any = $10,
                finished = CASE WHEN $3 IN ('Succeeded', 'PartiallyFailed', 'Failed', 'Cancelled') THEN to_timestamp($11::float8 / 1000) ELSE NULL END,
                started = coalesce(started, to_timestamp($11::float8 / 1000))
         WHERE run = $1 AND device = $2",
    )
    .bind(run)
    .bind(device)
    .bind(u.state.as_str())
    .bind(i32::try_from(u.step).unwrap_or(i32::MAX))
    .bind(i32::try_from(u.attempt).unwrap_or(i32::MAX))
    .bind(u.phase.as_str())
    .bind(u.next_at.map(ts))
    .bind(serde_json::to_value(u.vars).unwrap_or(Value::Null))
    .bind(serde_json::to_value(u.outputs).unwrap_or(Value::Null))
    .bind(u.failed_any)
    .bind(ts(now))
    .execute(&mut *conn)
    .await
    .map_err(StoreError::query("update a workflow lane"))?;
    Ok(())
}

/// A new attempt of a step.
#[derive(Debug, Clone)]
pub struct NewAttempt<'a> {
    pub run: Uuid,
    pub device: Uuid,
    pub step_index: usize,
    pub attempt: u32,
    pub step: &'a str,
    pub type_: StepType,
    pub state: AttemptState,
    pub work: Option<&'a WorkItem>,
    pub deadline: Option<Timestamp>,
    pub message: &'a str,
}

impl<'a> NewAttempt<'a> {
    /// Attempt `attempt` of `lane`'s current step `step`, running, with nothing out.
    pub fn of(lane: &LaneRow, step: &'a cdot_crds::workflow::Step, attempt: u32) -> Self {
        Self {
            run: lane.run,
            device: lane.device,
            step_index: lane.step,
            attempt,
            step: &step.name,
            type_: step.type_,
            state: AttemptState::Running,
            work: None,
            deadline: None,
            message: "",
        }
    }
}

/// Inserts an attempt; an attempt that exists (a pass that ran twice) is left alone.
pub async fn insert_attempt(
    conn: &mut PgConnection,
    a: &NewAttempt<'_>,
    now: Timestamp,
) -> Result<(), StoreError> {
    let finished = a.state.is_final().then(|| ts(now));
    sqlx::query(
        "INSERT INTO workflow_attempts (run, device, step_index, attempt, step, type, state,
                                        work_id, work, started, deadline, finished, message)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, to_timestamp($10::float8 / 1000), to_timestamp($11::float8 / 1000), to_timestamp($12::float8 / 1000), $13)
         ON CONFLICT (run, device, step_index, attempt) DO NOTHING",
    )
    .bind(a.run)
    .bind(a.device)
    .bind(i32::try_from(a.step_index).unwrap_or(i32::MAX))
    .bind(i32::try_from(a.attempt).unwrap_or(i32::MAX))
    .bind(a.step)
    .bind(step_type_str(a.type_))
    .bind(a.state.as_str())
    .bind(a.work.map(|w| w.id))
    .bind(a.work.map(|w| serde_json::to_value(w).unwrap_or(Value::Null)))
    .bind(ts(now))
    .bind(a.deadline.map(ts))
    .bind(finished)
    .bind(a.message)
    .execute(&mut *conn)
    .await
    .map_err(StoreError::query("insert a workflow step attempt"))?;
    Ok(())
}

/// Reads one attempt.
pub async fn attempt(
    conn: &mut PgConnection,
    run: Uuid,
    device: Uuid,
    step_index: usize,
    attempt: u32,
) -> Result<Option<AttemptRow>, StoreError> {
    let row = sqlx::query(
        "SELECT state, (extract(epoch FROM started) * 1000)::int8, (extract(epoch FROM deadline) * 1000)::int8,
                result, message FROM workflow_attempts
         WHERE run = $1 AND device = $2 AND step_index = $3 AND attempt = $4",
    )
    .bind(run)
    .bind(device)
    .bind(i32::try_from(step_index).unwrap_or(i32::MAX))
    .bind(i32::try_from(attempt).unwrap_or(i32::MAX))
    .fetch_optional(&mut *conn)
    .await
    .map_err(StoreError::query("read a workflow step attempt"))?;
    Ok(row.map(|r| AttemptRow {
        state: AttemptState::parse(r.get(0)).unwrap_or(AttemptState::Failed),
        started: from_ts(r.get(1)),
        deadline: r.get::<Option<i64>, _>(2).map(from_ts),
        result: r
            .get::<Option<Value>, _>(3)
            .and_then(|v| serde_json::from_value(v).ok()),
        message: r.get(4),
    }))
}

/// Ends an attempt the operator decides about (a wait, a rhai step, a deadline passed).
/// One attempt of one step of one lane.
#[derive(Debug, Clone, Copy)]
pub struct AttemptKey {
    pub run: Uuid,
    pub device: Uuid,
    pub step_index: usize,
    pub attempt: u32,
}

pub async fn finish_attempt(
    conn: &mut PgConnection,
    key: AttemptKey,
    state: AttemptState,
    message: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    let AttemptKey {
        run,
        device,
        step_index,
        attempt,
    } = key;
    sqlx::query(
        "UPDATE workflow_attempts SET state = $5, message = $6, finished = to_timestamp($7::float8 / 1000)
         WHERE run = $1 AND device = $2 AND step_index = $3 AND attempt = $4
           AND state IN ('Dispatched', 'Running')",
    )
    .bind(run)
    .bind(device)
    .bind(i32::try_from(step_index).unwrap_or(i32::MAX))
    .bind(i32::try_from(attempt).unwrap_or(i32::MAX))
    .bind(state.as_str())
    .bind(message)
    .bind(ts(now))
    .execute(&mut *conn)
    .await
    .map_err(StoreError::query("finish a workflow step attempt"))?;
    Ok(())
}

/// The states of a run's lanes.
pub async fn lane_states(conn: &mut PgConnection, run: Uuid) -> Result<Vec<LaneState>, StoreError> {
    let rows: Vec<String> = sqlx::query_scalar("SELECT state FROM workflow_lanes WHERE run = $1")
        .bind(run)
        .fetch_all(&mut *conn)
        .await
        .map_err(StoreError::query("read a run's lane states"))?;
    Ok(rows.iter().filter_map(|s| LaneState::parse(s)).collect())
}

/// Sets a run's state; `finished` is set once the state is final.
pub async fn set_run_state(
    conn: &mut PgConnection,
    run: Uuid,
    state: RunState,
    waiting_for: Option<&str>,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let changed = sqlx::query(
        "UPDATE workflow_runs SET state = $2, waiting_for = $3,
                finished = CASE WHEN $2 IN ('Succeeded', 'PartiallyFailed', 'Failed', 'Cancelled') THEN to_timestamp($4::float8 / 1000) ELSE NULL END
         WHERE id = $1 AND (state IS DISTINCT FROM $2 OR waiting_for IS DISTINCT FROM $3)",
    )
    .bind(run)
    .bind(state.as_str())
    .bind(waiting_for)
    .bind(ts(now))
    .execute(&mut *conn)
    .await
    .map_err(StoreError::query("set a workflow run's state"))?
    .rows_affected();
    Ok(changed > 0)
}

/// A run as the approval and cancel routes read it (locked).
#[derive(Debug, Clone)]
pub struct RunHead {
    pub namespace: String,
    pub workflow: String,
    pub state: RunState,
    pub started_by: String,
    pub spec: Value,
}

pub async fn lock_run(conn: &mut PgConnection, run: Uuid) -> Result<Option<RunHead>, StoreError> {
    let row = sqlx::query(
        "SELECT namespace, workflow, state, started_by, spec FROM workflow_runs WHERE id = $1 FOR UPDATE",
    )
    .bind(run)
    .fetch_optional(&mut *conn)
    .await
    .map_err(StoreError::query("lock a workflow run"))?;
    Ok(row.map(|r| RunHead {
        namespace: r.get(0),
        workflow: r.get(1),
        state: RunState::parse(r.get(2)).unwrap_or(RunState::Failed),
        started_by: r.get(3),
        spec: r.get(4),
    }))
}

/// Lanes of a run in `state`, with their step.
pub async fn lanes_in(
    conn: &mut PgConnection,
    run: Uuid,
    state: LaneState,
) -> Result<Vec<(Uuid, String, usize)>, StoreError> {
    let rows = sqlx::query(
        "SELECT device, device_name, step FROM workflow_lanes WHERE run = $1 AND state = $2 ORDER BY position",
    )
    .bind(run)
    .bind(state.as_str())
    .fetch_all(&mut *conn)
    .await
    .map_err(StoreError::query("read a run's lanes"))?;
    Ok(rows
        .iter()
        .map(|r| {
            (
                r.get(0),
                r.get(1),
                usize::try_from(r.get::<i32, _>(2)).unwrap_or(0),
            )
        })
        .collect())
}

/// Moves lanes of a run from one state to another (approval, cancel).
pub async fn move_lanes(
    conn: &mut PgConnection,
    run: Uuid,
    from: &[LaneState],
    to: LaneState,
    advance_step: bool,
    now: Timestamp,
) -> Result<u64, StoreError> {
    let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
    Ok(sqlx::query(
        "UPDATE workflow_lanes SET state = $3,
                step = step + CASE WHEN $4 THEN 1 ELSE 0 END,
                attempt = CASE WHEN $4 THEN 0 ELSE attempt END,
                phase = CASE WHEN $4 THEN 'Start' ELSE phase END,
                next_at = NULL,
                started = coalesce(started, to_timestamp($5::float8 / 1000)),
                finished = CASE WHEN $3 IN ('Succeeded', 'PartiallyFailed', 'Failed', 'Cancelled') THEN to_timestamp($5::float8 / 1000) ELSE NULL END
         WHERE run = $1 AND state = ANY($2)",
    )
    .bind(run)
    .bind(&from)
    .bind(to.as_str())
    .bind(advance_step)
    .bind(ts(now))
    .execute(&mut *conn)
    .await
    .map_err(StoreError::query("move a run's lanes"))?
    .rows_affected())
}

/// Ends the open attempts of a run (cancel).
pub async fn cancel_attempts(
    conn: &mut PgConnection,
    run: Uuid,
    now: Timestamp,
) -> Result<Vec<Uuid>, StoreError> {
    let devices: Vec<Uuid> = sqlx::query_scalar(
        "UPDATE workflow_attempts SET state = 'Cancelled', finished = to_timestamp($2::float8 / 1000),
                message = 'the run was cancelled'
         WHERE run = $1 AND state IN ('Dispatched', 'Running') RETURNING device",
    )
    .bind(run)
    .bind(ts(now))
    .fetch_all(&mut *conn)
    .await
    .map_err(StoreError::query("cancel a run's attempts"))?;
    Ok(devices)
}

pub async fn insert_approval(
    conn: &mut PgConnection,
    run: Uuid,
    what: &str,
    by: &str,
    comment: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO workflow_approvals (run, what, by_whom, at, comment) VALUES ($1, $2, $3, to_timestamp($4::float8 / 1000), $5)",
    )
    .bind(run)
    .bind(what)
    .bind(by)
    .bind(ts(now))
    .bind(comment)
    .execute(&mut *conn)
    .await
    .map_err(StoreError::query("record a run approval"))?;
    Ok(())
}

/// How often finished runs and old service failures are pruned.
const RETENTION_EVERY: std::time::Duration = std::time::Duration::from_secs(3600);
/// Service failures older than this count for no window (`within` is at most a day).
const SERVICE_FAILURES_KEPT: jiff::SignedDuration = jiff::SignedDuration::from_hours(48);

/// Prunes finished runs older than `retention` and service failures no window counts.
pub async fn retain(
    store: Store,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    retention: std::time::Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut interval = crate::jobs::interval(RETENTION_EVERY);
    while crate::jobs::tick(&mut interval, &mut shutdown).await {
        let _timer = metrics.ingest.job_timer("workflow_retention");
        let now = Timestamp::now();
        let ago = |d: jiff::SignedDuration| now.checked_sub(d).unwrap_or(Timestamp::MIN);
        let runs_before =
            ago(jiff::SignedDuration::try_from(retention).unwrap_or(jiff::SignedDuration::MAX));
        let result = async {
            let runs = store.prune_runs(runs_before).await?;
            let failures = store
                .prune_service_failures(ago(SERVICE_FAILURES_KEPT))
                .await?;
            Ok::<_, StoreError>((runs, failures))
        }
        .await;
        metrics.ingest.job_run("workflow_retention", result.is_ok());
        match result {
            Ok((runs, failures)) if runs + failures > 0 => {
                tracing::info!(
                    runs,
                    failures,
                    "old workflow runs and service failures pruned"
                )
            }
            Ok(_) => {}
            Err(e) => crate::jobs::failed(&metrics, "workflow run retention", &e),
        }
    }
}
