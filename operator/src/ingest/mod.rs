//! Agent metrics ingestion with group commit.
//!
//! A handler validates a batch, then [`Ingest::submit`]s it to a bounded queue and waits.
//! Writer tasks ([`writer::run`]) each take everything queued (up to a sample cap), write
//! it in one transaction (idempotency record first, then only the samples of new batches),
//! commit, and only then acknowledge each request. A full queue is refused at once (503
//! with `Retry-After`) instead of growing latency without bound.
use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::Duration,
};

use cdot_crds::wire::BatchAck;
use tokio::sync::{mpsc, oneshot};

use crate::{metrics::IngestMetrics, store::timeseries::SeriesKey};

pub mod collector;
pub mod error;
pub mod reports;
pub mod validate;
pub mod writer;

pub use error::Rejection;
pub use reports::DeviceReports;

/// The device a report comes from: always taken from its credentials (the HTTP edge
/// authenticates it), never from the report itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeviceIdentity {
    pub namespace: String,
    pub name: String,
    pub uid: uuid::Uuid,
}
pub use validate::{LatestMetrics, ValidatedBatch};

/// Tuning of the ingest path.
#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Batches that may wait for a writer before requests are refused with 503.
    pub queue_capacity: usize,
    /// Writer tasks (each holds one database connection while writing).
    pub writers: usize,
    /// Most samples one group commit takes.
    pub max_group_samples: usize,
    /// Samples older than this are not stored (their partition is gone or about to be).
    pub raw_retention: Duration,
    /// Largest number of cached series ids (the cache is emptied when it grows past it).
    pub series_cache_capacity: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            queue_capacity: 2048,
            writers: 3,
            max_group_samples: 50_000,
            raw_retention: Duration::from_secs(14 * 86_400),
            series_cache_capacity: 2_000_000,
        }
    }
}

/// Why a batch was not acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("the ingest queue is full")]
    QueueFull,
    #[error("the batch could not be stored; see the operator's log")]
    WriteFailed,
    #[error("no writer is running")]
    Unavailable,
}

/// A queued batch and where to send its acknowledgement.
pub struct Job {
    pub identity: DeviceIdentity,
    pub batch: ValidatedBatch,
    pub ack: oneshot::Sender<Result<BatchAck, SubmitError>>,
}

/// Handle to the ingest queue, the series cache and the latest device reports; cheap to clone.
#[derive(Clone)]
pub struct Ingest {
    inner: Arc<Inner>,
}

struct Inner {
    config: IngestConfig,
    tx: mpsc::Sender<Job>,
    rx: tokio::sync::Mutex<mpsc::Receiver<Job>>,
    series: RwLock<HashMap<SeriesKey, i64>>,
    reports: DeviceReports,
    committed: std::sync::OnceLock<CommitHook>,
}

/// Called with each newly stored batch after its commit (alert evaluation).
pub type CommitHook = Box<dyn Fn(&DeviceIdentity, &ValidatedBatch) + Send + Sync>;

impl Default for Ingest {
    fn default() -> Self {
        Self::new(IngestConfig::default())
    }
}

impl Ingest {
    pub fn new(config: IngestConfig) -> Self {
        let (tx, rx) = mpsc::channel(config.queue_capacity.max(1));
        Self {
            inner: Arc::new(Inner {
                config,
                tx,
                rx: tokio::sync::Mutex::new(rx),
                series: RwLock::default(),
                reports: DeviceReports::default(),
                committed: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Sets what runs after each new batch is committed (once; later calls are ignored).
    pub fn on_commit(&self, hook: CommitHook) {
        let _ = self.inner.committed.set(hook);
    }

    pub(crate) fn committed(&self, identity: &DeviceIdentity, batch: &ValidatedBatch) {
        if let Some(hook) = self.inner.committed.get() {
            hook(identity, batch);
        }
    }

    pub fn config(&self) -> &IngestConfig {
        &self.inner.config
    }

    /// Latest report per device, flushed into Device status by the jobs.
    pub fn reports(&self) -> &DeviceReports {
        &self.inner.reports
    }

    /// Batches waiting for a writer.
    pub fn queue_depth(&self) -> usize {
        self.inner.tx.max_capacity() - self.inner.tx.capacity()
    }

    /// Queues a validated batch of `identity` and waits until it is committed (or known to
    /// be a duplicate). Does not wait for room in the queue.
    pub async fn submit(
        &self,
        metrics: &IngestMetrics,
        identity: DeviceIdentity,
        batch: ValidatedBatch,
    ) -> Result<BatchAck, SubmitError> {
        let (ack, done) = oneshot::channel();
        match self.inner.tx.try_send(Job {
            identity,
            batch,
            ack,
        }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => return Err(SubmitError::QueueFull),
            Err(mpsc::error::TrySendError::Closed(_)) => return Err(SubmitError::Unavailable),
        }
        metrics.queue_depth.set(self.queue_depth() as i64);
        done.await.unwrap_or(Err(SubmitError::Unavailable))
    }

    fn cache_series(&self, entries: impl IntoIterator<Item = (SeriesKey, i64)>) {
        let mut cache = self
            .inner
            .series
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cache.len() >= self.inner.config.series_cache_capacity {
            cache.clear();
        }
        cache.extend(entries);
    }
}
