//! `approval`: who decides, how many must approve, and the wait policy.

use super::super::ApprovalConfig;
use super::super::decode::{Decoder, index};
use super::{Ctx, template, wait};
use crate::diag::codes;
use crate::located::Node;

pub(super) fn decode(d: &mut Decoder, cfg: &Node, ctx: &mut Ctx<'_>) -> Option<ApprovalConfig> {
    let keys: Vec<&str> = ["approvers", "min_approvals", "message"]
        .iter()
        .chain(wait::KEYS)
        .copied()
        .collect();
    let obj = d.mapping(cfg, &ctx.path, &keys)?;
    let wait = wait::decode(d, &obj, ctx);
    let message = obj
        .get("message")
        .and_then(|n| template(d, n, &obj.path_of("message")));
    let min_approvals = d.opt_count(&obj, "min_approvals", 1);
    let node = d.required(
        &obj,
        "approvers",
        "the e-mail addresses of those who decide",
    )?;
    let path = obj.path_of("approvers");
    let list = d.string_list(node, &path)?;
    if list.is_empty() {
        d.err(
            codes::VALUE_INVALID,
            &path,
            node.loc,
            "give at least one approver",
        );
        return None;
    }
    let mut approvers: Vec<String> = Vec::new();
    for (i, (who, loc)) in list.into_iter().enumerate() {
        let templated = who.contains("{{") || who.contains("{%");
        if templated {
            if let Err(e) = crate::lang::check_template(&who) {
                d.err(
                    codes::TEMPLATE_INVALID,
                    &index(&path, i),
                    loc,
                    format!(
                        "invalid template at character {}: {}",
                        e.offset + 1,
                        e.message
                    ),
                );
            }
        } else if !is_email(&who) {
            d.err(
                codes::VALUE_INVALID,
                &index(&path, i),
                loc,
                format!("`{who}` is not an e-mail address"),
            );
        } else if approvers.contains(&who) {
            d.err(
                codes::VALUE_INVALID,
                &index(&path, i),
                loc,
                format!("`{who}` is listed twice"),
            );
        }
        approvers.push(who);
    }
    if let Some(min) = min_approvals
        && min as usize > approvers.len()
    {
        d.err(
            codes::VALUE_INVALID,
            &obj.path_of("min_approvals"),
            obj.value_loc("min_approvals"),
            format!(
                "needs {min} approvals but only {} approvers are listed",
                approvers.len()
            ),
        );
    }
    Some(ApprovalConfig {
        approvers,
        min_approvals: min_approvals.map_or(1, |m| m as u32),
        message,
        wait,
    })
}

/// A pragmatic address check: one `@`, something before it, a dotted domain after it.
/// Whether `s` looks like one e-mail address.
pub(super) fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(char::is_whitespace)
}
