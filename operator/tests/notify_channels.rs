//! Notification delivery against real peers: a recording HTTPS receiver (webhooks, SMS
//! provider, ServiceNow, Jira) and a real SMTP server (aiosmtpd), each with a certificate of
//! a test CA that only `NotifierConfig::extra_roots_pem` makes trusted.
use std::{collections::BTreeMap, time::Duration};

use base64::Engine;
use cdot_crds::{
    alert_rule::Severity,
    notification_channel::NotificationChannelSpec,
    wire::alert::{Alert, AlertNotification, AlertState, NOTIFICATION_VERSION, NotificationKind},
};
use cdot_operator::{
    notify::{DeliveryError, Notifier, NotifierConfig, Target},
    secrets::Secrets,
};
use cdot_testkit::{
    receiver::{Receiver, Reply},
    smtp::{SmtpPeer, SmtpTls},
};
use serde_json::{Value, json};
use uuid::Uuid;

const NS: &str = "acme";
const USER_AGENT: &str = "cdot-rmm-test/1";

fn notifier(ca_pem: &str) -> Notifier {
    Notifier::new(NotifierConfig {
        extra_roots_pem: Some(ca_pem.as_bytes().to_vec()),
        user_agent: USER_AGENT.into(),
    })
    .expect("notifier")
}

fn secrets(entries: &[(&str, &[(&str, &str)])]) -> Secrets {
    let secrets = Secrets::default();
    secrets.replace(entries.iter().map(|(name, keys)| {
        (
            NS.to_owned(),
            (*name).to_owned(),
            keys.iter()
                .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
                .collect(),
        )
    }));
    secrets
}

fn spec(value: Value) -> NotificationChannelSpec {
    serde_json::from_value(value).expect("channel spec")
}

fn alert(n: u128, device: &str) -> Alert {
    Alert {
        id: Uuid::from_u128(n),
        namespace: NS.into(),
        rule: "disk-full".into(),
        device: device.into(),
        site: Some("london".into()),
        metric: "disk".into(),
        series: BTreeMap::from([("mount".into(), "/".into())]),
        labels: BTreeMap::new(),
        severity: Severity::Critical,
        state: AlertState::Firing,
        value: 93.5,
        peak: 95.0,
        threshold: 90.0,
        summary: format!("disk / at 93.5% on {device}"),
        description: "<b>clean up</b> & retry".into(),
        started_at: "2026-12-06T06:00:00Z".into(),
        fired_at: Some("2026-12-06T06:05:00Z".into()),
        resolved_at: None,
        acknowledged: None,
        suppressed: None,
        tickets: BTreeMap::new(),
    }
}

fn notification(kind: NotificationKind, alerts: Vec<Alert>) -> AlertNotification {
    AlertNotification {
        version: NOTIFICATION_VERSION.into(),
        idempotency_key: "0b9e6c1e-2f4a-4c55-9b8f-6f3c1d2e7a10".into(),
        kind,
        namespace: NS.into(),
        channel: "ops".into(),
        rule: "disk-full".into(),
        severity: Severity::Critical,
        group: BTreeMap::new(),
        title: alerts[0].summary.clone(),
        alerts,
        created_at: "2026-12-06T06:05:01Z".into(),
    }
}

async fn deliver(
    notifier: &Notifier,
    spec: &NotificationChannelSpec,
    secrets: &Secrets,
    n: &AlertNotification,
    tickets: &BTreeMap<Uuid, String>,
) -> Result<cdot_operator::notify::Delivered, DeliveryError> {
    let target = Target {
        namespace: NS,
        name: "ops",
        spec,
    };
    notifier.deliver(&target, secrets, n, tickets).await
}

fn none() -> BTreeMap<Uuid, String> {
    BTreeMap::new()
}

