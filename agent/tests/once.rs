//! `cdot-agent run --once` prints one catalogue-conformant batch, with rates.
use std::{collections::BTreeSet, process::Command};

use cdot_crds::{metrics_catalog::CATALOG, wire::MetricsBatch};

#[test]
fn once_prints_a_catalogue_conformant_batch() {
    let out = Command::new(env!("CARGO_BIN_EXE_cdot-agent"))
        .args(["run", "--once"])
        .env("CDOT_STATE_DIR", "/nonexistent/never/used")
        .output()
        .expect("run the binary");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let batch: MetricsBatch = serde_json::from_slice(&out.stdout).expect("a MetricsBatch");
    let names: BTreeSet<&str> = batch.samples.iter().map(|s| s.n.as_str()).collect();
    for expected in [
        "cpu",
        "cpuCore",
        "load1",
        "load5",
        "load15",
        "memory",
        "memoryUsedBytes",
        "swap",
        "swapUsedBytes",
        "disk",
        "diskUsedBytes",
        "uptime",
        "processes",
    ] {
        assert!(names.contains(expected), "{expected} missing: {names:?}");
    }
    for s in &batch.samples {
        let info = CATALOG
            .iter()
            .find(|i| i.name == s.n)
            .unwrap_or_else(|| panic!("{} is not in the catalogue", s.n));
        let keys: Vec<&str> = s.l.keys().map(String::as_str).collect();
        assert_eq!(keys, info.labels, "labels of {s:?}");
        assert!(s.v.is_finite(), "{s:?}");
    }
}
