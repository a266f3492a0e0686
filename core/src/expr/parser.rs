//! Tokens → syntax tree, by recursive descent with Python's precedence. This is where names
//! are checked (only the four roots, only the six functions, no method calls) and where the
//! nesting and size limits hold: every recursion passes a depth that is checked first, so no
//! input can exhaust the stack. The operator levels live here, atoms and suffixes in `atom`.

mod atom;

use super::ast::{Arith, Compare, Kind, Node, Span, Unary};
use super::lexer::{SyntaxError, Tok, Token};
use super::{MAX_DEPTH, MAX_NODES};

/// Parses a whole token stream (ending with [`Tok::End`]) into one expression.
pub(super) fn parse(tokens: &[Token]) -> Result<Node, SyntaxError> {
    let mut parser = Parser {
        tokens,
        pos: 0,
        nodes: 0,
    };
    let node = parser.expr(0)?;
    let next = parser.peek();
    if next.tok != Tok::End {
        return Err(SyntaxError::new(
            next.start,
            format!(
                "expected an operator or the end, found {}",
                describe(&next.tok)
            ),
        ));
    }
    Ok(node)
}

/// Returned by [`Parser::peek`] past the end; never reached, since the lexer ends with `End`.
static END: Token = Token {
    tok: Tok::End,
    start: 0,
    end: 0,
};

struct Parser<'t> {
    tokens: &'t [Token],
    pos: usize,
    /// Nodes built so far, against [`MAX_NODES`].
    nodes: usize,
}

