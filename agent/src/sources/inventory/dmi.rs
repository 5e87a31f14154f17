//! Hardware vendor, model and serial from DMI (`/sys/class/dmi/id`). The serial is
//! readable by root only; placeholder values firmware vendors leave are dropped.
use std::path::Path;

/// Where the kernel exposes DMI.
pub const DMI_DIR: &str = "/sys/class/dmi/id";

/// What DMI says about the machine.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dmi {
    /// `sys_vendor`.
    pub vendor: Option<String>,
    /// `product_name`.
    pub model: Option<String>,
    /// `product_serial`.
    pub serial: Option<String>,
}

/// Reads the DMI files under `dir`.
pub fn read(dir: &Path) -> Dmi {
    Dmi {
        vendor: field(dir, "sys_vendor"),
        model: field(dir, "product_name"),
        serial: field(dir, "product_serial"),
    }
}

fn field(dir: &Path, name: &str) -> Option<String> {
    let value = std::fs::read_to_string(dir.join(name)).ok()?;
    let value = value.trim();
    let placeholder = [
        "",
        "To Be Filled By O.E.M.",
        "To be filled by O.E.M.",
        "Default string",
        "System Product Name",
        "System manufacturer",
        "Not Specified",
        "None",
        "0",
    ];
    (!placeholder.contains(&value)).then(|| value.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields_and_drops_placeholders() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("sys_vendor"), "QEMU\n").expect("w");
        std::fs::write(dir.path().join("product_name"), "To Be Filled By O.E.M.\n").expect("w");
        assert_eq!(
            read(dir.path()),
            Dmi {
                vendor: Some("QEMU".into()),
                model: None,
                serial: None
            }
        );
    }
}
