//! Network performance, the first screen: a site and a time range, the bandwidth and
//! probe charts, top talkers beside them, the interface report, and the worst interfaces
//! and probe targets per site.
//!
//! Five panels fetch independently (one slow query does not hold the others back); the
//! charts ask for no more points than the plot is wide, so a 7-day range costs what a
//! 15-minute one does to draw.
mod charts;
mod drill;
mod episodes;
mod interfaces;
mod sites;
mod talkers;

use std::time::Instant;

use cdot_crds::wire::{
    alert::AlertList,
    network::{
        BandwidthResponse, InterfaceReport, ProbeSeriesResponse, Rank, SiteSummary, Talker,
        TalkerKey, TopTalkers, TrafficSeries,
    },
};

use crate::{
    api::{
        ApiError,
        fetch::{Panel, Status},
        routes::{self, NetworkScope},
    },
    app::{Shared, connection_error},
    widgets::{
        range::{Preset, TimeRange},
        status,
    },
};

/// Rows of the top talkers table.
const TALKERS: usize = 25;
/// Worst interfaces and probe targets listed per site.
const WORST_PER_SITE: usize = 5;
/// Fewest and most points a chart asks for per series.
const POINTS: (usize, usize) = (60, 4000);

const DAY_MS: i64 = 24 * 3_600_000;

/// The previous period drawn under the bandwidth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compare {
    Off,
    DayBefore,
    WeekBefore,
}

impl Compare {
    fn offset_ms(self) -> Option<i64> {
        match self {
            Self::Off => None,
            Self::DayBefore => Some(DAY_MS),
            Self::WeekBefore => Some(7 * DAY_MS),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::DayBefore => "a day before",
            Self::WeekBefore => "a week before",
        }
    }
}

/// What the charts and tables were fetched for; a change fetches again.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    namespace: String,
    site: Option<String>,
    length_ms: i64,
    end_ms: Option<i64>,
    compare: Compare,
    epoch: u64,
}

pub struct NetworkScreen {
    range: TimeRange,
    site: Option<String>,
    by: TalkerKey,
    rank: Rank,
    compare: Compare,
    bandwidth: Panel<BandwidthResponse>,
    /// The bandwidth of the period `compare` names.
    previous: Panel<BandwidthResponse>,
    probes: Panel<ProbeSeriesResponse>,
    talkers: Panel<TopTalkers>,
    interfaces: Panel<InterfaceReport>,
    sites: Panel<SiteSummary>,
    /// Alerts open at some time in the range, drawn as episodes on the charts.
    alerts: Panel<AlertList>,
    /// Flow traffic over time, all of it or `talker`'s.
    traffic: Panel<TrafficSeries>,
    /// The talker the traffic chart is filtered to (clicked in a talkers table).
    talker: Option<Talker>,
    /// The talker of the last traffic call.
    traffic_fetched: Option<(Key, Option<Talker>)>,
    fetched: Option<Key>,
    /// By and rank of the last talkers call.
    talkers_fetched: Option<(Key, TalkerKey, Rank)>,
    fetched_at: Option<Instant>,
    /// Counts the screen's fetches (the drill-down follows them).
    generation: u64,
    /// Width of the charts in points.
    chart_width: f32,
    talkers_table: talkers::Table,
    interfaces_table: interfaces::Table,
    drill: Option<drill::Drill>,
}

impl Default for NetworkScreen {
    fn default() -> Self {
        Self {
            range: TimeRange::default(),
            site: None,
            by: TalkerKey::Pairs,
            rank: Rank::Bytes,
            compare: Compare::Off,
            bandwidth: Panel::default(),
            previous: Panel::default(),
            probes: Panel::default(),
            talkers: Panel::default(),
            interfaces: Panel::default(),
            sites: Panel::default(),
            alerts: Panel::default(),
            traffic: Panel::default(),
            talker: None,
            traffic_fetched: None,
            fetched: None,
            talkers_fetched: None,
            fetched_at: None,
            generation: 0,
            chart_width: 800.0,
            talkers_table: talkers::Table::default(),
            interfaces_table: interfaces::Table::default(),
            drill: None,
        }
    }
}

impl NetworkScreen {
    /// The screen over the last `range`.
    pub fn new(range: Preset) -> Self {
        Self {
            range: TimeRange::of(range),
            ..Self::default()
        }
    }

