//! dnf (Fedora, RHEL and derivatives), dnf 4's output.
//!
//! **Tested only by its parsers' unit tests**, on output recorded from dnf 4: there is no
//! dnf on the machines the tests run on. The apt backend has the end-to-end tests.
//!
//! **Scan.** `dnf -q check-update` (exit 100: updates, 0: none) lists candidates as
//! `name.arch  [epoch:]version-release  repo`; `rpm -qa` gives the installed versions and
//! their count; `dnf -q updateinfo list --security` the security advisories' packages; one
//! `dnf -q repoquery --upgrades` the download sizes (unknown when it fails).
//!
//! **Classification.** A candidate named by a security advisory is `security`; one from a
//! repository of the distribution ([`distro_repo`]: Fedora's, RHEL's, CentOS Stream's, Rocky's,
//! Alma's, Oracle's and Amazon's standard repository ids) is `bugfix`; any other repository
//! (EPEL, vendors) is `thirdParty`.
//!
//! **Install** of `name-[epoch:]version-release`: simulated with `--assumeno` and checked like
//! apt's, then `--downloadonly`, then the install.
use std::collections::{BTreeMap, BTreeSet};

use cdot_crds::{
    patch_policy::Classification,
    wire::patch::{AvailableUpdate, PackageTarget, PatchProgress, PatchState},
};

use super::{
    Check, PatchError, Planned, Timeouts, check_simulation,
    command::{Cmd, Runner},
    failed, progress, reboot,
};

/// One candidate of `dnf check-update`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub name: String,
    pub arch: String,
    /// `[epoch:]version-release`, without a `0:` epoch.
    pub evr: String,
    pub repo: String,
}

/// `[epoch:]version-release` without a zero epoch (dnf prints none, rpm `0:`).
pub fn normalize_evr(evr: &str) -> &str {
    evr.strip_prefix("0:").unwrap_or(evr)
}

/// `name.arch` split at the last dot.
fn split_arch(name_arch: &str) -> Option<(&str, &str)> {
    name_arch
        .rsplit_once('.')
        .filter(|(n, a)| !n.is_empty() && !a.is_empty())
}

/// The candidates of `dnf -q check-update` (long names wrap onto the next line; the
/// `Obsoleting Packages` section lists no updates of their own).
pub fn parse_check_update(stdout: &str) -> Vec<Candidate> {
    let mut out = Vec::new();
    let mut pending: Option<String> = None;
    for line in stdout.lines() {
        if line.trim_start().starts_with("Obsoleting Packages") {
            break;
        }
        let mut tokens: Vec<&str> = line.split_whitespace().collect();
        let joined;
        if let Some(head) = pending.take()
            && tokens.len() == 2
            && line.starts_with(' ')
        {
            joined = head;
            tokens.insert(0, &joined);
        }
        match tokens.as_slice() {
            [name] if !line.starts_with(' ') && split_arch(name).is_some() => {
                pending = Some((*name).to_owned());
            }
            [name_arch, evr, repo] => {
                if let Some((name, arch)) = split_arch(name_arch) {
                    out.push(Candidate {
                        name: name.to_owned(),
                        arch: arch.to_owned(),
                        evr: normalize_evr(evr).to_owned(),
                        repo: (*repo).to_owned(),
                    });
                }
            }
            _ => {}
        }
    }
    out
}

/// `rpm -qa --qf '%{NAME}.%{ARCH}\t%{EPOCH}:%{VERSION}-%{RELEASE}\n'`: `(name, arch)` → evr.
pub fn parse_installed(stdout: &str) -> BTreeMap<(String, String), String> {
    stdout
        .lines()
        .filter_map(|line| {
            let (name_arch, evr) = line.split_once('\t')?;
            let (name, arch) = split_arch(name_arch.trim())?;
            let evr = evr.trim();
            let evr = evr.strip_prefix("(none):").unwrap_or(evr);
            Some((
                (name.to_owned(), arch.to_owned()),
                normalize_evr(evr).to_owned(),
            ))
        })
        .collect()
}

