//! The operators on JSON values: arithmetic (checked), comparison (deep equality, ordering of
//! numbers and strings), membership, truthiness. Every function either returns a value or an
//! [`EvalError`] saying which types did not fit; none panics, none recurses.

use std::borrow::Cow;
use std::cmp::Ordering;

use serde_json::Value;

use super::ast::{Arith, Compare};
use super::meter::Meter;
use super::{EvalError, MAX_STRING_BYTES};

/// A value during evaluation: borrowed from the context or the tree when possible.
pub(super) type Val<'a> = Cow<'a, Value>;

/// An evaluation error with `message`.
pub(super) fn fail<T>(message: impl Into<String>) -> Result<T, EvalError> {
    Err(EvalError {
        message: message.into(),
    })
}

/// The kind of a value, with an article, for messages ("a string", "null").
pub(super) fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Python's truthiness: false, null, zero and empty containers are false.
pub(super) fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => !items.is_empty(),
        Value::Object(map) => !map.is_empty(),
    }
}

/// Takes ownership of a value, paying for the copy when it is borrowed.
pub(super) fn own(v: Val<'_>, meter: &mut Meter) -> Result<Value, EvalError> {
    match v {
        Cow::Borrowed(b) => {
            meter.charge_copy(b)?;
            Ok(b.clone())
        }
        Cow::Owned(o) => Ok(o),
    }
}

/// A JSON number as integer or float. Integers beyond `i64` become (approximate) floats.
#[derive(Debug, Clone, Copy)]
enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    fn of(v: &Value) -> Option<Num> {
        let Value::Number(n) = v else { return None };
        n.as_i64()
            .map(Num::Int)
            .or_else(|| n.as_f64().map(Num::Float))
    }

    fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }
}

/// A float as a JSON value; infinities (overflow) are errors, since JSON cannot hold them.
fn float_value(f: f64) -> Result<Value, EvalError> {
    match serde_json::Number::from_f64(f) {
        Some(n) => Ok(Value::Number(n)),
        None => fail("the result is too large for a number"),
    }
}

/// `a op b` for the arithmetic operators.
pub(super) fn arith(
    op: Arith,
    a: Val<'_>,
    b: Val<'_>,
    meter: &mut Meter,
) -> Result<Value, EvalError> {
    if let (Some(x), Some(y)) = (Num::of(&a), Num::of(&b)) {
        return numeric(op, x, y);
    }
    match (op, &*a, &*b) {
        (Arith::Add, Value::String(x), Value::String(y)) => {
            let len = x.len().saturating_add(y.len());
            if len > MAX_STRING_BYTES {
                return fail(format!(
                    "the string built by + would be longer than {MAX_STRING_BYTES} bytes"
                ));
            }
            meter.charge_bytes(len)?;
            let mut out = String::with_capacity(len);
            out.push_str(x);
            out.push_str(y);
            Ok(Value::String(out))
        }
        (Arith::Add, Value::Array(_), Value::Array(_)) => {
            let (Value::Array(mut items), Value::Array(more)) = (own(a, meter)?, own(b, meter)?)
            else {
                return fail("cannot add these lists");
            };
            meter.charge(more.len())?;
            items.extend(more);
            Ok(Value::Array(items))
        }
        (_, x, y) => fail(format!("cannot {op} {} and {}", type_name(x), type_name(y))),
    }
}

fn numeric(op: Arith, x: Num, y: Num) -> Result<Value, EvalError> {
    let (Num::Int(a), Num::Int(b)) = (x, y) else {
        return float_arith(op, x.as_f64(), y.as_f64());
    };
    let result = match op {
        Arith::Add => a.checked_add(b),
        Arith::Sub => a.checked_sub(b),
        Arith::Mul => a.checked_mul(b),
        Arith::Div => return float_arith(op, a as f64, b as f64),
        Arith::Mod if b == 0 => return fail("modulo by zero"),
        Arith::Mod if b == -1 => Some(0),
        Arith::Mod => a.checked_rem(b).map(|r| {
            // Python's sign: the remainder follows the divisor.
            if r != 0 && (r < 0) != (b < 0) {
                r + b
            } else {
                r
            }
        }),
    };
    match result {
        Some(n) => Ok(Value::from(n)),
        None => fail(format!(
            "integer overflow: {a} {} {b} does not fit in 64 bits",
            op.symbol()
        )),
    }
}

fn float_arith(op: Arith, a: f64, b: f64) -> Result<Value, EvalError> {
    let result = match op {
        Arith::Add => a + b,
        Arith::Sub => a - b,
        Arith::Mul => a * b,
        Arith::Div if b == 0.0 => return fail("division by zero"),
        Arith::Div => a / b,
        Arith::Mod if b == 0.0 => return fail("modulo by zero"),
        Arith::Mod => {
            let r = a % b;
            if r != 0.0 && (r < 0.0) != (b < 0.0) {
                r + b
            } else {
                r
            }
        }
    };
    float_value(result)
}

/// `-v`
pub(super) fn negate(v: &Value) -> Result<Value, EvalError> {
    match Num::of(v) {
        Some(Num::Int(i)) => match i.checked_neg() {
            Some(n) => Ok(Value::from(n)),
            None => fail(format!("integer overflow: -({i}) does not fit in 64 bits")),
        },
        Some(Num::Float(f)) => float_value(-f),
        None => fail(format!("cannot negate {}", type_name(v))),
    }
}

