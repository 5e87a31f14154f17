//! The people API routes the console calls, as typed [`Call`]s over `cdot-crds` types.
use cdot_crds::{
    device::Device,
    wire::{
        alert::{AcknowledgeRequest, AlertDetail, AlertList, Silence, SilenceList, SilenceRequest},
        network::{
            BandwidthResponse, InterfaceReport, ProbeSeriesResponse, Rank, SiteSummary, Talker,
            TalkerKey, TopTalkers, TrafficSeries,
        },
        query::{Identity, ObjectList},
    },
};

use super::{Call, client::ApiClient};

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

/// What the token is and which namespaces it may read.
pub fn whoami(api: &ApiClient) -> Call<Identity> {
    Call::get(api.url("/v1/whoami", &[]))
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

/// Silences not yet ended, those of Silence documents included.
pub fn silences(api: &ApiClient, namespace: &str) -> Call<SilenceList> {
    Call::get(api.url(&format!("/v1/namespaces/{namespace}/silences"), &[]))
}

/// Ends a silence made through the API (a Silence document's ends in git: 409).
pub fn end_silence(api: &ApiClient, namespace: &str, id: uuid::Uuid) -> Call<()> {
    Call::delete(api.url(&format!("/v1/namespaces/{namespace}/silences/{id}"), &[]))
}

/// Unix milliseconds as RFC 3339 (UTC), as the API's `from`/`to` parameters take them.
pub fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// What every network query is about: a namespace, optionally one site or one device
/// (and one of its interfaces), and a range.
#[derive(Debug, Clone, Copy)]
pub struct NetworkScope<'a> {
    pub namespace: &'a str,
    pub site: Option<&'a str>,
    pub device: Option<&'a str>,
    pub interface: Option<&'a str>,
    pub from_ms: i64,
    pub to_ms: i64,
}

impl NetworkScope<'_> {
    fn path(&self, route: &str) -> String {
        format!("/v1/namespaces/{}/network/{route}", self.namespace)
    }

    fn query(&self) -> Vec<(&'static str, String)> {
        let mut query = vec![("from", rfc3339(self.from_ms)), ("to", rfc3339(self.to_ms))];
        for (name, value) in [
            ("site", self.site),
            ("device", self.device),
            ("interface", self.interface),
        ] {
            if let Some(value) = value {
                query.push((name, value.to_owned()));
            }
        }
        query
    }
}

/// Flow traffic in scope over time, at most `points` steps: all of it, or the traffic of
/// `talker` (its set fields: source, destination, protocol, port).
pub fn traffic(
    api: &ApiClient,
    scope: NetworkScope<'_>,
    talker: Option<&Talker>,
    points: usize,
) -> Call<TrafficSeries> {
    let mut query = scope.query();
    if let Some(t) = talker {
        for (name, value) in [
            ("src", t.src.clone()),
            ("dst", t.dst.clone()),
            ("protocol", t.protocol.map(|p| p.to_string())),
            ("port", t.port.map(|p| p.to_string())),
        ] {
            if let Some(value) = value {
                query.push((name, value));
            }
        }
    }
    query.push(("points", points.to_string()));
    Call::get(api.url(&scope.path("traffic"), &query))
}

/// Metrics of the alerts drawn on the network charts.
const NETWORK_METRICS: &str = "networkIn,networkOut,interfaceUtilisation,interfaceErrors,\
interfaceDiscards,interfaceDown,probeLatency,probeJitter,probeLoss";

/// Alerts on network metrics open at some time in `scope`'s range (of its site, when it has
/// one).
pub fn alerts_between(api: &ApiClient, scope: NetworkScope<'_>) -> Call<AlertList> {
    let mut query = vec![
        ("state", "pending,firing,resolved".to_owned()),
        ("metric", NETWORK_METRICS.to_owned()),
        ("from", rfc3339(scope.from_ms)),
        ("to", rfc3339(scope.to_ms)),
        ("limit", "500".to_owned()),
    ];
    if let Some(site) = scope.site {
        query.push(("site", site.to_owned()));
    }
    Call::get(api.url(
        &format!("/v1/namespaces/{}/alerts", scope.namespace),
        &query,
    ))
}

pub fn top_talkers(
    api: &ApiClient,
    scope: NetworkScope<'_>,
    by: TalkerKey,
    rank: Rank,
    limit: usize,
) -> Call<TopTalkers> {
    let mut query = scope.query();
    query.extend([
        ("by", by.as_str().to_owned()),
        ("rank", rank.as_str().to_owned()),
        ("limit", limit.to_string()),
    ]);
    Call::get(api.url(&scope.path("top-talkers"), &query))
}

pub fn interfaces(api: &ApiClient, scope: NetworkScope<'_>) -> Call<InterfaceReport> {
    Call::get(api.url(&scope.path("interfaces"), &scope.query()))
}

/// At most `points` buckets per interface: the plot's width, no more (the server keeps
/// each bucket's minimum and maximum).
pub fn bandwidth(
    api: &ApiClient,
    scope: NetworkScope<'_>,
    points: usize,
) -> Call<BandwidthResponse> {
    series(api, scope, "interfaces/bandwidth", points, None)
}

/// The scope's interfaces added up by the operator: one series of at most `points` buckets,
/// whatever the number of interfaces.
pub fn total_bandwidth(
    api: &ApiClient,
    scope: NetworkScope<'_>,
    points: usize,
) -> Call<BandwidthResponse> {
    series(
        api,
        scope,
        "interfaces/bandwidth",
        points,
        Some(("aggregate", "sum")),
    )
}

/// At most `points` buckets per probe target.
pub fn probes(
    api: &ApiClient,
    scope: NetworkScope<'_>,
    points: usize,
) -> Call<ProbeSeriesResponse> {
    series(api, scope, "probes", points, None)
}

/// A series route of the scope with at most `points` buckets, and one more parameter.
fn series<T>(
    api: &ApiClient,
    scope: NetworkScope<'_>,
    route: &str,
    points: usize,
    extra: Option<(&'static str, &str)>,
) -> Call<T> {
    let mut query = scope.query();
    query.push(("points", points.to_string()));
    query.extend(extra.map(|(name, value)| (name, value.to_owned())));
    Call::get(api.url(&scope.path(route), &query))
}

/// The worst interfaces and probe targets of every site over the screen's range, `limit`
/// of each.
pub fn sites(api: &ApiClient, scope: NetworkScope<'_>, limit: usize) -> Call<SiteSummary> {
    Call::get(api.url(
        &scope.path("sites"),
        &[
            ("from", rfc3339(scope.from_ms)),
            ("to", rfc3339(scope.to_ms)),
            ("limit", limit.to_string()),
        ],
    ))
}
