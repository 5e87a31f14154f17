//! What both modes serve: the database (given, or an embedded PostgreSQL), the agent CA,
//! the background jobs and the two HTTP listeners. Standalone and Kubernetes mode differ
//! only in where desired state comes from and where status goes.
use std::{future::Future, net::SocketAddr, path::Path, sync::Arc, time::Duration};

use anyhow::Context;
use axum_server::tls_rustls::RustlsConfig;
use tokio::{sync::watch, task::JoinHandle};

use crate::{
    api::{
        self, AppState,
        agent::AgentPki,
        rate_limit::{MAX_ADDRESSES, Rate, RateLimiter},
    },
    cli::{DatabaseArgs, ServeArgs, ServerArgs},
    ingest::Ingest,
    jobs,
    kubernetes::devices::ClusterDevices,
    metrics::Metrics,
    pki::Authority,
    store::{Store, embedded::EmbeddedPostgres},
};

/// A receiver that turns `true` on SIGTERM or Ctrl-C.
pub fn shutdown_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested");
        let _ = tx.send(true);
    });
    rx
}

/// Runs `serve` with the database URL of `args`, or with an embedded PostgreSQL started
/// for it, supervised (restarted if it dies) while `serve` runs, and stopped after it,
/// whatever it returned.
pub async fn with_database<F, Fut>(
    args: &DatabaseArgs,
    metrics: &Metrics,
    serve: F,
) -> anyhow::Result<()>
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    if let Some(url) = args.database_url.clone() {
        return serve(url).await;
    }
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(crate::store::embedded::default_data_dir);
    let bin_dir = args.postgres_bin_dir.clone();
    let pg =
        tokio::task::spawn_blocking(move || EmbeddedPostgres::start(&data_dir, bin_dir.as_deref()))
            .await?
            .context("failed to start the embedded PostgreSQL")?;
    let pg = Arc::new(pg);
    let (stop_supervisor, supervisor_stop) = watch::channel(false);
    let supervisor = tokio::spawn(crate::store::embedded::supervise(
        pg.clone(),
        metrics.database.embedded_restarts.clone(),
        supervisor_stop,
    ));
    let result = match pg.database_url().await {
        Ok(url) => serve(url).await,
        Err(e) => Err(anyhow::Error::new(e).context("failed to create the embedded database")),
    };
    let _ = stop_supervisor.send(true);
    let _ = supervisor.await;
    tokio::task::spawn_blocking(move || pg.stop())
        .await?
        .context("failed to stop the embedded PostgreSQL")?;
    result
}

/// The running API and jobs; [`Server::stop`] takes them down in order.
pub struct Server {
    pub state: AppState,
    servers: Vec<(axum_server::Handle<SocketAddr>, ServerTask)>,
    jobs: Vec<JoinHandle<()>>,
    jobs_stop: watch::Sender<bool>,
}

