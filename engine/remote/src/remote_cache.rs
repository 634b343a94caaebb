//! `RemoteCache`: the one object a run holds to read through and write behind a shared cache.
//!
//! In: a [`RemoteConfig`]; then cache keys, the local [`Store`] and the results the run saved.
//! Out: [`Fetch`] answers (a hit's blobs are already in the local CAS, verified, and its result
//! saved in the local store, so the normal local restore path does the rest), background
//! uploads, [`RemoteStats`] and [`Warning`]s.
//!
//! Invariants:
//! - Nothing here fails a run: every remote problem is a [`MissReason`] (and, for outages,
//!   tampering and untrusted entries, a warning), never an `Err`. Only
//!   [`RemoteCache::from_config`] returns errors (bad configuration, which the user must fix).
//! - A blob enters the local CAS only after its bytes hashed to the digest its manifest names
//!   (and had the size it says); a fetch is a hit only if every blob did.
//! - Every download is bounded ([`MANIFEST_MAX`] for a manifest, the size its manifest gives
//!   for a blob, [`LOG_BLOB_MAX`] for a log of unknown size): an object over its bound is a
//!   [`MissReason::TooLarge`] with a warning, not an outage, and is never held whole.
//! - The methods are synchronous and may be called from many threads at once; the remote
//!   cache owns a small tokio runtime (2 workers) for its I/O. Call them from ordinary or
//!   blocking threads (`spawn_blocking`), not from inside an async task.
//! - With trusted keys set, only a job whose signing key is one of them uploads ([`ReadOnly`]):
//!   no upload replaces an entry with one that readers trusting those keys would refuse.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;
use clab_store::{CachedResult, Cas, Digest, PackWriter, Store, VerifiedBlob};
use serde::Serialize;
use tokio::runtime::Runtime;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::backend::{self, Backend, ObjectName};
use crate::client::{CallError, Client};
use crate::entry::{LOG_BLOB_MAX, MANIFEST_MAX, Manifest};
use crate::miss_reason::MissReason;
use crate::remote_config::{ConfigError, RemoteConfig};
use crate::remote_stats::RemoteStats;
use crate::signing::TrustedKeys;
use crate::uploader::{FlushReport, Uploader};
use crate::warning::Warning;

/// How many entries [`RemoteCache::fetch_many`] fetches at once (manifest, then blobs; the
/// blobs also wait for the download bound).
pub const ENTRIES_IN_FLIGHT: usize = 16;

/// The largest blob [`RemoteCache::fetch_many`] keeps in memory for the restore.
pub const KEEP_BLOB_MAX: u64 = 4 * 1024 * 1024;

/// How many bytes of blobs one [`RemoteCache::fetch_many`] keeps in memory at most; the blobs
/// past it are restored from the local CAS, as before.
pub const KEEP_BATCH_MAX: u64 = 256 * 1024 * 1024;

/// One answer of [`RemoteCache::fetch_many`]: the [`Fetch`], and for a hit the blobs it
/// downloaded (verified, and in the local CAS too), kept in memory so that the outputs can
/// be written from them ([`Store::restore_outputs_from`]) rather than read back from the
/// CAS and hashed a second time. Blobs the CAS already held, larger than [`KEEP_BLOB_MAX`]
/// or past [`KEEP_BATCH_MAX`] are not kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The answer.
    pub fetch: Fetch,
    /// A hit's downloaded blobs, by digest (empty for a miss).
    pub downloaded: HashMap<Digest, VerifiedBlob>,
}

/// What [`RemoteCache::fetch_many_restoring`] hands each hit to: the index of its key, its
/// result, and the blobs it downloaded (verified, by digest; see [`Fetched`]).
pub type OnHit = dyn Fn(usize, &CachedResult, &HashMap<Digest, VerifiedBlob>) + Send + Sync;

/// The answer of a fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetch {
    /// The entry, its blobs in the local CAS (verified) and its result saved locally.
    Hit(CachedResult),
    /// No usable entry, and why.
    Miss(MissReason),
}

/// What a remote cache is, for `--json`, `clab cache stats` and run headers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemoteInfo {
    /// The URL, redacted.
    pub url: String,
    /// Why uploads are off, if they are.
    pub read_only: Option<ReadOnly>,
    /// The public key of the signing key, if one is set (uploads are signed with it unless
    /// they are off).
    pub signer: Option<String>,
    /// The trusted public keys (empty: any entry is accepted).
    pub trusted_keys: Vec<String>,
}

/// Why a remote cache uploads nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadOnly {
    /// `read-only #true` in tasks.kdl, or `CLAB_REMOTE_CACHE_READ_ONLY`.
    Configured,
    /// Trusted keys are set and no signing key is: every reader that trusts them, this job
    /// included, would refuse the entries, and an upload would only replace a trusted entry
    /// under the same key with one they refuse.
    Unsigned,
    /// Trusted keys are set and the signing key is not one of them: the same, and a
    /// mistake worth a warning.
    SignerNotTrusted,
}

impl ReadOnly {
    /// Why, in a few words, for `clab cache stats`.
    pub fn describe(self) -> &'static str {
        match self {
            ReadOnly::Configured => "read-only",
            ReadOnly::Unsigned => "read-only: no signing key, and only signed entries are trusted",
            ReadOnly::SignerNotTrusted => "read-only: the signing key is not a trusted key",
        }
    }
}

/// A run's remote cache (see the module documentation).
#[derive(Debug)]
pub struct RemoteCache {
    client: Arc<Client>,
    uploader: Uploader,
    trusted: TrustedKeys,
    info: RemoteInfo,
    downloads: Arc<Semaphore>,
    runtime: Option<Runtime>,
}

impl RemoteCache {
    /// The remote cache `config` describes, or `None` when it names no URL.
    pub fn from_config(config: RemoteConfig) -> Result<Option<RemoteCache>, ConfigError> {
        let Some(url) = config.url.clone() else {
            return Ok(None);
        };
        let mut scrubber = config.env.scrubber();
        url.add_secrets_to(&mut scrubber);
        let backend =
            backend::open(&url, &config.env, config.timeouts, &scrubber).map_err(|e| match url
                .scheme()
            {
                "http" | "https" | "turbo+http" | "turbo+https" | "s3" | "redis" | "rediss"
                | "gs" | "azblob" | "ghac" => ConfigError::Backend {
                    url: url.redacted(),
                    reason: scrubber.scrub(&e.0),
                },
                scheme => ConfigError::UnsupportedScheme {
                    url: url.redacted(),
                    scheme: scheme.to_owned(),
                },
            })?;
        RemoteCache::with_backend(config, backend).map(Some)
    }

    /// The remote cache of `config` on `backend` (tests and callers with their own backend;
    /// `config.url` only names it in warnings).
    pub fn with_backend(
        config: RemoteConfig,
        backend: Arc<dyn Backend>,
    ) -> Result<RemoteCache, ConfigError> {
        let url = config
            .url
            .clone()
            .unwrap_or_else(|| crate::RemoteUrl::parse("memory://test").expect("a valid URL"));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("clab-remote")
            .enable_all()
            .build()
            .map_err(|e| ConfigError::Backend {
                url: url.redacted(),
                reason: format!("cannot start its I/O threads: {e}"),
            })?;
        let client = Arc::new(Client::new(
            backend,
            url.clone(),
            config.timeouts,
            config.breaker_threshold,
            config.transfer_memory_mib,
        ));
        let public_key = config.signing_key.as_ref().map(|k| k.public_key());
        let read_only = if config.read_only {
            Some(ReadOnly::Configured)
        } else if config.trusted_keys.is_empty() {
            None
        } else {
            match &public_key {
                None => Some(ReadOnly::Unsigned),
                Some(key) if !config.trusted_keys.contains(key) => {
                    client.warn(Warning::SignerNotTrusted {
                        url: url.redacted(),
                        signer: key.to_string(),
                    });
                    Some(ReadOnly::SignerNotTrusted)
                }
                Some(_) => None,
            }
        };
        let info = RemoteInfo {
            url: url.redacted(),
            read_only,
            signer: public_key
                .filter(|_| read_only != Some(ReadOnly::Configured))
                .map(|key| key.to_string()),
            trusted_keys: config.trusted_keys.iter().map(|k| k.to_string()).collect(),
        };
        let uploader = Uploader::new(
            Arc::clone(&client),
            runtime.handle().clone(),
            config.signing_key.clone().filter(|_| read_only.is_none()),
            config.parallelism,
        );
        Ok(RemoteCache {
            client,
            uploader,
            trusted: config.trusted_keys,
            info,
            downloads: Arc::new(Semaphore::new(config.parallelism.max(1))),
            runtime: Some(runtime),
        })
    }

