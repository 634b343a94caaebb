//! `Cas`: the content-addressed blob store under `<cache dir>/cas/`.
//!
//! In: bytes or a file. Out: its `Digest`; the blob lives at `cas/ab/cdef…` (the first two hex
//! characters of the blake3 digest name the shard directory, the other 62 the file).
//!
//! Invariants:
//! - A blob file, once at its final path, holds exactly the bytes its name hashes to. Writers
//!   write into a temp file named `.tmp-*` — in the blob's shard when the digest is known
//!   before writing (bytes, small files), else in `cas/` — and rename it to its final name, so
//!   a reader never sees a half-written blob; a temp file left by a killed writer is never read
//!   (nothing looks up `.tmp-*` names) and is swept by `prune` once it is older than the grace
//!   period.
//! - Putting a blob that exists is a no-op apart from refreshing its mtime, which tells `prune`
//!   that a writer may be about to reference it (see `Store::prune`) — if the file has the
//!   size of the content being put; a blob of another size is damaged and is replaced.
//! - Readers verify: every read hashes what it returns and fails with
//!   `clab::store::corrupt_blob` on a mismatch, so a flipped bit on disk is never restored; the
//!   damaged blob is then deleted (if it is still the file that was read), so the result that
//!   names it misses and the next good store of that content writes it afresh (issue 18: a
//!   corrupt blob was detected on every restore and never replaced).
//!
//! - A restore ([`Cas::restore`]) copies a blob into a temp file (`.tmp-*`) in the blob's own
//!   shard, verified while copying, sets its mode through the descriptor and renames it onto
//!   the output — across directories, atomic on one file system; when the output is on
//!   another file system the verified copy is written again beside it (`.clab-tmp-*`).
//!   Why the shard: a file's inode is allocated in its directory's block group, and ext4
//!   without a journal (this machine's disk) steps, to allocate one, over every inode of the
//!   group freed in the last 30 s. Outputs are restored right after they were deleted
//!   (`rm -rf out`, a checkout replaced), into the directory whose group holds exactly those
//!   freed inodes: creating 2,000 temp files beside their outputs cost 0.2–1.5 s of system
//!   time (quadratic), in the shards (spread over block groups, see [`Cas::create_root`])
//!   ~0.1 s. Restoring 2,000 outputs right after deleting them (`clab run` of the 2,000-task
//!   benchmark after `rm -rf out`): 1,335 → 364 ms (hyperfine medians of 5, load 1.5).
//!
//! - Blobs downloaded in a batch from a remote cache may be in a pack (`cas/packs/`, see
//!   [`crate::pack`]) instead of a file each: every lookup tries the blob's file first, then
//!   the packs.
//!
//! Layout version: `CAS_VERSION` (1). Blobs hold raw bytes, uncompressed; the file mode of an
//! output is kept in the result's manifest, not on the blob.

use std::collections::{BTreeSet, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use super::Error;
use super::digest::Digest;
use super::pack::{self, PackWriter, Packed, Packs};
use super::verified_blob::VerifiedBlob;

/// The version of the on-disk CAS layout described in this module's documentation.
pub const CAS_VERSION: u32 = 1;

/// Prefix of temp files; names starting with it are never blobs.
pub(crate) const TEMP_PREFIX: &str = ".tmp-";

const COPY_BUFFER: usize = 256 * 1024;

/// A blob found on disk by [`Cas::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobInfo {
    /// Its content digest (from its file name).
    pub digest: Digest,
    /// Its size in bytes.
    pub size: u64,
    /// Its last modification time (written or re-put).
    pub modified: SystemTime,
}

/// The content-addressed blob store rooted at one directory.
#[derive(Debug, Clone)]
pub struct Cas {
    root: PathBuf,
    packs: Arc<Packs>,
}

impl Cas {
    /// A store rooted at `root` (usually `<cache dir>/cas`); nothing is created until a put.
    pub fn new(root: impl Into<PathBuf>) -> Cas {
        let root = root.into();
        Cas {
            packs: Arc::new(Packs::new(&root)),
            root,
        }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates the root directory if it is missing, marked on Linux as the top of a directory
    /// hierarchy (`FS_TOPDIR_FL`, what `chattr +T` sets), which ext4's allocator reads as
    /// "the directories below are unrelated": it spreads the shards over block groups instead
    /// of packing them beside the root. That matters on ext4 without a journal, which, to
    /// allocate an inode, steps one by one over every inode of the group freed in the last
    /// 30 seconds: a cache deleted and built again at once paid, for each new blob, a walk
    /// over the blobs just deleted (bench/notes.md). Best effort: blobs create what is
    /// missing anyway, and other file systems ignore or refuse the flag.
    pub fn create_root(&self) {
        if fs::create_dir(&self.root).is_ok() {
            mark_top_dir(&self.root);
        }
    }

    /// Where the blob with `digest` lives (whether or not it exists).
    pub fn path_of(&self, digest: &Digest) -> PathBuf {
        let hex = digest.to_hex();
        self.root.join(&hex[..2]).join(&hex[2..])
    }

    /// Whether the blob exists (its file, or in a pack).
    pub fn contains(&self, digest: &Digest) -> bool {
        self.path_of(digest).is_file() || self.packs.find(digest).is_some()
    }

    /// The blob's size, if it exists.
    pub fn size_of(&self, digest: &Digest) -> Option<u64> {
        match fs::metadata(self.path_of(digest)) {
            Ok(meta) if meta.is_file() => Some(meta.len()),
            _ => self.packs.find(digest).map(|packed| packed.len),
        }
    }

    /// A writer of one new pack (see [`crate::pack`]): for the blobs of a batch of downloads.
    pub fn pack_writer(&self) -> PackWriter {
        PackWriter::new(Arc::clone(&self.packs))
    }

    /// Stores `bytes`, returning their digest. Idempotent.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest, Error> {
        let digest = Digest::of_bytes(bytes);
        self.put_hashed(&digest, bytes)?;
        Ok(digest)
    }

