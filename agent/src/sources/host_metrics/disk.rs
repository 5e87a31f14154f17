//! Filesystems (`disk{mount}`, `diskUsedBytes{mount}`) and block-device I/O
//! (`diskReadBytes{device}`, `diskWriteBytes{device}`).
//!
//! Filesystems come from `/proc/self/mountinfo`; pseudo filesystems are skipped and a
//! device mounted several times (bind mounts) is reported once, at its shortest mount
//! point. Usage is df's: used = blocks − free, percent = used / (used + available).
//! I/O comes from `/proc/diskstats`, whole devices only (those in `/sys/block`), without
//! loop and RAM devices.
use std::{collections::HashMap, path::Path, time::Instant};

use cdot_crds::metrics_catalog::Metric;

use super::{Samples, percent, rate};

/// Filesystem types that hold no user data.
pub const PSEUDO_FILESYSTEMS: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "fusectl",
    "fuse.gvfsd-fuse",
    "fuse.lxcfs",
    "fuse.portal",
    "hugetlbfs",
    "mqueue",
    "nsfs",
    "overlay",
    "proc",
    "pstore",
    "ramfs",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "sysfs",
    "tmpfs",
    "tracefs",
    "nfsd",
    "iso9660",
    "udf",
    "aufs",
];

/// A mounted filesystem with its usage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Filesystem {
    /// Mount point.
    pub mount: String,
    /// Filesystem type.
    pub fstype: String,
    /// Total bytes.
    pub total_bytes: u64,
    /// Bytes not in use (including blocks reserved for root).
    pub free_bytes: u64,
    /// Bytes available to unprivileged users.
    pub available_bytes: u64,
}

impl Filesystem {
    /// Bytes in use (df's "Used").
    pub fn used_bytes(&self) -> u64 {
        self.total_bytes.saturating_sub(self.free_bytes)
    }
    /// df's "Use%".
    pub fn used_percent(&self) -> f64 {
        let used = self.used_bytes() as f64;
        percent(used, used + self.available_bytes as f64)
    }
}

/// A mount from `/proc/self/mountinfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// `major:minor` of the device.
    pub device: String,
    /// Root of the mount within the filesystem (`/` unless a bind mount).
    pub root: String,
    /// Mount point.
    pub mount: String,
    /// Filesystem type.
    pub fstype: String,
}

/// Parses `/proc/self/mountinfo`, decoding octal escapes (`\040` is a space).
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mut l = left.split(' ');
            let device = l.nth(2)?;
            let root = l.next()?;
            let mount = l.next()?;
            let fstype = right.split(' ').next()?;
            Some(Mount {
                device: device.to_owned(),
                root: unescape(root),
                mount: unescape(mount),
                fstype: fstype.to_owned(),
            })
        })
        .collect()
}

fn unescape(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_owned();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mounts worth reporting: no pseudo filesystems, one per device (shortest mount
/// point of a whole-filesystem mount preferred), sorted by mount point.
pub fn real_mounts(mounts: Vec<Mount>) -> Vec<Mount> {
    let mut by_device: HashMap<String, Mount> = HashMap::new();
    for m in mounts {
        if PSEUDO_FILESYSTEMS.contains(&m.fstype.as_str())
            || m.mount.starts_with("/proc/")
            || m.mount.starts_with("/sys/")
            || m.mount.starts_with("/dev/")
            || m.mount.starts_with("/run/credentials/")
        {
            continue;
        }
        let better = |old: &Mount| {
            let key = |m: &Mount| (m.root != "/", m.mount.len());
            key(&m) < key(old)
        };
        match by_device.get(&m.device) {
            Some(old) if !better(old) => {}
            _ => {
                by_device.insert(m.device.clone(), m);
            }
        }
    }
    let mut out: Vec<Mount> = by_device.into_values().collect();
    out.sort_by(|a, b| a.mount.cmp(&b.mount));
    out
}

/// The real filesystems with their usage (filesystems that cannot be queried or have no
/// blocks are skipped).
pub fn filesystems() -> Vec<Filesystem> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    real_mounts(parse_mountinfo(&text))
        .into_iter()
        .filter_map(|m| {
            let st = nix::sys::statvfs::statvfs(Path::new(&m.mount)).ok()?;
            let frsize = st.fragment_size() as u64;
            let total = st.blocks() as u64 * frsize;
            if total == 0 {
                return None;
            }
            Some(Filesystem {
                mount: m.mount,
                fstype: m.fstype,
                total_bytes: total,
                free_bytes: st.blocks_free() as u64 * frsize,
                available_bytes: st.blocks_available() as u64 * frsize,
            })
        })
        .collect()
}

/// Emits `disk` and `diskUsedBytes` per filesystem.
pub fn collect_usage(out: &mut Samples) {
    for fs in filesystems() {
        out.push_labelled(Metric::Disk, &fs.mount, fs.used_percent());
        out.push_labelled(Metric::DiskUsedBytes, &fs.mount, fs.used_bytes() as f64);
    }
}

/// Bytes read and written so far by one device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoCounters {
    /// Bytes read.
    pub read_bytes: u64,
    /// Bytes written.
    pub write_bytes: u64,
}

/// Parses `/proc/diskstats` into (device, counters). Sectors are always 512 bytes there.
pub fn parse_diskstats(text: &str) -> Vec<(String, IoCounters)> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let name = f.nth(2)?;
            let fields: Vec<u64> = f.take(7).map(|v| v.parse().unwrap_or(0)).collect();
            if fields.len() < 7 {
                return None;
            }
            Some((
                name.to_owned(),
                IoCounters {
                    read_bytes: fields[2].saturating_mul(512),
                    write_bytes: fields[6].saturating_mul(512),
                },
            ))
        })
        .collect()
}

