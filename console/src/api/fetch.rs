//! Background fetching with one state per panel.
//!
//! A [`Panel`] numbers its calls; an answer is applied only when it carries the number of
//! the panel's latest call, so a slow answer to an old range never overwrites the answer
//! to the range the user picked since (the older task is also aborted, to spare the
//! operator). The last good data stays visible while a newer call loads or after it fails.
use std::{
    collections::VecDeque,
    sync::{
        Arc, Mutex, OnceLock,
        mpsc::{self, Receiver, Sender},
    },
    time::Instant,
};

use serde::de::DeserializeOwned;

use super::{ApiError, Call, client::ApiClient};

/// URLs kept in the request log: a day of 10 s auto-refresh would otherwise keep 80,000.
const LOG_LEN: usize = 1000;

/// Runs calls on a tokio runtime of its own and wakes the UI when answers arrive.
pub struct Fetcher {
    /// Taken only by `Drop`.
    runtime: Option<tokio::runtime::Runtime>,
    client: ApiClient,
    /// Set on the first frame: the app exists before the UI context does (in tests too).
    repaint: Arc<OnceLock<egui::Context>>,
    /// The last [`LOG_LEN`] URLs asked for, oldest first (tests read them).
    log: Arc<Mutex<VecDeque<String>>>,
}

impl Fetcher {
    /// # Panics
    /// When the OS refuses a thread for the runtime.
    pub fn new(client: ApiClient) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("cdot-console-fetch")
            .enable_all()
            .build()
            .expect("start the fetch runtime");
        Self {
            runtime: Some(runtime),
            client,
            repaint: Arc::default(),
            log: Arc::default(),
        }
    }

    pub fn client(&self) -> &ApiClient {
        &self.client
    }

    /// Called every frame; only the first call stores the context.
    pub fn attach(&self, ctx: &egui::Context) {
        let _ = self.repaint.set(ctx.clone());
    }

    /// The URLs requested lately, oldest first.
    pub fn requested(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }

    fn spawn<T: DeserializeOwned + Send + 'static>(
        &self,
        id: u64,
        call: Call<T>,
        answers: Sender<(u64, Result<T, ApiError>)>,
    ) -> tokio::task::AbortHandle {
        {
            let mut log = self
                .log
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if log.len() == LOG_LEN {
                log.pop_front();
            }
            log.push_back(call.url.clone());
        }
        let client = self.client.clone();
        let repaint = self.repaint.clone();
        let task = async move {
            let answer = client.send(&call).await;
            // The panel may be gone (screen closed): nothing to tell then.
            let _ = answers.send((id, answer));
            if let Some(ctx) = repaint.get() {
                ctx.request_repaint();
            }
        };
        match &self.runtime {
            Some(runtime) => runtime.spawn(task).abort_handle(),
            // Unreachable: only `Drop` takes the runtime, and nothing spawns after it.
            None => unreachable!("the fetch runtime is gone"),
        }
    }
}

impl Drop for Fetcher {
    fn drop(&mut self) {
        // In-flight calls may wait on a dead operator for the whole timeout: do not join.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Where a panel's latest call is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// Nothing asked yet.
    Idle,
    Loading {
        since: Instant,
    },
    Ready {
        at: Instant,
    },
    Failed {
        error: ApiError,
        at: Instant,
    },
}

/// One panel's data and the state of its latest call.
pub struct Panel<T> {
    status: Status,
    data: Option<T>,
    latest: u64,
    task: Option<tokio::task::AbortHandle>,
    sender: Sender<(u64, Result<T, ApiError>)>,
    answers: Receiver<(u64, Result<T, ApiError>)>,
}

impl<T> Default for Panel<T> {
    fn default() -> Self {
        let (sender, answers) = mpsc::channel();
        Self {
            status: Status::Idle,
            data: None,
            latest: 0,
            task: None,
            sender,
            answers,
        }
    }
}

impl<T: DeserializeOwned + Send + 'static> Panel<T> {
    /// Sends `call`; whatever an earlier call answers from now on is dropped.
    pub fn request(&mut self, fetcher: &Fetcher, call: Call<T>) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
        self.latest += 1;
        self.status = Status::Loading {
            since: Instant::now(),
        };
        self.task = Some(fetcher.spawn(self.latest, call, self.sender.clone()));
    }

    /// Applies the answer of the latest call if it arrived, and says how it went (once).
    pub fn poll(&mut self) -> Option<Result<(), ApiError>> {
        let mut landed = None;
        while let Ok((id, answer)) = self.answers.try_recv() {
            if id != self.latest {
                continue;
            }
            self.task = None;
            let at = Instant::now();
            match answer {
                Ok(data) => {
                    self.data = Some(data);
                    self.status = Status::Ready { at };
                    landed = Some(Ok(()));
                }
                Err(error) => {
                    landed = Some(Err(error.clone()));
                    self.status = Status::Failed { error, at };
                }
            }
        }
        landed
    }
}

impl<T> Panel<T> {
    pub fn status(&self) -> &Status {
        &self.status
    }

    /// The latest good answer (possibly older than a failed or loading call).
    pub fn data(&self) -> Option<&T> {
        self.data.as_ref()
    }

    pub fn is_loading(&self) -> bool {
        matches!(self.status, Status::Loading { .. })
    }

    /// When the last answer (good or bad) arrived.
    pub fn answered_at(&self) -> Option<Instant> {
        match self.status {
            Status::Ready { at } | Status::Failed { at, .. } => Some(at),
            Status::Idle | Status::Loading { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A listener that accepts and never answers, so calls stay in flight.
    fn silent_operator() -> (std::net::TcpListener, String) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        (listener, base)
    }

    #[test]
    fn only_the_latest_call_lands() {
        let (_listener, base) = silent_operator();
        let fetcher = Fetcher::new(ApiClient::new(&base, None, Duration::from_secs(30), None));
        let mut panel: Panel<u32> = Panel::default();
        panel.request(&fetcher, Call::get(format!("{base}/first")));
        let first = panel.latest;
        panel.request(&fetcher, Call::get(format!("{base}/second")));
        // A late answer to the first call is ignored; the second one applies.
        panel.sender.send((first, Ok(1))).expect("send");
        assert_eq!(panel.poll(), None);
        assert!(panel.is_loading());
        assert_eq!(panel.data(), None);
        panel.sender.send((panel.latest, Ok(2))).expect("send");
        assert_eq!(panel.poll(), Some(Ok(())));
        assert_eq!(panel.data(), Some(&2));
        assert_eq!(
            fetcher.requested(),
            [format!("{base}/first"), format!("{base}/second")]
        );
    }

    #[test]
    fn a_dead_operator_is_a_connection_error_naming_the_url() {
        let base = format!("http://127.0.0.1:{}", cdot_testkit::free_port());
        let fetcher = Fetcher::new(ApiClient::new(&base, None, Duration::from_secs(5), None));
        let mut panel: Panel<u32> = Panel::default();
        panel.request(&fetcher, Call::get(format!("{base}/v1/alerts")));
        let deadline = Instant::now() + Duration::from_secs(10);
        let error = loop {
            if let Some(answer) = panel.poll() {
                break answer.expect_err("nothing listens");
            }
            assert!(Instant::now() < deadline, "no answer");
            std::thread::sleep(Duration::from_millis(10));
        };
        assert!(error.is_connection(), "{error:?}");
        assert!(error.to_string().contains(&base), "{error}");
    }
}
