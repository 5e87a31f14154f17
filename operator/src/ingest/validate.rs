//! Decoding and validation of agent reports: everything a request must pass before it is
//! queued for a writer. Each refusal names the offending field (`samples[3].t`) and carries
//! a low-cardinality reason for `cdot_ingest_rejected_total`.
use std::collections::BTreeMap;

use cdot_crds::{
    metrics_catalog::CATALOG,
    wire::{
        InventoryReport, MAX_FUTURE_SKEW_MS, MAX_SAMPLE_AGE_MS, MAX_SAMPLES_PER_BATCH, MetricsBatch,
    },
};
use uuid::Uuid;

pub use super::error::Rejection;
use crate::store::timeseries::SeriesKey;

/// Longest accepted agent version string.
const MAX_VERSION_LEN: usize = 64;
/// Longest accepted series label value.
const MAX_LABEL_VALUE_LEN: usize = 256;

/// The latest values of the summary metrics in a batch: (time ms, value).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LatestMetrics {
    pub cpu: Option<(i64, f64)>,
    pub memory: Option<(i64, f64)>,
    /// Highest `disk` percentage over all mounts at the newest disk time.
    pub disk_max: Option<(i64, f64)>,
}

/// A metrics batch that passed validation, laid out for the writer.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidatedBatch {
    pub batch_id: Uuid,
    pub agent_version: String,
    pub keys: Vec<SeriesKey>,
    pub times_ms: Vec<i64>,
    pub values: Vec<f64>,
    pub latest: LatestMetrics,
    /// Seconds between the agent's samples, as it says.
    pub interval_secs: Option<u32>,
}

/// Longest interval an agent or collector may say it reports at (a day).
pub const MAX_REPORT_INTERVAL_SECS: u32 = 86_400;

/// Checks a reported interval (`intervalSecs`).
pub fn check_interval(interval_secs: Option<u32>) -> Result<(), Rejection> {
    match interval_secs {
        Some(s) if s == 0 || s > MAX_REPORT_INTERVAL_SECS => Err(Rejection::invalid(
            "bad_interval",
            "intervalSecs",
            format!("intervalSecs {s} is not between 1 and {MAX_REPORT_INTERVAL_SECS}"),
        )),
        _ => Ok(()),
    }
}

