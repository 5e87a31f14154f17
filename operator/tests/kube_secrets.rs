//! Kubernetes mode's tokens from Secrets ([`cdot_operator::kubernetes::secrets::run`]) with a
//! real PostgreSQL database per test.
//!
//! **These tests run against a Kubernetes API emulator (`cdot_testkit::kube_emulator`), not a
//! real API server**: they prove the wiring (watches, the reflector, the rebuild, the store
//! writes), not API-server semantics. Needs the emulator's venv:
//! `. scripts/lib.sh && ensure_kube_emulator`.
mod support;

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use base64::Engine as _;
use cdot_crds::{
    api_token::{self, format_token_hash, hash_token},
    enrollment_token,
};
use cdot_operator::{
    api::AppState,
    config_maps::ConfigMaps,
    kubernetes::{config_maps, secrets},
    metrics::Metrics,
    store::Store,
};
use cdot_testkit::kube_emulator::KubeEmulator;
use serde_json::{Value, json};
use sqlx::Row;
use support::TestDb;
use tokio::sync::watch;

const SYSTEM: &str = "cdot-system";
const TENANT: &str = "acme";
const TIMEOUT: Duration = Duration::from_secs(30);

/// A kube-rs client for the emulator, from the kubeconfig it writes.
async fn client(k8s: &KubeEmulator) -> kube::Client {
    let kubeconfig =
        kube::config::Kubeconfig::read_from(k8s.kubeconfig()).expect("read the kubeconfig");
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .expect("a client configuration");
    kube::Client::try_from(config).expect("a client")
}

/// The Secret as the API server holds it: base64 `data`.
fn secret(namespace: &str, name: &str, secret_type: &str, data: &[(&str, &str)]) -> Value {
    let data: serde_json::Map<String, Value> = data
        .iter()
        .map(|(k, v)| {
            (
                (*k).to_owned(),
                base64::engine::general_purpose::STANDARD.encode(v).into(),
            )
        })
        .collect();
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": secret_type,
        "metadata": {"name": name, "namespace": namespace},
        "data": data,
    })
}

fn create(k8s: &KubeEmulator, secret: &Value) {
    let namespace = secret["metadata"]["namespace"].as_str().unwrap_or_default();
    let response = k8s.request(
        "POST",
        &format!("/api/v1/namespaces/{namespace}/secrets"),
        "application/json",
        &secret.to_string(),
    );
    assert_eq!(response.status, 201, "create Secret: {}", response.body);
}

fn delete(k8s: &KubeEmulator, namespace: &str, name: &str) {
    let response = k8s.request(
        "DELETE",
        &format!("/api/v1/namespaces/{namespace}/secrets/{name}"),
        "application/json",
        "",
    );
    assert_eq!(response.status, 200, "delete Secret: {}", response.body);
}

async fn eventually<F: Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + TIMEOUT;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn authenticates(state: &AppState, token: &str) -> Option<String> {
    let tokens = state.tokens.read().expect("token index");
    tokens
        .authenticate(token)
        .map(|t| format!("{}/{}", t.namespace, t.name))
}

/// (namespace, name, max_uses, uses, xmin) of every enrollment token.
async fn enrollment_rows(store: &Store) -> Vec<(String, String, i32, i32, String)> {
    sqlx::query(
        "SELECT namespace, name, max_uses, uses, xmin::text AS xmin FROM enrollment_tokens ORDER BY namespace, name",
    )
    .fetch_all(store.pool())
    .await
    .expect("read enrollment tokens")
    .iter()
    .map(|r| {
        (
            r.get("namespace"),
            r.get("name"),
            r.get("max_uses"),
            r.get("uses"),
            r.get("xmin"),
        )
    })
    .collect()
}

async fn api_token_versions(store: &Store) -> Vec<String> {
    sqlx::query_scalar("SELECT xmin::text FROM api_tokens ORDER BY namespace, name")
        .fetch_all(store.pool())
        .await
        .expect("read api token row versions")
}

