//! `Workflow` (`wf`): automation triggered by events, schedules or a person.

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    common::{
        CRON_PATTERN, Condition, ConfigMapKeyRef, DURATION_PATTERN, LabelSelector, check_cron,
        check_duration_into, check_time_zone, check_unique, validate_selector,
    },
    excerpt::excerpt,
    validation::{Errors, FieldError, Validate, is_dns1123_label, is_dns1123_subdomain},
};

/// CEL on `trigger`: the fields used match the trigger type.
pub const TRIGGER_RULES: [(&str, &str); 4] = [
    (
        "(self.type == 'Schedule') == has(self.schedule)",
        "schedule is required for type Schedule and not allowed otherwise",
    ),
    (
        "self.type == 'ServiceFailed' || (!has(self.service) && !has(self.count) && !has(self.within))",
        "service, count and within are only allowed for type ServiceFailed",
    ),
    (
        "self.type in ['AlertFiring', 'AlertResolved'] || !has(self.alertRule)",
        "alertRule is only allowed for types AlertFiring and AlertResolved",
    ),
    (
        "self.type in ['DeviceOffline', 'DeviceOnline'] || !has(self.offlineFor)",
        "offlineFor is only allowed for types DeviceOffline and DeviceOnline",
    ),
];

/// Desired state of a workflow. Every run and step is kept as an audit record.
#[derive(CustomResource, KubeSchema, Clone, Debug, Serialize, Deserialize, PartialEq)]
#[kube(
    group = "rmm.cdot.io",
    version = "v1alpha1",
    kind = "Workflow",
    namespaced,
    status = "WorkflowStatus",
    shortname = "wf",
    category = "rmm",
    doc = "Automation: when a trigger fires for a selected device and the condition holds, run the steps in order.",
    printcolumn(name = "Trigger", type_ = "string", json_path = ".spec.trigger.type"),
    printcolumn(
        name = "Devices",
        type_ = "integer",
        json_path = ".status.matchedDevices"
    ),
    printcolumn(name = "Runs", type_ = "integer", json_path = ".status.runs"),
    printcolumn(name = "Failures", type_ = "integer", json_path = ".status.failures"),
    printcolumn(
        name = "Last Result",
        type_ = "string",
        json_path = ".status.lastRun.result"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("self.steps.all(s, self.steps.exists_one(o, o.name == s.name))").message("step names must be unique").field_path(".steps"))]
pub struct WorkflowSpec {
    /// What the workflow does, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,
    /// What starts a run.
    pub trigger: Trigger,
    /// Devices (in this namespace) the workflow may act on; empty selects all devices.
    #[serde(default)]
    pub selector: LabelSelector,
    /// Optional rhai expression that must return true for a run to start; it sees
    /// `device` (name, labels, class, site), `event` (type, device, alertRule, alert, metric,
    /// value, service, package, labels, at) and `now`. `package` is a rhai keyword: read it
    /// as `event["package"]`. A script that does not compile makes the spec invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub condition: Option<String>,
    /// Ordered steps.
    #[schemars(length(min = 1, max = 32))]
    pub steps: Vec<Step>,
    /// What to do when a run for the same device is still active.
    #[serde(default)]
    pub concurrency: ConcurrencyPolicy,
    /// Minimum time between two runs for the same device, e.g. `15m`.
    #[serde(default = "default_cooldown")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub cooldown: String,
    /// Do not start new runs.
    #[serde(default)]
    pub paused: bool,
    /// Blast-radius limits: beyond them a run waits for a person's approval.
    #[serde(default)]
    pub limits: Limits,
}

/// How many devices a workflow may act on before a person approves more.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Limits {
    /// Devices one run acts on; the rest of the run's devices wait for an approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_devices_per_run: Option<u32>,
    /// Devices the workflow starts on in any hour (all runs); past it, runs wait for an
    /// approval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_devices_per_hour: Option<u32>,
}

