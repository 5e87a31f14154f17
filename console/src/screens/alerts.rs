//! Alerts: firing and recent alerts of a namespace; the selected one with its history,
//! acknowledged with a comment or silenced for a while; the silences not yet ended, which
//! can be ended (all three need an operator token: the API's refusal is shown as it words
//! it).
use std::time::Duration;

use cdot_crds::{
    alert_rule::Severity,
    wire::alert::{
        AcknowledgeRequest, Alert, AlertDetail, AlertList, AlertState, Matcher, Silence,
        SilenceList, SilenceRequest,
    },
};
use uuid::Uuid;

use crate::{
    api::{ApiError, fetch::Panel, routes, routes::AlertScope},
    app::{Shared, connection_error},
    widgets::{status, time, units},
};

/// Open alerts change on every ingest batch; a short refresh keeps the list honest.
const REFRESH: Duration = Duration::from_secs(10);
/// "Recent" looks back this far.
const RECENT_HOURS: i64 = 24;

/// How long a silence lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lasting {
    Hour,
    FourHours,
    Day,
    Custom,
}

impl Lasting {
    const ALL: [Self; 4] = [Self::Hour, Self::FourHours, Self::Day, Self::Custom];

    fn label(self) -> &'static str {
        match self {
            Self::Hour => "1 h",
            Self::FourHours => "4 h",
            Self::Day => "1 d",
            Self::Custom => "Custom",
        }
    }
}

/// A silence length typed by people: `90m`, `2h`, `1h 30m`, `3d`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let span: jiff::Span = text.trim().parse().ok()?;
    let duration = span
        .to_duration(jiff::SpanRelativeTo::days_are_24_hours())
        .ok()?;
    Duration::try_from(duration).ok().filter(|d| !d.is_zero())
}

pub struct AlertsScreen {
    list: Panel<AlertList>,
    scope: AlertScope,
    /// Namespace, scope and connection epoch of the last list call.
    fetched: Option<(String, AlertScope, u64)>,
    selected: Option<Uuid>,
    detail: Panel<AlertDetail>,
    comment: String,
    lasting: Lasting,
    custom: String,
    acknowledge: Panel<()>,
    silence: Panel<Silence>,
    /// Silences not yet ended.
    silences: Panel<SilenceList>,
    end: Panel<()>,
    /// What the last action did, for the line under the buttons.
    outcome: Option<Result<String, String>>,
}

impl Default for AlertsScreen {
    fn default() -> Self {
        Self {
            list: Panel::default(),
            scope: AlertScope::Open,
            fetched: None,
            selected: None,
            detail: Panel::default(),
            comment: String::new(),
            lasting: Lasting::Hour,
            custom: "2h".into(),
            acknowledge: Panel::default(),
            silence: Panel::default(),
            silences: Panel::default(),
            end: Panel::default(),
            outcome: None,
        }
    }
}

