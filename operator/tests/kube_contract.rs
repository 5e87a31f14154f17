//! Reconciler contract tests: every request a kind's controller makes to the API server for
//! one representative object, checked in order against a `tower_test` mock standing in for
//! the API server (the `ApiServerVerifier` pattern of kube-rs's controller-rs). They prove
//! what the operator sends (the exact status patch, finalizer patches, Events), not how an
//! API server answers; the store behind them is a real PostgreSQL database.
mod support;

use std::{sync::Arc, time::Duration};

use cdot_crds::kind::Kind;
use cdot_operator::{
    kubernetes::{
        api_resource,
        controller::{FINALIZER, KindContext, Shared, reconcile_object},
    },
    metrics::Metrics,
    store::Store,
};
use http::{Request, Response};
use kube::{Api, Client, api::DynamicObject, client::Body, runtime::controller::Action};
use serde_json::{Value, json};
use support::TestDb;
use tower_test::mock::{self, Handle};

type ApiServer = Handle<Request<Body>, Response<Body>>;

const RESYNC: Duration = Duration::from_secs(600);

/// What the mock API server received.
struct Received {
    method: String,
    path: String,
    body: Value,
}

/// Takes the next request, answers it with `reply` and returns it.
async fn next(server: &mut ApiServer, reply: Value) -> Received {
    let (request, respond) = tokio::time::timeout(Duration::from_secs(10), server.next_request())
        .await
        .expect("the controller sent no further request within 10 s")
        .expect("the client was dropped");
    let method = request.method().to_string();
    let path = request.uri().path().to_owned();
    let bytes = request
        .into_body()
        .collect_bytes()
        .await
        .expect("read the request body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).expect("a JSON request body")
    };
    respond.send_response(
        Response::builder()
            .body(Body::from(serde_json::to_vec(&reply).expect("reply")))
            .expect("response"),
    );
    Received { method, path, body }
}

struct Harness {
    _db: TestDb,
    store: Store,
    server: ApiServer,
    client: Client,
}

impl Harness {
    async fn new() -> Self {
        let db = TestDb::create().await;
        let store = Store::connect(&db.url, 4)
            .await
            .expect("connect and migrate");
        let (service, server) = mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "default");
        Self {
            _db: db,
            store,
            server,
            client,
        }
    }

    /// Starts one reconcile of `object` as the controller of `kind` would.
    fn reconcile(
        &self,
        kind: Kind,
        object: Value,
    ) -> tokio::task::JoinHandle<Result<Action, cdot_operator::kubernetes::controller::Error>> {
        let context = Arc::new(KindContext {
            kind,
            api: Api::all_with(self.client.clone(), &api_resource(kind)),
            shared: Arc::new(Shared::new(
                self.client.clone(),
                self.store.clone(),
                Arc::new(Metrics::default()),
                "contract-test",
                RESYNC,
            )),
        });
        let object: DynamicObject = serde_json::from_value(object).expect("object");
        tokio::spawn(reconcile_object(Arc::new(object), context))
    }
}

/// The spec of the first object of `kind` in examples/acme: a representative, valid spec.
fn example(kind: Kind) -> Value {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/acme");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("examples/acme")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read example");
        for document in cdot_crds::manifest::split_documents_indexed(&text).expect("split") {
            if document.value["kind"] == kind.as_str() {
                return document.value["spec"].clone();
            }
        }
    }
    panic!("no {kind} in examples/acme")
}

fn object(kind: Kind, name: &str, spec: Value, finalizers: &[&str]) -> Value {
    json!({
        "apiVersion": "rmm.cdot.io/v1alpha1",
        "kind": kind.as_str(),
        "metadata": {
            "name": name,
            "namespace": "acme",
            "uid": "6f1c1f4e-5d8b-4c1e-9a51-0a3f0d7c1b01",
            "generation": 2,
            "resourceVersion": "17",
            "finalizers": finalizers,
        },
        "spec": spec,
    })
}

/// The status patch with every `lastTransitionTime` (the reconcile's clock) blanked.
fn without_times(mut body: Value) -> Value {
    if let Some(conditions) = body["status"]["conditions"].as_array_mut() {
        for condition in conditions {
            condition["lastTransitionTime"] = json!("T");
        }
    }
    body
}

