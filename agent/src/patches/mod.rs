//! Patching: what updates the package manager offers ([`PatchSystem::scan`]), installing one
//! of them to exactly the approved version ([`PatchSystem::install`]), and whether the system
//! waits for a reboot ([`PatchSystem::reboot_required`]).
//!
//! The system is this host, or a root directory (`--patch-root DIR`): an agent in a container
//! manages the host mounted at `/host`, and the tests a debootstrapped Debian. Every command
//! then runs under `chroot DIR`, and files (`/etc/os-release`, the reboot flag, apt's lists)
//! are read below `DIR`.
//!
//! Design choices:
//! - **Never crashing, never hanging.** A scan never fails: a backend that cannot run gives a
//!   [`PatchScan`] whose `problem` says why (the command, its exit code, its own message) and
//!   lists no updates. Every command has a timeout ([`Timeouts`]; a dead mirror can hold
//!   `apt-get update` for ever) that kills its whole process group, and output is bounded
//!   ([`command`]). Parsers take any text and skip what they do not understand.
//! - **Nothing but what was approved.** Before an install the package manager simulates it;
//!   when the simulation would change a denied package, or any package the work item did not
//!   approve at exactly that version (a removal, a new dependency, another version), nothing
//!   is installed and the package is `failed` with a detail naming each one.
//! - **The package manager's own words.** Failures carry the exit code, a one-line detail
//!   and the end of the combined output ([`MAX_LOG_TAIL_BYTES`]).
//!
//! [`apt`] is tested against real apt and dpkg in a Debian root (`agent/tests/patches.rs`);
//! [`dnf`] only by its parsers' unit tests on recorded output (there is no dnf here).
use std::{path::PathBuf, time::Duration};

use cdot_crds::wire::{
    patch::{
        MAX_UPDATES_PER_SCAN, PackageTarget, PatchBackend, PatchProgress, PatchScan, PatchState,
    },
    work::MAX_LOG_TAIL_BYTES,
};

pub mod apt;
pub mod command;
pub mod dnf;
pub mod reboot;

use command::{Cmd, CommandError, Output, Runner, excerpt};

/// How long each command may take before it is killed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Each step of a scan (`apt-get update`, the simulation, `dpkg-query`) and the
    /// simulation before an install.
    pub scan_step: Duration,
    /// Each step of an install (download, install, `dpkg --configure -a`).
    pub install: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            scan_step: Duration::from_secs(5 * 60),
            install: Duration::from_secs(10 * 60),
        }
    }
}

/// Why a step of a scan or an install failed.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    #[error("no package manager found: {0}")]
    NoBackend(String),
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("`{command}` failed with {end}: {excerpt}")]
    Failed {
        command: String,
        code: Option<i32>,
        end: String,
        excerpt: String,
        /// The end of its combined output.
        log: String,
    },
    #[error("`{command}`: {why}")]
    Output { command: String, why: String },
}

impl PatchError {
    /// `cmd` ended as `out` says, not with exit code 0.
    pub fn failed(cmd: &Cmd, out: &Output) -> Self {
        Self::Failed {
            command: cmd.to_string(),
            code: out.code,
            end: out.describe_end(),
            excerpt: excerpt(&out.stderr, &out.stdout, 600),
            log: out.combined.clone(),
        }
    }

    /// Exit code of the failed command.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            Self::Failed { code, .. } => *code,
            _ => None,
        }
    }

    /// What the failed command printed, when it printed something.
    pub fn log(&self) -> &str {
        match self {
            Self::Failed { log, .. } => log,
            Self::Command(e) => e.combined_tail(),
            _ => "",
        }
    }

    /// A short, low-cardinality label (for metrics and log fields).
    pub fn label(&self) -> &'static str {
        match self {
            Self::NoBackend(_) => "no_backend",
            Self::Command(CommandError::Timeout { .. }) => "timeout",
            Self::Command(_) => "spawn",
            Self::Failed { .. } => "command_failed",
            Self::Output { .. } => "output",
        }
    }
}

/// The package system of this host, or of a root directory (`--patch-root DIR`: every
/// command runs under `chroot DIR`, for an agent in a container managing its host mounted at
/// /host, and for tests).
#[derive(Clone, Debug)]
pub struct PatchSystem {
    runner: Runner,
    backend: Option<PatchBackend>,
    timeouts: Timeouts,
}

