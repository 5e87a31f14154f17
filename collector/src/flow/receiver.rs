//! The receiving threads: one per socket, each receiving, decoding and aggregating
//! inline, flushing closed minutes to the sink and publishing its counters about once a
//! second.
use std::{
    io,
    net::{SocketAddr, UdpSocket},
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use cdot_crds::wire::collector::FlowGroup;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::{
    mpsc::{self, error::TrySendError},
    watch,
};

use super::{
    FlowConfig, FlowMetrics, FlowSink,
    aggregate::{Added, Aggregator, minute_of},
    metrics::{ReasonLabels, Tally},
    netflow::{NetflowDecoder, NetflowSettings},
    record::FlowRecord,
    sflow::{self, InterfaceCounters, SflowOutput},
};

/// Largest datagram a flow exporter can send over UDP (IPv4 and IPv6 alike).
const MAX_DATAGRAM: usize = 65_535;
/// How long a blocked receive waits before looking at the shutdown signal.
const POLL: Duration = Duration::from_millis(100);
/// How often counters are published and closed minutes looked for.
const TICK: Duration = Duration::from_secs(1);

/// Why the receivers could not start.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error("cannot listen for {protocol} on {addr}: {source}")]
    Bind {
        protocol: &'static str,
        addr: SocketAddr,
        source: io::Error,
    },
    #[error("cannot start the {protocol} receiving thread: {source}")]
    Thread {
        protocol: &'static str,
        source: io::Error,
    },
}

/// The running receivers.
#[derive(Debug)]
pub struct FlowReceivers {
    netflow_addr: Option<SocketAddr>,
    sflow_addr: Option<SocketAddr>,
    done: mpsc::Receiver<()>,
}

impl FlowReceivers {
    /// Address the NetFlow/IPFIX socket is bound to (the real port when 0 was asked).
    pub fn netflow_addr(&self) -> Option<SocketAddr> {
        self.netflow_addr
    }

    /// Address the sFlow socket is bound to.
    pub fn sflow_addr(&self) -> Option<SocketAddr> {
        self.sflow_addr
    }

    /// Waits until every receiving thread has flushed and stopped.
    pub async fn stopped(mut self) {
        // Each thread holds a sender; `None` once the last one is gone.
        let _ = self.done.recv().await;
    }
}

pub(crate) fn spawn(
    config: FlowConfig,
    metrics: FlowMetrics,
    sink: FlowSink,
    shutdown: watch::Receiver<bool>,
) -> Result<FlowReceivers, FlowError> {
    let (done_tx, done) = mpsc::channel(1);
    let mut receivers = FlowReceivers {
        netflow_addr: None,
        sflow_addr: None,
        done,
    };
    if let Some(addr) = config.netflow_listen {
        let socket = bind("NetFlow/IPFIX", addr, config.receive_buffer_bytes)?;
        receivers.netflow_addr = socket.local_addr().ok();
        let settings = NetflowSettings {
            template_ttl: config.template_ttl,
            pending_ttl: config.pending_ttl,
            decode_directly: true,
        };
        let worker = Worker::new(socket, &config, &metrics, &sink, &shutdown, done_tx.clone());
        let decoder = NetflowProtocol {
            decoder: NetflowDecoder::new(&settings),
        };
        start("NetFlow/IPFIX", worker, decoder)?;
    }
    if let Some(addr) = config.sflow_listen {
        let socket = bind("sFlow", addr, config.receive_buffer_bytes)?;
        receivers.sflow_addr = socket.local_addr().ok();
        let worker = Worker::new(socket, &config, &metrics, &sink, &shutdown, done_tx.clone());
        start("sFlow", worker, SflowProtocol::default())?;
    }
    Ok(receivers)
}

fn start<P: Decode + Send + 'static>(
    protocol: &'static str,
    worker: Worker,
    decoder: P,
) -> Result<(), FlowError> {
    thread::Builder::new()
        .name(format!("flow-{}", decoder.name()))
        .spawn(move || worker.run(decoder))
        .map(drop)
        .map_err(|source| FlowError::Thread { protocol, source })
}

