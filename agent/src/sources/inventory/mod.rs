//! Inventory: host, OS, CPU, memory, filesystems, NICs, DMI and installed software, as an
//! [`InventoryReport`].
//!
//! [`report_hash`] is a stable SHA-256 of the report, used to send it only when it changed
//! (and every inventory interval).
use cdot_crds::{
    device::{DiskInfo, Inventory},
    wire::InventoryReport,
};
use sha2::{Digest, Sha256};
use sysinfo::{CpuRefreshKind, System};

use super::host_metrics::disk;
use crate::AGENT_VERSION;

pub mod dmi;
pub mod nics;
pub mod packages;

/// Collects the whole inventory. Facts that cannot be read are left out.
pub fn collect() -> InventoryReport {
    let mut inventory = Inventory {
        hostname: System::host_name().ok(),
        os_name: System::name().ok(),
        os_version: System::os_version().ok(),
        kernel: System::kernel_version().ok(),
        cpu_cores: System::physical_core_count()
            .ok()
            .and_then(|n| u32::try_from(n).ok()),
        ..Inventory::default()
    };
    if let Ok(mut sys) = System::new() {
        sys.refresh_cpu_list(CpuRefreshKind::nothing());
        inventory.cpu_threads = u32::try_from(sys.cpus().len()).ok().filter(|n| *n > 0);
        inventory.cpu_model = sys
            .cpus()
            .first()
            .map(|c| c.brand().trim().to_owned())
            .filter(|b| !b.is_empty());
        sys.refresh_memory();
        inventory.memory_bytes = Some(sys.total_memory()).filter(|m| *m > 0);
    }
    inventory.disks = disk::filesystems()
        .into_iter()
        .map(|f| DiskInfo {
            mount: f.mount,
            filesystem: Some(f.fstype),
            total_bytes: f.total_bytes,
            free_bytes: f.available_bytes,
        })
        .collect();
    inventory.nics = nics::collect();
    let dmi = dmi::read(std::path::Path::new(dmi::DMI_DIR));
    inventory.vendor = dmi.vendor;
    inventory.model = dmi.model;
    inventory.serial = dmi.serial;
    let software = packages::installed();
    inventory.software_count = u32::try_from(software.len()).ok();
    InventoryReport {
        agent_version: AGENT_VERSION.to_owned(),
        inventory,
        software,
    }
}

/// Hex SHA-256 of the report's JSON (fields in declaration order, so it is stable).
/// Free-space figures change all the time, so they are left out of the hash.
pub fn report_hash(report: &InventoryReport) -> String {
    let mut stable = report.clone();
    for d in &mut stable.inventory.disks {
        d.free_bytes = 0;
    }
    let json = serde_json::to_vec(&stable).unwrap_or_default();
    hex::encode(Sha256::digest(&json))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_inventory_has_the_basics_and_a_stable_hash() {
        let report = collect();
        let inv = &report.inventory;
        assert!(inv.hostname.as_deref().is_some_and(|h| !h.is_empty()));
        assert!(inv.kernel.is_some());
        assert!(inv.cpu_threads.unwrap_or(0) >= 1);
        assert!(inv.memory_bytes.unwrap_or(0) > 0);
        assert!(inv.disks.iter().any(|d| d.mount == "/"), "{:?}", inv.disks);
        assert_eq!(inv.software_count, Some(report.software.len() as u32));
        let again = collect();
        assert_eq!(report_hash(&report), report_hash(&again));
        let mut changed = report.clone();
        changed.software.push(cdot_crds::wire::Package {
            name: "new".into(),
            version: "1".into(),
        });
        assert_ne!(report_hash(&report), report_hash(&changed));
        // It is a valid wire body.
        let json = serde_json::to_string(&report).expect("json");
        serde_json::from_str::<InventoryReport>(&json).expect("round trip");
    }
}
