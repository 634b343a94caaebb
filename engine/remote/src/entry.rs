//! The remote entry format, version 2 ([`FORMAT_VERSION`]); readers also take version 1.
//!
//! In: a cache key and the [`CachedResult`] saved under it (and, for a writer, the small blobs
//! to carry inline). Out: a [`Manifest`] (the object stored under `ac/<key>`) that names its
//! blobs — carried inline after the JSON, or stored under `cas/<blake3 hex>`; on the way back,
//! a manifest that is checked against the key, the format's rules and the reader's trusted
//! keys before any blob is fetched, and whose inline blobs are each hashed before use.
//!
//! ```text
//! ac/<key>         the manifest: compact JSON (UTF-8, one line), then, when it carries
//!                  blobs inline, `\n` and their raw bytes one after the other, in the order
//!                  of `inline`; written last
//! cas/<digest>     raw bytes of each output and of the log not carried inline, named by the
//!                  lowercase hex blake3 of the bytes, written first
//!
//! {"format":"clab-remote-entry","version":2,
//!  "key":"<cache key>","task":"build","status":"ok","duration_ms":1200,
//!  "outputs":[{"path":"out/app","digest":"<hex>","size":5120,"mode":493}],
//!  "log":"<hex>"|null,
//!  "inline":[{"digest":"<hex>","size":5120}],       (left out when empty)
//!  "signer":"ed25519:<base64>"|null,"signature":"<base64 of 64 bytes>"|null}
//! ```
//!
//! Version 2 adds `inline` and the bytes after the JSON; version 1 had neither (a version 1
//! manifest is a version 2 one that carries nothing, apart from its `version`).
//!
//! Rules a reader enforces (a violation is a miss, [`MissReason::BadManifest`]):
//! - `format` is `clab-remote-entry`; a `version` above [`FORMAT_VERSION`] is
//!   [`MissReason::NewerFormat`]; unknown fields are refused (any change bumps the version).
//! - `key` equals the key it was fetched under, so an entry copied under another key is
//!   refused (and, when signed, cannot be altered to match).
//! - Outputs are sorted by `path`, paths unique, relative, `/`-separated, without `.`, `..` or
//!   empty components; `mode` holds permission bits only (`<= 0o7777`); a digest named twice
//!   has one size.
//! - Each `inline` digest is one of the entry's blobs (an output's or the log), named once,
//!   with the output's size when an output names it; the sizes add up to exactly the bytes
//!   after the JSON's `\n`. Version 1 carries nothing inline.
//! - `signer` and `signature` are both present or both absent. The signature is ed25519 over
//!   [`SIGNING_CONTEXT`] followed by the compact JSON of every other field, in the order above
//!   (`format`, `version`, `key`, `task`, `status`, `duration_ms`, `outputs` as given, `log`,
//!   `inline` when not empty, `signer`): serde_json's encoding of the parsed values, so the
//!   reader re-encodes what it parsed and checks that. The inline bytes are not in the
//!   signed text; their digests and sizes are, and each inline blob must hash to its digest
//!   ([`Manifest::inline_blobs`], [`MissReason::BlobMismatch`] otherwise), exactly as a
//!   blob downloaded from `cas/` must: the signature binds them through blake3 either way.
//! - When trusted keys are set, an unsigned entry is [`MissReason::Unsigned`] and one signed by
//!   another key [`MissReason::UntrustedSigner`]; a signed entry whose signature fails is
//!   [`MissReason::BadSignature`] whatever the trusted keys.
//!
//! Which blobs a writer carries inline ([`inline_choice`]): outputs and logs of at most
//! [`INLINE_BLOB_MAX`] bytes, smallest first, while the carried bytes stay within
//! [`INLINE_TOTAL_MAX`]. Why there: carrying a blob saves the reader a round trip (one `GET`
//! per entry instead of two; the writer a `HEAD` and a `PUT`) and costs the bytes of blobs the
//! reader already held (which a `cas/` blob would not have cost: its download is skipped),
//! plus a bigger manifest for `--dry-run` and `explain`, which read manifests only. A round
//! trip is worth about latency × bandwidth bytes: 0.1 ms × ~1 GB/s on loopback, 20 ms ×
//! 12.5 MB/s (100 Mbit/s) = 250 KB to a hosted cache. Below 128 KiB a carried blob costs at
//! most about the round trip it saves; 256 KiB per manifest bounds what a dry run reads per
//! task. The 2,000-task benchmark's outputs are 82 KB each: all carried. Raw bytes after
//! the JSON rather than base64 inside it: no third more bytes to send, and no 110 KB string
//! for serde_json to scan and copy and for base64 to decode per entry — the reader slices
//! the body it received.
//!
//! Bounds: a reader downloads at most [`MANIFEST_MAX`] bytes of a manifest, a blob's size as
//! its manifest gives it, and [`LOG_BLOB_MAX`] of a log whose size the manifest does not
//! give; an object over its bound is a miss ([`MissReason::TooLarge`]), found without
//! holding more than the bound. A writer does not upload an entry a reader would refuse so.
//!
//! Blobs are verified by the fetcher ([`crate::RemoteCache::fetch`]): each is hashed (and its
//! size compared) before it enters the local CAS, and the result is handed back only when all
//! of them did. Writers upload every `cas/` blob before the manifest, so a reader that finds a
//! manifest finds its blobs unless they were evicted since. The one exception is the empty
//! blob (`af1349b9…`, an empty log or output): it is never uploaded, never carried and never
//! downloaded, since every reader can make it, and some servers cannot store it (nginx's
//! WebDAV answers 500 to a `PUT` with an empty body).

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use clab_store::{CachedResult, Digest, OutputEntry, VerifiedBlob};
use serde::{Deserialize, Serialize};

