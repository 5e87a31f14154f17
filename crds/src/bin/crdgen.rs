//! Writes the generated CRDs into `crds/yaml/` and `charts/cdot-rmm/crds/`.

use std::{fs, path::PathBuf, process::ExitCode};

fn main() -> ExitCode {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dirs = [root.join("yaml"), root.join("../charts/cdot-rmm/crds")];
    for dir in &dirs {
        if let Err(e) = fs::create_dir_all(dir) {
            eprintln!("failed to create {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
        for (name, yaml) in cdot_crds::crdgen::render_all() {
            let path = dir.join(&name);
            if let Err(e) = fs::write(&path, yaml) {
                eprintln!("failed to write {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
            println!("wrote {}", path.display());
        }
    }
    ExitCode::SUCCESS
}
