//! The remote entry format, version 1 ([`FORMAT_VERSION`]).
//!
//! In: a cache key and the [`CachedResult`] saved under it. Out: a [`Manifest`] (JSON bytes
//! stored under `ac/<key>`) that names its blobs (stored under `cas/<blake3 hex>`); on the way
//! back, a manifest that is checked against the key, the format's rules and the reader's
//! trusted keys before any blob is fetched.
//!
//! ```text
//! ac/<key>         the manifest, compact JSON (UTF-8), written last
//! cas/<digest>     raw bytes of each output and of the log, named by the lowercase hex
//!                  blake3 of the bytes, written first
//!
//! {"format":"clab-remote-entry","version":1,
//!  "key":"<cache key>","task":"build","status":"ok","duration_ms":1200,
//!  "outputs":[{"path":"out/app","digest":"<hex>","size":5120,"mode":493}],
//!  "log":"<hex>"|null,
//!  "signer":"ed25519:<base64>"|null,"signature":"<base64 of 64 bytes>"|null}
//! ```
//!
//! Rules a reader enforces (a violation is a miss, [`MissReason::BadManifest`]):
//! - `format` is `clab-remote-entry`; a `version` above [`FORMAT_VERSION`] is
//!   [`MissReason::NewerFormat`]; unknown fields are refused (any change bumps the version).
//! - `key` equals the key it was fetched under, so an entry copied under another key is
//!   refused (and, when signed, cannot be altered to match).
//! - Outputs are sorted by `path`, paths unique, relative, `/`-separated, without `.`, `..` or
//!   empty components; `mode` holds permission bits only (`<= 0o7777`); a digest named twice
//!   has one size.
//! - `signer` and `signature` are both present or both absent. The signature is ed25519 over
//!   [`SIGNING_CONTEXT`] followed by the compact JSON of every other field, in the order above
//!   (`format`, `version`, `key`, `task`, `status`, `duration_ms`, `outputs` as given, `log`,
//!   `signer`): serde_json's encoding of the parsed values, so the reader re-encodes what it
//!   parsed and checks that.
//! - When trusted keys are set, an unsigned entry is [`MissReason::Unsigned`] and one signed by
//!   another key [`MissReason::UntrustedSigner`]; a signed entry whose signature fails is
//!   [`MissReason::BadSignature`] whatever the trusted keys.
//!
//! Blobs are verified by the fetcher ([`crate::RemoteCache::fetch`]): each is hashed (and its
//! size compared) before it enters the local CAS, and the result is handed back only when all
//! of them did. Writers upload every blob before the manifest, so a reader that finds a
//! manifest finds its blobs unless they were evicted since. The one exception is the empty
//! blob (`af1349b9…`, an empty log or output): it is never uploaded and never downloaded,
//! since every reader can make it, and some servers cannot store it (nginx's WebDAV answers
//! 500 to a `PUT` with an empty body).

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use clab_store::{CachedResult, Digest, OutputEntry};
use serde::{Deserialize, Serialize};

use crate::miss_reason::MissReason;
use crate::signing::{PublicKey, SigningKey, TrustedKeys};

/// The version of the entry format described in this module's documentation.
pub const FORMAT_VERSION: u32 = 1;

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
    /// The writer's public key, `ed25519:<base64>`, if signed.
    pub signer: Option<String>,
    /// base64 of the 64-byte ed25519 signature, if signed.
    pub signature: Option<String>,
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
            signer: None,
            signature: None,
        }
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

    /// The manifest as stored: compact JSON.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a stored manifest. Does not check it against a key or trusted keys: see
    /// [`check`](Self::check).
    pub fn parse(bytes: &[u8]) -> Result<Manifest, MissReason> {
        let bad = |detail: String| MissReason::BadManifest { detail };
        let head: Head =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("not a manifest ({e})")))?;
        if head.format != FORMAT_NAME {
            return Err(bad("`format` is not `clab-remote-entry`".to_owned()));
        }
        if head.version > FORMAT_VERSION {
            return Err(MissReason::NewerFormat {
                version: head.version,
            });
        }
        if head.version != FORMAT_VERSION {
            return Err(bad(format!("unknown format version {}", head.version)));
        }
        serde_json::from_slice(bytes).map_err(|e| bad(format!("{e}")))
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
        self.blobs()?;
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
        let parsed = Manifest::parse(&manifest.to_bytes()).unwrap();
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
                "{{\"format\":\"clab-remote-entry\",\"version\":1,\"key\":\"k1\",\"task\":\"build\",\
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
        let parsed = Manifest::parse(&manifest.to_bytes()).unwrap();
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
        newer["version"] = 2.into();
        newer["extra"] = "field".into();
        assert_eq!(
            Manifest::parse(newer.to_string().as_bytes()),
            Err(MissReason::NewerFormat { version: 2 })
        );
        for garbage in [&b"not json"[..], b"{}", b"{\"format\":\"x\",\"version\":1}"] {
            assert!(matches!(
                Manifest::parse(garbage),
                Err(MissReason::BadManifest { .. })
            ));
        }
        let mut unknown = serde_json::to_value(Manifest::from_result("k", &result())).unwrap();
        unknown["extra"] = "field".into();
        assert!(matches!(
            Manifest::parse(unknown.to_string().as_bytes()),
            Err(MissReason::BadManifest { .. })
        ));
    }
}
