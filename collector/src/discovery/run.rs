//! One discovery run: its addresses, probed `concurrency` at a time (ICMP, then SNMP), a
//! progress report every [`REPORT_EVERY`] while there is progress, and exactly one final
//! report. Aborting the run's task (its assignment removed, the collector stopping) drops
//! every address task with it; no final report is sent then.
use std::{
    net::IpAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use cdot_crds::wire::discovery::{FoundHost, ScanAssignment, ScanCounts, ScanReport};
use prometheus_client::metrics::gauge::Gauge;
use tokio::{
    sync::mpsc,
    task::JoinSet,
    time::{MissedTickBehavior, interval_at},
};
use tracing::{Instrument, Span, info, info_span, warn};

use super::{
    identify::Identifier,
    metrics::DiscoveryMetrics,
    progress::{Outcome, Progress},
    sweep::{SocketError, Sweep},
    targets::{AddressSet, TargetError},
};
use crate::{pace::Pacer, unix_ms};

/// Least time between two progress reports.
pub(super) const REPORT_EVERY: Duration = Duration::from_secs(2);

/// Why a run could not go on (the `error` of its `Failed` report).
#[derive(Debug, thiserror::Error)]
pub(super) enum RunError {
    #[error(transparent)]
    Targets(#[from] TargetError),
    #[error("{0}, and SNMP is off")]
    NoIcmp(#[from] SocketError),
}

/// The reporter is gone: the collector is stopping.
struct SinkClosed;

/// Runs `assignment` to its end, sending its reports to `sink`.
pub(super) async fn run(
    assignment: ScanAssignment,
    sink: mpsc::Sender<ScanReport>,
    metrics: DiscoveryMetrics,
) {
    let span = info_span!("discovery", scan = %assignment.scan, run = %assignment.run);
    execute(assignment, sink, metrics).instrument(span).await;
}

async fn execute(
    assignment: ScanAssignment,
    sink: mpsc::Sender<ScanReport>,
    metrics: DiscoveryMetrics,
) {
    let started = Instant::now();
    let started_ms = unix_ms();
    metrics.runs_started.inc();
    let _running = Running::new(&metrics.runs_running);
    let (run, scan) = (assignment.run, assignment.scan.clone());
    let (mut progress, error) = match prepare(&assignment, &metrics) {
        Ok((addresses, probe)) => {
            let mut progress = Progress::new(run, scan, started_ms, addresses.len());
            info!(
                total = addresses.len(),
                icmp = probe.sweep.is_some(),
                snmp = probe.identifier.is_some(),
                rate_limit = assignment.rate_limit,
                concurrency = assignment.concurrency,
                "discovery run started"
            );
            let concurrency = usize::try_from(assignment.concurrency.max(1)).unwrap_or(1);
            let probe = Arc::new(probe);
            let probed = probe_all(addresses.iter(), probe, concurrency, &mut progress, &sink);
            if probed.await.is_err() {
                return;
            }
            (progress, None)
        }
        Err(error) => {
            warn!(%error, "discovery run failed");
            let progress = Progress::new(run, scan, started_ms, 0);
            (progress, Some(error.to_string()))
        }
    };
    let state = if error.is_some() {
        "failed"
    } else {
        "succeeded"
    };
    if send(&sink, progress.finish(unix_ms(), error))
        .await
        .is_err()
    {
        return;
    }
    metrics.finished(state).inc();
    let counts = progress.counts();
    info!(
        state,
        scanned = progress.scanned(),
        icmp_answered = counts.icmp_answered,
        snmp_answered = counts.snmp_answered,
        seconds = started.elapsed().as_secs_f64(),
        "discovery run finished"
    );
}

/// The run's addresses and probes.
fn prepare(
    assignment: &ScanAssignment,
    metrics: &DiscoveryMetrics,
) -> Result<(AddressSet, Probe), RunError> {
    let addresses = AddressSet::new(&assignment.targets, &assignment.excludes)?;
    let probe = Probe::new(assignment, &addresses, metrics)?;
    Ok((addresses, probe))
}

/// Probes every address, at most `concurrency` at a time, reporting progress as it goes.
async fn probe_all(
    mut addresses: impl Iterator<Item = IpAddr>,
    probe: Arc<Probe>,
    concurrency: usize,
    progress: &mut Progress,
    sink: &mpsc::Sender<ScanReport>,
) -> Result<(), SinkClosed> {
    let span = Span::current();
    let mut tasks = JoinSet::new();
    let mut tick = interval_at(tokio::time::Instant::now() + REPORT_EVERY, REPORT_EVERY);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        while tasks.len() < concurrency {
            let Some(address) = addresses.next() else {
                break;
            };
            tasks.spawn(probe.clone().address(address).instrument(span.clone()));
        }
        tokio::select! {
            joined = tasks.join_next() => match joined {
                Some(Ok(outcome)) => progress.record(outcome),
                Some(Err(error)) => {
                    // Counted as done so that the run still ends; it cannot happen short of
                    // a bug (a panic), which the log shows.
                    warn!(%error, "address task failed");
                    progress.record(Outcome::default());
                }
                None => return Ok(()),
            },
            _ = tick.tick() => {
                if progress.has_news() {
                    send(sink, progress.running(unix_ms())).await?;
                }
            }
        }
    }
}

async fn send(sink: &mpsc::Sender<ScanReport>, reports: Vec<ScanReport>) -> Result<(), SinkClosed> {
    for report in reports {
        sink.send(report).await.map_err(|_| SinkClosed)?;
    }
    Ok(())
}

/// What every address task of a run shares.
struct Probe {
    sweep: Option<Sweep>,
    identifier: Option<Identifier>,
    metrics: DiscoveryMetrics,
}

impl Probe {
    /// The run's probes, all paced by one rate. A run with SNMP whose ICMP socket cannot be
    /// opened asks every address over SNMP instead; without SNMP it cannot go on.
    fn new(
        assignment: &ScanAssignment,
        addresses: &AddressSet,
        metrics: &DiscoveryMetrics,
    ) -> Result<Self, RunError> {
        let pacer = Arc::new(Pacer::new(assignment.rate_limit, metrics.packets.clone()));
        let timeout = Duration::from_millis(assignment.timeout_ms.max(1));
        let identifier = assignment
            .snmp
            .clone()
            .filter(|snmp| !snmp.credentials.is_empty())
            .map(|snmp| {
                Identifier::new(
                    &assignment.scan,
                    snmp,
                    timeout,
                    assignment.retries,
                    pacer.clone(),
                )
            });
        let sweep = if assignment.icmp {
            let send_errors = metrics.error("icmp_send");
            match Sweep::open(
                addresses.families(),
                timeout,
                assignment.retries,
                pacer,
                send_errors,
            ) {
                Ok(sweep) => Some(sweep),
                Err(error) if identifier.is_some() => {
                    warn!(%error, "no ICMP sweep: every address is asked over SNMP");
                    None
                }
                Err(error) => return Err(error.into()),
            }
        } else {
            None
        };
        Ok(Self {
            sweep,
            identifier,
            metrics: metrics.clone(),
        })
    }

    /// Probes one address: an echo, then SNMP if it answered (or if SNMP asks everyone).
    async fn address(self: Arc<Self>, address: IpAddr) -> Outcome {
        let mut counts = ScanCounts::default();
        let rtt = match &self.sweep {
            Some(sweep) => {
                counts.icmp_probed = 1;
                let rtt = sweep.echo(address).await;
                if rtt.is_some() {
                    counts.icmp_answered = 1;
                    self.metrics.answer("icmp").inc();
                }
                rtt
            }
            None => None,
        };
        let ask = self
            .identifier
            .as_ref()
            .filter(|snmp| rtt.is_some() || self.sweep.is_none() || snmp.silent_hosts());
        let facts = match ask {
            Some(identifier) => {
                counts.snmp_probed = 1;
                let identified = identifier.identify(address).await;
                for reason in identified.failures {
                    *counts.errors.entry(reason.to_owned()).or_default() += 1;
                    self.metrics.error(reason).inc();
                }
                self.metrics
                    .error("table")
                    .inc_by(u64::from(identified.tables_failed));
                if identified.facts.is_some() {
                    counts.snmp_answered = 1;
                    self.metrics.answer("snmp").inc();
                }
                identified.facts
            }
            None => None,
        };
        self.metrics.addresses.inc();
        let host = (rtt.is_some() || facts.is_some()).then(|| FoundHost {
            address,
            rtt_ms: rtt.map(|rtt| rtt.as_secs_f64() * 1_000.0),
            snmp: facts,
        });
        Outcome { counts, host }
    }
}

/// Counts a run in the running gauge for as long as it lives (aborted runs included).
struct Running(Gauge);

impl Running {
    fn new(gauge: &Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.dec();
    }
}
