//! Fixtures for the tests of the agent and of the collector, written once: a scripted HTTPS
//! operator on 127.0.0.1 ([`ScriptedOperator`]), an enrolled state directory
//! ([`enrolled_state`], [`state_left_open`]), the spool as it is on disk ([`spooled`]), a wait on a condition
//! ([`wait_for`]) and a running agent that stops on demand ([`RunningAgent`]).
//!
//! Behind the `test-support` feature, off by default, so that none of it ships in the
//! binaries: this crate's tests enable it through a dev-dependency on the crate itself, the
//! collector's through its dev-dependency on this crate.
use std::{net::SocketAddr, os::unix::fs::PermissionsExt, path::Path, time::Duration};

use axum::Router;
use cdot_crds::wire::AgentConfig;
use sha2::{Digest, Sha256};
use tokio::{sync::oneshot, task::JoinHandle, time::Instant};
use uuid::Uuid;

use crate::{
    jwt,
    run::{Agent, RunError},
    state::{self, AuthMode, Credentials, Identity, StatePaths},
};

/// A self-signed certificate for 127.0.0.1: what a scripted operator presents, and the CA
/// an agent trusts to talk to it.
pub struct ServerCert {
    /// Certificate, PEM.
    pub pem: String,
    /// Its private key, PEM.
    pub key_pem: String,
    /// SHA-256 of its DER (what `--ca-fingerprint` pins).
    pub pin: [u8; 32],
}

impl ServerCert {
    /// A fresh ECDSA P-256 certificate whose subject alternative name is 127.0.0.1.
    pub fn localhost() -> Self {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params.subject_alt_names =
            vec![rcgen::SanType::IpAddress("127.0.0.1".parse().expect("ip"))];
        let cert = params.self_signed(&key).expect("cert");
        Self {
            pin: Sha256::digest(cert.der()).into(),
            pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// An HTTPS operator on 127.0.0.1 that answers with a test's own routes.
pub struct ScriptedOperator {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its certificate (the CA the agent trusts) and that certificate's pin.
    pub cert: ServerCert,
}

impl ScriptedOperator {
    /// Serves `app` over TLS on an ephemeral port of 127.0.0.1 until the runtime ends.
    pub async fn start(app: Router) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let cert = ServerCert::localhost();
        let tls = axum_server::tls_rustls::RustlsConfig::from_pem(
            cert.pem.clone().into_bytes(),
            cert.key_pem.clone().into_bytes(),
        )
        .await
        .expect("tls");
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr");
        let server = axum_server::from_tcp_rustls(listener, tls).expect("server");
        tokio::spawn(async move { server.serve(app.into_make_service()).await });
        Self { addr, cert }
    }

    /// Its base URL, `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }
}

/// A state directory enrolled in JWT mode as `device_name` of namespace `acme`, talking to
/// `server` and trusting `ca_pem`.
pub fn enrolled_state(
    dir: &Path,
    device_name: &str,
    server: SocketAddr,
    ca_pem: String,
) -> StatePaths {
    let key = jwt::generate_pkcs8().expect("key");
    let creds = Credentials {
        identity: Identity {
            namespace: "acme".into(),
            device_name: device_name.into(),
            device_uid: Uuid::new_v4(),
            server: format!("https://{server}"),
            auth: AuthMode::Jwt,
        },
        key_pem: state::pem_encode("PRIVATE KEY", &key),
        cert_pem: None,
        ca_pem,
    };
    let paths = StatePaths::new(dir);
    paths
        .save_enrollment(&creds, &AgentConfig::default())
        .expect("save enrollment");
    paths
}

/// A state directory enrolled as `device_name` (its server never answers: nothing is sent)
/// whose directory and spool are readable by everyone, as a release before 0700 left them.
pub fn state_left_open(dir: &Path, device_name: &str) -> StatePaths {
    let unused = "127.0.0.1:9".parse().expect("addr");
    let paths = enrolled_state(dir, device_name, unused, ServerCert::localhost().pem);
    std::fs::create_dir_all(paths.spool()).expect("mkdir spool");
    for d in [paths.dir(), paths.spool().as_path()] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    paths
}

/// Panics unless the state directory and its spool are closed to others (0700).
pub fn assert_closed(paths: &StatePaths) {
    for d in [paths.dir(), paths.spool().as_path()] {
        let mode = std::fs::metadata(d).expect("metadata").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", d.display());
    }
}

/// Batch ids in the spool directory, oldest first, read from the file names
/// (`{sequence:020}-{batch id}.batch`) rather than through the spool under test.
pub fn spooled(paths: &StatePaths) -> Vec<Uuid> {
    let mut names: Vec<String> = std::fs::read_dir(paths.spool())
        .expect("list spool")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".batch") && !n.starts_with('.'))
        .collect();
    names.sort();
    names
        .iter()
        .map(|n| {
            let id = &n[21..n.len() - ".batch".len()];
            Uuid::parse_str(id).expect("batch id in file name")
        })
        .collect()
}

/// Waits until `cond` holds, checking every 20 ms; panics naming `what` after `limit`.
pub async fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An agent running in a task of its own until [`RunningAgent::stop`].
pub struct RunningAgent {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), RunError>>,
}

impl RunningAgent {
    /// Spawns `agent.run`, its shutdown signal held by the returned value.
    pub fn spawn(agent: Agent) -> Self {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(agent.run(async {
            let _ = stopped.await;
        }));
        Self { stop, task }
    }

    /// Sends the shutdown signal; panics unless the agent stops within 10 s without error.
    pub async fn stop(self) {
        self.stop.send(()).expect("stop");
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("stops promptly")
            .expect("task")
            .expect("run ok");
    }
}
