//! Network interfaces: name, MAC, addresses (with prefix length) and link speed
//! (`/sys/class/net/<if>/speed`, Mbit/s; absent or -1 for virtual links).
use std::{collections::BTreeMap, net::IpAddr, path::Path};

use cdot_crds::device::NicInfo;
use nix::ifaddrs::getifaddrs;

const SYS_NET: &str = "/sys/class/net";

/// Every interface except loopback, sorted by name.
pub fn collect() -> Vec<NicInfo> {
    let mut nics: BTreeMap<String, NicInfo> = BTreeMap::new();
    if let Ok(dir) = std::fs::read_dir(SYS_NET) {
        for entry in dir.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == "lo" {
                continue;
            }
            let base = Path::new(SYS_NET).join(&name);
            nics.insert(
                name.clone(),
                NicInfo {
                    mac: read_trimmed(&base.join("address"))
                        .filter(|m| m != "00:00:00:00:00:00" && !m.is_empty()),
                    speed_mbps: read_trimmed(&base.join("speed"))
                        .and_then(|s| s.parse::<i64>().ok())
                        .and_then(|s| u64::try_from(s).ok())
                        .filter(|s| *s > 0),
                    name,
                    addresses: Vec::new(),
                },
            );
        }
    }
    if let Ok(addrs) = getifaddrs() {
        for ifa in addrs {
            let Some(nic) = nics.get_mut(&ifa.interface_name) else {
                continue;
            };
            let (Some(addr), Some(mask)) = (ifa.address, ifa.netmask) else {
                continue;
            };
            let pair = if let (Some(a), Some(m)) = (addr.as_sockaddr_in(), mask.as_sockaddr_in()) {
                Some((IpAddr::V4(a.ip()), u32::from(m.ip()).count_ones()))
            } else if let (Some(a), Some(m)) = (addr.as_sockaddr_in6(), mask.as_sockaddr_in6()) {
                Some((IpAddr::V6(a.ip()), u128::from(m.ip()).count_ones()))
            } else {
                None
            };
            if let Some((ip, prefix)) = pair {
                nic.addresses.push(format!("{ip}/{prefix}"));
            }
        }
    }
    nics.into_values().collect()
}

fn read_trimmed(path: &Path) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_owned())
}

#[cfg(test)]
mod tests {
    #[test]
    fn real_interfaces_have_names_and_valid_addresses() {
        for nic in super::collect() {
            assert!(!nic.name.is_empty() && nic.name != "lo");
            for a in &nic.addresses {
                let (ip, prefix) = a.split_once('/').expect("prefix");
                ip.parse::<std::net::IpAddr>().expect("ip");
                assert!(prefix.parse::<u8>().expect("len") <= 128);
            }
        }
    }
}
