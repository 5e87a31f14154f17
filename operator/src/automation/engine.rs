//! The run engine: one task that starts runs for the events it is told of and moves every
//! due lane (one device's way through the steps) one step at a time.
//!
//! Each move is one transaction: the lane is locked and re-read, the attempt and the lane's
//! new position are written with their audit entries, and only then is anything sent (an
//! agent woken, a notification delivered). So a restarted operator (after `kill -9` too)
//! resumes from PostgreSQL: a lane whose agent step is out waits for the agent's report
//! of the same work id (the agent never runs an id twice), and a step that finished is
//! never started again.
use std::{
    collections::{BTreeMap, HashSet},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use cdot_crds::{
    common::parse_duration,
    kind::Kind,
    wire::{
        automation::{AttemptState, Event, LaneState, RunState},
        work::{Isolate, RestartService, RunScript, StepOrigin, StepResult, WorkItem, WorkKind},
    },
    workflow::{OnFailure, Step, StepType, TriggerType, WorkflowSpec},
};
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::{
    sync::{Notify, mpsc, watch},
    task::JoinHandle,
};
use uuid::Uuid;

use super::{
    audit::{self, NewEntry},
    deliver::Deliver,
    sandbox::{DeviceView, Inputs, Sandbox, SandboxError, Script},
    store::{self as runs, LaneRow, LaneUpdate, NewAttempt, Phase},
};
use crate::{
    changes::Changes,
    config_maps::{ConfigMaps, script_text},
    index::{DeviceEntry, Index, Snapshot},
    metrics::AutomationMetrics,
    store::{StatusPatch, Store, StoreError},
    work::Work,
};

/// How often the engine looks even when nothing woke it.
const PASS_INTERVAL: Duration = Duration::from_secs(1);
/// How often offline devices and schedules are looked for.
const PERIODIC_EVERY: Duration = Duration::from_secs(5);
/// Lanes moved in one pass at most.
const LANES_PER_PASS: i64 = 1_000;
/// Longer than its timeout an agent step may stay without a final report before the
/// operator calls it timed out (the agent may be offline when it is dispatched).
const AGENT_GRACE: SignedDuration = SignedDuration::from_secs(120);
/// How often a Wait step's `until` condition is checked.
const UNTIL_EVERY: SignedDuration = SignedDuration::from_secs(2);
/// Lanes moved at once (each holds a database connection while it moves).
const LANES_AT_ONCE: usize = 8;
/// Steps one lane may take in one pass before others get their turn.
const STEPS_PER_LANE: usize = 64;

/// What happened, for the engine to start runs of the workflows it triggers.
#[derive(Debug, Clone)]
pub struct Fired {
    pub namespace: String,
    pub trigger: TriggerType,
    /// The device the event is about.
    pub device: Option<Uuid>,
    pub event: Event,
    /// Same for every sighting of one occurrence (one run per occurrence).
    pub dedup: Option<String>,
}

/// Starts runs and wakes the engine; cheap to clone.
#[derive(Clone)]
pub struct Automation {
    inner: Arc<Inner>,
}

struct Inner {
    fired: mpsc::UnboundedSender<Fired>,
    pending: std::sync::Mutex<Option<mpsc::UnboundedReceiver<Fired>>>,
    wake: Notify,
    woken: std::sync::Mutex<Vec<Uuid>>,
    sandbox: Arc<Sandbox>,
    /// Last serviceFailed value per (device, service): a failure is a change to 1.
    services: std::sync::Mutex<std::collections::HashMap<(Uuid, String), bool>>,
}

impl Default for Automation {
    fn default() -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        Self {
            inner: Arc::new(Inner {
                fired: tx,
                pending: std::sync::Mutex::new(Some(rx)),
                wake: Notify::new(),
                woken: std::sync::Mutex::default(),
                sandbox: Arc::new(Sandbox::new(super::sandbox::Limits::default())),
                services: std::sync::Mutex::default(),
            }),
        }
    }
}

impl Automation {
    pub fn sandbox(&self) -> &Arc<Sandbox> {
        &self.inner.sandbox
    }

    /// Tells the engine of an event.
    pub fn fire(&self, fired: Fired) {
        let _ = self.inner.fired.send(fired);
    }

    /// Something changed for `run` (an agent report, an approval): move it now.
    pub fn wake_run(&self, run: Uuid) {
        self.inner
            .woken
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(run);
        self.inner.wake.notify_one();
    }

    /// Committed `serviceFailed` samples of a device: each change to failed is a failure.
    pub fn observe_service(&self, device: Uuid, service: &str, failed: bool) -> bool {
        let mut map = self
            .inner
            .services
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let before = map.insert((device, service.to_owned()), failed);
        failed && before != Some(true)
    }

