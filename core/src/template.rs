//! Prompt templates: minijinja with strict undefined (a missing variable is an error naming it),
//! no auto-escaping (prompts are plain text, not HTML) and no loaders (a template cannot reach
//! files or other templates).
//!
//! [`check`] parses only, for validation when a template or workflow is saved; [`render`] fills
//! a template in from JSON data, when a step runs. Recursion is bounded, and so is work: a render
//! gets [`FUEL`] instructions (minijinja's `fuel` feature), so runaway loops fail cleanly.

use minijinja::syntax::SyntaxConfig;
use minijinja::value::Serde;
use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior};

use crate::lang::LangError;

/// How deeply templates may nest blocks and calls while rendering.
const RECURSION_LIMIT: usize = 64;

/// Why a template could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    /// 1-based line of the template where the problem is, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for TemplateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for TemplateError {}

/// The one environment configuration every template is parsed and rendered with.
/// Instructions one rendering may execute.
pub const FUEL: u64 = 200_000;

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    // A prompt's last newline is part of the prompt.
    if let Ok(syntax) = SyntaxConfig::builder().keep_trailing_newline(true).build() {
        env.set_syntax(syntax);
    }
    env.set_recursion_limit(RECURSION_LIMIT);
    // Bounded work: a template looping over `range(100000)` twice runs out of fuel instead of
    // holding a worker.
    env.set_fuel(Some(FUEL));
    // Spans (byte ranges) on errors, so problems can be located inside the template.
    env.set_debug(true);
    env
}

/// Renders `src` with the JSON object `ctx` as its variables.
pub fn render(src: &str, ctx: &serde_json::Value) -> Result<String, TemplateError> {
    let env = environment();
    let template = env
        .template_from_str(src)
        .map_err(|e| template_error(src, &e))?;
    template
        .render(minijinja::Value::from(Serde(ctx)))
        .map_err(|e| template_error(src, &e))
}

/// Checks the syntax of `src` (nothing is rendered); the error's offset is in characters.
pub fn check(src: &str) -> Result<(), LangError> {
    let env = environment();
    let Err(e) = env.template_from_str(src) else {
        return Ok(());
    };
    let offset = byte_offset(src, &e);
    let located = LangError {
        offset: src[..offset].chars().count(),
        message: describe(src, &e),
    };
    // A delimiter or a block tag opened and never closed is best shown where it opens, not at
    // the end of the text where the parser noticed.
    let unclosed = unclosed_delimiter(src).or_else(|| {
        let at_end = e
            .detail()
            .is_some_and(|d| d.contains("unexpected end of input"));
        at_end.then(|| unclosed_tag(src)).flatten()
    });
    Err(match unclosed {
        Some(unclosed) if unclosed.offset <= located.offset => unclosed,
        _ => located,
    })
}

/// A minijinja error as a [`TemplateError`].
fn template_error(src: &str, e: &minijinja::Error) -> TemplateError {
    TemplateError {
        line: e.line(),
        message: describe(src, e),
    }
}

/// The message for an error: its kind and detail; an undefined variable is named (minijinja's
/// own detail names it; failing that, the expression's source text does).
fn describe(src: &str, e: &minijinja::Error) -> String {
    match (e.kind(), e.detail()) {
        (ErrorKind::UndefinedError, Some(detail)) if detail.contains('`') => detail.to_string(),
        (ErrorKind::UndefinedError, _) => match e.range().and_then(|r| src.get(r)).map(str::trim) {
            Some(expr) if !expr.is_empty() => format!("`{expr}` is undefined"),
            _ => "a variable is undefined".to_string(),
        },
        (kind, Some(detail)) => format!("{kind}: {detail}"),
        (kind, None) => kind.to_string(),
    }
}

/// The byte offset of an error: the start of its span, else the start of its line, else 0.
fn byte_offset(src: &str, e: &minijinja::Error) -> usize {
    if let Some(range) = e.range() {
        return floor_char_boundary(src, range.start.min(src.len()));
    }
    match e.line() {
        Some(line) if line > 1 => src
            .match_indices('\n')
            .nth(line - 2)
            .map_or(src.len(), |(i, _)| i + 1),
        _ => 0,
    }
}