impl PatchSystem {
    /// apt if `apt-get` exists (in the root), else dnf if `dnf` exists, else none.
    pub fn detect(root: Option<PathBuf>) -> PatchSystem {
        let runner = Runner::new(root);
        let backend = if runner.find_program("apt-get").is_some() {
            Some(PatchBackend::Apt)
        } else if runner.find_program("dnf").is_some() {
            Some(PatchBackend::Dnf)
        } else {
            None
        };
        PatchSystem {
            runner,
            backend,
            timeouts: Timeouts::default(),
        }
    }

    /// The same system with other command timeouts.
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    pub fn backend(&self) -> Option<PatchBackend> {
        self.backend
    }

    /// The root directory the system lives in (`None`: this host).
    pub fn root(&self) -> Option<&std::path::Path> {
        self.runner.root()
    }

    pub fn timeouts(&self) -> Timeouts {
        self.timeouts
    }

    /// Never fails: a backend that cannot run gives a PatchScan with `problem` saying why
    /// (command, exit code, its stderr excerpt) and no updates.
    pub async fn scan(&self, agent_version: &str) -> PatchScan {
        let found = match self.backend {
            Some(PatchBackend::Apt) => apt::scan(&self.runner, &self.timeouts).await,
            Some(PatchBackend::Dnf) => dnf::scan(&self.runner, &self.timeouts).await,
            None => Err(self.no_backend()),
        };
        let reboot_required = self.reboot_required().await;
        let mut scan = PatchScan {
            agent_version: agent_version.to_owned(),
            scanned_at_ms: now_ms(),
            backend: self.backend,
            problem: None,
            installed_packages: 0,
            updates: Vec::new(),
            reboot_required,
        };
        match found {
            Ok(found) => {
                scan.installed_packages = found.installed_packages;
                scan.updates = found.updates;
                if scan.updates.len() > MAX_UPDATES_PER_SCAN {
                    tracing::warn!(
                        updates = scan.updates.len(),
                        "more updates than a scan may carry; the rest wait for the next scan"
                    );
                    scan.updates.truncate(MAX_UPDATES_PER_SCAN);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, label = e.label(), "patch scan failed");
                scan.problem = Some(one_line(&e.to_string()));
            }
        }
        scan
    }

    /// Installs exactly `target` (name=version). Before installing it simulates the install;
    /// if the simulation would install, upgrade or remove any package that `deny` matches
    /// (the PatchPolicy's regular expressions; an entry that is not one is a package name),
    /// or any package that is not in `approved` at that version (the whole approved list of
    /// this work item), it installs nothing and returns Failed with `detail` naming the
    /// package(s) and why ("would also change denied package libfoo (1.0 -> 2.0)"). Calls
    /// `progress` with Downloading (as the download starts) and Installing, and returns the
    /// final PatchProgress: Installed, or Failed with exit_code, a one-line detail and
    /// `log_tail` (the last MAX_LOG_TAIL_BYTES of the combined output, cut on a char
    /// boundary). A target already installed is Installed at once.
    pub async fn install(
        &self,
        target: &PackageTarget,
        approved: &[PackageTarget],
        deny: &[String],
        progress: &mut (dyn FnMut(PatchProgress) + Send),
    ) -> PatchProgress {
        let check = Check::new(approved, deny);
        match self.backend {
            Some(PatchBackend::Apt) => {
                apt::install(&self.runner, &self.timeouts, target, &check, progress).await
            }
            Some(PatchBackend::Dnf) => {
                dnf::install(&self.runner, &self.timeouts, target, &check, progress).await
            }
            None => failed(target, &self.no_backend()),
        }
    }

    /// The system asks for a reboot (/run/reboot-required or /var/run/reboot-required in the
    /// root for apt; `needs-restarting -r` exit 1 for dnf).
    pub async fn reboot_required(&self) -> bool {
        match self.backend {
            Some(PatchBackend::Apt) => reboot::apt_flag_present(&self.runner),
            Some(PatchBackend::Dnf) => dnf::reboot_required(&self.runner, &self.timeouts).await,
            None => false,
        }
    }

    fn no_backend(&self) -> PatchError {
        let place = match self.runner.root() {
            Some(root) => format!("in the root {}", root.display()),
            None => "on this host".to_owned(),
        };
        PatchError::NoBackend(format!(
            "neither apt-get nor dnf in /usr/bin, /usr/sbin, /usr/local/bin, /usr/local/sbin, /bin or /sbin {place}"
        ))
    }
}

/// What a backend's scan found (the caller adds the agent's version and the time).
pub struct Found {
    pub installed_packages: u32,
    pub updates: Vec<cdot_crds::wire::patch::AvailableUpdate>,
}

