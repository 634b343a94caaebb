//! The history journal: how a run that keeps nothing else in the cache records its history
//! row without opening `cache.db`.
//!
//! In: a [`RunRecord`] and the cache directory ([`record_pending`]). Out: one line appended
//! to `<cache dir>/history.jsonl` — `{"id":"<started ms>-<pid>","run":{…}}` — which the next
//! [`Store`](crate::Store) that writes or reads the history imports into the `runs` table
//! (`Journal::take`, then [`Store::import_history`](crate::Store::import_history)) and empties.
//!
//! Why: a run of a task without inputs (`echo hi`) looks nothing up and stores nothing; the
//! history row was its only use of SQLite, and opening `cache.db` (WAL and shared-memory files
//! created, the schema read, a checkpoint and both files removed at close) cost more than the
//! command. A file per record cost a new inode each run, and on ext4 finding a free inode
//! among recently deleted ones was ~9% of such a run's CPU (`perf record` of 400 runs); an
//! append to one file allocates nothing but, every 4 KiB, a block.
//!
//! Why an append and not a temp file renamed over the journal (the rule for every other file
//! clab writes): a rename would have to copy what is there, and two runs appending at once
//! would lose one of them. An append never touches what is already written: each record is
//! one `write(2)` of one line to a file opened `O_APPEND`, under a shared `flock` that lets
//! appends run side by side and keeps the importer out. A line that a crash tore, or any line
//! that is not a record, is moved to `history.bad` and reported once, never imported.
//!
//! Invariants: a record is imported at most once — the import keeps its id in `runs.journal`
//! (a unique column) and empties the journal only after its transaction committed, holding
//! the journal's exclusive lock from the read to the truncation, so no append falls between
//! them, and a crash between the commit and the truncation cannot make a second row. The
//! journal stays small: an append that finds it over [`IMPORT_AT`] bytes says so
//! ([`Appended::Full`]), and the run imports it (a project whose runs never open `cache.db`
//! otherwise).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, RunRecord};

/// The journal, in the cache directory.
pub const FILE: &str = "history.jsonl";

/// Where lines that are not records go, in the cache directory.
pub const BAD_FILE: &str = "history.bad";

/// A journal at least this large is imported by the run that appended to it (~2,000 runs'
/// lines: small enough to import in one transaction, large enough to be rare).
pub const IMPORT_AT: u64 = 256 * 1024;

/// One line of the journal.
#[derive(Serialize, Deserialize)]
struct Line<R> {
    /// `<started ms>-<pid>`: what makes a second import of the line a no-op.
    id: String,
    run: R,
}

/// What an append found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// The record is in the journal.
    Kept,
    /// The record is in the journal, which is now at least [`IMPORT_AT`] bytes: import it.
    Full,
}

/// Records `run` in the journal of the cache at `cache_dir`, creating the cache directory
/// (and its `.gitignore`) if needed.
pub fn record_pending(cache_dir: &Path, run: &RunRecord) -> Result<Appended, Error> {
    let path = cache_dir.join(FILE);
    let mut line = serde_json::to_vec(&Line {
        id: format!("{}-{}", run.started_ms, std::process::id()),
        run,
    })
    .map_err(|source| Error::Json {
        what: "run record",
        source,
    })?;
    line.push(b'\n');
    let append = |create| OpenOptions::new().append(true).create(create).open(&path);
    // Usually there already: one `open`.
    let file = match append(false) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            // The first record of this cache: the cache directory may be new too, or made by
            // something that does not keep it out of version control (the parse cache).
            fs::create_dir_all(cache_dir)
                .map_err(|source| Error::io("create", cache_dir, source))?;
            crate::ignore_in_git(cache_dir);
            append(true)
        }
        opened => opened,
    }
    .map_err(|source| Error::io("open", &path, source))?;
    file.lock_shared()
        .map_err(|source| Error::io("lock", &path, source))?;
    (&file)
        .write_all(&line)
        .map_err(|source| Error::io("write", &path, source))?;
    let size = file
        .metadata()
        .map_err(|source| Error::io("read", &path, source))?
        .len();
    Ok(if size >= IMPORT_AT {
        Appended::Full
    } else {
        Appended::Kept
    })
}

/// A record waiting in the journal.
#[derive(Debug)]
pub(crate) struct Pending {
    /// Its id (kept in `runs.journal`).
    pub id: String,
    /// The record.
    pub run: RunRecord,
}

/// The journal, locked for an import: what it holds, until [`clear`](Self::clear) empties it.
/// Dropping it without clearing leaves every line for the next import.
#[derive(Debug)]
pub(crate) struct Journal {
    file: File,
    path: PathBuf,
    /// The records, oldest first.
    pub records: Vec<Pending>,
    /// The lines that are not records (without their line ends).
    pub bad: Vec<Vec<u8>>,
}

