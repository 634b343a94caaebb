//! [`Plan`]: what a run would do, predicted from the cache without running anything — the
//! one value `clab run --dry-run` prints and `clab explain` words.
//!
//! In: a [`Graph`], the nodes to run, the cache directory (or none: `--no-cache`), the shared
//! remote cache if one is configured (asked when the local cache misses, without downloading
//! anything) and the LLM settings layers. Out: one [`Decision`] per node in dependency order, and the store
//! they were read from, for `explain`'s "what changed since the last run".
//!
//! Predicting moves nothing in the store: results are peeked (no hit is counted, nothing is
//! deleted), and a directory without `cache.db` is not created.

use std::path::Path;

use clab_graph::{Graph, NodeId};
use clab_remote::RemoteCache;
use clab_store::{Store, stat_cache::StatCache};

use crate::{
    Decision, PlanStatus, Planner, Reason, cache_key::KeyParts, inputs, llm_prompt::LlmLayers,
};

/// Why a plan could not be made.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum PlanError {
    /// The cache exists but cannot be opened.
    #[error(transparent)]
    #[diagnostic(transparent)]
    Store(#[from] clab_store::Error),
    /// The inputs cannot be walked (a glob the index refuses, an unreadable directory).
    #[error(transparent)]
    #[diagnostic(transparent)]
    Inputs(#[from] inputs::Error),
}

/// A predicted run.
pub struct Plan {
    /// One decision per node, in dependency order.
    pub decisions: Vec<Decision>,
    /// The store the decisions were read from.
    store: Option<Store>,
}

impl Plan {
    /// Predict a run of `nodes` (a closure, in dependency order) with the cache in
    /// `cache_dir`, or without one when `cache_dir` is `None` or holds no `cache.db`.
    pub fn predict(
        graph: &Graph,
        nodes: &[NodeId],
        cache_dir: Option<&Path>,
        remote: Option<&RemoteCache>,
        llm: &LlmLayers,
    ) -> Result<Plan, PlanError> {
        let store = match cache_dir {
            Some(dir) if dir.join(clab_store::DB_FILE).exists() => Some(Store::open(dir)?.store),
            _ => None,
        };
        let fresh = StatCache::new();
        let stat_cache = match &store {
            Some(store) => store.stat_cache()?,
            None => &fresh,
        };
        let planner = Planner::new(graph, nodes, stat_cache)?;
        let decisions = planner.predict(graph, nodes, store.as_ref(), remote, stat_cache, llm);
        Ok(Plan { decisions, store })
    }

    /// `--force`: every node that would be restored runs instead.
    pub fn force(&mut self) {
        for decision in &mut self.decisions {
            if let PlanStatus::Cached { key } = &decision.status {
                decision.status = PlanStatus::Run {
                    reason: Reason::Forced,
                    key: Some(key.clone()),
                };
            }
        }
    }

    /// The decision about task `name`.
    pub fn decision(&self, name: &str) -> Option<&Decision> {
        self.decisions.iter().find(|d| d.task == name)
    }

    /// Whether task `name` would run.
    pub fn runs(&self, name: &str) -> bool {
        self.decision(name)
            .is_some_and(|d| matches!(d.status, PlanStatus::Run { .. }))
    }

    /// What the store healed while the plan was made (a damaged `cache.db` moved aside), to
    /// report once.
    pub fn take_warnings(&self) -> Vec<String> {
        self.store.as_ref().map_or_else(Vec::new, |store| {
            store
                .take_warnings()
                .iter()
                .map(ToString::to_string)
                .collect()
        })
    }

    /// The key parts of task `name`'s last recorded run.
    pub fn previous_parts(&self, name: &str) -> Option<KeyParts> {
        let store = self.store.as_ref()?;
        crate::previous_parts(store, name).map(|(_, parts)| parts)
    }
}

#[cfg(test)]
mod tests {
    use clab_model::source::SourceFile;

    use super::*;

    fn graph(root: &Path) -> Graph {
        let text = "task \"t\" { run \"true\"; inputs \"in.txt\"; }\n";
        let file = clab_syntax::parse_task_file(SourceFile::new(
            root.join("tasks.kdl"),
            "tasks.kdl",
            text,
        ))
        .unwrap();
        clab_graph::build(file, root).unwrap()
    }

    #[test]
    fn without_a_cache_every_node_runs_and_nothing_is_created() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("in.txt"), "x").unwrap();
        let graph = graph(dir.path());
        let nodes = graph.topological_order();
        let cache = dir.path().join(".clab");
        let mut plan =
            Plan::predict(&graph, &nodes, Some(&cache), None, &LlmLayers::default()).unwrap();
        assert!(plan.runs("t"));
        assert!(matches!(
            &plan.decision("t").unwrap().status,
            PlanStatus::Run {
                reason: Reason::NoPreviousRun,
                ..
            }
        ));
        assert!(plan.previous_parts("t").is_none());
        assert!(!cache.exists(), "predicting must not create the cache");
        plan.force();
        assert!(plan.runs("t"));
    }
}
