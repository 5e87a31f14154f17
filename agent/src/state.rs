//! The agent's identity on disk: key, certificate, CA, identity JSON, and the helpers that
//! write them atomically (temporary file, fsync, rename, fsync of the directory).
//!
//! Layout of the state directory (0700: [`StatePaths::create_dir`]):
//!
//! | file | content |
//! |---|---|
//! | `key.pem` (0600) | private key, PKCS#8 PEM (ECDSA P-256 for mTLS, Ed25519 for JWT) |
//! | `cert.pem` | client certificate (mTLS only) |
//! | `ca.pem` | the operator's CA |
//! | `identity.json` | [`Identity`] |
//! | `config.json` | last [`AgentConfig`] received |
//! | `inventory.json` | hash and time of the last inventory sent |
//! | `spool/` (0700) | the [`Spool`](crate::spool::Spool) |
//!
//! Renewal replaces key and certificate as a pair: both are first written as `*.new`
//! (key first, then certificate); once `cert.pem.new` exists the pair is complete and is
//! renamed into place. [`StatePaths::load`] finishes an interrupted replacement (roll
//! forward) or discards an incomplete one, so a crash never leaves a key that does not
//! match its certificate.
use std::{
    fmt, fs,
    io::{self, Write},
    os::unix::fs::{OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
    str::FromStr,
};

use base64::Engine;
use cdot_crds::wire::AgentConfig;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// How the agent authenticates to the operator.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthMode {
    /// Mutual TLS with a certificate signed by the operator's CA.
    #[default]
    Mtls,
    /// `Authorization: Bearer` with JWTs signed by the agent's Ed25519 key.
    Jwt,
}

impl fmt::Display for AuthMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthMode::Mtls => "mtls",
            AuthMode::Jwt => "jwt",
        })
    }
}

impl FromStr for AuthMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "mtls" => Ok(AuthMode::Mtls),
            "jwt" => Ok(AuthMode::Jwt),
            other => Err(format!(
                "unknown auth mode {other:?} (expected mtls or jwt)"
            )),
        }
    }
}

/// Who the device is, as the operator told it at enrollment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Identity {
    /// Namespace (client) of the device.
    pub namespace: String,
    /// Name of the Device.
    pub device_name: String,
    /// Stable id of the Device.
    pub device_uid: Uuid,
    /// Base URL of the operator, e.g. `https://rmm.example.com:8443`.
    pub server: String,
    /// Authentication mode.
    pub auth: AuthMode,
}

/// Everything needed to talk to the operator.
#[derive(Clone)]
pub struct Credentials {
    /// Who we are.
    pub identity: Identity,
    /// Private key, PKCS#8 PEM.
    pub key_pem: String,
    /// Client certificate PEM (mTLS only).
    pub cert_pem: Option<String>,
    /// Operator CA PEM.
    pub ca_pem: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("identity", &self.identity)
            .field("key_pem", &"<redacted>")
            .field("cert_pem", &self.cert_pem.as_ref().map(|_| "<certificate>"))
            .finish_non_exhaustive()
    }
}

/// Failure reading or writing the state directory.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A file could not be read or written.
    #[error("failed to {action} {path}: {source}")]
    Io {
        /// What was attempted.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A file is not what it should be.
    #[error("invalid {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The agent has not enrolled yet.
    #[error("not enrolled: {path} does not exist (run `cdot-agent enroll` first)")]
    NotEnrolled {
        /// The missing identity file.
        path: PathBuf,
    },
}

/// Paths inside the state directory.
#[derive(Clone, Debug)]
pub struct StatePaths {
    dir: PathBuf,
}

impl StatePaths {
    /// State rooted at `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }
    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// Private key.
    pub fn key(&self) -> PathBuf {
        self.dir.join("key.pem")
    }
    /// Client certificate.
    pub fn cert(&self) -> PathBuf {
        self.dir.join("cert.pem")
    }
    /// Operator CA.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    /// Identity JSON.
    pub fn identity(&self) -> PathBuf {
        self.dir.join("identity.json")
    }
    /// Last configuration received.
    pub fn config_cache(&self) -> PathBuf {
        self.dir.join("config.json")
    }
    /// Last inventory sent.
    pub fn inventory_state(&self) -> PathBuf {
        self.dir.join("inventory.json")
    }
    /// The spool directory.
    pub fn spool(&self) -> PathBuf {
        self.dir.join("spool")
    }
    fn staged(path: &Path) -> PathBuf {
        let mut s = path.as_os_str().to_owned();
        s.push(".new");
        PathBuf::from(s)
    }

