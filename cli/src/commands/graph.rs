//! `clab graph`: the task graph as Graphviz dot, Mermaid or JSON.

use clab_graph::project::Project;
use clab_graph::{Graph, NodeId, NodeKind};
use std::io::Write;

use crate::{
    args::{GraphArgs, GraphFormat},
    exit::{Done, Failure},
};

/// Print the graph, or the part of it a task needs.
pub(super) fn graph(project: &Project, args: &GraphArgs) -> Result<Done, Failure> {
    let graph = project.load()?;
    let nodes = match &args.task {
        Some(task) => graph.closure(
            &graph
                .resolve_targets(std::slice::from_ref(task))
                .map_err(clab_graph::project::Error::from)?,
        ),
        None => graph.topological_order(),
    };
    let mut out = std::io::stdout().lock();
    match args.format {
        GraphFormat::Dot => write_dot(&graph, &nodes, &mut out)?,
        GraphFormat::Mermaid => write_mermaid(&graph, &nodes, &mut out)?,
        GraphFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &graph.to_json(&nodes))
                .map_err(std::io::Error::from)?;
            writeln!(out)?;
        }
    }
    Ok(Done::Success)
}

fn quote(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

fn write_dot(graph: &Graph, nodes: &[NodeId], out: &mut impl Write) -> std::io::Result<()> {
    writeln!(out, "digraph tasks {{")?;
    writeln!(out, "    rankdir=LR;")?;
    for &id in nodes {
        let node = graph.node(id);
        let shape = match node.kind {
            NodeKind::Aggregate => "ellipse",
            NodeKind::Llm(_) => "hexagon",
            NodeKind::Rule(_) => "note",
            NodeKind::Command { .. } => "box",
        };
        writeln!(out, "    {} [shape={shape}];", quote(&node.name))?;
    }
    for &id in nodes {
        for dep in graph.dependencies(id) {
            writeln!(
                out,
                "    {} -> {};",
                quote(&graph.node(dep).name),
                quote(&graph.node(id).name)
            )?;
        }
    }
    writeln!(out, "}}")
}

fn write_mermaid(graph: &Graph, nodes: &[NodeId], out: &mut impl Write) -> std::io::Result<()> {
    writeln!(out, "flowchart LR")?;
    let label = |id: NodeId| {
        let name = graph.node(id).name.replace('"', "#quot;");
        format!("n{}[\"{name}\"]", id.index())
    };
    for &id in nodes {
        writeln!(out, "    {}", label(id))?;
    }
    for &id in nodes {
        for dep in graph.dependencies(id) {
            writeln!(out, "    n{} --> n{}", dep.index(), id.index())?;
        }
    }
    Ok(())
}