    /// What this remote cache is (URL redacted, mode, keys).
    pub fn info(&self) -> &RemoteInfo {
        &self.info
    }

    /// Whether uploads are off (see [`ReadOnly`] for why they may be).
    pub fn read_only(&self) -> bool {
        self.info.read_only.is_some()
    }

    /// Looks `key` up on the remote; on a hit, downloads and verifies every blob into
    /// `store`'s CAS and saves the result in `store`, then returns it. The caller restores
    /// outputs from the local store as for a local hit (`Store::restore_outputs`).
    pub fn fetch(&self, key: &str, store: &Store) -> Fetch {
        let started = Instant::now();
        let answer = self
            .block_on(fetch_entry(
                Arc::clone(&self.client),
                key.to_owned(),
                store.cas().clone(),
                self.trusted.clone(),
                Arc::clone(&self.downloads),
                None,
            ))
            .map(|answer| answer.map(|(result, _)| result));
        let saved = match &answer {
            Some(Ok(result)) => Some(store.save_result(key, result)),
            _ => None,
        };
        let fetch = self.settle(key, answer, saved);
        self.client.stats_mut().fetch_ms += started.elapsed().as_millis() as u64;
        fetch
    }

    /// [`fetch`](Self::fetch) for many keys at once, answered in their order: up to
    /// [`ENTRIES_IN_FLIGHT`] entries are fetched concurrently (their blobs within the same
    /// download bound as `fetch`'s), so a batch of misses waits on the remote's latency about
    /// once rather than once per key. Each hit is checked and saved exactly as by `fetch`,
    /// and comes with the blobs it downloaded (see [`Fetched`]). The fetch time counted is
    /// the batch's wall time.
    pub fn fetch_many(&self, keys: &[String], store: &Store) -> Vec<Fetched> {
        self.fetch_many_with(keys, store, None)
    }

    /// [`fetch_many`](Self::fetch_many) that hands each hit to `on_hit` as soon as its entry
    /// is verified and its blobs are stored locally (in the local CAS, or in the batch's pack,
    /// visible once the batch ends, and then among the blobs handed over) — before the rest
    /// of the batch arrives and before the hits' rows are saved — with the blobs it downloaded
    /// (as [`Fetched`] would hold them); the blobs are dropped when `on_hit` returns, and the
    /// answers come back without them. For writing a hit's outputs while the others download:
    /// the batch then holds about [`ENTRIES_IN_FLIGHT`] entries' bytes at a time instead of
    /// all of them. `on_hit` runs on the remote cache's I/O threads, with the index of the key.
    pub fn fetch_many_restoring(
        &self,
        keys: &[String],
        store: &Store,
        on_hit: Arc<OnHit>,
    ) -> Vec<Fetched> {
        self.fetch_many_with(keys, store, Some(on_hit))
    }

    fn fetch_many_with(
        &self,
        keys: &[String],
        store: &Store,
        on_hit: Option<Arc<OnHit>>,
    ) -> Vec<Fetched> {
        let started = Instant::now();
        let client = Arc::clone(&self.client);
        let cas = store.cas().clone();
        let trusted = self.trusted.clone();
        let downloads = Arc::clone(&self.downloads);
        let owned: Arc<[String]> = keys.into();
        let count = keys.len();
        let keep = Arc::new(AtomicU64::new(KEEP_BATCH_MAX));
        let pack = Arc::new(cas.pack_writer());
        let batch_pack = Arc::clone(&pack);
        // At most `ENTRIES_IN_FLIGHT` tasks, each taking the next key when done with one:
        // a task per key (each parked on a semaphore) cost a task allocation and wake-ups
        // for every entry of a 200-entry batch.
        let next = Arc::new(AtomicUsize::new(0));
        let answers = self.block_on(async move {
            let mut fetches = JoinSet::new();
            for _ in 0..count.min(ENTRIES_IN_FLIGHT) {
                let client = Arc::clone(&client);
                let cas = cas.clone();
                let trusted = trusted.clone();
                let downloads = Arc::clone(&downloads);
                let keep = Arc::clone(&keep);
                let pack = Arc::clone(&pack);
                let on_hit = on_hit.clone();
                let owned = Arc::clone(&owned);
                let next = Arc::clone(&next);
                fetches.spawn(async move {
                    let mut answered = Vec::new();
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(key) = owned.get(index) else {
                            return answered;
                        };
                        let answer = fetch_entry(
                            Arc::clone(&client),
                            key.clone(),
                            cas.clone(),
                            trusted.clone(),
                            Arc::clone(&downloads),
                            Some(Batch {
                                keep: Arc::clone(&keep),
                                pack: Arc::clone(&pack),
                            }),
                        )
                        .await;
                        let answer = match (answer, &on_hit) {
                            (Ok((result, downloaded)), Some(on_hit)) => {
                                on_hit(index, &result, &downloaded);
                                // Written: their bytes go back to the batch's budget.
                                let held: u64 = downloaded.values().map(|b| b.len() as u64).sum();
                                keep.fetch_add(held, Ordering::AcqRel);
                                Ok((result, HashMap::new()))
                            }
                            (answer, _) => answer,
                        };
                        answered.push((index, answer));
                    }
                });
            }
            let mut answers: Vec<Option<Result<Downloaded, Rejection>>> =
                std::iter::repeat_with(|| None).take(count).collect();
            while let Some(joined) = fetches.join_next().await {
                for (index, answer) in joined.into_iter().flatten() {
                    answers[index] = Some(answer);
                }
            }
            answers
        });
        let mut answers = answers.unwrap_or_default();
        answers.resize_with(keys.len(), || None);
        // The hits' blobs visible before their rows are saved (a pack that cannot be finished
        // leaves the hits restored but not kept: saving them then fails, warned below).
        if let Err(e) = batch_pack.finish() {
            let first_hit = keys
                .iter()
                .zip(&answers)
                .find(|(_, a)| matches!(a, Some(Ok(_))));
            if let Some((key, _)) = first_hit {
                self.client.warn(Warning::LocalStore {
                    key: key.clone(),
                    cause: e.to_string(),
                });
            }
        }
        // The hits' rows in one transaction.
        let hits: Vec<(&str, &CachedResult)> = keys
            .iter()
            .zip(&answers)
            .filter_map(|(key, answer)| match answer {
                Some(Ok((result, _))) => Some((key.as_str(), result)),
                _ => None,
            })
            .collect();
        let mut saved = store.save_results(&hits).into_iter();
        let fetched: Vec<Fetched> = keys
            .iter()
            .zip(answers)
            .map(|(key, answer)| {
                let saved = match &answer {
                    Some(Ok(_)) => saved.next(),
                    _ => None,
                };
                let (answer, downloaded) = match answer {
                    Some(Ok((result, downloaded))) => (Some(Ok(result)), downloaded),
                    Some(Err(rejection)) => (Some(Err(rejection)), HashMap::new()),
                    None => (None, HashMap::new()),
                };
                let fetch = self.settle(key, answer, saved);
                Fetched { fetch, downloaded }
            })
            .collect();
        self.client.stats_mut().fetch_ms += started.elapsed().as_millis() as u64;
        fetched
    }

    /// A fetch's answer (`None`: the runtime is gone) as a [`Fetch`], given how saving a hit
    /// in the local store went (`saved`): rejections and failed saves warned about, both
    /// counted.
    fn settle(
        &self,
        key: &str,
        answer: Option<Result<CachedResult, Rejection>>,
        saved: Option<Result<(), clab_store::Error>>,
    ) -> Fetch {
        let answer = match answer {
            Some(answer) => answer,
            None => Err((MissReason::Unavailable, None)),
        };
        let fetch = match answer {
            Ok(result) => {
                if let Some(Err(e)) = saved {
                    // The blobs are in the CAS: the caller can still restore from `result`.
                    self.client.warn(Warning::LocalStore {
                        key: key.to_owned(),
                        cause: e.to_string(),
                    });
                }
                Fetch::Hit(result)
            }
            Err((reason, task)) => {
                if reason.is_integrity_failure() {
                    self.client.warn(Warning::Rejected {
                        key: key.to_owned(),
                        task,
                        reason: reason.clone(),
                        others: 0,
                    });
                } else if reason.is_distrust() {
                    self.client.warn(Warning::Untrusted {
                        key: key.to_owned(),
                        task,
                        reason: reason.clone(),
                        others: 0,
                    });
                } else if let MissReason::LocalStore { detail } = &reason {
                    self.client.warn(Warning::LocalStore {
                        key: key.to_owned(),
                        cause: detail.clone(),
                    });
                }
                Fetch::Miss(reason)
            }
        };
        let mut stats = self.client.stats_mut();
        match &fetch {
            Fetch::Hit(_) => stats.hits += 1,
            Fetch::Miss(reason) => *stats.misses.entry(reason.code().to_owned()).or_insert(0) += 1,
        }
        fetch
    }

    /// The result the remote holds for `key`, if its manifest is usable (fetched and checked
    /// against the format and the trusted keys; blobs are not downloaded): for `--dry-run`
    /// and `explain`, which need the outputs' digests for the keys downstream. Counts nothing
    /// and records no warning.
    pub fn probe(&self, key: &str) -> Result<CachedResult, MissReason> {
        let client = Arc::clone(&self.client);
        let trusted = self.trusted.clone();
        let key = key.to_owned();
        self.block_on(async move {
            fetch_manifest(&client, &key, &trusted)
                .await
                .map(|manifest| manifest.to_result())
                .map_err(|(reason, _)| reason)
        })
        .unwrap_or(Err(MissReason::Unavailable))
    }

    /// Uploads `result` (saved locally under `key`, its blobs in `cas`) in the background,
    /// unless the remote is read-only; returns at once.
    pub fn upload(&self, key: &str, result: &CachedResult, cas: &Cas) {
        if self.read_only() {
            self.client.stats_mut().upload_skipped_read_only += 1;
            return;
        }
        self.uploader.upload(key, result, cas);
    }

    /// The uploader (to look at pending uploads or flush without finishing).
    pub fn uploader(&self) -> &Uploader {
        &self.uploader
    }

    /// Ends the run: waits for uploads until `deadline` (those still running are counted as
    /// abandoned) and returns the run's stats.
    pub fn finish(&self, deadline: Instant) -> RemoteStats {
        let _: FlushReport = self.uploader.flush(deadline);
        self.stats()
    }

    /// The run's stats so far.
    pub fn stats(&self) -> RemoteStats {
        self.client.stats()
    }

    /// The warnings so far: rejected entries and local store failures as they happened, then
    /// at most one about the remote being unavailable. A snapshot: calling again repeats them,
    /// so show them once, after [`finish`](Self::finish).
    pub fn warnings(&self) -> Vec<Warning> {
        self.client.warnings()
    }

    fn block_on<T: Send + 'static>(
        &self,
        future: impl std::future::Future<Output = T> + Send + 'static,
    ) -> Option<T> {
        let runtime = self.runtime.as_ref()?;
        crate::block_on(runtime.handle(), future)
    }
}

