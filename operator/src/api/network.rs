//! Network performance queries for people and the console, all under
//! `/v1/namespaces/{ns}/network/`: top talkers, the interface report, bandwidth and probe
//! time series, and the per-site summary of what is worst right now.
//!
//! Every query reads rollups: flows by minute for ranges up to 15 minutes, by 10 minutes up
//! to 6 hours and by hour beyond (widened to whole buckets; without a device from the
//! per-site rollups, ADR 12), interfaces and probes by minute up to two days and by hour
//! beyond.
//! Common parameters: `site`, `device`, `interface`, `from`, `to` (RFC 3339; default the
//! last hour). A bad parameter is a 400 naming `query.<name>`.
use std::collections::BTreeMap;

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    routing::get,
};
use cdot_crds::{
    api_token::Role,
    kind::Kind,
    wire::network::{self as wire, BandwidthPoint, ProbePoint},
};
use serde_json::{Value, json};

use super::{
    ApiError, AppState,
    auth::Principal,
    openapi::{DerivedSchemas, json_response as ok},
    params::Params,
    points::{self, Ask, ceil_div},
};
use crate::store::network::{
    HOUR_MS, MINUTE_MS, floor_to,
    query::{
        FlowResolution, FlowScope, InterfaceInfo, InterfaceStats, ProbeStats, Rank, Resolution,
        Scope, TalkerFilter, TalkerKey, TalkerQuery, TrafficQuery,
    },
};

/// Range of a query without `from`.
const DEFAULT_RANGE_MS: i64 = HOUR_MS;
/// Longest range of one query.
const MAX_RANGE_MS: i64 = 400 * 24 * HOUR_MS;
/// Flow ranges up to this are read by minute.
pub const FLOW_MINUTE_RANGE_MS: i64 = 15 * MINUTE_MS;
/// Longer flow ranges up to this are read by 10 minutes; longer ones by hour.
pub const FLOW_TEN_MINUTE_RANGE_MS: i64 = 6 * HOUR_MS;
/// Interface and probe ranges up to this are read by minute; longer ones by hour.
pub const SAMPLE_MINUTE_RANGE_MS: i64 = 48 * HOUR_MS;
/// Most points one series may have.
pub const MAX_POINTS: i64 = 11_000;
/// Points a series aims at when no step is given.
const TARGET_POINTS: i64 = 360;
/// Steps chosen from the range when none is given.
const STEPS_MS: [i64; 7] = [
    MINUTE_MS,
    5 * MINUTE_MS,
    15 * MINUTE_MS,
    HOUR_MS,
    6 * HOUR_MS,
    24 * HOUR_MS,
    7 * 24 * HOUR_MS,
];
/// Most series (interfaces or probes) one time-series response may have.
pub const MAX_SERIES: usize = 500;
/// Most items a ranking may return.
pub const MAX_LIMIT: i64 = 1000;
const DEFAULT_LIMIT: i64 = 10;
/// Window of the site summary without `window`.
const DEFAULT_WINDOW_MS: i64 = 15 * MINUTE_MS;
/// Most items per site of the summary without `limit`.
const DEFAULT_SITE_LIMIT: i64 = 5;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/namespaces/{namespace}/network/top-talkers",
            get(top_talkers),
        )
        .route(
            "/namespaces/{namespace}/network/interfaces",
            get(interfaces),
        )
        .route(
            "/namespaces/{namespace}/network/interfaces/bandwidth",
            get(bandwidth),
        )
        .route("/namespaces/{namespace}/network/traffic", get(traffic))
        .route("/namespaces/{namespace}/network/probes", get(probes))
        .route("/namespaces/{namespace}/network/sites", get(sites))
}

/// The network routes' readings of their parameters.
impl Params {
    fn time(&self, key: &str) -> Result<Option<i64>, ApiError> {
        self.get(key)
            .map(|v| {
                v.parse::<jiff::Timestamp>()
                    .map(|t| t.as_millisecond())
                    .map_err(|e| {
                        ApiError::bad_request(
                            format!("{v:?} is not an RFC 3339 time: {e}"),
                            format!("query.{key}"),
                        )
                    })
            })
            .transpose()
    }

    fn duration_ms(&self, key: &str) -> Result<Option<i64>, ApiError> {
        self.get(key)
            .map(|v| {
                cdot_crds::common::parse_duration(v)
                    .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                    .map_err(|e| ApiError::bad_request(e, format!("query.{key}")))
            })
            .transpose()
    }

    fn limit(&self, default: i64) -> Result<i64, ApiError> {
        match self.get("limit") {
            None => Ok(default),
            Some(v) => v
                .parse::<i64>()
                .ok()
                .filter(|n| (1..=MAX_LIMIT).contains(n))
                .ok_or_else(|| {
                    ApiError::bad_request(
                        format!("{v:?} is not a number from 1 to {MAX_LIMIT}"),
                        "query.limit",
                    )
                }),
        }
    }

