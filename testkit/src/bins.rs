//! Binaries of other workspace packages, built next to the running test's own.
use std::path::{Path, PathBuf};

/// `target/<profile>/<name>` for the profile the test was built with; panics with the
/// command that builds it when it is missing.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let path = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join(name);
    assert!(
        path.exists(),
        "{} not built; run the tests with `cargo nextest run --workspace` or `cargo build -p {name}`",
        path.display()
    );
    path
}
