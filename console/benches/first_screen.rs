//! Time from opening the console to its first full network screen over the last 24 h: a
//! new console (client, connection check, namespaces from `/v1/whoami`) runs headless
//! frames against a real operator until every panel of the network screen (bandwidth,
//! probes, top talkers, flow traffic, interfaces, worst per site, alerts) shows its answer.
//!
//! It needs an operator holding the data: `scripts/bench-first-screen` loads 24 h of 200
//! exporters (flows, interface polls, probe results) through the real write path and rollups
//! and runs this with `CDOT_BENCH_API` and `CDOT_BENCH_TOKEN`; without them it only says so.
//! `CDOT_BENCH_RUNS` (default 10) openings are measured, each with a new console.
use std::time::{Duration, Instant};

use cdot_console::{app::ConsoleApp, config::Settings, widgets::range::Preset};

const SIZE: (f32, f32) = (1920.0, 1080.0);
/// An opening that takes longer fails the benchmark.
const GIVE_UP: Duration = Duration::from_secs(120);

fn main() {
    let (Ok(api), Ok(token)) = (
        std::env::var("CDOT_BENCH_API"),
        std::env::var("CDOT_BENCH_TOKEN"),
    ) else {
        eprintln!(
            "first_screen: set CDOT_BENCH_API and CDOT_BENCH_TOKEN (scripts/bench-first-screen does)"
        );
        return;
    };
    let runs: usize = std::env::var("CDOT_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let settings = Settings {
        api,
        token: Some(token),
        namespaces: Vec::new(),
        timeout: GIVE_UP,
        ca_pem: None,
        range: Preset::Hour24,
    };
    let input = || egui::RawInput {
        screen_rect: Some(egui::Rect::from_min_size(
            egui::Pos2::ZERO,
            egui::vec2(SIZE.0, SIZE.1),
        )),
        ..Default::default()
    };
    let mut times = Vec::new();
    let mut requests = 0;
    for run in 1..=runs {
        let started = Instant::now();
        let mut app = ConsoleApp::new(&settings);
        let ctx = egui::Context::default();
        let mut frames = 0;
        loop {
            let mut output = ctx.run_ui(input(), |ui| app.ui(ui));
            let shapes = std::mem::take(&mut output.shapes);
            let _ = ctx.tessellate(shapes, output.pixels_per_point);
            output.drop_without_applying_deltas();
            frames += 1;
            // The frame just drawn showed every answer.
            match app.network_loaded() {
                Ok(true) if frames > 1 => break,
                Ok(_) => {}
                Err(error) => panic!("a panel failed: {error}"),
            }
            assert!(
                started.elapsed() < GIVE_UP,
                "no full screen after {GIVE_UP:?}"
            );
            // An idle console sleeps until an answer asks for a repaint; polling every
            // millisecond adds at most that.
            std::thread::sleep(Duration::from_millis(1));
        }
        let took = started.elapsed();
        requests = app.requested().len();
        println!(
            "opening {run}: first full screen in {:.0} ms ({frames} frames)",
            took.as_secs_f64() * 1e3
        );
        times.push(took);
    }
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e3;
    println!(
        "first full network screen over 24 h, {SIZE:?}, {requests} requests: p50 {:.0} ms, max {:.0} ms over {} openings",
        at(0.5),
        at(1.0),
        times.len()
    );
}
