//! Every document of every YAML file under `examples/` parses and validates.

use std::path::{Path, PathBuf};

use cdot_crds::manifest::{Document, parse_file};

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            yaml_files(&p, out);
        } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
            out.push(p);
        }
    }
}

#[test]
fn examples_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut files = Vec::new();
    yaml_files(&root, &mut files);
    assert!(!files.is_empty(), "no YAML under {}", root.display());
    let mut failures = Vec::new();
    let mut resources = 0;
    for file in &files {
        let shown = file
            .strip_prefix(&root)
            .unwrap_or(file)
            .display()
            .to_string();
        let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{shown}: {e}"));
        match parse_file(&text) {
            Err(e) => failures.push(format!("{shown}: {e}")),
            Ok(docs) => {
                for d in docs {
                    match d.result {
                        Ok(Document::Resource(_)) => resources += 1,
                        Ok(_) => {}
                        Err(errs) => {
                            for e in errs {
                                failures.push(format!(
                                    "{shown}:{} (line {}): {}: {}",
                                    d.index, d.line, e.path, e.message
                                ));
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "invalid examples:\n{}",
        failures.join("\n")
    );
    assert!(resources >= 30, "only {resources} resources found");
}
