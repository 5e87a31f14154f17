//! Load averages, uptime and the process count.
use cdot_crds::metrics_catalog::Metric;
use sysinfo::System;

use super::Samples;

/// Emits `load1/5/15`, `uptime` and `processes`.
pub fn collect(out: &mut Samples) {
    if let Ok(load) = System::load_average() {
        out.push(Metric::Load1, load.one);
        out.push(Metric::Load5, load.five);
        out.push(Metric::Load15, load.fifteen);
    }
    if let Ok(uptime) = System::uptime() {
        out.push(Metric::Uptime, uptime as f64);
    }
    if let Some(count) = process_count() {
        out.push(Metric::Processes, count as f64);
    }
}

/// Number of processes: the numeric entries of `/proc` (no per-process details are read).
pub fn process_count() -> Option<usize> {
    let dir = std::fs::read_dir("/proc").ok()?;
    Some(
        dir.flatten()
            .filter(|e| {
                let name = e.file_name();
                let b = name.as_encoded_bytes();
                !b.is_empty() && b.iter().all(u8::is_ascii_digit)
            })
            .count(),
    )
}