    /// Whether every panel has the answer of its latest call: `Err` with the first
    /// failure (the first-screen benchmark waits for this).
    pub fn loaded(&self) -> Result<bool, ApiError> {
        let statuses = [
            self.bandwidth.status(),
            self.probes.status(),
            self.talkers.status(),
            self.interfaces.status(),
            self.sites.status(),
            self.alerts.status(),
            self.traffic.status(),
        ];
        let previous = (self.compare != Compare::Off).then(|| self.previous.status());
        let mut ready = true;
        for status in statuses.into_iter().chain(previous) {
            match status {
                Status::Ready { .. } => {}
                Status::Failed { error, .. } => return Err(error.clone()),
                Status::Idle | Status::Loading { .. } => ready = false,
            }
        }
        Ok(ready)
    }

    /// Returns a connection error for the app to handle.
    pub fn ui(&mut self, ui: &mut egui::Ui, shared: &Shared<'_>) -> Option<ApiError> {
        let lost = [
            connection_error(self.bandwidth.poll()),
            connection_error(self.previous.poll()),
            connection_error(self.probes.poll()),
            connection_error(self.talkers.poll()),
            connection_error(self.interfaces.poll()),
            connection_error(self.sites.poll()),
            connection_error(self.alerts.poll()),
            connection_error(self.traffic.poll()),
        ]
        .into_iter()
        .flatten()
        .next();
        let now_ms = jiff::Timestamp::now().as_millisecond();

        ui.horizontal(|ui| {
            ui.heading(format!("Network in {}", shared.namespace));
            ui.separator();
            self.site_ui(ui);
            ui.separator();
            ui.label("Compare with");
            for compare in [Compare::Off, Compare::DayBefore, Compare::WeekBefore] {
                ui.selectable_value(&mut self.compare, compare, compare.label());
            }
        });
        let asked = self.range.ui(ui, now_ms);
        // The charts take the left half.
        self.chart_width = (ui.available_width() - ui.spacing().item_spacing.x) / 2.0;
        self.fetch_due(ui.ctx(), shared, now_ms, asked);

        let alerts = self.alerts.data().map_or(&[][..], |l| &l.items[..]);
        let all_interfaces = episodes::Concern::Interfaces {
            device: None,
            interface: None,
        };
        let interface_episodes = episodes::of(alerts, all_interfaces, now_ms);
        let probe_episodes = episodes::of(alerts, episodes::Concern::Probes, now_ms);
        let mut zoom = None;
        let window = self.range.window(now_ms);
        egui::ScrollArea::vertical().show(ui, |ui| {
            ui.columns(2, |columns| {
                let [left, right] = columns else { return };
                if status::show(left, &self.bandwidth, "bandwidth") {
                    self.fetch(shared, now_ms);
                }
                if self.compare != Compare::Off
                    && status::show(left, &self.previous, "previous period")
                {
                    self.fetch(shared, now_ms);
                }
                if let Some(data) = self.bandwidth.data().filter(|d| d.series.is_empty()) {
                    left.strong("Bandwidth");
                    left.weak(format!(
                        "No interface in {} is polled over SNMP: a Device with spec.snmp adds its interfaces here.",
                        data.namespace
                    ));
                } else if let Some(data) = self.bandwidth.data() {
                    let previous = self.compare.offset_ms().and_then(|offset_ms| {
                        Some(charts::Previous {
                            data: self.previous.data()?,
                            offset_ms,
                            label: self.compare.label(),
                        })
                    });
                    let title = format!("Bandwidth of {} (out up, in down)", charts::what(data));
                    zoom = zoom.or(charts::bandwidth(
                        left,
                        window,
                        "bandwidth",
                        &title,
                        data,
                        previous,
                        &interface_episodes,
                    ));
                }
                if let Some(clicked) = self.traffic_ui(left, shared, now_ms) {
                    self.talker = clicked;
                }
                if status::show(left, &self.probes, "probes") {
                    self.fetch(shared, now_ms);
                }
                if let Some(data) = self.probes.data().filter(|d| d.series.is_empty()) {
                    left.strong("Probes");
                    left.weak(format!(
                        "No probe results in {}: a Device's spec.probes are run by its site's collector.",
                        data.namespace
                    ));
                } else if let Some(data) = self.probes.data() {
                    zoom = zoom.or(charts::probes(left, window, data, &probe_episodes));
                }
                self.talkers_ui(right, shared, now_ms);
            });
            ui.separator();
            ui.heading("Interfaces");
            if status::show(ui, &self.interfaces, "interfaces") {
                self.fetch(shared, now_ms);
            }
            if let Some(report) = self.interfaces.data()
                && let Some(interface) = self.interfaces_table.ui(ui, &report.items)
            {
                self.drill = Some(drill::Drill::new(interface));
            }
            ui.separator();
            ui.heading("Worst per site");
            if status::show(ui, &self.sites, "sites") {
                self.fetch(shared, now_ms);
            }
            if let Some(summary) = self.sites.data() {
                sites::ui(ui, summary, self.site.as_deref());
            }
        });
        let drill = self.drill_ui(ui.ctx(), shared, now_ms);
        if let Some((from, to)) = zoom.or(drill.zoom) {
            self.range.zoom_to(from, to, now_ms);
        }
        if let Some(talker) = drill.talker {
            self.toggle_talker(talker);
        }
        lost.or(drill.lost)
    }

