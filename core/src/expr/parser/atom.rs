//! The tightest-binding part of the grammar: literals, lists, names and calls, and the
//! attribute, index and call suffixes after them. Name and call checks live here: only the
//! four roots, only the six functions, no methods, and `exists` only on a name path.

use serde_json::Value;

use super::{Parser, describe};
use crate::expr::ast::{Func, Kind, Node, Root, Span};
use crate::expr::lexer::{SyntaxError, Tok};

impl Parser<'_> {
    /// An atom and its `.name`, `[index]` suffixes; a `(` here is a call of something that
    /// is not one of the functions, which is refused.
    pub(super) fn postfix(&mut self, depth: usize) -> Result<Node, SyntaxError> {
        let mut node = self.atom(depth)?;
        loop {
            let token = self.peek();
            match token.tok {
                Tok::Dot => node = self.attribute(node)?,
                Tok::LBracket => {
                    self.bump();
                    self.guard(depth + 1, token.start)?;
                    let index = self.expr(depth + 1)?;
                    let close = self.expect(&Tok::RBracket, "`]`")?;
                    let start = node.span.start;
                    node = self.node(
                        Kind::Index(Box::new(node), Box::new(index)),
                        start,
                        close.end,
                    )?;
                }
                Tok::LParen => {
                    return Err(SyntaxError::new(
                        token.start,
                        format!("only the functions {} can be called", functions()),
                    ));
                }
                _ => return Ok(node),
            }
        }
    }

    /// `.name` after `base` (the dot is next).
    fn attribute(&mut self, base: Node) -> Result<Node, SyntaxError> {
        let dot = self.bump();
        if matches!(base.kind, Kind::Literal(_) | Kind::List(_)) {
            return Err(SyntaxError::new(
                dot.start,
                format!("attributes can only be read from data under {}", roots()),
            ));
        }
        let token = self.bump();
        let name = match &token.tok {
            Tok::Ident(name) => name.clone(),
            Tok::Int(i) => {
                return Err(SyntaxError::new(
                    token.start,
                    format!("expected a name after `.`; index a list with [{i}]"),
                ));
            }
            other => {
                return Err(SyntaxError::new(
                    token.start,
                    format!("expected a name after `.`, found {}", describe(other)),
                ));
            }
        };
        if self.peek().tok == Tok::LParen {
            return Err(SyntaxError::new(
                token.start,
                format!(
                    "`.{name}(…)` is a method call, and there are no methods; the functions {} are called like {name}(x)",
                    functions()
                ),
            ));
        }
        let start = base.span.start;
        self.node(Kind::Attr(Box::new(base), name), start, token.end)
    }

    /// A literal, a parenthesised expression, a list, a name or a call.
    fn atom(&mut self, depth: usize) -> Result<Node, SyntaxError> {
        let token = self.bump();
        let (start, end) = (token.start, token.end);
        let kind = match &token.tok {
            Tok::Int(i) => Kind::Literal(Value::from(*i)),
            Tok::Float(f) => Kind::Literal(Value::from(*f)),
            Tok::Str(s) => Kind::Literal(Value::from(s.as_str())),
            Tok::LParen => {
                self.guard(depth + 1, start)?;
                let inner = self.expr(depth + 1)?;
                let close = self.expect(&Tok::RParen, "`)`")?;
                // The parentheses belong to the node's text, so paths quote them.
                return Ok(Node {
                    kind: inner.kind,
                    span: Span {
                        start,
                        end: close.end,
                    },
                });
            }
            Tok::LBracket => return self.list(start, depth),
            Tok::Ident(name) => return self.name(name, start, end, depth),
            other => {
                return Err(SyntaxError::new(
                    start,
                    format!("expected a value, found {}", describe(other)),
                ));
            }
        };
        self.node(kind, start, end)
    }

    /// The items of a list literal (the `[` is consumed).
    fn list(&mut self, start: usize, depth: usize) -> Result<Node, SyntaxError> {
        self.guard(depth + 1, start)?;
        let mut items = Vec::new();
        while self.peek().tok != Tok::RBracket {
            items.push(self.expr(depth + 1)?);
            if self.peek().tok != Tok::Comma {
                break;
            }
            self.bump();
        }
        let close = self.expect(&Tok::RBracket, "`,` or `]`")?;
        self.node(Kind::List(items), start, close.end)
    }

    /// A keyword literal, a root, or a function call.
    fn name(
        &mut self,
        name: &str,
        start: usize,
        end: usize,
        depth: usize,
    ) -> Result<Node, SyntaxError> {
        let kind = match name {
            "true" | "True" => Kind::Literal(Value::Bool(true)),
            "false" | "False" => Kind::Literal(Value::Bool(false)),
            "null" | "None" => Kind::Literal(Value::Null),
            "and" | "or" | "not" | "in" => {
                return Err(SyntaxError::new(
                    start,
                    format!("expected a value, found `{name}`"),
                ));
            }
            _ => {
                if let Some(root) = Root::from_name(name) {
                    Kind::Root(root)
                } else if let Some(func) = Func::from_name(name) {
                    return self.call(func, start, depth);
                } else if self.peek().tok == Tok::LParen {
                    return Err(SyntaxError::new(
                        start,
                        format!(
                            "unknown function `{name}`: the functions are {}",
                            functions()
                        ),
                    ));
                } else {
                    return Err(SyntaxError::new(
                        start,
                        format!("unknown name `{name}`: names start with {}", roots()),
                    ));
                }
            }
        };
        self.node(kind, start, end)
    }

    /// `f(arg)` (the name is consumed; `start` is where it began).
    fn call(&mut self, func: Func, start: usize, depth: usize) -> Result<Node, SyntaxError> {
        let name = func.name();
        if self.peek().tok != Tok::LParen {
            return Err(SyntaxError::new(
                start,
                format!("`{name}` is a function: call it like {name}(x)"),
            ));
        }
        self.bump();
        self.guard(depth + 1, start)?;
        let mut args = Vec::new();
        while self.peek().tok != Tok::RParen {
            args.push(self.expr(depth + 1)?);
            if self.peek().tok != Tok::Comma {
                break;
            }
            self.bump();
        }
        let close = self.expect(&Tok::RParen, "`,` or `)`")?;
        let mut args = args.into_iter();
        let (Some(arg), None) = (args.next(), args.next()) else {
            return Err(SyntaxError::new(
                start,
                format!("`{name}` takes exactly one argument"),
            ));
        };
        if func == Func::Exists && !is_path(&arg) {
            return Err(SyntaxError::new(
                arg.span.start,
                "`exists` takes a name path, such as exists(runtime.a.b)",
            ));
        }
        self.node(Kind::Call(func, Box::new(arg)), start, close.end)
    }
}

/// Whether `node` is a root followed by attribute and index accesses.
fn is_path(mut node: &Node) -> bool {
    loop {
        match &node.kind {
            Kind::Root(_) => return true,
            Kind::Attr(base, _) | Kind::Index(base, _) => node = base,
            _ => return false,
        }
    }
}

fn roots() -> String {
    let names: Vec<&str> = Root::ALL.iter().map(|r| r.name()).collect();
    names.join(", ")
}

fn functions() -> String {
    let names: Vec<&str> = Func::ALL.iter().map(|f| f.name()).collect();
    names.join(", ")
}
