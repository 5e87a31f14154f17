//! End-to-end tests of `cdot-operator standalone` against a real PostgreSQL: the real
//! binary, real HTTP, real files on disk and real inotify events.
mod support;

use std::{path::Path, time::Duration};

use reqwest::StatusCode;
use serde_json::Value;
use support::{Operator, TestDb, create_token, examples_dir, insecure_client, wait_for};

/// How quickly an edit on disk must be visible through the API (issue: "within 2 seconds").
const APPLY_DEADLINE: Duration = Duration::from_secs(2);

const DEVICES: &str = "\
apiVersion: rmm.cdot.io/v1alpha1
kind: Device
metadata:
  name: web-01
  namespace: acme
  labels:
    rmm.cdot.io/site: hq
    role: web
spec:
  displayName: Web server 1
  class: Server
---
apiVersion: rmm.cdot.io/v1alpha1
kind: Device
metadata:
  name: pc-17
  namespace: acme
  labels:
    rmm.cdot.io/site: hq
spec:
  displayName: Reception PC
  class: Workstation
";

async fn get_json(client: &reqwest::Client, url: &str, token: &str) -> (StatusCode, Value) {
    let response = client
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .expect("request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn serves_the_examples_with_status_and_keeps_tenants_apart() {
    let db = TestDb::create().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let tokens = tmp.path().join("tokens");
    let acme = create_token(&tokens, "acme-viewer", "acme", "viewer", "acme");
    let msp = create_token(
        &tokens,
        "msp-viewer",
        "cdot-system",
        "viewer",
        "acme,globex",
    );
    let operator =
        Operator::start(&[&examples_dir(), &tokens], Some(&db.url), &[], tmp.path()).await;
    let client = insecure_client();
    let base = &operator.base;

    // Open endpoints.
    assert_eq!(
        client
            .get(format!("{base}/healthz"))
            .send()
            .await
            .expect("healthz")
            .status(),
        StatusCode::OK
    );
    let metrics = operator.metrics_text().await;
    assert!(
        metrics.contains("cdot_manifest_loads_total{result=\"applied\"} 1"),
        "{metrics}"
    );
    let openapi: Value = client
        .get(format!("{base}/v1/openapi.json"))
        .send()
        .await
        .expect("openapi")
        .json()
        .await
        .expect("json");
    assert_eq!(openapi["openapi"], "3.0.3");

    // No token, a wrong token, and a malformed header: 401 with a JSON reason.
    let response = client
        .get(format!("{base}/v1/namespaces/acme/devices"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let (status, _) = get_json(
        &client,
        &format!("{base}/v1/namespaces/acme/devices"),
        "cdot_not-a-token",
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Both example namespaces are loaded; every object carries a reconciled status.
    for (namespace, token) in [("acme", &acme), ("globex", &msp)] {
        for kind in [
            "devices",
            "alertrules",
            "notificationchannels",
            "patchpolicies",
            "workflows",
            "discoveryscans",
        ] {
            let (status, body) = get_json(
                &client,
                &format!("{base}/v1/namespaces/{namespace}/{kind}"),
                token,
            )
            .await;
            assert_eq!(status, StatusCode::OK, "{namespace}/{kind}: {body}");
            let items = body["items"].as_array().expect("items");
            assert!(!items.is_empty(), "no {kind} in {namespace}");
            for item in items {
                let wait = wait_for(Duration::from_secs(5), || {
                    let client = client.clone();
                    let url = format!(
                        "{base}/v1/namespaces/{namespace}/{kind}/{}",
                        item["metadata"]["name"].as_str().expect("name")
                    );
                    let token = token.to_string();
                    async move {
                        let (_, body) = get_json(&client, &url, &token).await;
                        body["status"]["observedGeneration"].as_i64().map(|_| body)
                    }
                })
                .await
                .unwrap_or_else(|| {
                    panic!(
                        "{namespace}/{kind}/{} never reconciled:\n{}",
                        item["metadata"]["name"],
                        operator.logs()
                    )
                });
                let invalid = wait["status"]["conditions"]
                    .as_array()
                    .expect("conditions")
                    .iter()
                    .find(|c| c["type"] == "Degraded")
                    .expect("Degraded condition");
                assert_eq!(invalid["status"], "False", "{wait}");
            }
        }
    }

    // A token for acme sees nothing of globex: 404, as if it did not exist.
    let (status, body) = get_json(
        &client,
        &format!("{base}/v1/namespaces/globex/devices"),
        &acme,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (_, globex) = get_json(
        &client,
        &format!("{base}/v1/namespaces/globex/devices"),
        &msp,
    )
    .await;
    let name = globex["items"][0]["metadata"]["name"]
        .as_str()
        .expect("a globex device");
    let (status, _) = get_json(
        &client,
        &format!("{base}/v1/namespaces/globex/devices/{name}"),
        &acme,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Bad requests name the field.
    let (status, body) = get_json(
        &client,
        &format!("{base}/v1/namespaces/acme/toasters"),
        &acme,
    )
    .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::NOT_FOUND, Some("path.resource")),
        "{body}"
    );
    let (status, body) = get_json(
        &client,
        &format!("{base}/v1/namespaces/ACME/devices"),
        &acme,
    )
    .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("path.namespace")),
        "{body}"
    );
}

fn display_name(body: &Value) -> Option<String> {
    body["spec"]["displayName"].as_str().map(str::to_owned)
}

#[tokio::test]
async fn applies_edits_within_two_seconds_prunes_and_refuses_invalid_change_sets() {
    let db = TestDb::create().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let manifests = tmp.path().join("repo");
    std::fs::create_dir_all(manifests.join("acme")).expect("mkdir");
    let devices = manifests.join("acme/devices.yaml");
    std::fs::write(&devices, DEVICES).expect("write");
    let token = create_token(
        &manifests.join("tokens"),
        "acme-viewer",
        "acme",
        "viewer",
        "acme",
    );
    let operator = Operator::start(&[&manifests], Some(&db.url), &[], tmp.path()).await;
    let client = insecure_client();
    let url = format!("{}/v1/namespaces/acme/devices/web-01", operator.base);

    let (status, body) = get_json(&client, &url, &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["metadata"]["generation"], 1);

    // Update: the spec change is stored and bumps the generation.
    std::fs::write(&devices, DEVICES.replace("Web server 1", "Web server one")).expect("write");
    let updated = wait_for(APPLY_DEADLINE, || async {
        let (_, body) = get_json(&client, &url, &token).await;
        (display_name(&body).as_deref() == Some("Web server one")).then_some(body)
    })
    .await
    .unwrap_or_else(|| panic!("edit not applied within 2 s:\n{}", operator.logs()));
    assert_eq!(updated["metadata"]["generation"], 2);
    let reconciled = wait_for(Duration::from_secs(2), || async {
        let (_, body) = get_json(&client, &url, &token).await;
        (body["status"]["observedGeneration"] == 2).then_some(())
    })
    .await;
    assert!(
        reconciled.is_some(),
        "observedGeneration did not follow the edit"
    );

    // A label-only change is stored without bumping the generation (as in Kubernetes).
    std::fs::write(
        &devices,
        DEVICES
            .replace("Web server 1", "Web server one")
            .replace("role: web", "role: frontend"),
    )
    .expect("write");
    let relabelled = wait_for(APPLY_DEADLINE, || async {
        let (_, body) = get_json(&client, &url, &token).await;
        (body["metadata"]["labels"]["role"] == "frontend").then_some(body)
    })
    .await
    .expect("label edit applied");
    assert_eq!(relabelled["metadata"]["generation"], 2);

    // Invalid: the whole change set is refused with file:document: object: field: message,
    // and the last good state keeps serving (the valid edit in the same change is not applied).
    let invalid = DEVICES
        .replace("Web server 1", "Web server two")
        .replace("class: Workstation", "class: Toaster");
    std::fs::write(&devices, invalid).expect("write");
    let logged = wait_for(APPLY_DEADLINE, || async {
        operator
            .logs()
            .contains("acme/devices.yaml:2: Device acme/pc-17: spec.class")
            .then_some(())
    })
    .await;
    assert!(
        logged.is_some(),
        "refusal not logged with file:document:field:\n{}",
        operator.logs()
    );
    let (_, body) = get_json(&client, &url, &token).await;
    assert_eq!(
        display_name(&body).as_deref(),
        Some("Web server one"),
        "refused change set was partly applied"
    );

    // Fixing the file applies it again.
    std::fs::write(
        &devices,
        DEVICES.replace("Web server 1", "Web server three"),
    )
    .expect("write");
    wait_for(APPLY_DEADLINE, || async {
        let (_, body) = get_json(&client, &url, &token).await;
        (display_name(&body).as_deref() == Some("Web server three")).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("fixed file not applied:\n{}", operator.logs()));

    // Prune: a document removed from disk is deleted.
    std::fs::write(
        &devices,
        DEVICES.split("---").next().expect("first document"),
    )
    .expect("write");
    let pc = format!("{}/v1/namespaces/acme/devices/pc-17", operator.base);
    let pruned = wait_for(APPLY_DEADLINE, || async {
        let (status, _) = get_json(&client, &pc, &token).await;
        (status == StatusCode::NOT_FOUND).then_some(())
    })
    .await;
    assert!(pruned.is_some(), "removed document not pruned within 2 s");

    // Deleting the file prunes what it defined.
    std::fs::remove_file(&devices).expect("rm");
    let gone = wait_for(APPLY_DEADLINE, || async {
        let (status, _) = get_json(&client, &url, &token).await;
        (status == StatusCode::NOT_FOUND).then_some(())
    })
    .await;
    assert!(gone.is_some(), "deleted file not pruned within 2 s");
}

#[tokio::test]
async fn state_survives_a_restart_with_an_invalid_checkout() {
    let db = TestDb::create().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let (manifests, token) = devices_repo(tmp.path());
    let mut operator = Operator::start(&[&manifests], Some(&db.url), &[], tmp.path()).await;
    assert!(operator.interrupt().success());

    std::fs::write(
        manifests.join("devices.yaml"),
        DEVICES.replace("class: Server", "class: 42"),
    )
    .expect("write");
    let operator = Operator::start(&[&manifests], Some(&db.url), &[], tmp.path()).await;
    let (status, body) = get_json(
        &insecure_client(),
        &format!("{}/v1/namespaces/acme/devices", operator.base),
        &token,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["items"].as_array().map(Vec::len),
        Some(2),
        "last good state not served after restart"
    );
    assert!(
        operator
            .logs()
            .contains("devices.yaml:1: Device acme/web-01: spec.class"),
        "{}",
        operator.logs()
    );
}

/// Writes `text` to `name` in `dir` at once (through a hidden file and a rename), so the
/// watcher never sees half a file.
fn write_whole(dir: &Path, name: &str, text: &str) {
    let partial = dir.join(format!(".{name}.partial"));
    std::fs::write(&partial, text).expect("write");
    std::fs::rename(&partial, dir.join(name)).expect("rename");
}

/// The error lines stored with the newest refused change set, once there are `refusals`.
async fn stored_refusal(pool: &sqlx::PgPool, refusals: i64) -> Option<String> {
    sqlx::query_scalar::<_, String>(
        "SELECT errors::text FROM manifest_loads WHERE NOT applied
         AND (SELECT count(*) FROM manifest_loads WHERE NOT applied) >= $1
         ORDER BY id DESC LIMIT 1",
    )
    .bind(refusals)
    .fetch_optional(pool)
    .await
    .expect("read manifest_loads")
}

/// A Workflow whose RunScript step names a ConfigMap the manifests lack refuses the whole
/// change set (as a channel naming a missing Secret does), the error naming the file,
/// document, object and field; with the ConfigMap beside it, the set applies.
#[tokio::test]
async fn a_workflow_naming_a_missing_config_map_is_refused_whole() {
    const WORKFLOW: &str = "\
apiVersion: rmm.cdot.io/v1alpha1
kind: Workflow
metadata: {name: clean, namespace: acme}
spec:
  trigger: {type: Manual}
  steps:
    - name: clean
      type: RunScript
      script: {configMapRef: {name: scripts, key: cleanup.sh}}
";
    const CONFIG_MAP: &str = "\
apiVersion: v1
kind: ConfigMap
metadata: {name: scripts, namespace: acme}
data:
  cleanup.sh: rm -f /tmp/*.old
";
    let db = TestDb::create().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let (manifests, token) = devices_repo(tmp.path());
    let operator = Operator::start(&[&manifests], Some(&db.url), &[], tmp.path()).await;
    let client = insecure_client();
    let url = format!("{}/v1/namespaces/acme/devices/web-01", operator.base);

    // An edit in the same change set as the Workflow: applied only with it.
    let edited = DEVICES.replace("Web server 1", "Web server one");
    write_whole(&manifests, "devices.yaml", &edited);
    write_whole(&manifests, "workflow.yaml", WORKFLOW);
    let refused = wait_for(Duration::from_secs(10), || async {
        operator
            .logs()
            .contains(
                "workflow.yaml:1: Workflow acme/clean: spec.steps[0].script.configMapRef: \
                 ConfigMap acme/scripts is not in the manifests",
            )
            .then_some(())
    })
    .await;
    assert!(
        refused.is_some(),
        "refusal not logged with file:document: object: field:\n{}",
        operator.logs()
    );
    let (_, body) = get_json(&client, &url, &token).await;
    assert_eq!(
        display_name(&body).as_deref(),
        Some("Web server 1"),
        "refused change set was partly applied"
    );

    write_whole(
        &manifests,
        "workflow.yaml",
        &format!("{WORKFLOW}---\n{CONFIG_MAP}"),
    );
    wait_for(Duration::from_secs(10), || async {
        let (_, body) = get_json(&client, &url, &token).await;
        (display_name(&body).as_deref() == Some("Web server one")).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("set with its ConfigMap not applied:\n{}", operator.logs()));
}

/// Huge input is refused without being echoed (issue 11): a value of 3 MiB (below the file
/// limit) is quoted as a short excerpt with its length, and a 50 MB file is refused by its
/// size without being read. The stored load error and the log lines stay small, memory does
/// not follow the input, and the last good state keeps serving.
#[tokio::test]
async fn huge_manifests_are_refused_with_short_errors_and_bounded_memory() {
    let db = TestDb::create().await;
    let pool = sqlx::PgPool::connect(&db.url).await.expect("connect");
    let tmp = tempfile::tempdir().expect("tmp");
    let (manifests, token) = devices_repo(tmp.path());
    let operator = Operator::start(&[&manifests], Some(&db.url), &[], tmp.path()).await;
    let client = insecure_client();
    let huge_device = |bytes: usize| {
        format!(
            "apiVersion: rmm.cdot.io/v1alpha1\nkind: Device\nmetadata: {{name: pc-99, namespace: acme}}\nspec:\n  class: Workstation\n  displayName: {}\n",
            "a".repeat(bytes)
        )
    };

    // A 3 MiB value where at most 128 characters are allowed.
    write_whole(&manifests, "huge.yaml", &huge_device(3 << 20));
    let stored = wait_for(Duration::from_secs(30), || stored_refusal(&pool, 1))
        .await
        .unwrap_or_else(|| panic!("3 MiB value not refused:\n{:.4000}", operator.logs()));
    assert!(
        stored.len() < 4096,
        "stored error of {} bytes",
        stored.len()
    );
    let expected = format!(
        "huge.yaml:1: Device acme/pc-99: spec.displayName: \\\"{}…\\\" (3145728 bytes) is longer than 128 characters",
        "a".repeat(64)
    );
    assert!(stored.contains(&expected), "{stored}");

    // A 50 MB file: refused by its size, never read.
    let peak_before = operator.peak_rss_kib();
    let text = huge_device(50 << 20);
    write_whole(&manifests, "huge.yaml", &text);
    drop(text);
    let started = std::time::Instant::now();
    let stored = wait_for(Duration::from_secs(30), || stored_refusal(&pool, 2))
        .await
        .unwrap_or_else(|| panic!("50 MB file not refused:\n{:.4000}", operator.logs()));
    let refused_in = started.elapsed();
    assert!(
        stored.len() < 4096,
        "stored error of {} bytes",
        stored.len()
    );
    let expected = format!(
        "huge.yaml: file is {} bytes, more than the limit of 4194304 bytes (--max-manifest-bytes)",
        huge_device(0).len() + (50 << 20)
    );
    assert!(stored.contains(&expected), "{stored}");
    let growth_kib = operator.peak_rss_kib().saturating_sub(peak_before);
    assert!(
        growth_kib < 16 << 10,
        "peak memory grew by {growth_kib} KiB for a file that is never read"
    );
    assert!(refused_in < Duration::from_secs(5), "{refused_in:?}");

    let logs = operator.logs();
    let refusals: Vec<_> = logs
        .lines()
        .filter(|l| l.contains("invalid manifest"))
        .collect();
    assert_eq!(refusals.len(), 2, "{logs:.4000}");
    for line in refusals {
        assert!(line.len() < 1024, "log line of {} bytes", line.len());
    }
    assert!(logs.len() < 256 << 10, "log of {} bytes", logs.len());

    // The last good state keeps serving; the huge device never arrived.
    let devices = format!("{}/v1/namespaces/acme/devices", operator.base);
    let (status, body) = get_json(&client, &devices, &token).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["items"].as_array().map(Vec::len), Some(2), "{body}");
}

/// Without a database URL the operator runs a private PostgreSQL under `--data-dir` and stops
/// it cleanly on Ctrl-C (SIGINT).
#[tokio::test]
async fn embedded_postgres_is_started_and_stopped_on_ctrl_c() {
    let tmp = tempfile::tempdir().expect("tmp");
    // As root the server runs as `postgres`, which must be able to reach the data directory.
    make_searchable(tmp.path());
    let data_dir = tmp.path().join("data");
    let (manifests, token) = devices_repo(tmp.path());
    let data_arg = data_dir.to_str().expect("utf8");
    let mut operator =
        Operator::start(&[&manifests], None, &["--data-dir", data_arg], tmp.path()).await;

    let (status, body) = get_json(
        &insecure_client(),
        &format!("{}/v1/namespaces/acme/devices", operator.base),
        &token,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["items"].as_array().map(Vec::len), Some(2));
    assert!(
        data_dir.join("postgres/postmaster.pid").exists(),
        "embedded server not running from the data dir"
    );

    let port = std::fs::read_to_string(data_dir.join("postgres.port")).expect("postgres.port");
    let exit = operator.interrupt();
    assert!(exit.success(), "exit status {exit}:\n{}", operator.logs());
    assert!(
        !data_dir.join("postgres/postmaster.pid").exists(),
        "PostgreSQL still running after Ctrl-C:\n{}",
        operator.logs()
    );
    assert!(
        operator.logs().contains("embedded PostgreSQL stopped"),
        "{}",
        operator.logs()
    );

    // A second start reuses the cluster and its data, on the same port while it is free.
    let operator =
        Operator::start(&[&manifests], None, &["--data-dir", data_arg], tmp.path()).await;
    assert_eq!(
        std::fs::read_to_string(data_dir.join("postgres.port")).expect("postgres.port"),
        port,
        "the embedded PostgreSQL moved to another port"
    );
    let (status, _) = get_json(
        &insecure_client(),
        &format!("{}/v1/namespaces/acme/devices/web-01", operator.base),
        &token,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

/// `DIR/repo` with [`DEVICES`] and an acme viewer token (returned).
fn devices_repo(dir: &Path) -> (std::path::PathBuf, String) {
    let manifests = dir.join("repo");
    std::fs::create_dir_all(&manifests).expect("mkdir");
    std::fs::write(manifests.join("devices.yaml"), DEVICES).expect("write");
    let token = create_token(
        &manifests.join("tokens"),
        "acme-viewer",
        "acme",
        "viewer",
        "acme",
    );
    (manifests, token)
}

fn make_searchable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// The API serves HTTPS from a given certificate and key; a client that trusts that
/// certificate connects, and plain HTTP is not served on the same port.
#[tokio::test]
async fn serves_tls_from_a_given_certificate() {
    let db = TestDb::create().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = rcgen::CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    let cert_path = tmp.path().join("tls.crt");
    let key_path = tmp.path().join("tls.key");
    std::fs::write(&cert_path, cert.pem()).expect("write");
    std::fs::write(&key_path, key.serialize_pem()).expect("write");
    let manifests = tmp.path().join("repo");
    std::fs::create_dir_all(&manifests).expect("mkdir");
    let args = [
        "--tls-cert",
        cert_path.to_str().expect("utf8"),
        "--tls-key",
        key_path.to_str().expect("utf8"),
    ];
    let operator = Operator::start(&[&manifests], Some(&db.url), &args, tmp.path()).await;

    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.pem().as_bytes()).expect("pem"))
        .build()
        .expect("client");
    let response = client
        .get(format!("{}/healthz", operator.base))
        .send()
        .await
        .expect("https request");
    assert_eq!(response.status(), StatusCode::OK);
    let plain = operator.base.replace("https://", "http://");
    assert!(
        client.get(format!("{plain}/healthz")).send().await.is_err(),
        "plain HTTP must not be served"
    );
}
