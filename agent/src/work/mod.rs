//! The agent's side of the work channel: hold a long-poll request open at the operator
//! (`GET /v1/agent/work`), run what it hands out, and report every step.
//!
//! * Every progress entry is a [`WorkReport`] written to the work spool before anything
//!   else happens, and delivered by its own delivery loop: a report is never lost while
//!   the operator is away, and the operator applies each at most once (`reportId`).
//! * An item finished here is recorded in the state directory ([`done`]) before its
//!   `done` report is sent, so neither a reconnect nor an agent restart runs it twice.
//! * A patch install runs only while its window is open (checked before each package):
//!   fetched outside its window, its packages are reported `pending` once with the next
//!   opening; a window that closes mid-item leaves the rest `skipped`.
//! * After an install the agent scans again (so the operator's plan and compliance follow
//!   at once) and applies the reboot policy.
//! * While a PatchPolicy selects the device the agent also scans on the interval the
//!   operator gives.
//! * Workflow steps ([`crate::actions`]) run in tasks of their own: a long script blocks
//!   neither the long poll nor patching nor other steps, and an item already running is
//!   not started again when the next poll lists it. A step's start is recorded too: a
//!   script the agent was running when it stopped is reported failed after the restart,
//!   not run a second time (steps that are idempotent, restarts and isolation, run again).
use std::{
    collections::HashSet,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use cdot_crds::{
    patch_policy::RebootPolicy,
    wire::{
        patch::{PatchInstall, PatchProgress, PatchState, RebootAfter},
        work::{
            StepResult, StepState, WORK_REPORT_ROUTE, WorkItem, WorkKind, WorkList, WorkReport,
        },
    },
};
use jiff::Timestamp;
use tokio::{
    sync::{Notify, watch},
    task::JoinSet,
};
use uuid::Uuid;

use crate::{
    AGENT_VERSION,
    actions::{self, Actions},
    client::{AgentClient, gzip_json},
    patches::PatchSystem,
    service::stopped,
    spool::SharedSpool,
};

pub mod done;

/// Route the work spool's delivery loop posts to (under `/v1/agent`).
pub fn report_route() -> &'static str {
    WORK_REPORT_ROUTE.trim_start_matches('/')
}

/// The work task.
pub struct WorkLoop {
    pub client: watch::Receiver<AgentClient>,
    pub system: Arc<PatchSystem>,
    /// Where reports go, and the record of finished items.
    pub reporter: Reporter,
    /// Workflow steps.
    pub actions: Arc<Actions>,
    /// How long the operator may hold a request.
    pub wait: Duration,
    /// Longest pause after a failed request.
    pub backoff_max: Duration,
    /// Reboot command (`{minutes}`, `{message}` replaced).
    pub reboot_command: String,
}

/// Spools reports and records finished items; shared with the step tasks.
#[derive(Clone)]
pub struct Reporter {
    /// Where reports wait for delivery.
    pub reports: SharedSpool,
    /// Tells the report delivery loop that a report is waiting.
    pub wake_delivery: Arc<Notify>,
    pub done: Arc<Mutex<done::DoneItems>>,
    /// Steps started here (finished or not).
    pub started: Arc<Mutex<done::DoneItems>>,
}

impl Reporter {
    /// Loads the records of the state directory `dir`.
    pub fn new(dir: &std::path::Path, reports: SharedSpool, wake_delivery: Arc<Notify>) -> Self {
        Self {
            reports,
            wake_delivery,
            done: Arc::new(Mutex::new(done::DoneItems::load(dir))),
            started: Arc::new(Mutex::new(done::DoneItems::load_file(
                dir,
                done::STARTED_FILE,
            ))),
        }
    }

    fn done(&self) -> MutexGuard<'_, done::DoneItems> {
        self.done.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_done(&self, item: Uuid) -> bool {
        self.done().contains(item)
    }

    /// Spools one report and wakes delivery.
    fn report(
        &self,
        item: Uuid,
        patches: Vec<PatchProgress>,
        step: Option<StepResult>,
        done: bool,
    ) {
        let report = WorkReport {
            report_id: Uuid::new_v4(),
            item,
            at_ms: Timestamp::now().as_millisecond(),
            patches,
            step,
            done,
        };
        match gzip_json(&report) {
            Ok(body) => {
                if let Err(e) = self.reports.lock().push(report.report_id, &body) {
                    tracing::error!(%item, error = %e, "failed to spool a work report; it is lost");
                }
                self.wake_delivery.notify_one();
            }
            Err(e) => tracing::error!(%item, error = %e, "failed to encode a work report"),
        }
    }