/// `name-[epoch:]version-release.arch` as `(name, arch, evr)`.
pub fn parse_nevra(nevra: &str) -> Option<(String, String, String)> {
    let (nevr, arch) = split_arch(nevra)?;
    let (rest, release) = nevr.rsplit_once('-')?;
    let (name, version) = rest.rsplit_once('-')?;
    if name.is_empty() || version.is_empty() || release.is_empty() {
        return None;
    }
    Some((
        name.to_owned(),
        arch.to_owned(),
        normalize_evr(&format!("{version}-{release}")).to_owned(),
    ))
}

/// The packages of `dnf -q updateinfo list --security` (`ADVISORY SEVERITY/Sec. NEVRA`).
pub fn parse_security(stdout: &str) -> BTreeSet<(String, String, String)> {
    stdout
        .lines()
        .filter_map(
            |line| match line.split_whitespace().collect::<Vec<_>>().as_slice() {
                [_, _, nevra] => parse_nevra(nevra),
                _ => None,
            },
        )
        .collect()
}

/// `dnf -q repoquery --upgrades --qf '%{name}.%{arch}\t%{evr}\t%{downloadsize}'`.
pub fn parse_sizes(stdout: &str) -> BTreeMap<(String, String, String), u64> {
    stdout
        .lines()
        .filter_map(|line| {
            let mut fields = line.split('\t');
            let (name, arch) = split_arch(fields.next()?.trim())?;
            let evr = normalize_evr(fields.next()?.trim()).to_owned();
            let size = fields.next()?.trim().parse().ok()?;
            Some(((name.to_owned(), arch.to_owned(), evr), size))
        })
        .collect()
}

/// A repository of the distribution itself (module docs), by its id.
pub fn distro_repo(id: &str) -> bool {
    let id = id.to_lowercase();
    const EXACT: &[&str] = &[
        "fedora",
        "updates",
        "updates-testing",
        "fedora-cisco-openh264",
        "baseos",
        "appstream",
        "crb",
        "powertools",
        "extras",
        "extras-common",
        "highavailability",
        "resilientstorage",
        "rt",
        "nfv",
        "sap",
        "saphana",
        "devel",
        "plus",
        "amazonlinux",
        "kernel-livepatch",
    ];
    const PREFIXES: &[&str] = &[
        "rhel-",
        "rhui-",
        "ubi-",
        "ol8_",
        "ol9_",
        "ol10_",
        "baseos-",
        "appstream-",
        "fedora-",
        "updates-",
    ];
    EXACT.contains(&id.as_str()) || PREFIXES.iter().any(|p| id.starts_with(p))
}

/// The changes of a `dnf install --assumeno` transaction table. Upgrades carry no old
/// version in the table: `installed` gives it.
pub fn parse_transaction(
    stdout: &str,
    installed: &BTreeMap<(String, String), String>,
) -> Vec<Planned> {
    #[derive(Clone, Copy, PartialEq)]
    enum Section {
        Install,
        Change,
        Remove,
    }
    let old_of =
        |name: &str, arch: &str| installed.get(&(name.to_owned(), arch.to_owned())).cloned();
    let mut out = Vec::new();
    let mut section = None;
    let mut pending: Option<String> = None;
    for line in stdout.lines() {
        if !line.starts_with(' ') {
            let header = line.trim();
            section = if !header.ends_with(':') {
                None
            } else if header.starts_with("Installing") {
                Some(Section::Install)
            } else if header.starts_with("Upgrading")
                || header.starts_with("Downgrading")
                || header.starts_with("Reinstalling")
            {
                Some(Section::Change)
            } else if header.starts_with("Removing") || header.starts_with("Obsoleting") {
                Some(Section::Remove)
            } else {
                None
            };
            pending = None;
            continue;
        }
        let Some(section) = section else { continue };
        let mut tokens: Vec<&str> = line.split_whitespace().collect();
        let joined;
        if let Some(head) = pending.take() {
            joined = head;
            tokens.insert(0, &joined);
        }
        match tokens.as_slice() {
            [name] => pending = Some((*name).to_owned()),
            ["replacing", name_arch, evr, ..] => {
                if let Some((name, _)) = split_arch(name_arch) {
                    out.push(Planned {
                        name: name.to_owned(),
                        old: Some(normalize_evr(evr).to_owned()),
                        new: None,
                    });
                }
            }
            [name, arch, evr, _repo, ..] => {
                let evr = normalize_evr(evr).to_owned();
                let (old, new) = match section {
                    Section::Install => (None, Some(evr)),
                    Section::Change => (old_of(name, arch), Some(evr)),
                    Section::Remove => (Some(evr), None),
                };
                out.push(Planned {
                    name: (*name).to_owned(),
                    old,
                    new,
                });
            }
            _ => {}
        }
    }
    out
}

