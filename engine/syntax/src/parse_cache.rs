//! The parse cache: a `tasks.kdl` that has not changed is not parsed again.
//!
//! Parsing is the largest fixed cost of a no-op run on a big project (the `kdl` crate reads
//! about 2 MB/s; a 2,000-task file takes ~190 ms). The cache keeps the parsed [`TaskFile`] in
//! postcard's compact serde encoding in `<cache dir>/parsed-<path hash>.bin`, behind a first
//! line holding a *stamp*:
//! blake3 over the cache format, clab's version, the size and mtime of the running clab
//! binary, and every byte of the tasks file. An entry is used only when its stamp equals the
//! one computed from the text just read, so an edited file, an upgraded (or rebuilt) clab or a
//! changed format all parse afresh; the file's text is always read, never trusted by mtime.
//!
//! Only files that parse without errors are stored, and only into a cache directory that
//! already exists (listing a fresh project's tasks creates nothing). Every failure — a missing,
//! truncated or foreign entry, an unwritable directory — just means a normal parse.
//!
//! Bounded like parsing (issue 18): a text over [`MAX_FILE_BYTES`](crate::MAX_FILE_BYTES) is
//! neither looked up nor stored (parsing refuses it anyway), the stamp line is read and
//! compared before the rest of an entry, and an entry over [`MAX_ENTRY_BYTES`] is not read.
//!
//! Why postcard rather than JSON (format 1 was JSON): reading back the 100 entries of the
//! bench's 100-member workspace took 56.0 million instructions as JSON and 15.1 million as
//! postcard (callgrind, one no-op `clab run`), and an entry shrank from 14 KB to 3.7 KB. The
//! format is not self-describing, so `FORMAT` must be bumped with any change to the shape
//! of [`TaskFile`]; an entry that does not decode is a miss, as before.
//!
//! Why both this and `fast_kdl`: they speed up different runs. Measured on the bench's
//! 2,000-task workspace (release build, `hyperfine -N -r 40`, 2 cores, other jobs idle, each
//! path switched off in turn): an all-cached `clab run all` takes 104 ms with this cache and
//! 123 ms with `fast_kdl` alone (`clab list`: 29 and 50 ms), because the cache also skips
//! reading the document into the model; after any edit to `tasks.kdl` this cache misses and `fast_kdl`
//! alone turns 504 ms into 141 ms. Neither is redundant, so both stay.

use std::{
    fs,
    path::{Path, PathBuf},
    sync::OnceLock,
};

use super::TaskFile;
use clab_model::source::SourceFile;

/// Bumped when the shape of [`TaskFile`] changes in a way serde would misread.
const FORMAT: u32 = 2;

/// Files shorter than this are parsed every time and never cached: reading an entry (an open,
/// a stat, a read, and the running binary's `readlink` and stat for the stamp) costs more than
/// parsing a few tasks (a one-task file: ~130,000 instructions and 7 system calls through the
/// cache, ~20,000 instructions parsed; callgrind).
pub const MIN_FILE_BYTES: u64 = 2048;

/// The largest entry read back: the JSON of a file at the size limit is a few times its text.
pub const MAX_ENTRY_BYTES: u64 = 8 * crate::MAX_FILE_BYTES;

/// Where one tasks file's parse is cached.
#[derive(Debug, Clone)]
pub struct ParseCache {
    entry: PathBuf,
}

impl ParseCache {
    /// The cache entry for `tasks_file` (an absolute path) inside `cache_dir`.
    pub fn new(cache_dir: &Path, tasks_file: &Path) -> ParseCache {
        let id = blake3::hash(tasks_file.as_os_str().as_encoded_bytes()).to_hex();
        ParseCache {
            entry: cache_dir.join(format!("parsed-{}.bin", &id[..16])),
        }
    }

