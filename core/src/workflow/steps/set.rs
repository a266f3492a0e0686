//! `set`: `values: {key: expression}`; literals (numbers, booleans, null) are accepted as the
//! expressions that spell them.

use std::collections::BTreeMap;

use super::super::SetConfig;
use super::super::decode::{Decoder, join};
use super::{Ctx, checked_expression};
use crate::diag::codes;
use crate::located::{Node, Value};
use crate::workflow::is_data_key;

pub(super) fn decode(d: &mut Decoder, cfg: &Node, ctx: &mut Ctx<'_>) -> Option<SetConfig> {
    let obj = d.mapping(cfg, &ctx.path, &["values"])?;
    let node = d.required(&obj, "values", "runtime key → expression")?;
    let path = obj.path_of("values");
    let Value::Map(entries) = &node.value else {
        d.mismatch(node, &path, "a mapping of runtime keys to expressions");
        return None;
    };
    if entries.is_empty() {
        d.err(
            codes::VALUE_INVALID,
            &path,
            node.loc,
            "`values` is empty; give at least one key",
        );
        return None;
    }
    let mut values = BTreeMap::new();
    let mut complete = true;
    for (key, value) in entries {
        let value_path = join(&path, &key.name);
        if !is_data_key(&key.name) {
            d.err(
                codes::VALUE_INVALID,
                &value_path,
                key.loc,
                format!("`{}` is not a valid runtime key (letters, digits and `_`, not starting with a digit)", key.name),
            );
            complete = false;
            continue;
        }
        let src = match &value.value {
            Value::Str(s) => s.clone(),
            Value::Int(_) | Value::Float(_) | Value::Bool(_) | Value::Null => {
                value.to_json().to_string()
            }
            _ => {
                d.mismatch(
                    value,
                    &value_path,
                    "an expression (quote it: \"runtime.x + 1\")",
                );
                complete = false;
                continue;
            }
        };
        match checked_expression(d, src, value, &value_path) {
            Some(expr) => {
                values.insert(key.name.clone(), expr);
            }
            None => complete = false,
        }
    }
    complete.then_some(SetConfig { values })
}
