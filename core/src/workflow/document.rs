//! Decodes the top level of a workflow file and hands each step to its type's decoder.

use super::decode::{Decoder, index};
use super::graph::{self, Edge, StepNode};
use super::{Step, Workflow, is_identifier, steps};
use crate::diag::codes;
use crate::located::{Node, Value};

const TOP_KEYS: &[&str] = &[
    "id",
    "name",
    "description",
    "version",
    "start_step",
    "static",
    "allow_cycles",
    "steps",
];

/// Decodes the whole document; `None` when any part could not be decoded.
pub(super) fn decode(d: &mut Decoder, root: &Node) -> Option<Workflow> {
    if root.value == Value::Null {
        d.err(
            codes::TYPE_MISMATCH,
            "",
            root.loc,
            "the definition is empty; expected a mapping with `name`, `start_step` and `steps`",
        );
        return None;
    }
    let obj = d.mapping(root, "", TOP_KEYS)?;
    let id = d.opt_str(&obj, "id");
    if let Some(id) = &id
        && !is_identifier(id)
    {
        d.err(
            codes::VALUE_INVALID,
            "id",
            obj.get("id").map_or(obj.loc, |n| n.loc),
            format!("`{id}` is not a valid id (1-64 of letters, digits, `_`, `-`, `.`)"),
        );
    }
    let name = d.req_str(&obj, "name", "the workflow's display name");
    if let (Some(n), Some(node)) = (&name, obj.get("name"))
        && n.trim().is_empty()
    {
        d.err(codes::VALUE_INVALID, "name", node.loc, "the name is empty");
    }
    let description = d.opt_str(&obj, "description");
    let version = d.opt_count(&obj, "version", 1).map(|v| v as i64);
    let allow_cycles = d.opt_bool(&obj, "allow_cycles").unwrap_or(false);
    let static_data = match obj.get("static") {
        Some(node) => match node.to_json() {
            serde_json::Value::Object(map) => Some(map),
            _ => {
                d.mismatch(node, "static", "a mapping");
                None
            }
        },
        None => Some(serde_json::Map::new()),
    };

    let start = obj.get("start_step");
    let start_step = d.req_str(&obj, "start_step", "the id of the first step");
    let mut nodes = Vec::new();
    let steps = match d.required(&obj, "steps", "the list of steps") {
        Some(node) => decode_steps(d, node, &mut nodes),
        None => None,
    };
    if let (Some(start_id), Some(start), false) = (&start_step, start, nodes.is_empty()) {
        graph::check(
            d,
            &nodes,
            &Edge {
                target: start_id.clone(),
                path: "start_step".into(),
                loc: start.loc,
            },
            allow_cycles,
        );
    }
    Some(Workflow {
        id,
        name: name?,
        description,
        version,
        start_step: start_step?,
        static_data: static_data?,
        allow_cycles,
        steps: steps?,
    })
}

fn decode_steps(d: &mut Decoder, node: &Node, nodes: &mut Vec<StepNode>) -> Option<Vec<Step>> {
    let items = d.list(node, "steps")?;
    if items.is_empty() {
        d.err(
            codes::VALUE_INVALID,
            "steps",
            node.loc,
            "a workflow needs at least one step",
        );
        return None;
    }
    let mut out = Vec::with_capacity(items.len());
    let mut complete = true;
    for (i, item) in items.iter().enumerate() {
        let path = index("steps", i);
        match steps::decode(d, item, &path, nodes) {
            Some(step) => out.push(step),
            None => complete = false,
        }
    }
    complete.then_some(out)
}
