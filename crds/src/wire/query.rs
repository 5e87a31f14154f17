//! The query API for people and the console: response bodies of the time-series and
//! inventory routes, so that the operator's handlers, the OpenAPI document and the console
//! share one definition.
use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::Package;

/// `GET /v1/namespaces/{ns}/{resource}`: a Kubernetes-style list of custom resources with
/// their status (`T` is the resource: a `Device` for the console, JSON for the operator,
/// which serves every kind through one route).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectList<T> {
    /// `rmm.cdot.io/v1alpha1`.
    pub api_version: String,
    /// The kind's name with `List`, e.g. `DeviceList`.
    pub kind: String,
    /// Empty: the API lists without continuation or resource versions.
    #[serde(default)]
    pub metadata: ListMeta,
    pub items: Vec<T>,
}

/// The (empty) metadata of an [`ObjectList`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ListMeta {}

/// One bucket of a series: `[start (Unix ms), avg, min, max]`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MetricPoint(pub i64, pub f64, pub f64, pub f64);

/// One series of a metric: its labels and its points in time order.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricSeries {
    /// Series labels, e.g. `{mount: "/"}`.
    pub labels: BTreeMap<String, String>,
    pub points: Vec<MetricPoint>,
}

/// Where the points were read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum PointSource {
    /// Raw samples (steps under a minute).
    Raw,
    /// 1-minute rollups (and raw samples for the minutes not folded yet).
    Rollup,
}

/// `GET /v1/namespaces/{ns}/devices/{name}/metrics/{metric}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricSeriesResponse {
    /// Catalogue name.
    pub metric: String,
    /// Unit of the values (`percent`, `bits_per_second`, ...).
    pub unit: String,
    /// Start of the first bucket (Unix ms).
    pub from: i64,
    /// End of the range (Unix ms, exclusive).
    pub to: i64,
    /// Bucket size.
    pub step_ms: i64,
    pub source: PointSource,
    pub series: Vec<MetricSeries>,
}

/// `GET /v1/whoami`: what the presented token is, so that a client offers the namespaces
/// it may open and the actions its role allows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    /// The token's name (its Secret's).
    pub name: String,
    pub role: crate::api_token::Role,
    /// Namespaces the token may read, sorted; for a token of every namespace (`*`), those
    /// that hold objects now.
    pub namespaces: Vec<String>,
}

/// `GET /v1/namespaces/{ns}/devices/{name}/software`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SoftwareList {
    pub items: Vec<Package>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_are_arrays_and_sources_lowercase() {
        let response = MetricSeriesResponse {
            metric: "cpu".into(),
            unit: "percent".into(),
            from: 0,
            to: 60_000,
            step_ms: 60_000,
            source: PointSource::Rollup,
            series: vec![MetricSeries {
                labels: BTreeMap::new(),
                points: vec![MetricPoint(0, 2.5, 1.0, 4.0)],
            }],
        };
        let json = serde_json::to_value(&response).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"metric": "cpu", "unit": "percent", "from": 0, "to": 60000,
                "stepMs": 60000, "source": "rollup",
                "series": [{"labels": {}, "points": [[0, 2.5, 1.0, 4.0]]}]})
        );
        assert_eq!(
            serde_json::from_value::<MetricSeriesResponse>(json).expect("back"),
            response
        );
    }
}
