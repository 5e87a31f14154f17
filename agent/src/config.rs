//! Configuration: the optional file (`/etc/cdot-agent/agent.toml`), defaults, and the
//! settings of the service loop ([`AgentSettings`]), every path and interval injectable.
//!
//! Precedence: command-line flag, then environment variable, then the file, then default.
use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use serde::Deserialize;

use crate::{actions::service::ServiceManagerChoice, spool::DEFAULT_MAX_BYTES, state::AuthMode};

/// The config file read when `--config` is not given (if it exists).
pub const DEFAULT_CONFIG_FILE: &str = "/etc/cdot-agent/agent.toml";

/// The config file. Every key is optional; unknown keys are refused.
///
/// ```toml
/// server = "https://rmm.example.com:8443"
/// state-dir = "/var/lib/cdot-agent"
/// spool-max-bytes = 104857600
/// ```
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct FileConfig {
    /// Base URL of the operator (enrollment).
    pub server: Option<String>,
    /// Enrollment token (better given by environment: files get copied around).
    pub enroll_token: Option<String>,
    /// Device name to ask for at enrollment.
    pub device_name: Option<String>,
    /// CA certificate file trusted at enrollment.
    pub ca_cert: Option<PathBuf>,
    /// `sha256:HEX` pin trusted at enrollment.
    pub ca_fingerprint: Option<String>,
    /// `mtls` (default) or `jwt`.
    pub auth: Option<AuthMode>,
    /// State directory.
    pub state_dir: Option<PathBuf>,
    /// Bound of the spool in bytes.
    pub spool_max_bytes: Option<u64>,
    /// Seconds between metrics batches, overriding the operator's setting.
    pub metrics_interval_secs: Option<u64>,
    /// `text` or `json`.
    pub log_format: Option<String>,
}

/// Failure reading the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("failed to read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid.
    #[error("invalid config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A required setting is missing.
    #[error("missing {what}: give {flag} or set {env}")]
    Missing {
        /// The setting.
        what: &'static str,
        /// Its flag.
        flag: &'static str,
        /// Its environment variable.
        env: &'static str,
    },
    /// A setting is invalid.
    #[error("invalid {what}: {message}")]
    Invalid {
        /// The setting.
        what: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl FileConfig {
    /// Reads `path`; when `path` is None, reads [`DEFAULT_CONFIG_FILE`] if it exists.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let (path, required) = match path {
            Some(p) => (p, true),
            None => (Path::new(DEFAULT_CONFIG_FILE), false),
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self::default());
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }
}

/// Default state directory: `/var/lib/cdot-agent` as root, else
/// `$XDG_STATE_HOME/cdot-agent` or `~/.local/state/cdot-agent`.
pub fn default_state_dir() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/cdot-agent");
    }
    if let Some(xdg) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("cdot-agent");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".local/state/cdot-agent")
}

/// Settings of the service loop. Tests shorten the intervals.
#[derive(Clone, Debug)]
pub struct AgentSettings {
    /// State directory (identity, spool).
    pub state_dir: PathBuf,
    /// Bound of the spool.
    pub spool_max_bytes: u64,
    /// Metrics interval; None: the operator's `metricsIntervalSecs`.
    pub metrics_interval_override: Option<Duration>,
    /// Full inventory interval; None: the operator's `inventoryIntervalSecs`.
    pub inventory_interval_override: Option<Duration>,
    /// How often the inventory is collected to see whether it changed.
    pub inventory_check_interval: Duration,
    /// How often the configuration is fetched again.
    pub config_refresh_interval: Duration,
    /// How often the certificate's remaining lifetime is checked.
    pub renew_check_interval: Duration,
    /// First retry delay after a transient failure.
    pub retry_backoff_min: Duration,
    /// Longest retry delay.
    pub retry_backoff_max: Duration,
    /// Timeout of one request.
    pub request_timeout: Duration,
    /// Root directory whose packages patching manages; None: the host's.
    pub patch_root: Option<PathBuf>,
    /// Command that schedules a reboot (`{minutes}`, `{message}` replaced).
    pub reboot_command: String,
    /// How long one work request may be held by the operator (below `request_timeout`).
    pub work_wait: Duration,
    /// Service manager of restart steps and of `serviceFailed`.
    pub service_manager: ServiceManagerChoice,
    /// supervisord's config file (`supervisorctl -c`); None: supervisorctl's default.
    pub supervisor_config: Option<PathBuf>,
}

impl AgentSettings {
    /// Defaults for a state directory.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            state_dir: state_dir.into(),
            spool_max_bytes: DEFAULT_MAX_BYTES,
            metrics_interval_override: None,
            inventory_interval_override: None,
            inventory_check_interval: Duration::from_secs(300),
            config_refresh_interval: Duration::from_secs(300),
            renew_check_interval: Duration::from_secs(3600),
            retry_backoff_min: Duration::from_secs(1),
            retry_backoff_max: Duration::from_secs(300),
            request_timeout: crate::client::DEFAULT_TIMEOUT,
            patch_root: None,
            reboot_command: "shutdown -r +{minutes} {message}".to_owned(),
            work_wait: Duration::from_secs(20),
            service_manager: ServiceManagerChoice::Auto,
            supervisor_config: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_parses_and_refuses_unknown_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("agent.toml");
        std::fs::write(
            &path,
            "server = \"https://rmm:8443\"\nauth = \"jwt\"\nspool-max-bytes = 1000\n",
        )
        .expect("w");
        let cfg = FileConfig::load(Some(&path)).expect("load");
        assert_eq!(cfg.server.as_deref(), Some("https://rmm:8443"));
        assert_eq!(cfg.auth, Some(AuthMode::Jwt));
        assert_eq!(cfg.spool_max_bytes, Some(1000));
        std::fs::write(&path, "sever = \"typo\"\n").expect("w");
        let err = FileConfig::load(Some(&path)).expect_err("unknown key");
        assert!(err.to_string().contains("sever"), "{err}");
        assert!(FileConfig::load(Some(&dir.path().join("missing.toml"))).is_err());
    }
}
