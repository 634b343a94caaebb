//! `clab list`: the tasks, their descriptions and dependencies.

use clab_graph::Graph;
use clab_graph::project::Project;
use std::io::Write;

use crate::exit::{Done, Failure};

/// Print the tasks of the project.
pub(super) fn list(project: &Project) -> Result<Done, Failure> {
    let graph = project.load()?;
    let mut out = std::io::stdout().lock();
    write_list(&graph, &mut out)?;
    Ok(Done::Success)
}

/// The listing, also shown by `clab run` when no task is given and there is no `default`.
pub(super) fn write_list(graph: &Graph, out: &mut impl Write) -> std::io::Result<()> {
    let file = graph.file();
    let width = file
        .tasks
        .iter()
        .map(|t| t.name.value.chars().count())
        .max()
        .unwrap_or(0);
    writeln!(out, "Tasks:")?;
    for task in &file.tasks {
        let nodes = graph.tasks().get(&task.name.value).map_or(0, Vec::len);
        let mut notes = Vec::new();
        if let Some(description) = &task.description {
            notes.push(description.value.clone());
        }
        if !task.deps.is_empty() {
            let deps: Vec<&str> = task.deps.iter().map(|d| d.value.as_str()).collect();
            notes.push(format!("after {}", deps.join(", ")));
        }
        if !task.for_each.is_empty() {
            notes.push(format!(
                "for each of {nodes} file{}",
                if nodes == 1 { "" } else { "s" }
            ));
        }
        let aggregate = task.run.is_empty() && task.llm.is_none();
        if !aggregate && task.inputs.is_empty() && task.llm.is_none() {
            notes.push("not cached: no inputs".to_owned());
        } else if task.cache.as_ref().is_some_and(|c| !c.value) {
            notes.push("not cached".to_owned());
        }
        let name = &task.name.value;
        if notes.is_empty() {
            writeln!(out, "    {name}")?;
        } else {
            writeln!(out, "    {name:width$}  # {}", notes.join("; "))?;
        }
    }
    let declared = file.tasks.iter().any(|t| t.name.value == "rules");
    if let (false, Some(rules)) = (declared, graph.tasks().get("rules")) {
        let checks = rules.first().map_or(0, |&id| graph.dependencies(id).len());
        writeln!(
            out,
            "    {:width$}  # implicit: {checks} rule check{} from {} rule file{}",
            "rules",
            if checks == 1 { "" } else { "s" },
            graph.rule_files().len(),
            if graph.rule_files().len() == 1 {
                ""
            } else {
                "s"
            },
        )?;
    }
    Ok(())
}
