//! The on-disk spool: every metrics batch is written here before it is sent, and removed
//! only when the operator has acknowledged it.
//!
//! * One file per batch, named `<sequence, 20 digits>-<batchId>.batch`, so names sort in
//!   creation order; the content is the gzip-compressed request body, sent as is.
//! * Written atomically: a `.tmp-*` file, fsync, rename, fsync of the directory. A crash
//!   leaves either the whole batch or a temporary file that the next [`Spool::open`] removes.
//! * Bounded by size: when a new batch would exceed the bound, the oldest batches are
//!   dropped and counted in `counters.json` (persisted) and in the log.
//! * Files that do not match the naming pattern are ignored (and left alone).
//! * Private: the directory is 0700 (created so, and tightened at every open, so that an
//!   upgrade from a release that made it 0755 closes it), the batch files 0600.
//! * Shared by the task that fills it and the task that drains it as a [`SharedSpool`]:
//!   every operation is a short file operation under a lock that is never held across a
//!   request, so a batch can be spooled while another one is on its way.
use std::{
    collections::VecDeque,
    fs::{self, DirBuilder},
    io,
    os::unix::fs::{DirBuilderExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard, PoisonError},
};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::state::{self, StateError};

/// Default bound of the spool: 100 MB.
pub const DEFAULT_MAX_BYTES: u64 = 100 * 1024 * 1024;
const SUFFIX: &str = ".batch";
const COUNTERS: &str = "counters.json";

/// Failure of the spool.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A file operation failed.
    #[error("spool: failed to {action} {path}: {source}")]
    Io {
        /// What was attempted.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Writing a file atomically failed.
    #[error("spool: {0}")]
    State(#[from] StateError),
}

/// Counters persisted with the spool.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpoolCounters {
    /// Batches dropped because the spool was full (oldest first).
    pub dropped_full: u64,
    /// Batches dropped because the operator refused them permanently (4xx).
    pub dropped_rejected: u64,
}

/// One spooled batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpoolEntry {
    /// Position in creation order.
    pub seq: u64,
    /// The batch id.
    pub batch_id: Uuid,
    /// Size of the file in bytes.
    pub bytes: u64,
}

impl SpoolEntry {
    fn file_name(&self) -> String {
        format!("{:020}-{}{SUFFIX}", self.seq, self.batch_id)
    }

    fn parse(name: &str) -> Option<(u64, Uuid)> {
        let stem = name.strip_suffix(SUFFIX)?;
        let (seq, id) = stem.split_once('-')?;
        if seq.len() != 20 || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some((seq.parse().ok()?, Uuid::parse_str(id).ok()?))
    }
}

/// The spool directory and its index.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    entries: VecDeque<SpoolEntry>,
    total_bytes: u64,
    next_seq: u64,
    counters: SpoolCounters,
}

