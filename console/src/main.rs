//! `cdot-console`: the desktop console of cdot-rmm.
use std::path::PathBuf;

use anyhow::Context as _;
use cdot_console::{
    app::ConsoleApp,
    config::{self, Layer, Settings},
};
use clap::Parser;

/// cdot-rmm desktop console: devices and alerts over the operator's API.
///
/// Settings come from flags, then environment variables, then the config file
/// ($XDG_CONFIG_HOME/cdot/console.toml, keys api, token, token-file, namespaces,
/// timeout-secs, ca-file, range). Without a token, .cdot/viewer-token (written by scripts/quickstart) is
/// used when it exists.
#[derive(Debug, Parser)]
#[command(name = "cdot-console", version, about)]
struct Cli {
    /// Base URL of the operator's API [default: http://127.0.0.1:8080].
    #[arg(long, env = "CDOT_API")]
    api: Option<String>,
    /// Bearer token (viewer; operator to acknowledge and silence alerts).
    #[arg(long, env = "CDOT_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// File holding the bearer token.
    #[arg(long, env = "CDOT_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Namespaces to offer in the selector, comma-separated (those the token may read are
    /// learned from the operator).
    #[arg(long, env = "CDOT_NAMESPACES", value_delimiter = ',')]
    namespace: Vec<String>,
    /// Request timeout in seconds [default: 15].
    #[arg(long, env = "CDOT_TIMEOUT_SECS")]
    timeout_secs: Option<u64>,
    /// PEM file of a private CA that signed the operator's certificate (https).
    #[arg(long, env = "CDOT_CA_FILE")]
    ca_file: Option<PathBuf>,
    /// The network screen's range at start: 15m, 1h, 6h, 24h or 7d [default: 1h].
    #[arg(long, env = "CDOT_RANGE")]
    range: Option<String>,
    /// TOML config file [default: $XDG_CONFIG_HOME/cdot/console.toml when it exists].
    #[arg(long, env = "CDOT_CONSOLE_CONFIG")]
    config: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let file = match cli.config.clone().or_else(config::default_config_file) {
        Some(path) => Layer::from_file(&path)?,
        None => Layer::default(),
    };
    let flags = Layer {
        api: cli.api,
        token: cli.token,
        token_file: cli.token_file,
        namespaces: Some(cli.namespace).filter(|n| !n.is_empty()),
        timeout_secs: cli.timeout_secs,
        ca_file: cli.ca_file,
        range: cli.range,
    };
    let settings = Settings::resolve(&[flags, file])?;
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("cdot-rmm console")
            .with_inner_size([1400.0, 900.0]),
        ..Default::default()
    };
    eframe::run_native(
        "cdot-console",
        options,
        Box::new(move |_cc| Ok(Box::new(ConsoleApp::new(&settings)))),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))
    .context("cannot open the console window (is there an X11 or Wayland display?)")
}
