//! `clab graph`: the task graph as Graphviz dot, Mermaid or JSON.

use clab_graph::project::Project;
use clab_graph::workspace::MemberId;
use clab_graph::{Graph, NodeId, NodeKind};
use std::{collections::BTreeMap, io::Write};

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
    // Buffered: stdout flushes each line.
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match args.format {
        GraphFormat::Dot => write_dot(&graph, &nodes, &mut out)?,
        GraphFormat::Mermaid => write_mermaid(&graph, &nodes, &mut out)?,
        GraphFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &graph.to_json(&nodes))
                .map_err(std::io::Error::from)?;
            writeln!(out)?;
        }
    }
    out.flush()?;
    super::keep_until_exit(graph);
    Ok(Done::Success)
}

fn quote(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// `nodes` grouped by workspace member, the root's first (member `None`), then the
/// members in directory order; each group keeps the nodes' order.
fn by_member(graph: &Graph, nodes: &[NodeId]) -> Vec<(Option<MemberId>, Vec<NodeId>)> {
    let mut groups: BTreeMap<Option<MemberId>, Vec<NodeId>> = BTreeMap::new();
    for &id in nodes {
        groups.entry(graph.node(id).member).or_default().push(id);
    }
    groups.into_iter().collect()
}

fn write_dot(graph: &Graph, nodes: &[NodeId], out: &mut impl Write) -> std::io::Result<()> {
    writeln!(out, "digraph tasks {{")?;
    writeln!(out, "    rankdir=LR;")?;
    for (member, ids) in by_member(graph, nodes) {
        // A member's nodes in a cluster, boxed and labeled with its name.
        let indent = if member.is_some() { "        " } else { "    " };
        if let Some(member) = member {
            let member = graph.member(member);
            writeln!(
                out,
                "    subgraph {} {{",
                quote(&format!("cluster_{}", member.name))
            )?;
            writeln!(out, "        label={};", quote(&member.name))?;
        }
        for id in ids {
            let node = graph.node(id);
            let shape = match node.kind {
                NodeKind::Aggregate => "ellipse",
                NodeKind::Llm(_) => "hexagon",
                NodeKind::Rule(_) => "note",
                NodeKind::Command { .. } => "box",
            };
            writeln!(out, "{indent}{} [shape={shape}];", quote(&node.name))?;
        }
        if member.is_some() {
            writeln!(out, "    }}")?;
        }
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
    for (member, ids) in by_member(graph, nodes) {
        let indent = if member.is_some() { "        " } else { "    " };
        if let Some(member) = member {
            let name = graph.member(member).name.replace('"', "#quot;");
            writeln!(out, "    subgraph m{}[\"{name}\"]", member.index())?;
        }
        for id in ids {
            writeln!(out, "{indent}{}", label(id))?;
        }
        if member.is_some() {
            writeln!(out, "    end")?;
        }
    }
    for &id in nodes {
        for dep in graph.dependencies(id) {
            writeln!(out, "    n{} --> n{}", dep.index(), id.index())?;
        }
    }
    Ok(())
}