    /// Stores a blob already verified in memory (a download), without hashing it again.
    /// Idempotent.
    pub fn put_verified(&self, blob: &VerifiedBlob) -> Result<(), Error> {
        self.put_hashed(blob.digest(), blob.bytes())
    }

    /// Stores `bytes`, which hash to `digest`.
    fn put_hashed(&self, digest: &Digest, bytes: &[u8]) -> Result<(), Error> {
        let dest = self.path_of(digest);
        if self.refresh_existing(&dest, bytes.len() as u64) {
            return Ok(());
        }
        if let Some(packed) = self.packs.find(digest)
            && packed.len == bytes.len() as u64
        {
            refresh_mtime(&packed.pack);
            return Ok(());
        }
        self.put_loose(digest, bytes)
    }

    /// Stores the file at `path` (read once: copied to a temp file while hashing), returning its
    /// digest and size. Idempotent.
    pub fn put_file(&self, path: &Path) -> Result<(Digest, u64), Error> {
        let mut source = File::open(path).map_err(|source| Error::io("open", path, source))?;
        let size = source
            .metadata()
            .map_err(|source| Error::io("stat", path, source))?
            .len();
        if size < COPY_BUFFER as u64 {
            // Small files are read whole: no copy buffer to allocate, and nothing to write
            // when the blob exists.
            let mut bytes = Vec::with_capacity(size as usize + 1);
            source
                .read_to_end(&mut bytes)
                .map_err(|source| Error::io("read", path, source))?;
            return Ok((self.put_bytes(&bytes)?, bytes.len() as u64));
        }
        let mut temp = self.temp_file()?;
        let temp_path = temp.path().to_owned();
        let mut hasher = blake3::Hasher::new();
        let size = copy_hashing(&mut source, path, &mut temp, &temp_path, &mut hasher)?;
        let digest = Digest::from(hasher.finalize());
        if self.refresh_existing(&self.path_of(&digest), size) {
            // The temp file is removed when dropped.
            return Ok((digest, size));
        }
        self.finish(temp, &digest)?;
        Ok((digest, size))
    }

