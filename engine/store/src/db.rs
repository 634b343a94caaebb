//! `cache.db`: opening, schema, migrations and corruption recovery.
//!
//! In: the path of `cache.db`. Out: a `rusqlite::Connection` in WAL mode with a 5 s busy
//! timeout and the current schema, plus a warning if a corrupt file had to be moved aside.
//!
//! Schema version `SCHEMA_VERSION` (kept in `PRAGMA user_version`). `MIGRATIONS[i]` takes a
//! database from version `i` to `i + 1`; they run in one `BEGIN IMMEDIATE` transaction, so two
//! clab processes opening a fresh cache at once migrate it exactly once. A database with a
//! newer version than this build knows is refused (`clab::store::newer_schema`), never
//! rewritten.
//!
//! Version 1:
//!
//! ```text
//! results      key TEXT PK            cache key (hex), chosen by the caller
//!              task TEXT              display id of the node
//!              status TEXT            caller's label for the outcome (failures are not cached)
//!              duration_ms INTEGER    how long the task ran
//!              outputs TEXT           JSON [{path, hash, size, mode}] sorted by path
//!              log_hash TEXT NULL     digest of the captured log blob
//!              created_ms, last_used_ms INTEGER   Unix ms; last_used drives LRU pruning
//!              size INTEGER           bytes of outputs + log (what this entry keeps alive)
//! manifests    task TEXT PK, key TEXT, json TEXT, updated_ms INTEGER
//!              the inputs manifest of the last run of each task (opaque JSON, for `explain`)
//! stat_cache   path TEXT PK (absolute), size, mtime_ns, ctime_ns, inode INTEGER,
//!              hash BLOB (32 bytes), written_ns INTEGER  (racy-git rule: plan::stat_cache)
//! runs         id INTEGER PK, started_ms, targets TEXT (JSON array), ran, cached, failed,
//!              duration_ms INTEGER, extra TEXT NULL (JSON: test and coverage totals)
//! llm_calls    id INTEGER PK, task, provider, model TEXT, attempt, tokens_in NULL,
//!              tokens_out NULL, latency_ms INTEGER, status TEXT, cache_hit INTEGER (0/1),
//!              at_ms INTEGER
//! counters     name TEXT PK, value INTEGER      ("hits", "misses" of load_result)
//! ```
//!
//! Version 2 adds:
//!
//! ```text
//! input_sets   digest TEXT PK, json TEXT, updated_ms INTEGER
//!              a large inputs map (path → hash JSON) that manifests refer to by digest
//!              (`input_set`) instead of holding a copy each; pruned with its last manifest
//! ```
//!
//! Version 3 adds:
//!
//! ```text
//! runs.journal TEXT NULL (unique)    the history journal's id of a run imported from it
//!                                    (`history`): imported once, however many importers
//! ```
//!
//! Corruption: if SQLite says the file is not a database, is malformed or has an unsupported
//! file format (`is_corruption`) — at open (also as found by the open-time check,
//! `check_integrity`) or on any later query (`Store::heal`, after `PRAGMA quick_check`
//! confirms it, `confirm_damage`) — the file and its `-wal`/`-shm` companions are renamed to
//! `cache.db.corrupt-<unix seconds>` (`…-wal`, `…-shm`) and a fresh database is created; the
//! caller gets one warning and the run goes on with an empty cache. Any other failure (a
//! permission error, a locked file past the busy timeout) is an error, not a reason to discard
//! the cache.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, ErrorCode, TransactionBehavior};

use super::{Error, Warning};

/// The schema version this build reads and writes.
pub const SCHEMA_VERSION: u32 = 4;

/// How long a statement waits for another process's write lock.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// `MIGRATIONS[i]` upgrades version `i` to `i + 1`.
const MIGRATIONS: [&str; SCHEMA_VERSION as usize] = [
    r#"
CREATE TABLE results (
    key          TEXT PRIMARY KEY,
    task         TEXT NOT NULL,
    status       TEXT NOT NULL,
    duration_ms  INTEGER NOT NULL,
    outputs      TEXT NOT NULL,
    log_hash     TEXT,
    created_ms   INTEGER NOT NULL,
    last_used_ms INTEGER NOT NULL,
    size         INTEGER NOT NULL
);
CREATE INDEX results_by_last_used ON results (last_used_ms);
CREATE TABLE manifests (
    task       TEXT PRIMARY KEY,
    key        TEXT NOT NULL,
    json       TEXT NOT NULL,
    updated_ms INTEGER NOT NULL
);
CREATE TABLE stat_cache (
    path       TEXT PRIMARY KEY,
    size       INTEGER NOT NULL,
    mtime_ns   INTEGER NOT NULL,
    ctime_ns   INTEGER NOT NULL,
    inode      INTEGER NOT NULL,
    hash       BLOB NOT NULL,
    written_ns INTEGER NOT NULL
);
CREATE TABLE runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    started_ms  INTEGER NOT NULL,
    targets     TEXT NOT NULL,
    ran         INTEGER NOT NULL,
    cached      INTEGER NOT NULL,
    failed      INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    extra       TEXT
);
CREATE TABLE llm_calls (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    task       TEXT NOT NULL,
    provider   TEXT NOT NULL,
    model      TEXT NOT NULL,
    attempt    INTEGER NOT NULL,
    tokens_in  INTEGER,
    tokens_out INTEGER,
    latency_ms INTEGER NOT NULL,
    status     TEXT NOT NULL,
    cache_hit  INTEGER NOT NULL,
    at_ms      INTEGER NOT NULL
);
CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
"#,
    r#"