#[tokio::test]
async fn generic_webhook_posts_the_document_with_its_headers() {
    let rx = Receiver::start().await;
    let url = rx.url("/hooks/T0001/XSECRETPATHX");
    let s = secrets(&[(
        "hook",
        &[("url", url.as_str()), ("auth", "Bearer s3cr3t-token")],
    )]);
    let channel = spec(json!({
        "type": "Webhook",
        "webhook": {
            "urlSecretRef": {"name": "hook", "key": "url"},
            "headers": {"X-Team": "ops"},
            "headerSecretRefs": {"Authorization": {"name": "hook", "key": "auth"}},
            "timeout": "5s",
        },
    }));
    let n = notification(NotificationKind::Firing, vec![alert(1, "web-01")]);
    let done = deliver(&notifier(rx.ca_pem()), &channel, &s, &n, &none())
        .await
        .expect("delivered");
    assert_eq!(done.detail, "HTTP 200");
    assert!(done.tickets.is_empty());

    let requests = rx.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/hooks/T0001/XSECRETPATHX")
    );
    assert_eq!(r.json(), serde_json::to_value(&n).expect("json"));
    assert_eq!(r.json()["version"], NOTIFICATION_VERSION);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(
        r.header("idempotency-key"),
        Some(n.idempotency_key.as_str())
    );
    assert_eq!(r.header("user-agent"), Some(USER_AGENT));
    assert_eq!(r.header("authorization"), Some("Bearer s3cr3t-token"));
    assert_eq!(r.header("x-team"), Some("ops"));
}