impl<'t> Parser<'t> {
    fn peek(&self) -> &'t Token {
        self.peek_at(0)
    }

    fn peek_at(&self, ahead: usize) -> &'t Token {
        let tokens = self.tokens;
        tokens
            .get(self.pos + ahead)
            .or(tokens.last())
            .unwrap_or(&END)
    }

    fn bump(&mut self) -> &'t Token {
        let token = self.peek();
        if self.pos < self.tokens.len() {
            self.pos += 1;
        }
        token
    }

    fn at_keyword(&self, word: &str) -> bool {
        matches!(&self.peek().tok, Tok::Ident(name) if name == word)
    }

    fn expect(&mut self, want: &Tok, what: &str) -> Result<&'t Token, SyntaxError> {
        let token = self.peek();
        if &token.tok == want {
            Ok(self.bump())
        } else {
            Err(SyntaxError::new(
                token.start,
                format!("expected {what}, found {}", describe(&token.tok)),
            ))
        }
    }

    /// Refuses to go deeper than [`MAX_DEPTH`]; called before every recursion that nests.
    fn guard(&self, depth: usize, at: usize) -> Result<(), SyntaxError> {
        if depth > MAX_DEPTH {
            Err(SyntaxError::new(
                at,
                format!("the expression is nested more than {MAX_DEPTH} levels deep"),
            ))
        } else {
            Ok(())
        }
    }

    /// Builds a node, counting it against [`MAX_NODES`].
    fn node(&mut self, kind: Kind, start: usize, end: usize) -> Result<Node, SyntaxError> {
        self.nodes += 1;
        if self.nodes > MAX_NODES {
            return Err(SyntaxError::new(
                start,
                format!("the expression has more than {MAX_NODES} parts"),
            ));
        }
        Ok(Node {
            kind,
            span: Span { start, end },
        })
    }

    fn expr(&mut self, depth: usize) -> Result<Node, SyntaxError> {
        let mut left = self.and_expr(depth)?;
        while self.at_keyword("or") {
            self.bump();
            let right = self.and_expr(depth)?;
            let (start, end) = (left.span.start, right.span.end);
            left = self.node(Kind::Or(Box::new(left), Box::new(right)), start, end)?;
        }
        Ok(left)
    }

    fn and_expr(&mut self, depth: usize) -> Result<Node, SyntaxError> {
        let mut left = self.not_expr(depth)?;
        while self.at_keyword("and") {
            self.bump();
            let right = self.not_expr(depth)?;
            let (start, end) = (left.span.start, right.span.end);
            left = self.node(Kind::And(Box::new(left), Box::new(right)), start, end)?;
        }
        Ok(left)
    }

    fn not_expr(&mut self, depth: usize) -> Result<Node, SyntaxError> {
        if !self.at_keyword("not") {
            return self.comparison(depth);
        }
        let start = self.bump().start;
        self.guard(depth + 1, start)?;
        let operand = self.not_expr(depth + 1)?;
        let end = operand.span.end;
        self.node(Kind::Unary(Unary::Not, Box::new(operand)), start, end)
    }

    fn comparison(&mut self, depth: usize) -> Result<Node, SyntaxError> {
        let first = self.sum(depth)?;
        let mut rest = Vec::new();
        while let Some(op) = self.comparison_op() {
            let right = self.sum(depth)?;
            rest.push((op, right));
        }
        let Some(end) = rest.last().map(|(_, n)| n.span.end) else {
            return Ok(first);
        };
        let start = first.span.start;
        self.node(Kind::Compare(Box::new(first), rest), start, end)
    }

    /// Consumes a comparison operator, if one is next.
    fn comparison_op(&mut self) -> Option<Compare> {
        let op = match &self.peek().tok {
            Tok::Eq => Compare::Eq,
            Tok::Ne => Compare::Ne,
            Tok::Lt => Compare::Lt,
            Tok::Le => Compare::Le,
            Tok::Gt => Compare::Gt,
            Tok::Ge => Compare::Ge,
            Tok::Ident(w) if w == "in" => Compare::In,
            Tok::Ident(w) if w == "not" => match &self.peek_at(1).tok {
                Tok::Ident(w) if w == "in" => {
                    self.bump();
                    Compare::NotIn
                }
                _ => return None,
            },
            _ => return None,
        };
        self.bump();
        Some(op)
    }

    fn sum(&mut self, depth: usize) -> Result<Node, SyntaxError> {
        let mut left = self.term(depth)?;
        loop {
            let op = match self.peek().tok {
                Tok::Plus => Arith::Add,
                Tok::Minus => Arith::Sub,
                _ => return Ok(left),
            };
            self.bump();
            let right = self.term(depth)?;
            let (start, end) = (left.span.start, right.span.end);
            left = self.node(Kind::Arith(op, Box::new(left), Box::new(right)), start, end)?;
        }
    }

    fn term(&mut self, depth: usize) -> Result<Node, SyntaxError> {
        let mut left = self.factor(depth)?;
        loop {
            let op = match self.peek().tok {
                Tok::Star => Arith::Mul,
                Tok::Slash => Arith::Div,
                Tok::Percent => Arith::Mod,
                _ => return Ok(left),
            };
            self.bump();
            let right = self.factor(depth)?;
            let (start, end) = (left.span.start, right.span.end);
            left = self.node(Kind::Arith(op, Box::new(left), Box::new(right)), start, end)?;
        }
    }

    fn factor(&mut self, depth: usize) -> Result<Node, SyntaxError> {
        let op = match self.peek().tok {
            Tok::Minus => Unary::Neg,
            Tok::Plus => Unary::Pos,
            _ => return self.postfix(depth),
        };
        let start = self.bump().start;
        self.guard(depth + 1, start)?;
        let operand = self.factor(depth + 1)?;
        let end = operand.span.end;
        self.node(Kind::Unary(op, Box::new(operand)), start, end)
    }
}

/// A token, for a person.
fn describe(tok: &Tok) -> String {
    let text = match tok {
        Tok::Int(i) => return format!("the number {i}"),
        Tok::Float(f) => return format!("the number {f}"),
        Tok::Str(_) => return "a string".into(),
        Tok::Ident(name) => return format!("`{name}`"),
        Tok::End => return "the end of the expression".into(),
        Tok::LParen => "(",
        Tok::RParen => ")",
        Tok::LBracket => "[",
        Tok::RBracket => "]",
        Tok::Comma => ",",
        Tok::Dot => ".",
        Tok::Plus => "+",
        Tok::Minus => "-",
        Tok::Star => "*",
        Tok::Slash => "/",
        Tok::Percent => "%",
        Tok::Eq => "==",
        Tok::Ne => "!=",
        Tok::Lt => "<",
        Tok::Le => "<=",
        Tok::Gt => ">",
        Tok::Ge => ">=",
    };
    format!("`{text}`")
}