/// Whether a block device is reported: a whole device, not loop/RAM.
pub fn is_reported_device(name: &str, sys_block: &Path) -> bool {
    !(name.starts_with("loop") || name.starts_with("ram") || name.starts_with("zram"))
        && sys_block.join(name).exists()
}

/// Disk I/O rates from consecutive readings.
#[derive(Debug, Default)]
pub struct DiskIo {
    prev: Option<(Instant, HashMap<String, IoCounters>)>,
}

impl DiskIo {
    /// Reads `/proc/diskstats`; emits rates when a previous reading exists.
    pub fn collect(&mut self, now: Instant, out: &mut Samples) {
        let Ok(text) = std::fs::read_to_string("/proc/diskstats") else {
            return;
        };
        let sys_block = Path::new("/sys/block");
        let current: HashMap<String, IoCounters> = parse_diskstats(&text)
            .into_iter()
            .filter(|(name, _)| is_reported_device(name, sys_block))
            .collect();
        if let Some((then, prev)) = &self.prev {
            let secs = now.duration_since(*then).as_secs_f64();
            let mut names: Vec<&String> = current.keys().collect();
            names.sort();
            for name in names {
                let (Some(cur), Some(old)) = (current.get(name), prev.get(name)) else {
                    continue;
                };
                if let Some(r) = rate(old.read_bytes, cur.read_bytes, secs) {
                    out.push_labelled(Metric::DiskReadBytes, name, r);
                }
                if let Some(w) = rate(old.write_bytes, cur.write_bytes, secs) {
                    out.push_labelled(Metric::DiskWriteBytes, name, w);
                }
            }
        }
        self.prev = Some((now, current));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 254:1 / / rw,relatime shared:1 - ext4 /dev/vda1 rw
23 22 0:21 / /proc rw,nosuid - proc proc rw
24 22 0:5 / /dev rw,nosuid - devtmpfs udev rw
25 22 0:25 / /run rw - tmpfs tmpfs rw
26 22 254:2 / /srv/my\\040data rw - xfs /dev/vda2 rw
27 22 254:1 /var/lib/x /mnt/bind rw - ext4 /dev/vda1 rw
28 22 0:40 / /var/lib/docker/overlay2/abc/merged rw - overlay overlay rw
29 22 7:0 / /snap/core/1 ro - squashfs /dev/loop0 ro
30 22 254:3 / /boot/efi rw - vfat /dev/vda3 rw
";

    #[test]
    fn mountinfo_keeps_real_filesystems_once() {
        let mounts = real_mounts(parse_mountinfo(MOUNTINFO));
        let points: Vec<&str> = mounts.iter().map(|m| m.mount.as_str()).collect();
        assert_eq!(points, vec!["/", "/boot/efi", "/srv/my data"]);
        assert_eq!(mounts[2].fstype, "xfs");
    }

    #[test]
    fn diskstats_parse_to_bytes() {
        let text = " 254       0 vda 193155 10117 10247570 372725 47139 65457 26389160 133893 0 26496 510830\n   7 0 loop0 1 0 8 0 0 0 0 0 0 0 0\n";
        let stats = parse_diskstats(text);
        assert_eq!(stats[0].0, "vda");
        assert_eq!(
            stats[0].1,
            IoCounters {
                read_bytes: 10247570 * 512,
                write_bytes: 26389160 * 512
            }
        );
        assert!(!is_reported_device("loop0", Path::new("/sys/block")));
        assert!(!is_reported_device("ram0", Path::new("/sys/block")));
        assert!(!is_reported_device("vda1", Path::new("/nonexistent")));
    }

    #[test]
    fn root_usage_matches_statvfs() {
        let fs = filesystems();
        let root = fs.iter().find(|f| f.mount == "/").expect("/ is reported");
        let st = nix::sys::statvfs::statvfs("/").expect("statvfs");
        let frsize = st.fragment_size() as u64;
        let used = (st.blocks() as u64 - st.blocks_free() as u64) * frsize;
        let avail = st.blocks_available() as u64 * frsize;
        assert_eq!(root.total_bytes, st.blocks() as u64 * frsize);
        // Other processes write between the two calls: allow 64 MiB.
        let tolerance = 64 * 1024 * 1024;
        assert!(
            root.used_bytes().abs_diff(used) < tolerance,
            "{root:?} vs {used}"
        );
        let pct = used as f64 / (used + avail) as f64 * 100.0;
        assert!(
            (root.used_percent() - pct).abs() < 1.0,
            "{} vs {pct}",
            root.used_percent()
        );

        let mut out = Samples::new(0);
        collect_usage(&mut out);
        let sample = out
            .samples
            .iter()
            .find(|s| s.n == "diskUsedBytes" && s.l.get("mount").map(String::as_str) == Some("/"))
            .expect("diskUsedBytes{mount=/}");
        assert!((sample.v - used as f64).abs() < tolerance as f64);
    }

    #[test]
    fn io_rates_need_two_readings() {
        let mut io = DiskIo::default();
        let start = Instant::now();
        let mut out = Samples::new(0);
        io.collect(start, &mut out);
        assert!(out.samples.is_empty());
        io.collect(start + std::time::Duration::from_secs(1), &mut out);
        for s in &out.samples {
            assert!(s.n == "diskReadBytes" || s.n == "diskWriteBytes");
            assert!(s.v >= 0.0);
            let dev = &s.l["device"];
            assert!(!dev.starts_with("loop"), "{dev}");
        }
    }
}