fn default_cooldown() -> String {
    "10m".into()
}
fn default_step_timeout() -> String {
    "5m".into()
}
fn default_retry_delay() -> String {
    "30s".into()
}

/// Trigger type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum TriggerType {
    /// An alert starts firing (optionally of one `alertRule`).
    AlertFiring,
    /// An alert resolves (optionally of one `alertRule`).
    AlertResolved,
    /// A device stops reporting (for `offlineFor`).
    DeviceOffline,
    /// A device that was offline (for at least `offlineFor`) reports again.
    DeviceOnline,
    /// A service failed `count` times `within` a window.
    ServiceFailed,
    /// A patch installation failed.
    PatchFailed,
    /// A cron `schedule`.
    Schedule,
    /// Only started by a person (API or console).
    Manual,
}

/// What starts a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new(TRIGGER_RULES[0].0).message(TRIGGER_RULES[0].1))]
#[x_kube(validation = Rule::new(TRIGGER_RULES[1].0).message(TRIGGER_RULES[1].1))]
#[x_kube(validation = Rule::new(TRIGGER_RULES[2].0).message(TRIGGER_RULES[2].1))]
#[x_kube(validation = Rule::new(TRIGGER_RULES[3].0).message(TRIGGER_RULES[3].1))]
pub struct Trigger {
    /// Trigger type.
    #[serde(rename = "type")]
    pub type_: TriggerType,
    /// AlertFiring/AlertResolved: only alerts of this AlertRule (same namespace); omitted means any rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub alert_rule: Option<String>,
    /// ServiceFailed: service name (as in the device's agent monitoredServices); omitted means any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub service: Option<String>,
    /// ServiceFailed: number of failures that trigger a run (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 1000))]
    pub count: Option<u32>,
    /// ServiceFailed: window in which `count` failures must happen, e.g. `10m`, at most
    /// `1d` (required when count > 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub within: Option<String>,
    /// DeviceOffline: how long the device must be offline, e.g. `5m` (default immediately).
    /// DeviceOnline: the shortest outage whose end starts a run (default any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub offline_for: Option<String>,
    /// Schedule: five-field cron expression or macro (`@daily`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = CRON_PATTERN))]
    pub schedule: Option<String>,
    /// Schedule: IANA time zone of `schedule` (default UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub time_zone: Option<String>,
}

/// Step type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum StepType {
    /// Run `script` on the device through the agent.
    RunScript,
    /// Restart `service` on the device.
    RestartService,
    /// Cut the device off the network except for the operator connection.
    IsolateDevice,
    /// Undo IsolateDevice.
    ReleaseIsolation,
    /// Send `message` through NotificationChannel `channel`.
    Notify,
    /// Open a ticket with `message` through Ticket NotificationChannel `channel`.
    OpenTicket,
    /// Wait for `duration`, or until the rhai `until` condition holds (at most `duration`).
    Wait,
    /// Run the rhai `rhai` script in the operator (same variables as the condition plus `steps`).
    Rhai,
    /// Stop until a person with the operator role approves the run through the API; the
    /// person who started the run cannot approve it.
    Approval,
}

/// Script interpreter.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Shell {
    /// PowerShell (Windows) or pwsh.
    PowerShell,
    /// Windows cmd.exe.
    Cmd,
    /// bash.
    Bash,
    /// POSIX sh.
    #[default]
    Sh,
    /// python3.
    Python,
}

/// A script run on the device: its text inline (`body`) or from a ConfigMap
/// (`configMapRef`), exactly one of the two.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("has(self.body) != has(self.configMapRef)").message("exactly one of body and configMapRef is required"))]
pub struct Script {
    /// Interpreter.
    #[serde(default)]
    pub shell: Shell,
    /// Script text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 65536))]
    pub body: Option<String>,
    /// The script text from a key of a ConfigMap in the same namespace, read when the step
    /// runs (so one script can serve many workflows).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<ConfigMapKeyRef>,
    /// Arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub args: Vec<String>,
    /// Run as this user instead of the agent's service account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub run_as: Option<String>,
}

