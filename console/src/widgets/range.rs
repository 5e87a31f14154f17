//! The time range of the network screen: presets, a custom range, shift arrows, and
//! auto-refresh while the range ends now.
use std::time::Duration;

use crate::widgets::time;

const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 60 * MINUTE_MS;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    Min15,
    Hour1,
    Hour6,
    Hour24,
    Day7,
}

impl Preset {
    pub const ALL: [Self; 5] = [
        Self::Min15,
        Self::Hour1,
        Self::Hour6,
        Self::Hour24,
        Self::Day7,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::Min15 => "15 m",
            Self::Hour1 => "1 h",
            Self::Hour6 => "6 h",
            Self::Hour24 => "24 h",
            Self::Day7 => "7 d",
        }
    }

    /// A preset by its name in settings: `15m`, `1h`, `6h`, `24h` or `7d`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Min15 => "15m",
            Self::Hour1 => "1h",
            Self::Hour6 => "6h",
            Self::Hour24 => "24h",
            Self::Day7 => "7d",
        }
    }

    pub fn length_ms(self) -> i64 {
        match self {
            Self::Min15 => 15 * MINUTE_MS,
            Self::Hour1 => HOUR_MS,
            Self::Hour6 => 6 * HOUR_MS,
            Self::Hour24 => 24 * HOUR_MS,
            Self::Day7 => 7 * 24 * HOUR_MS,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoRefresh {
    Off,
    Sec10,
    Sec30,
    Min1,
}

impl AutoRefresh {
    const ALL: [Self; 4] = [Self::Off, Self::Sec10, Self::Sec30, Self::Min1];

    fn label(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Sec10 => "10 s",
            Self::Sec30 => "30 s",
            Self::Min1 => "1 min",
        }
    }

    pub fn every(self) -> Option<Duration> {
        match self {
            Self::Off => None,
            Self::Sec10 => Some(Duration::from_secs(10)),
            Self::Sec30 => Some(Duration::from_secs(30)),
            Self::Min1 => Some(Duration::from_secs(60)),
        }
    }
}

/// A range of `length_ms` ending at `end_ms`, or ending now (`None`: it follows the clock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeRange {
    pub length_ms: i64,
    pub end_ms: Option<i64>,
    /// The preset it came from (highlighted), none for a custom range.
    pub preset: Option<Preset>,
    pub refresh: AutoRefresh,
    /// The custom range's fields, `YYYY-MM-DD HH:MM` UTC.
    from_text: String,
    to_text: String,
    custom_error: Option<String>,
}

impl Default for TimeRange {
    fn default() -> Self {
        Self {
            length_ms: HOUR_MS,
            end_ms: None,
            preset: Some(Preset::Hour1),
            refresh: AutoRefresh::Off,
            from_text: String::new(),
            to_text: String::new(),
            custom_error: None,
        }
    }
}

impl TimeRange {
    /// The last `preset`, following the clock.
    pub fn of(preset: Preset) -> Self {
        let mut range = Self::default();
        range.set_preset(preset);
        range
    }

    /// `(from, to)` in Unix ms, as of `now_ms`.
    pub fn window(&self, now_ms: i64) -> (i64, i64) {
        let to = self.end_ms.unwrap_or(now_ms);
        (to - self.length_ms, to)
    }

    pub fn is_live(&self) -> bool {
        self.end_ms.is_none()
    }

    pub fn set_preset(&mut self, preset: Preset) {
        self.preset = Some(preset);
        self.length_ms = preset.length_ms();
        self.end_ms = None;
    }

    /// Back by one length.
    pub fn shift_back(&mut self, now_ms: i64) {
        let (_, to) = self.window(now_ms);
        self.end_ms = Some(to - self.length_ms);
    }

    /// Forward by one length; reaching now, the range follows the clock again.
    pub fn shift_forward(&mut self, now_ms: i64) {
        let (_, to) = self.window(now_ms);
        let end = to + self.length_ms;
        self.end_ms = (end < now_ms).then_some(end);
    }

    /// A custom range from `from_ms` to `to_ms` (one that reaches now follows the clock).
    pub fn zoom_to(&mut self, from_ms: i64, to_ms: i64, now_ms: i64) {
        self.length_ms = (to_ms - from_ms).max(60_000);
        self.end_ms = (to_ms < now_ms).then_some(to_ms);
        self.preset = None;
        self.custom_error = None;
        let (from, to) = self.window(now_ms);
        self.from_text = time::stamp_ms(from);
        self.to_text = time::stamp_ms(to);
    }

