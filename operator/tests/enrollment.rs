//! Agent enrollment and identity end to end: the real operator binary, real TLS with the
//! operator's CA, real client certificates and Ed25519 JWTs, a real PostgreSQL.
mod support;

use std::{path::Path, time::Duration};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use cdot_crds::{
    api_token::{format_token_hash, hash_token},
    wire::{EnrollRequest, EnrollResponse, RenewResponse},
};
use reqwest::StatusCode;
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use serde_json::{Value, json};
use support::{Operator, TestDb, create_token, ed25519, jwt, wait_for};

/// Writes an enrollment token Secret; `expires` is RFC 3339 (may be in the past).
fn enrollment_token(
    dir: &Path,
    name: &str,
    namespace: &str,
    token: &str,
    max_uses: u32,
    expires: Option<&str>,
) {
    let mut yaml = format!(
        "apiVersion: v1\nkind: Secret\ntype: rmm.cdot.io/enrollment-token\nmetadata:\n  name: {name}\n  namespace: {namespace}\n\
         stringData:\n  tokenHash: \"{}\"\n  maxUses: \"{max_uses}\"\n  labels: \"rmm.cdot.io/site=london\"\n",
        format_token_hash(&hash_token(token))
    );
    if let Some(expires) = expires {
        yaml.push_str(&format!("  expires: \"{expires}\"\n"));
    }
    std::fs::create_dir_all(dir).expect("mkdir");
    std::fs::write(dir.join(format!("{name}.yaml")), yaml).expect("write");
}

/// Writes an enrollment token Secret bound to one Device (re-enrollment).
fn bound_token(dir: &Path, name: &str, namespace: &str, token: &str, device: &str) {
    let yaml = format!(
        "apiVersion: v1\nkind: Secret\ntype: rmm.cdot.io/enrollment-token\nmetadata:\n  name: {name}\n  namespace: {namespace}\n\
         stringData:\n  tokenHash: \"{}\"\n  device: {device}\n",
        format_token_hash(&hash_token(token))
    );
    std::fs::write(dir.join(format!("{name}.yaml")), yaml).expect("write");
}

struct Fixture {
    _db: TestDb,
    _tmp: tempfile::TempDir,
    operator: Operator,
    viewer: String,
    ca_pem: String,
}

async fn fixture() -> Fixture {
    let db = TestDb::create().await;
    let tmp = tempfile::tempdir().expect("tmp");
    let manifests = tmp.path().join("repo");
    enrollment_token(&manifests, "one-time", "acme", "cdot_one_time", 1, None);
    enrollment_token(&manifests, "two-uses", "acme", "cdot_two_uses", 2, None);
    enrollment_token(&manifests, "fleet", "acme", "cdot_fleet", 100, None);
    enrollment_token(
        &manifests,
        "expired",
        "acme",
        "cdot_expired",
        5,
        Some("2020-01-01T00:00:00Z"),
    );
    bound_token(
        &manifests,
        "web-01-again",
        "acme",
        "cdot_web_01_again",
        "web-01",
    );
    bound_token(
        &manifests,
        "kiosk-again",
        "acme",
        "cdot_kiosk_again",
        "kiosk-02",
    );
    // Declared in git, never enrolled: a token of the namespace may claim it.
    std::fs::write(
        manifests.join("printer.yaml"),
        "apiVersion: rmm.cdot.io/v1alpha1\nkind: Device\nmetadata:\n  name: printer-01\n  namespace: acme\n\
         spec:\n  class: Printer\n  site: london\n",
    )
    .expect("write");
    let viewer = create_token(&manifests, "viewer", "acme", "viewer", "acme");
    let operator = Operator::start(&[&manifests], Some(&db.url), &[], tmp.path()).await;
    let ca_pem =
        std::fs::read_to_string(operator.data_dir.join("agent-ca.crt")).expect("agent-ca.crt");
    Fixture {
        _db: db,
        _tmp: tmp,
        operator,
        viewer,
        ca_pem,
    }
}

