//! A panel's call state in one line: loading with the time it has taken, or the error
//! with a Retry button.
use std::time::Duration;

use crate::api::fetch::{Panel, Status};

/// Loading longer than this is worth saying how long (a slow query, a slow operator).
const SLOW: Duration = Duration::from_millis(300);

/// Shows `panel`'s status; true when the user asked to retry. `what` names the panel in
/// the messages ("devices", "bandwidth").
pub fn show<T>(ui: &mut egui::Ui, panel: &Panel<T>, what: &str) -> bool {
    match panel.status() {
        Status::Idle | Status::Ready { .. } => false,
        Status::Loading { since } => {
            let waited = since.elapsed();
            ui.horizontal(|ui| {
                ui.spinner();
                if waited >= SLOW {
                    ui.label(format!("loading {what}… {:.1} s", waited.as_secs_f32()));
                } else {
                    ui.label(format!("loading {what}…"));
                }
            });
            // Keep the elapsed time moving while nothing else repaints.
            ui.ctx().request_repaint_after(Duration::from_millis(100));
            false
        }
        Status::Failed { error, .. } => {
            ui.horizontal_wrapped(|ui| {
                ui.colored_label(
                    ui.visuals().error_fg_color,
                    format!("{what}: {error}{}", stale_note(panel.data().is_some())),
                );
                ui.button(format!("Retry {what}")).clicked()
            })
            .inner
        }
    }
}

fn stale_note(has_data: bool) -> &'static str {
    if has_data {
        " (showing the last good answer)"
    } else {
        ""
    }
}
