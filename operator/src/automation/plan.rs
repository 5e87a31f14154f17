//! The dry-run plan of a run (`POST .../workflows/{name}:plan`): each step's concrete
//! effect on one device, and whether it can be undone, with no side effect anywhere.
//!
//! A plan is of the success path: every step in order, whatever its `onFailure` policy
//! (which the step's details mention). Agent steps show the exact command line, script or
//! nftables rules the agent would apply (the rules come from the same function the agent
//! uses); Notify and OpenTicket show the message rendered for the device; Rhai steps are
//! run in the sandbox with the sample event (a Rhai step has no effect outside the run),
//! so the plan shows the variables they would set and what later steps would see.
use std::collections::BTreeMap;

use cdot_crds::{
    kind::Kind,
    notification_channel::{ChannelType, NotificationChannelSpec},
    wire::{
        automation::{DevicePlan, Event, PlannedStep, Undo},
        isolation::{NFT_TABLE, nft_ruleset, parse_allow, release_script},
    },
    workflow::{OnFailure, Script, Shell, Step, StepType, WorkflowSpec},
};
use serde_json::{Value, json};

use super::sandbox::{DeviceView, Inputs, Sandbox};
use crate::{
    config_maps::{ConfigMapData, ConfigMaps, script_origin, script_text},
    index::Snapshot,
};

/// One device as the plan needs it.
#[derive(Clone, Debug)]
pub struct PlanDevice {
    pub view: DeviceView,
    /// Addresses or CIDRs an IsolateDevice step keeps reachable (the site's collectors,
    /// the step's `allow`), computed by the caller.
    pub allow: Vec<String>,
    /// Whether an agent reports for the device (agent steps fail without one).
    pub has_agent: bool,
}

impl PlanDevice {
    pub fn new(view: DeviceView, allow: Vec<String>, has_agent: bool) -> Self {
        Self {
            view,
            allow,
            has_agent,
        }
    }
}

/// What the plan looks up besides the device.
#[derive(Clone, Debug, Default)]
pub struct PlanContext {
    /// Workflow name, for message templates (`{{ workflow }}`).
    pub workflow: String,
    /// NotificationChannels of the namespace by name (those that decode).
    pub channels: BTreeMap<String, NotificationChannelSpec>,
    /// ConfigMaps of the namespace by name (RunScript steps' `configMapRef`).
    pub config_maps: BTreeMap<String, ConfigMapData>,
    /// `now` of the Rhai steps (unix seconds).
    pub now: i64,
}

impl PlanContext {
    /// The NotificationChannels of `namespace` from the index, its ConfigMaps, `now` from
    /// the clock.
    pub fn new(snapshot: &Snapshot, config_maps: &ConfigMaps, namespace: &str) -> Self {
        Self {
            workflow: String::new(),
            channels: snapshot
                .in_namespace(Kind::NotificationChannel, namespace)
                .filter_map(|o| {
                    let spec = serde_json::from_value(o.spec.clone()).ok()?;
                    Some((o.name.clone(), spec))
                })
                .collect(),
            config_maps: config_maps.in_namespace(namespace),
            now: jiff::Timestamp::now().as_second(),
        }
    }

    pub fn workflow(mut self, name: &str) -> Self {
        name.clone_into(&mut self.workflow);
        self
    }
}

/// The steps `device` would go through for `event`.
pub fn plan_device(
    spec: &WorkflowSpec,
    device: &PlanDevice,
    event: &Event,
    ctx: &PlanContext,
    sandbox: &Sandbox,
) -> DevicePlan {
    let mut run = Lane {
        device,
        event,
        ctx,
        sandbox,
        steps: BTreeMap::new(),
        vars: BTreeMap::new(),
        unknown: Vec::new(),
    };
    let steps = spec
        .steps
        .iter()
        .map(|step| {
            let mut planned = run.step(step);
            if planned.on_agent {
                run.unknown.push(step.name.clone());
            }
            planned.details.extend(failure_details(spec, step));
            if planned.on_agent && !device.has_agent {
                planned
                    .effect
                    .push_str(" (the device has no agent: the step would fail)");
            }
            planned
        })
        .collect();
    DevicePlan {
        device: device.view.name.clone(),
        steps,
    }
}