#[tokio::test]
async fn webhook_failures_are_classified_without_secrets() {
    let rx = Receiver::start().await;
    let url = rx.url("/hooks/T0001/XSECRETPATHX");
    let s = secrets(&[("hook", &[("url", url.as_str()), ("auth", "s3cr3t-token")])]);
    let channel = spec(json!({
        "type": "Webhook",
        "webhook": {
            "urlSecretRef": {"name": "hook", "key": "url"},
            "headerSecretRefs": {"X-Api-Key": {"name": "hook", "key": "auth"}},
            "timeout": "1s",
        },
    }));
    let notifier = notifier(rx.ca_pem());
    let n = notification(NotificationKind::Firing, vec![alert(1, "web-01")]);
    let host = url
        .trim_start_matches("https://")
        .split('/')
        .next()
        .expect("host")
        .to_owned();
    let no_secret = |e: &DeliveryError| {
        let m = e.to_string();
        assert!(!m.contains("XSECRETPATHX") && !m.contains("s3cr3t"), "{m}");
        m
    };

    rx.reply_with(|_| Reply::status(500).body(b"boom: database down"));
    let e = deliver(&notifier, &channel, &s, &n, &none())
        .await
        .expect_err("500");
    let m = no_secret(&e);
    assert!(
        matches!(
            e,
            DeliveryError::Retryable {
                retry_after: None,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        m,
        format!(
            "channel acme/ops: POST to {host} answered HTTP 500 Internal Server Error: boom: database down"
        )
    );

    rx.reply_with(|_| Reply::status(429).header("retry-after", "7"));
    let e = deliver(&notifier, &channel, &s, &n, &none())
        .await
        .expect_err("429");
    no_secret(&e);
    assert!(
        matches!(e, DeliveryError::Retryable { retry_after: Some(d), .. } if d == Duration::from_secs(7)),
        "{e:?}"
    );

    rx.reply_with(|_| Reply::status(404).body(&[b'x'; 500]));
    let e = deliver(&notifier, &channel, &s, &n, &none())
        .await
        .expect_err("404");
    let m = no_secret(&e);
    assert!(matches!(e, DeliveryError::Permanent { .. }), "{e:?}");
    assert!(
        m.ends_with(&format!(": {}", "x".repeat(200))),
        "only 200 bytes quoted: {m}"
    );

    // Redirects are not followed: the secret header would go to another host.
    rx.reply_with(|_| Reply::status(302).header("location", "https://example.invalid/"));
    let e = deliver(&notifier, &channel, &s, &n, &none())
        .await
        .expect_err("302");
    assert!(matches!(e, DeliveryError::Permanent { .. }), "{e:?}");

    rx.reply_with(|_| Reply::status(200).body(b"\x00\xff{not json"));
    let done = deliver(&notifier, &channel, &s, &n, &none())
        .await
        .expect("garbage with 200 is fine");
    assert_eq!(done.detail, "HTTP 200");
    rx.reply_with(|_| Reply::status(503).body(b"\x00\xff{not json"));
    let e = deliver(&notifier, &channel, &s, &n, &none())
        .await
        .expect_err("garbage with 503");
    assert!(matches!(e, DeliveryError::Retryable { .. }), "{e:?}");

    rx.reply_with(|_| Reply::status(200).delay(Duration::from_secs(3)));
    let e = deliver(&notifier, &channel, &s, &n, &none())
        .await
        .expect_err("timeout");
    let m = no_secret(&e);
    assert!(matches!(e, DeliveryError::Retryable { .. }), "{e:?}");
    assert!(m.contains(&host) && m.contains("timed out"), "{m}");

    // Every request carried the secret header, though no error quoted it.
    assert!(
        rx.requests()
            .iter()
            .all(|r| r.header("x-api-key") == Some("s3cr3t-token"))
    );

    let e = deliver(&notifier, &channel, &secrets(&[]), &n, &none())
        .await
        .expect_err("no Secret");
    assert!(matches!(e, DeliveryError::Permanent { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        "channel acme/ops: Secret acme/hook does not exist"
    );
    let e = deliver(
        &notifier,
        &channel,
        &secrets(&[("hook", &[("url", url.as_str())])]),
        &n,
        &none(),
    )
    .await
    .expect_err("no key");
    assert_eq!(
        e.to_string(),
        "channel acme/ops: Secret acme/hook has no key auth"
    );
}

#[tokio::test]
async fn a_receiver_whose_ca_is_not_trusted_is_a_retryable_failure() {
    let rx = Receiver::start().await;
    let notifier = Notifier::new(NotifierConfig {
        extra_roots_pem: None,
        user_agent: USER_AGENT.into(),
    })
    .expect("notifier");
    let channel = spec(json!({"type": "Webhook", "webhook": {"url": rx.url("/hook")}}));
    let n = notification(NotificationKind::Firing, vec![alert(1, "web-01")]);
    let e = deliver(&notifier, &channel, &secrets(&[]), &n, &none())
        .await
        .expect_err("untrusted");
    assert!(matches!(e, DeliveryError::Retryable { .. }), "{e:?}");
    assert!(e.to_string().contains("certificate"), "{e}");
    assert!(rx.requests().is_empty());
}

#[tokio::test]
async fn slack_webhook_posts_a_slack_message() {
    let rx = Receiver::start().await;
    let channel = spec(json!({
        "type": "Webhook",
        "webhook": {"url": rx.url("/slack"), "format": "Slack"},
    }));
    let n = notification(
        NotificationKind::Repeat,
        vec![alert(1, "web-01"), alert(2, "web-02")],
    );
    deliver(&notifier(rx.ca_pem()), &channel, &secrets(&[]), &n, &none())
        .await
        .expect("delivered");
    let r = &rx.requests()[0];
    assert_eq!(
        r.header("idempotency-key"),
        Some(n.idempotency_key.as_str())
    );
    let body = r.json();
    assert_eq!(body["text"], "*[STILL FIRING] disk / at 93.5% on web-01*");
    assert_eq!(body["attachments"][0]["color"], "#d00000");
    assert_eq!(
        body["attachments"][0]["text"],
        "• *web-01*: disk / at 93.5% on web-01\n• *web-02*: disk / at 93.5% on web-02"
    );
}

fn sms_channel(rx: &Receiver) -> NotificationChannelSpec {
    spec(json!({
        "type": "Sms",
        "sms": {
            "providerUrl": rx.url("/2010-04-01/Accounts/AC1/Messages.json"),
            "to": ["+447700900001", "+447700900002"],
            "from": "cdot",
            "credentialsSecretRef": {"name": "sms"},
        },
    }))
}

fn form(body: &[u8]) -> BTreeMap<String, String> {
    url_decode_pairs(&String::from_utf8_lossy(body))
}

fn url_decode_pairs(s: &str) -> BTreeMap<String, String> {
    s.split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("hex");
                out.push(u8::from_str_radix(hex, 16).expect("hex"));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).expect("utf-8")
}

#[tokio::test]
async fn sms_posts_a_form_per_number_with_basic_or_bearer_auth() {
    let rx = Receiver::start().await;
    rx.reply_with(|_| Reply::json(201, r#"{"sid":"SM1"}"#));
    let channel = sms_channel(&rx);
    let notifier = notifier(rx.ca_pem());
    let mut n = notification(NotificationKind::Firing, vec![alert(1, "web-01")]);
    n.title = "é".repeat(400);
    let s = secrets(&[("sms", &[("username", "AC1"), ("password", "auth-s3cr3t")])]);
    let done = deliver(&notifier, &channel, &s, &n, &none())
        .await
        .expect("sent");
    assert_eq!(done.detail, "HTTP 201, 201 for 2 numbers");

    let requests = rx.requests();
    assert_eq!(requests.len(), 2);
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("AC1:auth-s3cr3t")
    );
    for (r, number) in requests.iter().zip(["+447700900001", "+447700900002"]) {
        assert_eq!(r.path, "/2010-04-01/Accounts/AC1/Messages.json");
        assert_eq!(
            r.header("content-type"),
            Some("application/x-www-form-urlencoded")
        );
        assert_eq!(r.header("authorization"), Some(basic.as_str()));
        assert_eq!(
            r.header("idempotency-key"),
            Some(format!("{}:{number}", n.idempotency_key).as_str())
        );
        let f = form(&r.body);
        assert_eq!(f["To"], number);
        assert_eq!(f["From"], "cdot");
        assert_eq!(f["Body"].chars().count(), 320);
        assert!(f["Body"].ends_with("é…"));
    }

    rx.clear();
    let s = secrets(&[("sms", &[("token", "tok-s3cr3t")])]);
    deliver(&notifier, &channel, &s, &n, &none())
        .await
        .expect("sent");
    assert!(
        rx.requests()
            .iter()
            .all(|r| r.header("authorization") == Some("Bearer tok-s3cr3t"))
    );
}

#[tokio::test]
async fn sms_partial_failure_is_retryable_and_names_the_number() {
    let rx = Receiver::start().await;
    rx.reply_with(|r| {
        if r.text().contains("900002") {
            Reply::status(503).body(b"carrier down")
        } else {
            Reply::status(201)
        }
    });
    let s = secrets(&[("sms", &[("username", "AC1"), ("password", "auth-s3cr3t")])]);
    let n = notification(NotificationKind::Firing, vec![alert(1, "web-01")]);
    let e = deliver(&notifier(rx.ca_pem()), &sms_channel(&rx), &s, &n, &none())
        .await
        .expect_err("partial");
    assert!(matches!(e, DeliveryError::Retryable { .. }), "{e:?}");
    let m = e.to_string();
    assert!(
        m.starts_with("channel acme/ops: SMS to 1 of 2 numbers failed (+447700900002): "),
        "{m}"
    );
    assert!(
        m.contains("HTTP 503") && m.contains("carrier down") && !m.contains("s3cr3t"),
        "{m}"
    );

    rx.reply_with(|_| Reply::status(401).body(b"bad credentials"));
    let e = deliver(&notifier(rx.ca_pem()), &sms_channel(&rx), &s, &n, &none())
        .await
        .expect_err("all refused");
    assert!(matches!(e, DeliveryError::Permanent { .. }), "{e:?}");
}

fn ticket_channel(rx: &Receiver, system: &str, project: &str) -> NotificationChannelSpec {
    spec(json!({
        "type": "Ticket",
        "ticket": {
            "system": system,
            "url": rx.url("/"),
            "project": project,
            "credentialsSecretRef": {"name": "itsm"},
        },
    }))
}

fn servicenow_replies(rx: &Receiver, fail_device: Option<&'static str>) {
    rx.reply_with(move |r| {
        if fail_device.is_some_and(|d| r.text().contains(d)) {
            return Reply::status(503).body(b"maintenance");
        }
        match r.method.as_str() {
            "POST" => {
                let n = r.json()["correlation_id"]
                    .as_str()
                    .and_then(|id| id.chars().last())
                    .unwrap_or('0');
                Reply::json(
                    201,
                    &format!(r#"{{"result":{{"sys_id":"sys{n}","number":"INC000100{n}"}}}}"#),
                )
            }
            _ => Reply::json(200, r#"{"result":{"number":"INC0001001"}}"#),
        }
    });
}

#[tokio::test]
async fn servicenow_tickets_are_opened_noted_and_closed() {
    let rx = Receiver::start().await;
    servicenow_replies(&rx, None);
    let notifier = notifier(rx.ca_pem());
    let channel = ticket_channel(&rx, "ServiceNow", "Network Ops");
    let s = secrets(&[("itsm", &[("username", "svc"), ("password", "sn-s3cr3t")])]);
    let alerts = vec![alert(1, "web-01"), alert(2, "web-02")];

    let done = deliver(
        &notifier,
        &channel,
        &s,
        &notification(NotificationKind::Firing, alerts.clone()),
        &none(),
    )
    .await
    .expect("opened");
    let opened = BTreeMap::from([
        (Uuid::from_u128(1), "sys1".to_owned()),
        (Uuid::from_u128(2), "sys2".to_owned()),
    ]);
    assert_eq!(done.tickets, opened);
    assert_eq!(done.detail, "INC0001001, INC0001002");
    let requests = rx.requests();
    assert_eq!(requests.len(), 2);
    let r = &requests[0];
    assert_eq!(
        (r.method.as_str(), r.path.as_str()),
        ("POST", "/api/now/table/incident")
    );
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("svc:sn-s3cr3t")
    );
    assert_eq!(r.header("authorization"), Some(basic.as_str()));
    assert_eq!(
        r.header("idempotency-key"),
        Some("0b9e6c1e-2f4a-4c55-9b8f-6f3c1d2e7a10:00000000-0000-0000-0000-000000000001")
    );
    let body = r.json();
    assert_eq!(body["short_description"], "disk / at 93.5% on web-01");
    assert_eq!(body["assignment_group"], "Network Ops");
    assert_eq!(body["urgency"], "1");
    assert_eq!(
        body["correlation_id"],
        "00000000-0000-0000-0000-000000000001"
    );

    // Repeat: a work note on each known ticket; an alert with none is skipped.
    rx.clear();
    let known = BTreeMap::from([(Uuid::from_u128(1), "sys1".to_owned())]);
    let done = deliver(
        &notifier,
        &channel,
        &s,
        &notification(NotificationKind::Repeat, alerts.clone()),
        &known,
    )
    .await
    .expect("noted");
    assert!(done.tickets.is_empty());
    assert_eq!(
        done.detail,
        "INC0001001 noted; 1 alert(s) without a ticket skipped"
    );
    let requests = rx.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        (requests[0].method.as_str(), requests[0].path.as_str()),
        ("PATCH", "/api/now/table/incident/sys1")
    );
    assert_eq!(
        requests[0].json(),
        json!({"work_notes": "Still firing: disk / at 93.5% on web-01 (value 93.5, peak 95)"})
    );

    rx.clear();
    deliver(
        &notifier,
        &channel,
        &s,
        &notification(NotificationKind::Resolved, alerts),
        &known,
    )
    .await
    .expect("closed");
    let body = rx.requests()[0].json();
    assert_eq!(body["state"], "6");
    assert_eq!(body["close_code"], "Resolved by monitoring");
}

#[tokio::test]
async fn a_partial_ticket_failure_reports_what_was_opened_and_redelivery_opens_the_rest() {
    let rx = Receiver::start().await;
    servicenow_replies(&rx, Some("web-02"));
    let notifier = notifier(rx.ca_pem());
    let channel = ticket_channel(&rx, "ServiceNow", "Network Ops");
    let s = secrets(&[("itsm", &[("token", "sn-s3cr3t")])]);
    let n = notification(
        NotificationKind::Firing,
        vec![alert(1, "web-01"), alert(2, "web-02")],
    );

    let e = deliver(&notifier, &channel, &s, &n, &none())
        .await
        .expect_err("partial");
    let first = BTreeMap::from([(Uuid::from_u128(1), "sys1".to_owned())]);
    assert!(matches!(e, DeliveryError::Retryable { .. }), "{e:?}");
    assert_eq!(e.tickets(), &first);
    let m = e.to_string();
    assert!(
        m.contains("HTTP 503") && m.contains("maintenance") && m.contains("after 1 of 2 alerts"),
        "{m}"
    );
    assert!(!m.contains("s3cr3t"), "{m}");
    assert_eq!(
        rx.requests()[0].header("authorization"),
        Some("Bearer sn-s3cr3t")
    );

    servicenow_replies(&rx, None);
    rx.clear();
    let done = deliver(&notifier, &channel, &s, &n, &first)
        .await
        .expect("rest opened");
    assert_eq!(
        done.tickets,
        BTreeMap::from([(Uuid::from_u128(2), "sys2".to_owned())])
    );
    assert_eq!(done.detail, "sys1 (already open), INC0001002");
    assert_eq!(rx.requests().len(), 1);
}

#[tokio::test]
async fn jira_issues_are_opened_commented_and_transitioned() {
    let rx = Receiver::start().await;
    rx.reply_with(|r| match (r.method.as_str(), r.path.as_str()) {
        ("POST", "/rest/api/2/issue") => Reply::json(201, r#"{"id":"10001","key":"OPS-7"}"#),
        ("GET", "/rest/api/2/issue/OPS-7/transitions") => Reply::json(
            200,
            r#"{"transitions":[{"id":"11","name":"In Progress"},{"id":"31","name":"done"}]}"#,
        ),
        _ => Reply::status(204),
    });
    let notifier = notifier(rx.ca_pem());
    let channel = ticket_channel(&rx, "Jira", "OPS");
    let s = secrets(&[("itsm", &[("token", "jira-s3cr3t")])]);
    let alerts = vec![alert(1, "web-01")];

    let done = deliver(
        &notifier,
        &channel,
        &s,
        &notification(NotificationKind::Firing, alerts.clone()),
        &none(),
    )
    .await
    .expect("opened");
    assert_eq!(
        done.tickets,
        BTreeMap::from([(Uuid::from_u128(1), "OPS-7".to_owned())])
    );
    let r = &rx.requests()[0];
    assert_eq!(r.header("authorization"), Some("Bearer jira-s3cr3t"));
    let fields = &r.json()["fields"];
    assert_eq!(fields["project"], json!({"key": "OPS"}));
    assert_eq!(fields["summary"], "disk / at 93.5% on web-01");
    assert_eq!(fields["issuetype"], json!({"name": "Incident"}));
    assert_eq!(fields["labels"], json!(["cdot-rmm"]));

    let known = done.tickets;
    rx.clear();
    deliver(
        &notifier,
        &channel,
        &s,
        &notification(NotificationKind::Repeat, alerts.clone()),
        &known,
    )
    .await
    .expect("commented");
    let requests = rx.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].path, "/rest/api/2/issue/OPS-7/comment");

    rx.clear();
    let done = deliver(
        &notifier,
        &channel,
        &s,
        &notification(NotificationKind::Resolved, alerts),
        &known,
    )
    .await
    .expect("closed");
    assert_eq!(done.detail, "OPS-7 closed");
    let calls: Vec<(String, String)> = rx
        .requests()
        .iter()
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect();
    assert_eq!(
        calls,
        [
            (
                "POST".to_owned(),
                "/rest/api/2/issue/OPS-7/comment".to_owned()
            ),
            (
                "GET".to_owned(),
                "/rest/api/2/issue/OPS-7/transitions".to_owned()
            ),
            (
                "POST".to_owned(),
                "/rest/api/2/issue/OPS-7/transitions".to_owned()
            ),
        ]
    );
    assert_eq!(rx.requests()[2].json(), json!({"transition": {"id": "31"}}));
}

fn email_channel(peer: &SmtpPeer, tls: &str, credentials: bool) -> NotificationChannelSpec {
    let mut email = json!({
        "smtp": {"host": peer.host(), "port": peer.port(), "tls": tls},
        "from": "rmm@example.net",
        "to": ["ops@example.net", "oncall@example.net"],
        "subject": "[{{ kind }}] {{ device }}: {{ metric }} at {{ value }} ({{ count }} alerts)",
    });
    if credentials {
        email["credentialsSecretRef"] = json!({"name": "smtp"});
    }
    spec(json!({"type": "Email", "email": email}))
}

#[tokio::test]
async fn email_over_starttls_with_auth_arrives_whole() {
    let peer = SmtpPeer::start(SmtpTls::StartTls, Some(("rmm", "smtp-s3cr3t")));
    let s = secrets(&[("smtp", &[("username", "rmm"), ("password", "smtp-s3cr3t")])]);
    let n = notification(
        NotificationKind::Firing,
        vec![alert(1, "web-01"), alert(2, "web-02")],
    );
    let done = deliver(
        &notifier(peer.ca_pem()),
        &email_channel(&peer, "StartTls", true),
        &s,
        &n,
        &none(),
    )
    .await
    .expect("sent");
    assert!(
        done.detail.starts_with("250 2.0.0 queued as cdot-1"),
        "{}",
        done.detail
    );

    let mail = peer.wait_for(1, Duration::from_secs(10)).remove(0);
    assert!(mail.tls, "STARTTLS was used");
    assert_eq!(mail.login.as_deref(), Some("rmm"));
    assert_eq!(mail.mail_from, "rmm@example.net");
    assert_eq!(mail.rcpt_to, ["ops@example.net", "oncall@example.net"]);

    let parsed = mailparse::parse_mail(&mail.raw).expect("parse the mail");
    let header = |name: &str| {
        parsed
            .headers
            .iter()
            .find(|h| h.get_key_ref().eq_ignore_ascii_case(name))
            .map(|h| h.get_value())
    };
    assert_eq!(
        header("Subject").as_deref(),
        Some("[firing] web-01: disk at 93.5 (2 alerts)")
    );
    assert_eq!(header("From").as_deref(), Some("rmm@example.net"));
    assert_eq!(
        header("To").as_deref(),
        Some("ops@example.net, oncall@example.net")
    );
    assert_eq!(
        header("Message-ID").as_deref(),
        Some("<0b9e6c1e-2f4a-4c55-9b8f-6f3c1d2e7a10@cdot-rmm>")
    );
    assert_eq!(parsed.ctype.mimetype, "multipart/alternative");
    let part = |mime: &str| {
        parsed
            .subparts
            .iter()
            .find(|p| p.ctype.mimetype == mime)
            .unwrap_or_else(|| panic!("no {mime} part"))
            .get_body()
            .expect("part body")
            // SMTP carries lines as CRLF.
            .replace("\r\n", "\n")
    };
    let text = part("text/plain");
    assert!(
        text.starts_with("[FIRING] disk / at 93.5% on web-01\n"),
        "{text}"
    );
    assert!(
        text.contains("- web-02: disk / at 93.5% on web-02 (value 93.5, threshold 90"),
        "{text}"
    );
    assert!(text.contains("<b>clean up</b> & retry"), "{text}");
    let html = part("text/html");
    assert!(
        html.contains("&lt;b&gt;clean up&lt;/b&gt; &amp; retry"),
        "{html}"
    );
    assert!(!html.contains("<b>clean up"), "{html}");
}

#[tokio::test]
async fn email_over_implicit_tls_and_plain() {
    let n = notification(NotificationKind::Resolved, vec![alert(1, "web-01")]);
    for (tls, peer_tls) in [("Tls", SmtpTls::Implicit), ("None", SmtpTls::None)] {
        let peer = SmtpPeer::start(peer_tls, None);
        deliver(
            &notifier(peer.ca_pem()),
            &email_channel(&peer, tls, false),
            &secrets(&[]),
            &n,
            &none(),
        )
        .await
        .unwrap_or_else(|e| panic!("{tls}: {e}"));
        let mail = peer.wait_for(1, Duration::from_secs(10)).remove(0);
        assert_eq!(mail.tls, tls == "Tls", "{tls}");
        assert_eq!(mail.login, None);
    }
}

#[tokio::test]
async fn smtp_refusals_are_classified_without_secrets() {
    let peer = SmtpPeer::start(SmtpTls::StartTls, Some(("rmm", "smtp-s3cr3t")));
    let notifier = notifier(peer.ca_pem());
    let channel = email_channel(&peer, "StartTls", true);
    let s = secrets(&[("smtp", &[("username", "rmm"), ("password", "smtp-s3cr3t")])]);
    let n = notification(NotificationKind::Firing, vec![alert(1, "web-01")]);

    peer.set_reply(Some("451 4.3.0 try later"));
    let e = deliver(&notifier, &channel, &s, &n, &none())
        .await
        .expect_err("4xx");
    assert!(matches!(e, DeliveryError::Retryable { .. }), "{e:?}");
    let m = e.to_string();
    assert!(
        m.starts_with(&format!(
            "channel acme/ops: SMTP to 127.0.0.1:{} failed: ",
            peer.port()
        )),
        "{m}"
    );
    assert!(m.contains("try later"), "{m}");

    peer.set_reply(Some("554 5.7.1 rejected by policy"));
    let e = deliver(&notifier, &channel, &s, &n, &none())
        .await
        .expect_err("5xx");
    assert!(matches!(e, DeliveryError::Permanent { .. }), "{e:?}");
    assert!(e.to_string().contains("rejected by policy"), "{e}");

    peer.set_reply(None);
    let wrong = secrets(&[("smtp", &[("username", "rmm"), ("password", "wrong-s3cr3t")])]);
    let e = deliver(&notifier, &channel, &wrong, &n, &none())
        .await
        .expect_err("bad password");
    assert!(matches!(e, DeliveryError::Permanent { .. }), "{e:?}");
    assert!(!e.to_string().contains("s3cr3t"), "{e}");
    assert!(peer.received().is_empty());

    let e = deliver(
        &notifier,
        &channel,
        &secrets(&[("smtp", &[("username", "rmm")])]),
        &n,
        &none(),
    )
    .await
    .expect_err("no password");
    assert_eq!(
        e.to_string(),
        "channel acme/ops: Secret acme/smtp has no key password"
    );
}