impl Fixture {
    /// A client that trusts only the operator's CA, optionally with a client certificate.
    fn client(&self, identity: Option<(&str, &str)>) -> reqwest::Client {
        let mut builder = reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(
                reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).expect("ca"),
            )
            .timeout(Duration::from_secs(10));
        if let Some((cert, key)) = identity {
            builder = builder.identity(
                reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).expect("identity"),
            );
        }
        builder.build().expect("client")
    }

    async fn enroll(&self, request: &EnrollRequest) -> (StatusCode, Value) {
        let response = self
            .client(None)
            .post(format!("{}/v1/agent/enroll", self.operator.agent_base))
            .json(request)
            .send()
            .await
            .expect("enroll request");
        (
            response.status(),
            response.json().await.unwrap_or(Value::Null),
        )
    }
}

fn csr(key: &rcgen::KeyPair) -> String {
    rcgen::CertificateParams::new(Vec::<String>::new())
        .expect("params")
        .serialize_request(key)
        .expect("csr")
        .pem()
        .expect("pem")
}

fn mtls_request(token: &str, device: &str, key: &rcgen::KeyPair) -> EnrollRequest {
    EnrollRequest {
        token: token.into(),
        device_name: device.into(),
        namespace: None,
        csr_pem: Some(csr(key)),
        jwt_public_key: None,
        agent_version: "0.1.0-test".into(),
        device_class: None,
    }
}

#[tokio::test]
async fn enrollment_tokens_are_checked_and_used_up() {
    let f = fixture().await;
    let key = rcgen::KeyPair::generate().expect("key");

    // A good token creates the Device with the token's labels and marks it enrolled.
    let (status, body) = f
        .enroll(&mtls_request("cdot_one_time", "web-01", &key))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let enrolled: EnrollResponse = serde_json::from_value(body).expect("EnrollResponse");
    assert_eq!(
        (enrolled.namespace.as_str(), enrolled.device_name.as_str()),
        ("acme", "web-01")
    );
    assert!(
        enrolled
            .certificate_pem
            .as_deref()
            .is_some_and(|c| c.contains("BEGIN CERTIFICATE"))
    );
    let url = format!("{}/v1/namespaces/acme/devices/web-01", f.operator.base);
    let device = wait_for(Duration::from_secs(5), || async {
        let device: Value = reqwest::Client::new()
            .get(&url)
            .bearer_auth(&f.viewer)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let enrolled = device["status"]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Enrolled" && c["status"] == "True");
        enrolled.then_some(device)
    })
    .await
    .unwrap_or_else(|| panic!("device not shown as enrolled:\n{}", f.operator.logs()));
    assert_eq!(device["metadata"]["labels"]["rmm.cdot.io/site"], "london");
    assert_eq!(device["status"]["source"], "Agent");
    assert_eq!(device["status"]["agent"]["id"], json!(enrolled.device_uid));

    // The same one-time token again: refused, naming the token and its use count.
    let (status, body) = f
        .enroll(&mtls_request("cdot_one_time", "web-02", &key))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["field"], "token");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("acme/one-time") && m.contains("used 1 of 1")),
        "{body}"
    );

    // Expired and unknown tokens.
    let (status, body) = f
        .enroll(&mtls_request("cdot_expired", "web-03", &key))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("expired at 2020-01-01")),
        "{body}"
    );
    let (status, _) = f
        .enroll(&mtls_request("cdot_nobody_has_this", "web-04", &key))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A token of acme used to join globex: refused, and the attempt does not use it up.
    let wrong = EnrollRequest {
        namespace: Some("globex".into()),
        ..mtls_request("cdot_two_uses", "web-05", &key)
    };
    let (status, body) = f.enroll(&wrong).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::FORBIDDEN, Some("namespace")),
        "{body}"
    );
    for device in ["web-05", "web-06"] {
        let (status, body) = f.enroll(&mtls_request("cdot_two_uses", device, &key)).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "refused attempt consumed a use: {body}"
        );
    }

    // Bad requests name the field.
    let (status, body) = f
        .enroll(&mtls_request("cdot_fleet", "Not_A_Name", &key))
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("deviceName")),
        "{body}"
    );
    let broken = EnrollRequest {
        csr_pem: Some("not a csr".into()),
        ..mtls_request("cdot_fleet", "web-07", &key)
    };
    let (status, body) = f.enroll(&broken).await;
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("csrPem")),
        "{body}"
    );
}

