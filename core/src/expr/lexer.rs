//! Source text → tokens. Each token remembers its byte span, so the parser can point at it and
//! the evaluator can quote it. Also checks that brackets balance, which gives clearer messages
//! for `len(x` than any parse error could.

/// A problem found while compiling, at a byte offset (converted to characters at the API).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SyntaxError {
    /// Byte offset of the offending token.
    pub(super) at: usize,
    /// What is wrong.
    pub(super) message: String,
}

impl SyntaxError {
    /// An error at byte offset `at`.
    pub(super) fn new(at: usize, message: impl Into<String>) -> Self {
        SyntaxError {
            at,
            message: message.into(),
        }
    }
}

/// What a token is.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Tok {
    /// An integer literal.
    Int(i64),
    /// A float literal (always finite).
    Float(f64),
    /// A string literal, escapes resolved.
    Str(String),
    /// A name or keyword; the parser tells them apart.
    Ident(String),
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `[`
    LBracket,
    /// `]`
    RBracket,
    /// `,`
    Comma,
    /// `.`
    Dot,
    /// `+`
    Plus,
    /// `-`
    Minus,
    /// `*`
    Star,
    /// `/`
    Slash,
    /// `%`
    Percent,
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
    /// The end of the source; always the last token.
    End,
}

/// A token and where it is.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Token {
    /// What it is.
    pub(super) tok: Tok,
    /// Byte offset of its first character.
    pub(super) start: usize,
    /// Byte offset just past its last character.
    pub(super) end: usize,
}

/// Splits `src` into tokens, ending with [`Tok::End`], and checks that brackets balance.
pub(super) fn lex(src: &str) -> Result<Vec<Token>, SyntaxError> {
    let mut lexer = Lexer {
        src,
        chars: src.char_indices().collect(),
        pos: 0,
    };
    let mut tokens = Vec::new();
    while let Some(token) = lexer.next_token()? {
        tokens.push(token);
    }
    tokens.push(Token {
        tok: Tok::End,
        start: src.len(),
        end: src.len(),
    });
    check_brackets(&tokens)?;
    Ok(tokens)
}

/// Walks the characters of the source.
struct Lexer<'s> {
    src: &'s str,
    chars: Vec<(usize, char)>,
    pos: usize,
}

