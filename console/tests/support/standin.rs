//! A stand-in operator for the console's benchmark and snapshot tests: the network,
//! alerts and devices routes answered with made-up data, as the real operator answers a
//! range holding 500,000 interface points (10 interfaces × 50,000), 8 probe targets and a
//! day of flows: every series decimated to the `points=` asked for (min-max per bucket).
//! Every time it answers follows the request's `from` and `to`, so a fixed range draws
//! the same screen on every run.
use std::collections::BTreeMap;

use axum::{
    Json, Router,
    extract::{Path, Query},
    routing::get,
};
use cdot_crds::{
    alert_rule::Severity,
    common::{Condition, ConditionStatus},
    device::{Device, DeviceClass, DeviceSpec, DeviceStatus},
    wire::{
        alert::{Alert, AlertDetail, AlertEvent, AlertList, AlertState, SilenceList},
        network::{
            BandwidthPoint, BandwidthResponse, BandwidthSeries, DirectionStats, InOut,
            InterfaceReport, InterfaceStats, ProbePoint, ProbeSeries, ProbeSeriesResponse,
            ProbeStats, Rank, Resolution, SiteSummary, SiteWorst, Talker, TalkerKey, TalkerRest,
            TopTalkers, TrafficPoint, TrafficSeries,
        },
        query::{ListMeta, ObjectList},
    },
};

/// Raw points per interface in the range (10 interfaces: 500,000 in all).
/// The end of a range the request does not give (Unix ms): fixed, for stable pictures.
const DEFAULT_TO: i64 = 1_765_000_000_000;
pub const RAW_PER_SERIES: usize = 50_000;
pub const INTERFACES: usize = 10;
pub const PROBES: usize = 8;

type Params = Query<BTreeMap<String, String>>;

fn range(q: &BTreeMap<String, String>) -> (i64, i64) {
    let ms = |k: &str| {
        q.get(k)
            .and_then(|v| v.parse::<jiff::Timestamp>().ok())
            .map(|t| t.as_millisecond())
    };
    let to = ms("to").unwrap_or(DEFAULT_TO);
    (ms("from").unwrap_or(to - 3_600_000), to)
}

/// `points` buckets over the range, each the min-max of `RAW_PER_SERIES / points` raw
/// samples of a wave with bursts (as the server's decimation answers).
fn buckets(q: &BTreeMap<String, String>) -> Vec<(i64, f64, f64, f64)> {
    let points: usize = q.get("points").and_then(|p| p.parse().ok()).unwrap_or(360);
    let (from, to) = range(q);
    let per = (RAW_PER_SERIES / points).max(1);
    let step = (to - from) / points as i64;
    (0..points)
        .map(|b| {
            let raw = (0..per).map(|i| {
                let n = (b * per + i) as f64;
                let wave = (n / 900.0).sin() * 0.4 + 0.5;
                wave + if (b * per + i).is_multiple_of(977) {
                    0.4
                } else {
                    0.0
                }
            });
            let (lo, hi, sum) = raw.fold((f64::MAX, f64::MIN, 0.0), |(lo, hi, s), v| {
                (lo.min(v), hi.max(v), s + v)
            });
            (from + b as i64 * step, sum / per as f64, hi, lo)
        })
        .collect()
}

