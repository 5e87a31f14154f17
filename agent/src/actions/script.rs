//! The `RunScript` step: the body is written to a file of its own and given to the
//! interpreter (sh, bash or python3) with the step's arguments.
//!
//! * The script runs in a process group of its own, and that group is killed when the
//!   script ends, times out or the agent stops: a step's processes end with the step, so
//!   nothing it started outlives its time limit or holds its output open. (A lasting
//!   service is started through the service manager, not left behind by a script.)
//! * `runAs` switches user and group in the child (the agent runs as root). The file is
//!   then written to a private directory under the system's temporary directory, owned by
//!   that user, since the state directory is closed to everyone but the agent.
//! * Only the end of stdout and stderr is kept ([`MAX_STEP_OUTPUT_BYTES`] each).
//!
//! [`MAX_STEP_OUTPUT_BYTES`]: cdot_crds::wire::work::MAX_STEP_OUTPUT_BYTES
use std::{
    os::unix::{fs::DirBuilderExt, process::ExitStatusExt},
    path::{Path, PathBuf},
    process::{ExitStatus, Stdio},
    time::Duration,
};

use cdot_crds::{
    wire::work::{RunScript, StepResult, StepState},
    workflow::Shell,
};
use nix::{
    sys::signal::{Signal, killpg},
    unistd::{Pid, User, chown},
};
use uuid::Uuid;

use super::{failed, read_tail};

/// Interpreter and file extension of a shell; None when it does not exist on this OS.
fn interpreter(shell: Shell) -> Option<(&'static str, &'static str)> {
    match shell {
        Shell::Sh => Some(("sh", "sh")),
        Shell::Bash => Some(("bash", "sh")),
        Shell::Python => Some(("python3", "py")),
        Shell::PowerShell | Shell::Cmd => None,
    }
}

/// Runs `script` (its file written under `dir`), stopping it after `limit`.
pub async fn run(dir: &Path, script: &RunScript, limit: Duration) -> StepResult {
    let Some((program, extension)) = interpreter(script.shell) else {
        return failed(format!(
            "{:?} scripts are not available on this OS ({}); use Sh, Bash or Python",
            script.shell,
            std::env::consts::OS
        ));
    };
    let user = match script.run_as.as_deref().map(User::from_name) {
        None => None,
        Some(Ok(Some(user))) => Some(user),
        Some(Ok(None)) => {
            return failed(format!(
                "runAs user {:?} does not exist on this device",
                script.run_as.as_deref().unwrap_or_default()
            ));
        }
        Some(Err(e)) => return failed(format!("cannot look up the runAs user: {e}")),
    };
    let base = match &user {
        Some(_) => std::env::temp_dir(),
        None => dir.to_owned(),
    };
    // The script runs in its own directory, so its path must not be relative to ours (the
    // quick start's agent has the relative state directory `.cdot/agent`).
    let base = match std::path::absolute(&base) {
        Ok(base) => base,
        Err(e) => {
            return failed(format!(
                "cannot resolve the script directory {}: {e}",
                base.display()
            ));
        }
    };
    let work = match ScriptDir::create(&base, user.as_ref()) {
        Ok(work) => work,
        Err(e) => {
            return failed(format!(
                "cannot create a directory for the script under {}: {e}",
                base.display()
            ));
        }
    };
    let file = work.0.join(format!("script.{extension}"));
    let written = std::fs::write(&file, &script.body).and_then(|()| match &user {
        Some(u) => chown(&file, Some(u.uid), Some(u.gid)).map_err(std::io::Error::from),
        None => Ok(()),
    });
    if let Err(e) = written {
        return failed(format!(
            "cannot write the script to {}: {e}",
            file.display()
        ));
    }

    let mut command = tokio::process::Command::new(program);
    command
        .arg(&file)
        .args(&script.args)
        .env("CDOT_WORKFLOW", &script.origin.workflow)
        .env("CDOT_RUN", script.origin.run.to_string())
        .env("CDOT_STEP", &script.origin.step)
        .env("CDOT_ATTEMPT", script.origin.attempt.to_string())
        .current_dir(&work.0)
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let who = match &user {
        Some(u) => {
            command
                .uid(u.uid.as_raw())
                .gid(u.gid.as_raw())
                .env("HOME", &u.dir)
                .env("USER", &u.name)
                .env("LOGNAME", &u.name);
            u.name.clone()
        }
        None => "the agent's user".to_owned(),
    };
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => return failed(format!("cannot start {program}: {e}")),
    };
    let group = ProcessGroup(child.id());
    let stdout = child.stdout.take().map(|s| tokio::spawn(read_tail(s)));
    let stderr = child.stderr.take().map(|s| tokio::spawn(read_tail(s)));
    tracing::info!(workflow = %script.origin.workflow, run = %script.origin.run,
        step = %script.origin.step, program, user = %who, "script started");
    let status = tokio::time::timeout(limit, child.wait()).await;
    // Ends what the script left running (and, at the limit, the script): the pipes close.
    drop(group);
    let status = match status {
        Ok(status) => Some(status),
        Err(_) => {
            let _ = child.wait().await;
            None
        }
    };
    let (stdout, out_cut) = collect(stdout).await;
    let (stderr, err_cut) = collect(stderr).await;
    let command_line = format!("{program} script.{extension} as {who}");
    let (state, exit_code, message) = match status {
        None => (
            StepState::TimedOut,
            None,
            format!(
                "`{command_line}` was stopped at the step's time limit of {} s (with every process it started)",
                limit.as_secs()
            ),
        ),
        Some(Err(e)) => (
            StepState::Failed,
            None,
            format!("waiting for `{command_line}` failed: {e}"),
        ),
        Some(Ok(status)) => ended(&command_line, status),
    };
    StepResult {
        state,
        exit_code,
        stdout,
        stderr,
        truncated: out_cut || err_cut,
        message,
    }
}

fn ended(command_line: &str, status: ExitStatus) -> (StepState, Option<i32>, String) {
    match (status.code(), status.signal()) {
        (Some(0), _) => (
            StepState::Succeeded,
            Some(0),
            format!("`{command_line}` exited with 0"),
        ),
        (Some(code), _) => (
            StepState::Failed,
            Some(code),
            format!("`{command_line}` exited with {code}"),
        ),
        (None, signal) => (
            StepState::Failed,
            None,
            format!(
                "`{command_line}` was killed by signal {}",
                signal.unwrap_or_default()
            ),
        ),
    }
}

async fn collect(reader: Option<tokio::task::JoinHandle<(String, bool)>>) -> (String, bool) {
    match reader {
        Some(handle) => handle.await.unwrap_or_default(),
        None => (String::new(), false),
    }
}

/// The script's process group, killed on drop.
struct ProcessGroup(Option<u32>);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if let Some(pid) = self.0.and_then(|p| i32::try_from(p).ok()) {
            // ESRCH: the group is gone already.
            let _ = killpg(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// A private directory for one script, removed on drop.
struct ScriptDir(PathBuf);

impl ScriptDir {
    fn create(base: &Path, owner: Option<&User>) -> std::io::Result<Self> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(base)?;
        let path = base.join(format!("cdot-step-{}", Uuid::new_v4()));
        // Not recursive: the name must be new (no one else's directory or link).
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        let dir = Self(path);
        if let Some(user) = owner {
            chown(&dir.0, Some(user.uid), Some(user.gid))?;
        }
        Ok(dir)
    }
}

impl Drop for ScriptDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.0) {
            tracing::warn!(dir = %self.0.display(), error = %e, "failed to remove a script's directory");
        }
    }
}
