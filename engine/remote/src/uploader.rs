//! `Uploader`: write-behind uploads of finished tasks' entries, off the run's critical path.
//!
//! In: `(key, CachedResult, local Cas)` from [`RemoteCache::upload`](crate::RemoteCache::upload),
//! which returns at once. Out: the entry on the remote — every blob not carried inline in the
//! manifest first (each skipped when the remote already has it: known from this run, or
//! `exists`), then the manifest with the small blobs inline ([`inline_choice`]), signed when
//! a signing key is set — and, from [`flush`](Uploader::flush), what was done by a deadline.
//!
//! Invariants:
//! - At most `parallelism` transfers (blob or manifest) are in flight at once, across entries.
//! - A manifest is written only after each of its blobs was confirmed on the remote, so a
//!   reader never finds a manifest whose blobs were never uploaded.
//! - Blobs are read from the local CAS with verification (`Cas::read`, `Cas::read_verified`):
//!   a corrupt local blob fails the entry rather than spreading.
//! - Nothing is retried; a failure is counted (`upload_failed`) and feeds the breaker. Once
//!   the breaker is open, uploads fail at once without calling the remote.
//! - An entry readers would refuse as too large (a manifest over
//!   [`MANIFEST_MAX`], a log over
//!   [`LOG_BLOB_MAX`] uploaded on its own) is not uploaded at
//!   all: it counts as failed, without a call.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use bytes::Bytes;
use clab_store::{CachedResult, Cas, Digest, VerifiedBlob};
use serde::Serialize;
use tokio::runtime::Handle;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;

use crate::backend::ObjectName;
use crate::client::Client;
use crate::entry::{LOG_BLOB_MAX, MANIFEST_MAX, Manifest, inline_choice};
use crate::signing::SigningKey;

/// What the uploads of a run came to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FlushReport {
    /// Entries uploaded (manifest written).
    pub uploaded: u64,
    /// Bytes uploaded.
    pub bytes: u64,
    /// Entries whose upload failed.
    pub failed: u64,
    /// Entries not finished by the deadline (or handed over after `flush`).
    pub abandoned: u64,
}

/// Background uploads with bounded parallelism.
#[derive(Debug)]
pub struct Uploader {
    client: Arc<Client>,
    handle: Handle,
    signer: Option<SigningKey>,
    semaphore: Arc<Semaphore>,
    pending: Arc<watch::Sender<usize>>,
    closed: AtomicBool,
}

impl Uploader {
    pub(crate) fn new(
        client: Arc<Client>,
        handle: Handle,
        signer: Option<SigningKey>,
        parallelism: usize,
    ) -> Uploader {
        Uploader {
            client,
            handle,
            signer,
            semaphore: Arc::new(Semaphore::new(parallelism.max(1))),
            pending: Arc::new(watch::Sender::new(0)),
            closed: AtomicBool::new(false),
        }
    }

    /// Starts uploading `result` under `key`, reading its blobs from `cas`; returns at once.
    pub fn upload(&self, key: &str, result: &CachedResult, cas: &Cas) {
        if self.closed.load(Ordering::Acquire) {
            self.client.stats_mut().upload_abandoned += 1;
            return;
        }
        let Some(name) = ObjectName::ac(key) else {
            self.client.stats_mut().upload_failed += 1;
            return;
        };
        self.pending.send_modify(|n| *n += 1);
        let client = Arc::clone(&self.client);
        let semaphore = Arc::clone(&self.semaphore);
        let pending = Arc::clone(&self.pending);
        let signer = self.signer.clone();
        let result = result.clone();
        let cas = cas.clone();
        self.handle.spawn(async move {
            let started = Instant::now();
            let uploaded = upload_entry(&client, name, &result, &cas, signer, &semaphore).await;
            let mut stats = client.stats_mut();
            match uploaded {
                Ok(()) => stats.entries_up += 1,
                Err(()) => stats.upload_failed += 1,
            }
            stats.upload_ms += started.elapsed().as_millis() as u64;
            // Under the counts' lock, so that `flush` never sees the entry both counted and
            // pending.
            pending.send_modify(|n| *n = n.saturating_sub(1));
        });
    }

    /// Entries still uploading.
    pub fn pending(&self) -> usize {
        *self.pending.borrow()
    }

