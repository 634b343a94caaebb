//! clab's shared remote cache: the same entries as the local cache (a manifest by cache key,
//! blobs by blake3 digest) on an HTTP, S3, Redis or Turborepo server, signed by the writer,
//! verified by the reader, never in the way of a run.
//!
//! # Purpose
//!
//! A CI job (or a fresh checkout) starts with an empty `.clab/`; with a remote cache its tasks
//! are restored from what other jobs uploaded. A reader with trusted keys accepts only entries
//! signed by them, so a pull request that can write to the cache still cannot poison it; a
//! server that is down, slow or erring costs one warning and never changes a run's result.
//!
//! # In
//!
//! - [`CacheSettings`] (tasks.kdl's `cache { remote … read-only … trusted-key … }`) and the
//!   environment, read by [`RemoteConfig::from_env_and`] (variables listed in
//!   [`remote_config`]).
//! - Cache keys, the local [`clab_store::Store`], and each result the run saved.
//!
//! # Out
//!
//! - [`RemoteCache::fetch`] → [`Fetch::Hit`] (blobs downloaded into the local CAS, each
//!   verified against its digest first, result saved locally; restore as for a local hit) or
//!   [`Fetch::Miss`] with a [`MissReason`]; [`RemoteCache::fetch_many`] the same for a batch
//!   of keys, fetched concurrently (the runner asks it for the local misses among the nodes
//!   that became ready together), their rows saved in one transaction.
//! - [`RemoteCache::upload`]: write-behind, bounded, blobs first then the signed manifest.
//! - [`RemoteCache::finish`] → [`RemoteStats`]; [`RemoteCache::warnings`] → [`Warning`]s.
//! - [`signing::public_key_line`]: the one line `clab cache public-key` prints.
//!
//! # The API the runner calls
//!
//! ```no_run
//! # use std::time::{Duration, Instant};
//! # use clab_remote::{CacheSettings, Fetch, RemoteCache, RemoteConfig};
//! # fn demo(store: &clab_store::Store, root: &std::path::Path, key: &str) -> Result<(), Box<dyn std::error::Error>> {
//! let settings = CacheSettings::default(); // from tasks.kdl's `cache { }` block
//! let remote = RemoteCache::from_config(RemoteConfig::from_env_and(&settings)?)?;
//! if let Some(remote) = &remote {
//!     // On a local miss:
//!     match remote.fetch(key, store) {
//!         Fetch::Hit(result) => {
//!             store.restore_outputs(root, &result)?; // the local path does the rest
//!         }
//!         Fetch::Miss(reason) => {
//!             // run the task; `reason` is for `explain`; after a successful run:
//!             # let result = clab_store::CachedResult::new("t", "ok", 0, vec![], None);
//!             remote.upload(key, &result, store.cas());
//!         }
//!     }
//!     // Before exit:
//!     let stats = remote.finish(Instant::now() + Duration::from_secs(30));
//!     for warning in remote.warnings() {
//!         eprintln!("warning: {warning}");
//!     }
//! #   let _ = stats;
//! }
//! # Ok(()) }
//! ```
//!
//! # Invariants
//!
//! - Nothing but a bad configuration is an error; every remote failure is a miss.
//! - A blob is hashed before it enters the local CAS; a fetch is a hit only when every blob
//!   of the entry verified. Uploads write blobs before the manifest.
//! - Secrets (signing key, tokens, passwords, URL credentials) never appear in `Debug`,
//!   errors, warnings or stats: they are [`Secret`]s, URLs print redacted, causes from
//!   libraries are scrubbed.
//! - Depends on `clab-store` and `clab-model` only, of clab's crates.

pub mod backend;
pub mod breaker;
mod client;
pub mod entry;
pub mod miss_reason;
pub mod remote_cache;
pub mod remote_config;
pub mod remote_stats;
pub mod remote_url;
pub mod secret;
pub mod signing;
#[cfg(feature = "test-servers")]
pub mod test_servers;
pub mod uploader;
pub mod warning;

pub use backend::{Backend, BackendError, Env, ObjectName, Timeouts};
pub use entry::{FORMAT_VERSION, LOG_BLOB_MAX, MANIFEST_MAX, Manifest};
pub use miss_reason::MissReason;
pub use remote_cache::{Fetch, Fetched, OnHit, ReadOnly, RemoteCache, RemoteInfo};
pub use remote_config::{
    CacheSettings, ConfigError, READ_ONLY_ENV, REMOTE_CACHE_ENV, RemoteConfig,
};
pub use remote_stats::RemoteStats;
pub use remote_url::RemoteUrl;
pub use secret::Secret;
pub use signing::{
    KeyError, PublicKey, SigningKey, TrustedKeys, public_key_from_env, public_key_line,
};
pub use uploader::{FlushReport, Uploader};
pub use warning::Warning;

/// Makes rustls use *ring* (what the rest of clab's TLS uses): reqwest and OpenDAL are built
/// without a default crypto provider, so that aws-lc-sys (a C build) stays out of the tree.
/// Idempotent; a provider installed earlier by someone else is kept.
pub(crate) fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Runs `future` on `handle`'s runtime and waits for it on this thread; `None` if the runtime
/// is gone. Works from any thread that may block (not from inside an async task).
pub(crate) fn block_on<T: Send + 'static>(
    handle: &tokio::runtime::Handle,
    future: impl std::future::Future<Output = T> + Send + 'static,
) -> Option<T> {
    let (sender, receiver) = std::sync::mpsc::sync_channel(1);
    handle.spawn(async move {
        let _ = sender.send(future.await);
    });
    receiver.recv().ok()
}

#[cfg(test)]
pub(crate) use clab_model::test_render as render;