    /// Starts the engine once `ready`; it ends when `shutdown` turns true.
    #[allow(clippy::too_many_arguments)]
    pub fn spawn(
        &self,
        store: Store,
        index: Index,
        config_maps: Arc<ConfigMaps>,
        work: Work,
        changes: Changes,
        deliver: Deliver,
        metrics: AutomationMetrics,
        ready: Arc<AtomicBool>,
        mut shutdown: watch::Receiver<bool>,
    ) -> JoinHandle<()> {
        let this = self.clone();
        let mut fired = self
            .inner
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .expect("the automation engine is spawned once");
        let engine = Engine {
            store,
            index,
            config_maps,
            work,
            changes,
            deliver,
            metrics,
            sandbox: self.inner.sandbox.clone(),
        };
        tokio::spawn(async move {
            let mut events: Vec<Fired> = Vec::new();
            let mut periodic = super::triggers::Periodic::default();
            let mut looked: Option<std::time::Instant> = None;
            loop {
                if ready.load(Ordering::Acquire) {
                    if looked.is_none_or(|t| t.elapsed() >= PERIODIC_EVERY) {
                        looked = Some(std::time::Instant::now());
                        match periodic
                            .events(&engine.store, &engine.index.snapshot(), Timestamp::now())
                            .await
                        {
                            Ok(found) => events.extend(found),
                            Err(e) => {
                                engine.metrics.errors.inc();
                                tracing::warn!(error = %e, "looking for offline devices and schedules failed");
                            }
                        }
                    }
                    let mut started = Vec::new();
                    for f in &events {
                        if f.trigger == TriggerType::ServiceFailed
                            && let (Some(device), Some(service)) = (f.device, &f.event.service)
                            && let Err(e) = engine
                                .store
                                .record_service_failure(device, service, Timestamp::now())
                                .await
                        {
                            tracing::warn!(error = %e, "recording a service failure failed");
                        }
                    }
                    for f in events.drain(..) {
                        match super::start::start(
                            &engine.store,
                            &engine.index.snapshot(),
                            &engine.sandbox,
                            &f,
                            None,
                            Timestamp::now(),
                        )
                        .await
                        {
                            Ok(ids) => {
                                engine.metrics.runs_started.inc_by(ids.len() as u64);
                                started.extend(ids);
                            }
                            Err(e) => {
                                engine.metrics.errors.inc();
                                tracing::warn!(error = %e, namespace = %f.namespace, trigger = ?f.trigger, "starting workflow runs failed");
                            }
                        }
                    }
                    let woken: Vec<Uuid> = std::mem::take(
                        &mut *this.inner.woken.lock().unwrap_or_else(|p| p.into_inner()),
                    );
                    started.extend(woken);
                    let span = tracing::info_span!("automation_pass", woken = started.len());
                    if let Err(e) =
                        tracing::Instrument::instrument(engine.pass(&started), span).await
                    {
                        engine.metrics.errors.inc();
                        tracing::warn!(error = %e, "automation pass failed; retrying");
                    }
                }
                let sleep = match engine.store.next_lane_due().await {
                    Ok(Some(t)) => Duration::try_from(t.duration_since(Timestamp::now()))
                        .unwrap_or(Duration::ZERO)
                        .clamp(Duration::from_millis(20), PASS_INTERVAL),
                    _ => PASS_INTERVAL,
                };
                tokio::select! {
                    f = fired.recv() => match f {
                        Some(f) => {
                            events.push(f);
                            while let Ok(f) = fired.try_recv() {
                                events.push(f);
                            }
                        }
                        None => return,
                    },
                    () = this.inner.wake.notified() => {}
                    () = tokio::time::sleep(sleep) => {}
                    _ = shutdown.changed() => {
                        if *shutdown.borrow() {
                            return;
                        }
                    }
                }
            }
        })
    }
}

/// The work item id of one attempt: its idempotency key.
pub fn work_id(run: Uuid, device: Uuid, step: usize, attempt: u32) -> Uuid {
    let mut h = Sha256::new();
    h.update(b"workflow-step");
    h.update(run.as_bytes());
    h.update(device.as_bytes());
    h.update((step as u64).to_be_bytes());
    h.update(attempt.to_be_bytes());
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    uuid::Builder::from_custom_bytes(b).into_uuid()
}

/// The addresses an isolated device still reaches besides its operator: the step's
/// `allow` and the management addresses of its site's collectors.
pub fn isolation_allow(snapshot: &Snapshot, device: &DeviceEntry, step: &Step) -> Vec<String> {
    let mut allow: Vec<String> = step.allow.clone();
    let site = device.site();
    for d in snapshot.devices() {
        let Some(spec) = &d.spec else { continue };
        if d.object.namespace == device.object.namespace
            && spec.class == cdot_crds::device::DeviceClass::Collector
            && d.site() == site
        {
            allow.extend(
                spec.management_addresses
                    .iter()
                    .filter(|a| a.parse::<std::net::IpAddr>().is_ok())
                    .cloned(),
            );
        }
    }
    allow.sort();
    allow.dedup();
    allow
}

pub(super) fn duration(s: &str) -> SignedDuration {
    parse_duration(s)
        .ok()
        .and_then(|d| SignedDuration::try_from(d).ok())
        .unwrap_or_default()
}

fn after(now: Timestamp, d: SignedDuration) -> Timestamp {
    now.checked_add(d).unwrap_or(now)
}

fn is_agent_step(t: StepType) -> bool {
    matches!(
        t,
        StepType::RunScript
            | StepType::RestartService
            | StepType::IsolateDevice
            | StepType::ReleaseIsolation
    )
}