/// rpm's architectures, to tell `name.arch` from a name with a dot.
const ARCHES: &[&str] = &[
    "x86_64", "i686", "noarch", "aarch64", "ppc64le", "s390x", "armv7hl",
];

const RPM_QF: &str = "%{NAME}.%{ARCH}\t%{EPOCH}:%{VERSION}-%{RELEASE}\n";

async fn installed(
    runner: &Runner,
    timeouts: &Timeouts,
) -> Result<BTreeMap<(String, String), String>, PatchError> {
    let cmd = Cmd::new("rpm").args(["-qa", "--qf", RPM_QF]);
    let out = runner.run(&cmd, timeouts.scan_step).await?;
    if !out.success() {
        return Err(PatchError::failed(&cmd, &out));
    }
    Ok(parse_installed(&out.stdout))
}

pub(crate) async fn scan(runner: &Runner, timeouts: &Timeouts) -> Result<super::Found, PatchError> {
    let check = Cmd::new("dnf").args(["-q", "check-update"]);
    let out = runner.run(&check, timeouts.scan_step).await?;
    let candidates = match out.code {
        Some(0) => Vec::new(),
        Some(100) => parse_check_update(&out.stdout),
        _ => return Err(PatchError::failed(&check, &out)),
    };
    let installed = installed(runner, timeouts).await?;

    let security_cmd = Cmd::new("dnf").args(["-q", "updateinfo", "list", "--security"]);
    let security = match runner.run(&security_cmd, timeouts.scan_step).await {
        Ok(out) if out.success() => parse_security(&out.stdout),
        Ok(out) => {
            tracing::warn!(error = %PatchError::failed(&security_cmd, &out), "no security advisories");
            BTreeSet::new()
        }
        Err(e) => {
            tracing::warn!(error = %e, "no security advisories");
            BTreeSet::new()
        }
    };
    let sizes_cmd = Cmd::new("dnf").args([
        "-q",
        "repoquery",
        "--upgrades",
        "--qf",
        "%{name}.%{arch}\t%{evr}\t%{downloadsize}",
    ]);
    let sizes = match runner.run(&sizes_cmd, timeouts.scan_step).await {
        Ok(out) if out.success() => parse_sizes(&out.stdout),
        _ => BTreeMap::new(),
    };

    // A name with candidates for several architectures keeps its `.arch`.
    let mut arches: BTreeMap<&str, usize> = BTreeMap::new();
    for c in &candidates {
        *arches.entry(c.name.as_str()).or_default() += 1;
    }
    let mut updates: Vec<AvailableUpdate> = candidates
        .iter()
        .filter_map(|c| {
            let from = installed.get(&(c.name.clone(), c.arch.clone()))?.clone();
            let key = (c.name.clone(), c.arch.clone(), c.evr.clone());
            let classification = if security.contains(&key) {
                Classification::Security
            } else if distro_repo(&c.repo) {
                Classification::Bugfix
            } else {
                Classification::ThirdParty
            };
            let name = if arches.get(c.name.as_str()).copied().unwrap_or(0) > 1 {
                format!("{}.{}", c.name, c.arch)
            } else {
                c.name.clone()
            };
            Some(AvailableUpdate {
                reboot_required: reboot::package_needs_reboot(&c.name),
                name,
                from,
                to: c.evr.clone(),
                classification,
                source: c.repo.clone(),
                size_bytes: sizes.get(&key).copied(),
            })
        })
        .collect();
    updates.sort();
    Ok(super::Found {
        installed_packages: u32::try_from(installed.len()).unwrap_or(u32::MAX),
        updates,
    })
}

