//! Email over SMTP (lettre): a plain-text and an HTML part, the subject rendered from the
//! channel's template, and a `Message-ID` derived from the idempotency key so that a
//! redelivered mail is recognisable as the same one.
use std::{collections::BTreeMap, time::Duration};

use cdot_crds::{
    metrics_catalog::CATALOG,
    notification_channel::{EmailConfig, SmtpTls},
    template,
    wire::alert::AlertNotification,
};
use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, MultiPart},
    transport::smtp::{
        authentication::Credentials,
        client::{Certificate, Tls, TlsParameters},
    },
};
use serde_json::{Value, json};

use super::{DeliveryError, Notifier, Target, kind_word, secret_text};
use crate::secrets::Secrets;

/// Whole SMTP conversation of one message.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);
/// The body lists this many alerts, then says how many more there are.
const MAX_LISTED: usize = 100;

pub(super) async fn deliver(
    notifier: &Notifier,
    target: &Target<'_>,
    config: &EmailConfig,
    secrets: &Secrets,
    notification: &AlertNotification,
) -> Result<String, DeliveryError> {
    let label = target.label();
    let message = build_message(&label, config, notification)?;

    let host = &config.smtp.host;
    let tls = match config.smtp.tls {
        SmtpTls::StartTls => Tls::Required(tls_parameters(notifier, &label, host)?),
        SmtpTls::Tls => Tls::Wrapper(tls_parameters(notifier, &label, host)?),
        SmtpTls::None => Tls::None,
    };
    let mut transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        .port(config.smtp.port)
        .tls(tls)
        .timeout(Some(SMTP_TIMEOUT));
    if let Some(r) = &config.credentials_secret_ref {
        transport = transport.credentials(Credentials::new(
            secret_text(target, secrets, &r.name, "username")?,
            secret_text(target, secrets, &r.name, "password")?,
        ));
    }
    let what = format!("channel {label}: SMTP to {host}:{}", config.smtp.port);
    match transport.build().send(message).await {
        Ok(response) => Ok(format!(
            "{} {}",
            response.code(),
            response.message().collect::<Vec<_>>().join(" ")
        )),
        // 5xx: the server refused for good (bad address, policy).
        Err(e) if e.is_permanent() => Err(DeliveryError::permanent(format!(
            "{what} failed: {}",
            chain(&e)
        ))),
        Err(e) => Err(DeliveryError::retryable(
            format!("{what} failed: {}", chain(&e)),
            None,
        )),
    }
}

fn tls_parameters(
    notifier: &Notifier,
    label: &str,
    host: &str,
) -> Result<TlsParameters, DeliveryError> {
    let tls_error = |e: lettre::transport::smtp::Error| {
        DeliveryError::permanent(format!(
            "channel {label}: TLS settings for {host}: {}",
            chain(&e)
        ))
    };
    let mut builder = TlsParameters::builder(host.to_owned());
    if let Some(pem) = &notifier.extra_roots_pem {
        builder = builder.add_root_certificate(Certificate::from_pem(pem).map_err(tls_error)?);
    }
    builder.build_rustls().map_err(tls_error)
}

fn chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

pub(super) fn build_message(
    label: &str,
    config: &EmailConfig,
    n: &AlertNotification,
) -> Result<Message, DeliveryError> {
    let address = |field: &str, s: &str| {
        s.parse::<Mailbox>().map_err(|_| {
            DeliveryError::permanent(format!(
                "channel {label}: spec.email.{field} {s:?} is not an email address"
            ))
        })
    };
    let mut builder = Message::builder()
        .from(address("from", &config.from)?)
        .subject(subject(label, config, n)?)
        .message_id(Some(message_id(&n.idempotency_key)));
    for to in &config.to {
        builder = builder.to(address("to", to)?);
    }
    builder
        .multipart(MultiPart::alternative_plain_html(
            text_body(n),
            html_body(n),
        ))
        .map_err(|e| {
            DeliveryError::permanent(format!("channel {label}: cannot build the email: {e}"))
        })
}