fn stamp(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn interface(i: usize) -> InterfaceStats {
    let d = |u: f64| DirectionStats {
        avg_bps: u * 1e7,
        p95_bps: u * 1.5e7,
        max_bps: u * 2e7,
        avg_utilization: Some(u),
        p95_utilization: Some(u * 1.5),
        max_utilization: Some(u * 2.0),
    };
    InterfaceStats {
        device: format!("rtr-{:02}", i / 4),
        site: Some(format!("site-{}", i % 10)),
        interface: format!("ge-0/0/{i}"),
        if_index: i as i64,
        alias: format!("uplink {i}"),
        speed_bps: 1_000_000_000,
        oper_status: Some(if i.is_multiple_of(17) { 2 } else { 1 }),
        samples: 60,
        inbound: d((i % 40) as f64),
        outbound: d((i % 30) as f64),
        errors: InOut {
            inbound: (i % 7) as i64,
            outbound: 0,
        },
        discards: InOut::default(),
        status_changes: (i % 3) as i64,
    }
}

async fn bandwidth(Path(ns): Path<String>, Query(q): Params) -> Json<BandwidthResponse> {
    let (from, to) = range(&q);
    let b = buckets(&q);
    let mut answer = BandwidthResponse {
        namespace: ns,
        from: stamp(from),
        to: stamp(to),
        step_ms: 60_000,
        resolution: Resolution::Minute,
        columns: BandwidthPoint::COLUMNS
            .iter()
            .map(|c| (*c).to_owned())
            .collect(),
        series: (0..INTERFACES)
            .map(|i| BandwidthSeries {
                device: format!("rtr-{i}"),
                site: None,
                interface: format!("ge-0/0/{i}"),
                if_index: i as i64,
                speed_bps: 1_000_000_000,
                points: b
                    .iter()
                    .map(|&(t, avg, hi, lo)| {
                        let s = 1e8 * (1.0 + i as f64 / 10.0);
                        BandwidthPoint(
                            t,
                            avg * s,
                            avg * s * 0.6,
                            hi * s,
                            hi * s * 0.6,
                            lo * s,
                            lo * s * 0.6,
                            0,
                            0,
                            0,
                            0,
                        )
                    })
                    .collect(),
            })
            .collect(),
    };
    // As the operator does: one series of the interfaces added up.
    if q.get("aggregate").map(String::as_str) == Some("sum") {
        let mut sum = BandwidthSeries {
            device: String::new(),
            site: None,
            interface: format!("{INTERFACES} interfaces"),
            if_index: 0,
            speed_bps: answer.series.iter().map(|s| s.speed_bps).sum(),
            points: answer.series[0].points.clone(),
        };
        for series in &answer.series[1..] {
            for (total, p) in sum.points.iter_mut().zip(&series.points) {
                total.1 += p.1;
                total.2 += p.2;
                total.3 += p.3;
                total.4 += p.4;
                total.5 += p.5;
                total.6 += p.6;
            }
        }
        answer.series = vec![sum];
    }
    Json(answer)
}

async fn probes(Path(ns): Path<String>, Query(q): Params) -> Json<ProbeSeriesResponse> {
    let (from, to) = range(&q);
    let b = buckets(&q);
    Json(ProbeSeriesResponse {
        namespace: ns,
        from: stamp(from),
        to: stamp(to),
        step_ms: 60_000,
        resolution: Resolution::Minute,
        columns: ProbePoint::COLUMNS
            .iter()
            .map(|c| (*c).to_owned())
            .collect(),
        series: (0..PROBES)
            .map(|i| ProbeSeries {
                device: format!("rtr-{i}"),
                site: None,
                probe: "wan".into(),
                target: format!("192.0.2.{i}"),
                points: b
                    .iter()
                    .map(|&(t, avg, hi, lo)| {
                        let ms = 10.0 + 5.0 * i as f64;
                        ProbePoint(
                            t,
                            Some(avg * ms),
                            Some(lo * ms),
                            Some(hi * ms),
                            Some(hi - lo),
                            Some((hi - 0.9).max(0.0) * 10.0),
                        )
                    })
                    .collect(),
            })
            .collect(),
    })
}

async fn traffic(Path(ns): Path<String>, Query(q): Params) -> Json<TrafficSeries> {
    let (from, to) = range(&q);
    Json(TrafficSeries {
        namespace: ns,
        from: stamp(from),
        to: stamp(to),
        step_ms: 60_000,
        bucket_ms: 60_000,
        resolution: Resolution::Minute,
        src: None,
        dst: None,
        protocol: None,
        port: None,
        columns: TrafficPoint::COLUMNS
            .iter()
            .map(|c| (*c).to_owned())
            .collect(),
        points: buckets(&q)
            .into_iter()
            .map(|(t, avg, hi, lo)| TrafficPoint(t, avg * 3e8, hi * 3e8, lo * 3e8, avg * 3e4))
            .collect(),
    })
}

async fn talkers(Path(ns): Path<String>, Query(q): Params) -> Json<TopTalkers> {
    let (from, to) = range(&q);
    Json(TopTalkers {
        namespace: ns,
        from: stamp(from),
        to: stamp(to),
        resolution: Resolution::Minute,
        by: TalkerKey::Pairs,
        rank: Rank::Bytes,
        total_bytes: 1 << 40,
        total_packets: 1 << 30,
        items: (0..25)
            .map(|i| Talker {
                src: Some(format!("10.0.{i}.1")),
                dst: Some(format!("198.51.100.{i}")),
                protocol: None,
                port: None,
                bytes: (1 << 35) / (i + 1),
                packets: (1 << 25) / (i + 1),
                share: 0.2 / (i + 1) as f64,
            })
            .collect(),
        other: TalkerRest {
            bytes: 1 << 38,
            packets: 1 << 28,
            share: 0.3,
        },
    })
}

async fn interfaces(Path(ns): Path<String>, Query(q): Params) -> Json<InterfaceReport> {
    let (from, to) = range(&q);
    Json(InterfaceReport {
        namespace: ns,
        from: stamp(from),
        to: stamp(to),
        resolution: Resolution::Minute,
        items: (0..200).map(interface).collect(),
    })
}

async fn sites(Path(ns): Path<String>) -> Json<SiteSummary> {
    Json(SiteSummary {
        namespace: ns,
        from: stamp(DEFAULT_TO - 3_600_000),
        to: stamp(DEFAULT_TO),
        sites: (0..10)
            .map(|s| SiteWorst {
                site: Some(format!("site-{s}")),
                interfaces: (0..5).map(|i| interface(s * 5 + i)).collect(),
                probes: (0..5)
                    .map(|p| ProbeStats {
                        device: format!("rtr-{s}"),
                        probe: "wan".into(),
                        target: format!("192.0.2.{p}"),
                        rtt_avg_ms: Some(12.0),
                        rtt_max_ms: Some(40.0),
                        jitter_ms: Some(2.0),
                        loss_percent: Some(p as f64),
                        sent: 600,
                    })
                    .collect(),
            })
            .collect(),
    })
}

fn alert(i: usize, to: i64) -> Alert {
    Alert {
        id: uuid::Uuid::from_u128(i as u128 + 1),
        namespace: "acme".into(),
        rule: "link-busy".into(),
        device: format!("rtr-{i}"),
        site: None,
        metric: if i.is_multiple_of(2) {
            "interfaceUtilisation"
        } else {
            "probeLoss"
        }
        .into(),
        series: BTreeMap::new(),
        labels: BTreeMap::new(),
        severity: Severity::Warning,
        state: AlertState::Resolved,
        value: 0.0,
        peak: 0.0,
        threshold: 0.0,
        summary: format!("episode {i}"),
        description: String::new(),
        started_at: stamp(to - (i as i64 + 1) * 170_000),
        fired_at: None,
        resolved_at: Some(stamp(to - (i as i64 + 1) * 170_000 + 60_000)),
        acknowledged: None,
        suppressed: None,
        tickets: BTreeMap::new(),
    }
}

async fn alerts(Query(q): Params) -> Json<AlertList> {
    let (_, to) = range(&q);
    Json(AlertList {
        items: (0..20).map(|i| alert(i, to)).collect(),
    })
}

/// The alert of that id (the `n`th of the list) with its history.
async fn alert_detail(Path((_, id)): Path<(String, uuid::Uuid)>) -> Json<AlertDetail> {
    let i = usize::try_from(id.as_u128().saturating_sub(1)).unwrap_or(0);
    let alert = self::alert(i, DEFAULT_TO);
    let event = |at: &str, event: &str| AlertEvent {
        at: at.to_owned(),
        event: event.into(),
        value: None,
        actor: String::new(),
        detail: String::new(),
    };
    let history = vec![
        event(&alert.started_at, "firing"),
        event(alert.resolved_at.as_deref().unwrap_or_default(), "resolved"),
    ];
    Json(AlertDetail { alert, history })
}

async fn silences() -> Json<SilenceList> {
    Json(SilenceList { items: Vec::new() })
}

/// Four devices, one of each status the list sorts by.
async fn devices() -> Json<ObjectList<Device>> {
    let device = |name: &str, class, site: Option<&str>, ready: Option<(ConditionStatus, &str)>| {
        let mut d = Device::new(
            name,
            DeviceSpec {
                class,
                site: site.map(str::to_owned),
                ..DeviceSpec::default()
            },
        );
        d.metadata.namespace = Some("acme".into());
        d.status = Some(DeviceStatus {
            conditions: ready
                .map(|(status, reason)| Condition::new("Ready", status, reason, "", ""))
                .into_iter()
                .collect(),
            ..DeviceStatus::default()
        });
        d
    };
    Json(ObjectList {
        api_version: cdot_crds::API_VERSION.into(),
        kind: "DeviceList".into(),
        metadata: ListMeta::default(),
        items: vec![
            device(
                "web-01",
                DeviceClass::Server,
                Some("hq"),
                Some((ConditionStatus::True, "Reporting")),
            ),
            device(
                "edge-02",
                DeviceClass::Router,
                Some("branch"),
                Some((ConditionStatus::False, "Offline")),
            ),
            device(
                "printer",
                DeviceClass::Printer,
                None,
                Some((ConditionStatus::False, "NotReporting")),
            ),
            device("lab-sw", DeviceClass::Switch, Some("lab"), None),
        ],
    })
}

/// Serves on a free port of 127.0.0.1 from a thread of its own; the base URL.
pub fn start() -> String {
    let app = Router::new()
        .route("/v1/alerts", get(alerts))
        .route("/v1/namespaces/{ns}/alerts", get(alerts))
        .route("/v1/namespaces/{ns}/alerts/{id}", get(alert_detail))
        .route("/v1/namespaces/{ns}/silences", get(silences))
        .route("/v1/namespaces/{ns}/devices", get(devices))
        .route(
            "/v1/namespaces/{ns}/network/interfaces/bandwidth",
            get(bandwidth),
        )
        .route("/v1/namespaces/{ns}/network/probes", get(probes))
        .route("/v1/namespaces/{ns}/network/traffic", get(traffic))
        .route("/v1/namespaces/{ns}/network/top-talkers", get(talkers))
        .route("/v1/namespaces/{ns}/network/interfaces", get(interfaces))
        .route("/v1/namespaces/{ns}/network/sites", get(sites));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            axum::serve(listener, app).await.expect("serve");
        });
    });
    base
}