CREATE TABLE input_sets (
    digest     TEXT PRIMARY KEY,
    json       TEXT NOT NULL,
    updated_ms INTEGER NOT NULL
);
"#,
    r#"
ALTER TABLE runs ADD COLUMN journal TEXT;
CREATE UNIQUE INDEX runs_by_journal ON runs (journal);
"#,
    // The stat cache as one row per directory (`stat_rows`); the old rows are dropped, so
    // the first run after the upgrade hashes its inputs again.
    r#"
DROP TABLE stat_cache;
CREATE TABLE stat_dirs (
    dir     BLOB PRIMARY KEY,
    entries BLOB NOT NULL
);
"#,
];

/// Why one attempt to open failed.
enum OpenFailure {
    /// The file is damaged; moving it aside will help.
    Corrupt(String),
    /// Anything else.
    Other(Error),
}

/// Opens (creating if needed) the database at `path`, recovering from corruption.
pub(crate) fn open(path: &Path) -> Result<(Connection, Option<Warning>), Error> {
    match try_open_patiently(path) {
        Ok(conn) => Ok((conn, None)),
        Err(OpenFailure::Other(e)) => Err(e),
        Err(OpenFailure::Corrupt(reason)) => {
            let moved_to = move_aside(path)?;
            let conn = match try_open(path) {
                Ok(conn) => conn,
                Err(OpenFailure::Other(e)) => return Err(e),
                Err(OpenFailure::Corrupt(reason)) => {
                    return Err(Error::Corrupt {
                        path: path.to_owned(),
                        reason,
                    });
                }
            };
            Ok((
                conn,
                Some(Warning::CorruptDatabase {
                    path: path.to_owned(),
                    moved_to,
                    reason,
                }),
            ))
        }
    }
}

/// A second connection to a database [`open`] has opened (schema in place), for reads: in WAL
/// mode they see the last commit and do not wait for a write in progress.
pub(crate) fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // As the writer's: should this connection close last, its checkpoint does not flush.
    conn.pragma_update(None, "synchronous", "OFF")?;
    Ok(conn)
}

fn classify(path: &Path, error: rusqlite::Error) -> OpenFailure {
    if is_corruption(&error) {
        OpenFailure::Corrupt(error.to_string())
    } else {
        OpenFailure::Other(Error::sqlite(path, error))
    }
}

/// Whether `error` says the file is damaged: `SQLITE_CORRUPT`, `SQLITE_NOTADB`, or a message
/// naming it ("malformed", "not a database", "unsupported file format" — what SQLite says of
/// a header whose schema-format bytes 44–47 are out of range).
pub(crate) fn is_corruption(error: &rusqlite::Error) -> bool {
    if matches!(
        error.sqlite_error_code(),
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt)
    ) {
        return true;
    }
    let message = error.to_string();
    ["malformed", "not a database", "unsupported file format"]
        .iter()
        .any(|sign| message.contains(sign))
}

/// After `error` (which [`is_corruption`]) on `conn`: the reason to replace the file, or
/// `None` if it checks out. SQLite's corruption codes are trusted; a message alone is
/// confirmed by `PRAGMA quick_check`.
pub(crate) fn confirm_damage(conn: &Connection, error: &rusqlite::Error) -> Option<String> {
    if matches!(
        error.sqlite_error_code(),
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt)
    ) {
        return Some(error.to_string());
    }
    match conn.query_row("PRAGMA quick_check(1)", [], |row| row.get::<_, String>(0)) {
        Ok(check) if check == "ok" => None,
        Ok(check) => Some(check),
        Err(_) => Some(error.to_string()),
    }
}

/// A connection to nothing, to stand in while a damaged database is moved aside.
pub(crate) fn placeholder() -> Result<Connection, Error> {
    Connection::open_in_memory().map_err(|e| Error::sqlite(Path::new(":memory:"), e))
}

