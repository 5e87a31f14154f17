//! `cdot-operator standalone`: the whole control plane from a directory of YAML, no cluster.
//!
//! Start-up: database (given, or embedded) → migrations → HTTP API → first load of the
//! manifests → ready. Then every file-system event (debounced) and every resync interval
//! re-reads the manifests, applies a valid change set in one transaction (or refuses it
//! whole and keeps serving the last good state), and reconciles.
use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context;
use tokio::sync::watch;

use crate::{
    api::{AppState, TokenIndex},
    cli::StandaloneArgs,
    metrics::{Metrics, ResultLabels},
    reconcile,
    server::{self, Server},
    source::{
        directory::{self, ManifestFiles, ReadLimits},
        watch as fswatch,
    },
    store::Store,
};

/// Events closer together than this are one change (an editor's save, a `git checkout`).
const DEBOUNCE: Duration = Duration::from_millis(200);

pub async fn run(args: StandaloneArgs) -> anyhow::Result<()> {
    let shutdown = server::shutdown_signal();
    let metrics = Arc::new(Metrics::default());
    server::with_database(&args.serve.database, &metrics, |url| {
        serve(&args, url, metrics.clone(), shutdown)
    })
    .await
}

async fn serve(
    args: &StandaloneArgs,
    url: String,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let server = Server::start(&url, &args.serve, None, metrics).await?;
    let state = server.state.clone();

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
    let limits = ReadLimits {
        max_file_bytes: args.max_manifest_bytes,
    };
    let mut source = ManifestSource::new(
        dirs,
        limits,
        args.serve.server.system_namespace.clone(),
        &state.store,
    )
    .await?;
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
            () = state.changes.notified() => source.reconcile(&state).await,
        }
    }

    server.stop().await
}

/// The manifest directories and what was last seen of them.
struct ManifestSource {
    dirs: Vec<PathBuf>,
    limits: ReadLimits,
    system_namespace: String,
    last_fingerprint: Option<String>,
    /// Secrets and ConfigMaps live only in memory: after a restart on unchanged files they
    /// must still be read once, though there is nothing to apply.
    secrets_loaded: bool,
}

impl ManifestSource {
    async fn new(
        dirs: Vec<PathBuf>,
        limits: ReadLimits,
        system_namespace: String,
        store: &Store,
    ) -> anyhow::Result<Self> {
        let last_fingerprint = store.last_applied_fingerprint().await?;
        Ok(Self {
            dirs,
            limits,
            system_namespace,
            last_fingerprint,
            secrets_loaded: false,
        })
    }

    /// Reads the directories, applies a changed and valid set, then reconciles everything.
    #[tracing::instrument(name = "manifest_sync", skip_all)]
    async fn sync(&mut self, state: &AppState) {
        let (dirs, limits) = (self.dirs.clone(), self.limits);
        let files =
            match tokio::task::spawn_blocking(move || ManifestFiles::read(&dirs, limits)).await {
                Ok(files) => files,
                Err(e) => {
                    tracing::error!(error = %e, "manifest reader task failed");
                    return;
                }
            };
        let fingerprint = files.fingerprint();
        if self.last_fingerprint.as_deref() == Some(fingerprint.as_str()) {
            count(&state.metrics, "unchanged");
            if !self.secrets_loaded
                && let Ok(snapshot) = files.parse(&self.system_namespace)
            {
                state.secrets.replace(snapshot.secrets);
                state.config_maps.replace(snapshot.config_maps);
                self.secrets_loaded = true;
            }
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
        if let Err(e) = reconcile::run_pass(
            &state.store,
            &state.metrics,
            &state.index,
            &state.config_maps,
        )
        .await
        {
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
                    state.config_maps.replace(snapshot.config_maps);
                    self.secrets_loaded = true;
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
                // Bounded: the first errors, each quoting input as a short excerpt.
                let lines = directory::report_lines(&errors);
                for line in &lines {
                    tracing::error!("invalid manifest: {line}");
                }
                tracing::error!(
                    errors = errors.len(),
                    "change set refused; still serving the last applied state"
                );
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