    /// Reads a whole blob, verifying its digest.
    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>, Error> {
        let path = self.path_of(digest);
        let mut file = match self.open_blob(digest, &path)? {
            Blob::Loose(file) => file,
            Blob::Packed(packed) => return self.read_packed(digest, &packed),
        };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|source| Error::io("read", &path, source))?;
        let actual = Digest::of_bytes(&bytes);
        if actual != *digest {
            discard_damaged(&file, &path);
            return Err(Error::CorruptBlob {
                digest: *digest,
                actual,
                path,
            });
        }
        Ok(bytes)
    }

    /// Reads a whole blob, verifying its digest, as a [`VerifiedBlob`] (hashed once).
    pub fn read_verified(&self, digest: &Digest) -> Result<VerifiedBlob, Error> {
        let bytes = self.read(digest)?;
        Ok(VerifiedBlob::hashed(*digest, bytes.into()))
    }

    /// Streams a blob into `out` while hashing it; fails with `corrupt_blob` (after writing) if
    /// the bytes do not match, so the caller must discard `out` on error. Returns the size.
    pub fn copy_to(
        &self,
        digest: &Digest,
        out: &mut impl Write,
        out_path: &Path,
    ) -> Result<u64, Error> {
        let path = self.path_of(digest);
        let mut file = match self.open_blob(digest, &path)? {
            Blob::Loose(file) => file,
            Blob::Packed(packed) => {
                let bytes = self.read_packed(digest, &packed)?;
                out.write_all(&bytes)
                    .map_err(|source| Error::io("write", out_path, source))?;
                return Ok(bytes.len() as u64);
            }
        };
        copy_verified(&mut file, &path, digest, out, out_path)
    }

    /// Writes the blob `digest` to `dest` with permission bits `mode`: copied (verified while
    /// copying) into a temp file, given its mode through the open descriptor, and renamed onto
    /// `dest` (its parent directory is created when missing). Returns the file, open on what
    /// is now `dest`, and where its temp file was.
    ///
    /// The temp file is created in the blob's shard ([`RestoreTemp::Shard`]), not beside
    /// `dest`: see the module documentation for why. A `dest` on another file system than the
    /// CAS cannot be renamed onto: the verified copy is then written again beside `dest`
    /// ([`RestoreTemp::Beside`], named [`clab_model::atomic_write::TEMP_PREFIX`]`…`), and the
    /// caller should ask for that at once next time. On a mismatch (`corrupt_blob`) nothing is
    /// left at `dest` or in the shard, and the damaged blob is deleted.
    pub fn restore(
        &self,
        digest: &Digest,
        dest: &Path,
        mode: u32,
        temp_in: RestoreTemp,
    ) -> Result<(File, RestoreTemp), Error> {
        let path = self.path_of(digest);
        let mut blob = match self.open_blob(digest, &path)? {
            Blob::Loose(file) => file,
            Blob::Packed(packed) => {
                let blob = VerifiedBlob::hashed(*digest, self.read_packed(digest, &packed)?.into());
                return self.restore_verified(&blob, dest, mode, temp_in);
            }
        };
        self.restore_with(digest, dest, mode, temp_in, |temp, temp_path| {
            copy_verified(&mut blob, &path, digest, temp, temp_path).map(drop)
        })
    }

    /// [`restore`](Self::restore) of a blob in memory, verified when it was made: written
    /// as it is, nothing read from the CAS or hashed (a download restored at once; the CAS
    /// holds the blob too, or will).
    pub fn restore_verified(
        &self,
        blob: &VerifiedBlob,
        dest: &Path,
        mode: u32,
        temp_in: RestoreTemp,
    ) -> Result<(File, RestoreTemp), Error> {
        self.restore_with(blob.digest(), dest, mode, temp_in, |temp, temp_path| {
            temp.write_all(blob.bytes())
                .map_err(|source| Error::io("write", temp_path, source))
        })
    }

    /// [`restore`](Self::restore) with the blob's bytes written into the temp file by `fill`.
    fn restore_with(
        &self,
        digest: &Digest,
        dest: &Path,
        mode: u32,
        temp_in: RestoreTemp,
        fill: impl FnOnce(&mut File, &Path) -> Result<(), Error>,
    ) -> Result<(File, RestoreTemp), Error> {
        let mut temp = match temp_in {
            RestoreTemp::Shard => {
                let path = self.path_of(digest);
                self.temp_file_in(path.parent().unwrap_or(&self.root))?
            }
            RestoreTemp::Beside => temp_file_beside(dest)?,
        };
        let temp_path = temp.path().to_owned();
        fill(temp.as_file_mut(), &temp_path)?;
        temp.as_file()
            .set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|source| Error::io("set the mode of", &temp_path, source))?;
        match persist_creating_parent(temp, dest) {
            Ok(file) => Ok((file, temp_in)),
            Err((Some(mut temp), e)) if e.kind() == io::ErrorKind::CrossesDevices => {
                // The copy in the shard is verified: copy it beside `dest`.
                let mut beside = temp_file_beside(dest)?;
                let beside_path = beside.path().to_owned();
                temp.seek(io::SeekFrom::Start(0))
                    .and_then(|_| io::copy(temp.as_file_mut(), beside.as_file_mut()))
                    .map_err(|source| Error::io("write", &beside_path, source))?;
                beside
                    .as_file()
                    .set_permissions(fs::Permissions::from_mode(mode))
                    .map_err(|source| Error::io("set the mode of", &beside_path, source))?;
                let file = persist_creating_parent(beside, dest)
                    .map_err(|(_, source)| Error::io("rename a temp file to", dest, source))?;
                Ok((file, RestoreTemp::Beside))
            }
            Err((_, source)) => Err(Error::io("rename a temp file to", dest, source)),
        }
    }

    /// Deletes a blob; a blob that is already gone is not an error. A packed blob takes its
    /// pack with it, the pack's other blobs written out as files first.
    pub fn remove(&self, digest: &Digest) -> Result<(), Error> {
        self.remove_all(&HashSet::from([*digest]))
    }

    /// [`remove`](Self::remove) of every blob in `digests`; a pack whose blobs all go is
    /// deleted as it is, without writing the others out first.
    pub fn remove_all(&self, digests: &HashSet<Digest>) -> Result<(), Error> {
        let mut packs = BTreeSet::new();
        for digest in digests {
            remove_if_present(&self.path_of(digest))?;
            if let Some(packed) = self.packs.find(digest) {
                packs.insert(packed.pack);
            }
        }
        for pack in packs {
            self.unpack(&pack, &|d| digests.contains(d))?;
        }
        Ok(())
    }

    /// Writes the blobs of the pack `pack` that `gone` does not name out as files, then
    /// deletes the pack and its index. A blob that fails its digest is not written out.
    fn unpack(&self, pack: &Path, gone: &dyn Fn(&Digest) -> bool) -> Result<(), Error> {
        if let Ok(file) = File::open(pack) {
            for (digest, packed) in self.packs.blobs_of(pack) {
                if gone(&digest) || self.path_of(&digest).is_file() {
                    continue;
                }
                let Ok(bytes) = pack::read_at(&file, packed.offset, packed.len) else {
                    continue;
                };
                if Digest::of_bytes(&bytes) == digest {
                    self.put_loose(&digest, &bytes)?;
                }
            }
        }
        let removed =
            remove_if_present(&pack.with_extension("idx")).and_then(|()| remove_if_present(pack));
        // Read again at the next lookup, the pack gone (or, if it could not be removed, still
        // there, its blobs now files as well).
        self.packs.invalidate();
        removed
    }

    /// The blob's file, open, or where it is packed; `missing_blob` when neither.
    fn open_blob(&self, digest: &Digest, path: &Path) -> Result<Blob, Error> {
        match File::open(path) {
            Ok(file) => Ok(Blob::Loose(file)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => match self.packs.find(digest) {
                Some(packed) => Ok(Blob::Packed(packed)),
                None => Err(Error::blob_io(digest, path, e)),
            },
            Err(e) => Err(Error::blob_io(digest, path, e)),
        }
    }

    /// A packed blob's bytes, verified; on a mismatch the pack goes (its good blobs written
    /// out as files) and `corrupt_blob` names it.
    fn read_packed(&self, digest: &Digest, packed: &Packed) -> Result<Vec<u8>, Error> {
        let file = File::open(&packed.pack)
            .map_err(|source| Error::blob_io(digest, &packed.pack, source))?;
        let bytes = pack::read_at(&file, packed.offset, packed.len)
            .map_err(|source| Error::io("read", &packed.pack, source))?;
        let actual = Digest::of_bytes(&bytes);
        if actual != *digest {
            // Best effort: the damaged blob is not restored either way.
            let _ = self.unpack(&packed.pack, &|d| d == digest);
            return Err(Error::CorruptBlob {
                digest: *digest,
                actual,
                path: packed.pack.to_path_buf(),
            });
        }
        Ok(bytes)
    }

    /// Stores `bytes`, which hash to `digest`, as a file (not looking in the packs). The
    /// digest is known first: the temp file is written beside the blob's final name, so the
    /// rename stays within one directory.
    fn put_loose(&self, digest: &Digest, bytes: &[u8]) -> Result<(), Error> {
        let dest = self.path_of(digest);
        let shard = dest.parent().unwrap_or(&self.root);
        let mut temp = self.temp_file_in(shard)?;
        temp.write_all(bytes)
            .map_err(|source| Error::io("write", temp.path(), source))?;
        self.finish(temp, digest)
    }

    /// Every blob on disk, skipping temp files and anything whose name is not a digest.
    pub fn list(&self) -> Result<Vec<BlobInfo>, Error> {
        let mut blobs = Vec::new();
        for shard in read_dir_or_empty(&self.root)? {
            let shard_name = shard.file_name();
            let Some(prefix) = shard_name.to_str().filter(|s| s.len() == 2) else {
                continue;
            };
            for entry in read_dir_or_empty(&shard.path())? {
                let name = entry.file_name();
                let Some(rest) = name.to_str() else { continue };
                let Some(digest) = Digest::from_hex(&format!("{prefix}{rest}")) else {
                    continue;
                };
                let Ok(meta) = entry.metadata() else { continue };
                if !meta.is_file() {
                    continue;
                }
                blobs.push(BlobInfo {
                    digest,
                    size: meta.len(),
                    modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                });
            }
        }
        let loose: HashSet<Digest> = blobs.iter().map(|b| b.digest).collect();
        for (digest, packed) in self.packs.all() {
            if loose.contains(&digest) {
                continue;
            }
            let modified = fs::metadata(&packed.pack)
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            blobs.push(BlobInfo {
                digest,
                size: packed.len,
                modified,
            });
        }
        blobs.sort_by_key(|b| b.digest);
        Ok(blobs)
    }

    /// Temp files (`.tmp-*`) in `cas/` and its shards older than `cutoff`: left behind by
    /// killed writers.
    pub fn stale_temp_files(&self, cutoff: SystemTime) -> Result<Vec<PathBuf>, Error> {
        let mut stale = Vec::new();
        let mut sweep = |entries: Vec<fs::DirEntry>| {
            for entry in entries {
                let is_temp = entry
                    .file_name()
                    .to_str()
                    .is_some_and(|n| n.starts_with(TEMP_PREFIX));
                let old = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .is_ok_and(|t| t < cutoff);
                if is_temp && old {
                    stale.push(entry.path());
                }
            }
        };
        let top = read_dir_or_empty(&self.root)?;
        let shards: Vec<PathBuf> = top
            .iter()
            .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
            .map(fs::DirEntry::path)
            .collect();
        sweep(top);
        for shard in shards {
            sweep(read_dir_or_empty(&shard)?);
        }
        stale.extend(self.packs.stale_files(cutoff));
        stale.sort();
        Ok(stale)
    }

    fn temp_file(&self) -> Result<tempfile::NamedTempFile, Error> {
        self.temp_file_in(&self.root)
    }

    /// A temp file in `dir` (`cas/` or a shard), created if missing.
    fn temp_file_in(&self, dir: &Path) -> Result<tempfile::NamedTempFile, Error> {
        temp_file_named(dir, TEMP_PREFIX)
    }

    /// If the blob exists with `size` bytes, refresh its mtime (a writer is about to reference
    /// it) and say so. One of another size is damaged: the caller writes the blob again (the
    /// rename replaces it). Same-size damage is found by the next read, which deletes it.
    fn refresh_existing(&self, dest: &Path, size: u64) -> bool {
        if !fs::metadata(dest).is_ok_and(|meta| meta.is_file() && meta.len() == size) {
            return false;
        }
        refresh_mtime(dest);
        true
    }

    fn finish(&self, temp: tempfile::NamedTempFile, digest: &Digest) -> Result<(), Error> {
        let dest = self.path_of(digest);
        let temp = match temp.persist(&dest) {
            Ok(_) => return Ok(()),
            // The shard directory does not exist yet.
            Err(e) if e.error.kind() == io::ErrorKind::NotFound => e.file,
            Err(e) => return Err(Error::io("rename a temp file to", &dest, e.error)),
        };
        if let Some(shard) = dest.parent() {
            fs::create_dir_all(shard).map_err(|source| Error::io("create", shard, source))?;
        }
        temp.persist(&dest)
            .map_err(|e| Error::io("rename a temp file to", &dest, e.error))?;
        Ok(())
    }
}

