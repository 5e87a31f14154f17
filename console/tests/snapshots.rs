//! Snapshots of the main screens, rendered through wgpu (Mesa llvmpipe, no display)
//! against the stand-in operator over a fixed range, so every run draws the same pixels.
//! After a deliberate change: `UPDATE_SNAPSHOTS=1 cargo nextest run -p cdot-console
//! --test snapshots`, and look at the new `tests/snapshots/*.png` before committing them.
mod support;

use std::time::Duration;

use cdot_console::{app::ConsoleApp, config::Settings};
use egui_kittest::{Harness, kittest::Queryable as _};
use support::{type_into, wait_for_label};

fn console() -> Harness<'static, ConsoleApp> {
    let settings = Settings {
        api: support::standin::start(),
        token: Some("snapshot".into()),
        namespaces: vec!["acme".into()],
        timeout: Duration::from_secs(10),
        ca_pem: None,
        range: cdot_console::widgets::range::Preset::Hour1,
    };
    Harness::builder()
        .with_size([1400.0, 900.0])
        .wgpu()
        .build_ui_state(
            |ui, app: &mut ConsoleApp| app.ui(ui),
            ConsoleApp::new(&settings),
        )
}

/// Frames until nothing is loading any more (the charts have settled); the stand-in's
/// port (in the top bar) and the pointer are left out of the picture.
fn settle(harness: &mut Harness<'static, ConsoleApp>) {
    support::wait_until(harness, "every panel answered", |h| {
        h.query_all_by_label_contains("loading").next().is_none()
    });
    harness.remove_cursor();
    for _ in 0..10 {
        harness.step();
    }
    let url = harness.get_by_label_contains("http://127.0.0.1:").rect();
    harness.mask(url);
}

#[test]
fn main_screens() {
    let mut harness = console();
    wait_for_label(&mut harness, "Apply range");
    // A range in the past: nothing on the screen depends on the clock.
    harness.get_by_label("From").focus();
    harness.step();
    harness.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    type_into(&mut harness, "From", "2025-12-06 10:00");
    harness.get_by_label("To").focus();
    harness.step();
    harness.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    type_into(&mut harness, "To", "2025-12-06 11:00");
    harness.get_by_label("Apply range").click();
    wait_for_label(&mut harness, "2025-12-06 10:00 – 2025-12-06 11:00 UTC");
    wait_for_label(&mut harness, "Bandwidth of 10 interfaces (out up, in down)");
    settle(&mut harness);
    harness.snapshot("network");

    harness.get_by_label("Devices").click();
    wait_for_label(&mut harness, "edge-02");
    settle(&mut harness);
    harness.snapshot("devices");

    harness.get_by_label("Alerts").click();
    wait_for_label(&mut harness, "episode 0");
    harness.get_by_label("episode 0").click();
    wait_for_label(&mut harness, "History");
    settle(&mut harness);
    harness.snapshot("alerts");
}