use crate::miss_reason::MissReason;
use crate::signing::{PublicKey, SigningKey, TrustedKeys};

/// The version of the entry format described in this module's documentation.
pub const FORMAT_VERSION: u32 = 2;

/// The largest blob a writer carries inline (see the module documentation).
pub const INLINE_BLOB_MAX: u64 = 128 * 1024;

/// The most bytes of blobs one manifest carries inline.
pub const INLINE_TOTAL_MAX: u64 = 256 * 1024;

/// The most bytes of JSON a manifest may have (see [`MANIFEST_MAX`]).
pub const MANIFEST_JSON_MAX: u64 = 8 * 1024 * 1024;

/// The largest manifest a reader downloads, and a writer uploads: [`MANIFEST_JSON_MAX`] bytes
/// of JSON, the `\n`, and [`INLINE_TOTAL_MAX`] bytes of carried blobs. An output costs about
/// 100 bytes of JSON plus its path (`{"path":…,"digest":<64 hex>,"size":…,"mode":…}`), so
/// 8 MiB holds some 40,000 outputs with 100-byte paths; a task with more is not shared. Bigger
/// answers are a miss ([`MissReason::TooLarge`]): a hostile or broken server cannot make a
/// reader hold more than this per manifest (16 are fetched at once: at most ~132 MiB).
pub const MANIFEST_MAX: u64 = MANIFEST_JSON_MAX + 1 + INLINE_TOTAL_MAX;

/// The largest log a reader downloads, and a writer uploads, when the manifest does not give
/// its size (a log that is not also an output and is not carried inline: manifests give
/// outputs' sizes, not the log's). A log can be any size (`exec::task_log` spills long ones
/// to disk and stores them whole; issue 18 saw 100 MB); 256 MiB leaves room for that, and is
/// half of Redis's largest value. Every other blob is bounded by the size its manifest gives.
pub const LOG_BLOB_MAX: u64 = 256 * 1024 * 1024;

/// The value of a manifest's `format` field.
pub const FORMAT_NAME: &str = "clab-remote-entry";

/// What a signature covers first, before the manifest's fields.
pub const SIGNING_CONTEXT: &[u8] = b"clab remote cache entry\0";

/// One output file in a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryOutput {
    /// Path relative to the project root, `/`-separated.
    pub path: String,
    /// blake3 of its content: the blob's name under `cas/`.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
}

/// One blob a manifest carries inline, in the order of the bytes after its JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InlineBlob {
    /// blake3 of its bytes.
    pub digest: Digest,
    /// How many bytes.
    pub size: u64,
}

/// A remote entry's manifest (see the module documentation for the format).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always [`FORMAT_NAME`].
    pub format: String,
    /// [`FORMAT_VERSION`] when written by this clab.
    pub version: u32,
    /// The cache key the entry is stored under.
    pub key: String,
    /// Display id of the node that produced it.
    pub task: String,
    /// The caller's label for the outcome (`ok`).
    pub status: String,
    /// How long the task ran.
    pub duration_ms: u64,
    /// Output files, sorted by path.
    pub outputs: Vec<EntryOutput>,
    /// The captured log's blob, if any.
    pub log: Option<Digest>,
    /// The blobs carried after the JSON, in order (version 2; absent when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inline: Vec<InlineBlob>,
    /// The writer's public key, `ed25519:<base64>`, if signed.
    pub signer: Option<String>,
    /// base64 of the 64-byte ed25519 signature, if signed.
    pub signature: Option<String>,
    /// The bytes after the JSON: the inline blobs, one after the other.
    #[serde(skip)]
    payload: Bytes,
}

