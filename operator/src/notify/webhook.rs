//! Webhooks: the versioned [`AlertNotification`] document as JSON (`Generic`), or a Slack
//! incoming-webhook message (`Slack`, also Mattermost and Rocket.Chat).
use cdot_crds::{
    alert_rule::Severity,
    common::parse_duration,
    notification_channel::{WebhookConfig, WebhookFormat},
    wire::alert::{AlertNotification, IDEMPOTENCY_HEADER, NotificationKind},
};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue};
use serde_json::json;

use super::{DeliveryError, Notifier, Target, http, kind_word, secret_text};
use crate::secrets::Secrets;

/// A Slack message lists this many alerts, then says how many more there are.
const SLACK_MAX_ALERTS: usize = 10;

pub(super) async fn deliver(
    notifier: &Notifier,
    target: &Target<'_>,
    config: &WebhookConfig,
    secrets: &Secrets,
    notification: &AlertNotification,
) -> Result<String, DeliveryError> {
    let label = target.label();
    let timeout = parse_duration(&config.timeout).map_err(|e| {
        DeliveryError::permanent(format!("channel {label}: spec.webhook.timeout: {e}"))
    })?;
    let url = match (&config.url, &config.url_secret_ref) {
        (Some(url), _) => reqwest::Url::parse(url).map_err(|e| {
            DeliveryError::permanent(format!(
                "channel {label}: spec.webhook.url is not a URL: {e}"
            ))
        })?,
        (None, Some(r)) => {
            let text = secret_text(target, secrets, &r.name, &r.key)?;
            // The parse error could quote the URL: name where it came from instead.
            reqwest::Url::parse(text.trim()).map_err(|_| {
                DeliveryError::permanent(format!(
                    "channel {label}: key {} of Secret {}/{} is not a URL",
                    r.key, target.namespace, r.name
                ))
            })?
        }
        (None, None) => {
            return Err(DeliveryError::permanent(format!(
                "channel {label} has neither spec.webhook.url nor spec.webhook.urlSecretRef"
            )));
        }
    };
    if !matches!(url.scheme(), "http" | "https") {
        return Err(DeliveryError::permanent(format!(
            "channel {label}: the webhook URL must be http:// or https://, not {}://",
            url.scheme()
        )));
    }

    let mut headers = HeaderMap::new();
    for (name, value) in &config.headers {
        let name = header_name(&label, name)?;
        let value = HeaderValue::from_str(value).map_err(|_| {
            DeliveryError::permanent(format!(
                "channel {label}: spec.webhook.headers.{name} is not a valid header value"
            ))
        })?;
        headers.insert(name, value);
    }
    for (name, r) in &config.header_secret_refs {
        let name = header_name(&label, name)?;
        let text = secret_text(target, secrets, &r.name, &r.key)?;
        let mut value = HeaderValue::from_str(text.trim()).map_err(|_| {
            DeliveryError::permanent(format!(
                "channel {label}: key {} of Secret {}/{} is not a valid value for header {name}",
                r.key, target.namespace, r.name
            ))
        })?;
        value.set_sensitive(true);
        headers.insert(name, value);
    }
    // Set last: the manifest's headers cannot replace them.
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(
        IDEMPOTENCY_HEADER,
        idempotency_value(&label, &notification.idempotency_key)?,
    );

    let body = match config.format {
        WebhookFormat::Generic => serde_json::to_vec(notification),
        WebhookFormat::Slack => serde_json::to_vec(&slack_message(notification, &label)),
    }
    .map_err(|e| DeliveryError::permanent(format!("channel {label}: cannot encode JSON: {e}")))?;

    let what = format!("channel {label}: POST to {}", http::host(&url));
    let answer = http::send(
        &what,
        notifier
            .http
            .post(url)
            .headers(headers)
            .timeout(timeout)
            .body(body),
    )
    .await?;
    Ok(format!("HTTP {}", answer.status.as_u16()))
}

fn header_name(label: &str, name: &str) -> Result<HeaderName, DeliveryError> {
    HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
        DeliveryError::permanent(format!(
            "channel {label}: {name:?} is not a valid header name"
        ))
    })
}

pub(super) fn idempotency_value(label: &str, key: &str) -> Result<HeaderValue, DeliveryError> {
    HeaderValue::from_str(key).map_err(|_| {
        DeliveryError::permanent(format!(
            "channel {label}: the idempotency key {key:?} is not a valid header value"
        ))
    })
}

/// The message a Slack incoming webhook takes: a bold line with the title, and an
/// attachment coloured by severity (green once resolved) listing the alerts.
pub(super) fn slack_message(n: &AlertNotification, channel: &str) -> serde_json::Value {
    let color = match (n.kind, n.severity) {
        (NotificationKind::Resolved, _) => "#2eb886",
        (_, Severity::Critical) => "#d00000",
        (_, Severity::Warning) => "#daa038",
        (_, Severity::Info) => "#439fe0",
    };
    let mut lines: Vec<String> = n
        .alerts
        .iter()
        .take(SLACK_MAX_ALERTS)
        .map(|a| {
            format!(
                "• *{}*: {}",
                slack_escape(&a.device),
                slack_escape(&a.summary)
            )
        })
        .collect();
    if n.alerts.len() > SLACK_MAX_ALERTS {
        lines.push(format!("and {} more", n.alerts.len() - SLACK_MAX_ALERTS));
    }
    let kind = kind_word(n.kind);
    json!({
        "text": format!("*[{kind}] {}*", slack_escape(&n.title)),
        "attachments": [{
            "fallback": format!("[{kind}] {}", n.title),
            "color": color,
            "text": lines.join("\n"),
            "fields": [
                {"title": "Severity", "value": format!("{:?}", n.severity), "short": true},
                {"title": "Rule", "value": slack_escape(&n.rule), "short": true},
            ],
            "footer": format!("cdot-rmm · {channel}"),
            "mrkdwn_in": ["text"],
        }],
    })
}

/// Slack's three control characters in message text.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::fixtures::{alert, notification};

    #[test]
    fn slack_message_lists_alerts_and_colours_by_severity() {
        let n = notification(
            NotificationKind::Firing,
            vec![
                alert(1, "web-01", "disk / at 93.5% on web-01"),
                alert(2, "db-<1>", "a & b"),
            ],
        );
        let m = slack_message(&n, "acme/ops");
        assert_eq!(
            m,
            json!({
                "text": "*[FIRING] disk / at 93.5% on web-01*",
                "attachments": [{
                    "fallback": "[FIRING] disk / at 93.5% on web-01",
                    "color": "#d00000",
                    "text": "• *web-01*: disk / at 93.5% on web-01\n• *db-&lt;1&gt;*: a &amp; b",
                    "fields": [
                        {"title": "Severity", "value": "Critical", "short": true},
                        {"title": "Rule", "value": "disk-full", "short": true},
                    ],
                    "footer": "cdot-rmm · acme/ops",
                    "mrkdwn_in": ["text"],
                }],
            })
        );
    }

    #[test]
    fn slack_message_caps_the_list_and_turns_green_when_resolved() {
        let alerts = (0..13)
            .map(|i| alert(i, &format!("dev-{i}"), "full"))
            .collect();
        let m = slack_message(
            &notification(NotificationKind::Resolved, alerts),
            "acme/ops",
        );
        let text = m["attachments"][0]["text"].as_str().expect("text");
        assert_eq!(text.lines().count(), 11, "{text}");
        assert!(text.ends_with("\nand 3 more"), "{text}");
        assert_eq!(m["attachments"][0]["color"], "#2eb886");
        assert_eq!(m["text"], "*[RESOLVED] full*");
    }
}
