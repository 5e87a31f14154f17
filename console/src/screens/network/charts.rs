//! The bandwidth chart (out above the axis, in below it) and the latency, jitter and loss
//! charts of the probe targets.
use std::collections::BTreeMap;

use cdot_crds::alert_rule::Severity;
use cdot_crds::wire::network::{BandwidthResponse, ProbePoint, ProbeSeriesResponse, TrafficSeries};
use egui_plot::{Corner, Legend, Line, LineStyle, Plot, PlotPoints, PlotUi, Span};

use super::episodes::{self, Episode};
use crate::widgets::{time, units};

const HEIGHT: f32 = 160.0;
/// Probe targets drawn per chart; more would be unreadable (the table below lists all).
const MAX_TARGETS: usize = 8;

/// Unix ms → the plot's x (seconds), and back for the axis labels.
fn x(ms: i64) -> f64 {
    ms as f64 / 1000.0
}

/// A chart over the whole `(from, to)` range the screen shows, in Unix ms (not only where
/// there is data: a gap at the end says that nothing reported), so that the charts one
/// under the other share their time axis.
fn plot(id: &str, title: &str, (from, to): (i64, i64)) -> Plot<'static> {
    Plot::new(id.to_owned())
        .include_x(x(from))
        .include_x(x(to))
        .height(HEIGHT)
        .allow_scroll(false)
        .x_axis_formatter(|mark, _| time::stamp_ms((mark.value * 1000.0) as i64))
        .y_axis_label(title.to_owned())
        .link_cursor(egui::Id::unique("network-charts"), [true, false])
}

/// The newest data is on the right: the legend stays off it.
fn legend() -> Legend {
    Legend::default().position(Corner::LeftTop)
}

/// The episode under the pointer: its summary to show, and its range if it was clicked.
#[derive(Default)]
struct Hit {
    summary: Option<String>,
    zoom: Option<(i64, i64)>,
}

/// Draws `episodes` as spans and finds the one under the pointer.
fn spans(plot: &mut PlotUi<'_>, episodes: &[Episode]) -> Hit {
    for e in episodes {
        let color = match e.severity {
            Severity::Critical => egui::Color32::from_rgb(220, 60, 60),
            Severity::Warning => egui::Color32::from_rgb(230, 160, 40),
            Severity::Info => egui::Color32::from_rgb(120, 120, 160),
        };
        // One name for all: one legend entry (which hides them all), however many alerts.
        plot.span(
            Span::new("alerts", x(e.from_ms)..=x(e.to_ms))
                .fill(color.gamma_multiply(0.12))
                .border_color(color.gamma_multiply(0.6)),
        );
    }
    let clicked = plot.response().clicked();
    let Some(episode) = plot
        .pointer_coordinate()
        .and_then(|at| episodes::at(episodes, (at.x * 1000.0) as i64))
    else {
        return Hit::default();
    };
    Hit {
        summary: Some(format!("{} (click to zoom to it)", episode.label)),
        zoom: clicked.then(|| episodes::zoom(episode)),
    }
}

/// Shows the hovered episode's summary; the range to zoom to when one was clicked.
fn finish(shown: egui_plot::PlotResponse<Hit>) -> Option<(i64, i64)> {
    if let Some(summary) = shown.inner.summary {
        shown.response.on_hover_text(summary);
    }
    shown.inner.zoom
}

/// What a bandwidth answer covers: its interfaces, or what the operator's sum names.
pub fn what(data: &BandwidthResponse) -> String {
    match data.series.as_slice() {
        [sum] if sum.device.is_empty() => sum.interface.clone(),
        series => format!("{} interfaces", series.len()),
    }
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

/// The same chart a day or a week earlier, drawn shifted onto the current range.
pub struct Previous<'a> {
    pub data: &'a BandwidthResponse,
    pub offset_ms: i64,
    pub label: &'static str,
}

/// Bits/s of the interfaces in `data`, summed: out above the axis, in below it, averages
/// and (dotted) maxima; `previous` dashed; `episodes` as spans. The range to zoom to when
/// an episode was clicked.
pub fn bandwidth(
    ui: &mut egui::Ui,
    range: (i64, i64),
    id: &str,
    title: &str,
    data: &BandwidthResponse,
    previous: Option<Previous<'_>>,
    episodes: &[Episode],
) -> Option<(i64, i64)> {
    ui.strong(title);
    let sums = totals(data);
    let line = |sums: &BTreeMap<i64, [f64; 4]>, column: usize, sign: f64, shift: i64| {
        PlotPoints::from(
            sums.iter()
                .map(|(ms, v)| [x(*ms + shift), sign * v[column]])
                .collect::<Vec<_>>(),
        )
    };
    let earlier = previous.map(|p| (totals(p.data), p.offset_ms, p.label));
    let shown = plot(id, "bit/s", range)
        .legend(legend())
        .y_axis_formatter(|mark, _| units::bps(mark.value))
        .include_y(0.0)
        .show(ui, |plot| {
            plot.line(Line::new("out", line(&sums, 1, 1.0, 0)));
            plot.line(Line::new("in", line(&sums, 0, -1.0, 0)));
            let dotted = LineStyle::dotted_dense();
            plot.line(Line::new("out max", line(&sums, 3, 1.0, 0)).style(dotted));
            plot.line(Line::new("in max", line(&sums, 2, -1.0, 0)).style(dotted));
            if let Some((sums, offset, label)) = &earlier {
                let dashed = LineStyle::dashed_loose();
                for (name, column, sign) in [("out", 1, 1.0), ("in", 0, -1.0)] {
                    plot.line(
                        Line::new(format!("{name} {label}"), line(sums, column, sign, *offset))
                            .style(dashed),
                    );
                }
            }
            spans(plot, episodes)
        });
    finish(shown)
}

