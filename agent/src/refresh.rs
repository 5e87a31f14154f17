//! What the agent and the collector keep fresh from the operator, each in a task of its own
//! so that a stuck request holds up nothing else: the client certificate ([`Renewer`]) and
//! what they fetch on a schedule ([`fetch_every`]: the agent its configuration, the
//! collector its assignments). Both take the current client from a watch channel, which the
//! renewer publishes to.
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::{
    client::AgentClient,
    enroll::{self, Renewal},
    service::unless_stopped,
    state::{Credentials, StatePaths},
};

/// Renews the client certificate when due and publishes the client built from the new one,
/// which the other tasks take for their next request.
#[derive(Debug)]
pub struct Renewer {
    /// Where key and certificate are replaced.
    pub paths: StatePaths,
    /// The current credentials.
    pub creds: Credentials,
    /// Where the renewed client is published.
    pub client: watch::Sender<AgentClient>,
    /// Timeout of the renewed client's requests.
    pub request_timeout: Duration,
    /// Pause between checks (shorter after a failed renewal: [`Renewal::next_check`]).
    pub check_interval: Duration,
}

impl Renewer {
    /// Runs until `stop` turns true (or its sender is gone), calling `on_renewed` once the
    /// renewed client is published.
    pub async fn run(mut self, mut stop: watch::Receiver<bool>, mut on_renewed: impl FnMut()) {
        let mut client = self.client.borrow().clone();
        loop {
            let renew = enroll::renew_if_due(
                &self.paths,
                &mut self.creds,
                &mut client,
                self.request_timeout,
            );
            let Some(renewal) = unless_stopped(&mut stop, renew).await else {
                return;
            };
            if renewal == Renewal::Renewed {
                self.client.send_replace(client.clone());
                on_renewed();
            }
            let wait = renewal.next_check(self.check_interval);
            if unless_stopped(&mut stop, tokio::time::sleep(wait))
                .await
                .is_none()
            {
                return;
            }
        }
    }
}

/// Fetches `GET /v1/agent/{route}` at once and then every `every` until `stop` turns true
/// (or its sender is gone), each time with the client current then, and hands each answer
/// to `on_fetched`. A failed fetch is logged (naming `what`) and the last answer stays in
/// force until the next one.
pub async fn fetch_every<T: DeserializeOwned>(
    client: watch::Receiver<AgentClient>,
    route: &'static str,
    what: &'static str,
    every: Duration,
    mut stop: watch::Receiver<bool>,
    mut on_fetched: impl FnMut(T),
) {
    loop {
        let current = client.borrow().clone();
        let Some(fetched) = unless_stopped(&mut stop, current.get_json::<T>(route)).await else {
            return;
        };
        match fetched {
            Ok(answer) => on_fetched(answer),
            Err(e) => {
                tracing::warn!(route, error = %e, "failed to fetch {what}; keeping the last fetched")
            }
        }
        if unless_stopped(&mut stop, tokio::time::sleep(every))
            .await
            .is_none()
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    };

    use axum::{Json, Router, extract::State, http::StatusCode, routing::get};

    use super::*;
    use crate::{client::ClientAuth, testing::ScriptedOperator};

    /// The first fetch fails (500), the later ones answer 1, 2, ...: the failure is outlived,
    /// each answer is handed over, and the task ends on the stop signal.
    #[tokio::test(flavor = "current_thread")]
    async fn fetches_on_schedule_through_a_failure_until_stopped() {
        let calls = Arc::new(AtomicU64::new(0));
        let app = Router::new()
            .route(
                "/v1/agent/numbers",
                get(|State(calls): State<Arc<AtomicU64>>| async move {
                    match calls.fetch_add(1, Ordering::SeqCst) {
                        0 => Err(StatusCode::INTERNAL_SERVER_ERROR),
                        n => Ok(Json(n)),
                    }
                }),
            )
            .with_state(calls.clone());
        let operator = ScriptedOperator::start(app).await;
        let client = AgentClient::new(
            &operator.url(),
            &operator.cert.pem,
            ClientAuth::None,
            Duration::from_secs(5),
        )
        .expect("client");
        let (_client_tx, client_rx) = watch::channel(client);
        let (stop_tx, stop) = watch::channel(false);
        let fetched = Arc::new(Mutex::new(Vec::new()));
        let seen = fetched.clone();
        let task = tokio::spawn(fetch_every(
            client_rx,
            "numbers",
            "numbers",
            Duration::from_millis(20),
            stop,
            move |n: u64| seen.lock().expect("lock").push(n),
        ));
        crate::testing::wait_for("two answers", Duration::from_secs(10), || {
            fetched.lock().expect("lock").len() >= 2
        })
        .await;
        stop_tx.send_replace(true);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("stops promptly")
            .expect("task");
        assert_eq!(fetched.lock().expect("lock")[..2], [1, 2]);
    }
}
