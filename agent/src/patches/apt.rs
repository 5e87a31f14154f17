//! apt (Debian, Ubuntu, Raspbian and their derivatives).
//!
//! **Scan.** `apt-get update`, then a simulated `apt-get -s dist-upgrade` (the full candidate
//! set, as an administrator's `apt full-upgrade` would install it) whose `Inst` lines are
//! read; only lines with an installed version (`Inst name [old] (new SOURCES [arch])`) are
//! updates, the others are new dependencies. The sizes come from one `apt-cache show` of all
//! candidates, the count of installed packages from `dpkg-query`.
//!
//! `apt-get update` failing is a problem of the scan only when it leaves no package lists at
//! all (a fresh system whose mirror is down, a broken sources.list on first use). When some
//! sources fail (`W:`/`E:` lines, exit code 100, a timeout) and lists are there, the scan goes
//! on with what apt has, which is what an administrator's `apt upgrade` would install; the
//! failure is logged. A scan that lists no updates because one mirror is dead would be worse.
//!
//! **Classification** (see `cdot_crds::wire::patch`): apt prints each candidate's sources as
//! `Label:Version/Suite` (its `RelStr`), so the `Release` files in `/var/lib/apt/lists` are
//! read to find each source's `Origin` and `Suite`. A `-security` suite is `security`; the
//! operating system's own origin (`/etc/os-release` `ID`, `ID_LIKE` and the first word of
//! `NAME`, case-insensitive, also with `-Security` appended) is `bugfix`; anything else is
//! `thirdParty`. A source with no `Release` file found is judged by its label.
//!
//! **Install** of exactly `name=version`: the install is simulated first with the same options
//! as the real one; when it would change a denied package or one that the work item did not
//! approve (another version, a removal, a new package), nothing is installed. Then
//! `--download-only`, then the install with the old configuration files kept
//! (`--force-confdef --force-confold`). A dpkg left interrupted is repaired first with
//! `dpkg --configure -a`.
use std::collections::BTreeMap;

use cdot_crds::{
    patch_policy::Classification,
    wire::patch::{AvailableUpdate, PackageTarget, PatchProgress, PatchState},
};

use super::{
    Check, Found, PatchError, Planned, Timeouts, check_simulation,
    command::{Cmd, Output, Runner, excerpt},
    failed, progress, reboot,
};

/// Where apt keeps the lists `apt-get update` fetched.
const LISTS_DIR: &str = "/var/lib/apt/lists";
/// Packages per `apt-cache show` call (a command line stays far below ARG_MAX).
const SHOW_BATCH: usize = 500;

/// One change a simulation would make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Package name as apt prints it (`libc6`, `libc6:i386` for a foreign architecture).
    pub name: String,
    /// Installed version; `None` for a new package.
    pub old: Option<String>,
    /// Version it would install; `None` for a removal.
    pub new: Option<String>,
    /// Where the new version comes from (`Debian:12.8/bookworm-security`), as apt prints it.
    pub sources: Vec<String>,
}

/// The `Inst` and `Remv` lines of `apt-get -s` output (`Conf` lines configure what `Inst`
/// unpacked, or a package left unconfigured, and change no version).
pub fn parse_simulation(stdout: &str) -> Vec<Change> {
    stdout.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Change> {
    let (verb, rest) = line.split_once(' ')?;
    let removal = match verb {
        "Inst" => false,
        "Remv" => true,
        _ => return None,
    };
    let rest = rest.trim();
    let (name, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    let rest = rest.trim_start();
    // `[old]` right after the name.
    let (old, rest) = match rest.strip_prefix('[') {
        Some(r) => {
            let (old, r) = r.split_once(']')?;
            (Some(old.trim().to_owned()), r.trim_start())
        }
        None => (None, rest),
    };
    if removal {
        return Some(Change {
            name: name.to_owned(),
            old,
            new: None,
            sources: Vec::new(),
        });
    }
    // `(new SOURCE, SOURCE [arch])`, possibly followed by ` [broken deps ]`.
    let inner = rest.strip_prefix('(')?;
    let inner = &inner[..inner.find(')')?];
    let inner = match inner.rfind(" [") {
        Some(i) if inner.ends_with(']') => &inner[..i],
        _ => inner,
    };
    let (new, sources) = inner.split_once(' ').unwrap_or((inner, ""));
    let sources = sources
        .split(", ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    Some(Change {
        name: name.to_owned(),
        old,
        new: Some(new.to_owned()),
        sources,
    })
}

/// The fields of a `Release` file that say where its packages come from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReleaseInfo {
    pub origin: Option<String>,
    pub label: Option<String>,
    pub suite: Option<String>,
    pub version: Option<String>,
}