/// The device and inode of `path`, to tell whether another process has replaced it.
pub(crate) fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Is the database whole? `PRAGMA quick_check` reads every page — 70 ms for a 10 MB cache,
/// paid by every command — so it runs only when a write-ahead log is left over (a process
/// died, or another one is running). A cleanly closed database is checked by its size
/// instead: a file shorter than its header's page count says is truncated. Damage inside a
/// page that this misses surfaces as `SQLITE_CORRUPT` on the query that meets it.
fn check_integrity(path: &Path, conn: &Connection) -> Result<(), OpenFailure> {
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    let wal_in_use = fs::metadata(&wal).is_ok_and(|m| m.len() > 0);
    if !wal_in_use {
        let pages: i64 = conn
            .query_row("PRAGMA page_count", [], |row| row.get(0))
            .map_err(|e| classify(path, e))?;
        let page_size: i64 = conn
            .query_row("PRAGMA page_size", [], |row| row.get(0))
            .map_err(|e| classify(path, e))?;
        let len = fs::metadata(path).map_or(0, |m| m.len());
        if len < pages.max(0) as u64 * page_size.max(0) as u64 {
            // A short file is a truncated database — or another clab that started a WAL
            // between the look at `-wal` above and `page_count` (four runs starting at once
            // did, and lost their cache): let SQLite's own check decide.
            let check: String = conn
                .query_row("PRAGMA quick_check(1)", [], |row| row.get(0))
                .map_err(|e| classify(path, e))?;
            if check != "ok" {
                return Err(OpenFailure::Corrupt(format!(
                    "the file is {len} bytes, its header says {pages} pages of {page_size}: {check}"
                )));
            }
            return Ok(());
        }
        // Reading the schema touches the first pages: garbage there fails here.
        conn.query_row("SELECT count(*) FROM sqlite_master", [], |row| {
            row.get::<_, i64>(0)
        })
        .map_err(|e| classify(path, e))?;
        return Ok(());
    }
    let check: String = conn
        .query_row("PRAGMA quick_check(1)", [], |row| row.get(0))
        .map_err(|e| classify(path, e))?;
    if check != "ok" {
        return Err(OpenFailure::Corrupt(check));
    }
    Ok(())
}

