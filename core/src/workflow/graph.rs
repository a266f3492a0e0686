//! Checks of the step graph: references resolve, every step is reachable from `start_step`,
//! and no cycle exists unless the workflow declares `allow_cycles: true`.

use std::collections::HashMap;

use super::decode::{Decoder, suggest};
use crate::diag::{Location, codes};

/// A reference from one place in the file to a step id.
pub(crate) struct Edge {
    /// The step id referred to.
    pub target: String,
    /// Where the reference is written (`steps[1].next`).
    pub path: String,
    /// Its position.
    pub loc: Location,
}

/// What the graph checks need to know of one step.
pub(crate) struct StepNode {
    /// The step id.
    pub id: String,
    /// `steps[i].id`.
    pub id_path: String,
    /// Position of the id.
    pub id_loc: Location,
    /// Every step the step may continue with.
    pub edges: Vec<Edge>,
}

/// Runs every graph check, reporting into `d`.
pub(crate) fn check(d: &mut Decoder, nodes: &[StepNode], start: &Edge, allow_cycles: bool) {
    let mut by_id: HashMap<&str, usize> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        by_id.entry(n.id.as_str()).or_insert(i);
    }
    let ids: Vec<&str> = nodes.iter().map(|n| n.id.as_str()).collect();
    let resolve = |d: &mut Decoder, edge: &Edge| -> Option<usize> {
        let found = by_id.get(edge.target.as_str()).copied();
        if found.is_none() {
            let hint = suggest(&edge.target, &ids)
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            d.err(
                codes::STEP_UNKNOWN_REF,
                &edge.path,
                edge.loc,
                format!("no step has id `{}`{hint}", edge.target),
            );
        }
        found
    };
    let adjacency: Vec<Vec<(usize, &Edge)>> = nodes
        .iter()
        .map(|n| {
            n.edges
                .iter()
                .filter_map(|e| resolve(d, e).map(|t| (t, e)))
                .collect()
        })
        .collect();
    let Some(start_ix) = resolve(d, start) else {
        return;
    };
    report_unreachable(d, nodes, &adjacency, start_ix);
    if !allow_cycles {
        report_cycles(d, nodes, &adjacency);
    }
}

fn report_unreachable(
    d: &mut Decoder,
    nodes: &[StepNode],
    adjacency: &[Vec<(usize, &Edge)>],
    start: usize,
) {
    let mut seen = vec![false; nodes.len()];
    let mut queue = vec![start];
    seen[start] = true;
    while let Some(i) = queue.pop() {
        for &(t, _) in &adjacency[i] {
            if !seen[t] {
                seen[t] = true;
                queue.push(t);
            }
        }
    }
    for (i, n) in nodes.iter().enumerate() {
        // Duplicates of an id share its fate; they are reported as duplicates already.
        let first = nodes.iter().position(|m| m.id == n.id) == Some(i);
        if !seen[i] && first {
            d.err(
                codes::GRAPH_UNREACHABLE,
                &n.id_path,
                n.id_loc,
                format!(
                    "step `{}` is unreachable: no path from `start_step` leads to it",
                    n.id
                ),
            );
        }
    }
}

/// Iterative depth-first search; every edge into a step still on the stack closes a cycle.
fn report_cycles(d: &mut Decoder, nodes: &[StepNode], adjacency: &[Vec<(usize, &Edge)>]) {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnStack,
        Done,
    }
    let mut mark = vec![Mark::New; nodes.len()];
    for root in 0..nodes.len() {
        if mark[root] != Mark::New {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
        mark[root] = Mark::OnStack;
        while let Some(&mut (node, ref mut next_edge)) = stack.last_mut() {
            let Some(&(target, edge)) = adjacency[node].get(*next_edge) else {
                mark[node] = Mark::Done;
                stack.pop();
                continue;
            };
            *next_edge += 1;
            match mark[target] {
                Mark::New => {
                    mark[target] = Mark::OnStack;
                    stack.push((target, 0));
                }
                Mark::OnStack => {
                    let from = stack.iter().position(|&(n, _)| n == target).unwrap_or(0);
                    let mut names: Vec<&str> = stack[from..]
                        .iter()
                        .map(|&(n, _)| nodes[n].id.as_str())
                        .collect();
                    names.push(&nodes[target].id);
                    d.err(
                        codes::GRAPH_CYCLE,
                        &edge.path,
                        edge.loc,
                        format!(
                            "this reference closes a cycle ({}); set `allow_cycles: true` \
                             at the top level if the loop is intended",
                            names.join(" → ")
                        ),
                    );
                }
                Mark::Done => {}
            }
        }
    }
}
