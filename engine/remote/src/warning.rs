//! `Warning`: something about the remote cache the user should hear once; the run goes on.
//!
//! In: outages (from the [`Breaker`](crate::breaker::Breaker)), rejected entries (tampered
//! with, broken, or over their size bound), entries the trusted keys refused, a signing key
//! that is not trusted, and local store failures. Out: warnings with miette
//! codes, `severity(Warning)`, texts that never hold a credential (URLs redacted, causes
//! scrubbed), serializable for `--json`.

use serde::Serialize;

use crate::miss_reason::MissReason;

/// A remote cache warning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error, miette::Diagnostic)]
#[serde(tag = "warning", rename_all = "snake_case")]
pub enum Warning {
    /// Calls to the remote failed (at most one such warning per run).
    #[error(
        "remote cache `{url}` is unavailable: {cause} ({failures} failed {}){}",
        calls(*failures),
        gave_up_text(*gave_up)
    )]
    #[diagnostic(
        code(clab::remote::unavailable),
        severity(Warning),
        help("the run's results do not depend on the remote; tasks it would have restored ran")
    )]
    Unavailable {
        /// The remote's URL, redacted.
        url: String,
        /// The first failure's cause, scrubbed.
        cause: String,
        /// How many calls failed.
        failures: u64,
        /// Whether the remote was given up on for the rest of the run.
        gave_up: bool,
    },

    /// The server refused uploads (at most one such warning per run); reads went on.
    #[error("remote cache `{url}` refused an upload: {cause}")]
    #[diagnostic(
        code(clab::remote::write_denied),
        severity(Warning),
        help(
            "a job that may not write should set CLAB_REMOTE_CACHE_READ_ONLY=1 \
             (or `read-only #true` in tasks.kdl)"
        )
    )]
    WriteDenied {
        /// The remote's URL, redacted.
        url: String,
        /// The first refusal, scrubbed.
        cause: String,
    },

    /// An entry failed an integrity check (a blob that does not match its digest, a bad
    /// signature, a broken manifest, an object over its size bound): someone tampered with
    /// the remote, or it is damaged. One
    /// warning per reason: later entries rejected for the same reason only count in `others`.
    #[error(
        "remote cache entry `{key}`{} was rejected: {reason}{}",
        task_text(task),
        others_text(*others)
    )]
    #[diagnostic(
        code(clab::remote::rejected),
        severity(Warning),
        help(
            "nothing of it was restored and the task ran; check who can write to the remote cache"
        )
    )]
    Rejected {
        /// The cache key.
        key: String,
        /// The task the manifest names, when it could be read.
        task: Option<String>,
        /// Why it was rejected.
        reason: MissReason,
        /// How many more entries were rejected for the same kind of reason.
        others: u64,
    },

    /// Entries the trusted keys refused: unsigned, or signed by a key that is not trusted.
    /// One warning per reason, like [`Warning::Rejected`].
    #[error(
        "remote cache entry `{key}`{} is not trusted: {reason}{}",
        task_text(task),
        others_text(*others)
    )]
    #[diagnostic(
        code(clab::remote::untrusted),
        severity(Warning),
        help(
            "the task ran; only entries signed by a trusted key are restored. A job that \
             signs with a trusted key replaces them when it runs the task"
        )
    )]
    Untrusted {
        /// The cache key.
        key: String,
        /// The task the manifest names.
        task: Option<String>,
        /// Why it was refused.
        reason: MissReason,
        /// How many more entries were refused for the same kind of reason.
        others: u64,
    },

    /// The signing key is set but is not one of the trusted keys: the job uploads nothing,
    /// since every reader that trusts those keys, the job itself included, would refuse
    /// what it signs.
    #[error(
        "remote cache `{url}` gets no uploads: the signing key's public key `{signer}` is not \
         a trusted key"
    )]
    #[diagnostic(
        code(clab::remote::signer_not_trusted),
        severity(Warning),
        help(
            "add it with `trusted-key` in tasks.kdl (or to CLAB_CACHE_TRUSTED_KEYS), or set \
             CLAB_CACHE_SIGNING_KEY to the key of a trusted one"
        )
    )]
    SignerNotTrusted {
        /// The remote's URL, redacted.
        url: String,
        /// The signing key's public key, `ed25519:…`.
        signer: String,
    },

    /// Verified blobs could not be put in the local cache.
    #[error("cannot keep remote cache entry `{key}` locally: {cause}")]
    #[diagnostic(code(clab::remote::local_store), severity(Warning))]
    LocalStore {
        /// The cache key.
        key: String,
        /// The local store's error.
        cause: String,
    },
}