/// The fields a signature covers, borrowed from a manifest in its field order.
#[derive(Serialize)]
struct Signed<'a> {
    format: &'a str,
    version: u32,
    key: &'a str,
    task: &'a str,
    status: &'a str,
    duration_ms: u64,
    outputs: &'a [EntryOutput],
    log: &'a Option<Digest>,
    #[serde(skip_serializing_if = "<[InlineBlob]>::is_empty")]
    inline: &'a [InlineBlob],
    signer: &'a Option<String>,
}

/// Only the fields every version keeps, read first to tell a newer format from a broken one.
#[derive(Deserialize)]
struct Head {
    format: String,
    version: u32,
}

impl Manifest {
    /// The unsigned manifest of `result` under `key` (outputs sorted by path).
    pub fn from_result(key: &str, result: &CachedResult) -> Manifest {
        let mut outputs: Vec<EntryOutput> = result
            .outputs
            .iter()
            .map(|o| EntryOutput {
                path: o.path.clone(),
                digest: o.hash,
                size: o.size,
                mode: o.mode,
            })
            .collect();
        outputs.sort_by(|a, b| a.path.cmp(&b.path));
        Manifest {
            format: FORMAT_NAME.to_owned(),
            version: FORMAT_VERSION,
            key: key.to_owned(),
            task: result.task.clone(),
            status: result.status.clone(),
            duration_ms: result.duration_ms,
            outputs,
            log: result.log,
            inline: Vec::new(),
            signer: None,
            signature: None,
            payload: Bytes::new(),
        }
    }

    /// Carries `blobs` inline, in their order, instead of any carried before (call before
    /// [`sign`](Self::sign)). Which blobs: [`inline_choice`].
    pub fn carry(&mut self, blobs: &[VerifiedBlob]) {
        self.inline = blobs
            .iter()
            .map(|blob| InlineBlob {
                digest: *blob.digest(),
                size: blob.len() as u64,
            })
            .collect();
        let mut payload = Vec::with_capacity(blobs.iter().map(VerifiedBlob::len).sum());
        for blob in blobs {
            payload.extend_from_slice(blob.bytes());
        }
        self.payload = payload.into();
    }