impl Spool {
    /// Opens (creating if needed) the spool in `dir`, bounded to `max_bytes`. Batches left by
    /// a previous run are kept; temporary files of an interrupted write are removed.
    pub fn open(dir: impl Into<PathBuf>, max_bytes: u64) -> Result<Self, SpoolError> {
        let dir = dir.into();
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|source| SpoolError::Io {
                action: "create",
                path: dir.clone(),
                source,
            })?;
        // `create` leaves an existing directory's mode alone.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).map_err(|source| {
            SpoolError::Io {
                action: "set permissions 0700 of",
                path: dir.clone(),
                source,
            }
        })?;
        let mut entries = Vec::new();
        let read_dir = fs::read_dir(&dir).map_err(|source| SpoolError::Io {
            action: "list",
            path: dir.clone(),
            source,
        })?;
        for dirent in read_dir.flatten() {
            let name = dirent.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with(".tmp-") {
                let _ = fs::remove_file(dirent.path());
                continue;
            }
            let Some((seq, batch_id)) = SpoolEntry::parse(name) else {
                if name != COUNTERS {
                    tracing::debug!(file = %dirent.path().display(), "ignoring foreign file in spool");
                }
                continue;
            };
            let Ok(meta) = dirent.metadata() else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            entries.push(SpoolEntry {
                seq,
                batch_id,
                bytes: meta.len(),
            });
        }
        entries.sort_by_key(|e| e.seq);
        let counters = state::read_json(&dir.join(COUNTERS)).unwrap_or_default();
        let mut spool = Self {
            next_seq: entries.last().map_or(0, |e| e.seq + 1),
            total_bytes: entries.iter().map(|e| e.bytes).sum(),
            entries: entries.into(),
            dir,
            max_bytes,
            counters,
        };
        spool.enforce_bound(0)?;
        Ok(spool)
    }

    /// The spool directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Adds a batch (the bytes to send) and returns its entry. Drops the oldest batches if
    /// the bound would be exceeded; the newest batch is always kept.
    pub fn push(&mut self, batch_id: Uuid, body: &[u8]) -> Result<SpoolEntry, SpoolError> {
        self.enforce_bound(body.len() as u64)?;
        let entry = SpoolEntry {
            seq: self.next_seq,
            batch_id,
            bytes: body.len() as u64,
        };
        state::write_atomic(&self.dir.join(entry.file_name()), body, 0o600)?;
        self.next_seq += 1;
        self.total_bytes += entry.bytes;
        self.entries.push_back(entry.clone());
        Ok(entry)
    }

    fn enforce_bound(&mut self, incoming: u64) -> Result<(), SpoolError> {
        let mut dropped = 0u64;
        while self.total_bytes + incoming > self.max_bytes {
            let Some(oldest) = self.entries.front().cloned() else {
                break;
            };
            self.remove_file(&oldest)?;
            tracing::warn!(
                batch_id = %oldest.batch_id,
                bytes = oldest.bytes,
                max_bytes = self.max_bytes,
                "spool full: dropped the oldest metrics batch"
            );
            dropped += 1;
        }
        if dropped > 0 {
            self.counters.dropped_full += dropped;
            self.save_counters()?;
        }
        Ok(())
    }

    /// The oldest batch, next to send.
    pub fn oldest(&self) -> Option<&SpoolEntry> {
        self.entries.front()
    }

    /// All batches, oldest first.
    pub fn entries(&self) -> impl Iterator<Item = &SpoolEntry> {
        self.entries.iter()
    }

    /// Reads a batch's bytes.
    pub fn read(&self, entry: &SpoolEntry) -> Result<Vec<u8>, SpoolError> {
        let path = self.dir.join(entry.file_name());
        fs::read(&path).map_err(|source| SpoolError::Io {
            action: "read",
            path,
            source,
        })
    }

    /// Removes an acknowledged batch. Returns false when it was no longer spooled: the
    /// bound dropped it while it was being sent.
    pub fn remove(&mut self, entry: &SpoolEntry) -> Result<bool, SpoolError> {
        self.remove_file(entry)
    }

    /// Removes a batch the operator refused permanently, and counts it, unless the bound
    /// had already dropped (and counted) it. Returns whether it was still spooled.
    pub fn reject(&mut self, entry: &SpoolEntry) -> Result<bool, SpoolError> {
        if !self.remove_file(entry)? {
            return Ok(false);
        }
        self.counters.dropped_rejected += 1;
        self.save_counters()?;
        Ok(true)
    }

    /// Removes a batch's file and index entry; false when it had neither. Sequence numbers
    /// are never reused, so a stale entry cannot remove a newer batch.
    fn remove_file(&mut self, entry: &SpoolEntry) -> Result<bool, SpoolError> {
        let path = self.dir.join(entry.file_name());
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(SpoolError::Io {
                    action: "remove",
                    path,
                    source,
                });
            }
        }
        if let Some(pos) = self.entries.iter().position(|e| e.seq == entry.seq)
            && let Some(removed) = self.entries.remove(pos)
        {
            self.total_bytes -= removed.bytes;
            return Ok(true);
        }
        Ok(false)
    }

    fn save_counters(&self) -> Result<(), SpoolError> {
        state::write_json(&self.dir.join(COUNTERS), &self.counters, 0o644)?;
        Ok(())
    }

    /// Number of batches waiting.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bytes of all waiting batches.
    pub fn total_bytes(&self) -> u64 {
        self.total_bytes
    }

    /// The bound.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Drop counters (persisted across restarts).
    pub fn counters(&self) -> SpoolCounters {
        self.counters
    }
}