/// `+v`: numbers only.
pub(super) fn plus(v: &Value) -> Result<Value, EvalError> {
    match v {
        Value::Number(_) => Ok(v.clone()),
        _ => fail(format!("unary + needs a number, not {}", type_name(v))),
    }
}

/// `a op b` for the comparison operators.
pub(super) fn compare(
    op: Compare,
    a: &Value,
    b: &Value,
    meter: &mut Meter,
) -> Result<bool, EvalError> {
    let ordering = match op {
        Compare::Eq => return equal(a, b, meter),
        Compare::Ne => return equal(a, b, meter).map(|eq| !eq),
        Compare::In => return contains(b, a, meter),
        Compare::NotIn => return contains(b, a, meter).map(|found| !found),
        Compare::Lt | Compare::Le | Compare::Gt | Compare::Ge => order(a, b, meter)?,
    };
    let Some(ord) = ordering else {
        return fail(format!(
            "cannot compare {} and {} with {op}",
            type_name(a),
            type_name(b)
        ));
    };
    Ok(match op {
        Compare::Lt => ord.is_lt(),
        Compare::Le => ord.is_le(),
        Compare::Gt => ord.is_gt(),
        _ => ord.is_ge(),
    })
}

/// The order of two numbers or two strings; `None` for anything else.
fn order(a: &Value, b: &Value, meter: &mut Meter) -> Result<Option<Ordering>, EvalError> {
    if let (Some(x), Some(y)) = (Num::of(a), Num::of(b)) {
        return Ok(Some(compare_numbers(x, y)));
    }
    if let (Value::String(x), Value::String(y)) = (a, b) {
        meter.charge_bytes(x.len().min(y.len()))?;
        return Ok(Some(x.cmp(y)));
    }
    Ok(None)
}

/// Exact comparison, even between a large integer and a float.
fn compare_numbers(x: Num, y: Num) -> Ordering {
    match (x, y) {
        (Num::Int(a), Num::Int(b)) => a.cmp(&b),
        (Num::Float(a), Num::Float(b)) => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
        (Num::Int(a), Num::Float(b)) => compare_int_float(a, b),
        (Num::Float(a), Num::Int(b)) => compare_int_float(b, a).reverse(),
    }
}

fn compare_int_float(i: i64, f: f64) -> Ordering {
    const LIMIT: f64 = 9_223_372_036_854_775_808.0; // 2^63
    if f.is_nan() {
        return Ordering::Equal;
    }
    if f >= LIMIT {
        return Ordering::Less;
    }
    if f < -LIMIT {
        return Ordering::Greater;
    }
    let whole = f.trunc();
    // In range, so the conversion is exact.
    match i.cmp(&(whole as i64)) {
        Ordering::Equal => 0.0_f64.partial_cmp(&(f - whole)).unwrap_or(Ordering::Equal),
        other => other,
    }
}

/// Deep equality (`1 == 1.0`; objects regardless of key order), walked with an explicit
/// stack so deeply nested data cannot exhaust the call stack.
pub(super) fn equal(a: &Value, b: &Value, meter: &mut Meter) -> Result<bool, EvalError> {
    let mut stack = vec![(a, b)];
    while let Some((x, y)) = stack.pop() {
        meter.charge(1)?;
        let same = match (x, y) {
            (Value::Null, Value::Null) => true,
            (Value::Bool(p), Value::Bool(q)) => p == q,
            (Value::Number(_), Value::Number(_)) => match (Num::of(x), Num::of(y)) {
                (Some(p), Some(q)) => compare_numbers(p, q).is_eq(),
                _ => false,
            },
            (Value::String(p), Value::String(q)) => {
                meter.charge_bytes(p.len().min(q.len()))?;
                p == q
            }
            (Value::Array(p), Value::Array(q)) if p.len() == q.len() => {
                meter.charge(p.len())?;
                stack.extend(p.iter().zip(q));
                true
            }
            (Value::Object(p), Value::Object(q)) if p.len() == q.len() => {
                meter.charge(p.len())?;
                for (key, value) in p {
                    let Some(other) = q.get(key) else {
                        return Ok(false);
                    };
                    stack.push((value, other));
                }
                true
            }
            _ => false,
        };
        if !same {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `item in container`: an element of a list, a substring of a string, a key of an object.
fn contains(container: &Value, item: &Value, meter: &mut Meter) -> Result<bool, EvalError> {
    match (container, item) {
        (Value::Array(items), _) => {
            for candidate in items {
                if equal(candidate, item, meter)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        (Value::String(s), Value::String(part)) => {
            meter.charge_bytes(s.len())?;
            Ok(s.contains(part.as_str()))
        }
        (Value::Object(map), Value::String(key)) => Ok(map.contains_key(key)),
        (Value::String(_), _) => fail(format!(
            "`in` a string needs a string on the left, not {}",
            type_name(item)
        )),
        (Value::Object(_), _) => fail(format!(
            "`in` an object needs a string key on the left, not {}",
            type_name(item)
        )),
        _ => fail(format!(
            "`in` needs a list, a string or an object on the right, not {}",
            type_name(container)
        )),
    }
}
