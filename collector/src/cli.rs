//! Command line (clap derive; every flag also from the environment).
use std::{net::SocketAddr, path::PathBuf, time::Duration};

use cdot_agent::cli::{EnrollArgs, LogFormat};
use clap::{Args, Parser, Subcommand};

/// cdot-rmm site collector: flow receivers, SNMP interface polling and probes for a client
/// network, reporting to the operator like an agent.
#[derive(Debug, Parser)]
#[command(name = "cdot-collector", version, about)]
pub struct Cli {
    /// State directory: identity, keys, spool. Default: /var/lib/cdot-collector as root,
    /// else ~/.local/state/cdot-collector.
    #[arg(long, env = "CDOT_COLLECTOR_STATE_DIR", global = true)]
    pub state_dir: Option<PathBuf>,
    /// Log format.
    #[arg(
        long,
        env = "CDOT_LOG_FORMAT",
        global = true,
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Enroll this collector with an operator using a one-time token (creates a Device of
    /// class Collector).
    Enroll(EnrollArgs),
    /// Receive flows, poll and probe, and report to the operator.
    Run(RunArgs),
}

/// `cdot-collector run`.
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// UDP address to receive NetFlow v5/v9 and IPFIX on (J-Flow included).
    #[arg(long, env = "CDOT_NETFLOW_LISTEN", default_value = "0.0.0.0:2055")]
    pub netflow_listen: SocketAddr,
    /// Do not receive NetFlow/IPFIX.
    #[arg(long, env = "CDOT_NO_NETFLOW")]
    pub no_netflow: bool,
    /// UDP address to receive sFlow v5 on.
    #[arg(long, env = "CDOT_SFLOW_LISTEN", default_value = "0.0.0.0:6343")]
    pub sflow_listen: SocketAddr,
    /// Do not receive sFlow.
    #[arg(long, env = "CDOT_NO_SFLOW")]
    pub no_sflow: bool,
    /// Five-tuples that keep their ports per exporter, interface pair and minute; every
    /// other one is summed under its host pair and protocol (hosts stay exact, ADR 22).
    /// (At most 10,000, the rows of one shipped piece.)
    #[arg(long, env = "CDOT_FLOW_TOP_N", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub flow_top_n: u32,
    /// Receive buffer (SO_RCVBUF) of each flow socket in bytes: what absorbs bursts while
    /// the receiving thread is busy. The kernel caps it at `net.core.rmem_max`.
    #[arg(long, env = "CDOT_FLOW_RECEIVE_BUFFER", default_value_t = 32 << 20)]
    pub flow_receive_buffer: usize,
    /// Address of this collector's own Prometheus `/metrics` (drops per exporter and reason).
    #[arg(
        long,
        env = "CDOT_COLLECTOR_METRICS_LISTEN",
        default_value = "127.0.0.1:9810"
    )]
    pub metrics_listen: SocketAddr,
    /// Seconds between batches shipped to the operator.
    #[arg(long, env = "CDOT_SHIP_INTERVAL", default_value_t = 10)]
    pub ship_interval_secs: u64,
    /// Seconds between fetches of what to poll and probe.
    #[arg(long, env = "CDOT_ASSIGNMENTS_REFRESH", default_value_t = 60)]
    pub assignments_refresh_secs: u64,
    /// Bound of the on-disk spool in bytes (oldest batches dropped, and counted, beyond it).
    #[arg(long, env = "CDOT_SPOOL_MAX_BYTES", default_value_t = cdot_agent::spool::DEFAULT_MAX_BYTES)]
    pub spool_max_bytes: u64,
}

impl RunArgs {
    pub fn ship_interval(&self) -> Duration {
        Duration::from_secs(self.ship_interval_secs.max(1))
    }

    pub fn assignments_refresh(&self) -> Duration {
        Duration::from_secs(self.assignments_refresh_secs.max(5))
    }
}

impl Cli {
    /// The state directory: flag/env or the default.
    pub fn state_dir(&self) -> PathBuf {
        self.state_dir.clone().unwrap_or_else(default_state_dir)
    }
}

/// `/var/lib/cdot-collector` for root, else under the user's state home.
pub fn default_state_dir() -> PathBuf {
    if nix::unistd::geteuid().is_root() {
        return PathBuf::from("/var/lib/cdot-collector");
    }
    if let Some(xdg) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("cdot-collector");
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
    home.join(".local/state/cdot-collector")
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
    fn run_defaults_work_on_one_machine() {
        let cli = Cli::parse_from(["cdot-collector", "run"]);
        let Command::Run(args) = cli.command else {
            panic!("run expected")
        };
        assert_eq!(args.netflow_listen, "0.0.0.0:2055".parse().expect("addr"));
        assert_eq!(args.sflow_listen, "0.0.0.0:6343".parse().expect("addr"));
        assert!(!args.no_netflow && !args.no_sflow);
        assert_eq!(args.ship_interval(), Duration::from_secs(10));
    }
}
