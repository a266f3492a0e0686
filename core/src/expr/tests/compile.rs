//! What compiles, and where and why what does not.

use super::{compile, compile_err};
use crate::expr::{Expr, MAX_DEPTH, MAX_EXPRESSION_LEN, MAX_NODES};

#[test]
fn expr_is_shareable_and_keeps_its_source() {
    fn shareable<T: Clone + Send + Sync + std::fmt::Debug>() {}
    shareable::<Expr>();
    let expr = compile(" runtime.n + 1 ").expect("compiles");
    assert_eq!(expr.source(), " runtime.n + 1 ");
}

#[test]
fn valid_expressions_compile() {
    for src in [
        "1",
        "-1.5e3",
        "1E-2 + 2.5e+1",
        "'single' + \"double\"",
        "'esc\\n\\t\\r\\0\\\\\\'\\\"'",
        "true or false or null or True or False or None",
        "[]",
        "[1, [2, 3], 'x',]",
        "runtime.n",
        "static.env == 'production'",
        "profile.tier in ['pro', 'enterprise']",
        "inputs.topic not in runtime.tags",
        "runtime['my-key']",
        "runtime.items[0].name",
        "runtime.tags[-1]",
        "len(runtime.tags) > 0 and all(runtime.tags) or any([])",
        "lower(runtime.s) == upper(runtime.s)",
        "exists(runtime.a.b[0]['c'])",
        "exists((runtime.a))",
        "1 < runtime.n < 3",
        "not not runtime.flag",
        "- - + 1",
        "len(runtime.tags,)",
        "[1, 2][0]",
        "'abc'[1]",
        "runtime.in",
        "(runtime.obj).k",
        "runtime.größe",
    ] {
        if let Err(e) = compile(src) {
            panic!("`{src}` should compile: {e}");
        }
    }
}

#[test]
fn code_injection_is_refused_at_the_offending_name() {
    let e = compile_err("__import__('os').system('rm -rf /')");
    assert_eq!(e.offset, 0);
    assert!(e.message.contains("unknown function `__import__`"), "{e}");
    assert!(
        e.message.contains("len, any, all, lower, upper, exists"),
        "{e}"
    );

    let e = compile_err("runtime.x.lower()");
    assert_eq!(e.offset, 10, "{e}");
    assert!(e.message.contains("method"), "{e}");

    let e = compile_err("runtime.a.__class__.__mro__[1].__subclasses__()");
    assert_eq!(e.offset, 31, "{e}");

    let e = compile_err("(runtime.f)(1)");
    assert_eq!(e.offset, 11, "{e}");
    assert!(e.message.contains("only the functions"), "{e}");

    let e = compile_err("runtime.tags[0](1)");
    assert_eq!(e.offset, 15, "{e}");

    let e = compile_err("eval('1')");
    assert_eq!(e.offset, 0);
    assert!(e.message.contains("`eval`"), "{e}");
}

#[test]
fn names_must_start_at_a_root() {
    let e = compile_err("foo.bar");
    assert_eq!(e.offset, 0);
    assert!(e.message.contains("unknown name `foo`"), "{e}");
    assert!(
        e.message.contains("static, profile, inputs, runtime"),
        "{e}"
    );

    let e = compile_err("runtime.n + os");
    assert_eq!(e.offset, 12);
    assert!(e.message.contains("`os`"), "{e}");

    let e = compile_err("secrets.key");
    assert!(e.message.contains("`secrets`"), "{e}");

    let e = compile_err("len");
    assert!(e.message.contains("`len` is a function"), "{e}");

    let e = compile_err("runtime.n if true else 1");
    assert_eq!(e.offset, 10);
    assert!(e.message.contains("`if`"), "{e}");
}

#[test]
fn calls_are_checked() {
    let e = compile_err("len(1, 2)");
    assert_eq!(e.offset, 0);
    assert!(e.message.contains("exactly one argument"), "{e}");
    assert!(
        compile_err("upper()")
            .message
            .contains("exactly one argument")
    );

    let e = compile_err("exists(runtime.a + 1)");
    assert_eq!(e.offset, 7);
    assert!(e.message.contains("name path"), "{e}");
    assert_eq!(compile_err("exists('runtime.a')").offset, 7);
    assert_eq!(compile_err("exists([1][0])").offset, 7);
}

#[test]
fn attributes_only_on_data() {
    let e = compile_err("'abc'.upper");
    assert_eq!(e.offset, 5);
    assert!(e.message.contains("only be read from data"), "{e}");
    assert_eq!(compile_err("[1].x").offset, 3);
    assert_eq!(compile_err("1.x").offset, 1);

    let e = compile_err("runtime.items.0");
    assert_eq!(e.offset, 14);
    assert!(e.message.contains("[0]"), "{e}");
    assert_eq!(compile_err("runtime.").offset, 8);
}