/// Deletes the file at `path`; one already gone is not an error.
fn remove_if_present(path: &Path) -> Result<(), Error> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::io("remove", path, source)),
    }
}

/// Sets the mtime of the file at `path` to now. Best effort: a failed touch only makes the
/// blob look older to `prune`.
fn refresh_mtime(path: &Path) {
    if let Ok(file) = File::options().append(true).open(path) {
        let _ = file.set_modified(SystemTime::now());
    }
}

/// A blob as [`Cas::open_blob`] found it.
enum Blob {
    /// Its own file.
    Loose(File),
    /// In a pack.
    Packed(Packed),
}

/// Where [`Cas::restore`] creates its temp file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestoreTemp {
    /// In the blob's shard, renamed across directories onto the destination.
    Shard,
    /// Beside the destination (the CAS is on another file system).
    Beside,
}

/// Copies the blob `file` (at `path`) into `out` while hashing it; `corrupt_blob` (after
/// writing, and the blob deleted) if it does not hash to `digest`. Returns the size. A blob
/// smaller than the copy buffer is read whole (one `read` of its size + 1): no 256 KiB
/// zeroed buffer per output.
fn copy_verified(
    file: &mut File,
    path: &Path,
    digest: &Digest,
    out: &mut impl Write,
    out_path: &Path,
) -> Result<u64, Error> {
    let expected = file.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
    let mut hasher = blake3::Hasher::new();
    let size = if expected < COPY_BUFFER as u64 {
        let mut bytes = Vec::with_capacity(expected as usize + 1);
        file.read_to_end(&mut bytes)
            .map_err(|source| Error::io("read", path, source))?;
        hasher.update(&bytes);
        out.write_all(&bytes)
            .map_err(|source| Error::io("write", out_path, source))?;
        bytes.len() as u64
    } else {
        copy_hashing(file, path, out, out_path, &mut hasher)?
    };
    let actual = Digest::from(hasher.finalize());
    if actual != *digest {
        discard_damaged(file, path);
        return Err(Error::CorruptBlob {
            digest: *digest,
            actual,
            path: path.to_owned(),
        });
    }
    Ok(size)
}

