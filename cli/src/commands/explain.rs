//! `clab explain TASK`: why a task would run — every input, variable, command or dependency
//! that differs from its last recorded run — or that it is up to date.

use clab_graph::project::Project;
use clab_plan::{
    Plan, PlanStatus,
    explain::{Change, diff},
};
use std::io::Write;

use crate::exit::{Done, Failure};

/// Explain each node of `task`.
pub(super) fn explain(project: &Project, task: &str) -> Result<Done, Failure> {
    let graph = project.load()?;
    let targets = graph
        .resolve_targets(&[task.to_owned()])
        .map_err(clab_graph::project::Error::from)?;
    let nodes = graph.closure(&targets);
    let llm = super::run::llm_layers(None)?;
    let remote = super::remote_cache(&graph)?;
    let cache_dir = super::cache_dir(project);
    let plan = Plan::predict(&graph, &nodes, Some(&cache_dir), remote.as_deref(), &llm)?;
    for warning in plan.take_warnings() {
        eprintln!("warning: {warning}");
    }
    let mut out = std::io::stdout().lock();
    for &target in &targets {
        let name = &graph.node(target).name;
        let Some(decision) = plan.decision(name) else {
            continue;
        };
        match &decision.status {
            PlanStatus::Aggregate => writeln!(out, "{name}: an aggregate; it runs nothing itself")?,
            PlanStatus::Cached { key } => match &decision.remote {
                Some(remote) => writeln!(
                    out,
                    "{name}: up to date (cached as {} on the remote cache `{}`)",
                    &key[..12],
                    remote.url
                )?,
                None => writeln!(out, "{name}: up to date (cached as {})", &key[..12])?,
            },
            PlanStatus::Run { reason, .. } => {
                let previous = plan.previous_parts(name);
                match (previous, &decision.parts) {
                    (Some(old), Some(new)) => {
                        writeln!(out, "{name}: would run")?;
                        let waiting: Vec<String> = graph
                            .dependencies(target)
                            .into_iter()
                            .filter(|&dep| plan.runs(&graph.node(dep).name))
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
                if let Some(remote) = &decision.remote
                    && let Some(rejected) = &remote.rejected
                {
                    writeln!(out, "  remote cache `{}`: {rejected}", remote.url)?;
                }
            }
        }
    }
    Ok(Done::Success)
}
