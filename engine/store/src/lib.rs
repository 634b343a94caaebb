//! clab's cache store: `cache.db` (SQLite), the content-addressed blob store, the stat cache
//! and cross-process key locks.
//!
//! # Purpose
//!
//! Remember what a task produced under its cache key and give it back byte for byte: results,
//! output files, logs, the inputs manifest of each task's last run, run history, the LLM call
//! log and the stat cache (file hashes by `stat`). The store knows nothing of tasks.kdl, the
//! graph, planning or execution: keys and values come from the caller.
//!
//! # In
//!
//! A cache directory (`<root>/.clab/`, or `CLAB_CACHE_DIR`, chosen by the caller; see
//! [`cache_dir`]), cache keys, [`CachedResult`]s and the files they name.
//!
//! # Out
//!
//! A [`Store`] that saves and loads task results by cache key, puts and restores output files
//! and logs, keeps the [`stat_cache::StatCache`], the inputs manifest of each task's last run,
//! run history and the LLM call log, and locks keys across processes ([`KeyLock`]).
//!
//! ```text
//! <cache dir>/
//!   cache.db            SQLite, WAL; schema in `db` (SCHEMA_VERSION)
//!   cas/ab/cdef…        blobs by blake3 hex; layout in `cas` (CAS_VERSION)
//!   cas/.tmp-*, cas/ab/.tmp-*  in-flight writes and restores (never read; swept by prune)
//!   locks/keys          one byte-range lock per cache key being built (`key_lock`)
//! ```
//!
//! # Invariants
//!
//! - A result row is committed only after every blob it names is in the CAS
//!   (`save_result` checks), so a reader that finds a row finds its blobs, short of `prune` or
//!   a user deleting files; `load_result` treats a row with a missing blob as a miss.
//! - Every file the store writes (blobs, restored outputs) goes to a temp file and is renamed
//!   into place: blobs from their shard (or `cas/`), restored outputs from their blob's shard,
//!   or from beside them when the cache is on another file system ([`Cas::restore`]).
//! - Two clab processes may share one store: SQLite's WAL and busy timeout order writers, and
//!   `lock_key` keeps the same key from being built twice at once.
//! - `Store` is `Send + Sync`; its methods are synchronous (call them from `spawn_blocking`).
//! - Every temp file the store writes beside a user's files (a restore in progress) is named
//!   [`TEMP_PREFIX`]`…`: output expansion must skip such names, and `clab_plan::inputs::sweep_temp_files`
//!   removes those a killed clab left (issue 18: a partial `out/.clab-restore-*` was stored as
//!   an output of `outputs "out/**"`).
//! - Among clab's crates this one depends on `clab-model` only (for the [`LlmCall`] record and
//!   [`TEMP_PREFIX`]).

pub mod byte_size;
pub mod cached_result;
pub mod cas;
pub mod db;
pub mod digest;
pub mod history;
pub mod key_lock;
pub mod run_record;
pub mod stat_cache;
pub mod pack;
mod parent_dir;
mod stat_rows;
pub mod verified_blob;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OptionalExtension, params};

pub use byte_size::{ByteSize, SizeError};
pub use cached_result::{CachedResult, OutputEntry, RestoreReport};
pub use cas::{Cas, RestoreTemp};
/// The name prefix of every temp file clab writes beside a user's files: restores in progress
/// here, and `clab_model::atomic_write` (LLM outputs, reports). Output globs must never match
/// such a name; `clab_plan::inputs::sweep_temp_files` removes stale ones at the start of a run.
pub use clab_model::atomic_write::TEMP_PREFIX;
use clab_model::llm_call::{CallOutcome, LlmCall};
pub use digest::Digest;
pub use key_lock::KeyLock;
pub use pack::PackWriter;
pub use run_record::RunRecord;
pub use verified_blob::VerifiedBlob;

use crate::stat_cache::{FileStat, StatCache, StatEntry, now_ns};

/// The default cache directory name under the project root.
pub const DEFAULT_DIR: &str = ".clab";

/// The database's file name in the cache directory.
pub const DB_FILE: &str = "cache.db";

/// The environment variable that overrides the cache directory.
pub const CACHE_DIR_ENV: &str = "CLAB_CACHE_DIR";

/// The cache directory of the project at `root`: `override_dir` (the value of `CLAB_CACHE_DIR`;
/// a relative one is taken from `root`) or else `<root>/.clab`.
pub fn cache_dir(root: &Path, override_dir: Option<&Path>) -> PathBuf {
    match override_dir {
        Some(dir) if !dir.as_os_str().is_empty() => root.join(dir),
        _ => root.join(DEFAULT_DIR),
    }
}

/// Keep the cache directory out of version control without touching the user's `.gitignore`:
/// a `.gitignore` of its own that ignores everything, written if missing.
pub fn ignore_in_git(cache_dir: &Path) {
    let ignore = cache_dir.join(".gitignore");
    if !ignore.exists() {
        let _ = clab_model::atomic_write::write_atomic_unsynced(&ignore, b"# created by clab\n*\n");
    }
}

/// File names in the cache directory that start with this are no-op snapshots
/// (`exec::snapshot`): they vouch for results, so whatever changes results deletes them.
pub const SNAPSHOT_PREFIX: &str = "noop-";

/// How stale a result's `last_used_ms` may get before a hit writes it again (10 minutes).
const LAST_USED_GRAIN_MS: i64 = 10 * 60 * 1000;

/// How long a blob or temp file is protected from `prune` after it was written or re-put, so
/// that a concurrent writer's result can still reference it.
pub const BLOB_GRACE: Duration = Duration::from_secs(10 * 60);

/// Errors of the store.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum Error {
    /// A file system operation failed.
    #[error("cannot {action} `{}`", path.display())]
    #[diagnostic(code(clab::store::io))]
    Io {
        /// What we tried to do (`read`, `create`, `rename a temp file to`, …).
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },

    /// SQLite failed.
    #[error("cache database `{}` failed", path.display())]
    #[diagnostic(code(clab::store::sqlite))]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: Box<rusqlite::Error>,
    },

    /// The database is still corrupt after being rebuilt (should not happen).
    #[error("cache database `{}` is corrupt: {reason}", path.display())]
    #[diagnostic(
        code(clab::store::corrupt_db),
        help("delete the cache directory to start a fresh cache")
    )]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What SQLite reported.
        reason: String,
    },

    /// The database was written by a newer clab.
    #[error(
        "cache database `{}` has schema version {found}, newer than this clab supports ({supported})",
        path.display()
    )]
    #[diagnostic(
        code(clab::store::newer_schema),
        help("use a newer clab, or move the cache directory away to start a fresh cache")
    )]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// Its `user_version`.
        found: u32,
        /// `db::SCHEMA_VERSION`.
        supported: u32,
    },

    /// A blob's content does not hash to its name.
    #[error("blob `{digest}` is corrupt: its content hashes to `{actual}`")]
    #[diagnostic(
        code(clab::store::corrupt_blob),
        help("run `clab cache clean`; the task will run again")
    )]
    CorruptBlob {
        /// The expected digest (its name).
        digest: Digest,
        /// What the bytes hash to.
        actual: Digest,
        /// The blob file.
        path: PathBuf,
    },

    /// A blob is not in the CAS.
    #[error("blob `{digest}` is not in the cache")]
    #[diagnostic(code(clab::store::missing_blob))]
    MissingBlob {
        /// Its digest.
        digest: Digest,
    },

    /// `flock` failed (not merely busy).
    #[error("cannot lock `{}`", path.display())]
    #[diagnostic(code(clab::store::lock))]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: nix::errno::Errno,
    },

    /// A cache key that cannot be a lock file name.
    #[error("cache key `{key}` is not a valid lock name")]
    #[diagnostic(
        code(clab::store::bad_key),
        help("keys are hex digests: letters, digits, `-`, `_` and `.`")
    )]
    BadKey {
        /// The key.
        key: String,
    },

    /// An output path escapes the project root.
    #[error("output `{path}` is outside the project root")]
    #[diagnostic(
        code(clab::store::outside_root),
        help("outputs are paths relative to the project root, without `..`")
    )]
    OutsideRoot {
        /// The path as given.
        path: String,
    },

    /// An output is not a regular file.
    #[error("output `{path}` is not a regular file")]
    #[diagnostic(code(clab::store::not_a_file))]
    NotAFile {
        /// The path relative to the root.
        path: String,
    },

    /// A JSON column could not be decoded.
    #[error("cannot decode {what} in the cache database")]
    #[diagnostic(
        code(clab::store::bad_row),
        help("run `clab cache clean` to start a fresh cache")
    )]
    Json {
        /// Which column.
        what: &'static str,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

impl Error {
    pub(crate) fn io(action: &'static str, path: &Path, source: io::Error) -> Error {
        Error::Io {
            action,
            path: path.to_owned(),
            source,
        }
    }

    pub(crate) fn sqlite(path: &Path, source: rusqlite::Error) -> Error {
        Error::Sqlite {
            path: path.to_owned(),
            source: Box::new(source),
        }
    }

    fn blob_io(digest: &Digest, path: &Path, source: io::Error) -> Error {
        if source.kind() == io::ErrorKind::NotFound {
            Error::MissingBlob { digest: *digest }
        } else {
            Error::io("read", path, source)
        }
    }
}

/// Something went wrong but the run can go on.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum Warning {
    /// `cache.db` was unreadable and has been replaced by an empty one.
    #[error(
        "cache database `{}` was corrupt ({reason}); moved it to `{}` and started an empty cache",
        path.display(),
        moved_to.display()
    )]
    #[diagnostic(code(clab::store::corrupt_db_recovered), severity(Warning))]
    CorruptDatabase {
        /// The database file.
        path: PathBuf,
        /// Where the damaged file went.
        moved_to: PathBuf,
        /// What SQLite reported.
        reason: String,
    },
    /// Lines of the history journal were not run records; they were moved aside.
    #[error(
        "{} of the history journal {} unreadable; moved to `{}` (not imported)",
        if *lines == 1 { "1 line".to_owned() } else { format!("{lines} lines") },
        if *lines == 1 { "is" } else { "are" },
        path.display()
    )]
    #[diagnostic(code(clab::store::bad_history_record), severity(Warning))]
    BadHistoryRecord {
        /// Where they are now ([`history::BAD_FILE`]).
        path: PathBuf,
        /// How many lines.
        lines: usize,
    },
}

/// A freshly opened store and what happened while opening it.
#[derive(Debug)]
pub struct Opened {
    /// The store.
    pub store: Store,
    /// Warnings to show once (e.g. a corrupt database was rebuilt).
    pub warnings: Vec<Warning>,
}

/// The inputs manifest saved for a task's last run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedManifest {
    /// The cache key of that run.
    pub key: String,
    /// The caller's JSON, verbatim.
    pub json: String,
    /// When it was saved (Unix ms).
    pub updated_ms: i64,
}

/// Figures for `clab cache stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Cached results.
    pub entries: u64,
    /// Blobs in the CAS.
    pub blobs: u64,
    /// Bytes of blobs in the CAS.
    pub blob_bytes: u64,
    /// Bytes of `cache.db` and its WAL.
    pub db_bytes: u64,
    /// Lookups that found an entry, here or on the remote cache.
    pub hits: u64,
    /// Lookups that found none, here or on the remote cache.
    pub misses: u64,
    /// Of the hits, those the remote cache answered.
    pub remote_hits: u64,
}

impl StoreStats {
    /// Hits over lookups, or `None` before the first lookup.
    pub fn hit_rate(&self) -> Option<f64> {
        let total = self.hits + self.misses;
        (total > 0).then(|| self.hits as f64 / total as f64)
    }
}

/// What `prune` or `clean` removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Result entries removed.
    pub entries: u64,
    /// Blobs removed.
    pub blobs: u64,
    /// Temp files of killed writers removed from the CAS.
    pub temp_files: u64,
    /// Bytes freed in the CAS (blobs and temp files).
    pub freed_bytes: u64,
    /// Bytes left in the CAS.
    pub remaining_bytes: u64,
    /// Stat-cache entries dropped because their file is gone.
    pub stat_entries: u64,
}

impl std::fmt::Display for PruneReport {
    /// `removed 1 entry and 2 blobs (8 B); 0 B left`, each count with its plural; temp files
    /// and stat-cache records of deleted files are named only when there were some (the bytes
    /// are the CAS's: a record is a few bytes of `cache.db`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count =
            |n: u64, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        let mut parts = vec![
            count(self.entries, "entry", "entries"),
            count(self.blobs, "blob", "blobs"),
        ];
        if self.temp_files > 0 {
            parts.push(count(self.temp_files, "temp file", "temp files"));
        }
        if self.stat_entries > 0 {
            parts.push(count(
                self.stat_entries,
                "record of a deleted file",
                "records of deleted files",
            ));
        }
        let last = parts.pop().unwrap_or_default();
        write!(
            f,
            "removed {} and {last} ({}); {} left",
            parts.join(", "),
            ByteSize(self.freed_bytes),
            ByteSize(self.remaining_bytes)
        )
    }
}