/// `needs-restarting -r` exits 1 when a reboot is needed.
pub async fn reboot_required(runner: &Runner, timeouts: &Timeouts) -> bool {
    let cmd = Cmd::new("needs-restarting").arg("-r");
    matches!(runner.run(&cmd, timeouts.scan_step).await, Ok(out) if out.code == Some(1))
}

pub(crate) async fn install(
    runner: &Runner,
    timeouts: &Timeouts,
    target: &PackageTarget,
    check: &Check<'_>,
    report: &mut (dyn FnMut(PatchProgress) + Send),
) -> PatchProgress {
    let installed = match installed(runner, timeouts).await {
        Ok(i) => i,
        Err(e) => return failed(target, &e),
    };
    // `name.arch` when the scan named the architecture.
    let bare = split_arch(&target.name)
        .filter(|(_, a)| ARCHES.contains(a))
        .map_or(target.name.as_str(), |(n, _)| n);
    let want = normalize_evr(&target.version);
    let is_installed = |installed: &BTreeMap<(String, String), String>| {
        installed
            .iter()
            .any(|((n, _), evr)| (n == &target.name || n == bare) && evr == want)
    };
    if is_installed(&installed) {
        return progress(target, PatchState::Installed);
    }
    let spec = format!("{}-{}", target.name, target.version);

    let simulate = Cmd::new("dnf").args(["--assumeno", "install", &spec]);
    let sim = match runner.run(&simulate, timeouts.scan_step).await {
        // `--assumeno` answers no: dnf exits 1 after printing the transaction.
        Ok(out) if out.success() || out.stdout.contains("Transaction Summary") => out,
        Ok(out) => return failed(target, &PatchError::failed(&simulate, &out)),
        Err(e) => return failed(target, &e.into()),
    };
    let mut planned = parse_transaction(&sim.stdout, &installed);
    for p in &mut planned {
        if p.name == bare {
            p.name = target.name.clone();
        }
    }
    if let Err(detail) = check_simulation(target, &planned, check) {
        let mut p = progress(target, PatchState::Failed);
        p.detail = Some(detail);
        p.log_tail = Some(super::log_tail(&sim.stdout));
        return p;
    }

    report(progress(target, PatchState::Downloading));
    let download = Cmd::new("dnf").args(["-y", "install", "--downloadonly", &spec]);
    match runner.run(&download, timeouts.install).await {
        Ok(out) if out.success() => {}
        Ok(out) => return failed(target, &PatchError::failed(&download, &out)),
        Err(e) => return failed(target, &e.into()),
    }

    report(progress(target, PatchState::Installing));
    let install = Cmd::new("dnf").args(["-y", "install", &spec]);
    match runner.run(&install, timeouts.install).await {
        Ok(out) if out.success() => {}
        Ok(out) => return failed(target, &PatchError::failed(&install, &out)),
        Err(e) => return failed(target, &e.into()),
    }
    match self::installed(runner, timeouts).await {
        Ok(now) if is_installed(&now) => progress(target, PatchState::Installed),
        Ok(_) => {
            let mut p = progress(target, PatchState::Failed);
            p.detail = Some(format!("dnf succeeded but {spec} is not installed"));
            p
        }
        Err(e) => failed(target, &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_check_update_with_wrapped_names_and_obsoletes() {
        let stdout = "
kernel.x86_64                       5.14.0-362.24.1.el9_3           baseos
openssl-libs.x86_64                 1:3.0.7-25.el9_3                baseos
python3-some-very-long-package-name-for-wrapping.noarch
                                    2.4.1-3.el9                     epel
docker-ce.x86_64                    3:27.4.0-1.el9                  docker-ce-stable
garbage
Obsoleting Packages
grub2-tools.x86_64                  1:2.06-70.el9_3.2               baseos
    grub2-tools.x86_64              1:2.06-70.el9_3.1               @baseos
";
        let c = parse_check_update(stdout);
        assert_eq!(c.len(), 4, "{c:#?}");
        assert_eq!(
            c[1],
            Candidate {
                name: "openssl-libs".into(),
                arch: "x86_64".into(),
                evr: "1:3.0.7-25.el9_3".into(),
                repo: "baseos".into(),
            }
        );
        assert_eq!(
            c[2].name,
            "python3-some-very-long-package-name-for-wrapping"
        );
        assert_eq!(c[2].repo, "epel");
        assert_eq!(c[3].evr, "3:27.4.0-1.el9");
    }

    #[test]
    fn reads_installed_advisories_and_sizes() {
        let installed = parse_installed(
            "openssl-libs.x86_64\t1:3.0.7-24.el9\nkernel.x86_64\t(none):5.14.0-362.8.1.el9_3\nglibc.i686\t0:2.34-83.el9\nbad line\n",
        );
        assert_eq!(installed.len(), 3);
        assert_eq!(
            installed[&("kernel".into(), "x86_64".into())],
            "5.14.0-362.8.1.el9_3"
        );
        assert_eq!(installed[&("glibc".into(), "i686".into())], "2.34-83.el9");

        let security = parse_security(
            "RHSA-2024:1234 Important/Sec. openssl-libs-1:3.0.7-25.el9_3.x86_64\nFEDORA-2024-abc   Moderate/Sec.  kernel-5.14.0-362.24.1.el9_3.x86_64\nnonsense\n",
        );
        assert!(security.contains(&(
            "openssl-libs".into(),
            "x86_64".into(),
            "1:3.0.7-25.el9_3".into()
        )));
        assert!(security.contains(&(
            "kernel".into(),
            "x86_64".into(),
            "5.14.0-362.24.1.el9_3".into()
        )));
        assert_eq!(security.len(), 2);

        let sizes = parse_sizes("kernel.x86_64\t0:5.14.0-362.24.1.el9_3\t5242880\nx\ty\n");
        assert_eq!(
            sizes[&(
                "kernel".into(),
                "x86_64".into(),
                "5.14.0-362.24.1.el9_3".into()
            )],
            5_242_880
        );
    }

    #[test]
    fn distribution_repositories() {
        for id in [
            "baseos",
            "AppStream",
            "updates",
            "fedora",
            "rhel-9-for-x86_64-baseos-rpms",
            "crb",
            "ol9_baseos_latest",
        ] {
            assert!(distro_repo(id), "{id}");
        }
        for id in ["epel", "docker-ce-stable", "google-chrome", "pgdg16"] {
            assert!(!distro_repo(id), "{id}");
        }
    }

    #[test]
    fn reads_a_transaction_table() {
        let stdout = "\
Last metadata expiration check: 0:12:01 ago on Mon 07 Dec 2026 05:00:00 AM UTC.
Dependencies resolved.
================================================================================
 Package              Architecture  Version                 Repository     Size
================================================================================
Upgrading:
 openssl-libs         x86_64        1:3.0.7-25.el9_3        baseos        2.1 M
 python3-some-very-long-package-name-for-wrapping
                      noarch        2.4.1-3.el9             epel           20 k
Installing dependencies:
 libnew               x86_64        1.0-1.el9               appstream      20 k
Installing:
 kernel               x86_64        5.14.0-362.24.1.el9_3   baseos        5.0 M
     replacing  kernel-old.x86_64 1.0-1
Removing dependent packages:
 foo                  x86_64        1.0-1.el9               @appstream     30 k

Transaction Summary
================================================================================
Upgrade  2 Packages

Total download size: 2.1 M
Operation aborted.
";
        let installed = parse_installed("openssl-libs.x86_64\t1:3.0.7-24.el9\n");
        let planned = parse_transaction(stdout, &installed);
        let p = |name: &str, old: Option<&str>, new: Option<&str>| Planned {
            name: name.into(),
            old: old.map(Into::into),
            new: new.map(Into::into),
        };
        assert_eq!(
            planned,
            vec![
                p(
                    "openssl-libs",
                    Some("1:3.0.7-24.el9"),
                    Some("1:3.0.7-25.el9_3")
                ),
                p(
                    "python3-some-very-long-package-name-for-wrapping",
                    None,
                    Some("2.4.1-3.el9")
                ),
                p("libnew", None, Some("1.0-1.el9")),
                p("kernel", None, Some("5.14.0-362.24.1.el9_3")),
                p("kernel-old", Some("1.0-1"), None),
                p("foo", Some("1.0-1.el9"), None),
            ]
        );
    }
}
