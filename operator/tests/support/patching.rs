//! Patching fixtures: a Debian root with test packages, a real agent managing it, and a
//! manifest commit (shared by `patching_e2e` and the approval-latency benchmark).
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use cdot_testkit::{
    bins::workspace_bin,
    debian_root::{DebianRoot, Suite, TestDeb},
    process::Daemon,
};

use super::Operator;

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

pub struct Agent {
    pub daemon: Daemon,
    pub log: PathBuf,
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
    let state = work.join(format!("agent-{device}"));
    let enroll = Command::new(workspace_bin("cdot-agent"))
        .args(["enroll", "--server", &operator.agent_base, "--token", token])
        .args(["--device-name", device, "--ca-cert"])
        .arg(operator.data_dir.join("agent-ca.crt"))
        .arg("--state-dir")
        .arg(&state)
        .output()
        .expect("cdot-agent enroll");
    assert!(
        enroll.status.success(),
        "enroll {device}: {}",
        String::from_utf8_lossy(&enroll.stderr)
    );
    let log = work.join(format!("agent-{device}.log"));
    let daemon = Daemon(
        Command::new(workspace_bin("cdot-agent"))
            .args(["run", "--metrics-interval-secs", "5"])
            .arg("--state-dir")
            .arg(&state)
            .arg("--patch-root")
            .arg(root)
            .args(["--reboot-command", "true"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("agent log"))
            .spawn()
            .expect("cdot-agent run"),
    );
    Agent { daemon, log }
}
