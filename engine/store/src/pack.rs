//! Packs: the blobs one batch of downloads brings, written into one file of the CAS instead of
//! a file each.
//!
//! Why: a fresh checkout restoring the 2,000-task benchmark from a remote cache wrote 2,000
//! blob files into `cas/` beside the 2,000 outputs, and creating an inode is the dearest thing
//! a restore does on ext4 (see [`crate::cas`]). Skipping those files took ~150 ms off a
//! ~910 ms restore (medians of 8 alternating runs); one pack keeps the blobs for ~1 inode.
//!
//! Layout, under `cas/packs/`:
//! - `<id>.pack`: the blobs' bytes, one after another.
//! - `<id>.idx`: the line `clab-pack 1`, then for each blob its 32-byte digest, its offset in
//!   the pack and its length (little-endian `u64`s). `<id>` is the first 32 hex digits of the
//!   digest of the index's entries.
//!
//! Invariants:
//! - Both are written as temp files (`.tmp-*`) and renamed: the index first, the pack last. A
//!   pack is visible once both are at their names; an index whose pack is missing (its writer
//!   was killed between the renames) lists nothing and is swept by `prune` as a temp file is.
//! - Readers verify a packed blob as they verify a loose one ([`crate::cas`]).
//! - A pack is never rewritten. A blob in it that is damaged, or removed (`prune`), takes the
//!   pack with it: the pack's other blobs are first written out as loose blobs
//!   (`Cas::unpack`).
//!
//! Only the remote cache's batched fetch writes packs (`Cas::pack_writer`); everything else
//! writes loose blobs. A pack is found by looking for the blob's loose file first: packs cost
//! nothing to a store that has none.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use super::Error;
use super::cas::{TEMP_PREFIX, temp_file_named};
use super::digest::Digest;
use super::verified_blob::VerifiedBlob;

/// The first bytes of an index file (its format version).
pub(crate) const INDEX_MAGIC: &[u8] = b"clab-pack 1\n";

/// One entry of an index: digest, offset, length.
const ENTRY_LEN: usize = 32 + 8 + 8;

/// Where one blob lies in a pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Packed {
    /// The pack file.
    pub(crate) pack: Arc<Path>,
    /// Where the blob starts in it.
    pub(crate) offset: u64,
    /// Its length in bytes.
    pub(crate) len: u64,
}

/// The packs of one CAS: their indexes, read when the directory changes.
#[derive(Debug)]
pub(crate) struct Packs {
    dir: PathBuf,
    index: RwLock<Index>,
}

#[derive(Debug, Default)]
struct Index {
    /// The directory's mtime when it was last read (`None`: never read, or missing).
    read_at: Option<SystemTime>,
    /// When the directory was last looked at.
    checked: Option<Instant>,
    blobs: HashMap<Digest, Packed>,
}

/// How long a look at the packs' directory holds: a restore asks for 2,000 blobs within a
/// fraction of a second, and looked at the directory for each (4,000 `statx` calls).
const RECHECK: Duration = Duration::from_millis(100);

impl Packs {
    /// The packs under `cas_root/packs`.
    pub(crate) fn new(cas_root: &Path) -> Packs {
        Packs {
            dir: cas_root.join("packs"),
            index: RwLock::new(Index::default()),
        }
    }

    /// The directory holding the packs.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the blob `digest` is packed, if it is in a pack.
    pub(crate) fn find(&self, digest: &Digest) -> Option<Packed> {
        self.refresh();
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        index.blobs.get(digest).cloned()
    }

    /// Every packed blob.
    pub(crate) fn all(&self) -> Vec<(Digest, Packed)> {
        self.refresh();
        let index = self.index.read().unwrap_or_else(|e| e.into_inner());
        index
            .blobs
            .iter()
            .map(|(digest, packed)| (*digest, packed.clone()))
            .collect()
    }

