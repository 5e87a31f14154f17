//! A real `cdot-operator standalone` on a test database, for end-to-end tests of the
//! operator's clients (the console), and made-up agents and collectors that seed it
//! through the real agent API (enrollment, signed JWTs, metrics and collector batches).
//!
//! The operator's own tests have an older copy of these in `operator/tests/support`; they
//! can move here.
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use cdot_crds::{
    device::DeviceClass,
    wire::{EnrollRequest, EnrollResponse, MetricsBatch, Sample, collector::CollectorBatch},
};
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use serde::Serialize;

use crate::{bins::workspace_bin, free_port};

/// How long the operator may take to answer `/readyz` (migrations on a fresh database).
const READY_TIMEOUT: Duration = Duration::from_secs(90);

/// Runs `cdot-operator token create --quiet` writing its manifest into `dir`; the token.
fn token_create(dir: &Path, args: &[&str]) -> String {
    let output = Command::new(workspace_bin("cdot-operator"))
        .args(["token", "create", "--quiet", "--out-dir"])
        .arg(dir)
        .args(args)
        .output()
        .expect("run cdot-operator token create");
    assert!(
        output.status.success(),
        "token create failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// An API token for people with `role` (`viewer`, `operator`, `admin`) over `namespaces`
/// (comma-separated), defined in `namespace`.
pub fn create_token(
    dir: &Path,
    name: &str,
    namespace: &str,
    role: &str,
    namespaces: &str,
) -> String {
    token_create(
        dir,
        &[
            "--name",
            name,
            "--namespace",
            namespace,
            "--role",
            role,
            "--namespaces",
            namespaces,
        ],
    )
}

/// A 100-use enrollment token for `namespace`.
pub fn create_enrollment_token(dir: &Path, name: &str, namespace: &str) -> String {
    token_create(
        dir,
        &[
            "--type",
            "enrollment",
            "--max-uses",
            "100",
            "--name",
            name,
            "--namespace",
            namespace,
        ],
    )
}

/// A running `cdot-operator standalone` on `--manifests`; interrupted (SIGINT) on drop.
pub struct Operator {
    child: Option<Child>,
    /// `http(s)://127.0.0.1:<port>`: the people API, which also takes enrollments.
    pub base: String,
    pub log: PathBuf,
}

impl Operator {
    /// Starts on free ports with its data directory and log under `work` and `extra`
    /// flags, and waits until `/readyz` answers 200.
    pub async fn start(manifests: &Path, database_url: &str, work: &Path, extra: &[&str]) -> Self {
        let (port, agent_port) = (free_port(), free_port());
        let log = work.join(format!("operator-{port}.log"));
        let file = std::fs::File::create(&log).expect("operator log file");
        let child = Command::new(workspace_bin("cdot-operator"))
            .arg("standalone")
            .arg("--manifests")
            .arg(manifests)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--agent-listen")
            .arg(format!("127.0.0.1:{agent_port}"))
            .arg("--data-dir")
            .arg(work.join(format!("data-{port}")))
            .arg("--database-url")
            .arg(database_url)
            .args(extra)
            .env_remove("DATABASE_URL")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("spawn cdot-operator");
        // `--tls-cert` serves the people API over TLS.
        let scheme = if extra.contains(&"--tls-cert") {
            "https"
        } else {
            "http"
        };
        let mut operator = Self {
            child: Some(child),
            base: format!("{scheme}://127.0.0.1:{port}"),
            log,
        };
        operator.wait_ready().await;
        operator
    }

    async fn wait_ready(&mut self) {
        let client = client();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("cdot-operator exited with {status}:\n{}", self.logs());
            }
            if let Ok(response) = client.get(format!("{}/readyz", self.base)).send().await
                && response.status().is_success()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "cdot-operator not ready after {READY_TIMEOUT:?}:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `kill -9`: the operator is gone at once, as in a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET `path` with a bearer token; the status and the body parsed as `T`.
    pub async fn get<T: serde::de::DeserializeOwned>(&self, token: &str, path: &str) -> T {
        let response = client()
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "GET {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("GET {path}: {e}: {text}"))
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(pid) = i32::try_from(child.id()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGINT,
                );
            }
            if !crate::process::wait_until(&mut child, Instant::now() + crate::process::GRACE) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Trusts any certificate: the fixture only waits and seeds, the client under test is what
/// checks the operator's certificate.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client")
}

#[derive(Serialize)]
struct Claims {
    sub: uuid::Uuid,
    aud: &'static str,
    iat: i64,
    exp: i64,
    jti: uuid::Uuid,
}

/// (metric, series labels, value).
pub type MadeUpSample<'a> = (&'a str, &'a [(&'a str, &'a str)], f64);

/// A device enrolled with a JWT key that sends what the test makes up: metrics samples
/// (an agent) or collector batches (a collector), at exact values and times.
pub struct MadeUpAgent {
    pub uid: uuid::Uuid,
    pub name: String,
    key: Ed25519KeyPair,
    base: String,
    client: reqwest::Client,
}

impl MadeUpAgent {
    /// Enrolls `device` in `namespace` with the enrollment `token`; `class` is the class
    /// of the Device it creates (a collector sends `Collector`).
    pub async fn enroll(
        operator: &Operator,
        token: &str,
        namespace: &str,
        device: &str,
        class: Option<DeviceClass>,
    ) -> Self {
        let pkcs8 =
            Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).expect("pkcs8");
        let key = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("key");
        let client = client();
        let response = client
            .post(format!("{}/v1/agent/enroll", operator.base))
            .json(&EnrollRequest {
                token: token.into(),
                device_name: device.into(),
                namespace: Some(namespace.into()),
                csr_pem: None,
                jwt_public_key: Some(URL_SAFE_NO_PAD.encode(key.public_key().as_ref())),
                agent_version: "0.1.0-test".into(),
                device_class: class,
            })
            .send()
            .await
            .expect("enroll");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert!(status.is_success(), "enroll {device}: {status} {text}");
        let enrolled: EnrollResponse = serde_json::from_str(&text).expect("EnrollResponse");
        Self {
            uid: enrolled.device_uid,
            name: device.into(),
            key,
            base: operator.base.clone(),
            client,
        }
    }

    fn jwt(&self) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(0));
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"EdDSA","typ":"JWT"}"#);
        let claims = URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&Claims {
                sub: self.uid,
                aud: "cdot-rmm",
                iat: now,
                exp: now + 300,
                jti: uuid::Uuid::new_v4(),
            })
            .expect("claims"),
        );
        let signed = format!("{header}.{claims}");
        format!(
            "{signed}.{}",
            URL_SAFE_NO_PAD.encode(self.key.sign(signed.as_bytes()).as_ref())
        )
    }

    /// One metrics batch of `(metric, labels, value)` taken at `t_ms`, declaring that the
    /// agent reports every `interval_secs` (liveness follows it); the HTTP status.
    pub async fn send_metrics(
        &self,
        t_ms: i64,
        samples: &[MadeUpSample<'_>],
        interval_secs: u32,
    ) -> u16 {
        let batch = MetricsBatch {
            batch_id: uuid::Uuid::new_v4(),
            agent_version: "0.1.0-test".into(),
            samples: samples
                .iter()
                .map(|(n, l, v)| Sample {
                    t: t_ms,
                    n: (*n).into(),
                    l: l.iter()
                        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                        .collect::<BTreeMap<_, _>>(),
                    v: *v,
                })
                .collect(),
            interval_secs: Some(interval_secs),
        };
        self.post("/v1/agent/metrics", &batch).await
    }

    /// One collector batch (flows, interface samples, probe results); the HTTP status.
    pub async fn send_collector(&self, batch: &CollectorBatch) -> u16 {
        self.post("/v1/agent/collector/batches", batch).await
    }

    async fn post(&self, path: &str, body: &impl Serialize) -> u16 {
        self.client
            .post(format!("{}{path}", self.base))
            .bearer_auth(self.jwt())
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
            .status()
            .as_u16()
    }
}

/// Polls `check` every 50 ms until it returns `Some` or `timeout` passes.
pub async fn wait_for<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