/// The cache store of one project.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    db_path: PathBuf,
    cas: Cas,
    /// Lookups during a run (results, manifests, input sets), opened on first use; `None`
    /// if it could not be opened (lookups then share `conn`). In WAL mode a read does not
    /// wait for a write: the first nodes of a cold run would otherwise wait behind the
    /// stat cache's flush (10,000 rows, ~10 ms) for lookups that find nothing.
    reader: OnceLock<Option<Mutex<Connection>>>,
    conn: Mutex<Connection>,
    stat_cache: OnceLock<StatCache>,
    blob_grace: Duration,
    usage: Usage,
    /// Rows read ahead by `preload_results`, served without the connection.
    preloaded: RwLock<HashMap<String, ResultRow>>,
    /// The tasks with a manifest when `preload_results` read ahead, plus those saved since;
    /// `None` before a read-ahead. A task not named here has no manifest as far as this
    /// process can tell, and is answered without SQL: a cold run of 2,000 tasks asks 2,000
    /// times.
    manifest_names: RwLock<Option<HashSet<String>>>,
    /// Input sets known to be in `input_sets` (written or confirmed by this process).
    input_sets: Mutex<HashSet<Digest>>,
    /// Input sets read by this process.
    parsed_input_sets: Mutex<HashMap<Digest, InputSet>>,
    /// Bumped each time a damaged `cache.db` is replaced (see [`Store::heal`]): an operation
    /// that failed on generation `n` heals only if nobody has since.
    generation: AtomicU64,
    /// The device and inode of the `cache.db` the connections opened.
    db_file: Mutex<Option<(u64, u64)>>,
    /// Warnings since the last [`Store::take_warnings`] (a database healed during use).
    warnings: Mutex<Vec<Warning>>,
    /// Restores write their temp files beside the output, not in the CAS: set once a rename
    /// from the CAS crossed file systems (`CLAB_CACHE_DIR` elsewhere).
    restore_beside: AtomicBool,
}

/// A node's inputs map (path → content hash), as manifests share it.
pub type InputSet = Arc<BTreeMap<String, Digest>>;

/// Hit and miss counts and last-used times of `load_result` not yet written to `cache.db`:
/// a no-op run of 2,000 cached tasks would otherwise commit 4,000 write transactions.
/// Written in one transaction by `flush_usage` (also by `flush_stat_cache` and on drop),
/// and before anything reads them (`stats`, `prune`, `clean`).
#[derive(Debug, Default)]
struct Usage {
    hits: AtomicI64,
    misses: AtomicI64,
    /// Of the misses, those the remote cache then answered (see [`Store::count_remote_hit`]).
    remote_hits: AtomicI64,
    used: Mutex<HashMap<String, i64>>,
}

/// A `results` row as `load_result` reads it: task, status, duration, outputs JSON, log
/// digest, created and last used.
type ResultRow = (String, String, i64, String, Option<String>, i64, i64);

impl Store {
    /// Opens (creating if needed) the store in `dir`. A corrupt `cache.db` is moved aside and
    /// rebuilt, with one warning in `Opened::warnings`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Opened, Error> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|source| Error::io("create", &dir, source))?;
        let db_path = dir.join(DB_FILE);
        let (conn, warning) = db::open(&db_path)?;
        let db_file = db::file_id(&db_path);
        let cas = Cas::new(dir.join("cas"));
        cas.create_root();
        let store = Store {
            cas,
            dir,
            db_path,
            reader: OnceLock::new(),
            conn: Mutex::new(conn),
            stat_cache: OnceLock::new(),
            blob_grace: BLOB_GRACE,
            usage: Usage::default(),
            preloaded: RwLock::new(HashMap::new()),
            manifest_names: RwLock::new(None),
            input_sets: Mutex::new(HashSet::new()),
            parsed_input_sets: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            db_file: Mutex::new(db_file),
            warnings: Mutex::new(Vec::new()),
            restore_beside: AtomicBool::new(false),
        };
        if warning.is_some() {
            // The results a snapshot vouches for went with the damaged database.
            store.forget_snapshots();
        }
        Ok(Opened {
            store,
            warnings: warning.into_iter().collect(),
        })
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The blob store.
    pub fn cas(&self) -> &Cas {
        &self.cas
    }

    /// Run `f` on the connection (tests look at tables directly; outside this crate with the
    /// `test-support` feature).
    #[cfg(any(test, feature = "test-support"))]
    pub fn with_connection<T>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> rusqlite::Result<T> {
        f(&self.conn())
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave the connection half-used: every write
        // is one statement or one transaction that SQLite rolls back.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The connection for lookups (see `reader`).
    fn reader(&self) -> MutexGuard<'_, Connection> {
        let reader = self
            .reader
            .get_or_init(|| db::open_reader(&self.db_path).ok().map(Mutex::new));
        match reader {
            Some(reader) => reader.lock().unwrap_or_else(|e| e.into_inner()),
            None => self.conn(),
        }
    }

    fn sql<T>(&self, result: rusqlite::Result<T>) -> Result<T, Error> {
        result.map_err(|e| Error::sqlite(&self.db_path, e))
    }

    /// Run `op` on the connection; if SQLite says the database is damaged, heal it (see
    /// [`heal`](Self::heal)) and run `op` once more on the fresh one.
    fn with_conn<T>(
        &self,
        op: impl Fn(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, Error> {
        let generation = self.generation.load(Ordering::SeqCst);
        let result = op(&mut self.conn());
        match result {
            Err(err) if db::is_corruption(&err) => {
                self.heal(generation, &err)?;
                self.sql(op(&mut self.conn()))
            }
            result => self.sql(result),
        }
    }

    /// [`with_conn`](Self::with_conn) on the lookup connection.
    fn with_reader<T>(&self, op: impl Fn(&Connection) -> rusqlite::Result<T>) -> Result<T, Error> {
        let generation = self.generation.load(Ordering::SeqCst);
        let result = op(&self.reader());
        match result {
            Err(err) if db::is_corruption(&err) => {
                self.heal(generation, &err)?;
                self.sql(op(&self.reader()))
            }
            result => self.sql(result),
        }
    }

    /// `cache.db` turned out damaged during use (issue 18: a damaged stat-cache page, index
    /// page or header byte made every run warn and rerun everything, forever). Unless another
    /// thread healed it since `generation`, or another clab already replaced the file: close
    /// both connections, move the file and its `-wal`/`-shm` aside (`db::move_aside`), open a
    /// fresh database, forget everything read from the old one, and queue one
    /// [`Warning::CorruptDatabase`] for [`take_warnings`](Self::take_warnings). The run goes
    /// on as a cold run.
    fn heal(&self, generation: u64, err: &rusqlite::Error) -> Result<(), Error> {
        let mut conn = self.conn();
        if self.generation.load(Ordering::SeqCst) != generation {
            return Ok(());
        }
        // A query failed, but the file checks out: the retry reports the error, the cache is
        // kept.
        let Some(reason) = db::confirm_damage(&conn, err) else {
            return Ok(());
        };
        // Close before moving: a connection closing after the move would delete the new
        // database's `-wal` by name.
        drop(std::mem::replace(&mut *conn, db::placeholder()?));
        if let Some(Some(reader)) = self.reader.get() {
            let mut reader = reader.lock().unwrap_or_else(|e| e.into_inner());
            drop(std::mem::replace(&mut *reader, db::placeholder()?));
        }
        let mut db_file = self.db_file.lock().unwrap_or_else(|e| e.into_inner());
        let replaced_by_another = db_file.is_some() && db::file_id(&self.db_path) != *db_file;
        let moved_to = if replaced_by_another {
            None
        } else {
            Some(db::move_aside(&self.db_path)?)
        };
        let (fresh, _) = db::open(&self.db_path)?;
        *conn = fresh;
        *db_file = db::file_id(&self.db_path);
        if let Some(Some(reader)) = self.reader.get() {
            let mut reader = reader.lock().unwrap_or_else(|e| e.into_inner());
            if let Ok(fresh) = db::open_reader(&self.db_path) {
                *reader = fresh;
            }
        }
        self.generation.fetch_add(1, Ordering::SeqCst);
        drop(conn);
        // Nothing read from the damaged file is trusted any more.
        self.forget_preloaded();
        *self
            .manifest_names
            .write()
            .unwrap_or_else(|e| e.into_inner()) = None;
        self.input_sets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        if let Some(cache) = self.stat_cache.get() {
            cache.clear();
        }
        self.forget_snapshots();
        if let Some(moved_to) = moved_to {
            self.warnings
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Warning::CorruptDatabase {
                    path: self.db_path.clone(),
                    moved_to,
                    reason,
                });
        }
        Ok(())
    }

    /// `PRAGMA quick_check` (reads every page: ~70 ms for a 10 MB cache), healing a damaged
    /// database. Run by the maintenance commands (`stats`, `clean`, `prune`), which may afford
    /// it, so that damage no query of a run happens to meet is found there.
    fn verify(&self) -> Result<(), Error> {
        self.with_conn(|conn| {
            let check: String = conn.query_row("PRAGMA quick_check(1)", [], |row| row.get(0))?;
            if check == "ok" {
                Ok(())
            } else {
                Err(rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
                    Some(check),
                ))
            }
        })
    }

    /// Warnings raised since the last call: a `cache.db` found damaged during use and
    /// replaced (at most once per damage). The caller reports them as it reports
    /// [`Opened::warnings`]; a run should ask after planning and at its end.
    pub fn take_warnings(&self) -> Vec<Warning> {
        std::mem::take(&mut *self.warnings.lock().unwrap_or_else(|e| e.into_inner()))
    }

    // ── blobs ────────────────────────────────────────────────────────────────────────────────

    /// Puts the output file `root/rel` in the CAS and returns its manifest entry (with its
    /// permission bits). Also records its hash in the stat cache.
    pub fn store_output(&self, root: &Path, rel: &str) -> Result<OutputEntry, Error> {
        let rel = normalize_rel(rel)?;
        let abs = absolute_root(root)?.join(&rel);
        let started_ns = now_ns();
        let meta = fs::metadata(&abs).map_err(|source| Error::io("read", &abs, source))?;
        if !meta.is_file() {
            return Err(Error::NotAFile { path: rel });
        }
        let stat = FileStat::from_metadata(&meta);
        let (hash, size) = self.cas.put_file(&abs)?;
        if size == stat.size {
            self.stat_cache()?.record(&abs, &stat, hash, started_ns);
        }
        Ok(OutputEntry {
            path: rel,
            hash,
            size,
            mode: meta.permissions().mode() & 0o7777,
        })
    }

    /// Puts a captured log in the CAS.
    pub fn put_log(&self, bytes: &[u8]) -> Result<Digest, Error> {
        self.cas.put_bytes(bytes)
    }

    /// Reads a log (or any blob), verifying its digest.
    pub fn read_log(&self, digest: &Digest) -> Result<Vec<u8>, Error> {
        self.cas.read(digest)
    }

    // ── results ──────────────────────────────────────────────────────────────────────────────

    /// Saves a successful result under `key`, replacing any previous one. Fails with
    /// `missing_blob` unless every output and the log are already in the CAS.
    pub fn save_result(&self, key: &str, result: &CachedResult) -> Result<(), Error> {
        let row = self.result_row(key, result)?;
        self.with_conn(|conn| insert_result(conn, &row))?;
        Ok(())
    }

    /// [`save_result`](Self::save_result) for each of `results`, answered in their order, in
    /// one transaction: a batch of entries fetched from a remote cache commits once, not once
    /// per entry. Should the transaction fail, each result is saved on its own.
    pub fn save_results(&self, results: &[(&str, &CachedResult)]) -> Vec<Result<(), Error>> {
        let mut answers: Vec<Result<(), Error>> = Vec::with_capacity(results.len());
        let mut rows = Vec::with_capacity(results.len());
        for (key, result) in results {
            match self.result_row(key, result) {
                Ok(row) => {
                    rows.push(row);
                    answers.push(Ok(()));
                }
                Err(e) => answers.push(Err(e)),
            }
        }
        if rows.is_empty() {
            return answers;
        }
        let committed = self.with_conn(|conn| {
            let transaction = conn.transaction()?;
            for row in &rows {
                insert_result(&transaction, row)?;
            }
            transaction.commit()
        });
        if committed.is_err() {
            for (answer, (key, result)) in answers.iter_mut().zip(results) {
                if answer.is_ok() {
                    *answer = self.save_result(key, result);
                }
            }
        }
        answers
    }

