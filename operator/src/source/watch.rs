//! File-system notifications for the manifest directories, coalesced into "something changed".
use std::path::PathBuf;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// Keeps the OS watch alive; dropping it stops the notifications.
pub struct ManifestWatch {
    _watcher: notify::RecommendedWatcher,
}

/// Watches `dirs` recursively. Each burst of events sends one `()`; the receiver coalesces
/// further bursts while a reload is running because the channel holds a single message.
pub fn watch(dirs: &[PathBuf]) -> notify::Result<(ManifestWatch, mpsc::Receiver<()>)> {
    let (tx, rx) = mpsc::channel(1);
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = match event {
            Ok(event) => !event.kind.is_access(),
            // A lost or overflowed watch is a reason to reload, too.
            Err(_) => true,
        };
        if relevant {
            let _ = tx.try_send(());
        }
    })?;
    for dir in dirs {
        watcher.watch(dir, RecursiveMode::Recursive)?;
    }
    Ok((ManifestWatch { _watcher: watcher }, rx))
}