impl ReleaseInfo {
    /// The head of a `Release` or `InRelease` file (the clear-signed wrapper skipped).
    pub fn parse(text: &str) -> Self {
        let mut info = Self::default();
        for line in text.lines() {
            // The checksum lists start the first indented block; the fields come before.
            if line.starts_with(' ') || line.starts_with('\t') {
                continue;
            }
            if line.starts_with("-----BEGIN PGP SIGNATURE") {
                break;
            }
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = Some(value.trim().to_owned()).filter(|v| !v.is_empty());
            match key {
                "Origin" => info.origin = value,
                "Label" => info.label = value,
                "Suite" => info.suite = value,
                "Version" => info.version = value,
                _ => {}
            }
        }
        info
    }

    /// How apt names this release in simulation output (`pkgCache::VerIterator::RelStr`):
    /// `Label:` when labelled, then `Version/Suite` or `Suite`.
    pub fn rel_str(&self) -> Option<String> {
        let suite = self.suite.as_deref()?;
        let mut s = String::new();
        if let Some(label) = &self.label {
            s.push_str(label);
            s.push(':');
        }
        if let Some(version) = &self.version {
            s.push_str(version);
            s.push('/');
        }
        s.push_str(suite);
        Some(s)
    }
}

/// The names this operating system's packages come from: `/etc/os-release` `ID`, each of
/// `ID_LIKE`, and the first word of `NAME`, lower-cased.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OsOrigins(Vec<String>);

impl OsOrigins {
    pub fn parse(os_release: &str) -> Self {
        let mut names = Vec::new();
        for line in os_release.lines() {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches(['"', '\'']).to_lowercase();
            match key.trim() {
                "ID" => names.push(value),
                "ID_LIKE" => names.extend(value.split_whitespace().map(str::to_owned)),
                "NAME" => names.extend(value.split_whitespace().next().map(str::to_owned)),
                _ => {}
            }
        }
        names.retain(|n| !n.is_empty());
        names.sort();
        names.dedup();
        Self(names)
    }

    /// `origin` is the operating system's (also `Debian-Security`-style).
    pub fn matches(&self, origin: &str) -> bool {
        let origin = origin.to_lowercase();
        let origin = origin.strip_suffix("-security").unwrap_or(&origin);
        self.0.iter().any(|n| n == origin)
    }
}

/// Classifies a candidate by its sources (module docs); returns the class and the source
/// that decided it.
pub fn classify(
    sources: &[String],
    releases: &[ReleaseInfo],
    os: &OsOrigins,
) -> (Classification, String) {
    let judged: Vec<(&String, String, String)> = sources
        .iter()
        .map(|source| {
            let release = releases
                .iter()
                .find(|r| r.rel_str().as_deref() == Some(source.as_str()));
            let (origin, suite) = match release {
                Some(r) => (
                    r.origin
                        .clone()
                        .or_else(|| r.label.clone())
                        .unwrap_or_default(),
                    r.suite.clone().unwrap_or_default(),
                ),
                None => {
                    // `Label:Version/Suite`, `Label:Suite`, `Version/Suite` or `Suite`.
                    let (label, rest) = source.split_once(':').unwrap_or(("", source));
                    let suite = rest.rsplit_once('/').map_or(rest, |(_, s)| s);
                    (label.to_owned(), suite.to_owned())
                }
            };
            (source, origin, suite)
        })
        .collect();
    if let Some((source, ..)) = judged
        .iter()
        .find(|(_, _, suite)| suite.to_lowercase().ends_with("-security"))
    {
        return (Classification::Security, (*source).clone());
    }
    if let Some((source, ..)) = judged.iter().find(|(_, origin, _)| os.matches(origin)) {
        return (Classification::Bugfix, (*source).clone());
    }
    (
        Classification::ThirdParty,
        sources.first().cloned().unwrap_or_default(),
    )
}

