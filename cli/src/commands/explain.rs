//! `clab explain TASK`: why a task would run — every input, variable, command or dependency
//! that differs from its last recorded run — or that it is up to date.

use clab_graph::project::Project;
use clab_plan::{
    PlanStatus, Planner,
    explain::{Change, diff},
};
use clab_store::Store;
use std::io::Write;

use crate::exit::{Done, Failure};

/// Explain each node of `task`.
pub fn explain(project: &Project, task: &str) -> Result<Done, Failure> {
    let graph = project.load()?;
    let targets = graph
        .resolve_targets(&[task.to_owned()])
        .map_err(clab_graph::project::Error::from)?;
    let nodes = graph.closure(&targets);
    let dir = super::cache_dir(project);
    let store = if dir.join("cache.db").exists() {
        let opened = Store::open(&dir).map_err(|err| Failure::Store(Box::new(err)))?;
        Some(opened.store)
    } else {
        None
    };
    let stats = clab_store::stat_cache::StatCache::new();
    let stat_cache = match &store {
        Some(store) => store
            .stat_cache()
            .map_err(|err| Failure::Store(Box::new(err)))?,
        None => &stats,
    };
    let planner =
        Planner::new(&graph, &nodes, stat_cache).map_err(|err| Failure::Usage(err.to_string()))?;
    let llm = super::run::llm_layers(None)?;
    let decisions = planner.predict(&graph, &nodes, store.as_ref(), stat_cache, &llm);
    let mut out = std::io::stdout().lock();
    for &target in &targets {
        let name = &graph.node(target).name;
        let Some(decision) = decisions.iter().find(|d| &d.task == name) else {
            continue;
        };
        match &decision.status {
            PlanStatus::Aggregate => writeln!(out, "{name}: an aggregate; it runs nothing itself")?,
            PlanStatus::Cached { key } => {
                writeln!(out, "{name}: up to date (cached as {})", &key[..12])?
            }
            PlanStatus::Run { reason, .. } => {
                let previous = store
                    .as_ref()
                    .and_then(|s| clab_plan::previous_parts(s, name))
                    .map(|(_, parts)| parts);
                match (previous, &decision.parts) {
                    (Some(old), Some(new)) => {
                        writeln!(out, "{name}: would run")?;
                        let waiting: Vec<String> = graph
                            .dependencies(target)
                            .into_iter()
                            .filter(|&dep| {
                                decisions.iter().any(|d| {
                                    d.task == graph.node(dep).name
                                        && matches!(d.status, PlanStatus::Run { .. })
                                })
                            })
                            .map(|dep| graph.node(dep).name.clone())
                            .collect();
                        for change in diff(&old, new) {
                            let line = match &change {
                                Change::Dep { name } if waiting.contains(name) => {
                                    format!("dep {name} will run first; its outputs decide")
                                }
                                Change::InputChanged { path, old, new } => {
                                    format!("{path} changed ({old} → {new})")
                                }
                                other => other.describe(),
                            };
                            writeln!(out, "  {line}")?;
                        }
                        if *reason == clab_plan::Reason::NoCachedResult {
                            writeln!(out, "  {reason}")?;
                        }
                    }
                    _ => writeln!(out, "{name}: would run: {reason}")?,
                }
            }
        }
    }
    Ok(Done::Success)
}
