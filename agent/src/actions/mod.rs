//! Workflow steps the agent runs for the operator: scripts ([`script`]), service restarts
//! ([`service`]) and network isolation ([`isolate`]).
//!
//! Every step ends in a [`StepResult`], failures included: a step never panics or returns
//! an error to the work loop, it says what went wrong in the result's `message`. Each step
//! is held to its item's `timeoutSecs`; a script is stopped with every process it started.
use std::{path::PathBuf, process::Output, time::Duration};

use cdot_crds::wire::work::{MAX_STEP_OUTPUT_BYTES, StepResult, StepState, WorkKind};
use tokio::io::{AsyncRead, AsyncReadExt};

pub mod isolate;
pub mod script;
pub mod service;

/// What the steps need from the agent.
#[derive(Debug)]
pub struct Actions {
    /// Where scripts are written before they run (inside the state directory).
    pub scripts_dir: PathBuf,
    /// The service manager restarts go through.
    pub services: service::ServiceManager,
    /// Isolation of this device.
    pub isolation: isolate::Isolation,
}

impl Actions {
    /// Runs a step item to its end; None when `kind` is not a workflow step.
    pub async fn run(&self, kind: &WorkKind) -> Option<StepResult> {
        let origin = kind.step()?;
        let limit = Duration::from_secs(origin.timeout_secs.max(1));
        let result = match kind {
            // The script keeps what it printed up to its limit: it enforces the limit itself.
            WorkKind::RunScript(script) => {
                return Some(script::run(&self.scripts_dir, script, limit).await);
            }
            WorkKind::RestartService(restart) => {
                tokio::time::timeout(limit, self.services.restart(&restart.service)).await
            }
            WorkKind::Isolate(isolate) => {
                tokio::time::timeout(limit, self.isolation.isolate(&isolate.allow)).await
            }
            WorkKind::Release(_) => tokio::time::timeout(limit, self.isolation.release()).await,
            WorkKind::PatchScan | WorkKind::PatchInstall(_) => return None,
        };
        Some(result.unwrap_or_else(|_| timed_out(limit)))
    }
}

/// A step that ended with `state` and `message`, without output.
pub fn result(state: StepState, message: impl Into<String>) -> StepResult {
    StepResult {
        state,
        exit_code: None,
        stdout: String::new(),
        stderr: String::new(),
        truncated: false,
        message: message.into(),
    }
}

/// A failed step.
pub fn failed(message: impl Into<String>) -> StepResult {
    result(StepState::Failed, message)
}

fn timed_out(limit: Duration) -> StepResult {
    result(
        StepState::TimedOut,
        format!("stopped at the step's time limit of {} s", limit.as_secs()),
    )
}

/// Runs a short command (a service manager's, nft) to its end, its stdin fed `input`.
pub(crate) async fn command_output(
    program: &str,
    args: &[&str],
    input: Option<&str>,
) -> std::io::Result<Output> {
    use tokio::io::AsyncWriteExt;
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .stdin(if input.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        // A step stopped at its limit drops this future: the command goes with it.
        .kill_on_drop(true);
    let mut child = command.spawn()?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(text.as_bytes()).await?;
    }
    child.wait_with_output().await
}

/// One line of a command's output for a message: trimmed, never empty.
pub(crate) fn summary(output: &Output) -> String {
    let text = String::from_utf8_lossy(&output.stderr);
    let text = if text.trim().is_empty() {
        String::from_utf8_lossy(&output.stdout)
    } else {
        text
    };
    let text = text.trim();
    if text.is_empty() {
        output.status.to_string()
    } else {
        text.replace('\n', "; ")
    }
}

/// The end of a stream: at most [`MAX_STEP_OUTPUT_BYTES`], and whether more was cut.
pub(crate) async fn read_tail(mut reader: impl AsyncRead + Unpin) -> (String, bool) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let mut truncated = false;
    loop {
        match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        // Bounded memory however much a script prints: drop the front now and then.
        if buf.len() > 2 * MAX_STEP_OUTPUT_BYTES {
            buf.drain(..buf.len() - MAX_STEP_OUTPUT_BYTES);
            truncated = true;
        }
    }
    if buf.len() > MAX_STEP_OUTPUT_BYTES {
        buf.drain(..buf.len() - MAX_STEP_OUTPUT_BYTES);
        truncated = true;
    }
    if truncated {
        // Start at a character, not inside one.
        let start = buf
            .iter()
            .position(|b| b & 0xC0 != 0x80)
            .unwrap_or(buf.len());
        buf.drain(..start);
    }
    (String::from_utf8_lossy(&buf).into_owned(), truncated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_tail_keeps_the_end_and_whole_characters() {
        let mut text = "é".repeat(MAX_STEP_OUTPUT_BYTES);
        text.push_str("END");
        let (tail, truncated) = read_tail(text.as_bytes()).await;
        assert!(truncated);
        assert!(tail.len() <= MAX_STEP_OUTPUT_BYTES, "{}", tail.len());
        assert!(tail.ends_with("éEND") && !tail.contains('\u{FFFD}'));
        let (tail, truncated) = read_tail(&b"short"[..]).await;
        assert_eq!((tail.as_str(), truncated), ("short", false));
    }
}
