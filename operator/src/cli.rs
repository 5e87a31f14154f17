//! Command-line flags and environment variables of `cdot-operator`.
use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "cdot-operator", version, about = "cdot-rmm control plane")]
pub struct Cli {
    /// Log output format.
    #[arg(long, env = "CDOT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the control plane from a directory of YAML manifests (a git checkout), no cluster needed.
    Standalone(Box<StandaloneArgs>),
    /// Run in a Kubernetes cluster: desired state from the API server (kubeconfig or the
    /// in-cluster service account), status through the status subresource.
    Run(Box<RunArgs>),
    /// Manage API tokens for people and the console.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Work with AlertRules before they are merged.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Check the audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk the audit log's hash chain from its start (or the last pruned entry) and report
    /// every edited, inserted or deleted entry; exits 1 when there is one.
    Verify(AuditVerifyArgs),
}

#[derive(Debug, Args)]
pub struct AuditVerifyArgs {
    /// PostgreSQL URL of the operator's database (read only; no migrations are applied).
    /// Without it, the embedded PostgreSQL of a running standalone operator under
    /// --data-dir.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// The standalone operator's data directory
    /// [default: /var/lib/cdot-rmm as root, else ~/.local/share/cdot-rmm].
    #[arg(long, env = "CDOT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Replay the AlertRules of a manifest file, committed or not, over the stored 1-minute
    /// rollups through a running operator: when each would have fired and resolved, and how
    /// many notifications it would have sent.
    Backtest(BacktestArgs),
}

#[derive(Debug, Args)]
pub struct BacktestArgs {
    /// Manifest file holding one or more AlertRules (other documents are passed over).
    pub file: PathBuf,
    /// Start of the range (RFC 3339).
    #[arg(long, conflicts_with = "since")]
    pub from: Option<String>,
    /// Start of the range as a time before now (e.g. `30d`); the default is 7 days.
    #[arg(long, value_parser = parse_duration)]
    pub since: Option<Duration>,
    /// End of the range (RFC 3339); default now.
    #[arg(long)]
    pub to: Option<String>,
    /// Namespace of rules whose metadata names none.
    #[arg(long, env = "CDOT_NAMESPACE")]
    pub namespace: Option<String>,
    /// The operator's people API.
    #[arg(long, env = "CDOT_API", default_value = "http://127.0.0.1:8080")]
    pub api: String,
    /// API token (viewer role is enough).
    #[arg(
        long,
        env = "CDOT_TOKEN",
        hide_env_values = true,
        conflicts_with = "token_file"
    )]
    pub token: Option<String>,
    /// File holding the API token (the quick start writes `.cdot/viewer-token`).
    #[arg(long, env = "CDOT_TOKEN_FILE", default_value = ".cdot/viewer-token")]
    pub token_file: PathBuf,
    /// How to print the result.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// A summary and a table of episodes per rule.
    Text,
    /// The API's reports, one JSON array.
    Json,
}

