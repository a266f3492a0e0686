//! Property tests: compiling never panics on any text; generated valid expressions always
//! compile and evaluate (to a value or an error) within the budget; evaluation never panics
//! on any context; arithmetic and comparisons agree with exact arithmetic.

use proptest::collection::{btree_map, vec};
use proptest::prelude::*;
use proptest::sample::{Index, select};
use serde_json::{Value, json};

use super::ctx;
use crate::expr::{Expr, compile, ops::truthy};

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// Paths that resolve (or deliberately do not) in [`ctx`] and in generated contexts.
const PATHS: &[&str] = &[
    "runtime.n",
    "runtime.f",
    "runtime.s",
    "runtime.tags",
    "runtime.tags[0]",
    "runtime.tags[-1]",
    "runtime.obj",
    "runtime.obj.k",
    "runtime.obj['nested'].deep",
    "runtime.items[1].name",
    "runtime.missing",
    "static.env",
    "profile.tier",
    "inputs.topic",
    "runtime",
];

const BINARY: &[&str] = &[
    "+", "-", "*", "/", "%", "==", "!=", "<", "<=", ">", ">=", "in", "not in", "and", "or",
];
const COMPARE: &[&str] = &["==", "!=", "<", "<=", ">", ">=", "in", "not in"];
const UNARY: &[&str] = &["-", "+", "not "];
const FUNCS: &[&str] = &["len", "any", "all", "lower", "upper"];

/// Keys generated contexts use, mostly the ones [`PATHS`] name.
const KEYS: &[&str] = &[
    "n", "f", "s", "tags", "obj", "k", "nested", "deep", "items", "name", "env", "tier", "topic",
];

/// A string literal for `s`, escaped.
fn quote(s: &str) -> String {
    let escaped = s
        .replace('\\', "\\\\")
        .replace('\'', "\\'")
        .replace('\n', "\\n");
    format!("'{escaped}'")
}

fn leaf() -> impl Strategy<Value = String> {
    prop_oneof![
        (-1000_i64..1000).prop_map(|i| i.to_string()),
        (i64::MIN + 1..=i64::MAX).prop_map(|i| format!("({i})")),
        (-1e6_f64..1e6).prop_map(|f| format!("({f:?})")),
        "[a-zA-Z0-9 éß_'\"\\\\\n]{0,8}".prop_map(|s| quote(&s)),
        select(&["true", "false", "null", "True", "False", "None", "[]"][..])
            .prop_map(String::from),
        select(PATHS).prop_map(String::from),
        select(PATHS).prop_map(|p| format!("exists({p})")),
    ]
}

/// Valid expressions of every shape, fully parenthesised, within the nesting and size limits.
fn expression() -> impl Strategy<Value = String> {
    leaf().prop_recursive(4, 24, 3, |inner| {
        prop_oneof![
            (inner.clone(), select(BINARY), inner.clone())
                .prop_map(|(a, op, b)| format!("({a} {op} {b})")),
            (select(UNARY), inner.clone()).prop_map(|(op, a)| format!("({op}{a})")),
            (
                inner.clone(),
                select(COMPARE),
                inner.clone(),
                select(COMPARE),
                inner.clone()
            )
                .prop_map(|(a, p, b, q, c)| format!("({a} {p} {b} {q} {c})")),
            vec(inner.clone(), 0..3).prop_map(|items| format!("[{}]", items.join(", "))),
            (select(FUNCS), inner.clone()).prop_map(|(f, a)| format!("{f}({a})")),
            (inner.clone(), inner).prop_map(|(a, i)| format!("({a})[{i}]")),
        ]
    })
}

