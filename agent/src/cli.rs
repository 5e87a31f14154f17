//! Command line (clap derive; every flag also from the environment) and its resolution
//! against the config file into [`EnrollOptions`] and [`AgentSettings`].
use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::{
    actions::service::ServiceManagerChoice,
    config::{AgentSettings, ConfigError, FileConfig, default_state_dir},
    enroll::{EnrollOptions, TrustAnchor, parse_fingerprint},
    state::AuthMode,
};

/// cdot-rmm endpoint agent: collects metrics and inventory and reports them to the operator.
#[derive(Debug, Parser)]
#[command(name = "cdot-agent", version, about)]
pub struct Cli {
    /// Config file (TOML). Default: /etc/cdot-agent/agent.toml if it exists.
    #[arg(long, env = "CDOT_AGENT_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// State directory: identity, keys, spool. Default: /var/lib/cdot-agent as root, else
    /// ~/.local/state/cdot-agent.
    #[arg(long, env = "CDOT_STATE_DIR", global = true)]
    pub state_dir: Option<PathBuf>,
    /// Log format.
    #[arg(long, env = "CDOT_LOG_FORMAT", global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    /// What to do (default: run).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Enroll this device with an operator using a one-time token.
    Enroll(EnrollArgs),
    /// Run the agent (the default).
    Run(RunArgs),
}

/// `cdot-agent enroll`.
#[derive(Debug, Args)]
pub struct EnrollArgs {
    /// Base URL of the operator, e.g. https://rmm.example.com:8443.
    #[arg(long, env = "CDOT_SERVER")]
    pub server: Option<String>,
    /// One-time enrollment token.
    #[arg(long, env = "CDOT_ENROLL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Device name to ask for (default: the host name).
    #[arg(long, env = "CDOT_DEVICE_NAME")]
    pub device_name: Option<String>,
    /// Namespace (client) this device should join; refused if the token is another's.
    #[arg(long, env = "CDOT_NAMESPACE")]
    pub namespace: Option<String>,
    /// CA certificate (PEM) that signed the operator's server certificate.
    #[arg(long, env = "CDOT_CA_CERT", conflicts_with = "ca_fingerprint")]
    pub ca_cert: Option<PathBuf>,
    /// Pin instead of a CA file: sha256:HEX of a certificate in the server's chain.
    #[arg(long, env = "CDOT_CA_FINGERPRINT")]
    pub ca_fingerprint: Option<String>,
    /// Authentication after enrollment: mutual TLS or signed JWTs.
    #[arg(long, env = "CDOT_AUTH", value_parser = clap::builder::PossibleValuesParser::new(["mtls", "jwt"]))]
    pub auth: Option<String>,
    /// Enroll again even if this device is enrolled.
    #[arg(long)]
    pub force: bool,
}

/// `cdot-agent run`.
#[derive(Debug, Default, Args)]
pub struct RunArgs {
    /// Collect one batch (twice, 1 s apart, so rates are present), print it as JSON, exit.
    #[arg(long)]
    pub once: bool,
    /// Bound of the on-disk spool in bytes (default 100 MB).
    #[arg(long, env = "CDOT_SPOOL_MAX_BYTES")]
    pub spool_max_bytes: Option<u64>,
    /// Seconds between metrics batches, overriding the operator's setting.
    #[arg(long, env = "CDOT_METRICS_INTERVAL")]
    pub metrics_interval_secs: Option<u64>,
    /// Manage the packages of this root directory instead of the host's (every apt or dnf
    /// command runs under `chroot DIR`): an agent in a container managing its host mounted
    /// at /host, or a test's Debian root.
    #[arg(long, env = "CDOT_PATCH_ROOT")]
    pub patch_root: Option<PathBuf>,
    /// Command that schedules a reboot after patching; `{minutes}` and `{message}` are
    /// replaced (each stays one argument).
    #[arg(
        long,
        env = "CDOT_REBOOT_COMMAND",
        default_value = "shutdown -r +{minutes} {message}"
    )]
    pub reboot_command: String,
    /// Service manager of restart steps and of the serviceFailed metric: systemd when it
    /// runs, else supervisord when supervisorctl can run (auto), or the one named.
    #[arg(
        long,
        env = "CDOT_AGENT_SERVICE_MANAGER",
        value_enum,
        default_value_t = ServiceManagerChoice::Auto
    )]
    pub service_manager: ServiceManagerChoice,
    /// supervisord's config file, passed as `supervisorctl -c PATH`.
    #[arg(long, env = "CDOT_AGENT_SUPERVISOR_CONFIG")]
    pub supervisor_config: Option<PathBuf>,
}

impl Cli {
    /// The state directory: flag/env, file, default.
    pub fn state_dir(&self, file: &FileConfig) -> PathBuf {
        self.state_dir
            .clone()
            .or_else(|| file.state_dir.clone())
            .unwrap_or_else(default_state_dir)
    }

