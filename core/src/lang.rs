//! The seam where the expression language and the template language plug into validation.
//!
//! Workflow validation calls [`check_expression`] for every `when` and `set` value and
//! [`check_template`] for every templated string. Expressions are compiled by the real
//! language ([`crate::expr`]), templates parsed by the real template engine
//! ([`crate::template`]).

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

/// Checks an expression (DESIGN §5) by compiling it with [`crate::expr::compile`]: syntax,
/// names rooted at `static`, `profile`, `inputs` or `runtime`, only the known functions, and
/// the size and nesting limits.
pub fn check_expression(src: &str) -> Result<(), LangError> {
    crate::expr::compile(src).map(drop).map_err(|e| LangError {
        offset: e.offset,
        message: e.message,
    })
}

/// Checks the syntax of a template with the real template parser ([`crate::template::check`]),
/// after refusing one longer than [`MAX_TEMPLATE_LEN`].
pub fn check_template(src: &str) -> Result<(), LangError> {
    if src.len() > MAX_TEMPLATE_LEN {
        return Err(LangError {
            offset: MAX_TEMPLATE_LEN,
            message: format!("the template is longer than {MAX_TEMPLATE_LEN} bytes"),
        });
    }
    crate::template::check(src)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expressions_need_content_and_balance() {
        assert!(check_expression("runtime.n + 1").is_ok());
        assert!(check_expression("len(runtime.tags) > 0 and runtime.x in ['a', 'b']").is_ok());
        assert_eq!(check_expression("  ").map_err(|e| e.offset), Err(0));
        assert_eq!(check_expression("len(x").map_err(|e| e.offset), Err(3));
        assert_eq!(check_expression("a == 'b").map_err(|e| e.offset), Err(5));
        assert!(check_expression("a)").is_err());
    }

    #[test]
    fn expressions_are_compiled_by_the_real_language() {
        let err = check_expression("runtime.x + foo.bar").expect_err("unknown root");
        assert_eq!(err.offset, 12);
        assert!(err.message.contains("`foo`"), "{}", err.message);
        let err = check_expression("runtime.x.lower()").expect_err("method call");
        assert_eq!(err.offset, 10);
        let long = format!("runtime.n + {}", "1 + ".repeat(MAX_EXPRESSION_LEN));
        let err = check_expression(&long).expect_err("too long");
        assert_eq!(err.offset, MAX_EXPRESSION_LEN);
    }

    #[test]
    fn templates_are_parsed_by_the_real_language() {
        assert!(check_template("Hello {{ name }}, {% if x %}y{% endif %}").is_ok());
        assert!(check_template("no blocks at all").is_ok());
        let err = check_template("Hi {{ name").expect_err("unclosed");
        assert_eq!(err.offset, 3);
        assert!(check_template("{% if x }").is_err());
        assert!(check_template("{% if x %}never ends").is_err());
        assert!(check_template("{{ 1 + }}").is_err());
        let long = "x".repeat(MAX_TEMPLATE_LEN + 1);
        assert_eq!(
            check_template(&long).map_err(|e| e.offset),
            Err(MAX_TEMPLATE_LEN)
        );
    }
}
