//! One OS thread at the lowest scheduling priority for CPU-heavy background work (the
//! rollup fold: millions of values a minute at 10,000 agents).
//!
//! On a blocking thread at normal priority the fold still took a whole core for about a
//! second each minute, and on a 2-core machine the ingest writers felt it: the 10-second
//! window holding the fold had p99 0.9-1.4 s against 30-250 ms in the others. At nice 19
//! the kernel gives the fold what the writers leave; it takes longer only when they are
//! busy.
use std::sync::{OnceLock, mpsc};

type Job = Box<dyn FnOnce() + Send>;

static QUEUE: OnceLock<mpsc::Sender<Job>> = OnceLock::new();

/// Nice value of the background thread (the lowest priority).
const NICE: i32 = 19;

/// The background thread is gone (it never exits while the process lives; a panic in a job
/// ends it).
#[derive(Debug, thiserror::Error)]
#[error("the background worker thread stopped")]
pub struct Stopped;

/// Runs `job` on the background thread and waits for its result without blocking the
/// async worker.
pub async fn run<T: Send + 'static>(
    job: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Stopped> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    queue()
        .send(Box::new(move || {
            let _ = tx.send(job());
        }))
        .map_err(|_| Stopped)?;
    rx.await.map_err(|_| Stopped)
}

fn queue() -> &'static mpsc::Sender<Job> {
    QUEUE.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let spawned = std::thread::Builder::new()
            .name("cdot-background".into())
            .spawn(move || {
                lower_priority();
                for job in rx {
                    job();
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the background worker thread");
        }
        tx
    })
}

/// On Linux `setpriority(PRIO_PROCESS, tid)` sets one thread's nice value.
fn lower_priority() {
    let tid = rustix::thread::gettid();
    if let Err(e) = rustix::process::setpriority_process(Some(tid), NICE) {
        tracing::warn!(error = %e, "cannot lower the background thread's priority; it runs at normal priority");
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn jobs_run_in_order_at_the_lowest_priority() {
        let first = super::run(|| 1).await.expect("runs");
        let nice =
            super::run(|| rustix::process::getpriority_process(Some(rustix::thread::gettid())))
                .await
                .expect("runs")
                .expect("getpriority");
        assert_eq!((first, nice), (1, super::NICE));
    }
}
