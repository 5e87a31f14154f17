//! `serviceFailed{service}`: 1 while a monitored service is failed, as the agent's service
//! manager ([`ServiceManager`]) sees it: a systemd unit in the `failed` state, or a
//! supervisord program in FATAL, EXITED or BACKOFF.
//!
//! One `systemctl show` or `supervisorctl status` per collection, and only when services
//! are monitored.
use cdot_crds::metrics_catalog::Metric;

use super::Samples;
use crate::actions::service::ServiceManager;

/// Emits one sample per service through the agent's service manager; nothing when it is
/// unavailable.
pub fn collect(services: &[String], out: &mut Samples) {
    collect_with(ServiceManager::current(), services, out);
}

/// Emits one sample per service as `manager` sees it.
pub fn collect_with(manager: &ServiceManager, services: &[String], out: &mut Samples) {
    if services.is_empty() {
        return;
    }
    let Some(failed) = manager.failed(services) else {
        return;
    };
    for (service, failed) in services.iter().zip(failed) {
        out.push_labelled(Metric::ServiceFailed, service, f64::from(u8::from(failed)));
    }
}
