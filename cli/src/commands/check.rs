//! `clab check`: validate tasks.kdl (every problem at once) and the rule files, without
//! running anything.
//!
//! A tasks.kdl problem is a configuration error (exit 2), a bad `cache { }` value (or remote
//! setting in the environment) too. The rules are validated whenever
//! tasks.kdl parses (its `rules "DIR"` nodes say where they are), even when the graph does
//! not build, so one run shows both; a rule error alone exits 1.

use clab_graph::project::Project;

use super::rules::{Location, Summary, check_all, report, stop};
use crate::exit::{Done, Failure};

/// Load the project and validate its rules; print a one-line count for each.
pub(super) fn check(project: &Project) -> Result<Done, Failure> {
    let (graph, location) = match project.load() {
        Ok(graph) => {
            let location = Location::of(&project.root, graph.file());
            (Ok(graph), location)
        }
        Err(err) => match project.parse() {
            Ok(file) => (Err(err), Location::of(&project.root, &file)),
            // tasks.kdl does not even parse: its diagnostics are the whole answer.
            Err(_) => return Err(err.into()),
        },
    };
    let rules = check_all(&location);
    // The `cache { }` block (and the environment's remote settings) as a run would take it.
    let graph = graph
        .map_err(Failure::from)
        .and_then(|graph| super::remote_cache(&graph).map(|_| graph));
    let graph = match graph {
        Ok(graph) => graph,
        Err(err) => {
            if let Ok((files, diagnostics)) = &rules {
                report(diagnostics, false);
                println!(
                    "{}",
                    Summary::of(files, diagnostics).line(&location.display())
                );
            }
            return Err(err);
        }
    };
    let members = &graph.workspace().members;
    let tasks = graph.file().tasks.len()
        + members
            .iter()
            .filter_map(|m| m.file.as_deref())
            .map(|f| f.tasks.len())
            .sum::<usize>();
    let in_members = if members.is_empty() {
        String::new()
    } else {
        format!(
            " ({} member{})",
            members.len(),
            if members.len() == 1 { "" } else { "s" }
        )
    };
    println!(
        "{}: {} task{}{in_members}, {} node{}, no problems",
        project.display_name(),
        tasks,
        if tasks == 1 { "" } else { "s" },
        graph.len(),
        if graph.len() == 1 { "" } else { "s" },
    );
    let (files, diagnostics) = match rules {
        Ok(found) => found,
        Err(err) => return Ok(stop(err)),
    };
    report(&diagnostics, false);
    let summary = Summary::of(&files, &diagnostics);
    println!("{}", summary.line(&location.display()));
    Ok(if summary.errors > 0 {
        Done::TaskFailed
    } else {
        Done::Success
    })
}