/// `Size:` of each `Package`/`Version` stanza of `apt-cache show` output.
pub fn parse_sizes(stdout: &str) -> BTreeMap<(String, String), u64> {
    let mut sizes = BTreeMap::new();
    for stanza in stdout.split("\n\n") {
        let (mut package, mut version, mut size) = (None, None, None);
        for line in stanza.lines() {
            if let Some(v) = line.strip_prefix("Package: ") {
                package = Some(v.trim());
            } else if let Some(v) = line.strip_prefix("Version: ") {
                version = Some(v.trim());
            } else if let Some(v) = line.strip_prefix("Size: ") {
                size = v.trim().parse::<u64>().ok();
            }
        }
        if let (Some(p), Some(v), Some(s)) = (package, version, size) {
            sizes.entry((p.to_owned(), v.to_owned())).or_insert(s);
        }
    }
    sizes
}

/// Installed packages in `dpkg-query -W -f '${db:Status-Status}\n'` output.
pub fn count_installed(stdout: &str) -> u32 {
    let n = stdout.lines().filter(|l| l.trim() == "installed").count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The `Release` files of the lists `apt-get update` fetched.
fn read_releases(runner: &Runner) -> Vec<ReleaseInfo> {
    let Ok(dir) = std::fs::read_dir(runner.host_path(LISTS_DIR)) else {
        return Vec::new();
    };
    dir.flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.ends_with("_Release") || name.ends_with("_InRelease")
        })
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .map(|text| ReleaseInfo::parse(&text))
        .collect()
}

/// Some package list is there to plan with.
fn lists_usable(runner: &Runner) -> bool {
    std::fs::read_dir(runner.host_path(LISTS_DIR)).is_ok_and(|dir| {
        dir.flatten()
            .any(|e| e.file_name().to_string_lossy().contains("_Packages"))
    })
}

fn os_origins(runner: &Runner) -> OsOrigins {
    ["/etc/os-release", "/usr/lib/os-release"]
        .iter()
        .find_map(|p| std::fs::read_to_string(runner.host_path(p)).ok())
        .map(|text| OsOrigins::parse(&text))
        .unwrap_or_default()
}

/// Runs `cmd`; a non-zero exit is an error naming the command and its complaint.
async fn run_ok(
    runner: &Runner,
    cmd: &Cmd,
    timeout: std::time::Duration,
) -> Result<Output, PatchError> {
    let out = runner.run(cmd, timeout).await?;
    if out.success() {
        Ok(out)
    } else {
        Err(PatchError::failed(cmd, &out))
    }
}

pub(crate) async fn scan(runner: &Runner, timeouts: &Timeouts) -> Result<Found, PatchError> {
    let update = Cmd::new("apt-get").args(["-q", "update"]);
    match runner.run(&update, timeouts.scan_step).await {
        Ok(out) if out.success() => {
            if out
                .combined
                .lines()
                .any(|l| l.starts_with("W:") || l.starts_with("E:"))
            {
                tracing::warn!(
                    problems = %excerpt(&out.stderr, "", 1000),
                    "apt-get update: some sources failed; planning with the lists apt has"
                );
            }
        }
        result => {
            let why = match result {
                Ok(out) => PatchError::failed(&update, &out),
                Err(e) => e.into(),
            };
            if !lists_usable(runner) {
                return Err(why);
            }
            tracing::warn!(error = %why, "apt-get update failed; planning with the lists apt has");
        }
    }

    let simulate = Cmd::new("apt-get").args(["-s", "-o", "Debug::NoLocking=1", "dist-upgrade"]);
    let out = run_ok(runner, &simulate, timeouts.scan_step).await?;
    if out.stdout_truncated {
        return Err(PatchError::Output {
            command: simulate.to_string(),
            why: "its output is longer than the agent reads".to_owned(),
        });
    }
    let changes: Vec<Change> = parse_simulation(&out.stdout)
        .into_iter()
        .filter(|c| c.old.is_some() && c.new.is_some())
        .collect();

    let releases = read_releases(runner);
    let os = os_origins(runner);
    let sizes = sizes(runner, timeouts, &changes).await;

    let installed = Cmd::new("dpkg-query").args(["-W", "-f", "${db:Status-Status}\n"]);
    let out = run_ok(runner, &installed, timeouts.scan_step).await?;
    let installed_packages = count_installed(&out.stdout);

    let mut updates: Vec<AvailableUpdate> = changes
        .into_iter()
        .filter_map(|c| {
            let (from, to) = (c.old?, c.new?);
            let (classification, source) = classify(&c.sources, &releases, &os);
            let bare = c.name.split_once(':').map_or(c.name.as_str(), |(n, _)| n);
            let size_bytes = sizes
                .get(&(c.name.clone(), to.clone()))
                .or_else(|| sizes.get(&(bare.to_owned(), to.clone())))
                .copied();
            Some(AvailableUpdate {
                reboot_required: reboot::package_needs_reboot(&c.name),
                name: c.name,
                from,
                to,
                classification,
                source,
                size_bytes,
            })
        })
        .collect();
    updates.sort();
    Ok(Found {
        installed_packages,
        updates,
    })
}