/// A UDP socket with a large receive buffer and a read timeout for shutdown checks.
fn bind(protocol: &'static str, addr: SocketAddr, buffer: usize) -> Result<UdpSocket, FlowError> {
    let error = |source| FlowError::Bind {
        protocol,
        addr,
        source,
    };
    let socket =
        Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).map_err(error)?;
    if addr.is_ipv6() {
        // [::] receives IPv4 too, as most people expect of "all addresses".
        socket.set_only_v6(false).map_err(error)?;
    }
    if let Err(e) = socket.set_recv_buffer_size(buffer) {
        tracing::warn!(%addr, buffer, error = %e, "cannot enlarge the flow socket's receive buffer");
    }
    socket.bind(&addr.into()).map_err(error)?;
    let socket = UdpSocket::from(socket);
    socket.set_read_timeout(Some(POLL)).map_err(error)?;
    Ok(socket)
}

/// Receive time of a datagram, Unix milliseconds.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// One export protocol as a receiving thread sees it.
pub(crate) trait Decode {
    fn name(&self) -> &'static str;
    /// Decodes one datagram into `records`, counting it in `tally`.
    fn datagram(
        &mut self,
        source: SocketAddr,
        data: &[u8],
        now_ms: i64,
        records: &mut Vec<FlowRecord>,
        tally: &mut Tally,
    );
    /// Interface counters decoded since the last call.
    fn take_counters(&mut self) -> Vec<InterfaceCounters> {
        Vec::new()
    }

    /// Counts what only shows over time (about once a second).
    fn tick(&mut self, _tally: &mut Tally) {}
}

struct NetflowProtocol {
    decoder: NetflowDecoder,
}

impl Decode for NetflowProtocol {
    fn name(&self) -> &'static str {
        "netflow"
    }

    fn datagram(
        &mut self,
        source: SocketAddr,
        data: &[u8],
        _now_ms: i64,
        records: &mut Vec<FlowRecord>,
        tally: &mut Tally,
    ) {
        let exporter = source.ip();
        match self.decoder.decode(source, data, records) {
            Ok(decoded) => {
                tally.datagram(exporter, decoded.version.label());
                tally.records(exporter, decoded.version.label(), decoded.records);
                tally.missing_template(exporter, decoded.version.label(), decoded.no_template);
                tally.dropped_records(exporter, "no_address", decoded.no_address);
            }
            Err(error) => {
                tally.datagram(exporter, error.version_label());
                tally.dropped(exporter, error.reason());
                tracing::debug!(%source, %error, "dropped a flow datagram");
            }
        }
    }

    fn tick(&mut self, tally: &mut Tally) {
        for (exporter, sets) in self.decoder.expired_pending() {
            tally.missing_template(exporter, "pending", sets);
        }
    }
}

#[derive(Default)]
struct SflowProtocol {
    output: SflowOutput,
    counters: Vec<InterfaceCounters>,
}

impl Decode for SflowProtocol {
    fn name(&self) -> &'static str {
        "sflow"
    }

    fn datagram(
        &mut self,
        source: SocketAddr,
        data: &[u8],
        now_ms: i64,
        records: &mut Vec<FlowRecord>,
        tally: &mut Tally,
    ) {
        let exporter = source.ip();
        tally.datagram(exporter, "sflow5");
        self.output.clear();
        match sflow::decode(data, now_ms, &mut self.output) {
            Ok(_) => {
                tally.records(exporter, "sflow5", self.output.flows.len() as u64);
                tally.counter_samples(exporter, self.output.counters.len() as u64);
                tally.dropped_records(exporter, "not_ip", self.output.unusable_samples);
                records.extend_from_slice(&self.output.flows);
                self.counters.append(&mut self.output.counters);
            }
            Err(error) => {
                tally.dropped(exporter, error.reason());
                tracing::debug!(%source, %error, "dropped an sFlow datagram");
            }
        }
    }

    fn take_counters(&mut self) -> Vec<InterfaceCounters> {
        std::mem::take(&mut self.counters)
    }
}

