//! One interface in a window of its own: its bandwidth, utilisation, errors and discards
//! over the screen's range, and the top talkers whose flows crossed it.
use cdot_crds::wire::{
    alert::Alert,
    network::{BandwidthResponse, InterfaceStats, Rank, Talker, TalkerKey, TopTalkers},
};

use super::{
    charts,
    episodes::{self, Concern},
    interfaces, talkers,
};
use crate::{
    api::{
        ApiError,
        fetch::{Fetcher, Panel},
        routes::{self, NetworkScope},
    },
    app::connection_error,
    widgets::{status, units},
};

/// What a frame of the window asks of the screen.
#[derive(Default)]
pub struct Outcome {
    /// A connection error for the app.
    pub lost: Option<ApiError>,
    /// Fetch again (the user pressed Retry).
    pub retry: bool,
    /// The range of an alert episode clicked.
    pub zoom: Option<(i64, i64)>,
    /// A talker clicked: filter the traffic chart to it.
    pub talker: Option<Talker>,
}

pub struct Drill {
    interface: InterfaceStats,
    bandwidth: Panel<BandwidthResponse>,
    talkers: Panel<TopTalkers>,
    table: talkers::Table,
    /// The screen's fetch generation this was last fetched for.
    fetched: Option<u64>,
    /// The range of the last fetch, in Unix ms (the charts show it whole).
    range: (i64, i64),
}

impl Drill {
    pub fn new(interface: InterfaceStats) -> Self {
        Self {
            interface,
            bandwidth: Panel::default(),
            talkers: Panel::default(),
            table: talkers::Table::default(),
            fetched: None,
            range: (0, 0),
        }
    }

    pub fn title(&self) -> String {
        format!(
            "Interface {} {}",
            self.interface.device, self.interface.interface
        )
    }

    /// Fetches for `scope`'s range once per fetch `generation` of the screen (its range
    /// changed, it was refreshed), or again when `generation` is `None` (a retry).
    pub fn fetch(
        &mut self,
        fetcher: &Fetcher,
        scope: NetworkScope<'_>,
        points: usize,
        generation: Option<u64>,
    ) {
        if generation.is_some() && self.fetched == generation {
            return;
        }
        self.fetched = generation.or(self.fetched);
        self.range = (scope.from_ms, scope.to_ms);
        let scope = NetworkScope {
            site: None,
            device: Some(&self.interface.device),
            interface: Some(&self.interface.interface),
            ..scope
        };
        let api = fetcher.client();
        self.bandwidth
            .request(fetcher, routes::bandwidth(api, scope, points));
        self.talkers.request(
            fetcher,
            routes::top_talkers(api, scope, TalkerKey::Pairs, Rank::Bytes, 10),
        );
    }

    /// The window's contents, with the episodes of the interface's alerts among `alerts`.
    pub fn ui(&mut self, ui: &mut egui::Ui, alerts: &[Alert], now_ms: i64) -> Outcome {
        let lost =
            connection_error(self.bandwidth.poll()).or(connection_error(self.talkers.poll()));
        let mut retry = false;
        let i = &self.interface;
        ui.label(format!(
            "{}{} · ifIndex {} · speed {} · status {} ({} changes)",
            i.site
                .as_deref()
                .map(|s| format!("site {s} · "))
                .unwrap_or_default(),
            if i.alias.is_empty() {
                "no alias"
            } else {
                &i.alias
            },
            i.if_index,
            if i.speed_bps > 0 {
                units::bps(i.speed_bps as f64)
            } else {
                "unknown".into()
            },
            interfaces::oper_status(i.oper_status),
            i.status_changes
        ));
        ui.label(format!(
            "errors in/out {} / {} · discards in/out {} / {} over the range",
            i.errors.inbound, i.errors.outbound, i.discards.inbound, i.discards.outbound
        ));
        retry |= status::show(ui, &self.bandwidth, "interface bandwidth");
        let concern = Concern::Interfaces {
            device: Some(&self.interface.device),
            interface: Some(&self.interface.interface),
        };
        let spans = episodes::of(alerts, concern, now_ms);
        let mut zoom = None;
        let mut talker = None;
        if let Some(data) = self.bandwidth.data() {
            zoom = charts::bandwidth(
                ui,
                self.range,
                "drill-bandwidth",
                "Bandwidth (out up, in down)",
                data,
                None,
                &spans,
            );
            charts::utilisation(
                ui,
                self.range,
                "drill-utilisation",
                data,
                self.interface.speed_bps,
            );
            charts::errors(ui, self.range, "drill-errors", data);
        }
        ui.strong("Top talkers through it");
        retry |= status::show(ui, &self.talkers, "interface talkers");
        if let Some(data) = self.talkers.data() {
            talker = self.table.ui(ui, data, None);
        }
        Outcome {
            lost,
            retry,
            zoom,
            talker,
        }
    }
}