    /// Waits until every upload handed over so far is done or `deadline` passes, then refuses
    /// further uploads (a second call adds nothing to the counts). Blocks the calling thread (not a runtime's). Uploads still running at
    /// the deadline are counted as abandoned; they go on until the remote cache is dropped.
    pub fn flush(&self, deadline: Instant) -> FlushReport {
        let started = Instant::now();
        let mut receiver = self.pending.subscribe();
        let deadline = tokio::time::Instant::from_std(deadline);
        let waited = crate::block_on(&self.handle, async move {
            let _ = tokio::time::timeout_at(deadline, receiver.wait_for(|n| *n == 0)).await;
        });
        let _ = waited;
        let first = !self.closed.swap(true, Ordering::AcqRel);
        // Read under the counts' lock (see `upload`): an entry is counted or pending, not both.
        let mut stats = self.client.stats_mut();
        let abandoned = self.pending() as u64;
        if first {
            stats.upload_abandoned += abandoned;
        }
        stats.flush_ms += started.elapsed().as_millis() as u64;
        FlushReport {
            uploaded: stats.entries_up,
            bytes: stats.bytes_up,
            failed: stats.upload_failed,
            abandoned: stats.upload_abandoned,
        }
    }
}

async fn upload_entry(
    client: &Arc<Client>,
    name: ObjectName,
    result: &CachedResult,
    cas: &Cas,
    signer: Option<SigningKey>,
    semaphore: &Arc<Semaphore>,
) -> Result<(), ()> {
    // The empty blob is never sent: every reader can make it (see `entry`), and some servers
    // cannot store it (nginx's WebDAV answers 500 to a PUT with an empty body).
    let (carried, log_size) = {
        let result = result.clone();
        let cas = cas.clone();
        tokio::task::spawn_blocking(move || {
            let log_size = result
                .log
                .and_then(|log| Some((log, std::fs::metadata(cas.path_of(&log)).ok()?.len())));
            carried_blobs(&result, &cas, log_size).map(|carried| (carried, log_size))
        })
        .await
        .map_err(|_| ())??
    };
    let digests: BTreeSet<Digest> = result
        .blobs()
        .filter(|d| *d != Digest::empty() && !carried.iter().any(|blob| blob.digest() == d))
        .collect();
    // Each blob's size, for the transfers' memory (a log's: from its file).
    let sizes: HashMap<Digest, u64> = result
        .outputs
        .iter()
        .map(|output| (output.hash, output.size))
        .chain(log_size)
        .collect();
    // The manifest is made before any blob goes up, so that an entry readers would refuse as
    // too large costs no upload at all.
    let mut manifest = Manifest::from_result(name.name(), result);
    manifest.carry(&carried);
    if let Some(signer) = &signer {
        manifest.sign(signer);
    }
    let bytes = Bytes::from(manifest.to_bytes());
    if !within_read_bounds(&bytes, &manifest, &digests, log_size) {
        return Err(());
    }
    let mut blobs = JoinSet::new();
    for digest in digests {
        let client = Arc::clone(client);
        let semaphore = Arc::clone(semaphore);
        let cas = cas.clone();
        let size = sizes.get(&digest).copied().unwrap_or(0);
        blobs.spawn(async move { upload_blob(&client, &cas, digest, size, &semaphore).await });
    }
    while let Some(joined) = blobs.join_next().await {
        if !matches!(joined, Ok(Ok(()))) {
            blobs.abort_all();
            return Err(());
        }
    }
    let size = bytes.len() as u64;
    let _permit = semaphore.acquire().await.map_err(|_| ())?;
    client
        .call(client.backend.put(name, bytes))
        .await
        .map_err(|_| ())?;
    let mut stats = client.stats_mut();
    stats.bytes_up += size;
    stats.blobs_up += carried.len() as u64;
    Ok(())
}

/// Whether readers would take the entry whose stored manifest is `bytes`, with the blobs
/// `uploaded` on their own and the log of `log_size`: a manifest within [`MANIFEST_MAX`], and
/// a log uploaded on its own, whose size the manifest does not give, within [`LOG_BLOB_MAX`].
/// (Every other blob is bounded by the size the manifest gives: its own.)
fn within_read_bounds(
    bytes: &[u8],
    manifest: &Manifest,
    uploaded: &BTreeSet<Digest>,
    log_size: Option<(Digest, u64)>,
) -> bool {
    let unsized_log = log_size.filter(|(log, _)| {
        uploaded.contains(log) && !manifest.outputs.iter().any(|o| o.digest == *log)
    });
    bytes.len() as u64 <= MANIFEST_MAX && unsized_log.is_none_or(|(_, size)| size <= LOG_BLOB_MAX)
}

/// The blobs of `result` its manifest carries ([`inline_choice`]), read from `cas`, verified;
/// `log` is the log and its size. A log whose size cannot be read is left to be uploaded on
/// its own (which reports it).
fn carried_blobs(
    result: &CachedResult,
    cas: &Cas,
    log: Option<(Digest, u64)>,
) -> Result<Vec<VerifiedBlob>, ()> {
    let sizes = result.outputs.iter().map(|o| (o.hash, o.size)).chain(log);
    inline_choice(sizes)
        .iter()
        .map(|digest| cas.read_verified(digest).map_err(|_| ()))
        .collect()
}

