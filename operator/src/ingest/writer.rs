//! Writer tasks: take every queued batch (up to a sample cap), commit them together, ack.
use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Instant,
};

use cdot_crds::wire::BatchAck;
use tokio::sync::watch;

use super::{Ingest, Job, SubmitError};
use crate::{
    metrics::{IngestMetrics, Metrics, ResultLabels},
    store::{
        Store, StoreError,
        timeseries::{BatchRows, LATE_SAMPLE_MS, SeriesKey},
    },
};

/// One writer task: runs until `shutdown` turns true (or its sender is dropped), then
/// writes what is still queued and returns. Start [`IngestConfig::writers`] of them.
///
/// [`IngestConfig::writers`]: super::IngestConfig::writers
pub async fn run(
    ingest: Ingest,
    store: Store,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    while let Some(group) = next_group(&ingest, &mut shutdown).await {
        metrics.ingest.queue_depth.set(ingest.queue_depth() as i64);
        write_group(&ingest, &store, &metrics.ingest, group).await;
    }
    tracing::debug!("ingest writer stopped");
}

/// Waits for one job, then takes whatever else is queued, up to the group's sample cap.
async fn next_group(ingest: &Ingest, shutdown: &mut watch::Receiver<bool>) -> Option<Vec<Job>> {
    // While one writer waits for the queue, the others wait for it; on shutdown a writer
    // that cannot get the queue at once leaves the draining to the one that has it.
    let mut rx = tokio::select! {
        rx = ingest.inner.rx.lock() => rx,
        () = stopped(shutdown) => ingest.inner.rx.try_lock().ok()?,
    };
    let first = if *shutdown.borrow() {
        rx.try_recv().ok()?
    } else {
        tokio::select! {
            job = rx.recv() => job?,
            () = stopped(shutdown) => rx.try_recv().ok()?,
        }
    };
    let max = ingest.config().max_group_samples;
    let mut samples = first.batch.len();
    let mut group = vec![first];
    while samples < max {
        match rx.try_recv() {
            Ok(job) => {
                samples += job.batch.len();
                group.push(job);
            }
            Err(_) => break,
        }
    }
    Some(group)
}

/// Returns once shutdown is requested or its sender is gone.
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Commits a group and acknowledges each of its requests. When the group transaction fails,
/// each batch is tried alone, so that one bad batch cannot fail its neighbours.
pub async fn write_group(ingest: &Ingest, store: &Store, metrics: &IngestMetrics, jobs: Vec<Job>) {
    let start = Instant::now();
    match commit(ingest, store, &jobs).await {
        Ok(acks) => {
            metrics
                .commit_duration
                .observe(start.elapsed().as_secs_f64());
            metrics.group_batches.observe(jobs.len() as f64);
            for (job, ack) in jobs.into_iter().zip(acks) {
                acknowledge_then_evaluate(ingest, metrics, job, ack);
            }
        }
        Err(error) => {
            metrics.write_errors.inc();
            tracing::error!(%error, batches = jobs.len(), "failed to store a group of metrics batches");
            // Down (or one batch alone): retrying batch by batch would only wait longer.
            if jobs.len() == 1 || !store.is_up() {
                for job in jobs {
                    acknowledge(metrics, job.ack, Err(SubmitError::WriteFailed));
                }
                return;
            }
            for job in jobs {
                if !store.is_up() {
                    acknowledge(metrics, job.ack, Err(SubmitError::WriteFailed));
                    continue;
                }
                let result = commit(ingest, store, std::slice::from_ref(&job)).await;
                match result {
                    Ok(mut acks) => match acks.pop() {
                        Some(ack) => acknowledge_then_evaluate(ingest, metrics, job, ack),
                        None => acknowledge(metrics, job.ack, Err(SubmitError::WriteFailed)),
                    },
                    Err(error) => {
                        metrics.write_errors.inc();
                        tracing::error!(
                            %error,
                            batch = %job.batch.batch_id,
                            namespace = %job.identity.namespace,
                            device = %job.identity.name,
                            "failed to store metrics batch"
                        );
                        acknowledge(metrics, job.ack, Err(SubmitError::WriteFailed));
                    }
                }
            }
        }
    }
}

