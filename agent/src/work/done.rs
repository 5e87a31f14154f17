//! The work items this agent finished, kept in the state directory (`work-done.json`) so
//! that an item fetched again after a restart is not run again. Bounded: the oldest ids go
//! first, long after the operator stopped handing them out. The same structure records the
//! workflow steps started here ([`STARTED_FILE`]).
use std::{
    collections::VecDeque,
    io,
    path::{Path, PathBuf},
};

use uuid::Uuid;

/// File of the workflow steps started here (finished or not).
pub const STARTED_FILE: &str = "work-started.json";

/// Ids kept.
const KEEP: usize = 4_096;

/// The finished items.
#[derive(Debug)]
pub struct DoneItems {
    path: PathBuf,
    ids: VecDeque<Uuid>,
}

impl DoneItems {
    /// Loads the set kept in `dir` (an unreadable file starts an empty set: at worst an
    /// item runs again, and its effects are idempotent: an installed version is installed).
    pub fn load(dir: &Path) -> Self {
        Self::load_file(dir, "work-done.json")
    }

    /// Loads the set kept in the file `name` of `dir`.
    pub fn load_file(dir: &Path, name: &str) -> Self {
        let path = dir.join(name);
        let ids = std::fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<VecDeque<Uuid>>(&bytes).ok())
            .unwrap_or_default();
        Self { path, ids }
    }

    pub fn contains(&self, id: Uuid) -> bool {
        self.ids.contains(&id)
    }

    /// Adds `id` and writes the set (to a temporary file, then renamed, so a crash leaves
    /// the old or the new set, never half of one).
    pub fn insert(&mut self, id: Uuid) -> io::Result<()> {
        if self.contains(id) {
            return Ok(());
        }
        self.ids.push_back(id);
        while self.ids.len() > KEEP {
            self.ids.pop_front();
        }
        let tmp = self.path.with_extension("json.tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec(&self.ids).map_err(io::Error::other)?,
        )?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_items_survive_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut done = DoneItems::load(dir.path());
        let id = Uuid::from_u128(42);
        assert!(!done.contains(id));
        done.insert(id).expect("insert");
        assert!(DoneItems::load(dir.path()).contains(id));
    }
}