impl AlertsScreen {
    /// Returns a connection error for the app to handle.
    pub fn ui(&mut self, ui: &mut egui::Ui, shared: &Shared<'_>) -> Option<ApiError> {
        let mut lost = connection_error(self.list.poll());
        lost = lost.or(connection_error(self.detail.poll()));
        lost = lost.or(connection_error(self.silences.poll()));
        match self.end.poll() {
            Some(Ok(())) => self.done(shared, "Silence ended.".into()),
            Some(Err(e)) => self.outcome = Some(Err(e.to_string())),
            None => {}
        }
        match self.acknowledge.poll() {
            Some(Ok(())) => self.done(shared, "Acknowledged.".into()),
            Some(Err(e)) => self.outcome = Some(Err(e.to_string())),
            None => {}
        }
        match self.silence.poll() {
            Some(Ok(())) => {
                let until = self
                    .silence
                    .data()
                    .map(|s| time::stamp(&s.ends_at))
                    .unwrap_or_default();
                self.done(shared, format!("Silenced until {until} UTC."));
            }
            Some(Err(e)) => self.outcome = Some(Err(e.to_string())),
            None => {}
        }

        let key = (shared.namespace.to_owned(), self.scope, shared.epoch);
        let stale = self
            .list
            .answered_at()
            .is_some_and(|at| at.elapsed() >= REFRESH);
        if self.fetched.as_ref() != Some(&key) {
            self.selected = None;
            self.fetch(shared);
        } else if stale {
            self.fetch(shared);
        }
        ui.ctx().request_repaint_after(REFRESH);

        ui.horizontal(|ui| {
            ui.heading(format!("Alerts in {}", shared.namespace));
            ui.separator();
            ui.selectable_value(&mut self.scope, AlertScope::Open, "Open");
            ui.selectable_value(
                &mut self.scope,
                AlertScope::Recent {
                    hours: RECENT_HOURS,
                },
                "Last 24 h",
            );
            if ui.button("Refresh alerts").clicked() {
                self.fetch(shared);
            }
        });
        // What the last acknowledgement, silence or end did, where it is seen whatever is
        // selected.
        match &self.outcome {
            Some(Ok(message)) => {
                ui.label(message);
            }
            Some(Err(message)) => {
                ui.colored_label(ui.visuals().error_fg_color, message);
            }
            None => {}
        }
        if status::show(ui, &self.list, "alerts") {
            self.fetch(shared);
        }
        let selected = self
            .list
            .data()
            .and_then(|l| l.items.iter().find(|a| Some(a.id) == self.selected))
            .cloned();
        if self.list.data().is_some() {
            egui::Panel::right("alert-detail")
                .resizable(true)
                .default_size(380.0)
                .show(ui, |ui| match &selected {
                    Some(alert) => self.detail_ui(ui, shared, alert),
                    None if shared.may_act => {
                        ui.label("Select an alert to see its history, acknowledge or silence it.");
                    }
                    None => {
                        ui.label("Select an alert to see its history.");
                    }
                });
        }
        let Some(list) = self.list.data() else {
            return lost;
        };
        let mut items: Vec<&Alert> = list.items.iter().collect();
        // Firing before pending before resolved, the worst first, the newest first.
        items.sort_by(|a, b| {
            order(a.state)
                .cmp(&order(b.state))
                .then(b.severity.cmp(&a.severity))
                .then(b.started_at.cmp(&a.started_at))
        });
        let mut clicked = None;
        ui.label(units::plural(items.len(), "alert", "alerts"));
        egui::ScrollArea::both().show(ui, |ui| {
            egui::Grid::new("alerts")
                .striped(true)
                .num_columns(7)
                .show(ui, |ui| {
                    for title in [
                        "Severity", "State", "Summary", "Device", "Rule", "Site", "Since",
                    ] {
                        ui.strong(title);
                    }
                    ui.end_row();
                    for alert in &items {
                        severity(ui, alert.severity);
                        let state = match (alert.state, &alert.acknowledged) {
                            (s, Some(_)) if s != AlertState::Resolved => {
                                format!("{} (acked)", s.as_str())
                            }
                            (s, _) => s.as_str().to_owned(),
                        };
                        ui.label(state);
                        if ui
                            .selectable_label(self.selected == Some(alert.id), &alert.summary)
                            .clicked()
                        {
                            clicked = Some(alert.id);
                        }
                        ui.label(&alert.device);
                        ui.label(&alert.rule);
                        ui.label(alert.site.as_deref().unwrap_or("—"));
                        ui.label(time::stamp(&alert.started_at));
                        ui.end_row();
                    }
                });
        });
        if let Some(id) = clicked {
            self.select(shared, id);
        }
        ui.separator();
        self.silences_ui(ui, shared);
        lost
    }

    fn fetch(&mut self, shared: &Shared<'_>) {
        self.fetched = Some((shared.namespace.to_owned(), self.scope, shared.epoch));
        let now = jiff::Timestamp::now().as_millisecond();
        let api = shared.fetcher.client();
        self.list.request(
            shared.fetcher,
            routes::alerts(api, shared.namespace, self.scope, now),
        );
        self.silences
            .request(shared.fetcher, routes::silences(api, shared.namespace));
    }

