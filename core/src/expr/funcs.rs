//! The functions an expression may call on a value: `len`, `any`, `all`, `lower`, `upper`.
//! (`exists` works on a path rather than a value, so the evaluator handles it.)

use serde_json::Value;

use super::ast::Func;
use super::meter::Meter;
use super::ops::{fail, truthy, type_name};
use super::{EvalError, MAX_STRING_BYTES};

/// Applies `func` to `arg`.
pub(super) fn call(func: Func, arg: &Value, meter: &mut Meter) -> Result<Value, EvalError> {
    match func {
        Func::Len => len(arg, meter),
        Func::Any | Func::All => {
            let Value::Array(items) = arg else {
                return fail(format!(
                    "{}() needs a list, not {}",
                    func.name(),
                    type_name(arg)
                ));
            };
            meter.charge(items.len())?;
            Ok(Value::Bool(if func == Func::Any {
                items.iter().any(truthy)
            } else {
                items.iter().all(truthy)
            }))
        }
        Func::Lower | Func::Upper => {
            let Value::String(s) = arg else {
                return fail(format!(
                    "{}() needs a string, not {}",
                    func.name(),
                    type_name(arg)
                ));
            };
            meter.charge_bytes(s.len())?;
            let out = if func == Func::Lower {
                s.to_lowercase()
            } else {
                s.to_uppercase()
            };
            if out.len() > MAX_STRING_BYTES {
                return fail(format!(
                    "{}() would build a string longer than {MAX_STRING_BYTES} bytes",
                    func.name()
                ));
            }
            Ok(Value::String(out))
        }
        Func::Exists => fail("exists() takes a name path, not a value"),
    }
}

/// Characters of a string, items of a list, keys of an object.
fn len(arg: &Value, meter: &mut Meter) -> Result<Value, EvalError> {
    let n = match arg {
        Value::String(s) => {
            meter.charge_bytes(s.len())?;
            s.chars().count()
        }
        Value::Array(items) => items.len(),
        Value::Object(map) => map.len(),
        _ => {
            return fail(format!(
                "len() needs a string, a list or an object, not {}",
                type_name(arg)
            ));
        }
    };
    Ok(Value::from(n))
}
