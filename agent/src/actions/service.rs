//! The service manager: systemd where it is PID 1, supervisord where it is not (containers,
//! CI). Restart steps and the `serviceFailed` metric go through the same one, chosen once
//! at start-up (`--service-manager`).
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
};

use cdot_crds::wire::work::{StepResult, StepState};

use super::{command_output, failed, result, summary};

/// `--service-manager`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ServiceManagerChoice {
    /// systemd when it runs (`/run/systemd/system` exists), else supervisord when
    /// `supervisorctl` can run.
    #[default]
    Auto,
    /// systemd (`systemctl`).
    Systemd,
    /// supervisord (`supervisorctl`).
    Supervisor,
}

/// The service manager in use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceManager {
    /// systemd units.
    Systemd,
    /// supervisord programs; `config` is passed as `supervisorctl -c`.
    Supervisor { config: Option<PathBuf> },
    /// Neither was found.
    Unavailable,
}

/// The manager the metrics use (set once at start-up by [`ServiceManager::install`]).
static CURRENT: OnceLock<ServiceManager> = OnceLock::new();

impl ServiceManager {
    /// Resolves `choice`; `supervisor_config` is kept for supervisorctl.
    pub fn choose(choice: ServiceManagerChoice, supervisor_config: Option<PathBuf>) -> Self {
        let supervisor = Self::Supervisor {
            config: supervisor_config,
        };
        match choice {
            ServiceManagerChoice::Systemd => Self::Systemd,
            ServiceManagerChoice::Supervisor => supervisor,
            ServiceManagerChoice::Auto if Path::new("/run/systemd/system").exists() => {
                Self::Systemd
            }
            ServiceManagerChoice::Auto => {
                let runs = Command::new("supervisorctl")
                    .arg("help")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok();
                if runs { supervisor } else { Self::Unavailable }
            }
        }
    }

    /// Makes this the manager of the `serviceFailed` metric (the first call in a process
    /// wins: one agent per process), and returns it.
    pub fn install(self) -> Self {
        tracing::info!(manager = ?self, "service manager");
        let _ = CURRENT.set(self.clone());
        self
    }

    /// The installed manager; before [`Self::install`], the automatic choice.
    pub fn current() -> &'static Self {
        CURRENT.get_or_init(|| Self::choose(ServiceManagerChoice::Auto, None))
    }

    fn supervisorctl_args<'a>(config: &'a Option<PathBuf>, rest: &[&'a str]) -> Vec<&'a str> {
        let mut args: Vec<&str> = match config.as_deref().and_then(Path::to_str) {
            Some(path) => vec!["-c", path],
            None => Vec::new(),
        };
        args.extend_from_slice(rest);
        args
    }

    /// Restarts `service` and checks that it runs afterwards.
    pub async fn restart(&self, service: &str) -> StepResult {
        let (program, restart, check) = match self {
            Self::Unavailable => {
                return failed(
                    "no service manager: systemd is not running and supervisorctl is not \
                     available (choose one with --service-manager)",
                );
            }
            Self::Systemd => (
                "systemctl",
                vec!["restart", "--", service],
                vec!["is-active", "--", service],
            ),
            Self::Supervisor { config } => (
                "supervisorctl",
                Self::supervisorctl_args(config, &["restart", service]),
                Self::supervisorctl_args(config, &["status", service]),
            ),
        };
        let ran = format!("{program} {}", restart.join(" "));
        let output = match command_output(program, &restart, None).await {
            Ok(output) => output,
            Err(e) => return failed(format!("`{ran}` could not run: {e}")),
        };
        let said = summary(&output);
        // supervisorctl may exit 0 after an error (`NAME: ERROR (...)`), and reports one
        // when restarting a program that was not running: the state check below decides.
        if !output.status.success() {
            return StepResult {
                exit_code: output.status.code(),
                ..failed(format!("`{ran}` failed: {said}"))
            };
        }
        let checked = format!("{program} {}", check.join(" "));
        let state = match command_output(program, &check, None).await {
            Ok(output) => String::from_utf8_lossy(&output.stdout).into_owned(),
            Err(e) => return failed(format!("`{ran}` ran, but `{checked}` could not: {e}")),
        };
        let state = match self {
            Self::Systemd => state.trim().to_owned(),
            _ => supervisor_states(&state)
                .into_iter()
                .find(|(name, _)| *name == service)
                .map(|(_, state)| state.to_owned())
                .unwrap_or_default(),
        };
        let up = match self {
            Self::Systemd => state == "active",
            _ => state == "RUNNING",
        };
        let message = format!("ran `{ran}` ({said}); `{checked}` says {state:?}");
        tracing::info!(service, up, %message, "service restarted");
        result(
            if up {
                StepState::Succeeded
            } else {
                StepState::Failed
            },
            message,
        )
    }

    /// Whether each of `services` is failed, in order; None when the manager cannot tell
    /// (a service it does not know is not failed).
    pub fn failed(&self, services: &[String]) -> Option<Vec<bool>> {
        let (program, args): (&str, Vec<&str>) = match self {
            Self::Unavailable => return None,
            Self::Systemd => (
                "systemctl",
                ["show", "--property=ActiveState", "--value", "--"]
                    .into_iter()
                    .chain(services.iter().map(String::as_str))
                    .collect(),
            ),
            Self::Supervisor { config } => {
                let mut args = Self::supervisorctl_args(config, &["status"]);
                args.extend(services.iter().map(String::as_str));
                ("supervisorctl", args)
            }
        };
        let output = Command::new(program)
            .args(&args)
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output();
        let output = match output {
            // supervisorctl status exits 3 when a program is not running: still an answer.
            Ok(o) if o.status.success() || matches!(self, Self::Supervisor { .. }) => o,
            Ok(o) => {
                tracing::debug!(status = %o.status, program, "service states unavailable");
                return None;
            }
            Err(e) => {
                tracing::debug!(error = %e, program, "service manager not available; serviceFailed skipped");
                return None;
            }
        };
        let text = String::from_utf8_lossy(&output.stdout);
        match self {
            Self::Supervisor { .. } => {
                let states = supervisor_states(&text);
                if states.is_empty() {
                    return None;
                }
                Some(
                    services
                        .iter()
                        .map(|s| {
                            states.iter().any(|(name, state)| {
                                name == s && matches!(*state, "FATAL" | "EXITED" | "BACKOFF")
                            })
                        })
                        .collect(),
                )
            }
            _ => Some(
                systemd_states(&text)
                    .into_iter()
                    .map(|state| state == "failed")
                    .collect(),
            ),
        }
    }
}

/// The `ActiveState` values, one per unit, in order. systemd separates units by a blank line.
pub fn systemd_states(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect()
}

/// `(program, state)` of each line of `supervisorctl status`
/// (`web   RUNNING   pid 12, uptime 0:01:02`); errors (`x: ERROR (no such process)`) skipped.
pub fn supervisor_states(text: &str) -> Vec<(&str, &str)> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            let name = words.next()?;
            let state = words.next()?;
            let known = state.chars().all(|c| c.is_ascii_uppercase()) && !name.ends_with(':');
            known.then_some((name, state))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_read_in_order() {
        assert_eq!(
            systemd_states("active\n\nfailed\n\ninactive\n"),
            vec!["active", "failed", "inactive"]
        );
        assert_eq!(
            supervisor_states(
                "web                              RUNNING   pid 12, uptime 0:01:02\n\
                 worker                           FATAL     Exited too quickly\n\
                 nope: ERROR (no such process)\n"
            ),
            vec![("web", "RUNNING"), ("worker", "FATAL")]
        );
    }
}
