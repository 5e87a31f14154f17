//! What the console shows while the operator cannot be used: connecting, down, or
//! refusing the token, naming the URL and the error, with a Retry button.
use std::time::Instant;

use crate::{api::ApiError, app::Link};

pub fn ui(ui: &mut egui::Ui, link: &mut Link, api: &str) {
    ui.add_space(24.0);
    ui.vertical_centered(|ui| {
        let Some(error) = link.last_error().cloned() else {
            ui.heading(format!("Connecting to {api}…"));
            ui.spinner();
            return;
        };
        let (title, hint) = match &error {
            ApiError::Unauthorized { .. } => (
                "The operator refused the token",
                "Give a viewer token with --token, --token-file, CDOT_TOKEN or the \
                 config file; the quick start writes one to .cdot/viewer-token.",
            ),
            ApiError::Unreachable { .. } | ApiError::Timeout { .. } => (
                "Cannot reach the operator",
                "Is cdot-operator running and listening there? scripts/quickstart starts \
                 one on http://127.0.0.1:8080; --api or CDOT_API point elsewhere, and \
                 --ca-file trusts the private CA of an https operator.",
            ),
            _ => (
                "The operator cannot serve the console",
                "It answered, but with an error; it may be starting or have lost its database.",
            ),
        };
        ui.heading(title);
        ui.add_space(8.0);
        ui.label(format!("API: {api}"));
        ui.colored_label(ui.visuals().error_fg_color, error.to_string());
        ui.add_space(8.0);
        ui.label(hint);
        ui.add_space(12.0);
        if link.is_trying() {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("trying again…");
            });
        } else if let Some(at) = link.retry_at() {
            let secs = at.saturating_duration_since(Instant::now()).as_secs() + 1;
            ui.label(format!(
                "Trying again in {secs} s (attempt {} failed).",
                link.failures()
            ));
        }
        if ui.button("Retry now").clicked() {
            link.retry();
        }
    });
}
