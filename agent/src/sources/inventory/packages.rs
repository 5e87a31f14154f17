//! Installed software: the dpkg database (`/var/lib/dpkg/status`, parsed directly), else
//! rpm (`rpm -qa --qf`), when present.
use std::process::{Command, Stdio};

use cdot_crds::wire::Package;

/// The dpkg status database.
pub const DPKG_STATUS: &str = "/var/lib/dpkg/status";

/// Installed packages, sorted by name and version; empty when no database is found.
pub fn installed() -> Vec<Package> {
    if let Ok(text) = std::fs::read_to_string(DPKG_STATUS) {
        return parse_dpkg_status(&text);
    }
    rpm_packages().unwrap_or_default()
}

/// Parses a dpkg status file: the stanzas whose `Status` ends in `installed` (not
/// `config-files`, `half-installed`, ...). The architecture qualifies multi-arch names
/// (`libc6:i386`) only when it is not the package's only one, as dpkg-query shows them.
pub fn parse_dpkg_status(text: &str) -> Vec<Package> {
    let mut out = Vec::new();
    for stanza in text.split("\n\n") {
        let (mut name, mut version, mut status, mut arch, mut multi_arch_same) =
            (None, None, None, None, false);
        for line in stanza.lines() {
            if line.starts_with([' ', '\t']) {
                continue; // continuation of a multi-line field
            }
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            match key {
                "Package" => name = Some(value),
                "Version" => version = Some(value),
                "Status" => status = Some(value),
                "Architecture" => arch = Some(value),
                "Multi-Arch" => multi_arch_same = value == "same",
                _ => {}
            }
        }
        let (Some(name), Some(version), Some(status)) = (name, version, status) else {
            continue;
        };
        if status.split_whitespace().last() != Some("installed") {
            continue;
        }
        let name = match arch {
            Some(arch) if multi_arch_same && arch != "all" => format!("{name}:{arch}"),
            _ => name.to_owned(),
        };
        out.push(Package {
            name,
            version: version.to_owned(),
        });
    }
    out.sort();
    out.dedup();
    out
}

/// Packages from `rpm -qa` (None when rpm is not installed or fails).
pub fn rpm_packages() -> Option<Vec<Package>> {
    let output = Command::new("rpm")
        .args([
            "-qa",
            "--qf",
            "%{NAME}\t%{EPOCHNUM}:%{VERSION}-%{RELEASE}.%{ARCH}\n",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    Some(parse_rpm(&String::from_utf8_lossy(&output.stdout)))
}

/// Parses `NAME\tEPOCH:VERSION-RELEASE.ARCH` lines; an epoch of 0 is dropped.
pub fn parse_rpm(text: &str) -> Vec<Package> {
    let mut out: Vec<Package> = text
        .lines()
        .filter_map(|line| {
            let (name, version) = line.split_once('\t')?;
            let version = version.strip_prefix("0:").unwrap_or(version);
            Some(Package {
                name: name.to_owned(),
                version: version.to_owned(),
            })
        })
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = "\
Package: bash
Essential: yes
Status: install ok installed
Priority: required
Architecture: amd64
Version: 5.2.15-2+b2
Description: GNU Bourne Again SHell
 Bash is an sh-compatible command language interpreter.
 .
 Status: not a field, a continuation line

Package: removed-pkg
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0

Package: libc6
Status: install ok installed
Architecture: amd64
Multi-Arch: same
Version: 2.36-9+deb12u4

Package: tzdata
Status: install ok installed
Architecture: all
Multi-Arch: foreign
Version: 2024a-0+deb12u1

Package: half
Status: install reinstreq half-installed
Version: 0.1
";

    #[test]
    fn fixture_parses_installed_only() {
        let pkgs = parse_dpkg_status(FIXTURE);
        let got: Vec<(&str, &str)> = pkgs
            .iter()
            .map(|p| (p.name.as_str(), p.version.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("bash", "5.2.15-2+b2"),
                ("libc6:amd64", "2.36-9+deb12u4"),
                ("tzdata", "2024a-0+deb12u1"),
            ]
        );
    }

    #[test]
    fn real_dpkg_database_has_packages() {
        let text = std::fs::read_to_string(DPKG_STATUS).expect("this test needs a Debian host");
        let pkgs = parse_dpkg_status(&text);
        assert!(pkgs.len() > 10, "{} packages", pkgs.len());
        assert!(pkgs.iter().any(|p| p.name == "dpkg"));
        // Same count as dpkg-query, when it is there.
        if let Ok(out) = Command::new("dpkg-query")
            .args(["-W", "-f", "${db:Status-Status}\\n"])
            .output()
        {
            let installed = String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| *l == "installed")
                .count();
            assert_eq!(pkgs.len(), installed);
        }
    }

    #[test]
    fn rpm_lines_parse() {
        let pkgs = parse_rpm("bash\t0:5.1.8-6.el9.x86_64\nkernel\t1:5.14.0-1.el9.x86_64\n");
        assert_eq!(pkgs[0].version, "5.1.8-6.el9.x86_64");
        assert_eq!(pkgs[1].version, "1:5.14.0-1.el9.x86_64");
    }
}