struct Engine {
    store: Store,
    index: Index,
    /// Where RunScript steps' `configMapRef` scripts are read when the step starts.
    config_maps: Arc<ConfigMaps>,
    work: Work,
    changes: Changes,
    deliver: Deliver,
    metrics: AutomationMetrics,
    sandbox: Arc<Sandbox>,
}

/// What one move of a lane did.
enum Moved {
    /// Nothing (the lane moved meanwhile, or waits).
    Nothing,
    /// Moved; look at it again now (its next step may run at once).
    Again,
    /// Moved; it waits for time or an agent.
    Waits,
    /// Moved out of `Running` (finished, failed, at an Approval step): its run's state
    /// may change.
    Left,
}

impl Engine {
    async fn pass(&self, woken: &[Uuid]) -> Result<(), StoreError> {
        let now = Timestamp::now();
        let lanes = self.store.due_lanes(now, woken, LANES_PER_PASS).await?;
        // Runs a person or an agent woke, and runs a lane of which left `Running`: only
        // theirs can change state.
        let mut touched: HashSet<(Uuid, String, String)> = lanes
            .iter()
            .filter(|l| woken.contains(&l.run))
            .map(|l| (l.run, l.namespace.clone(), l.workflow.clone()))
            .collect();
        // Lanes are independent (each move locks its own row): several at once keep the
        // database busy while one move waits for its round trips.
        use futures::StreamExt as _;
        let left: Vec<(Uuid, String, String)> = futures::stream::iter(lanes)
            .map(|lane| self.walk(lane))
            .buffer_unordered(LANES_AT_ONCE)
            .filter_map(|left| async move { left })
            .collect()
            .await;
        touched.extend(left);
        for (run, namespace, workflow) in touched {
            self.settle(run, &namespace, &workflow).await?;
        }
        Ok(())
    }

    /// Moves one lane as far as it goes now (an operator step runs on into the next);
    /// names its run when the lane left `Running`.
    async fn walk(&self, mut lane: LaneRow) -> Option<(Uuid, String, String)> {
        for _ in 0..STEPS_PER_LANE {
            let moved = match self.move_lane(&lane).await {
                Ok(m) => m,
                Err(e) => {
                    self.metrics.errors.inc();
                    tracing::warn!(run = %lane.run, device = %lane.device_name, error = %e, "moving a workflow lane failed");
                    return None;
                }
            };
            match moved {
                // Re-read: the move changed it; a lane waiting for time is done here.
                Moved::Again => match self.store.running_lane(lane.run, lane.device).await {
                    Ok(Some(next)) if next.next_at.is_none() => lane = next,
                    Ok(_) => return None,
                    Err(e) => {
                        self.metrics.errors.inc();
                        tracing::warn!(run = %lane.run, error = %e, "re-reading a workflow lane failed");
                        return None;
                    }
                },
                Moved::Nothing | Moved::Waits => return None,
                Moved::Left => return Some((lane.run, lane.namespace, lane.workflow)),
            }
        }
        None
    }

    /// Moves one lane one step.
    async fn move_lane(&self, lane: &LaneRow) -> Result<Moved, StoreError> {
        let now = Timestamp::now();
        let mut tx = self
            .store
            .pool()
            .begin()
            .await
            .map_err(StoreError::query("begin moving a workflow lane"))?;
        let Some((state, step, attempt, phase)) =
            runs::lock_lane(&mut tx, lane.run, lane.device).await?
        else {
            return Ok(Moved::Nothing);
        };
        if state != LaneState::Running
            || step != lane.step
            || attempt != lane.attempt
            || phase != lane.phase
        {
            return Ok(Moved::Nothing);
        }
        let spec: WorkflowSpec = match serde_json::from_value(lane.spec.clone()) {
            Ok(s) => s,
            Err(e) => {
                let u = LaneUpdate {
                    state: LaneState::Failed,
                    step,
                    attempt,
                    phase,
                    next_at: None,
                    vars: &lane.vars,
                    outputs: &lane.outputs,
                    failed_any: true,
                };
                runs::update_lane(&mut tx, lane.run, lane.device, &u, now).await?;
                self.audit(
                    &mut tx,
                    lane,
                    "lane.failed",
                    json!({"reason": format!("the run's stored spec does not decode: {e}")}),
                    now,
                )
                .await?;
                commit(tx).await?;
                return Ok(Moved::Left);
            }
        };
        let Some(s) = spec.steps.get(step) else {
            let state = if lane.failed_any {
                LaneState::PartiallyFailed
            } else {
                LaneState::Succeeded
            };
            let u = LaneUpdate {
                state,
                step,
                attempt: 0,
                phase: Phase::Start,
                next_at: None,
                vars: &lane.vars,
                outputs: &lane.outputs,
                failed_any: lane.failed_any,
            };
            runs::update_lane(&mut tx, lane.run, lane.device, &u, now).await?;
            self.audit(
                &mut tx,
                lane,
                "lane.finished",
                json!({"state": state.as_str()}),
                now,
            )
            .await?;
            commit(tx).await?;
            return Ok(Moved::Left);
        };
        match phase {
            Phase::Start | Phase::Retry => {
                self.start_attempt(tx, lane, &spec, s, attempt + 1, now)
                    .await
            }
            Phase::Wait => self.check_attempt(tx, lane, &spec, s, attempt, now).await,
        }
    }