    /// The cached parse of `source`, if the entry was made from exactly this text by this
    /// build of clab.
    pub fn load(&self, source: &SourceFile) -> Option<TaskFile> {
        use std::io::{BufRead, Read};
        if !worth_caching(source.text()) {
            return None;
        }
        let entry = fs::File::open(&self.entry).ok()?;
        if entry.metadata().ok()?.len() > MAX_ENTRY_BYTES {
            return None;
        }
        let mut reader = std::io::BufReader::new(entry.take(MAX_ENTRY_BYTES));
        let mut first = Vec::new();
        // A stamp is 64 hex digits: a longer first line is not one.
        (&mut reader).take(80).read_until(b'\n', &mut first).ok()?;
        if first.pop() != Some(b'\n') || first != *stamp(source.text()).as_bytes() {
            return None;
        }
        let mut bytes = Vec::new();
        reader.read_to_end(&mut bytes).ok()?;
        let mut file: TaskFile = postcard::from_bytes(&bytes).ok()?;
        file.source = source.clone();
        Some(file)
    }

    /// Remember `file`, parsed from `file.source`. Best effort: nothing is reported.
    pub fn store(&self, file: &TaskFile) {
        let Some(dir) = self.entry.parent() else {
            return;
        };
        if !worth_caching(file.source.text()) || !dir.is_dir() {
            return;
        }
        let mut bytes = stamp(file.source.text()).into_bytes();
        bytes.push(b'\n');
        if let Ok(encoded) = postcard::to_stdvec(file) {
            bytes.extend_from_slice(&encoded);
            let _ = clab_model::atomic_write::write_atomic_unsynced(&self.entry, &bytes);
            // Format 1's entry for the same file (JSON), never read again.
            let _ = fs::remove_file(self.entry.with_extension("json"));
        }
    }
}

/// Whether a file of `text` is looked up and stored: not a small one (see [`MIN_FILE_BYTES`]),
/// and not one over the parse limit (parsing refuses it anyway).
fn worth_caching(text: &str) -> bool {
    (MIN_FILE_BYTES..=crate::MAX_FILE_BYTES).contains(&(text.len() as u64))
}

/// The stamp of an entry made from `text` by this build.
fn stamp(text: &str) -> String {
    let mut hasher = blake3::Hasher::new();
    hasher.update(&FORMAT.to_le_bytes());
    hasher.update(env!("CARGO_PKG_VERSION").as_bytes());
    hasher.update(&binary_identity());
    hasher.update(text.as_bytes());
    hasher.finalize().to_hex().to_string()
}

