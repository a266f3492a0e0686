//! The deadline and reminder keys shared by steps that wait for people (form, approval).

use super::super::decode::{Decoder, Obj};
use super::super::{Duration, WaitPolicy};
use super::{Ctx, step_ref};
use crate::diag::codes;
use crate::located::{Node, Value};

/// The keys [`decode`] reads.
pub(super) const KEYS: &[&str] = &[
    "timeout",
    "timeout_hours",
    "reminder",
    "reminder_hours",
    "on_timeout",
];

/// Reads the wait policy of a waiting step.
pub(super) fn decode(d: &mut Decoder, obj: &Obj<'_>, ctx: &mut Ctx<'_>) -> WaitPolicy {
    let timeout = duration(d, obj, "timeout", "timeout_hours");
    let reminder = duration(d, obj, "reminder", "reminder_hours");
    if let (Some(t), Some(r)) = (timeout, reminder)
        && r >= t
    {
        let key = if obj.has("reminder") {
            "reminder"
        } else {
            "reminder_hours"
        };
        d.err(
            codes::VALUE_INVALID,
            &obj.path_of(key),
            obj.value_loc(key),
            format!("the reminder ({r}) must come before the timeout ({t})"),
        );
    }
    let on_timeout = obj
        .get("on_timeout")
        .and_then(|n| step_ref(d, n, &obj.path_of("on_timeout"), ctx.edges));
    if on_timeout.is_some() && !obj.has("timeout") && !obj.has("timeout_hours") {
        d.err(
            codes::KEY_MISSING,
            &obj.path_of("timeout"),
            obj.loc,
            "`on_timeout` needs a `timeout` (or `timeout_hours`) to fire",
        );
    }
    WaitPolicy {
        timeout,
        reminder,
        on_timeout,
    }
}

/// `key` as a duration (`"90s"`, or a number of seconds) or `hours_key` as hours; not both.
fn duration(d: &mut Decoder, obj: &Obj<'_>, key: &str, hours_key: &str) -> Option<Duration> {
    match (obj.get(key), obj.get(hours_key)) {
        (Some(_), Some(_)) => {
            d.err(
                codes::KEY_CONFLICT,
                &obj.path_of(hours_key),
                obj.key_loc(hours_key),
                format!("give either `{key}` or `{hours_key}`, not both"),
            );
            None
        }
        (Some(node), None) => parsed(d, node, &obj.path_of(key), duration_of(node)),
        (None, Some(node)) => {
            let result = match node.as_f64() {
                Some(hours) => Duration::from_units(hours, 3_600),
                None => {
                    d.mismatch(node, &obj.path_of(hours_key), "a number of hours");
                    return None;
                }
            };
            parsed(d, node, &obj.path_of(hours_key), result)
        }
        (None, None) => None,
    }
}

fn duration_of(node: &Node) -> Result<Duration, String> {
    match &node.value {
        Value::Str(s) => Duration::parse(s),
        Value::Int(_) | Value::Float(_) => Duration::from_units(node.as_f64().unwrap_or(0.0), 1),
        _ => Err(format!(
            "expected a duration like `12h`, found {}",
            node.kind()
        )),
    }
}

fn parsed(
    d: &mut Decoder,
    node: &Node,
    path: &str,
    result: Result<Duration, String>,
) -> Option<Duration> {
    result
        .map_err(|msg| d.err(codes::VALUE_INVALID, path, node.loc, msg))
        .ok()
}