    /// The bytes a signature covers: [`SIGNING_CONTEXT`], then the compact JSON of every field
    /// but `signature`.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut bytes = SIGNING_CONTEXT.to_vec();
        let signed = Signed {
            format: &self.format,
            version: self.version,
            key: &self.key,
            task: &self.task,
            status: &self.status,
            duration_ms: self.duration_ms,
            outputs: &self.outputs,
            log: &self.log,
            inline: &self.inline,
            signer: &self.signer,
        };
        // Serializing plain structs, strings and numbers into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut bytes, &signed);
        bytes
    }

    /// Signs the manifest with `key` (sets `signer` and `signature`).
    pub fn sign(&mut self, key: &SigningKey) {
        self.signer = Some(key.public_key().to_string());
        self.signature = None;
        let signature = key.sign(&self.signed_bytes());
        self.signature = Some(STANDARD.encode(signature));
    }

    /// The manifest as stored: compact JSON, then `\n` and the inline blobs' bytes if it
    /// carries any.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec(self).unwrap_or_default();
        if !self.inline.is_empty() {
            bytes.reserve(1 + self.payload.len());
            bytes.push(b'\n');
            bytes.extend_from_slice(&self.payload);
        }
        bytes
    }

    /// Reads a stored manifest (version 1 or 2). Does not check it against a key or trusted
    /// keys, nor its inline blobs against their digests: see [`check`](Self::check) and
    /// [`inline_blobs`](Self::inline_blobs).
    pub fn parse(bytes: Bytes) -> Result<Manifest, MissReason> {
        let bad = |detail: String| MissReason::BadManifest { detail };
        // The JSON ends where its first value does; the inline bytes follow.
        let mut values = serde_json::Deserializer::from_slice(&bytes).into_iter::<Head>();
        let head = match values.next() {
            Some(Ok(head)) => head,
            Some(Err(e)) => return Err(bad(format!("not a manifest ({e})"))),
            None => return Err(bad("not a manifest (empty)".to_owned())),
        };
        let end = values.byte_offset();
        if head.format != FORMAT_NAME {
            return Err(bad("`format` is not `clab-remote-entry`".to_owned()));
        }
        if head.version > FORMAT_VERSION {
            return Err(MissReason::NewerFormat {
                version: head.version,
            });
        }
        if !(1..=FORMAT_VERSION).contains(&head.version) {
            return Err(bad(format!("unknown format version {}", head.version)));
        }
        let payload = match bytes.get(end..) {
            None | Some([]) => Bytes::new(),
            Some([b'\n', ..]) if head.version >= 2 => bytes.slice(end + 1..),
            Some(_) => return Err(bad("bytes after the manifest's JSON".to_owned())),
        };
        let mut manifest: Manifest =
            serde_json::from_slice(&bytes[..end]).map_err(|e| bad(format!("{e}")))?;
        manifest.payload = payload;
        Ok(manifest)
    }

    /// Checks the manifest fetched under `key` against the format's rules and `trusted`;
    /// returns its verified signer, if signed.
    pub fn check(&self, key: &str, trusted: &TrustedKeys) -> Result<Option<PublicKey>, MissReason> {
        let bad = |detail: String| MissReason::BadManifest { detail };
        if self.key != key {
            return Err(bad("stored under another key than it names".to_owned()));
        }
        let mut previous: Option<&str> = None;
        for output in &self.outputs {
            check_path(&output.path)
                .map_err(|why| bad(format!("output `{}` {why}", output.path)))?;
            if previous.is_some_and(|p| p >= output.path.as_str()) {
                return Err(bad(
                    "outputs are not sorted by path, or repeat one".to_owned()
                ));
            }
            previous = Some(&output.path);
            if output.mode > 0o7777 {
                return Err(bad(format!(
                    "output `{}` has mode {:o}",
                    output.path, output.mode
                )));
            }
        }
        self.check_inline()?;
        let signer = match (&self.signer, &self.signature) {
            (None, None) => None,
            (Some(signer), Some(signature)) => {
                let public = PublicKey::parse(signer, "signer")
                    .map_err(|_| bad("`signer` is not an ed25519 public key".to_owned()))?;
                let signature = STANDARD
                    .decode(signature)
                    .map_err(|_| MissReason::BadSignature)?;
                if !public.verify(&self.signed_bytes(), &signature) {
                    return Err(MissReason::BadSignature);
                }
                Some(public)
            }
            _ => return Err(bad("`signer` and `signature` go together".to_owned())),
        };
        if !trusted.is_empty() {
            match &signer {
                None => return Err(MissReason::Unsigned),
                Some(public) if !trusted.contains(public) => {
                    return Err(MissReason::UntrustedSigner {
                        signer: public.to_string(),
                    });
                }
                Some(_) => {}
            }
        }
        Ok(signer)
    }

    /// The `inline` rules of the module documentation.
    fn check_inline(&self) -> Result<(), MissReason> {
        let bad = |detail: String| MissReason::BadManifest { detail };
        let blobs = self.blobs()?;
        if self.version < 2 && !self.inline.is_empty() {
            return Err(bad("version 1 carries no blobs inline".to_owned()));
        }
        let mut carried = BTreeMap::new();
        let mut total: u64 = 0;
        for blob in &self.inline {
            match blobs.get(&blob.digest) {
                None => {
                    return Err(bad(format!(
                        "inline blob `{}` is not one of the entry's",
                        blob.digest
                    )));
                }
                Some(Some(size)) if *size != blob.size => {
                    return Err(bad(format!("blob `{}` is given two sizes", blob.digest)));
                }
                Some(_) => {}
            }
            if carried.insert(blob.digest, ()).is_some() {
                return Err(bad(format!(
                    "inline blob `{}` is carried twice",
                    blob.digest
                )));
            }
            total = total.saturating_add(blob.size);
        }
        if total != self.payload.len() as u64 {
            return Err(bad(format!(
                "inline blobs add up to {total} bytes, {} follow the JSON",
                self.payload.len()
            )));
        }
        Ok(())
    }

    /// The blobs carried inline, each hashed and found to be the blob its digest names, in
    /// order; [`MissReason::BlobMismatch`] for the first that is not. Call after
    /// [`check`](Self::check) (which checks that the sizes match the bytes).
    pub fn inline_blobs(&self) -> Result<Vec<VerifiedBlob>, MissReason> {
        let mut start: usize = 0;
        let mut blobs = Vec::with_capacity(self.inline.len());
        for blob in &self.inline {
            let end = usize::try_from(blob.size)
                .ok()
                .and_then(|size| start.checked_add(size))
                .filter(|end| *end <= self.payload.len())
                .ok_or(MissReason::BlobMismatch {
                    digest: blob.digest,
                })?;
            let verified = VerifiedBlob::verify(self.payload.slice(start..end), &blob.digest)
                .map_err(|_| MissReason::BlobMismatch {
                    digest: blob.digest,
                })?;
            blobs.push(verified);
            start = end;
        }
        Ok(blobs)
    }

    /// Every blob the entry needs, with its expected size when the manifest says (outputs do,
    /// the log does not).
    pub fn blobs(&self) -> Result<BTreeMap<Digest, Option<u64>>, MissReason> {
        let mut blobs = BTreeMap::new();
        for output in &self.outputs {
            match blobs.insert(output.digest, Some(output.size)) {
                Some(Some(size)) if size != output.size => {
                    return Err(MissReason::BadManifest {
                        detail: format!("blob `{}` is given two sizes", output.digest),
                    });
                }
                _ => {}
            }
        }
        if let Some(log) = self.log {
            blobs.entry(log).or_insert(None);
        }
        Ok(blobs)
    }

    /// The local cache's form of the entry.
    pub fn to_result(&self) -> CachedResult {
        CachedResult::new(
            self.task.clone(),
            self.status.clone(),
            self.duration_ms,
            self.outputs
                .iter()
                .map(|o| OutputEntry {
                    path: o.path.clone(),
                    hash: o.digest,
                    size: o.size,
                    mode: o.mode,
                })
                .collect(),
            self.log,
        )
    }
}

