//! Notify and OpenTicket steps: the step's message, rendered for the lane, delivered through
//! a NotificationChannel with the notifier alerting uses. The receiver gets the documented
//! alert-notification schema (one entry whose `rule` is `workflow/NAME`), with an
//! idempotency key per (run, device, step, attempt), so a redelivery after an operator
//! restart is recognisable as the same message.
use std::{collections::BTreeMap, sync::Arc, time::Duration};

use cdot_crds::{
    alert_rule::Severity,
    kind::Kind,
    notification_channel::{ChannelType, NotificationChannelSpec},
    template,
    wire::alert::{Alert, AlertNotification, AlertState, NOTIFICATION_VERSION, NotificationKind},
    workflow::{Step, StepType},
};

use super::store::LaneRow;
use crate::{
    index::Index,
    notify::{Notifier, Target},
    secrets::Secrets,
};

/// What Notify and OpenTicket steps deliver with.
#[derive(Clone)]
pub struct Deliver {
    pub notifier: Notifier,
    pub secrets: Arc<Secrets>,
    pub index: Index,
}

/// The default message of a Notify or OpenTicket step.
pub const DEFAULT_MESSAGE: &str = "{{ workflow }}: step {{ step }} on {{ device }}";

/// What a step's message may use (`cdot_crds::template::WORKFLOW_VARIABLES`).
#[derive(serde::Serialize)]
pub struct MessageContext<'a> {
    pub device: &'a str,
    pub namespace: &'a str,
    pub site: Option<&'a str>,
    pub device_labels: &'a BTreeMap<String, String>,
    pub workflow: &'a str,
    pub run: &'a str,
    pub step: &'a str,
    pub event: &'a cdot_crds::wire::automation::Event,
    pub vars: &'a BTreeMap<String, serde_json::Value>,
    pub steps: &'a BTreeMap<String, serde_json::Value>,
}

/// The message of a Notify or OpenTicket step (the engine's and the plan's).
pub fn render_message(step: &Step, context: &MessageContext<'_>) -> Result<String, String> {
    template::render(step.message.as_deref().unwrap_or(DEFAULT_MESSAGE), context)
}

impl Deliver {
    /// Delivers the step's message; `Ok` carries what the receiver said.
    pub async fn send(
        &self,
        lane: &LaneRow,
        step: &Step,
        attempt: u32,
        timeout: jiff::SignedDuration,
    ) -> Result<String, String> {
        let snapshot = self.index.snapshot();
        let channel = step.channel.as_deref().unwrap_or_default();
        let Some(object) = snapshot.get(Kind::NotificationChannel, &lane.namespace, channel) else {
            return Err(format!(
                "NotificationChannel {channel} does not exist in namespace {}",
                lane.namespace
            ));
        };
        let spec: NotificationChannelSpec = serde_json::from_value(object.spec.clone())
            .map_err(|e| format!("NotificationChannel {channel} does not decode: {e}"))?;
        if step.type_ == StepType::OpenTicket && spec.type_ != ChannelType::Ticket {
            return Err(format!(
                "OpenTicket needs a Ticket channel; {channel} has type {:?}",
                spec.type_
            ));
        }
        let device = snapshot.device_by_uid(&lane.device);
        let site = device.and_then(|d| d.site()).map(str::to_owned);
        let labels = device.map(|d| d.object.labels.clone()).unwrap_or_default();
        let run = lane.run.to_string();
        let message = render_message(
            step,
            &MessageContext {
                device: &lane.device_name,
                namespace: &lane.namespace,
                site: site.as_deref(),
                device_labels: &labels,
                workflow: &lane.workflow,
                run: &run,
                step: &step.name,
                event: &lane.event,
                vars: &lane.vars,
                steps: &lane.outputs,
            },
        )?;
        let id = super::engine::work_id(lane.run, lane.device, lane.step, attempt);
        let now = jiff::Timestamp::now().to_string();
        let alert = Alert {
            id,
            namespace: lane.namespace.clone(),
            rule: format!("workflow/{}", lane.workflow),
            device: lane.device_name.clone(),
            site,
            metric: "workflow".into(),
            series: BTreeMap::new(),
            labels: lane.event.labels.clone(),
            severity: Severity::Info,
            state: AlertState::Firing,
            value: lane.event.value.unwrap_or(0.0),
            peak: lane.event.value.unwrap_or(0.0),
            threshold: 0.0,
            summary: message.clone(),
            description: String::new(),
            started_at: now.clone(),
            fired_at: Some(now.clone()),
            resolved_at: None,
            acknowledged: None,
            suppressed: None,
            tickets: BTreeMap::new(),
        };
        let notification = AlertNotification {
            version: NOTIFICATION_VERSION.into(),
            idempotency_key: id.to_string(),
            kind: NotificationKind::Firing,
            namespace: lane.namespace.clone(),
            channel: channel.to_owned(),
            rule: alert.rule.clone(),
            severity: Severity::Info,
            group: BTreeMap::new(),
            title: message,
            alerts: vec![alert],
            created_at: now,
        };
        let target = Target {
            namespace: &lane.namespace,
            name: channel,
            spec: &spec,
        };
        let limit = Duration::try_from(timeout).unwrap_or(Duration::from_secs(30));
        match tokio::time::timeout(
            limit,
            self.notifier
                .deliver(&target, &self.secrets, &notification, &BTreeMap::new()),
        )
        .await
        {
            Ok(Ok(d)) => Ok(match d.tickets.values().next() {
                Some(ticket) => format!("{}; ticket {ticket}", d.detail),
                None => d.detail,
            }),
            Ok(Err(e)) => Err(format!("delivery through {channel} failed: {e}")),
            Err(_) => Err(format!(
                "delivery through {channel} took longer than the step's timeout"
            )),
        }
    }
}
