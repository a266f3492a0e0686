//! Reading the context: paths, missing names, functions, and the shipped workflows' conditions.

use serde_json::json;

use super::{compile, eval, eval_err};

#[test]
fn paths() {
    let cases = [
        ("static.env", json!("production")),
        ("profile.tier", json!("pro")),
        ("inputs.topic", json!("Rust")),
        ("runtime.obj.nested.deep", json!(true)),
        ("runtime['obj']['k']", json!(1)),
        ("runtime['my-key']", json!("dashed")),
        ("runtime.items[1].name", json!("y")),
        ("runtime.tags[0]", json!("a")),
        ("runtime.tags[-1]", json!("c")),
        ("runtime.tags[-3]", json!("a")),
        ("runtime.tags[runtime.n - 4]", json!("b")),
        ("runtime.s[1]", json!("e")),
        ("runtime.s[-1]", json!("o")),
        ("'héllo'[1]", json!("é")),
        ("[10, 20][1]", json!(20)),
        ("([1, 2] + [3])[2]", json!(3)),
        ("(runtime.obj).nested", json!({"deep": true})),
        ("runtime.nil", json!(null)),
        ("static", json!({"env": "production", "n": 3})),
    ];
    for (src, want) in cases {
        assert_eq!(eval(src), want, "{src}");
    }
}

#[test]
fn missing_names_are_errors_naming_the_path() {
    let cases = [
        ("runtime.topic", "runtime.topic is not set"),
        (
            "runtime.obj.nested.nope",
            "runtime.obj.nested.nope is not set",
        ),
        ("runtime.nope.deeper", "runtime.nope is not set"),
        (
            "runtime['nope']",
            "runtime['nope'] is not set (no key \"nope\" in runtime)",
        ),
        (
            "runtime.tags[3]",
            "runtime.tags[3] is not set (index 3 is out of range: runtime.tags has 3 items)",
        ),
        (
            "runtime.tags[-4]",
            "runtime.tags[-4] is not set (index -4 is out of range",
        ),
        ("runtime.s[5]", "runtime.s[5] is not set"),
        (
            "runtime.n.x",
            "runtime.n.x cannot be read: runtime.n is a number, not an object",
        ),
        ("runtime.nil.x", "runtime.nil is null"),
        (
            "runtime.tags['a']",
            "its index must be an integer, not a string",
        ),
        ("runtime.tags[1.5]", "list index 1.5 is not an integer"),
        ("runtime.obj[1]", "its keys are strings, not a number"),
        ("runtime.n[0]", "runtime.n is a number, which has no items"),
        ("[1, 2][2]", "[1, 2][2] is not set"),
        ("not runtime.nope", "runtime.nope is not set"),
        ("len(runtime.nope)", "runtime.nope is not set"),
    ];
    for (src, needle) in cases {
        let e = eval_err(src);
        assert!(e.message.contains(needle), "`{src}`: {e}");
    }
}

#[test]
fn missing_roots_and_odd_contexts() {
    let expr = compile("runtime.n").expect("compiles");
    for ctx in [
        json!({}),
        json!(null),
        json!(5),
        json!([1]),
        json!({"runtime": null}),
    ] {
        let e = expr.eval(&ctx).expect_err("nothing to read");
        assert!(e.message.starts_with("runtime"), "{e}");
    }
    let e = expr.eval(&json!({})).expect_err("no runtime");
    assert_eq!(e.message, "runtime is not set");
    let exists = compile("exists(runtime.n)").expect("compiles");
    assert_eq!(exists.eval(&json!({})), Ok(json!(false)));
}

#[test]
fn functions() {
    let cases = [
        ("len('héllo')", json!(5)),
        ("len('')", json!(0)),
        ("len(runtime.tags)", json!(3)),
        ("len(runtime.obj)", json!(2)),
        ("any([0, '', 1])", json!(true)),
        ("any([])", json!(false)),
        ("all([])", json!(true)),
        ("all([1, 'x', [0]])", json!(true)),
        ("all([1, 0])", json!(false)),
        ("lower('HeLLo É')", json!("hello é")),
        ("upper(runtime.s)", json!("HELLO")),
        ("upper('straße')", json!("STRASSE")),
        ("exists(runtime.n)", json!(true)),
        ("exists(runtime.nil)", json!(true)),
        ("exists(runtime)", json!(true)),
        ("exists(runtime.nope)", json!(false)),
        ("exists(runtime.nope.deeper)", json!(false)),
        ("exists(runtime.tags[5])", json!(false)),
        ("exists(runtime.tags[-1])", json!(true)),
        ("exists(runtime.n.x)", json!(false)),
        ("exists(runtime.tags['x'])", json!(false)),
        ("exists(runtime.items[0].name)", json!(true)),
        (
            "not exists(runtime.topic) or runtime.topic == ''",
            json!(true),
        ),
    ];
    for (src, want) in cases {
        assert_eq!(eval(src), want, "{src}");
    }
    for (src, needle) in [
        (
            "len(5)",
            "len() needs a string, a list or an object, not a number",
        ),
        ("len(null)", "not null"),
        ("any('abc')", "any() needs a list, not a string"),
        ("all(runtime.obj)", "all() needs a list, not an object"),
        ("lower(1)", "lower() needs a string, not a number"),
        ("upper(runtime.tags)", "upper() needs a string, not a list"),
        // The path's own steps may be missing; its index expressions must evaluate.
        (
            "exists(runtime.tags[runtime.nope])",
            "runtime.nope is not set",
        ),
    ] {
        let e = eval_err(src);
        assert!(e.message.contains(needle), "`{src}`: {e}");
    }
}

#[test]
fn examples_from_the_shipped_workflows() {
    let ctx = json!({
        "static": {"env": "production"},
        "profile": {},
        "inputs": {},
        "runtime": {
            "n": 1, "words": 2500, "customer_tier": "pro",
            "triage": {"category": "billing", "urgency": 4, "labels": ["refund"]},
        },
    });
    let check = |src: &str, want| {
        let expr = compile(src).expect("compiles");
        assert_eq!(expr.eval(&ctx), Ok(want), "{src}");
    };
    check("runtime.n + 1", json!(2));
    check("runtime.words > 2000", json!(true));
    check("runtime.triage.category == 'abuse'", json!(false));
    check(
        "runtime.triage.urgency >= 4 and runtime.customer_tier in ['pro', 'enterprise']",
        json!(true),
    );
    check(
        "len(runtime.triage.labels) > 0 and static.env == 'production'",
        json!(true),
    );
}