/// The spool shared between the task that fills it and the task that drains it.
#[derive(Clone, Debug)]
pub struct SharedSpool(Arc<Mutex<Spool>>);

impl SharedSpool {
    /// Shares `spool`.
    pub fn new(spool: Spool) -> Self {
        Self(Arc::new(Mutex::new(spool)))
    }

    /// Locks the spool. Hold the guard for file operations only, never across an
    /// `.await`. A panic while it was held leaves the index as consistent as the files
    /// (each operation updates the index after its file), so a poisoned lock is taken over.
    pub fn lock(&self) -> MutexGuard<'_, Spool> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(spool: &Spool) -> Vec<Uuid> {
        spool.entries().map(|e| e.batch_id).collect()
    }

    #[test]
    fn keeps_order_and_survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut spool = Spool::open(dir.path(), DEFAULT_MAX_BYTES).expect("open");
        let batches: Vec<Uuid> = (0..12).map(|_| Uuid::new_v4()).collect();
        for (i, id) in batches.iter().enumerate() {
            spool
                .push(*id, format!("batch {i}").as_bytes())
                .expect("push");
        }
        assert_eq!(ids(&spool), batches);
        let first = spool.oldest().cloned().expect("oldest");
        assert_eq!(spool.read(&first).expect("read"), b"batch 0");
        spool.remove(&first).expect("remove");
        drop(spool);

        // A restart: same order, new batches go after the old ones.
        let mut spool = Spool::open(dir.path(), DEFAULT_MAX_BYTES).expect("reopen");
        assert_eq!(ids(&spool), batches[1..]);
        let newer = Uuid::new_v4();
        spool.push(newer, b"after restart").expect("push");
        assert_eq!(spool.entries().last().map(|e| e.batch_id), Some(newer));
        let mut drained = Vec::new();
        while let Some(entry) = spool.oldest().cloned() {
            drained.push(String::from_utf8(spool.read(&entry).expect("read")).expect("utf8"));
            spool.remove(&entry).expect("remove");
        }
        let mut expected: Vec<String> = (1..12).map(|i| format!("batch {i}")).collect();
        expected.push("after restart".into());
        assert_eq!(drained, expected);
        assert_eq!(spool.total_bytes(), 0);
    }

    #[test]
    fn bound_drops_oldest_and_counts_persistently() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut spool = Spool::open(dir.path(), 100).expect("open");
        let batches: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
        for id in &batches {
            spool.push(*id, &[7u8; 30]).expect("push");
        }
        // 3 x 30 fit in 100 bytes; the two oldest were dropped.
        assert_eq!(ids(&spool), batches[2..]);
        assert_eq!(spool.total_bytes(), 90);
        assert_eq!(spool.counters().dropped_full, 2);
        let last = spool.oldest().cloned().expect("oldest");
        spool.reject(&last).expect("reject");
        drop(spool);

        let spool = Spool::open(dir.path(), 100).expect("reopen");
        assert_eq!(
            spool.counters(),
            SpoolCounters {
                dropped_full: 2,
                dropped_rejected: 1
            }
        );
        assert_eq!(ids(&spool), batches[3..]);
        // A smaller bound on reopen applies at once.
        drop(spool);
        let spool = Spool::open(dir.path(), 40).expect("reopen smaller");
        assert_eq!(ids(&spool), batches[4..]);
        assert_eq!(spool.counters().dropped_full, 3);
    }

    #[test]
    fn garbage_is_ignored_and_partial_writes_never_show() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut spool = Spool::open(dir.path(), DEFAULT_MAX_BYTES).expect("open");
        let id = Uuid::new_v4();
        spool.push(id, b"good").expect("push");
        drop(spool);
        // Leftovers of a crash mid-write, and files that are not ours.
        fs::write(
            dir.path().join(".tmp-00000000000000000009-x.batch-1"),
            b"half",
        )
        .expect("w");
        fs::write(dir.path().join("README"), b"hello").expect("w");
        fs::write(dir.path().join("12-notauuid.batch"), b"x").expect("w");
        fs::write(dir.path().join(format!("{:020}-not-a-uuid.batch", 3)), b"x").expect("w");
        fs::create_dir(
            dir.path()
                .join(format!("{:020}-{}.batch", 5, Uuid::new_v4())),
        )
        .expect("mkdir");

        let mut spool = Spool::open(dir.path(), DEFAULT_MAX_BYTES).expect("reopen");
        assert_eq!(ids(&spool), vec![id]);
        assert!(
            !dir.path()
                .join(".tmp-00000000000000000009-x.batch-1")
                .exists()
        );
        assert!(
            dir.path().join("README").exists(),
            "foreign files are left alone"
        );

        // Every visible batch file is complete: writes go through a temporary name.
        for i in 0..20u8 {
            spool.push(Uuid::new_v4(), &vec![i; 1000]).expect("push");
        }
        for entry in spool.entries() {
            let data = spool.read(entry).expect("read");
            assert!(data.len() == 4 || data.len() == 1000);
        }
        let tmp_left = fs::read_dir(dir.path())
            .expect("ls")
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(".tmp-"));
        assert!(!tmp_left);
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("metadata").permissions().mode() & 0o777
    }

    #[test]
    fn directory_is_private_and_an_open_one_is_closed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fresh = dir.path().join("state/spool");
        Spool::open(&fresh, DEFAULT_MAX_BYTES).expect("open");
        assert_eq!(mode(&fresh), 0o700);

        // A spool left world-readable by an older release is tightened when opened.
        let old = dir.path().join("old-spool");
        fs::create_dir(&old).expect("mkdir");
        fs::set_permissions(&old, fs::Permissions::from_mode(0o755)).expect("chmod");
        let mut spool = Spool::open(&old, DEFAULT_MAX_BYTES).expect("open");
        assert_eq!(mode(&old), 0o700);
        let entry = spool.push(Uuid::new_v4(), b"x").expect("push");
        assert_eq!(mode(&old.join(entry.file_name())), 0o600);
    }

    #[test]
    fn answer_for_a_batch_the_bound_dropped_is_harmless() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut spool = Spool::open(dir.path(), 60).expect("open");
        spool.push(Uuid::new_v4(), &[1u8; 30]).expect("push");
        let in_flight = spool.oldest().cloned().expect("oldest");
        spool.push(Uuid::new_v4(), &[2u8; 30]).expect("push");
        // Full while the oldest is being sent: it is dropped under the sender's feet.
        let newest = spool.push(Uuid::new_v4(), &[3u8; 30]).expect("push");
        assert_eq!(spool.counters().dropped_full, 1);
        assert!(!spool.entries().any(|e| e.seq == in_flight.seq));

        // Its acknowledgement or refusal then finds nothing, and takes nothing else.
        assert!(!spool.remove(&in_flight).expect("remove"));
        assert!(!spool.reject(&in_flight).expect("reject"));
        assert_eq!(
            spool.counters(),
            SpoolCounters {
                dropped_full: 1,
                dropped_rejected: 0
            },
            "a dropped batch is counted once"
        );
        assert_eq!(spool.len(), 2);
        assert_eq!(spool.total_bytes(), 60);
        assert_eq!(spool.entries().last(), Some(&newest));
    }
}