/// Download sizes of the candidates, in batches; a failure leaves them unknown.
async fn sizes(
    runner: &Runner,
    timeouts: &Timeouts,
    changes: &[Change],
) -> BTreeMap<(String, String), u64> {
    let mut sizes = BTreeMap::new();
    for batch in changes.chunks(SHOW_BATCH) {
        let cmd = Cmd::new("apt-cache")
            .args(["show", "--no-all-versions"])
            .args(
                batch
                    .iter()
                    .filter_map(|c| Some(format!("{}={}", c.name, c.new.as_deref()?))),
            );
        match runner.run(&cmd, timeouts.scan_step).await {
            // apt-cache prints what it found even when it exits non-zero for one it did not.
            Ok(out) => sizes.extend(parse_sizes(&out.stdout)),
            Err(e) => tracing::warn!(error = %e, "package sizes unknown"),
        }
    }
    sizes
}

/// The installed version of `name`, when dpkg says it is installed.
async fn installed_version(
    runner: &Runner,
    timeouts: &Timeouts,
    name: &str,
) -> Result<Option<String>, PatchError> {
    let cmd = Cmd::new("dpkg-query").args(["-W", "-f", "${db:Status-Status} ${Version}\n", name]);
    let out = runner.run(&cmd, timeouts.scan_step).await?;
    Ok(out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("installed ").map(|v| v.trim().to_owned())))
}

/// dpkg was interrupted (files in `/var/lib/dpkg/updates`, as apt checks it) and wants
/// `dpkg --configure -a`.
fn dpkg_interrupted(runner: &Runner) -> bool {
    std::fs::read_dir(runner.host_path("/var/lib/dpkg/updates")).is_ok_and(|dir| {
        dir.flatten().any(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit())
        })
    })
}

/// apt-get options shared by the simulation and the real install, so that both plan the same.
fn install_args(target: &PackageTarget) -> Vec<String> {
    vec![
        "-y".into(),
        "-o".into(),
        "Dpkg::Use-Pty=0".into(),
        "-o".into(),
        "Dpkg::Options::=--force-confdef".into(),
        "-o".into(),
        "Dpkg::Options::=--force-confold".into(),
        "install".into(),
        "--only-upgrade".into(),
        format!("{}={}", target.name, target.version),
    ]
}

