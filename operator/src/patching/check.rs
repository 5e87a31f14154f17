//! Checks of what agents send about patches: a scan and a work report's per-package
//! progress. Domain code: a refusal names the field, and the API maps it to a 400 once.
use cdot_crds::wire::{
    patch::{MAX_UPDATES_PER_SCAN, PatchProgress, PatchScan},
    work::{MAX_LOG_TAIL_BYTES, MAX_PROGRESS_PER_REPORT, WorkReport},
};

use crate::ingest::{Rejection, validate::check_version};

const MAX_NAME: usize = 256;
const MAX_VERSION: usize = 256;
const MAX_TEXT: usize = 2_048;

fn text(field: String, value: &str, min: usize, max: usize) -> Result<(), Rejection> {
    if value.len() < min || value.len() > max {
        return Err(Rejection::invalid(
            "patch",
            field,
            format!("must have {min} to {max} bytes, has {}", value.len()),
        ));
    }
    Ok(())
}

/// Checks a scan before it replaces the device's previous one.
pub fn check_scan(scan: &PatchScan) -> Result<(), Rejection> {
    check_version(&scan.agent_version)?;
    if scan.updates.len() > MAX_UPDATES_PER_SCAN {
        return Err(Rejection::too_large(
            "too_many_updates",
            "updates",
            format!("at most {MAX_UPDATES_PER_SCAN} updates are accepted"),
        ));
    }
    if let Some(p) = &scan.problem {
        text("problem".into(), p, 1, MAX_TEXT)?;
    }
    for (i, u) in scan.updates.iter().enumerate() {
        text(format!("updates[{i}].name"), &u.name, 1, MAX_NAME)?;
        text(format!("updates[{i}].from"), &u.from, 1, MAX_VERSION)?;
        text(format!("updates[{i}].to"), &u.to, 1, MAX_VERSION)?;
        text(format!("updates[{i}].source"), &u.source, 0, MAX_TEXT)?;
    }
    let mut names: Vec<&str> = scan.updates.iter().map(|u| u.name.as_str()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        let i = scan
            .updates
            .iter()
            .rposition(|u| u.name == w[0])
            .unwrap_or(0);
        return Err(Rejection::invalid(
            "patch",
            format!("updates[{i}].name"),
            format!("{} is listed twice", w[0]),
        ));
    }
    Ok(())
}

/// Checks a work report.
pub fn check_report(report: &WorkReport) -> Result<(), Rejection> {
    if report.patches.len() > MAX_PROGRESS_PER_REPORT {
        return Err(Rejection::too_large(
            "too_many_progress_entries",
            "patches",
            format!("at most {MAX_PROGRESS_PER_REPORT} entries per report"),
        ));
    }
    for (i, p) in report.patches.iter().enumerate() {
        check_progress(i, p)?;
    }
    if let Some(step) = &report.step {
        if !report.patches.is_empty() {
            return Err(Rejection::invalid(
                "step_and_patches",
                "step",
                "a report is about a workflow step or a patch install, not both",
            ));
        }
        let cap = cdot_crds::wire::work::MAX_STEP_OUTPUT_BYTES;
        text("step.stdout".into(), &step.stdout, 0, cap)?;
        text("step.stderr".into(), &step.stderr, 0, cap)?;
        text("step.message".into(), &step.message, 0, MAX_TEXT)?;
    }
    Ok(())
}

fn check_progress(i: usize, p: &PatchProgress) -> Result<(), Rejection> {
    text(format!("patches[{i}].name"), &p.name, 1, MAX_NAME)?;
    text(format!("patches[{i}].version"), &p.version, 1, MAX_VERSION)?;
    if let Some(d) = &p.detail {
        text(format!("patches[{i}].detail"), d, 0, MAX_TEXT)?;
    }
    if let Some(l) = &p.log_tail {
        text(format!("patches[{i}].logTail"), l, 0, MAX_LOG_TAIL_BYTES)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdot_crds::{patch_policy::Classification, wire::patch::AvailableUpdate};

    fn update(name: &str) -> AvailableUpdate {
        AvailableUpdate {
            name: name.into(),
            from: "1".into(),
            to: "2".into(),
            classification: Classification::Bugfix,
            source: "Debian:12/stable".into(),
            size_bytes: None,
            reboot_required: false,
        }
    }

    #[test]
    fn a_bad_scan_is_refused_with_the_field() {
        let mut scan = PatchScan {
            agent_version: "0.1.0".into(),
            scanned_at_ms: 0,
            backend: None,
            problem: None,
            installed_packages: 3,
            updates: vec![update("a"), update("b"), update("a")],
            reboot_required: false,
        };
        let e = check_scan(&scan).expect_err("duplicate");
        assert_eq!(e.field, "updates[2].name");
        scan.updates = vec![update("")];
        assert_eq!(
            check_scan(&scan).expect_err("empty").field,
            "updates[0].name"
        );
        scan.updates = vec![update("a")];
        assert!(check_scan(&scan).is_ok());
    }
}
