//! Devices: inventory and status of a namespace, offline ones first, with search and a
//! status filter.
use std::time::Duration;

use cdot_crds::{common::ConditionStatus, device::Device};

use crate::{
    api::{ApiError, fetch::Panel, routes},
    app::{Shared, connection_error},
    widgets::{status, time},
};

/// Inventory changes slowly; liveness is what this refresh is for.
const REFRESH: Duration = Duration::from_secs(30);

/// How a Device is doing, from its `Ready` condition; the order is the list's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Health {
    /// Reported before, stopped reporting.
    Offline,
    /// The spec is invalid.
    Invalid,
    /// Nothing has reported for it yet.
    NeverReported,
    Unknown,
    /// Monitoring paused by maintenance.
    Paused,
    Online,
}

impl Health {
    pub fn of(device: &Device) -> Self {
        let ready = device
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"));
        match ready {
            Some(c) if c.status == ConditionStatus::True => Self::Online,
            Some(c) => match c.reason.as_str() {
                "Offline" => Self::Offline,
                "Invalid" => Self::Invalid,
                "NotReporting" => Self::NeverReported,
                "MaintenancePaused" => Self::Paused,
                _ => Self::Unknown,
            },
            None => Self::Unknown,
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Offline => "offline",
            Self::Invalid => "invalid",
            Self::NeverReported => "never reported",
            Self::Unknown => "unknown",
            Self::Paused => "paused",
            Self::Online => "online",
        }
    }

