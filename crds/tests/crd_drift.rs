//! The committed CRD YAML (crds/yaml and the Helm chart) matches the Rust types.

use std::path::Path;

#[test]
fn committed_crds_match_the_types() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut stale = Vec::new();
    for dir in [root.join("yaml"), root.join("../charts/cdot-rmm/crds")] {
        for (name, yaml) in cdot_crds::crdgen::render_all() {
            let path = dir.join(&name);
            match std::fs::read_to_string(&path) {
                Ok(on_disk) if on_disk == yaml => {}
                Ok(_) => stale.push(format!("{} differs", path.display())),
                Err(e) => stale.push(format!("{}: {e}", path.display())),
            }
        }
    }
    assert!(
        stale.is_empty(),
        "generated CRDs are out of date; run `cargo run -p cdot-crds --bin crdgen` and commit the result:\n{}",
        stale.join("\n")
    );
}