    /// `from` and `to` (default: the hour before `now_ms`), checked.
    pub fn range(&self, now_ms: i64) -> Result<(i64, i64), ApiError> {
        let to = self.time("to")?.unwrap_or(now_ms);
        let from = self.time("from")?.unwrap_or(to - DEFAULT_RANGE_MS);
        if from >= to {
            return Err(ApiError::bad_request(
                "from must be before to",
                "query.from",
            ));
        }
        if to - from > MAX_RANGE_MS {
            return Err(ApiError::bad_request(
                format!(
                    "the range may span at most {} days",
                    MAX_RANGE_MS / 86_400_000
                ),
                "query.from",
            ));
        }
        Ok((from, to))
    }

    /// The step of a series over `[from, to)`: `step` when given (whole minutes), else the
    /// smallest step giving at most `points` buckets, else the smallest of [`STEPS_MS`]
    /// giving at most [`TARGET_POINTS`] points.
    pub fn step(&self, from: i64, to: i64) -> Result<i64, ApiError> {
        let step = match Ask::of(self.duration_ms("step")?, self.points()?)? {
            Ask::Step(step) => {
                if step < MINUTE_MS || step % MINUTE_MS != 0 {
                    return Err(ApiError::bad_request(
                        "the step must be a whole number of minutes",
                        "query.step",
                    ));
                }
                step
            }
            Ask::Points(points) => points::step_for(from, to, points, &[MINUTE_MS, HOUR_MS]),
            Ask::Default => STEPS_MS
                .into_iter()
                .find(|s| ceil_div(to - from, *s) <= TARGET_POINTS)
                .unwrap_or(STEPS_MS[STEPS_MS.len() - 1]),
        };
        points::check_count(from, to, step, MAX_POINTS)?;
        Ok(step)
    }

    fn points(&self) -> Result<Option<i64>, ApiError> {
        self.get("points")
            .map(|v| points::parse(v, MAX_POINTS))
            .transpose()
    }
}

const SCOPE: [&str; 5] = ["site", "device", "interface", "from", "to"];

fn allowed(extra: &[&'static str]) -> Vec<&'static str> {
    SCOPE.iter().chain(extra).copied().collect()
}

/// Checks the token and that a named device exists, and returns the scope.
async fn scope<'a>(
    state: &AppState,
    principal: &Principal,
    namespace: &'a str,
    params: &'a Params,
) -> Result<Scope<'a>, ApiError> {
    principal.require(namespace, Role::Viewer)?;
    let device = params.get("device");
    if let Some(name) = device
        && !cdot_crds::validation::is_dns1123_subdomain(name)
    {
        return Err(ApiError::bad_request(
            format!("{name:?} is not a Device name (RFC 1123 subdomain)"),
            "query.device",
        ));
    }
    if let Some(name) = device
        && state
            .store
            .get_object(namespace, Kind::Device, name)
            .await?
            .is_none()
    {
        return Err(
            ApiError::not_found(format!("Device {namespace}/{name} not found"))
                .with_field("query.device"),
        );
    }
    Ok(Scope {
        namespace,
        site: params.get("site"),
        device,
    })
}

fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// `GET /v1/namespaces/{ns}/network/top-talkers?by=&rank=&limit=&...`: the top
/// (source, destination) pairs, or `by=sources|destinations|protocols|ports`, ranked by
/// `rank=bytes|packets`, each with its share of all traffic in scope.
pub async fn top_talkers(
    State(state): State<AppState>,
    principal: Principal,
    Path(namespace): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<wire::TopTalkers>, ApiError> {
    let params = Params::parse(pairs, &allowed(&["by", "rank", "limit"]))?;
    let scope = scope(&state, &principal, &namespace, &params).await?;
    let key = match params.get("by") {
        None => TalkerKey::default(),
        Some(by) => TalkerKey::parse(by).ok_or_else(|| {
            ApiError::bad_request(
                format!("{by:?} is not one of pairs, sources, destinations, protocols, ports"),
                "query.by",
            )
        })?,
    };
    let rank = match params.get("rank") {
        None => Rank::default(),
        Some(rank) => Rank::parse(rank).ok_or_else(|| {
            ApiError::bad_request(
                format!("{rank:?} is not one of bytes, packets"),
                "query.rank",
            )
        })?,
    };
    let limit = params.limit(DEFAULT_LIMIT)?;
    let (from, to) = params.range(now_ms())?;
    let (resolution, from, to) = flow_resolution(from, to);
    let flows = flow_scope(&state, scope, &params).await?;
    let top = state
        .store
        .top_talkers(&TalkerQuery {
            scope: flows,
            key,
            rank,
            from_ms: from,
            to_ms: to,
            resolution,
            limit,
        })
        .await?;
    let total = match rank {
        Rank::Bytes => top.total_bytes,
        Rank::Packets => top.total_packets,
    };
    let share = |bytes: i64, packets: i64| {
        let v = match rank {
            Rank::Bytes => bytes,
            Rank::Packets => packets,
        };
        if total > 0 {
            v as f64 / total as f64
        } else {
            0.0
        }
    };
    let items: Vec<wire::Talker> = top
        .items
        .iter()
        .map(|t| wire::Talker {
            src: t.src.clone(),
            dst: t.dst.clone(),
            protocol: t.proto.and_then(|p| u8::try_from(p).ok()),
            port: t.port.and_then(|p| u16::try_from(p).ok()),
            bytes: t.bytes,
            packets: t.packets,
            share: share(t.bytes, t.packets),
        })
        .collect();
    let other_bytes = top.total_bytes - items.iter().map(|t| t.bytes).sum::<i64>();
    let other_packets = top.total_packets - items.iter().map(|t| t.packets).sum::<i64>();
    Ok(Json(wire::TopTalkers {
        namespace,
        from: rfc3339(from),
        to: rfc3339(to),
        resolution: resolution.wire(),
        by: key,
        rank,
        total_bytes: top.total_bytes,
        total_packets: top.total_packets,
        items,
        other: wire::TalkerRest {
            bytes: other_bytes,
            packets: other_packets,
            share: share(other_bytes, other_packets),
        },
    }))
}

/// Whose flows a query reads: without a device (and so without an interface) the per-site
/// rollups answer, else the exporters matched to the device, optionally one interface.
async fn flow_scope(
    state: &AppState,
    scope: Scope<'_>,
    params: &Params,
) -> Result<FlowScope, ApiError> {
    Ok(match (scope.device, params.get("interface")) {
        (None, None) => FlowScope::Site {
            namespace: scope.namespace.to_owned(),
            site: scope.site.map(str::to_owned),
        },
        (_, interface) => {
            let if_indexes = match interface {
                None => None,
                Some(interface) => Some(flow_interfaces(state, scope, interface).await?),
            };
            FlowScope::Exporters {
                ids: state.store.exporters_in(scope).await?,
                if_indexes,
            }
        }
    })
}

/// `GET /v1/namespaces/{ns}/network/traffic?src=&dst=&protocol=&port=&step=|points=`: the
/// flow traffic in scope by step, all of it or one talker's, read from the rollup the range
/// picks (as top talkers), so steps are whole buckets of it.
pub async fn traffic(
    State(state): State<AppState>,
    principal: Principal,
    Path(namespace): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<wire::TrafficSeries>, ApiError> {
    let params = Params::parse(
        pairs,
        &allowed(&["src", "dst", "protocol", "port", "step", "points"]),
    )?;
    let scope = scope(&state, &principal, &namespace, &params).await?;
    let address = |key: &str| {
        params
            .get(key)
            .map(|v| {
                v.parse::<std::net::IpAddr>().map_err(|_| {
                    ApiError::bad_request(
                        format!("{v:?} is not an IP address"),
                        format!("query.{key}"),
                    )
                })
            })
            .transpose()
    };
    let number = |key: &str, max: u32| {
        params
            .get(key)
            .map(|v| {
                v.parse::<u32>().ok().filter(|n| *n <= max).ok_or_else(|| {
                    ApiError::bad_request(
                        format!("{v:?} is not a number from 0 to {max}"),
                        format!("query.{key}"),
                    )
                })
            })
            .transpose()
    };
    let talker = TalkerFilter {
        src: address("src")?,
        dst: address("dst")?,
        protocol: number("protocol", 255)?.and_then(|n| u8::try_from(n).ok()),
        port: number("port", 65_535)?.and_then(|n| u16::try_from(n).ok()),
    };
    let (from, to) = params.range(now_ms())?;
    let (resolution, from, to) = flow_resolution(from, to);
    let bucket = resolution.bucket_ms();
    let step = match Ask::of(params.duration_ms("step")?, params.points()?)? {
        Ask::Step(step) if step < bucket || step % bucket != 0 => {
            return Err(ApiError::bad_request(
                format!(
                    "over this range flows are read by {}: the step must be a whole number of them",
                    resolution.wire().as_str()
                ),
                "query.step",
            ));
        }
        Ask::Step(step) => step,
        Ask::Points(points) => points::step_for(from, to, points, &[bucket]),
        Ask::Default => points::step_for(from, to, TARGET_POINTS, &[bucket]),
    };
    points::check_count(from, to, step, MAX_POINTS)?;
    let from = floor_to(from, step);
    let flows = flow_scope(&state, scope, &params).await?;
    let rows = state
        .store
        .traffic_points(&TrafficQuery {
            scope: flows,
            talker: talker.clone(),
            from_ms: from,
            to_ms: to,
            step_ms: step,
            resolution,
        })
        .await?;
    let per_second = |v: i64, ms: i64| v as f64 * 1000.0 / ms as f64;
    let points = rows
        .iter()
        .map(|p| {
            wire::TrafficPoint(
                p.at_ms,
                per_second(p.bytes * 8, step),
                per_second(p.bucket_bytes.0 * 8, bucket),
                per_second(p.bucket_bytes.1 * 8, bucket),
                per_second(p.packets, step),
            )
        })
        .collect();
    Ok(Json(wire::TrafficSeries {
        namespace,
        from: rfc3339(from),
        to: rfc3339(to),
        step_ms: step,
        bucket_ms: bucket,
        resolution: resolution.wire(),
        src: talker.src.map(|ip| ip.to_string()),
        dst: talker.dst.map(|ip| ip.to_string()),
        protocol: talker.protocol,
        port: talker.port,
        columns: wire::TrafficPoint::COLUMNS.map(String::from).to_vec(),
        points,
    }))
}

/// ifIndexes a flow `interface` filter means: the polled interfaces of the device with that
/// name (or ifIndex), else a bare ifIndex.
async fn flow_interfaces(
    state: &AppState,
    scope: Scope<'_>,
    interface: &str,
) -> Result<Vec<i64>, ApiError> {
    if scope.device.is_none() {
        return Err(ApiError::bad_request(
            "an interface filter needs a device",
            "query.interface",
        ));
    }
    let known: Vec<i64> = state
        .store
        .interfaces_in(scope, Some(interface))
        .await?
        .iter()
        .map(|i| i.if_index)
        .collect();
    if !known.is_empty() {
        return Ok(known);
    }
    interface
        .parse::<u32>()
        .map(|i| vec![i64::from(i)])
        .map_err(|_| {
            ApiError::not_found(format!("the device has no interface named {interface:?}"))
                .with_field("query.interface")
        })
}

/// `[from, to)` widened to whole buckets of `size`.
fn widen(from: i64, to: i64, size: i64) -> (i64, i64) {
    (floor_to(from, size), floor_to(to + size - 1, size))
}

/// Flows: the finest rollup that keeps a query small for the range (see
/// [`FLOW_MINUTE_RANGE_MS`], [`FLOW_TEN_MINUTE_RANGE_MS`]), with the range widened to it.
pub fn flow_resolution(from: i64, to: i64) -> (FlowResolution, i64, i64) {
    let resolution = if to - from <= FLOW_MINUTE_RANGE_MS {
        FlowResolution::Minute
    } else if to - from <= FLOW_TEN_MINUTE_RANGE_MS {
        FlowResolution::TenMinutes
    } else {
        FlowResolution::Hour
    };
    let (from, to) = widen(from, to, resolution.bucket_ms());
    (resolution, from, to)
}

/// Interfaces and probes: minutes up to two days, hours beyond (widened to whole hours).
fn sample_resolution(from: i64, to: i64) -> (Resolution, i64, i64) {
    let (resolution, size) = if to - from <= SAMPLE_MINUTE_RANGE_MS {
        (Resolution::Minute, MINUTE_MS)
    } else {
        (Resolution::Hour, HOUR_MS)
    };
    let (from, to) = widen(from, to, size);
    (resolution, from, to)
}

fn utilization(bps: f64, speed_bps: i64) -> Option<f64> {
    (speed_bps > 0).then(|| bps * 100.0 / speed_bps as f64)
}

fn interface_stats(info: &InterfaceInfo, stats: &InterfaceStats) -> wire::InterfaceStats {
    let direction = |(avg, p95, max): (f64, f64, f64)| wire::DirectionStats {
        avg_bps: avg,
        p95_bps: p95,
        max_bps: max,
        avg_utilization: utilization(avg, info.speed_bps),
        p95_utilization: utilization(p95, info.speed_bps),
        max_utilization: utilization(max, info.speed_bps),
    };
    wire::InterfaceStats {
        device: info.device.clone(),
        site: info.site.clone(),
        interface: info.name.clone(),
        if_index: info.if_index,
        alias: info.alias.clone(),
        speed_bps: info.speed_bps,
        oper_status: info.oper_status,
        samples: stats.samples,
        inbound: direction(stats.in_bps),
        outbound: direction(stats.out_bps),
        errors: wire::InOut {
            inbound: stats.in_errors,
            outbound: stats.out_errors,
        },
        discards: wire::InOut {
            inbound: stats.in_discards,
            outbound: stats.out_discards,
        },
        status_changes: stats.status_changes,
    }
}

/// `GET /v1/namespaces/{ns}/network/interfaces`: per interface average, 95th percentile
/// (of the minute or hour averages) and maximum utilisation in and out, errors, discards
/// and ifOperStatus changes. Utilisation is in percent of the interface's current speed.
pub async fn interfaces(
    State(state): State<AppState>,
    principal: Principal,
    Path(namespace): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<wire::InterfaceReport>, ApiError> {
    let params = Params::parse(pairs, &allowed(&[]))?;
    let scope = scope(&state, &principal, &namespace, &params).await?;
    let (from, to) = params.range(now_ms())?;
    let (resolution, from, to) = sample_resolution(from, to);
    let infos = state
        .store
        .interfaces_in(scope, params.get("interface"))
        .await?;
    let ids: Vec<i32> = infos.iter().map(|i| i.id).collect();
    let stats: BTreeMap<i32, InterfaceStats> = state
        .store
        .interface_stats(&ids, from, to, resolution)
        .await?
        .into_iter()
        .map(|s| (s.id, s))
        .collect();
    let empty = InterfaceStats::default();
    let items = infos
        .iter()
        .map(|info| interface_stats(info, stats.get(&info.id).unwrap_or(&empty)))
        .collect();
    Ok(Json(wire::InterfaceReport {
        namespace,
        from: rfc3339(from),
        to: rfc3339(to),
        resolution: resolution.wire(),
        items,
    }))
}

fn too_many_series(n: usize, field: &str) -> ApiError {
    ApiError::bad_request(
        format!("{n} series match; at most {MAX_SERIES} (narrow with site, device, {field})"),
        format!("query.{field}"),
    )
}

/// Range, step and resolution of a series request: the range starts at a whole step.
struct SeriesWindow {
    from: i64,
    to: i64,
    step: i64,
    resolution: Resolution,
}

impl SeriesWindow {
    fn of(params: &Params) -> Result<Self, ApiError> {
        let (from, to) = params.range(now_ms())?;
        let step = params.step(from, to)?;
        let resolution = if step % HOUR_MS == 0 {
            Resolution::Hour
        } else {
            Resolution::Minute
        };
        Ok(Self {
            from: floor_to(from, step),
            to,
            step,
            resolution,
        })
    }
}

/// `GET /v1/namespaces/{ns}/network/interfaces/bandwidth?step=|points=&aggregate=`: per
/// interface [`BandwidthPoint`]s: bits/s, errors and discards; with `aggregate=sum` one
/// series of their sum (a namespace's first screen has more interfaces than series fit).
pub async fn bandwidth(
    State(state): State<AppState>,
    principal: Principal,
    Path(namespace): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<wire::BandwidthResponse>, ApiError> {
    let params = Params::parse(pairs, &allowed(&["step", "points", "aggregate"]))?;
    let scope = scope(&state, &principal, &namespace, &params).await?;
    let window = SeriesWindow::of(&params)?;
    let sum = match params.get("aggregate") {
        None => false,
        Some("sum") => true,
        Some(other) => {
            return Err(ApiError::bad_request(
                format!("{other:?} is not an aggregate; the one there is: sum"),
                "query.aggregate",
            ));
        }
    };
    let infos = state
        .store
        .interfaces_in(scope, params.get("interface"))
        .await?;
    if !sum && infos.len() > MAX_SERIES {
        return Err(too_many_series(infos.len(), "interface"));
    }
    let ids: Vec<i32> = infos.iter().map(|i| i.id).collect();
    let (from, to, step) = (window.from, window.to, window.step);
    let rows = if sum {
        state
            .store
            .interface_total_points(&ids, from, to, step, window.resolution)
            .await?
    } else {
        state
            .store
            .interface_points(&ids, from, to, step, window.resolution)
            .await?
    };
    let mut by_id: BTreeMap<i32, Vec<BandwidthPoint>> = BTreeMap::new();
    for p in rows {
        by_id.entry(p.id).or_default().push(BandwidthPoint(
            p.at_ms,
            p.in_bps.0,
            p.out_bps.0,
            p.in_bps.1,
            p.out_bps.1,
            p.in_bps.2,
            p.out_bps.2,
            p.errors.0,
            p.errors.1,
            p.discards.0,
            p.discards.1,
        ));
    }
    let series = if sum && !infos.is_empty() {
        // One series for the scope: no device or interface of its own (none when the
        // scope has no interface: nothing to sum).
        vec![wire::BandwidthSeries {
            device: String::new(),
            site: scope.site.map(str::to_owned),
            interface: format!("{} interfaces", infos.len()),
            if_index: 0,
            speed_bps: infos.iter().map(|i| i.speed_bps).sum(),
            points: by_id.remove(&0).unwrap_or_default(),
        }]
    } else {
        infos
            .iter()
            .map(|i| wire::BandwidthSeries {
                device: i.device.clone(),
                site: i.site.clone(),
                interface: i.name.clone(),
                if_index: i.if_index,
                speed_bps: i.speed_bps,
                points: by_id.remove(&i.id).unwrap_or_default(),
            })
            .collect()
    };
    Ok(Json(wire::BandwidthResponse {
        namespace,
        from: rfc3339(window.from),
        to: rfc3339(window.to),
        step_ms: window.step,
        resolution: window.resolution.wire(),
        columns: BandwidthPoint::COLUMNS.map(String::from).to_vec(),
        series,
    }))
}

/// `GET /v1/namespaces/{ns}/network/probes?probe=&step=|points=`: per probe target
/// [`ProbePoint`]s.
pub async fn probes(
    State(state): State<AppState>,
    principal: Principal,
    Path(namespace): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<wire::ProbeSeriesResponse>, ApiError> {
    let params = Params::parse(
        pairs,
        &["site", "device", "probe", "from", "to", "step", "points"],
    )?;
    let scope = scope(&state, &principal, &namespace, &params).await?;
    let window = SeriesWindow::of(&params)?;
    let infos = state.store.probes_in(scope, params.get("probe")).await?;
    if infos.len() > MAX_SERIES {
        return Err(too_many_series(infos.len(), "probe"));
    }
    let ids: Vec<i32> = infos.iter().map(|p| p.id).collect();
    let mut by_id: BTreeMap<i32, Vec<ProbePoint>> = BTreeMap::new();
    for s in state
        .store
        .probe_points(&ids, window.from, window.to, window.step, window.resolution)
        .await?
    {
        by_id.entry(s.id).or_default().push(ProbePoint(
            s.at_ms,
            s.rtt_avg_ms,
            s.rtt_min_ms,
            s.rtt_max_ms,
            s.jitter_ms,
            s.loss_percent(),
        ));
    }
    let series = infos
        .iter()
        .map(|p| wire::ProbeSeries {
            device: p.device.clone(),
            site: p.site.clone(),
            probe: p.probe.clone(),
            target: p.target.clone(),
            points: by_id.remove(&p.id).unwrap_or_default(),
        })
        .collect();
    Ok(Json(wire::ProbeSeriesResponse {
        namespace,
        from: rfc3339(window.from),
        to: rfc3339(window.to),
        step_ms: window.step,
        resolution: window.resolution.wire(),
        columns: ProbePoint::COLUMNS.map(String::from).to_vec(),
        series,
    }))
}

/// How bad an interface is now: down first, then by the higher average utilisation (or
/// rate, without a speed), then by errors and discards.
fn interface_badness(info: &InterfaceInfo, s: &InterfaceStats) -> (bool, f64, i64) {
    let down = info.oper_status.is_some_and(|st| st != 1);
    let busiest = s.in_bps.0.max(s.out_bps.0);
    let level = if info.speed_bps > 0 {
        busiest * 100.0 / info.speed_bps as f64
    } else {
        0.0
    };
    (
        down,
        level,
        s.in_errors + s.out_errors + s.in_discards + s.out_discards,
    )
}

/// `GET /v1/namespaces/{ns}/network/sites?window=15m&limit=5&site=`: per site, the worst
/// interfaces (down, busiest, most errors) and probe targets (most loss, then slowest) over
/// the last `window`, or over `from`/`to`.
pub async fn sites(
    State(state): State<AppState>,
    principal: Principal,
    Path(namespace): Path<String>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<wire::SiteSummary>, ApiError> {
    let params = Params::parse(pairs, &["site", "window", "from", "to", "limit"])?;
    let scope = scope(&state, &principal, &namespace, &params).await?;
    let limit = usize::try_from(params.limit(DEFAULT_SITE_LIMIT)?).unwrap_or(usize::MAX);
    let ranged = params.get("from").is_some() || params.get("to").is_some();
    let (resolution, from, to) = match (params.get("window"), ranged) {
        (Some(_), true) => {
            return Err(ApiError::bad_request(
                "give window or from/to, not both",
                "query.window",
            ));
        }
        // A past range, as the other network routes read it.
        (None, true) => {
            let (from, to) = params.range(now_ms())?;
            sample_resolution(from, to)
        }
        (_, false) => {
            let window = params.duration_ms("window")?.unwrap_or(DEFAULT_WINDOW_MS);
            if !(MINUTE_MS..=SAMPLE_MINUTE_RANGE_MS).contains(&window) {
                return Err(ApiError::bad_request(
                    "the window must be from 1m to 48h",
                    "query.window",
                ));
            }
            let to = floor_to(now_ms() + MINUTE_MS - 1, MINUTE_MS);
            (
                Resolution::Minute,
                to - floor_to(window + MINUTE_MS - 1, MINUTE_MS),
                to,
            )
        }
    };

    let interfaces = state.store.interfaces_in(scope, None).await?;
    let ids: Vec<i32> = interfaces.iter().map(|i| i.id).collect();
    let stats: BTreeMap<i32, InterfaceStats> = state
        .store
        .interface_stats(&ids, from, to, resolution)
        .await?
        .into_iter()
        .map(|s| (s.id, s))
        .collect();
    let probes = state.store.probes_in(scope, None).await?;
    let ids: Vec<i32> = probes.iter().map(|p| p.id).collect();
    // One step spanning the whole window.
    let probe_stats: BTreeMap<i32, ProbeStats> = state
        .store
        .probe_points(&ids, from, to, i64::MAX, resolution)
        .await?
        .into_iter()
        .map(|s| (s.id, s))
        .collect();

    let mut by_site: BTreeMap<Option<String>, wire::SiteWorst> = BTreeMap::new();
    let mut ranked: Vec<(&InterfaceInfo, &InterfaceStats)> = interfaces
        .iter()
        .filter_map(|i| Some((i, stats.get(&i.id)?)))
        .collect();
    ranked.sort_by(|a, b| {
        let (x, y) = (interface_badness(a.0, a.1), interface_badness(b.0, b.1));
        y.0.cmp(&x.0).then(y.1.total_cmp(&x.1)).then(y.2.cmp(&x.2))
    });
    for (info, s) in ranked {
        let entry = &mut site_worst(&mut by_site, &info.site).interfaces;
        if entry.len() < limit {
            entry.push(interface_stats(info, s));
        }
    }
    let mut ranked: Vec<(&crate::store::network::query::ProbeInfo, &ProbeStats)> = probes
        .iter()
        .filter_map(|p| Some((p, probe_stats.get(&p.id)?)))
        .collect();
    ranked.sort_by(|a, b| {
        let loss = |s: &ProbeStats| s.loss_percent().unwrap_or(0.0);
        let rtt = |s: &ProbeStats| s.rtt_avg_ms.unwrap_or(f64::INFINITY);
        loss(b.1)
            .total_cmp(&loss(a.1))
            .then(rtt(b.1).total_cmp(&rtt(a.1)))
    });
    for (p, s) in ranked {
        let entry = &mut site_worst(&mut by_site, &p.site).probes;
        if entry.len() < limit {
            entry.push(wire::ProbeStats {
                device: p.device.clone(),
                probe: p.probe.clone(),
                target: p.target.clone(),
                rtt_avg_ms: s.rtt_avg_ms,
                rtt_max_ms: s.rtt_max_ms,
                jitter_ms: s.jitter_ms,
                loss_percent: s.loss_percent(),
                sent: s.sent,
            });
        }
    }
    Ok(Json(wire::SiteSummary {
        namespace,
        from: rfc3339(from),
        to: rfc3339(to),
        sites: by_site.into_values().collect(),
    }))
}

fn site_worst<'a>(
    by_site: &'a mut BTreeMap<Option<String>, wire::SiteWorst>,
    site: &Option<String>,
) -> &'a mut wire::SiteWorst {
    by_site
        .entry(site.clone())
        .or_insert_with(|| wire::SiteWorst {
            site: site.clone(),
            interfaces: Vec::new(),
            probes: Vec::new(),
        })
}

/// The routes of this module in the OpenAPI document.
pub fn openapi_paths(
    paths: &mut serde_json::Map<String, Value>,
    schemas: &mut serde_json::Map<String, Value>,
) {
    let mut derived = DerivedSchemas::new(schemas);
    let top_talkers = derived.add::<wire::TopTalkers>("TopTalkers");
    let interface_report = derived.add::<wire::InterfaceReport>("InterfaceReport");
    let bandwidth = derived.add::<wire::BandwidthResponse>("BandwidthResponse");
    let probes = derived.add::<wire::ProbeSeriesResponse>("ProbeSeriesResponse");
    let sites = derived.add::<wire::SiteSummary>("SiteSummary");
    let traffic = derived.add::<wire::TrafficSeries>("TrafficSeries");
    derived.finish();
    let string = |name: &str, description: &str| json!({ "name": name, "in": "query", "required": false, "description": description, "schema": { "type": "string" } });
    let namespace = json!({ "name": "namespace", "in": "path", "required": true, "schema": { "type": "string" } });
    let scope = [
        string("site", "only this site (rmm.cdot.io/site)"),
        string(
            "device",
            "only this Device (for flows: the exporter matched to it)",
        ),
        string("from", "start, RFC 3339 (default: an hour before `to`)"),
        string("to", "end, RFC 3339 (default: now)"),
    ];
    let interface = string(
        "interface",
        "interface name or ifIndex (flows: needs `device`)",
    );
    let step = string(
        "step",
        "bucket size, whole minutes (default: from the range, about 360 points)",
    );
    let points = string(
        "points",
        "at most this many buckets per series, each with its average, minimum and maximum (instead of `step`; e.g. the plot's width in pixels)",
    );
    let errors = json!({
        "400": { "description": "a bad parameter (`field` names it)", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
        "401": { "description": "no or unknown token", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
        "404": { "description": "namespace outside the token's scope, or unknown device", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } },
    });
    let route = |summary: &str, extra: Vec<Value>, response: Value| {
        let mut parameters = vec![namespace.clone()];
        parameters.extend(scope.iter().cloned());
        parameters.extend(extra);
        let mut responses = errors.clone();
        if let Some(map) = responses.as_object_mut() {
            map.insert("200".into(), response);
        }
        json!({ "get": { "tags": ["Network"], "summary": summary, "parameters": parameters, "responses": responses } })
    };
    paths.insert(
        "/v1/namespaces/{namespace}/network/top-talkers".into(),
        route(
            "Top talkers of flow traffic with their share of the total",
            vec![
                interface.clone(),
                string("by", "pairs (default), sources, destinations, protocols, ports"),
                string("rank", "bytes (default) or packets"),
                string("limit", "items, 1 to 1000 (default 10)"),
            ],
            ok(
                "`items` ranked, `other`, totals, the `resolution` read (1m up to 15 minutes, 10m up to 6 hours, else 1h)",
                &top_talkers,
            ),
        ),
    );
    paths.insert(
        "/v1/namespaces/{namespace}/network/traffic".into(),
        route(
            "Flow traffic over time, all of it or one talker's",
            vec![
                interface.clone(),
                string("src", "only traffic from this address"),
                string("dst", "only traffic to this address"),
                string("protocol", "only this IP protocol number"),
                string("port", "only this service port (the lower of a flow's two ports)"),
                string(
                    "step",
                    "step, whole buckets of the rollup the range picks (1m up to 15 minutes, 10m up to 6 hours, else 1h)",
                ),
                points.clone(),
            ],
            ok(
                "`points` of [ms, bps, maxBps, minBps, pps], steps with traffic only",
                &traffic,
            ),
        ),
    );
    paths.insert(
        "/v1/namespaces/{namespace}/network/interfaces".into(),
        route(
            "Interface report: average, 95th percentile and maximum utilisation, errors, discards, status changes",
            vec![interface.clone()],
            ok("`items`, one per interface", &interface_report),
        ),
    );
    paths.insert(
        "/v1/namespaces/{namespace}/network/interfaces/bandwidth".into(),
        route(
            "Bandwidth, errors and discards per interface at a step, or their sum",
            vec![
                interface,
                step.clone(),
                points.clone(),
                string(
                    "aggregate",
                    "`sum`: one series, the interfaces in scope added up minute by minute (any number of interfaces)",
                ),
            ],
            ok(
                "`series` of [ms, inBps, outBps, inMaxBps, outMaxBps, inMinBps, outMinBps]",
                &bandwidth,
            ),
        ),
    );
    paths.insert(
        "/v1/namespaces/{namespace}/network/probes".into(),
        route(
            "Latency, jitter and loss per probe target at a step",
            vec![string("probe", "probe name"), step, points],
            ok(
                "`series` of [ms, rttAvgMs, rttMinMs, rttMaxMs, jitterMs, lossPercent]",
                &probes,
            ),
        ),
    );
    let mut responses = errors;
    if let Some(map) = responses.as_object_mut() {
        map.insert(
            "200".into(),
            ok(
                "`sites`, each with its worst `interfaces` and `probes`",
                &sites,
            ),
        );
    }
    paths.insert(
        "/v1/namespaces/{namespace}/network/sites".into(),
        json!({ "get": {
            "tags": ["Network"],
            "summary": "Per site, the worst interfaces and probe targets right now",
            "parameters": [
                namespace,
                string("site", "only this site"),
                string("window", "how far back `now` reaches, 1m to 48h (default 15m)"),
                string("from", "instead of `window`: start, RFC 3339 (a past range)"),
                string("to", "instead of `window`: end, RFC 3339 (default: now)"),
                string("limit", "items per site and list, 1 to 1000 (default 5)"),
            ],
            "responses": responses,
        }}),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_000_000_000;

    fn params(pairs: &[(&str, &str)], allowed: &[&str]) -> Result<Params, ApiError> {
        Params::parse(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            allowed,
        )
    }

    fn field(e: ApiError) -> String {
        e.field.unwrap_or_default()
    }

    #[test]
    fn steps_follow_the_range_unless_given() {
        let p = params(&[], &SCOPE).expect("params");
        assert_eq!(p.step(NOW - HOUR_MS, NOW).expect("step"), MINUTE_MS);
        assert_eq!(
            p.step(NOW - 24 * HOUR_MS, NOW).expect("step"),
            5 * MINUTE_MS
        );
        assert_eq!(
            p.step(NOW - 30 * 24 * HOUR_MS, NOW).expect("step"),
            6 * HOUR_MS
        );
        let p = params(&[("step", "90s")], &["step"]).expect("params");
        assert_eq!(
            field(p.step(NOW - HOUR_MS, NOW).expect_err("refused")),
            "query.step"
        );
        let p = params(&[("step", "1m")], &["step"]).expect("params");
        assert_eq!(
            field(p.step(NOW - 30 * 24 * HOUR_MS, NOW).expect_err("refused")),
            "query.step"
        );
    }

    #[test]
    fn bad_parameters_name_their_field() {
        assert_eq!(
            field(params(&[("bogus", "1")], &SCOPE).expect_err("refused")),
            "query.bogus"
        );
        assert_eq!(
            field(params(&[("site", "a"), ("site", "b")], &SCOPE).expect_err("refused")),
            "query.site"
        );
        let p = params(&[("from", "yesterday")], &SCOPE).expect("params");
        assert_eq!(field(p.range(NOW).expect_err("refused")), "query.from");
        let p = params(
            &[
                ("from", "2025-11-24T17:00:00Z"),
                ("to", "2025-11-24T16:00:00Z"),
            ],
            &SCOPE,
        )
        .expect("params");
        assert_eq!(field(p.range(NOW).expect_err("refused")), "query.from");
        let p = params(&[("limit", "0")], &["limit"]).expect("params");
        assert_eq!(field(p.limit(10).expect_err("refused")), "query.limit");
        let p = params(&[], &SCOPE).expect("params");
        assert_eq!(p.range(NOW).expect("range"), (NOW - HOUR_MS, NOW));
    }

    #[test]
    fn flow_ranges_pick_the_rollup_and_widen_to_its_buckets() {
        assert_eq!(
            flow_resolution(NOW - 15 * MINUTE_MS + 1, NOW - 1),
            (FlowResolution::Minute, NOW - 15 * MINUTE_MS, NOW)
        );
        assert_eq!(
            flow_resolution(NOW - HOUR_MS + 1, NOW - 5 * MINUTE_MS),
            (FlowResolution::TenMinutes, NOW - HOUR_MS, NOW)
        );
        assert_eq!(
            flow_resolution(NOW - 6 * HOUR_MS, NOW).0,
            FlowResolution::TenMinutes
        );
        assert_eq!(
            flow_resolution(NOW - 6 * HOUR_MS - 1, NOW),
            (FlowResolution::Hour, NOW - 7 * HOUR_MS, NOW)
        );
    }

    #[test]
    fn long_sample_ranges_read_whole_hours() {
        assert_eq!(
            sample_resolution(NOW - 5 * MINUTE_MS + 1, NOW - 1),
            (Resolution::Minute, NOW - 5 * MINUTE_MS, NOW)
        );
        let (resolution, from, to) = sample_resolution(NOW - 72 * HOUR_MS + 1, NOW);
        assert_eq!(resolution, Resolution::Hour);
        assert_eq!((from % HOUR_MS, to % HOUR_MS), (0, 0));
    }
}