    /// Records the item as finished here, then tells the operator.
    fn finish(&self, item: Uuid, step: Option<StepResult>) {
        if let Err(e) = self.done().insert(item) {
            tracing::error!(%item, error = %e, "failed to record a finished work item");
        }
        self.report(item, Vec::new(), step, true);
    }

    /// Records that a step starts, and tells the operator.
    fn start(&self, item: Uuid) {
        let recorded = self
            .started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(item);
        if let Err(e) = recorded {
            tracing::error!(%item, error = %e, "failed to record a started step");
        }
        let running = actions::result(StepState::Running, "started");
        self.report(item, Vec::new(), Some(running), false);
    }

    fn was_started(&self, item: Uuid) -> bool {
        self.started
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(item)
    }
}

impl WorkLoop {
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut seen: Option<String> = None;
        let mut backoff = Duration::from_secs(1);
        let mut last_scan: Option<Instant> = None;
        let mut announced: HashSet<Uuid> = HashSet::new();
        // Running steps; dropped (aborted, their processes killed) when the loop ends.
        let mut steps: JoinSet<Uuid> = JoinSet::new();
        let mut running: HashSet<Uuid> = HashSet::new();
        loop {
            while let Some(ended) = steps.try_join_next() {
                match ended {
                    Ok(id) => {
                        running.remove(&id);
                    }
                    Err(e) => tracing::error!(error = %e, "a workflow step task failed"),
                }
            }
            let route = match &seen {
                Some(rev) => format!("work?wait={}&seen={rev}", self.wait.as_secs()),
                None => "work?wait=0".to_owned(),
            };
            let client = self.client.borrow().clone();
            let list = tokio::select! {
                () = stopped(&mut stop) => return,
                r = client.get_json::<WorkList>(&route) => r,
            };
            let list = match list {
                Ok(list) => {
                    backoff = Duration::from_secs(1);
                    list
                }
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "fetching work failed");
                    tokio::select! {
                        () = stopped(&mut stop) => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(self.backoff_max);
                    continue;
                }
            };
            seen = Some(list.revision.clone());
            let interval = Duration::from_secs(list.patch_scan_interval_secs);
            let asked = list
                .items
                .iter()
                .any(|i| matches!(i.kind, WorkKind::PatchScan) && !self.reporter.is_done(i.id));
            // One scan serves both the interval and a scan item.
            if !interval.is_zero() && !asked && last_scan.is_none_or(|t| t.elapsed() >= interval) {
                self.scan().await;
                last_scan = Some(Instant::now());
            }
            for item in &list.items {
                if self.reporter.is_done(item.id) || running.contains(&item.id) || *stop.borrow() {
                    continue;
                }
                match &item.kind {
                    WorkKind::PatchScan => {
                        self.scan().await;
                        last_scan = Some(Instant::now());
                        self.reporter.finish(item.id, None);
                    }
                    WorkKind::PatchInstall(install) => {
                        let now = Timestamp::now();
                        let open = install.window.as_ref().is_none_or(|w| w.contains(now));
                        if !open {
                            if announced.insert(item.id) {
                                self.announce_pending(item.id, install, now);
                            }
                            continue;
                        }
                        self.install(item, install).await;
                        self.scan().await;
                        last_scan = Some(Instant::now());
                        self.reporter.finish(item.id, None);
                    }
                    WorkKind::RunScript(_)
                    | WorkKind::RestartService(_)
                    | WorkKind::Isolate(_)
                    | WorkKind::Release(_) => {
                        running.insert(item.id);
                        steps.spawn(run_step(
                            item.clone(),
                            self.actions.clone(),
                            self.reporter.clone(),
                        ));
                    }
                }
            }
        }
    }

    /// Scans and sends the result (a scan is state, not an event: a failed send is
    /// repaired by the next scan, so it is not spooled).
    async fn scan(&self) {
        let started = Instant::now();
        let scan = self.system.scan(AGENT_VERSION).await;
        tracing::info!(
            updates = scan.updates.len(),
            problem = scan.problem.as_deref().unwrap_or(""),
            took_ms = started.elapsed().as_millis() as u64,
            "patch scan"
        );
        let client = self.client.borrow().clone();
        if let Err(e) = client.put_json("patches", &scan).await {
            tracing::warn!(error = %e, "sending the patch scan failed; the next scan sends it again");
        }
    }

    fn announce_pending(&self, item: Uuid, install: &PatchInstall, now: Timestamp) {
        let next = install
            .window
            .as_ref()
            .and_then(|w| w.next_opening_after(now))
            .map_or_else(|| "unknown".to_owned(), |t| t.to_string());
        let at_ms = now.as_millisecond();
        let patches = install
            .packages
            .iter()
            .map(|p| PatchProgress {
                name: p.name.clone(),
                version: p.version.clone(),
                state: PatchState::Pending,
                at_ms,
                exit_code: None,
                detail: Some(format!(
                    "waits for the install window; it opens next at {next}"
                )),
                log_tail: None,
            })
            .collect();
        tracing::info!(%item, policy = %install.policy, next_opening = %next, "patch install waits for its window");
        self.reporter.report(item, patches, None, false);
    }

    async fn install(&self, item: &WorkItem, install: &PatchInstall) {
        tracing::info!(item = %item.id, policy = %install.policy, ring = %install.ring,
            packages = install.packages.len(), "patch install started");
        let mut installed = 0;
        for (i, target) in install.packages.iter().enumerate() {
            let now = Timestamp::now();
            if install.window.as_ref().is_some_and(|w| !w.contains(now)) {
                let skipped = install.packages[i..]
                    .iter()
                    .map(|p| PatchProgress {
                        name: p.name.clone(),
                        version: p.version.clone(),
                        state: PatchState::Skipped,
                        at_ms: now.as_millisecond(),
                        exit_code: None,
                        detail: Some("the install window closed before its turn".to_owned()),
                        log_tail: None,
                    })
                    .collect();
                self.reporter.report(item.id, skipped, None, false);
                break;
            }
            let mut progress =
                |p: PatchProgress| self.reporter.report(item.id, vec![p], None, false);
            let end = self
                .system
                .install(target, &install.packages, &install.deny, &mut progress)
                .await;
            if end.state == PatchState::Installed {
                installed += 1;
            } else {
                tracing::warn!(package = %end.name, version = %end.version, state = ?end.state,
                    detail = end.detail.as_deref().unwrap_or(""), "patch not installed");
            }
            self.reporter.report(item.id, vec![end], None, false);
        }
        if installed > 0 {
            self.reboot(&install.reboot).await;
        }
    }

    async fn reboot(&self, policy: &RebootAfter) {
        let wanted = match policy.policy {
            RebootPolicy::Never => false,
            RebootPolicy::Always => true,
            RebootPolicy::IfRequired => self.system.reboot_required().await,
        };
        if !wanted {
            return;
        }
        let minutes = policy.delay_secs.div_ceil(60);
        let args = reboot_args(&self.reboot_command, minutes, &policy.message);
        let Some((program, rest)) = args.split_first() else {
            return;
        };
        tracing::warn!(command = %args.join(" "), "scheduling a reboot after patching");
        match tokio::process::Command::new(program)
            .args(rest)
            .status()
            .await
        {
            Ok(status) if status.success() => {}
            Ok(status) => tracing::error!(%status, "the reboot command failed"),
            Err(e) => tracing::error!(error = %e, program, "the reboot command could not run"),
        }
    }
}

