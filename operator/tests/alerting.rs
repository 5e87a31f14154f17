//! Alerting end to end: the real operator binary and PostgreSQL, agents reporting over the
//! agent API, and real HTTPS receivers (the testkit's recording server) taking the
//! notifications.
mod support;

use std::{
    path::Path,
    time::{Duration, Instant},
};

use cdot_testkit::receiver::{Receiver, Reply};
use serde_json::{Value, json};
use support::{JwtAgent, Operator, TestDb, create_enrollment_token, create_token, wait_for};

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// A channel, the rules and a Device in maintenance, for namespace acme.
fn manifests(dir: &Path, receiver: &Receiver, repeat: &str) {
    let yaml = format!(
        r#"apiVersion: rmm.cdot.io/v1alpha1
kind: NotificationChannel
metadata: {{name: hook, namespace: acme}}
spec:
  type: Webhook
  webhook:
    url: {hook}
    headerSecretRefs: {{Authorization: {{name: hook-auth, key: header}}}}
---
apiVersion: rmm.cdot.io/v1alpha1
kind: NotificationChannel
metadata: {{name: slow, namespace: acme}}
spec:
  type: Webhook
  webhook: {{url: {slow}, timeout: 20s}}
---
apiVersion: v1
kind: Secret
metadata: {{name: hook-auth, namespace: acme}}
stringData: {{header: "Bearer hook-secret-value"}}
---
apiVersion: rmm.cdot.io/v1alpha1
kind: AlertRule
metadata: {{name: cpu-high, namespace: acme}}
spec:
  metric: cpu
  reduce: {{function: last, window: 1m}}
  condition: {{op: ">", threshold: 90}}
  resolve: {{threshold: 80}}
  severity: Critical
  summary: "CPU on {{{{ device }}}} at {{{{ value }}}}%"
  description: "{{{{ device }}}} in {{{{ site }}}} crossed {{{{ threshold }}}}"
  channels: [hook, slow]
  repeatInterval: {repeat}
---
apiVersion: rmm.cdot.io/v1alpha1
kind: AlertRule
metadata: {{name: offline, namespace: acme}}
spec:
  metric: deviceOffline
  reduce: {{function: last, window: 1m}}
  condition: {{op: ">=", threshold: 1}}
  summary: "{{{{ device }}}} is offline"
  channels: [hook]
  repeatInterval: 0s
---
apiVersion: rmm.cdot.io/v1alpha1
kind: Device
metadata: {{name: maint-01, namespace: acme}}
spec:
  class: Server
  maintenance:
    windows: [{{start: "00:00", duration: 7d}}]
"#,
        hook = receiver.url("/hook"),
        slow = receiver.url("/slow"),
    );
    std::fs::create_dir_all(dir).expect("mkdir");
    std::fs::write(dir.join("alerting.yaml"), yaml).expect("write");
}

struct Fixture {
    db: TestDb,
    tmp: tempfile::TempDir,
    receiver: Receiver,
    operator: Operator,
    token: String,
    enroll: String,
    repo: std::path::PathBuf,
    extra: Vec<String>,
}

impl Fixture {
    async fn start(repeat: &str) -> Self {
        let db = TestDb::create().await;
        let tmp = tempfile::tempdir().expect("tmp");
        let receiver = Receiver::start().await;
        // The slow receiver outlasts the channel's timeout; every other path answers 200.
        receiver.reply_with(|r| {
            if r.path.starts_with("/slow") {
                Reply::status(200).delay(Duration::from_secs(60))
            } else {
                Reply::status(200)
            }
        });
        let repo = tmp.path().join("repo");
        manifests(&repo, &receiver, repeat);
        let token = create_token(&repo, "oncall", "acme", "operator", "acme");
        let enroll = create_enrollment_token(&repo, "fleet", "acme");
        let ca = tmp.path().join("receiver-ca.pem");
        std::fs::write(&ca, receiver.ca_pem()).expect("ca");
        let extra = vec![
            "--notify-ca-file".to_owned(),
            ca.display().to_string(),
            "--notify-max-backoff".to_owned(),
            "5s".to_owned(),
        ];
        let args: Vec<&str> = extra.iter().map(String::as_str).collect();
        let operator = Operator::start(&[&repo], Some(&db.url), &args, tmp.path()).await;
        Self {
            db,
            tmp,
            receiver,
            operator,
            token,
            enroll,
            repo,
            extra,
        }
    }

    fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("client")
    }

    async fn get(&self, path: &str) -> Value {
        let response = self
            .client()
            .get(format!("{}{path}", self.operator.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("GET");
        let status = response.status();
        let body: Value = response.json().await.unwrap_or_default();
        assert!(status.is_success(), "GET {path}: {status} {body}");
        support::assert_documented(path, &body);
        body
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .client()
            .post(format!("{}{path}", self.operator.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("POST");
        (
            response.status().as_u16(),
            response.json().await.unwrap_or_default(),
        )
    }

    /// The JSON documents `/hook` received, in order.
    fn hooks(&self) -> Vec<(String, Value)> {
        self.receiver
            .requests()
            .into_iter()
            .filter(|r| r.path == "/hook")
            .map(|r| {
                (
                    r.header("idempotency-key").unwrap_or_default().to_owned(),
                    r.json(),
                )
            })
            .collect()
    }

    async fn wait_hook(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let found = wait_for(Duration::from_secs(30), || async {
            self.hooks().into_iter().map(|(_, v)| v).find(|v| pred(v))
        })
        .await;
        found.unwrap_or_else(|| {
            panic!(
                "no {what} notification; received {:?}\n{}",
                self.hooks(),
                self.operator.logs()
            )
        })
    }

    async fn alert_of(&self, device: &str, rule: &str) -> Value {
        let list = self
            .get(&format!(
                "/v1/namespaces/acme/alerts?device={device}&rule={rule}&state=pending,firing,resolved"
            ))
            .await;
        list["items"][0].clone()
    }
}

fn is(kind: &str, device: &str, rule: &str) -> impl Fn(&Value) -> bool {
    let (kind, device, rule) = (kind.to_owned(), device.to_owned(), rule.to_owned());
    move |v: &Value| {
        v["kind"] == kind.as_str()
            && v["rule"] == rule.as_str()
            && v["alerts"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x["device"] == device.as_str()))
    }
}

/// A breach fires on the batch that carries it, the webhook gets the versioned document
/// (with its Idempotency-Key and the Secret header), a value between the thresholds keeps
/// it firing, and falling below the resolve threshold resolves it: one firing and one
/// resolved notification, while a channel whose receiver hangs delays neither.
#[tokio::test]
async fn a_breach_fires_notifies_and_resolves_with_hysteresis() {
    let f = Fixture::start("0s").await;
    let agent = JwtAgent::enroll(&f.operator, &f.enroll, "acme", "web-01").await;
    assert_eq!(agent.send(now_ms(), &[("cpu", &[], 50.0)]).await, 200);
    let sent = Instant::now();
    assert_eq!(agent.send(now_ms(), &[("cpu", &[], 95.0)]).await, 200);
    let firing = f
        .wait_hook("firing", is("firing", "web-01", "cpu-high"))
        .await;
    let took = sent.elapsed();
    assert!(took < Duration::from_secs(3), "first page took {took:?}");
    assert_eq!(firing["version"], "rmm.cdot.io/alert-notification/v1");
    assert_eq!(firing["severity"], "Critical");
    assert_eq!(firing["alerts"][0]["value"], 95.0);
    assert_eq!(firing["alerts"][0]["summary"], "CPU on web-01 at 95.0%");
    let (key, _) = f
        .hooks()
        .into_iter()
        .find(|(_, v)| v == &firing)
        .expect("recorded");
    assert_eq!(firing["idempotencyKey"], key.as_str());
    let request = f
        .receiver
        .requests()
        .into_iter()
        .find(|r| r.path == "/hook" && r.json()["rule"] == "cpu-high")
        .expect("hook request");
    assert_eq!(
        request.header("authorization"),
        Some("Bearer hook-secret-value")
    );

    // Between the thresholds: still firing, nothing sent.
    assert_eq!(agent.send(now_ms(), &[("cpu", &[], 85.0)]).await, 200);
    let alert = f.alert_of("web-01", "cpu-high").await;
    assert_eq!(alert["state"], "firing", "{alert}");
    assert_eq!(alert["peak"], 95.0);
    // The console asks for the alerts of the metrics its charts show.
    let on_cpu = f.get("/v1/namespaces/acme/alerts?metric=cpu,memory").await;
    assert_eq!(on_cpu["items"][0]["id"], alert["id"], "{on_cpu}");
    let on_links = f
        .get("/v1/namespaces/acme/alerts?metric=interfaceUtilisation,probeLoss")
        .await;
    assert_eq!(on_links["items"], json!([]), "{on_links}");

    assert_eq!(agent.send(now_ms(), &[("cpu", &[], 70.0)]).await, 200);
    let resolved = f
        .wait_hook("resolved", is("resolved", "web-01", "cpu-high"))
        .await;
    assert_eq!(resolved["alerts"][0]["state"], "resolved");
    let hooks: Vec<String> = f
        .hooks()
        .into_iter()
        .filter(|(_, v)| v["rule"] == "cpu-high")
        .map(|(_, v)| v["kind"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(hooks, ["firing", "resolved"], "exactly one of each");

    // The alert with its history, and the statuses that count alerts.
    let id = alert["id"].as_str().expect("id");
    let detail = f.get(&format!("/v1/namespaces/acme/alerts/{id}")).await;
    let events: Vec<&str> = detail["history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|e| e["event"].as_str())
        .collect();
    assert!(events.starts_with(&["firing"]), "{events:?}");
    assert!(
        events.contains(&"notified") && events.contains(&"resolved"),
        "{events:?}"
    );
    let hook = wait_for(Duration::from_secs(20), || async {
        let c = f.get("/v1/namespaces/acme/notificationchannels/hook").await;
        (c["status"]["delivered"].as_u64() >= Some(2)).then_some(c)
    })
    .await;
    assert!(
        hook.is_some(),
        "hook channel status never counted 2 deliveries"
    );
    // The hanging receiver got its requests too, and is retried, never blocking /hook.
    assert!(f.receiver.requests().iter().any(|r| r.path == "/slow"));
    drop(f.tmp);
}

/// A silence holds back exactly the alerts it matches, a Device in a maintenance window
/// is recorded but not notified, an acknowledgement stops repeats (and unacknowledging
/// resumes them), and a Device that is offline has its other alerts inhibited.
#[tokio::test]
async fn silences_acks_maintenance_and_inhibition_hold_back_only_what_they_should() {
    let f = Fixture::start("2s").await;
    let a = JwtAgent::enroll(&f.operator, &f.enroll, "acme", "a-01").await;
    let b = JwtAgent::enroll(&f.operator, &f.enroll, "acme", "b-01").await;
    let m = JwtAgent::enroll(&f.operator, &f.enroll, "acme", "maint-01").await;

    let ends = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3600);
    let (status, silence) = f
        .post(
            "/v1/namespaces/acme/silences",
            json!({"matchers": [{"label": "device", "value": "a-*"}], "endsAt": ends.to_string(), "comment": "patching a-01"}),
        )
        .await;
    assert_eq!(status, 201, "{silence}");
    // Refusals name the field.
    let (status, body) = f
        .post(
            "/v1/namespaces/acme/silences",
            json!({"matchers": [], "endsAt": ends.to_string()}),
        )
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("matchers")),
        "{body}"
    );

    // A Silence document committed beside the rules holds back the same way, is listed
    // with the API's silences, and cannot be ended through the API.
    let at =
        |hours: i64| (jiff::Timestamp::now() + jiff::SignedDuration::from_hours(hours)).to_string();
    std::fs::write(
        f.repo.join("silence.yaml"),
        format!(
            "apiVersion: rmm.cdot.io/v1alpha1\nkind: Silence\nmetadata: {{name: g-change, namespace: acme}}\nspec:\n  matchers: [{{label: device, value: g-01}}]\n  startsAt: \"{}\"\n  endsAt: \"{}\"\n  comment: change CHG-7\n",
            at(-1),
            at(1)
        ),
    )
    .expect("silence document");
    let listed = wait_for(Duration::from_secs(15), || async {
        let list = f.get("/v1/namespaces/acme/silences").await;
        list["items"]
            .as_array()?
            .iter()
            .find(|s| s["name"] == "g-change")
            .cloned()
    })
    .await
    .expect("the Silence document is listed");
    assert_eq!(listed["createdBy"], "manifests", "{listed}");
    let refused = f
        .client()
        .delete(format!(
            "{}/v1/namespaces/acme/silences/{}",
            f.operator.base,
            listed["id"].as_str().expect("id")
        ))
        .bearer_auth(&f.token)
        .send()
        .await
        .expect("delete");
    assert_eq!(refused.status().as_u16(), 409);
    let g = JwtAgent::enroll(&f.operator, &f.enroll, "acme", "g-01").await;
    // The alerting side takes the document with the rule set, a moment after the index.
    tokio::time::sleep(Duration::from_secs(1)).await;

    for agent in [&a, &m, &g] {
        assert_eq!(agent.send(now_ms(), &[("cpu", &[], 99.0)]).await, 200);
    }
    // b-01 keeps reporting (a silent device would be offline, and its repeats inhibited).
    let b = std::sync::Arc::new(b);
    let keep = b.clone();
    let reporting = tokio::spawn(async move {
        loop {
            keep.send(now_ms(), &[("cpu", &[], 99.0)]).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    f.wait_hook("firing for b-01", is("firing", "b-01", "cpu-high"))
        .await;
    // Repeats for b-01 every 2 s (checked every 5 s).
    f.wait_hook("repeat for b-01", is("repeat", "b-01", "cpu-high"))
        .await;
    for device in ["a-01", "g-01", "maint-01"] {
        let alert = f.alert_of(device, "cpu-high").await;
        assert_eq!(alert["state"], "firing", "{device}: {alert}");
        let id = alert["id"].as_str().expect("id");
        let detail = f.get(&format!("/v1/namespaces/acme/alerts/{id}")).await;
        let suppressed = detail["history"]
            .as_array()
            .expect("history")
            .iter()
            .find(|e| e["event"] == "suppressed")
            .unwrap_or_else(|| panic!("{device} not suppressed: {detail}"));
        let why = suppressed["detail"].as_str().unwrap_or_default();
        let expected = if device == "maint-01" {
            "maintenance window"
        } else {
            "silenced by"
        };
        assert!(why.contains(expected), "{device}: {why}");
    }
    assert!(
        !f.hooks()
            .iter()
            .any(|(_, v)| is("firing", "a-01", "cpu-high")(v)
                || is("firing", "g-01", "cpu-high")(v)
                || is("firing", "maint-01", "cpu-high")(v)),
        "a silenced or maintained device was notified: {:?}",
        f.hooks()
    );

    // Acknowledged: no more repeats.
    let alert = f.alert_of("b-01", "cpu-high").await;
    let id = alert["id"].as_str().expect("id").to_owned();
    let (status, body) = f
        .post(
            &format!("/v1/namespaces/acme/alerts/{id}/acknowledge"),
            json!({"comment": "on it"}),
        )
        .await;
    assert_eq!(status, 204, "{body}");
    let acked = f.get(&format!("/v1/namespaces/acme/alerts/{id}")).await;
    assert_eq!(acked["acknowledged"]["by"], "oncall");
    assert_eq!(acked["acknowledged"]["comment"], "on it");
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = f.hooks().len();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let repeats_after_ack: Vec<_> = f
        .hooks()
        .into_iter()
        .skip(before)
        .filter(|(_, v)| is("repeat", "b-01", "cpu-high")(v))
        .collect();
    assert!(
        repeats_after_ack.is_empty(),
        "repeats after the ack: {repeats_after_ack:?}"
    );
    let (status, _) = f
        .post(
            &format!("/v1/namespaces/acme/alerts/{id}/unacknowledge"),
            json!({}),
        )
        .await;
    assert_eq!(status, 204);
    let after_unack = f.hooks().len();
    let resumed = wait_for(Duration::from_secs(15), || async {
        f.hooks()
            .into_iter()
            .skip(after_unack)
            .any(|(_, v)| is("repeat", "b-01", "cpu-high")(&v))
            .then_some(())
    })
    .await;
    assert!(
        resumed.is_some(),
        "repeats did not resume after unacknowledge"
    );
    reporting.abort();

    // Inhibition: b-01 goes silent, is offline, and its next breach is held back.
    let r = JwtAgent::enroll(&f.operator, &f.enroll, "acme", "r-01").await;
    assert_eq!(r.send(now_ms(), &[("cpu", &[], 10.0)]).await, 200);
    f.wait_hook("deviceOffline for r-01", is("firing", "r-01", "offline"))
        .await;
    assert_eq!(r.send(now_ms(), &[("cpu", &[], 99.0)]).await, 200);
    let cpu = wait_for(Duration::from_secs(10), || async {
        let a = f.alert_of("r-01", "cpu-high").await;
        (a["state"] == "firing").then_some(a)
    })
    .await
    .expect("cpu alert of r-01");
    let detail = f
        .get(&format!(
            "/v1/namespaces/acme/alerts/{}",
            cpu["id"].as_str().expect("id")
        ))
        .await;
    assert!(
        detail["history"]
            .as_array()
            .expect("history")
            .iter()
            .any(|e| e["detail"]
                .as_str()
                .is_some_and(|d| d.contains("inhibited"))),
        "{detail}"
    );
    assert!(
        !f.hooks()
            .iter()
            .any(|(_, v)| is("firing", "r-01", "cpu-high")(v))
    );
}

/// The receiver answers 503 for five minutes, and the operator is killed (`kill -9`)
/// meanwhile: once the receiver is back every notification arrives, none is lost, and a
/// notification delivered more than once carries the same idempotency key every time.
#[tokio::test]
async fn notifications_survive_a_receiver_outage_and_a_kill_9() {
    // Five minutes by default; `CDOT_TEST_OUTAGE_SECS` shortens it while working on this.
    let outage = Duration::from_secs(
        std::env::var("CDOT_TEST_OUTAGE_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(300),
    );
    let mut f = Fixture::start("0s").await;
    let down = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let flag = down.clone();
    f.receiver.reply_with(move |_| {
        if flag.load(std::sync::atomic::Ordering::SeqCst) {
            Reply::status(503)
        } else {
            Reply::status(200)
        }
    });
    let started = Instant::now();
    let agents = [
        JwtAgent::enroll(&f.operator, &f.enroll, "acme", "k-01").await,
        JwtAgent::enroll(&f.operator, &f.enroll, "acme", "k-02").await,
    ];
    assert_eq!(agents[0].send(now_ms(), &[("cpu", &[], 99.0)]).await, 200);
    // Attempts fail while the receiver is down.
    let tried = wait_for(Duration::from_secs(20), || async {
        (f.receiver
            .requests()
            .iter()
            .filter(|r| r.path == "/hook")
            .count()
            >= 2)
            .then_some(())
    })
    .await;
    assert!(
        tried.is_some(),
        "no attempt reached the receiver:\n{}",
        f.operator.logs()
    );

    let ports = f.operator.ports();
    f.operator.kill();
    let args: Vec<&str> = f.extra.iter().map(String::as_str).collect();
    f.operator = Operator::start_at(ports, &[&f.repo], Some(&f.db.url), &args, f.tmp.path()).await;
    // After the restart: a second alert, and the first resolves.
    assert_eq!(agents[1].send(now_ms(), &[("cpu", &[], 99.0)]).await, 200);
    assert_eq!(agents[0].send(now_ms(), &[("cpu", &[], 10.0)]).await, 200);

    tokio::time::sleep(outage.saturating_sub(started.elapsed())).await;
    down.store(false, std::sync::atomic::Ordering::SeqCst);
    let expected = [("firing", "k-01"), ("resolved", "k-01"), ("firing", "k-02")];
    let delivered = wait_for(Duration::from_secs(60), || async {
        let ok: Vec<(String, Value)> = f
            .receiver
            .requests()
            .into_iter()
            .filter(|r| r.path == "/hook")
            .map(|r| {
                (
                    r.header("idempotency-key").unwrap_or_default().to_owned(),
                    r.json(),
                )
            })
            .collect();
        expected
            .iter()
            .all(|(k, d)| ok.iter().any(|(_, v)| is(k, d, "cpu-high")(v)))
            .then_some(ok)
    })
    .await;
    let all = delivered.unwrap_or_else(|| {
        panic!(
            "not every notification arrived: {:?}\n{}",
            f.hooks(),
            f.operator.logs()
        )
    });
    // Every attempt of one notification carries one key; different notifications differ.
    let mut keys: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
        Default::default();
    for (key, v) in all.iter().filter(|(_, v)| v["rule"] == "cpu-high") {
        let what = format!("{}:{}", v["kind"], v["alerts"][0]["device"]);
        keys.entry(what).or_default().insert(key.clone());
    }
    for (what, k) in &keys {
        assert_eq!(k.len(), 1, "{what} was sent with different keys: {k:?}");
    }
    assert_eq!(keys.len(), 3, "{keys:?}");
    let distinct: std::collections::BTreeSet<_> = keys.values().flatten().collect();
    assert_eq!(distinct.len(), 3);
}

/// Rules with unknown metrics, templates naming unknown variables, a resolve threshold on
/// the wrong side, and channels naming Secrets the manifests do not hold are refused, each
/// with its field path, and the whole change set with them.
#[test]
fn bad_rules_and_channels_are_refused_with_field_paths() {
    let tmp = tempfile::tempdir().expect("tmp");
    std::fs::write(
        tmp.path().join("bad.yaml"),
        r#"apiVersion: rmm.cdot.io/v1alpha1
kind: AlertRule
metadata: {name: unknown-metric, namespace: acme}
spec: {metric: temperature, condition: {threshold: 1}}
---
apiVersion: rmm.cdot.io/v1alpha1
kind: AlertRule
metadata: {name: bad-template, namespace: acme}
spec: {metric: cpu, condition: {threshold: 1}, summary: "{{ devise }} is hot"}
---
apiVersion: rmm.cdot.io/v1alpha1
kind: AlertRule
metadata: {name: wrong-side, namespace: acme}
spec: {metric: cpu, condition: {op: ">", threshold: 90}, resolve: {threshold: 95}}
---
apiVersion: rmm.cdot.io/v1alpha1
kind: NotificationChannel
metadata: {name: no-secret, namespace: acme}
spec: {type: Webhook, webhook: {urlSecretRef: {name: slack, key: url}}}
---
apiVersion: rmm.cdot.io/v1alpha1
kind: NotificationChannel
metadata: {name: no-key, namespace: acme}
spec: {type: Sms, sms: {providerUrl: "https://sms.example/send", to: ["+447700900123"], credentialsSecretRef: {name: sms}}}
---
apiVersion: v1
kind: Secret
metadata: {name: other, namespace: acme}
stringData: {url: "https://example.com"}
"#,
    )
    .expect("write");
    let files = cdot_operator::source::directory::ManifestFiles::read(
        &[tmp.path().to_path_buf()],
        cdot_operator::source::directory::ReadLimits::default(),
    );
    let errors = files.parse("rmm-system").expect_err("refused");
    let paths: Vec<(String, String)> = errors
        .iter()
        .map(|e| {
            (
                e.object.clone().unwrap_or_default(),
                e.path.clone().unwrap_or_default(),
            )
        })
        .collect();
    for (object, path) in [
        ("AlertRule acme/unknown-metric", "spec.metric"),
        ("AlertRule acme/bad-template", "spec.summary"),
        ("AlertRule acme/wrong-side", "spec.resolve.threshold"),
        (
            "NotificationChannel acme/no-secret",
            "spec.webhook.urlSecretRef",
        ),
        (
            "NotificationChannel acme/no-key",
            "spec.sms.credentialsSecretRef",
        ),
    ] {
        assert!(
            paths.iter().any(|(o, p)| o == object && p == path),
            "no error for {object} at {path}: {errors:?}"
        );
    }
    let template = errors
        .iter()
        .find(|e| e.path.as_deref() == Some("spec.summary"))
        .expect("template error");
    assert!(template.message.contains("devise"), "{}", template.message);
}