/// Which of an entry's blobs, given with their sizes, a writer carries inline: those of 1 to
/// [`INLINE_BLOB_MAX`] bytes, smallest first (then by digest), while the total stays within
/// [`INLINE_TOTAL_MAX`]; each once.
pub fn inline_choice(sizes: impl IntoIterator<Item = (Digest, u64)>) -> Vec<Digest> {
    let mut candidates: Vec<(u64, Digest)> = sizes
        .into_iter()
        .filter(|(digest, size)| (1..=INLINE_BLOB_MAX).contains(size) && *digest != Digest::empty())
        .map(|(digest, size)| (size, digest))
        .collect();
    candidates.sort();
    candidates.dedup_by_key(|(_, digest)| *digest);
    let mut total = 0;
    let mut chosen = Vec::new();
    for (size, digest) in candidates {
        if total + size > INLINE_TOTAL_MAX {
            break;
        }
        total += size;
        chosen.push(digest);
    }
    chosen
}

/// Why `path` cannot be an output path, if it cannot.
fn check_path(path: &str) -> Result<(), &'static str> {
    if path.is_empty() {
        return Err("is empty");
    }
    if path.starts_with('/') || path.contains('\\') || path.contains('\0') {
        return Err("is not a relative `/`-separated path");
    }
    if path
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err("has an empty, `.` or `..` component");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result() -> CachedResult {
        let a = Digest::of_bytes(b"a");
        let b = Digest::of_bytes(b"bb");
        CachedResult::new(
            "build",
            "ok",
            12,
            vec![
                OutputEntry {
                    path: "out/z.txt".into(),
                    hash: b,
                    size: 2,
                    mode: 0o755,
                },
                OutputEntry {
                    path: "out/a.txt".into(),
                    hash: a,
                    size: 1,
                    mode: 0o644,
                },
            ],
            Some(Digest::empty()),
        )
    }

    fn key(n: u8) -> SigningKey {
        SigningKey::from_seed([n; 32])
    }

    #[test]
    fn a_manifest_round_trips_and_gives_back_the_result() {
        let manifest = Manifest::from_result("k1", &result());
        assert_eq!(manifest.outputs[0].path, "out/a.txt", "sorted by path");
        let parsed = Manifest::parse(manifest.to_bytes().into()).unwrap();
        assert_eq!(parsed, manifest);
        assert_eq!(parsed.check("k1", &TrustedKeys::default()).unwrap(), None);
        let back = parsed.to_result();
        let mut expected = result();
        expected.outputs.sort();
        assert_eq!(back, expected);
        assert_eq!(parsed.blobs().unwrap().len(), 3);
    }

    #[test]
    fn the_encoding_is_the_documented_one() {
        let mut manifest = Manifest::from_result("k1", &result());
        manifest.outputs.truncate(1);
        manifest.log = None;
        let text = String::from_utf8(manifest.to_bytes()).unwrap();
        assert_eq!(
            text,
            format!(
                "{{\"format\":\"clab-remote-entry\",\"version\":2,\"key\":\"k1\",\"task\":\"build\",\
                 \"status\":\"ok\",\"duration_ms\":12,\"outputs\":[{{\"path\":\"out/a.txt\",\
                 \"digest\":\"{}\",\"size\":1,\"mode\":420}}],\"log\":null,\"signer\":null,\
                 \"signature\":null}}",
                Digest::of_bytes(b"a")
            )
        );
        let signed = String::from_utf8(manifest.signed_bytes()).unwrap();
        assert!(
            signed.starts_with("clab remote cache entry\0{\"format\""),
            "{signed:?}"
        );
        assert!(signed.ends_with("\"signer\":null}"), "{signed:?}");
    }

    #[test]
    fn signatures_bind_every_field_and_the_key() {
        let mut manifest = Manifest::from_result("k1", &result());
        manifest.sign(&key(1));
        let trusted = TrustedKeys::of([key(1).public_key()]);
        let parsed = Manifest::parse(manifest.to_bytes().into()).unwrap();
        assert_eq!(
            parsed.check("k1", &trusted).unwrap(),
            Some(key(1).public_key())
        );

        let tamperings: [fn(&mut Manifest); 6] = [
            |m| m.duration_ms += 1,
            |m| m.status = "failed".into(),
            |m| m.outputs[0].mode = 0o777,
            |m| m.outputs[1].digest = Digest::of_bytes(b"evil"),
            |m| m.log = None,
            |m| m.task = "other".into(),
        ];
        for tamper in tamperings {
            let mut evil = manifest.clone();
            tamper(&mut evil);
            assert_eq!(evil.check("k1", &trusted), Err(MissReason::BadSignature));
            // Also when no key is trusted: a signature that fails is never accepted.
            assert_eq!(
                evil.check("k1", &TrustedKeys::default()),
                Err(MissReason::BadSignature)
            );
        }
        // Moved under another key: refused even though the signature is intact…
        let mut moved = manifest.clone();
        assert!(matches!(
            moved.check("k2", &trusted),
            Err(MissReason::BadManifest { .. })
        ));
        // …and renaming the key inside breaks the signature.
        moved.key = "k2".into();
        assert_eq!(moved.check("k2", &trusted), Err(MissReason::BadSignature));
        // Swapping in another signer's key without its signature fails too.
        let mut swapped = manifest.clone();
        swapped.signer = Some(key(2).public_key().to_string());
        assert_eq!(
            swapped.check("k1", &TrustedKeys::default()),
            Err(MissReason::BadSignature)
        );
    }

    #[test]
    fn trusted_keys_refuse_unsigned_and_foreign_entries() {
        let trusted = TrustedKeys::of([key(1).public_key()]);
        let unsigned = Manifest::from_result("k", &result());
        assert_eq!(unsigned.check("k", &trusted), Err(MissReason::Unsigned));
        let mut foreign = unsigned.clone();
        foreign.sign(&key(2));
        assert_eq!(
            foreign.check("k", &trusted),
            Err(MissReason::UntrustedSigner {
                signer: key(2).public_key().to_string()
            })
        );
        // With no trusted keys both are accepted.
        assert!(unsigned.check("k", &TrustedKeys::default()).is_ok());
        assert!(foreign.check("k", &TrustedKeys::default()).is_ok());
    }

    #[test]
    fn format_rules_are_enforced() {
        let good = Manifest::from_result("k", &result());
        type Breaker = (fn(&mut Manifest), &'static str);
        let breakers: [Breaker; 7] = [
            (|m| m.outputs[0].path = "../etc/passwd".into(), "`..`"),
            (|m| m.outputs[0].path = "/etc/passwd".into(), "relative"),
            (|m| m.outputs[0].path = "a//b".into(), "empty"),
            (|m| m.outputs.swap(0, 1), "sorted"),
            (|m| m.outputs[1].path = m.outputs[0].path.clone(), "sorted"),
            (|m| m.outputs[0].mode = 0o100644, "mode"),
            (|m| m.signature = Some("AAAA".into()), "go together"),
        ];
        for (breaker, expected) in breakers {
            let mut bad = good.clone();
            breaker(&mut bad);
            match bad.check("k", &TrustedKeys::default()) {
                Err(MissReason::BadManifest { detail }) => {
                    assert!(detail.contains(expected), "{detail}")
                }
                other => panic!("{expected}: {other:?}"),
            }
        }
        let mut twice = good.clone();
        twice.outputs[1].digest = twice.outputs[0].digest;
        assert!(matches!(twice.blobs(), Err(MissReason::BadManifest { .. })));
    }

    #[test]
    fn parse_tells_newer_formats_from_garbage() {
        let mut newer = serde_json::to_value(Manifest::from_result("k", &result())).unwrap();
        newer["version"] = 3.into();
        newer["extra"] = "field".into();
        assert_eq!(
            Manifest::parse(newer.to_string().into()),
            Err(MissReason::NewerFormat { version: 3 })
        );
        for garbage in [
            &b"not json"[..],
            b"",
            b"{}",
            b"{\"format\":\"x\",\"version\":1}",
            b"{\"format\":\"clab-remote-entry\",\"version\":0}",
        ] {
            assert!(matches!(
                Manifest::parse(Bytes::from_static(garbage)),
                Err(MissReason::BadManifest { .. })
            ));
        }
        let mut unknown = serde_json::to_value(Manifest::from_result("k", &result())).unwrap();
        unknown["extra"] = "field".into();
        assert!(matches!(
            Manifest::parse(unknown.to_string().into()),
            Err(MissReason::BadManifest { .. })
        ));
    }

    fn blob(bytes: &'static [u8]) -> VerifiedBlob {
        VerifiedBlob::verify(Bytes::from_static(bytes), &Digest::of_bytes(bytes)).unwrap()
    }

    /// `result()`'s manifest carrying both outputs (`a`, then `bb`).
    fn carrying() -> Manifest {
        let mut manifest = Manifest::from_result("k1", &result());
        manifest.carry(&[blob(b"a"), blob(b"bb")]);
        manifest
    }

    #[test]
    fn inline_blobs_travel_after_the_json_and_come_back_verified() {
        let mut manifest = carrying();
        manifest.sign(&key(1));
        let bytes = manifest.to_bytes();
        let text = String::from_utf8(bytes.clone()).unwrap();
        let (json, payload) = text.split_once('\n').unwrap();
        assert_eq!(payload, "abb");
        assert!(
            json.contains(&format!(
                "\"log\":\"{}\",\"inline\":[{{\"digest\":\"{}\",\"size\":1}},{{\"digest\":\"{}\",\"size\":2}}],\"signer\":",
                Digest::empty(),
                Digest::of_bytes(b"a"),
                Digest::of_bytes(b"bb")
            )),
            "{json}"
        );
        let parsed = Manifest::parse(bytes.into()).unwrap();
        assert_eq!(parsed, manifest);
        let trusted = TrustedKeys::of([key(1).public_key()]);
        assert_eq!(parsed.check("k1", &trusted), Ok(Some(key(1).public_key())));
        let blobs = parsed.inline_blobs().unwrap();
        assert_eq!(blobs, [blob(b"a"), blob(b"bb")]);
        // The outputs still name every blob; the result is the same as without inlining.
        assert_eq!(parsed.blobs().unwrap().len(), 3);
        assert_eq!(
            parsed.to_result(),
            Manifest::from_result("k1", &result()).to_result()
        );
        // A manifest that carries nothing has no `inline` field and no trailing bytes.
        let plain = Manifest::from_result("k1", &result()).to_bytes();
        assert!(!plain.contains(&b'\n') && !String::from_utf8(plain).unwrap().contains("inline"));
    }

    #[test]
    fn tampered_inline_bytes_are_a_blob_mismatch_and_the_list_is_signed() {
        let mut manifest = carrying();
        manifest.sign(&key(1));
        let trusted = TrustedKeys::of([key(1).public_key()]);
        let good = manifest.to_bytes();

        // Same length, one byte changed: the JSON (and its signature) is intact, the blob not.
        let mut evil = good.clone();
        let last = evil.len() - 1;
        evil[last] = b'x';
        let parsed = Manifest::parse(evil.into()).unwrap();
        assert_eq!(parsed.check("k1", &trusted), Ok(Some(key(1).public_key())));
        assert_eq!(
            parsed.inline_blobs(),
            Err(MissReason::BlobMismatch {
                digest: Digest::of_bytes(b"bb")
            })
        );
        // Unsigned too: the bytes are hashed whatever the trust.
        let mut unsigned = carrying().to_bytes();
        let last = unsigned.len() - 1;
        unsigned[last] ^= 1;
        let parsed = Manifest::parse(unsigned.into()).unwrap();
        assert!(parsed.check("k1", &TrustedKeys::default()).is_ok());
        assert!(matches!(
            parsed.inline_blobs(),
            Err(MissReason::BlobMismatch { .. })
        ));

        // Bytes added or taken away: the sizes no longer add up.
        for evil in [[&good[..], b"!"].concat(), good[..good.len() - 1].to_vec()] {
            let parsed = Manifest::parse(evil.into()).unwrap();
            assert!(
                matches!(
                    parsed.check("k1", &trusted),
                    Err(MissReason::BadManifest { ref detail }) if detail.contains("add up")
                ),
                "{:?}",
                parsed.check("k1", &trusted)
            );
        }

        // The list is signed: carrying one blob less (consistently) breaks the signature.
        let mut dropped = manifest.clone();
        dropped.inline.truncate(1);
        dropped.payload = dropped.payload.slice(..1);
        assert_eq!(dropped.check("k1", &trusted), Err(MissReason::BadSignature));
    }

    #[test]
    fn inline_rules_are_enforced() {
        let good = carrying();
        type Breaker = (fn(&mut Manifest), &'static str);
        let breakers: [Breaker; 4] = [
            (
                |m| m.carry(&[blob(b"a"), blob(b"zz")]),
                "not one of the entry's",
            ),
            (|m| m.carry(&[blob(b"a"), blob(b"a")]), "carried twice"),
            (
                |m| {
                    m.inline[1].size = 1;
                    m.payload = m.payload.slice(..2);
                },
                "two sizes",
            ),
            (|m| m.version = 1, "version 1"),
        ];
        for (breaker, expected) in breakers {
            let mut bad = good.clone();
            breaker(&mut bad);
            match bad.check("k1", &TrustedKeys::default()) {
                Err(MissReason::BadManifest { detail }) => {
                    assert!(detail.contains(expected), "{detail}")
                }
                other => panic!("{expected}: {other:?}"),
            }
        }
        // The log has no size in the manifest: carrying it is fine.
        let mut log = Manifest::from_result("k1", &result());
        log.log = Some(Digest::of_bytes(b"the log"));
        log.carry(&[blob(b"the log")]);
        assert!(log.check("k1", &TrustedKeys::default()).is_ok());
        assert_eq!(log.inline_blobs().unwrap(), [blob(b"the log")]);
    }

    #[test]
    fn version_1_entries_are_still_read() {
        // A version 1 manifest as version 1 wrote it, byte for byte.
        let text = format!(
            "{{\"format\":\"clab-remote-entry\",\"version\":1,\"key\":\"k1\",\"task\":\"build\",\
             \"status\":\"ok\",\"duration_ms\":12,\"outputs\":[{{\"path\":\"out/a.txt\",\
             \"digest\":\"{}\",\"size\":1,\"mode\":420}}],\"log\":null,\"signer\":null,\
             \"signature\":null}}",
            Digest::of_bytes(b"a")
        );
        let parsed = Manifest::parse(text.clone().into()).unwrap();
        assert_eq!((parsed.version, parsed.outputs.len()), (1, 1));
        assert_eq!(parsed.check("k1", &TrustedKeys::default()), Ok(None));
        assert_eq!(parsed.inline_blobs(), Ok(vec![]));
        // Signed by version 1 (whose signed text had no `inline`): still verifies.
        let mut v1 = Manifest::from_result("k1", &result());
        v1.version = 1;
        v1.sign(&key(1));
        let signed = String::from_utf8(v1.signed_bytes()).unwrap();
        assert!(!signed.contains("inline"), "{signed:?}");
        let parsed = Manifest::parse(v1.to_bytes().into()).unwrap();
        let trusted = TrustedKeys::of([key(1).public_key()]);
        assert_eq!(parsed.check("k1", &trusted), Ok(Some(key(1).public_key())));
        // Version 1 has nothing after its JSON.
        assert!(matches!(
            Manifest::parse(format!("{text}\nabc").into()),
            Err(MissReason::BadManifest { .. })
        ));
    }

    #[test]
    fn writers_carry_small_blobs_within_the_bounds() {
        let d = |n: u32| Digest::of_bytes(&n.to_le_bytes());
        // Empty and oversized blobs are never carried; each blob once.
        assert_eq!(
            inline_choice([
                (Digest::empty(), 0),
                (d(1), INLINE_BLOB_MAX + 1),
                (d(2), INLINE_BLOB_MAX),
                (d(3), 10),
                (d(3), 10),
            ]),
            [d(3), d(2)]
        );
        // Smallest first, until the manifest's bound.
        let kib = 1024;
        let mut same_size = [d(1), d(2), d(3)];
        same_size.sort();
        assert_eq!(
            inline_choice([
                (d(1), 100 * kib),
                (d(2), 100 * kib),
                (d(3), 100 * kib),
                (d(4), 50 * kib),
            ]),
            [d(4), same_size[0], same_size[1]]
        );
        assert_eq!(INLINE_TOTAL_MAX, 256 * kib);
        assert!(inline_choice([(d(1), 0)]).is_empty());
    }
}