    /// The blobs of the pack `pack`, as its index lists them.
    pub(crate) fn blobs_of(&self, pack: &Path) -> Vec<(Digest, Packed)> {
        self.all()
            .into_iter()
            .filter(|(_, packed)| *packed.pack == *pack)
            .collect()
    }

    /// Reads the indexes at the next lookup (a pack was just written, or deleted).
    pub(crate) fn invalidate(&self) {
        let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
        index.read_at = None;
        index.checked = None;
    }

    /// Reads the indexes again if the directory changed since they were read, looking at it
    /// at most once per [`RECHECK`]. (Another process's pack written since the last look, or
    /// within the same tick of the file system's clock as the last read, goes unseen until the
    /// next: its blobs look missing, and are fetched again or their task runs.)
    fn refresh(&self) {
        {
            let index = self.index.read().unwrap_or_else(|e| e.into_inner());
            if index.checked.is_some_and(|at| at.elapsed() < RECHECK) {
                return;
            }
        }
        let Ok(modified) = fs::metadata(&self.dir).and_then(|m| m.modified()) else {
            let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
            *index = Index {
                checked: Some(Instant::now()),
                ..Index::default()
            };
            return;
        };
        {
            let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
            if index.read_at == Some(modified) {
                index.checked = Some(Instant::now());
                return;
            }
        }
        let blobs = read_indexes(&self.dir);
        let mut index = self.index.write().unwrap_or_else(|e| e.into_inner());
        *index = Index {
            read_at: Some(modified),
            checked: Some(Instant::now()),
            blobs,
        };
    }

    /// Index files whose pack is missing, older than `cutoff`: left by killed writers (their
    /// temp files are swept with the shards').
    pub(crate) fn stale_files(&self, cutoff: SystemTime) -> Vec<PathBuf> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut stale = Vec::new();
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let orphan = name.ends_with(".idx") && !path.with_extension("pack").exists();
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t < cutoff);
            if orphan && old {
                stale.push(path);
            }
        }
        stale
    }
}

/// The blobs of every complete pack in `dir` (an index with its pack beside it).
fn read_indexes(dir: &Path) -> HashMap<Digest, Packed> {
    let mut blobs = HashMap::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return blobs;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if path.extension().is_none_or(|ext| ext != "idx") {
            continue;
        }
        let pack: Arc<Path> = path.with_extension("pack").into();
        let Ok(pack_len) = fs::metadata(&pack).map(|m| m.len()) else {
            continue;
        };
        let Ok(bytes) = fs::read(&path) else { continue };
        let Some(entries) = decode_index(&bytes) else {
            continue;
        };
        for (digest, offset, len) in entries {
            // An entry past the pack's end is a damaged index: its blob is not there.
            if offset.checked_add(len).is_some_and(|end| end <= pack_len) {
                blobs.insert(
                    digest,
                    Packed {
                        pack: Arc::clone(&pack),
                        offset,
                        len,
                    },
                );
            }
        }
    }
    blobs
}

/// An index file's entries; `None` when it is not one.
fn decode_index(bytes: &[u8]) -> Option<Vec<(Digest, u64, u64)>> {
    let body = bytes.strip_prefix(INDEX_MAGIC)?;
    if body.len() % ENTRY_LEN != 0 {
        return None;
    }
    let entries = body
        .chunks_exact(ENTRY_LEN)
        .map(|entry| {
            let (digest, rest) = entry.split_at(32);
            let (offset, len) = rest.split_at(8);
            let word = |b: &[u8]| u64::from_le_bytes(b.try_into().unwrap_or([0; 8]));
            let digest = Digest::from_slice(digest).unwrap_or(Digest([0; 32]));
            (digest, word(offset), word(len))
        })
        .collect();
    Some(entries)
}

/// An index file's bytes.
fn encode_index(entries: &[(Digest, u64, u64)]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(INDEX_MAGIC.len() + entries.len() * ENTRY_LEN);
    bytes.extend_from_slice(INDEX_MAGIC);
    for (digest, offset, len) in entries {
        bytes.extend_from_slice(digest.as_bytes());
        bytes.extend_from_slice(&offset.to_le_bytes());
        bytes.extend_from_slice(&len.to_le_bytes());
    }
    bytes
}

