//! [`Context`]: what every part of a run reads and nothing writes — the graph, the reporter,
//! the cache (store and planner) and how it is used.
//!
//! The runner and each node kind ([`crate::kind::Kind`]) receive the same `&Context`, so a
//! kind needs no copy of the world: it keeps only its own state (the LLM kind its rate
//! limiters, the rule kind the texts its scans share).

use std::{sync::Arc, time::Duration};

use clab_graph::{Graph, Node, NodeId};
use clab_plan::Planner;
use clab_store::{Store, stat_cache::StatCache};

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
            empty_stats: StatCache::new(),
        }
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