/// An api-token Secret and an enrollment-token Secret created through the emulator end up in
/// the store and the token index; a bad Secret is passed over without refusing the others;
/// deletions revoke; a change to a plain Secret writes nothing.
#[tokio::test]
async fn emulator_token_secrets_reach_the_store_and_the_token_index() {
    let k8s = tokio::task::spawn_blocking(KubeEmulator::start)
        .await
        .expect("start the emulator");
    let db = TestDb::create().await;
    let store = Store::connect(&db.url, 4)
        .await
        .expect("connect and migrate");
    let state = AppState::new(store.clone(), Arc::new(Metrics::default()));

    let ops_hash = format_token_hash(&hash_token("cdot_ops"));
    let enroll_hash = format_token_hash(&hash_token("cdot_enroll"));
    create(
        &k8s,
        &secret(
            SYSTEM,
            "ops",
            api_token::SECRET_TYPE,
            &[
                ("tokenHash", &ops_hash),
                ("role", "admin"),
                ("namespaces", "*"),
            ],
        ),
    );
    create(
        &k8s,
        &secret(
            TENANT,
            "laptops",
            enrollment_token::SECRET_TYPE,
            &[("tokenHash", &enroll_hash), ("maxUses", "5")],
        ),
    );
    create(
        &k8s,
        &secret(TENANT, "snmp", "Opaque", &[("community", "public")]),
    );
    // Passed over with its reason: a tenant token may not grant another tenant.
    create(
        &k8s,
        &secret(
            TENANT,
            "grabby",
            api_token::SECRET_TYPE,
            &[
                ("tokenHash", &format_token_hash(&hash_token("cdot_grabby"))),
                ("role", "viewer"),
                ("namespaces", "acme,globex"),
            ],
        ),
    );
    // Never held: a service-account token.
    create(
        &k8s,
        &secret(
            TENANT,
            "default-token",
            "kubernetes.io/service-account-token",
            &[("token", "jwt")],
        ),
    );
    // Outside both watched namespaces.
    create(
        &k8s,
        &secret(
            "globex",
            "elsewhere",
            api_token::SECRET_TYPE,
            &[
                (
                    "tokenHash",
                    &format_token_hash(&hash_token("cdot_elsewhere")),
                ),
                ("role", "viewer"),
                ("namespaces", "globex"),
            ],
        ),
    );

    let (synced_tx, mut synced) = watch::channel(false);
    let (stop_tx, stop) = watch::channel(false);
    let task = tokio::spawn(secrets::run(
        client(&k8s).await,
        Some(TENANT.into()),
        SYSTEM.into(),
        state.clone(),
        synced_tx,
        stop,
    ));
    tokio::time::timeout(TIMEOUT, synced.wait_for(|s| *s))
        .await
        .expect("synced in time")
        .expect("synced");

    // The token index, the store and the plain Secrets.
    assert_eq!(
        authenticates(&state, "cdot_ops").as_deref(),
        Some("cdot-system/ops")
    );
    assert_eq!(authenticates(&state, "cdot_grabby"), None);
    assert_eq!(authenticates(&state, "cdot_elsewhere"), None);
    let stored: Vec<_> = store
        .api_tokens()
        .await
        .expect("api tokens")
        .into_iter()
        .map(|t| (t.namespace, t.name, t.token_sha256, t.role.as_str()))
        .collect();
    assert_eq!(
        stored,
        [(
            SYSTEM.to_owned(),
            "ops".to_owned(),
            hash_token("cdot_ops"),
            "admin"
        )]
    );
    let enrollment = enrollment_rows(&store).await;
    assert_eq!(
        enrollment
            .iter()
            .map(|(ns, name, max, uses, _)| (ns.as_str(), name.as_str(), *max, *uses))
            .collect::<Vec<_>>(),
        [(TENANT, "laptops", 5, 0)]
    );
    let snmp = state.secrets.get(TENANT, "snmp").expect("the plain Secret");
    assert_eq!(snmp["community"], b"public");
    assert!(state.secrets.get(TENANT, "default-token").is_none());
    assert_eq!(
        state.metrics.manifest_errors.get(),
        1,
        "grabby is passed over"
    );

    // A change to a plain Secret only: the tokens are not rewritten.
    let tokens_before = api_token_versions(&store).await;
    let enrollment_before = enrollment_rows(&store).await;
    delete(&k8s, TENANT, "snmp");
    eventually("the plain Secret is gone", || async {
        state.secrets.get(TENANT, "snmp").is_none()
    })
    .await;
    // The store write, had there been one, follows the in-memory swap closely.
    tokio::time::sleep(secrets::DEBOUNCE * 3).await;
    assert_eq!(api_token_versions(&store).await, tokens_before);
    assert_eq!(enrollment_rows(&store).await, enrollment_before);

    // Fixing the bad Secret, adding an enrollment token and deleting the API token.
    delete(&k8s, TENANT, "grabby");
    create(
        &k8s,
        &secret(
            TENANT,
            "grabby",
            api_token::SECRET_TYPE,
            &[
                ("tokenHash", &format_token_hash(&hash_token("cdot_grabby"))),
                ("role", "viewer"),
                ("namespaces", "acme"),
            ],
        ),
    );
    create(
        &k8s,
        &secret(
            TENANT,
            "servers",
            enrollment_token::SECRET_TYPE,
            &[("tokenHash", &format_token_hash(&hash_token("cdot_servers")))],
        ),
    );
    delete(&k8s, SYSTEM, "ops");
    eventually("the API token is revoked", || async {
        authenticates(&state, "cdot_ops").is_none()
    })
    .await;
    eventually("the store has the new tokens", || async {
        let api: Vec<_> = store
            .api_tokens()
            .await
            .expect("api tokens")
            .into_iter()
            .map(|t| format!("{}/{}", t.namespace, t.name))
            .collect();
        let enrollment: Vec<_> = enrollment_rows(&store)
            .await
            .into_iter()
            .map(|(ns, name, ..)| format!("{ns}/{name}"))
            .collect();
        api == ["acme/grabby"] && enrollment == ["acme/laptops", "acme/servers"]
    })
    .await;
    assert_eq!(
        authenticates(&state, "cdot_grabby").as_deref(),
        Some("acme/grabby")
    );
    assert_eq!(state.metrics.manifest_errors.get(), 0);

    stop_tx.send_replace(true);
    tokio::time::timeout(TIMEOUT, task)
        .await
        .expect("stops in time")
        .expect("no panic");
}

