//! Query API for people: devices with inventory, metric time series.
use axum::Router;

use super::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
}
