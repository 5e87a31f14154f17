//! The Kubernetes API emulator (`testkit/emulator`) does what kubectl and kube-rs rely on:
//! `kubectl apply` of the examples, watches resumed from a resourceVersion, generation and
//! the status subresource, optimistic concurrency, finalizers, Leases.
//! Needs the emulator's venv: `. scripts/lib.sh && ensure_kube_emulator`.
use std::{path::Path, process::Output};

use cdot_testkit::kube_emulator::{HttpResponse, KubeEmulator, repo_crds};
use serde_json::{Value, json};

const DEVICES: &str = "/apis/rmm.cdot.io/v1alpha1/namespaces/acme/devices";
const ALL_DEVICES: &str = "/apis/rmm.cdot.io/v1alpha1/devices";
const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/default/leases";
const JSON: &str = "application/json";
const MERGE: &str = "application/merge-patch+json";
const JSON_PATCH: &str = "application/json-patch+json";

fn succeeded(args: &[&str], out: Output) -> Output {
    assert!(
        out.status.success(),
        "kubectl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn kubectl(k8s: &KubeEmulator, args: &[&str]) -> Output {
    succeeded(args, k8s.kubectl(args))
}

/// The response's JSON, after checking its status code.
fn expect(response: HttpResponse, status: u16) -> Value {
    assert_eq!(
        response.status, status,
        "unexpected response: {}",
        response.body
    );
    serde_json::from_str(&response.body).expect("a JSON response body")
}

fn call(
    k8s: &KubeEmulator,
    method: &str,
    path: &str,
    content_type: &str,
    body: &Value,
) -> HttpResponse {
    k8s.request(method, path, content_type, &body.to_string())
}

fn device(name: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "rmm.cdot.io/v1alpha1",
        "kind": "Device",
        "metadata": {"name": name, "namespace": "acme", "labels": labels},
        "spec": {"class": "Server", "site": "london", "managementAddresses": ["10.0.0.1"]},
        "status": {"firingAlerts": 3},
    })
}

fn rv(obj: &Value) -> u64 {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .and_then(|rv| rv.parse().ok())
        .unwrap_or_else(|| panic!("no numeric metadata.resourceVersion in {obj}"))
}

/// (type, metadata.name) of each line of a watch response.
fn events(response: HttpResponse) -> Vec<(String, Value)> {
    assert_eq!(response.status, 200, "watch failed: {}", response.body);
    response
        .body
        .lines()
        .map(|line| {
            let event: Value = serde_json::from_str(line).expect("a JSON watch event");
            (
                event["type"].as_str().expect("event type").to_owned(),
                event["object"].clone(),
            )
        })
        .collect()
}