    /// Creates the state directory if needed, and makes it 0700 whether new or not: it
    /// holds the key, and a release before this one could leave it open.
    pub fn create_dir(&self) -> Result<(), StateError> {
        fs::create_dir_all(&self.dir).map_err(|source| StateError::Io {
            action: "create directory",
            path: self.dir.clone(),
            source,
        })?;
        fs::set_permissions(&self.dir, fs::Permissions::from_mode(0o700)).map_err(|source| {
            StateError::Io {
                action: "set permissions of",
                path: self.dir.clone(),
                source,
            }
        })
    }

    /// Whether an identity exists.
    pub fn is_enrolled(&self) -> bool {
        self.identity().exists()
    }

    /// Writes everything an enrollment produced.
    pub fn save_enrollment(
        &self,
        creds: &Credentials,
        config: &AgentConfig,
    ) -> Result<(), StateError> {
        self.create_dir()?;
        write_atomic(&self.key(), creds.key_pem.as_bytes(), 0o600)?;
        match &creds.cert_pem {
            Some(cert) => write_atomic(&self.cert(), cert.as_bytes(), 0o644)?,
            None => remove_if_exists(&self.cert())?,
        }
        write_atomic(&self.ca(), creds.ca_pem.as_bytes(), 0o644)?;
        self.save_config(config)?;
        // The identity is written last: its presence means "enrolled".
        write_json(&self.identity(), &creds.identity, 0o644)
    }

    /// Caches the configuration last received.
    pub fn save_config(&self, config: &AgentConfig) -> Result<(), StateError> {
        write_json(&self.config_cache(), config, 0o644)
    }

    /// The cached configuration, if any.
    pub fn load_config(&self) -> Option<AgentConfig> {
        read_json(&self.config_cache()).ok()
    }

    /// Replaces key and certificate as a pair (see the module documentation).
    pub fn replace_key_and_cert(&self, key_pem: &str, cert_pem: &str) -> Result<(), StateError> {
        let (key_new, cert_new) = (Self::staged(&self.key()), Self::staged(&self.cert()));
        write_atomic(&key_new, key_pem.as_bytes(), 0o600)?;
        write_atomic(&cert_new, cert_pem.as_bytes(), 0o644)?;
        self.roll_forward()
    }

    /// Finishes or discards an interrupted key/certificate replacement.
    fn roll_forward(&self) -> Result<(), StateError> {
        let (key_new, cert_new) = (Self::staged(&self.key()), Self::staged(&self.cert()));
        if cert_new.exists() {
            if key_new.exists() {
                rename(&key_new, &self.key())?;
            }
            rename(&cert_new, &self.cert())?;
            sync_dir(&self.dir)?;
        } else {
            remove_if_exists(&key_new)?;
        }
        Ok(())
    }

    /// Loads the credentials, finishing an interrupted renewal first.
    pub fn load(&self) -> Result<Credentials, StateError> {
        if !self.is_enrolled() {
            return Err(StateError::NotEnrolled {
                path: self.identity(),
            });
        }
        self.roll_forward()?;
        let identity: Identity = read_json(&self.identity())?;
        let key_pem = read_string(&self.key())?;
        let ca_pem = read_string(&self.ca())?;
        let cert_pem = match identity.auth {
            AuthMode::Mtls => Some(read_string(&self.cert())?),
            AuthMode::Jwt => None,
        };
        Ok(Credentials {
            identity,
            key_pem,
            cert_pem,
            ca_pem,
        })
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory with mode
/// `mode`, fsync, rename over `path`, fsync of the directory. Readers see the old or the
/// new content, never a part.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), StateError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(".tmp-{name}-{}", std::process::id()));
    let io_err = |action: &'static str, path: &Path| {
        let path = path.to_owned();
        move |source| StateError::Io {
            action,
            path,
            source,
        }
    };
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_err("create", &tmp))?;
    file.write_all(bytes).map_err(io_err("write", &tmp))?;
    file.sync_all().map_err(io_err("fsync", &tmp))?;
    drop(file);
    rename(&tmp, path)?;
    sync_dir(dir)
}

fn rename(from: &Path, to: &Path) -> Result<(), StateError> {
    fs::rename(from, to).map_err(|source| StateError::Io {
        action: "rename into place",
        path: to.to_owned(),
        source,
    })
}

/// fsyncs a directory so that renames in it are durable.
pub fn sync_dir(dir: &Path) -> Result<(), StateError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| StateError::Io {
            action: "fsync directory",
            path: dir.to_owned(),
            source,
        })
}

