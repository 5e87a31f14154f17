//! Tickets in ServiceNow (Table API) or Jira (REST API v2), one per alert: opened when the
//! alert fires, noted when it repeats, closed (or noted) when it resolves. Alerts with no
//! ticket are skipped on repeat and resolve; alerts that already have one are not opened
//! again when a firing notification is redelivered.
use std::collections::BTreeMap;

use cdot_crds::{
    alert_rule::Severity,
    notification_channel::{TicketConfig, TicketSystem},
    wire::alert::{Alert, AlertNotification, IDEMPOTENCY_HEADER, NotificationKind},
};
use reqwest::{Method, Url};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{
    ApiAuth, Delivered, DeliveryError, Notifier, Target, cut, http, webhook::idempotency_value,
};
use crate::secrets::Secrets;

/// ServiceNow's `short_description` column.
const SERVICENOW_SHORT: usize = 160;
/// Jira's `summary` field.
const JIRA_SUMMARY: usize = 255;
/// Jira transition names (any case) that close an issue, preferred in this order.
const JIRA_CLOSING: &[&str] = &["done", "resolved", "closed"];

struct Client<'a> {
    notifier: &'a Notifier,
    auth: ApiAuth,
    base: Url,
    label: String,
    system: &'static str,
}

impl Client<'_> {
    /// `base` with `segments` appended to its path (each percent-encoded).
    fn endpoint(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    async fn call(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&Value>,
        key: &str,
    ) -> Result<Value, DeliveryError> {
        let url = self.endpoint(segments);
        let what = format!(
            "channel {}: {} {method} {} on {}",
            self.label,
            self.system,
            url.path(),
            http::host(&url)
        );
        let mut request = self
            .notifier
            .http
            .request(method, url)
            .header(reqwest::header::ACCEPT, "application/json")
            .header(IDEMPOTENCY_HEADER, idempotency_value(&self.label, key)?);
        if let Some(body) = body {
            request = request.json(body);
        }
        let answer = http::send(&what, self.auth.apply(request)).await?;
        if answer.body.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&answer.body).map_err(|_| {
            DeliveryError::permanent(format!(
                "{what} answered HTTP {} with a body that is not JSON{}",
                answer.status,
                http::quote(&answer.body)
            ))
        })
    }
}

pub(super) async fn deliver(
    notifier: &Notifier,
    target: &Target<'_>,
    config: &TicketConfig,
    secrets: &Secrets,
    n: &AlertNotification,
    known: &BTreeMap<Uuid, String>,
) -> Result<Delivered, DeliveryError> {
    let label = target.label();
    let auth = ApiAuth::from_secret(target, secrets, &config.credentials_secret_ref)?;
    let base = Url::parse(&config.url).map_err(|e| {
        DeliveryError::permanent(format!(
            "channel {label}: spec.ticket.url is not a URL: {e}"
        ))
    })?;
    let client = Client {
        notifier,
        auth,
        base,
        label,
        system: match config.system {
            TicketSystem::ServiceNow => "ServiceNow",
            TicketSystem::Jira => "Jira",
        },
    };

    let mut opened = BTreeMap::new();
    let mut done: Vec<String> = Vec::new();
    let mut skipped = 0;
    for alert in &n.alerts {
        let key = format!("{}:{}", n.idempotency_key, alert.id);
        let result = match (n.kind, known.get(&alert.id)) {
            (NotificationKind::Firing, Some(id)) => {
                done.push(format!("{id} (already open)"));
                continue;
            }
            (_, None) if n.kind != NotificationKind::Firing => {
                skipped += 1;
                continue;
            }
            (_, None) => open(&client, config, n, alert, &key)
                .await
                .map(|(id, shown)| {
                    opened.insert(alert.id, id);
                    shown
                }),
            (kind, Some(id)) => update(&client, config, kind, alert, id, &key).await,
        };
        match result {
            Ok(shown) => done.push(shown),
            Err(e) if done.is_empty() => return Err(e.with_tickets(opened)),
            // Some alerts are done: a redelivery finishes the rest (their tickets are kept).
            Err(e) => {
                let retry_after = match &e {
                    DeliveryError::Retryable { retry_after, .. } => *retry_after,
                    DeliveryError::Permanent { .. } => None,
                };
                return Err(DeliveryError::retryable(
                    format!(
                        "{e} (after {} of {} alerts: {})",
                        done.len(),
                        n.alerts.len(),
                        done.join(", ")
                    ),
                    retry_after,
                )
                .with_tickets(opened));
            }
        }
    }
    let mut detail = done.join(", ");
    if skipped > 0 {
        if !detail.is_empty() {
            detail.push_str("; ");
        }
        detail.push_str(&format!("{skipped} alert(s) without a ticket skipped"));
    }
    Ok(Delivered {
        tickets: opened,
        detail,
    })
}

