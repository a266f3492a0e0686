//! Walks a compiled tree over a context. Values stay borrowed from the context where they can;
//! every step is paid for on a [`Meter`], and the walk's depth is bounded by the tree's size
//! (at most [`MAX_NODES`]), which is checked again here.

use std::borrow::Cow;

use serde_json::Value;

use super::ast::{Func, Kind, Node, Span, Unary};
use super::meter::Meter;
use super::ops::{self, Val};
use super::path::Lookup;
use super::{EvalError, MAX_NODES, funcs};

/// Longest piece of source quoted in an error message, in characters.
const QUOTE_CHARS: usize = 80;

/// One evaluation of one expression over one context.
pub(super) struct Evaluator<'a> {
    /// The object holding `static`, `profile`, `inputs` and `runtime`.
    pub(super) ctx: &'a Value,
    /// The expression's source, quoted in messages.
    src: &'a str,
    /// The work done so far.
    pub(super) meter: Meter,
}

impl<'a> Evaluator<'a> {
    /// Starts an evaluation of the tree compiled from `src`.
    pub(super) fn new(ctx: &'a Value, src: &'a str) -> Self {
        Evaluator {
            ctx,
            src,
            meter: Meter::default(),
        }
    }

    /// Evaluates `node`, `depth` levels below the root.
    pub(super) fn eval(&mut self, node: &'a Node, depth: usize) -> Result<Val<'a>, EvalError> {
        guard(depth)?;
        self.meter.charge(1)?;
        let next = depth + 1;
        let value = match &node.kind {
            Kind::Literal(v) => Cow::Borrowed(v),
            Kind::List(items) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    let v = self.eval(item, next)?;
                    out.push(ops::own(v, &mut self.meter)?);
                }
                Cow::Owned(Value::Array(out))
            }
            Kind::Root(_) | Kind::Attr(..) | Kind::Index(..) => match self.lookup(node, depth)? {
                Lookup::Found(v) => v,
                Lookup::Missing(message) => return Err(EvalError { message }),
            },
            Kind::Unary(op, operand) => {
                let v = self.eval(operand, next)?;
                let result = match op {
                    Unary::Not => Ok(Value::Bool(!ops::truthy(&v))),
                    Unary::Neg => ops::negate(&v),
                    Unary::Pos => ops::plus(&v),
                };
                Cow::Owned(self.within(node, result)?)
            }
            Kind::Arith(op, left, right) => {
                let a = self.eval(left, next)?;
                let b = self.eval(right, next)?;
                let result = ops::arith(*op, a, b, &mut self.meter);
                Cow::Owned(self.within(node, result)?)
            }
            Kind::And(left, right) => {
                let a = self.eval(left, next)?;
                if ops::truthy(&a) {
                    self.eval(right, next)?
                } else {
                    a
                }
            }
            Kind::Or(left, right) => {
                let a = self.eval(left, next)?;
                if ops::truthy(&a) {
                    a
                } else {
                    self.eval(right, next)?
                }
            }
            Kind::Compare(first, rest) => {
                let mut left = self.eval(first, next)?;
                for (op, operand) in rest {
                    let right = self.eval(operand, next)?;
                    let holds = ops::compare(*op, &left, &right, &mut self.meter);
                    if !self.within(node, holds)? {
                        return Ok(Cow::Owned(Value::Bool(false)));
                    }
                    left = right;
                }
                Cow::Owned(Value::Bool(true))
            }
            Kind::Call(Func::Exists, path) => {
                let found = matches!(self.lookup(path, next)?, Lookup::Found(_));
                Cow::Owned(Value::Bool(found))
            }
            Kind::Call(func, arg) => {
                let v = self.eval(arg, next)?;
                let result = funcs::call(*func, &v, &mut self.meter);
                Cow::Owned(self.within(node, result)?)
            }
        };
        Ok(value)
    }

    /// Adds which part of the expression failed to an operator's error.
    fn within<T>(&self, node: &Node, result: Result<T, EvalError>) -> Result<T, EvalError> {
        result.map_err(|e| EvalError {
            message: format!("{} (in `{}`)", e.message, self.quote(node.span)),
        })
    }

    /// The source text of `span`, shortened for messages.
    pub(super) fn quote(&self, span: Span) -> String {
        let text = self.src.get(span.start..span.end).unwrap_or("?").trim();
        if text.chars().count() <= QUOTE_CHARS {
            return text.to_string();
        }
        let mut short: String = text.chars().take(QUOTE_CHARS).collect();
        short.push('…');
        short
    }
}

/// Refuses to walk deeper than any valid tree can be.
pub(super) fn guard(depth: usize) -> Result<(), EvalError> {
    if depth > MAX_NODES {
        ops::fail("the expression is nested too deeply to evaluate")
    } else {
        Ok(())
    }
}