impl Drop for RemoteCache {
    fn drop(&mut self) {
        // Uploads still running are abandoned; the runtime's threads are not waited for.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A miss, with the task the manifest names when it could be read.
type Rejection = (MissReason, Option<String>);

async fn fetch_manifest(
    client: &Client,
    key: &str,
    trusted: &TrustedKeys,
) -> Result<Manifest, Rejection> {
    let name = ObjectName::ac(key).ok_or((MissReason::NotFound, None))?;
    let bytes = match client.call(client.backend.get(name, MANIFEST_MAX)).await {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Err((MissReason::NotFound, None)),
        Err(CallError::Unavailable | CallError::WriteDenied) => {
            return Err((MissReason::Unavailable, None));
        }
        Err(CallError::Integrity(_)) => return Err((MissReason::BadSignature, None)),
        Err(CallError::TooLarge) => {
            let reason = MissReason::TooLarge {
                digest: None,
                max: MANIFEST_MAX,
            };
            return Err((reason, None));
        }
    };
    client.stats_mut().bytes_down += bytes.len() as u64;
    let manifest = Manifest::parse(bytes).map_err(|reason| (reason, None))?;
    manifest
        .check(key, trusted)
        .map_err(|reason| (reason, Some(manifest.task.clone())))?;
    Ok(manifest)
}

/// A hit's result and the blobs kept of those it downloaded.
type Downloaded = (CachedResult, HashMap<Digest, VerifiedBlob>);

/// Fetches the entry of `key`: its manifest, checked, its inline blobs, each verified (all of
/// them, whether the local CAS has them or not), then each other blob the local CAS lacks,
/// downloaded and verified; the blobs the CAS lacked are put in it. With `keep` (the bytes
/// the batch may still keep), those that fit are also kept in memory (see [`Fetched`]).
async fn fetch_entry(
    client: Arc<Client>,
    key: String,
    cas: Cas,
    trusted: TrustedKeys,
    downloads: Arc<Semaphore>,
    batch: Option<Batch>,
) -> Result<Downloaded, Rejection> {
    let keep = batch.as_ref().map(|batch| Arc::clone(&batch.keep));
    let manifest = fetch_manifest(&client, &key, &trusted).await?;
    let task = Some(manifest.task.clone());
    let blobs = manifest.blobs().map_err(|reason| (reason, task.clone()))?;
    // Every inline blob hashed before any enters the CAS: one that fails misses the entry.
    let carried = manifest
        .inline_blobs()
        .map_err(|reason| (reason, task.clone()))?;
    let mut downloaded = HashMap::new();
    let log = manifest.log;
    for blob in &carried {
        if cas.contains(blob.digest()) {
            continue;
        }
        // Small (`INLINE_BLOB_MAX`): written on this I/O thread, as `fetch_blob` does. Into
        // the batch's pack when the blob is also kept for the restore (the pack is visible
        // only once the batch ends), and it is not the log (read by its file: `clab log`).
        let kept = keep_fits(keep.as_deref(), blob);
        let put = match &batch {
            Some(batch) if kept && Some(*blob.digest()) != log => batch.pack.put(blob),
            _ => cas.put_verified(blob),
        };
        put.map_err(|e| {
            let detail = e.to_string();
            (MissReason::LocalStore { detail }, task.clone())
        })?;
        client.stats_mut().blobs_down += 1;
        if kept {
            downloaded.insert(*blob.digest(), blob.clone());
        }
    }
    let mut transfers = JoinSet::new();
    for (digest, size) in blobs {
        if carried.iter().any(|blob| *blob.digest() == digest) {
            continue;
        }
        if cas.contains(&digest) {
            // Local blobs are verified when restored (`Cas::copy_to`).
            continue;
        }
        if digest == Digest::empty() {
            // Never uploaded (see `uploader`): made here, from nothing.
            cas.put_bytes(&[]).map_err(|e| {
                let detail = e.to_string();
                (MissReason::LocalStore { detail }, task.clone())
            })?;
            continue;
        }
        let client = Arc::clone(&client);
        let cas = cas.clone();
        let downloads = Arc::clone(&downloads);
        let keep = keep
            .as_ref()
            .filter(|_| size.is_some_and(|size| size <= KEEP_BLOB_MAX))
            .cloned();
        transfers.spawn(async move {
            let blob = fetch_blob(&client, &cas, digest, size, &downloads).await?;
            let kept = keep_fits(keep.as_deref(), &blob);
            Ok(kept.then_some(blob))
        });
    }
    while let Some(joined) = transfers.join_next().await {
        match joined.unwrap_or(Err(MissReason::Unavailable)) {
            Ok(Some(blob)) => {
                downloaded.insert(*blob.digest(), blob);
            }
            Ok(None) => {}
            Err(reason) => {
                transfers.abort_all();
                return Err((reason, task));
            }
        }
    }
    Ok((manifest.to_result(), downloaded))
}

/// What the entries of one [`RemoteCache::fetch_many`] share: the bytes they may still keep in
/// memory for the restore, and the pack their small blobs are written into (see
/// `clab_store::Cas::pack_writer`), finished before the hits are saved.
#[derive(Clone)]
struct Batch {
    keep: Arc<AtomicU64>,
    pack: Arc<PackWriter>,
}

/// Whether `blob` may be kept in memory for the restore, taking its bytes from the batch's
/// budget `keep` if so (the size was checked against the manifest's, so what is taken from
/// the budget is what is held).
fn keep_fits(keep: Option<&AtomicU64>, blob: &VerifiedBlob) -> bool {
    keep.is_some_and(|keep| {
        let len = blob.len() as u64;
        len <= KEEP_BLOB_MAX
            && keep
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |left| {
                    left.checked_sub(len)
                })
                .is_ok()
    })
}

/// Blobs smaller than this are verified and written on the I/O thread that downloaded them
/// (a 1 MiB blob: well under a millisecond). At 64 KiB, the 82 KB outputs of the 2,000-task
/// fresh checkout each went through the blocking pool: 7,300–9,000 context switches per
/// restore instead of 2,300–2,700, and ~60 ms more CPU (median of 5 alternating runs each).
const INLINE_PUT: u64 = 1024 * 1024;

/// The room in the transfers' memory a blob of unknown size (a log) takes.
const UNSIZED_ROOM: u64 = 8 * 1024 * 1024;

/// Downloads one blob (no more than the `size` its manifest gives, or [`LOG_BLOB_MAX`] for a
/// log, whose size is not given), verifies it, and puts it in the local CAS; returns it.
async fn fetch_blob(
    client: &Client,
    cas: &Cas,
    digest: Digest,
    size: Option<u64>,
    downloads: &Semaphore,
) -> Result<VerifiedBlob, MissReason> {
    let _permit = downloads
        .acquire()
        .await
        .map_err(|_| MissReason::Unavailable)?;
    // The size the manifest gives (signed, when it is); a log's is not given.
    let max = size.unwrap_or(LOG_BLOB_MAX);
    // Held, whole, until it is verified and in the CAS (and kept or dropped). A log's size
    // is not known; most are small, and counting each as its 256 MiB bound would make them
    // wait for one another.
    let _room = client
        .room_for(size.unwrap_or(UNSIZED_ROOM))
        .await
        .ok_or(MissReason::Unavailable)?;
    let bytes: Bytes = match client
        .call(client.backend.get(ObjectName::cas(&digest), max))
        .await
    {
        Ok(Some(bytes)) => bytes,
        Ok(None) => return Err(MissReason::BlobMissing { digest }),
        Err(CallError::Unavailable | CallError::WriteDenied) => {
            return Err(MissReason::Unavailable);
        }
        Err(CallError::Integrity(_)) => return Err(MissReason::BlobMismatch { digest }),
        Err(CallError::TooLarge) => {
            return Err(MissReason::TooLarge {
                digest: Some(digest),
                max,
            });
        }
    };
    {
        let mut stats = client.stats_mut();
        stats.bytes_down += bytes.len() as u64;
    }
    if size.is_some_and(|size| size != bytes.len() as u64) {
        return Err(MissReason::BlobMismatch { digest });
    }
    let verify_and_put = {
        let cas = cas.clone();
        move || {
            let blob = VerifiedBlob::verify(bytes, &digest)
                .map_err(|_| MissReason::BlobMismatch { digest })?;
            cas.put_verified(&blob)
                .map_err(|e| MissReason::LocalStore {
                    detail: e.to_string(),
                })?;
            Ok(blob)
        }
    };
    let blob = if size.is_some_and(|size| size < INLINE_PUT) {
        // A small blob is hashed and written in well under a millisecond: handing it to
        // the blocking pool cost two thread switches (and, many at once, new threads).
        verify_and_put()?
    } else {
        // Hashing and writing a large blob are CPU and disk work: off the I/O threads.
        tokio::task::spawn_blocking(verify_and_put)
            .await
            .map_err(|_| MissReason::Unavailable)??
    };
    client.learn(digest);
    client.stats_mut().blobs_down += 1;
    Ok(blob)
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::time::Duration;

    use super::*;
    use crate::backend::memory::MemoryBackend;
    use crate::signing::SigningKey;

    /// A project with two outputs and a log, saved in its local store under `key`.
    struct Project {
        dir: tempfile::TempDir,
        store: Store,
        result: CachedResult,
    }

    fn project() -> Project {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("out")).unwrap();
        fs::write(dir.path().join("out/a.txt"), "alpha").unwrap();
        fs::write(dir.path().join("out/b.bin"), vec![7u8; 300_000]).unwrap();
        let store = Store::open(dir.path().join(".clab")).unwrap().store;
        let outputs = vec![
            store.store_output(dir.path(), "out/a.txt").unwrap(),
            store.store_output(dir.path(), "out/b.bin").unwrap(),
        ];
        let log = store.put_log(b"built\n").unwrap();
        let result = CachedResult::new("build", "ok", 42, outputs, Some(log));
        store.save_result("k1", &result).unwrap();
        Project { dir, store, result }
    }