    /// Filters the traffic chart to `talker`, or back to all traffic when it was the filter.
    fn toggle_talker(&mut self, talker: Talker) {
        let same = self
            .talker
            .as_ref()
            .is_some_and(|t| talkers::same_key(t, &talker));
        self.talker = (!same).then_some(talker);
    }

    /// The traffic chart with its filter; `Some(None)` when the filter was cleared.
    fn traffic_ui(
        &mut self,
        ui: &mut egui::Ui,
        shared: &Shared<'_>,
        now_ms: i64,
    ) -> Option<Option<Talker>> {
        let mut cleared = false;
        let by = self.talkers.data().map_or(TalkerKey::Pairs, |t| t.by);
        let title = match &self.talker {
            Some(t) => {
                let name = talkers::describe(by, t);
                ui.horizontal(|ui| {
                    ui.label(format!("Filtered to {name}"));
                    cleared = ui.button("Show all traffic").clicked();
                });
                format!("Flow traffic of {name}")
            }
            None => "Flow traffic".to_owned(),
        };
        if status::show(ui, &self.traffic, "traffic") {
            self.fetch_traffic(shared, now_ms);
        }
        if let Some(data) = self.traffic.data() {
            charts::traffic(ui, self.range.window(now_ms), &title, data);
        }
        cleared.then_some(None)
    }

    /// The drill-down window of the clicked interface, fetched for the screen's range.
    fn drill_ui(
        &mut self,
        ctx: &egui::Context,
        shared: &Shared<'_>,
        now_ms: i64,
    ) -> drill::Outcome {
        let points = self.points();
        let Some(drill) = self.drill.as_mut() else {
            return drill::Outcome::default();
        };
        let alerts = self.alerts.data().map_or(&[][..], |l| &l.items[..]);
        let (from_ms, to_ms) = self.range.window(now_ms);
        let generation = self.generation;
        // The drill follows the screen: a new range or an auto-refresh fetches it too.
        let scope = NetworkScope {
            namespace: shared.namespace,
            site: None,
            device: None,
            interface: None,
            from_ms,
            to_ms,
        };
        drill.fetch(shared.fetcher, scope, points, Some(generation));
        let mut open = true;
        let answer = egui::Window::new(drill.title())
            .open(&mut open)
            .default_size([640.0, 560.0])
            .vscroll(true)
            .show(ctx, |ui| drill.ui(ui, alerts, now_ms))
            .and_then(|r| r.inner);
        let outcome = answer.unwrap_or_default();
        if outcome.retry {
            drill.fetch(shared.fetcher, scope, points, None);
        }
        if !open {
            self.drill = None;
        }
        outcome
    }

    /// Points per series: one per point of the charts' width, within bounds.
    fn points(&self) -> usize {
        (self.chart_width.round() as usize).clamp(POINTS.0, POINTS.1)
    }

    fn site_ui(&mut self, ui: &mut egui::Ui) {
        // The summary is fetched for every site, so it also lists the sites to pick.
        let known: Vec<String> = self
            .sites
            .data()
            .map(|s| s.sites.iter().filter_map(|w| w.site.clone()).collect())
            .unwrap_or_default();
        let label = ui.label("Site");
        egui::ComboBox::from_id_salt("site")
            .selected_text(self.site.as_deref().unwrap_or("All sites"))
            .show_ui(ui, |ui| {
                ui.selectable_value(&mut self.site, None, "All sites");
                for site in known {
                    ui.selectable_value(&mut self.site, Some(site.clone()), site);
                }
            })
            .response
            .labelled_by(label.id);
    }

    fn key(&self, shared: &Shared<'_>) -> Key {
        Key {
            namespace: shared.namespace.to_owned(),
            site: self.site.clone(),
            length_ms: self.range.length_ms,
            end_ms: self.range.end_ms,
            compare: self.compare,
            epoch: shared.epoch,
        }
    }