/// The success path through the steps, with what Rhai steps leave for later ones.
struct Lane<'a> {
    device: &'a PlanDevice,
    event: &'a Event,
    ctx: &'a PlanContext,
    sandbox: &'a Sandbox,
    steps: BTreeMap<String, Value>,
    vars: BTreeMap<String, Value>,
    /// Earlier agent steps: their outputs are known only when they run.
    unknown: Vec<String>,
}

impl Lane<'_> {
    /// Why a later step could not be evaluated, when it may be the unknown outputs.
    fn unevaluated(&self, what: &str, error: &str) -> Option<String> {
        (!self.unknown.is_empty()).then(|| {
            format!(
                "{what} not evaluated here: it may read the output of {} (known only when the agent runs it); with none: {error}",
                self.unknown.join(", ")
            )
        })
    }

    fn step(&mut self, step: &Step) -> PlannedStep {
        let name = &self.device.view.name;
        let (on_agent, effect, details, undo) = match step.type_ {
            StepType::RunScript => {
                let namespace = &self.device.view.namespace;
                let text = step.script.as_ref().map(|script| {
                    let text =
                        script_text(script, namespace, |n| self.ctx.config_maps.get(n).cloned());
                    (script, text)
                });
                let (effect, details) = match text {
                    Some((script, Ok(text))) => run_script(script, &text, name),
                    Some((_, Err(missing))) => {
                        (format!("{missing}: the step would fail"), Vec::new())
                    }
                    None => ("no script: the step would fail".into(), Vec::new()),
                };
                (
                    true,
                    effect,
                    details,
                    cannot("a script's effect is unknown to the operator"),
                )
            }
            StepType::RestartService => {
                let service = step.service.as_deref().unwrap_or_default();
                let systemd = format!("systemctl restart -- {}", quote(service));
                let supervisor = format!("supervisorctl restart {}", quote(service));
                (
                    true,
                    format!(
                        "restart {service} on {name} with the device's service manager \
                         ({systemd} / {supervisor})"
                    ),
                    vec![systemd, supervisor],
                    cannot("a restart cannot be undone: the service's old processes are gone"),
                )
            }
            StepType::IsolateDevice => {
                let (effect, details) = self.isolate(step);
                (true, effect, details, can("a ReleaseIsolation step"))
            }
            StepType::ReleaseIsolation => (
                true,
                format!("release {name}'s isolation: nft delete table {NFT_TABLE}"),
                lines(&release_script()),
                can("an IsolateDevice step"),
            ),
            StepType::Notify | StepType::OpenTicket => {
                let (effect, details) = self.message(step);
                let undo = if step.type_ == StepType::Notify {
                    cannot("a sent message cannot be recalled")
                } else {
                    can("a ticket can be closed")
                };
                (false, effect, details, undo)
            }
            StepType::Wait => {
                let duration = step.duration.as_deref().unwrap_or_default();
                let (effect, details) = match &step.until {
                    None => (format!("wait {duration}"), Vec::new()),
                    Some(until) => (
                        format!(
                            "wait until `{until}` holds (checked every few seconds), at most {duration}"
                        ),
                        vec![format!("with the sample event now: {}", self.until(until))],
                    ),
                };
                (false, effect, details, in_run())
            }
            StepType::Rhai => {
                let (effect, details) = self.rhai(step);
                (false, effect, details, in_run())
            }
            StepType::Approval => (
                false,
                "stops until a person with the operator role other than the starter approves"
                    .into(),
                Vec::new(),
                in_run(),
            ),
        };
        PlannedStep {
            step: step.name.clone(),
            type_: step.type_,
            on_agent,
            effect,
            details,
            undo,
        }
    }

    fn isolate(&self, step: &Step) -> (String, Vec<String>) {
        let mut allow = self.device.allow.clone();
        allow.extend(step.allow.iter().cloned());
        let nets = match parse_allow(&allow) {
            Ok(nets) => nets,
            Err(e) => return (format!("{e}: the step would fail"), Vec::new()),
        };
        let mut shown: Vec<String> = Vec::new();
        for net in nets.iter().map(ToString::to_string) {
            if !shown.contains(&net) {
                shown.push(net);
            }
        }
        let listed = if shown.is_empty() {
            String::new()
        } else {
            format!(", {}", shown.join(", "))
        };
        let effect = format!(
            "isolate {}: drop all traffic except loopback, DHCP, neighbour discovery{listed} \
             and the operator's address as the agent resolves it",
            self.device.view.name
        );
        let mut details = vec![
            format!("allow: {}", shown.join(", ")),
            "the agent adds the operator's address (and its name servers) when the step runs"
                .into(),
            "nft -f - with:".into(),
        ];
        details.extend(lines(&nft_ruleset(&nets)));
        (effect, details)
    }

    fn message(&self, step: &Step) -> (String, Vec<String>) {
        let ns = &self.device.view.namespace;
        let channel = step.channel.as_deref().unwrap_or_default();
        let Some(spec) = self.ctx.channels.get(channel) else {
            return (
                format!(
                    "NotificationChannel {channel} does not exist in namespace {ns} (or does \
                     not decode): nothing would be sent and the step would fail"
                ),
                Vec::new(),
            );
        };
        if step.type_ == StepType::OpenTicket && spec.type_ != ChannelType::Ticket {
            return (
                format!(
                    "OpenTicket needs a Ticket channel; {channel} has type {:?}: the step \
                     would fail",
                    spec.type_
                ),
                Vec::new(),
            );
        }
        let message = match self.render(step) {
            Ok(message) => message,
            Err(e) => {
                return (
                    self.unevaluated("the message is", &e).unwrap_or_else(|| {
                        format!("the message does not render ({e}): the step would fail")
                    }),
                    Vec::new(),
                );
            }
        };
        let effect = match (&step.type_, &spec.ticket) {
            (StepType::OpenTicket, Some(t)) => format!(
                "open a {:?} ticket in {} through channel {channel} (Ticket): {message:?}",
                t.system, t.project
            ),
            _ => format!(
                "send through channel {channel} ({:?}): {message:?}",
                spec.type_
            ),
        };
        (effect, vec![message])
    }

    /// The context the engine renders a message with, for this device and the sample event.
    fn render(&self, step: &Step) -> Result<String, String> {
        let view = &self.device.view;
        super::deliver::render_message(
            step,
            &super::deliver::MessageContext {
                device: &view.name,
                namespace: &view.namespace,
                site: view.site.as_deref(),
                device_labels: &view.labels,
                workflow: &self.ctx.workflow,
                run: "(plan)",
                step: &step.name,
                event: self.event,
                vars: &self.vars,
                steps: &self.steps,
            },
        )
    }

    fn inputs(&self) -> Inputs<'_> {
        Inputs {
            event: self.event,
            device: &self.device.view,
            steps: &self.steps,
            vars: &self.vars,
            now: self.ctx.now,
        }
    }

    fn until(&self, source: &str) -> String {
        match self
            .sandbox
            .compiled(source)
            .and_then(|s| self.sandbox.eval_bool(&s, &self.inputs()))
        {
            Ok(true) => "holds (the wait would end at once)".into(),
            Ok(false) => "does not hold".into(),
            Err(e) => format!("fails: {e}"),
        }
    }

    fn rhai(&mut self, step: &Step) -> (String, Vec<String>) {
        let source = step.rhai.as_deref().unwrap_or_default();
        let out = match self
            .sandbox
            .compiled(source)
            .and_then(|s| self.sandbox.run(&s, &self.inputs()))
        {
            Ok(out) => out,
            Err(e) => {
                let e = e.to_string();
                let effect = self
                    .unevaluated("runs in the operator;", &e)
                    .unwrap_or_else(|| format!("runs in the operator and fails: {e}"));
                return (effect, Vec::new());
            }
        };
        let sets: Vec<String> = out.set.iter().map(|(k, v)| format!("{k} = {v}")).collect();
        let effect = if sets.is_empty() {
            format!("runs in the operator and returns {}", out.value)
        } else {
            format!(
                "runs in the operator, returns {} and sets {}",
                out.value,
                sets.join(", ")
            )
        };
        let mut details: Vec<String> = sets.iter().map(|s| format!("set {s}")).collect();
        details.extend(out.log.iter().map(|l| format!("log: {l}")));
        // Later steps see what the engine would store.
        self.steps.insert(
            step.name.clone(),
            json!({"value": out.value, "log": out.log}),
        );
        self.vars.extend(out.set);
        (effect, details)
    }
}