    /// Silences not yet ended, each with an End button (those of Silence documents end in
    /// git, so they only say where they come from).
    fn silences_ui(&mut self, ui: &mut egui::Ui, shared: &Shared<'_>) {
        if status::show(ui, &self.silences, "silences") {
            self.fetch(shared);
        }
        let Some(list) = self.silences.data() else {
            return;
        };
        let mut end = None;
        egui::CollapsingHeader::new(format!("Silences ({})", list.items.len()))
            .default_open(true)
            .show(ui, |ui| {
                egui::Grid::new("silences").striped(true).show(ui, |ui| {
                    for s in &list.items {
                        let matchers: Vec<String> = s
                            .matchers
                            .iter()
                            .map(|m| format!("{}={}", m.label, m.value))
                            .collect();
                        ui.label(matchers.join(", "));
                        ui.label(format!("until {} UTC", time::stamp(&s.ends_at)));
                        ui.label(format!("by {}", s.created_by));
                        ui.label(&s.comment);
                        match &s.name {
                            Some(name) => {
                                ui.weak(format!("Silence {name} (ends in git)"));
                            }
                            None => {
                                if shared.may_act && ui.button("End silence").clicked() {
                                    end = Some(s.id);
                                }
                            }
                        }
                        ui.end_row();
                    }
                });
            });
        if let Some(id) = end {
            self.outcome = None;
            self.end.request(
                shared.fetcher,
                routes::end_silence(shared.fetcher.client(), shared.namespace, id),
            );
        }
    }

    fn select(&mut self, shared: &Shared<'_>, id: Uuid) {
        self.selected = Some(id);
        self.outcome = None;
        self.detail.request(
            shared.fetcher,
            routes::alert(shared.fetcher.client(), shared.namespace, id),
        );
    }

    /// After an action: say so, and read the list and the alert again.
    fn done(&mut self, shared: &Shared<'_>, message: String) {
        self.outcome = Some(Ok(message));
        self.comment.clear();
        self.fetch(shared);
        if let Some(id) = self.selected {
            self.detail.request(
                shared.fetcher,
                routes::alert(shared.fetcher.client(), shared.namespace, id),
            );
        }
    }

    fn detail_ui(&mut self, ui: &mut egui::Ui, shared: &Shared<'_>, alert: &Alert) {
        ui.heading(&alert.summary);
        egui::Grid::new("alert-fields")
            .num_columns(2)
            .show(ui, |ui| {
                let mut field = |name: &str, value: String| {
                    ui.weak(name);
                    ui.label(value);
                    ui.end_row();
                };
                field("Rule", alert.rule.clone());
                field("Device", alert.device.clone());
                field("Metric", alert.metric.clone());
                field("State", alert.state.as_str().to_owned());
                field(
                    "Value",
                    format!(
                        "{} (peak {}, threshold {})",
                        units::value(alert.value),
                        units::value(alert.peak),
                        units::value(alert.threshold)
                    ),
                );
                field("Started", time::stamp(&alert.started_at));
                if let Some(ack) = &alert.acknowledged {
                    field(
                        "Acknowledged",
                        if ack.comment.is_empty() {
                            format!("by {} at {}", ack.by, time::stamp(&ack.at))
                        } else {
                            format!("by {} at {}: {}", ack.by, time::stamp(&ack.at), ack.comment)
                        },
                    );
                }
                if let Some(why) = &alert.suppressed {
                    field("Held back", why.clone());
                }
            });
        if !alert.description.is_empty() {
            ui.label(&alert.description);
        }
        ui.separator();
        if alert.state != AlertState::Resolved {
            if shared.may_act {
                self.actions_ui(ui, shared, alert);
            } else {
                ui.weak(
                    "This token is a viewer: acknowledging and silencing need an operator token.",
                );
            }
            ui.separator();
        }
        ui.strong("History");
        if status::show(ui, &self.detail, "history") {
            self.select(shared, alert.id);
        }
        if let Some(detail) = self.detail.data().filter(|d| d.alert.id == alert.id) {
            egui::ScrollArea::vertical()
                .id_salt("alert-history")
                .show(ui, |ui| {
                    for event in detail.history.iter().rev() {
                        let mut line = format!("{}  {}", time::stamp(&event.at), event.event);
                        if !event.actor.is_empty() {
                            line.push_str(&format!(" by {}", event.actor));
                        }
                        if !event.detail.is_empty() {
                            line.push_str(&format!(": {}", event.detail));
                        }
                        ui.label(line);
                    }
                });
        }
    }

