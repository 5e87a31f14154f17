//! Delivery of one alert notification to one NotificationChannel: a webhook (generic JSON
//! or Slack), email over SMTP, SMS through a provider's HTTP API, or tickets in ServiceNow
//! or Jira. The alerting engine owns the outbox, retries, rate limits and grouping; this
//! module makes one attempt and says whether another can help ([`DeliveryError`]).
//!
//! **Secrets stay out of errors.** Messages name the channel, the host, the HTTP status and
//! the start of the receiver's answer; a URL from `urlSecretRef`, header values, passwords
//! and tokens never appear, and a missing one is named by its Secret and key. Redirects are
//! not followed, so secret headers are only ever sent to the host configured.
//!
//! **Redelivery is recognisable.** Every HTTP request carries the notification's
//! `Idempotency-Key` (SMS and tickets: suffixed per number or alert), and an email's
//! `Message-ID` is derived from it.
mod email;
mod http;
mod sms;
mod ticket;
mod webhook;

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use cdot_crds::{
    common::SecretRef,
    notification_channel::{ChannelType, NotificationChannelSpec},
    wire::alert::{AlertNotification, NotificationKind},
};
use uuid::Uuid;

use crate::secrets::Secrets;

/// How a [`Notifier`] reaches receivers.
pub struct NotifierConfig {
    /// Extra CA certificates (PEM) trusted for receivers, besides the system roots.
    pub extra_roots_pem: Option<Vec<u8>>,
    /// `User-Agent` of every HTTP request.
    pub user_agent: String,
}

/// Why a [`Notifier`] could not be made.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("extra CA certificates are not valid PEM certificates: {0}")]
    ExtraRoots(String),
    #[error("could not build the HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
}

/// Sends notifications; cheap to clone (one shared HTTP client).
#[derive(Clone)]
pub struct Notifier {
    http: reqwest::Client,
    /// Kept as PEM: lettre builds its TLS settings per connection.
    extra_roots_pem: Option<Arc<Vec<u8>>>,
}

/// The channel to deliver to.
pub struct Target<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub spec: &'a NotificationChannelSpec,
}

impl Target<'_> {
    /// `namespace/name`, as errors name the channel.
    fn label(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// A successful delivery.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivered {
    /// Tickets opened now, by alert id (Ticket channels; empty otherwise).
    pub tickets: BTreeMap<Uuid, String>,
    /// What the receiver said, e.g. `HTTP 200`, `250 queued as X`, `INC0010001`.
    pub detail: String,
}

/// A failed delivery. Both variants carry the tickets opened before the failure (a Ticket
/// channel opens one per alert): store them, so that a redelivery does not open them again.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    /// Worth retrying later: connect and timeout errors, HTTP 408, 429 and 5xx, SMTP 4xx,
    /// and partial failures (some SMS numbers or tickets done, others not).
    #[error("{message}")]
    Retryable {
        message: String,
        /// What the receiver asked for (`Retry-After`), when it did.
        retry_after: Option<Duration>,
        tickets: BTreeMap<Uuid, String>,
    },
    /// Retrying cannot help: other HTTP 4xx, a missing Secret or key, a bad template or
    /// address, SMTP 5xx.
    #[error("{message}")]
    Permanent {
        message: String,
        tickets: BTreeMap<Uuid, String>,
    },
}

impl DeliveryError {
    pub(crate) fn retryable(message: impl Into<String>, retry_after: Option<Duration>) -> Self {
        Self::Retryable {
            message: message.into(),
            retry_after,
            tickets: BTreeMap::new(),
        }
    }

    pub(crate) fn permanent(message: impl Into<String>) -> Self {
        Self::Permanent {
            message: message.into(),
            tickets: BTreeMap::new(),
        }
    }

    /// Tickets opened before the failure.
    pub fn tickets(&self) -> &BTreeMap<Uuid, String> {
        match self {
            Self::Retryable { tickets, .. } | Self::Permanent { tickets, .. } => tickets,
        }
    }

