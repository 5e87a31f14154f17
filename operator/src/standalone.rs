//! `cdot-operator standalone`: the whole control plane from a directory of YAML, no cluster.
//!
//! Start-up: database (given, or embedded) → migrations → HTTP API → first load of the
//! manifests → ready. Then every file-system event (debounced) and every resync interval
//! re-reads the manifests, applies a valid change set in one transaction (or refuses it
//! whole and keeps serving the last good state), and reconciles.
use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context;
use axum_server::tls_rustls::RustlsConfig;
use tokio::sync::watch;

use crate::{
    api::agent::AgentPki,
    api::{self, AppState, TokenIndex},
    cli::{ServerArgs, StandaloneArgs},
    ingest::Ingest,
    jobs,
    metrics::{Metrics, ResultLabels},
    pki::Authority,
    reconcile,
    source::{directory::ManifestFiles, watch as fswatch},
    store::{Store, embedded::EmbeddedPostgres},
};

/// Events closer together than this are one change (an editor's save, a `git checkout`).
const DEBOUNCE: Duration = Duration::from_millis(200);

pub async fn run(args: StandaloneArgs) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let (shutdown_tx, shutdown) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested");
        let _ = shutdown_tx.send(true);
    });

    let (embedded, url) = match args.database.database_url.clone() {
        Some(url) => (None, url),
        None => {
            let data_dir = args
                .database
                .data_dir
                .clone()
                .unwrap_or_else(crate::store::embedded::default_data_dir);
            let bin_dir = args.database.postgres_bin_dir.clone();
            let pg = tokio::task::spawn_blocking(move || {
                EmbeddedPostgres::start(&data_dir, bin_dir.as_deref())
            })
            .await?
            .context("failed to start the embedded PostgreSQL")?;
            let url = pg
                .database_url()
                .await
                .context("failed to create the embedded database")?;
            (Some(pg), url)
        }
    };

    let result = serve(&args, &url, shutdown).await;

    if let Some(pg) = embedded {
        tokio::task::spawn_blocking(move || pg.stop())
            .await?
            .context("failed to stop the embedded PostgreSQL")?;
    }
    result
}

async fn serve(
    args: &StandaloneArgs,
    url: &str,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let store = Store::connect(url, args.database.database_max_connections).await?;
    let metrics = Arc::new(Metrics::default());
    let mut state = AppState::new(store.clone(), metrics.clone());
    let authority = Authority::load_or_create(&store)
        .await
        .context("failed to load the agent CA")?;
    publish_ca(&authority, args);
    let agent_tls = authority.agent_server_config(&args.server.agent_hostnames)?;
    state.pki = Some(Arc::new(AgentPki {
        authority,
        certificate_validity: args.server.agent_certificate_validity,
    }));
    state.ingest = Ingest::new(args.timeseries.ingest_config());
    jobs::prepare(&store, &metrics, &args.timeseries)
        .await
        .context("failed to prepare the metrics partitions")?;
    let (jobs_stop, jobs_shutdown) = watch::channel(false);
    let jobs = jobs::spawn(&state, &args.timeseries, jobs_shutdown);
    let servers = start_servers(&args.server, state.clone(), agent_tls).await?;

    let dirs = args.manifests.clone();
    for dir in &dirs {
        anyhow::ensure!(
            dir.is_dir(),
            "manifest directory {} does not exist or is not a directory",
            dir.display()
        );
    }
    let (_watch, mut changes) =
        fswatch::watch(&dirs).context("failed to watch the manifest directories")?;
    let mut source =
        ManifestSource::new(dirs, args.server.system_namespace.clone(), &store).await?;
    source.sync(&state).await;
    state.set_ready();
    tracing::info!("ready");

    let mut resync = tokio::time::interval(args.resync_interval);
    resync.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            Some(()) = changes.recv() => {
                // Let the burst settle, then take whatever arrived during the wait with it.
                tokio::time::sleep(DEBOUNCE).await;
                while changes.try_recv().is_ok() {}
                source.sync(&state).await;
            }
            _ = resync.tick() => source.sync(&state).await,
            () = state.reconcile_soon.notified() => source.reconcile(&state).await,
        }
    }

    for (handle, _) in &servers {
        handle.graceful_shutdown(Some(Duration::from_secs(10)));
    }
    for (_, task) in servers {
        task.await.context("HTTP server task failed")??;
    }
    // Requests are done: the writers commit what is queued, the flusher writes last reports.
    let _ = jobs_stop.send(true);
    for job in jobs {
        let _ = job.await;
    }
    store.pool().close().await;
    tracing::info!("stopped");
    Ok(())
}

type ServerTask = tokio::task::JoinHandle<std::io::Result<()>>;