    async fn start_attempt(
        &self,
        mut tx: sqlx::Transaction<'static, sqlx::Postgres>,
        lane: &LaneRow,
        spec: &WorkflowSpec,
        s: &Step,
        attempt: u32,
        now: Timestamp,
    ) -> Result<Moved, StoreError> {
        let step = lane.step;
        let timeout = duration(&s.timeout);
        if is_agent_step(s.type_) {
            let item = match self.work_item(lane, s, attempt, timeout) {
                Ok(item) => item,
                // Nothing to send (a ConfigMap gone since the Workflow was applied): the
                // attempt fails here and the step's retries and onFailure apply.
                Err(message) => {
                    runs::insert_attempt(
                        &mut tx,
                        &NewAttempt {
                            state: AttemptState::Failed,
                            message: &message,
                            ..NewAttempt::of(lane, s, attempt)
                        },
                        now,
                    )
                    .await?;
                    self.audit(
                        &mut tx,
                        lane,
                        "step.finished",
                        json!({"step": s.name, "attempt": attempt, "state": "Failed", "error": message}),
                        now,
                    )
                    .await?;
                    return self.failed(tx, lane, spec, s, attempt, now).await;
                }
            };
            let deadline = after(now, timeout.checked_add(AGENT_GRACE).unwrap_or(timeout));
            runs::insert_attempt(
                &mut tx,
                &NewAttempt {
                    state: AttemptState::Dispatched,
                    work: Some(&item),
                    deadline: Some(deadline),
                    ..NewAttempt::of(lane, s, attempt)
                },
                now,
            )
            .await?;
            self.set(&mut tx, lane.out(attempt, Some(deadline)), now)
                .await?;
            self.audit(
                &mut tx,
                lane,
                "step.dispatched",
                json!({"step": s.name, "attempt": attempt, "work": item}),
                now,
            )
            .await?;
            commit(tx).await?;
            self.metrics.steps_started.inc();
            if attempt == 1 && !spec.steps[..step].iter().any(|s| is_agent_step(s.type_)) {
                // The run's first agent step: how long from the run's start to here.
                let waited = now.duration_since(lane.run_started).as_secs_f64();
                self.metrics.dispatch_latency.observe(waited.max(0.0));
            }
            self.work.wake_device(lane.device);
            return Ok(Moved::Waits);
        }
        match s.type_ {
            StepType::Wait => {
                let deadline = after(now, duration(s.duration.as_deref().unwrap_or("0s")));
                let next = if s.until.is_some() {
                    after(now, UNTIL_EVERY).min(deadline)
                } else {
                    deadline
                };
                runs::insert_attempt(
                    &mut tx,
                    &NewAttempt {
                        deadline: Some(deadline),
                        ..NewAttempt::of(lane, s, attempt)
                    },
                    now,
                )
                .await?;
                self.set(&mut tx, lane.out(attempt, Some(next)), now)
                    .await?;
                self.audit(
                    &mut tx,
                    lane,
                    "step.started",
                    json!({"step": s.name, "attempt": attempt, "until": deadline.to_string()}),
                    now,
                )
                .await?;
                commit(tx).await?;
                Ok(Moved::Waits)
            }
            StepType::Approval => {
                runs::insert_attempt(
                    &mut tx,
                    &NewAttempt {
                        message: "waits for a person's approval",
                        ..NewAttempt::of(lane, s, attempt)
                    },
                    now,
                )
                .await?;
                self.set(&mut tx, lane.at_gate(attempt), now).await?;
                self.audit(
                    &mut tx,
                    lane,
                    "step.awaitingApproval",
                    json!({"step": s.name}),
                    now,
                )
                .await?;
                commit(tx).await?;
                Ok(Moved::Left)
            }
            StepType::Rhai => {
                let source = s.rhai.clone().unwrap_or_default();
                let outcome = self.in_sandbox(lane, &source, now, Sandbox::run).await;
                let (state, message) = match &outcome {
                    Ok(_) => (AttemptState::Succeeded, String::new()),
                    Err(e) => (AttemptState::Failed, e.clone()),
                };
                runs::insert_attempt(
                    &mut tx,
                    &NewAttempt {
                        run: lane.run,
                        device: lane.device,
                        step_index: step,
                        attempt,
                        step: &s.name,
                        type_: s.type_,
                        state,
                        work: None,
                        deadline: None,
                        message: &message,
                    },
                    now,
                )
                .await?;
                match outcome {
                    Ok(out) => {
                        let mut vars = lane.vars.clone();
                        vars.extend(out.set.clone());
                        let mut outputs = lane.outputs.clone();
                        outputs.insert(s.name.clone(), json!({"value": out.value, "log": out.log}));
                        self.audit(&mut tx, lane, "step.finished", json!({"step": s.name, "attempt": attempt, "state": "Succeeded", "set": out.set, "value": out.value}), now).await?;
                        self.set(
                            &mut tx,
                            lane.next_step().with_vars(&vars).with_outputs(&outputs),
                            now,
                        )
                        .await?;
                        commit(tx).await?;
                        Ok(Moved::Again)
                    }
                    Err(message) => {
                        self.audit(&mut tx, lane, "step.finished", json!({"step": s.name, "attempt": attempt, "state": "Failed", "error": message}), now).await?;
                        self.failed(tx, lane, spec, s, attempt, now).await
                    }
                }
            }
            StepType::Notify | StepType::OpenTicket => {
                // Marked out before it is sent: an operator that dies while sending
                // finds it at its deadline and sends again (at least once).
                let deadline = after(now, timeout);
                runs::insert_attempt(
                    &mut tx,
                    &NewAttempt {
                        deadline: Some(deadline),
                        ..NewAttempt::of(lane, s, attempt)
                    },
                    now,
                )
                .await?;
                self.set(&mut tx, lane.out(attempt, Some(deadline)), now)
                    .await?;
                commit(tx).await?;
                let sent = self.deliver.send(lane, s, attempt, timeout).await;
                let (state, message) = match &sent {
                    Ok(detail) => (AttemptState::Succeeded, detail.clone()),
                    Err(e) => (AttemptState::Failed, e.clone()),
                };
                let mut tx = begin(&self.store).await?;
                runs::finish_attempt(
                    &mut tx,
                    runs::AttemptKey {
                        run: lane.run,
                        device: lane.device,
                        step_index: step,
                        attempt,
                    },
                    state,
                    &message,
                    Timestamp::now(),
                )
                .await?;
                // Due now: the next pass takes the result, not the step's deadline.
                self.set(&mut tx, lane.out(attempt, Some(Timestamp::now())), now)
                    .await?;
                commit(tx).await?;
                self.metrics.steps_started.inc();
                Ok(Moved::Waits)
            }
            _ => Ok(Moved::Nothing),
        }
    }

