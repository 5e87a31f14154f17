//! Backtest end to end: two days of samples written the way the ingest path writes them,
//! folded by the real minute and hour folds, and a rule replayed over them through the
//! running operator's API and its `rules backtest` command.
mod support;

use std::{collections::BTreeMap, path::Path, process::Command};

use cdot_operator::store::{
    Store,
    timeseries::{BatchRows, HOUR_MS, MINUTE_MS, SeriesKey},
};
use serde_json::{Value, json};
use support::{Operator, TestDb, create_token, operator_bin};
use uuid::Uuid;

const DAY_MS: i64 = 24 * HOUR_MS;

const RULE: &str = r#"apiVersion: rmm.cdot.io/v1alpha1
kind: AlertRule
metadata: {name: cpu-high, namespace: acme}
spec:
  selector: {matchLabels: {role: server}}
  metric: cpu
  reduce: {function: avg, window: 5m}
  condition: {op: ">", threshold: 90}
  for: 5m
  resolve: {threshold: 70, for: 2m}
  repeatInterval: 4h
  severity: Critical
  channels: [hook]
"#;

fn manifests(dir: &Path) {
    let yaml = r#"apiVersion: rmm.cdot.io/v1alpha1
kind: NotificationChannel
metadata: {name: hook, namespace: acme}
spec:
  type: Webhook
  sendResolved: true
  webhook: {url: "http://127.0.0.1:9/hook"}
---
apiVersion: rmm.cdot.io/v1alpha1
kind: Device
metadata: {name: web-01, namespace: acme, labels: {role: server}}
spec: {class: Server}
---
apiVersion: rmm.cdot.io/v1alpha1
kind: Device
metadata: {name: web-02, namespace: acme, labels: {role: server}}
spec: {class: Server}
---
apiVersion: rmm.cdot.io/v1alpha1
kind: Device
metadata: {name: db-01, namespace: acme, labels: {role: database}}
spec: {class: Server}
"#;
    std::fs::create_dir_all(dir).expect("mkdir");
    std::fs::write(dir.join("acme.yaml"), yaml).expect("write");
}

/// CPU of each device for each minute from `t0`: web-01 idles at 20 with one incident
/// (40 minutes at 97) and one spike too short to fire (6 minutes at 99); web-02 runs hot
/// (95) for the whole second day; db-01 is always at 99 but the rule does not select it.
fn cpu(device: &str, minute: i64) -> f64 {
    match device {
        "web-01" if (600..640).contains(&minute) => 97.0,
        "web-01" if (1620..1626).contains(&minute) => 99.0,
        "web-02" if minute >= 1440 => 95.0,
        "db-01" => 99.0,
        _ => 20.0,
    }
}

async fn device_uid(store: &Store, name: &str) -> Uuid {
    sqlx::query_scalar(
        "SELECT uid FROM objects WHERE kind = 'Device' AND namespace = 'acme' AND name = $1",
    )
    .bind(name)
    .fetch_one(store.pool())
    .await
    .expect("device uid")
}

/// Writes `minutes` minutes of samples from `t0` (two per minute, plus a memory series
/// the rule must not read) and folds them into the minute and hour tiers.
async fn write_history(store: &Store, t0: i64, minutes: i64) {
    for name in ["web-01", "web-02", "db-01"] {
        let device = device_uid(store, name).await;
        let keys = ["cpu", "memory"].map(|metric| SeriesKey {
            device_uid: device,
            metric,
            labels: BTreeMap::new(),
        });
        let ids = store.resolve_series(&keys).await.expect("series");
        // An hour a batch, as a spooled agent sends it after an outage.
        for hour in 0..(minutes + 59) / 60 {
            let (mut series, mut times, mut values) = (Vec::new(), Vec::new(), Vec::new());
            for m in (hour * 60)..((hour + 1) * 60).min(minutes) {
                for half in [10_000, 40_000] {
                    let t = t0 + m * MINUTE_MS + half;
                    series.extend([ids[0], ids[1]]);
                    times.extend([t, t]);
                    values.extend([cpu(name, m), 50.0]);
                }
            }
            let batch = BatchRows {
                device_uid: device,
                batch_id: Uuid::new_v4(),
                series_ids: &series,
                times_ms: &times,
                values: &values,
            };
            store
                .write_batches(&[batch], jiff::Timestamp::now().as_millisecond())
                .await
                .expect("write");
        }
    }
    // The running operator folds too; these calls only make it happen now.
    let now = jiff::Timestamp::now().as_millisecond();
    loop {
        let minutes = store
            .fold_rollups(now, 10, 500)
            .await
            .expect("fold minutes");
        let hours = store
            .fold_hours(std::time::Duration::from_secs(5))
            .await
            .expect("fold hours");
        let dirty: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM metric_rollup_dirty) + (SELECT count(*) FROM metric_rollup_1h_dirty)",
        )
        .fetch_one(store.pool())
        .await
        .expect("dirty");
        if !minutes.more && !hours.more && dirty == 0 {
            break;
        }
    }
}

fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .expect("time")
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

async fn backtest(operator: &Operator, token: &str, body: &Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!(
            "{}/v1/namespaces/acme/alertrules:backtest",
            operator.base
        ))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .expect("backtest request");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

/// The rule as a JSON document (what the CLI sends).
fn rule_document() -> Value {
    cdot_crds::manifest::split_documents(RULE)
        .expect("rule yaml")
        .remove(0)
}

#[tokio::test]
async fn a_rule_replays_over_stored_minutes_and_reports_episodes_and_notifications() {
    let db = TestDb::create().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let manifests_dir = dir.path().join("manifests");
    manifests(&manifests_dir);
    let token = create_token(&manifests_dir, "viewer", "cdot-system", "viewer", "acme");
    let operator = Operator::start(&[&manifests_dir], Some(&db.url), &[], dir.path()).await;
    let store = Store::connect(&db.url, 4).await.expect("store");

    // Two whole days, ending at least an hour ago (so every hour of it is foldable).
    let now = jiff::Timestamp::now().as_millisecond();
    let t0 = (now - 2 * DAY_MS - 2 * HOUR_MS).div_euclid(HOUR_MS) * HOUR_MS;
    write_history(&store, t0, 2 * 1440).await;
    let (from, to) = (t0, t0 + 2 * DAY_MS);

    let (status, report) = backtest(
        &operator,
        &token,
        &json!({"rule": rule_document(), "from": rfc3339(from), "to": rfc3339(to)}),
    )
    .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["devices"], 2, "db-01 is not selected: {report}");
    assert_eq!(report["series"], 2, "cpu only, not memory: {report}");
    let totals = &report["totals"];
    assert_eq!(totals["fired"], 2, "{report}");
    assert_eq!(totals["pendingOnly"], 1, "the 6-minute spike: {report}");
    assert_eq!(totals["openAtEnd"], 1, "web-02 is still hot: {report}");
    assert_eq!(totals["devicesFired"], 2);
    let episodes = report["episodes"].as_array().expect("episodes");
    let at = |m: i64| rfc3339(t0 + m * MINUTE_MS);
    // web-01: the 5-minute average crosses 90 when the window is all 97 (minute 604 ends
    // at 605), fires 5 minutes later, drops to 66 at 642 and resolves 2 minutes later.
    let incident = episodes
        .iter()
        .find(|e| e["device"] == "web-01" && e["firedAt"].is_string())
        .expect("web-01 fired");
    assert_eq!(incident["startedAt"], at(605));
    assert_eq!(incident["firedAt"], at(610));
    assert_eq!(incident["resolvedAt"], at(644));
    assert_eq!(incident["peak"], 97.0);
    assert_eq!(incident["notifications"], 2, "firing and resolved");
    let spike = episodes
        .iter()
        .find(|e| e["device"] == "web-01" && e["firedAt"].is_null())
        .expect("the spike");
    assert_eq!(spike["startedAt"], at(1625));
    // web-02: fires at 1450 minutes and is open 1430 minutes later: 5 repeats of 4 hours.
    let hot = episodes
        .iter()
        .find(|e| e["device"] == "web-02")
        .expect("web-02 fired");
    assert_eq!(hot["firedAt"], at(1450));
    assert!(hot["resolvedAt"].is_null());
    assert_eq!(hot["notifications"], 1 + 5);
    assert_eq!(totals["notifications"], 2 + 6);
    // The hour tier ruled out most of the two days: web-01 needs its two incident hours
    // with a window around each, web-02 its second day.
    let replayed = report["minutesReplayed"].as_u64().expect("minutes");
    assert!(
        replayed < 2 * 2880 * 3 / 5,
        "{replayed} minutes replayed of {}",
        2 * 2880
    );

    // A rule still in review: another threshold, and paused (replayed anyway, and said so).
    let mut lower = rule_document();
    lower["spec"]["condition"]["threshold"] = json!(50);
    lower["spec"]["resolve"] = json!({"threshold": 30});
    lower["spec"]["paused"] = json!(true);
    lower["metadata"]
        .as_object_mut()
        .expect("metadata")
        .remove("namespace");
    let (status, report) = backtest(
        &operator,
        &token,
        &json!({"rule": lower, "from": rfc3339(from), "to": rfc3339(to)}),
    )
    .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        report["totals"]["fired"], 3,
        "the spike fires too: {report}"
    );
    assert!(
        report["caveats"]
            .as_array()
            .expect("caveats")
            .iter()
            .any(|c| c.as_str().is_some_and(|c| c.contains("paused"))),
        "{report}"
    );

    // Refusals name the field.
    let mut bad = rule_document();
    bad["spec"]["summary"] = json!("{{ cpu_value }}");
    bad["spec"]["metric"] = json!("cpuTemperature");
    let (status, error) = backtest(
        &operator,
        &token,
        &json!({"rule": bad, "from": rfc3339(from)}),
    )
    .await;
    assert_eq!(status, 422, "{error}");
    assert_eq!(error["field"], "rule.spec.metric", "{error}");
    let (status, error) = backtest(
        &operator,
        &token,
        &json!({"rule": rule_document(), "from": rfc3339(to), "to": rfc3339(from)}),
    )
    .await;
    assert_eq!(
        (status, error["field"].as_str()),
        (400, Some("from")),
        "{error}"
    );
    let (status, _) = backtest(
        &operator,
        "cdot_wrong",
        &json!({"rule": rule_document(), "from": rfc3339(from)}),
    )
    .await;
    assert_eq!(status, 401);

    // The command a platform team runs on a pull request, with the rule file as committed.
    let file = dir.path().join("cpu-high.yaml");
    // With a rule a backtest cannot replay beside it: passed over, said so, not a failure.
    let offline = "---\napiVersion: rmm.cdot.io/v1alpha1\nkind: AlertRule\nmetadata: {name: offline, namespace: acme}\nspec: {metric: deviceOffline, condition: {op: \">=\", threshold: 1}}\n";
    std::fs::write(&file, format!("{RULE}{offline}")).expect("rule file");
    let run = |output: &str| {
        Command::new(operator_bin())
            .args(["rules", "backtest"])
            .arg(&file)
            .args([
                "--api",
                &operator.base,
                "--token",
                &token,
                "--from",
                &rfc3339(from),
            ])
            .args(["--to", &rfc3339(to), "--output", output])
            .output()
            .expect("run rules backtest")
    };
    let text = run("text");
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&text.stderr)
    );
    assert!(
        stdout.contains("would have fired 2 times on 2 devices"),
        "{stdout}"
    );
    assert!(stdout.contains(&at(610)), "{stdout}");
    assert!(
        String::from_utf8_lossy(&text.stderr).contains("AlertRule acme/offline: not replayed"),
        "{}",
        String::from_utf8_lossy(&text.stderr)
    );
    let json_out = run("json");
    let reports: Value = serde_json::from_slice(&json_out.stdout).expect("json output");
    assert_eq!(reports[0]["totals"]["fired"], 2);
}
