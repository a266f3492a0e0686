//! Evaluation stays cheap and safe whatever the context holds: large lists and strings cost
//! their size against the budget, deep values never recurse unboundedly.

use serde_json::{Value, json};

use crate::expr::{COST_BUDGET, EvalError, MAX_STRING_BYTES, compile};

fn run(src: &str, runtime: Value) -> Result<Value, EvalError> {
    compile(src)
        .expect("compiles")
        .eval(&json!({ "runtime": runtime }))
}

fn too_costly(result: Result<Value, EvalError>) -> bool {
    result.is_err_and(|e| e.message.contains("too costly"))
}

#[test]
fn big_lists_cost_their_size() {
    let big: Vec<i64> = (0..60_000).collect();
    let rt = json!({ "big": big });
    assert_eq!(run("len(runtime.big)", rt.clone()), Ok(json!(60_000)));
    assert_eq!(run("runtime.big[-1]", rt.clone()), Ok(json!(59_999)));
    assert_eq!(run("-1 in runtime.big", rt.clone()), Ok(json!(false)));
    assert!(too_costly(run("runtime.big + runtime.big", rt.clone())));
    assert!(too_costly(run("runtime.big == runtime.big", rt.clone())));
    assert!(too_costly(run("[runtime.big, runtime.big]", rt.clone())));
    assert!(too_costly(run(
        "-1 in runtime.big or -1 in runtime.big",
        rt
    )));
    let e = run(
        "[runtime.big, runtime.big]",
        json!({ "big": (0..COST_BUDGET).collect::<Vec<_>>() }),
    )
    .expect_err("too costly");
    assert_eq!(
        e.message,
        "the expression is too costly to evaluate (more than 100000 units of work)"
    );
}

#[test]
fn built_strings_are_bounded() {
    let s = "x".repeat(MAX_STRING_BYTES / 2 + 1);
    let rt = json!({ "s": s });
    let e = run("runtime.s + runtime.s", rt.clone()).expect_err("too long");
    assert!(e.message.contains("longer than 1048576 bytes"), "{e}");
    assert_eq!(
        run("len(runtime.s + 'y')", rt.clone()),
        Ok(json!(MAX_STRING_BYTES / 2 + 2))
    );
    assert_eq!(
        run("len(upper(runtime.s))", rt),
        Ok(json!(MAX_STRING_BYTES / 2 + 1))
    );
    // 'ß' (2 bytes) upper-cases to 'SS' (2 bytes) but 'ŉ' (2 bytes) to 'ʼN' (3 bytes).
    let grows = "ŉ".repeat(MAX_STRING_BYTES / 2 - 1);
    let e = run("upper(runtime.s)", json!({ "s": grows })).expect_err("grows too long");
    assert!(
        e.message.contains("upper() would build a string longer"),
        "{e}"
    );
}

#[test]
fn the_worst_expression_over_a_small_context_is_cheap() {
    // Nothing loops or repeats, so the most 256 nodes can do is copy what they name: here a
    // list 80 times. The cost grows with the data, and is capped.
    let src = format!("len({})", vec!["runtime.l"; 80].join(" + "));
    let l: Vec<i64> = (0..1000).collect();
    assert!(too_costly(run(&src, json!({ "l": l }))));
    let l: Vec<i64> = (0..100).collect();
    assert_eq!(run(&src, json!({ "l": l })), Ok(json!(8_000)));
}

/// A list nested `depth` levels deep around `leaf`.
fn nested(depth: usize, leaf: Value) -> Value {
    let mut v = leaf;
    for _ in 0..depth {
        v = Value::Array(vec![v]);
    }
    v
}

/// Takes a deep value apart level by level, so dropping it does not recurse.
fn dismantle(mut v: Value) {
    while let Value::Array(mut items) = v {
        v = items.pop().unwrap_or(Value::Null);
    }
}

#[test]
fn deep_context_values_do_not_recurse() {
    let depth = 20_000;
    // Built by hand: `json!` would serialize the values, recursively.
    let mut rt = serde_json::Map::new();
    rt.insert("a".into(), nested(depth, json!(1)));
    rt.insert("b".into(), nested(depth, json!(1.0)));
    let mut ctx = serde_json::Map::new();
    ctx.insert("runtime".into(), Value::Object(rt));
    let ctx = Value::Object(ctx);
    let eval = |src: &str| compile(src).expect("compiles").eval(&ctx);
    assert_eq!(eval("runtime.a == runtime.b"), Ok(json!(true)));
    assert_eq!(eval("runtime.a != runtime.b"), Ok(json!(false)));
    assert_eq!(eval("runtime.b[0] == runtime.a"), Ok(json!(false)));
    assert_eq!(eval("runtime.a in runtime.b"), Ok(json!(false)));
    assert_eq!(eval("len(runtime.a)"), Ok(json!(1)));
    assert_eq!(
        eval("runtime.a[0][0][0][0] == runtime.b[0][0][0][0]"),
        Ok(json!(true))
    );
    let e = eval("[runtime.a]").expect_err("too deep to copy");
    assert!(e.message.contains("nested more than 128 levels"), "{e}");
    let e = eval("runtime.a + []").expect_err("too deep to copy");
    assert!(e.message.contains("nested more than 128 levels"), "{e}");
    let Value::Object(mut ctx) = ctx else { return };
    if let Some(Value::Object(mut rt)) = ctx.remove("runtime") {
        for key in ["a", "b"] {
            if let Some(v) = rt.remove(key) {
                dismantle(v);
            }
        }
    }
}

#[test]
fn wide_and_long_expressions_evaluate() {
    // 64 paths of 2 nodes and 63 additions: 191 nodes.
    let sum = vec!["runtime.n"; 64].join(" + ");
    assert_eq!(run(&sum, json!({ "n": 2 })), Ok(json!(128)));
    // 50 comparisons of 4 nodes and 49 `and`s: 249 nodes.
    let chain = format!("{} > 0", vec!["runtime.n"; 50].join(" > 0 and "));
    assert_eq!(run(&chain, json!({ "n": 2 })), Ok(json!(true)));
    let nested = format!("{}runtime.n{}", "(".repeat(32), ")".repeat(32));
    assert_eq!(run(&nested, json!({ "n": 2 })), Ok(json!(2)));
    let negs = format!("{}runtime.n", "-".repeat(32));
    assert_eq!(run(&negs, json!({ "n": 2 })), Ok(json!(2)));
}