    /// A lane whose attempt is out: finished, past its deadline, or still waiting.
    async fn check_attempt(
        &self,
        mut tx: sqlx::Transaction<'static, sqlx::Postgres>,
        lane: &LaneRow,
        spec: &WorkflowSpec,
        s: &Step,
        attempt: u32,
        now: Timestamp,
    ) -> Result<Moved, StoreError> {
        let step = lane.step;
        let Some(a) = runs::attempt(&mut tx, lane.run, lane.device, step, attempt).await? else {
            // The attempt was never written: make it.
            self.set(&mut tx, lane.again(attempt.saturating_sub(1)), now)
                .await?;
            commit(tx).await?;
            return Ok(Moved::Again);
        };
        let mut state = a.state;
        let mut message = a.message.clone();
        if !state.is_final() {
            let due = a.deadline.is_some_and(|d| d <= now);
            match s.type_ {
                StepType::Wait => {
                    let held = match &s.until {
                        Some(until) => {
                            match self.in_sandbox(lane, until, now, Sandbox::eval_bool).await {
                                Ok(v) => v,
                                Err(e) => {
                                    state = AttemptState::Failed;
                                    message = e;
                                    false
                                }
                            }
                        }
                        None => due,
                    };
                    if held {
                        state = AttemptState::Succeeded;
                    } else if state != AttemptState::Failed && due {
                        state = AttemptState::TimedOut;
                        message = format!(
                            "the until condition did not hold within {}",
                            s.duration.as_deref().unwrap_or("0s")
                        );
                    }
                }
                StepType::Approval => {}
                _ if due => {
                    state = AttemptState::TimedOut;
                    message = if is_agent_step(s.type_) {
                        format!(
                            "no final report from the agent within the step's timeout ({}) and {}s of grace",
                            s.timeout,
                            AGENT_GRACE.as_secs()
                        )
                    } else {
                        format!(
                            "not finished within the step's timeout ({}); the operator may have restarted meanwhile",
                            s.timeout
                        )
                    };
                }
                _ => {}
            }
            if !state.is_final() {
                let next = match (s.type_, &s.until) {
                    (StepType::Wait, Some(_)) => {
                        Some(after(now, UNTIL_EVERY).min(a.deadline.unwrap_or(now)))
                    }
                    _ => a.deadline,
                };
                if next != lane.next_at {
                    self.set(&mut tx, lane.out(attempt, next), now).await?;
                    commit(tx).await?;
                }
                return Ok(Moved::Waits);
            }
            runs::finish_attempt(
                &mut tx,
                runs::AttemptKey {
                    run: lane.run,
                    device: lane.device,
                    step_index: step,
                    attempt,
                },
                state,
                &message,
                now,
            )
            .await?;
        }
        let detail = json!({"step": s.name, "attempt": attempt, "state": state.as_str(), "message": message, "result": a.result});
        self.audit(&mut tx, lane, "step.finished", detail, now)
            .await?;
        if state == AttemptState::Succeeded {
            let mut outputs = lane.outputs.clone();
            outputs.insert(s.name.clone(), output_of(a.result.as_ref(), &message));
            self.set(&mut tx, lane.next_step().with_outputs(&outputs), now)
                .await?;
            commit(tx).await?;
            return Ok(Moved::Again);
        }
        if state == AttemptState::Cancelled {
            commit(tx).await?;
            return Ok(Moved::Nothing);
        }
        self.failed(tx, lane, spec, s, attempt, now).await
    }

