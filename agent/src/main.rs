//! `cdot-agent`: the cdot-rmm endpoint agent. See the library crate for the parts.
use std::time::Duration;

use anyhow::Context;
use cdot_agent::{
    cli::{Cli, Command, LogFormat, RunArgs},
    config::FileConfig,
    enroll, run,
    service::{init_tracing, shutdown_signal},
};
use clap::Parser;

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let file = FileConfig::load(cli.config.as_deref())?;
    let format = cli.log_format.or(match file.log_format.as_deref() {
        Some("json") => Some(LogFormat::Json),
        _ => None,
    });
    init_tracing(format.unwrap_or(LogFormat::Text));

    match &cli.command {
        Some(Command::Enroll(args)) => {
            let opts = cli.enroll_options(args, &file)?;
            let identity = enroll::enroll_unless_enrolled(opts, args.force).await?;
            println!(
                "enrolled as {}/{} ({})",
                identity.namespace, identity.device_name, identity.device_uid
            );
            Ok(())
        }
        Some(Command::Run(args)) => run_agent(&cli, args, &file).await,
        None => run_agent(&cli, &RunArgs::default(), &file).await,
    }
}

async fn run_agent(cli: &Cli, args: &RunArgs, file: &FileConfig) -> anyhow::Result<()> {
    if args.once {
        let batch = run::collect_once(Duration::from_secs(1), &[]).await?;
        println!("{}", serde_json::to_string_pretty(&batch)?);
        return Ok(());
    }
    let settings = cli.agent_settings(args, file);
    let agent = run::Agent::new(settings).context("cannot start the agent")?;
    agent.run(shutdown_signal()).await?;
    Ok(())
}
