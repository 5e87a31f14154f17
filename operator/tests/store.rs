//! The store against a real PostgreSQL: change sets, generations, pruning and status merges.
mod support;

use std::collections::BTreeMap;

use cdot_crds::kind::Kind;
use cdot_operator::store::{DesiredObject, StatusPatch, Store, heartbeats::Heartbeat};
use serde_json::json;
use support::TestDb;

fn device(name: &str, display: &str) -> DesiredObject {
    DesiredObject {
        kind: Kind::Device,
        namespace: "acme".into(),
        name: name.into(),
        labels: BTreeMap::from([("role".into(), "web".into())]),
        annotations: BTreeMap::new(),
        spec: json!({ "class": "Server", "displayName": display }),
        source: "acme/devices.yaml#1".into(),
    }
}

async fn store() -> (TestDb, Store) {
    let db = TestDb::create().await;
    let store = Store::connect(&db.url, 4)
        .await
        .expect("connect and migrate");
    (db, store)
}

#[tokio::test]
async fn change_sets_create_update_and_prune() {
    let (_db, store) = store().await;
    let summary = store
        .apply_manifests(&[device("a", "A"), device("b", "B")], &[], &[], "f1")
        .await
        .expect("apply");
    assert_eq!(
        (summary.created, summary.updated, summary.deleted),
        (2, 0, 0)
    );

    // Re-applying the same set changes nothing, not even resourceVersion.
    let before = store
        .get_object("acme", Kind::Device, "a")
        .await
        .expect("get")
        .expect("a");
    let summary = store
        .apply_manifests(&[device("a", "A"), device("b", "B")], &[], &[], "f1")
        .await
        .expect("apply");
    assert!(summary.is_empty(), "{summary:?}");
    let after = store
        .get_object("acme", Kind::Device, "a")
        .await
        .expect("get")
        .expect("a");
    assert_eq!(before.resource_version, after.resource_version);

    // A spec change bumps the generation; a label change does not.
    let mut relabelled = device("b", "B");
    relabelled.labels.insert("role".into(), "db".into());
    let summary = store
        .apply_manifests(&[device("a", "A2"), relabelled], &[], &[], "f2")
        .await
        .expect("apply");
    assert_eq!(summary.updated, 2);
    assert_eq!(
        store
            .get_object("acme", Kind::Device, "a")
            .await
            .expect("get")
            .expect("a")
            .generation,
        2
    );
    let b = store
        .get_object("acme", Kind::Device, "b")
        .await
        .expect("get")
        .expect("b");
    assert_eq!((b.generation, b.labels["role"].as_str()), (1, "db"));

    // Pruning removes what the set no longer has, but never objects another writer manages.
    sqlx::query(
        "INSERT INTO objects (namespace, kind, name, uid, spec, managed_by) VALUES ('acme', 'Device', 'enrolled', gen_random_uuid(), '{}', 'agent')",
    )
    .execute(store.pool())
    .await
    .expect("insert");
    let summary = store
        .apply_manifests(&[device("a", "A2")], &[], &[], "f3")
        .await
        .expect("apply");
    assert_eq!(summary.deleted, 1);
    let names: Vec<String> = store
        .list_objects("acme", Kind::Device)
        .await
        .expect("list")
        .into_iter()
        .map(|o| o.name)
        .collect();
    assert_eq!(names, ["a", "enrolled"]);
    assert_eq!(
        store
            .last_applied_fingerprint()
            .await
            .expect("fingerprint")
            .as_deref(),
        Some("f3")
    );
}

#[tokio::test]
async fn status_patches_merge_and_skip_no_ops() {
    let (_db, store) = store().await;
    store
        .apply_manifests(&[device("a", "A")], &[], &[], "f1")
        .await
        .expect("apply");
    sqlx::query("UPDATE objects SET status = '{\"agent\": {\"id\": \"x\"}}'")
        .execute(store.pool())
        .await
        .expect("seed");
    let patch = StatusPatch {
        kind: Kind::Device,
        namespace: "acme".into(),
        name: "a".into(),
        status: json!({ "observedGeneration": 1 }),
    };
    assert_eq!(
        store
            .patch_statuses(std::slice::from_ref(&patch))
            .await
            .expect("patch"),
        1
    );
    let a = store
        .get_object("acme", Kind::Device, "a")
        .await
        .expect("get")
        .expect("a");
    assert_eq!(
        a.status,
        json!({ "agent": { "id": "x" }, "observedGeneration": 1 }),
        "the reconciler's patch overwrote another writer's field"
    );
    assert_eq!(
        store.patch_statuses(&[patch]).await.expect("patch"),
        0,
        "an unchanged status was rewritten"
    );
}

