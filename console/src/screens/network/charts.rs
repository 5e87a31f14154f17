//! The bandwidth chart (out above the axis, in below it) and the latency, jitter and loss
//! charts of the probe targets.
use std::collections::BTreeMap;

use cdot_crds::wire::network::{BandwidthResponse, ProbePoint, ProbeSeriesResponse};
use egui_plot::{Legend, Line, LineStyle, Plot, PlotPoints};

use crate::widgets::{time, units};

const HEIGHT: f32 = 160.0;
/// Probe targets drawn per chart; more would be unreadable (the table below lists all).
const MAX_TARGETS: usize = 8;

/// Unix ms → the plot's x (seconds), and back for the axis labels.
fn x(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// A chart over the response's whole range (not only where there is data: a gap at the
/// end says that nothing reported).
fn plot(id: &str, title: &str, from: &str, to: &str) -> Plot<'static> {
    let mut plot = Plot::new(id.to_owned());
    for end in [from, to] {
        if let Some(ms) = time::parse_utc(end) {
            plot = plot.include_x(x(ms));
        }
    }
    plot.height(HEIGHT)
        .legend(Legend::default())
        .allow_scroll(false)
        .x_axis_formatter(|mark, _| time::stamp_ms((mark.value * 1000.0) as i64))
        .y_axis_label(title.to_owned())
        .link_cursor(egui::Id::unique("network-charts"), [true, false])
}

/// Sum of every interface's bandwidth per bucket: `(avg in, avg out, max in, max out)`.
pub fn totals(data: &BandwidthResponse) -> BTreeMap<i64, [f64; 4]> {
    let mut sums: BTreeMap<i64, [f64; 4]> = BTreeMap::new();
    for series in &data.series {
        for p in &series.points {
            let sum = sums.entry(p.0).or_default();
            sum[0] += p.1;
            sum[1] += p.2;
            sum[2] += p.3;
            sum[3] += p.4;
        }
    }
    sums
}

pub fn bandwidth(ui: &mut egui::Ui, data: &BandwidthResponse) {
    ui.strong(format!(
        "Bandwidth of {} interfaces (out up, in down)",
        data.series.len()
    ));
    let sums = totals(data);
    let line = |column: usize, sign: f64| -> PlotPoints<'static> {
        sums.iter()
            .map(|(ms, v)| [x(*ms), sign * v[column]])
            .collect::<Vec<_>>()
            .into()
    };
    plot("bandwidth", "bit/s", &data.from, &data.to)
        .y_axis_formatter(|mark, _| units::bps(mark.value))
        .include_y(0.0)
        .show(ui, |plot| {
            plot.line(Line::new("out", line(1, 1.0)));
            plot.line(Line::new("in", line(0, -1.0)));
            plot.line(Line::new("out max", line(3, 1.0)).style(LineStyle::dotted_dense()));
            plot.line(Line::new("in max", line(2, -1.0)).style(LineStyle::dotted_dense()));
        });
}

/// A probe chart: title, unit, and its column of a point.
type ProbeChart = (&'static str, &'static str, fn(&ProbePoint) -> Option<f64>);

pub fn probes(ui: &mut egui::Ui, data: &ProbeSeriesResponse) {
    let shown = data.series.len().min(MAX_TARGETS);
    let more = data.series.len() - shown;
    let name = |i: usize| {
        let s = &data.series[i];
        format!("{} {} → {}", s.device, s.probe, s.target)
    };
    let charts: [ProbeChart; 3] = [
        ("latency", "ms", |p| p.1),
        ("jitter", "ms", |p| p.4),
        ("loss", "%", |p| p.5),
    ];
    for (title, unit, value) in charts {
        ui.strong(if more > 0 {
            format!("Probe {title} ({shown} of {} targets)", data.series.len())
        } else {
            format!("Probe {title}")
        });
        plot(&format!("probe-{title}"), unit, &data.from, &data.to)
            .include_y(0.0)
            .show(ui, |plot| {
                for (i, series) in data.series.iter().take(MAX_TARGETS).enumerate() {
                    let points: Vec<[f64; 2]> = series
                        .points
                        .iter()
                        .filter_map(|p| value(p).map(|v| [x(p.0), v]))
                        .collect();
                    plot.line(Line::new(name(i), points));
                }
            });
    }
}

#[cfg(test)]
mod tests {
    use cdot_crds::wire::network::{BandwidthPoint, BandwidthSeries, Resolution};

    use super::*;

    #[test]
    fn bandwidth_is_summed_per_bucket() {
        let series = |name: &str, points: Vec<BandwidthPoint>| BandwidthSeries {
            device: "r1".into(),
            site: None,
            interface: name.into(),
            if_index: 1,
            speed_bps: 0,
            points,
        };
        let data = BandwidthResponse {
            namespace: "acme".into(),
            from: String::new(),
            to: String::new(),
            step_ms: 60_000,
            resolution: Resolution::Minute,
            columns: Vec::new(),
            series: vec![
                series("a", vec![BandwidthPoint(0, 1.0, 2.0, 3.0, 4.0, 0.0, 0.0)]),
                series(
                    "b",
                    vec![
                        BandwidthPoint(0, 10.0, 20.0, 30.0, 40.0, 0.0, 0.0),
                        BandwidthPoint(60_000, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0),
                    ],
                ),
            ],
        };
        let sums = totals(&data);
        assert_eq!(sums[&0], [11.0, 22.0, 33.0, 44.0]);
        assert_eq!(sums[&60_000], [5.0, 5.0, 5.0, 5.0]);
    }
}