/// What to do when a step fails after its retries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum OnFailure {
    /// Stop the run; it fails.
    #[default]
    Abort,
    /// Go on with the next step; the run is marked partially failed.
    Continue,
    /// Go on with the step named `onFailureStep` (a later step); the run is marked
    /// partially failed.
    RunStep,
}

/// One step of a workflow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("(self.type == 'RunScript') == has(self.script)").message("script is required for RunScript and not allowed otherwise"))]
#[x_kube(validation = Rule::new("(self.type == 'RestartService') == has(self.service)").message("service is required for RestartService and not allowed otherwise"))]
#[x_kube(validation = Rule::new("(self.type in ['Notify', 'OpenTicket']) == has(self.channel)").message("channel is required for Notify and OpenTicket and not allowed otherwise"))]
#[x_kube(validation = Rule::new("(self.type == 'Wait') == has(self.duration)").message("duration is required for Wait and not allowed otherwise"))]
#[x_kube(validation = Rule::new("(self.type == 'Rhai') == has(self.rhai)").message("rhai is required for Rhai and not allowed otherwise"))]
pub struct Step {
    /// Step name (RFC 1123 label), unique in the workflow.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Step type.
    #[serde(rename = "type")]
    pub type_: StepType,
    /// RunScript: the script.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<Script>,
    /// RestartService: service name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub service: Option<String>,
    /// Notify/OpenTicket: NotificationChannel name (same namespace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub channel: Option<String>,
    /// Notify/OpenTicket: message template (minijinja) with `device`, `namespace`, `site`,
    /// `device_labels`, `workflow`, `run`, `step`, `event`, `vars` and `steps`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub message: Option<String>,
    /// Wait: how long.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub duration: Option<String>,
    /// Rhai: script source.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 65536))]
    pub rhai: Option<String>,
    /// Wait: rhai condition checked every few seconds; the wait ends when it returns true
    /// (or fails the step at `duration`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096))]
    pub until: Option<String>,
    /// IsolateDevice: addresses or CIDRs that stay reachable besides the operator and the
    /// collector of the device's site.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub allow: Vec<String>,
    /// Time limit of one attempt.
    #[serde(default = "default_step_timeout")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub timeout: String,
    /// Retries after a failed attempt.
    #[serde(default)]
    #[schemars(range(min = 0, max = 10))]
    pub retries: u32,
    /// Delay between attempts.
    #[serde(default = "default_retry_delay")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub retry_delay: String,
    /// What happens when the step finally fails.
    #[serde(default)]
    pub on_failure: OnFailure,
    /// onFailure RunStep: the step to go on with (a later step of this workflow).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub on_failure_step: Option<String>,
}

/// Concurrency policy per device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ConcurrencyPolicy {
    /// Start another run alongside.
    Allow,
    /// Skip the new trigger.
    #[default]
    Forbid,
    /// Cancel the active run and start the new one.
    Replace,
}

/// Observed state of a workflow.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowStatus {
    /// The `metadata.generation` last reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions: `Ready` (see below), `Reconciling` (`False` with reason `Reconciled` once
    /// `observedGeneration` is reconciled), `Degraded` (`True` with reason `ValidationFailed`
    /// when the spec is invalid, the message naming each field; `False` otherwise).
    /// `Ready` is `True` (reason `Armed`, or `Paused`) once the spec is valid and the
    /// AlertRule, NotificationChannels and ConfigMap keys it names exist: from then on its
    /// trigger starts runs. `False` with reason `ReferenceNotFound` names each missing one
    /// with the field that refers to it.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Devices of the namespace the selector matches; not updated while the spec is invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched_devices: Option<u32>,
    /// The most recent run (written by the automation engine).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<WorkflowRunSummary>,
    /// Runs started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runs: Option<u64>,
    /// Runs that failed or partially failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failures: Option<u64>,
}