fn names(events: &[(String, Value)]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|(kind, obj)| {
            (
                kind.clone(),
                obj["metadata"]["name"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

#[test]
fn kubectl_applies_the_examples() {
    let k8s = KubeEmulator::start();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let examples = examples.to_str().expect("a UTF-8 path");

    // kubectl's typed creates send protobuf; apply sends JSON.
    kubectl(&k8s, &["create", "namespace", "acme"]);
    kubectl(
        &k8s,
        &[
            "create",
            "secret",
            "generic",
            "snmp-acme",
            "-n",
            "acme",
            "--from-literal=community=public",
        ],
    );
    let apply = ["apply", "--validate=false", "-R", "-f", examples];
    let out = kubectl(&k8s, &apply);
    assert!(String::from_utf8_lossy(&out.stdout).contains("device.rmm.cdot.io/lon-dc01 created"));
    let again = String::from_utf8_lossy(&kubectl(&k8s, &apply).stdout).into_owned();
    assert!(
        !again.contains("created") && again.contains("unchanged"),
        "second apply: {again}"
    );

    let mut expected = 0;
    for client in std::fs::read_dir(Path::new(examples)).expect("examples/") {
        let client = client.expect("an examples/ entry").path();
        if client.is_dir() {
            for file in std::fs::read_dir(&client).expect("a client folder") {
                let text = std::fs::read_to_string(file.expect("an entry").path())
                    .expect("an example file");
                expected += text.lines().filter(|l| l.trim() == "kind: Device").count();
            }
        }
    }
    assert!(expected > 0, "no Device in examples/");

    let list: Value =
        serde_json::from_slice(&kubectl(&k8s, &["get", "devices", "-A", "-o", "json"]).stdout)
            .expect("JSON");
    let items = list["items"].as_array().expect("items");
    assert_eq!(items.len(), expected, "kubectl get devices -A: {list}");
    for item in items {
        assert_eq!(item["metadata"]["generation"], 1, "{item}");
        assert!(rv(item) > 0);
        assert!(
            item["metadata"]["uid"]
                .as_str()
                .is_some_and(|uid| uid.len() == 36),
            "{item}"
        );
        assert!(item["metadata"]["creationTimestamp"].is_string(), "{item}");
    }

    let secret = kubectl(
        &k8s,
        &[
            "get",
            "secret",
            "snmp-acme",
            "-n",
            "acme",
            "-o",
            "jsonpath={.data.community}",
        ],
    );
    assert_eq!(String::from_utf8_lossy(&secret.stdout), "cHVibGlj"); // base64("public")
    let rules = kubectl(&k8s, &["get", "alertrules", "-n", "globex", "-o", "name"]);
    assert!(!rules.stdout.is_empty());
}

#[test]
fn watches_resume_from_a_resource_version() {
    // A tiny history, so that an old resourceVersion expires.
    let k8s = KubeEmulator::start_with_args(&[repo_crds()], &["--history", "4"]);
    expect(
        call(
            &k8s,
            "POST",
            DEVICES,
            JSON,
            &device("a", json!({"site": "london"})),
        ),
        201,
    );
    let list = expect(k8s.request("GET", ALL_DEVICES, JSON, ""), 200);
    assert_eq!(list["kind"], "DeviceList");
    assert_eq!(list["apiVersion"], "rmm.cdot.io/v1alpha1");
    let since = rv(&list);

    expect(
        call(
            &k8s,
            "POST",
            DEVICES,
            JSON,
            &device("b", json!({"site": "leeds"})),
        ),
        201,
    );
    expect(
        call(
            &k8s,
            "PATCH",
            &format!("{DEVICES}/a"),
            MERGE,
            &json!({"metadata": {"labels": {"x": "y"}}}),
        ),
        200,
    );

    let watch = |query: &str| {
        events(k8s.request(
            "GET",
            &format!("{ALL_DEVICES}?watch=1&timeoutSeconds=1&{query}"),
            JSON,
            "",
        ))
    };
    let later = watch(&format!("resourceVersion={since}&allowWatchBookmarks=true"));
    assert_eq!(
        names(&later),
        pairs(&[("ADDED", "b"), ("MODIFIED", "a"), ("BOOKMARK", "")])
    );
    let rvs: Vec<u64> = later.iter().map(|(_, obj)| rv(obj)).collect();
    assert!(
        rvs[0] > since && rvs[0] < rvs[1] && rvs[1] <= rvs[2],
        "resourceVersions {rvs:?} after {since}"
    );

    // No resourceVersion: the current objects as ADDED, filtered by the label selector.
    assert_eq!(
        names(&watch("labelSelector=site%3Dleeds")),
        pairs(&[("ADDED", "b")])
    );
    assert_eq!(
        names(&watch("resourceVersion=0")),
        pairs(&[("ADDED", "a"), ("ADDED", "b")])
    );

    // Older than the kept history: 410 Gone as an ERROR event, so that kube-rs relists.
    for i in 0..10 {
        expect(
            call(
                &k8s,
                "POST",
                DEVICES,
                JSON,
                &device(&format!("c{i}"), json!({})),
            ),
            201,
        );
    }
    let gone = watch(&format!("resourceVersion={since}"));
    assert_eq!(gone.len(), 1, "{gone:?}");
    assert_eq!(gone[0].0, "ERROR");
    assert_eq!(gone[0].1["code"], 410);
    assert_eq!(gone[0].1["reason"], "Expired");
}

#[test]
fn writes_keep_generation_status_and_resource_versions() {
    let k8s = KubeEmulator::start();
    let path = format!("{DEVICES}/a");
    let created = expect(
        call(&k8s, "POST", DEVICES, JSON, &device("a", json!({}))),
        201,
    );
    assert_eq!(created["metadata"]["generation"], 1);
    assert!(
        created.get("status").is_none(),
        "status is not set on create: {created}"
    );
    let dup = expect(
        call(&k8s, "POST", DEVICES, JSON, &device("a", json!({}))),
        409,
    );
    assert_eq!(dup["reason"], "AlreadyExists");
    let missing = expect(
        k8s.request("GET", &format!("{DEVICES}/nope"), JSON, ""),
        404,
    );
    assert_eq!(
        (missing["kind"].as_str(), missing["reason"].as_str()),
        (Some("Status"), Some("NotFound"))
    );

    // A spec change bumps generation; a metadata change does not.
    let spec = expect(
        call(
            &k8s,
            "PATCH",
            &path,
            MERGE,
            &json!({"spec": {"site": "leeds"}}),
        ),
        200,
    );
    assert_eq!(spec["metadata"]["generation"], 2);
    assert!(rv(&spec) > rv(&created));
    let labels = expect(
        call(
            &k8s,
            "PATCH",
            &path,
            MERGE,
            &json!({"metadata": {"labels": {"a": "b"}}}),
        ),
        200,
    );
    assert_eq!(labels["metadata"]["generation"], 2);

    // The status subresource changes only .status, and not the generation.
    let status = expect(
        call(
            &k8s,
            "PATCH",
            &format!("{path}/status"),
            MERGE,
            &json!({"spec": {"site": "x"}, "status": {"firingAlerts": 2}}),
        ),
        200,
    );
    assert_eq!(status["status"]["firingAlerts"], 2);
    assert_eq!(status["spec"]["site"], "leeds");
    assert_eq!(status["metadata"]["generation"], 2);
    assert!(rv(&status) > rv(&labels));
    // ... and the main resource ignores .status.
    let main = expect(
        call(
            &k8s,
            "PATCH",
            &path,
            MERGE,
            &json!({"status": {"firingAlerts": 9}}),
        ),
        200,
    );
    assert_eq!(main["status"]["firingAlerts"], 2);
    assert_eq!(
        rv(&main),
        rv(&status),
        "a no-op write keeps the resourceVersion"
    );

    // PUT: the current resourceVersion wins, a stale one conflicts.
    let mut replaced = status.clone();
    replaced["spec"]["site"] = json!("paris");
    let put = expect(call(&k8s, "PUT", &path, JSON, &replaced), 200);
    assert_eq!(
        (
            put["spec"]["site"].as_str(),
            put["metadata"]["generation"].as_i64()
        ),
        (Some("paris"), Some(3))
    );
    let stale = expect(call(&k8s, "PUT", &path, JSON, &replaced), 409);
    assert_eq!(stale["reason"], "Conflict");
    let mut put_status = put.clone();
    put_status["status"] = json!({"firingAlerts": 0});
    expect(
        call(&k8s, "PUT", &format!("{path}/status"), JSON, &put_status),
        200,
    );
    expect(
        call(&k8s, "PUT", &format!("{path}/status"), JSON, &put_status),
        409,
    );

    // Leases (leader election): a PUT with a stale resourceVersion conflicts.
    let lease = json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": "cdot-operator"},
        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15},
    });
    let lease = expect(call(&k8s, "POST", LEASES, JSON, &lease), 201);
    let mut taken = lease.clone();
    taken["spec"]["holderIdentity"] = json!("b");
    let taken = expect(
        call(
            &k8s,
            "PUT",
            &format!("{LEASES}/cdot-operator"),
            JSON,
            &taken,
        ),
        200,
    );
    assert_eq!(taken["spec"]["holderIdentity"], "b");
    let mut late = lease.clone();
    late["spec"]["holderIdentity"] = json!("c");
    let late = expect(
        call(&k8s, "PUT", &format!("{LEASES}/cdot-operator"), JSON, &late),
        409,
    );
    assert_eq!(late["reason"], "Conflict");
}

#[test]
fn finalizers_hold_deletion() {
    let k8s = KubeEmulator::start();
    let path = format!("{DEVICES}/a");
    let created = expect(
        call(&k8s, "POST", DEVICES, JSON, &device("a", json!({}))),
        201,
    );

    // kube-rs's finalizer helper: `test` of an absent list, then `add`.
    let add = json!([
        {"op": "test", "path": "/metadata/finalizers", "value": null},
        {"op": "add", "path": "/metadata/finalizers", "value": ["rmm.cdot.io/cleanup"]},
    ]);
    expect(call(&k8s, "PATCH", &path, JSON_PATCH, &add), 200);
    let failed = expect(call(&k8s, "PATCH", &path, JSON_PATCH, &add), 422);
    assert_eq!(failed["reason"], "Invalid");

    let deleting = expect(k8s.request("DELETE", &path, JSON, ""), 200);
    assert!(
        deleting["metadata"]["deletionTimestamp"].is_string(),
        "{deleting}"
    );
    let still = expect(k8s.request("GET", &path, JSON, ""), 200);
    assert_eq!(
        still["metadata"]["deletionTimestamp"],
        deleting["metadata"]["deletionTimestamp"]
    );

    let remove = json!([
        {"op": "test", "path": "/metadata/finalizers/0", "value": "rmm.cdot.io/cleanup"},
        {"op": "remove", "path": "/metadata/finalizers/0"},
    ]);
    expect(call(&k8s, "PATCH", &path, JSON_PATCH, &remove), 200);
    expect(k8s.request("GET", &path, JSON, ""), 404);

    let history = events(k8s.request(
        "GET",
        &format!(
            "{DEVICES}?watch=true&timeoutSeconds=1&resourceVersion={}",
            rv(&created)
        ),
        JSON,
        "",
    ));
    assert_eq!(
        names(&history),
        pairs(&[("MODIFIED", "a"), ("MODIFIED", "a"), ("DELETED", "a")])
    );
    assert!(history[1].1["metadata"]["deletionTimestamp"].is_string());

    // Without finalizers, DELETE removes at once.
    expect(
        call(&k8s, "POST", DEVICES, JSON, &device("b", json!({}))),
        201,
    );
    expect(
        k8s.request("DELETE", &format!("{DEVICES}/b"), JSON, ""),
        200,
    );
    expect(k8s.request("GET", &format!("{DEVICES}/b"), JSON, ""), 404);
}