/// Writes the blobs [`put`](Self::put) into one new pack, made visible by
/// [`finish`](Self::finish); dropped unfinished, it leaves nothing behind. Shared by the
/// threads of a batch (appends are serialized).
#[derive(Debug)]
pub struct PackWriter {
    packs: Arc<Packs>,
    open: Mutex<Option<OpenPack>>,
}

#[derive(Debug)]
struct OpenPack {
    temp: tempfile::NamedTempFile,
    len: u64,
    entries: Vec<(Digest, u64, u64)>,
    written: HashSet<Digest>,
}

impl PackWriter {
    pub(crate) fn new(packs: Arc<Packs>) -> PackWriter {
        PackWriter {
            packs,
            open: Mutex::new(None),
        }
    }

    /// Appends `blob` to the pack (once, whatever the number of puts).
    pub fn put(&self, blob: &VerifiedBlob) -> Result<(), Error> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let pack = match open.as_mut() {
            Some(pack) => pack,
            None => open.insert(self.start()?),
        };
        if !pack.written.insert(*blob.digest()) {
            return Ok(());
        }
        let offset = pack.len;
        if let Err(source) = pack.temp.write_all(blob.bytes()) {
            let path = pack.temp.path().to_owned();
            // The pack is unusable: drop it (its temp file goes with it).
            *open = None;
            return Err(Error::io("write", &path, source));
        }
        pack.len += blob.len() as u64;
        pack.entries
            .push((*blob.digest(), offset, blob.len() as u64));
        Ok(())
    }

    /// The pack's temp file, created (with `cas/packs/`) at the first put.
    fn start(&self) -> Result<OpenPack, Error> {
        Ok(OpenPack {
            temp: temp_file_named(self.packs.dir(), TEMP_PREFIX)?,
            len: 0,
            entries: Vec::new(),
            written: HashSet::new(),
        })
    }

    /// Makes the pack visible (its index, then the pack, renamed to their names); returns how
    /// many blobs it holds (0: nothing was put, and nothing is written).
    pub fn finish(&self) -> Result<usize, Error> {
        let Some(pack) = self.open.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return Ok(0);
        };
        let dir = self.packs.dir();
        let index = encode_index(&pack.entries);
        let id = Digest::of_bytes(&index[INDEX_MAGIC.len()..]).to_hex();
        let id = &id[..32];
        let index_path = dir.join(format!("{id}.idx"));
        let pack_path = dir.join(format!("{id}.pack"));
        let mut index_temp = temp_file_named(dir, TEMP_PREFIX)?;
        index_temp
            .write_all(&index)
            .map_err(|source| Error::io("write", index_temp.path(), source))?;
        index_temp
            .persist(&index_path)
            .map_err(|e| Error::io("rename a temp file to", &index_path, e.error))?;
        pack.temp
            .persist(&pack_path)
            .map_err(|e| Error::io("rename a temp file to", &pack_path, e.error))?;
        self.packs.invalidate();
        Ok(pack.entries.len())
    }
}

/// Reads `len` bytes at `offset` of `file`.
pub(crate) fn read_at(file: &File, offset: u64, len: u64) -> io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let mut bytes = vec![0u8; len as usize];
    file.read_exact_at(&mut bytes, offset)?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_decodes_to_what_was_encoded_and_refuses_anything_else() {
        let entries = vec![
            (Digest::of_bytes(b"a"), 0, 1),
            (Digest::of_bytes(b"bc"), 1, 2),
        ];
        let bytes = encode_index(&entries);
        assert_eq!(decode_index(&bytes), Some(entries));
        assert_eq!(decode_index(&bytes[..bytes.len() - 1]), None);
        assert_eq!(decode_index(b"clab-pack 2\n"), None);
        assert_eq!(decode_index(INDEX_MAGIC), Some(Vec::new()));
    }
}
