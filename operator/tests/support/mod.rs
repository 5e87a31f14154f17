//! Fixtures shared by the operator's end-to-end tests: a PostgreSQL database per test, the
//! real `cdot-operator` binary as a child process, tokens, and waiting on conditions.
#![allow(dead_code)] // each test binary uses a different part of the fixtures

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

pub mod patching;

#[allow(unused_imports)] // as above: not every test binary uses every fixture
pub use cdot_testkit::{bins::workspace_bin, free_port, pg::TestDb};

pub fn operator_bin() -> &'static str {
    env!("CARGO_BIN_EXE_cdot-operator")
}

#[allow(unused_imports)] // not every test binary makes tokens or waits
pub use cdot_testkit::operator::{create_enrollment_token, create_token, wait_for};

/// A running `cdot-operator standalone`; interrupted (SIGINT) and reaped on drop.
pub struct Operator {
    child: Option<Child>,
    pub base: String,
    /// `https://127.0.0.1:<port>` of the agent API (certificate from the operator's CA).
    pub agent_base: String,
    /// The data directory (holds `agent-ca.crt`).
    pub data_dir: PathBuf,
    pub log: PathBuf,
}

impl Operator {
    /// Starts the operator and waits until `/readyz` answers 200.
    pub async fn start(
        manifests: &[&Path],
        database_url: Option<&str>,
        extra: &[&str],
        log_dir: &Path,
    ) -> Self {
        Self::start_at(
            (free_port(), free_port()),
            manifests,
            database_url,
            extra,
            log_dir,
        )
        .await
    }

    /// Starts on given (API, agent API) ports, e.g. to restart where agents expect it.
    pub async fn start_at(
        ports: (u16, u16),
        manifests: &[&Path],
        database_url: Option<&str>,
        extra: &[&str],
        log_dir: &Path,
    ) -> Self {
        let mut command = Command::new(operator_bin());
        command.arg("standalone");
        for dir in manifests {
            command.arg("--manifests").arg(dir);
        }
        Self::launch(command, ports, database_url, extra, log_dir).await
    }

    /// Starts `cdot-operator run` (Kubernetes mode) against the API server of `kubeconfig`.
    pub async fn start_in_cluster(
        kubeconfig: &Path,
        database_url: &str,
        extra: &[&str],
        log_dir: &Path,
    ) -> Self {
        let mut command = Command::new(operator_bin());
        command.arg("run").env("KUBECONFIG", kubeconfig);
        Self::launch(
            command,
            (free_port(), free_port()),
            Some(database_url),
            extra,
            log_dir,
        )
        .await
    }

    async fn launch(
        mut command: Command,
        (port, agent_port): (u16, u16),
        database_url: Option<&str>,
        extra: &[&str],
        log_dir: &Path,
    ) -> Self {
        let log = log_dir.join(format!(
            "operator-{port}-{}.log",
            uuid::Uuid::new_v4().simple()
        ));
        command
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--agent-listen")
            .arg(format!("127.0.0.1:{agent_port}"));
        if !extra.contains(&"--data-dir") {
            command
                .arg("--data-dir")
                .arg(log_dir.join(format!("data-{port}")));
        }
        command
            .args(extra)
            .env_remove("DATABASE_URL")
            .env("RUST_LOG", "info");
        if let Some(url) = database_url {
            command.arg("--database-url").arg(url);
        }
        let file = std::fs::File::create(&log).expect("log file");
        command
            .stdout(Stdio::null())
            .stderr(file.try_clone().expect("clone"))
            .stdin(Stdio::null());
        let child = command.spawn().expect("spawn cdot-operator");
        let scheme = if extra.contains(&"--tls-cert") {
            "https"
        } else {
            "http"
        };
        let mut operator = Self {
            child: Some(child),
            base: format!("{scheme}://127.0.0.1:{port}"),
            agent_base: format!("https://127.0.0.1:{agent_port}"),
            data_dir: extra
                .iter()
                .position(|a| *a == "--data-dir")
                .and_then(|i| extra.get(i + 1))
                .map_or_else(|| log_dir.join(format!("data-{port}")), PathBuf::from),
            log,
        };
        operator.wait_ready().await;
        operator
    }