    /// Fetches when what is shown changed, when the user asked, or when auto-refresh is due
    /// (only while the range ends now: a past range does not change).
    fn fetch_due(&mut self, ctx: &egui::Context, shared: &Shared<'_>, now_ms: i64, asked: bool) {
        let key = self.key(shared);
        if asked || self.fetched.as_ref() != Some(&key) {
            self.fetch(shared, now_ms);
            return;
        }
        if self.talkers_fetched != Some((key.clone(), self.by, self.rank)) {
            self.fetch_talkers(shared, now_ms);
        }
        if self.traffic_fetched != Some((key, self.talker.clone())) {
            self.fetch_traffic(shared, now_ms);
        }
        if let (Some(every), Some(at), true) = (
            self.range.refresh.every(),
            self.fetched_at,
            self.range.is_live(),
        ) {
            match every.checked_sub(at.elapsed()) {
                Some(left) if !left.is_zero() => ctx.request_repaint_after(left),
                _ => self.fetch(shared, now_ms),
            }
        }
    }

    fn scope<'a>(&'a self, shared: &Shared<'a>, now_ms: i64) -> NetworkScope<'a> {
        let (from_ms, to_ms) = self.range.window(now_ms);
        NetworkScope {
            namespace: shared.namespace,
            site: self.site.as_deref(),
            device: None,
            interface: None,
            from_ms,
            to_ms,
        }
    }

    fn fetch(&mut self, shared: &Shared<'_>, now_ms: i64) {
        let api = shared.fetcher.client();
        let points = self.points();
        let scope = self.scope(shared, now_ms);
        let alerts = routes::alerts_between(api, scope);
        let previous = self.compare.offset_ms().map(|offset| {
            let earlier = NetworkScope {
                from_ms: scope.from_ms - offset,
                to_ms: scope.to_ms - offset,
                ..scope
            };
            routes::total_bandwidth(api, earlier, points)
        });
        let calls = (
            routes::total_bandwidth(api, scope, points),
            routes::probes(api, scope, points),
            routes::interfaces(api, scope),
            routes::sites(api, scope, WORST_PER_SITE),
        );
        self.bandwidth.request(shared.fetcher, calls.0);
        self.probes.request(shared.fetcher, calls.1);
        self.interfaces.request(shared.fetcher, calls.2);
        self.sites.request(shared.fetcher, calls.3);
        if let Some(call) = previous {
            self.previous.request(shared.fetcher, call);
        }
        self.alerts.request(shared.fetcher, alerts);
        self.fetch_talkers(shared, now_ms);
        self.fetch_traffic(shared, now_ms);
        self.fetched = Some(self.key(shared));
        self.fetched_at = Some(Instant::now());
        self.generation += 1;
    }

    fn fetch_talkers(&mut self, shared: &Shared<'_>, now_ms: i64) {
        let call = routes::top_talkers(
            shared.fetcher.client(),
            self.scope(shared, now_ms),
            self.by,
            self.rank,
            TALKERS,
        );
        self.talkers.request(shared.fetcher, call);
        self.talkers_fetched = Some((self.key(shared), self.by, self.rank));
    }

    fn fetch_traffic(&mut self, shared: &Shared<'_>, now_ms: i64) {
        let call = routes::traffic(
            shared.fetcher.client(),
            self.scope(shared, now_ms),
            self.talker.as_ref(),
            self.points(),
        );
        self.traffic.request(shared.fetcher, call);
        self.traffic_fetched = Some((self.key(shared), self.talker.clone()));
    }

    fn talkers_ui(&mut self, ui: &mut egui::Ui, shared: &Shared<'_>, now_ms: i64) {
        ui.heading("Top talkers");
        ui.horizontal_wrapped(|ui| {
            for key in TalkerKey::ALL {
                ui.selectable_value(&mut self.by, key, talkers::key_title(key));
            }
        });
        ui.horizontal(|ui| {
            ui.label("Rank by");
            ui.selectable_value(&mut self.rank, Rank::Bytes, "bytes");
            ui.selectable_value(&mut self.rank, Rank::Packets, "packets");
        });
        if status::show(ui, &self.talkers, "top talkers") {
            self.fetch_talkers(shared, now_ms);
        }
        if let Some(data) = self.talkers.data()
            && let Some(talker) = self.talkers_table.ui(ui, data, self.talker.as_ref())
        {
            self.toggle_talker(talker);
        }
    }
}
