//! Flow receivers: NetFlow v5/v9, IPFIX (J-Flow included) and sFlow v5 decoded and
//! aggregated per minute.
//!
//! Each listening socket has a thread of its own that receives, decodes and aggregates
//! inline ([`receiver`]): no queue between them, so a burst costs no allocation and the
//! kernel's receive buffer (made large) absorbs what the thread cannot take at once.
//! Decoders turn every datagram into normalised [`FlowRecord`]s with the sampling rate
//! applied ([`netflow`], [`sflow`]); the [`Aggregator`] sums them per minute, exporter and
//! interface pair and keeps the top keys by bytes.
//!
//! **Which minute.** A record is counted in the minute it was *received*, not the
//! minute its flow started or ended: exporters' clocks drift and NetFlow v5/v9 times are
//! relative to the router's uptime, long flows are exported only at their active
//! timeout, and bucketing by flow time would keep minutes open for as long as the
//! longest timeout (unbounded memory, late data). With receive time a minute is complete
//! as soon as it ends, and it is flushed [`FlowConfig::flush_delay`] later.
//!
//! **Never crashing on input.** Decoders never panic and allocate nothing in
//! proportion to what a datagram claims; a datagram they refuse is counted in
//! `cdot_collector_flow_dropped_total{exporter,reason}` and dropped whole.
pub mod aggregate;
pub mod interfaces;
pub mod metrics;
pub mod netflow;
pub mod packet;
pub mod receiver;
pub mod record;
pub mod sflow;
#[cfg(any(test, feature = "synth"))]
pub mod synth;
mod template;

use std::{net::SocketAddr, time::Duration};

use cdot_crds::wire::collector::FlowGroup;
use tokio::sync::{mpsc, watch};

pub use self::{
    aggregate::{Aggregator, Limits},
    metrics::FlowMetrics,
    netflow::NetflowDecoder,
    receiver::{FlowError, FlowReceivers},
    record::FlowRecord,
    sflow::InterfaceCounters,
};

/// Settings of the flow receivers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowConfig {
    /// Where NetFlow v5/v9 and IPFIX exports arrive (`None`: not received).
    pub netflow_listen: Option<SocketAddr>,
    /// Where sFlow v5 datagrams arrive (`None`: not received).
    pub sflow_listen: Option<SocketAddr>,
    /// Five-tuples kept with their ports per (minute, exporter, interface pair); the rest
    /// is summed by host pair and protocol.
    pub top_n: usize,
    /// Distinct five-tuples tracked per group; new ones past it are summed under their host
    /// pair straight away. Bounds memory per group.
    pub key_cap: usize,
    /// Distinct five-tuples tracked by one receiver over all its open groups.
    pub max_keys: usize,
    /// Host pairs one receiver tracks over all its open groups for five-tuples past
    /// `key_cap` or `max_keys`; past it, traffic counts only in `other`. With two minutes
    /// open this bounds the exact host pairs of a minute (ADR 22).
    pub max_hosts: usize,
    /// Open groups per receiver; records that would open more are dropped and counted.
    pub max_groups: usize,
    /// SO_RCVBUF asked for each socket, in bytes (the kernel may cap it at
    /// `net.core.rmem_max`).
    pub receive_buffer_bytes: usize,
    /// How long after its end a minute is flushed.
    pub flush_delay: Duration,
    /// How long a NetFlow v9/IPFIX template lives without being refreshed.
    pub template_ttl: Duration,
    /// How long data records whose template has not arrived yet are kept waiting for it.
    pub pending_ttl: Duration,
}

impl Default for FlowConfig {
    fn default() -> Self {
        Self {
            netflow_listen: Some(SocketAddr::from(([0, 0, 0, 0], netflow::DEFAULT_PORT))),
            sflow_listen: Some(SocketAddr::from(([0, 0, 0, 0], sflow::DEFAULT_PORT))),
            top_n: 1000,
            key_cap: 10_000,
            max_keys: 1_000_000,
            max_hosts: 500_000,
            max_groups: 20_000,
            receive_buffer_bytes: 32 << 20,
            flush_delay: Duration::from_secs(5),
            template_ttl: Duration::from_secs(30 * 60),
            pending_ttl: Duration::from_secs(10),
        }
    }
}

impl FlowConfig {
    /// The aggregation limits of this configuration.
    pub fn limits(&self) -> Limits {
        Limits {
            top_n: self.top_n,
            key_cap: self.key_cap,
            max_keys: self.max_keys,
            max_hosts: self.max_hosts,
            max_groups: self.max_groups,
        }
    }
}

/// Where the receivers deliver what they produce. A receiver never waits for a full
/// queue (it would lose datagrams meanwhile): what does not fit is dropped and counted
/// in `cdot_collector_flow_sink_dropped_total`, so give the queues room for a few
/// minutes (each receiver sends one `Vec` per minute and per sFlow counter batch).
#[derive(Clone, Debug)]
pub struct FlowSink {
    /// Closed minutes, one `Vec` per receiver and minute.
    pub groups: mpsc::Sender<Vec<FlowGroup>>,
    /// sFlow interface counter samples, about once a second while they arrive (for
    /// [`interfaces::spawn`]); `None` discards them.
    pub counters: Option<mpsc::Sender<Vec<InterfaceCounters>>>,
}

/// Binds the configured sockets and starts one receiving thread per socket. They run
/// until `shutdown` turns true (or its sender is dropped), then flush every open
/// minute, the current one included, to the sink.
pub fn spawn(
    config: FlowConfig,
    metrics: FlowMetrics,
    sink: FlowSink,
    shutdown: watch::Receiver<bool>,
) -> Result<FlowReceivers, FlowError> {
    receiver::spawn(config, metrics, sink, shutdown)
}