/// The command, user and `text` (the script's body, or its ConfigMap's, which the details
/// name) of a RunScript step.
fn run_script(script: &Script, text: &str, device: &str) -> (String, Vec<String>) {
    // Only a script from elsewhere says where it came from: an inline one is in the spec.
    let origin = script_origin(script).map(|origin| format!("script: {origin}"));
    let program = match script.shell {
        Shell::Sh => "sh",
        Shell::Bash => "bash",
        Shell::Python => "python3",
        Shell::PowerShell | Shell::Cmd => {
            return (
                format!(
                    "the agent runs Sh, Bash and Python scripts only: this {:?} script \
                     would fail",
                    script.shell
                ),
                origin.into_iter().chain([text.to_owned()]).collect(),
            );
        }
    };
    let mut command = format!("{program} <script file>");
    for arg in &script.args {
        command.push(' ');
        command.push_str(&quote(arg));
    }
    let user = script
        .run_as
        .as_deref()
        .map_or_else(|| "the agent's user".to_owned(), |u| format!("user {u}"));
    (
        format!("run `{command}` on {device} as {user}"),
        [format!("command: {command}"), format!("run as: {user}")]
            .into_iter()
            .chain(origin)
            .chain([text.to_owned()])
            .collect(),
    )
}

fn failure_details(spec: &WorkflowSpec, step: &Step) -> Vec<String> {
    let mut out = Vec::new();
    if step.retries > 0 {
        out.push(format!(
            "retries: {} more attempt(s), {} apart, each at most {}",
            step.retries, step.retry_delay, step.timeout
        ));
    }
    match (step.on_failure, &step.on_failure_step) {
        (OnFailure::Abort, _) => {}
        (OnFailure::Continue, _) => {
            out.push("onFailure Continue: when it fails, the run goes on with the next step".into())
        }
        (OnFailure::RunStep, target) => out.push(format!(
            "onFailure RunStep: when it fails, the run goes on with step {}",
            target.as_deref().unwrap_or("?")
        )),
    }
    for from in spec.steps.iter().filter(|s| {
        s.on_failure == OnFailure::RunStep && s.on_failure_step.as_deref() == Some(&step.name)
    }) {
        out.push(format!("also reached when step {} fails", from.name));
    }
    out
}

