//! The network performance API for people and the console: response bodies of the routes
//! under `/v1/namespaces/{ns}/network/` (top talkers, the interface report, bandwidth and
//! probe series, the per-site summary), so that the operator's handlers, the OpenAPI
//! document and the console share one definition.
//!
//! Times are RFC 3339 strings; a series point is a JSON array whose columns the response
//! names in `columns`.
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The rollup a response was read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Resolution {
    /// Minutes.
    #[serde(rename = "1m")]
    Minute,
    /// 10 minutes (flows only).
    #[serde(rename = "10m")]
    TenMinutes,
    /// Hours.
    #[serde(rename = "1h")]
    Hour,
}

impl Resolution {
    /// As on the wire: `1m`, `10m`, `1h`.
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::Minute => "1m",
            Resolution::TenMinutes => "10m",
            Resolution::Hour => "1h",
        }
    }

    /// Length of one bucket.
    pub fn bucket_ms(self) -> i64 {
        match self {
            Resolution::Minute => 60_000,
            Resolution::TenMinutes => 600_000,
            Resolution::Hour => 3_600_000,
        }
    }
}

/// What top talkers are keyed by (`by=`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum TalkerKey {
    /// (source, destination) host pairs.
    #[default]
    Pairs,
    Sources,
    Destinations,
    /// IP protocol numbers.
    Protocols,
    /// Service ports (the lower of the two ports of a flow).
    Ports,
}

impl TalkerKey {
    pub const ALL: [TalkerKey; 5] = [
        TalkerKey::Pairs,
        TalkerKey::Sources,
        TalkerKey::Destinations,
        TalkerKey::Protocols,
        TalkerKey::Ports,
    ];

    /// The value of the `by` parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            TalkerKey::Pairs => "pairs",
            TalkerKey::Sources => "sources",
            TalkerKey::Destinations => "destinations",
            TalkerKey::Protocols => "protocols",
            TalkerKey::Ports => "ports",
        }
    }

    /// Parses the value of the `by` parameter.
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == value)
    }
}

/// What top talkers are ranked by (`rank=`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Rank {
    #[default]
    Bytes,
    Packets,
}

impl Rank {
    pub const ALL: [Rank; 2] = [Rank::Bytes, Rank::Packets];

    /// The value of the `rank` parameter.
    pub fn as_str(self) -> &'static str {
        match self {
            Rank::Bytes => "bytes",
            Rank::Packets => "packets",
        }
    }

    /// Parses the value of the `rank` parameter.
    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == value)
    }
}

/// One ranked key: the fields of its kind (`src` and `dst` for pairs, `protocol`, `port`)
/// are set, the others absent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Talker {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst: Option<String>,
    /// IP protocol number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    pub bytes: i64,
    pub packets: i64,
    /// Part of all traffic in scope, by the ranking, from 0 to 1.
    pub share: f64,
}

/// Traffic in scope outside the listed items.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TalkerRest {
    pub bytes: i64,
    pub packets: i64,
    /// Part of all traffic in scope, by the ranking, from 0 to 1.
    pub share: f64,
}

/// `GET /v1/namespaces/{ns}/network/top-talkers`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopTalkers {
    pub namespace: String,
    /// Start of the range read (widened to whole buckets).
    pub from: String,
    /// End of the range read.
    pub to: String,
    pub resolution: Resolution,
    pub by: TalkerKey,
    pub rank: Rank,
    /// All traffic in scope.
    pub total_bytes: i64,
    pub total_packets: i64,
    /// Ranked, largest first.
    pub items: Vec<Talker>,
    pub other: TalkerRest,
}

/// Rates of one direction of an interface over the range, in bits/s; utilisation in percent
/// of the interface's speed (absent when the speed is unknown).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DirectionStats {
    pub avg_bps: f64,
    /// 95th percentile of the minute (or hour) averages.
    pub p95_bps: f64,
    pub max_bps: f64,
    pub avg_utilization: Option<f64>,
    pub p95_utilization: Option<f64>,
    pub max_utilization: Option<f64>,
}

/// A pair of counts, in and out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InOut {
    #[serde(rename = "in")]
    pub inbound: i64,
    #[serde(rename = "out")]
    pub outbound: i64,
}

/// One interface of the report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InterfaceStats {
    /// The Device polled.
    pub device: String,
    pub site: Option<String>,
    /// ifName (or ifDescr).
    pub interface: String,
    pub if_index: i64,
    pub alias: String,
    pub speed_bps: i64,
    /// Last ifOperStatus (1 up, 2 down, ...), absent before the first poll.
    pub oper_status: Option<i16>,
    /// Polls in the range.
    pub samples: i64,
    #[serde(rename = "in")]
    pub inbound: DirectionStats,
    #[serde(rename = "out")]
    pub outbound: DirectionStats,
    pub errors: InOut,
    pub discards: InOut,
    /// ifOperStatus changes in the range.
    pub status_changes: i64,
}

/// `GET /v1/namespaces/{ns}/network/interfaces`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InterfaceReport {
    pub namespace: String,
    pub from: String,
    pub to: String,
    pub resolution: Resolution,
    pub items: Vec<InterfaceStats>,
}

/// One bucket of an interface: `[start (Unix ms), avg in, avg out, max in, max out, min in,
/// min out, errors in, errors out, discards in, discards out]`, rates in bits/s. Maxima and
/// minima are of the polls, so a bucket keeps its peaks and dips whatever its size; errors
/// and discards are counted over the bucket.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BandwidthPoint(
    pub i64,
    pub f64,
    pub f64,
    pub f64,
    pub f64,
    pub f64,
    pub f64,
    pub i64,
    pub i64,
    pub i64,
    pub i64,
);