    fn color(self, visuals: &egui::Visuals) -> egui::Color32 {
        match self {
            Self::Offline | Self::Invalid => visuals.error_fg_color,
            Self::NeverReported | Self::Unknown => visuals.warn_fg_color,
            Self::Paused => visuals.weak_text_color(),
            Self::Online => egui::Color32::from_rgb(80, 180, 90),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Show {
    #[default]
    All,
    NotOnline,
    Online,
}

#[derive(Default)]
pub struct DevicesScreen {
    list: Panel<routes::DeviceList>,
    /// Namespace and connection epoch of the last call.
    fetched: Option<(String, u64)>,
    search: String,
    show: Show,
}

impl DevicesScreen {
    /// Returns a connection error for the app to handle.
    pub fn ui(&mut self, ui: &mut egui::Ui, shared: &Shared<'_>) -> Option<ApiError> {
        let lost = connection_error(self.list.poll());
        let key = (shared.namespace.to_owned(), shared.epoch);
        let stale = self
            .list
            .answered_at()
            .is_some_and(|at| at.elapsed() >= REFRESH);
        if self.fetched.as_ref() != Some(&key) || stale {
            self.fetch(shared);
        }
        ui.ctx().request_repaint_after(REFRESH);

        ui.horizontal(|ui| {
            ui.heading(format!("Devices in {}", shared.namespace));
            if ui.button("Refresh devices").clicked() {
                self.fetch(shared);
            }
        });
        ui.horizontal(|ui| {
            let label = ui.label("Search");
            ui.add(
                egui::TextEdit::singleline(&mut self.search)
                    .hint_text("name, site, class, OS")
                    .desired_width(220.0),
            )
            .labelled_by(label.id);
            ui.separator();
            ui.selectable_value(&mut self.show, Show::All, "All");
            ui.selectable_value(&mut self.show, Show::NotOnline, "Not online");
            ui.selectable_value(&mut self.show, Show::Online, "Online");
        });
        if status::show(ui, &self.list, "devices") {
            self.fetch(shared);
        }
        if let Some(list) = self.list.data() {
            self.table(ui, &list.items);
        }
        lost
    }

    fn fetch(&mut self, shared: &Shared<'_>) {
        self.fetched = Some((shared.namespace.to_owned(), shared.epoch));
        self.list.request(
            shared.fetcher,
            routes::devices(shared.fetcher.client(), shared.namespace),
        );
    }

    fn table(&self, ui: &mut egui::Ui, items: &[Device]) {
        let rows = visible(items, &self.search, self.show);
        let offline = items
            .iter()
            .filter(|d| Health::of(d) == Health::Offline)
            .count();
        ui.label(format!(
            "{} of {} devices shown, {offline} offline",
            rows.len(),
            items.len()
        ));
        let now = jiff::Timestamp::now();
        egui::ScrollArea::both().show(ui, |ui| {
            egui::Grid::new("devices")
                .striped(true)
                .num_columns(9)
                .show(ui, |ui| {
                    for title in [
                        "Status",
                        "Name",
                        "Class",
                        "Site",
                        "OS",
                        "Last seen",
                        "CPU",
                        "Memory",
                        "Firing",
                    ] {
                        ui.strong(title);
                    }
                    ui.end_row();
                    for (health, device) in rows {
                        row(ui, health, device, now);
                    }
                });
        });
    }
}

/// The devices that match `search` and `show`, worst health first, then by name.
fn visible<'a>(items: &'a [Device], search: &str, show: Show) -> Vec<(Health, &'a Device)> {
    let needle = search.trim().to_lowercase();
    let mut rows: Vec<(Health, &Device)> = items
        .iter()
        .map(|d| (Health::of(d), d))
        .filter(|(h, _)| match show {
            Show::All => true,
            Show::NotOnline => *h != Health::Online,
            Show::Online => *h == Health::Online,
        })
        .filter(|(_, d)| needle.is_empty() || haystack(d).contains(&needle))
        .collect();
    rows.sort_by(|(a, x), (b, y)| a.cmp(b).then_with(|| name(x).cmp(name(y))));
    rows
}

fn name(device: &Device) -> &str {
    device.metadata.name.as_deref().unwrap_or_default()
}

fn haystack(device: &Device) -> String {
    let inventory = device.status.as_ref().and_then(|s| s.inventory.as_ref());
    [
        Some(name(device)),
        device.spec.display_name.as_deref(),
        device.spec.site.as_deref(),
        Some(class(device)),
        inventory.and_then(|i| i.os_name.as_deref()),
        inventory.and_then(|i| i.hostname.as_deref()),
    ]
    .into_iter()
    .flatten()
    .collect::<Vec<_>>()
    .join(" ")
    .to_lowercase()
}

fn class(device: &Device) -> &'static str {
    use cdot_crds::device::DeviceClass as C;
    match device.spec.class {
        C::Workstation => "Workstation",
        C::Server => "Server",
        C::Router => "Router",
        C::Switch => "Switch",
        C::Firewall => "Firewall",
        C::AccessPoint => "AccessPoint",
        C::Printer => "Printer",
        C::Collector => "Collector",
        C::Other => "Other",
    }
}

fn row(ui: &mut egui::Ui, health: Health, device: &Device, now: jiff::Timestamp) {
    let status = device.status.as_ref();
    let ready_message = status
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.message.clone())
        .unwrap_or_default();
    ui.colored_label(health.color(ui.visuals()), health.label())
        .on_hover_text(ready_message);
    ui.label(name(device));
    ui.label(class(device));
    ui.label(device.spec.site.as_deref().unwrap_or("—"));
    let inventory = status.and_then(|s| s.inventory.as_ref());
    ui.label(
        inventory
            .map(|i| {
                [i.os_name.as_deref(), i.os_version.as_deref()]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "—".into()),
    );
    ui.label(
        status
            .and_then(|s| s.agent.as_ref())
            .and_then(|a| a.last_seen.as_deref())
            .map_or_else(|| "never".into(), |at| time::age(at, now)),
    );
    let metrics = status.and_then(|s| s.last_metrics.as_ref());
    let percent = |v: Option<f64>| v.map_or_else(|| "—".into(), |v| format!("{v:.0} %"));
    ui.label(percent(metrics.and_then(|m| m.cpu_percent)));
    ui.label(percent(metrics.and_then(|m| m.memory_percent)));
    let firing = status.and_then(|s| s.firing_alerts).unwrap_or(0);
    if firing > 0 {
        ui.colored_label(ui.visuals().error_fg_color, firing.to_string());
    } else {
        ui.label("0");
    }
    ui.end_row();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(name: &str, ready: Option<(&str, &str)>) -> Device {
        let conditions = ready.map_or_else(Vec::new, |(status, reason)| {
            vec![serde_json::json!({"type": "Ready", "status": status, "reason": reason})]
        });
        serde_json::from_value(serde_json::json!({
            "apiVersion": "rmm.cdot.io/v1alpha1", "kind": "Device",
            "metadata": {"name": name, "namespace": "acme"},
            "spec": {"class": "Server", "site": "hq"},
            "status": {"conditions": conditions},
        }))
        .expect("device")
    }

    #[test]
    fn offline_devices_come_first_then_names() {
        let items = [
            device("a-online", Some(("True", "Reporting"))),
            device("b-never", Some(("False", "NotReporting"))),
            device("z-offline", Some(("False", "Offline"))),
            device("c-nostatus", None),
        ];
        let names: Vec<&str> = visible(&items, "", Show::All)
            .into_iter()
            .map(|(_, d)| name(d))
            .collect();
        assert_eq!(names, ["z-offline", "b-never", "c-nostatus", "a-online"]);
        let names: Vec<&str> = visible(&items, "ONLINE", Show::All)
            .into_iter()
            .map(|(_, d)| name(d))
            .collect();
        assert_eq!(names, ["a-online"]);
        assert_eq!(visible(&items, "", Show::NotOnline).len(), 3);
    }
}