#[tokio::test]
async fn agent_routes_need_the_devices_own_credentials() {
    let f = fixture().await;
    let key_a = rcgen::KeyPair::generate().expect("key");
    let (status, body) = f
        .enroll(&mtls_request("cdot_fleet", "device-a", &key_a))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let a: EnrollResponse = serde_json::from_value(body).expect("enrolled");
    let cert_a = a.certificate_pem.clone().expect("certificate");
    let key_b = rcgen::KeyPair::generate().expect("key");
    let (status, _) = f
        .enroll(&mtls_request("cdot_fleet", "device-b", &key_b))
        .await;
    assert_eq!(status, StatusCode::OK);

    // Without a client certificate (and without a JWT): 401.
    let config = format!("{}/v1/agent/config", f.operator.agent_base);
    assert_eq!(
        f.client(None)
            .get(&config)
            .send()
            .await
            .expect("request")
            .status(),
        StatusCode::UNAUTHORIZED
    );

    // With device A's certificate the operator knows it is A, whatever the body says:
    // naming another device in a body is an unknown field, refused.
    let client_a = f.client(Some((&cert_a, &key_a.serialize_pem())));
    let response = client_a.get(&config).send().await.expect("config");
    assert_eq!(response.status(), StatusCode::OK);
    let batch = json!({
        "batchId": uuid::Uuid::new_v4(),
        "agentVersion": "0.1.0-test",
        "device": "device-b",
        "samples": [{ "t": jiff::Timestamp::now().as_millisecond(), "n": "cpu", "v": 12.5 }],
    });
    let response = client_a
        .post(format!("{}/v1/agent/metrics", f.operator.agent_base))
        .json(&batch)
        .send()
        .await
        .expect("post");
    assert!(
        response.status().is_client_error(),
        "a body naming another device was accepted: {}",
        response.status()
    );

    // A certificate from another CA is refused during the handshake.
    let foreign_key = rcgen::KeyPair::generate().expect("key");
    let foreign = rcgen::CertificateParams::new(vec!["device-a".into()])
        .expect("params")
        .self_signed(&foreign_key)
        .expect("cert");
    let client = f.client(Some((&foreign.pem(), &foreign_key.serialize_pem())));
    assert!(
        client.get(&config).send().await.is_err(),
        "a certificate of another CA was accepted"
    );

    // Renewal over mutual TLS gives a new working certificate.
    let new_key = rcgen::KeyPair::generate().expect("key");
    let response = client_a
        .post(format!("{}/v1/agent/renew", f.operator.agent_base))
        .json(&json!({ "csrPem": csr(&new_key) }))
        .send()
        .await
        .expect("renew");
    assert_eq!(response.status(), StatusCode::OK);
    let renewed: RenewResponse = response.json().await.expect("RenewResponse");
    let renewed_client = f.client(Some((&renewed.certificate_pem, &new_key.serialize_pem())));
    assert_eq!(
        renewed_client
            .get(&config)
            .send()
            .await
            .expect("config")
            .status(),
        StatusCode::OK
    );
}

impl Fixture {
    /// The status of `GET /v1/agent/config` with these credentials (mutual TLS).
    async fn config_status(&self, cert: &str, key: &rcgen::KeyPair) -> StatusCode {
        self.client(Some((cert, &key.serialize_pem())))
            .get(format!("{}/v1/agent/config", self.operator.agent_base))
            .send()
            .await
            .expect("config")
            .status()
    }

    async fn enroll_ok(&self, request: &EnrollRequest) -> EnrollResponse {
        let (status, body) = self.enroll(request).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        serde_json::from_value(body).expect("EnrollResponse")
    }
}