    /// [`save_result`](Self::save_result) and [`save_manifest`](Self::save_manifest) of the
    /// result's task, in one transaction: a node that ran writes both.
    pub fn save_result_and_manifest(
        &self,
        key: &str,
        result: &CachedResult,
        manifest: &str,
    ) -> Result<(), Error> {
        let row = self.result_row(key, result)?;
        self.with_conn(|conn| {
            let transaction = conn.transaction()?;
            insert_result(&transaction, &row)?;
            insert_manifest(&transaction, &result.task, key, manifest)?;
            transaction.commit()
        })?;
        self.note_manifest(&result.task);
        Ok(())
    }

    /// What `results` holds for `result` under `key`, once its blobs are known to be in the
    /// CAS (their sizes, from the files, are its size).
    fn result_row(&self, key: &str, result: &CachedResult) -> Result<NewResult, Error> {
        self.preloaded
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
        let mut size = 0u64;
        for digest in result.blobs().collect::<BTreeSet<_>>() {
            size += self
                .cas
                .size_of(&digest)
                .ok_or(Error::MissingBlob { digest })?;
        }
        let mut outputs = result.outputs.clone();
        outputs.sort();
        let outputs = serde_json::to_string(&outputs).map_err(|source| Error::Json {
            what: "an output manifest",
            source,
        })?;
        Ok(NewResult {
            key: key.to_owned(),
            task: result.task.clone(),
            status: result.status.clone(),
            duration_ms: result.duration_ms as i64,
            outputs,
            log: result.log.map(|d| d.to_hex().to_string()),
            size: size as i64,
        })
    }

    /// The result saved under `key`, if it could be restored, without counting a hit or a
    /// miss, marking it used or deleting anything: what `--dry-run` and `explain` ask, so that
    /// only `run` moves `clab cache stats`.
    pub fn peek_result(&self, key: &str) -> Result<Option<CachedResult>, Error> {
        let (_, result) = self.find_result(key)?;
        Ok(result.filter(|r| self.restorable(r)))
    }

    /// Whether every blob of `result` is in the CAS (the empty blob, most logs, is never read,
    /// so its presence is not checked).
    fn restorable(&self, result: &CachedResult) -> bool {
        result
            .blobs()
            .all(|d| d == Digest::empty() || self.cas.contains(&d))
    }

    /// The row saved under `key` (whether there is one) and its decoded result (`None` for a
    /// row this build cannot decode).
    fn find_result(&self, key: &str) -> Result<(bool, Option<CachedResult>), Error> {
        let preloaded = self
            .preloaded
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(key)
            .cloned();
        let row = match preloaded {
            Some(row) => Some(row),
            None => self.with_reader(|conn| {
                conn.prepare_cached(
                    "SELECT task, status, duration_ms, outputs, log_hash, created_ms,
                            last_used_ms
                     FROM results WHERE key = ?1",
                )
                .and_then(|mut statement| statement.query_row(params![key], result_row))
                .optional()
            })?,
        };
        let had_row = row.is_some();
        let result = match row {
            None => None,
            Some((task, status, duration_ms, outputs, log, created_ms, last_used_ms)) => {
                // A row this build cannot decode is treated like a row whose blobs are gone.
                let outputs: Option<Vec<OutputEntry>> = serde_json::from_str(&outputs).ok();
                let log = match log.as_deref().map(Digest::from_hex) {
                    None => Some(None),
                    Some(Some(d)) => Some(Some(d)),
                    Some(None) => None,
                };
                outputs.zip(log).map(|(outputs, log)| CachedResult {
                    task,
                    status,
                    duration_ms: duration_ms.max(0) as u64,
                    outputs,
                    log,
                    created_ms,
                    last_used_ms,
                })
            }
        };
        Ok((had_row, result))
    }