    fn actions_ui(&mut self, ui: &mut egui::Ui, shared: &Shared<'_>, alert: &Alert) {
        let label = ui.label("Comment");
        ui.add(
            egui::TextEdit::multiline(&mut self.comment)
                .desired_rows(2)
                .hint_text("why (kept in the alert's history)"),
        )
        .labelled_by(label.id);
        let busy = self.acknowledge.is_loading() || self.silence.is_loading();
        ui.horizontal(|ui| {
            let acked = alert.acknowledged.is_some();
            if ui
                .add_enabled(!busy && !acked, egui::Button::new("Acknowledge"))
                .clicked()
            {
                self.outcome = None;
                let request = AcknowledgeRequest {
                    comment: self.comment.trim().to_owned(),
                };
                self.acknowledge.request(
                    shared.fetcher,
                    routes::acknowledge(
                        shared.fetcher.client(),
                        shared.namespace,
                        alert.id,
                        &request,
                    ),
                );
            }
        });
        ui.horizontal(|ui| {
            ui.label("Silence device and rule for");
            for lasting in Lasting::ALL {
                ui.selectable_value(&mut self.lasting, lasting, lasting.label());
            }
        });
        let custom = if self.lasting == Lasting::Custom {
            ui.horizontal(|ui| {
                let label = ui.label("Duration");
                ui.add(
                    egui::TextEdit::singleline(&mut self.custom)
                        .hint_text("90m, 2h, 3d")
                        .desired_width(80.0),
                )
                .labelled_by(label.id);
            });
            parse_duration(&self.custom)
        } else {
            Some(Duration::from_secs(match self.lasting {
                Lasting::Hour => 3600,
                Lasting::FourHours => 4 * 3600,
                Lasting::Day | Lasting::Custom => 86_400,
            }))
        };
        if custom.is_none() {
            ui.colored_label(
                ui.visuals().error_fg_color,
                "not a duration: write e.g. 90m, 2h or 3d",
            );
        }
        if ui
            .add_enabled(!busy && custom.is_some(), egui::Button::new("Silence"))
            .clicked()
            && let Some(lasting) = custom
        {
            self.outcome = None;
            let ends = jiff::Timestamp::now().as_millisecond()
                + i64::try_from(lasting.as_millis()).unwrap_or(i64::MAX / 2);
            let request = SilenceRequest {
                matchers: vec![
                    Matcher {
                        label: "device".into(),
                        value: alert.device.clone(),
                    },
                    Matcher {
                        label: "rule".into(),
                        value: alert.rule.clone(),
                    },
                ],
                starts_at: None,
                ends_at: routes::rfc3339(ends),
                comment: self.comment.trim().to_owned(),
            };
            self.silence.request(
                shared.fetcher,
                routes::create_silence(shared.fetcher.client(), shared.namespace, &request),
            );
        }
        if busy {
            ui.spinner();
        }
    }
}

fn order(state: AlertState) -> u8 {
    match state {
        AlertState::Firing => 0,
        AlertState::Pending => 1,
        AlertState::Resolved => 2,
    }
}

fn severity(ui: &mut egui::Ui, severity: Severity) {
    let (text, color) = match severity {
        Severity::Critical => ("Critical", ui.visuals().error_fg_color),
        Severity::Warning => ("Warning", ui.visuals().warn_fg_color),
        Severity::Info => ("Info", ui.visuals().weak_text_color()),
    };
    ui.colored_label(color, text);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn custom_durations() {
        assert_eq!(parse_duration("90m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1h 30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("3d"), Some(Duration::from_secs(3 * 86_400)));
        assert_eq!(parse_duration("0s"), None);
        assert_eq!(parse_duration("soon"), None);
    }
}