    async fn wait_ready(&mut self) {
        let client = insecure_client();
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "cdot-operator exited with {status} before becoming ready:\n{}",
                    self.logs()
                );
            }
            if let Ok(response) = client.get(format!("{}/readyz", self.base)).send().await
                && response.status().is_success()
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "cdot-operator not ready after 90 s:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The (API, agent API) ports.
    pub fn ports(&self) -> (u16, u16) {
        let port = |base: &str| {
            base.rsplit(':')
                .next()
                .and_then(|p| p.parse().ok())
                .unwrap_or_default()
        };
        (port(&self.base), port(&self.agent_base))
    }

    /// Peak resident memory of the operator so far (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let pid = self.child.as_ref().expect("running").id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/<pid>/status")
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics_text(&self) -> String {
        insecure_client()
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text")
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// `kill -9`: no shutdown, nothing flushed.
    pub fn kill(&mut self) {
        let mut child = self.child.take().expect("running");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Sends SIGINT (Ctrl-C) and waits for the exit status.
    pub fn interrupt(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!(
                    "cdot-operator did not stop within 60 s of SIGINT:\n{}",
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.interrupt();
        }
    }
}

/// A client that trusts any certificate (only for local tests that do not test TLS itself).
pub fn insecure_client() -> reqwest::Client {
    reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// A fresh Ed25519 key, as an agent makes for JWT enrollment.
pub fn ed25519() -> ring::signature::Ed25519KeyPair {
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
        .expect("pkcs8");
    ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("key")
}

/// A JWT for device `sub`, signed with `key`, valid for `lifetime` seconds from now.
pub fn jwt(key: &ring::signature::Ed25519KeyPair, sub: uuid::Uuid, lifetime: i64) -> String {
    use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
    let now = jiff::Timestamp::now().as_second();
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"EdDSA","typ":"JWT"}"#);
    let claims = URL_SAFE_NO_PAD.encode(
        serde_json::json!({ "sub": sub, "aud": "cdot-rmm", "iat": now, "exp": now + lifetime, "jti": uuid::Uuid::new_v4() })
            .to_string(),
    );
    let signed = format!("{header}.{claims}");
    format!(
        "{signed}.{}",
        URL_SAFE_NO_PAD.encode(key.sign(signed.as_bytes()).as_ref())
    )
}

/// (metric, series labels, value).
pub type MadeUpSample<'a> = (&'a str, &'a [(&'a str, &'a str)], f64);

/// An agent enrolled with a JWT key that sends batches it makes up: for tests that need
/// exact values at exact times (a threshold crossed on the third batch), which a real
/// agent's host metrics cannot give.
pub struct JwtAgent {
    pub uid: uuid::Uuid,
    pub name: String,
    key: ring::signature::Ed25519KeyPair,
    base: String,
    client: reqwest::Client,
}

impl JwtAgent {
    /// Enrolls `device` in `namespace` with `token` through the people listener.
    pub async fn enroll(operator: &Operator, token: &str, namespace: &str, device: &str) -> Self {
        use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
        use ring::signature::KeyPair as _;
        let key = ed25519();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        let response = client
            .post(format!("{}/v1/agent/enroll", operator.base))
            .json(&cdot_crds::wire::EnrollRequest {
                token: token.into(),
                device_name: device.into(),
                namespace: Some(namespace.into()),
                csr_pem: None,
                jwt_public_key: Some(URL_SAFE_NO_PAD.encode(key.public_key().as_ref())),
                agent_version: "0.1.0-test".into(),
                device_class: None,
            })
            .send()
            .await
            .expect("enroll");
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        assert!(status.is_success(), "enroll {device}: {status} {body}");
        let enrolled: cdot_crds::wire::EnrollResponse =
            serde_json::from_value(body).expect("EnrollResponse");
        Self {
            uid: enrolled.device_uid,
            name: device.into(),
            key,
            base: operator.base.clone(),
            client,
        }
    }

    /// `GET /v1/agent/work`: holds up to `wait` seconds unless the list's revision differs
    /// from `seen`.
    pub async fn work(&self, seen: Option<&str>, wait: u64) -> cdot_crds::wire::work::WorkList {
        self.try_work(seen, wait).await.expect("fetch work")
    }

    /// [`JwtAgent::work`], or why the request failed (the operator went away).
    pub async fn try_work(
        &self,
        seen: Option<&str>,
        wait: u64,
    ) -> Result<cdot_crds::wire::work::WorkList, String> {
        let query = match seen {
            Some(rev) => format!("wait={wait}&seen={rev}"),
            None => "wait=0".to_owned(),
        };
        let response = self
            .client
            .get(format!("{}/v1/agent/work?{query}", self.base))
            .bearer_auth(jwt(&self.key, self.uid, 300))
            .timeout(Duration::from_secs(wait + 30))
            .send()
            .await
            .map_err(|e| format!("fetch work: {e}"))?;
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(format!("work: {status} {body}"));
        }
        serde_json::from_str(&body).map_err(|e| format!("WorkList: {e}: {body}"))
    }

    /// `POST /v1/agent/work/reports` of one report; returns the HTTP status.
    pub async fn report(&self, report: &cdot_crds::wire::work::WorkReport) -> u16 {
        self.client
            .post(format!("{}/v1/agent/work/reports", self.base))
            .bearer_auth(jwt(&self.key, self.uid, 300))
            .json(report)
            .send()
            .await
            .expect("send a work report")
            .status()
            .as_u16()
    }

    /// Sends one batch of `(metric, labels, value)` samples taken at `t_ms`; returns the
    /// HTTP status.
    pub async fn send(&self, t_ms: i64, samples: &[MadeUpSample<'_>]) -> u16 {
        let samples: Vec<serde_json::Value> = samples
            .iter()
            .map(|(n, l, v)| {
                let l: std::collections::BTreeMap<&str, &str> = l.iter().copied().collect();
                serde_json::json!({ "t": t_ms, "n": n, "l": l, "v": v })
            })
            .collect();
        let response = self
            .client
            .post(format!("{}/v1/agent/metrics", self.base))
            .bearer_auth(jwt(&self.key, self.uid, 300))
            .json(&serde_json::json!({
                "batchId": uuid::Uuid::new_v4(),
                "agentVersion": "0.1.0-test",
                "samples": samples,
                "intervalSecs": 1,
            }))
            .send()
            .await
            .expect("send metrics");
        response.status().as_u16()
    }
}

/// The operator's OpenAPI document made checkable by a JSON Schema validator: OpenAPI 3.0's
/// `nullable` becomes a `null` alternative, and the subschemas' `$schema` (OpenAPI's
/// dialect, unknown to the validator) goes.
static CONTRACT: std::sync::LazyLock<serde_json::Value> = std::sync::LazyLock::new(|| {
    let mut document = cdot_operator::api::openapi::build();
    checkable(&mut document);
    document
});

fn checkable(value: &mut serde_json::Value) {
    use serde_json::{Value, json};
    match value {
        Value::Object(map) => {
            map.remove("$schema");
            for v in map.values_mut() {
                checkable(v);
            }
            if map.remove("nullable") == Some(Value::Bool(true)) {
                match map.get("type").cloned() {
                    Some(Value::String(t)) => {
                        map.insert("type".into(), json!([t, "null"]));
                    }
                    _ => {
                        let rest = Value::Object(std::mem::take(map));
                        map.insert("anyOf".into(), json!([rest, { "type": "null" }]));
                    }
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(checkable),
        _ => {}
    }
}

/// Fails unless `body`, a successful answer to `GET uri`, is what the OpenAPI document says
/// that route answers: the document's path template that matches `uri` must exist and give
/// a 200 schema, and the body must validate against it. Every test that reads through a
/// harness calling this checks the published contract against real answers.
pub fn assert_documented(uri: &str, body: &serde_json::Value) {
    use serde_json::json;
    let path = uri.split('?').next().unwrap_or(uri);
    let segments: Vec<&str> = path.split('/').collect();
    let paths = CONTRACT["paths"].as_object().expect("document paths");
    // The most specific template: fewest `{placeholders}`.
    let template = paths
        .keys()
        .filter(|t| {
            let parts: Vec<&str> = t.split('/').collect();
            parts.len() == segments.len()
                && parts
                    .iter()
                    .zip(&segments)
                    .all(|(p, s)| p == s || (p.starts_with('{') && p.ends_with('}')))
        })
        .min_by_key(|t| t.matches('{').count())
        .unwrap_or_else(|| panic!("GET {path} is not in the OpenAPI document"));
    let schema =
        &paths[template]["get"]["responses"]["200"]["content"]["application/json"]["schema"];
    assert!(
        schema.is_object(),
        "the document gives GET {template} no 200 schema"
    );
    let root = json!({ "allOf": [schema], "components": CONTRACT["components"] });
    let validator = jsonschema::options()
        .should_validate_formats(false)
        .build(&root)
        .unwrap_or_else(|e| panic!("the schema of GET {template} does not compile: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(body)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "GET {uri} answered what the document ({template}) does not allow: {errors:#?}\nbody: {body}"
    );
}

/// The real `cdot-collector` of an end-to-end test: enrolled into `operator` with an
/// enrollment token as Device `device`, its state under `work/collector`, its log appended
/// to `work/collector.log`, its own `/metrics` on `metrics_port`.
pub struct TestCollector {
    pub state: PathBuf,
    pub log: PathBuf,
    pub metrics_port: u16,
}

impl TestCollector {
    /// Enrolls (panics with the collector's answer when it fails).
    pub fn enroll(operator: &Operator, token: &str, device: &str, work: &Path) -> Self {
        let state = work.join("collector");
        let enroll = Command::new(workspace_bin("cdot-collector"))
            .arg("--state-dir")
            .arg(&state)
            .args(["enroll", "--server", &operator.agent_base, "--token", token])
            .args(["--device-name", device, "--ca-cert"])
            .arg(operator.data_dir.join("agent-ca.crt"))
            .output()
            .expect("cdot-collector enroll");
        assert!(
            enroll.status.success(),
            "enroll failed: {}\noperator log:\n{}",
            String::from_utf8_lossy(&enroll.stderr),
            operator.logs()
        );
        Self {
            state,
            log: work.join("collector.log"),
            metrics_port: free_port(),
        }
    }

    /// `cdot-collector run` shipping every second, with `extra` flags (e.g. receivers).
    pub fn run(&self, extra: &[&str]) -> cdot_testkit::process::Daemon {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("collector log");
        cdot_testkit::process::Daemon(
            Command::new(workspace_bin("cdot-collector"))
                .arg("--state-dir")
                .arg(&self.state)
                .args(["run", "--ship-interval-secs", "1"])
                .args(extra)
                .arg("--metrics-listen")
                .arg(format!("127.0.0.1:{}", self.metrics_port))
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("start cdot-collector"),
        )
    }

    /// A scan-only collector: no flow receivers, assignments every 5 s.
    pub fn run_scanner(&self) -> cdot_testkit::process::Daemon {
        self.run(&[
            "--no-sflow",
            "--no-netflow",
            "--assignments-refresh-secs",
            "5",
        ])
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// `GET path` with `token`, which must succeed; the body as `T`.
pub async fn get_ok<T: serde::de::DeserializeOwned>(
    operator: &Operator,
    token: &str,
    path: &str,
) -> T {
    let resp = insecure_client()
        .get(format!("{}{path}", operator.base))
        .bearer_auth(token)
        .send()
        .await
        .expect("GET");
    let status = resp.status();
    let body = resp.text().await.expect("body");
    assert!(status.is_success(), "GET {path}: {status} {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

/// The newest run of Workflow `namespace/workflow`, read whole, once it has finished
/// (within `within`); panics with the operator's log when it does not.
pub async fn finished_run(
    operator: &Operator,
    token: &str,
    namespace: &str,
    workflow: &str,
    within: Duration,
) -> cdot_crds::wire::automation::RunView {
    use cdot_crds::wire::automation::RunList;
    let list = format!("/v1/namespaces/{namespace}/workflowruns?workflow={workflow}");
    let id = wait_for(within, || async {
        let runs: RunList = get_ok(operator, token, &list).await;
        let run = runs.runs.first()?;
        run.state.is_final().then_some(run.id)
    })
    .await
    .unwrap_or_else(|| {
        panic!(
            "no run of {namespace}/{workflow} finished in {within:?}:\n{}",
            operator.logs()
        )
    });
    get_ok(
        operator,
        token,
        &format!("/v1/namespaces/{namespace}/workflowruns/{id}"),
    )
    .await
}

/// A real `cdot-agent run` and where it logs.
pub struct Agent {
    pub daemon: cdot_testkit::process::Daemon,
    pub log: PathBuf,
}

/// `cdot-agent enroll` as `device` (mutual TLS) with `token`, its state in `state`.
pub fn enroll_agent(operator: &Operator, token: &str, device: &str, state: &Path) {
    let enroll = Command::new(workspace_bin("cdot-agent"))
        .args(["enroll", "--server", &operator.agent_base, "--token", token])
        .args(["--device-name", device, "--ca-cert"])
        .arg(operator.data_dir.join("agent-ca.crt"))
        .arg("--state-dir")
        .arg(state)
        .output()
        .expect("cdot-agent enroll");
    assert!(
        enroll.status.success(),
        "enroll {device}: {}",
        String::from_utf8_lossy(&enroll.stderr)
    );
}

/// Enrolls the real agent as `device` (mutual TLS) and runs it with `args`, its state in
/// `work/agent-DEVICE`.
pub fn start_agent(
    operator: &Operator,
    token: &str,
    device: &str,
    work: &Path,
    args: &[&str],
) -> Agent {
    let state = work.join(format!("agent-{device}"));
    enroll_agent(operator, token, device, &state);
    let log = work.join(format!("agent-{device}.log"));
    let daemon = cdot_testkit::process::Daemon(
        Command::new(workspace_bin("cdot-agent"))
            .arg("run")
            .arg("--state-dir")
            .arg(&state)
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("agent log"))
            .spawn()
            .expect("cdot-agent run"),
    );
    Agent { daemon, log }
}
