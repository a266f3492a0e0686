//! Evaluation cost accounting. Every node evaluated, JSON value copied or compared, and 64
//! bytes of string copied or scanned costs a unit; past [`COST_BUDGET`] evaluation stops with
//! an error, so no context, however large, makes an expression slow.

use serde_json::Value;

use super::{COST_BUDGET, EvalError};

/// Deepest nesting of a value evaluation may copy (as deep as `serde_json` parses by default).
pub(super) const MAX_COPY_DEPTH: usize = 128;

/// Units of work spent so far by one evaluation.
#[derive(Debug, Default)]
pub(super) struct Meter {
    used: usize,
}

impl Meter {
    /// Spends `units`, failing once the budget is exceeded.
    pub(super) fn charge(&mut self, units: usize) -> Result<(), EvalError> {
        self.used = self.used.saturating_add(units);
        if self.used > COST_BUDGET {
            Err(EvalError {
                message: format!(
                    "the expression is too costly to evaluate (more than {COST_BUDGET} units of work)"
                ),
            })
        } else {
            Ok(())
        }
    }

    /// Spends the cost of copying or scanning `bytes` bytes of string.
    pub(super) fn charge_bytes(&mut self, bytes: usize) -> Result<(), EvalError> {
        self.charge(bytes / 64 + 1)
    }

    /// Spends the cost of copying `value`: one unit per JSON value in it plus its strings.
    /// Walks with an explicit stack (no recursion), stopping as soon as the budget runs out,
    /// and refuses values nested deeper than [`MAX_COPY_DEPTH`], since copying (cloning) a
    /// JSON value recurses once per level.
    pub(super) fn charge_copy(&mut self, value: &Value) -> Result<(), EvalError> {
        self.charge(1)?;
        let mut stack = vec![(value, 0_usize)];
        while let Some((v, depth)) = stack.pop() {
            if depth > MAX_COPY_DEPTH {
                return Err(EvalError {
                    message: format!(
                        "a value nested more than {MAX_COPY_DEPTH} levels deep cannot be copied"
                    ),
                });
            }
            match v {
                Value::String(s) => self.charge_bytes(s.len())?,
                Value::Array(items) => {
                    self.charge(items.len())?;
                    stack.extend(items.iter().map(|item| (item, depth + 1)));
                }
                Value::Object(map) => {
                    self.charge(map.len())?;
                    for (key, item) in map {
                        self.charge_bytes(key.len())?;
                        stack.push((item, depth + 1));
                    }
                }
                Value::Null | Value::Bool(_) | Value::Number(_) => {}
            }
        }
        Ok(())
    }
}
