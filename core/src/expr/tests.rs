//! Tests of the expression language: what compiles and what does not (with offsets), what
//! evaluates to what, the limits, and property tests that nothing panics.

mod compile;
mod data;
mod eval;
mod limits;
mod props;

use serde_json::{Value, json};

use super::{EvalError, ExprError, compile};

/// A context exercising every root and kind of value.
fn ctx() -> Value {
    json!({
        "static": {"env": "production", "n": 3},
        "profile": {"name": "Ada", "tier": "pro"},
        "inputs": {"topic": "Rust"},
        "runtime": {
            "n": 5,
            "f": 2.5,
            "s": "Hello",
            "tags": ["a", "b", "c"],
            "empty": [],
            "obj": {"k": 1, "nested": {"deep": true}},
            "zero": 0,
            "nil": null,
            "flag": true,
            "items": [{"name": "x"}, {"name": "y"}],
            "my-key": "dashed",
        },
    })
}

/// Evaluates `src` over [`ctx`], failing the test on any error.
fn eval(src: &str) -> Value {
    let expr = compile(src).unwrap_or_else(|e| panic!("`{src}` does not compile: {e}"));
    expr.eval(&ctx())
        .unwrap_or_else(|e| panic!("`{src}` does not evaluate: {e}"))
}

/// The truthiness of `src` over [`ctx`].
fn truth(src: &str) -> bool {
    let expr = compile(src).unwrap_or_else(|e| panic!("`{src}` does not compile: {e}"));
    expr.eval_bool(&ctx())
        .unwrap_or_else(|e| panic!("`{src}` does not evaluate: {e}"))
}

/// The evaluation error of `src` over [`ctx`], which must compile.
fn eval_err(src: &str) -> EvalError {
    let expr = compile(src).unwrap_or_else(|e| panic!("`{src}` does not compile: {e}"));
    match expr.eval(&ctx()) {
        Ok(v) => panic!("`{src}` evaluated to {v} instead of failing"),
        Err(e) => e,
    }
}

/// The compile error of `src`.
fn compile_err(src: &str) -> ExprError {
    match compile(src) {
        Ok(e) => panic!("`{src}` compiled to {e:?} instead of failing"),
        Err(e) => e,
    }
}