#[derive(Debug, Args)]
pub struct StandaloneArgs {
    /// Directory of `*.yaml`/`*.yml` manifests; repeat to merge several directories.
    #[arg(
        long = "manifests",
        env = "CDOT_MANIFESTS",
        value_delimiter = ',',
        required = true
    )]
    pub manifests: Vec<PathBuf>,
    #[command(flatten)]
    pub serve: ServeArgs,
    /// How often the manifests are re-read even without a file-system event.
    #[arg(long, env = "CDOT_RESYNC_INTERVAL", value_parser = parse_duration, default_value = "30s")]
    pub resync_interval: Duration,
    /// Largest manifest file in bytes; a larger file refuses the change set unread. All files
    /// together may hold 16 times this.
    #[arg(
        long,
        env = "CDOT_MAX_MANIFEST_BYTES",
        default_value_t = crate::source::directory::DEFAULT_MAX_FILE_BYTES,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub max_manifest_bytes: u64,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Watch only this namespace; every namespace when absent.
    #[arg(long, env = "CDOT_WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// Namespace of the leader-election Lease (in a cluster: the operator's own).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// Name of the leader-election Lease; replicas with the same name elect one leader.
    #[arg(long, env = "CDOT_LEASE_NAME", default_value = "cdot-operator")]
    pub lease_name: String,
    /// This replica's identity in the Lease [default: host name and process id].
    #[arg(long, env = "POD_NAME", default_value_t = crate::kubernetes::default_identity())]
    pub identity: String,
    /// How long the Lease holds without renewal; a new leader takes over after it.
    #[arg(long, env = "CDOT_LEASE_DURATION", value_parser = parse_duration, default_value = "15s")]
    pub lease_duration: Duration,
    /// Every object is reconciled this often even without a change (±10 %).
    #[arg(long, env = "CDOT_RESYNC_INTERVAL", value_parser = parse_duration, default_value = "10m")]
    pub resync_interval: Duration,
    /// Reconciles of one kind running at once.
    #[arg(long, env = "CDOT_RECONCILE_CONCURRENCY", default_value_t = 32)]
    pub concurrency: u16,
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// What both modes serve: the HTTP API, the database and the metrics store.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub timeseries: crate::jobs::TimeseriesArgs,
    #[command(flatten)]
    pub alerting: crate::alerting::AlertingArgs,
    #[command(flatten)]
    pub discovery: crate::discovery::Settings,
    /// How long audit log entries are kept; older ones are deleted daily, and verification
    /// continues from the last deleted entry's hash.
    #[arg(long, env = "CDOT_AUDIT_RETENTION", value_parser = parse_duration, default_value = "400d")]
    pub audit_retention: Duration,
    /// How long finished workflow runs (with every step's output) are kept; the audit log
    /// keeps their record for `--audit-retention`.
    #[arg(long, env = "CDOT_WORKFLOW_RUN_RETENTION", value_parser = parse_duration, default_value = "90d")]
    pub workflow_run_retention: Duration,
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Address the HTTP API listens on.
    #[arg(long, env = "CDOT_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// PEM certificate chain: serve HTTPS instead of HTTP (needs --tls-key).
    #[arg(long, env = "CDOT_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "CDOT_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Address of the agent API: always HTTPS with a certificate from the operator's CA;
    /// agents authenticate with client certificates (mutual TLS) or signed JWTs.
    #[arg(long, env = "CDOT_AGENT_LISTEN", default_value = "127.0.0.1:8443")]
    pub agent_listen: SocketAddr,
    /// Host names and addresses agents use to reach the operator (the agent listener's
    /// certificate names).
    #[arg(
        long = "agent-hostname",
        env = "CDOT_AGENT_HOSTNAMES",
        value_delimiter = ',',
        default_value = "localhost,127.0.0.1"
    )]
    pub agent_hostnames: Vec<String>,
    /// Lifetime of agent client certificates; agents renew when a third is left.
    #[arg(long, env = "CDOT_AGENT_CERTIFICATE_VALIDITY", value_parser = parse_duration, default_value = "30d")]
    pub agent_certificate_validity: Duration,
    /// Namespace whose API-token Secrets may grant access to other namespaces.
    #[arg(long, env = "CDOT_SYSTEM_NAMESPACE", default_value = "cdot-system")]
    pub system_namespace: String,
    /// Longest time one API request may take.
    #[arg(long, env = "CDOT_REQUEST_TIMEOUT", value_parser = parse_duration, default_value = "30s")]
    pub request_timeout: Duration,
    /// Enrollments a source address may make per minute, sustained (`/v1/agent/enroll`;
    /// IPv6 addresses count by /64); 0 turns the limit off. A fleet enrolling behind one
    /// NAT shares one address: with the defaults, 100 devices enroll at once and 60 more
    /// every minute (1000 in about 15 minutes); refused agents are told when to retry.
    #[arg(long, env = "CDOT_ENROLL_RATE_LIMIT", default_value_t = 60)]
    pub enroll_rate_limit: u32,
    /// Enrollments a source address may make at once before the rate limit applies.
    #[arg(long, env = "CDOT_ENROLL_BURST", default_value_t = 100)]
    pub enroll_burst: u32,
}