impl Journal {
    /// Locks and reads the journal of the cache at `cache_dir`; `None` when there is none or
    /// it is empty (nothing to import).
    pub(crate) fn take(cache_dir: &Path) -> Result<Option<Journal>, Error> {
        let path = cache_dir.join(FILE);
        let file = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(Error::io("open", &path, source)),
        };
        file.lock()
            .map_err(|source| Error::io("lock", &path, source))?;
        let mut text = Vec::new();
        (&file)
            .read_to_end(&mut text)
            .map_err(|source| Error::io("read", &path, source))?;
        if text.is_empty() {
            return Ok(None);
        }
        let mut records = Vec::new();
        let mut bad = Vec::new();
        for line in text.split(|&b| b == b'\n').filter(|line| !line.is_empty()) {
            match serde_json::from_slice::<Line<RunRecord>>(line) {
                Ok(Line { id, run }) => records.push(Pending { id, run }),
                Err(_) => bad.push(line.to_vec()),
            }
        }
        records.sort_by(|a, b| (a.run.started_ms, &a.id).cmp(&(b.run.started_ms, &b.id)));
        Ok(Some(Journal {
            file,
            path,
            records,
            bad,
        }))
    }

    /// Appends the lines that are not records to [`BAD_FILE`] beside the journal, and
    /// returns where they went (`None` when there are none, or they could not be kept).
    pub(crate) fn set_bad_aside(&self) -> Option<PathBuf> {
        if self.bad.is_empty() {
            return None;
        }
        let aside = self.path.with_file_name(BAD_FILE);
        let mut text = Vec::new();
        for line in &self.bad {
            text.extend_from_slice(line);
            text.push(b'\n');
        }
        let mut file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&aside)
            .ok()?;
        file.write_all(&text).ok()?;
        Some(aside)
    }

    /// Empties the journal: call once its records are committed. The lock goes with `self`.
    pub(crate) fn clear(self) -> Result<(), Error> {
        self.file
            .set_len(0)
            .map_err(|source| Error::io("truncate", &self.path, source))
    }
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
    fn a_record_is_one_line_read_back_as_written() {
        let cache = tempfile::tempdir().unwrap();
        let cache_dir = cache.path().join(".clab");
        assert_eq!(record_pending(&cache_dir, &run(7)).unwrap(), Appended::Kept);
        record_pending(&cache_dir, &run(5)).unwrap();
        let text = fs::read_to_string(cache_dir.join(FILE)).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        let journal = Journal::take(&cache_dir).unwrap().unwrap();
        assert!(journal.bad.is_empty());
        let started: Vec<i64> = journal.records.iter().map(|p| p.run.started_ms).collect();
        assert_eq!(started, [5, 7], "oldest first");
        assert_eq!(journal.records[0].run, run(5));
        assert_eq!(
            journal.records[0].id,
            format!("5-{}", std::process::id()),
            "named by start and process"
        );
        // The cache directory it created is kept out of version control.
        assert!(cache_dir.join(".gitignore").is_file());
        journal.clear().unwrap();
        assert!(Journal::take(&cache_dir).unwrap().is_none(), "emptied");
        assert_eq!(fs::read(cache_dir.join(FILE)).unwrap(), b"");

        fs::remove_file(cache_dir.join(".gitignore")).unwrap();
        fs::remove_file(cache_dir.join(FILE)).unwrap();
        record_pending(&cache_dir, &run(9)).unwrap();
        assert!(
            cache_dir.join(".gitignore").is_file(),
            "also when the cache directory was there before the journal"
        );
    }

    #[test]
    fn lines_that_are_not_records_are_set_aside_and_the_rest_imported() {
        let cache = tempfile::tempdir().unwrap();
        let dir = cache.path();
        record_pending(dir, &run(1)).unwrap();
        // A torn line (a crash mid-append), then a whole one after it.
        let mut file = OpenOptions::new()
            .append(true)
            .open(dir.join(FILE))
            .unwrap();
        file.write_all(b"{\"id\":\"2-2\",\"ru\n").unwrap();
        record_pending(dir, &run(3)).unwrap();
        let journal = Journal::take(dir).unwrap().unwrap();
        let started: Vec<i64> = journal.records.iter().map(|p| p.run.started_ms).collect();
        assert_eq!(started, [1, 3]);
        assert_eq!(journal.bad, [b"{\"id\":\"2-2\",\"ru".to_vec()]);
        let aside = journal.set_bad_aside().unwrap();
        assert_eq!(aside, dir.join(BAD_FILE));
        assert_eq!(fs::read(&aside).unwrap(), b"{\"id\":\"2-2\",\"ru\n");
    }

    #[test]
    fn a_full_journal_asks_for_an_import() {
        let cache = tempfile::tempdir().unwrap();
        let dir = cache.path();
        fs::write(dir.join(FILE), vec![b' '; IMPORT_AT as usize]).unwrap();
        assert_eq!(record_pending(dir, &run(1)).unwrap(), Appended::Full);
    }

    #[test]
    fn an_import_keeps_appends_out_until_it_is_done() {
        let cache = tempfile::tempdir().unwrap();
        let dir = cache.path().to_path_buf();
        record_pending(&dir, &run(1)).unwrap();
        let journal = Journal::take(&dir).unwrap().unwrap();
        let appending = {
            let dir = dir.clone();
            std::thread::spawn(move || record_pending(&dir, &run(2)).unwrap())
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!appending.is_finished(), "the append waits for the import");
        journal.clear().unwrap();
        appending.join().unwrap();
        let journal = Journal::take(&dir).unwrap().unwrap();
        let started: Vec<i64> = journal.records.iter().map(|p| p.run.started_ms).collect();
        assert_eq!(started, [2], "the append after the import is kept");
    }

    #[test]
    fn a_missing_journal_holds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Journal::take(&dir.path().join("absent")).unwrap().is_none());
    }
}
