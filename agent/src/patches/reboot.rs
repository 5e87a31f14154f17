//! Reboots: whether the system asks for one now, and whether installing a package will.
//!
//! No package manager says in advance which update will need a reboot, so the names are the
//! rule: what runs from boot to shutdown and is not restarted by its upgrade.
//! - the kernel and its modules (`linux-image-*`, `linux-modules-*`; `kernel`, `kernel-core`,
//!   `kernel-modules*`, `kernel-rt*` on dnf systems);
//! - CPU microcode (`intel-microcode`, `amd64-microcode`, `microcode_ctl`) and firmware
//!   (`linux-firmware`), loaded at boot;
//! - the C library (`libc6`, `glibc`), which every running process has mapped;
//! - init and the system bus (`systemd`, `udev`, `dbus`, `dbus-broker`, `dbus-daemon`).
//!
//! This is the list Debian's `needrestart` and dnf's `needs-restarting -r` use to decide
//! that only a reboot helps.
use super::command::Runner;

/// Flag files Debian and Ubuntu write (update-notifier-common and the kernel's postinst) when a
/// reboot is needed; `/var/run` is a link to `/run` on current systems, not on old ones.
pub const APT_FLAG_FILES: &[&str] = &["/run/reboot-required", "/var/run/reboot-required"];

/// Installing a new version of the package `name` asks for a reboot (module docs).
pub fn package_needs_reboot(name: &str) -> bool {
    // Multi-arch names (`libc6:i386`) need a reboot like the native one.
    let name = name.split_once(':').map_or(name, |(n, _)| n);
    const EXACT: &[&str] = &[
        "libc6",
        "glibc",
        "systemd",
        "udev",
        "dbus",
        "dbus-broker",
        "dbus-daemon",
        "linux-firmware",
        "microcode_ctl",
        "kernel",
        "kernel-core",
        "kernel-rt",
    ];
    const PREFIXES: &[&str] = &[
        "linux-image-",
        "linux-modules-",
        "kernel-modules",
        "kernel-rt-",
    ];
    EXACT.contains(&name)
        || PREFIXES.iter().any(|p| name.starts_with(p))
        || name.ends_with("-microcode")
}

/// One of [`APT_FLAG_FILES`] exists in the system.
pub fn apt_flag_present(runner: &Runner) -> bool {
    APT_FLAG_FILES.iter().any(|f| runner.host_path(f).exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_libc_init_and_microcode_need_a_reboot() {
        for name in [
            "linux-image-6.1.0-28-amd64",
            "linux-image-amd64",
            "linux-modules-5.15.0-91-generic",
            "intel-microcode",
            "amd64-microcode",
            "libc6",
            "libc6:i386",
            "systemd",
            "udev",
            "dbus",
            "kernel",
            "kernel-core",
            "kernel-modules-extra",
            "glibc",
        ] {
            assert!(package_needs_reboot(name), "{name}");
        }
        for name in [
            "libc6-dev",
            "systemd-timesyncd",
            "openssl",
            "linux-libc-dev",
            "libsystemd0",
            "curl",
        ] {
            assert!(!package_needs_reboot(name), "{name}");
        }
    }
}
