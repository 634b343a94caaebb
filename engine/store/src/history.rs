//! The history journal: how a run that keeps nothing else in the cache records its history
//! row without opening `cache.db`.
//!
//! In: a [`RunRecord`] and the cache directory ([`record_pending`]). Out: one file,
//! `<cache dir>/history/<started ms>-<pid>.json` (the record's JSON, written through a temp
//! file and a rename), which the next [`Store`](crate::Store) that writes or reads the
//! history imports into the `runs` table (`pending`, then `Store::import_history`).
//!
//! Why: a run of a task without inputs (`echo hi`) looks nothing up and stores nothing; the
//! history row was its only use of SQLite, and opening `cache.db` (WAL and shared-memory files
//! created, the schema read, a checkpoint and both files removed at close) cost more than the
//! command. Writing this file is a `mkdir`, a create, a write and a rename.
//!
//! Invariants: a file is imported at most once — the import keeps the file's name in
//! `runs.journal` (a unique column) and removes the file only after its transaction
//! committed, so two importers at once, or a crash between the commit and the removal, cannot
//! make a second row. A file that is not a run record is renamed `<name>.bad` and reported,
//! never imported and never deleted. Temp files of writes that died are removed once stale.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use clab_model::atomic_write::{TEMP_PREFIX, write_atomic_unsynced};

use crate::{Error, RunRecord};

/// The journal's directory under the cache directory.
pub const DIR: &str = "history";

/// The name suffix of a record waiting to be imported.
const SUFFIX: &str = ".json";

/// The name suffix a record that could not be read is moved to.
const BAD_SUFFIX: &str = ".bad";

/// How old a temp file in the journal must be before it is taken for the remains of a write
/// that died (a live write renames its temp file within microseconds).
const STALE_TEMP: Duration = Duration::from_secs(10 * 60);

/// Records `run` in the journal of the cache at `cache_dir`, creating the directory (and the
/// cache directory's `.gitignore`) if needed.
pub fn record_pending(cache_dir: &Path, run: &RunRecord) -> Result<(), Error> {
    let dir = cache_dir.join(DIR);
    // Usually there already: one `mkdir` answered "exists".
    match fs::create_dir(&dir) {
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(&dir).map_err(|source| Error::io("create", &dir, source))?;
            crate::ignore_in_git(cache_dir);
        }
        Err(source) => return Err(Error::io("create", &dir, source)),
        // The first record of this cache: the cache directory may be new too (or made by
        // something that does not keep it out of version control, like the parse cache).
        Ok(()) => crate::ignore_in_git(cache_dir),
    }
    let json = serde_json::to_vec(run).map_err(|source| Error::Json {
        what: "run record",
        source,
    })?;
    let file = dir.join(format!("{}-{}{SUFFIX}", run.started_ms, std::process::id()));
    write_atomic_unsynced(&file, &json).map_err(|source| Error::io("write", &file, source))
}

/// A record waiting in the journal.
#[derive(Debug)]
pub(crate) struct Pending {
    /// Its file name (kept in `runs.journal`).
    pub name: String,
    /// The record.
    pub run: RunRecord,
}

/// What the journal at `dir` holds: the records waiting, oldest first, and the files that
/// could not be read (already renamed `<name>.bad`). Stale temp files are removed on the way.
/// A journal that does not exist holds nothing.
pub(crate) fn pending(dir: &Path) -> (Vec<Pending>, Vec<PathBuf>) {
    let mut found = Vec::new();
    let mut bad = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return (found, bad);
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with(TEMP_PREFIX) {
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|at| SystemTime::now().duration_since(at).ok())
                .is_some_and(|age| age > STALE_TEMP);
            if stale {
                let _ = fs::remove_file(entry.path());
            }
            continue;
        }
        if !name.ends_with(SUFFIX) {
            continue;
        }
        let path = entry.path();
        let run = fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<RunRecord>(&bytes).ok());
        match run {
            Some(run) => found.push(Pending {
                name: name.to_owned(),
                run,
            }),
            None => {
                let aside = path.with_file_name(format!("{name}{BAD_SUFFIX}"));
                if fs::rename(&path, &aside).is_ok() {
                    bad.push(aside);
                }
            }
        }
    }
    found.sort_by(|a, b| (a.run.started_ms, &a.name).cmp(&(b.run.started_ms, &b.name)));
    (found, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(started_ms: i64) -> RunRecord {
        RunRecord {
            started_ms,
            targets: vec!["hi".into()],
            ran: 1,
            cached: 0,
            failed: 0,
            duration_ms: 3,
            extra: None,
        }
    }

    #[test]
    fn a_record_is_one_file_read_back_as_written() {
        let cache = tempfile::tempdir().unwrap();
        let cache_dir = cache.path().join(".clab");
        record_pending(&cache_dir, &run(7)).unwrap();
        record_pending(&cache_dir, &run(5)).unwrap();
        let (found, bad) = pending(&cache_dir.join(DIR));
        assert!(bad.is_empty());
        let started: Vec<i64> = found.iter().map(|p| p.run.started_ms).collect();
        assert_eq!(started, [5, 7], "oldest first");
        assert_eq!(found[0].run, run(5));
        assert_eq!(
            found[0].name,
            format!("5-{}.json", std::process::id()),
            "named by start and process"
        );
        // The cache directory it created is kept out of version control.
        assert!(cache_dir.join(".gitignore").is_file());
        // Nothing but the two records (no temp file left).
        assert_eq!(fs::read_dir(cache_dir.join(DIR)).unwrap().count(), 2);
        fs::remove_file(cache_dir.join(".gitignore")).unwrap();
        fs::remove_dir_all(cache_dir.join(DIR)).unwrap();
        record_pending(&cache_dir, &run(9)).unwrap();
        assert!(
            cache_dir.join(".gitignore").is_file(),
            "also when the cache directory was there before the journal"
        );
        fs::remove_file(
            cache_dir
                .join(DIR)
                .join(format!("9-{}.json", std::process::id())),
        )
        .unwrap();
    }

    #[test]
    fn an_unreadable_record_is_moved_aside_and_stale_temp_files_removed() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("1-1.json"), b"{not json").unwrap();
        let fresh_temp = dir.path().join(format!("{TEMP_PREFIX}fresh"));
        fs::write(&fresh_temp, b"").unwrap();
        let old_temp = dir.path().join(format!("{TEMP_PREFIX}old"));
        fs::write(&old_temp, b"").unwrap();
        let old = SystemTime::now() - STALE_TEMP - Duration::from_secs(60);
        fs::File::options()
            .write(true)
            .open(&old_temp)
            .unwrap()
            .set_modified(old)
            .unwrap();

        let (found, bad) = pending(dir.path());
        assert!(found.is_empty());
        assert_eq!(bad, [dir.path().join("1-1.json.bad")]);
        assert!(bad[0].is_file(), "kept, not deleted");
        assert!(fresh_temp.exists(), "a write in progress is left alone");
        assert!(!old_temp.exists(), "a stale temp file is removed");
        // Read again: the bad file is not offered a second time.
        let (found, bad) = pending(dir.path());
        assert!(found.is_empty() && bad.is_empty());
    }

    #[test]
    fn a_missing_journal_holds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (found, bad) = pending(&dir.path().join("absent"));
        assert!(found.is_empty() && bad.is_empty());
    }
}