    /// A failed attempt: retry after the delay, or apply the step's on-failure policy.
    async fn failed(
        &self,
        mut tx: sqlx::Transaction<'static, sqlx::Postgres>,
        lane: &LaneRow,
        spec: &WorkflowSpec,
        s: &Step,
        attempt: u32,
        now: Timestamp,
    ) -> Result<Moved, StoreError> {
        let step = lane.step;
        self.metrics.steps_failed.inc();
        if attempt <= s.retries {
            let next = after(now, duration(&s.retry_delay));
            self.set(&mut tx, lane.retry(attempt, next), now).await?;
            commit(tx).await?;
            return Ok(Moved::Waits);
        }
        let (state, next_step) = match s.on_failure {
            OnFailure::Abort => (LaneState::Failed, step),
            OnFailure::Continue => (LaneState::Running, step + 1),
            OnFailure::RunStep => (
                LaneState::Running,
                s.on_failure_step
                    .as_ref()
                    .and_then(|n| spec.steps.iter().position(|o| &o.name == n))
                    .unwrap_or(spec.steps.len()),
            ),
        };
        self.set(&mut tx, lane.after_failure(state, next_step), now)
            .await?;
        if state == LaneState::Failed {
            self.audit(
                &mut tx,
                lane,
                "lane.finished",
                json!({"state": "Failed", "step": s.name}),
                now,
            )
            .await?;
        }
        commit(tx).await?;
        Ok(if state == LaneState::Running {
            Moved::Again
        } else {
            Moved::Left
        })
    }

    async fn set(
        &self,
        tx: &mut sqlx::PgConnection,
        to: Next<'_>,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        runs::update_lane(
            tx,
            to.lane.run,
            to.lane.device,
            &LaneUpdate {
                state: to.state,
                step: to.step,
                attempt: to.attempt,
                phase: to.phase,
                next_at: to.next_at,
                vars: to.vars.unwrap_or(&to.lane.vars),
                outputs: to.outputs.unwrap_or(&to.lane.outputs),
                failed_any: to.failed_any,
            },
            now,
        )
        .await
    }

    async fn audit(
        &self,
        tx: &mut sqlx::PgConnection,
        lane: &LaneRow,
        action: &str,
        mut detail: Value,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        if let Value::Object(m) = &mut detail {
            m.insert("device".into(), Value::String(lane.device_name.clone()));
        }
        audit::append(
            tx,
            &[NewEntry {
                at: now,
                namespace: lane.namespace.clone(),
                actor: "engine".into(),
                action: action.into(),
                run: Some(lane.run),
                detail,
            }],
        )
        .await?;
        Ok(())
    }

    fn work_item(
        &self,
        lane: &LaneRow,
        s: &Step,
        attempt: u32,
        timeout: SignedDuration,
    ) -> Result<WorkItem, String> {
        let origin = StepOrigin {
            workflow: lane.workflow.clone(),
            run: lane.run,
            step: s.name.clone(),
            attempt,
            timeout_secs: timeout.as_secs().max(1) as u64,
        };
        let kind = match s.type_ {
            StepType::RunScript => {
                let script = s.script.as_ref().ok_or("the step has no script")?;
                let namespace = &lane.namespace;
                let body = script_text(script, namespace, |name| {
                    self.config_maps.get(namespace, name)
                })?;
                WorkKind::RunScript(RunScript {
                    origin,
                    shell: script.shell,
                    body,
                    args: script.args.clone(),
                    run_as: script.run_as.clone(),
                })
            }
            StepType::RestartService => WorkKind::RestartService(RestartService {
                origin,
                service: s.service.clone().unwrap_or_default(),
            }),
            StepType::IsolateDevice => {
                let snapshot = self.index.snapshot();
                let allow = snapshot
                    .device_by_uid(&lane.device)
                    .map(|d| isolation_allow(&snapshot, d, s))
                    .unwrap_or_else(|| s.allow.clone());
                WorkKind::Isolate(Isolate { origin, allow })
            }
            _ => WorkKind::Release(origin),
        };
        Ok(WorkItem {
            id: work_id(lane.run, lane.device, lane.step, attempt),
            kind,
        })
    }

    fn inputs_device(&self, lane: &LaneRow) -> DeviceView {
        let snapshot = self.index.snapshot();
        snapshot
            .device_by_uid(&lane.device)
            .map(|d| super::start::device_view(d))
            .unwrap_or_else(|| DeviceView {
                name: lane.device_name.clone(),
                namespace: lane.namespace.clone(),
                labels: BTreeMap::new(),
                class: None,
                site: None,
            })
    }

    /// Runs `source` for `lane` with `eval` (a step's `run`, a wait's `eval_bool`) on a
    /// blocking thread: the sandbox's time limit may hold it for up to a second, which an
    /// async worker must not spend.
    async fn in_sandbox<T: Send + 'static>(
        &self,
        lane: &LaneRow,
        source: &str,
        now: Timestamp,
        eval: fn(&Sandbox, &Script, &Inputs<'_>) -> Result<T, SandboxError>,
    ) -> Result<T, String> {
        let sandbox = self.sandbox.clone();
        let device = self.inputs_device(lane);
        let (event, steps, vars, source) = (
            lane.event.clone(),
            lane.outputs.clone(),
            lane.vars.clone(),
            source.to_owned(),
        );
        tokio::task::spawn_blocking(move || {
            let inputs = Inputs {
                event: &event,
                device: &device,
                steps: &steps,
                vars: &vars,
                now: now.as_second(),
            };
            sandbox
                .compiled(&source)
                .and_then(|script| eval(&sandbox, &script, &inputs))
                .map_err(|e| e.to_string())
        })
        .await
        .unwrap_or_else(|e| Err(format!("the rhai thread failed: {e}")))
    }

    /// Sets the run's state from its lanes, and the workflow's status when it changed.
    async fn settle(&self, run: Uuid, namespace: &str, workflow: &str) -> Result<(), StoreError> {
        let now = Timestamp::now();
        let mut tx = begin(&self.store).await?;
        let Some(head) = runs::lock_run(&mut tx, run).await? else {
            return Ok(());
        };
        if head.state.is_final() {
            return Ok(());
        }
        let lanes = runs::lane_states(&mut tx, run).await?;
        let (state, waiting_for) = run_state(&lanes);
        let waiting = waiting_for.map(str::to_owned);
        // A blast-radius hold keeps its own explanation.
        let waiting = match (&waiting, head.state) {
            (Some(_), RunState::AwaitingApproval) | (Some(_), RunState::Running)
                if lanes.contains(&LaneState::Held) =>
            {
                sqlx::query_scalar::<_, Option<String>>(
                    "SELECT waiting_for FROM workflow_runs WHERE id = $1",
                )
                .bind(run)
                .fetch_one(&mut *tx)
                .await
                .map_err(StoreError::query("read a run's wait"))?
                .or(waiting)
            }
            _ => waiting,
        };
        let changed = runs::set_run_state(&mut tx, run, state, waiting.as_deref(), now).await?;
        if changed && state.is_final() {
            audit::append(
                &mut tx,
                &[NewEntry {
                    at: now,
                    namespace: namespace.to_owned(),
                    actor: "engine".into(),
                    action: "run.finished".into(),
                    run: Some(run),
                    detail: json!({"state": state.as_str()}),
                }],
            )
            .await?;
        }
        commit(tx).await?;
        if changed {
            if state.is_final() {
                self.metrics
                    .runs_finished
                    .get_or_create(&crate::metrics::StateLabels {
                        state: state.as_str().into(),
                    })
                    .inc();
            }
            self.write_status(namespace, workflow).await?;
        }
        Ok(())
    }

    async fn write_status(&self, namespace: &str, workflow: &str) -> Result<(), StoreError> {
        write_status(&self.store, &self.changes, namespace, workflow).await
    }
}