fn remove_if_exists(path: &Path) -> Result<(), StateError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(StateError::Io {
            action: "remove",
            path: path.to_owned(),
            source,
        }),
    }
}

fn read_string(path: &Path) -> Result<String, StateError> {
    fs::read_to_string(path).map_err(|source| StateError::Io {
        action: "read",
        path: path.to_owned(),
        source,
    })
}

/// Reads a JSON file.
pub fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, StateError> {
    let text = read_string(path)?;
    serde_json::from_str(&text).map_err(|e| StateError::Invalid {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

/// Writes a JSON file atomically.
pub fn write_json<T: Serialize>(path: &Path, value: &T, mode: u32) -> Result<(), StateError> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| StateError::Invalid {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    write_atomic(path, &bytes, mode)
}

/// PEM-encodes DER bytes under `label` (64-column lines).
pub fn pem_encode(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Decodes every PEM block labelled `label` in `pem`.
pub fn pem_decode_all(label: &str, pem: &str) -> Vec<Vec<u8>> {
    let (begin, end) = (
        format!("-----BEGIN {label}-----"),
        format!("-----END {label}-----"),
    );
    let mut out = Vec::new();
    let mut rest = pem;
    while let Some(start) = rest.find(&begin) {
        let body = &rest[start + begin.len()..];
        let Some(stop) = body.find(&end) else { break };
        let b64: String = body[..stop].split_whitespace().collect();
        if let Ok(der) = base64::engine::general_purpose::STANDARD.decode(b64) {
            out.push(der);
        }
        rest = &body[stop + end.len()..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(auth: AuthMode) -> Credentials {
        Credentials {
            identity: Identity {
                namespace: "acme".into(),
                device_name: "web-1".into(),
                device_uid: Uuid::nil(),
                server: "https://rmm.example:8443".into(),
                auth,
            },
            key_pem: "KEY1".into(),
            cert_pem: (auth == AuthMode::Mtls).then(|| "CERT1".into()),
            ca_pem: "CA".into(),
        }
    }

    #[test]
    fn enrollment_round_trips_and_key_is_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = StatePaths::new(dir.path().join("state"));
        assert!(matches!(paths.load(), Err(StateError::NotEnrolled { .. })));
        paths
            .save_enrollment(&creds(AuthMode::Mtls), &AgentConfig::default())
            .expect("save");
        let loaded = paths.load().expect("load");
        assert_eq!(loaded.identity, creds(AuthMode::Mtls).identity);
        assert_eq!(loaded.cert_pem.as_deref(), Some("CERT1"));
        let mode = fs::metadata(paths.key())
            .expect("meta")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(paths.load_config(), Some(AgentConfig::default()));
    }

    #[test]
    fn interrupted_renewal_rolls_forward_or_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let paths = StatePaths::new(dir.path());
        paths
            .save_enrollment(&creds(AuthMode::Mtls), &AgentConfig::default())
            .expect("save");
        // Crash after the staged key, before the staged certificate: discarded.
        write_atomic(&StatePaths::staged(&paths.key()), b"KEY2", 0o600).expect("stage");
        let loaded = paths.load().expect("load");
        assert_eq!(
            (loaded.key_pem.as_str(), loaded.cert_pem.as_deref()),
            ("KEY1", Some("CERT1"))
        );
        // Crash after both were staged: completed.
        write_atomic(&StatePaths::staged(&paths.key()), b"KEY3", 0o600).expect("stage");
        write_atomic(&StatePaths::staged(&paths.cert()), b"CERT3", 0o644).expect("stage");
        let loaded = paths.load().expect("load");
        assert_eq!(
            (loaded.key_pem.as_str(), loaded.cert_pem.as_deref()),
            ("KEY3", Some("CERT3"))
        );
        paths
            .replace_key_and_cert("KEY4", "CERT4")
            .expect("replace");
        let loaded = paths.load().expect("load");
        assert_eq!(
            (loaded.key_pem.as_str(), loaded.cert_pem.as_deref()),
            ("KEY4", Some("CERT4"))
        );
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .expect("ls")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".new") || n.starts_with(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn pem_round_trips() {
        let der: Vec<u8> = (0..=255u8).collect();
        let pem = pem_encode("PRIVATE KEY", &der);
        assert_eq!(pem_decode_all("PRIVATE KEY", &pem), vec![der]);
        assert!(pem_decode_all("CERTIFICATE", &pem).is_empty());
    }
}
