//! The API's error paths over the real binary and real sockets: names that cannot exist,
//! unknown query parameters, oversized bodies, the enrollment rate limit, and an OpenAPI
//! document that lists every route the router serves.
mod support;

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use cdot_operator::{
    api::{self, AppState},
    metrics::Metrics,
    store::Store,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Operator, TestDb, create_token, examples_dir, insecure_client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The body size the issue reports resetting the connection.
const BIG: usize = 64 * 1024 * 1024;

async fn call(request: reqwest::RequestBuilder) -> (StatusCode, Value) {
    let response = request.send().await.expect("an answer, not a reset");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

fn field(body: &Value) -> &str {
    body["field"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn impossible_names_and_unknown_parameters_are_400_before_any_query() {
    let db = TestDb::create().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let tokens = tmp.path().join("tokens");
    let acme = create_token(&tokens, "acme-viewer", "acme", "viewer", "acme");
    let operator =
        Operator::start(&[&examples_dir(), &tokens], Some(&db.url), &[], tmp.path()).await;
    let client = insecure_client();
    let base = &operator.base;
    let get = |path: &str| call(client.get(format!("{base}{path}")).bearer_auth(&acme));

    // Every path parameter, on every kind of route, names itself.
    for (path, expected) in [
        ("/v1/namespaces/acme/devices/a%00b", "path.name"),
        ("/v1/namespaces/ac%00me/devices", "path.namespace"),
        ("/v1/namespaces/acme/dev%00ices/lon-dc01", "path.resource"),
        ("/v1/namespaces/acme/devices/a%00b/software", "path.name"),
        (
            "/v1/namespaces/acme/devices/lon-dc01/metrics/cp%00u",
            "path.metric",
        ),
        ("/v1/namespaces/acme/devices/a%00b/metrics/cpu", "path.name"),
        ("/v1/namespaces/a%00b/network/sites", "path.namespace"),
        ("/v1/namespaces/acme/devices/Not_A_Name", "path.name"),
        ("/v1/namespaces/acme/devices/%FF", "path"),
    ] {
        let (status, body) = get(path).await;
        assert_eq!(
            (status, field(&body)),
            (StatusCode::BAD_REQUEST, expected),
            "{path}: {body}"
        );
        assert_eq!(body["reason"], "BadRequest", "{path}: {body}");
    }
    // Query values that no stored name can have, and unknown parameters, everywhere.
    for (path, expected) in [
        (
            "/v1/namespaces/acme/network/interfaces?device=a%00b",
            "query.device",
        ),
        (
            "/v1/namespaces/acme/network/interfaces?site=a%00b",
            "query.site",
        ),
        (
            "/v1/namespaces/acme/network/top-talkers?device=NOT%20A%20NAME",
            "query.device",
        ),
        ("/v1/namespaces/acme/network/probes?bogus=1", "query.bogus"),
        (
            "/v1/namespaces/acme/devices?labelSelector=a",
            "query.labelSelector",
        ),
        (
            "/v1/namespaces/acme/devices/lon-dc01?watch=1",
            "query.watch",
        ),
        (
            "/v1/namespaces/acme/devices/lon-dc01/software?limit=5",
            "query.limit",
        ),
        (
            "/v1/namespaces/acme/devices/lon-dc01/metrics/cpu?limit=5",
            "query.limit",
        ),
        (
            "/v1/namespaces/acme/devices/lon-dc01/metrics/disk?labels.mount=a%00",
            "query.labels.mount",
        ),
        ("/v1/openapi.json?v=2", "query.v"),
        ("/v1/agent/config?debug=1", "query.debug"),
        ("/v1/agent/ca.pem?format=der", "query.format"),
        ("/readyz?verbose=1", "query.verbose"),
    ] {
        let (status, body) = get(path).await;
        assert_eq!(
            (status, field(&body)),
            (StatusCode::BAD_REQUEST, expected),
            "{path}: {body}"
        );
    }
    // Valid names still answer as before.
    assert_eq!(
        get("/v1/namespaces/acme/devices/lon-dc01").await.0,
        StatusCode::OK
    );
    assert_eq!(
        get("/v1/namespaces/acme/devices/no-such-device").await.0,
        StatusCode::NOT_FOUND
    );
    let (status, body) = get("/v1/namespaces/acme/widgets").await;
    assert_eq!(
        (status, field(&body)),
        (StatusCode::NOT_FOUND, "path.resource")
    );
    assert_eq!(
        get("/v1/namespaces/acme/devices/lon-dc01/metrics/cpu?step=1m")
            .await
            .0,
        StatusCode::OK
    );
    // Nothing reached PostgreSQL with a NUL byte: no internal error anywhere.
    assert!(
        !operator.logs().contains("request failed"),
        "{}",
        operator.logs()
    );
}

#[tokio::test]
async fn a_64_mb_body_is_answered_413_not_reset() {
    let db = TestDb::create().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let operator = Operator::start(&[&examples_dir()], Some(&db.url), &[], tmp.path()).await;
    let client = insecure_client();
    let big = vec![b' '; BIG];

    // With Content-Length, on both listeners and every method that takes a body; the
    // unauthenticated agent routes too (the size is refused before the identity).
    for (method, url) in [
        ("POST", format!("{}/v1/agent/enroll", operator.agent_base)),
        ("POST", format!("{}/v1/agent/enroll", operator.base)),
        ("POST", format!("{}/v1/agent/metrics", operator.agent_base)),
        ("PUT", format!("{}/v1/agent/inventory", operator.agent_base)),
        ("POST", format!("{}/v1/agent/renew", operator.agent_base)),
        (
            "POST",
            format!("{}/v1/agent/collector/batches", operator.base),
        ),
    ] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let (status, body) = call(
            client
                .request(method.clone(), &url)
                .header("content-type", "application/json")
                .body(big.clone()),
        )
        .await;
        assert_eq!(
            (status, body["reason"].as_str(), field(&body)),
            (
                StatusCode::PAYLOAD_TOO_LARGE,
                Some("PayloadTooLarge"),
                "body"
            ),
            "{method} {url}: {body}"
        );
    }

    // Chunked (no Content-Length): the route reads its limit, refuses, and the rest is
    // drained, so the client writes its whole body and reads the answer.
    let address = operator.base.trim_start_matches("http://").to_owned();
    for (path, expected) in [
        ("/v1/agent/enroll", "413"),
        // Refused before the body is read at all (no identity): still an answer.
        ("/v1/agent/metrics", "401"),
    ] {
        let (written, head) = chunked_post(&address, path, BIG).await;
        assert!(
            written,
            "{path}: the server reset the connection while the client wrote"
        );
        assert!(
            head.starts_with(&format!("HTTP/1.1 {expected}")),
            "{path}: {head}"
        );
    }
    // A body within the limit still reaches the handler.
    let (status, body) = call(
        client
            .post(format!("{}/v1/agent/enroll", operator.base))
            .json(&json!({ "token": "x" })),
    )
    .await;
    assert!(
        status.is_client_error() && status != StatusCode::PAYLOAD_TOO_LARGE,
        "{status}: {body}"
    );
}

/// Sends a `size`-byte chunked POST over a raw socket; whether every byte was written, and
/// the answer's head.
async fn chunked_post(address: &str, path: &str, size: usize) -> (bool, String) {
    let stream = tokio::net::TcpStream::connect(address)
        .await
        .expect("connect");
    let (mut read, mut write) = stream.into_split();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let writer = tokio::spawn(async move {
        write.write_all(head.as_bytes()).await?;
        let chunk = vec![b' '; 64 * 1024];
        let mut sent = 0;
        while sent < size {
            write
                .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .await?;
            write.write_all(&chunk).await?;
            write.write_all(b"\r\n").await?;
            sent += chunk.len();
        }
        write.write_all(b"0\r\n\r\n").await?;
        write.flush().await?;
        Ok::<_, std::io::Error>(write)
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(30), read.read(&mut buf))
            .await
            .expect("an answer within 30 s")
            .unwrap_or(0);
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buf[..n]);
    }
    let written = writer.await.expect("writer").is_ok();
    (written, String::from_utf8_lossy(&answer).into_owned())
}

#[tokio::test]
async fn enrollment_is_rate_limited_per_source_address() {
    let db = TestDb::create().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let operator = Operator::start(
        &[&examples_dir()],
        Some(&db.url),
        &["--enroll-burst", "3", "--enroll-rate-limit", "2"],
        tmp.path(),
    )
    .await;
    let client = insecure_client();
    let enroll = |base: &str| {
        call(
            client
                .post(format!("{base}/v1/agent/enroll"))
                .json(&json!({ "token": "not-a-token", "deviceName": "web-01", "namespace": "acme", "agentVersion": "0.1.0" })),
        )
    };
    // The burst: refused for the bad token, not for the rate.
    for _ in 0..3 {
        let (status, body) = enroll(&operator.agent_base).await;
        assert_ne!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    }
    // Both listeners share the address's bucket.
    let response = client
        .post(format!("{}/v1/agent/enroll", operator.base))
        .json(&json!({}))
        .send()
        .await
        .expect("answer");
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    // Two per minute: the next token is at most 30 s away.
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=30).contains(&retry_after), "{retry_after}");
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["reason"], "TooManyRequests", "{body}");
    assert_eq!(
        enroll(&operator.agent_base).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Other routes are not limited.
    assert_eq!(
        client
            .get(format!("{}/v1/agent/ca.pem", operator.agent_base))
            .send()
            .await
            .expect("answer")
            .status(),
        StatusCode::OK
    );
    let metrics = operator.metrics_text().await;
    assert!(
        metrics.contains("cdot_agent_enroll_rate_limited_total 2"),
        "{metrics}"
    );
}

