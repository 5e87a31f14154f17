//! Query API for people: metric time series and installed software of a device.
//! (Devices with their status and inventory come from `GET /v1/namespaces/{ns}/devices`.)
use std::collections::BTreeMap;

use axum::{
    Json, Router,
    extract::{Path, Query, State},
    routing::get,
};
use cdot_crds::{
    api_token::Role,
    kind::Kind,
    metrics_catalog::CATALOG,
    wire::query::{self, MetricPoint, MetricSeries, MetricSeriesResponse, SoftwareList},
};

use super::{
    ApiError, AppState,
    auth::Principal,
    params::Params,
    points::{self, Ask},
};
use crate::store::{
    StoredObject,
    timeseries::{MINUTE_MS, PointSource},
};

/// Most points one series of a response may have.
pub const MAX_POINTS: i64 = 11_000;
/// Most series one response may have (narrow with `labels.<name>=`).
pub const MAX_SERIES: usize = 500;
/// Range of a query without `from`.
const DEFAULT_RANGE_MS: i64 = 3_600_000;
const DEFAULT_STEP_MS: i64 = MINUTE_MS;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            "/namespaces/{namespace}/devices/{name}/metrics/{metric}",
            get(series),
        )
        .route(
            "/namespaces/{namespace}/devices/{name}/software",
            get(software).layer(axum::middleware::from_fn(super::params::refuse_query)),
        )
}

/// What a series query asks for, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesQuery {
    pub from_ms: i64,
    pub to_ms: i64,
    pub step_ms: i64,
    pub labels: BTreeMap<String, String>,
}

impl SeriesQuery {
    /// Parses `from`, `to` (RFC 3339), `step` (duration) and `labels.<name>` parameters of
    /// a query for `metric`, with `now_ms` as the default end.
    pub fn parse(
        pairs: Vec<(String, String)>,
        metric_labels: &[&str],
        now_ms: i64,
    ) -> Result<Self, ApiError> {
        let label_keys: Vec<String> = metric_labels
            .iter()
            .map(|l| format!("labels.{l}"))
            .collect();
        let mut allowed = vec!["from", "to", "step", "points"];
        allowed.extend(label_keys.iter().map(String::as_str));
        let params = Params::parse(pairs, &allowed)?;
        let mut from = None;
        let mut to = None;
        let mut step = None;
        let mut points = None;
        let mut labels = BTreeMap::new();
        for (key, value) in params.iter() {
            let field = format!("query.{key}");
            match key {
                "from" => from = Some(parse_time(value, &field)?),
                "to" => to = Some(parse_time(value, &field)?),
                "step" => {
                    let d = cdot_crds::common::parse_duration(value)
                        .map_err(|e| ApiError::bad_request(e, &field))?;
                    let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
                    step = Some(ms);
                    if ms < 1000 {
                        return Err(ApiError::bad_request("step must be at least 1s", field));
                    }
                    if ms >= MINUTE_MS && ms % MINUTE_MS != 0 {
                        return Err(ApiError::bad_request(
                            "a step of a minute or more must be a whole number of minutes",
                            field,
                        ));
                    }
                }
                "points" => points = Some(points::parse(value, MAX_POINTS)?),
                _ => {
                    if let Some(label) = key.strip_prefix("labels.") {
                        labels.insert(label.to_owned(), value.to_owned());
                    }
                }
            }
        }
        let to_ms = to.unwrap_or(now_ms);
        let from_ms = from.unwrap_or(to_ms - DEFAULT_RANGE_MS);
        if from_ms >= to_ms {
            return Err(ApiError::bad_request(
                "from must be before to",
                "query.from",
            ));
        }
        let step = match Ask::of(step, points)? {
            Ask::Step(step) => step,
            // Whole seconds below a minute (raw samples), whole minutes above (rollups).
            Ask::Points(points) => points::step_for(from_ms, to_ms, points, &[1000, MINUTE_MS]),
            Ask::Default => DEFAULT_STEP_MS,
        };
        points::check_count(from_ms, to_ms, step, MAX_POINTS)?;
        // Buckets start at multiples of the step.
        let from_ms = from_ms.div_euclid(step) * step;
        Ok(Self {
            from_ms,
            to_ms,
            step_ms: step,
            labels,
        })
    }

    /// Steps of a minute or more are served from the 1-minute rollup.
    pub fn source(&self) -> PointSource {
        if self.step_ms >= MINUTE_MS {
            PointSource::Rollup
        } else {
            PointSource::Raw
        }
    }
}

fn parse_time(value: &str, field: &str) -> Result<i64, ApiError> {
    value
        .parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|e| {
            ApiError::bad_request(format!("{value:?} is not an RFC 3339 time: {e}"), field)
        })
}