/// Runs one workflow step: `running` reported, the step run, recorded done, the result
/// reported. A script interrupted by an agent restart is not run again.
async fn run_step(item: WorkItem, actions: Arc<Actions>, reporter: Reporter) -> Uuid {
    let id = item.id;
    let origin = item.kind.step().cloned();
    let (workflow, run, step) = origin
        .as_ref()
        .map(|o| (o.workflow.as_str(), o.run.to_string(), o.step.as_str()))
        .unwrap_or_default();
    if matches!(item.kind, WorkKind::RunScript(_)) && reporter.was_started(id) {
        tracing::warn!(item = %id, workflow, run, step, "a script interrupted by an agent restart is not run again");
        reporter.finish(
            id,
            Some(actions::failed(
                "the agent stopped while this script ran; it is not run a second time",
            )),
        );
        return id;
    }
    tracing::info!(item = %id, workflow, run, step, "workflow step started");
    reporter.start(id);
    let result = actions
        .run(&item.kind)
        .await
        .unwrap_or_else(|| actions::failed("not a workflow step"));
    tracing::info!(item = %id, workflow, run, step, state = ?result.state,
        exit_code = result.exit_code, "workflow step finished");
    reporter.finish(id, Some(result));
    id
}

/// The reboot command's arguments with `{minutes}` and `{message}` replaced; each
/// placeholder stays one argument whatever the message holds.
pub fn reboot_args(template: &str, minutes: u64, message: &str) -> Vec<String> {
    template
        .split_whitespace()
        .map(|word| {
            word.replace("{minutes}", &minutes.to_string())
                .replace("{message}", message)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reboot_message_stays_one_argument() {
        assert_eq!(
            reboot_args("shutdown -r +{minutes} {message}", 5, "Save your work; now"),
            vec!["shutdown", "-r", "+5", "Save your work; now"]
        );
    }
}