#[tokio::test]
async fn every_route_of_the_router_is_in_the_openapi_document() {
    let db = TestDb::create().await;
    let store = Store::connect(&db.url, 2).await.expect("connect");
    let app = api::app(
        AppState::new(store, Arc::new(Metrics::default())),
        Duration::from_secs(5),
    );
    // The router lists its route templates only in its Debug form.
    let debug = format!("{app:?}");
    let routes: BTreeSet<&str> = debug.split('"').filter(|s| s.starts_with("/v1/")).collect();
    assert!(
        routes.contains("/v1/namespaces/{namespace}/devices/{name}/metrics/{metric}"),
        "the router's routes were not found in its Debug form: {debug}"
    );
    let document = api::openapi::build();
    let documented: BTreeSet<&str> = document["paths"]
        .as_object()
        .expect("paths")
        .keys()
        .map(String::as_str)
        .collect();
    // Each kind has its own list and get paths in the document; the router serves them
    // through `{resource}`.
    let routes: BTreeSet<&str> = routes
        .into_iter()
        .filter(|r| !r.starts_with("/v1/namespaces/{namespace}/{resource}"))
        .collect();
    // Custom verbs (`NAME:run`, `ID:approve`) are served by a `{target}` segment (axum's
    // router does not match a suffix inside a segment): such a route is documented by the
    // paths under its prefix whose last segment is a parameter, with or without a verb.
    let under_target = |route: &str, path: &str| {
        route.strip_suffix("{target}").is_some_and(|prefix| {
            path.strip_prefix(prefix)
                .is_some_and(|last| last.starts_with('{') && !last.contains('/'))
        })
    };
    let missing: Vec<&&str> = routes
        .iter()
        .filter(|r| !documented.contains(*r) && !documented.iter().any(|d| under_target(r, d)))
        .collect();
    assert!(
        missing.is_empty(),
        "routes missing from the document: {missing:?}"
    );
    // And the document promises nothing the router does not serve.
    let served = |path: &str| {
        routes.contains(path)
            || routes.iter().any(|r| under_target(r, path))
            || path
                .strip_prefix("/v1/namespaces/{namespace}/")
                .is_some_and(|rest| {
                    let mut parts = rest.split('/');
                    let plural = parts.next().unwrap_or_default();
                    cdot_crds::kind::Kind::from_path_segment(plural).is_some()
                        && matches!(parts.next(), None | Some("{name}"))
                        && parts.next().is_none()
                })
    };
    let extra: Vec<&&str> = documented.iter().filter(|p| !served(p)).collect();
    assert!(extra.is_empty(), "documented but not served: {extra:?}");
}

/// The drift check of the contract's shape: every route people and the console call
/// documents its 200 answer with a real schema (a derived wire type), never a bare
/// `{"type":"object"}`; that real answers match those schemas is checked by the network,
/// alerting and metrics tests, whose harnesses validate every answer they read.
#[test]
fn every_people_route_documents_its_answer_with_a_real_schema() {
    let document = api::openapi::build();
    let schemas = document["components"]["schemas"]
        .as_object()
        .expect("schemas");
    let mut bare = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        if path.starts_with("/v1/agent/") {
            continue;
        }
        for (method, operation) in item.as_object().expect("path item") {
            let Some(schema) =
                operation["responses"]["200"]["content"]["application/json"].get("schema")
            else {
                continue;
            };
            let resolved = schema["$ref"]
                .as_str()
                .and_then(|r| r.strip_prefix("#/components/schemas/"))
                .map_or(schema, |name| &schemas[name]);
            let object = resolved.as_object().expect("a schema is an object");
            if object.keys().all(|k| k == "type" || k == "description") {
                bare.push(format!("{method} {path}"));
            }
        }
    }
    assert!(
        bare.is_empty(),
        "answers documented as bare objects: {bare:#?}"
    );
}
