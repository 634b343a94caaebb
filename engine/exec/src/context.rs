//! [`Context`]: what every part of a run reads and nothing writes — the graph, the reporter,
//! the cache (store and planner) and how it is used.
//!
//! The runner and each node kind ([`crate::kind::Kind`]) receive the same `&Context`, so a
//! kind needs no copy of the world: it keeps only its own state (the LLM kind its rate
//! limiters, the rule kind the texts its scans share).

use std::{sync::Arc, time::Duration};

use clab_graph::{Graph, Node, NodeId};
use clab_plan::Planner;
use clab_remote::{Fetch, RemoteCache};
use clab_store::{CachedResult, Store, stat_cache::StatCache};

use crate::event::{Event, Reporter, Status};

/// How the cache is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheMode {
    /// Look results up (`--force` turns this off).
    pub read: bool,
    /// Store results (`--no-cache` turns this and `read` off).
    pub write: bool,
}

impl Default for CacheMode {
    fn default() -> Self {
        CacheMode {
            read: true,
            write: true,
        }
    }
}

/// The store and the run's key computer.
pub struct Cache {
    /// The store.
    pub store: Arc<Store>,
    /// Keys for this run's nodes.
    pub planner: Planner,
}

/// The shared, read-only state of one run.
pub struct Context {
    /// The graph being run.
    pub graph: Arc<Graph>,
    /// Where events go.
    pub reporter: Arc<dyn Reporter>,
    /// The cache, when the run has one.
    pub cache: Option<Cache>,
    /// How the cache is used.
    pub mode: CacheMode,
    /// Time between the polite signal (SIGINT, SIGTERM) and SIGKILL.
    pub grace: Duration,
    /// The shared remote cache, read on a local miss and written after a local store.
    pub remote: Option<Arc<RemoteCache>>,
    /// Stands in for the store's stat cache when there is none.
    empty_stats: StatCache,
}

impl Context {
    /// The context of a run of `graph`.
    pub fn new(
        graph: Arc<Graph>,
        reporter: Arc<dyn Reporter>,
        cache: Option<Cache>,
        mode: CacheMode,
        grace: Duration,
    ) -> Context {
        Context {
            graph,
            reporter,
            cache,
            mode,
            grace,
            remote: None,
            empty_stats: StatCache::new(),
        }
    }

    /// The context with the shared remote cache `remote`.
    pub fn with_remote(mut self, remote: Option<Arc<RemoteCache>>) -> Context {
        self.remote = remote;
        self
    }

    /// Node `id` of the graph.
    pub fn node(&self, id: NodeId) -> &Node {
        self.graph.node(id)
    }

    /// The store, when the run has a cache.
    pub fn store(&self) -> Option<&Store> {
        self.cache.as_ref().map(|cache| &*cache.store)
    }

    /// The store, when the run has a cache and may write to it.
    pub fn writable_store(&self) -> Option<&Store> {
        self.store().filter(|_| self.mode.write)
    }

    /// The run's planner, when it has a cache.
    pub fn planner(&self) -> Option<&Planner> {
        self.cache.as_ref().map(|cache| &cache.planner)
    }

    /// The result stored under `key`: the local store's, else the remote cache's (its blobs
    /// verified into the local CAS and its row saved locally); `remote` says which. `None`: a
    /// miss, or a lookup that failed (reported as a warning; the node runs).
    pub fn load_result(&self, id: NodeId, key: &str) -> Option<(CachedResult, bool)> {
        let store = self.store()?;
        if let Some(result) = self.load_local(id, key)? {
            return Some((result, false));
        }
        match self.remote.as_ref()?.fetch(key, store) {
            Fetch::Hit(result) => Some((result, true)),
            Fetch::Miss(_) => None,
        }
    }

    /// The local store's result under `key`: `Some(None)` a miss (the remote may be asked),
    /// `None` no store or a lookup that failed (reported as a warning; the node runs).
    pub fn load_local(&self, id: NodeId, key: &str) -> Option<Option<CachedResult>> {
        match self.store()?.load_result(key) {
            Ok(found) => Some(found),
            Err(err) => {
                self.warn(format!(
                    "cache lookup for `{}` failed: {err}",
                    self.node(id).name
                ));
                None
            }
        }
    }

    /// The store's stat cache, or an empty one.
    pub fn stat_cache(&self) -> &StatCache {
        self.cache
            .as_ref()
            .and_then(|cache| cache.store.stat_cache().ok())
            .unwrap_or(&self.empty_stats)
    }

    /// Report a warning.
    pub fn warn(&self, message: String) {
        self.reporter.report(&Event::Warning { message });
    }

    /// Report a line of node `id`'s output.
    pub fn output(&self, id: NodeId, line: String) {
        self.reporter.report(&Event::TaskOutput {
            task: self.node(id).name.clone(),
            line,
        });
    }
}

/// A failed status with `message`.
pub(crate) fn failed(message: &str) -> Status {
    Status::Failed {
        message: message.to_owned(),
    }
}

/// Now, in Unix milliseconds.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