/// Flow traffic over time: the average and, dotted, the busiest bucket of each step
/// (only where a step holds several buckets: otherwise the two are the same line).
pub fn traffic(ui: &mut egui::Ui, range: (i64, i64), title: &str, data: &TrafficSeries) {
    ui.strong(title);
    let column = |pick: fn(&cdot_crds::wire::network::TrafficPoint) -> f64| {
        PlotPoints::from(
            data.points
                .iter()
                .map(|p| [x(p.0), pick(p)])
                .collect::<Vec<_>>(),
        )
    };
    plot("traffic", "bit/s", range)
        .legend(legend())
        .y_axis_formatter(|mark, _| units::bps(mark.value))
        .include_y(0.0)
        .show(ui, |plot| {
            plot.line(Line::new("bits/s", column(|p| p.1)));
            if data.step_ms > data.bucket_ms {
                plot.line(Line::new("peak", column(|p| p.2)).style(LineStyle::dotted_dense()));
            }
        });
}

/// In and out utilisation of one interface, in percent of `speed_bps`.
pub fn utilisation(
    ui: &mut egui::Ui,
    range: (i64, i64),
    id: &str,
    data: &BandwidthResponse,
    speed_bps: i64,
) {
    if speed_bps <= 0 {
        ui.weak("The interface's speed is unknown: no utilisation.");
        return;
    }
    ui.strong("Utilisation");
    let sums = totals(data);
    let percent = |column: usize| {
        PlotPoints::from(
            sums.iter()
                .map(|(ms, v)| [x(*ms), 100.0 * v[column] / speed_bps as f64])
                .collect::<Vec<_>>(),
        )
    };
    plot(id, "%", range)
        .legend(legend())
        .include_y(0.0)
        .show(ui, |plot| {
            plot.line(Line::new("out", percent(1)));
            plot.line(Line::new("in", percent(0)));
        });
}

/// Errors and discards of the interfaces in `data`, per bucket.
pub fn errors(ui: &mut egui::Ui, range: (i64, i64), id: &str, data: &BandwidthResponse) {
    ui.strong("Errors and discards per bucket");
    let mut sums: BTreeMap<i64, [i64; 4]> = BTreeMap::new();
    for p in data.series.iter().flat_map(|s| &s.points) {
        let sum = sums.entry(p.0).or_default();
        for (total, value) in sum.iter_mut().zip([p.7, p.8, p.9, p.10]) {
            *total += value;
        }
    }
    let column = |c: usize| {
        PlotPoints::from(
            sums.iter()
                .map(|(ms, v)| [x(*ms), v[c] as f64])
                .collect::<Vec<_>>(),
        )
    };
    plot(id, "count", range)
        .legend(legend())
        .include_y(0.0)
        .show(ui, |plot| {
            for (c, name) in ["errors in", "errors out", "discards in", "discards out"]
                .into_iter()
                .enumerate()
            {
                plot.line(Line::new(name, column(c)));
            }
        });
}

/// A probe chart: title, unit, and its column of a point.
type ProbeChart = (&'static str, &'static str, fn(&ProbePoint) -> Option<f64>);

/// Latency, jitter and loss per probe target, with `episodes` as spans; the range to zoom
/// to when an episode was clicked.
pub fn probes(
    ui: &mut egui::Ui,
    range: (i64, i64),
    data: &ProbeSeriesResponse,
    episodes: &[Episode],
) -> Option<(i64, i64)> {
    let mut zoom = None;
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
        let mut chart = plot(&format!("probe-{title}"), unit, range);
        // The three charts draw the targets in the same order and colours: one legend.
        if title == "latency" {
            chart = chart.legend(legend());
        }
        let shown = chart.include_y(0.0).show(ui, |plot| {
            for (i, series) in data.series.iter().take(MAX_TARGETS).enumerate() {
                let points: Vec<[f64; 2]> = series
                    .points
                    .iter()
                    .filter_map(|p| value(p).map(|v| [x(p.0), v]))
                    .collect();
                plot.line(Line::new(name(i), points));
            }
            spans(plot, episodes)
        });
        zoom = zoom.or(finish(shown));
    }
    zoom
}

#[cfg(test)]
mod tests {
    use cdot_crds::wire::network::{BandwidthPoint, BandwidthSeries, Resolution};

    use super::*;

    /// A point with these averages and maxima, zero in the other columns.
    fn point(ms: i64, v: [f64; 4]) -> BandwidthPoint {
        let mut row = vec![serde_json::json!(ms)];
        row.extend(v.iter().map(|x| serde_json::json!(x)));
        row.resize(BandwidthPoint::COLUMNS.len(), serde_json::json!(0));
        serde_json::from_value(serde_json::Value::Array(row)).expect("point")
    }

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
                series("a", vec![point(0, [1.0, 2.0, 3.0, 4.0])]),
                series(
                    "b",
                    vec![
                        point(0, [10.0, 20.0, 30.0, 40.0]),
                        point(60_000, [5.0, 5.0, 5.0, 5.0]),
                    ],
                ),
            ],
        };
        let sums = totals(&data);
        assert_eq!(sums[&0], [11.0, 22.0, 33.0, 44.0]);
        assert_eq!(sums[&60_000], [5.0, 5.0, 5.0, 5.0]);
    }
}