pub(crate) async fn install(
    runner: &Runner,
    timeouts: &Timeouts,
    target: &PackageTarget,
    check: &Check<'_>,
    report: &mut (dyn FnMut(PatchProgress) + Send),
) -> PatchProgress {
    match installed_version(runner, timeouts, &target.name).await {
        Ok(Some(v)) if v == target.version => return progress(target, PatchState::Installed),
        Ok(_) => {}
        Err(e) => return failed(target, &e),
    }

    if dpkg_interrupted(runner) {
        let repair = Cmd::new("dpkg").args(["--configure", "-a"]);
        tracing::warn!("dpkg was interrupted; running dpkg --configure -a first");
        if let Err(e) = run_ok(runner, &repair, timeouts.install).await {
            return failed(target, &e);
        }
    }

    let simulate = Cmd::new("apt-get")
        .args(["-s", "-o", "Debug::NoLocking=1"])
        .args(install_args(target));
    let sim = match run_ok(runner, &simulate, timeouts.scan_step).await {
        Ok(out) => out,
        Err(e) => return failed(target, &e),
    };
    let changes = parse_simulation(&sim.stdout);
    let planned: Vec<Planned> = changes
        .iter()
        .map(|c| Planned {
            name: c.name.clone(),
            old: c.old.clone(),
            new: c.new.clone(),
        })
        .collect();
    if let Err(detail) = check_simulation(target, &planned, check) {
        let mut p = progress(target, PatchState::Failed);
        p.detail = Some(detail);
        p.log_tail = Some(super::log_tail(&sim.stdout));
        return p;
    }

    report(progress(target, PatchState::Downloading));
    let download = Cmd::new("apt-get")
        .arg("--download-only")
        .args(install_args(target));
    if let Err(e) = run_ok(runner, &download, timeouts.install).await {
        return failed(target, &e);
    }

    report(progress(target, PatchState::Installing));
    let install = Cmd::new("apt-get").args(install_args(target));
    if let Err(e) = run_ok(runner, &install, timeouts.install).await {
        return failed(target, &e);
    }

    match installed_version(runner, timeouts, &target.name).await {
        Ok(Some(v)) if v == target.version => progress(target, PatchState::Installed),
        Ok(now) => {
            let mut p = progress(target, PatchState::Failed);
            p.detail = Some(format!(
                "apt-get succeeded but {} is at {}",
                target.name,
                now.as_deref().unwrap_or("no installed version")
            ));
            p
        }
        Err(e) => failed(target, &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_lines_of_a_real_simulation() {
        // apt 2.6 in a debootstrapped bookworm root, LC_ALL=C, the test repository's suites
        // (no Label, no Version in their Release files).
        let stdout = "\
Reading package lists...
Building dependency tree...
Reading state information...
Calculating upgrade...
The following NEW packages will be installed:
  cdot-new
The following packages will be upgraded:
  cdot-acme cdot-alpha cdot-beta cdot-gamma cdot-lib
5 upgraded, 1 newly installed, 0 to remove and 0 not upgraded.
1 not fully installed or removed.
Inst cdot-acme [1.0] (2.0 acme-stable [all])
Inst cdot-beta [1.0] (2.0 cdot-stable-security [all])
Inst cdot-new (1.0 cdot-stable [all])
Conf cdot-acme (2.0 acme-stable [all])
Conf cdot-broken (3.0 cdot-stable [all])
";
        let changes = parse_simulation(stdout);
        assert_eq!(
            changes,
            vec![
                Change {
                    name: "cdot-acme".into(),
                    old: Some("1.0".into()),
                    new: Some("2.0".into()),
                    sources: vec!["acme-stable".into()],
                },
                Change {
                    name: "cdot-beta".into(),
                    old: Some("1.0".into()),
                    new: Some("2.0".into()),
                    sources: vec!["cdot-stable-security".into()],
                },
                Change {
                    name: "cdot-new".into(),
                    old: None,
                    new: Some("1.0".into()),
                    sources: vec!["cdot-stable".into()],
                },
            ]
        );
    }

    #[test]
    fn reads_ubuntu_and_debian_style_lines() {
        let stdout = "\
Inst libc6 [2.35-0ubuntu3.1] (2.35-0ubuntu3.4 Ubuntu:22.04/jammy-updates, Ubuntu:22.04/jammy-security [amd64]) [libc6-dev:amd64 ]
Inst libc6:i386 [2.35-0ubuntu3.1] (2.35-0ubuntu3.4 Ubuntu:22.04/jammy-updates [i386])
Inst linux-image-6.1.0-28-amd64 (6.1.119-1 Debian-Security:12/stable-security [amd64])
Inst docker-ce [5:27.3.1-1~debian.12~bookworm] (5:27.4.0-1~debian.12~bookworm Docker CE:bookworm [amd64])
Remv libold1 [1.2-3]
Remv libold2 [0.9] [libold1:amd64 ]
garbage line (with [brackets
Inst
Inst half [1.0
";
        let changes = parse_simulation(stdout);
        assert_eq!(changes.len(), 6, "{changes:#?}");
        assert_eq!(
            changes[0],
            Change {
                name: "libc6".into(),
                old: Some("2.35-0ubuntu3.1".into()),
                new: Some("2.35-0ubuntu3.4".into()),
                sources: vec![
                    "Ubuntu:22.04/jammy-updates".into(),
                    "Ubuntu:22.04/jammy-security".into()
                ],
            }
        );
        assert_eq!(changes[1].name, "libc6:i386");
        assert_eq!(changes[2].old, None);
        assert_eq!(
            changes[3].new.as_deref(),
            Some("5:27.4.0-1~debian.12~bookworm")
        );
        assert_eq!(changes[3].sources, vec!["Docker CE:bookworm".to_owned()]);
        assert_eq!(
            changes[4],
            Change {
                name: "libold1".into(),
                old: Some("1.2-3".into()),
                new: None,
                sources: vec![],
            }
        );
        assert_eq!(changes[5].old.as_deref(), Some("0.9"));
    }

    fn releases() -> Vec<ReleaseInfo> {
        vec![
            ReleaseInfo::parse(
                "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\nOrigin: Debian\nLabel: Debian-Security\nSuite: stable-security\nVersion: 12\nCodename: bookworm-security\nSHA256:\n abc 12 main/binary-all/Packages\n-----BEGIN PGP SIGNATURE-----\nOrigin: Evil\n",
            ),
            ReleaseInfo::parse("Origin: Debian\nLabel: Debian\nSuite: stable\nVersion: 12.8\n"),
            ReleaseInfo::parse("Origin: Docker\nLabel: Docker CE\nSuite: bookworm\n"),
            ReleaseInfo::parse("Origin: Acme Vendor\nSuite: acme-stable\nCodename: acme-stable\n"),
            ReleaseInfo::parse("Origin: Debian\nSuite: cdot-stable\n"),
            // A vendor that labels itself like the distribution.
            ReleaseInfo::parse("Origin: Sneaky\nLabel: Debian\nSuite: sneaky\n"),
        ]
    }

    #[test]
    fn release_files_name_sources_as_apt_does() {
        let r = releases();
        assert_eq!(r[0].origin.as_deref(), Some("Debian"));
        assert_eq!(
            r[0].rel_str().as_deref(),
            Some("Debian-Security:12/stable-security")
        );
        assert_eq!(r[1].rel_str().as_deref(), Some("Debian:12.8/stable"));
        assert_eq!(r[2].rel_str().as_deref(), Some("Docker CE:bookworm"));
        assert_eq!(r[3].rel_str().as_deref(), Some("acme-stable"));
    }

    #[test]
    fn classifies_by_suite_and_origin() {
        let debian = OsOrigins::parse(
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nID=debian\n",
        );
        let r = releases();
        let c = |sources: &[&str]| {
            classify(
                &sources.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
                &r,
                &debian,
            )
        };
        assert_eq!(
            c(&["Debian:12.8/stable", "Debian-Security:12/stable-security"]),
            (
                Classification::Security,
                "Debian-Security:12/stable-security".to_owned()
            )
        );
        assert_eq!(
            c(&["Debian:12.8/stable"]),
            (Classification::Bugfix, "Debian:12.8/stable".to_owned())
        );
        assert_eq!(c(&["cdot-stable"]).0, Classification::Bugfix);
        assert_eq!(c(&["acme-stable"]).0, Classification::ThirdParty);
        assert_eq!(c(&["Docker CE:bookworm"]).0, Classification::ThirdParty);
        // The origin decides, not the label.
        assert_eq!(c(&["Debian:sneaky"]).0, Classification::ThirdParty);
        // No Release file found: judged by the label.
        assert_eq!(c(&["Debian:12.9/stable-updates"]).0, Classification::Bugfix);
        assert_eq!(c(&["Other:1/x-security"]).0, Classification::Security);
        assert_eq!(c(&[]).0, Classification::ThirdParty);

        let ubuntu = OsOrigins::parse("NAME=\"Ubuntu\"\nID=ubuntu\nID_LIKE=debian\n");
        let u = |sources: &[&str]| {
            classify(
                &sources.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>(),
                &[],
                &ubuntu,
            )
            .0
        };
        assert_eq!(
            u(&["Ubuntu:22.04/jammy-updates", "Ubuntu:22.04/jammy-security"]),
            Classification::Security
        );
        assert_eq!(u(&["Ubuntu:22.04/jammy-updates"]), Classification::Bugfix);
        assert_eq!(u(&["LP-PPA-foo:22.04/jammy"]), Classification::ThirdParty);
    }

    #[test]
    fn reads_sizes_and_installed_counts() {
        let show = "Package: cdot-alpha\nVersion: 2.0\nArchitecture: all\nSize: 740\nDescription: x\n\nPackage: cdot-beta\nVersion: 2.0\nSize: 736\n\nPackage: broken\nSize: nope\n";
        let sizes = parse_sizes(show);
        assert_eq!(sizes.len(), 2);
        assert_eq!(sizes[&("cdot-alpha".to_owned(), "2.0".to_owned())], 740);
        assert_eq!(
            count_installed(
                "installed\ninstalled\nhalf-configured\nconfig-files\nnot-installed\ninstalled\n"
            ),
            3
        );
    }
}
