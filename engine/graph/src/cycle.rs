//! Cycle detection over tasks, before `for-each` expansion, so a cycle is reported once in
//! terms of the task names the user wrote, with the whole path: `a → b → c → a`.

use std::collections::VecDeque;

use miette::SourceSpan;
use petgraph::{algo::tarjan_scc, graph::DiGraph};

/// One cycle: the tasks on it in dependency order (the first is repeated at the end by the
/// caller's formatting), with the span of each `deps` entry that closes a step.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Cycle {
    /// Task indices, `a, b, c` for `a → b → c → a`.
    pub tasks: Vec<usize>,
    /// The span of the `deps` entry for each step `tasks[i] → tasks[i + 1]` (wrapping).
    pub spans: Vec<SourceSpan>,
}

/// Every cycle among `deps`, one per strongly connected component, shortest path through
/// its first task (in file order). `deps[t]` lists `(dependency, span of its name)`.
pub(super) fn find_cycles(deps: &[Vec<(usize, SourceSpan)>]) -> Vec<Cycle> {
    let mut graph = DiGraph::<(), SourceSpan>::new();
    let nodes: Vec<_> = (0..deps.len()).map(|_| graph.add_node(())).collect();
    for (task, edges) in deps.iter().enumerate() {
        for &(dep, span) in edges {
            graph.add_edge(nodes[task], nodes[dep], span);
        }
    }
    let mut cycles = Vec::new();
    for component in tarjan_scc(&graph) {
        let mut members: Vec<usize> = component.iter().map(|n| n.index()).collect();
        members.sort_unstable();
        let start = members[0];
        let self_loop = deps[start].iter().any(|&(dep, _)| dep == start);
        if members.len() == 1 && !self_loop {
            continue;
        }
        if let Some(cycle) = shortest_cycle(deps, start, &members) {
            cycles.push(cycle);
        }
    }
    cycles.sort_by_key(|cycle| cycle.tasks[0]);
    cycles
}

/// Breadth-first search from `start` back to itself, staying inside `members`.
fn shortest_cycle(
    deps: &[Vec<(usize, SourceSpan)>],
    start: usize,
    members: &[usize],
) -> Option<Cycle> {
    let mut previous: Vec<Option<(usize, SourceSpan)>> = vec![None; deps.len()];
    let mut queue = VecDeque::from([start]);
    let mut closing = None;
    'search: while let Some(task) = queue.pop_front() {
        for &(dep, span) in &deps[task] {
            if dep == start {
                closing = Some((task, span));
                break 'search;
            }
            if members.binary_search(&dep).is_ok() && previous[dep].is_none() && dep != start {
                previous[dep] = Some((task, span));
                queue.push_back(dep);
            }
        }
    }
    let (mut task, closing_span) = closing?;
    let mut tasks = vec![task];
    let mut spans = vec![closing_span];
    while task != start {
        let (before, span) = previous[task]?;
        tasks.push(before);
        spans.push(span);
        task = before;
    }
    tasks.reverse();
    spans.reverse();
    Some(Cycle { tasks, spans })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(n: usize) -> SourceSpan {
        (n, 1).into()
    }

    #[test]
    fn finds_the_whole_path() {
        // 0 → 1 → 2 → 0, and 3 → 0 outside the cycle
        let deps = vec![
            vec![(1, span(1))],
            vec![(2, span(2))],
            vec![(0, span(3))],
            vec![(0, span(4))],
        ];
        let cycles = find_cycles(&deps);
        assert_eq!(
            cycles,
            [Cycle {
                tasks: vec![0, 1, 2],
                spans: vec![span(1), span(2), span(3)]
            }]
        );
    }

    #[test]
    fn finds_self_loops_and_nothing_in_a_dag() {
        assert_eq!(find_cycles(&[vec![(0, span(9))]])[0].tasks, [0]);
        assert!(find_cycles(&[vec![(1, span(1))], vec![]]).is_empty());
    }
}