fn condition(type_: &str, status: &str, reason: &str, message: &str) -> Value {
    json!({ "type": type_, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": "T", "observedGeneration": 2 })
}

fn valid() -> Value {
    condition("Degraded", "False", "Valid", "the spec passed validation")
}

fn reconciled() -> Value {
    condition(
        "Reconciling",
        "False",
        "Reconciled",
        "generation 2 is reconciled",
    )
}

fn path(kind: Kind, name: &str) -> String {
    format!(
        "/apis/rmm.cdot.io/v1alpha1/namespaces/acme/{}/{name}",
        kind.plural()
    )
}

#[tokio::test]
async fn a_new_device_first_gets_the_finalizer() {
    let mut h = Harness::new().await;
    let device = object(Kind::Device, "web-01", json!({ "class": "Server" }), &[]);
    let task = h.reconcile(Kind::Device, device.clone());

    let mut with_finalizer = device.clone();
    with_finalizer["metadata"]["finalizers"] = json!([FINALIZER]);
    let patch = next(&mut h.server, with_finalizer).await;
    assert_eq!(
        (patch.method.as_str(), patch.path.as_str()),
        ("PATCH", path(Kind::Device, "web-01").as_str())
    );
    assert_eq!(
        patch.body,
        json!([
            { "op": "test", "path": "/metadata/finalizers", "value": null },
            { "op": "add", "path": "/metadata/finalizers", "value": [FINALIZER] },
        ])
    );
    let action = task.await.expect("task").expect("reconcile");
    assert_eq!(
        action,
        Action::await_change(),
        "the patch itself wakes the next reconcile"
    );
}

#[tokio::test]
async fn a_device_with_the_finalizer_gets_its_status_through_the_subresource() {
    let mut h = Harness::new().await;
    let device = object(
        Kind::Device,
        "web-01",
        json!({ "class": "Server" }),
        &[FINALIZER],
    );
    let task = h.reconcile(Kind::Device, device.clone());

    let patch = next(&mut h.server, device).await;
    assert_eq!(
        (patch.method.as_str(), patch.path.as_str()),
        (
            "PATCH",
            format!("{}/status", path(Kind::Device, "web-01")).as_str()
        )
    );
    assert_eq!(
        without_times(patch.body),
        json!({ "status": {
            "source": "Manual",
            "observedGeneration": 2,
            "conditions": [
                condition("Ready", "False", "NotReporting", "no agent or collector has reported for this device yet"),
                valid(),
                condition("Enrolled", "False", "NotEnrolled", "no agent has enrolled as this device"),
                reconciled(),
            ],
        }})
    );
    let action = task.await.expect("task").expect("reconcile");
    assert!(
        action != Action::await_change(),
        "requeued for the resync: {action:?}"
    );

    // The store mirrors the object under the API server's uid and generation.
    let stored = h
        .store
        .get_object("acme", Kind::Device, "web-01")
        .await
        .expect("read")
        .expect("mirrored");
    assert_eq!(
        stored.uid.to_string(),
        "6f1c1f4e-5d8b-4c1e-9a51-0a3f0d7c1b01"
    );
    assert_eq!(
        (
            stored.generation,
            stored.status["observedGeneration"].clone()
        ),
        (2, json!(2))
    );
}

#[tokio::test]
async fn an_unchanged_status_is_not_written_again() {
    let mut h = Harness::new().await;
    let mut device = object(
        Kind::NotificationChannel,
        "ops",
        example(Kind::NotificationChannel),
        &[],
    );
    let task = h.reconcile(Kind::NotificationChannel, device.clone());
    let patch = next(&mut h.server, device.clone()).await;
    task.await.expect("task").expect("reconcile");

    // The API server now holds that status; the next reconcile sends nothing.
    device["status"] = patch.body["status"].clone();
    let task = h.reconcile(Kind::NotificationChannel, device);
    task.await.expect("task").expect("reconcile");
    assert!(
        tokio::time::timeout(Duration::from_millis(200), h.server.next_request())
            .await
            .is_err(),
        "a reconcile with nothing to change made a request"
    );
}

#[tokio::test]
async fn an_invalid_alert_rule_is_degraded_and_gets_a_warning_event() {
    let mut h = Harness::new().await;
    let mut spec = example(Kind::AlertRule);
    spec["reduce"]["window"] = json!("soon");
    let rule = object(Kind::AlertRule, "cpu-high", spec, &[]);
    let task = h.reconcile(Kind::AlertRule, rule.clone());

    let patch = next(&mut h.server, rule).await;
    assert_eq!(
        patch.path,
        format!("{}/status", path(Kind::AlertRule, "cpu-high"))
    );
    let status = &patch.body["status"];
    assert_eq!(status["observedGeneration"], 2);
    let degraded = status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Degraded"))
        .expect("Degraded condition");
    assert_eq!(
        (&degraded["status"], &degraded["reason"]),
        (&json!("True"), &json!("ValidationFailed"))
    );
    let message = degraded["message"].as_str().expect("message").to_owned();
    assert!(message.contains("spec."), "names the field: {message}");

    let event = next(&mut h.server, json!({})).await;
    assert_eq!(
        (event.method.as_str(), event.path.as_str()),
        ("POST", "/apis/events.k8s.io/v1/namespaces/acme/events")
    );
    assert_eq!(event.body["type"], "Warning");
    assert_eq!(event.body["reason"], "InvalidSpec");
    assert_eq!(event.body["action"], "Validate");
    assert_eq!(event.body["note"], message.as_str());
    assert_eq!(event.body["reportingController"], "cdot-operator");
    assert_eq!(event.body["regarding"]["kind"], "AlertRule");
    assert_eq!(event.body["regarding"]["name"], "cpu-high");
    assert_eq!(
        event.body["regarding"]["uid"],
        "6f1c1f4e-5d8b-4c1e-9a51-0a3f0d7c1b01"
    );
    task.await.expect("task").expect("reconcile");
}

/// The exact status patch of each other kind's first example, reconciled with nothing else
/// in the watch caches (so references are missing and nothing matches).
#[tokio::test]
async fn each_kind_sends_its_exact_status_patch() {
    for kind in [
        Kind::NotificationChannel,
        Kind::AlertRule,
        Kind::PatchPolicy,
        Kind::Workflow,
        Kind::DiscoveryScan,
        Kind::Silence,
    ] {
        let spec = example(kind);
        let mut h = Harness::new().await;
        let finalizers: &[&str] = if cdot_operator::kubernetes::controller::has_finalizer(kind) {
            &[FINALIZER]
        } else {
            &[]
        };
        let item = object(kind, "one", spec, finalizers);
        let task = h.reconcile(kind, item.clone());
        let patch = next(&mut h.server, item).await;
        assert_eq!(
            (patch.method.as_str(), patch.path.as_str()),
            ("PATCH", format!("{}/status", path(kind, "one")).as_str()),
            "{kind}"
        );
        let status = without_times(patch.body)["status"].clone();
        let expected = match kind {
            Kind::NotificationChannel => json!({
                "observedGeneration": 2,
                "conditions": [condition("Ready", "True", "Accepted", "valid Webhook channel; delivered through the outbox; delivered, failed and lastError report the results"), valid(), reconciled()],
            }),
            Kind::AlertRule => json!({
                "matchedDevices": 0,
                "observedGeneration": 2,
                "conditions": [condition("Ready", "False", "ChannelNotFound", "notification channel(s) not found in namespace acme: slack-noc"), valid(), reconciled()],
            }),
            Kind::PatchPolicy => json!({
                "devicesInScope": 0,
                "observedGeneration": 2,
                "rings": [{"completed": 0, "devices": 0, "failed": 0, "name": "pilot", "pending": 0}, {"completed": 0, "devices": 0, "failed": 0, "name": "servers", "pending": 0}, {"completed": 0, "devices": 0, "failed": 0, "name": "everyone", "pending": 0}],
                "conditions": [condition("Ready", "True", "Accepted", "valid; 0 device(s) in scope; installs are in status.rings and status.rollout"), valid(), reconciled()],
            }),
            Kind::Workflow => json!({
                "matchedDevices": 0,
                "observedGeneration": 2,
                "conditions": [condition("Ready", "False", "ReferenceNotFound", "not found in namespace acme: ConfigMap erp-scripts (spec.steps[2].script.configMapRef), NotificationChannel slack-noc (spec.steps[3].channel)"), valid(), reconciled()],
            }),
            // Phase, progress and runs are the discovery engine's: not in this patch.
            Kind::DiscoveryScan => json!({
                "observedGeneration": 2,
                "conditions": [condition("Ready", "False", "NoCollector", "no Collector device for this namespace: enroll a collector there (cdot-collector enroll) to run this scan"), valid(), reconciled()],
            }),
            Kind::Silence => json!({
                "observedGeneration": 2,
                "state": "Scheduled",
                "conditions": [condition("Ready", "True", "Scheduled", "will hold back notifications of matching alerts from 2030-01-12T22:00:00Z to 2030-01-13T02:00:00Z"), valid(), reconciled()],
            }),
            Kind::Device => unreachable!("Devices have their own test"),
        };
        assert_eq!(status, expected, "{kind}");
        task.await.expect("task").expect("reconcile");
    }
}

#[tokio::test]
async fn deleting_a_device_forgets_it_in_the_store_then_removes_the_finalizer() {
    let mut h = Harness::new().await;
    let device = object(
        Kind::Device,
        "web-01",
        json!({ "class": "Server" }),
        &[FINALIZER],
    );
    // First reconcile: mirrored into the store.
    let task = h.reconcile(Kind::Device, device.clone());
    next(&mut h.server, device.clone()).await;
    task.await.expect("task").expect("reconcile");
    assert!(
        h.store
            .get_object("acme", Kind::Device, "web-01")
            .await
            .expect("read")
            .is_some()
    );

    let mut deleting = device;
    deleting["metadata"]["deletionTimestamp"] = json!("2026-11-26T10:00:00Z");
    let task = h.reconcile(Kind::Device, deleting.clone());
    let patch = next(&mut h.server, deleting).await;
    assert_eq!(
        (patch.method.as_str(), patch.path.as_str()),
        ("PATCH", path(Kind::Device, "web-01").as_str())
    );
    assert_eq!(
        patch.body,
        json!([
            { "op": "test", "path": "/metadata/finalizers/0", "value": FINALIZER },
            { "op": "remove", "path": "/metadata/finalizers/0" },
        ])
    );
    task.await.expect("task").expect("cleanup");
    assert!(
        h.store
            .get_object("acme", Kind::Device, "web-01")
            .await
            .expect("read")
            .is_none(),
        "the store still holds the deleted Device"
    );
}