/// `GET /v1/namespaces/{ns}/devices/{name}/metrics/{metric}?from=&to=&step=&labels.<name>=`.
pub async fn series(
    State(state): State<AppState>,
    principal: Principal,
    Path((namespace, name, metric)): Path<(String, String, String)>,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Result<Json<MetricSeriesResponse>, ApiError> {
    principal.require(&namespace, Role::Viewer)?;
    let info = CATALOG.iter().find(|m| m.name == metric).ok_or_else(|| {
        ApiError::not_found(format!(
            "unknown metric {metric:?}; see the metric catalogue"
        ))
        .with_field("path.metric")
    })?;
    let query = SeriesQuery::parse(pairs, info.labels, jiff::Timestamp::now().as_millisecond())?;
    let device = device(&state, &namespace, &name).await?;
    let series = state
        .store
        .find_series(device.uid, info.name, &query.labels)
        .await?;
    if series.len() > MAX_SERIES {
        return Err(ApiError::bad_request(
            format!(
                "{} series match; at most {MAX_SERIES} (filter with labels.<name>=)",
                series.len()
            ),
            "query.labels",
        ));
    }
    let ids: Vec<i64> = series.iter().map(|(id, _)| *id).collect();
    let source = query.source();
    let points = if ids.is_empty() {
        Vec::new()
    } else {
        state
            .store
            .series_points(&ids, query.from_ms, query.to_ms, query.step_ms, source)
            .await?
    };
    let series = series
        .into_iter()
        .map(|(id, labels)| MetricSeries {
            labels,
            points: points
                .iter()
                .filter(|p| p.0 == id)
                .map(|(_, ts, avg, min, max)| MetricPoint(*ts, *avg, *min, *max))
                .collect(),
        })
        .collect();
    Ok(Json(MetricSeriesResponse {
        metric: info.name.to_owned(),
        unit: info.unit.to_owned(),
        from: query.from_ms,
        to: query.to_ms,
        step_ms: query.step_ms,
        source: match source {
            PointSource::Raw => query::PointSource::Raw,
            PointSource::Rollup => query::PointSource::Rollup,
        },
        series,
    }))
}

/// `GET /v1/namespaces/{ns}/devices/{name}/software`.
pub async fn software(
    State(state): State<AppState>,
    principal: Principal,
    Path((namespace, name)): Path<(String, String)>,
) -> Result<Json<SoftwareList>, ApiError> {
    principal.require(&namespace, Role::Viewer)?;
    let device = device(&state, &namespace, &name).await?;
    let items = state.store.device_software(device.uid).await?;
    Ok(Json(SoftwareList { items }))
}

async fn device(state: &AppState, namespace: &str, name: &str) -> Result<StoredObject, ApiError> {
    state
        .store
        .get_object(namespace, Kind::Device, name)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!("Device {namespace}/{name} not found"))
                .with_field("path.name")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_764_000_000_000; // a whole hour

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn field(result: Result<SeriesQuery, ApiError>) -> String {
        result.expect_err("refused").field.unwrap_or_default()
    }

    #[test]
    fn defaults_are_the_last_hour_by_minute_from_the_rollup() {
        let q = SeriesQuery::parse(Vec::new(), &[], NOW).expect("query");
        assert_eq!(
            (q.from_ms, q.to_ms, q.step_ms),
            (NOW - 3_600_000, NOW, 60_000)
        );
        assert_eq!(q.source(), PointSource::Rollup);
        let q = SeriesQuery::parse(params(&[("step", "10s")]), &[], NOW).expect("query");
        assert_eq!(q.source(), PointSource::Raw);
    }

    #[test]
    fn each_bad_parameter_names_its_field() {
        assert_eq!(
            field(SeriesQuery::parse(
                params(&[("from", "yesterday")]),
                &[],
                NOW
            )),
            "query.from"
        );
        assert_eq!(
            field(SeriesQuery::parse(params(&[("step", "90s")]), &[], NOW)),
            "query.step"
        );
        assert_eq!(
            field(SeriesQuery::parse(params(&[("step", "1ms")]), &[], NOW)),
            "query.step"
        );
        assert_eq!(
            field(SeriesQuery::parse(
                params(&[("from", "2020-01-01T00:00:00Z"), ("step", "1s")]),
                &[],
                NOW
            )),
            "query.step",
            "too many points"
        );
        assert_eq!(
            field(SeriesQuery::parse(
                params(&[("labels.mount", "/")]),
                &[],
                NOW
            )),
            "query.labels.mount"
        );
        assert_eq!(
            field(SeriesQuery::parse(params(&[("limit", "5")]), &[], NOW)),
            "query.limit"
        );
        assert_eq!(
            field(SeriesQuery::parse(
                params(&[
                    ("from", "2025-11-24T17:00:00Z"),
                    ("to", "2025-11-24T16:00:00Z")
                ]),
                &[],
                NOW
            )),
            "query.from"
        );
        let q =
            SeriesQuery::parse(params(&[("labels.mount", "/")]), &["mount"], NOW).expect("query");
        assert_eq!(q.labels["mount"], "/");
    }
}