    /// Loads the result saved under `key` and marks it used; counts a hit or a miss. A result
    /// whose blobs are gone is deleted and reported as a miss.
    pub fn load_result(&self, key: &str) -> Result<Option<CachedResult>, Error> {
        let (had_row, result) = self.find_result(key)?;
        let result = match result {
            Some(r) if self.restorable(&r) => Some(r),
            _ if had_row => {
                self.preloaded
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(key);
                self.with_conn(|conn| {
                    conn.execute("DELETE FROM results WHERE key = ?1", params![key])
                })?;
                None
            }
            _ => None,
        };
        let Some(mut result) = result else {
            self.usage.misses.fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        };
        self.usage.hits.fetch_add(1, Ordering::Relaxed);
        let now = now_ms();
        // Least-recently-used order needs no finer grain than this: a no-op run right after
        // another writes nothing.
        if now - result.last_used_ms >= LAST_USED_GRAIN_MS {
            self.usage
                .used
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key.to_owned(), now);
            result.last_used_ms = now;
        }
        Ok(Some(result))
    }

    /// Delete every no-op snapshot of this cache (see [`SNAPSHOT_PREFIX`]).
    pub fn forget_snapshots(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            if entry
                .file_name()
                .to_str()
                .is_some_and(|name| name.starts_with(SNAPSHOT_PREFIX))
            {
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    /// Count a lookup that missed here (counted by [`load_result`](Self::load_result)) and
    /// that the remote cache then answered: [`StoreStats`] shows it as a hit, from the remote.
    pub fn count_remote_hit(&self) {
        self.usage.remote_hits.fetch_add(1, Ordering::Relaxed);
    }

    /// Count `n` cache hits that did not go through [`load_result`](Self::load_result).
    pub fn count_hits(&self, n: usize) {
        self.usage.hits.fetch_add(n as i64, Ordering::Relaxed);
    }

    /// Drop every read-ahead row: results are about to change.
    fn forget_preloaded(&self) {
        self.preloaded
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// Read ahead the result of each task's last run (the row its manifest's key names): on a
    /// no-op run every lookup is one of them, and is then served without taking the
    /// connection. Rows saved or deleted later are still found (or not) through SQL.
    /// Also reads which tasks have a manifest: [`load_manifest`](Self::load_manifest) of any
    /// other task answers `None` at once (one saved later by another process is missed: this
    /// run then explains less and rescans more, but keys nothing differently).
    pub fn preload_results(&self) -> Result<usize, Error> {
        let (rows, names) = self.with_conn(|conn| {
            let mut tasks = conn.prepare("SELECT task FROM manifests")?;
            let names = tasks
                .query_map([], |row| row.get::<_, String>(0))
                .and_then(|names| names.collect::<rusqlite::Result<HashSet<_>>>())?;
            let mut statement = conn.prepare(
                "SELECT r.task, r.status, r.duration_ms, r.outputs, r.log_hash, r.created_ms,
                        r.last_used_ms, r.key
                 FROM manifests m JOIN results r ON r.key = m.key",
            )?;
            let rows = statement
                .query_map([], |row| Ok((row.get::<_, String>(7)?, result_row(row)?)))
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())?;
            Ok((rows, names))
        })?;
        *self
            .manifest_names
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Some(names);
        let count = rows.len();
        self.preloaded
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .extend(rows);
        Ok(count)
    }

    /// Copy what the write-ahead log holds into `cache.db`, as far as no reader of another
    /// process needs it (a passive checkpoint: never waits). SQLite does this when the log
    /// passes 1,000 pages and when the last connection closes; a run calls it after its big
    /// writes so that the close at exit has little left to copy. Best effort: a checkpoint
    /// that cannot run now runs later.
    pub fn checkpoint(&self) {
        let conn = self.conn();
        let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
    }

    /// The last write of a run: copy the write-ahead log into `cache.db` and empty it, unless
    /// another process is using it (no waiting). Closing the store then has nothing to copy,
    /// whichever thread closes it — or none, when the process ends first: what is left is
    /// an empty log the next open reads in no time.
    pub fn finish_writes(&self) {
        let conn = self.conn();
        if conn.busy_timeout(Duration::ZERO).is_ok() {
            let _ = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
            let _ = conn.busy_timeout(db::BUSY_TIMEOUT);
        }
    }

    /// Writes the hit and miss counts and last-used times gathered by `load_result` since the
    /// last flush, in one transaction.
    pub fn flush_usage(&self) -> Result<(), Error> {
        let hits = self.usage.hits.swap(0, Ordering::Relaxed);
        let misses = self.usage.misses.swap(0, Ordering::Relaxed);
        let remote_hits = self.usage.remote_hits.swap(0, Ordering::Relaxed);
        let used = std::mem::take(&mut *self.usage.used.lock().unwrap_or_else(|e| e.into_inner()));
        if hits == 0 && misses == 0 && remote_hits == 0 && used.is_empty() {
            return Ok(());
        }
        self.with_conn(|conn| {
            let tx = conn.transaction()?;
            let counts = [
                ("hits", hits),
                ("misses", misses),
                ("remote_hits", remote_hits),
            ];
            for (name, n) in counts {
                if n > 0 {
                    tx.execute(
                        "INSERT INTO counters (name, value) VALUES (?1, ?2)
                         ON CONFLICT (name) DO UPDATE SET value = value + ?2",
                        params![name, n],
                    )?;
                }
            }
            {
                let mut statement = tx.prepare(
                    "UPDATE results SET last_used_ms = max(last_used_ms, ?2) WHERE key = ?1",
                )?;
                for (key, when) in &used {
                    statement.execute(params![key, when])?;
                }
            }
            tx.commit()
        })
    }

    /// Makes the outputs of `result` present under `root`: an output that already has the
    /// recorded hash (checked through the stat cache) and mode is left alone; a missing or
    /// changed one is written from the CAS (verified while copying) to a temp file in the
    /// blob's shard (beside it when the CAS is on another file system), given its mode, and
    /// renamed into place ([`Cas::restore`]).
    pub fn restore_outputs(
        &self,
        root: &Path,
        result: &CachedResult,
    ) -> Result<RestoreReport, Error> {
        self.restore_outputs_from(root, result, &HashMap::new())
    }

    /// [`restore_outputs`](Self::restore_outputs), with the blobs of `downloaded` (by
    /// digest; bytes just downloaded and verified) written from memory
    /// ([`Cas::restore_verified`]) instead of read back from the CAS and hashed again. The
    /// other outputs come from the CAS as always.
    pub fn restore_outputs_from(
        &self,
        root: &Path,
        result: &CachedResult,
        downloaded: &HashMap<Digest, VerifiedBlob>,
    ) -> Result<RestoreReport, Error> {
        let stat_cache = self.stat_cache()?;
        let root = absolute_root(root)?;
        let root = root.as_path();
        let mut report = RestoreReport::default();
        for output in &result.outputs {
            let rel = normalize_rel(&output.path)?;
            let abs = root.join(&rel);
            if output_is_current(stat_cache, &abs, output) {
                report.kept.push(rel);
                continue;
            }
            let started_ns = now_ns();
            let temp_in = if self.restore_beside.load(Ordering::Relaxed) {
                RestoreTemp::Beside
            } else {
                RestoreTemp::Shard
            };
            let (file, used) = match downloaded.get(&output.hash) {
                Some(blob) => self
                    .cas
                    .restore_verified(blob, &abs, output.mode, temp_in)?,
                None => self.cas.restore(&output.hash, &abs, output.mode, temp_in)?,
            };
            if used != temp_in {
                // The CAS is on another file system than this output: go beside at once.
                self.restore_beside.store(true, Ordering::Relaxed);
            }
            // Stat'ed through the descriptor after the rename (which set the ctime).
            if let Ok(meta) = file.metadata() {
                stat_cache.record(
                    &abs,
                    &FileStat::from_metadata(&meta),
                    output.hash,
                    started_ns,
                );
            }
            report.restored.push(rel);
        }
        Ok(report)
    }

    // ── manifests ────────────────────────────────────────────────────────────────────────────

    /// Saves the inputs manifest (opaque JSON) of `task`'s latest run, with its key.
    pub fn save_manifest(&self, task: &str, key: &str, json: &str) -> Result<(), Error> {
        self.with_conn(|conn| insert_manifest(conn, task, key, json))?;
        self.note_manifest(task);
        Ok(())
    }

    /// `task` has a manifest now (for [`may_have_manifest`](Self::may_have_manifest)).
    fn note_manifest(&self, task: &str) {
        if let Some(names) = self
            .manifest_names
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            names.insert(task.to_owned());
        }
    }

    /// Stores an input set (a manifest's inputs map as JSON) under its digest, once: a set
    /// already written by this process or found in the table is not written again.
    pub fn save_input_set(&self, digest: &Digest, json: &str) -> Result<(), Error> {
        {
            let saved = self.input_sets.lock().unwrap_or_else(|e| e.into_inner());
            if saved.contains(digest) {
                return Ok(());
            }
        }
        self.with_conn(|conn| {
            conn.prepare_cached(
                "INSERT INTO input_sets (digest, json, updated_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (digest) DO UPDATE SET updated_ms = ?3",
            )
            .and_then(|mut statement| {
                statement.execute(params![digest.to_hex().as_str(), json, now_ms()])
            })
        })?;
        self.input_sets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(*digest);
        Ok(())
    }

    /// An input set saved by [`save_input_set`](Self::save_input_set), parsed once per
    /// process (twenty rule nodes that ran over one tree read one copy); `None` when it is
    /// missing or unreadable.
    pub fn input_set(&self, digest: &Digest) -> Result<Option<InputSet>, Error> {
        if let Some(set) = self
            .parsed_input_sets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(digest)
        {
            return Ok(Some(Arc::clone(set)));
        }
        let json: Option<String> = self.with_reader(|conn| {
            conn.query_row(
                "SELECT json FROM input_sets WHERE digest = ?1",
                params![digest.to_hex().as_str()],
                |row| row.get(0),
            )
            .optional()
        })?;
        let Some(set) = json.and_then(|json| serde_json::from_str::<InputSet>(&json).ok()) else {
            return Ok(None);
        };
        self.parsed_input_sets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(*digest, Arc::clone(&set));
        Ok(Some(set))
    }

    /// Whether [`load_manifest`](Self::load_manifest) of `task` may find something (and
    /// then asks SQLite); `false` when the read-ahead knows it has none.
    pub fn may_have_manifest(&self, task: &str) -> bool {
        self.manifest_names
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_none_or(|names| names.contains(task))
    }

    /// The inputs manifest of `task`'s latest run, if any.
    pub fn load_manifest(&self, task: &str) -> Result<Option<SavedManifest>, Error> {
        if !self.may_have_manifest(task) {
            return Ok(None);
        }
        self.with_reader(|conn| {
            conn.query_row(
                "SELECT key, json, updated_ms FROM manifests WHERE task = ?1",
                params![task],
                |row| {
                    Ok(SavedManifest {
                        key: row.get(0)?,
                        json: row.get(1)?,
                        updated_ms: row.get(2)?,
                    })
                },
            )
            .optional()
        })
    }

    // ── history ──────────────────────────────────────────────────────────────────────────────

    /// Appends a run to the history (after the runs waiting in the journal, see
    /// [`history`]); returns its id.
    pub fn record_run(&self, run: &RunRecord) -> Result<i64, Error> {
        self.import_history()?;
        let columns = run_columns(run)?;
        self.with_conn(|conn| {
            insert_run(conn, run, &columns, None)?;
            Ok(conn.last_insert_rowid())
        })
    }

    /// Moves the runs waiting in the history journal into the `runs` table, oldest first, in
    /// one transaction, and empties the journal; a record already imported (its id is in
    /// `runs.journal`) is not imported again. Lines that are not records are set aside and
    /// queued as a warning ([`take_warnings`](Self::take_warnings)).
    pub fn import_history(&self) -> Result<(), Error> {
        let Some(journal) = history::Journal::take(&self.dir)? else {
            return Ok(());
        };
        let aside = journal.set_bad_aside();
        if let Some(path) = aside.clone() {
            let mut warnings = self.warnings.lock().unwrap_or_else(|e| e.into_inner());
            warnings.push(Warning::BadHistoryRecord {
                path,
                lines: journal.bad.len(),
            });
        }
        let rows = journal
            .records
            .iter()
            .map(|p| run_columns(&p.run).map(|columns| (p, columns)))
            .collect::<Result<Vec<_>, Error>>()?;
        self.with_conn(|conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            for (p, columns) in &rows {
                insert_run(&tx, &p.run, columns, Some(&p.id))?;
            }
            tx.commit()
        })?;
        if aside.is_none() && !journal.bad.is_empty() {
            // Lines that could not be set aside stay where they are (the records beside them
            // are imported again next time, as no-ops).
            return Ok(());
        }
        journal.clear()
    }

    /// The `n` most recent runs, newest first (the journal's included).
    pub fn recent_runs(&self, n: usize) -> Result<Vec<RunRecord>, Error> {
        self.import_history()?;
        let rows = self.with_conn(|conn| {
            let mut statement = conn.prepare_cached(
                "SELECT started_ms, targets, ran, cached, failed, duration_ms, extra
                 FROM runs ORDER BY id DESC LIMIT ?1",
            )?;
            statement
                .query_map(params![n as i64], |row| {
                    Ok((
                        row.get::<_, i64>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, u32>(2)?,
                        row.get::<_, u32>(3)?,
                        row.get::<_, u32>(4)?,
                        row.get::<_, i64>(5)?,
                        row.get::<_, Option<String>>(6)?,
                    ))
                })
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        })?;
        rows.into_iter()
            .map(
                |(started_ms, targets, ran, cached, failed, duration_ms, extra)| {
                    Ok(RunRecord {
                        started_ms,
                        targets: decode_json("run targets", &targets)?,
                        ran,
                        cached,
                        failed,
                        duration_ms: duration_ms.max(0) as u64,
                        extra: extra
                            .as_deref()
                            .map(|e| decode_json("run totals", e))
                            .transpose()?,
                    })
                },
            )
            .collect()
    }

    /// Appends one LLM call to the log.
    pub fn record_llm_call(&self, call: &LlmCall) -> Result<(), Error> {
        self.with_conn(|conn| {
            conn.execute(
                "INSERT INTO llm_calls (task, provider, model, attempt, tokens_in, tokens_out,
                                    latency_ms, status, cache_hit, at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    call.task,
                    call.provider,
                    call.model,
                    call.attempt,
                    call.tokens_in.map(|t| t as i64),
                    call.tokens_out.map(|t| t as i64),
                    call.latency_ms as i64,
                    call.outcome.as_str(),
                    call.is_cache_hit(),
                    call.at_ms
                ],
            )
        })?;
        Ok(())
    }

    /// Every logged LLM call, oldest first. What is not stored (`queued_ms`, `tries`) reads
    /// back as 0; an outcome this version does not know reads as an error.
    pub fn llm_calls(&self) -> Result<Vec<LlmCall>, Error> {
        self.with_conn(|conn| {
            let mut statement = conn.prepare_cached(
                "SELECT task, provider, model, attempt, tokens_in, tokens_out, latency_ms, status,
                        cache_hit, at_ms
                 FROM llm_calls ORDER BY id",
            )?;
            statement
                .query_map([], |row| {
                    Ok(LlmCall {
                        task: row.get(0)?,
                        provider: row.get(1)?,
                        model: row.get(2)?,
                        attempt: row.get(3)?,
                        tokens_in: row.get::<_, Option<i64>>(4)?.map(|t| t.max(0) as u64),
                        tokens_out: row.get::<_, Option<i64>>(5)?.map(|t| t.max(0) as u64),
                        latency_ms: row.get::<_, i64>(6)?.max(0) as u64,
                        queued_ms: 0,
                        tries: 0,
                        outcome: match CallOutcome::parse(&row.get::<_, String>(7)?) {
                            // Older logs marked hits only by their flag.
                            _ if row.get::<_, bool>(8)? => CallOutcome::Cached,
                            Some(outcome) => outcome,
                            None => CallOutcome::Error,
                        },
                        at_ms: row.get(9)?,
                    })
                })
                .and_then(|rows| rows.collect())
        })
    }

    // ── stat cache ───────────────────────────────────────────────────────────────────────────

    /// The stat cache, loaded from `cache.db` on first use and shared by every caller.
    pub fn stat_cache(&self) -> Result<&StatCache, Error> {
        if let Some(cache) = self.stat_cache.get() {
            return Ok(cache);
        }
        let entries = self.load_stat_entries()?;
        Ok(self
            .stat_cache
            .get_or_init(|| StatCache::from_keyed(entries)))
    }

    /// The stat cache holding only the rows of the directories of `paths` (absolute, as inputs
    /// are hashed), when it was not loaded yet: a run after a change hashes the inputs of a few
    /// nodes, and reading every row (40,000 entries on the 2,000-task benchmark) would cost
    /// more than looking their directories up. A file without an entry is hashed, as after any
    /// miss.
    pub fn stat_cache_of<'p>(
        &self,
        paths: impl IntoIterator<Item = &'p Path>,
    ) -> Result<&StatCache, Error> {
        if let Some(cache) = self.stat_cache.get() {
            return Ok(cache);
        }
        let mut dirs: Vec<&[u8]> = paths
            .into_iter()
            .map(|path| stat_rows::split(path.as_os_str().as_encoded_bytes()).0)
            .collect();
        dirs.sort_unstable();
        dirs.dedup();
        let entries = self.with_conn(|conn| {
            let mut statement =
                conn.prepare_cached("SELECT entries FROM stat_dirs WHERE dir = ?1")?;
            let mut entries = crate::stat_cache::Entries::default();
            for dir in &dirs {
                let mut rows = statement.query([dir])?;
                while let Some(row) = rows.next()? {
                    add_stat_row(&mut entries, dir, row.get_ref(0)?);
                }
            }
            Ok(entries)
        })?;
        Ok(self
            .stat_cache
            .get_or_init(|| StatCache::from_keyed(entries)))
    }

    /// Every stat-cache entry, read without an intermediate copy of the rows (40,000 entries
    /// in 2,000 rows on a no-op run of the benchmark).
    fn load_stat_entries(&self) -> Result<crate::stat_cache::Entries, Error> {
        self.with_conn(|conn| Self::read_stat_entries(conn))
    }

    fn read_stat_entries(conn: &Connection) -> rusqlite::Result<crate::stat_cache::Entries> {
        let mut statement = conn.prepare("SELECT dir, entries FROM stat_dirs")?;
        let mut entries = crate::stat_cache::Entries::default();
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            if let Ok(dir) = row.get_ref(0)?.as_blob() {
                add_stat_row(&mut entries, dir, row.get_ref(1)?);
            }
        }
        Ok(entries)
    }

    /// Writes the stat-cache entries recorded since the last flush, in one transaction;
    /// returns how many. Each directory's row is read, the new entries merged in and the row
    /// written back. Also writes the deferred cache usage (`flush_usage`). Call it once at the
    /// end of a run.
    pub fn flush_stat_cache(&self) -> Result<usize, Error> {
        let usage = self.flush_usage();
        let Some(cache) = self.stat_cache.get() else {
            return usage.map(|()| 0);
        };
        let dirty = cache.take_dirty();
        if dirty.is_empty() {
            return usage.map(|()| 0);
        }
        // By directory, then name: a path's bytes sort a directory's files apart whenever a
        // subdirectory's name falls between theirs.
        let mut files: Vec<(&[u8], &[u8], StatEntry)> = dirty
            .iter()
            .map(|(path, entry)| {
                let (dir, name) = stat_rows::split(path.as_os_str().as_encoded_bytes());
                (dir, name, *entry)
            })
            .collect();
        files.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        let written = self.with_conn(|conn| {
            let tx = conn.transaction()?;
            {
                let mut read = tx.prepare("SELECT entries FROM stat_dirs WHERE dir = ?1")?;
                let mut write =
                    tx.prepare("INSERT OR REPLACE INTO stat_dirs (dir, entries) VALUES (?1, ?2)")?;
                let mut changed = Vec::new();
                for chunk in files.chunk_by(|a, b| a.0 == b.0) {
                    let dir = chunk[0].0;
                    changed.clear();
                    changed.extend(chunk.iter().map(|&(_, name, entry)| (name, entry)));
                    let stored: Option<Vec<u8>> = read
                        .query_row([dir], |row| row.get(0))
                        .optional()?
                        .flatten();
                    let stored = stored.as_deref().and_then(stat_rows::decode);
                    let row = stat_rows::merge(stored.unwrap_or_default(), &changed);
                    write.execute(params![dir, stat_rows::encode(&row)])?;
                }
            }
            tx.commit()?;
            Ok(files.len())
        })?;
        usage.map(|()| written)
    }

    /// Deletes the stat-cache entries of files that no longer exist (and rows that do not
    /// decode); returns how many entries. The files are looked at outside the transaction;
    /// in it each row is read again and only the names found gone leave it, so entries
    /// another process saved meanwhile stay.
    fn prune_stat_cache(&self) -> Result<u64, Error> {
        let rows: Vec<(Vec<u8>, Option<Vec<u8>>)> = self.with_conn(|conn| {
            let mut statement = conn.prepare("SELECT dir, entries FROM stat_dirs")?;
            statement
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
                .and_then(|rows| rows.collect())
        })?;
        // Per row: the names of its files that are gone (none, for a row that does not decode:
        // it goes whole).
        let mut gone: Vec<(&[u8], HashSet<&[u8]>)> = Vec::new();
        for (dir, blob) in &rows {
            let Some(files) = blob.as_deref().and_then(stat_rows::decode) else {
                gone.push((dir, HashSet::new()));
                continue;
            };
            let names: HashSet<&[u8]> = files
                .into_iter()
                .map(|(name, _)| name)
                .filter(|name| {
                    let path = stat_rows::join(dir, name);
                    let path = Path::new(std::ffi::OsStr::from_bytes(&path));
                    matches!(fs::symlink_metadata(path), Err(e) if e.kind() == io::ErrorKind::NotFound)
                })
                .collect();
            if !names.is_empty() {
                gone.push((dir, names));
            }
        }
        if gone.is_empty() {
            return Ok(0);
        }
        self.with_conn(|conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let mut removed = 0u64;
            for (dir, names) in &gone {
                let stored: Option<Option<Vec<u8>>> = tx
                    .query_row(
                        "SELECT entries FROM stat_dirs WHERE dir = ?1",
                        [dir],
                        |row| row.get(0),
                    )
                    .optional()?;
                let Some(stored) = stored else { continue };
                let files = stored.as_deref().and_then(stat_rows::decode);
                let kept: Vec<(&[u8], StatEntry)> = files
                    .iter()
                    .flatten()
                    .filter(|(name, _)| !names.contains(name))
                    .copied()
                    .collect();
                removed += (files.as_ref().map_or(0, Vec::len) - kept.len()) as u64;
                if kept.is_empty() {
                    tx.execute("DELETE FROM stat_dirs WHERE dir = ?1", params![dir])?;
                } else if files.as_ref().is_some_and(|files| kept.len() < files.len()) {
                    tx.execute(
                        "UPDATE stat_dirs SET entries = ?2 WHERE dir = ?1",
                        params![dir, stat_rows::encode(&kept)],
                    )?;
                }
            }
            tx.commit()?;
            Ok(removed)
        })
    }

    // ── locks ────────────────────────────────────────────────────────────────────────────────

    /// Locks `key` against other clab processes and threads, blocking until it is free.
    pub fn lock_key(&self, key: &str) -> Result<KeyLock, Error> {
        KeyLock::acquire(&self.dir.join("locks"), key, || {})
    }

    /// Like `lock_key`, but calls `on_wait` once if the key is held by someone else (so the
    /// caller can report "waiting for another clab") before blocking.
    pub fn lock_key_with(&self, key: &str, on_wait: impl FnOnce()) -> Result<KeyLock, Error> {
        KeyLock::acquire(&self.dir.join("locks"), key, on_wait)
    }

    /// The lock of `key` if it is free right now; `None` if another holder has it.
    pub fn try_lock_key(&self, key: &str) -> Result<Option<KeyLock>, Error> {
        KeyLock::try_acquire(&self.dir.join("locks"), key)
    }

    // ── maintenance ──────────────────────────────────────────────────────────────────────────

    /// Entry count, CAS size, database size and hit rate.
    pub fn stats(&self) -> Result<StoreStats, Error> {
        self.verify()?;
        let blobs = self.cas.list()?;
        self.flush_usage()?;
        let (entries, hits, misses, remote_hits) = self.with_conn(|conn| {
            let entries: i64 = conn.query_row("SELECT count(*) FROM results", [], |r| r.get(0))?;
            let counter = |name: &str| -> rusqlite::Result<u64> {
                let value: Option<i64> = conn
                    .query_row(
                        "SELECT value FROM counters WHERE name = ?1",
                        params![name],
                        |r| r.get(0),
                    )
                    .optional()?;
                Ok(value.unwrap_or(0).max(0) as u64)
            };
            let remote_hits = counter("remote_hits")?;
            // Every remote hit was first a miss here.
            let misses = counter("misses")?.saturating_sub(remote_hits);
            Ok((entries, counter("hits")? + remote_hits, misses, remote_hits))
        })?;
        let db_bytes = ["", "-wal"]
            .iter()
            .filter_map(|suffix| fs::metadata(self.dir.join(format!("cache.db{suffix}"))).ok())
            .map(|m| m.len())
            .sum();
        Ok(StoreStats {
            entries: entries.max(0) as u64,
            blobs: blobs.len() as u64,
            blob_bytes: blobs.iter().map(|b| b.size).sum(),
            db_bytes,
            hits,
            misses,
            remote_hits,
        })
    }

    /// Removes every result, manifest, stat-cache entry, counter and blob. Run history and the
    /// LLM call log are kept: they are records, not cache.
    pub fn clean(&self) -> Result<PruneReport, Error> {
        self.verify()?;
        self.flush_usage()?;
        self.forget_preloaded();
        self.forget_snapshots();
        let blobs = self.cas.list()?;
        let entries = self.with_conn(|conn| {
            let tx = conn.transaction()?;
            let entries = tx.execute("DELETE FROM results", [])?;
            tx.execute_batch(
                "DELETE FROM manifests; DELETE FROM input_sets; DELETE FROM stat_dirs;
                 DELETE FROM counters;",
            )?;
            tx.commit()?;
            Ok(entries)
        })?;
        self.input_sets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        if let Some(cache) = self.stat_cache.get() {
            cache.clear();
        }
        match fs::remove_dir_all(self.cas.root()) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(Error::io("remove", self.cas.root(), source)),
        }
        Ok(PruneReport {
            entries: entries as u64,
            blobs: blobs.len() as u64,
            freed_bytes: blobs.iter().map(|b| b.size).sum(),
            remaining_bytes: 0,
            stat_entries: 0,
            temp_files: 0,
        })
    }

    /// Shrinks the CAS to at most `max_bytes`: removes results least recently used first, then
    /// every blob no result references. Blobs and temp files younger than the grace period
    /// (`BLOB_GRACE`) are kept, since a concurrent writer may be about to reference them.
    pub fn prune(&self, max_bytes: u64) -> Result<PruneReport, Error> {
        self.verify()?;
        self.flush_usage()?;
        self.forget_preloaded();
        self.forget_snapshots();
        let cutoff = SystemTime::now()
            .checked_sub(self.blob_grace)
            .unwrap_or(UNIX_EPOCH);
        let blobs: HashMap<Digest, (u64, bool)> = self
            .cas
            .list()?
            .into_iter()
            .map(|b| (b.digest, (b.size, b.modified < cutoff)))
            .collect();
        let rows = self.with_conn(|conn| {
            let mut statement = conn.prepare(
                "SELECT key, outputs, log_hash FROM results ORDER BY last_used_ms, created_ms, key",
            )?;
            statement
                .query_map([], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, Option<String>>(2)?,
                    ))
                })
                .and_then(|rows| rows.collect::<rusqlite::Result<Vec<_>>>())
        })?;
        let mut referenced: Vec<(String, BTreeSet<Digest>)> = Vec::new();
        let mut refs: HashMap<Digest, usize> = HashMap::new();
        // Rows this build cannot decode are misses to `load_result`: removed here too.
        let mut undecodable = Vec::new();
        for (key, outputs, log) in rows {
            let Ok(outputs) = serde_json::from_str::<Vec<OutputEntry>>(&outputs) else {
                undecodable.push(key);
                continue;
            };
            let digests: BTreeSet<Digest> = outputs
                .iter()
                .map(|o| o.hash)
                .chain(log.as_deref().and_then(Digest::from_hex))
                .collect();
            for d in &digests {
                *refs.entry(*d).or_default() += 1;
            }
            referenced.push((key, digests));
        }

        let mut total: u64 = blobs.values().map(|(size, _)| size).sum();
        let mut doomed: Vec<Digest> = Vec::new();
        let free = |digest: &Digest, total: &mut u64, doomed: &mut Vec<Digest>| {
            if let Some((size, true)) = blobs.get(digest) {
                *total -= size;
                doomed.push(*digest);
            }
        };
        for digest in blobs.keys() {
            if !refs.contains_key(digest) {
                free(digest, &mut total, &mut doomed);
            }
        }
        let mut removed_keys = Vec::new();
        for (key, digests) in &referenced {
            if total <= max_bytes {
                break;
            }
            removed_keys.push(key.clone());
            for d in digests {
                if let Some(count) = refs.get_mut(d) {
                    *count -= 1;
                    if *count == 0 {
                        free(d, &mut total, &mut doomed);
                    }
                }
            }
        }
        self.with_conn(|conn| {
            let tx = conn.transaction()?;
            for key in removed_keys.iter().chain(&undecodable) {
                tx.execute("DELETE FROM results WHERE key = ?1", params![key])?;
            }
            // Input sets no manifest refers to any more.
            tx.execute(
                "DELETE FROM input_sets WHERE digest NOT IN
                 (SELECT set_digest FROM
                    (SELECT CASE WHEN json_valid(json)
                                 THEN json_extract(json, '$.input_set') END AS set_digest
                     FROM manifests)
                  WHERE set_digest IS NOT NULL)",
                [],
            )?;
            tx.commit()
        })?;
        let mut report = PruneReport {
            entries: (removed_keys.len() + undecodable.len()) as u64,
            ..PruneReport::default()
        };
        self.cas.remove_all(&doomed.iter().copied().collect())?;
        for digest in &doomed {
            report.blobs += 1;
            report.freed_bytes += blobs.get(digest).map_or(0, |(size, _)| *size);
        }
        // Temp files of killed writers are counted apart: counted as blobs without their
        // size they made `1 blobs (0 B)` (issue 18).
        for temp in self.cas.stale_temp_files(cutoff)? {
            let size = fs::symlink_metadata(&temp).map_or(0, |m| m.len());
            if fs::remove_file(&temp).is_ok() {
                report.temp_files += 1;
                report.freed_bytes += size;
            }
        }
        report.stat_entries = self.prune_stat_cache()?;
        report.remaining_bytes = total;
        Ok(report)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // Best effort: keep the hashing work of a run that forgot to flush. Errors are
        // reported only by an explicit `flush_stat_cache`.
        let _ = self.flush_stat_cache();
    }
}