fn calls(n: u64) -> &'static str {
    if n == 1 { "call" } else { "calls" }
}

fn gave_up_text(gave_up: bool) -> &'static str {
    if gave_up {
        "; not using it for the rest of this run"
    } else {
        ""
    }
}

fn others_text(others: u64) -> String {
    match others {
        0 => String::new(),
        1 => " (and 1 more entry)".to_owned(),
        n => format!(" (and {n} more entries)"),
    }
}

fn task_text(task: &Option<String>) -> String {
    task.as_ref()
        .map(|t| format!(" (task `{t}`)"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_read_as_one_line() {
        let warning = Warning::Unavailable {
            url: "http://127.0.0.1:1/cache".into(),
            cause: "connection refused".into(),
            failures: 3,
            gave_up: true,
        };
        assert_eq!(
            warning.to_string(),
            "remote cache `http://127.0.0.1:1/cache` is unavailable: connection refused \
             (3 failed calls); not using it for the rest of this run"
        );
        let digest = clab_store::Digest::of_bytes(b"x");
        let rejected = Warning::Rejected {
            key: "k1".into(),
            task: Some("build".into()),
            reason: MissReason::BlobMismatch { digest },
            others: 0,
        };
        assert!(
            rejected
                .to_string()
                .starts_with("remote cache entry `k1` (task `build`) was rejected: remote blob"),
            "{rejected}"
        );
        let json = serde_json::to_value(&rejected).unwrap();
        assert_eq!(json["warning"], "rejected");
        assert_eq!(json["reason"]["reason"], "blob_mismatch");
    }

    #[test]
    fn warning_diagnostics() {
        let digest = clab_store::Digest::of_bytes(b"x");
        let warnings = [
            Warning::Unavailable {
                url: "https://****:****@cache.example.com/clab".into(),
                cause:
                    "error sending request: tcp connect error: Connection refused (os error 111)"
                        .into(),
                failures: 3,
                gave_up: true,
            },
            Warning::Rejected {
                key: "3b7e4d2a".into(),
                task: Some("build".into()),
                reason: MissReason::BlobMismatch { digest },
                others: 0,
            },
            Warning::Rejected {
                key: "3b7e4d2a".into(),
                task: None,
                reason: MissReason::BadSignature,
                others: 4,
            },
            Warning::Rejected {
                key: "3b7e4d2a".into(),
                task: Some("build".into()),
                reason: MissReason::TooLarge {
                    digest: Some(digest),
                    max: 300_000,
                },
                others: 1,
            },
            Warning::Untrusted {
                key: "3b7e4d2a".into(),
                task: Some("build".into()),
                reason: MissReason::Unsigned,
                others: 11,
            },
            Warning::SignerNotTrusted {
                url: "https://cache.example.com/clab".into(),
                signer: "ed25519:Uq0oAAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxw=".into(),
            },
            Warning::LocalStore {
                key: "3b7e4d2a".into(),
                cause: "cannot create `/tmp/x/.clab/cas/ab`".into(),
            },
            Warning::WriteDenied {
                url: "turbo+https://cache.example.com".into(),
                cause: "the server answered 403 to PUT `cas/3ae7d805f678`".into(),
            },
        ];
        let rendered: String = warnings.iter().map(|w| crate::render::both(w)).collect();
        insta::assert_snapshot!(rendered);
    }
}