/// Issue 11: any token of a namespace used to take over an enrolled Device (same uid, a
/// new certificate, the old one still working). Now only a token bound to the Device
/// re-enrolls it, and that revokes the replaced credentials at once.
#[tokio::test]
async fn enrolled_devices_cannot_be_taken_over() {
    let f = fixture().await;
    let key_a = rcgen::KeyPair::generate().expect("key");
    let first = f
        .enroll_ok(&mtls_request("cdot_fleet", "web-01", &key_a))
        .await;
    let cert_a = first.certificate_pem.clone().expect("certificate");
    assert_eq!(f.config_status(&cert_a, &key_a).await, StatusCode::OK);

    // A namespace token onto the enrolled Device: 409, saying how to re-enroll.
    let key_x = rcgen::KeyPair::generate().expect("key");
    let (status, body) = f
        .enroll(&mtls_request("cdot_fleet", "web-01", &key_x))
        .await;
    assert_eq!(
        (status, body["field"].as_str(), body["reason"].as_str()),
        (
            StatusCode::CONFLICT,
            Some("deviceName"),
            Some("AlreadyEnrolled")
        ),
        "{body}"
    );
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("acme/web-01")
            && message.contains("--device web-01")
            && message.contains("acme/fleet"),
        "{message}"
    );
    // Nor with a JWT key instead of a certificate.
    let jwt_onto_web = EnrollRequest {
        csr_pem: None,
        jwt_public_key: Some(URL_SAFE_NO_PAD.encode(ed25519().public_key().as_ref())),
        ..mtls_request("cdot_fleet", "web-01", &key_x)
    };
    assert_eq!(f.enroll(&jwt_onto_web).await.0, StatusCode::CONFLICT);
    assert_eq!(f.config_status(&cert_a, &key_a).await, StatusCode::OK);

    // A Device declared in git and never enrolled is claimed once, then protected too.
    let key_p = rcgen::KeyPair::generate().expect("key");
    let printer = f
        .enroll_ok(&mtls_request("cdot_fleet", "printer-01", &key_p))
        .await;
    assert!(printer.certificate_pem.is_some());
    assert_eq!(
        f.enroll(&mtls_request("cdot_fleet", "printer-01", &key_x))
            .await
            .0,
        StatusCode::CONFLICT
    );

    // A bound token enrolls only its Device...
    let (status, body) = f
        .enroll(&mtls_request("cdot_web_01_again", "web-02", &key_x))
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (StatusCode::FORBIDDEN, Some("deviceName")),
        "{body}"
    );
    // ...and re-enrolling it keeps the uid and revokes the old certificate at once.
    let key_b = rcgen::KeyPair::generate().expect("key");
    let second = f
        .enroll_ok(&mtls_request("cdot_web_01_again", "web-01", &key_b))
        .await;
    assert_eq!(second.device_uid, first.device_uid);
    let cert_b = second.certificate_pem.clone().expect("certificate");
    assert_eq!(
        f.config_status(&cert_a, &key_a).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(f.config_status(&cert_b, &key_b).await, StatusCode::OK);

    // Renewal: the presented certificate works until the renewed one is first used.
    let key_c = rcgen::KeyPair::generate().expect("key");
    let response = f
        .client(Some((&cert_b, &key_b.serialize_pem())))
        .post(format!("{}/v1/agent/renew", f.operator.agent_base))
        .json(&json!({ "csrPem": csr(&key_c) }))
        .send()
        .await
        .expect("renew");
    assert_eq!(response.status(), StatusCode::OK);
    let cert_c = response
        .json::<RenewResponse>()
        .await
        .expect("RenewResponse")
        .certificate_pem;
    assert_eq!(f.config_status(&cert_b, &key_b).await, StatusCode::OK);
    assert_eq!(f.config_status(&cert_c, &key_c).await, StatusCode::OK);
    assert_eq!(
        f.config_status(&cert_b, &key_b).await,
        StatusCode::UNAUTHORIZED
    );

    // JWT identities: re-enrollment replaces the key, and the old key's JWTs stop working.
    let (old_key, new_key) = (ed25519(), ed25519());
    let jwt_request = |token: &str, key: &Ed25519KeyPair| EnrollRequest {
        csr_pem: None,
        jwt_public_key: Some(URL_SAFE_NO_PAD.encode(key.public_key().as_ref())),
        ..mtls_request(token, "kiosk-02", &key_x)
    };
    let kiosk = f.enroll_ok(&jwt_request("cdot_fleet", &old_key)).await;
    assert_eq!(
        f.enroll(&jwt_request("cdot_fleet", &new_key)).await.0,
        StatusCode::CONFLICT
    );
    f.enroll_ok(&jwt_request("cdot_kiosk_again", &new_key))
        .await;
    let config = format!("{}/v1/agent/config", f.operator.base);
    let status = |key: &Ed25519KeyPair| {
        reqwest::Client::new()
            .get(&config)
            .bearer_auth(jwt(key, kiosk.device_uid, 300))
            .send()
    };
    assert_eq!(
        status(&old_key).await.expect("config").status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        status(&new_key).await.expect("config").status(),
        StatusCode::OK
    );
}

