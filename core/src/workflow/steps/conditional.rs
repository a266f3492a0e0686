//! `conditional`: `when/then/else`, or `branches: [{when, next}]` with a `default`.
//! Both are stored as branches plus a default.

use super::super::decode::{Decoder, index};
use super::super::{Branch, ConditionalConfig};
use super::{Ctx, expression, step_ref};
use crate::diag::codes;
use crate::located::Node;

const KEYS: &[&str] = &["when", "then", "else", "branches", "default"];

pub(super) fn decode(d: &mut Decoder, cfg: &Node, ctx: &mut Ctx<'_>) -> Option<ConditionalConfig> {
    let obj = d.mapping(cfg, &ctx.path, KEYS)?;
    let short = ["when", "then", "else"].iter().any(|k| obj.has(k));
    let long = ["branches", "default"].iter().any(|k| obj.has(k));
    if short && long {
        d.err(
            codes::KEY_CONFLICT,
            &obj.path,
            obj.loc,
            "use either `when`/`then`/`else` or `branches`/`default`, not both",
        );
        // Still record every target, so the steps they name are not also called unreachable.
        for key in ["then", "else", "default"] {
            if let Some(n) = obj.get(key) {
                step_ref(d, n, &obj.path_of(key), ctx.edges);
            }
        }
        if let Some(n) = obj.get("branches") {
            decode_branches(d, n, &obj.path_of("branches"), ctx);
        }
        return None;
    }
    if short {
        let when = d
            .required(&obj, "when", "the condition")
            .and_then(|n| expression(d, n, &obj.path_of("when")));
        let then = d
            .required(&obj, "then", "the step taken when the condition holds")
            .and_then(|n| step_ref(d, n, &obj.path_of("then"), ctx.edges));
        let otherwise = d
            .required(&obj, "else", "the step taken otherwise")
            .and_then(|n| step_ref(d, n, &obj.path_of("else"), ctx.edges));
        return Some(ConditionalConfig {
            branches: vec![Branch {
                when: when?,
                next: then?,
            }],
            default: otherwise?,
        });
    }
    let branches = match d.required(&obj, "branches", "a list of {when, next}") {
        Some(node) => decode_branches(d, node, &obj.path_of("branches"), ctx),
        None => None,
    };
    let default = d
        .required(&obj, "default", "the step taken when no branch holds")
        .and_then(|n| step_ref(d, n, &obj.path_of("default"), ctx.edges));
    Some(ConditionalConfig {
        branches: branches?,
        default: default?,
    })
}

fn decode_branches(
    d: &mut Decoder,
    node: &Node,
    path: &str,
    ctx: &mut Ctx<'_>,
) -> Option<Vec<Branch>> {
    let items = d.list(node, path)?;
    if items.is_empty() {
        d.err(
            codes::VALUE_INVALID,
            path,
            node.loc,
            "`branches` is empty; give at least one",
        );
        return None;
    }
    let mut out = Vec::new();
    let mut complete = true;
    for (i, item) in items.iter().enumerate() {
        let item_path = index(path, i);
        let Some(obj) = d.mapping(item, &item_path, &["when", "next"]) else {
            complete = false;
            continue;
        };
        let when = d
            .required(&obj, "when", "the condition")
            .and_then(|n| expression(d, n, &obj.path_of("when")));
        let next = d
            .required(&obj, "next", "the step taken when it holds")
            .and_then(|n| step_ref(d, n, &obj.path_of("next"), ctx.edges));
        match (when, next) {
            (Some(when), Some(next)) => out.push(Branch { when, next }),
            _ => complete = false,
        }
    }
    complete.then_some(out)
}
