//! The top talkers table: the ranked keys with bytes, packets and share, sortable, and
//! what the rest of the traffic adds up to.
use cdot_crds::wire::network::{Rank, Talker, TalkerKey, TopTalkers};

use crate::widgets::{table::Sort, units};

pub fn key_title(key: TalkerKey) -> &'static str {
    match key {
        TalkerKey::Pairs => "Pairs",
        TalkerKey::Sources => "Sources",
        TalkerKey::Destinations => "Destinations",
        TalkerKey::Protocols => "Protocols",
        TalkerKey::Ports => "Ports",
    }
}

/// The talker as one cell: `a → b`, an address, a protocol or a port.
pub fn describe(key: TalkerKey, t: &Talker) -> String {
    let host = |h: &Option<String>| h.clone().unwrap_or_else(|| "?".into());
    match key {
        TalkerKey::Pairs => format!("{} → {}", host(&t.src), host(&t.dst)),
        TalkerKey::Sources => host(&t.src),
        TalkerKey::Destinations => host(&t.dst),
        TalkerKey::Protocols => t.protocol.map_or_else(|| "?".into(), units::protocol),
        TalkerKey::Ports => t.port.map_or_else(|| "?".into(), |p| p.to_string()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    Talker,
    Bytes,
    Packets,
}

pub struct Table {
    sort: Sort<Column>,
}

impl Default for Table {
    fn default() -> Self {
        Self {
            sort: Sort::new(Column::Bytes, true),
        }
    }
}

impl Table {
    /// The table, `selected` highlighted; the talker clicked.
    pub fn ui(
        &mut self,
        ui: &mut egui::Ui,
        data: &TopTalkers,
        selected: Option<&Talker>,
    ) -> Option<Talker> {
        let mut clicked = None;
        let rows = rows(data, self.sort);
        let ranked = match data.rank {
            Rank::Bytes => "bytes",
            Rank::Packets => "packets",
        };
        ui.label(format!(
            "{} in all, {} packets; share of {ranked}",
            units::bytes(data.total_bytes as f64),
            units::count(data.total_packets as f64)
        ));
        egui::Grid::new("top-talkers")
            .striped(true)
            .num_columns(4)
            .show(ui, |ui| {
                self.sort.header(ui, key_title(data.by), Column::Talker);
                self.sort.header(ui, "Bytes", Column::Bytes);
                self.sort.header(ui, "Packets", Column::Packets);
                ui.strong("Share");
                ui.end_row();
                for (name, t) in &rows {
                    if ui
                        .selectable_label(selected.is_some_and(|s| same_key(s, t)), name)
                        .on_hover_text("filter the traffic chart to it")
                        .clicked()
                    {
                        clicked = Some((*t).clone());
                    }
                    ui.label(units::bytes(t.bytes as f64));
                    ui.label(units::count(t.packets as f64));
                    share(ui, t.share);
                    ui.end_row();
                }
                if data.other.bytes > 0 || data.other.packets > 0 {
                    ui.weak("everything else");
                    ui.weak(units::bytes(data.other.bytes as f64));
                    ui.weak(units::count(data.other.packets as f64));
                    share(ui, data.other.share);
                    ui.end_row();
                }
            });
        clicked
    }
}

/// The same talker (its key fields), whatever its counts.
pub fn same_key(a: &Talker, b: &Talker) -> bool {
    (&a.src, &a.dst, a.protocol, a.port) == (&b.src, &b.dst, b.protocol, b.port)
}

fn share(ui: &mut egui::Ui, share: f64) {
    ui.add(
        egui::ProgressBar::new(share as f32)
            .desired_width(90.0)
            .text(format!("{:.1} %", share * 100.0)),
    );
}

/// The talkers described and in the table's order.
fn rows(data: &TopTalkers, sort: Sort<Column>) -> Vec<(String, &Talker)> {
    let mut rows: Vec<(String, &Talker)> = data
        .items
        .iter()
        .map(|t| (describe(data.by, t), t))
        .collect();
    rows.sort_by(|(a_name, a), (b_name, b)| {
        sort.apply(match sort.column {
            Column::Talker => a_name.cmp(b_name),
            Column::Bytes => a.bytes.cmp(&b.bytes),
            Column::Packets => a.packets.cmp(&b.packets),
        })
    });
    rows
}

#[cfg(test)]
mod tests {
    use cdot_crds::wire::network::{Resolution, TalkerRest};

    use super::*;

    fn talker(src: &str, dst: &str, bytes: i64, packets: i64) -> Talker {
        Talker {
            src: Some(src.into()),
            dst: Some(dst.into()),
            protocol: None,
            port: None,
            bytes,
            packets,
            share: 0.0,
        }
    }

    #[test]
    fn keys_are_described_and_sorting_reverses() {
        let a = talker("10.0.0.1", "10.0.0.2", 100, 9);
        let b = talker("10.0.0.3", "10.0.0.4", 50, 90);
        assert_eq!(describe(TalkerKey::Pairs, &a), "10.0.0.1 → 10.0.0.2");
        assert_eq!(describe(TalkerKey::Destinations, &a), "10.0.0.2");
        assert_eq!(describe(TalkerKey::Ports, &a), "?");
        let data = TopTalkers {
            namespace: "acme".into(),
            from: String::new(),
            to: String::new(),
            resolution: Resolution::Minute,
            by: TalkerKey::Sources,
            rank: Rank::Bytes,
            total_bytes: 150,
            total_packets: 99,
            items: vec![b, a],
            other: TalkerRest {
                bytes: 0,
                packets: 0,
                share: 0.0,
            },
        };
        let names = |sort| -> Vec<String> { rows(&data, sort).into_iter().map(|r| r.0).collect() };
        assert_eq!(
            names(Sort::new(Column::Bytes, true)),
            ["10.0.0.1", "10.0.0.3"]
        );
        assert_eq!(
            names(Sort::new(Column::Packets, true)),
            ["10.0.0.3", "10.0.0.1"]
        );
        assert_eq!(
            names(Sort::new(Column::Talker, false)),
            ["10.0.0.1", "10.0.0.3"]
        );
    }
}