/// Whether `abs` already holds `output` (hash via the stat cache, and mode).
fn output_is_current(stat_cache: &StatCache, abs: &Path, output: &OutputEntry) -> bool {
    let started_ns = now_ns();
    let Ok(meta) = fs::symlink_metadata(abs) else {
        return false;
    };
    if !meta.is_file() || meta.permissions().mode() & 0o7777 != output.mode {
        return false;
    }
    let stat = FileStat::from_metadata(&meta);
    matches!(stat_cache.hash_stated(abs, stat, started_ns), Ok((hash, _)) if hash == output.hash)
}

/// The canonical project root: stat-cache keys must be absolute and spelled one way.
/// A `results` row in the column order `load_result` selects.
fn result_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ResultRow> {
    Ok((
        row.get(0)?,
        row.get(1)?,
        row.get(2)?,
        row.get(3)?,
        row.get(4)?,
        row.get(5)?,
        row.get(6)?,
    ))
}

/// Resolved once per process and root: every cache hit asks.
fn absolute_root(root: &Path) -> Result<PathBuf, Error> {
    static RESOLVED: Mutex<Option<(PathBuf, PathBuf)>> = Mutex::new(None);
    let mut resolved = RESOLVED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((given, canonical)) = &*resolved
        && given == root
    {
        return Ok(canonical.clone());
    }
    let canonical = fs::canonicalize(root).map_err(|source| Error::io("resolve", root, source))?;
    *resolved = Some((root.to_owned(), canonical.clone()));
    Ok(canonical)
}

/// Checks that `rel` stays inside the root and returns it with `/` separators.
fn normalize_rel(rel: &str) -> Result<String, Error> {
    let mut parts = Vec::new();
    for component in Path::new(rel).components() {
        match component {
            Component::Normal(part) => match part.to_str() {
                Some(part) => parts.push(part),
                None => {
                    return Err(Error::OutsideRoot {
                        path: rel.to_owned(),
                    });
                }
            },
            Component::CurDir => {}
            _ => {
                return Err(Error::OutsideRoot {
                    path: rel.to_owned(),
                });
            }
        }
    }
    if parts.is_empty() {
        return Err(Error::OutsideRoot {
            path: rel.to_owned(),
        });
    }
    Ok(parts.join("/"))
}

fn decode_json<T: serde::de::DeserializeOwned>(what: &'static str, text: &str) -> Result<T, Error> {
    serde_json::from_str(text).map_err(|source| Error::Json { what, source })
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A row of `results`, ready to insert.
struct NewResult {
    key: String,
    task: String,
    status: String,
    duration_ms: i64,
    outputs: String,
    log: Option<String>,
    size: i64,
}

fn insert_result(conn: &Connection, row: &NewResult) -> rusqlite::Result<usize> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO results
         (key, task, status, duration_ms, outputs, log_hash, created_ms, last_used_ms, size)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8)",
    )?
    .execute(params![
        row.key,
        row.task,
        row.status,
        row.duration_ms,
        row.outputs,
        row.log,
        now_ms(),
        row.size,
    ])
}

