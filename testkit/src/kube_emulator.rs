//! A Kubernetes API emulator on a random loopback port, for the operator's tests: PyPI's
//! `kmock` 0.8 plus a shim of ours (`testkit/emulator/cdot_kube_emulator.py`) that gives it
//! what kube-rs's watcher, `Controller`, finalizer helper, `Api::patch_status`/`replace`
//! and Lease-based leader election need, and what `kubectl apply` needs.
//!
//! **It is an emulator: it proves wiring, not API-server semantics.** What it does keep:
//! one global `resourceVersion` (on objects, lists, watch events), `uid`,
//! `creationTimestamp`, `generation` (bumped when anything but `metadata`/`status`
//! changes, and when `deletionTimestamp` is set), watches that resume from a
//! resourceVersion (410 `Expired` when it is older than the kept history), bookmarks,
//! `timeoutSeconds`, label and `metadata.name`/`metadata.namespace` field selectors,
//! finalizers holding deletion, the `status` subresource kept apart from the rest, 409
//! `Conflict` for a stale `resourceVersion`, 409 `AlreadyExists`, 404 `NotFound`, and
//! no-op writes that change nothing. What it does not have: schema validation or
//! defaulting, admission, RBAC, garbage collection (ownerReferences, namespace deletion),
//! real server-side apply (apply and strategic-merge patches are JSON merge patches;
//! field managers are ignored), `limit`/`continue` paging (everything comes in one page),
//! protobuf except for kubectl's creates of Namespaces, Secrets and ConfigMaps.
//!
//! Served: the CRDs given (and any CRD created through the API), core v1 `namespaces`,
//! `secrets`, `configmaps`, `events`; `events.k8s.io/v1` `events`;
//! `coordination.k8s.io/v1` `leases`; `apiextensions.k8s.io/v1`
//! `customresourcedefinitions`; discovery for kubectl (`/api`, `/apis`, ...).
//!
//! Needs the emulator's venv: `. scripts/lib.sh && ensure_kube_emulator` (which exports
//! `CDOT_KUBE_EMULATOR_PYTHON`).
//!
//! ```no_run
//! use cdot_testkit::kube_emulator::KubeEmulator;
//! let k8s = KubeEmulator::start(); // the repository's CRDs (crds/yaml)
//! let out = k8s.kubectl(&["get", "devices", "-A"]);
//! assert!(out.status.success());
//! // kube-rs: kube::Config::from_custom_kubeconfig(Kubeconfig::read_from(k8s.kubeconfig())?, ..)
//! println!("{} {}", k8s.url(), k8s.kubeconfig().display());
//! ```
use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::{
        atomic::{AtomicU32, Ordering},
        mpsc,
    },
    time::Duration,
};

use crate::process::Daemon;

/// What the emulator prints once it serves: `listening on http://127.0.0.1:PORT`.
const READY_PREFIX: &str = "listening on ";
const START_TIMEOUT: Duration = Duration::from_secs(30);
const HINT: &str = "install the emulator's venv with `. scripts/lib.sh && ensure_kube_emulator` \
                    (it exports CDOT_KUBE_EMULATOR_PYTHON)";

/// A running emulator; stopped (SIGTERM) and its directory removed on drop.
pub struct KubeEmulator {
    daemon: Option<Daemon>,
    url: String,
    dir: PathBuf,
    kubeconfig: PathBuf,
}

/// A response of [`KubeEmulator::request`].
#[derive(Clone, Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub body: String,
}

/// The CRD YAML generated from the Rust types (`crds/yaml`, the same files as the Helm
/// chart's `charts/cdot-rmm/crds`).
pub fn repo_crds() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../crds/yaml")
}

/// The emulator's script.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("emulator/cdot_kube_emulator.py")
}

/// `$CDOT_KUBE_EMULATOR_PYTHON`, else the venv `ensure_kube_emulator` makes by default,
/// else `python3` (which then needs kmock installed).
pub fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("CDOT_KUBE_EMULATOR_PYTHON") {
        let python = PathBuf::from(python);
        assert!(
            python.exists(),
            "CDOT_KUBE_EMULATOR_PYTHON={} does not exist; {HINT}",
            python.display()
        );
        return python;
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")));
    if let Some(cache) = cache {
        let python = cache.join("cdot-rmm/kube-emulator-venv/bin/python");
        if python.exists() {
            return python;
        }
    }
    PathBuf::from("python3")
}

impl KubeEmulator {
    /// An emulator serving the repository's CRDs ([`repo_crds`]).
    pub fn start() -> Self {
        Self::start_with_crds(&[repo_crds()])
    }

    /// An emulator serving the CRDs in `crds` (YAML or JSON files, or directories of them).
    pub fn start_with_crds(crds: &[PathBuf]) -> Self {
        Self::start_with_args(crds, &[])
    }

