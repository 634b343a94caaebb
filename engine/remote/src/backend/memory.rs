//! `MemoryBackend`: objects in a map, for tests of everything above the backends (and of
//! callers that want a remote without a server). It can be told to fail like a server that
//! is down, and counts the calls it answered.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;

use super::{Backend, BackendError, BoxFuture, ObjectName};

/// An in-memory [`Backend`].
#[derive(Debug, Default)]
pub struct MemoryBackend {
    objects: Mutex<BTreeMap<String, Bytes>>,
    down: AtomicBool,
    calls: AtomicU64,
}

impl MemoryBackend {
    /// An empty store.
    pub fn new() -> MemoryBackend {
        MemoryBackend::default()
    }

    /// Every object, by path (`ac/…`, `cas/…`).
    pub fn objects(&self) -> BTreeMap<String, Bytes> {
        self.objects
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces an object's bytes (to tamper with it).
    pub fn set(&self, path: &str, bytes: impl Into<Bytes>) {
        self.objects
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(path.to_owned(), bytes.into());
    }

    /// Removes an object.
    pub fn remove(&self, path: &str) {
        self.objects
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(path);
    }

    /// Makes every call fail (`true`) as if the server were down, or answer again.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::Release);
    }

    /// Calls made so far (answered or failed).
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::Acquire)
    }

    fn enter(&self) -> Result<(), BackendError> {
        self.calls.fetch_add(1, Ordering::AcqRel);
        if self.down.load(Ordering::Acquire) {
            Err(BackendError::Transport("connection refused".to_owned()))
        } else {
            Ok(())
        }
    }
}

impl Backend for MemoryBackend {
    fn get(
        &self,
        name: ObjectName,
        max: u64,
    ) -> BoxFuture<'_, Result<Option<Bytes>, BackendError>> {
        Box::pin(async move {
            self.enter()?;
            let bytes = self
                .objects
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&name.path())
                .cloned();
            match bytes {
                Some(bytes) if bytes.len() as u64 > max => Err(BackendError::too_large(&name, max)),
                bytes => Ok(bytes),
            }
        })
    }

    fn put(&self, name: ObjectName, bytes: Bytes) -> BoxFuture<'_, Result<(), BackendError>> {
        Box::pin(async move {
            self.enter()?;
            self.set(&name.path(), bytes);
            Ok(())
        })
    }

    fn exists(&self, name: ObjectName) -> BoxFuture<'_, Result<bool, BackendError>> {
        Box::pin(async move {
            self.enter()?;
            Ok(self
                .objects
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains_key(&name.path()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_is_bounded() {
        let backend = MemoryBackend::new();
        let name = ObjectName::ac("k").unwrap();
        backend.set("ac/k", "12345");
        let get = |max| {
            tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap()
                .block_on(backend.get(name.clone(), max))
        };
        assert_eq!(get(5), Ok(Some(Bytes::from_static(b"12345"))));
        assert_eq!(get(4), Err(BackendError::too_large(&name, 4)));
        assert_eq!(
            get(4).unwrap_err().to_string(),
            "`ac/k` holds more than 4 bytes"
        );
        assert!(!get(0).unwrap_err().is_outage());
        backend.remove("ac/k");
        assert_eq!(get(0), Ok(None));
    }
}