#[test]
fn lexical_errors_point_at_the_token() {
    let cases = [
        ("runtime.a = 1", 10, "=="),
        ("runtime.a ** 2", 10, "power"),
        ("runtime.a // 2", 10, "floor division"),
        ("!runtime.a", 0, "not"),
        ("runtime.a && runtime.b", 10, "and"),
        ("runtime.a || runtime.b", 10, "or"),
        ("runtime.a $ 1", 10, "unexpected character"),
        ("'abc", 0, "never closed"),
        ("runtime.n + \"abc", 12, "never closed"),
        ("'a\\qb'", 2, "unknown escape"),
        ("'a\\", 0, "never closed"),
        ("1e", 0, "malformed"),
        ("1e+", 0, "malformed"),
        ("12abc", 0, "malformed"),
        ("99999999999999999999", 0, "too large"),
        ("1e999", 0, "too large"),
    ];
    for (src, offset, needle) in cases {
        let e = compile_err(src);
        assert_eq!(e.offset, offset, "`{src}`: {e}");
        assert!(e.message.contains(needle), "`{src}`: {e}");
    }
}

#[test]
fn parse_errors_point_at_the_token() {
    let cases = [
        ("", 0, "empty"),
        ("  \n ", 0, "empty"),
        ("len(x", 3, "never closed"),
        ("runtime.a)", 9, "nothing to close"),
        ("(runtime.a]", 10, "unbalanced"),
        ("[1 2]", 3, "`,` or `]`"),
        ("runtime.a runtime.b", 10, "expected an operator"),
        ("1 +", 3, "expected a value, found the end"),
        ("1 + not 2", 4, "`not`"),
        ("runtime.a not runtime.b", 10, "expected an operator"),
        ("()", 1, "expected a value"),
        ("and", 0, "`and`"),
        ("runtime[]", 8, "expected a value"),
    ];
    for (src, offset, needle) in cases {
        let e = compile_err(src);
        assert_eq!(e.offset, offset, "`{src}`: {e}");
        assert!(e.message.contains(needle), "`{src}`: {e}");
    }
}

#[test]
fn offsets_count_characters_not_bytes() {
    let e = compile_err("'é' + föö");
    assert_eq!(e.offset, 6, "{e}");
    assert!(e.message.contains("`föö`"), "{e}");
    assert_eq!(e.to_string(), format!("at character 7: {}", e.message));
}

#[test]
fn nesting_is_bounded() {
    for (open, close) in [
        ("(", ")"),
        ("[", "]"),
        ("-", ""),
        ("not ", ""),
        ("len(", ")"),
    ] {
        let ok = format!("{}1{}", open.repeat(MAX_DEPTH), close.repeat(MAX_DEPTH));
        assert!(compile(&ok).is_ok(), "{open} × {MAX_DEPTH}");
        let deep = format!(
            "{}1{}",
            open.repeat(MAX_DEPTH + 1),
            close.repeat(MAX_DEPTH + 1)
        );
        let e = compile_err(&deep);
        assert!(e.message.contains("nested more than 32"), "{open}: {e}");
        assert_eq!(e.offset, MAX_DEPTH * open.chars().count(), "{open}");
    }
    let e = compile_err(&format!("runtime{}", "[0".repeat(40) + &"]".repeat(40)));
    assert!(e.message.contains("nested"), "{e}");
}

#[test]
fn size_is_bounded() {
    // 128 literals and 127 additions: 255 nodes.
    assert!(compile(&vec!["1"; 128].join("+")).is_ok());
    let e = compile_err(&vec!["1"; 129].join("+"));
    assert!(
        e.message.contains(&format!("more than {MAX_NODES} parts")),
        "{e}"
    );
    // A list and 255 items: 256 nodes.
    assert!(compile(&format!("[{}]", vec!["1"; 255].join(","))).is_ok());
    assert!(compile(&format!("[{}]", vec!["1"; 256].join(","))).is_err());

    let long = format!("'{}'", "a".repeat(MAX_EXPRESSION_LEN));
    let e = compile_err(&long);
    assert_eq!(e.offset, MAX_EXPRESSION_LEN);
    assert!(e.message.contains("longer than 4096 bytes"), "{e}");
    assert!(compile(&format!("'{}'", "a".repeat(MAX_EXPRESSION_LEN - 2))).is_ok());
}
