//! The seam where the expression language and the template language plug into validation.
//!
//! Workflow validation calls [`check_expression`] for every `when` and `set` value and
//! [`check_template`] for every templated string. Until the full languages land (the
//! expression parser with the runs issue, minijinja templates with the AI issue) these check
//! what can be checked without them: emptiness, size, and balanced delimiters. Replacing the
//! bodies of these two functions is all it takes to make validation use the real parsers.

/// Longest expression accepted, in bytes.
pub const MAX_EXPRESSION_LEN: usize = 4096;
/// Longest template accepted, in bytes.
pub const MAX_TEMPLATE_LEN: usize = 256 * 1024;

/// Why an expression or template was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LangError {
    /// Character offset of the problem within the source text.
    pub offset: usize,
    /// What is wrong.
    pub message: String,
}

/// Checks the syntax of an expression (DESIGN §5).
pub fn check_expression(src: &str) -> Result<(), LangError> {
    if src.trim().is_empty() {
        return Err(LangError {
            offset: 0,
            message: "the expression is empty".into(),
        });
    }
    if src.len() > MAX_EXPRESSION_LEN {
        return Err(LangError {
            offset: MAX_EXPRESSION_LEN,
            message: format!("the expression is longer than {MAX_EXPRESSION_LEN} bytes"),
        });
    }
    check_brackets(src)
}

/// Checks the syntax of a template (`{{ expr }}` and `{% tag %}` blocks).
pub fn check_template(src: &str) -> Result<(), LangError> {
    if src.len() > MAX_TEMPLATE_LEN {
        return Err(LangError {
            offset: MAX_TEMPLATE_LEN,
            message: format!("the template is longer than {MAX_TEMPLATE_LEN} bytes"),
        });
    }
    let mut rest = src;
    let mut consumed = 0;
    while let Some(open) = rest.find("{{").into_iter().chain(rest.find("{%")).min() {
        let close_tag = if rest[open..].starts_with("{{") {
            "}}"
        } else {
            "%}"
        };
        let after = &rest[open + 2..];
        let Some(close) = after.find(close_tag) else {
            return Err(LangError {
                offset: src[..consumed + open].chars().count(),
                message: format!(
                    "`{}` is never closed by `{close_tag}`",
                    &rest[open..open + 2]
                ),
            });
        };
        consumed += open + 2 + close + 2;
        rest = &after[close + 2..];
    }
    Ok(())
}

/// Brackets and quotes must balance.
fn check_brackets(src: &str) -> Result<(), LangError> {
    let mut stack: Vec<(char, usize)> = Vec::new();
    let mut quote: Option<(char, usize)> = None;
    for (i, c) in src.chars().enumerate() {
        if let Some((q, _)) = quote {
            if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '\'' | '"' => quote = Some((c, i)),
            '(' | '[' => stack.push((c, i)),
            ')' | ']' => {
                let want = if c == ')' { '(' } else { '[' };
                if stack.pop().map(|(o, _)| o) != Some(want) {
                    return Err(LangError {
                        offset: i,
                        message: format!("unbalanced `{c}`"),
                    });
                }
            }
            _ => {}
        }
    }
    if let Some((q, at)) = quote {
        return Err(LangError {
            offset: at,
            message: format!("the string opened with {q} is never closed"),
        });
    }
    if let Some((o, at)) = stack.pop() {
        return Err(LangError {
            offset: at,
            message: format!("`{o}` is never closed"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_need_content_and_balance() {
        assert!(check_expression("runtime.n + 1").is_ok());
        assert!(check_expression("len(runtime.tags) > 0 and x in ['a', 'b']").is_ok());
        assert_eq!(check_expression("  ").map_err(|e| e.offset), Err(0));
        assert_eq!(check_expression("len(x").map_err(|e| e.offset), Err(3));
        assert_eq!(check_expression("a == 'b").map_err(|e| e.offset), Err(5));
        assert!(check_expression("a)").is_err());
    }

    #[test]
    fn templates_need_closed_blocks() {
        assert!(check_template("Hello {{ name }}, {% if x %}y{% endif %}").is_ok());
        assert!(check_template("no blocks at all").is_ok());
        let err = check_template("Hi {{ name").expect_err("unclosed");
        assert_eq!(err.offset, 3);
        assert!(check_template("{% if x }").is_err());
    }
}
