//! The expression language (DESIGN §5): a small, side-effect-free, Python-like language
//! evaluated over the run context `{static, profile, inputs, runtime}`.
//!
//! [`compile`] turns source text into an [`Expr`] (lexing, parsing and name checks happen
//! once, when a workflow is saved); [`Expr::eval`] evaluates it against a JSON context with a
//! bounded cost, so evaluation always ends quickly and never panics.
//!
//! # The language
//! - Literals: integers, floats (`1.5`, `1e3`), strings in single or double quotes with the
//!   escapes `\n \t \r \0 \\ \' \"`, `true`/`false`/`null` (and Python's `True`/`False`/`None`),
//!   lists `[a, b]`.
//! - Names start at exactly `static`, `profile`, `inputs` or `runtime`, followed by attribute
//!   (`.name`) and index (`[expr]`) access. Negative list indices count from the end; strings
//!   index by character. A name that is missing when evaluated is an error naming its path.
//! - Operators, loosest first: `or`, `and`, `not`, comparisons (`== != < <= > >= in`,
//!   `not in`), `+ -`, `* / %`, unary `- +`. `and`/`or` short-circuit and return an operand;
//!   `not` returns a boolean. Comparisons chain with Python's meaning: `1 < x < 3` is
//!   `1 < x and x < 3` with `x` evaluated once.
//! - `/` is true division and always gives a float; `%` takes the sign of the divisor (as in
//!   Python). Integer arithmetic is checked: overflow is an error, as is dividing by zero.
//!   Booleans are not numbers here: `true + 1` is an error and `true == 1` is false.
//! - `==`/`!=` compare any JSON deeply (`1 == 1.0`); ordering works between two numbers or two
//!   strings only. `in` finds an element in a list, a substring in a string, a key in an object.
//! - The only calls are `len(x)`, `any(list)`, `all(list)`, `lower(s)`, `upper(s)` and
//!   `exists(path)`, which says whether a name path resolves instead of failing.
//!
//! # Limits
//! At most [`MAX_EXPRESSION_LEN`] bytes of source, [`MAX_DEPTH`] levels of nesting,
//! [`MAX_NODES`] syntax nodes, [`COST_BUDGET`] units of evaluation work and strings of at most
//! [`MAX_STRING_BYTES`] built by evaluation.
//!
//! # Parts
//! - `lexer`: source text → tokens with byte spans; balanced brackets.
//! - `ast`: the syntax tree the parser builds and the evaluator walks.
//! - `parser`: tokens → syntax tree, with name, call and limit checks.
//! - `eval`: walks the tree over a context; `path` resolves name paths in it.
//! - `ops`: the operators on JSON values; `funcs`: the callable functions.
//! - `meter`: the evaluation cost budget.

mod ast;
mod eval;
mod funcs;
mod lexer;
mod meter;
mod ops;
mod parser;
mod path;

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;

use serde_json::Value;

pub use crate::lang::MAX_EXPRESSION_LEN;

/// Deepest nesting of brackets, parentheses and unary operators accepted.
pub const MAX_DEPTH: usize = 32;
/// Most syntax nodes (literals, names, operators, calls, accesses) in one expression.
pub const MAX_NODES: usize = 256;
/// Units of work one evaluation may spend: one per node evaluated, one per list element or
/// JSON value copied or compared, one per 64 bytes of string copied or scanned.
pub const COST_BUDGET: usize = 100_000;
/// Longest string an evaluation may build (by `+`, `lower` or `upper`), in bytes.
pub const MAX_STRING_BYTES: usize = 1 << 20;

/// Why source text is not a valid expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    /// Character (not byte) offset of the offending token within the source.
    pub offset: usize,
    /// What is wrong, for a person.
    pub message: String,
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "at character {}: {}", self.offset + 1, self.message)
    }
}

impl std::error::Error for ExprError {}

/// Why an expression could not be evaluated against a context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvalError {
    /// What failed, naming the path or operation (e.g. `runtime.topic is not set`).
    pub message: String,
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for EvalError {}

/// A compiled expression: checked once, evaluated any number of times. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Expr {
    /// The text it was compiled from, for messages and for storing back.
    source: Arc<str>,
    /// The checked syntax tree.
    tree: Arc<ast::Node>,
}

/// Compiles `src`: lexes, parses, and checks that every name starts at a context root, that
/// only the known functions are called, and that the limits hold.
pub fn compile(src: &str) -> Result<Expr, ExprError> {
    let tree = compile_tree(src).map_err(|e| ExprError {
        offset: char_offset(src, e.at),
        message: e.message,
    })?;
    Ok(Expr {
        source: Arc::from(src),
        tree: Arc::new(tree),
    })
}

/// Compiles to a tree, reporting errors at byte offsets.
fn compile_tree(src: &str) -> Result<ast::Node, lexer::SyntaxError> {
    if src.trim().is_empty() {
        return Err(lexer::SyntaxError::new(0, "the expression is empty"));
    }
    if src.len() > MAX_EXPRESSION_LEN {
        return Err(lexer::SyntaxError::new(
            MAX_EXPRESSION_LEN,
            format!("the expression is longer than {MAX_EXPRESSION_LEN} bytes"),
        ));
    }
    let tokens = lexer::lex(src)?;
    parser::parse(&tokens)
}

/// The character offset of byte offset `at` (rounded down to a character boundary).
fn char_offset(src: &str, at: usize) -> usize {
    src.char_indices().take_while(|(i, _)| *i < at).count()
}

impl Expr {
    /// Evaluates against `ctx`, an object with (some of) the keys `static`, `profile`,
    /// `inputs` and `runtime`.
    pub fn eval(&self, ctx: &Value) -> Result<Value, EvalError> {
        eval::Evaluator::new(ctx, &self.source)
            .eval(&self.tree, 0)
            .map(std::borrow::Cow::into_owned)
    }

    /// Evaluates against `ctx` and takes the result's truthiness, as Python does: `false`,
    /// `null`, zero, and empty strings, lists and objects are false; everything else is true.
    pub fn eval_bool(&self, ctx: &Value) -> Result<bool, EvalError> {
        eval::Evaluator::new(ctx, &self.source)
            .eval(&self.tree, 0)
            .map(|v| ops::truthy(&v))
    }

    /// The source text this expression was compiled from.
    pub fn source(&self) -> &str {
        &self.source
    }
}
