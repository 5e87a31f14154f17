//! SMS through a Twilio-shaped provider API: one form-encoded POST (`To`, `From`, `Body`)
//! per number. A notification is delivered when every number got it; a redelivery sends to
//! all numbers again, and the per-number `Idempotency-Key` (`KEY:NUMBER`) lets the provider
//! drop the ones it already sent.
use std::time::Duration;

use cdot_crds::{
    notification_channel::SmsConfig,
    wire::alert::{AlertNotification, IDEMPOTENCY_HEADER},
};

use super::{ApiAuth, DeliveryError, Notifier, Target, cut, http, webhook::idempotency_value};
use crate::secrets::Secrets;

/// Two concatenated SMS segments.
const MAX_BODY_CHARS: usize = 320;

pub(super) async fn deliver(
    notifier: &Notifier,
    target: &Target<'_>,
    config: &SmsConfig,
    secrets: &Secrets,
    notification: &AlertNotification,
) -> Result<String, DeliveryError> {
    let label = target.label();
    let auth = ApiAuth::from_secret(target, secrets, &config.credentials_secret_ref)?;
    let url = reqwest::Url::parse(&config.provider_url).map_err(|e| {
        DeliveryError::permanent(format!(
            "channel {label}: spec.sms.providerUrl is not a URL: {e}"
        ))
    })?;
    let body = cut(&notification.title, MAX_BODY_CHARS);
    let what = format!("channel {label}: POST to {}", http::host(&url));

    let mut failed: Vec<(String, DeliveryError)> = Vec::new();
    let mut statuses = Vec::new();
    for number in &config.to {
        let mut form = vec![("To", number.as_str())];
        if let Some(from) = &config.from {
            form.push(("From", from));
        }
        form.push(("Body", &body));
        let key = idempotency_value(
            &label,
            &format!("{}:{number}", notification.idempotency_key),
        )?;
        let request = auth.apply(
            notifier
                .http
                .post(url.clone())
                .header(IDEMPOTENCY_HEADER, key)
                .form(&form),
        );
        match http::send(&format!("{what} for {number}"), request).await {
            Ok(answer) => statuses.push(answer.status.as_u16()),
            Err(e) => failed.push((number.clone(), e)),
        }
    }
    if failed.is_empty() {
        return Ok(format!(
            "HTTP {} for {} number{}",
            statuses
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            statuses.len(),
            if statuses.len() == 1 { "" } else { "s" }
        ));
    }
    let all_permanent = failed
        .iter()
        .all(|(_, e)| matches!(e, DeliveryError::Permanent { .. }));
    let retry_after: Option<Duration> = failed
        .iter()
        .filter_map(|(_, e)| match e {
            DeliveryError::Retryable { retry_after, .. } => *retry_after,
            DeliveryError::Permanent { .. } => None,
        })
        .max();
    let message = format!(
        "channel {label}: SMS to {} of {} numbers failed ({}): {}",
        failed.len(),
        config.to.len(),
        failed
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        failed
            .iter()
            .map(|(_, e)| e.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    );
    // Nothing went out and nothing will: a retry cannot help. Otherwise some numbers are
    // missing the message and a redelivery can bring it.
    if all_permanent && statuses.is_empty() {
        Err(DeliveryError::permanent(message))
    } else {
        Err(DeliveryError::retryable(message, retry_after))
    }
}