impl Lexer<'_> {
    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.pos + ahead).map(|&(_, c)| c)
    }

    /// Byte offset of the current character (the source length at the end).
    fn offset(&self) -> usize {
        self.chars.get(self.pos).map_or(self.src.len(), |&(i, _)| i)
    }

    fn next_token(&mut self) -> Result<Option<Token>, SyntaxError> {
        while self.peek(0).is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
        let start = self.offset();
        let Some(c) = self.peek(0) else {
            return Ok(None);
        };
        let tok = match c {
            '0'..='9' => self.number(start)?,
            '\'' | '"' => self.string(start, c)?,
            c if c.is_alphabetic() || c == '_' => {
                Tok::Ident(self.take_while(|c| c.is_alphanumeric() || c == '_'))
            }
            _ => self.punctuation(start, c)?,
        };
        Ok(Some(Token {
            tok,
            start,
            end: self.offset(),
        }))
    }

    fn take_while(&mut self, keep: impl Fn(char) -> bool) -> String {
        let mut out = String::new();
        while let Some(c) = self.peek(0).filter(|&c| keep(c)) {
            out.push(c);
            self.pos += 1;
        }
        out
    }

    fn number(&mut self, start: usize) -> Result<Tok, SyntaxError> {
        let mut text = self.take_while(|c| c.is_ascii_digit());
        let mut float = false;
        if self.peek(0) == Some('.') && self.peek(1).is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
            text.push('.');
            text.push_str(&self.take_while(|c| c.is_ascii_digit()));
            float = true;
        }
        if matches!(self.peek(0), Some('e' | 'E')) {
            let sign = usize::from(matches!(self.peek(1), Some('+' | '-')));
            if !self.peek(1 + sign).is_some_and(|c| c.is_ascii_digit()) {
                return Err(SyntaxError::new(
                    start,
                    "malformed number: `e` needs digits",
                ));
            }
            text.push('e');
            if sign == 1 {
                text.extend(self.peek(1));
            }
            self.pos += 1 + sign;
            text.push_str(&self.take_while(|c| c.is_ascii_digit()));
            float = true;
        }
        if self
            .peek(0)
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            return Err(SyntaxError::new(
                start,
                "malformed number: letters follow its digits",
            ));
        }
        if float {
            match text.parse::<f64>() {
                Ok(f) if f.is_finite() => Ok(Tok::Float(f)),
                _ => Err(SyntaxError::new(
                    start,
                    format!("the number {text} is too large"),
                )),
            }
        } else {
            text.parse::<i64>().map(Tok::Int).map_err(|_| {
                SyntaxError::new(
                    start,
                    format!(
                        "the integer {text} is too large (the largest is {})",
                        i64::MAX
                    ),
                )
            })
        }
    }

    fn string(&mut self, start: usize, quote: char) -> Result<Tok, SyntaxError> {
        let unclosed = || {
            SyntaxError::new(
                start,
                format!("the string opened with {quote} is never closed"),
            )
        };
        self.pos += 1;
        let mut out = String::new();
        loop {
            let at = self.offset();
            let c = self.peek(0).ok_or_else(unclosed)?;
            self.pos += 1;
            if c == quote {
                return Ok(Tok::Str(out));
            }
            if c != '\\' {
                out.push(c);
                continue;
            }
            let escaped = self.peek(0).ok_or_else(unclosed)?;
            self.pos += 1;
            out.push(match escaped {
                'n' => '\n',
                't' => '\t',
                'r' => '\r',
                '0' => '\0',
                '\\' | '\'' | '"' => escaped,
                other => {
                    return Err(SyntaxError::new(
                        at,
                        format!(
                            "unknown escape `\\{}` (use \\n \\t \\r \\0 \\\\ \\' or \\\")",
                            other.escape_debug()
                        ),
                    ));
                }
            });
        }
    }

    fn punctuation(&mut self, start: usize, c: char) -> Result<Tok, SyntaxError> {
        let next = self.peek(1);
        let (tok, width) = match (c, next) {
            ('(', _) => (Tok::LParen, 1),
            (')', _) => (Tok::RParen, 1),
            ('[', _) => (Tok::LBracket, 1),
            (']', _) => (Tok::RBracket, 1),
            (',', _) => (Tok::Comma, 1),
            ('.', _) => (Tok::Dot, 1),
            ('+', _) => (Tok::Plus, 1),
            ('-', _) => (Tok::Minus, 1),
            ('*', Some('*')) => {
                return Err(SyntaxError::new(start, "`**` (power) is not supported"));
            }
            ('*', _) => (Tok::Star, 1),
            ('/', Some('/')) => {
                return Err(SyntaxError::new(
                    start,
                    "`//` (floor division) is not supported",
                ));
            }
            ('/', _) => (Tok::Slash, 1),
            ('%', _) => (Tok::Percent, 1),
            ('=', Some('=')) => (Tok::Eq, 2),
            ('=', _) => {
                return Err(SyntaxError::new(
                    start,
                    "`=` is not an operator: compare with `==`",
                ));
            }
            ('!', Some('=')) => (Tok::Ne, 2),
            ('!', _) => return Err(SyntaxError::new(start, "`!` is not an operator: use `not`")),
            ('<', Some('=')) => (Tok::Le, 2),
            ('<', _) => (Tok::Lt, 1),
            ('>', Some('=')) => (Tok::Ge, 2),
            ('>', _) => (Tok::Gt, 1),
            ('&', _) => return Err(SyntaxError::new(start, "`&` is not an operator: use `and`")),
            ('|', _) => return Err(SyntaxError::new(start, "`|` is not an operator: use `or`")),
            _ => {
                return Err(SyntaxError::new(
                    start,
                    format!("unexpected character `{}`", c.escape_debug()),
                ));
            }
        };
        self.pos += width;
        Ok(tok)
    }
}

/// Brackets and parentheses must pair up; reports the first stray closer or the innermost
/// opener left unclosed.
fn check_brackets(tokens: &[Token]) -> Result<(), SyntaxError> {
    let mut open: Vec<(char, usize)> = Vec::new();
    for token in tokens {
        let (closer, opener) = match token.tok {
            Tok::LParen => {
                open.push(('(', token.start));
                continue;
            }
            Tok::LBracket => {
                open.push(('[', token.start));
                continue;
            }
            Tok::RParen => (')', '('),
            Tok::RBracket => (']', '['),
            _ => continue,
        };
        match open.pop() {
            Some((o, _)) if o == opener => {}
            Some((o, _)) => {
                return Err(SyntaxError::new(
                    token.start,
                    format!("unbalanced `{closer}`: the last open bracket is `{o}`"),
                ));
            }
            None => {
                return Err(SyntaxError::new(
                    token.start,
                    format!("unbalanced `{closer}`: nothing to close"),
                ));
            }
        }
    }
    match open.pop() {
        Some((o, at)) => Err(SyntaxError::new(at, format!("`{o}` is never closed"))),
        None => Ok(()),
    }
}
