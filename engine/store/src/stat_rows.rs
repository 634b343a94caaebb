//! The stat cache's rows in `cache.db`: one row per directory (`stat_dirs`), its files'
//! entries packed in one BLOB.
//!
//! In: stat-cache entries keyed by path bytes. Out: `(dir, entries)` rows, and the entries back
//! from them. The SQL lives in the store (`Store::flush_stat_cache` and its readers); this
//! module only cuts paths and packs entries.
//!
//! Why not one row per file: a cold run records every input it hashed — 40,000 on the
//! 2,000-task benchmark — and saving those as 40,000 rows cost ~75 ms of CPU (SQLite's B-tree
//! work per row, and a path index as large as the table) plus a 17 ms checkpoint, on the
//! critical path of a restore from a shared cache into a fresh checkout. As 2,000 rows of
//! twenty entries the restore's CPU fell by ~60 ms and its wall time by ~45 ms (bench/notes.md,
//! shared cache, eighth round). What it costs instead: a change to one file rewrites its
//! directory's row (a 1,000-file directory: ~80 KB).
//!
//! Format of `entries`: the byte [`FORMAT`], the number of files (`u32`, little-endian), then
//! per file, sorted by name without repeats:
//! the name's length (`u16`, little-endian), the name's bytes, then `size`, `mtime_ns`,
//! `ctime_ns`, `inode`, `written_ns` (8 bytes each, little-endian) and the 32-byte hash.
//!
//! Invariants: [`split`] and [`join`] round-trip any path's bytes; a BLOB that does not decode
//! whole is dropped whole (its files are hashed again: it is a cache); a name longer than
//! `u16::MAX` bytes (no file system allows one) is not stored.

use crate::Digest;
use crate::stat_cache::StatEntry;

/// The first byte of every `entries` BLOB this build writes.
pub(crate) const FORMAT: u8 = 1;

/// Bytes of one entry besides its name: length, five numbers, the hash.
const FIXED: usize = 2 + 5 * 8 + 32;

/// `path` as its directory (everything up to and including the last `/`; empty when there is
/// none) and its name.
pub(crate) fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(slash) => path.split_at(slash + 1),
        None => (&[], path),
    }
}

/// The path `split` cut into `dir` and `name`.
pub(crate) fn join(dir: &[u8], name: &[u8]) -> Box<[u8]> {
    let mut path = Vec::with_capacity(dir.len() + name.len());
    path.extend_from_slice(dir);
    path.extend_from_slice(name);
    path.into_boxed_slice()
}

/// The `entries` BLOB of `files`, which must be sorted by name without repeats.
pub(crate) fn encode(files: &[(&[u8], StatEntry)]) -> Vec<u8> {
    let stored = || {
        files
            .iter()
            .filter(|(name, _)| name.len() <= usize::from(u16::MAX))
    };
    let size = stored().map(|(name, _)| FIXED + name.len()).sum::<usize>();
    let mut blob = Vec::with_capacity(5 + size);
    blob.push(FORMAT);
    blob.extend_from_slice(&(stored().count() as u32).to_le_bytes());
    for (name, entry) in stored() {
        blob.extend_from_slice(&(name.len() as u16).to_le_bytes());
        blob.extend_from_slice(name);
        blob.extend_from_slice(&entry.size.to_le_bytes());
        blob.extend_from_slice(&entry.mtime_ns.to_le_bytes());
        blob.extend_from_slice(&entry.ctime_ns.to_le_bytes());
        blob.extend_from_slice(&entry.inode.to_le_bytes());
        blob.extend_from_slice(&entry.written_ns.to_le_bytes());
        blob.extend_from_slice(entry.hash.as_bytes());
    }
    blob
}

/// The files of an `entries` BLOB, in its order; `None` when it is not one this build wrote
/// (another format, cut short, or with bytes after its files).
pub(crate) fn decode(blob: &[u8]) -> Option<Vec<(&[u8], StatEntry)>> {
    let (&format, rest) = blob.split_first()?;
    if format != FORMAT {
        return None;
    }
    let (count, mut rest) = rest.split_first_chunk::<4>()?;
    let count = u32::from_le_bytes(*count) as usize;
    // Every file takes `FIXED` bytes at least: a count the bytes cannot hold is damage.
    if count > rest.len() / FIXED {
        return None;
    }
    let mut files = Vec::with_capacity(count);
    for _ in 0..count {
        let (len, after) = rest.split_first_chunk::<2>()?;
        let len = u16::from_le_bytes(*len) as usize;
        if after.len() < len + FIXED - 2 {
            return None;
        }
        let (name, after) = after.split_at(len);
        let (numbers, after) = after.split_first_chunk::<40>()?;
        let (hash, after) = after.split_first_chunk::<32>()?;
        let number = |i: usize| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&numbers[i * 8..i * 8 + 8]);
            bytes
        };
        files.push((
            name,
            StatEntry {
                size: u64::from_le_bytes(number(0)),
                mtime_ns: i64::from_le_bytes(number(1)),
                ctime_ns: i64::from_le_bytes(number(2)),
                inode: u64::from_le_bytes(number(3)),
                written_ns: i64::from_le_bytes(number(4)),
                hash: Digest(*hash),
            },
        ));
        rest = after;
    }
    rest.is_empty().then_some(files)
}