/// The agent hears first; then a new (not duplicate) batch goes to the commit hook, so a
/// breach is evaluated on the batch that carries it without adding to the ack's latency.
fn acknowledge_then_evaluate(ingest: &Ingest, metrics: &IngestMetrics, job: Job, ack: BatchAck) {
    let new = !ack.duplicate;
    let Job {
        identity,
        batch,
        ack: reply,
    } = job;
    acknowledge(metrics, reply, Ok(ack));
    if new {
        ingest.committed(&identity, &batch);
    }
}

fn acknowledge(
    metrics: &IngestMetrics,
    reply: tokio::sync::oneshot::Sender<Result<BatchAck, SubmitError>>,
    result: Result<BatchAck, SubmitError>,
) {
    if let Ok(ack) = &result {
        let label = if ack.duplicate { "duplicate" } else { "stored" };
        metrics
            .batches
            .get_or_create(&ResultLabels {
                result: label.into(),
            })
            .inc();
        metrics.samples.inc_by(u64::from(ack.stored));
    }
    // The requester may have gone (timeout); the batch is stored either way.
    let _ = reply.send(result);
}

/// Resolves series ids (cache first) and writes the group in one transaction.
async fn commit(ingest: &Ingest, store: &Store, jobs: &[Job]) -> Result<Vec<BatchAck>, StoreError> {
    let now = jiff::Timestamp::now().as_millisecond();
    let retention_ms = i64::try_from(ingest.config().raw_retention.as_millis()).unwrap_or(i64::MAX);
    let oldest = now.saturating_sub(retention_ms);

    let missing: Vec<SeriesKey> = {
        let cache = ingest
            .inner
            .series
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut seen = HashSet::new();
        jobs.iter()
            .flat_map(|j| j.batch.keys.iter().zip(&j.batch.times_ms))
            .filter(|(key, t)| **t >= oldest && !cache.contains_key(*key) && seen.insert(*key))
            .map(|(key, _)| key.clone())
            .collect()
    };
    let mut resolved: HashMap<SeriesKey, i64> = HashMap::new();
    if !missing.is_empty() {
        let ids = store.resolve_series(&missing).await?;
        resolved = missing.into_iter().zip(ids).collect();
        ingest.cache_series(resolved.iter().map(|(k, v)| (k.clone(), *v)));
    }

    let mut rows: Vec<(Vec<i64>, Vec<i64>, Vec<f64>)> = Vec::with_capacity(jobs.len());
    {
        let cache = ingest
            .inner
            .series
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for job in jobs {
            let b = &job.batch;
            let mut series = Vec::with_capacity(b.len());
            let mut times = Vec::with_capacity(b.len());
            let mut values = Vec::with_capacity(b.len());
            for ((key, t), v) in b.keys.iter().zip(&b.times_ms).zip(&b.values) {
                if *t < oldest {
                    continue;
                }
                let id = cache
                    .get(key)
                    .or_else(|| resolved.get(key))
                    .copied()
                    .ok_or(StoreError::Query {
                        operation: "resolve metric series",
                        source: sqlx::Error::RowNotFound,
                    })?;
                series.push(id);
                times.push(*t);
                values.push(*v);
            }
            rows.push((series, times, values));
        }
    }
    let batches: Vec<BatchRows<'_>> = jobs
        .iter()
        .zip(&rows)
        .map(|(job, (series, times, values))| BatchRows {
            device_uid: job.identity.uid,
            batch_id: job.batch.batch_id,
            series_ids: series,
            times_ms: times,
            values,
        })
        .collect();
    let new = store.write_batches(&batches, now - LATE_SAMPLE_MS).await?;
    Ok(batches
        .iter()
        .zip(new)
        .map(|(b, new)| BatchAck {
            batch_id: b.batch_id,
            stored: if new {
                u32::try_from(b.values.len()).unwrap_or(u32::MAX)
            } else {
                0
            },
            duplicate: !new,
        })
        .collect())
}