/// Quotes a word for a POSIX shell when it needs it (for display).
fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c));
    if plain {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

fn lines(text: &str) -> Vec<String> {
    text.lines().map(str::to_owned).collect()
}

fn can(how: &str) -> Undo {
    Undo {
        possible: true,
        how: how.into(),
    }
}

fn cannot(why: &str) -> Undo {
    Undo {
        possible: false,
        how: why.into(),
    }
}

fn in_run() -> Undo {
    can("no effect outside the run")
}

#[cfg(test)]
mod tests {
    use cdot_crds::workflow::TriggerType;

    use super::*;
    use crate::automation::sandbox::Limits;

    fn spec(steps: Value) -> WorkflowSpec {
        serde_json::from_value(json!({
            "trigger": {"type": "ServiceFailed", "service": "nginx.service"},
            "steps": steps,
        }))
        .expect("spec")
    }

    fn device() -> PlanDevice {
        PlanDevice::new(
            DeviceView {
                name: "web-01".into(),
                namespace: "acme".into(),
                labels: [("tier".to_owned(), "web".to_owned())].into(),
                class: Some("Server".into()),
                site: Some("hq".into()),
            },
            vec!["10.1.0.5".into()],
            true,
        )
    }

    fn event() -> Event {
        Event {
            type_: Some(TriggerType::ServiceFailed),
            device: Some("web-01".into()),
            service: Some("nginx.service".into()),
            value: Some(3.0),
            ..Event::default()
        }
    }

    fn ctx() -> PlanContext {
        let channel =
            |v: Value| -> NotificationChannelSpec { serde_json::from_value(v).expect("channel") };
        PlanContext {
            workflow: "heal-nginx".into(),
            channels: [
                (
                    "slack".to_owned(),
                    channel(json!({"type": "Webhook", "webhook": {"url": "https://hooks.example.com/x"}})),
                ),
                (
                    "itsm".to_owned(),
                    channel(json!({"type": "Ticket", "ticket": {
                        "system": "ServiceNow", "url": "https://acme.service-now.com",
                        "project": "ops", "credentialsSecretRef": {"name": "sn"}}})),
                ),
            ]
            .into(),
            config_maps: [(
                "scripts".to_owned(),
                std::sync::Arc::new(BTreeMap::from([(
                    "cleanup.sh".to_owned(),
                    "rm -f /tmp/*.old\n".to_owned(),
                )])),
            )]
            .into(),
            now: 1_796_000_000,
        }
    }

    fn plan(steps: Value) -> Vec<PlannedStep> {
        plan_with(steps, &device())
    }

    fn plan_with(steps: Value, device: &PlanDevice) -> Vec<PlannedStep> {
        let sandbox = Sandbox::new(Limits::default());
        let p = plan_device(&spec(steps), device, &event(), &ctx(), &sandbox);
        assert_eq!(p.device, "web-01");
        p.steps
    }

    fn one(step: Value) -> PlannedStep {
        plan(json!([step])).remove(0)
    }

    #[test]
    fn run_script_shows_the_command_and_body() {
        let s = one(json!({"name": "fix", "type": "RunScript", "script": {
            "shell": "Bash", "body": "systemctl reset-failed nginx\n", "args": ["--force", "two words"], "runAs": "deploy"}}));
        assert!(s.on_agent);
        assert_eq!(
            s.effect,
            "run `bash <script file> --force 'two words'` on web-01 as user deploy"
        );
        assert_eq!(
            s.details[0],
            "command: bash <script file> --force 'two words'"
        );
        assert_eq!(s.details[2], "systemctl reset-failed nginx\n");
        assert!(!s.undo.possible);
        assert_eq!(s.undo.how, "a script's effect is unknown to the operator");

        let s = one(json!({"name": "fix", "type": "RunScript", "script": {"body": "true"}}));
        assert_eq!(
            s.effect,
            "run `sh <script file>` on web-01 as the agent's user"
        );
        let s = one(
            json!({"name": "fix", "type": "RunScript", "script": {"shell": "Python", "body": "print(1)"}}),
        );
        assert!(
            s.effect.starts_with("run `python3 <script file>`"),
            "{}",
            s.effect
        );
        let s = one(
            json!({"name": "fix", "type": "RunScript", "script": {"shell": "PowerShell", "body": "x"}}),
        );
        assert!(s.effect.contains("would fail"), "{}", s.effect);
    }

    /// A script from a ConfigMap shows its text and where it came from; a missing one fails.
    #[test]
    fn run_script_from_a_config_map_shows_its_text_and_origin() {
        let s = one(json!({"name": "clean", "type": "RunScript", "script": {
            "shell": "Bash", "configMapRef": {"name": "scripts", "key": "cleanup.sh"}}}));
        assert_eq!(
            s.effect,
            "run `bash <script file>` on web-01 as the agent's user"
        );
        assert_eq!(
            s.details[..4],
            [
                "command: bash <script file>",
                "run as: the agent's user",
                "script: from ConfigMap scripts/cleanup.sh",
                "rm -f /tmp/*.old\n",
            ]
        );
        let s = one(json!({"name": "clean", "type": "RunScript", "script": {
            "configMapRef": {"name": "scripts", "key": "nope.sh"}}}));
        assert_eq!(
            s.effect,
            "ConfigMap acme/scripts has no key nope.sh: the step would fail"
        );
        let s = one(json!({"name": "clean", "type": "RunScript", "script": {
            "configMapRef": {"name": "gone", "key": "cleanup.sh"}}}));
        assert_eq!(
            s.effect,
            "ConfigMap acme/gone does not exist: the step would fail"
        );
    }

    #[test]
    fn restart_service_names_both_service_managers() {
        let s =
            one(json!({"name": "restart", "type": "RestartService", "service": "nginx.service"}));
        assert!(s.on_agent);
        assert_eq!(
            s.effect,
            "restart nginx.service on web-01 with the device's service manager \
             (systemctl restart -- nginx.service / supervisorctl restart nginx.service)"
        );
        assert!(!s.undo.possible);
    }

    #[test]
    fn isolation_shows_the_exact_rules_and_release_undoes_it() {
        let s = one(
            json!({"name": "cut", "type": "IsolateDevice", "allow": ["192.168.7.0/24", "10.1.0.5"]}),
        );
        assert!(s.on_agent);
        assert!(
            s.effect.contains("10.1.0.5/32, 192.168.7.0/24"),
            "{}",
            s.effect
        );
        assert_eq!(s.details[0], "allow: 10.1.0.5/32, 192.168.7.0/24");
        let rules = lines(&nft_ruleset(
            &parse_allow(&["10.1.0.5".into(), "192.168.7.0/24".into()]).expect("allow"),
        ));
        assert_eq!(s.details[3..], rules[..]);
        assert!(s.undo.possible);
        assert_eq!(s.undo.how, "a ReleaseIsolation step");

        let s = one(json!({"name": "cut", "type": "IsolateDevice", "allow": ["not-an-ip"]}));
        assert!(s.effect.contains("not-an-ip") && s.effect.contains("would fail"));

        let s = one(json!({"name": "free", "type": "ReleaseIsolation"}));
        assert_eq!(
            s.effect,
            "release web-01's isolation: nft delete table inet cdot_isolation"
        );
        assert_eq!(s.details, lines(&release_script()));
        assert!(s.undo.possible);
        assert_eq!(s.undo.how, "an IsolateDevice step");
    }

    #[test]
    fn agent_steps_on_a_device_without_an_agent_would_fail() {
        let mut d = device();
        d.has_agent = false;
        let s = plan_with(
            json!([{"name": "restart", "type": "RestartService", "service": "nginx"},
                   {"name": "ok", "type": "Approval"}]),
            &d,
        );
        assert!(
            s[0].effect
                .ends_with("(the device has no agent: the step would fail)")
        );
        assert!(!s[1].effect.contains("no agent"));
    }

    #[test]
    fn messages_are_rendered_for_the_device() {
        let s = one(json!({"name": "tell", "type": "Notify", "channel": "slack",
            "message": "{{ event.service }} failed {{ event.value }} times on {{ device }} ({{ device_labels.tier }})"}));
        assert!(!s.on_agent);
        assert_eq!(
            s.effect,
            "send through channel slack (Webhook): \"nginx.service failed 3.0 times on web-01 (web)\""
        );
        assert_eq!(
            s.details,
            vec!["nginx.service failed 3.0 times on web-01 (web)".to_owned()]
        );
        assert_eq!(s.undo.how, "a sent message cannot be recalled");
        assert!(!s.undo.possible);

        let s = one(json!({"name": "tell", "type": "Notify", "channel": "slack"}));
        assert_eq!(
            s.details,
            vec!["heal-nginx: step tell on web-01".to_owned()]
        );

        let s = one(
            json!({"name": "ticket", "type": "OpenTicket", "channel": "itsm", "message": "{{ device }} down"}),
        );
        assert_eq!(
            s.effect,
            "open a ServiceNow ticket in ops through channel itsm (Ticket): \"web-01 down\""
        );
        assert!(s.undo.possible);
        assert_eq!(s.undo.how, "a ticket can be closed");

        let s = one(json!({"name": "tell", "type": "Notify", "channel": "pager"}));
        assert!(
            s.effect
                .starts_with("NotificationChannel pager does not exist in namespace acme")
        );
        let s = one(json!({"name": "ticket", "type": "OpenTicket", "channel": "slack"}));
        assert!(
            s.effect
                .starts_with("OpenTicket needs a Ticket channel; slack has type Webhook")
        );
        let s = one(
            json!({"name": "tell", "type": "Notify", "channel": "slack", "message": "{{ nope }}"}),
        );
        assert!(
            s.effect.starts_with("the message does not render"),
            "{}",
            s.effect
        );
    }

    #[test]
    fn wait_and_approval_have_no_effect_outside_the_run() {
        let s = one(json!({"name": "pause", "type": "Wait", "duration": "5m"}));
        assert_eq!(s.effect, "wait 5m");
        assert!(s.undo.possible);
        assert_eq!(s.undo.how, "no effect outside the run");
        let s = one(
            json!({"name": "pause", "type": "Wait", "duration": "5m", "until": "event.value > 2.0"}),
        );
        assert_eq!(
            s.effect,
            "wait until `event.value > 2.0` holds (checked every few seconds), at most 5m"
        );
        assert_eq!(
            s.details,
            vec!["with the sample event now: holds (the wait would end at once)".to_owned()]
        );
        let s = one(json!({"name": "ok", "type": "Approval"}));
        assert_eq!(
            s.effect,
            "stops until a person with the operator role other than the starter approves"
        );
        assert!(!s.on_agent && s.undo.possible);
    }

    #[test]
    fn rhai_steps_run_in_the_sandbox_and_feed_later_steps() {
        let s = plan(json!([
            {"name": "score", "type": "Rhai", "rhai": "set(\"severity\", if event.value > 2.0 { \"high\" } else { \"low\" }); print(\"scored\"); 42"},
            {"name": "again", "type": "Rhai", "rhai": "vars.severity + \"/\" + steps.score.value"},
            {"name": "tell", "type": "Notify", "channel": "slack", "message": "{{ vars.severity }}"},
            {"name": "bad", "type": "Rhai", "rhai": "loop {}"},
        ]));
        assert_eq!(
            s[0].effect,
            "runs in the operator, returns 42 and sets severity = \"high\""
        );
        assert_eq!(
            s[0].details,
            vec![
                "set severity = \"high\"".to_owned(),
                "log: scored".to_owned()
            ]
        );
        assert_eq!(s[1].effect, "runs in the operator and returns \"high/42\"");
        assert_eq!(s[2].details, vec!["high".to_owned()]);
        assert!(
            s[3].effect
                .contains("fails: rhai script broke the operations limit"),
            "{}",
            s[3].effect
        );
        assert!(
            s.iter()
                .filter(|p| p.type_ == StepType::Rhai)
                .all(|p| !p.on_agent && p.undo.possible)
        );
    }

    #[test]
    fn every_step_is_listed_with_its_failure_policy() {
        let s = plan(json!([
            {"name": "restart", "type": "RestartService", "service": "nginx", "retries": 2,
             "onFailure": "RunStep", "onFailureStep": "page"},
            {"name": "check", "type": "Wait", "duration": "1m", "onFailure": "Continue"},
            {"name": "page", "type": "Notify", "channel": "slack"},
        ]));
        let names: Vec<_> = s.iter().map(|p| p.step.as_str()).collect();
        assert_eq!(names, ["restart", "check", "page"]);
        assert!(
            s[0].details
                .contains(&"retries: 2 more attempt(s), 30s apart, each at most 5m".to_owned())
        );
        assert!(s[0].details.contains(
            &"onFailure RunStep: when it fails, the run goes on with step page".to_owned()
        ));
        assert!(s[1].details.contains(
            &"onFailure Continue: when it fails, the run goes on with the next step".to_owned()
        ));
        assert!(
            s[2].details
                .contains(&"also reached when step restart fails".to_owned())
        );
    }

    /// A step reading an agent step's output cannot be evaluated in a plan: it says so
    /// instead of calling the step a failure.
    #[test]
    fn steps_after_an_agent_step_are_not_called_failures() {
        let steps = plan(json!([
            {"name": "facts", "type": "RunScript", "script": {"body": "df -P /"}},
            {"name": "judge", "type": "Rhai", "rhai": "set(\"disk\", steps[\"facts\"].stdout); 1"},
            {"name": "tell", "type": "Notify", "channel": "slack", "message": "{{ vars.disk }}"},
        ]));
        for s in &steps[1..] {
            assert!(
                s.effect
                    .contains("not evaluated here: it may read the output of facts"),
                "{}",
                s.effect
            );
        }
    }
}