/// The people API (`--listen`, HTTP or HTTPS) and the agent API (`--agent-listen`, HTTPS
/// with optional client certificates) serve the same routes; identities decide access.
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
            tokio::spawn(server.serve(app.clone().into_make_service()))
        }
        _ => {
            let server = axum_server::from_tcp(listener)?.handle(handle.clone());
            println!("cdot-operator: API listening on http://{address}");
            tokio::spawn(server.serve(app.clone().into_make_service()))
        }
    };
    tracing::info!(%address, tls = args.tls_cert.is_some(), "API listening");

    let agent_listener = bind(args.agent_listen)?;
    let agent_address = agent_listener.local_addr()?;
    let agent_handle = axum_server::Handle::new();
    let server =
        axum_server::from_tcp_rustls(agent_listener, RustlsConfig::from_config(agent_tls))?
            .handle(agent_handle.clone());
    let agents = tokio::spawn(server.serve(app.into_make_service()));
    println!("cdot-operator: agent API listening on https://{agent_address}");
    tracing::info!(address = %agent_address, "agent API listening");
    Ok(vec![(handle, people), (agent_handle, agents)])
}

/// Logs the CA fingerprint agents pin and leaves the CA certificate (public) in the data
/// directory for local agents.
fn publish_ca(authority: &Authority, args: &StandaloneArgs) {
    let fingerprint = authority.fingerprint();
    println!("cdot-operator: agent CA fingerprint {fingerprint}");
    tracing::info!(%fingerprint, "agent certificate authority");
    let dir = args
        .database
        .data_dir
        .clone()
        .unwrap_or_else(crate::store::embedded::default_data_dir);
    let path = dir.join("agent-ca.crt");
    match std::fs::create_dir_all(&dir).and_then(|()| std::fs::write(&path, authority.ca_pem())) {
        Ok(()) => tracing::info!(path = %path.display(), "wrote the agent CA certificate"),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "could not write the agent CA certificate")
        }
    }
}

/// The manifest directories and what was last seen of them.
struct ManifestSource {
    dirs: Vec<PathBuf>,
    system_namespace: String,
    last_fingerprint: Option<String>,
}

impl ManifestSource {
    async fn new(
        dirs: Vec<PathBuf>,
        system_namespace: String,
        store: &Store,
    ) -> anyhow::Result<Self> {
        let last_fingerprint = store.last_applied_fingerprint().await?;
        Ok(Self {
            dirs,
            system_namespace,
            last_fingerprint,
        })
    }

    /// Reads the directories, applies a changed and valid set, then reconciles everything.
    #[tracing::instrument(name = "manifest_sync", skip_all)]
    async fn sync(&mut self, state: &AppState) {
        let dirs = self.dirs.clone();
        let files = match tokio::task::spawn_blocking(move || ManifestFiles::read(&dirs)).await {
            Ok(files) => files,
            Err(e) => {
                tracing::error!(error = %e, "manifest reader task failed");
                return;
            }
        };
        let fingerprint = files.fingerprint();
        if self.last_fingerprint.as_deref() == Some(fingerprint.as_str()) {
            count(&state.metrics, "unchanged");
        } else {
            self.apply(files, fingerprint, state).await;
        }
        match state.store.api_tokens().await {
            Ok(tokens) => state.replace_tokens(TokenIndex::new(&tokens)),
            Err(e) => tracing::error!(error = %e, "failed to load API tokens"),
        }
        self.reconcile(state).await;
    }

    async fn reconcile(&self, state: &AppState) {
        if let Err(e) = reconcile::run_pass(&state.store, &state.metrics).await {
            state
                .metrics
                .store_errors
                .get_or_create(&crate::metrics::OperationLabels {
                    operation: e.metric_label().into(),
                })
                .inc();
            tracing::error!(error = %e, "reconcile pass failed; retrying at the next sync");
        }
    }

    async fn apply(&mut self, files: ManifestFiles, fingerprint: String, state: &AppState) {
        match files.parse(&self.system_namespace) {
            Ok(snapshot) => match state
                .store
                .apply_manifests(
                    &snapshot.objects,
                    &snapshot.tokens,
                    &snapshot.enrollment_tokens,
                    &fingerprint,
                )
                .await
            {
                Ok(summary) => {
                    self.last_fingerprint = Some(fingerprint);
                    state.secrets.replace(snapshot.secrets);
                    state.metrics.manifest_errors.set(0);
                    count(&state.metrics, "applied");
                    tracing::info!(
                        objects = snapshot.objects.len(),
                        tokens = snapshot.tokens.len(),
                        created = summary.created,
                        updated = summary.updated,
                        deleted = summary.deleted,
                        "manifests applied"
                    );
                }
                Err(e) => {
                    // Not remembered as seen: the next sync tries again.
                    count(&state.metrics, "failed");
                    tracing::error!(error = %e, "failed to store the manifests; retrying at the next sync");
                }
            },
            Err(errors) => {
                self.last_fingerprint = Some(fingerprint.clone());
                state.metrics.manifest_errors.set(errors.len() as i64);
                count(&state.metrics, "refused");
                for error in &errors {
                    tracing::error!("invalid manifest: {error}");
                }
                tracing::error!(
                    errors = errors.len(),
                    "change set refused; still serving the last applied state"
                );
                let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
                if let Err(e) = state
                    .store
                    .record_refused_manifests(&fingerprint, &lines)
                    .await
                {
                    tracing::warn!(error = %e, "failed to record the refused change set");
                }
            }
        }
    }
}

fn count(metrics: &Metrics, result: &str) {
    metrics
        .manifest_loads
        .get_or_create(&ResultLabels {
            result: result.to_owned(),
        })
        .inc();
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
