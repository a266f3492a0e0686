//! Resolving name paths (`runtime.a.b[0]`) in the context. A step that does not resolve is
//! [`Lookup::Missing`] with a message naming the full path, which evaluation turns into an
//! error and `exists` into `false`.

use std::borrow::Cow;

use serde_json::Value;

use super::EvalError;
use super::ast::{Kind, Node};
use super::eval::{Evaluator, guard};
use super::ops::{Val, type_name};

/// Where a path led.
pub(super) enum Lookup<'a> {
    /// To this value.
    Found(Val<'a>),
    /// Nowhere, for this reason (naming the path).
    Missing(String),
}

impl<'a> Evaluator<'a> {
    /// Resolves `node`: a root, attribute or index step, or (as the base of one) any value.
    pub(super) fn lookup(&mut self, node: &'a Node, depth: usize) -> Result<Lookup<'a>, EvalError> {
        guard(depth)?;
        self.meter.charge(1)?;
        match &node.kind {
            Kind::Root(root) => Ok(match self.ctx.get(root.name()) {
                Some(v) => Lookup::Found(Cow::Borrowed(v)),
                None => Lookup::Missing(format!("{} is not set", root.name())),
            }),
            Kind::Attr(base, name) => match self.lookup(base, depth + 1)? {
                Lookup::Found(v) => Ok(self.attribute(v, base, name, node)),
                missing => Ok(missing),
            },
            Kind::Index(base, index) => match self.lookup(base, depth + 1)? {
                Lookup::Found(v) => {
                    let key = self.eval(index, depth + 1)?;
                    self.index(v, base, &key, node)
                }
                missing => Ok(missing),
            },
            _ => self.eval(node, depth).map(Lookup::Found),
        }
    }

    /// `value.name`, where `value` came from `base` and the whole is `node`.
    fn attribute(&self, value: Val<'a>, base: &Node, name: &str, node: &Node) -> Lookup<'a> {
        let found = match value {
            Cow::Borrowed(Value::Object(map)) => map.get(name).map(Cow::Borrowed),
            Cow::Owned(Value::Object(mut map)) => map.remove(name).map(Cow::Owned),
            other => {
                return Lookup::Missing(format!(
                    "{} cannot be read: {} is {}, not an object",
                    self.quote(node.span),
                    self.quote(base.span),
                    type_name(&other)
                ));
            }
        };
        match found {
            Some(v) => Lookup::Found(v),
            None => Lookup::Missing(format!("{} is not set", self.quote(node.span))),
        }
    }

    /// `value[key]`, where `value` came from `base` and the whole is `node`.
    fn index(
        &mut self,
        value: Val<'a>,
        base: &Node,
        key: &Value,
        node: &Node,
    ) -> Result<Lookup<'a>, EvalError> {
        let path = self.quote(node.span);
        let base_text = self.quote(base.span);
        let missing = |why: String| Ok(Lookup::Missing(why));
        match (&*value, key) {
            (Value::Object(_), Value::String(k)) => {
                let found = match value {
                    Cow::Borrowed(Value::Object(map)) => map.get(k).map(Cow::Borrowed),
                    Cow::Owned(Value::Object(mut map)) => map.remove(k).map(Cow::Owned),
                    _ => None,
                };
                match found {
                    Some(v) => Ok(Lookup::Found(v)),
                    None => missing(format!("{path} is not set (no key {key} in {base_text})")),
                }
            }
            (Value::Object(_), _) => missing(format!(
                "{path} cannot be read: {base_text} is an object, so its keys are strings, not {}",
                type_name(key)
            )),
            (Value::Array(items), Value::Number(n)) => {
                let len = items.len();
                let Some(i) = n.as_i64().or_else(|| n.as_u64().map(|_| i64::MAX)) else {
                    return missing(format!(
                        "{path} cannot be read: list index {n} is not an integer"
                    ));
                };
                let Some(at) = position(i, len) else {
                    return missing(format!(
                        "{path} is not set (index {i} is out of range: {base_text} has {len} items)"
                    ));
                };
                let found = match value {
                    Cow::Borrowed(Value::Array(items)) => items.get(at).map(Cow::Borrowed),
                    Cow::Owned(Value::Array(items)) => items.into_iter().nth(at).map(Cow::Owned),
                    _ => None,
                };
                Ok(found.map_or_else(
                    || Lookup::Missing(format!("{path} is not set")),
                    Lookup::Found,
                ))
            }
            (Value::String(s), Value::Number(n)) => {
                self.meter.charge_bytes(s.len())?;
                let len = s.chars().count();
                let found = n
                    .as_i64()
                    .and_then(|i| position(i, len))
                    .and_then(|at| s.chars().nth(at));
                Ok(match found {
                    Some(c) => Lookup::Found(Cow::Owned(Value::String(c.to_string()))),
                    None => Lookup::Missing(format!(
                        "{path} is not set (index {n} is not a position in a string of {len} characters)"
                    )),
                })
            }
            (Value::Array(_) | Value::String(_), _) => missing(format!(
                "{path} cannot be read: {base_text} is {}, so its index must be an integer, not {}",
                type_name(&value),
                type_name(key)
            )),
            (other, _) => missing(format!(
                "{path} cannot be read: {base_text} is {}, which has no items",
                type_name(other)
            )),
        }
    }
}

/// The position of index `i` (negative counts from the end) in a sequence of `len`.
fn position(i: i64, len: usize) -> Option<usize> {
    let len = i64::try_from(len).ok()?;
    let at = if i < 0 { i.checked_add(len)? } else { i };
    if (0..len).contains(&at) {
        usize::try_from(at).ok()
    } else {
        None
    }
}
