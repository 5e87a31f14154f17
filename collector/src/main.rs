//! `cdot-collector`: cdot-rmm site collector: discovery, SNMP polling, probes and flow receivers for a client network.
//!
//! Only the command-line surface exists so far; the issues that build this binary fill it in.
use clap::Parser;

/// cdot-rmm site collector: discovery, SNMP polling, probes and flow receivers for a client network.
#[derive(Debug, Parser)]
#[command(name = "cdot-collector", version, about, arg_required_else_help = true)]
struct Cli {
    /// URL of the cdot-rmm operator API.
    #[arg(long, env = "CDOT_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    anyhow::bail!(
        "cdot-collector is not implemented yet (server {}); see the project's open issues",
        cli.server
    )
}
