//! Patching fixtures: a Debian root with test packages, a real agent managing it, and a
//! manifest commit (shared by `patching_e2e` and the approval-latency benchmark).
use std::path::Path;

use cdot_testkit::debian_root::{DebianRoot, Suite, TestDeb};

use super::{Agent, Operator};

/// Writes a file atomically, as a checkout does, so the watcher never reads half of it.
pub fn commit(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("write manifest");
    std::fs::rename(&tmp, path).expect("rename manifest");
}

/// A Debian root with v1 of cdot-tls, cdot-hello, cdot-broken, cdot-db and cdot-app
/// installed and their v2 published (see `patching_e2e`).
pub fn root_with_packages() -> DebianRoot {
    let root = DebianRoot::new();
    let v1 = [
        TestDeb::new("cdot-tls", "1.0"),
        TestDeb::new("cdot-hello", "1.0"),
        TestDeb::new("cdot-broken", "1.0"),
        TestDeb::new("cdot-db", "1.0"),
        TestDeb::new("cdot-app", "1.0"),
    ];
    root.install(&v1);
    let repo = root.repo();
    repo.publish(Suite::SECURITY, &TestDeb::new("cdot-tls", "2.0"));
    repo.publish(Suite::STABLE, &TestDeb::new("cdot-hello", "2.0"));
    repo.publish(
        Suite::STABLE,
        &TestDeb::new("cdot-broken", "2.0")
            .postinst("echo 'cdot-broken: cannot migrate its data' >&2\nexit 3"),
    );
    repo.publish(Suite::STABLE, &TestDeb::new("cdot-db", "2.0"));
    repo.publish(
        Suite::STABLE,
        &TestDeb::new("cdot-app", "2.0").depends("cdot-db (>= 2.0)"),
    );
    root
}

/// Enrolls and runs the real agent as `device`, managing the packages of `root`; reboots
/// are `true` (nothing happens).
pub fn start_agent(
    operator: &Operator,
    token: &str,
    device: &str,
    root: &Path,
    work: &Path,
) -> Agent {
    let root = root.display().to_string();
    super::start_agent(
        operator,
        token,
        device,
        work,
        &[
            "--metrics-interval-secs",
            "5",
            "--patch-root",
            &root,
            "--reboot-command",
            "true",
        ],
    )
}