/// Any text, leaning towards text that looks like expressions and deep nesting.
fn text() -> impl Strategy<Value = String> {
    let pieces = select(
        &[
            "(",
            ")",
            "[",
            "]",
            "-",
            "+",
            "not ",
            "len(",
            "exists(",
            "runtime.a",
            ".",
            "'",
            "\"",
            "\\",
            "1",
            "1.5e3",
            ",",
            " and ",
            " in ",
            "==",
            "é",
            "__import__",
        ][..],
    );
    let nest = select(&["(", "[", "-", "not ", "len(", "runtime[", "+"][..]);
    // Valid expressions with a piece inserted, or cut short: text close to valid.
    let mutated = (expression(), any::<Index>(), pieces.clone(), any::<bool>()).prop_map(
        |(src, at, piece, cut)| {
            let chars: Vec<char> = src.chars().collect();
            let at = at.index(chars.len() + 1);
            let (head, tail) = chars.split_at(at);
            let head: String = head.iter().collect();
            let tail: String = if cut {
                String::new()
            } else {
                tail.iter().collect()
            };
            format!("{head}{piece}{tail}")
        },
    );
    prop_oneof![
        any::<String>(),
        "[ -~]{0,64}",
        mutated,
        vec(pieces, 0..200).prop_map(|p| p.concat()),
        (nest, 0_usize..3000, any::<bool>()).prop_map(|(open, n, close)| {
            let closer = match open {
                "(" | "len(" => ")",
                "[" | "runtime[" => "]",
                _ => "",
            };
            let tail = if close {
                closer.repeat(n)
            } else {
                String::new()
            };
            format!("{}1{tail}", open.repeat(n))
        }),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[a-zA-Zé ]{0,6}".prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        let key = prop_oneof![select(KEYS).prop_map(String::from), "[a-z]{1,3}"];
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            btree_map(key, inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Contexts of any shape, mostly objects with the four roots.
fn context() -> impl Strategy<Value = Value> {
    prop_oneof![
        1 => json_value(),
        4 => (json_value(), json_value(), json_value(), json_value()).prop_map(|(s, p, i, r)| {
            json!({"static": s, "profile": p, "inputs": i, "runtime": r})
        }),
    ]
}

/// Evaluates both ways; the two must agree.
fn check_eval(expr: &Expr, ctx: &Value) -> Result<(), TestCaseError> {
    let value = expr.eval(ctx);
    let truth = expr.eval_bool(ctx);
    match (&value, &truth) {
        (Ok(v), Ok(b)) => prop_assert_eq!(truthy(v), *b),
        (Err(e), Err(f)) => {
            prop_assert_eq!(e, f);
            prop_assert!(!e.message.is_empty());
        }
        _ => prop_assert!(false, "eval {value:?} and eval_bool {truth:?} disagree"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(1000))]

    #[test]
    fn compile_never_panics(src in text()) {
        match compile(&src) {
            Ok(expr) => check_eval(&expr, &ctx())?,
            Err(e) => {
                prop_assert!(e.offset <= src.chars().count(), "offset {} past the end", e.offset);
                prop_assert!(!e.message.is_empty());
            }
        }
    }

    #[test]
    fn integer_arithmetic_is_exact_or_an_error(
        a in i64::MIN + 1..=i64::MAX,
        b in prop_oneof![i64::MIN + 1..=i64::MAX, -3_i64..3],
        op in select(&["+", "-", "*", "%", "/"][..]),
    ) {
        let result = compile(&format!("({a}) {op} ({b})")).expect("compiles").eval(&json!({}));
        let (x, y) = (i128::from(a), i128::from(b));
        let exact = match op {
            "+" => Some(x + y),
            "-" => Some(x - y),
            "*" => Some(x * y),
            "%" if b != 0 => Some(((x % y) + y) % y),
            _ => None,
        };
        match (op, exact) {
            ("/", _) if b == 0 => prop_assert!(result.is_err()),
            ("/", _) => prop_assert_eq!(result, Ok(json!(a as f64 / b as f64))),
            (_, None) => prop_assert!(result.is_err_and(|e| e.message.contains("by zero"))),
            (_, Some(n)) => match i64::try_from(n) {
                Ok(n) => prop_assert_eq!(result, Ok(json!(n))),
                Err(_) => prop_assert!(result.is_err_and(|e| e.message.contains("overflow"))),
            },
        }
    }

    #[test]
    fn mixed_comparisons_are_exact(
        a in -(1_i64 << 53)..(1_i64 << 53),
        f in prop_oneof![any::<f64>().prop_filter("finite", |f| f.is_finite()), (-100_i64..100).prop_map(|i| i as f64)],
        op in select(COMPARE[..6].to_vec()),
    ) {
        let result = compile(&format!("({a}) {op} ({f:?})")).expect("compiles").eval(&json!({}));
        let x = a as f64; // exact below 2^53
        let want = match op {
            "==" => x == f,
            "!=" => x != f,
            "<" => x < f,
            "<=" => x <= f,
            ">" => x > f,
            _ => x >= f,
        };
        prop_assert_eq!(result, Ok(json!(want)));
    }
}

proptest! {
    #![proptest_config(config(500))]

    #[test]
    fn generated_expressions_compile_and_evaluate(src in expression()) {
        let expr = compile(&src).map_err(|e| TestCaseError::fail(format!("`{src}`: {e}")))?;
        prop_assert_eq!(expr.source(), src.as_str());
        check_eval(&expr, &ctx())?;
        check_eval(&expr, &json!({}))?;
    }

    #[test]
    fn evaluation_never_panics_on_any_context(src in expression(), ctx in context()) {
        let expr = compile(&src).map_err(|e| TestCaseError::fail(format!("`{src}`: {e}")))?;
        check_eval(&expr, &ctx)?;
    }

    #[test]
    fn every_value_equals_itself(v in json_value()) {
        let ctx = json!({"runtime": {"v": v}});
        for src in ["runtime.v == runtime.v", "runtime.v in [runtime.v]", "not runtime.v != runtime.v"] {
            let expr = compile(src).expect("compiles");
            prop_assert_eq!(expr.eval(&ctx), Ok(json!(true)), "{}", src);
        }
        let expr = compile("exists(runtime.v)").expect("compiles");
        prop_assert_eq!(expr.eval(&ctx), Ok(json!(true)));
    }
}
