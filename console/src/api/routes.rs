//! The people API routes the console calls, as typed [`Call`]s over `cdot-crds` types.
use cdot_crds::{
    device::Device,
    wire::alert::{AcknowledgeRequest, AlertDetail, AlertList, Silence, SilenceRequest},
};
use serde::Deserialize;

use super::{Call, client::ApiClient};

/// The Kubernetes-style list envelope of `GET /v1/namespaces/{ns}/{resource}` (only
/// `items` is read; `apiVersion`, `kind` and `metadata` are the usual constants).
#[derive(Debug, Clone, Deserialize)]
pub struct ObjectList<T> {
    pub items: Vec<T>,
}

pub type DeviceList = ObjectList<Device>;

/// Which alerts a list asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertScope {
    /// Pending and firing.
    Open,
    /// Every state, open at some time in the last `hours`.
    Recent { hours: i64 },
}

/// Alerts of every namespace the token may read: the connection check, and where the
/// namespace selector learns names the configuration did not give.
pub fn all_alerts(api: &ApiClient) -> Call<AlertList> {
    Call::get(api.url(
        "/v1/alerts",
        &[
            ("state", "pending,firing,resolved".into()),
            ("limit", "500".into()),
        ],
    ))
}

pub fn devices(api: &ApiClient, namespace: &str) -> Call<DeviceList> {
    Call::get(api.url(&format!("/v1/namespaces/{namespace}/devices"), &[]))
}

pub fn alerts(api: &ApiClient, namespace: &str, scope: AlertScope, now_ms: i64) -> Call<AlertList> {
    let query = match scope {
        AlertScope::Open => vec![("state", "pending,firing".to_owned())],
        AlertScope::Recent { hours } => vec![
            ("state", "pending,firing,resolved".to_owned()),
            ("from", rfc3339(now_ms - hours * 3_600_000)),
        ],
    };
    Call::get(api.url(&format!("/v1/namespaces/{namespace}/alerts"), &query))
}

pub fn alert(api: &ApiClient, namespace: &str, id: uuid::Uuid) -> Call<AlertDetail> {
    Call::get(api.url(&format!("/v1/namespaces/{namespace}/alerts/{id}"), &[]))
}

pub fn acknowledge(
    api: &ApiClient,
    namespace: &str,
    id: uuid::Uuid,
    request: &AcknowledgeRequest,
) -> Call<()> {
    Call::post(
        api.url(
            &format!("/v1/namespaces/{namespace}/alerts/{id}/acknowledge"),
            &[],
        ),
        request,
    )
}

pub fn create_silence(api: &ApiClient, namespace: &str, request: &SilenceRequest) -> Call<Silence> {
    Call::post(
        api.url(&format!("/v1/namespaces/{namespace}/silences"), &[]),
        request,
    )
}

/// Unix milliseconds as RFC 3339 (UTC), as the API's `from`/`to` parameters take them.
pub fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}