/// ConfigMaps of the watched namespace reach the in-memory ConfigMaps that RunScript steps
/// read (`binaryData` dropped, other namespaces left out); a deletion removes one.
#[tokio::test]
async fn emulator_config_maps_reach_the_in_memory_store() {
    let k8s = tokio::task::spawn_blocking(KubeEmulator::start)
        .await
        .expect("start the emulator");
    let create_config_map = |namespace: &str, name: &str| {
        let config_map = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace},
            "data": {"cleanup.sh": "rm -f /tmp/*.old"},
            "binaryData": {"logo.png": "AAE="},
        });
        let response = k8s.request(
            "POST",
            &format!("/api/v1/namespaces/{namespace}/configmaps"),
            "application/json",
            &config_map.to_string(),
        );
        assert_eq!(response.status, 201, "create ConfigMap: {}", response.body);
    };
    create_config_map(TENANT, "scripts");
    create_config_map("globex", "elsewhere");

    let store = Arc::new(ConfigMaps::default());
    let (synced_tx, mut synced) = watch::channel(false);
    let (stop_tx, stop) = watch::channel(false);
    let task = tokio::spawn(config_maps::run(
        client(&k8s).await,
        Some(TENANT.into()),
        store.clone(),
        synced_tx,
        stop,
    ));
    tokio::time::timeout(TIMEOUT, synced.wait_for(|synced| *synced))
        .await
        .expect("ConfigMaps synced in time")
        .expect("the watch runs");
    let scripts = store.get(TENANT, "scripts").expect("scripts held");
    assert_eq!(
        scripts.iter().collect::<Vec<_>>(),
        [(&"cleanup.sh".to_owned(), &"rm -f /tmp/*.old".to_owned())]
    );
    assert!(store.get("globex", "elsewhere").is_none());

    let response = k8s.request(
        "DELETE",
        &format!("/api/v1/namespaces/{TENANT}/configmaps/scripts"),
        "application/json",
        "",
    );
    assert_eq!(response.status, 200, "delete ConfigMap: {}", response.body);
    eventually("the deleted ConfigMap is dropped", || {
        let gone = store.get(TENANT, "scripts").is_none();
        async move { gone }
    })
    .await;
    stop_tx.send(true).expect("stop");
    task.await.expect("the watch task ends");
}