    /// Resolves `enroll` arguments against the config file.
    pub fn enroll_options(
        &self,
        args: &EnrollArgs,
        file: &FileConfig,
    ) -> Result<EnrollOptions, ConfigError> {
        enroll_options(args, file, self.state_dir(file))
    }

    /// Resolves `run` arguments against the config file.
    pub fn agent_settings(&self, args: &RunArgs, file: &FileConfig) -> AgentSettings {
        let mut settings = AgentSettings::new(self.state_dir(file));
        if let Some(max) = args.spool_max_bytes.or(file.spool_max_bytes) {
            settings.spool_max_bytes = max;
        }
        settings.metrics_interval_override = args
            .metrics_interval_secs
            .or(file.metrics_interval_secs)
            .map(|s| Duration::from_secs(s.max(1)));
        settings.patch_root = args.patch_root.clone();
        if !args.reboot_command.trim().is_empty() {
            settings.reboot_command = args.reboot_command.clone();
        }
        settings.service_manager = args.service_manager;
        settings.supervisor_config = args.supervisor_config.clone();
        settings
    }
}

/// Resolves `enroll` arguments (flags and env first, then the config file) into what
/// [`crate::enroll::enroll`] needs; the collector's `enroll` shares it.
pub fn enroll_options(
    args: &EnrollArgs,
    file: &FileConfig,
    state_dir: PathBuf,
) -> Result<EnrollOptions, ConfigError> {
    let server =
        args.server
            .clone()
            .or_else(|| file.server.clone())
            .ok_or(ConfigError::Missing {
                what: "operator URL",
                flag: "--server",
                env: "CDOT_SERVER",
            })?;
    let token = args
        .token
        .clone()
        .or_else(|| file.enroll_token.clone())
        .ok_or(ConfigError::Missing {
            what: "enrollment token",
            flag: "--token",
            env: "CDOT_ENROLL_TOKEN",
        })?;
    let trust = if let Some(pin) = args.ca_fingerprint.clone().or_else(|| {
        args.ca_cert
            .is_none()
            .then(|| file.ca_fingerprint.clone())
            .flatten()
    }) {
        TrustAnchor::Fingerprint(parse_fingerprint(&pin).map_err(|e| ConfigError::Invalid {
            what: "CA fingerprint",
            message: e.to_string(),
        })?)
    } else {
        let path = args
            .ca_cert
            .clone()
            .or_else(|| file.ca_cert.clone())
            .ok_or(ConfigError::Missing {
                what: "server trust (--ca-cert FILE or --ca-fingerprint sha256:HEX)",
                flag: "--ca-cert",
                env: "CDOT_CA_CERT",
            })?;
        let pem =
            std::fs::read_to_string(&path).map_err(|source| ConfigError::Read { path, source })?;
        TrustAnchor::CaPem(pem)
    };
    let auth = match &args.auth {
        Some(a) => a.parse().map_err(|message| ConfigError::Invalid {
            what: "auth mode",
            message,
        })?,
        None => file.auth.unwrap_or(AuthMode::Mtls),
    };
    Ok(EnrollOptions {
        server,
        token,
        device_name: args
            .device_name
            .clone()
            .or_else(|| file.device_name.clone()),
        namespace: args.namespace.clone(),
        trust,
        auth,
        state_dir,
        timeout: crate::client::DEFAULT_TIMEOUT,
        device_class: None,
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn enroll_flags_resolve() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "PEM").expect("w");
        let cli = Cli::parse_from([
            "cdot-agent",
            "--state-dir",
            dir.path().to_str().expect("utf8"),
            "enroll",
            "--server",
            "https://rmm:8443",
            "--token",
            "t0k",
            "--ca-cert",
            ca.to_str().expect("utf8"),
            "--auth",
            "jwt",
        ]);
        let Some(Command::Enroll(args)) = &cli.command else {
            panic!("enroll expected")
        };
        let opts = cli
            .enroll_options(args, &FileConfig::default())
            .expect("resolve");
        assert_eq!(opts.auth, AuthMode::Jwt);
        assert_eq!(opts.state_dir, dir.path());
        assert!(matches!(opts.trust, TrustAnchor::CaPem(ref p) if p == "PEM"));

        let cli = Cli::parse_from([
            "cdot-agent",
            "enroll",
            "--server",
            "https://x",
            "--token",
            "t",
        ]);
        let Some(Command::Enroll(args)) = &cli.command else {
            panic!("enroll expected")
        };
        let err = cli
            .enroll_options(args, &FileConfig::default())
            .expect_err("no trust");
        assert!(err.to_string().contains("--ca-cert"), "{err}");
    }
}
