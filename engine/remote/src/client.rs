//! `Client`: every call to the backend goes through here, with the request timeout, the
//! circuit breaker and the run's counts.
//!
//! In: backend futures. Out: their values, or [`CallError::Unavailable`] (the call failed,
//! timed out, or was skipped because the breaker is open — the failure is recorded for the
//! run's one unavailability warning), [`CallError::Integrity`] (the server answered but the
//! object failed a protocol check; not an outage) or [`CallError::TooLarge`] (the object
//! holds more than the call's bound; not an outage: the breaker neither counts it as a
//! failure nor as a success). Also holds what fetches and uploads share:
//! the [`RemoteStats`], recorded [`Warning`]s and the blobs known to be on the remote.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};

use clab_store::Digest;
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::backend::{Backend, BackendError, BoxFuture, Timeouts};
use crate::breaker::Breaker;
use crate::remote_stats::RemoteStats;
use crate::remote_url::RemoteUrl;
use crate::warning::Warning;

/// Why a guarded call gave nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CallError {
    /// The remote is down, slow, erring, or given up on.
    Unavailable,
    /// The object was rejected by a protocol check (text scrubbed).
    Integrity(String),
    /// The server refused a write (text scrubbed).
    WriteDenied,
    /// The object holds more bytes than the call's bound: the object's fault, not the
    /// server's, so not an outage either.
    TooLarge,
}

/// The backend with its guards and the run's shared state.
#[derive(Debug)]
pub(crate) struct Client {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) url: RemoteUrl,
    timeouts: Timeouts,
    breaker: Breaker,
    stats: Mutex<RemoteStats>,
    warnings: Mutex<Vec<Warning>>,
    known: Mutex<HashSet<Digest>>,
    /// The first refused write's cause, for the one warning about it.
    write_denied: Mutex<Option<String>>,
    /// The memory the blobs in transfer may hold, in MiB ([`Client::room_for`]).
    memory: Semaphore,
    /// Its size.
    memory_mib: u32,
}

impl Client {
    pub(crate) fn new(
        backend: Arc<dyn Backend>,
        url: RemoteUrl,
        timeouts: Timeouts,
        breaker_threshold: u32,
        memory_mib: u32,
    ) -> Client {
        let memory_mib = memory_mib.max(1);
        Client {
            backend,
            url,
            timeouts,
            breaker: Breaker::new(breaker_threshold),
            stats: Mutex::new(RemoteStats::default()),
            warnings: Mutex::new(Vec::new()),
            known: Mutex::new(HashSet::new()),
            write_denied: Mutex::new(None),
            memory: Semaphore::new(memory_mib as usize),
            memory_mib,
        }
    }

    /// Room for a blob of `bytes` in the transfers' memory, held until the permit is dropped
    /// (`None` once the client is closed). A blob larger than all of it waits for all of it:
    /// it moves alone.
    pub(crate) async fn room_for(&self, bytes: u64) -> Option<SemaphorePermit<'_>> {
        let mib = bytes
            .div_ceil(1024 * 1024)
            .clamp(1, u64::from(self.memory_mib));
        self.memory.acquire_many(mib as u32).await.ok()
    }

    /// Runs one backend call under the request timeout and the breaker.
    pub(crate) async fn call<T>(
        &self,
        call: BoxFuture<'_, Result<T, BackendError>>,
    ) -> Result<T, CallError> {
        if self.breaker.is_open() {
            return Err(CallError::Unavailable);
        }
        let limit = self.timeouts.request + self.timeouts.connect;
        match tokio::time::timeout(limit, call).await {
            Ok(Ok(value)) => {
                self.breaker.success();
                Ok(value)
            }
            Ok(Err(error @ BackendError::TimedOut(_))) => {
                self.breaker.trip(&self.describe(&error));
                Err(CallError::Unavailable)
            }
            Ok(Err(error)) if error.is_outage() => {
                self.breaker.failure(&self.describe(&error));
                Err(CallError::Unavailable)
            }
            Ok(Err(error @ BackendError::WriteDenied(_))) => {
                let mut denied = self.write_denied.lock().unwrap_or_else(|e| e.into_inner());
                if denied.is_none() {
                    *denied = Some(self.describe(&error));
                }
                Err(CallError::WriteDenied)
            }
            Ok(Err(BackendError::TooLarge { .. })) => Err(CallError::TooLarge),
            Ok(Err(error)) => Err(CallError::Integrity(error.to_string())),
            Err(_) => {
                self.breaker
                    .trip(&format!("no answer within {} s", limit.as_secs()));
                Err(CallError::Unavailable)
            }
        }
    }

    /// The error's text for a warning: a refusal says where this kind of remote takes its
    /// credentials from (a first run without the token meets a 401).
    fn describe(&self, error: &BackendError) -> String {
        if error.is_refusal() {
            format!(
                "{error} (credentials come from {})",
                self.url.credential_variables()
            )
        } else {
            error.to_string()
        }
    }

    /// The run's counts, to update.
    pub(crate) fn stats_mut(&self) -> MutexGuard<'_, RemoteStats> {
        self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A snapshot of the run's counts.
    pub(crate) fn stats(&self) -> RemoteStats {
        let mut stats = self.stats_mut().clone();
        if let Some(outage) = self.breaker.outage() {
            stats.failures = outage.failures;
        }
        stats.circuit_open = self.breaker.is_open();
        stats
    }

    /// Records a warning; a rejected entry whose kind of reason was already warned about is
    /// counted in that warning instead (a proxy answering HTML for every key is one warning).
    pub(crate) fn warn(&self, warning: Warning) {
        let mut warnings = self.warnings.lock().unwrap_or_else(|e| e.into_inner());
        if let Warning::Rejected { reason, .. } | Warning::Untrusted { reason, .. } = &warning {
            let same = warnings.iter_mut().find_map(|w| match w {
                Warning::Rejected {
                    reason: earlier,
                    others,
                    ..
                }
                | Warning::Untrusted {
                    reason: earlier,
                    others,
                    ..
                } if earlier.code() == reason.code() => Some(others),
                _ => None,
            });
            if let Some(others) = same {
                *others += 1;
                return;
            }
        }
        warnings.push(warning);
    }

    /// The warnings so far: those recorded, then at most one about refused writes and one about
    /// unavailability.
    pub(crate) fn warnings(&self) -> Vec<Warning> {
        let mut warnings = self
            .warnings
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(cause) = self
            .write_denied
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        {
            warnings.push(Warning::WriteDenied {
                url: self.url.redacted(),
                cause,
            });
        }
        if let Some(outage) = self.breaker.outage() {
            warnings.push(Warning::Unavailable {
                url: self.url.redacted(),
                cause: outage.cause,
                failures: outage.failures,
                gave_up: outage.gave_up,
            });
        }
        warnings
    }

    /// Whether the remote is known to hold the blob (uploaded or seen in this run).
    pub(crate) fn knows(&self, digest: &Digest) -> bool {
        self.known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(digest)
    }

    /// The remote holds the blob.
    pub(crate) fn learn(&self, digest: Digest) {
        self.known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(digest);
    }
}