/// Two operators on one database, as replicas are: a re-enrollment through one revokes the
/// old certificate on the other at once, although the other had it cached.
#[tokio::test]
async fn a_re_enrollment_revokes_on_every_replica() {
    let f = fixture().await;
    let other_dir = tempfile::tempdir().expect("tmp");
    let manifests = f._tmp.path().join("repo");
    let db_url = f._db.url.clone();
    let other = Operator::start(&[&manifests], Some(&db_url), &[], other_dir.path()).await;
    let key_a = rcgen::KeyPair::generate().expect("key");
    let cert_a = f
        .enroll_ok(&mtls_request("cdot_fleet", "web-01", &key_a))
        .await
        .certificate_pem
        .expect("certificate");
    let on_other = |cert: String, key: String| {
        let client = f.client(Some((&cert, &key)));
        let url = format!("{}/v1/agent/config", other.agent_base);
        async move { client.get(url).send().await.expect("config").status() }
    };
    // The other replica learns (and caches) the current certificate.
    assert_eq!(
        on_other(cert_a.clone(), key_a.serialize_pem()).await,
        StatusCode::OK
    );
    let key_b = rcgen::KeyPair::generate().expect("key");
    f.enroll_ok(&mtls_request("cdot_web_01_again", "web-01", &key_b))
        .await;
    let revoked = wait_for(Duration::from_secs(2), || {
        let status = on_other(cert_a.clone(), key_a.serialize_pem());
        async move { (status.await == StatusCode::UNAUTHORIZED).then_some(()) }
    })
    .await;
    assert!(
        revoked.is_some(),
        "the other replica still accepts the replaced certificate:\n{}",
        other.logs()
    );
}

/// For deployments where TLS ends in front of the operator: the agent signs short-lived
/// JWTs with the Ed25519 key it registered at enrollment.
#[tokio::test]
async fn signed_jwts_authenticate_agents_behind_tls_terminators() {
    let f = fixture().await;
    let key = ed25519();
    let request = EnrollRequest {
        token: "cdot_fleet".into(),
        device_name: "kiosk-01".into(),
        namespace: Some("acme".into()),
        csr_pem: None,
        jwt_public_key: Some(URL_SAFE_NO_PAD.encode(key.public_key().as_ref())),
        agent_version: "0.1.0-test".into(),
        device_class: None,
    };
    let (status, body) = f.enroll(&request).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let enrolled: EnrollResponse = serde_json::from_value(body).expect("enrolled");
    assert!(enrolled.certificate_pem.is_none());

    // Through the people listener (plain HTTP here, as behind a TLS-terminating proxy).
    let config = format!("{}/v1/agent/config", f.operator.base);
    let client = reqwest::Client::new();
    let ok = client
        .get(&config)
        .bearer_auth(jwt(&key, enrolled.device_uid, 300))
        .send()
        .await
        .expect("config");
    assert_eq!(ok.status(), StatusCode::OK);
    let expired = client
        .get(&config)
        .bearer_auth(jwt(&key, enrolled.device_uid, -120))
        .send()
        .await
        .expect("config");
    assert_eq!(expired.status(), StatusCode::UNAUTHORIZED);
    let forged = client
        .get(&config)
        .bearer_auth(jwt(&ed25519(), enrolled.device_uid, 300))
        .send()
        .await
        .expect("config");
    assert_eq!(forged.status(), StatusCode::UNAUTHORIZED);
    // A JWT cannot renew a certificate.
    let renew = client
        .post(format!("{}/v1/agent/renew", f.operator.base))
        .bearer_auth(jwt(&key, enrolled.device_uid, 300))
        .json(&json!({ "csrPem": "x" }))
        .send()
        .await
        .expect("renew");
    assert_eq!(renew.status(), StatusCode::FORBIDDEN);
}