/// `stored` (a row's files, sorted by name) with `changed` (sorted by name, without repeats)
/// in place of the files of the same name: sorted by name, without repeats.
pub(crate) fn merge<'a>(
    stored: Vec<(&'a [u8], StatEntry)>,
    changed: &[(&'a [u8], StatEntry)],
) -> Vec<(&'a [u8], StatEntry)> {
    let mut merged = Vec::with_capacity(stored.len() + changed.len());
    let mut stored = stored.into_iter().peekable();
    for &(name, entry) in changed {
        while let Some(older) = stored.next_if(|(old, _)| *old < name) {
            merged.push(older);
        }
        stored.next_if(|(old, _)| *old == name);
        merged.push((name, entry));
    }
    merged.extend(stored);
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u8) -> StatEntry {
        StatEntry {
            size: u64::from(n) + (1 << 40),
            mtime_ns: -i64::from(n),
            ctime_ns: i64::MAX - i64::from(n),
            inode: u64::MAX - u64::from(n),
            hash: Digest([n; 32]),
            written_ns: i64::MIN + i64::from(n),
        }
    }

    #[test]
    fn paths_split_at_their_last_slash_and_join_back() {
        for path in [
            &b"/a/b/c.txt"[..],
            b"/c",
            b"c",
            b"dir/",
            b"",
            b"/a/\xff\xfe",
        ] {
            let (dir, name) = split(path);
            assert!(!name.contains(&b'/'), "{path:?}");
            assert_eq!(&*join(dir, name), path);
        }
        assert_eq!(split(b"/a/b/c.txt"), (&b"/a/b/"[..], &b"c.txt"[..]));
    }

    #[test]
    fn entries_round_trip_and_a_damaged_blob_decodes_to_nothing() {
        let files = [
            (&b""[..], entry(0)),
            (b"a.txt", entry(1)),
            (b"\xffbytes", entry(2)),
        ];
        let blob = encode(&files);
        assert_eq!(blob.len(), 5 + 3 * FIXED + 5 + 6);
        assert_eq!(decode(&blob).unwrap(), files);
        assert_eq!(decode(&encode(&[])).unwrap(), []);
        for cut in 0..blob.len() {
            assert_eq!(decode(&blob[..cut]), None, "cut at {cut}");
        }
        let mut longer = blob.clone();
        longer.push(0);
        assert_eq!(decode(&longer), None);
        let mut other = blob.clone();
        other[0] = FORMAT + 1;
        assert!(decode(&other).is_none());
    }

    #[test]
    fn a_name_too_long_for_its_length_is_left_out() {
        let long = vec![b'x'; 70_000];
        let blob = encode(&[(&b"a"[..], entry(1)), (&long, entry(2)), (b"b", entry(3))]);
        assert_eq!(
            decode(&blob).unwrap(),
            [(&b"a"[..], entry(1)), (&b"b"[..], entry(3))]
        );
    }

    #[test]
    fn changed_files_replace_stored_ones_of_their_name_and_keep_the_order() {
        let stored = vec![(&b"a"[..], entry(1)), (b"c", entry(3)), (b"e", entry(5))];
        let changed = [(&b"b"[..], entry(12)), (b"c", entry(13)), (b"f", entry(16))];
        let names = |files: &[(&[u8], StatEntry)]| -> Vec<(Vec<u8>, u8)> {
            files
                .iter()
                .map(|(name, e)| (name.to_vec(), e.hash.0[0]))
                .collect()
        };
        assert_eq!(
            names(&merge(stored, &changed)),
            [
                (b"a".to_vec(), 1),
                (b"b".to_vec(), 12),
                (b"c".to_vec(), 13),
                (b"e".to_vec(), 5),
                (b"f".to_vec(), 16)
            ]
        );
        assert_eq!(names(&merge(Vec::new(), &changed)).len(), 3);
        assert_eq!(names(&merge(vec![(&b"z"[..], entry(9))], &[])).len(), 1);
    }
}
