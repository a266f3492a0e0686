//! What operators evaluate to, and how they fail.

use serde_json::json;

use super::{eval, eval_err, truth};

#[test]
fn literals() {
    assert_eq!(eval("42"), json!(42));
    assert_eq!(eval("1.5"), json!(1.5));
    assert_eq!(eval("1e3"), json!(1000.0));
    assert_eq!(eval("'it\\'s'"), json!("it's"));
    assert_eq!(eval(r#""say \"hi\"\n\t\\""#), json!("say \"hi\"\n\t\\"));
    assert_eq!(
        eval("[true, False, null, None, True]"),
        json!([true, false, null, null, true])
    );
    assert_eq!(eval("[1, [2, 'x'],]"), json!([1, [2, "x"]]));
    assert_eq!(eval("[]"), json!([]));
}

#[test]
fn arithmetic() {
    let cases = [
        ("1 + 2", json!(3)),
        ("7 - 10", json!(-3)),
        ("6 * 7", json!(42)),
        ("7 / 2", json!(3.5)),
        ("4 / 2", json!(2.0)),
        ("7 % 3", json!(1)),
        ("-7 % 3", json!(2)),
        ("7 % -3", json!(-2)),
        ("-9223372036854775807 % -1", json!(0)),
        ("-7.5 % 2", json!(0.5)),
        ("7.5 % -2", json!(-0.5)),
        ("1.5 + 1", json!(2.5)),
        ("runtime.n * runtime.f", json!(12.5)),
        ("-runtime.n", json!(-5)),
        ("+runtime.f", json!(2.5)),
        ("- - 3", json!(3)),
        ("'ab' + \"cd\"", json!("abcd")),
        ("[1] + [2, 3]", json!([1, 2, 3])),
        ("runtime.tags + ['d']", json!(["a", "b", "c", "d"])),
        ("runtime.empty + runtime.empty", json!([])),
    ];
    for (src, want) in cases {
        assert_eq!(eval(src), want, "{src}");
    }
}

#[test]
fn precedence_follows_python() {
    let cases = [
        ("2 + 3 * 4", json!(14)),
        ("(2 + 3) * 4", json!(20)),
        ("10 - 2 - 3", json!(5)),
        ("100 / 10 / 5", json!(2.0)),
        ("-2 * 3", json!(-6)),
        ("2 * -3 + 1", json!(-5)),
        ("7 % 4 * 2", json!(6)),
        ("1 + 2 == 3", json!(true)),
        ("not 1 == 2", json!(true)),
        ("not runtime.flag and true", json!(false)),
        ("true or false and false", json!(true)),
        ("(true or false) and false", json!(false)),
        ("1 < 2 == true", json!(false)),
        ("'a' in 'abc' and 2 > 1", json!(true)),
        ("not 'z' in 'abc'", json!(true)),
        ("runtime.n - 1 in [4]", json!(true)),
    ];
    for (src, want) in cases {
        assert_eq!(eval(src), want, "{src}");
    }
}

#[test]
fn arithmetic_errors() {
    let cases = [
        ("'a' + 1", "cannot add a string and a number"),
        ("runtime.s - 'x'", "cannot subtract a string and a string"),
        ("runtime.tags * 2", "cannot multiply a list and a number"),
        ("true + 1", "cannot add a boolean and a number"),
        ("null + null", "cannot add null and null"),
        ("1 / 0", "division by zero"),
        ("1.0 / 0.0", "division by zero"),
        ("1 % 0", "modulo by zero"),
        ("runtime.f % 0.0", "modulo by zero"),
        ("9223372036854775807 + 1", "integer overflow"),
        ("-9223372036854775807 - 2", "integer overflow"),
        ("4611686018427387904 * 2", "integer overflow"),
        ("1e308 * 10", "too large"),
        ("-'a'", "cannot negate a string"),
        ("+runtime.tags", "unary + needs a number"),
    ];
    for (src, needle) in cases {
        let e = eval_err(src);
        assert!(e.message.contains(needle), "`{src}`: {e}");
    }
    let e = eval_err("runtime.s + 1");
    assert_eq!(
        e.message,
        "cannot add a string and a number (in `runtime.s + 1`)"
    );
}

#[test]
fn comparisons() {
    let cases = [
        ("1 == 1.0", true),
        ("1 != 1.0", false),
        ("0.1 + 0.2 == 0.3", false),
        ("'a' == 'a'", true),
        ("[1, [2]] == [1.0, [2]]", true),
        ("[1, 2] == [2, 1]", false),
        ("[1] == [1, 1]", false),
        ("runtime.obj == runtime.obj", true),
        ("runtime.obj == runtime.obj.nested", false),
        ("null == None", true),
        ("true == 1", false),
        ("'1' == 1", false),
        ("1 < 2", true),
        ("2 <= 2.0", true),
        ("2.5 > 2", true),
        ("9007199254740993 > 9007199254740992.0", true),
        ("3 >= 4", false),
        ("'apple' < 'banana'", true),
        ("'b' > 'abc'", true),
        ("'' <= ''", true),
    ];
    for (src, want) in cases {
        assert_eq!(eval(src), json!(want), "{src}");
    }
    for src in [
        "1 < 'a'",
        "null < 1",
        "[1] < [2]",
        "true > false",
        "runtime.obj >= 1",
    ] {
        assert!(eval_err(src).message.contains("cannot compare"), "{src}");
    }
    assert_eq!(
        eval_err("runtime.s < 1").message,
        "cannot compare a string and a number with < (in `runtime.s < 1`)"
    );
}

#[test]
fn comparisons_chain_like_python() {
    assert_eq!(eval("1 < runtime.n < 10"), json!(true));
    assert_eq!(eval("1 < runtime.n < 3"), json!(false));
    assert_eq!(eval("3 > 2 > 1"), json!(true));
    assert_eq!(eval("1 < 2 > 0"), json!(true));
    assert_eq!(eval("1 == 1 == 1.0"), json!(true));
    // Stops at the first false link, as Python does.
    assert_eq!(eval("2 < 1 < runtime.nope"), json!(false));
    assert!(
        eval_err("1 < 2 < runtime.nope")
            .message
            .contains("runtime.nope")
    );
}

#[test]
fn membership() {
    let cases = [
        ("'b' in runtime.tags", true),
        ("'z' in runtime.tags", false),
        ("'z' not in runtime.tags", true),
        ("1.0 in [1, 2]", true),
        ("[1] in [[1], 2]", true),
        ("'ell' in runtime.s", true),
        ("'' in runtime.s", true),
        ("'k' in runtime.obj", true),
        ("'deep' in runtime.obj", false),
        ("profile.tier in ['pro', 'enterprise']", true),
        ("1 in []", false),
    ];
    for (src, want) in cases {
        assert_eq!(eval(src), json!(want), "{src}");
    }
    for (src, needle) in [
        ("1 in 'abc'", "`in` a string needs a string on the left"),
        ("1 in runtime.obj", "`in` an object needs a string key"),
        ("1 in 5", "`in` needs a list, a string or an object"),
        ("1 not in null", "`in` needs a list"),
    ] {
        let e = eval_err(src);
        assert!(e.message.contains(needle), "`{src}`: {e}");
    }
}

#[test]
fn logic_short_circuits_and_returns_operands() {
    let cases = [
        ("true and 5", json!(5)),
        ("0 and runtime.nope", json!(0)),
        ("'' or 'x'", json!("x")),
        ("'a' or runtime.nope", json!("a")),
        ("runtime.empty or runtime.tags", json!(["a", "b", "c"])),
        ("null or 0", json!(0)),
        ("not 0", json!(true)),
        ("not runtime.tags", json!(false)),
        ("not not 3", json!(true)),
        ("not runtime.nil", json!(true)),
    ];
    for (src, want) in cases {
        assert_eq!(eval(src), want, "{src}");
    }
    assert!(
        eval_err("1 and runtime.nope")
            .message
            .contains("runtime.nope")
    );
}

#[test]
fn truthiness() {
    for src in [
        "0",
        "0.0",
        "''",
        "[]",
        "null",
        "false",
        "runtime.empty",
        "runtime.nil",
    ] {
        assert!(!truth(src), "{src} should be false");
    }
    for src in [
        "1",
        "-0.5",
        "' '",
        "[0]",
        "true",
        "runtime.obj",
        "runtime.tags",
        "static",
    ] {
        assert!(truth(src), "{src} should be true");
    }
    assert!(truth("runtime.n > 2 and 'b' in runtime.tags"));
}
