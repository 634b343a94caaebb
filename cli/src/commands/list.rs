//! `clab list`: the tasks, their descriptions and dependencies.

use clab_graph::Graph;
use clab_graph::project::Project;
use clab_syntax::TaskFile;
use std::io::Write;

use crate::exit::{Done, Failure};

/// Print the tasks of the project.
pub(super) fn list(project: &Project) -> Result<Done, Failure> {
    let graph = project.load()?;
    // Buffered: stdout flushes each line, and the 10,000-task list was 10,000 writes.
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    write_list(&graph, &mut out)?;
    out.flush()?;
    super::keep_until_exit(graph);
    Ok(Done::Success)
}

/// The listing, also shown by `clab run` when no task is given and there is no `default`.
/// In a workspace, the root's tasks come first, then each member's under its name, its
/// directory and the members it depends on, as `member:task` (what the command line takes).
pub(super) fn write_list(graph: &Graph, out: &mut impl Write) -> std::io::Result<()> {
    let workspace = graph.workspace();
    let files: Vec<(&TaskFile, String)> = std::iter::once((graph.file(), String::new()))
        .chain(workspace.members.iter().filter_map(|member| {
            let file = member.file.as_deref()?;
            Some((file, format!("{}:", member.name)))
        }))
        .collect();
    let width = files
        .iter()
        .flat_map(|(file, qualifier)| {
            file.tasks
                .iter()
                .map(move |t| qualifier.chars().count() + t.name.value.chars().count())
        })
        .max()
        .unwrap_or(0);
    let root_tasks = !graph.file().tasks.is_empty() || graph.tasks().contains_key("rules");
    if root_tasks || workspace.members.is_empty() {
        writeln!(out, "Tasks:")?;
        write_tasks(graph, graph.file(), "", width, out)?;
        write_implicit_rules(graph, width, out)?;
    }
    for member in &workspace.members {
        let Some(file) = member.file.as_deref() else {
            continue;
        };
        let deps: Vec<&str> = member
            .deps
            .iter()
            .map(|d| graph.member(d.member).name.as_str())
            .collect();
        let after = if deps.is_empty() {
            String::new()
        } else {
            format!("; depends on {}", deps.join(", "))
        };
        writeln!(out, "{} ({}{after}):", member.name, member.dir)?;
        write_tasks(graph, file, &format!("{}:", member.name), width, out)?;
    }
    Ok(())
}

/// One file's tasks, named with `qualifier` in front.
fn write_tasks(
    graph: &Graph,
    file: &TaskFile,
    qualifier: &str,
    width: usize,
    out: &mut impl Write,
) -> std::io::Result<()> {
    for task in &file.tasks {
        let name = format!("{qualifier}{}", task.name.value);
        let mut notes = Vec::new();
        if let Some(description) = &task.description {
            notes.push(description.value.clone());
        }
        if !task.deps.is_empty() {
            let deps: Vec<&str> = task.deps.iter().map(|d| d.value.as_str()).collect();
            notes.push(format!("after {}", deps.join(", ")));
        }
        if !task.for_each.is_empty() {
            let nodes = graph.tasks().get(&name).map_or(0, Vec::len);
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
        if notes.is_empty() {
            writeln!(out, "    {name}")?;
        } else {
            writeln!(out, "    {name:width$}  # {}", notes.join("; "))?;
        }
    }
    Ok(())
}

/// The `rules` aggregate clab adds when rule files exist and tasks.kdl does not define it.
fn write_implicit_rules(graph: &Graph, width: usize, out: &mut impl Write) -> std::io::Result<()> {
    let file = graph.file();
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