    fn with_tickets(mut self, opened: BTreeMap<Uuid, String>) -> Self {
        match &mut self {
            Self::Retryable { tickets, .. } | Self::Permanent { tickets, .. } => *tickets = opened,
        }
        self
    }
}

/// Timeout of SMS and ticket requests (webhooks have their own `timeout`).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

impl Notifier {
    pub fn new(config: NotifierConfig) -> Result<Self, NotifyError> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .user_agent(config.user_agent)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(REQUEST_TIMEOUT)
            .timeout(REQUEST_TIMEOUT);
        if let Some(pem) = &config.extra_roots_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| NotifyError::ExtraRoots(e.to_string()))?;
            if certs.is_empty() {
                return Err(NotifyError::ExtraRoots("no certificate in the PEM".into()));
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
            // The same PEM must do for SMTP: refuse it now rather than at the first email.
            lettre::transport::smtp::client::Certificate::from_pem(pem)
                .map_err(|e| NotifyError::ExtraRoots(e.to_string()))?;
        }
        Ok(Self {
            http: builder.build().map_err(NotifyError::HttpClient)?,
            extra_roots_pem: config.extra_roots_pem.map(Arc::new),
        })
    }

    /// Delivers `notification` to one channel. `tickets`: ticket ids this channel already
    /// opened, by alert id (for repeat/resolved on Ticket channels, and so that a firing
    /// notification redelivered after a partial failure opens only the missing ones).
    pub async fn deliver(
        &self,
        target: &Target<'_>,
        secrets: &Secrets,
        notification: &AlertNotification,
        tickets: &BTreeMap<Uuid, String>,
    ) -> Result<Delivered, DeliveryError> {
        let spec = target.spec;
        let missing = || {
            DeliveryError::permanent(format!(
                "channel {} has type {:?} but no {} settings",
                target.label(),
                spec.type_,
                format!("{:?}", spec.type_).to_lowercase()
            ))
        };
        let plain = |detail: String| Delivered {
            tickets: BTreeMap::new(),
            detail,
        };
        match spec.type_ {
            ChannelType::Webhook => {
                let config = spec.webhook.as_ref().ok_or_else(missing)?;
                webhook::deliver(self, target, config, secrets, notification)
                    .await
                    .map(plain)
            }
            ChannelType::Email => {
                let config = spec.email.as_ref().ok_or_else(missing)?;
                email::deliver(self, target, config, secrets, notification)
                    .await
                    .map(plain)
            }
            ChannelType::Sms => {
                let config = spec.sms.as_ref().ok_or_else(missing)?;
                sms::deliver(self, target, config, secrets, notification)
                    .await
                    .map(plain)
            }
            ChannelType::Ticket => {
                let config = spec.ticket.as_ref().ok_or_else(missing)?;
                ticket::deliver(self, target, config, secrets, notification, tickets).await
            }
        }
    }
}

/// A Secret's keys, or a permanent error naming it.
fn secret(
    target: &Target<'_>,
    secrets: &Secrets,
    name: &str,
) -> Result<crate::secrets::SecretData, DeliveryError> {
    secrets.get(target.namespace, name).ok_or_else(|| {
        DeliveryError::permanent(format!(
            "channel {}: Secret {}/{name} does not exist",
            target.label(),
            target.namespace
        ))
    })
}

/// One key of a Secret as UTF-8 text, or a permanent error naming the Secret and key (never
/// the value).
fn secret_text(
    target: &Target<'_>,
    secrets: &Secrets,
    name: &str,
    key: &str,
) -> Result<String, DeliveryError> {
    let data = secret(target, secrets, name)?;
    key_text(target, name, &data, key)
}

