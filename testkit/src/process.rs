//! Child processes of tests (daemons such as nfcapd, softflowd, snmpd, the collector):
//! stopped with SIGTERM first so that they write what they hold, then killed.
use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use nix::{sys::signal::Signal, unistd::Pid};

/// How long a daemon may take to exit after SIGTERM before it is killed.
pub const GRACE: Duration = Duration::from_secs(10);

/// Sends SIGTERM to `child` (nothing happens when it has exited already).
pub fn sigterm(child: &Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
}

/// Waits until `child` exits or `deadline` passes; true when it exited.
pub fn wait_until(child: &mut Child, deadline: Instant) -> bool {
    loop {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM, up to `grace` for the exit, then SIGKILL.
pub fn terminate(child: &mut Child, grace: Duration) {
    sigterm(child);
    if !wait_until(child, Instant::now() + grace) {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// A child process terminated ([`terminate`]) when dropped.
pub struct Daemon(pub Child);

impl Daemon {
    /// Spawns `command` with stdin closed; panics with the command when it cannot start.
    pub fn start(command: &mut Command) -> Self {
        let child = command
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {command:?}: {e}"));
        Self(child)
    }

    /// SIGTERM, then up to [`GRACE`] for the exit.
    pub fn stop(&mut self) {
        terminate(&mut self.0, GRACE);
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            self.stop();
        }
    }
}