/// The packages an install may change: the approved list, minus what `deny` matches.
pub(crate) struct Check<'a> {
    approved: &'a [PackageTarget],
    deny: Vec<DenyPattern>,
}

enum DenyPattern {
    Regex(regex::Regex),
    Name(String),
}

impl<'a> Check<'a> {
    fn new(approved: &'a [PackageTarget], deny: &[String]) -> Self {
        Self {
            approved,
            deny: deny
                .iter()
                .map(|p| match regex::Regex::new(p) {
                    Ok(re) => DenyPattern::Regex(re),
                    Err(_) => DenyPattern::Name(p.clone()),
                })
                .collect(),
        }
    }

    /// `name` (or its name without a `:arch` suffix) is denied.
    fn denied(&self, name: &str) -> bool {
        let bare = name.split_once(':').map_or(name, |(n, _)| n);
        self.deny.iter().any(|p| match p {
            DenyPattern::Regex(re) => re.is_match(name) || re.is_match(bare),
            DenyPattern::Name(n) => n == name || n == bare,
        })
    }

    fn approved(&self, name: &str) -> Option<&PackageTarget> {
        self.approved.iter().find(|a| a.name == name)
    }
}

/// One package a simulated install would change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Planned {
    pub name: String,
    /// Installed version; `None` for a new package.
    pub old: Option<String>,
    /// Version after; `None` for a removal.
    pub new: Option<String>,
}

impl Planned {
    /// `change libfoo (1.0 -> 2.0)`, `install libfoo (2.0)`, `remove libfoo (1.0)`.
    fn describe(&self, what: &str) -> String {
        match (&self.old, &self.new) {
            (Some(old), Some(new)) => format!("change {what}{} ({old} -> {new})", self.name),
            (None, Some(new)) => format!("install {what}{} ({new})", self.name),
            (Some(old), None) => format!("remove {what}{} ({old})", self.name),
            (None, None) => format!("change {what}{}", self.name),
        }
    }
}

/// Whether a simulated install of `target` changes only what it may; the error is the
/// one-line detail naming each package that it may not change.
pub(crate) fn check_simulation(
    target: &PackageTarget,
    planned: &[Planned],
    check: &Check<'_>,
) -> Result<(), String> {
    if check.denied(&target.name) {
        return Err(format!("{} is denied by the policy", target.name));
    }
    let mut denied = Vec::new();
    let mut unapproved = Vec::new();
    let mut found_target = false;
    for p in planned {
        if p.name == target.name {
            match &p.new {
                Some(new) if *new == target.version => found_target = true,
                Some(new) => unapproved.push(format!(
                    "would install {} {new}, not the approved {}",
                    p.name, target.version
                )),
                None => unapproved.push(format!("would {}", p.describe(""))),
            }
            continue;
        }
        if check.denied(&p.name) {
            denied.push(format!("would also {}", p.describe("denied package ")));
            continue;
        }
        match (check.approved(&p.name), &p.new) {
            (Some(a), Some(new)) if *new == a.version => {}
            // A package new to the system, pulled in by the approved one (the next kernel
            // ABI's image, a library's new soname): nothing installed changes, and denied
            // names were refused above.
            (None, Some(_)) if p.old.is_none() => {}
            (Some(a), Some(_)) => unapproved.push(format!(
                "would also {}, approved is {}",
                p.describe("package "),
                a.version
            )),
            _ => unapproved.push(format!("would also {}", p.describe("unapproved package "))),
        }
    }
    if denied.is_empty() && unapproved.is_empty() && !found_target {
        return Err(format!(
            "the package manager would not install {} {} (not installed, or not available at that version)",
            target.name, target.version
        ));
    }
    denied.extend(unapproved);
    if denied.is_empty() {
        Ok(())
    } else {
        Err(denied.join("; "))
    }
}

/// Now, Unix milliseconds.
fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// `target` entering `state`, now.
pub(crate) fn progress(target: &PackageTarget, state: PatchState) -> PatchProgress {
    PatchProgress {
        name: target.name.clone(),
        version: target.version.clone(),
        state,
        at_ms: now_ms(),
        exit_code: None,
        detail: None,
        log_tail: None,
    }
}

/// `target` failed because of `error`.
pub(crate) fn failed(target: &PackageTarget, error: &PatchError) -> PatchProgress {
    let mut p = progress(target, PatchState::Failed);
    p.exit_code = error.exit_code();
    p.detail = Some(one_line(&error.to_string()));
    let log = error.log();
    if !log.is_empty() {
        p.log_tail = Some(log_tail(log));
    }
    p
}

