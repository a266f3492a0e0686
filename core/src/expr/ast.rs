//! The syntax tree: what the parser builds and the evaluator walks. Every node keeps the byte
//! span of its source so evaluation errors can quote the path that failed.

use std::fmt;

use serde_json::Value;

/// A byte range of the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Span {
    /// First byte.
    pub(super) start: usize,
    /// One past the last byte.
    pub(super) end: usize,
}

/// One node of the tree and where it came from.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Node {
    /// What the node computes.
    pub(super) kind: Kind,
    /// Its source text, for messages.
    pub(super) span: Span,
}

/// The kinds of node.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Kind {
    /// A constant: null, boolean, number or string.
    Literal(Value),
    /// `[a, b, …]`
    List(Vec<Node>),
    /// One of the four context roots.
    Root(Root),
    /// `base.name`
    Attr(Box<Node>, String),
    /// `base[index]`
    Index(Box<Node>, Box<Node>),
    /// `-x`, `+x`, `not x`
    Unary(Unary, Box<Node>),
    /// `a + b` and the other arithmetic operators.
    Arith(Arith, Box<Node>, Box<Node>),
    /// `a and b` (short-circuit; returns an operand).
    And(Box<Node>, Box<Node>),
    /// `a or b` (short-circuit; returns an operand).
    Or(Box<Node>, Box<Node>),
    /// `a < b <= c …`: a first operand and (operator, operand) pairs, chained as in Python.
    Compare(Box<Node>, Vec<(Compare, Node)>),
    /// `f(arg)`: every function takes exactly one argument.
    Call(Func, Box<Node>),
}

/// The roots every name starts at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Root {
    /// Constants of the workflow definition.
    Static,
    /// Who or what the run is for.
    Profile,
    /// The start request's payload.
    Inputs,
    /// Step outputs.
    Runtime,
}

impl Root {
    /// All roots, in the order messages list them.
    pub(super) const ALL: [Root; 4] = [Root::Static, Root::Profile, Root::Inputs, Root::Runtime];

    /// The root's name, as written and as keyed in the context.
    pub(super) fn name(self) -> &'static str {
        match self {
            Root::Static => "static",
            Root::Profile => "profile",
            Root::Inputs => "inputs",
            Root::Runtime => "runtime",
        }
    }

    /// The root called `name`, if any.
    pub(super) fn from_name(name: &str) -> Option<Root> {
        Root::ALL.into_iter().find(|r| r.name() == name)
    }
}

/// Prefix operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Unary {
    /// `-x`
    Neg,
    /// `+x`
    Pos,
    /// `not x`
    Not,
}

/// Arithmetic operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Arith {
    /// `+`: numbers, strings, lists.
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`: true division, always a float.
    Div,
    /// `%`: the sign of the divisor, as in Python.
    Mod,
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Compare {
    /// `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `in`
    In,
    /// `not in`
    NotIn,
}

/// The functions that may be called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Func {
    /// Characters of a string, items of a list, keys of an object.
    Len,
    /// Whether any item of a list is truthy.
    Any,
    /// Whether every item of a list is truthy.
    All,
    /// A string in lower case.
    Lower,
    /// A string in upper case.
    Upper,
    /// Whether a name path resolves.
    Exists,
}

impl Func {
    /// All functions, in the order messages list them.
    pub(super) const ALL: [Func; 6] = [
        Func::Len,
        Func::Any,
        Func::All,
        Func::Lower,
        Func::Upper,
        Func::Exists,
    ];

    /// The function's name as written.
    pub(super) fn name(self) -> &'static str {
        match self {
            Func::Len => "len",
            Func::Any => "any",
            Func::All => "all",
            Func::Lower => "lower",
            Func::Upper => "upper",
            Func::Exists => "exists",
        }
    }

    /// The function called `name`, if any.
    pub(super) fn from_name(name: &str) -> Option<Func> {
        Func::ALL.into_iter().find(|f| f.name() == name)
    }
}

impl Arith {
    /// The operator as written.
    pub(super) fn symbol(self) -> &'static str {
        match self {
            Arith::Add => "+",
            Arith::Sub => "-",
            Arith::Mul => "*",
            Arith::Div => "/",
            Arith::Mod => "%",
        }
    }
}

impl fmt::Display for Arith {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Arith::Add => "add",
            Arith::Sub => "subtract",
            Arith::Mul => "multiply",
            Arith::Div => "divide",
            Arith::Mod => "take the modulo of",
        })
    }
}

impl fmt::Display for Compare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compare::Eq => "==",
            Compare::Ne => "!=",
            Compare::Lt => "<",
            Compare::Le => "<=",
            Compare::Gt => ">",
            Compare::Ge => ">=",
            Compare::In => "in",
            Compare::NotIn => "not in",
        })
    }
}