#[derive(Debug, Args)]
pub struct DatabaseArgs {
    /// PostgreSQL URL. Without it, a private PostgreSQL is started under --data-dir.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Where the embedded PostgreSQL and other local state live
    /// [default: /var/lib/cdot-rmm as root, else ~/.local/share/cdot-rmm].
    #[arg(long, env = "CDOT_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Directory with the PostgreSQL server binaries (initdb, pg_ctl)
    /// [default: the newest /usr/lib/postgresql/*/bin].
    #[arg(long, env = "CDOT_POSTGRES_BIN_DIR")]
    pub postgres_bin_dir: Option<PathBuf>,
    /// Largest number of pooled database connections.
    #[arg(long, env = "CDOT_DATABASE_MAX_CONNECTIONS", default_value_t = 16)]
    pub database_max_connections: u32,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a new random token and write its Secret-shaped manifest (holding only the
    /// token's SHA-256) into a directory; the token itself is printed once.
    Create(TokenCreateArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TokenType {
    /// A bearer token for people and the console (`rmm.cdot.io/api-token`).
    Api,
    /// An agent enrollment token (`rmm.cdot.io/enrollment-token`), bound to --namespace.
    Enrollment,
}

#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    /// What the token is for.
    #[arg(long = "type", value_enum, default_value_t = TokenType::Api)]
    pub token_type: TokenType,
    /// Name of the Secret document.
    #[arg(long)]
    pub name: String,
    /// Namespace the Secret lives in; only the system namespace may grant other namespaces.
    #[arg(long, default_value = "cdot-system")]
    pub namespace: String,
    /// Role of the token.
    #[arg(long, value_enum, default_value_t = RoleArg::Viewer)]
    pub role: RoleArg,
    /// Namespaces the token may see (comma separated); defaults to --namespace.
    #[arg(long, value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// Enrollment tokens: how long the token works (e.g. `24h`); forever when absent.
    #[arg(long, value_parser = parse_duration)]
    pub expires_in: Option<Duration>,
    /// Enrollment tokens: how many agents may enroll with it.
    #[arg(long, default_value_t = 1)]
    pub max_uses: u32,
    /// Enrollment tokens: bind the token to this one Device, so that it may enroll it again
    /// (a reinstalled host) and revoke the credentials of the agent enrolled there now.
    /// Without it, a token never takes over a Device that already has an enrolled agent.
    #[arg(long)]
    pub device: Option<String>,
    /// Enrollment tokens: labels the enrolled Devices get (`role=server,team=noc`), so
    /// that AlertRules and policies select them from their first report.
    #[arg(long, value_delimiter = ',', value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Directory to write `<name>.yaml` into; prints the manifest to stdout when absent.
    #[arg(long)]
    pub out_dir: Option<PathBuf>,
    /// Print only the token (for scripts).
    #[arg(long)]
    pub quiet: bool,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("label {s:?} is not key=value"))?;
    cdot_crds::validation::check_label_key(k)?;
    cdot_crds::validation::check_label_value(v)?;
    Ok((k.to_owned(), v.to_owned()))
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum RoleArg {
    Viewer,
    Operator,
    Admin,
}

/// Parses `30s`, `5m`, `1h30m`, `7d` with the same rules as the resources use.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    cdot_crds::common::parse_duration(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn standalone_defaults_work_on_one_machine() {
        let cli = Cli::try_parse_from(["cdot-operator", "standalone", "--manifests", "examples"])
            .expect("parse");
        let Command::Standalone(args) = cli.command else {
            panic!("expected standalone")
        };
        assert_eq!(args.serve.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(args.resync_interval, Duration::from_secs(30));
        assert!(
            args.max_manifest_bytes == 4 << 20 || std::env::var("CDOT_MAX_MANIFEST_BYTES").is_ok()
        );
        assert!(
            args.serve.database.database_url.is_none() || std::env::var("DATABASE_URL").is_ok()
        );
    }

    #[test]
    fn the_manifest_size_limit_is_a_positive_byte_count() {
        let parse = |value: &str| {
            Cli::try_parse_from([
                "cdot-operator",
                "standalone",
                "--manifests",
                "examples",
                "--max-manifest-bytes",
                value,
            ])
        };
        let Command::Standalone(args) = parse("1024").expect("parse").command else {
            panic!("expected standalone")
        };
        assert_eq!(args.max_manifest_bytes, 1024);
        assert!(parse("0").is_err() && parse("4MiB").is_err());
    }

    #[test]
    fn run_defaults_work_in_a_cluster() {
        let cli =
            Cli::try_parse_from(["cdot-operator", "run", "--namespace", "acme"]).expect("parse");
        let Command::Run(args) = cli.command else {
            panic!("expected run")
        };
        assert_eq!(args.namespace.as_deref(), Some("acme"));
        assert_eq!(args.lease_name, "cdot-operator");
        assert_eq!(args.lease_duration, Duration::from_secs(15));
        assert_eq!(args.resync_interval, Duration::from_secs(600));
        assert!(!args.identity.is_empty());
        assert!(
            args.serve.audit_retention == Duration::from_secs(400 * 86_400)
                || std::env::var("CDOT_AUDIT_RETENTION").is_ok()
        );
    }

    #[test]
    fn audit_verify_takes_a_database_url_or_finds_the_embedded_one() {
        let cli = Cli::try_parse_from([
            "cdot-operator",
            "audit",
            "verify",
            "--database-url",
            "postgres://127.0.0.1/cdot",
        ])
        .expect("parse");
        let Command::Audit(AuditCommand::Verify(args)) = cli.command else {
            panic!("expected audit verify")
        };
        assert_eq!(
            args.database_url.as_deref(),
            Some("postgres://127.0.0.1/cdot")
        );
        let cli = Cli::try_parse_from([
            "cdot-operator",
            "audit",
            "verify",
            "--data-dir",
            ".cdot/data",
        ])
        .expect("parse");
        let Command::Audit(AuditCommand::Verify(args)) = cli.command else {
            panic!("expected audit verify")
        };
        assert!(args.database_url.is_none() || std::env::var_os("DATABASE_URL").is_some());
    }
}