/// [`try_open`], again while another process holds a lock the busy timeout does not cover
/// (switching a database another connection is creating to WAL answers `SQLITE_BUSY` at
/// once): two clab processes starting together on a fresh cache must both get it.
fn try_open_patiently(path: &Path) -> Result<Connection, OpenFailure> {
    let started = std::time::Instant::now();
    loop {
        match try_open(path) {
            Err(OpenFailure::Other(Error::Sqlite { source, .. }))
                if matches!(
                    source.sqlite_error_code(),
                    Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
                ) && started.elapsed() < BUSY_TIMEOUT =>
            {
                std::thread::sleep(Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

fn try_open(path: &Path) -> Result<Connection, OpenFailure> {
    let mut conn = Connection::open(path).map_err(|e| classify(path, e))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| classify(path, e))?;
    // No fsync: a crash of clab loses nothing (WAL), and what an OS crash or power loss might
    // cost is a cache, rebuilt like any corrupt one — as ninja treats its logs. The three
    // fsyncs of each run's history write were a third of a trivial `clab run`. Set before
    // the journal mode, whose switch on a new file would otherwise flush four times.
    conn.pragma_update(None, "synchronous", "OFF")
        .map_err(|e| classify(path, e))?;
    // A file system without shared memory keeps the rollback journal; that is slower under
    // concurrency but still correct, so the mode is not checked.
    let _mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(|e| classify(path, e))?;
    check_integrity(path, &conn)?;
    migrate(&mut conn).map_err(|e| match e {
        MigrateError::Sqlite(e) => classify(path, e),
        MigrateError::Newer(found) => OpenFailure::Other(Error::NewerSchema {
            path: path.to_owned(),
            found,
            supported: SCHEMA_VERSION,
        }),
    })?;
    Ok(conn)
}

enum MigrateError {
    Sqlite(rusqlite::Error),
    Newer(u32),
}

impl From<rusqlite::Error> for MigrateError {
    fn from(e: rusqlite::Error) -> MigrateError {
        MigrateError::Sqlite(e)
    }
}

fn migrate(conn: &mut Connection) -> Result<(), MigrateError> {
    let current: u32 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if current == SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Re-read under the write lock: another process may have migrated meanwhile.
    let current: u32 = tx.pragma_query_value(None, "user_version", |row| row.get(0))?;
    if current > SCHEMA_VERSION {
        return Err(MigrateError::Newer(current));
    }
    for sql in &MIGRATIONS[current as usize..] {
        tx.execute_batch(sql)?;
    }
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    Ok(())
}

/// Renames a corrupt database and its WAL companions out of the way; returns the new name.
pub(crate) fn move_aside(path: &Path) -> Result<PathBuf, Error> {
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("cache.db");
    let moved_to = path.with_file_name(format!("{name}.corrupt-{stamp}"));
    rename_if_present(path, &moved_to)?;
    for suffix in ["-wal", "-shm"] {
        let from = path.with_file_name(format!("{name}{suffix}"));
        let to = path.with_file_name(format!("{name}.corrupt-{stamp}{suffix}"));
        rename_if_present(&from, &to)?;
    }
    Ok(moved_to)
}

fn rename_if_present(from: &Path, to: &Path) -> Result<(), Error> {
    match fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::io("move aside", from, source)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(conn: &Connection) -> u32 {
        conn.pragma_query_value(None, "user_version", |row| row.get(0))
            .unwrap()
    }

    #[test]
    fn fresh_database_gets_schema_and_wal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.db");
        let (conn, warning) = open(&path).unwrap();
        assert!(warning.is_none());
        assert_eq!(version(&conn), SCHEMA_VERSION);
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |row| row.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        drop(conn);
        // Reopening is a no-op migration.
        let (conn, warning) = open(&path).unwrap();
        assert!(warning.is_none());
        assert_eq!(version(&conn), SCHEMA_VERSION);
    }

    #[test]
    fn a_version_1_database_is_migrated_to_the_latest_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.execute(
                "INSERT INTO manifests (task, key, json, updated_ms) VALUES ('t', 'k', '{}', 1)",
                [],
            )
            .unwrap();
            conn.execute(
                "INSERT INTO runs (started_ms, targets, ran, cached, failed, duration_ms)
                 VALUES (1, '[]', 1, 0, 0, 2)",
                [],
            )
            .unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
        }
        let (conn, _) = open(&path).unwrap();
        assert_eq!(version(&conn), SCHEMA_VERSION);
        let manifests: i64 = conn
            .query_row("SELECT count(*) FROM manifests", [], |row| row.get(0))
            .unwrap();
        assert_eq!(manifests, 1);
        conn.execute(
            "INSERT INTO input_sets (digest, json, updated_ms) VALUES ('d', '{}', 1)",
            [],
        )
        .unwrap();
        // Version 3: a run row imported from the history journal names its file, once.
        let journal: Option<String> = conn
            .query_row("SELECT journal FROM runs", [], |row| row.get(0))
            .unwrap();
        assert_eq!(journal, None, "rows from before keep no journal name");
        let insert = "INSERT OR IGNORE INTO runs
            (started_ms, targets, ran, cached, failed, duration_ms, journal)
            VALUES (2, '[]', 1, 0, 0, 2, 'x.json')";
        assert_eq!(conn.execute(insert, []).unwrap(), 1);
        assert_eq!(conn.execute(insert, []).unwrap(), 0, "the same file twice");
    }

    #[test]
    fn garbage_file_is_moved_aside_and_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.db");
        fs::write(&path, b"this is not a database, just garbage bytes....................................................................").unwrap();
        let (conn, warning) = open(&path).unwrap();
        let Some(Warning::CorruptDatabase { moved_to, .. }) = warning else {
            panic!("expected a warning, got {warning:?}");
        };
        assert!(moved_to.to_string_lossy().contains("cache.db.corrupt-"));
        assert!(fs::read(&moved_to).unwrap().starts_with(b"this is not"));
        assert_eq!(version(&conn), SCHEMA_VERSION);
    }

    #[test]
    fn truncated_database_is_moved_aside_and_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.db");
        {
            let (conn, _) = open(&path).unwrap();
            let blob = vec![7u8; 32];
            for i in 0..2000 {
                conn.execute(
                    "INSERT INTO stat_dirs VALUES (?1, ?2)",
                    rusqlite::params![format!("/some/long/path/number/{i}/"), blob],
                )
                .unwrap();
            }
            conn.pragma_update(None, "wal_checkpoint", "TRUNCATE")
                .unwrap();
            conn.pragma_update(None, "journal_mode", "DELETE").unwrap();
        }
        let len = fs::metadata(&path).unwrap().len();
        assert!(len > 16 * 4096, "{len}");
        let file = fs::File::options().write(true).open(&path).unwrap();
        file.set_len(len / 2).unwrap();
        drop(file);
        let (conn, warning) = open(&path).unwrap();
        assert!(
            matches!(warning, Some(Warning::CorruptDatabase { .. })),
            "{warning:?}"
        );
        let rows: i64 = conn
            .query_row("SELECT count(*) FROM stat_dirs", [], |row| row.get(0))
            .unwrap();
        assert_eq!(rows, 0);
    }

    #[test]
    fn newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cache.db");
        {
            let (conn, _) = open(&path).unwrap();
            conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
                .unwrap();
        }
        let err = open(&path).err().unwrap();
        assert!(matches!(err, Error::NewerSchema { found, .. } if found == SCHEMA_VERSION + 1));
    }
}