impl BandwidthPoint {
    /// Names of the columns, as in a response's `columns`.
    pub const COLUMNS: [&'static str; 11] = [
        "ms",
        "inBps",
        "outBps",
        "inMaxBps",
        "outMaxBps",
        "inMinBps",
        "outMinBps",
        "inErrors",
        "outErrors",
        "inDiscards",
        "outDiscards",
    ];
}

/// The series of one interface.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BandwidthSeries {
    pub device: String,
    pub site: Option<String>,
    pub interface: String,
    pub if_index: i64,
    pub speed_bps: i64,
    pub points: Vec<BandwidthPoint>,
}

/// `GET /v1/namespaces/{ns}/network/interfaces/bandwidth`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BandwidthResponse {
    pub namespace: String,
    /// Start of the first bucket.
    pub from: String,
    pub to: String,
    /// Bucket size.
    pub step_ms: i64,
    pub resolution: Resolution,
    /// Names of a point's columns ([`BandwidthPoint::COLUMNS`]).
    pub columns: Vec<String>,
    pub series: Vec<BandwidthSeries>,
}

/// One bucket of a probe target: `[start (Unix ms), rtt avg, rtt min, rtt max, jitter (ms),
/// loss (%)]`; the round-trip times and jitter are absent when no reply came, the loss when
/// nothing was sent.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ProbePoint(
    pub i64,
    pub Option<f64>,
    pub Option<f64>,
    pub Option<f64>,
    pub Option<f64>,
    pub Option<f64>,
);

impl ProbePoint {
    /// Names of the columns, as in a response's `columns`.
    pub const COLUMNS: [&'static str; 6] = [
        "ms",
        "rttAvgMs",
        "rttMinMs",
        "rttMaxMs",
        "jitterMs",
        "lossPercent",
    ];
}

/// The results of one probe target.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProbeSeries {
    /// The Device that probes.
    pub device: String,
    pub site: Option<String>,
    /// Probe name.
    pub probe: String,
    pub target: String,
    pub points: Vec<ProbePoint>,
}

/// `GET /v1/namespaces/{ns}/network/probes`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProbeSeriesResponse {
    pub namespace: String,
    /// Start of the first bucket.
    pub from: String,
    pub to: String,
    /// Bucket size.
    pub step_ms: i64,
    pub resolution: Resolution,
    /// Names of a point's columns ([`ProbePoint::COLUMNS`]).
    pub columns: Vec<String>,
    pub series: Vec<ProbeSeries>,
}

/// One step of a traffic series: `[start (Unix ms), avg bits/s, max bits/s, min bits/s,
/// avg packets/s]`. The maximum and minimum are of the rollup buckets (`bucketMs`) of the
/// step that carried traffic, so a step keeps its bursts whatever its size.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TrafficPoint(pub i64, pub f64, pub f64, pub f64, pub f64);

impl TrafficPoint {
    /// Names of the columns, as in a response's `columns`.
    pub const COLUMNS: [&'static str; 5] = ["ms", "bps", "maxBps", "minBps", "pps"];
}

/// `GET /v1/namespaces/{ns}/network/traffic`: the flow traffic in scope over time, all of
/// it or one talker's (any of `src`, `dst`, `protocol`, `port`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrafficSeries {
    pub namespace: String,
    /// Start of the first step.
    pub from: String,
    pub to: String,
    /// Step size.
    pub step_ms: i64,
    /// Size of the rollup buckets read (maxima and minima are of these).
    pub bucket_ms: i64,
    pub resolution: Resolution,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// Names of a point's columns ([`TrafficPoint::COLUMNS`]).
    pub columns: Vec<String>,
    /// Steps with traffic, in time order.
    pub points: Vec<TrafficPoint>,
}

/// A probe target over the summary's window.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProbeStats {
    pub device: String,
    pub probe: String,
    pub target: String,
    pub rtt_avg_ms: Option<f64>,
    pub rtt_max_ms: Option<f64>,
    pub jitter_ms: Option<f64>,
    pub loss_percent: Option<f64>,
    /// Echo requests sent.
    pub sent: i64,
}

/// The worst of one site.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SiteWorst {
    /// The site; absent for what has none.
    pub site: Option<String>,
    /// Down first, then busiest, then most errors and discards.
    pub interfaces: Vec<InterfaceStats>,
    /// Most loss first, then slowest.
    pub probes: Vec<ProbeStats>,
}

/// `GET /v1/namespaces/{ns}/network/sites`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SiteSummary {
    pub namespace: String,
    pub from: String,
    pub to: String,
    pub sites: Vec<SiteWorst>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_are_arrays_and_directions_are_in_and_out() {
        let p = serde_json::to_value(BandwidthPoint(1, 2.0, 3.0, 4.0, 5.0, 1.0, 2.0, 0, 1, 2, 3))
            .expect("json");
        assert_eq!(
            p,
            serde_json::json!([1, 2.0, 3.0, 4.0, 5.0, 1.0, 2.0, 0, 1, 2, 3])
        );
        let io = serde_json::to_value(InOut {
            inbound: 1,
            outbound: 2,
        })
        .expect("json");
        assert_eq!(io, serde_json::json!({ "in": 1, "out": 2 }));
        assert_eq!(
            serde_json::to_value(Resolution::TenMinutes).expect("json"),
            "10m"
        );
        for key in TalkerKey::ALL {
            assert_eq!(TalkerKey::parse(key.as_str()), Some(key));
            assert_eq!(
                serde_json::to_value(key).expect("json"),
                serde_json::json!(key.as_str())
            );
        }
    }
}
