//! A real SMTP server for tests of code that sends mail: PyPI's `aiosmtpd` run by
//! `testkit/smtp/cdot_smtp_peer.py` on a loopback port, with STARTTLS (required), implicit
//! TLS or none, and AUTH when given credentials. Its certificate is signed by a CA of its own
//! ([`SmtpPeer::ca_pem`]). Each accepted message is kept as received ([`SmtpPeer::wait_for`]).
//!
//! Needs the peer's venv: `. scripts/lib.sh && ensure_smtp_peer` (which exports
//! `CDOT_SMTP_PEER_PYTHON`).
use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicU32, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use crate::{process::Daemon, tls::TestTls};

const READY_PREFIX: &str = "listening on ";
const START_TIMEOUT: Duration = Duration::from_secs(30);
const HINT: &str = "install the SMTP peer's venv with `. scripts/lib.sh && ensure_smtp_peer` \
                    (it exports CDOT_SMTP_PEER_PYTHON)";

/// How the peer speaks TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain, then STARTTLS, which it requires before MAIL.
    StartTls,
    /// TLS from the first byte.
    Implicit,
    /// No TLS at all.
    None,
}

/// One message the peer accepted.
#[derive(Clone, Debug)]
pub struct ReceivedMail {
    /// The message as received (headers and body).
    pub raw: Vec<u8>,
    /// Envelope sender.
    pub mail_from: String,
    /// Envelope recipients.
    pub rcpt_to: Vec<String>,
    /// Whether the session was encrypted.
    pub tls: bool,
    /// The user name it authenticated as, if it did.
    pub login: Option<String>,
}

/// A running peer; stopped and its directory removed on drop.
pub struct SmtpPeer {
    daemon: Option<Daemon>,
    port: u16,
    dir: PathBuf,
    tls: TestTls,
}

/// The script.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("smtp/cdot_smtp_peer.py")
}

/// `$CDOT_SMTP_PEER_PYTHON`, else the venv `ensure_smtp_peer` makes by default; panics with
/// how to get it when neither is there.
pub fn python() -> PathBuf {
    if let Some(python) = std::env::var_os("CDOT_SMTP_PEER_PYTHON") {
        let python = PathBuf::from(python);
        assert!(
            python.exists(),
            "CDOT_SMTP_PEER_PYTHON={} does not exist; {HINT}",
            python.display()
        );
        return python;
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")));
    let python = cache.map(|c| c.join("cdot-rmm/smtp-peer-venv/bin/python"));
    match python {
        Some(python) if python.exists() => python,
        _ => panic!("the SMTP peer's Python is missing; {HINT}"),
    }
}

impl SmtpPeer {
    /// Starts a peer; with `credentials` (user, password) it requires AUTH.
    pub fn start(tls: SmtpTls, credentials: Option<(&str, &str)>) -> Self {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "cdot-smtp-peer-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let mail = dir.join("mail");
        std::fs::create_dir_all(&mail).unwrap_or_else(|e| panic!("create {}: {e}", mail.display()));
        let certs = TestTls::localhost();
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, &certs.cert_pem).expect("write the peer's certificate");
        std::fs::write(&key, &certs.key_pem).expect("write the peer's key");
        let log_path = dir.join("peer.log");
        let log = std::fs::File::create(&log_path)
            .unwrap_or_else(|e| panic!("create {}: {e}", log_path.display()));

        let python = python();
        let mut command = Command::new(&python);
        command
            .arg(script())
            .arg("--dir")
            .arg(&mail)
            .arg("--cert")
            .arg(&cert)
            .arg("--key")
            .arg(&key)
            .args([
                "--tls",
                match tls {
                    SmtpTls::StartTls => "starttls",
                    SmtpTls::Implicit => "implicit",
                    SmtpTls::None => "none",
                },
            ])
            .stdout(Stdio::piped())
            .stderr(log);
        if let Some((user, password)) = credentials {
            command.args(["--username", user, "--password", password]);
        }
        let mut daemon =
            Daemon(command.stdin(Stdio::null()).spawn().unwrap_or_else(|e| {
                panic!("start {} (the SMTP peer): {e}; {HINT}", python.display())
            }));

        // The ready line carries the port the peer bound (port 0: no race for a port).
        let stdout = daemon.0.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix(READY_PREFIX) {
                    let _ = tx.send(addr.trim().to_owned());
                }
            }
        });
        let port = match rx.recv_timeout(START_TIMEOUT) {
            Ok(addr) => addr
                .rsplit_once(':')
                .and_then(|(_, p)| p.parse().ok())
                .unwrap_or_else(|| panic!("the SMTP peer printed a bad address {addr:?}")),
            Err(_) => {
                daemon.stop();
                let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                let _ = std::fs::remove_dir_all(&dir);
                let hint = if log.contains("No module named") {
                    HINT
                } else {
                    "see its log below"
                };
                panic!(
                    "the SMTP peer did not serve within {START_TIMEOUT:?}; {hint}\n--- its log ---\n{log}"
                );
            }
        };
        Self {
            daemon: Some(daemon),
            port,
            dir,
            tls: certs,
        }
    }

    /// `127.0.0.1`, the address its certificate names.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// PEM of the CA that signed the peer's certificate.
    pub fn ca_pem(&self) -> &str {
        &self.tls.ca_pem
    }

    /// While `reply` is set, DATA is answered with it (e.g. `451 4.3.0 try later`) and
    /// nothing is kept; `None` accepts again.
    pub fn set_reply(&self, reply: Option<&str>) {
        let path = self.dir.join("mail/reply");
        match reply {
            Some(reply) => std::fs::write(&path, reply).expect("write the peer's reply"),
            None => {
                let _ = std::fs::remove_file(&path);
            }
        }
    }

    /// The messages accepted so far, in order.
    pub fn received(&self) -> Vec<ReceivedMail> {
        let mut out = Vec::new();
        for n in 1.. {
            let eml = self.dir.join(format!("mail/{n}.eml"));
            let Ok(raw) = std::fs::read(&eml) else { break };
            let meta: serde_json::Value = std::fs::read(self.dir.join(format!("mail/{n}.json")))
                .ok()
                .and_then(|m| serde_json::from_slice(&m).ok())
                .unwrap_or_else(|| panic!("no envelope beside {}", eml.display()));
            let text = |k: &str| meta[k].as_str().map(str::to_owned);
            out.push(ReceivedMail {
                raw,
                mail_from: text("mail_from").unwrap_or_default(),
                rcpt_to: meta["rcpt_tos"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default(),
                tls: meta["tls"].as_bool().unwrap_or(false),
                login: text("login"),
            });
        }
        out
    }

    /// Waits up to `timeout` until `count` messages were accepted, and returns them; panics
    /// with the peer's log otherwise.
    pub fn wait_for(&self, count: usize, timeout: Duration) -> Vec<ReceivedMail> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.received();
            if got.len() >= count {
                return got;
            }
            if Instant::now() >= deadline {
                panic!(
                    "the SMTP peer accepted {} of {count} messages within {timeout:?}\n--- its log ---\n{}",
                    got.len(),
                    std::fs::read_to_string(self.dir.join("peer.log")).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for SmtpPeer {
    fn drop(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            daemon.stop();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