impl Server {
    /// Connects (running migrations), loads or creates the agent CA, prepares partitions,
    /// starts the jobs and both listeners. Not ready until the caller says so. `devices`:
    /// where enrollment creates Devices in Kubernetes mode.
    pub async fn start(
        url: &str,
        args: &ServeArgs,
        devices: Option<Arc<ClusterDevices>>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<Self> {
        let (server, database, timeseries) = (&args.server, &args.database, &args.timeseries);
        let store = Store::connect(url, database.database_max_connections).await?;
        let mut state = AppState::new(store.clone(), metrics.clone());
        state.devices = devices;
        let authority = Authority::load_or_create(&store)
            .await
            .context("failed to load the agent CA")?;
        let data_dir = database
            .data_dir
            .clone()
            .unwrap_or_else(crate::store::embedded::default_data_dir);
        publish_ca(&authority, &data_dir);
        let agent_tls = authority.agent_server_config(&server.agent_hostnames)?;
        state.pki = Some(Arc::new(AgentPki {
            authority,
            certificate_validity: server.agent_certificate_validity,
        }));
        state.ingest = Ingest::new(timeseries.ingest_config());
        let alerting = state.alerting.clone();
        let automation = state.automation.clone();
        let index = state.index.clone();
        state.ingest.on_commit(Box::new(move |identity, batch| {
            let service_failed = cdot_crds::metrics_catalog::Metric::ServiceFailed.name();
            let mut snapshot = None;
            for ((key, t), v) in batch.keys.iter().zip(&batch.times_ms).zip(&batch.values) {
                if key.metric == service_failed
                    && let Some(service) = key.labels.get("service")
                {
                    let snapshot = snapshot.get_or_insert_with(|| index.snapshot());
                    crate::automation::triggers::service_sample(
                        &automation,
                        snapshot,
                        identity.uid,
                        service,
                        *t,
                        *v,
                    );
                }
            }
            alerting.observe(
                identity.uid,
                batch
                    .keys
                    .iter()
                    .zip(&batch.times_ms)
                    .zip(&batch.values)
                    .map(|((key, t), v)| crate::alerting::engine::Sample {
                        metric: key.metric,
                        labels: &key.labels,
                        t_ms: *t,
                        value: *v,
                    }),
            );
        }));
        state.enroll_limiter = Arc::new(RateLimiter::new(
            (server.enroll_rate_limit > 0).then(|| Rate {
                burst: server.enroll_burst,
                interval: Duration::from_secs(60) / server.enroll_rate_limit,
            }),
            MAX_ADDRESSES,
        ));
        // What was applied or mirrored before this start: ingest and alerting read the
        // index from the first request on, before the first sync or watch event.
        state.index.replace(
            &store
                .all_objects()
                .await
                .context("failed to load the stored desired state")?,
        );
        jobs::prepare(&store, &metrics, timeseries)
            .await
            .context("failed to prepare the metrics partitions")?;
        let (jobs_stop, jobs_shutdown) = watch::channel(false);
        let mut jobs = jobs::spawn(&state, timeseries, jobs_shutdown.clone());
        let notifier = notifier(&args.alerting)?;
        jobs.extend(state.alerting.spawn(
            &store,
            &metrics,
            &state.changes,
            &args.alerting,
            crate::alerting::dispatch::Outlets {
                notifier: notifier.clone(),
                secrets: state.secrets.clone(),
                ready: state.ready.clone(),
            },
            jobs_shutdown.clone(),
        ));
        jobs.push(state.patching.spawn(
            store.clone(),
            state.index.clone(),
            state.work.clone(),
            state.changes.clone(),
            metrics.patching.clone(),
            state.ready.clone(),
            jobs_shutdown.clone(),
        ));
        state
            .alerting
            .on_transition(crate::automation::triggers::alert_hook(
                state.automation.clone(),
                state.index.clone(),
            ));
        jobs.push(state.automation.spawn(
            store.clone(),
            state.index.clone(),
            state.config_maps.clone(),
            state.work.clone(),
            state.changes.clone(),
            crate::automation::deliver::Deliver {
                notifier: notifier.clone(),
                secrets: state.secrets.clone(),
                index: state.index.clone(),
            },
            metrics.automation.clone(),
            state.ready.clone(),
            jobs_shutdown.clone(),
        ));
        jobs.push(tokio::spawn(crate::automation::audit::retain(
            store.clone(),
            metrics.clone(),
            args.audit_retention,
            jobs_shutdown.clone(),
        )));
        jobs.push(tokio::spawn(crate::automation::store::retain(
            store.clone(),
            metrics.clone(),
            args.workflow_run_retention,
            jobs_shutdown.clone(),
        )));
        jobs.push(state.discovery.spawn(
            store.clone(),
            state.index.clone(),
            state.secrets.clone(),
            state.devices.clone(),
            state.changes.clone(),
            args.discovery.clone(),
            state.ready.clone(),
            jobs_shutdown,
        ));
        let servers = start_servers(server, state.clone(), agent_tls).await?;
        Ok(Self {
            state,
            servers,
            jobs,
            jobs_stop,
        })
    }

    /// Stops taking requests, lets the writers commit what is queued, closes the pool.
    pub async fn stop(self) -> anyhow::Result<()> {
        for (handle, _) in &self.servers {
            handle.graceful_shutdown(Some(Duration::from_secs(10)));
        }
        for (_, task) in self.servers {
            task.await.context("HTTP server task failed")??;
        }
        let _ = self.jobs_stop.send(true);
        for job in self.jobs {
            let _ = job.await;
        }
        self.state.store.pool().close().await;
        tracing::info!("stopped");
        Ok(())
    }
}

type ServerTask = tokio::task::JoinHandle<std::io::Result<()>>;

/// The people API (`--listen`, HTTP or HTTPS) and the agent API (`--agent-listen`, HTTPS
/// with optional client certificates) serve the same routes; identities decide access.
/// Both pass the peer address on (the enrollment rate limit counts by it).
async fn start_servers(
    args: &ServerArgs,
    state: AppState,
    agent_tls: Arc<rustls::ServerConfig>,
) -> anyhow::Result<Vec<(axum_server::Handle<SocketAddr>, ServerTask)>> {
    let app = api::app(state, args.request_timeout);
    let bind = |address: SocketAddr| -> anyhow::Result<std::net::TcpListener> {
        let listener = std::net::TcpListener::bind(address)
            .with_context(|| format!("failed to listen on {address}"))?;
        listener.set_nonblocking(true)?;
        Ok(listener)
    };

    let listener = bind(args.listen)?;
    let address = listener.local_addr()?;
    let handle = axum_server::Handle::new();
    let people = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let config = RustlsConfig::from_pem_file(cert, key)
                .await
                .with_context(|| {
                    format!(
                        "failed to load TLS certificate {} and key {}",
                        cert.display(),
                        key.display()
                    )
                })?;
            let server = axum_server::from_tcp_rustls(listener, config)?.handle(handle.clone());
            println!("cdot-operator: API listening on https://{address}");
            tokio::spawn(
                server.serve(
                    app.clone()
                        .into_make_service_with_connect_info::<SocketAddr>(),
                ),
            )
        }
        _ => {
            let server = axum_server::from_tcp(listener)?.handle(handle.clone());
            println!("cdot-operator: API listening on http://{address}");
            tokio::spawn(
                server.serve(
                    app.clone()
                        .into_make_service_with_connect_info::<SocketAddr>(),
                ),
            )
        }
    };
    tracing::info!(%address, tls = args.tls_cert.is_some(), "API listening");

    let agent_listener = bind(args.agent_listen)?;
    let agent_address = agent_listener.local_addr()?;
    let agent_handle = axum_server::Handle::new();
    let server =
        axum_server::from_tcp_rustls(agent_listener, RustlsConfig::from_config(agent_tls))?
            .handle(agent_handle.clone());
    let agents =
        tokio::spawn(server.serve(app.into_make_service_with_connect_info::<SocketAddr>()));
    println!("cdot-operator: agent API listening on https://{agent_address}");
    tracing::info!(address = %agent_address, "agent API listening");
    Ok(vec![(handle, people), (agent_handle, agents)])
}

