//! `cdot-console`: cdot-rmm desktop console: network performance views over the operator's query API.
//!
//! Only the command-line surface exists so far; the issues that build this binary fill it in.
use clap::Parser;

/// cdot-rmm desktop console: network performance views over the operator's query API.
#[derive(Debug, Parser)]
#[command(name = "cdot-console", version, about, arg_required_else_help = true)]
struct Cli {
    /// URL of the cdot-rmm operator API.
    #[arg(long, env = "CDOT_SERVER", default_value = "http://127.0.0.1:8080")]
    server: String,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    anyhow::bail!(
        "cdot-console is not implemented yet (server {}); see the project's open issues",
        cli.server
    )
}