impl ValidatedBatch {
    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// Checks every sample of a batch against the catalogue and the time limits; the first
/// offending sample refuses the whole batch.
pub fn validate_batch(
    batch: MetricsBatch,
    device_uid: Uuid,
    now_ms: i64,
) -> Result<ValidatedBatch, Rejection> {
    check_version(&batch.agent_version)?;
    check_interval(batch.interval_secs)?;
    if batch.samples.len() > MAX_SAMPLES_PER_BATCH {
        return Err(Rejection::too_large(
            "too_many_samples",
            "samples",
            format!(
                "the batch has {} samples; at most {MAX_SAMPLES_PER_BATCH} are accepted",
                batch.samples.len()
            ),
        ));
    }
    let n = batch.samples.len();
    let mut out = ValidatedBatch {
        batch_id: batch.batch_id,
        agent_version: batch.agent_version,
        keys: Vec::with_capacity(n),
        times_ms: Vec::with_capacity(n),
        values: Vec::with_capacity(n),
        latest: LatestMetrics::default(),
        interval_secs: batch.interval_secs,
    };
    let oldest = now_ms - MAX_SAMPLE_AGE_MS;
    let newest = now_ms + MAX_FUTURE_SKEW_MS;
    for (i, sample) in batch.samples.into_iter().enumerate() {
        let Some(info) = CATALOG.iter().find(|m| m.name == sample.n) else {
            return Err(Rejection::invalid(
                "unknown_metric",
                format!("samples[{i}].n"),
                format!("unknown metric {:?}; see the metric catalogue", sample.n),
            ));
        };
        let labels_match = sample.l.len() == info.labels.len()
            && info.labels.iter().all(|l| sample.l.contains_key(*l));
        if !labels_match {
            let got: Vec<&str> = sample.l.keys().map(String::as_str).collect();
            return Err(Rejection::invalid(
                "labels",
                format!("samples[{i}].l"),
                format!(
                    "metric {} takes exactly the labels {:?}; got {got:?}",
                    info.name, info.labels
                ),
            ));
        }
        if let Some((key, _)) = sample
            .l
            .iter()
            .find(|(_, v)| v.is_empty() || v.len() > MAX_LABEL_VALUE_LEN)
        {
            return Err(Rejection::invalid(
                "labels",
                format!("samples[{i}].l.{key}"),
                format!("label values must have 1 to {MAX_LABEL_VALUE_LEN} bytes"),
            ));
        }
        if !sample.v.is_finite() {
            return Err(Rejection::invalid(
                "non_finite",
                format!("samples[{i}].v"),
                format!("value {} is not a finite number", sample.v),
            ));
        }
        if sample.t > newest || sample.t < oldest {
            let message = if sample.t > newest {
                format!(
                    "time {} is more than {} s ahead of the operator's clock ({now_ms})",
                    sample.t,
                    MAX_FUTURE_SKEW_MS / 1000
                )
            } else {
                format!(
                    "time {} is older than {} days",
                    sample.t,
                    MAX_SAMPLE_AGE_MS / 86_400_000
                )
            };
            return Err(Rejection::invalid(
                "timestamp",
                format!("samples[{i}].t"),
                message,
            ));
        }
        match info.name {
            "cpu" => newer(&mut out.latest.cpu, sample.t, sample.v),
            "memory" => newer(&mut out.latest.memory, sample.t, sample.v),
            "disk" => match &mut out.latest.disk_max {
                Some((t, v)) if *t == sample.t => *v = v.max(sample.v),
                _ => newer(&mut out.latest.disk_max, sample.t, sample.v),
            },
            _ => {}
        }
        out.keys.push(SeriesKey {
            device_uid,
            metric: info.name,
            labels: sample.l,
        });
        out.times_ms.push(sample.t);
        out.values.push(sample.v);
    }
    Ok(out)
}

/// Keeps the newer of the stored and the given value.
pub(crate) fn newer(slot: &mut Option<(i64, f64)>, t: i64, v: f64) {
    if slot.is_none_or(|(old, _)| t > old) {
        *slot = Some((t, v));
    }
}

/// Most packages one inventory report may list.
pub const MAX_PACKAGES: usize = 50_000;

/// Checks an inventory report: its version, the number of packages and their fields.
pub fn check_inventory(report: &InventoryReport) -> Result<(), Rejection> {
    check_version(&report.agent_version)?;
    if report.software.len() > MAX_PACKAGES {
        return Err(Rejection::too_large(
            "too_many_packages",
            "software",
            format!("at most {MAX_PACKAGES} packages are accepted"),
        ));
    }
    for (i, package) in report.software.iter().enumerate() {
        for (field, value, max) in [
            ("name", &package.name, 512),
            ("version", &package.version, 256),
        ] {
            if (value.is_empty() && field == "name") || value.len() > max {
                return Err(Rejection::invalid(
                    "package",
                    format!("software[{i}].{field}"),
                    format!("a package {field} must have 1 to {max} bytes"),
                ));
            }
        }
    }
    Ok(())
}

pub fn check_version(version: &str) -> Result<(), Rejection> {
    if version.is_empty() || version.len() > MAX_VERSION_LEN {
        return Err(Rejection::invalid(
            "agent_version",
            "agentVersion",
            format!("the agent version must have 1 to {MAX_VERSION_LEN} bytes"),
        ));
    }
    Ok(())
}

/// Series labels of a sample, e.g. for tests and load generators.
pub fn labels<const N: usize>(pairs: [(&str, &str); N]) -> BTreeMap<String, String> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use cdot_crds::wire::Sample;

    use super::*;
    use crate::ingest::error::Problem;

    const NOW: i64 = 1_764_000_000_000;

    fn sample(n: &str, l: BTreeMap<String, String>, v: f64, t: i64) -> Sample {
        Sample {
            t,
            n: n.into(),
            l,
            v,
        }
    }