fn insert_manifest(
    conn: &Connection,
    task: &str,
    key: &str,
    json: &str,
) -> rusqlite::Result<usize> {
    conn.prepare_cached(
        "INSERT OR REPLACE INTO manifests (task, key, json, updated_ms) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![task, key, json, now_ms()])
}

/// Adds the entries of the `stat_dirs` row of `dir` to `entries`; a row that does not decode
/// adds nothing (its files are hashed again: a miss).
fn add_stat_row(
    entries: &mut crate::stat_cache::Entries,
    dir: &[u8],
    blob: rusqlite::types::ValueRef<'_>,
) {
    let Some(files) = blob.as_blob().ok().and_then(stat_rows::decode) else {
        return;
    };
    entries.reserve(files.len());
    for (name, entry) in files {
        entries.insert(stat_rows::join(dir, name), entry);
    }
}

/// Inserts `run` into `runs` with its `columns` ([`run_columns`]) and, for a record from the
/// history journal, its id: an id already imported is not inserted again.
fn insert_run(
    conn: &Connection,
    run: &RunRecord,
    (targets, extra): &(String, Option<String>),
    journal: Option<&str>,
) -> rusqlite::Result<usize> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO runs
            (started_ms, targets, ran, cached, failed, duration_ms, extra, journal)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        run.started_ms,
        targets,
        run.ran,
        run.cached,
        run.failed,
        run.duration_ms as i64,
        extra,
        journal
    ])
}

