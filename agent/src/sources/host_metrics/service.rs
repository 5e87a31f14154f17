//! `serviceFailed{service}`: 1 while a monitored systemd unit is in the failed state.
//!
//! One `systemctl show --property=ActiveState --value UNIT...` per collection, and only when
//! services are monitored.
use std::process::{Command, Stdio};

use cdot_crds::metrics_catalog::Metric;

use super::Samples;

/// Emits one sample per service; nothing when systemctl is unavailable.
pub fn collect(services: &[String], out: &mut Samples) {
    if services.is_empty() {
        return;
    }
    let output = Command::new("systemctl")
        .args(["show", "--property=ActiveState", "--value", "--"])
        .args(services)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    let output = match output {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            tracing::debug!(status = %o.status, ?services, "systemctl show failed");
            return;
        }
        Err(e) => {
            tracing::debug!(error = %e, "systemctl is not available; serviceFailed skipped");
            return;
        }
    };
    let text = String::from_utf8_lossy(&output.stdout);
    for (service, state) in services.iter().zip(parse_states(&text)) {
        out.push_labelled(
            Metric::ServiceFailed,
            service,
            f64::from(u8::from(state == "failed")),
        );
    }
}

/// The `ActiveState` values, one per unit, in order. systemd separates units by a blank line.
pub fn parse_states(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn states_are_read_in_order() {
        assert_eq!(
            super::parse_states("active\n\nfailed\n\ninactive\n"),
            vec!["active", "failed", "inactive"]
        );
    }
}
