//! Decodes one step: the keys every step shares, then its type's `config` (one file per type).

mod ai_generate;
mod api_call;
mod approval;
mod conditional;
mod form;
mod set;
mod wait;

use super::decode::{Decoder, join, suggest};
use super::graph::{Edge, StepNode};
use super::{STEP_TYPES, Step, StepKind, is_data_key, is_identifier};
use crate::diag::codes;
use crate::lang;
use crate::located::{Node, Value};

const STEP_KEYS: &[&str] = &["id", "type", "name", "description", "config", "next"];

/// What a config decoder needs: where it is, and where to record step references.
pub(super) struct Ctx<'a> {
    /// Path of the `config` mapping.
    pub path: String,
    /// References to other steps found in the config.
    pub edges: &'a mut Vec<Edge>,
}

/// Decodes `steps[i]`, registering its id and outgoing references in `nodes`.
pub(super) fn decode(
    d: &mut Decoder,
    node: &Node,
    path: &str,
    nodes: &mut Vec<StepNode>,
) -> Option<Step> {
    let obj = d.mapping(node, path, STEP_KEYS)?;
    let id = d.req_str(&obj, "id", "a unique step id");
    let id_loc = obj.get("id").map_or(obj.loc, |n| n.loc);
    if let Some(id) = &id {
        if !is_identifier(id) {
            d.err(
                codes::VALUE_INVALID,
                &obj.path_of("id"),
                id_loc,
                format!("`{id}` is not a valid step id (1-64 of letters, digits, `_`, `-`, `.`)"),
            );
        } else if nodes.iter().any(|n| &n.id == id) {
            d.err(
                codes::STEP_DUPLICATE_ID,
                &obj.path_of("id"),
                id_loc,
                format!("another step already has id `{id}`"),
            );
        }
    }
    let name = d.opt_str(&obj, "name");
    let description = d.opt_str(&obj, "description");
    let step_type = step_type(d, obj.get("type"), &obj);

    let mut edges = Vec::new();
    let next = match (obj.get("next"), step_type) {
        (Some(_), Some("conditional")) => {
            d.err(
                codes::KEY_UNKNOWN,
                &obj.path_of("next"),
                obj.key_loc("next"),
                "a conditional step routes by its branches; move this target into \
                 `config.default` or a branch",
            );
            None
        }
        (Some(n), _) => step_ref(d, n, &obj.path_of("next"), &mut edges),
        (None, _) => None,
    };
    let config = d.required(&obj, "config", "the step's configuration");
    let mut ctx = Ctx {
        path: obj.path_of("config"),
        edges: &mut edges,
    };
    let kind = match (step_type, config) {
        (Some(t), Some(cfg)) => decode_config(d, t, cfg, &mut ctx),
        _ => None,
    };
    if let Some(id) = &id {
        nodes.push(StepNode {
            id: id.clone(),
            id_path: obj.path_of("id"),
            id_loc,
            edges,
        });
    }
    Some(Step {
        id: id?,
        name,
        description,
        kind: kind?,
        next,
    })
}

fn step_type(
    d: &mut Decoder,
    node: Option<&Node>,
    obj: &super::decode::Obj<'_>,
) -> Option<&'static str> {
    let Some(node) = node else {
        d.missing(obj, "type", &format!("one of {}", STEP_TYPES.join(", ")));
        return None;
    };
    let path = obj.path_of("type");
    let text = d.string(node, &path)?;
    if let Some(t) = STEP_TYPES.iter().find(|t| **t == text) {
        return Some(t);
    }
    let hint = match suggest(&text, STEP_TYPES) {
        Some(s) => format!("; did you mean `{s}`?"),
        None => format!("; expected one of: {}", STEP_TYPES.join(", ")),
    };
    d.err(
        codes::STEP_UNKNOWN_TYPE,
        &path,
        node.loc,
        format!("unknown step type `{text}`{hint}"),
    );
    None
}

fn decode_config(d: &mut Decoder, ty: &str, cfg: &Node, ctx: &mut Ctx<'_>) -> Option<StepKind> {
    match ty {
        "form" => form::decode(d, cfg, ctx).map(StepKind::Form),
        "conditional" => conditional::decode(d, cfg, ctx).map(StepKind::Conditional),
        "set" => set::decode(d, cfg, ctx).map(StepKind::Set),
        "ai_generate" => ai_generate::decode(d, cfg, ctx).map(StepKind::AiGenerate),
        "api_call" => api_call::decode(d, cfg, ctx).map(StepKind::ApiCall),
        "approval" => approval::decode(d, cfg, ctx).map(StepKind::Approval),
        _ => None,
    }
}

/// A step id reference: recorded as a graph edge, checked later for existence.
pub(super) fn step_ref(
    d: &mut Decoder,
    node: &Node,
    path: &str,
    edges: &mut Vec<Edge>,
) -> Option<String> {
    let target = d.string(node, path)?;
    edges.push(Edge {
        target: target.clone(),
        path: path.to_string(),
        loc: node.loc,
    });
    Some(target)
}

/// An expression, syntax-checked through the language seam.
pub(super) fn expression(d: &mut Decoder, node: &Node, path: &str) -> Option<String> {
    let src = d.string(node, path)?;
    checked_expression(d, src, node, path)
}

fn checked_expression(d: &mut Decoder, src: String, node: &Node, path: &str) -> Option<String> {
    match lang::check_expression(&src) {
        Ok(()) => Some(src),
        Err(e) => {
            d.err(
                codes::EXPRESSION_INVALID,
                path,
                node.loc,
                format!(
                    "invalid expression at character {}: {}",
                    e.offset + 1,
                    e.message
                ),
            );
            None
        }
    }
}

/// A templated string, syntax-checked through the language seam.
pub(super) fn template(d: &mut Decoder, node: &Node, path: &str) -> Option<String> {
    let src = d.string(node, path)?;
    check_template_text(d, &src, node, path).then_some(src)
}

fn check_template_text(d: &mut Decoder, src: &str, node: &Node, path: &str) -> bool {
    match lang::check_template(src) {
        Ok(()) => true,
        Err(e) => {
            d.err(
                codes::TEMPLATE_INVALID,
                path,
                node.loc,
                format!(
                    "invalid template at character {}: {}",
                    e.offset + 1,
                    e.message
                ),
            );
            false
        }
    }
}

/// Checks every string inside a free-form value (an api_call body) as a template.
pub(super) fn templates_within(d: &mut Decoder, node: &Node, path: &str) -> bool {
    match &node.value {
        Value::Str(s) => check_template_text(d, s, node, path),
        Value::Seq(items) => items.iter().enumerate().fold(true, |ok, (i, n)| {
            templates_within(d, n, &format!("{path}[{i}]")) && ok
        }),
        Value::Map(entries) => entries.iter().fold(true, |ok, (k, n)| {
            templates_within(d, n, &join(path, &k.name)) && ok
        }),
        _ => true,
    }
}

/// An optional runtime key under `key` (output_key and the like).
pub(super) fn data_key(d: &mut Decoder, obj: &super::decode::Obj<'_>, key: &str) -> Option<String> {
    let value = d.opt_str(obj, key)?;
    if !is_data_key(&value) {
        d.err(
            codes::VALUE_INVALID,
            &obj.path_of(key),
            obj.get(key).map_or(obj.loc, |n| n.loc),
            format!("`{value}` is not a valid runtime key (letters, digits and `_`, not starting with a digit)"),
        );
        return None;
    }
    Some(value)
}