/// Summary of one run (the full audit record is in the store).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowRunSummary {
    /// Run id.
    #[serde(default)]
    pub id: String,
    /// Start (RFC 3339).
    #[serde(default)]
    pub started: String,
    /// End (RFC 3339), absent while running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<String>,
    /// `Running`, `Succeeded`, `Failed`, `PartiallyFailed`, `Cancelled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
}

impl WorkflowSpec {
    /// Every ConfigMap key the steps read, with the field that names it.
    pub fn config_map_refs(&self) -> Vec<(String, &ConfigMapKeyRef)> {
        self.steps
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let r = s.script.as_ref()?.config_map_ref.as_ref()?;
                Some((format!("spec.steps[{i}].script.configMapRef"), r))
            })
            .collect()
    }
}

impl Validate for WorkflowSpec {
    fn validate(&self) -> Vec<FieldError> {
        let mut errs = Errors::default();
        let t = &self.trigger;
        let tp = "spec.trigger";
        let only = |errs: &mut Errors, present: bool, allowed: bool, field: &str, types: &str| {
            if present && !allowed {
                errs.push(
                    format!("{tp}.{field}"),
                    format!("only allowed for trigger type {types}"),
                );
            }
        };
        let is = |x: TriggerType| t.type_ == x;
        only(
            &mut errs,
            t.alert_rule.is_some(),
            is(TriggerType::AlertFiring) || is(TriggerType::AlertResolved),
            "alertRule",
            "AlertFiring or AlertResolved",
        );
        only(
            &mut errs,
            t.service.is_some(),
            is(TriggerType::ServiceFailed),
            "service",
            "ServiceFailed",
        );
        only(
            &mut errs,
            t.count.is_some(),
            is(TriggerType::ServiceFailed),
            "count",
            "ServiceFailed",
        );
        only(
            &mut errs,
            t.within.is_some(),
            is(TriggerType::ServiceFailed),
            "within",
            "ServiceFailed",
        );
        only(
            &mut errs,
            t.offline_for.is_some(),
            is(TriggerType::DeviceOffline) || is(TriggerType::DeviceOnline),
            "offlineFor",
            "DeviceOffline or DeviceOnline",
        );
        only(
            &mut errs,
            t.schedule.is_some(),
            is(TriggerType::Schedule),
            "schedule",
            "Schedule",
        );
        only(
            &mut errs,
            t.time_zone.is_some(),
            is(TriggerType::Schedule),
            "timeZone",
            "Schedule",
        );
        if let Some(r) = &t.alert_rule
            && !is_dns1123_subdomain(r)
        {
            errs.push(
                format!("{tp}.alertRule"),
                format!("{} is not a valid AlertRule name", excerpt(r)),
            );
        }
        if is(TriggerType::ServiceFailed) && t.count.unwrap_or(1) > 1 && t.within.is_none() {
            errs.push(format!("{tp}.within"), "required when count > 1");
        }
        if let Some(w) = &t.within
            && let Some(d) = check_duration_into(&mut errs, format!("{tp}.within"), w, true)
            && d > std::time::Duration::from_secs(86_400)
        {
            errs.push(format!("{tp}.within"), "a window of at most 1d");
        }
        if let Some(w) = &t.offline_for {
            check_duration_into(&mut errs, format!("{tp}.offlineFor"), w, false);
        }
        match (&t.schedule, is(TriggerType::Schedule)) {
            (Some(s), _) => {
                errs.check(format!("{tp}.schedule"), check_cron(s));
            }
            (None, true) => errs.push(
                format!("{tp}.schedule"),
                "required for trigger type Schedule",
            ),
            (None, false) => {}
        }
        if let Some(z) = &t.time_zone {
            errs.check(format!("{tp}.timeZone"), check_time_zone(z));
        }
        validate_selector(&self.selector, "spec.selector", &mut errs);
        if let Some(c) = &self.condition
            && c.trim().is_empty()
        {
            errs.push(
                "spec.condition",
                "rhai condition must not be blank; omit it to always run",
            );
        }
        check_duration_into(&mut errs, "spec.cooldown", &self.cooldown, false);
        if self.steps.is_empty() {
            errs.push("spec.steps", "at least one step is required");
        }
        check_unique(
            &mut errs,
            "spec.steps",
            "step name",
            self.steps.iter().map(|s| s.name.as_str()),
        );
        for (i, s) in self.steps.iter().enumerate() {
            let p = format!("spec.steps[{i}]");
            if !is_dns1123_label(&s.name) {
                errs.push(
                    format!("{p}.name"),
                    format!("{} is not an RFC 1123 label", excerpt(&s.name)),
                );
            }
            let need = |errs: &mut Errors, present: bool, wanted: bool, field: &str| match (
                present, wanted,
            ) {
                (false, true) => errs.push(
                    format!("{p}.{field}"),
                    format!("required for step type {:?}", s.type_),
                ),
                (true, false) => errs.push(
                    format!("{p}.{field}"),
                    format!("not allowed for step type {:?}", s.type_),
                ),
                _ => {}
            };
            let ty = s.type_;
            need(
                &mut errs,
                s.script.is_some(),
                ty == StepType::RunScript,
                "script",
            );
            need(
                &mut errs,
                s.service.is_some(),
                ty == StepType::RestartService,
                "service",
            );
            need(
                &mut errs,
                s.channel.is_some(),
                matches!(ty, StepType::Notify | StepType::OpenTicket),
                "channel",
            );
            need(
                &mut errs,
                s.duration.is_some(),
                ty == StepType::Wait,
                "duration",
            );
            need(&mut errs, s.rhai.is_some(), ty == StepType::Rhai, "rhai");
            if s.message.is_some() && !matches!(ty, StepType::Notify | StepType::OpenTicket) {
                errs.push(
                    format!("{p}.message"),
                    format!("not allowed for step type {ty:?}"),
                );
            }
            if let Some(m) = &s.message
                && let Err(e) = crate::template::check(m, crate::template::WORKFLOW_VARIABLES)
            {
                errs.push(format!("{p}.message"), e);
            }
            if let Some(sc) = &s.script {
                match (&sc.body, &sc.config_map_ref) {
                    (Some(body), None) if body.trim().is_empty() => {
                        errs.push(format!("{p}.script.body"), "script must not be blank");
                    }
                    (Some(_), None) => {}
                    (None, Some(r)) => {
                        r.validate_into(&format!("{p}.script.configMapRef"), &mut errs)
                    }
                    (Some(_), Some(_)) => errs.push(
                        format!("{p}.script.configMapRef"),
                        "not allowed with body: the script comes from one of them",
                    ),
                    (None, None) => errs.push(
                        format!("{p}.script.body"),
                        "required: the script text, or configMapRef to a ConfigMap key",
                    ),
                }
            }
            if let Some(r) = &s.rhai
                && r.trim().is_empty()
            {
                errs.push(format!("{p}.rhai"), "rhai script must not be blank");
            }
            if let Some(c) = &s.channel
                && !is_dns1123_subdomain(c)
            {
                errs.push(
                    format!("{p}.channel"),
                    format!("{} is not a valid NotificationChannel name", excerpt(c)),
                );
            }
            if let Some(d) = &s.duration
                && let Some(d) = check_duration_into(&mut errs, format!("{p}.duration"), d, true)
                && d > std::time::Duration::from_secs(86_400)
            {
                errs.push(format!("{p}.duration"), "wait at most 1d");
            }
            if s.until.is_some() && ty != StepType::Wait {
                errs.push(
                    format!("{p}.until"),
                    format!("not allowed for step type {ty:?}"),
                );
            }
            if let Some(u) = &s.until
                && u.trim().is_empty()
            {
                errs.push(format!("{p}.until"), "rhai condition must not be blank");
            }
            if !s.allow.is_empty() && ty != StepType::IsolateDevice {
                errs.push(
                    format!("{p}.allow"),
                    format!("not allowed for step type {ty:?}"),
                );
            }
            for (j, a) in s.allow.iter().enumerate() {
                if a.parse::<ipnet::IpNet>().is_err() && a.parse::<std::net::IpAddr>().is_err() {
                    errs.push(
                        format!("{p}.allow[{j}]"),
                        format!("{} is not an IP address or CIDR", excerpt(a)),
                    );
                }
            }
            match (s.on_failure, &s.on_failure_step) {
                (OnFailure::RunStep, None) => errs.push(
                    format!("{p}.onFailureStep"),
                    "required for onFailure RunStep",
                ),
                (OnFailure::RunStep, Some(target)) => {
                    match self.steps.iter().position(|o| &o.name == target) {
                        Some(j) if j > i => {}
                        Some(_) => errs.push(
                            format!("{p}.onFailureStep"),
                            format!("{} must name a later step (no loops)", excerpt(target)),
                        ),
                        None => errs.push(
                            format!("{p}.onFailureStep"),
                            format!("{} is not a step of this workflow", excerpt(target)),
                        ),
                    }
                }
                (_, Some(_)) => errs.push(
                    format!("{p}.onFailureStep"),
                    "only allowed for onFailure RunStep",
                ),
                (_, None) => {}
            }
            check_duration_into(&mut errs, format!("{p}.timeout"), &s.timeout, true);
            check_duration_into(&mut errs, format!("{p}.retryDelay"), &s.retry_delay, false);
        }
        errs.into_vec()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::test_support::{doc, err_at, ok};

    fn base() -> Value {
        doc(
            "Workflow",
            json!({
                "trigger": {"type": "ServiceFailed", "service": "nginx.service", "count": 3, "within": "10m"},
                "selector": {"matchLabels": {"role": "server"}},
                "condition": "device.labels[\"tier\"] == \"web\"",
                "steps": [
                    {"name": "restart", "type": "RestartService", "service": "nginx.service", "retries": 2},
                    {"name": "pause", "type": "Wait", "duration": "1m"},
                    {"name": "tell", "type": "Notify", "channel": "slack", "message": "restarted"},
                ],
            }),
        )
    }

    fn trigger(t: Value) -> Value {
        json!({"spec": {"trigger": {"type": t["type"].clone(), "service": t.get("service").cloned().unwrap_or(Value::Null), "count": t.get("count").cloned().unwrap_or(Value::Null), "within": t.get("within").cloned().unwrap_or(Value::Null), "schedule": t.get("schedule").cloned().unwrap_or(Value::Null), "timeZone": t.get("timeZone").cloned().unwrap_or(Value::Null), "alertRule": t.get("alertRule").cloned().unwrap_or(Value::Null), "offlineFor": t.get("offlineFor").cloned().unwrap_or(Value::Null)}}})
    }

    #[test]
    fn base_is_valid_with_defaults() {
        ok(&base(), json!({}));
        let crate::manifest::Document::Resource(o) =
            crate::manifest::validate_document(&base()).expect("valid")
        else {
            panic!("not a resource")
        };
        assert_eq!(o.spec["concurrency"], "Forbid");
        assert_eq!(o.spec["cooldown"], "10m");
        assert_eq!(o.spec["steps"][0]["timeout"], "5m");
        assert_eq!(o.spec["steps"][0]["onFailure"], "Abort");
    }

    #[test]
    fn schema_level() {
        err_at(
            &base(),
            json!({"spec": {"trigger": {"type": "Webhook"}}}),
            "spec.trigger.type",
        );
        err_at(&base(), json!({"spec": {"steps": []}}), "spec.steps");
        err_at(
            &base(),
            json!({"spec": {"concurrency": "Queue"}}),
            "spec.concurrency",
        );
        err_at(
            &base(),
            json!({"spec": {"trigger": {"count": 0}}}),
            "spec.trigger.count",
        );
        err_at(
            &base(),
            json!({"spec": {"steps": [{"name": "x", "type": "Wait", "duration": "1m", "retries": 11}]}}),
            "spec.steps[0].retries",
        );
        err_at(
            &base(),
            json!({"spec": {"steps": [{"name": "x", "type": "Wait", "duration": "1m", "onFailure": "Retry"}]}}),
            "spec.steps[0].onFailure",
        );
        err_at(
            &base(),
            json!({"spec": {"condition": ""}}),
            "spec.condition",
        );
    }

    #[test]
    fn trigger_fields_match_type() {
        ok(
            &base(),
            trigger(
                json!({"type": "Schedule", "schedule": "0 2 * * *", "timeZone": "Europe/London"}),
            ),
        );
        err_at(
            &base(),
            trigger(json!({"type": "Schedule"})),
            "spec.trigger.schedule",
        );
        err_at(
            &base(),
            trigger(json!({"type": "Manual", "schedule": "@daily"})),
            "spec.trigger.schedule",
        );
        err_at(
            &base(),
            trigger(json!({"type": "Manual", "service": "x"})),
            "spec.trigger.service",
        );
        err_at(
            &base(),
            trigger(json!({"type": "PatchFailed", "alertRule": "cpu"})),
            "spec.trigger.alertRule",
        );
        ok(
            &base(),
            trigger(json!({"type": "AlertFiring", "alertRule": "cpu-high"})),
        );
        err_at(
            &base(),
            trigger(json!({"type": "AlertResolved", "alertRule": "Bad Name"})),
            "spec.trigger.alertRule",
        );
        err_at(
            &base(),
            trigger(json!({"type": "Manual", "offlineFor": "5m"})),
            "spec.trigger.offlineFor",
        );
        ok(
            &base(),
            trigger(json!({"type": "DeviceOffline", "offlineFor": "5m"})),
        );
        ok(
            &base(),
            trigger(json!({"type": "DeviceOnline", "offlineFor": "5m"})),
        );
        err_at(
            &base(),
            trigger(json!({"type": "Manual", "timeZone": "UTC"})),
            "spec.trigger.timeZone",
        );
    }

    #[test]
    fn service_failed_window() {
        err_at(
            &base(),
            json!({"spec": {"trigger": {"within": null}}}),
            "spec.trigger.within",
        );
        ok(
            &base(),
            json!({"spec": {"trigger": {"within": null, "count": 1}}}),
        );
        err_at(
            &base(),
            json!({"spec": {"trigger": {"within": "0s"}}}),
            "spec.trigger.within",
        );
    }

    #[test]
    fn schedule_sanity() {
        err_at(
            &base(),
            trigger(json!({"type": "Schedule", "schedule": "61 * * * *"})),
            "spec.trigger.schedule",
        );
        err_at(
            &base(),
            trigger(json!({"type": "Schedule", "schedule": "every day"})),
            "spec.trigger.schedule",
        );
        err_at(
            &base(),
            trigger(json!({"type": "Schedule", "schedule": "@daily", "timeZone": "Nowhere/Land"})),
            "spec.trigger.timeZone",
        );
    }

    #[test]
    fn rhai_condition_not_blank() {
        err_at(
            &base(),
            json!({"spec": {"condition": "   "}}),
            "spec.condition",
        );
        ok(&base(), json!({"spec": {"condition": null}}));
    }

    #[test]
    fn steps() {
        err_at(
            &base(),
            json!({"spec": {"steps": [{"name": "a", "type": "Wait", "duration": "1m"}, {"name": "a", "type": "Wait", "duration": "1m"}]}}),
            "spec.steps[1]",
        );
        err_at(
            &base(),
            json!({"spec": {"steps": [{"name": "A b", "type": "Wait", "duration": "1m"}]}}),
            "spec.steps[0].name",
        );
        err_at(
            &base(),
            json!({"spec": {"steps": [{"name": "a", "type": "RunScript"}]}}),
            "spec.steps[0].script",
        );
        err_at(
            &base(),
            json!({"spec": {"steps": [{"name": "a", "type": "Wait", "duration": "1m", "service": "x"}]}}),
            "spec.steps[0].service",
        );
        err_at(
            &base(),
            json!({"spec": {"steps": [{"name": "a", "type": "Notify"}]}}),
            "spec.steps[0].channel",
        );
        err_at(
            &base(),
            json!({"spec": {"steps": [{"name": "a", "type": "Wait"}]}}),
            "spec.steps[0].duration",
        );
        err_at(
            &base(),
            json!({"spec": {"steps": [{"name": "a", "type": "Wait", "duration": "2d"}]}}),
            "spec.steps[0].duration",
        );
        err_at(
            &base(),
            json!({"spec": {"steps": [{"name": "a", "type": "Rhai"}]}}),
            "spec.steps[0].rhai",
        );
        err_at(
            &base(),
            json!({"spec": {"steps": [{"name": "a", "type": "Rhai", "rhai": " "}]}}),
            "spec.steps[0].rhai",
        );
        err_at(
            &base(),
            json!({"spec": {"steps": [{"name": "a", "type": "RunScript", "script": {"body": "\n"}}]}}),
            "spec.steps[0].script.body",
        );
        err_at(
            &base(),
            json!({"spec": {"steps": [{"name": "a", "type": "IsolateDevice", "message": "x"}]}}),
            "spec.steps[0].message",
        );
        err_at(
            &base(),
            json!({"spec": {"steps": [{"name": "a", "type": "IsolateDevice", "timeout": "0s"}]}}),
            "spec.steps[0].timeout",
        );
        err_at(
            &base(),
            json!({"spec": {"steps": [{"name": "a", "type": "OpenTicket", "channel": "Bad!"}]}}),
            "spec.steps[0].channel",
        );
        ok(
            &base(),
            json!({"spec": {"steps": [{"name": "a", "type": "RunScript", "script": {"shell": "PowerShell", "body": "Restart-Computer"}}, {"name": "b", "type": "ReleaseIsolation"}]}}),
        );
    }

    #[test]
    fn script_body_or_config_map() {
        let step = |script: Value| json!({"spec": {"steps": [{"name": "a", "type": "RunScript", "script": script}]}});
        let from_map = step(json!({"configMapRef": {"name": "scripts", "key": "cleanup.sh"}}));
        ok(&base(), from_map.clone());
        let mut d = base();
        crate::test_support::merge(&mut d, &from_map);
        let crate::manifest::Document::Resource(o) =
            crate::manifest::validate_document(&d).expect("valid")
        else {
            panic!("not a resource")
        };
        let spec: super::WorkflowSpec = o.typed_spec().expect("typed");
        let refs = spec.config_map_refs();
        assert_eq!(refs.len(), 1);
        assert_eq!(
            (
                refs[0].0.as_str(),
                refs[0].1.name.as_str(),
                refs[0].1.key.as_str()
            ),
            ("spec.steps[0].script.configMapRef", "scripts", "cleanup.sh")
        );
        err_at(
            &base(),
            step(json!({"shell": "Sh"})),
            "spec.steps[0].script.body",
        );
        err_at(
            &base(),
            step(json!({"body": "true", "configMapRef": {"name": "scripts", "key": "a"}})),
            "spec.steps[0].script.configMapRef",
        );
        err_at(
            &base(),
            step(json!({"configMapRef": {"name": "Scripts!", "key": "a"}})),
            "spec.steps[0].script.configMapRef.name",
        );
        err_at(
            &base(),
            step(json!({"configMapRef": {"name": "scripts", "key": "a/b"}})),
            "spec.steps[0].script.configMapRef.key",
        );
        err_at(
            &base(),
            step(json!({"configMapRef": {"name": "scripts"}})),
            "spec.steps[0].script.configMapRef.key",
        );
    }
}