#[tokio::test]
async fn heartbeats_merge_into_device_status_and_never_move_back() {
    let (_db, store) = store().await;
    store
        .apply_manifests(&[device("web-01", "Web")], &[], &[], "f1")
        .await
        .expect("apply");
    let uid = store
        .get_object("acme", Kind::Device, "web-01")
        .await
        .expect("read")
        .expect("exists")
        .uid;
    let beat = |seen_ms: i64, metrics: Option<serde_json::Value>| Heartbeat {
        device_uid: uid,
        agent_version: "0.2.0".into(),
        last_seen_ms: seen_ms,
        last_metrics: metrics,
        report_interval_secs: None,
    };
    let t = 1_764_064_800_000; // 2025-11-25T10:00:00Z
    store
        .record_heartbeats(&[beat(t, Some(json!({ "at": "x", "cpuPercent": 5.0 })))])
        .await
        .expect("record");
    // A replayed, older report neither moves lastSeen back nor erases the summary.
    store
        .record_heartbeats(&[beat(t - 60_000, None)])
        .await
        .expect("record again");
    let status = store
        .get_object("acme", Kind::Device, "web-01")
        .await
        .expect("read")
        .expect("exists")
        .status;
    assert_eq!(status["agent"]["lastSeen"], "2025-11-25T10:00:00Z");
    assert_eq!(status["agent"]["version"], "0.2.0");
    assert_eq!(status["agent"]["id"], uid.to_string());
    assert_eq!(status["lastMetrics"]["cpuPercent"], 5.0);
    let liveness = store.device_liveness().await.expect("liveness");
    assert_eq!(liveness.len(), 1);
    assert_eq!(
        liveness[0].last_seen.as_deref(),
        Some("2025-11-25T10:00:00Z")
    );

    // The heartbeat goes with its device.
    store
        .apply_manifests(&[], &[], &[], "f2")
        .await
        .expect("prune");
    assert_eq!(store.prune_heartbeats().await.expect("prune"), 1);
}

/// Where a restarted automation engine picks its schedules up: the newest cron time of each
/// Schedule workflow's runs, not of its manual ones.
#[tokio::test]
async fn the_newest_scheduled_run_of_each_workflow_is_found() {
    use cdot_crds::{
        wire::automation::{Event, RunState},
        workflow::TriggerType,
    };
    use cdot_operator::automation::store::{NewRun, insert_run};
    let (_db, store) = store().await;
    let run = |workflow: &str, trigger: TriggerType, at: &str| NewRun {
        id: uuid::Uuid::new_v4(),
        namespace: "acme".into(),
        workflow: workflow.into(),
        generation: 1,
        spec: json!({}),
        event: Event {
            type_: Some(trigger),
            at: Some(at.into()),
            ..Event::default()
        },
        trigger,
        started_by: "trigger".into(),
        state: RunState::Succeeded,
        waiting_for: None,
        dedup_key: Some(format!("{trigger:?}:{at}")),
        lanes: Vec::new(),
    };
    let now: jiff::Timestamp = "2026-12-07T12:00:00Z".parse().expect("now");
    let mut tx = store.pool().begin().await.expect("begin");
    for r in [
        run("nightly", TriggerType::Schedule, "2026-12-06T03:00:00Z"),
        run("nightly", TriggerType::Schedule, "2026-12-07T03:00:00Z"),
        run("nightly", TriggerType::Manual, "2026-12-07T11:00:00Z"),
        run("hourly", TriggerType::Schedule, "2026-12-07T11:00:00Z"),
    ] {
        assert!(insert_run(&mut tx, &r, now).await.expect("insert"));
    }
    tx.commit().await.expect("commit");
    let last = store.last_schedule_times().await.expect("read");
    let at = |s: &str| s.parse::<jiff::Timestamp>().expect("time");
    assert_eq!(
        last,
        std::collections::HashMap::from([
            (
                ("acme".into(), "nightly".into()),
                at("2026-12-07T03:00:00Z")
            ),
            (("acme".into(), "hourly".into()), at("2026-12-07T11:00:00Z")),
        ])
    );
}