    fn batch(samples: Vec<Sample>) -> MetricsBatch {
        MetricsBatch {
            batch_id: Uuid::nil(),
            agent_version: "0.1.0".into(),
            samples,
            interval_secs: Some(10),
        }
    }

    fn good() -> Vec<Sample> {
        vec![
            sample("cpu", BTreeMap::new(), 12.5, NOW - 1000),
            sample("cpu", BTreeMap::new(), 15.0, NOW),
            sample("memory", BTreeMap::new(), 40.0, NOW),
            sample("disk", labels([("mount", "/")]), 70.0, NOW),
        ]
    }

    fn refused(samples: Vec<Sample>) -> Rejection {
        validate_batch(batch(samples), Uuid::nil(), NOW).expect_err("refused")
    }

    #[test]
    fn a_good_batch_is_laid_out_with_its_latest_summary() {
        let mut samples = good();
        samples.push(sample("disk", labels([("mount", "/var")]), 91.0, NOW));
        let v = validate_batch(batch(samples), Uuid::nil(), NOW).expect("valid");
        assert_eq!(v.len(), 5);
        assert_eq!(v.keys[3].metric, "disk");
        assert_eq!(v.latest.cpu, Some((NOW, 15.0)));
        assert_eq!(v.latest.memory, Some((NOW, 40.0)));
        assert_eq!(v.latest.disk_max, Some((NOW, 91.0)));
    }

    #[test]
    fn each_rule_names_the_offending_field() {
        let cases: Vec<(Sample, &str, &str)> = vec![
            (
                sample("cpux", BTreeMap::new(), 1.0, NOW),
                "samples[3].n",
                "unknown_metric",
            ),
            (
                sample("disk", BTreeMap::new(), 1.0, NOW),
                "samples[3].l",
                "labels",
            ),
            (
                sample("cpu", labels([("mount", "/")]), 1.0, NOW),
                "samples[3].l",
                "labels",
            ),
            (
                sample("disk", labels([("mount", "")]), 1.0, NOW),
                "samples[3].l.mount",
                "labels",
            ),
            (
                sample("cpu", BTreeMap::new(), f64::NAN, NOW),
                "samples[3].v",
                "non_finite",
            ),
            (
                sample("cpu", BTreeMap::new(), f64::INFINITY, NOW),
                "samples[3].v",
                "non_finite",
            ),
            (
                sample("cpu", BTreeMap::new(), 1.0, NOW + MAX_FUTURE_SKEW_MS + 1),
                "samples[3].t",
                "timestamp",
            ),
            (
                sample("cpu", BTreeMap::new(), 1.0, NOW - MAX_SAMPLE_AGE_MS - 1),
                "samples[3].t",
                "timestamp",
            ),
        ];
        for (bad, field, reason) in cases {
            let mut samples = good();
            samples.insert(3, bad.clone());
            let r = refused(samples);
            assert_eq!(r.field, field, "{bad:?}: {r:?}");
            assert_eq!(r.reason, reason, "{bad:?}");
            assert_eq!(r.problem, Problem::Invalid);
        }
        // Exactly at the limits is fine.
        let mut samples = good();
        samples.push(sample(
            "cpu",
            BTreeMap::new(),
            1.0,
            NOW + MAX_FUTURE_SKEW_MS,
        ));
        samples.push(sample("cpu", BTreeMap::new(), 1.0, NOW - MAX_SAMPLE_AGE_MS));
        validate_batch(batch(samples), Uuid::nil(), NOW).expect("valid");
    }

    #[test]
    fn too_many_samples_and_bad_versions_are_refused() {
        let samples = vec![sample("cpu", BTreeMap::new(), 1.0, NOW); MAX_SAMPLES_PER_BATCH + 1];
        let r = refused(samples);
        assert_eq!(r.problem, Problem::TooLarge);
        assert_eq!(r.field, "samples");
        let mut b = batch(good());
        b.agent_version = String::new();
        let r = validate_batch(b, Uuid::nil(), NOW).expect_err("refused");
        assert_eq!(r.field, "agentVersion");
    }
}