fn key_text(
    target: &Target<'_>,
    name: &str,
    data: &crate::secrets::SecretData,
    key: &str,
) -> Result<String, DeliveryError> {
    let value = data.get(key).ok_or_else(|| {
        DeliveryError::permanent(format!(
            "channel {}: Secret {}/{name} has no key {key}",
            target.label(),
            target.namespace
        ))
    })?;
    String::from_utf8(value.clone()).map_err(|_| {
        DeliveryError::permanent(format!(
            "channel {}: key {key} of Secret {}/{name} is not UTF-8 text",
            target.label(),
            target.namespace
        ))
    })
}

/// Credentials of an HTTP API (SMS provider, ticket system).
#[derive(Clone)]
enum ApiAuth {
    Basic { username: String, password: String },
    Bearer(String),
}

impl ApiAuth {
    /// `token` when the Secret has it, else `username` and `password`.
    fn from_secret(
        target: &Target<'_>,
        secrets: &Secrets,
        secret_ref: &SecretRef,
    ) -> Result<Self, DeliveryError> {
        let name = &secret_ref.name;
        let data = secret(target, secrets, name)?;
        if data.contains_key("token") {
            return Ok(Self::Bearer(key_text(target, name, &data, "token")?));
        }
        if !data.contains_key("username") {
            return Err(DeliveryError::permanent(format!(
                "channel {}: Secret {}/{name} has neither key token nor keys username and password",
                target.label(),
                target.namespace
            )));
        }
        Ok(Self::Basic {
            username: key_text(target, name, &data, "username")?,
            password: key_text(target, name, &data, "password")?,
        })
    }

    fn apply(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match self {
            Self::Basic { username, password } => request.basic_auth(username, Some(password)),
            Self::Bearer(token) => request.bearer_auth(token),
        }
    }
}

/// Upper-case word for people: `FIRING`, `STILL FIRING`, `RESOLVED`.
fn kind_word(kind: NotificationKind) -> &'static str {
    match kind {
        NotificationKind::Firing => "FIRING",
        NotificationKind::Repeat => "STILL FIRING",
        NotificationKind::Resolved => "RESOLVED",
    }
}

/// At most `max` characters of `s`, with `…` when cut.
fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
pub(crate) mod fixtures {
    use std::collections::BTreeMap;

    use cdot_crds::{
        alert_rule::Severity,
        wire::alert::{
            Alert, AlertNotification, AlertState, NOTIFICATION_VERSION, NotificationKind,
        },
    };
    use uuid::Uuid;

    pub fn alert(n: u128, device: &str, summary: &str) -> Alert {
        Alert {
            id: Uuid::from_u128(n),
            namespace: "acme".into(),
            rule: "disk-full".into(),
            device: device.into(),
            site: Some("london".into()),
            metric: "disk".into(),
            series: BTreeMap::from([("mount".into(), "/".into())]),
            labels: BTreeMap::from([("team".into(), "ops".into())]),
            severity: Severity::Critical,
            state: AlertState::Firing,
            value: 93.5,
            peak: 95.0,
            threshold: 90.0,
            summary: summary.into(),
            description: String::new(),
            started_at: "2026-12-06T06:00:00Z".into(),
            fired_at: Some("2026-12-06T06:05:00Z".into()),
            resolved_at: None,
            acknowledged: None,
            suppressed: None,
            tickets: BTreeMap::new(),
        }
    }

    pub fn notification(kind: NotificationKind, alerts: Vec<Alert>) -> AlertNotification {
        AlertNotification {
            version: NOTIFICATION_VERSION.into(),
            idempotency_key: "n-0001".into(),
            kind,
            namespace: "acme".into(),
            channel: "ops".into(),
            rule: "disk-full".into(),
            severity: Severity::Critical,
            group: BTreeMap::new(),
            title: alerts
                .first()
                .map(|a| a.summary.clone())
                .unwrap_or_default(),
            alerts,
            created_at: "2026-12-06T06:05:01Z".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_counts_characters_and_marks_the_cut() {
        assert_eq!(cut("héllo", 5), "héllo");
        assert_eq!(cut("héllo wörld", 5), "héll…");
    }
}
