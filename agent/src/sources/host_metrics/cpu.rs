//! CPU busy percentage, total (`cpu`) and per logical core (`cpuCore{core}`).
use cdot_crds::metrics_catalog::Metric;
use sysinfo::System;

use super::Samples;

/// Refreshes CPU times; emits usage only when a previous reading exists (`primed`).
pub fn collect(sys: &mut System, primed: bool, out: &mut Samples) {
    sys.refresh_cpu_usage();
    if !primed {
        return;
    }
    out.push(
        Metric::Cpu,
        f64::from(sys.global_cpu_usage()).clamp(0.0, 100.0),
    );
    let mut core = String::new();
    for (i, cpu) in sys.cpus().iter().enumerate() {
        core.clear();
        use std::fmt::Write;
        let _ = write!(core, "{i}");
        out.push_labelled(
            Metric::CpuCore,
            &core,
            f64::from(cpu.usage()).clamp(0.0, 100.0),
        );
    }
}
