//! Frame time of the network screen, headless (CPU: egui's pass and tessellation; the GPU
//! upload is left out), at 1920×1080 with the pointer moving over the charts.
//!
//! A stand-in operator (`tests/support/standin.rs`) answers like the real one does over a
//! range holding 500,000 interface points: every series decimated server-side to the
//! `points=` the console asks for, so what the console draws is bounded by the chart's
//! width, not by the range.
//!
//! `cargo bench -p cdot-console --bench frame_time` prints p50/p95/p99/max.
use std::time::{Duration, Instant};

use cdot_console::{app::ConsoleApp, config::Settings, widgets::range::Preset};
use standin::{INTERFACES, PROBES, RAW_PER_SERIES};

#[path = "../tests/support/standin.rs"]
mod standin;

const FRAMES: usize = 600;
const SIZE: (f32, f32) = (1920.0, 1080.0);

fn input(frame: usize) -> egui::RawInput {
    // The pointer sweeps across the left half (the charts), as a user reading values does.
    let x = 60.0 + (frame % 100) as f32 * 8.5;
    egui::RawInput {
        screen_rect: Some(egui::Rect::from_min_size(
            egui::Pos2::ZERO,
            egui::vec2(SIZE.0, SIZE.1),
        )),
        events: vec![egui::Event::PointerMoved(egui::pos2(x, 200.0))],
        ..Default::default()
    }
}

fn main() {
    let settings = Settings {
        api: standin::start(),
        token: Some("bench".into()),
        namespaces: vec!["acme".into()],
        timeout: Duration::from_secs(10),
        ca_pem: None,
        range: Preset::Hour1,
    };
    let mut app = ConsoleApp::new(&settings);
    let ctx = egui::Context::default();
    let mut frame = 0;
    let mut run = |app: &mut ConsoleApp| {
        frame += 1;
        let started = Instant::now();
        let mut output = ctx.run_ui(input(frame), |ui| app.ui(ui));
        let shapes = std::mem::take(&mut output.shapes);
        let primitives = ctx.tessellate(shapes, output.pixels_per_point);
        // No renderer takes the font atlas here.
        output.drop_without_applying_deltas();
        (started.elapsed(), primitives.len())
    };
    // Until every panel has answered: the requests settle and the frames stop changing.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut settled = 0;
    let mut last = 0;
    while settled < 50 {
        let (_, primitives) = run(&mut app);
        settled = if primitives == last { settled + 1 } else { 0 };
        last = primitives;
        assert!(Instant::now() < deadline, "the screen never settled");
        std::thread::sleep(Duration::from_millis(10));
    }
    let requests = app.requested();
    let points = requests
        .iter()
        .find_map(|u| u.split("points=").nth(1).map(|p| p.to_owned()))
        .unwrap_or_default();
    let mut times: Vec<Duration> = (0..FRAMES).map(|_| run(&mut app).0).collect();
    times.sort();
    let at = |q: f64| times[((times.len() - 1) as f64 * q) as usize];
    println!(
        "network screen, {}x{}, {INTERFACES} interfaces x {RAW_PER_SERIES} points in range \
         decimated to points={points}, {PROBES} probe targets, {} requests: \
         p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {FRAMES} frames",
        SIZE.0,
        SIZE.1,
        requests.len(),
        at(0.50).as_secs_f64() * 1e3,
        at(0.95).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        times[times.len() - 1].as_secs_f64() * 1e3,
    );
}
