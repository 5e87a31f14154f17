//! `cdot-collector`: the cdot-rmm site collector. See the library crate for the parts.
use std::sync::{Arc, Mutex};

use anyhow::Context;
use cdot_agent::{
    config::FileConfig,
    enroll,
    service::{init_tracing, shutdown_signal},
};
use cdot_collector::{
    cli::{Cli, Command, RunArgs},
    discovery::{self, DiscoveryMetrics},
    flow::{self, FlowConfig, FlowMetrics, FlowSink},
    metrics::{self, ReporterMetrics},
    probe::{self, ProbeMetrics},
    report::{Inputs, Outputs, Reporter, ReporterSettings},
    snmp::{self, SnmpMetrics},
};
use cdot_crds::device::DeviceClass;
use clap::Parser;
use prometheus_client::registry::Registry;
use tokio::sync::{mpsc, watch};

/// Closed flow minutes (one `Vec` per receiver and minute) the reporter may lag behind.
const QUEUE: usize = 256;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    match &cli.command {
        Command::Enroll(args) => {
            let mut opts =
                cdot_agent::cli::enroll_options(args, &FileConfig::default(), cli.state_dir())?;
            opts.device_class = Some(DeviceClass::Collector);
            let identity = enroll::enroll_unless_enrolled(opts, args.force).await?;
            println!(
                "enrolled as collector {}/{} ({})",
                identity.namespace, identity.device_name, identity.device_uid
            );
            Ok(())
        }
        Command::Run(args) => run(&cli, args).await,
    }
}

async fn run(cli: &Cli, args: &RunArgs) -> anyhow::Result<()> {
    let mut registry = Registry::default();
    let reporter_metrics = ReporterMetrics::register(&mut registry);
    let flow_metrics = FlowMetrics::register(&mut registry);
    let snmp_metrics = SnmpMetrics::register(&mut registry);
    let probe_metrics = ProbeMetrics::register(&mut registry);
    let discovery_metrics = DiscoveryMetrics::register(&mut registry);
    let registry = Arc::new(Mutex::new(registry));

    let settings = ReporterSettings {
        ship_interval: args.ship_interval(),
        assignments_refresh: args.assignments_refresh(),
        spool_max_bytes: args.spool_max_bytes,
        ..ReporterSettings::default()
    };
    let reporter = Reporter::new(&cli.state_dir(), settings, reporter_metrics)
        .context("cannot start the collector")?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let (flows_tx, flows_rx) = mpsc::channel(QUEUE);
    let (interfaces_tx, interfaces_rx) = mpsc::channel(QUEUE);
    let (probes_tx, probes_rx) = mpsc::channel(QUEUE);
    let (scans_tx, scans_rx) = mpsc::channel(QUEUE);
    let (snmp_targets_tx, snmp_targets_rx) = watch::channel(Vec::new());
    let (probe_targets_tx, probe_targets_rx) = watch::channel(Vec::new());
    let (scan_targets_tx, scan_targets_rx) = watch::channel(Vec::new());
    let (devices_tx, devices_rx) = watch::channel(Vec::new());
    let (counters_tx, counters_rx) = mpsc::channel(QUEUE);

    let flow_config = FlowConfig {
        netflow_listen: (!args.no_netflow).then_some(args.netflow_listen),
        sflow_listen: (!args.no_sflow).then_some(args.sflow_listen),
        top_n: args.flow_top_n as usize,
        receive_buffer_bytes: args.flow_receive_buffer,
        ..FlowConfig::default()
    };
    let receivers = flow::spawn(
        flow_config,
        flow_metrics.clone(),
        FlowSink {
            groups: flows_tx,
            counters: Some(counters_tx),
        },
        stop_rx.clone(),
    )
    .context("cannot start the flow receivers")?;
    let sflow_interfaces = flow::interfaces::spawn(
        counters_rx,
        devices_rx,
        snmp_targets_rx.clone(),
        interfaces_tx.clone(),
        flow_metrics.clone(),
    );
    let pollers = snmp::spawn(
        snmp_targets_rx,
        interfaces_tx,
        snmp_metrics,
        stop_rx.clone(),
    );
    let probers = probe::spawn(probe_targets_rx, probes_tx, probe_metrics, stop_rx.clone());
    let scanners = discovery::spawn(
        scan_targets_rx,
        scans_tx,
        discovery_metrics,
        stop_rx.clone(),
    );
    let metrics_server = tokio::spawn(metrics::serve(
        args.metrics_listen,
        registry,
        stop_rx.clone(),
    ));

    reporter
        .run(
            Inputs {
                flows: flows_rx,
                interfaces: interfaces_rx,
                probes: probes_rx,
                scans: scans_rx,
            },
            Outputs {
                snmp_targets: snmp_targets_tx,
                probe_targets: probe_targets_tx,
                scan_targets: scan_targets_tx,
                devices: devices_tx,
                stop_components: stop_tx,
            },
            shutdown_signal(),
        )
        .await;
    receivers.stopped().await;
    let _ = sflow_interfaces.await;
    let _ = pollers.await;
    let _ = probers.await;
    let _ = scanners.await;
    if let Ok(Err(e)) = metrics_server.await {
        tracing::warn!(error = %e, "metrics endpoint failed");
    }
    Ok(())
}