/// Writes a workflow's run counts and newest run into its status.
pub async fn write_status(
    store: &Store,
    changes: &Changes,
    namespace: &str,
    workflow: &str,
) -> Result<(), StoreError> {
    let counts = store.workflow_counts(namespace).await?;
    let Some((runs, failures, last)) = counts.get(workflow) else {
        return Ok(());
    };
    let status = json!({
        "runs": runs,
        "failures": failures,
        "lastRun": last.as_ref().map(|l| json!({
            "id": l.id.to_string(),
            "started": l.started,
            "finished": l.finished,
            "result": l.state.as_str(),
        })),
    });
    let p = StatusPatch {
        kind: Kind::Workflow,
        namespace: namespace.to_owned(),
        name: workflow.to_owned(),
        status,
    };
    if store.patch_statuses(std::slice::from_ref(&p)).await? > 0 {
        changes.status_changed(Kind::Workflow, namespace, workflow);
    }
    Ok(())
}

/// Where a lane goes from where it is (see the constructors on [`LaneRow`]).
struct Next<'a> {
    lane: &'a LaneRow,
    state: LaneState,
    step: usize,
    attempt: u32,
    phase: Phase,
    next_at: Option<Timestamp>,
    vars: Option<&'a BTreeMap<String, Value>>,
    outputs: Option<&'a BTreeMap<String, Value>>,
    failed_any: bool,
}

impl<'a> Next<'a> {
    fn with_vars(mut self, vars: &'a BTreeMap<String, Value>) -> Self {
        self.vars = Some(vars);
        self
    }

    fn with_outputs(mut self, outputs: &'a BTreeMap<String, Value>) -> Self {
        self.outputs = Some(outputs);
        self
    }
}

impl LaneRow {
    fn to(&self, state: LaneState, step: usize, attempt: u32, phase: Phase) -> Next<'_> {
        Next {
            lane: self,
            state,
            step,
            attempt,
            phase,
            next_at: None,
            vars: None,
            outputs: None,
            failed_any: self.failed_any,
        }
    }

    /// Attempt `attempt` is out (an agent step, a wait, a delivery): look again at `at`.
    fn out(&self, attempt: u32, at: Option<Timestamp>) -> Next<'_> {
        Next {
            next_at: at,
            ..self.to(LaneState::Running, self.step, attempt, Phase::Wait)
        }
    }

    /// Stopped at an Approval step.
    fn at_gate(&self, attempt: u32) -> Next<'_> {
        self.to(LaneState::AwaitingApproval, self.step, attempt, Phase::Wait)
    }

    /// On to the next step.
    fn next_step(&self) -> Next<'_> {
        self.to(LaneState::Running, self.step + 1, 0, Phase::Start)
    }

    /// Attempt `attempt` failed: the next one at `at`.
    fn retry(&self, attempt: u32, at: Timestamp) -> Next<'_> {
        Next {
            next_at: Some(at),
            ..self.to(LaneState::Running, self.step, attempt, Phase::Retry)
        }
    }

    /// Make attempt `made + 1` now.
    fn again(&self, made: u32) -> Next<'_> {
        self.to(LaneState::Running, self.step, made, Phase::Start)
    }

    /// The step failed for good: the lane stops (`Failed`) or goes on at `step`.
    fn after_failure(&self, state: LaneState, step: usize) -> Next<'_> {
        Next {
            failed_any: true,
            ..self.to(state, step, 0, Phase::Start)
        }
    }
}