    /// A custom range; false (with the reason kept for display) when the texts are not
    /// times or not in order.
    fn apply_custom(&mut self, now_ms: i64) -> bool {
        let parse = |text: &str| time::parse_utc(text);
        match (parse(&self.from_text), parse(&self.to_text)) {
            (Some(from), Some(to)) if from < to => {
                self.zoom_to(from, to, now_ms);
                true
            }
            (Some(_), Some(_)) => {
                self.custom_error = Some("From must be before To".into());
                false
            }
            _ => {
                self.custom_error = Some("write times as YYYY-MM-DD HH:MM (UTC)".into());
                false
            }
        }
    }

    /// The bar: presets, shift arrows, custom range and auto-refresh; true when the range
    /// changed (a refresh the user asked for counts too).
    pub fn ui(&mut self, ui: &mut egui::Ui, now_ms: i64) -> bool {
        let before = self.clone();
        let mut asked = false;
        ui.horizontal_wrapped(|ui| {
            if ui.button("◀").on_hover_text("back by the range").clicked() {
                self.shift_back(now_ms);
            }
            for preset in Preset::ALL {
                if ui
                    .selectable_label(self.preset == Some(preset), preset.label())
                    .clicked()
                {
                    self.set_preset(preset);
                }
            }
            if ui
                .add_enabled(!self.is_live(), egui::Button::new("▶"))
                .on_hover_text("forward by the range")
                .clicked()
            {
                self.shift_forward(now_ms);
            }
            ui.separator();
            if self.from_text.is_empty() {
                let (from, to) = self.window(now_ms);
                self.from_text = time::stamp_ms(from);
                self.to_text = time::stamp_ms(to);
            }
            let label = ui.label("From");
            ui.add(egui::TextEdit::singleline(&mut self.from_text).desired_width(120.0))
                .labelled_by(label.id);
            let label = ui.label("To");
            ui.add(egui::TextEdit::singleline(&mut self.to_text).desired_width(120.0))
                .labelled_by(label.id);
            if ui.button("Apply range").clicked() {
                self.apply_custom(now_ms);
            }
            if let Some(error) = &self.custom_error {
                ui.colored_label(ui.visuals().error_fg_color, error);
            }
            ui.separator();
            ui.label("Auto-refresh");
            for refresh in AutoRefresh::ALL {
                ui.selectable_value(&mut self.refresh, refresh, refresh.label());
            }
            asked = ui.button("Refresh").clicked();
        });
        let (from, to) = self.window(now_ms);
        let moved = self.length_ms != before.length_ms || self.end_ms != before.end_ms;
        if moved {
            // The custom fields follow the range the arrows and presets chose.
            self.from_text = time::stamp_ms(from);
            self.to_text = time::stamp_ms(to);
        }
        ui.weak(format!(
            "{} – {} UTC{}",
            time::stamp_ms(from),
            time::stamp_ms(to),
            if self.is_live() { " (now)" } else { "" }
        ));
        moved || asked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_765_000_000_000;

    #[test]
    fn shifting_moves_by_the_length_and_comes_back_to_now() {
        let mut range = TimeRange::default();
        range.set_preset(Preset::Hour6);
        assert_eq!(range.window(NOW), (NOW - 6 * HOUR_MS, NOW));
        range.shift_back(NOW);
        assert_eq!(range.window(NOW), (NOW - 12 * HOUR_MS, NOW - 6 * HOUR_MS));
        assert!(!range.is_live());
        range.shift_forward(NOW);
        assert!(range.is_live(), "back at now, the range follows the clock");
        range.shift_forward(NOW);
        assert_eq!(range.window(NOW), (NOW - 6 * HOUR_MS, NOW));
    }

    #[test]
    fn custom_ranges_are_checked() {
        let mut range = TimeRange {
            from_text: "2025-12-05 10:00".into(),
            to_text: "2025-12-05 12:30".into(),
            ..TimeRange::default()
        };
        assert!(range.apply_custom(NOW));
        let to = time::parse_utc("2025-12-05 12:30").expect("time");
        assert_eq!(range.window(NOW), (to - 150 * MINUTE_MS, to));
        assert_eq!(range.preset, None);
        range.from_text = "2025-12-05 13:00".into();
        assert!(!range.apply_custom(NOW));
        range.from_text = "yesterday".into();
        assert!(!range.apply_custom(NOW));
    }
}