/// Copies `from` (at `path`) to `out` (at `out_path`) through a [`COPY_BUFFER`], feeding
/// `hasher`; returns the number of bytes.
fn copy_hashing(
    from: &mut impl Read,
    path: &Path,
    out: &mut impl Write,
    out_path: &Path,
    hasher: &mut blake3::Hasher,
) -> Result<u64, Error> {
    let mut buffer = vec![0u8; COPY_BUFFER];
    let mut size = 0u64;
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) => return Ok(size),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => return Err(Error::io("read", path, source)),
        };
        hasher.update(&buffer[..n]);
        out.write_all(&buffer[..n])
            .map_err(|source| Error::io("write", out_path, source))?;
        size += n as u64;
    }
}

/// A temp file beside `dest` (named [`clab_model::atomic_write::TEMP_PREFIX`]`…`, which
/// output expansion skips), its directory created when missing.
pub(crate) fn temp_file_beside(dest: &Path) -> Result<tempfile::NamedTempFile, Error> {
    let parent = dest.parent().unwrap_or(Path::new("."));
    temp_file_named(parent, clab_model::atomic_write::TEMP_PREFIX)
}

/// A temp file named `prefix…` in `dir`, the directory created when missing.
pub(crate) fn temp_file_named(dir: &Path, prefix: &str) -> Result<tempfile::NamedTempFile, Error> {
    let create = || tempfile::Builder::new().prefix(prefix).tempfile_in(dir);
    match create() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir).map_err(|source| Error::io("create", dir, source))?;
            create()
        }
        created => created,
    }
    .map_err(|source| Error::io("create a temp file in", dir, source))
}

/// Renames `temp` onto `dest`, creating `dest`'s directory when the first rename finds it
/// missing (one `mkdir` per missing directory instead of one per output). On failure the
/// temp file comes back (unless creating the directory failed) with the cause.
fn persist_creating_parent(
    temp: tempfile::NamedTempFile,
    dest: &Path,
) -> Result<File, (Option<tempfile::NamedTempFile>, io::Error)> {
    match temp.persist(dest) {
        Ok(file) => Ok(file),
        Err(e) if e.error.kind() == io::ErrorKind::NotFound => {
            let parent = dest.parent().unwrap_or(Path::new("."));
            if let Err(error) = fs::create_dir_all(parent) {
                return Err((None, error));
            }
            e.file.persist(dest).map_err(|e| (Some(e.file), e.error))
        }
        Err(e) => Err((Some(e.file), e.error)),
    }
}

/// Delete the blob at `path` that `file` (open on it) was found damaged in, unless the path
/// now names another file (a writer replaced it meanwhile). Best effort.
fn discard_damaged(file: &File, path: &Path) {
    use std::os::unix::fs::MetadataExt;
    let read = file.metadata().ok().map(|m| (m.dev(), m.ino()));
    let now = fs::symlink_metadata(path).ok().map(|m| (m.dev(), m.ino()));
    if read.is_some() && read == now {
        let _ = fs::remove_file(path);
    }
}

/// See [`Cas::create_root`].
#[cfg(target_os = "linux")]
fn mark_top_dir(dir: &Path) {
    use rustix::fs::{IFlags, ioctl_getflags, ioctl_setflags};
    let Ok(dir) = File::open(dir) else { return };
    if let Ok(flags) = ioctl_getflags(&dir) {
        let _ = ioctl_setflags(&dir, flags | IFlags::TOPDIR);
    }
}

#[cfg(not(target_os = "linux"))]
fn mark_top_dir(_: &Path) {}

