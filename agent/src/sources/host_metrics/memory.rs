//! Physical memory and swap: `memory`, `memoryUsedBytes`, `swap`, `swapUsedBytes`.
//!
//! Used memory is `MemTotal - MemAvailable` (what `free` calls used minus reclaimable).
use cdot_crds::metrics_catalog::Metric;
use sysinfo::System;

use super::{Samples, percent};

/// Refreshes memory and emits its samples.
pub fn collect(sys: &mut System, out: &mut Samples) {
    sys.refresh_memory();
    let total = sys.total_memory() as f64;
    let used = sys.total_memory().saturating_sub(sys.available_memory()) as f64;
    out.push(Metric::Memory, percent(used, total));
    out.push(Metric::MemoryUsedBytes, used);
    let swap_total = sys.total_swap() as f64;
    let swap_used = sys.used_swap() as f64;
    out.push(Metric::Swap, percent(swap_used, swap_total));
    out.push(Metric::SwapUsedBytes, swap_used);
}