struct Worker {
    socket: UdpSocket,
    aggregator: Aggregator,
    tally: Tally,
    sink: FlowSink,
    shutdown: watch::Receiver<bool>,
    flush_delay_ms: i64,
    _done: mpsc::Sender<()>,
}

impl Worker {
    fn new(
        socket: UdpSocket,
        config: &FlowConfig,
        metrics: &FlowMetrics,
        sink: &FlowSink,
        shutdown: &watch::Receiver<bool>,
        done: mpsc::Sender<()>,
    ) -> Self {
        Self {
            socket,
            aggregator: Aggregator::new(config.limits()),
            tally: Tally::new(metrics.clone()),
            sink: sink.clone(),
            shutdown: shutdown.clone(),
            flush_delay_ms: i64::try_from(config.flush_delay.as_millis()).unwrap_or(i64::MAX),
            _done: done,
        }
    }

    fn stopping(&self) -> bool {
        // A dropped sender means nobody can ask any more: stop as well.
        *self.shutdown.borrow() || self.shutdown.has_changed().is_err()
    }

    fn run<P: Decode>(mut self, mut decoder: P) {
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut records = Vec::with_capacity(1024);
        let mut next_tick = Instant::now() + TICK;
        while !self.stopping() {
            match self.socket.recv_from(&mut buf) {
                Ok((len, source)) => {
                    // An IPv4 exporter seen through a dual-stack socket is still IPv4.
                    let source = SocketAddr::new(source.ip().to_canonical(), source.port());
                    let now = now_ms();
                    records.clear();
                    decoder.datagram(source, &buf[..len], now, &mut records, &mut self.tally);
                    self.aggregate(minute_of(now), &records);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => {
                    self.tally.metrics().receive_errors.inc();
                    tracing::warn!(error = %e, "flow socket receive failed");
                    // Errors that repeat at once (none are expected) must not spin a core.
                    thread::sleep(POLL);
                }
            }
            if Instant::now() >= next_tick {
                next_tick = Instant::now() + TICK;
                let closed = minute_of(now_ms().saturating_sub(self.flush_delay_ms));
                decoder.tick(&mut self.tally);
                let groups = self.aggregator.flush_before(closed);
                self.ship(groups, decoder.take_counters());
            }
        }
        let groups = self.aggregator.flush_all();
        self.ship(groups, decoder.take_counters());
        tracing::debug!(protocol = decoder.name(), "flow receiver stopped");
    }

    fn aggregate(&mut self, minute_ms: i64, records: &[FlowRecord]) {
        let (mut refused, mut unkeyed) = (0, 0);
        for record in records {
            match self.aggregator.add(minute_ms, record) {
                Added::Refused => refused += 1,
                Added::Other => unkeyed += 1,
                Added::Key | Added::Host => {}
            }
        }
        if let Some(first) = records.first() {
            self.tally
                .dropped_records(first.exporter, "group_limit", refused);
            self.tally
                .unkeyed_records(first.exporter, "host_limit", unkeyed);
        }
    }

    fn ship(&mut self, groups: Vec<FlowGroup>, counters: Vec<InterfaceCounters>) {
        self.tally.publish();
        let metrics = self.tally.metrics().clone();
        if !groups.is_empty() {
            let n = groups.len() as u64;
            match self.sink.groups.try_send(groups) {
                Ok(()) => {
                    metrics.groups.inc_by(n);
                }
                Err(e) => lost(&metrics, &e, n),
            }
        }
        if let Some(sender) = &self.sink.counters
            && !counters.is_empty()
        {
            let n = counters.len() as u64;
            if let Err(e) = sender.try_send(counters) {
                lost(&metrics, &e, n);
            }
        }
    }
}

fn lost<T>(metrics: &FlowMetrics, error: &TrySendError<T>, n: u64) {
    let reason = match error {
        TrySendError::Full(_) => "full",
        TrySendError::Closed(_) => "closed",
    };
    metrics
        .sink_dropped
        .get_or_create(&ReasonLabels {
            reason: reason.to_owned(),
        })
        .inc_by(n);
}