    /// As [`start_with_crds`](Self::start_with_crds), with more command-line arguments of
    /// the script: `--history N` (watch events kept for resumes, default 100000),
    /// `--bookmark-interval SECONDS` (default 5), `--verbose` (every request on its log).
    /// `CDOT_KUBE_EMULATOR_VERBOSE=1` adds `--verbose` too.
    pub fn start_with_args(crds: &[PathBuf], args: &[&str]) -> Self {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "cdot-kube-emulator-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let log_path = dir.join("emulator.log");
        let log = std::fs::File::create(&log_path)
            .unwrap_or_else(|e| panic!("create {}: {e}", log_path.display()));

        let python = python();
        let mut command = Command::new(&python);
        command
            .arg(script())
            .args(["--host", "127.0.0.1", "--port", "0"])
            .stdout(Stdio::piped())
            .stderr(log);
        for crd in crds {
            command.arg("--crd").arg(crd);
        }
        command.args(args);
        if std::env::var_os("CDOT_KUBE_EMULATOR_VERBOSE").is_some_and(|v| v == "1") {
            command.arg("--verbose");
        }
        let mut daemon = Daemon(command.stdin(Stdio::null()).spawn().unwrap_or_else(|e| {
            panic!(
                "start {} (the Kubernetes API emulator): {e}; {HINT}",
                python.display()
            )
        }));

        // The ready line carries the port the emulator bound (port 0: no race for a port).
        let stdout = daemon.0.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix(READY_PREFIX) {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        let url = match rx.recv_timeout(START_TIMEOUT) {
            Ok(url) => url,
            Err(e) => {
                daemon.stop();
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                let _ = std::fs::remove_dir_all(&dir);
                let what = match e {
                    mpsc::RecvTimeoutError::Timeout => {
                        format!("did not serve within {START_TIMEOUT:?}")
                    }
                    mpsc::RecvTimeoutError::Disconnected => "exited before it served".to_owned(),
                };
                let hint = if log.contains("No module named") {
                    HINT
                } else {
                    "see its log below"
                };
                panic!(
                    "the Kubernetes API emulator ({} {}) {what}; {hint}\n--- its log ---\n{log}",
                    python.display(),
                    script().display()
                );
            }
        };

        let kubeconfig = dir.join("kubeconfig");
        std::fs::write(&kubeconfig, kubeconfig_yaml(&url))
            .unwrap_or_else(|e| panic!("write {}: {e}", kubeconfig.display()));
        Self {
            daemon: Some(daemon),
            url,
            dir,
            kubeconfig,
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// A kubeconfig for the emulator: plain http, a dummy bearer token, namespace `default`.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// What the emulator logged on stderr (requests too with `--verbose`).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("emulator.log")).unwrap_or_default()
    }

    /// Runs `kubectl` (from `PATH`) against the emulator, with its own discovery cache.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .env("KUBECONFIG", &self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.dir.join("kubectl-cache"))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run kubectl {args:?}: {e} (is kubectl installed?)"))
    }

    /// One plain HTTP/1.1 request to the emulator (`path` with its query), read to the end:
    /// for setting objects up without a Kubernetes client, and for watches with
    /// `timeoutSeconds`. `content_type` matters for PATCH (`application/merge-patch+json`,
    /// `application/json-patch+json`, `application/apply-patch+yaml`, ...).
    pub fn request(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: &str,
    ) -> HttpResponse {
        let addr = self.url.trim_start_matches("http://");
        let fail = |e: std::io::Error| -> ! {
            panic!("{method} {path} on the Kubernetes API emulator: {e}")
        };
        let mut stream = TcpStream::connect(addr).unwrap_or_else(|e| fail(e));
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap_or_else(|e| fail(e));
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: application/json\r\n\
             Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        stream
            .write_all(head.as_bytes())
            .and_then(|()| stream.write_all(body.as_bytes()))
            .unwrap_or_else(|e| fail(e));
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).unwrap_or_else(|e| fail(e));
        parse_response(&raw).unwrap_or_else(|| {
            panic!(
                "{method} {path}: malformed response {:?}",
                String::from_utf8_lossy(&raw)
            )
        })
    }
}

impl Drop for KubeEmulator {
    fn drop(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            daemon.stop();
        }
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            if !tail.is_empty() {
                eprintln!(
                    "--- the Kubernetes API emulator's log (last lines; more with CDOT_KUBE_EMULATOR_VERBOSE=1) ---"
                );
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn kubeconfig_yaml(url: &str) -> String {
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: cdot-kube-emulator
  cluster:
    server: {url}
contexts:
- name: cdot-kube-emulator
  context:
    cluster: cdot-kube-emulator
    user: cdot-kube-emulator
    namespace: default
current-context: cdot-kube-emulator
users:
- name: cdot-kube-emulator
  user:
    token: cdot-kube-emulator-dummy-token
"
    )
}

/// Status line, headers, and a body that is either chunked or runs to the end.
fn parse_response(raw: &[u8]) -> Option<HttpResponse> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut rest = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        let mut body = Vec::new();
        loop {
            let end = rest.windows(2).position(|w| w == b"\r\n")?;
            let size_text = std::str::from_utf8(&rest[..end]).ok()?;
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            rest = &rest[end + 2..];
            if size == 0 {
                break;
            }
            body.extend_from_slice(rest.get(..size)?);
            rest = rest.get(size + 2..)?;
        }
        body
    } else {
        rest.to_vec()
    };
    Some(HttpResponse {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}