fn read_dir_or_empty(dir: &Path) -> Result<Vec<fs::DirEntry>, Error> {
    match fs::read_dir(dir) {
        Ok(entries) => Ok(entries.filter_map(Result::ok).collect()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(Error::io("read", dir, source)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn the_root_is_marked_the_top_of_a_hierarchy_where_flags_exist() {
        use rustix::fs::{IFlags, ioctl_getflags};
        let dir = tempfile::tempdir().unwrap();
        let cas = Cas::new(dir.path().join("cas"));
        cas.create_root();
        cas.create_root(); // again: nothing to do
        let root = File::open(cas.root()).unwrap();
        // File systems without inode flags (tmpfs) refuse the question; ext4 answers it.
        if let Ok(flags) = ioctl_getflags(&root) {
            assert!(flags.contains(IFlags::TOPDIR), "{flags:?}");
        }
    }

    /// A pack of `blobs` written through a writer of `cas` and finished.
    fn packed(cas: &Cas, blobs: &[&[u8]]) -> Vec<Digest> {
        let writer = cas.pack_writer();
        let digests = blobs
            .iter()
            .map(|bytes| {
                let blob = VerifiedBlob::hashed(Digest::of_bytes(bytes), bytes.to_vec().into());
                writer.put(&blob).unwrap();
                writer.put(&blob).unwrap();
                *blob.digest()
            })
            .collect();
        assert_eq!(writer.finish().unwrap(), blobs.len());
        digests
    }

    #[test]
    fn a_packed_blob_is_found_read_copied_restored_and_listed_as_a_file_is() {
        let dir = tempfile::tempdir().unwrap();
        let cas = Cas::new(dir.path().join("cas"));
        let unfinished = cas.pack_writer();
        unfinished
            .put(&VerifiedBlob::hashed(
                Digest::of_bytes(b"x"),
                b"x".to_vec().into(),
            ))
            .unwrap();
        drop(unfinished);
        assert!(
            !cas.contains(&Digest::of_bytes(b"x")),
            "dropped unfinished: nothing"
        );
        assert_eq!(
            fs::read_dir(dir.path().join("cas/packs")).unwrap().count(),
            0
        );

        let [a, b] = packed(&cas, &[b"alpha", b"beta!"])[..] else {
            panic!()
        };
        // Another process (a fresh `Cas`) sees what this one wrote.
        let other = Cas::new(dir.path().join("cas"));
        for cas in [&cas, &other] {
            assert!(cas.contains(&a) && cas.contains(&b));
            assert!(!cas.path_of(&a).exists(), "no file of its own");
            assert_eq!(cas.read(&a).unwrap(), b"alpha");
            assert_eq!(cas.size_of(&b), Some(5));
            let mut out = Vec::new();
            assert_eq!(cas.copy_to(&b, &mut out, Path::new("out")).unwrap(), 5);
            assert_eq!(out, b"beta!");
            let dest = dir.path().join("out/a.txt");
            cas.restore(&a, &dest, 0o640, RestoreTemp::Shard).unwrap();
            assert_eq!(fs::read(&dest).unwrap(), b"alpha");
            let listed: Vec<(Digest, u64)> = cas
                .list()
                .unwrap()
                .iter()
                .map(|b| (b.digest, b.size))
                .collect();
            let mut expected = vec![(a, 5), (b, 5)];
            expected.sort();
            assert_eq!(listed, expected);
        }
        // Putting a packed blob again writes no file.
        cas.put_bytes(b"alpha").unwrap();
        assert!(!cas.path_of(&a).exists());
    }

    #[test]
    fn a_damaged_or_removed_packed_blob_takes_its_pack_and_leaves_the_others_as_files() {
        let dir = tempfile::tempdir().unwrap();
        let cas = Cas::new(dir.path().join("cas"));
        let [a, b, c] = packed(&cas, &[b"alpha", b"beta!", b"gamma"])[..] else {
            panic!()
        };
        let pack = cas.packs.find(&a).unwrap().pack;
        // Flip the first blob's bytes in place.
        let mut bytes = fs::read(&pack).unwrap();
        bytes[0] ^= 1;
        fs::write(&pack, &bytes).unwrap();
        let err = cas.read(&a).unwrap_err();
        assert!(
            matches!(err, Error::CorruptBlob { digest, .. } if digest == a),
            "{err}"
        );
        assert!(!cas.contains(&a));
        assert!(!pack.exists() && !pack.with_extension("idx").exists());
        assert_eq!(cas.read(&b).unwrap(), b"beta!");
        assert!(cas.path_of(&b).is_file() && cas.path_of(&c).is_file());

        // A pack whose blobs all go is deleted without writing any out.
        let [x, y] = packed(&cas, &[b"x", b"y"])[..] else {
            panic!()
        };
        cas.remove_all(&[x, y].into()).unwrap();
        assert!(!cas.contains(&x) && !cas.contains(&y));
        assert!(!cas.path_of(&x).exists() && !cas.path_of(&y).exists());

        let [d, e] = packed(&cas, &[b"delta", b"epsilon"])[..] else {
            panic!()
        };
        cas.remove(&d).unwrap();
        assert!(!cas.contains(&d));
        assert_eq!(cas.read(&e).unwrap(), b"epsilon");
        assert!(cas.path_of(&e).is_file());
        assert_eq!(
            fs::read_dir(dir.path().join("cas/packs")).unwrap().count(),
            0
        );
    }

    #[test]
    fn an_index_without_its_pack_lists_nothing_and_is_swept_once_old() {
        let dir = tempfile::tempdir().unwrap();
        let cas = Cas::new(dir.path().join("cas"));
        let [a] = packed(&cas, &[b"alpha"])[..] else {
            panic!()
        };
        let pack = cas.packs.find(&a).unwrap().pack;
        fs::remove_file(&pack).unwrap();
        // Seen by the next process (this one looks at the directory again within 100 ms).
        let cas = Cas::new(dir.path().join("cas"));
        assert!(!cas.contains(&a));
        assert!(cas.list().unwrap().is_empty());
        let index = pack.with_extension("idx");
        assert!(
            cas.stale_temp_files(SystemTime::UNIX_EPOCH)
                .unwrap()
                .is_empty()
        );
        let later = SystemTime::now() + std::time::Duration::from_secs(60);
        assert_eq!(cas.stale_temp_files(later).unwrap(), [index]);
    }

    #[test]
    fn put_read_round_trip_and_layout() {
        let dir = tempfile::tempdir().unwrap();
        let cas = Cas::new(dir.path().join("cas"));
        let digest = cas.put_bytes(b"hello blob").unwrap();
        let hex = digest.to_hex();
        let expected = dir.path().join("cas").join(&hex[..2]).join(&hex[2..]);
        assert_eq!(cas.path_of(&digest), expected);
        assert!(expected.is_file());
        assert_eq!(cas.read(&digest).unwrap(), b"hello blob");
        let blob = cas.read_verified(&digest).unwrap();
        assert_eq!((blob.digest(), blob.bytes()), (&digest, &b"hello blob"[..]));
        // A damaged blob is not read as a verified one.
        fs::write(&expected, b"hello blub").unwrap();
        assert!(matches!(
            cas.read_verified(&digest),
            Err(Error::CorruptBlob { .. })
        ));
        // Idempotent: a second put returns the same digest and leaves one blob.
        assert_eq!(cas.put_bytes(b"hello blob").unwrap(), digest);
        assert_eq!(cas.list().unwrap().len(), 1);
        // No temp files remain.
        assert!(
            cas.stale_temp_files(SystemTime::now() + std::time::Duration::from_secs(60))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn put_file_matches_put_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let cas = Cas::new(dir.path().join("cas"));
        // Streamed (larger than the copy buffer), read whole, and empty.
        for len in [1_000_000u32, 80_000, 0] {
            let src = dir.path().join(format!("{len}.bin"));
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            fs::write(&src, &data).unwrap();
            let (digest, size) = cas.put_file(&src).unwrap();
            assert_eq!(size, data.len() as u64);
            assert_eq!(digest, Digest::of_bytes(&data));
            assert_eq!(cas.read(&digest).unwrap(), data);
            // Again: the blob exists, nothing changes.
            assert_eq!(cas.put_file(&src).unwrap(), (digest, size));
        }
        assert_eq!(cas.list().unwrap().len(), 3);
    }

    /// Every file below `dir`, relative, sorted (temp files included).
    /// No restore or store left a temp file anywhere below `dir`.
    fn assert_no_temp_files(dir: &Path) {
        let leftover: Vec<String> = files_below(dir)
            .into_iter()
            .filter(|name| name.contains("tmp"))
            .collect();
        assert!(leftover.is_empty(), "{leftover:?}");
    }

    fn files_below(dir: &Path) -> Vec<String> {
        let mut found = Vec::new();
        let mut stack = vec![dir.to_owned()];
        while let Some(next) = stack.pop() {
            for entry in fs::read_dir(&next).into_iter().flatten().flatten() {
                if entry.file_type().unwrap().is_dir() {
                    stack.push(entry.path());
                } else {
                    let rel = entry.path().strip_prefix(dir).unwrap().to_owned();
                    found.push(rel.to_string_lossy().into_owned());
                }
            }
        }
        found.sort();
        found
    }

    #[test]
    fn restore_writes_the_blob_with_its_mode_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let cas = Cas::new(dir.path().join("cas"));
        // Read whole and streamed; modes outside any umask.
        for (len, mode) in [(5_000u32, 0o777), (600_000, 0o600), (0, 0o666)] {
            let data: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
            let digest = cas.put_bytes(&data).unwrap();
            // The directory is missing: the restore creates it.
            let dest = dir.path().join(format!("out/{len}/file.bin"));
            for temp_in in [RestoreTemp::Shard, RestoreTemp::Beside] {
                let (file, used) = cas.restore(&digest, &dest, mode, temp_in).unwrap();
                assert_eq!(used, temp_in);
                assert_eq!(fs::read(&dest).unwrap(), data);
                let meta = fs::metadata(&dest).unwrap();
                assert_eq!(meta.permissions().mode() & 0o7777, mode);
                // The descriptor is open on the file now at `dest` (its stat is recorded).
                use std::os::unix::fs::MetadataExt;
                assert_eq!(file.metadata().unwrap().ino(), meta.ino());
                // A blob is never touched by its restore: it keeps its bytes.
                assert_eq!(cas.read(&digest).unwrap(), data);
            }
        }
        assert_no_temp_files(dir.path());
    }

    #[test]
    fn a_verified_blob_is_stored_and_restored_from_memory() {
        let dir = tempfile::tempdir().unwrap();
        let cas = Cas::new(dir.path().join("cas"));
        let data: Vec<u8> = (0..82_000u32).map(|i| (i % 251) as u8).collect();
        let digest = Digest::of_bytes(&data);
        let blob = VerifiedBlob::verify(bytes::Bytes::from(data.clone()), &digest).unwrap();
        // Restored before the CAS holds it: the bytes come from memory, not from the CAS.
        let dest = dir.path().join("out/t.bin");
        for temp_in in [RestoreTemp::Shard, RestoreTemp::Beside] {
            let (file, used) = cas.restore_verified(&blob, &dest, 0o640, temp_in).unwrap();
            assert_eq!(used, temp_in);
            assert_eq!(fs::read(&dest).unwrap(), data);
            assert_eq!(
                file.metadata().unwrap().permissions().mode() & 0o7777,
                0o640
            );
        }
        assert!(!cas.contains(&digest));
        // Stored as `put_bytes` would store it, and read back verified.
        cas.put_verified(&blob).unwrap();
        assert_eq!(
            cas.path_of(&digest),
            cas.path_of(&cas.put_bytes(&data).unwrap())
        );
        assert_eq!(cas.read(&digest).unwrap(), data);
        assert_no_temp_files(dir.path());
    }

    #[test]
    fn restore_refuses_a_corrupt_blob_and_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let cas = Cas::new(dir.path().join("cas"));
        for (len, temp_in) in [
            (4096usize, RestoreTemp::Shard),
            (300_000, RestoreTemp::Beside),
        ] {
            let data = vec![7u8; len];
            let digest = cas.put_bytes(&data).unwrap();
            let mut bad = data.clone();
            bad[len / 2] = 8;
            fs::write(cas.path_of(&digest), &bad).unwrap();
            let dest = dir.path().join("out/a.bin");
            let err = cas.restore(&digest, &dest, 0o644, temp_in).unwrap_err();
            assert!(matches!(err, Error::CorruptBlob { .. }), "{err:?}");
            // Nothing at the destination, no temp file anywhere, the damaged blob deleted.
            assert!(!dest.exists());
            assert_eq!(files_below(dir.path()), Vec::<String>::new(), "{temp_in:?}");
            let err = cas.restore(&digest, &dest, 0o644, temp_in).unwrap_err();
            assert!(matches!(err, Error::MissingBlob { .. }), "{err:?}");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn restore_across_file_systems_goes_beside_the_destination() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        // /dev/shm is a tmpfs on Linux; where it shares the temp dir's device there is no
        // second file system to cross, and the case cannot be built.
        let Ok(other) = tempfile::tempdir_in("/dev/shm") else {
            eprintln!("no /dev/shm: the cross-device case is not built here");
            return;
        };
        let dev = |p: &Path| fs::metadata(p).unwrap().dev();
        if dev(dir.path()) == dev(other.path()) {
            eprintln!("/dev/shm is on the temp dir's device: nothing to cross");
            return;
        }
        let cas = Cas::new(dir.path().join("cas"));
        let digest = cas.put_bytes(b"across").unwrap();
        let dest = other.path().join("out/a.txt");
        let (_, used) = cas
            .restore(&digest, &dest, 0o751, RestoreTemp::Shard)
            .unwrap();
        assert_eq!(used, RestoreTemp::Beside);
        assert_eq!(fs::read(&dest).unwrap(), b"across");
        assert_eq!(
            fs::metadata(&dest).unwrap().permissions().mode() & 0o7777,
            0o751
        );
        assert_eq!(files_below(other.path()), ["out/a.txt"]);
        assert!(!files_below(dir.path()).iter().any(|f| f.contains("tmp")));
    }

    #[test]
    fn corrupt_blob_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let cas = Cas::new(dir.path().join("cas"));
        let digest = cas.put_bytes(b"original").unwrap();
        fs::write(cas.path_of(&digest), b"tampered").unwrap();
        let err = cas.read(&digest).unwrap_err();
        assert!(matches!(err, Error::CorruptBlob { .. }), "{err:?}");
        // Deleted once found: then it is missing.
        let mut out = Vec::new();
        let err = cas
            .copy_to(&digest, &mut out, Path::new("out"))
            .unwrap_err();
        assert!(matches!(err, Error::MissingBlob { .. }), "{err:?}");
        cas.put_bytes(b"original").unwrap();
        fs::write(cas.path_of(&digest), b"tampered").unwrap();
        let err = cas
            .copy_to(&digest, &mut out, Path::new("out"))
            .unwrap_err();
        assert!(matches!(err, Error::CorruptBlob { .. }), "{err:?}");
    }

    #[test]
    fn a_corrupt_blob_is_replaced_by_the_next_good_store_issue_18() {
        let dir = tempfile::tempdir().unwrap();
        let cas = Cas::new(dir.path().join("cas"));
        let content = vec![42u8; 300_000];
        let src = dir.path().join("big.bin");
        fs::write(&src, &content).unwrap();
        for (put, size_kept) in [
            ("bytes", true),
            ("bytes", false),
            ("file", true),
            ("file", false),
        ] {
            let digest = cas.put_bytes(&content).unwrap();
            // Damage: a flipped byte (same size), or a truncation.
            let mut damaged = content.clone();
            if size_kept {
                damaged[1000] ^= 0xff;
            } else {
                damaged.truncate(1000);
            }
            fs::write(cas.path_of(&digest), &damaged).unwrap();
            if size_kept {
                // Same size: the store cannot tell without reading; the read finds it, fails,
                // and deletes it.
                let mut out = Vec::new();
                let err = cas
                    .copy_to(&digest, &mut out, Path::new("out"))
                    .unwrap_err();
                assert!(matches!(err, Error::CorruptBlob { .. }), "{err:?}");
                assert!(!cas.contains(&digest), "the damaged blob is gone");
            }
            // The next good store of the same content writes it again.
            let stored = match put {
                "bytes" => cas.put_bytes(&content).unwrap(),
                _ => cas.put_file(&src).unwrap().0,
            };
            assert_eq!(stored, digest);
            assert_eq!(cas.read(&digest).unwrap(), content, "{put}, {size_kept}");
        }
        // `read` deletes a damaged blob too.
        let digest = cas.put_bytes(b"log").unwrap();
        fs::write(cas.path_of(&digest), b"LOG").unwrap();
        assert!(cas.read(&digest).is_err());
        assert!(!cas.contains(&digest));
    }

    #[test]
    fn temp_file_left_by_killed_writer_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let cas = Cas::new(dir.path().join("cas"));
        let digest = Digest::of_bytes(b"complete content");
        // A writer died after writing half of the blob into its temp file.
        fs::create_dir_all(cas.root()).unwrap();
        let leftover = cas.root().join(format!("{TEMP_PREFIX}killed"));
        fs::write(&leftover, b"complete").unwrap();
        assert!(!cas.contains(&digest));
        assert!(cas.read(&digest).is_err());
        assert!(cas.list().unwrap().is_empty());
        // A later writer of the same content succeeds and reads back the whole blob.
        assert_eq!(cas.put_bytes(b"complete content").unwrap(), digest);
        assert_eq!(cas.read(&digest).unwrap(), b"complete content");
        assert_eq!(cas.list().unwrap().len(), 1);
        // Another one, left in a shard (where small blobs are written).
        let shard = cas.path_of(&digest).parent().unwrap().to_owned();
        let in_shard = shard.join(format!("{TEMP_PREFIX}killed"));
        fs::write(&in_shard, b"compl").unwrap();
        assert_eq!(cas.list().unwrap().len(), 1);
        assert_eq!(cas.read(&digest).unwrap(), b"complete content");
        // Both are reported as stale once they are older than the cutoff, not before.
        assert!(
            cas.stale_temp_files(SystemTime::UNIX_EPOCH)
                .unwrap()
                .is_empty()
        );
        let later = SystemTime::now() + std::time::Duration::from_secs(60);
        let mut expected = vec![leftover, in_shard];
        expected.sort();
        assert_eq!(cas.stale_temp_files(later).unwrap(), expected);
    }
}
