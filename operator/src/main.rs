//! `cdot-operator`: the cdot-rmm control plane.
use clap::Parser;

use cdot_operator::cli::{AuditCommand, Cli, Command};

/// glibc's allocator spent a quarter of the ingest path's CPU in `malloc`/`free` under a
/// 4,000-agent load (perf); mimalloc keeps per-thread free lists.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // One TLS implementation for every listener and client (axum-server, kube, sqlx).
    let _ = rustls::crypto::ring::default_provider().install_default();
    cdot_operator::telemetry::init(cli.log_format)?;
    match cli.command {
        Command::Standalone(args) => cdot_operator::standalone::run(*args).await,
        Command::Run(args) => cdot_operator::kubernetes::run(*args).await,
        Command::Token(cmd) => cdot_operator::token::run(cmd),
        Command::Rules(cmd) => cdot_operator::alerting::backtest::cli::run(cmd).await,
        Command::Audit(AuditCommand::Verify(args)) => {
            let url = match args.database_url {
                Some(url) => url,
                None => cdot_operator::store::embedded::running_url(
                    &args
                        .data_dir
                        .unwrap_or_else(cdot_operator::store::embedded::default_data_dir),
                )?,
            };
            if !cdot_operator::automation::audit::verify_command(&url).await? {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}
