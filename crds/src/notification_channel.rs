//! `NotificationChannel` (`nc`): where alerts and workflow notifications are delivered.

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::alert_rule::Severity;
use crate::{
    common::{
        Condition, DURATION_PATTERN, SecretKeyRef, SecretRef, check_duration_into, check_host,
        check_unique,
    },
    excerpt::excerpt,
    validation::{Errors, FieldError, Validate},
};

/// CEL: exactly the sub-configuration that matches `type` is set.
pub const TYPE_MATCHES_CONFIG_RULE: &str = "(self.type == 'Webhook') == has(self.webhook) && \
(self.type == 'Email') == has(self.email) && (self.type == 'Sms') == has(self.sms) && \
(self.type == 'Ticket') == has(self.ticket)";

/// Desired state of a notification channel.
#[derive(CustomResource, KubeSchema, Clone, Debug, Serialize, Deserialize, PartialEq)]
#[kube(
    group = "rmm.cdot.io",
    version = "v1alpha1",
    kind = "NotificationChannel",
    namespaced,
    status = "NotificationChannelStatus",
    shortname = "nc",
    category = "rmm",
    doc = "A destination for alert and workflow notifications: webhook, email, SMS or ticket system.",
    printcolumn(name = "Type", type_ = "string", json_path = ".spec.type"),
    printcolumn(name = "Delivered", type_ = "integer", json_path = ".status.delivered"),
    printcolumn(name = "Failed", type_ = "integer", json_path = ".status.failed"),
    printcolumn(
        name = "Last Delivery",
        type_ = "date",
        json_path = ".status.lastDelivery"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new(TYPE_MATCHES_CONFIG_RULE).message("set exactly the one of webhook, email, sms, ticket that matches type"))]
pub struct NotificationChannelSpec {
    /// Channel type; exactly the matching sub-object (`webhook`, `email`, `sms`, `ticket`) must be set.
    #[serde(rename = "type")]
    pub type_: ChannelType,
    /// Webhook settings (`type: Webhook`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookConfig>,
    /// Email settings (`type: Email`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailConfig>,
    /// SMS settings (`type: Sms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sms: Option<SmsConfig>,
    /// Ticket system settings (`type: Ticket`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<TicketConfig>,
    /// Also notify when an alert resolves.
    #[serde(default = "default_true")]
    pub send_resolved: bool,
    /// Only deliver alerts of at least this severity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<Severity>,
    /// Delivery rate limit; excess notifications are batched into a digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
}

fn default_true() -> bool {
    true
}
fn default_timeout() -> String {
    "10s".into()
}
fn default_smtp_port() -> u16 {
    587
}

/// Channel type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ChannelType {
    /// HTTP POST of JSON (generic or Slack-compatible).
    Webhook,
    /// Email over SMTP.
    Email,
    /// SMS through an HTTP provider API.
    Sms,
    /// Ticket in an ITSM system (ServiceNow, Jira).
    Ticket,
}

/// Payload format of a webhook.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum WebhookFormat {
    /// cdot-rmm's JSON alert document.
    #[default]
    Generic,
    /// Slack-compatible incoming-webhook message (also Mattermost, Rocket.Chat).
    Slack,
}

/// Webhook settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("has(self.url) != has(self.urlSecretRef)").message("set exactly one of url and urlSecretRef"))]
pub struct WebhookConfig {
    /// Target URL (https recommended). Use `urlSecretRef` instead when the URL embeds a token (Slack).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^https?://"))]
    pub url: Option<String>,
    /// Secret key holding the URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_secret_ref: Option<SecretKeyRef>,
    /// Payload format.
    #[serde(default)]
    pub format: WebhookFormat,
    /// Extra HTTP headers (no secrets here; use `headerSecretRefs`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Extra HTTP headers whose values come from Secrets (e.g. `Authorization`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub header_secret_refs: BTreeMap<String, SecretKeyRef>,
    /// Request timeout.
    #[serde(default = "default_timeout")]
    #[schemars(regex(pattern = DURATION_PATTERN))]
    pub timeout: String,
}

/// TLS mode of an SMTP connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (port 587).
    #[default]
    StartTls,
    /// Implicit TLS (port 465).
    Tls,
    /// No TLS (only for a relay on a trusted network).
    None,
}