/// Opens a ticket: its id to keep (sys_id, issue key) and what to show (number, key).
async fn open(
    client: &Client<'_>,
    config: &TicketConfig,
    n: &AlertNotification,
    alert: &Alert,
    key: &str,
) -> Result<(String, String), DeliveryError> {
    let missing = |field: &str, answer: &Value| {
        DeliveryError::permanent(format!(
            "channel {}: {} answered without {field}: {}",
            client.label,
            client.system,
            cut(&answer.to_string(), 200)
        ))
    };
    match config.system {
        TicketSystem::ServiceNow => {
            let answer = client
                .call(
                    Method::POST,
                    &["api", "now", "table", servicenow_table(config)],
                    Some(&servicenow_create(n, alert, config)),
                    key,
                )
                .await?;
            let sys_id = answer["result"]["sys_id"]
                .as_str()
                .ok_or_else(|| missing("result.sys_id", &answer))?;
            let number = answer["result"]["number"].as_str().unwrap_or(sys_id);
            Ok((sys_id.to_owned(), number.to_owned()))
        }
        TicketSystem::Jira => {
            let answer = client
                .call(
                    Method::POST,
                    &["rest", "api", "2", "issue"],
                    Some(&jira_create(n, alert, config)),
                    key,
                )
                .await?;
            let issue = answer["key"]
                .as_str()
                .ok_or_else(|| missing("key", &answer))?;
            Ok((issue.to_owned(), issue.to_owned()))
        }
    }
}

/// Notes a repeat, or a resolve (closing the ticket when `closeOnResolve`).
async fn update(
    client: &Client<'_>,
    config: &TicketConfig,
    kind: NotificationKind,
    alert: &Alert,
    id: &str,
    key: &str,
) -> Result<String, DeliveryError> {
    let close = kind == NotificationKind::Resolved && config.close_on_resolve;
    match config.system {
        TicketSystem::ServiceNow => {
            let answer = client
                .call(
                    Method::PATCH,
                    &["api", "now", "table", servicenow_table(config), id],
                    Some(&servicenow_update(kind, alert, close)),
                    key,
                )
                .await?;
            let shown = answer["result"]["number"].as_str().unwrap_or(id);
            Ok(format!(
                "{shown} {}",
                if close { "closed" } else { "noted" }
            ))
        }
        TicketSystem::Jira => {
            let issue = ["rest", "api", "2", "issue", id];
            client
                .call(
                    Method::POST,
                    &[&issue[..], &["comment"]].concat(),
                    Some(&json!({"body": note(kind, alert)})),
                    key,
                )
                .await?;
            if !close {
                return Ok(format!("{id} commented"));
            }
            let transitions_path = [&issue[..], &["transitions"]].concat();
            let answer = client
                .call(Method::GET, &transitions_path, None, key)
                .await?;
            let transition = jira_closing_transition(&answer).ok_or_else(|| {
                DeliveryError::permanent(format!(
                    "channel {}: Jira issue {id} has no transition named Done, Resolved or Closed (it has: {})",
                    client.label,
                    jira_transition_names(&answer).join(", ")
                ))
            })?;
            client
                .call(
                    Method::POST,
                    &transitions_path,
                    Some(&json!({"transition": {"id": transition}})),
                    &format!("{key}:transition"),
                )
                .await?;
            Ok(format!("{id} closed"))
        }
    }
}

fn servicenow_table(config: &TicketConfig) -> &str {
    config.issue_type.as_deref().unwrap_or("incident")
}

/// ServiceNow's urgency and impact: 1 high, 2 medium, 3 low.
fn servicenow_level(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "1",
        Severity::Warning => "2",
        Severity::Info => "3",
    }
}

pub(super) fn servicenow_create(
    n: &AlertNotification,
    alert: &Alert,
    config: &TicketConfig,
) -> Value {
    json!({
        "short_description": cut(&one_line(&alert.summary), SERVICENOW_SHORT),
        "description": description(n, alert),
        "urgency": servicenow_level(alert.severity),
        "impact": servicenow_level(alert.severity),
        "assignment_group": config.project,
        "correlation_id": alert.id.to_string(),
    })
}

pub(super) fn servicenow_update(kind: NotificationKind, alert: &Alert, close: bool) -> Value {
    if close {
        json!({
            "state": "6",
            "close_code": "Resolved by monitoring",
            "close_notes": note(kind, alert),
        })
    } else {
        json!({"work_notes": note(kind, alert)})
    }
}

pub(super) fn jira_create(n: &AlertNotification, alert: &Alert, config: &TicketConfig) -> Value {
    json!({
        "fields": {
            "project": {"key": config.project},
            "summary": cut(&one_line(&alert.summary), JIRA_SUMMARY),
            "description": description(n, alert),
            "issuetype": {"name": config.issue_type.as_deref().unwrap_or("Incident")},
            "labels": ["cdot-rmm"],
        }
    })
}

/// The id of the first transition named Done, Resolved or Closed (any case, in that order).
pub(super) fn jira_closing_transition(answer: &Value) -> Option<String> {
    let transitions = answer["transitions"].as_array()?;
    JIRA_CLOSING.iter().find_map(|wanted| {
        transitions.iter().find_map(|t| {
            let name = t["name"].as_str()?;
            if name.eq_ignore_ascii_case(wanted) {
                match &t["id"] {
                    Value::String(id) => Some(id.clone()),
                    Value::Number(id) => Some(id.to_string()),
                    _ => None,
                }
            } else {
                None
            }
        })
    })
}

