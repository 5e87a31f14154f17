//! `cdot-operator`: the cdot-rmm control plane.
use clap::Parser;

use cdot_operator::cli::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    cdot_operator::telemetry::init(cli.log_format)?;
    match cli.command {
        Command::Standalone(args) => cdot_operator::standalone::run(*args).await,
        Command::Token(cmd) => cdot_operator::token::run(cmd),
    }
}