fn floor_char_boundary(src: &str, mut i: usize) -> usize {
    while !src.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Every `{{ … }}` / `{% … %}` of `src` in order: its byte offset, its opener and its inside;
/// stops at (and yields with `None` inside) the first one never closed.
fn delimited(src: &str) -> impl Iterator<Item = (usize, &'static str, Option<&str>)> + '_ {
    let mut pos = 0;
    std::iter::from_fn(move || {
        let rest = &src[pos..];
        let open = rest.find("{{").into_iter().chain(rest.find("{%")).min()?;
        let (opener, closer) = if rest[open..].starts_with("{{") {
            ("{{", "}}")
        } else {
            ("{%", "%}")
        };
        let start = pos + open;
        let after = &src[start + 2..];
        match after.find(closer) {
            Some(close) => {
                pos = start + 2 + close + 2;
                Some((start, opener, Some(&after[..close])))
            }
            None => {
                pos = src.len();
                Some((start, opener, None))
            }
        }
    })
}

/// The first `{{` or `{%` with no closing delimiter after it, if any.
fn unclosed_delimiter(src: &str) -> Option<LangError> {
    let (start, opener, _) = delimited(src).find(|(_, _, inside)| inside.is_none())?;
    let closer = if opener == "{{" { "}}" } else { "%}" };
    Some(LangError {
        offset: src[..start].chars().count(),
        message: format!("`{opener}` is never closed by `{closer}`"),
    })
}

/// Tags that open a block closed by `end<tag>`.
const BLOCK_TAGS: &[&str] = &[
    "if",
    "for",
    "with",
    "macro",
    "call",
    "filter",
    "autoescape",
    "block",
    "raw",
    "set",
];

/// The innermost block tag (`{% if %}`, `{% for %}`, …) left open at the end of `src`.
fn unclosed_tag(src: &str) -> Option<LangError> {
    let mut open: Vec<(usize, &str)> = Vec::new();
    for (start, opener, inside) in delimited(src) {
        let Some(inside) = inside.filter(|_| opener == "{%") else {
            continue;
        };
        let inside = inside.trim_start_matches(['-', '+', '~']).trim_start();
        let name = inside
            .split(|c: char| !(c.is_alphanumeric() || c == '_'))
            .next()
            .unwrap_or("");
        if open.last().is_some_and(|(_, n)| *n == "raw") && name != "endraw" {
            continue;
        }
        if let Some(ended) = name.strip_prefix("end") {
            if open.last().is_some_and(|(_, n)| *n == ended) {
                open.pop();
            }
        } else if BLOCK_TAGS.contains(&name) && !(name == "set" && inside.contains('=')) {
            open.push((start, name));
        }
    }
    let (start, name) = open.pop()?;
    Some(LangError {
        offset: src[..start].chars().count(),
        message: format!("`{{% {name} %}}` is never closed by `{{% end{name} %}}`"),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn runaway_loops_run_out_of_fuel() {
        let err = render(
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
            &json!({}),
        )
        .expect_err("bounded");
        assert!(err.message.contains("fuel"), "{}", err.message);
    }

    #[test]
    fn renders_nested_context_data() {
        let ctx = json!({
            "runtime": {"topic": "Rust", "meta": {"words": 1200}},
            "static": {"env": "production"},
        });
        let out = render(
            "Write about {{ runtime.topic }} in {{ runtime.meta.words }} words ({{ static.env }}).",
            &ctx,
        )
        .expect("renders");
        assert_eq!(out, "Write about Rust in 1200 words (production).");
    }

    #[test]
    fn output_is_not_html_escaped_and_keeps_its_trailing_newline() {
        let out = render("{{ x }}\n", &json!({"x": "<b>&\"'</b>"})).expect("renders");
        assert_eq!(out, "<b>&\"'</b>\n");
    }

    #[test]
    fn filters_and_loops_work() {
        assert_eq!(
            render("{{ x | upper }}", &json!({"x": "loud"})).expect("filter"),
            "LOUD"
        );
        let out = render(
            "{% for t in tags %}{{ loop.index }}. {{ t }}\n{% endfor %}",
            &json!({"tags": ["a", "b"]}),
        )
        .expect("loop");
        assert_eq!(out, "1. a\n2. b\n");
    }

    #[test]
    fn an_undefined_variable_is_an_error_naming_it() {
        let err = render("Hello\n{{ missing }}!", &json!({})).expect_err("strict");
        assert_eq!(err.line, Some(2));
        assert_eq!(err.message, "`missing` is undefined");
        let err = render("{{ runtime.nope }}", &json!({"runtime": {}})).expect_err("strict");
        assert_eq!(err.message, "`runtime.nope` is undefined");
        let err = render("{{ runtime.nope.deeper }}", &json!({"runtime": {}})).expect_err("deep");
        assert_eq!(err.message, "`runtime.nope` is undefined");
        let err = render("{% for x in items %}{% endfor %}", &json!({})).expect_err("strict");
        assert!(err.message.contains("items"), "{}", err.message);
    }

    #[test]
    fn render_reports_syntax_errors_with_their_line() {
        let err = render("ok\n{{ 1 + }}", &json!({})).expect_err("syntax");
        assert_eq!(err.line, Some(2));
        assert!(err.message.starts_with("syntax error"), "{}", err.message);
    }

    #[test]
    fn files_and_other_templates_are_out_of_reach() {
        assert!(render("{% include 'secrets.txt' %}", &json!({})).is_err());
        assert!(render("{% extends 'base.html' %}", &json!({})).is_err());
    }

    #[test]
    fn check_accepts_good_templates() {
        assert_eq!(
            check("Hello {{ name }}, {% if x %}y{% endif %}{# note #}"),
            Ok(())
        );
        assert_eq!(check("no blocks at all"), Ok(()));
        assert_eq!(check("{{ \"}}\" }} {% raw %}{{{% endraw %}"), Ok(()));
        assert_eq!(check("{{ undefined_is_fine_until_rendered }}"), Ok(()));
    }

    #[test]
    fn check_locates_an_unclosed_expression_at_its_opener() {
        let err = check("Hi {{ name").expect_err("unclosed");
        assert_eq!(err.offset, 3);
        assert_eq!(err.message, "`{{` is never closed by `}}`");
        let err = check("é {% if x }").expect_err("unclosed tag");
        assert_eq!(err.offset, 2, "characters, not bytes");
    }

    #[test]
    fn check_locates_a_missing_end_tag() {
        let err = check("{% if x %}yes").expect_err("no endif");
        assert_eq!(err.message, "`{% if %}` is never closed by `{% endif %}`");
        assert_eq!(err.offset, 0);
        let src = "{% for t in tags %}{% if t %}{{ t }}{% endif %}\n{% if y %}{% endfor %}";
        let err = check(src).expect_err("mismatched");
        assert!(err.message.starts_with("syntax error"), "{}", err.message);
        let err = check("a\n{% for t in tags %}{% if t %}{% endif %}").expect_err("no endfor");
        assert_eq!(err.offset, 2);
        assert!(err.message.contains("endfor"), "{}", err.message);
    }

    #[test]
    fn check_locates_errors_in_expressions() {
        let src = "line one\nthen {{ 1 + }} here";
        let err = check(src).expect_err("bad expression");
        assert!(err.message.starts_with("syntax error"), "{}", err.message);
        // On the second line, at or just after the `{{`.
        assert!((14..=21).contains(&err.offset), "{}", err.offset);
        let err = check("{{ a }} {% endfor %}").expect_err("stray end tag");
        assert_eq!(err.offset, 11, "{}", err.message);
    }

    #[test]
    fn an_earlier_error_wins_over_a_later_unclosed_block() {
        let err = check("{{ 1 + }} then {{ x").expect_err("two problems");
        assert!(err.offset < 9, "{}: {}", err.offset, err.message);
    }
}