    fn empty_store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join(".clab")).unwrap().store;
        (dir, store)
    }

    fn remote(
        backend: &Arc<MemoryBackend>,
        configure: impl FnOnce(&mut RemoteConfig),
    ) -> RemoteCache {
        let mut config = RemoteConfig::new(Some(
            crate::RemoteUrl::parse("https://ci:pa55word-x@cache.example/clab").unwrap(),
        ));
        configure(&mut config);
        RemoteCache::with_backend(config, Arc::clone(backend) as Arc<dyn Backend>).unwrap()
    }

    fn deadline() -> Instant {
        Instant::now() + Duration::from_secs(10)
    }

    fn upload(remote: &RemoteCache, project: &Project) -> RemoteStats {
        remote.upload("k1", &project.result, project.store.cas());
        remote.finish(deadline())
    }

    #[test]
    fn an_uploaded_entry_is_fetched_into_another_store() {
        let backend = Arc::new(MemoryBackend::new());
        let project = project();
        let writer = remote(&backend, |_| {});
        let stats = upload(&writer, &project);
        assert_eq!(
            (stats.entries_up, stats.blobs_up, stats.upload_failed),
            (1, 3, 0)
        );
        // The 5-byte output and the log travel in the manifest; the 300 KB output on its own.
        let objects = backend.objects();
        let big = project.result.outputs[1].hash;
        assert_eq!(
            objects.keys().cloned().collect::<Vec<_>>(),
            ["ac/k1".to_owned(), format!("cas/{big}")]
        );
        let manifest = Manifest::parse(objects["ac/k1"].clone()).unwrap();
        let mut carried: Vec<Digest> = manifest.inline.iter().map(|b| b.digest).collect();
        let mut small = vec![project.result.outputs[0].hash, project.result.log.unwrap()];
        carried.sort();
        small.sort();
        assert_eq!(carried, small);

        let (other, store) = empty_store();
        let reader = remote(&backend, |_| {});
        let Fetch::Hit(result) = reader.fetch("k1", &store) else {
            panic!("expected a hit");
        };
        let mut expected = project.result.clone();
        expected.outputs.sort();
        assert_eq!(result, expected);
        // Saved locally: the next lookup is a local hit.
        assert!(store.load_result("k1").unwrap().is_some());
        store.restore_outputs(other.path(), &result).unwrap();
        for path in ["out/a.txt", "out/b.bin"] {
            assert_eq!(
                fs::read(other.path().join(path)).unwrap(),
                fs::read(project.dir.path().join(path)).unwrap()
            );
        }
        let stats = reader.finish(deadline());
        assert_eq!((stats.hits, stats.blobs_down), (1, 3));
        assert!(stats.bytes_down > 300_000);
        assert!(reader.warnings().is_empty(), "{:?}", reader.warnings());

        // A second upload skips the blob the remote has (the carried ones go in the manifest).
        let again = remote(&backend, |_| {});
        let stats = upload(&again, &project);
        assert_eq!(
            (stats.blobs_up, stats.blobs_present, stats.entries_up),
            (2, 1, 1)
        );
    }

    #[test]
    fn a_tampered_blob_is_never_kept_and_warns_once() {
        let backend = Arc::new(MemoryBackend::new());
        let project = project();
        upload(&remote(&backend, |_| {}), &project);
        // The 300 KB output: too big to be carried in the manifest.
        let digest = project.result.outputs[1].hash;
        let path = format!("cas/{digest}");
        let original = backend.objects()[&path].clone();
        // Same size, other bytes; then other size.
        let mut evil = original.to_vec();
        evil[0] ^= 1;
        for bytes in [evil, b"evil".to_vec()] {
            backend.set(&path, bytes);
            let (_dir, store) = empty_store();
            let reader = remote(&backend, |_| {});
            assert_eq!(
                reader.fetch("k1", &store),
                Fetch::Miss(MissReason::BlobMismatch { digest })
            );
            assert!(
                !store.cas().contains(&digest),
                "a tampered blob entered the CAS"
            );
            assert!(store.load_result("k1").unwrap().is_none());
            let warnings = reader.warnings();
            assert_eq!(warnings.len(), 1, "{warnings:?}");
            assert!(matches!(&warnings[0], Warning::Rejected { key, .. } if key == "k1"));
            assert_eq!(reader.stats().misses_of("blob_mismatch"), 1);
        }
        // A missing blob is an ordinary miss.
        backend.remove(&path);
        let (_dir, store) = empty_store();
        let reader = remote(&backend, |_| {});
        assert_eq!(
            reader.fetch("k1", &store),
            Fetch::Miss(MissReason::BlobMissing { digest })
        );
        assert!(reader.warnings().is_empty());
    }

    #[test]
    fn an_object_over_its_bound_is_a_miss_with_one_warning_and_not_an_outage() {
        let backend = Arc::new(MemoryBackend::new());
        let project = project();
        upload(&remote(&backend, |_| {}), &project);
        // The 300 KB output, one byte longer on the server than its manifest says.
        let digest = project.result.outputs[1].hash;
        let path = format!("cas/{digest}");
        let mut longer = backend.objects()[&path].to_vec();
        longer.push(0);
        backend.set(&path, longer);
        let reader = remote(&backend, |_| {});
        let (other, store) = empty_store();
        let too_large = MissReason::TooLarge {
            digest: Some(digest),
            max: 300_000,
        };
        // More fetches than the breaker's threshold: none of them is an outage.
        for _ in 0..4 {
            assert_eq!(reader.fetch("k1", &store), Fetch::Miss(too_large.clone()));
        }
        assert!(!store.cas().contains(&digest));
        assert!(store.load_result("k1").unwrap().is_none());
        assert!(!other.path().join("out").exists());

        // A manifest over its bound, then one exactly at it (read, and found to be no
        // manifest).
        let manifest = backend.objects()["ac/k1"].clone();
        backend.set("ac/k1", vec![b' '; MANIFEST_MAX as usize + 1]);
        assert_eq!(
            reader.fetch("k1", &store),
            Fetch::Miss(MissReason::TooLarge {
                digest: None,
                max: MANIFEST_MAX
            })
        );
        assert_eq!(
            reader.probe("k1"),
            Err(MissReason::TooLarge {
                digest: None,
                max: MANIFEST_MAX
            })
        );
        backend.set("ac/k1", vec![b' '; MANIFEST_MAX as usize]);
        assert!(matches!(
            reader.fetch("k1", &store),
            Fetch::Miss(MissReason::BadManifest { .. })
        ));

        let stats = reader.stats();
        assert!(!stats.circuit_open && stats.failures == 0, "{stats:?}");
        assert_eq!(stats.misses_of("too_large"), 5, "{stats:?}");
        let warnings = reader.warnings();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert_eq!(
            warnings[0],
            Warning::Rejected {
                key: "k1".to_owned(),
                task: Some("build".to_owned()),
                reason: too_large,
                others: 4,
            }
        );

        // Put right, the entry restores: the remote was never given up on.
        backend.set("ac/k1", manifest);
        backend.set(&path, project.store.cas().read(&digest).unwrap());
        assert!(matches!(reader.fetch("k1", &store), Fetch::Hit(_)));
    }

    #[test]
    fn a_tampered_inline_blob_is_never_kept_and_nothing_is_downloaded() {
        let backend = Arc::new(MemoryBackend::new());
        let project = project();
        upload(&remote(&backend, |_| {}), &project);
        let manifest = backend.objects()["ac/k1"].clone();
        // The carried bytes are `alpha` then the log: one of `alpha`'s changed on the server.
        let at = manifest.len() - b"alphabuilt\n".len();
        assert_eq!(&manifest[at..], b"alphabuilt\n");
        let mut evil = manifest.to_vec();
        evil[at] = b'A';
        backend.set("ac/k1", evil);
        let calls = backend.calls();
        let (_dir, store) = empty_store();
        let reader = remote(&backend, |_| {});
        let digest = project.result.outputs[0].hash;
        let fetched = reader.fetch_many(&["k1".to_owned()], &store);
        assert_eq!(
            fetched[0].fetch,
            Fetch::Miss(MissReason::BlobMismatch { digest })
        );
        assert!(fetched[0].downloaded.is_empty());
        assert_eq!(backend.calls(), calls + 1, "only the manifest was read");
        assert!(!store.cas().contains(&digest));
        assert!(!store.cas().contains(&project.result.log.unwrap()));
        assert!(store.load_result("k1").unwrap().is_none());
        assert_eq!(reader.warnings().len(), 1, "{:?}", reader.warnings());
        assert_eq!(reader.stats().misses_of("blob_mismatch"), 1);
        // Even when the reader holds the blob already, the carried bytes must match.
        store.cas().put_bytes(b"alpha").unwrap();
        assert_eq!(
            reader.fetch("k1", &store),
            Fetch::Miss(MissReason::BlobMismatch { digest })
        );
    }

    /// `backend` holding the project's `k1` and a `k2` whose only output (`out/c.txt`,
    /// carried in its manifest) was tampered with on the server; `c` is that output.
    fn k1_and_a_tampered_k2(backend: &Arc<MemoryBackend>) -> (Project, clab_store::OutputEntry) {
        let project = project();
        let root = project.dir.path();
        fs::write(root.join("out/c.txt"), "gamma").unwrap();
        let c = project.store.store_output(root, "out/c.txt").unwrap();
        let k2 = CachedResult::new("other", "ok", 7, vec![c.clone()], None);
        project.store.save_result("k2", &k2).unwrap();
        let writer = remote(backend, |_| {});
        writer.upload("k1", &project.result, project.store.cas());
        writer.upload("k2", &k2, project.store.cas());
        writer.finish(deadline());
        let mut evil = backend.objects()["ac/k2"].to_vec();
        assert!(evil.ends_with(b"\ngamma"));
        *evil.last_mut().unwrap() = b'e';
        backend.set("ac/k2", evil);
        (project, c)
    }

    #[test]
    fn fetch_many_answers_in_order_and_checks_each_entry_as_fetch_does() {
        let backend = Arc::new(MemoryBackend::new());
        let (_project, c) = k1_and_a_tampered_k2(&backend);

        let (other, store) = empty_store();
        let reader = remote(&backend, |_| {});
        let keys = ["k2", "missing", "k1"].map(String::from);
        let fetched = reader.fetch_many(&keys, &store);
        assert_eq!(fetched.len(), 3);
        assert_eq!(
            fetched[0].fetch,
            Fetch::Miss(MissReason::BlobMismatch { digest: c.hash })
        );
        assert_eq!(fetched[1].fetch, Fetch::Miss(MissReason::NotFound));
        // Misses keep nothing: the tampered bytes are nowhere to restore from.
        assert!(fetched[0].downloaded.is_empty() && fetched[1].downloaded.is_empty());
        let Fetch::Hit(result) = &fetched[2].fetch else {
            panic!("expected a hit: {:?}", fetched[2]);
        };
        // The tampered blob never entered the CAS and its entry was not saved; the good one
        // was, and restores byte for byte.
        assert!(!store.cas().contains(&c.hash));
        assert!(store.load_result("k2").unwrap().is_none());
        assert!(store.load_result("k1").unwrap().is_some());
        store.restore_outputs(other.path(), result).unwrap();
        assert_eq!(fs::read(other.path().join("out/a.txt")).unwrap(), b"alpha");
        let stats = reader.stats();
        assert_eq!(stats.hits, 1);
        assert_eq!(stats.misses_of("blob_mismatch"), 1);
        assert_eq!(stats.misses_of("not_found"), 1);
        assert_eq!(reader.warnings().len(), 1, "{:?}", reader.warnings());
    }

    #[test]
    fn fetch_many_restoring_hands_each_verified_hit_over_at_once_and_keeps_nothing() {
        let backend = Arc::new(MemoryBackend::new());
        let (project, c) = k1_and_a_tampered_k2(&backend);

        let (other, store) = empty_store();
        let store = Arc::new(store);
        let reader = remote(&backend, |_| {});
        let keys = ["k2", "missing", "k1"].map(String::from);
        let handed = Arc::new(std::sync::Mutex::new(Vec::new()));
        let on_hit: Arc<OnHit> = {
            let (store, handed) = (Arc::clone(&store), Arc::clone(&handed));
            let dest = other.path().to_owned();
            Arc::new(
                move |index, result: &CachedResult, downloaded: &HashMap<_, _>| {
                    // Every blob is in the CAS already, or in the batch's pack (visible when
                    // the batch ends) and handed over; the outputs restore from the bytes.
                    assert!(
                        result
                            .blobs()
                            .all(|d| store.cas().contains(&d) || downloaded.contains_key(&d))
                    );
                    let report = store.restore_outputs_from(&dest, result, downloaded);
                    let mut kept: Vec<Digest> = downloaded.keys().copied().collect();
                    kept.sort();
                    handed.lock().unwrap().push((index, kept, report.is_ok()));
                },
            )
        };
        let fetched = reader.fetch_many_restoring(&keys, &store, on_hit);
        assert!(project.result.blobs().all(|d| store.cas().contains(&d)));
        // Only the good hit was handed over, once, with the blobs it downloaded.
        let mut expected: Vec<Digest> = project
            .result
            .blobs()
            .filter(|d| *d != Digest::empty())
            .collect();
        expected.sort();
        expected.dedup();
        assert_eq!(*handed.lock().unwrap(), [(2, expected, true)]);
        assert_eq!(fs::read(other.path().join("out/a.txt")).unwrap(), b"alpha");
        assert_eq!(
            fs::read(other.path().join("out/b.bin")).unwrap(),
            vec![7u8; 300_000]
        );
        // The answers are those of `fetch_many`, without the bytes (dropped once written).
        assert_eq!(
            fetched[0].fetch,
            Fetch::Miss(MissReason::BlobMismatch { digest: c.hash })
        );
        assert_eq!(fetched[1].fetch, Fetch::Miss(MissReason::NotFound));
        assert!(matches!(&fetched[2].fetch, Fetch::Hit(r) if r.outputs == project.result.outputs));
        assert!(fetched.iter().all(|f| f.downloaded.is_empty()));
        assert!(store.load_result("k1").unwrap().is_some());
        assert!(store.load_result("k2").unwrap().is_none());
        assert!(!other.path().join("out/c.txt").exists());
    }

    #[test]
    fn fetch_many_keeps_the_downloaded_blobs_for_the_restore_within_its_budget() {
        let backend = Arc::new(MemoryBackend::new());
        let project = project();
        upload(&remote(&backend, |_| {}), &project);
        let digests: Vec<Digest> = project.result.outputs.iter().map(|o| o.hash).collect();

        let (other, store) = empty_store();
        let reader = remote(&backend, |_| {});
        let fetched = reader.fetch_many(&["k1".to_owned()], &store);
        let Fetch::Hit(result) = &fetched[0].fetch else {
            panic!("expected a hit: {:?}", fetched[0]);
        };
        // Both outputs were downloaded, verified, put in the CAS and kept; the log too.
        let kept = &fetched[0].downloaded;
        for digest in &digests {
            assert_eq!(kept[digest].digest(), digest);
            assert_eq!(Digest::of_bytes(kept[digest].bytes()), *digest);
            assert!(store.cas().contains(digest));
        }
        store
            .restore_outputs_from(other.path(), result, kept)
            .unwrap();
        assert_eq!(fs::read(other.path().join("out/a.txt")).unwrap(), b"alpha");
        assert_eq!(
            fs::read(other.path().join("out/b.bin")).unwrap(),
            vec![7u8; 300_000]
        );

        // Blobs the CAS already holds are not downloaded, so not kept.
        let again = reader.fetch_many(&["k1".to_owned()], &store);
        assert!(matches!(again[0].fetch, Fetch::Hit(_)));
        assert!(
            again[0].downloaded.is_empty(),
            "{:?}",
            again[0].downloaded.keys()
        );

        // Past the batch's budget, blobs are still fetched and stored, just not kept.
        let (_dir, store) = empty_store();
        let keep = Arc::new(AtomicU64::new(10));
        let pack = Arc::new(store.cas().pack_writer());
        let reader = remote(&backend, |_| {});
        let answer = reader
            .block_on(fetch_entry(
                Arc::clone(&reader.client),
                "k1".to_owned(),
                store.cas().clone(),
                reader.trusted.clone(),
                Arc::clone(&reader.downloads),
                Some(Batch {
                    keep: Arc::clone(&keep),
                    pack: Arc::clone(&pack),
                }),
            ))
            .unwrap()
            .unwrap();
        let small: Vec<&Digest> = answer.1.keys().collect();
        let log = project.result.log.unwrap();
        // Kept blobs go into the batch's pack, but the log; the others are files of their own.
        let packed = small.iter().filter(|d| ***d != log).count();
        assert_eq!(pack.finish().unwrap(), packed);
        assert_eq!(small.len(), 1, "{small:?}");
        assert!(
            small.iter().all(|d| **d == digests[0] || **d == log),
            "only the 5- and 6-byte blobs fit in 10 bytes, not both: {small:?}"
        );
        assert!(keep.load(Ordering::Acquire) <= 10);
        for digest in &digests {
            assert!(store.cas().contains(digest));
        }
    }

    #[test]
    fn trust_decides_which_entries_are_read() {
        let backend = Arc::new(MemoryBackend::new());
        let project = project();
        let main = SigningKey::from_seed([1; 32]);
        let fork = SigningKey::from_seed([2; 32]);
        let trusting = |config: &mut RemoteConfig| {
            config.trusted_keys = TrustedKeys::of([SigningKey::from_seed([1; 32]).public_key()]);
        };

        // Unsigned entry: a miss for a reader with trusted keys, a hit without.
        upload(&remote(&backend, |_| {}), &project);
        let (_dir, store) = empty_store();
        let reader = remote(&backend, trusting);
        assert_eq!(
            reader.fetch("k1", &store),
            Fetch::Miss(MissReason::Unsigned)
        );
        // A refusal of the same kind is counted in the first one's warning.
        assert_eq!(
            reader.fetch("k1", &store),
            Fetch::Miss(MissReason::Unsigned)
        );
        let warnings = reader.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert_eq!(
            warnings[0].to_string(),
            "remote cache entry `k1` (task `build`) is not trusted: remote entry is unsigned \
             and trusted keys are set (and 1 more entry)"
        );
        assert!(matches!(
            remote(&backend, |_| {}).fetch("k1", &store),
            Fetch::Hit(_)
        ));

        // Signed by another key: refused.
        let fork_key = fork.clone();
        upload(
            &remote(&backend, move |c| c.signing_key = Some(fork_key)),
            &project,
        );
        let (_dir, store) = empty_store();
        let reader = remote(&backend, trusting);
        assert_eq!(
            reader.fetch("k1", &store),
            Fetch::Miss(MissReason::UntrustedSigner {
                signer: fork.public_key().to_string()
            })
        );
        assert!(
            matches!(&reader.warnings()[..], [Warning::Untrusted { reason, .. }]
                if reason.code() == "untrusted_signer"),
            "{:?}",
            reader.warnings()
        );

        // Signed by the trusted key: accepted.
        let main_key = main.clone();
        let writer = remote(&backend, move |c| c.signing_key = Some(main_key));
        assert_eq!(writer.info().signer, Some(main.public_key().to_string()));
        upload(&writer, &project);
        let (_dir, store) = empty_store();
        let reader = remote(&backend, trusting);
        assert!(matches!(reader.fetch("k1", &store), Fetch::Hit(_)));
        assert!(reader.probe("k1").is_ok());
        assert_eq!(reader.probe("k2"), Err(MissReason::NotFound));

        // A signed manifest changed on the server fails its signature, with a warning.
        let mut manifest = Manifest::parse(backend.objects()["ac/k1"].clone()).unwrap();
        manifest.duration_ms = 1;
        backend.set("ac/k1", manifest.to_bytes());
        let (_dir, store) = empty_store();
        let reader = remote(&backend, trusting);
        assert_eq!(
            reader.fetch("k1", &store),
            Fetch::Miss(MissReason::BadSignature)
        );
        assert_eq!(reader.warnings().len(), 1);
        assert_eq!(reader.stats().misses_of("bad_signature"), 1);
    }

    #[test]
    fn a_job_that_cannot_sign_a_trusted_entry_uploads_nothing() {
        let main = SigningKey::from_seed([1; 32]);
        let trusting = |config: &mut RemoteConfig| {
            config.trusted_keys = TrustedKeys::of([SigningKey::from_seed([1; 32]).public_key()]);
        };
        let project = project();

        // No signing key: its entries would be refused, so none is written, quietly (a
        // pull request's job or a laptop reading main's entries).
        let backend = Arc::new(MemoryBackend::new());
        let unsigned = remote(&backend, trusting);
        assert_eq!(unsigned.info().read_only, Some(ReadOnly::Unsigned));
        let stats = upload(&unsigned, &project);
        assert_eq!((stats.entries_up, stats.upload_skipped_read_only), (0, 1));
        assert_eq!(backend.calls(), 0);
        assert!(unsigned.warnings().is_empty(), "{:?}", unsigned.warnings());

        // A signing key that is not trusted: the same, with one warning naming its key.
        let fork = SigningKey::from_seed([2; 32]);
        let fork_key = fork.clone();
        let untrusted = remote(&backend, move |config| {
            trusting(config);
            config.signing_key = Some(fork_key);
        });
        assert_eq!(untrusted.info().read_only, Some(ReadOnly::SignerNotTrusted));
        let stats = upload(&untrusted, &project);
        assert_eq!((stats.entries_up, stats.upload_skipped_read_only), (0, 1));
        assert_eq!(backend.calls(), 0);
        assert_eq!(
            untrusted.warnings(),
            [Warning::SignerNotTrusted {
                url: "https://****:****@cache.example/clab".to_owned(),
                signer: fork.public_key().to_string()
            }]
        );

        // A trusted signing key writes; so does any job when no key is trusted.
        let main_key = main.clone();
        let signing = remote(&backend, move |config| {
            trusting(config);
            config.signing_key = Some(main_key);
        });
        assert_eq!(signing.info().read_only, None);
        assert_eq!(upload(&signing, &project).entries_up, 1);
        let trusting_nobody = remote(&Arc::new(MemoryBackend::new()), |_| {});
        assert_eq!(upload(&trusting_nobody, &project).entries_up, 1);
    }

    #[test]
    fn read_only_writes_nothing() {
        let backend = Arc::new(MemoryBackend::new());
        let project = project();
        let reader = remote(&backend, |c| {
            c.read_only = true;
            c.signing_key = Some(SigningKey::from_seed([1; 32]));
        });
        assert!(reader.read_only() && reader.info().signer.is_none());
        let stats = upload(&reader, &project);
        assert!(backend.objects().is_empty());
        assert_eq!(backend.calls(), 0);
        assert_eq!((stats.entries_up, stats.upload_skipped_read_only), (0, 1));
    }

    #[test]
    fn an_outage_costs_one_warning_and_opens_the_breaker() {
        let backend = Arc::new(MemoryBackend::new());
        let project = project();
        backend.set_down(true);
        let remote = remote(&backend, |_| {});
        let (_dir, store) = empty_store();
        for _ in 0..10 {
            assert_eq!(
                remote.fetch("k1", &store),
                Fetch::Miss(MissReason::Unavailable)
            );
        }
        remote.upload("k1", &project.result, project.store.cas());
        let stats = remote.finish(deadline());
        assert_eq!(
            backend.calls(),
            3,
            "the breaker stops calls after 3 failures"
        );
        assert!(stats.circuit_open);
        assert_eq!((stats.failures, stats.upload_failed), (3, 1));
        assert_eq!(stats.misses_of("unavailable"), 10);
        let warnings = remote.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let text = warnings[0].to_string();
        assert!(
            text.contains("connection refused") && text.contains("rest of this run"),
            "{text}"
        );
        assert!(!text.contains("pa55word-x"), "{text}");
        assert!(
            text.contains("https://****:****@cache.example/clab"),
            "{text}"
        );
    }

    #[test]
    fn flush_reports_abandoned_uploads_at_the_deadline() {
        let backend = Arc::new(MemoryBackend::new());
        let project = project();
        let remote = remote(&backend, |_| {});
        remote.upload("k1", &project.result, project.store.cas());
        // A deadline already passed: whatever is still running is abandoned.
        let report = remote.uploader().flush(Instant::now());
        assert_eq!(report.uploaded + report.abandoned, 1, "{report:?}");
        // After flush, uploads are refused (counted as abandoned).
        remote.upload("k2", &project.result, project.store.cas());
        assert_eq!(remote.stats().upload_abandoned, report.abandoned + 1);
    }

    /// A backend whose puts, and gets of blobs, take a while, and that records how many puts
    /// ran at once and the most blob bytes in transfer at once.
    #[derive(Debug, Default)]
    struct Slow {
        inner: MemoryBackend,
        in_flight: std::sync::atomic::AtomicUsize,
        most: std::sync::atomic::AtomicUsize,
        /// Manifests put before one of their blobs was there.
        early_manifests: std::sync::atomic::AtomicUsize,
        bytes_in_flight: AtomicU64,
        most_bytes: AtomicU64,
    }

    impl Slow {
        /// Waits 20 ms, with `bytes` of blob `name` counted as in transfer meanwhile.
        async fn transfer(&self, name: &ObjectName, bytes: u64) {
            let blob = name.namespace() == crate::backend::Namespace::Cas;
            let bytes = if blob { bytes } else { 0 };
            let now = self.bytes_in_flight.fetch_add(bytes, Ordering::AcqRel) + bytes;
            self.most_bytes.fetch_max(now, Ordering::AcqRel);
            tokio::time::sleep(Duration::from_millis(20)).await;
            self.bytes_in_flight.fetch_sub(bytes, Ordering::AcqRel);
        }
    }

    impl Backend for Slow {
        fn get(
            &self,
            name: ObjectName,
            max: u64,
        ) -> crate::backend::BoxFuture<'_, Result<Option<Bytes>, crate::BackendError>> {
            Box::pin(async move {
                let got = self.inner.get(name.clone(), max).await?;
                if name.namespace() == crate::backend::Namespace::Cas {
                    let size = got.as_ref().map_or(0, |bytes| bytes.len() as u64);
                    self.transfer(&name, size).await;
                }
                Ok(got)
            })
        }

        fn put(
            &self,
            name: ObjectName,
            bytes: Bytes,
        ) -> crate::backend::BoxFuture<'_, Result<(), crate::BackendError>> {
            Box::pin(async move {
                if name.namespace() == crate::backend::Namespace::Ac {
                    let objects = self.inner.objects();
                    let manifest = Manifest::parse(bytes.clone()).unwrap();
                    if manifest.blobs().unwrap().keys().any(|d| {
                        !objects.contains_key(&format!("cas/{d}"))
                            && !manifest.inline.iter().any(|b| b.digest == *d)
                    }) {
                        self.early_manifests.fetch_add(1, Ordering::AcqRel);
                    }
                }
                let now = self.in_flight.fetch_add(1, Ordering::AcqRel) + 1;
                self.most.fetch_max(now, Ordering::AcqRel);
                self.transfer(&name, bytes.len() as u64).await;
                self.in_flight.fetch_sub(1, Ordering::AcqRel);
                self.inner.put(name, bytes).await
            })
        }

        fn exists(
            &self,
            name: ObjectName,
        ) -> crate::backend::BoxFuture<'_, Result<bool, crate::BackendError>> {
            self.inner.exists(name)
        }
    }

    #[test]
    fn blobs_in_transfer_stay_within_the_memory_bound() {
        // Six blobs of 700 KB, not carried in the manifest; 8 transfers may run at once, but
        // 2 MiB of memory holds two of them.
        const SIZE: usize = 700 * 1000;
        let configure = |config: &mut RemoteConfig| {
            config.parallelism = 8;
            config.transfer_memory_mib = 2;
        };
        let project = project();
        let outputs = (0..6u8)
            .map(|i| {
                let rel = format!("big/{i}.bin");
                let path = project.dir.path().join(&rel);
                fs::create_dir_all(path.parent().unwrap()).unwrap();
                fs::write(&path, vec![i; SIZE]).unwrap();
                project
                    .store
                    .store_output(project.dir.path(), &rel)
                    .unwrap()
            })
            .collect();
        let result = CachedResult::new("big", "ok", 1, outputs, None);
        let slow = Arc::new(Slow::default());
        let remote = |configure: fn(&mut RemoteConfig)| {
            let mut config = RemoteConfig::new(None);
            configure(&mut config);
            RemoteCache::with_backend(config, Arc::clone(&slow) as Arc<dyn Backend>).unwrap()
        };

        let writer = remote(configure);
        writer.upload("k", &result, project.store.cas());
        assert_eq!(writer.finish(deadline()).blobs_up, 6);
        // (At most two: a loaded machine may not overlap even those.)
        let most_up = slow.most_bytes.swap(0, Ordering::AcqRel);
        assert!(
            (SIZE as u64..=2 * SIZE as u64).contains(&most_up),
            "{most_up} bytes going up at once"
        );

        let (_dir, store) = empty_store();
        assert!(matches!(
            remote(configure).fetch("k", &store),
            Fetch::Hit(_)
        ));
        let most_down = slow.most_bytes.load(Ordering::Acquire);
        assert!(
            (SIZE as u64..=2 * SIZE as u64).contains(&most_down),
            "{most_down} bytes coming down at once"
        );
    }

    #[test]
    fn uploads_stay_within_the_parallelism_bound_and_write_manifests_last() {
        let slow = Arc::new(Slow::default());
        let mut config = RemoteConfig::new(None);
        config.parallelism = 3;
        let remote =
            RemoteCache::with_backend(config, Arc::clone(&slow) as Arc<dyn Backend>).unwrap();
        let project = project();
        // Six entries of ten distinct blobs each, half carried in the manifest, half too big.
        let mut results = Vec::new();
        for entry in 0..6 {
            let outputs = (0..10)
                .map(|i| {
                    let rel = format!("gen/{entry}/{i}.txt");
                    let path = project.dir.path().join(&rel);
                    fs::create_dir_all(path.parent().unwrap()).unwrap();
                    let mut bytes = format!("{entry}-{i}").into_bytes();
                    if i >= 5 {
                        bytes.resize(crate::entry::INLINE_BLOB_MAX as usize + 1, b'.');
                    }
                    fs::write(&path, bytes).unwrap();
                    project
                        .store
                        .store_output(project.dir.path(), &rel)
                        .unwrap()
                })
                .collect();
            results.push(CachedResult::new(
                format!("t{entry}"),
                "ok",
                1,
                outputs,
                None,
            ));
        }
        let started = Instant::now();
        for (entry, result) in results.iter().enumerate() {
            remote.upload(&format!("key{entry}"), result, project.store.cas());
        }
        assert!(
            started.elapsed() < Duration::from_millis(200),
            "upload blocked"
        );
        let stats = remote.finish(deadline());
        assert_eq!((stats.entries_up, stats.blobs_up), (6, 60), "{stats:?}");
        let most = slow.most.load(std::sync::atomic::Ordering::Acquire);
        assert!((2..=3).contains(&most), "{most} transfers at once");
        assert_eq!(
            slow.early_manifests
                .load(std::sync::atomic::Ordering::Acquire),
            0,
            "a manifest went up before its blobs"
        );
        assert_eq!(slow.inner.objects().len(), 6 + 30);
    }

    /// A backend that serves reads from a memory backend and refuses every write.
    #[derive(Debug, Default)]
    struct NoWrites(MemoryBackend);

    impl Backend for NoWrites {
        fn get(
            &self,
            name: ObjectName,
            max: u64,
        ) -> crate::backend::BoxFuture<'_, Result<Option<Bytes>, crate::BackendError>> {
            self.0.get(name, max)
        }

        fn put(
            &self,
            name: ObjectName,
            _: Bytes,
        ) -> crate::backend::BoxFuture<'_, Result<(), crate::BackendError>> {
            Box::pin(async move { Err(crate::BackendError::status("PUT", &name, 403)) })
        }

        fn exists(
            &self,
            name: ObjectName,
        ) -> crate::backend::BoxFuture<'_, Result<bool, crate::BackendError>> {
            self.0.exists(name)
        }
    }

    #[test]
    fn refused_writes_warn_once_and_reads_go_on() {
        let backend = Arc::new(MemoryBackend::new());
        let project = project();
        upload(&remote(&backend, |_| {}), &project);
        let refusing = Arc::new(NoWrites::default());
        for (path, bytes) in backend.objects() {
            refusing.0.set(&path, bytes);
        }
        let remote = RemoteCache::with_backend(
            RemoteConfig::new(None),
            Arc::clone(&refusing) as Arc<dyn Backend>,
        )
        .unwrap();
        let mut other = project.result.clone();
        other.duration_ms = 7;
        for key in ["k2", "k3", "k4", "k5"] {
            let (_dir, store) = empty_store();
            store.put_log(b"fresh").unwrap();
            let fresh =
                CachedResult::new("t", "ok", 1, vec![], Some(store.put_log(b"fresh").unwrap()));
            remote.upload(key, &fresh, store.cas());
            remote.uploader().pending();
            std::thread::sleep(Duration::from_millis(20));
        }
        let (_dir, store) = empty_store();
        assert!(
            matches!(remote.fetch("k1", &store), Fetch::Hit(_)),
            "reads go on"
        );
        let stats = remote.finish(deadline());
        assert_eq!(
            (stats.upload_failed, stats.circuit_open),
            (4, false),
            "{stats:?}"
        );
        let warnings = remote.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            matches!(warnings[0], Warning::WriteDenied { .. }),
            "{warnings:?}"
        );
    }

    #[test]
    fn rejections_of_one_kind_are_one_warning() {
        let backend = Arc::new(MemoryBackend::new());
        for key in ["a", "b", "c"] {
            backend.set(&format!("ac/{key}"), "<html>proxy error</html>");
        }
        let remote = remote(&backend, |_| {});
        let (_dir, store) = empty_store();
        for key in ["a", "b", "c"] {
            assert!(matches!(
                remote.fetch(key, &store),
                Fetch::Miss(MissReason::BadManifest { .. })
            ));
        }
        let warnings = remote.warnings();
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].to_string().ends_with("(and 2 more entries)"),
            "{}",
            warnings[0]
        );
    }

    #[test]
    fn fetch_never_touches_unsafe_keys() {
        let backend = Arc::new(MemoryBackend::new());
        let remote = remote(&backend, |_| {});
        let (_dir, store) = empty_store();
        assert_eq!(
            remote.fetch("../etc", &store),
            Fetch::Miss(MissReason::NotFound)
        );
        assert_eq!(backend.calls(), 0);
    }
}
