//! The interface report: average, p95 and maximum utilisation (or rate when the speed is
//! unknown) in and out, errors, discards and status changes; sortable.
use cdot_crds::wire::network::{DirectionStats, InterfaceStats};

use crate::widgets::{table::Sort, units};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Interface,
    InP95,
    OutP95,
    Max,
    Errors,
    Discards,
    Changes,
}

pub struct Table {
    sort: Sort<Column>,
}

impl Default for Table {
    fn default() -> Self {
        Self {
            sort: Sort::new(Column::Max, true),
        }
    }
}

/// The busier direction's maximum: utilisation when the speed is known, else bits/s.
fn peak(i: &InterfaceStats) -> f64 {
    let one = |d: &DirectionStats| d.max_utilization.unwrap_or(d.max_bps);
    one(&i.inbound).max(one(&i.outbound))
}

fn p95(d: &DirectionStats) -> f64 {
    d.p95_utilization.unwrap_or(d.p95_bps)
}

/// The interfaces in the table's order.
fn rows(items: &[InterfaceStats], sort: Sort<Column>) -> Vec<&InterfaceStats> {
    let mut rows: Vec<&InterfaceStats> = items.iter().collect();
    let total = |io: cdot_crds::wire::network::InOut| io.inbound + io.outbound;
    rows.sort_by(|a, b| {
        sort.apply(match sort.column {
            Column::Interface => (&a.device, &a.interface).cmp(&(&b.device, &b.interface)),
            Column::InP95 => p95(&a.inbound).total_cmp(&p95(&b.inbound)),
            Column::OutP95 => p95(&a.outbound).total_cmp(&p95(&b.outbound)),
            Column::Max => peak(a).total_cmp(&peak(b)),
            Column::Errors => total(a.errors).cmp(&total(b.errors)),
            Column::Discards => total(a.discards).cmp(&total(b.discards)),
            Column::Changes => a.status_changes.cmp(&b.status_changes),
        })
        .then_with(|| (&a.device, &a.interface).cmp(&(&b.device, &b.interface)))
    });
    rows
}

/// `avg / p95 / max` of one direction.
fn direction(d: &DirectionStats) -> String {
    match (d.avg_utilization, d.p95_utilization, d.max_utilization) {
        (Some(avg), Some(p95), Some(max)) => format!("{avg:.1} / {p95:.1} / {max:.1} %"),
        _ => format!(
            "{} / {} / {}",
            units::bps(d.avg_bps),
            units::bps(d.p95_bps),
            units::bps(d.max_bps)
        ),
    }
}

pub fn oper_status(status: Option<i16>) -> &'static str {
    match status {
        Some(1) => "up",
        Some(2) => "down",
        Some(3) => "testing",
        Some(5) => "dormant",
        Some(7) => "lower layer down",
        Some(_) => "other",
        None => "—",
    }
}

impl Table {
    /// The table; the interface whose name was clicked, to drill into.
    pub fn ui(&mut self, ui: &mut egui::Ui, items: &[InterfaceStats]) -> Option<InterfaceStats> {
        let rows = rows(items, self.sort);
        let mut clicked = None;
        ui.label(format!(
            "{} interfaces; utilisation avg / p95 / max (bit/s where the speed is unknown)",
            rows.len()
        ));
        egui::ScrollArea::horizontal()
            .id_salt("interfaces-scroll")
            .show(ui, |ui| {
                egui::Grid::new("interfaces")
                    .striped(true)
                    .num_columns(10)
                    .show(ui, |ui| {
                        self.sort.header(ui, "Interface", Column::Interface);
                        ui.strong("Site");
                        ui.strong("Status");
                        ui.strong("Speed");
                        self.sort.header(ui, "In", Column::InP95);
                        self.sort.header(ui, "Out", Column::OutP95);
                        self.sort.header(ui, "Peak", Column::Max);
                        self.sort.header(ui, "Errors in/out", Column::Errors);
                        self.sort.header(ui, "Discards in/out", Column::Discards);
                        self.sort.header(ui, "Status changes", Column::Changes);
                        ui.end_row();
                        for i in rows {
                            if row(ui, i) {
                                clicked = Some(i.clone());
                            }
                        }
                    });
            });
        clicked
    }
}

/// One interface; true when its name was clicked.
fn row(ui: &mut egui::Ui, i: &InterfaceStats) -> bool {
    let name = ui
        .link(format!("{} {}", i.device, i.interface))
        .on_hover_text(if i.alias.is_empty() {
            "open its charts and talkers".to_owned()
        } else {
            format!("{}: open its charts and talkers", i.alias)
        });
    ui.label(i.site.as_deref().unwrap_or("—"));
    let status = oper_status(i.oper_status);
    if i.oper_status.is_some_and(|s| s != 1) {
        ui.colored_label(ui.visuals().error_fg_color, status);
    } else {
        ui.label(status);
    }
    ui.label(if i.speed_bps > 0 {
        units::bps(i.speed_bps as f64)
    } else {
        "—".into()
    });
    ui.label(direction(&i.inbound));
    ui.label(direction(&i.outbound));
    let peak = peak(i);
    ui.label(
        match i.inbound.max_utilization.or(i.outbound.max_utilization) {
            Some(_) => format!("{peak:.1} %"),
            None => units::bps(peak),
        },
    );
    ui.label(format!("{} / {}", i.errors.inbound, i.errors.outbound));
    ui.label(format!("{} / {}", i.discards.inbound, i.discards.outbound));
    ui.label(i.status_changes.to_string());
    ui.end_row();
    name.clicked()
}

#[cfg(test)]
mod tests {
    use std::cmp::Ordering;

    use cdot_crds::wire::network::InOut;

    use super::*;

    fn iface(name: &str, max_util: Option<f64>, max_bps: f64, errors: i64) -> InterfaceStats {
        InterfaceStats {
            device: "r1".into(),
            site: None,
            interface: name.into(),
            if_index: 1,
            alias: String::new(),
            speed_bps: 0,
            oper_status: Some(1),
            samples: 1,
            inbound: DirectionStats {
                max_utilization: max_util,
                max_bps,
                ..DirectionStats::default()
            },
            outbound: DirectionStats::default(),
            errors: InOut {
                inbound: errors,
                outbound: 0,
            },
            discards: InOut::default(),
            status_changes: 0,
        }
    }

    #[test]
    fn busiest_first_then_by_the_clicked_column() {
        let items = [
            iface("a", Some(10.0), 1e6, 5),
            iface("b", Some(90.0), 9e6, 0),
            iface("c", Some(50.0), 5e6, 1),
        ];
        let names = |sort| -> Vec<&str> {
            rows(&items, sort)
                .into_iter()
                .map(|i| i.interface.as_str())
                .collect()
        };
        assert_eq!(names(Sort::new(Column::Max, true)), ["b", "c", "a"]);
        assert_eq!(names(Sort::new(Column::Errors, true)), ["a", "c", "b"]);
        assert_eq!(names(Sort::new(Column::Interface, false)), ["a", "b", "c"]);
        assert_eq!(oper_status(Some(2)), "down");
        assert_eq!(Ordering::Less, peak(&items[0]).total_cmp(&peak(&items[1])));
    }
}