/// A run's `targets` and `extra` columns, as JSON text.
fn run_columns(run: &RunRecord) -> Result<(String, Option<String>), Error> {
    let targets = serde_json::to_string(&run.targets).map_err(|source| Error::Json {
        what: "run targets",
        source,
    })?;
    Ok((targets, run.extra.as_ref().map(|v| v.to_string())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path) -> Store {
        let opened = Store::open(dir.join(".clab")).unwrap();
        assert!(opened.warnings.is_empty());
        opened.store
    }

    fn write(root: &Path, rel: &str, text: &str, mode: u32) {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, text).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn backdate(path: &Path) {
        let file = fs::File::options().append(true).open(path).unwrap();
        file.set_modified(SystemTime::now() - Duration::from_secs(3600))
            .unwrap();
    }

    /// Hashes `files` (relative to `root`) through `cache`, as planning does; the number hashed.
    fn hash_all(root: &Path, files: &[&str], cache: &StatCache) -> usize {
        let paths: Vec<PathBuf> = files.iter().map(|f| root.join(f)).collect();
        let paths: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
        let hashed = cache.hash_files(&paths);
        assert!(hashed.iter().all(Result::is_ok), "{hashed:?}");
        hashed.len()
    }

    #[test]
    fn cache_dir_defaults_to_dot_clab() {
        let root = Path::new("/p");
        assert_eq!(cache_dir(root, None), Path::new("/p/.clab"));
        assert_eq!(cache_dir(root, Some(Path::new(""))), Path::new("/p/.clab"));
        assert_eq!(
            cache_dir(root, Some(Path::new("/ci/cache"))),
            Path::new("/ci/cache")
        );
        assert_eq!(
            cache_dir(root, Some(Path::new("tmp/c"))),
            Path::new("/p/tmp/c")
        );
    }

    #[test]
    fn store_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Store>();
    }

    #[test]
    fn output_round_trip_keeps_content_and_mode() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        write(dir.path(), "bin/tool", "#!/bin/sh\necho hi\n", 0o755);
        write(dir.path(), "out/data.txt", "data", 0o640);
        let tool = store.store_output(dir.path(), "bin/tool").unwrap();
        let data = store.store_output(dir.path(), "./out/data.txt").unwrap();
        assert_eq!(tool.mode, 0o755);
        assert_eq!(data.mode, 0o640);
        assert_eq!(data.path, "out/data.txt");
        assert_eq!(data.hash, Digest::of_bytes(b"data"));
        let log = store.put_log(b"building...\n").unwrap();
        let result = CachedResult::new(
            "build",
            "ok",
            42,
            vec![tool.clone(), data.clone()],
            Some(log),
        );
        store.save_result("k1", &result).unwrap();

        fs::remove_dir_all(dir.path().join("bin")).unwrap();
        fs::remove_dir_all(dir.path().join("out")).unwrap();
        let loaded = store.load_result("k1").unwrap().unwrap();
        assert_eq!(loaded.outputs, vec![tool, data]);
        assert_eq!(loaded.duration_ms, 42);
        let report = store.restore_outputs(dir.path(), &loaded).unwrap();
        assert_eq!(report.restored, ["bin/tool", "out/data.txt"]);
        let meta = fs::metadata(dir.path().join("bin/tool")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o755);
        assert_eq!(
            fs::read_to_string(dir.path().join("bin/tool")).unwrap(),
            "#!/bin/sh\necho hi\n"
        );
        assert_eq!(store.read_log(&log).unwrap(), b"building...\n");
    }

    #[test]
    fn restore_leaves_correct_file_alone_and_fixes_changed_and_missing() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        for name in ["same", "changed", "missing"] {
            write(dir.path(), name, name, 0o644);
            backdate(&dir.path().join(name));
        }
        let outputs = ["same", "changed", "missing"]
            .iter()
            .map(|n| store.store_output(dir.path(), n).unwrap())
            .collect();
        let result = CachedResult::new("t", "ok", 1, outputs, None);
        store.save_result("k", &result).unwrap();
        write(dir.path(), "changed", "CHANGED", 0o644);
        fs::remove_file(dir.path().join("missing")).unwrap();
        let same = dir.path().join("same");
        let inode_before = fs::metadata(&same).unwrap().ino_for_test();
        let hashed_before = store.stat_cache().unwrap().counts().hashed;

        let report = store.restore_outputs(dir.path(), &result).unwrap();
        assert_eq!(report.kept, ["same"]);
        assert_eq!(report.restored, ["changed", "missing"]);
        // Untouched: same inode, and not even read again (the stat cache knew it).
        assert_eq!(fs::metadata(&same).unwrap().ino_for_test(), inode_before);
        assert_eq!(
            fs::read_to_string(dir.path().join("changed")).unwrap(),
            "changed"
        );
        assert_eq!(
            fs::read_to_string(dir.path().join("missing")).unwrap(),
            "missing"
        );
        // Only `changed` was read to find it differs.
        assert_eq!(
            store.stat_cache().unwrap().counts().hashed,
            hashed_before + 1
        );
        // No restore temp files remain.
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(".clab-restore-")
            })
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn restore_outputs_from_writes_downloaded_blobs_from_memory_and_the_rest_from_the_cas() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        write(dir.path(), "out/local.txt", "local", 0o644);
        let local = store.store_output(dir.path(), "out/local.txt").unwrap();
        // A downloaded output: verified in memory, its blob not (yet) in the CAS — so the
        // restore can only have written it from memory.
        let digest = Digest::of_bytes(b"downloaded");
        let blob = VerifiedBlob::verify(bytes::Bytes::from_static(b"downloaded"), &digest).unwrap();
        let remote = OutputEntry {
            path: "out/remote.bin".into(),
            hash: digest,
            mode: 0o755,
            size: 10,
        };
        let result = CachedResult::new("t", "ok", 1, vec![local, remote], None);
        fs::remove_file(dir.path().join("out/local.txt")).unwrap();
        let downloaded = HashMap::from([(digest, blob)]);

        let report = store
            .restore_outputs_from(dir.path(), &result, &downloaded)
            .unwrap();
        assert_eq!(report.restored, ["out/local.txt", "out/remote.bin"]);
        assert_eq!(
            fs::read(dir.path().join("out/local.txt")).unwrap(),
            b"local"
        );
        let path = dir.path().join("out/remote.bin");
        assert_eq!(fs::read(&path).unwrap(), b"downloaded");
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o7777,
            0o755
        );
        assert!(!store.cas().contains(&digest));
        // Recorded in the stat cache as restored: the next restore keeps it untouched.
        let again = store
            .restore_outputs_from(dir.path(), &result, &HashMap::new())
            .unwrap();
        assert_eq!(again.kept, ["out/local.txt", "out/remote.bin"]);
    }

    trait InoForTest {
        fn ino_for_test(&self) -> u64;
    }
    impl InoForTest for fs::Metadata {
        fn ino_for_test(&self) -> u64 {
            std::os::unix::fs::MetadataExt::ino(self)
        }
    }

    #[test]
    fn restore_refuses_a_corrupt_blob_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        write(dir.path(), "out.txt", "good", 0o644);
        let entry = store.store_output(dir.path(), "out.txt").unwrap();
        let result = CachedResult::new("t", "ok", 1, vec![entry.clone()], None);
        fs::write(store.cas().path_of(&entry.hash), "evil").unwrap();
        fs::remove_file(dir.path().join("out.txt")).unwrap();
        let err = store.restore_outputs(dir.path(), &result).unwrap_err();
        assert!(matches!(err, Error::CorruptBlob { .. }), "{err:?}");
        assert!(!dir.path().join("out.txt").exists());
    }

    /// An output whose blob was never stored.
    fn ghost() -> OutputEntry {
        OutputEntry {
            path: "a".into(),
            hash: Digest::of_bytes(b"never stored"),
            size: 12,
            mode: 0o644,
        }
    }

    #[test]
    fn a_result_and_its_manifest_are_saved_together_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let missing = CachedResult::new("t", "ok", 1, vec![ghost()], None);
        assert!(store.save_result_and_manifest("k", &missing, "{}").is_err());
        assert!(store.load_manifest("t").unwrap().is_none());

        let log = store.put_log(b"log").unwrap();
        let result = CachedResult::new("t", "ok", 1, vec![], Some(log));
        store
            .save_result_and_manifest("k", &result, "{\"a\":1}")
            .unwrap();
        let loaded = store.load_result("k").unwrap().unwrap();
        assert_eq!((loaded.task, loaded.log), ("t".to_owned(), Some(log)));
        let manifest = store.load_manifest("t").unwrap().unwrap();
        assert_eq!(
            (manifest.key.as_str(), manifest.json.as_str()),
            ("k", "{\"a\":1}")
        );
    }

    #[test]
    fn peek_result_counts_nothing_and_deletes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let log = store.put_log(b"log").unwrap();
        store
            .save_result("k", &CachedResult::new("t", "ok", 1, vec![], Some(log)))
            .unwrap();
        assert!(store.peek_result("k").unwrap().is_some());
        assert!(store.peek_result("other").unwrap().is_none());
        let stats = store.stats().unwrap();
        assert_eq!((stats.hits, stats.misses), (0, 0));
        // A result whose blob vanished is not restorable, and stays for `run` to forget.
        store.cas().remove(&log).unwrap();
        assert!(store.peek_result("k").unwrap().is_none());
        assert_eq!(store.stats().unwrap().entries, 1);
    }

    #[test]
    fn save_result_requires_blobs_and_load_counts_hits() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let err = store
            .save_result("k", &CachedResult::new("t", "ok", 1, vec![ghost()], None))
            .unwrap_err();
        assert!(matches!(err, Error::MissingBlob { .. }), "{err:?}");
        assert!(store.load_result("k").unwrap().is_none());

        let log = store.put_log(b"log").unwrap();
        store
            .save_result("k", &CachedResult::new("t", "ok", 1, vec![], Some(log)))
            .unwrap();
        assert!(store.load_result("k").unwrap().is_some());
        let stats = store.stats().unwrap();
        assert_eq!((stats.entries, stats.hits, stats.misses), (1, 1, 1));
        assert_eq!(stats.hit_rate(), Some(0.5));
        assert_eq!(stats.blobs, 1);
        assert_eq!(stats.blob_bytes, 3);

        // A result whose blob vanished is a miss, and is forgotten.
        store.cas().remove(&log).unwrap();
        assert!(store.load_result("k").unwrap().is_none());
        assert_eq!(store.stats().unwrap().entries, 0);
    }

    #[test]
    fn undecodable_row_is_a_miss_and_is_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        store
            .conn()
            .execute(
                "INSERT INTO results VALUES ('bad', 't', 'ok', 1, 'not json', NULL, 0, 0, 0)",
                [],
            )
            .unwrap();
        assert!(store.load_result("bad").unwrap().is_none());
        let stats = store.stats().unwrap();
        assert_eq!((stats.entries, stats.misses), (0, 1));
    }

    #[test]
    fn corrupt_database_is_recovered_with_one_warning() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join(".clab");
        {
            let store = Store::open(&cache).unwrap().store;
            store.save_manifest("t", "k", "{}").unwrap();
        }
        fs::write(cache.join("cache.db"), vec![0xA5u8; 8192]).unwrap();
        let opened = Store::open(&cache).unwrap();
        assert_eq!(opened.warnings.len(), 1);
        let message = opened.warnings[0].to_string();
        assert!(message.contains("was corrupt"), "{message}");
        assert!(message.contains("cache.db.corrupt-"), "{message}");
        // A fresh, working database.
        assert!(opened.store.load_manifest("t").unwrap().is_none());
        opened.store.save_manifest("t", "k2", "{\"a\":1}").unwrap();
        let saved = opened.store.load_manifest("t").unwrap().unwrap();
        assert_eq!(
            (saved.key.as_str(), saved.json.as_str()),
            ("k2", "{\"a\":1}")
        );
        let aside = fs::read_dir(&cache)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with("cache.db.corrupt-")
            })
            .count();
        assert!(aside >= 1);
    }

    #[test]
    fn stat_cache_persists_across_opens_in_one_flush() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "src/a.txt", "a", 0o644);
        write(dir.path(), "src/b.txt", "b", 0o644);
        for f in ["src/a.txt", "src/b.txt"] {
            backdate(&dir.path().join(f));
        }
        let files = ["src/a.txt", "src/b.txt"];
        {
            let store = open(dir.path());
            let cache = store.stat_cache().unwrap();
            hash_all(dir.path(), &files, cache);
            assert_eq!(cache.counts().hashed, 2);
            assert_eq!(store.flush_stat_cache().unwrap(), 2);
            assert_eq!(store.flush_stat_cache().unwrap(), 0);
        }
        let store = open(dir.path());
        let cache = store.stat_cache().unwrap();
        assert_eq!(hash_all(dir.path(), &files, cache), 2);
        assert_eq!(cache.counts().hashed, 0, "no file is read on the warm pass");
        assert_eq!(cache.counts().reused, 2);
    }

    #[test]
    fn stat_entries_kept_by_directory_survive_partial_loads_and_prunes_issue_16() {
        let dir = tempfile::tempdir().unwrap();
        let files = ["a/x", "a/y", "a/sub/z", "b/w"];
        for f in files {
            write(dir.path(), f, f, 0o644);
            backdate(&dir.path().join(f));
        }
        {
            let store = open(dir.path());
            hash_all(dir.path(), &files, store.stat_cache().unwrap());
            assert_eq!(store.flush_stat_cache().unwrap(), 4);
        }
        // Three directories, three rows.
        let store = open(dir.path());
        let rows: i64 = store
            .with_connection(|conn| {
                conn.query_row("SELECT count(*) FROM stat_dirs", [], |r| r.get(0))
            })
            .unwrap();
        assert_eq!(rows, 3);
        // Loading the rows of `a/x` loads its directory's row: `a/y` comes with it, `b/w` not.
        let x = dir.path().join("a/x");
        let cache = store.stat_cache_of([x.as_path()]).unwrap();
        assert_eq!(cache.len(), 2);
        // A change to `a/x`, flushed from that partial cache, keeps `a/y` in the row.
        write(dir.path(), "a/x", "changed", 0o644);
        backdate(&x);
        hash_all(dir.path(), &["a/x"], cache);
        assert_eq!(cache.counts().hashed, 1);
        assert_eq!(store.flush_stat_cache().unwrap(), 1);
        drop(store);
        let store = open(dir.path());
        let cache = store.stat_cache().unwrap();
        assert_eq!(cache.len(), 4);
        assert_eq!(hash_all(dir.path(), &files, cache), 4);
        assert_eq!(
            cache.counts(),
            stat_cache::StatCounts {
                hashed: 0,
                reused: 4
            }
        );
        // A deleted file's entry goes; its directory's row keeps the others, and a row left
        // without files goes too.
        fs::remove_file(dir.path().join("a/y")).unwrap();
        fs::remove_file(dir.path().join("b/w")).unwrap();
        assert_eq!(store.prune(u64::MAX).unwrap().stat_entries, 2);
        drop(store);
        let store = open(dir.path());
        assert_eq!(store.stat_cache().unwrap().len(), 2);
        let rows: i64 = store
            .with_connection(|conn| {
                conn.query_row("SELECT count(*) FROM stat_dirs", [], |r| r.get(0))
            })
            .unwrap();
        assert_eq!(rows, 2);
    }

    #[test]
    fn the_history_journal_is_imported_once_in_order_before_new_rows() {
        let dir = tempfile::tempdir().unwrap();
        let run = |started_ms: i64| RunRecord {
            started_ms,
            targets: vec!["hi".into()],
            ran: 1,
            cached: 0,
            failed: 0,
            duration_ms: 2,
            extra: None,
        };
        let cache_dir = dir.path().join(".clab");
        let journal = cache_dir.join(history::FILE);
        history::record_pending(&cache_dir, &run(2)).unwrap();
        history::record_pending(&cache_dir, &run(1)).unwrap();
        let mut file = fs::OpenOptions::new().append(true).open(&journal).unwrap();
        std::io::Write::write_all(&mut file, b"garbage\n").unwrap();
        // A second store's import of the same lines (it committed, then died before emptying
        // the journal) must not make a second row.
        let kept = fs::read(&journal).unwrap();
        let store = open(dir.path());
        store.record_run(&run(3)).unwrap();
        assert_eq!(fs::read(&journal).unwrap(), b"", "emptied");
        fs::write(&journal, kept).unwrap();
        let runs = store.recent_runs(10).unwrap();
        assert_eq!(
            runs.iter().map(|r| r.started_ms).collect::<Vec<_>>(),
            [3, 2, 1],
            "journal rows first, oldest first, each once"
        );
        assert_eq!(
            fs::read_to_string(cache_dir.join(history::BAD_FILE)).unwrap(),
            "garbage\ngarbage\n",
            "the unreadable line is kept aside (here: read twice)"
        );
        let warnings = store.take_warnings();
        assert!(
            matches!(&warnings[..], [Warning::BadHistoryRecord { path, lines: 1 }, Warning::BadHistoryRecord { .. }] if path.ends_with(history::BAD_FILE)),
            "{warnings:?}"
        );
        assert_eq!(
            warnings[0].to_string(),
            format!(
                "1 line of the history journal is unreadable; moved to `{}` (not imported)",
                cache_dir.join(history::BAD_FILE).display()
            )
        );
    }

    #[test]
    fn manifests_runs_and_llm_calls_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        for i in 0..3 {
            store
                .record_run(&RunRecord {
                    started_ms: 1000 + i,
                    targets: vec!["test".into()],
                    ran: i as u32,
                    cached: 1,
                    failed: 0,
                    duration_ms: 50,
                    extra: (i == 2).then(|| serde_json::json!({"tests": {"passed": 3}})),
                })
                .unwrap();
        }
        let runs = store.recent_runs(2).unwrap();
        assert_eq!(
            runs.iter().map(|r| r.started_ms).collect::<Vec<_>>(),
            [1002, 1001]
        );
        assert_eq!(
            runs[0].extra,
            Some(serde_json::json!({"tests": {"passed": 3}}))
        );
        let call = LlmCall {
            task: "gen-tests[a.py]".into(),
            provider: "openai".into(),
            model: "gpt-4o-mini".into(),
            attempt: 2,
            tokens_in: Some(100),
            tokens_out: None,
            latency_ms: 830,
            queued_ms: 0,
            tries: 0,
            outcome: CallOutcome::CheckFailed,
            at_ms: 5,
        };
        store.record_llm_call(&call).unwrap();
        assert_eq!(store.llm_calls().unwrap(), vec![call]);
    }

    #[test]
    fn prune_removes_least_recently_used_first() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        store.blob_grace = Duration::ZERO;
        let shared = store.put_log(&[b's'; 100]).unwrap();
        for (key, byte, last_used) in [("a", b'a', 1), ("b", b'b', 3), ("c", b'c', 2)] {
            write(
                dir.path(),
                key,
                &String::from(byte as char).repeat(1000),
                0o644,
            );
            let out = store.store_output(dir.path(), key).unwrap();
            store
                .save_result(
                    key,
                    &CachedResult::new(key, "ok", 1, vec![out], Some(shared)),
                )
                .unwrap();
            store
                .conn()
                .execute(
                    "UPDATE results SET last_used_ms = ?2 WHERE key = ?1",
                    params![key, last_used],
                )
                .unwrap();
        }
        let orphan = store.put_log(b"orphan").unwrap();
        assert_eq!(store.stats().unwrap().blob_bytes, 3106);

        let report = store.prune(2300).unwrap();
        assert_eq!((report.entries, report.blobs), (1, 2), "a and the orphan");
        assert_eq!(report.remaining_bytes, 2100);
        assert!(!store.cas().contains(&orphan));
        let keys = |store: &Store| -> Vec<String> {
            let conn = store.conn();
            let mut s = conn
                .prepare("SELECT key FROM results ORDER BY key")
                .unwrap();
            s.query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        };
        assert_eq!(keys(&store), ["b", "c"]);

        store.prune(1200).unwrap();
        assert_eq!(keys(&store), ["b"]);
        assert!(store.cas().contains(&shared));
        assert!(store.load_result("b").unwrap().is_some());

        let report = store.prune(0).unwrap();
        assert_eq!(report.remaining_bytes, 0);
        assert!(keys(&store).is_empty());
        assert_eq!(store.stats().unwrap().blobs, 0);
    }

    #[test]
    fn temp_file_of_a_killed_writer_is_ignored_then_swept() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        let kept = store.put_log(b"complete").unwrap();
        let leftover = store.cas().root().join(".tmp-killed-writer");
        fs::write(&leftover, b"half a blo").unwrap();
        let stats = store.stats().unwrap();
        assert_eq!(
            (stats.blobs, stats.blob_bytes),
            (1, 8),
            "the temp file is not a blob"
        );
        // Young: a writer might still be alive.
        store.prune(u64::MAX).unwrap();
        assert!(leftover.exists());
        store.blob_grace = Duration::ZERO;
        store
            .save_result("k", &CachedResult::new("t", "ok", 1, vec![], Some(kept)))
            .unwrap();
        let report = store.prune(u64::MAX).unwrap();
        assert_eq!((report.entries, report.blobs, report.temp_files), (0, 0, 1));
        assert!(!leftover.exists());
        assert_eq!(store.read_log(&kept).unwrap(), b"complete");
    }

    #[test]
    fn read_ahead_results_serve_lookups_and_never_outlive_a_change() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let log = store.put_log(b"first").unwrap();
        store
            .save_result("k", &CachedResult::new("t", "ok", 7, vec![], Some(log)))
            .unwrap();
        store.save_manifest("t", "k", "{}").unwrap();
        store.save_manifest("gone", "no-such-key", "{}").unwrap();
        assert_eq!(store.preload_results().unwrap(), 1);
        // Served from the read-ahead, and the same as through SQL.
        let hit = store.load_result("k").unwrap().unwrap();
        assert_eq!((hit.duration_ms, hit.log), (7, Some(log)));
        assert!(store.load_result("other").unwrap().is_none());

        // A result saved after the read-ahead replaces the read-ahead row.
        let newer = store.put_log(b"second").unwrap();
        store
            .save_result("k", &CachedResult::new("t", "ok", 9, vec![], Some(newer)))
            .unwrap();
        assert_eq!(store.load_result("k").unwrap().unwrap().duration_ms, 9);

        // A read-ahead row whose blob is gone is a miss, and the row is deleted.
        store.preload_results().unwrap();
        fs::remove_file(store.cas().path_of(&newer)).unwrap();
        assert!(store.load_result("k").unwrap().is_none());
        assert_eq!(store.stats().unwrap().entries, 0);
        let stats = store.stats().unwrap();
        assert_eq!((stats.hits, stats.misses), (2, 2));
    }

    #[test]
    fn read_ahead_manifest_names_answer_absent_tasks_without_the_connection() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(open(dir.path()));
        store.save_manifest("old", "k1", "{}").unwrap();
        assert!(
            store.may_have_manifest("absent"),
            "no read-ahead yet: ask SQLite"
        );
        store.preload_results().unwrap();
        assert!(!store.may_have_manifest("absent") && store.may_have_manifest("old"));
        store.save_manifest("new", "k2", "{}").unwrap();
        assert!(store.may_have_manifest("new"));
        assert_eq!(store.load_manifest("old").unwrap().unwrap().key, "k1");
        assert_eq!(store.load_manifest("new").unwrap().unwrap().key, "k2");

        // While another thread holds the connection (as the stat cache's flush does), a
        // task without a manifest is still answered.
        let conn = store.conn();
        let (tx, rx) = std::sync::mpsc::channel();
        let asking = Arc::clone(&store);
        std::thread::spawn(move || {
            let _ = tx.send(asking.load_manifest("absent").map(|m| m.is_none()));
        });
        let answer = rx.recv_timeout(Duration::from_secs(10));
        drop(conn);
        assert!(matches!(answer, Ok(Ok(true))), "{answer:?}");
    }

    #[test]
    fn prune_keeps_young_blobs_and_clean_empties_everything() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let young = store.put_log(b"just written by someone").unwrap();
        let report = store.prune(0).unwrap();
        assert_eq!(report.blobs, 0);
        assert!(store.cas().contains(&young));

        store
            .save_result("k", &CachedResult::new("t", "ok", 1, vec![], Some(young)))
            .unwrap();
        store
            .record_run(&RunRecord {
                started_ms: 1,
                targets: vec![],
                ran: 0,
                cached: 0,
                failed: 0,
                duration_ms: 0,
                extra: None,
            })
            .unwrap();
        let report = store.clean().unwrap();
        assert_eq!((report.entries, report.blobs), (1, 1));
        let stats = store.stats().unwrap();
        assert_eq!((stats.entries, stats.blobs, stats.hits), (0, 0, 0));
        assert_eq!(
            store.recent_runs(10).unwrap().len(),
            1,
            "history survives clean"
        );
    }

    #[test]
    fn lock_key_excludes_another_holder_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let locks = dir.path().join(".clab/locks");
        let held = store.lock_key("deadbeef").unwrap();
        // Another holder (a second clab opens the same file the same way) cannot take it…
        assert!(KeyLock::try_acquire(&locks, "deadbeef").unwrap().is_none());
        // …while other keys stay free…
        assert!(KeyLock::try_acquire(&locks, "cafe").unwrap().is_some());
        drop(held);
        // …and can once we let go.
        assert!(KeyLock::try_acquire(&locks, "deadbeef").unwrap().is_some());
    }

    #[test]
    fn two_stores_on_one_directory_write_concurrently() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join(".clab");
        Store::open(&cache).unwrap();
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let cache = cache.clone();
                std::thread::spawn(move || {
                    // Each thread has its own connection, as a second clab process would.
                    let store = Store::open(&cache).unwrap().store;
                    for i in 0..40 {
                        let log = store.put_log(format!("log {t} {i}").as_bytes()).unwrap();
                        let key = format!("k{t}-{i}");
                        store
                            .save_result(&key, &CachedResult::new("t", "ok", 1, vec![], Some(log)))
                            .unwrap();
                        assert!(store.load_result(&key).unwrap().is_some());
                        store.save_manifest("shared", &key, "{}").unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let store = Store::open(&cache).unwrap().store;
        let stats = store.stats().unwrap();
        assert_eq!((stats.entries, stats.blobs, stats.hits), (160, 160, 160));
    }

    #[test]
    fn prune_forgets_stat_entries_of_deleted_files() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a", "a", 0o644);
        write(dir.path(), "b", "b", 0o644);
        let store = open(dir.path());
        hash_all(dir.path(), &["a", "b"], store.stat_cache().unwrap());
        store.flush_stat_cache().unwrap();
        fs::remove_file(dir.path().join("a")).unwrap();
        let report = store.prune(u64::MAX).unwrap();
        assert_eq!(report.stat_entries, 1);
        assert_eq!(
            report.to_string(),
            "removed 0 entries, 0 blobs and 1 record of a deleted file (0 B); 0 B left"
        );
        assert_eq!(store.prune(u64::MAX).unwrap().stat_entries, 0);
    }

    #[test]
    fn outputs_outside_the_root_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        for rel in ["../x", "/etc/passwd", "", "a/../../b"] {
            let err = store.store_output(dir.path(), rel).unwrap_err();
            assert!(matches!(err, Error::OutsideRoot { .. }), "{rel}: {err:?}");
        }
        let evil = CachedResult::new(
            "t",
            "ok",
            1,
            vec![OutputEntry {
                path: "../escape".into(),
                hash: store.put_log(b"x").unwrap(),
                size: 1,
                mode: 0o644,
            }],
            None,
        );
        assert!(matches!(
            store.restore_outputs(dir.path(), &evil).unwrap_err(),
            Error::OutsideRoot { .. }
        ));
    }

    /// A cache with results, manifests and 3,000 stat-cache rows (many pages of each), closed.
    fn populated_cache(cache: &Path) {
        let store = Store::open(cache).unwrap().store;
        let log = store.put_log(b"log").unwrap();
        for i in 0..300 {
            let key = format!("{i:064x}");
            store
                .save_result_and_manifest(
                    &key,
                    &CachedResult::new(format!("t{i}"), "ok", 1, vec![], Some(log)),
                    "{}",
                )
                .unwrap();
        }
        store
            .with_connection(|conn| {
                // Rows that do not decode (a loader skips them), as many pages as 3,000 entries.
                let blob = vec![7u8; 72];
                for i in 0..3000 {
                    conn.execute(
                        "INSERT INTO stat_dirs VALUES (?1, ?2)",
                        params![format!("/some/long/path/number/{i}/"), blob],
                    )?;
                }
                Ok(())
            })
            .unwrap();
        store.finish_writes();
    }

    /// The first page of the table or index `name`.
    fn root_page(cache: &Path, name: &str) -> u64 {
        let conn = Connection::open(cache.join("cache.db")).unwrap();
        conn.query_row(
            "SELECT rootpage FROM sqlite_master WHERE name = ?1",
            params![name],
            |row| row.get::<_, i64>(0),
        )
        .unwrap() as u64
    }

    /// Everything a run does with the store; the warnings it gave.
    fn use_like_a_run(store: &Store) -> Vec<Warning> {
        store.stat_cache().unwrap();
        let _ = store.preload_results();
        store.load_result(&format!("{:064x}", 7)).unwrap();
        store.load_manifest("t7").unwrap();
        let log = store.put_log(b"new log").unwrap();
        store
            .save_result_and_manifest(
                "fresh",
                &CachedResult::new("t-new", "ok", 1, vec![], Some(log)),
                "{}",
            )
            .unwrap();
        store.flush_stat_cache().unwrap();
        store.recent_runs(5).unwrap();
        assert!(store.load_result("fresh").unwrap().is_some());
        // Damage no query of the run met is found by the maintenance commands' check.
        store.stats().unwrap();
        store.take_warnings()
    }

    #[test]
    fn a_damaged_cache_db_heals_once_and_the_next_open_is_clean_issue_18() {
        let page = |cache: &Path, name: &str| (root_page(cache, name) - 1) * 4096;
        /// Where to write which bytes into a closed `cache.db`.
        type Damage = Box<dyn Fn(&Path) -> (u64, Vec<u8>)>;
        let damages: Vec<(&str, Damage)> = vec![
            (
                "header bytes 44-47",
                Box::new(|_: &Path| (44, vec![0xff; 4])),
            ),
            (
                "a stat-cache page",
                Box::new(move |cache: &Path| (page(cache, "stat_dirs") + 100, vec![0xa5; 3000])),
            ),
            (
                "a page of the results index",
                Box::new(move |cache: &Path| {
                    (page(cache, "sqlite_autoindex_results_1"), vec![0x5a; 4096])
                }),
            ),
            (
                "a page of the last-used index",
                Box::new(move |cache: &Path| {
                    (page(cache, "results_by_last_used") + 8, vec![0x01; 200])
                }),
            ),
            (
                "the schema page",
                Box::new(|_: &Path| (120, vec![0x33; 1000])),
            ),
            (
                "the magic header",
                Box::new(|_: &Path| (0, b"not an sqlite file at all".to_vec())),
            ),
        ];
        for (what, damage) in &damages {
            let dir = tempfile::tempdir().unwrap();
            let cache = dir.path().join(".clab");
            populated_cache(&cache);
            let (offset, bytes) = damage(&cache);
            {
                use std::io::{Seek, SeekFrom, Write};
                let mut file = fs::File::options()
                    .write(true)
                    .open(cache.join("cache.db"))
                    .unwrap();
                file.seek(SeekFrom::Start(offset)).unwrap();
                file.write_all(&bytes).unwrap();
            }
            let opened = Store::open(&cache).unwrap_or_else(|e| panic!("{what}: {e}"));
            let mut warnings = opened.warnings;
            warnings.extend(use_like_a_run(&opened.store));
            assert_eq!(warnings.len(), 1, "{what}: {warnings:?}");
            assert!(
                matches!(&warnings[0], Warning::CorruptDatabase { .. }),
                "{what}: {warnings:?}"
            );
            drop(opened.store);
            let aside = fs::read_dir(&cache)
                .unwrap()
                .filter_map(Result::ok)
                .filter(|e| {
                    e.file_name()
                        .to_string_lossy()
                        .starts_with("cache.db.corrupt-")
                })
                .count();
            assert!(aside >= 1, "{what}: nothing moved aside");
            // The next open is clean and keeps what the healed run saved.
            let opened = Store::open(&cache).unwrap();
            assert!(opened.warnings.is_empty(), "{what}: {:?}", opened.warnings);
            assert!(use_like_a_run(&opened.store).is_empty(), "{what}");
            let check: String = opened
                .store
                .with_connection(|conn| conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)))
                .unwrap();
            assert_eq!(check, "ok", "{what}");
        }
    }

    #[test]
    fn cache_clean_works_on_a_damaged_database_issue_18() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join(".clab");
        populated_cache(&cache);
        {
            use std::io::{Seek, SeekFrom, Write};
            let offset = (root_page(&cache, "stat_dirs") - 1) * 4096;
            let mut file = fs::File::options()
                .write(true)
                .open(cache.join("cache.db"))
                .unwrap();
            file.seek(SeekFrom::Start(offset)).unwrap();
            file.write_all(&[0xa5; 4096]).unwrap();
        }
        let opened = Store::open(&cache).unwrap();
        opened.store.clean().unwrap();
        let mut warnings = opened.warnings;
        warnings.extend(opened.store.take_warnings());
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(opened.store.stats().unwrap().entries, 0);
    }

    #[test]
    fn prune_reports_temp_files_apart_and_words_plurals_issue_18() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = open(dir.path());
        store.blob_grace = Duration::ZERO;
        // One unreferenced blob of 5 bytes and a killed writer's 7-byte temp file.
        store.put_log(b"12345").unwrap();
        let temp = store
            .cas()
            .root()
            .join(format!("{}killed", cas::TEMP_PREFIX));
        fs::write(&temp, b"1234567").unwrap();
        backdate(&temp);
        std::thread::sleep(Duration::from_millis(5));
        let report = store.prune(u64::MAX).unwrap();
        assert_eq!((report.blobs, report.temp_files), (1, 1));
        assert_eq!(report.freed_bytes, 12);
        assert_eq!(
            report.to_string(),
            "removed 0 entries, 1 blob and 1 temp file (12 B); 0 B left"
        );
        let report = store.prune(u64::MAX).unwrap();
        assert_eq!(
            report.to_string(),
            "removed 0 entries and 0 blobs (0 B); 0 B left"
        );
    }

    #[test]
    fn save_results_saves_each_in_order_and_refuses_one_without_its_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let store = open(root);
        write(root, "out/a.txt", "alpha", 0o644);
        let entry = store.store_output(root, "out/a.txt").unwrap();
        let good = CachedResult::new("a", "ok", 1, vec![entry.clone()], None);
        let mut lost = entry.clone();
        lost.hash = Digest::of_bytes(b"never stored");
        let bad = CachedResult::new("b", "ok", 1, vec![lost], None);
        let saved = store.save_results(&[("k1", &good), ("k2", &bad), ("k3", &good)]);
        assert!(saved[0].is_ok() && saved[2].is_ok(), "{saved:?}");
        assert!(
            matches!(saved[1], Err(Error::MissingBlob { .. })),
            "{saved:?}"
        );
        assert_eq!(store.load_result("k1").unwrap().unwrap().outputs, [entry]);
        assert!(store.load_result("k2").unwrap().is_none());
        assert!(store.load_result("k3").unwrap().is_some());
        assert!(store.save_results(&[]).is_empty());
    }

    #[test]
    fn restore_temp_files_carry_the_prefix_issue_18() {
        // Output expansion skips the prefix and the run sweeps stale ones
        // (`clab_plan::inputs::sweep_temp_files`).
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("out")).unwrap();
        let temp = cas::temp_file_beside(&dir.path().join("out/a.txt")).unwrap();
        let name = temp
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(name.starts_with(TEMP_PREFIX), "{name}");
    }

    #[test]
    fn a_corrupt_blob_is_replaced_by_the_next_run_issue_18() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let store = open(root);
        write(root, "out/a.txt", "good content", 0o644);
        let entry = store.store_output(root, "out/a.txt").unwrap();
        let result = CachedResult::new("t", "ok", 1, vec![entry.clone()], None);
        store.save_result("k", &result).unwrap();
        fs::write(store.cas().path_of(&entry.hash), "bad content!").unwrap();
        fs::remove_file(root.join("out/a.txt")).unwrap();
        // The restore finds the damage and leaves no file.
        let err = store.restore_outputs(root, &result).unwrap_err();
        assert!(matches!(err, Error::CorruptBlob { .. }), "{err:?}");
        assert!(!root.join("out/a.txt").exists());
        // The next lookup misses (the blob is gone), the task runs and stores again…
        assert!(store.load_result("k").unwrap().is_none());
        write(root, "out/a.txt", "good content", 0o644);
        let again = store.store_output(root, "out/a.txt").unwrap();
        store
            .save_result("k", &CachedResult::new("t", "ok", 1, vec![again], None))
            .unwrap();
        // …and the restore after that works.
        fs::remove_file(root.join("out/a.txt")).unwrap();
        let found = store.load_result("k").unwrap().unwrap();
        store.restore_outputs(root, &found).unwrap();
        assert_eq!(
            fs::read_to_string(root.join("out/a.txt")).unwrap(),
            "good content"
        );
    }
}