/// `email.subject` rendered over the first alert's variables and the notification's own
/// (`title`, `kind`, `count`, `channel`); the title without a template. One line.
pub(super) fn subject(
    label: &str,
    config: &EmailConfig,
    n: &AlertNotification,
) -> Result<String, DeliveryError> {
    let subject = match &config.subject {
        None => n.title.clone(),
        Some(source) => template::render(source, subject_context(n)).map_err(|e| {
            DeliveryError::permanent(format!("channel {label}: spec.email.subject: {e}"))
        })?,
    };
    Ok(subject.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// The template variables of [`template::NOTIFICATION_VARIABLES`] that a notification
/// carries. `op` and `device_labels` are not in it, so a subject naming them fails to
/// render (a permanent error naming the variable).
fn subject_context(n: &AlertNotification) -> Value {
    let mut context = BTreeMap::from([
        ("namespace", json!(n.namespace)),
        ("rule", json!(n.rule)),
        ("severity", json!(n.severity)),
        ("title", json!(n.title)),
        ("kind", json!(n.kind.as_str())),
        ("count", json!(n.alerts.len())),
        ("channel", json!(n.channel)),
    ]);
    if let Some(a) = n.alerts.first() {
        let unit = CATALOG
            .iter()
            .find(|i| i.name == a.metric)
            .map_or("", |i| i.unit);
        context.extend([
            ("device", json!(a.device)),
            ("site", json!(a.site)),
            ("metric", json!(a.metric)),
            ("unit", json!(unit)),
            ("value", json!(a.value)),
            ("peak", json!(a.peak)),
            ("threshold", json!(a.threshold)),
            ("state", json!(a.state.as_str())),
            ("series", json!(a.series)),
            ("labels", json!(a.labels)),
        ]);
    }
    json!(context)
}

/// `<KEY@cdot-rmm>`, the key kept to characters a Message-ID may hold.
pub(super) fn message_id(key: &str) -> String {
    let local: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("<{local}@cdot-rmm>")
}

fn alert_line(a: &cdot_crds::wire::alert::Alert) -> String {
    format!(
        "{}: {} (value {}, threshold {}, since {})",
        a.device, a.summary, a.value, a.threshold, a.started_at
    )
}

pub(super) fn text_body(n: &AlertNotification) -> String {
    let mut out = format!(
        "[{}] {}\n\nRule {} ({:?}) in {}\n\n",
        kind_word(n.kind),
        n.title,
        n.rule,
        n.severity,
        n.namespace
    );
    for a in n.alerts.iter().take(MAX_LISTED) {
        out.push_str(&format!("- {}\n", alert_line(a)));
        if !a.description.is_empty() {
            out.push_str(&format!("  {}\n", a.description));
        }
    }
    if n.alerts.len() > MAX_LISTED {
        out.push_str(&format!("and {} more\n", n.alerts.len() - MAX_LISTED));
    }
    out
}

pub(super) fn html_body(n: &AlertNotification) -> String {
    let mut out = format!(
        "<html><body><h2>[{}] {}</h2><p>Rule {} ({:?}) in {}</p><ul>",
        kind_word(n.kind),
        escape(&n.title),
        escape(&n.rule),
        n.severity,
        escape(&n.namespace)
    );
    for a in n.alerts.iter().take(MAX_LISTED) {
        out.push_str(&format!("<li>{}", escape(&alert_line(a))));
        if !a.description.is_empty() {
            out.push_str(&format!("<br>{}", escape(&a.description)));
        }
        out.push_str("</li>");
    }
    if n.alerts.len() > MAX_LISTED {
        out.push_str(&format!(
            "<li>and {} more</li>",
            n.alerts.len() - MAX_LISTED
        ));
    }
    out.push_str("</ul></body></html>");
    out
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use cdot_crds::{notification_channel::SmtpServer, wire::alert::NotificationKind};

    use super::*;
    use crate::notify::fixtures::{alert, notification};

    fn config(subject: Option<&str>) -> EmailConfig {
        EmailConfig {
            smtp: SmtpServer {
                host: "smtp.example.net".into(),
                port: 587,
                tls: SmtpTls::StartTls,
            },
            from: "rmm@example.net".into(),
            to: vec!["ops@example.net".into()],
            credentials_secret_ref: None,
            subject: subject.map(str::to_owned),
        }
    }

    #[test]
    fn subject_renders_alert_and_notification_variables() {
        let n = notification(
            NotificationKind::Firing,
            vec![
                alert(1, "web-01", "disk full"),
                alert(2, "web-02", "disk full"),
            ],
        );
        let s = subject(
            "acme/ops",
            &config(Some(
                "[{{ kind }}] {{ device }} {{ metric }} {{ value }}{{ unit }} ({{ count }}) {{ series.mount }} via {{ channel }}",
            )),
            &n,
        )
        .expect("render");
        assert_eq!(s, "[firing] web-01 disk 93.5percent (2) / via ops");
        assert_eq!(
            subject("acme/ops", &config(None), &n).expect("title"),
            "disk full"
        );
    }

    #[test]
    fn a_subject_that_cannot_render_is_permanent_and_names_the_field() {
        let n = notification(NotificationKind::Firing, vec![alert(1, "web-01", "x")]);
        let e = subject("acme/ops", &config(Some("{{ op }}")), &n).expect_err("op is unknown");
        assert!(matches!(e, DeliveryError::Permanent { .. }), "{e:?}");
        assert!(
            e.to_string().contains("acme/ops: spec.email.subject"),
            "{e}"
        );
    }

    #[test]
    fn html_escapes_alert_text_and_message_id_follows_the_key() {
        let n = notification(
            NotificationKind::Firing,
            vec![alert(1, "web-01", "<script>alert('x')</script> & more")],
        );
        let html = html_body(&n);
        assert!(!html.contains("<script>"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; more"),
            "{html}"
        );
        assert!(text_body(&n).contains("- web-01: <script>alert('x')</script> & more (value 93.5"));
        assert_eq!(message_id("n-0001"), "<n-0001@cdot-rmm>");
        assert_eq!(message_id("a b<c>@d"), "<a-b-c--d@cdot-rmm>");
    }
}