async fn upload_blob(
    client: &Arc<Client>,
    cas: &Cas,
    digest: Digest,
    size: u64,
    semaphore: &Arc<Semaphore>,
) -> Result<(), ()> {
    if client.knows(&digest) {
        return Ok(());
    }
    let _permit = semaphore.acquire().await.map_err(|_| ())?;
    if client.knows(&digest) {
        return Ok(());
    }
    let name = ObjectName::cas(&digest);
    if client
        .call(client.backend.exists(name.clone()))
        .await
        .map_err(|_| ())?
    {
        client.learn(digest);
        client.stats_mut().blobs_present += 1;
        return Ok(());
    }
    // Held, whole, while it goes up.
    let _room = client.room_for(size).await.ok_or(())?;
    let cas = cas.clone();
    let bytes = tokio::task::spawn_blocking(move || cas.read(&digest))
        .await
        .map_err(|_| ())?
        .map_err(|_| ())?;
    let size = bytes.len() as u64;
    client
        .call(client.backend.put(name, Bytes::from(bytes)))
        .await
        .map_err(|_| ())?;
    client.learn(digest);
    let mut stats = client.stats_mut();
    stats.blobs_up += 1;
    stats.bytes_up += size;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::memory::MemoryBackend;
    use crate::{RemoteCache, RemoteConfig};
    use clab_store::{OutputEntry, Store};

    #[test]
    fn an_entry_readers_would_refuse_as_too_large_is_not_uploaded() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join(".clab")).unwrap().store;
        // Empty outputs: no blob to upload, the manifest alone; 50,000 of them with 150-byte
        // paths make some 12 MB of JSON.
        let outputs = (0..50_000)
            .map(|i| OutputEntry {
                path: format!("out/{i:0>146}"),
                hash: Digest::empty(),
                size: 0,
                mode: 0o644,
            })
            .collect();
        let huge = CachedResult::new("many", "ok", 1, outputs, None);
        assert!(Manifest::from_result("k", &huge).to_bytes().len() as u64 > MANIFEST_MAX);
        let backend = Arc::new(MemoryBackend::new());
        let remote = RemoteCache::with_backend(
            RemoteConfig::new(None),
            Arc::clone(&backend) as Arc<dyn crate::Backend>,
        )
        .unwrap();
        remote.upload("k", &huge, store.cas());
        let stats = remote.finish(Instant::now() + std::time::Duration::from_secs(30));
        assert_eq!((stats.entries_up, stats.upload_failed), (0, 1), "{stats:?}");
        assert_eq!(backend.calls(), 0, "not a byte went up");
    }

    #[test]
    fn read_bounds_are_the_manifest_s_and_an_unsized_log_s() {
        let log = Digest::of_bytes(b"log");
        let output = Digest::of_bytes(b"output");
        let result = CachedResult::new(
            "t",
            "ok",
            1,
            vec![OutputEntry {
                path: "out".into(),
                hash: output,
                size: 6,
                mode: 0o644,
            }],
            Some(log),
        );
        let manifest = Manifest::from_result("k", &result);
        let both = BTreeSet::from([log, output]);
        assert!(within_read_bounds(b"{}", &manifest, &both, Some((log, 3))));
        assert!(within_read_bounds(
            b"{}",
            &manifest,
            &both,
            Some((log, LOG_BLOB_MAX))
        ));
        assert!(!within_read_bounds(
            b"{}",
            &manifest,
            &both,
            Some((log, LOG_BLOB_MAX + 1))
        ));
        // Carried (not uploaded on its own), or also an output (its size given): no bound.
        let only_output = BTreeSet::from([output]);
        assert!(within_read_bounds(
            b"{}",
            &manifest,
            &only_output,
            Some((log, LOG_BLOB_MAX + 1))
        ));
        let as_output = Manifest::from_result(
            "k",
            &CachedResult::new("t", "ok", 1, result.outputs.clone(), Some(output)),
        );
        assert!(within_read_bounds(
            b"{}",
            &as_output,
            &only_output,
            Some((output, LOG_BLOB_MAX + 1))
        ));
        let json = vec![b' '; MANIFEST_MAX as usize + 1];
        assert!(!within_read_bounds(&json, &manifest, &both, None));
        assert!(within_read_bounds(
            &json[1..],
            &manifest,
            &both,
            Some((log, 3))
        ));
    }
}