/// SMTP server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SmtpServer {
    /// Host name or address.
    #[schemars(length(min = 1, max = 253))]
    pub host: String,
    /// TCP port.
    #[serde(default = "default_smtp_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    /// TLS mode.
    #[serde(default)]
    pub tls: SmtpTls,
}

/// Email settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EmailConfig {
    /// SMTP server.
    pub smtp: SmtpServer,
    /// Sender address.
    #[schemars(length(min = 3, max = 254))]
    pub from: String,
    /// Recipient addresses.
    #[schemars(length(min = 1, max = 50), inner(length(min = 3, max = 254)))]
    pub to: Vec<String>,
    /// Secret with keys `username` and `password` for SMTP authentication; omit for an open relay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretRef>,
    /// Subject template (minijinja): the AlertRule summary's variables (of the first alert)
    /// and `title`, `kind`, `count`, `channel`. Default: the notification's title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 256))]
    pub subject: Option<String>,
}

/// SMS settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SmsConfig {
    /// Provider API URL that accepts a POST per message (Twilio-, Vonage- or MessageBird-shaped).
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^https://"))]
    pub provider_url: String,
    /// Recipient numbers in E.164 form, e.g. `+447700900123`.
    #[schemars(
        length(min = 1, max = 20),
        inner(regex(pattern = r"^\+[1-9][0-9]{6,14}$"))
    )]
    pub to: Vec<String>,
    /// Sender number or alphanumeric sender id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 16))]
    pub from: Option<String>,
    /// Secret with keys `username` and `password` (or `token`) for the provider API.
    pub credentials_secret_ref: SecretRef,
}

/// Ticket system.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum TicketSystem {
    /// ServiceNow Table API (incident).
    ServiceNow,
    /// Jira REST API (issue).
    Jira,
}

/// Ticket system settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TicketConfig {
    /// Ticket system.
    pub system: TicketSystem,
    /// Base URL of the instance, e.g. `https://acme.service-now.com`.
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^https://"))]
    pub url: String,
    /// Jira project key, or ServiceNow assignment group (queue).
    #[schemars(length(min = 1, max = 128))]
    pub project: String,
    /// Jira issue type or ServiceNow table; defaults to `Incident` / `incident`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub issue_type: Option<String>,
    /// Secret with keys `username` and `password` (or `token`).
    pub credentials_secret_ref: SecretRef,
    /// Close (resolve) the ticket when the alert resolves.
    #[serde(default = "default_true")]
    pub close_on_resolve: bool,
}

/// Delivery rate limit.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("has(self.maxPerMinute) || has(self.maxPerHour)").message("set maxPerMinute, maxPerHour or both"))]
pub struct RateLimit {
    /// At most this many notifications per minute.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_per_minute: Option<u32>,
    /// At most this many notifications per hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100000))]
    pub max_per_hour: Option<u32>,
}

/// Observed state of a notification channel.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotificationChannelStatus {
    /// The `metadata.generation` last reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Conditions: `Ready` (see below), `Reconciling` (`False` with reason `Reconciled` once
    /// `observedGeneration` is reconciled), `Degraded` (`True` with reason `ValidationFailed`
    /// when the spec is invalid, the message naming each field; `False` otherwise).
    /// `Ready` is `True` once the spec is valid; the Secrets it names are read at delivery,
    /// so a missing one shows in `lastError`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Last successful delivery (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_delivery: Option<String>,
    /// Error of the most recent failed attempt (kept after later successes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Notifications delivered (within the alert retention).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered: Option<u64>,
    /// Notifications given up (a permanent error, or retried past `--notify-give-up-after`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<u64>,
}

impl NotificationChannelSpec {
    /// Every Secret the channel reads: (field path, Secret name, key when one is named).
    pub fn secret_refs(&self) -> Vec<(String, &str, Option<&str>)> {
        let mut refs = Vec::new();
        if let Some(w) = &self.webhook {
            if let Some(r) = &w.url_secret_ref {
                refs.push((
                    "spec.webhook.urlSecretRef".into(),
                    r.name.as_str(),
                    Some(r.key.as_str()),
                ));
            }
            for (header, r) in &w.header_secret_refs {
                refs.push((
                    format!("spec.webhook.headerSecretRefs.{header}"),
                    r.name.as_str(),
                    Some(r.key.as_str()),
                ));
            }
        }
        if let Some(r) = self
            .email
            .as_ref()
            .and_then(|e| e.credentials_secret_ref.as_ref())
        {
            refs.push((
                "spec.email.credentialsSecretRef".into(),
                r.name.as_str(),
                None,
            ));
        }
        if let Some(s) = &self.sms {
            refs.push((
                "spec.sms.credentialsSecretRef".into(),
                s.credentials_secret_ref.name.as_str(),
                None,
            ));
        }
        if let Some(t) = &self.ticket {
            refs.push((
                "spec.ticket.credentialsSecretRef".into(),
                t.credentials_secret_ref.name.as_str(),
                None,
            ));
        }
        refs
    }
}