/// The notification sender, trusting `--notify-ca-file` besides the system roots.
fn notifier(args: &crate::alerting::AlertingArgs) -> anyhow::Result<crate::notify::Notifier> {
    let extra_roots_pem = match &args.notify_ca_file {
        Some(path) => Some(
            std::fs::read(path)
                .with_context(|| format!("failed to read --notify-ca-file {}", path.display()))?,
        ),
        None => None,
    };
    crate::notify::Notifier::new(crate::notify::NotifierConfig {
        extra_roots_pem,
        user_agent: format!("cdot-rmm/{}", env!("CARGO_PKG_VERSION")),
    })
    .context("failed to set up notification delivery")
}

/// Logs the CA fingerprint agents pin and leaves the CA certificate (public) in the data
/// directory for local agents.
fn publish_ca(authority: &Authority, dir: &Path) {
    let fingerprint = authority.fingerprint();
    println!("cdot-operator: agent CA fingerprint {fingerprint}");
    tracing::info!(%fingerprint, "agent certificate authority");
    let path = dir.join("agent-ca.crt");
    match std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&path, authority.ca_pem())) {
        Ok(()) => tracing::info!(path = %path.display(), "wrote the agent CA certificate"),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "could not write the agent CA certificate")
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        let _ = tokio::signal::ctrl_c().await;
        return;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
