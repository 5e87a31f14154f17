//! A supervisord of the test's own (Debian's `supervisor`, installed by `scripts/lib.sh
//! ensure_network_peers`), on a unix socket in a temporary directory: the service manager
//! of workflow tests where systemd is not PID 1 (containers, CI).
//!
//! It runs one program, `flaky`, whose first `failures` starts exit 1 after `run_secs`
//! seconds and whose later starts stay up, and which supervisord does not restart by
//! itself (`autorestart=false`): a test (or a workflow) decides when it starts again.
use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
};

pub struct Supervisord {
    dir: tempfile::TempDir,
    child: Child,
}

impl Supervisord {
    pub fn start(failures: u32, run_secs: u32) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().display();
        std::fs::write(
            dir.path().join("flaky.sh"),
            format!(
                "#!/bin/sh\nn=$(cat {d}/count 2>/dev/null || echo 0)\necho $((n + 1)) > {d}/count\n\
                 if [ \"$n\" -lt {failures} ]; then sleep {run_secs}; exit 1; fi\nexec sleep 300\n"
            ),
        )
        .expect("write program");
        std::fs::write(
            dir.path().join("supervisord.conf"),
            format!(
                "[unix_http_server]\nfile={d}/sock\n\n\
                 [supervisord]\nlogfile={d}/supervisord.log\npidfile={d}/pid\nchildlogdir={d}\nnodaemon=true\n\n\
                 [rpcinterface:supervisor]\nsupervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n\n\
                 [supervisorctl]\nserverurl=unix://{d}/sock\n\n\
                 [program:flaky]\ncommand=/bin/sh {d}/flaky.sh\nautorestart=false\nstartsecs=0\nstartretries=0\n"
            ),
        )
        .expect("write config");
        let child = Command::new("supervisord")
            .args(["-c", &format!("{d}/supervisord.conf")])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start supervisord (scripts/lib.sh ensure_network_peers installs it)");
        Self { dir, child }
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("supervisord.conf")
    }

    /// `supervisorctl -c CONFIG ARGS...`'s standard output.
    pub fn ctl(&self, args: &[&str]) -> String {
        let out = Command::new("supervisorctl")
            .arg("-c")
            .arg(self.config())
            .args(args)
            .output()
            .expect("supervisorctl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// How often `flaky` was started.
    pub fn starts(&self) -> u32 {
        std::fs::read_to_string(self.dir.path().join("count"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Supervisord {
    fn drop(&mut self) {
        let _ = self.ctl(&["shutdown"]);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