fn check_email(s: &str) -> Result<(), String> {
    match s.rsplit_once('@') {
        Some((local, domain))
            if !local.is_empty()
                && !local.contains(char::is_whitespace)
                && check_host(domain).is_ok()
                && domain.contains('.') =>
        {
            Ok(())
        }
        _ => Err(format!("{} is not an email address", excerpt(s))),
    }
}

fn check_header_name(s: &str) -> Result<(), String> {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    {
        Ok(())
    } else {
        Err(format!("{} is not a valid HTTP header name", excerpt(s)))
    }
}

impl Validate for NotificationChannelSpec {
    fn validate(&self) -> Vec<FieldError> {
        let mut errs = Errors::default();
        let set = [
            (ChannelType::Webhook, "webhook", self.webhook.is_some()),
            (ChannelType::Email, "email", self.email.is_some()),
            (ChannelType::Sms, "sms", self.sms.is_some()),
            (ChannelType::Ticket, "ticket", self.ticket.is_some()),
        ];
        for (t, field, present) in set {
            if t == self.type_ && !present {
                errs.push(
                    format!("spec.{field}"),
                    format!("type {t:?} needs spec.{field}"),
                );
            } else if t != self.type_ && present {
                errs.push(
                    format!("spec.{field}"),
                    format!("not allowed with type {:?}", self.type_),
                );
            }
        }
        if let Some(w) = &self.webhook {
            match (&w.url, &w.url_secret_ref) {
                (Some(_), Some(_)) => errs.push(
                    "spec.webhook",
                    "set exactly one of url and urlSecretRef, not both",
                ),
                (None, None) => errs.push("spec.webhook.url", "set url or urlSecretRef"),
                (Some(u), None) => {
                    if !(u.starts_with("https://") || u.starts_with("http://")) {
                        errs.push("spec.webhook.url", "must be an http:// or https:// URL");
                    }
                }
                (None, Some(r)) => r.validate_into("spec.webhook.urlSecretRef", &mut errs),
            }
            for k in w.headers.keys() {
                errs.check(format!("spec.webhook.headers.{k}"), check_header_name(k));
                if k.eq_ignore_ascii_case("authorization") {
                    errs.push(
                        format!("spec.webhook.headers.{k}"),
                        "credentials belong in headerSecretRefs, not in the manifest",
                    );
                }
            }
            for (k, r) in &w.header_secret_refs {
                errs.check(
                    format!("spec.webhook.headerSecretRefs.{k}"),
                    check_header_name(k),
                );
                r.validate_into(&format!("spec.webhook.headerSecretRefs.{k}"), &mut errs);
                if w.headers.keys().any(|h| h.eq_ignore_ascii_case(k)) {
                    errs.push(
                        format!("spec.webhook.headerSecretRefs.{k}"),
                        "header also set in headers",
                    );
                }
            }
            check_duration_into(&mut errs, "spec.webhook.timeout", &w.timeout, true);
        }
        if let Some(e) = &self.email {
            errs.check("spec.email.smtp.host", check_host(&e.smtp.host));
            errs.check("spec.email.from", check_email(&e.from));
            for (i, to) in e.to.iter().enumerate() {
                errs.check(format!("spec.email.to[{i}]"), check_email(to));
            }
            check_unique(
                &mut errs,
                "spec.email.to",
                "recipient",
                e.to.iter().map(String::as_str),
            );
            if let Some(subject) = &e.subject {
                errs.check(
                    "spec.email.subject",
                    crate::template::check(subject, crate::template::NOTIFICATION_VARIABLES),
                );
            }
            if let Some(r) = &e.credentials_secret_ref {
                r.validate_into("spec.email.credentialsSecretRef", &mut errs);
                if e.smtp.tls == SmtpTls::None {
                    errs.push(
                        "spec.email.smtp.tls",
                        "credentials are never sent without TLS: use StartTls or Tls",
                    );
                }
            }
        }
        if let Some(s) = &self.sms {
            if !s.provider_url.starts_with("https://") {
                errs.push("spec.sms.providerUrl", "must be an https:// URL");
            }
            check_unique(
                &mut errs,
                "spec.sms.to",
                "recipient",
                s.to.iter().map(String::as_str),
            );
            s.credentials_secret_ref
                .validate_into("spec.sms.credentialsSecretRef", &mut errs);
        }
        if let Some(t) = &self.ticket {
            if !t.url.starts_with("https://") {
                errs.push("spec.ticket.url", "must be an https:// URL");
            }
            t.credentials_secret_ref
                .validate_into("spec.ticket.credentialsSecretRef", &mut errs);
        }
        if let Some(r) = &self.rate_limit {
            if r.max_per_minute.is_none() && r.max_per_hour.is_none() {
                errs.push("spec.rateLimit", "set maxPerMinute, maxPerHour or both");
            }
            if let (Some(m), Some(h)) = (r.max_per_minute, r.max_per_hour)
                && m > h
            {
                errs.push(
                    "spec.rateLimit.maxPerMinute",
                    format!("{m} per minute exceeds maxPerHour {h}"),
                );
            }
        }
        errs.into_vec()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use crate::test_support::{doc, err_at, ok};

    fn webhook() -> Value {
        doc(
            "NotificationChannel",
            json!({"type": "Webhook", "webhook": {"urlSecretRef": {"name": "slack", "key": "url"}, "format": "Slack"}}),
        )
    }
    fn email() -> Value {
        doc(
            "NotificationChannel",
            json!({"type": "Email", "email": {"smtp": {"host": "smtp.example.com"}, "from": "a@example.com", "to": ["b@example.com"], "credentialsSecretRef": {"name": "smtp"}}}),
        )
    }
    fn sms() -> Value {
        doc(
            "NotificationChannel",
            json!({"type": "Sms", "sms": {"providerUrl": "https://api.sms.example/send", "to": ["+447700900123"], "credentialsSecretRef": {"name": "sms"}}}),
        )
    }
    fn ticket() -> Value {
        doc(
            "NotificationChannel",
            json!({"type": "Ticket", "ticket": {"system": "Jira", "url": "https://x.atlassian.net", "project": "OPS", "credentialsSecretRef": {"name": "jira"}}}),
        )
    }

    #[test]
    fn all_types_valid_with_defaults() {
        for b in [webhook(), email(), sms(), ticket()] {
            ok(&b, json!({}));
        }
        let crate::manifest::Document::Resource(o) =
            crate::manifest::validate_document(&email()).expect("valid")
        else {
            panic!("not a resource")
        };
        assert_eq!(o.spec["sendResolved"], true);
        assert_eq!(
            o.spec["email"]["smtp"],
            json!({"host": "smtp.example.com", "port": 587, "tls": "StartTls"})
        );
    }

    #[test]
    fn sub_config_matches_type() {
        err_at(&webhook(), json!({"spec": {"type": "Email"}}), "spec.email");
        err_at(
            &webhook(),
            json!({"spec": {"type": "Email"}}),
            "spec.webhook",
        );
        err_at(
            &webhook(),
            json!({"spec": {"ticket": {"system": "Jira", "url": "https://x", "project": "P", "credentialsSecretRef": {"name": "j"}}}}),
            "spec.ticket",
        );
        err_at(&webhook(), json!({"spec": {"type": "Pager"}}), "spec.type");
    }

    #[test]
    fn webhook_url_exactly_once() {
        err_at(
            &webhook(),
            json!({"spec": {"webhook": {"url": "https://hooks.example/x"}}}),
            "spec.webhook",
        );
        err_at(
            &webhook(),
            json!({"spec": {"webhook": {"urlSecretRef": null}}}),
            "spec.webhook.url",
        );
        ok(
            &webhook(),
            json!({"spec": {"webhook": {"urlSecretRef": null, "url": "https://hooks.example/x"}}}),
        );
        err_at(
            &webhook(),
            json!({"spec": {"webhook": {"urlSecretRef": null, "url": "ftp://x"}}}),
            "spec.webhook.url",
        );
        err_at(
            &webhook(),
            json!({"spec": {"webhook": {"format": "Teams"}}}),
            "spec.webhook.format",
        );
        err_at(
            &webhook(),
            json!({"spec": {"webhook": {"urlSecretRef": {"key": "bad key!"}}}}),
            "spec.webhook.urlSecretRef.key",
        );
    }

    #[test]
    fn webhook_headers() {
        err_at(
            &webhook(),
            json!({"spec": {"webhook": {"headers": {"Authorization": "Bearer x"}}}}),
            "spec.webhook.headers.Authorization",
        );
        err_at(
            &webhook(),
            json!({"spec": {"webhook": {"headers": {"bad header": "x"}}}}),
            "spec.webhook.headers.bad header",
        );
        ok(
            &webhook(),
            json!({"spec": {"webhook": {"headers": {"X-Source": "cdot"}, "headerSecretRefs": {"Authorization": {"name": "hook", "key": "auth"}}}}}),
        );
        err_at(
            &webhook(),
            json!({"spec": {"webhook": {"headers": {"X-A": "1"}, "headerSecretRefs": {"x-a": {"name": "h", "key": "k"}}}}}),
            "spec.webhook.headerSecretRefs.x-a",
        );
        err_at(
            &webhook(),
            json!({"spec": {"webhook": {"timeout": "0s"}}}),
            "spec.webhook.timeout",
        );
    }

    #[test]
    fn email_rules() {
        err_at(
            &email(),
            json!({"spec": {"email": {"to": ["not-an-address"]}}}),
            "spec.email.to[0]",
        );
        err_at(
            &email(),
            json!({"spec": {"email": {"to": []}}}),
            "spec.email.to",
        );
        err_at(
            &email(),
            json!({"spec": {"email": {"to": ["b@example.com", "b@example.com"]}}}),
            "spec.email.to[1]",
        );
        err_at(
            &email(),
            json!({"spec": {"email": {"from": "nobody"}}}),
            "spec.email.from",
        );
        err_at(
            &email(),
            json!({"spec": {"email": {"smtp": {"tls": "None"}}}}),
            "spec.email.smtp.tls",
        );
        ok(
            &email(),
            json!({"spec": {"email": {"smtp": {"tls": "None"}, "credentialsSecretRef": null}}}),
        );
        err_at(
            &email(),
            json!({"spec": {"email": {"smtp": {"port": 0}}}}),
            "spec.email.smtp.port",
        );
        err_at(
            &email(),
            json!({"spec": {"email": {"smtp": {"tls": "SSL"}}}}),
            "spec.email.smtp.tls",
        );
    }

    #[test]
    fn sms_and_ticket_rules() {
        err_at(
            &sms(),
            json!({"spec": {"sms": {"to": ["07700900123"]}}}),
            "spec.sms.to[0]",
        );
        err_at(
            &sms(),
            json!({"spec": {"sms": {"providerUrl": "http://api.sms.example"}}}),
            "spec.sms.providerUrl",
        );
        err_at(
            &sms(),
            json!({"spec": {"sms": {"credentialsSecretRef": null}}}),
            "spec.sms.credentialsSecretRef",
        );
        err_at(
            &ticket(),
            json!({"spec": {"ticket": {"system": "Zendesk"}}}),
            "spec.ticket.system",
        );
        err_at(
            &ticket(),
            json!({"spec": {"ticket": {"url": "http://x"}}}),
            "spec.ticket.url",
        );
        ok(
            &ticket(),
            json!({"spec": {"ticket": {"system": "ServiceNow", "project": "Service Desk"}}}),
        );
    }

    #[test]
    fn rate_limit() {
        err_at(
            &webhook(),
            json!({"spec": {"rateLimit": {}}}),
            "spec.rateLimit",
        );
        err_at(
            &webhook(),
            json!({"spec": {"rateLimit": {"maxPerMinute": 0}}}),
            "spec.rateLimit.maxPerMinute",
        );
        err_at(
            &webhook(),
            json!({"spec": {"rateLimit": {"maxPerMinute": 100, "maxPerHour": 50}}}),
            "spec.rateLimit.maxPerMinute",
        );
        ok(
            &webhook(),
            json!({"spec": {"rateLimit": {"maxPerMinute": 10, "maxPerHour": 100}, "minSeverity": "Critical"}}),
        );
        err_at(
            &webhook(),
            json!({"spec": {"minSeverity": "Meh"}}),
            "spec.minSeverity",
        );
    }
}
