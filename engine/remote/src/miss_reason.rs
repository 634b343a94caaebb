//! `MissReason`: why the remote cache gave nothing back for a key.
//!
//! In: what `RemoteCache::fetch` found. Out: a reason that prints as a few lowercase words for
//! `clab explain` and run lines, serializes (tagged `reason`) for `--json`, and has a stable
//! [`code`](MissReason::code) for counting in [`RemoteStats`](crate::RemoteStats). A miss is never
//! an error: the task runs as if there were no remote.

use std::fmt;

use clab_store::Digest;
use serde::Serialize;

/// Why a fetch was a miss.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum MissReason {
    /// No entry under the key.
    NotFound,
    /// The entry is unsigned and trusted keys are set.
    Unsigned,
    /// The entry is signed by a key that is not trusted.
    UntrustedSigner {
        /// The signer's public key, `ed25519:…`.
        signer: String,
    },
    /// The entry's signature does not verify with the key it names.
    BadSignature,
    /// A downloaded blob does not hash to its digest (or has another size than the manifest
    /// says): the remote was tampered with or damaged.
    BlobMismatch {
        /// The digest the manifest names.
        digest: Digest,
    },
    /// A remote object holds more bytes than it may: a manifest more than
    /// [`MANIFEST_MAX`](crate::entry::MANIFEST_MAX), a blob more than the size its manifest
    /// gives (a log, whose size manifests do not give, more than
    /// [`LOG_BLOB_MAX`](crate::entry::LOG_BLOB_MAX)). The download stopped at the bound.
    TooLarge {
        /// The blob's digest; none for the manifest.
        #[serde(skip_serializing_if = "Option::is_none")]
        digest: Option<Digest>,
        /// The bound, in bytes.
        max: u64,
    },
    /// A blob the manifest names is not on the remote (an upload cut short, an eviction).
    BlobMissing {
        /// The digest the manifest names.
        digest: Digest,
    },
    /// The manifest cannot be read or breaks a rule of the format.
    BadManifest {
        /// What is wrong.
        detail: String,
    },
    /// The manifest was written in a newer format than this clab reads.
    NewerFormat {
        /// Its format version.
        version: u32,
    },
    /// The remote could not be reached, answered with an error, timed out, or was given up on
    /// for this run (circuit breaker).
    Unavailable,
    /// The blobs could not be put in the local store.
    LocalStore {
        /// The local store's error.
        detail: String,
    },
}

impl MissReason {
    /// A stable snake_case name, for counting and `--json`.
    pub fn code(&self) -> &'static str {
        match self {
            MissReason::NotFound => "not_found",
            MissReason::Unsigned => "unsigned",
            MissReason::UntrustedSigner { .. } => "untrusted_signer",
            MissReason::BadSignature => "bad_signature",
            MissReason::BlobMismatch { .. } => "blob_mismatch",
            MissReason::TooLarge { .. } => "too_large",
            MissReason::BlobMissing { .. } => "blob_missing",
            MissReason::BadManifest { .. } => "bad_manifest",
            MissReason::NewerFormat { .. } => "newer_format",
            MissReason::Unavailable => "unavailable",
            MissReason::LocalStore { .. } => "local_store",
        }
    }

    /// Whether this miss means someone tampered with (or damaged) the remote: these cost a
    /// warning, as do [distrusted](Self::is_distrust) entries; the others are ordinary. An
    /// object over its bound is one of them: clab never writes one (its uploader refuses
    /// entries a reader would refuse as too large).
    pub fn is_integrity_failure(&self) -> bool {
        matches!(
            self,
            MissReason::BadSignature
                | MissReason::BlobMismatch { .. }
                | MissReason::BadManifest { .. }
                | MissReason::TooLarge { .. }
        )
    }

    /// Whether the trusted keys refused the entry: unsigned, or signed by a key they do not
    /// hold (warned about once per run, as [`Warning::Untrusted`](crate::Warning::Untrusted)).
    pub fn is_distrust(&self) -> bool {
        matches!(
            self,
            MissReason::Unsigned | MissReason::UntrustedSigner { .. }
        )
    }
}

impl fmt::Display for MissReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MissReason::NotFound => f.write_str("no remote entry"),
            MissReason::Unsigned => {
                f.write_str("remote entry is unsigned and trusted keys are set")
            }
            MissReason::UntrustedSigner { signer } => {
                write!(f, "remote entry is signed by untrusted key `{signer}`")
            }
            MissReason::BadSignature => f.write_str("remote entry's signature does not verify"),
            MissReason::BlobMismatch { digest } => {
                write!(
                    f,
                    "remote blob `{}` does not match its digest",
                    short(digest)
                )
            }
            MissReason::TooLarge { digest: None, max } => {
                write!(f, "remote manifest is larger than {max} bytes")
            }
            MissReason::TooLarge {
                digest: Some(digest),
                max,
            } => write!(
                f,
                "remote blob `{}` is larger than {max} bytes",
                short(digest)
            ),
            MissReason::BlobMissing { digest } => {
                write!(f, "remote blob `{}` is missing", short(digest))
            }
            MissReason::BadManifest { detail } => write!(f, "remote manifest is invalid: {detail}"),
            MissReason::NewerFormat { version } => write!(
                f,
                "remote entry has format version {version}, newer than this clab reads ({})",
                crate::entry::FORMAT_VERSION
            ),
            MissReason::Unavailable => f.write_str("remote cache unavailable"),
            MissReason::LocalStore { detail } => {
                write!(f, "cannot keep the remote entry locally: {detail}")
            }
        }
    }
}

/// The first 12 hex characters of a digest, as lines show it.
fn short(digest: &Digest) -> String {
    digest.to_hex()[..12].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_print_serialize_and_count() {
        let digest = Digest::of_bytes(b"x");
        let reason = MissReason::BlobMismatch { digest };
        assert_eq!(
            reason.to_string(),
            format!(
                "remote blob `{}` does not match its digest",
                &digest.to_hex()[..12]
            )
        );
        assert_eq!(reason.code(), "blob_mismatch");
        assert!(reason.is_integrity_failure());
        assert!(!MissReason::Unsigned.is_integrity_failure());
        let json = serde_json::to_value(&reason).unwrap();
        assert_eq!(json["reason"], "blob_mismatch");
        assert_eq!(json["digest"], digest.to_hex());
        assert_eq!(
            serde_json::to_value(MissReason::NotFound).unwrap(),
            serde_json::json!({"reason": "not_found"})
        );
    }

    #[test]
    fn too_large_names_the_object_and_its_bound() {
        let digest = Digest::of_bytes(b"x");
        let blob = MissReason::TooLarge {
            digest: Some(digest),
            max: 300_000,
        };
        assert_eq!(
            blob.to_string(),
            format!(
                "remote blob `{}` is larger than 300000 bytes",
                &digest.to_hex()[..12]
            )
        );
        let manifest = MissReason::TooLarge {
            digest: None,
            max: 10,
        };
        assert_eq!(
            manifest.to_string(),
            "remote manifest is larger than 10 bytes"
        );
        assert_eq!(manifest.code(), "too_large");
        assert!(manifest.is_integrity_failure(), "it costs a warning");
        assert_eq!(
            serde_json::to_value(&manifest).unwrap(),
            serde_json::json!({"reason": "too_large", "max": 10})
        );
        assert_eq!(
            serde_json::to_value(&blob).unwrap()["digest"],
            digest.to_hex()
        );
    }
}
