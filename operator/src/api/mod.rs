//! The operator's HTTP API: `fn app(state) -> Router`, so tests can call it without a socket.
use std::{
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{
    Router,
    extract::{MatchedPath, Request, State},
    http::StatusCode,
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use tower_http::{timeout::TimeoutLayer, trace::TraceLayer};

use crate::{metrics::Metrics, store::Store};

pub mod agent;
pub mod agent_auth;
pub mod assignments;
pub mod auth;
pub mod body;
pub mod body_limit;
pub mod collector;
pub mod error;
pub mod health;
pub mod identity;
pub mod ingest;
pub mod network;
pub mod objects;
pub mod openapi;
pub mod params;
pub mod points;
pub mod query;
pub mod rate_limit;

pub use auth::TokenIndex;
pub use error::ApiError;

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub tokens: Arc<RwLock<TokenIndex>>,
    /// False until migrations ran and the first desired state was loaded.
    pub ready: Arc<AtomicBool>,
    /// The index version when the first desired state was loaded; `/readyz` waits until
    /// alert rules from it are installed, so no sample after "ready" misses a rule.
    pub ready_version: Arc<std::sync::atomic::AtomicU64>,
    /// The CA for agent enrollment; `None` where enrollment is not served.
    pub pki: Option<Arc<agent::AgentPki>>,
    pub agents: Arc<agent_auth::AgentCache>,
    /// Tells the control loop which objects to reconcile soon (e.g. after an enrollment).
    pub changes: crate::changes::Changes,
    /// The metrics ingest queue and the latest agent reports (see `crate::ingest`).
    pub ingest: crate::ingest::Ingest,
    /// Secrets resources refer to (SNMP credentials), from the desired state.
    pub secrets: Arc<crate::secrets::Secrets>,
    /// ConfigMaps resources refer to (RunScript steps' scripts), from the desired state.
    pub config_maps: Arc<crate::config_maps::ConfigMaps>,
    /// Kubernetes mode: enrollment creates Devices through the API server.
    pub devices: Option<Arc<crate::kubernetes::devices::ClusterDevices>>,
    /// Enrollment attempts per source address (no limit unless set).
    pub enroll_limiter: Arc<rate_limit::RateLimiter>,
    /// Desired state in memory (see `crate::index`).
    pub index: crate::index::Index,
    /// Alert evaluation and notification (see `crate::alerting`).
    pub alerting: crate::alerting::Alerting,
    /// Network discovery (see `crate::discovery`): woken when a report arrives.
    pub discovery: crate::discovery::Discovery,
    /// The agent work channel's waiters (see `crate::work`).
    pub work: crate::work::Work,
    /// The patching engine (see `crate::patching`): woken by scans and reports.
    pub patching: crate::patching::Patching,
    /// Workflow runs (see `crate::automation`): told of events, woken by step reports.
    pub automation: crate::automation::Automation,
}

impl AppState {
    pub fn new(store: Store, metrics: Arc<Metrics>) -> Self {
        let index = crate::index::Index::default();
        Self {
            alerting: crate::alerting::Alerting::new(index.clone(), metrics.alerting.clone()),
            store,
            metrics,
            tokens: Arc::default(),
            ready: Arc::default(),
            ready_version: Arc::default(),
            pki: None,
            agents: Arc::default(),
            changes: crate::changes::Changes::default(),
            ingest: crate::ingest::Ingest::default(),
            secrets: Arc::default(),
            config_maps: Arc::default(),
            devices: None,
            enroll_limiter: Arc::default(),
            index,
            discovery: crate::discovery::Discovery::default(),
            work: crate::work::Work::default(),
            patching: crate::patching::Patching::default(),
            automation: crate::automation::Automation::default(),
        }
    }

    pub fn set_ready(&self) {
        self.ready_version
            .store(self.index.version(), Ordering::Release);
        self.ready.store(true, Ordering::Release);
    }

    pub fn replace_tokens(&self, index: TokenIndex) {
        match self.tokens.write() {
            Ok(mut tokens) => *tokens = index,
            Err(poisoned) => *poisoned.into_inner() = index,
        }
    }
}

pub fn app(state: AppState, request_timeout: Duration) -> Router {
    // Routes that take no query parameters refuse any, as the others refuse unknown ones.
    let no_query = || middleware::from_fn(params::refuse_query);
    // A long-poll answers before the request timeout cuts it.
    state
        .work
        .set_max_wait(request_timeout.saturating_sub(Duration::from_secs(5)));
    let v1 = Router::new()
        .route("/openapi.json", get(openapi::document).layer(no_query()))
        .route("/whoami", get(identity::whoami).layer(no_query()))
        .route(
            "/namespaces/{namespace}/{resource}",
            get(objects::list).layer(no_query()),
        )
        .route(
            "/namespaces/{namespace}/{resource}/{name}",
            get(objects::get).layer(no_query()),
        )
        .merge(query::routes())
        .merge(crate::alerting::routes::routes())
        .merge(crate::discovery::routes::routes())
        .merge(crate::patching::routes::routes())
        .merge(crate::automation::routes::routes())
        .merge(crate::automation::audit_routes::routes())
        .merge(network::routes())
        .nest(
            "/agent",
            agent::routes()
                .merge(ingest::routes())
                .merge(assignments::routes())
                .merge(collector::routes())
                .merge(crate::patching::routes::agent_routes())
                .route_layer(no_query())
                .merge(crate::work::routes())
                .route_layer(middleware::from_fn_with_state(
                    state.clone(),
                    rate_limit::enroll,
                )),
        );
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .route_layer(no_query())
        .nest("/v1", v1)
        .fallback(|| async { ApiError::not_found("no such route") })
        // Before any handler: the database being down, names that cannot exist, then
        // bodies too large (outermost, so that it also drains what an inner refusal left
        // unread).
        .layer(middleware::from_fn_with_state(
            state.clone(),
            require_database,
        ))
        .layer(middleware::from_fn(params::check_path))
        .layer(middleware::from_fn(body_limit::guard))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            record_request,
        ))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            request_timeout,
        ))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &Request| {
                tracing::info_span!(
                    "request",
                    method = %request.method(),
                    path = %request.uri().path(),
                    token = tracing::field::Empty,
                device = tracing::field::Empty
                )
            }),
        )
        .with_state(state)
}

/// Routes that answer without the database.
fn needs_database(path: &str) -> bool {
    path.starts_with("/v1/") && !matches!(path, "/v1/openapi.json" | "/v1/agent/ca.pem")
}

/// While the database is down, requests that need it are answered 503 (with `Retry-After`)
/// at once, and those already waiting on it are cut short, instead of each waiting out the
/// pool's acquire timeout. Nothing is lost: nothing was acknowledged, and agents and
/// collectors keep their batches spooled until a later try is.
async fn require_database(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if !needs_database(request.uri().path()) {
        return next.run(request).await;
    }
    let unavailable =
        || ApiError::unavailable("the database is unavailable; retry later").into_response();
    if !state.store.is_up() {
        return unavailable();
    }
    tokio::select! {
        response = next.run(request) => response,
        () = state.store.health().down() => unavailable(),
    }
}

/// Counts every request by route template (never the raw path: names stay out of labels).
async fn record_request(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().to_string();
    let timer = state.metrics.request_timer(&route);
    let mut response = next.run(request).await;
    drop(timer);
    error::ensure_retry_after(&mut response);
    state
        .metrics
        .api_requests
        .get_or_create(&crate::metrics::RequestLabels {
            method,
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}