/// A run's state from its lanes' states, and what it waits for.
pub fn run_state(lanes: &[LaneState]) -> (RunState, Option<&'static str>) {
    let any = |s: LaneState| lanes.contains(&s);
    if any(LaneState::Running) {
        return (RunState::Running, None);
    }
    if any(LaneState::AwaitingApproval) {
        return (
            RunState::AwaitingApproval,
            Some("approval of an Approval step"),
        );
    }
    if any(LaneState::Held) {
        return (
            RunState::AwaitingApproval,
            Some("approval of the devices past the blast-radius limit"),
        );
    }
    if any(LaneState::Failed) {
        (RunState::Failed, None)
    } else if any(LaneState::PartiallyFailed) {
        (RunState::PartiallyFailed, None)
    } else if !lanes.is_empty() && lanes.iter().all(|s| *s == LaneState::Cancelled) {
        (RunState::Cancelled, None)
    } else {
        (RunState::Succeeded, None)
    }
}

/// What later steps see of a finished step (`steps.NAME` in rhai).
fn output_of(result: Option<&StepResult>, message: &str) -> Value {
    match result {
        Some(r) => json!({
            "exitCode": r.exit_code,
            "stdout": r.stdout,
            "stderr": r.stderr,
            "message": r.message,
        }),
        None => json!({ "message": message }),
    }
}

async fn begin(store: &Store) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, StoreError> {
    store
        .pool()
        .begin()
        .await
        .map_err(StoreError::query("begin a workflow change"))
}

async fn commit(tx: sqlx::Transaction<'static, sqlx::Postgres>) -> Result<(), StoreError> {
    tx.commit()
        .await
        .map_err(StoreError::query("commit a workflow change"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_waits_while_any_lane_waits_and_fails_if_any_failed() {
        use LaneState::*;
        assert_eq!(run_state(&[Succeeded, Running]).0, RunState::Running);
        assert_eq!(run_state(&[Succeeded, Held]).0, RunState::AwaitingApproval);
        assert_eq!(run_state(&[Succeeded, Failed]).0, RunState::Failed);
        assert_eq!(
            run_state(&[Succeeded, PartiallyFailed]).0,
            RunState::PartiallyFailed
        );
        assert_eq!(run_state(&[Cancelled, Cancelled]).0, RunState::Cancelled);
        assert_eq!(run_state(&[Succeeded, Cancelled]).0, RunState::Succeeded);
    }

    /// An isolated device keeps its step's `allow` and the collectors of its own site (by
    /// their address-shaped management addresses); other sites' and namespaces' collectors,
    /// and names that are not addresses (nftables rules take addresses), are left out.
    #[test]
    fn isolation_keeps_the_collectors_of_the_devices_site() {
        use serde_json::json;

        use crate::reconcile::tests::stored;
        let device = |ns: &str, name: &str, spec: Value| {
            let mut d = stored("Device", ns, name, spec, json!({}));
            d.uid = Uuid::new_v4();
            d
        };
        let collector = |ns: &str, name: &str, site: &str, addresses: Value| {
            device(
                ns,
                name,
                json!({"class": "Collector", "site": site, "managementAddresses": addresses}),
            )
        };
        let index = Index::default();
        index.replace(&[
            device(
                "acme",
                "web-01",
                json!({"class": "Server", "site": "london"}),
            ),
            collector(
                "acme",
                "col-lon",
                "london",
                json!(["10.0.0.2", "col-lon.acme.example"]),
            ),
            collector("acme", "col-lon-2", "london", json!(["2001:db8::2"])),
            collector("acme", "col-leeds", "leeds", json!(["10.9.0.2"])),
            collector("globex", "col-lon", "london", json!(["10.8.0.2"])),
        ]);
        let snapshot = index.snapshot();
        let web = snapshot.device("acme", "web-01").expect("device");
        let step: Step = serde_json::from_value(json!({
            "name": "isolate", "type": "IsolateDevice", "allow": ["192.0.2.10", "10.0.0.2"],
        }))
        .expect("step");
        assert_eq!(
            isolation_allow(&snapshot, web, &step),
            ["10.0.0.2", "192.0.2.10", "2001:db8::2"]
        );
    }

    #[test]
    fn work_ids_are_stable_per_attempt() {
        let (r, d) = (Uuid::from_u128(1), Uuid::from_u128(2));
        assert_eq!(work_id(r, d, 0, 1), work_id(r, d, 0, 1));
        assert_ne!(work_id(r, d, 0, 1), work_id(r, d, 0, 2));
        assert_ne!(work_id(r, d, 0, 1), work_id(r, d, 1, 1));
    }
}