fn jira_transition_names(answer: &Value) -> Vec<String> {
    answer["transitions"]
        .as_array()
        .map(|ts| {
            ts.iter()
                .filter_map(|t| t["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What a ticket says about its alert.
pub(super) fn description(n: &AlertNotification, a: &Alert) -> String {
    let mut out = format!(
        "{}\n\nDevice: {} (namespace {}",
        a.summary, a.device, a.namespace
    );
    if let Some(site) = &a.site {
        out.push_str(&format!(", site {site}"));
    }
    out.push_str(&format!(
        ")\nRule: {} (severity {:?})\nMetric: {}",
        n.rule, a.severity, a.metric
    ));
    for (k, v) in &a.series {
        out.push_str(&format!(" {k}={v}"));
    }
    out.push_str(&format!(
        "\nValue: {} (threshold {}, peak {})\nStarted: {}\nAlert: {}",
        a.value, a.threshold, a.peak, a.started_at, a.id
    ));
    if !a.description.is_empty() {
        out.push_str(&format!("\n\n{}", a.description));
    }
    out
}

/// A work note or comment for a repeat or a resolve.
pub(super) fn note(kind: NotificationKind, a: &Alert) -> String {
    match kind {
        NotificationKind::Resolved => format!(
            "Resolved{}: {} (value {})",
            a.resolved_at
                .as_deref()
                .map(|at| format!(" at {at}"))
                .unwrap_or_default(),
            a.summary,
            a.value
        ),
        NotificationKind::Firing | NotificationKind::Repeat => format!(
            "Still firing: {} (value {}, peak {})",
            a.summary, a.value, a.peak
        ),
    }
}

#[cfg(test)]
mod tests {
    use cdot_crds::common::SecretRef;

    use super::*;
    use crate::notify::fixtures::{alert, notification};

    fn config(system: TicketSystem) -> TicketConfig {
        TicketConfig {
            system,
            url: "https://acme.service-now.com".into(),
            project: "Network Ops".into(),
            issue_type: None,
            credentials_secret_ref: SecretRef {
                name: "itsm".into(),
            },
            close_on_resolve: true,
        }
    }

    #[test]
    fn servicenow_bodies() {
        let a = alert(7, "web-01", "disk / at 93.5% on web-01");
        let n = notification(NotificationKind::Firing, vec![a.clone()]);
        let body = servicenow_create(&n, &a, &config(TicketSystem::ServiceNow));
        assert_eq!(body["short_description"], "disk / at 93.5% on web-01");
        assert_eq!(body["urgency"], "1");
        assert_eq!(body["impact"], "1");
        assert_eq!(body["assignment_group"], "Network Ops");
        assert_eq!(
            body["correlation_id"],
            "00000000-0000-0000-0000-000000000007"
        );
        assert_eq!(
            body["description"],
            "disk / at 93.5% on web-01\n\nDevice: web-01 (namespace acme, site london)\n\
             Rule: disk-full (severity Critical)\nMetric: disk mount=/\n\
             Value: 93.5 (threshold 90, peak 95)\nStarted: 2026-12-06T06:00:00Z\n\
             Alert: 00000000-0000-0000-0000-000000000007"
        );
        assert_eq!(
            servicenow_update(NotificationKind::Repeat, &a, false),
            json!({"work_notes": "Still firing: disk / at 93.5% on web-01 (value 93.5, peak 95)"})
        );
        assert_eq!(
            servicenow_update(NotificationKind::Resolved, &a, true),
            json!({
                "state": "6",
                "close_code": "Resolved by monitoring",
                "close_notes": "Resolved: disk / at 93.5% on web-01 (value 93.5)",
            })
        );
    }

    #[test]
    fn jira_bodies_and_transitions() {
        let a = alert(7, "web-01", "disk\nfull");
        let n = notification(NotificationKind::Firing, vec![a.clone()]);
        let mut c = config(TicketSystem::Jira);
        c.project = "OPS".into();
        let body = jira_create(&n, &a, &c);
        assert_eq!(body["fields"]["project"], json!({"key": "OPS"}));
        assert_eq!(body["fields"]["summary"], "disk full");
        assert_eq!(body["fields"]["issuetype"], json!({"name": "Incident"}));
        assert_eq!(body["fields"]["labels"], json!(["cdot-rmm"]));
        c.issue_type = Some("Bug".into());
        assert_eq!(
            jira_create(&n, &a, &c)["fields"]["issuetype"]["name"],
            "Bug"
        );

        let answer = json!({"transitions": [
            {"id": "11", "name": "In Progress"},
            {"id": "41", "name": "CLOSED"},
            {"id": "31", "name": "Resolved"},
        ]});
        assert_eq!(jira_closing_transition(&answer).as_deref(), Some("31"));
        assert_eq!(
            jira_closing_transition(&json!({"transitions": [{"id": 5, "name": "done"}]}))
                .as_deref(),
            Some("5")
        );
        assert_eq!(
            jira_closing_transition(&json!({"transitions": [{"id": "1", "name": "Reopen"}]})),
            None
        );
    }
}