/// The last [`MAX_LOG_TAIL_BYTES`] of `text`, cut on a char boundary.
pub fn log_tail(text: &str) -> String {
    command::tail(text, MAX_LOG_TAIL_BYTES).to_owned()
}

/// `text` on one line, at most 1000 bytes.
fn one_line(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.len() <= 1000 {
        return line;
    }
    let mut end = 1000;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &line[..end])
}

#[cfg(test)]
mod tests {
    use cdot_crds::patch_policy::Classification;

    use super::*;

    fn target(name: &str, version: &str) -> PackageTarget {
        PackageTarget {
            name: name.into(),
            version: version.into(),
            classification: Classification::Bugfix,
        }
    }

    fn planned(name: &str, old: Option<&str>, new: Option<&str>) -> Planned {
        Planned {
            name: name.into(),
            old: old.map(Into::into),
            new: new.map(Into::into),
        }
    }

    #[test]
    fn only_approved_versions_may_change() {
        let app = target("app", "2.0");
        let approved = [app.clone(), target("libapp", "2.0")];
        let deny = [
            "^libfoo$".to_owned(),
            "openssl".to_owned(),
            "c++[".to_owned(),
        ];
        let check = Check::new(&approved, &deny);

        let ok = [
            planned("app", Some("1.0"), Some("2.0")),
            planned("libapp", Some("1.0"), Some("2.0")),
        ];
        assert_eq!(check_simulation(&app, &ok, &check), Ok(()));

        let bad = [
            planned("libapp", Some("1.0"), Some("2.1")),
            planned("libfoo", Some("1.0"), Some("2.0")),
            // New to the system: allowed (the next kernel's image, a new soname).
            planned("libnew", None, Some("1.0")),
            planned("libssl3:i386", Some("3.0.1"), None),
            planned("openssl", Some("3.0.1"), Some("3.0.2")),
            planned("app", Some("1.0"), Some("2.0")),
        ];
        assert_eq!(
            check_simulation(&app, &bad, &check),
            Err("would also change denied package libfoo (1.0 -> 2.0); \
                 would also change denied package openssl (3.0.1 -> 3.0.2); \
                 would also change package libapp (1.0 -> 2.1), approved is 2.0; \
                 would also remove unapproved package libssl3:i386 (3.0.1)"
                .to_owned())
        );

        // A deny entry that is no regular expression is a name.
        let odd = [
            planned("app", Some("1.0"), Some("2.0")),
            planned("c++[", Some("1"), Some("2")),
        ];
        assert!(
            check_simulation(&app, &odd, &check)
                .expect_err("refused")
                .contains("denied package c++[")
        );

        assert_eq!(
            check_simulation(&target("openssl", "3.0.2"), &[], &check),
            Err("openssl is denied by the policy".to_owned())
        );
        assert!(
            check_simulation(&app, &[], &check)
                .expect_err("refused")
                .contains("would not install app 2.0")
        );
        assert_eq!(
            check_simulation(&app, &[planned("app", Some("1.0"), Some("2.5"))], &check),
            Err("would install app 2.5, not the approved 2.0".to_owned())
        );
    }

    #[test]
    fn the_work_loop_can_spawn_scans_and_installs() {
        fn send<T: Send>(_: T) {}
        let system = PatchSystem::detect(None);
        send(system.scan("0"));
        let t = target("app", "2.0");
        let mut report = |_: PatchProgress| {};
        send(system.install(&t, &[], &[], &mut report));
        send(system.reboot_required());
    }

    #[test]
    fn details_are_one_line() {
        assert_eq!(one_line("a\n  b\tc\n"), "a b c");
        assert!(one_line(&"é".repeat(800)).len() <= 1003);
    }

    #[tokio::test]
    async fn a_root_without_a_package_manager_has_a_problem() {
        let dir = std::env::temp_dir().join(format!("cdot-patches-empty-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create a temp dir");
        let system = PatchSystem::detect(Some(dir.clone()));
        assert_eq!(system.backend(), None);
        let scan = system.scan("1.2.3").await;
        let problem = scan.problem.expect("a problem");
        assert!(
            problem.contains("apt-get") && problem.contains("dnf"),
            "{problem}"
        );
        assert!(scan.updates.is_empty());
        let mut seen = Vec::new();
        let p = system
            .install(&target("app", "2.0"), &[], &[], &mut |p| seen.push(p))
            .await;
        assert_eq!(p.state, PatchState::Failed);
        assert!(seen.is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