/// `binary_identity` as text, for other caches keyed by the build.
pub fn binary_stamp() -> String {
    binary_identity()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The size and mtime of the running executable: a rebuilt clab never reads entries written
/// by an older build of the same version.
fn binary_identity() -> [u8; 24] {
    static IDENTITY: OnceLock<[u8; 24]> = OnceLock::new();
    *IDENTITY.get_or_init(|| {
        use std::os::unix::fs::MetadataExt;
        let mut identity = [0; 24];
        if let Some(meta) = std::env::current_exe()
            .ok()
            .and_then(|exe| fs::metadata(exe).ok())
        {
            identity[..8].copy_from_slice(&meta.size().to_le_bytes());
            identity[8..16].copy_from_slice(&meta.mtime().to_le_bytes());
            identity[16..].copy_from_slice(&meta.mtime_nsec().to_le_bytes());
        }
        identity
    })
}

/// Serde for `LlmSettings::values`, whose keys are the `&'static str` names of
/// `LLM_SETTINGS`: a name that is not one of them fails the load (and the file is parsed).
pub(super) mod setting_names {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer, de::Error};

    use clab_model::source::Spanned;

    use crate::{LLM_SETTINGS, Scalar};

    type Values = BTreeMap<&'static str, Spanned<Scalar>>;

    pub(crate) fn serialize<S: Serializer>(
        values: &Values,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        values.serialize(serializer)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Values, D::Error> {
        let written = BTreeMap::<String, Spanned<Scalar>>::deserialize(deserializer)?;
        written
            .into_iter()
            .map(|(name, value)| {
                let known = LLM_SETTINGS
                    .iter()
                    .find(|&&known| known == name)
                    .ok_or_else(|| D::Error::custom(format!("unknown llm setting `{name}`")))?;
                Ok((*known, value))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_task_file;

    const TASKS: &str = r#"
project "demo"
env-inputs "CC"
llm { model "m1"; temperature 0.2 }
task "gen" {
    inputs "src/**/*.py" "!src/skip.py"
    outputs "out/gen.txt"
    run "echo gen > out/gen.txt"
    timeout "2m"
    env A="1"
}
task "ask" {
    deps "gen"
    llm { prompt "hi"; output "out/a.md"; max-tokens 10 }
}
"#;

    /// [`TASKS`] padded with comment lines past [`MIN_FILE_BYTES`].
    fn tasks() -> String {
        let mut text = TASKS.to_owned();
        while (text.len() as u64) < MIN_FILE_BYTES {
            text.push_str("// a line that makes the file worth caching\n");
        }
        text
    }

    fn source(text: &str) -> SourceFile {
        SourceFile::new("/p/tasks.kdl", "tasks.kdl", text)
    }

    #[test]
    fn a_stored_parse_loads_back_equal() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ParseCache::new(dir.path(), Path::new("/p/tasks.kdl"));
        let parsed = parse_task_file(source(&tasks())).unwrap();
        assert!(cache.load(&parsed.source).is_none());
        cache.store(&parsed);
        let loaded = cache.load(&source(&tasks())).expect("a hit");
        assert_eq!(format!("{loaded:?}"), format!("{parsed:?}"));
        assert_eq!(loaded.source.text(), tasks());
        assert_eq!(
            loaded.tasks[0].inputs[1].span,
            parsed.tasks[0].inputs[1].span
        );
    }

    #[test]
    fn any_change_to_the_text_misses() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ParseCache::new(dir.path(), Path::new("/p/tasks.kdl"));
        cache.store(&parse_task_file(source(&tasks())).unwrap());
        let edited = tasks().replace("echo gen", "echo gen ");
        assert!(cache.load(&source(&edited)).is_none());
    }

    #[test]
    fn a_damaged_entry_misses() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ParseCache::new(dir.path(), Path::new("/p/tasks.kdl"));
        cache.store(&parse_task_file(source(&tasks())).unwrap());
        let bytes = fs::read(&cache.entry).unwrap();
        fs::write(&cache.entry, &bytes[..bytes.len() - 10]).unwrap();
        assert!(cache.load(&source(&tasks())).is_none());
        fs::write(&cache.entry, b"garbage").unwrap();
        assert!(cache.load(&source(&tasks())).is_none());
    }

    #[test]
    fn storing_removes_the_json_entry_of_format_1() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ParseCache::new(dir.path(), Path::new("/p/tasks.kdl"));
        let legacy = cache.entry.with_extension("json");
        fs::write(&legacy, "{}").unwrap();
        cache.store(&parse_task_file(source(&tasks())).unwrap());
        assert!(cache.entry.exists());
        assert!(!legacy.exists());
    }

    #[test]
    fn nothing_is_written_without_a_cache_directory() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join(".clab");
        let cache = ParseCache::new(&missing, Path::new("/p/tasks.kdl"));
        cache.store(&parse_task_file(source(&tasks())).unwrap());
        assert!(!missing.exists());
    }

    #[test]
    fn oversized_texts_and_entries_are_neither_stored_nor_read_issue_18() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ParseCache::new(dir.path(), Path::new("/p/tasks.kdl"));
        let big = " ".repeat(usize::try_from(crate::MAX_FILE_BYTES).unwrap() + 1);
        let mut parsed = parse_task_file(source(&tasks())).unwrap();
        parsed.source = source(&big);
        cache.store(&parsed);
        assert!(!cache.entry.exists());
        assert!(cache.load(&source(&big)).is_none());
        // A first line that is not a stamp is not read to its end.
        fs::write(&cache.entry, "x".repeat(1 << 20)).unwrap();
        assert!(cache.load(&source(&tasks())).is_none());
    }

    #[test]
    fn a_small_file_is_parsed_every_time_and_never_cached() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ParseCache::new(dir.path(), Path::new("/p/tasks.kdl"));
        let small = parse_task_file(source(TASKS)).unwrap();
        cache.store(&small);
        assert!(!cache.entry.exists());
        // Not read either: an entry stored for the padded text does not answer the short one.
        cache.store(&parse_task_file(source(&tasks())).unwrap());
        assert!(cache.entry.exists());
        assert!(cache.load(&source(TASKS)).is_none());
    }
}
