//! Form field rules applied to values: a field's `default` is checked with them when a
//! workflow is saved, and a person's input with them when a form is submitted.

use serde_json::{Map, Value as Json};

use super::{Field, FieldType};

/// Largest compiled size of a field `pattern`, so a pathological regex cannot eat memory.
pub const PATTERN_SIZE_LIMIT: usize = 1 << 20;

/// Compiles a field pattern with the size bound.
pub fn compile_pattern(pattern: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(pattern)
        .size_limit(PATTERN_SIZE_LIMIT)
        .build()
        .map_err(|e| e.to_string())
}

/// Checks `value` against every rule of `field` and returns it normalized (an integral
/// `3.0` for an integer field becomes `3`). The error says which rule failed.
pub fn check_value(field: &Field, value: &Json) -> Result<Json, String> {
    let normalized = check_type(field.field_type, value)?;
    if let Some(allowed) = &field.allowed
        && !allowed.iter().any(|a| same_value(a, &normalized))
    {
        let list: Vec<String> = allowed.iter().map(|a| a.to_string()).collect();
        return Err(format!("must be one of {}", list.join(", ")));
    }
    if let Some(n) = normalized.as_f64() {
        if let Some(min) = field.min.filter(|m| n < *m) {
            return Err(format!("must be at least {min}"));
        }
        if let Some(max) = field.max.filter(|m| n > *m) {
            return Err(format!("must be at most {max}"));
        }
    }
    if let Some(s) = normalized.as_str() {
        let len = s.chars().count() as u64;
        if let Some(min) = field.min_length.filter(|m| len < *m) {
            return Err(format!("must be at least {min} characters long"));
        }
        if let Some(max) = field.max_length.filter(|m| len > *m) {
            return Err(format!("must be at most {max} characters long"));
        }
        if let Some(pattern) = &field.pattern {
            let re = compile_pattern(pattern)?;
            if !re.is_match(s) {
                return Err(format!("must match the pattern `{pattern}`"));
            }
        }
    }
    Ok(normalized)
}

fn check_type(ty: FieldType, value: &Json) -> Result<Json, String> {
    match (ty, value) {
        (FieldType::String, Json::String(_))
        | (FieldType::Boolean, Json::Bool(_))
        | (FieldType::Number, Json::Number(_)) => Ok(value.clone()),
        (FieldType::Integer, Json::Number(n)) => {
            if n.is_i64() || n.is_u64() {
                Ok(value.clone())
            } else {
                match n.as_f64() {
                    Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(Json::from(f as i64)),
                    _ => Err("must be a whole number".into()),
                }
            }
        }
        (FieldType::Date, Json::String(s)) => {
            if is_iso_date(s) {
                Ok(value.clone())
            } else {
                Err(
                    "must be an ISO 8601 date (2026-11-24) or date-time (2026-11-24T09:30:00Z)"
                        .into(),
                )
            }
        }
        (ty, _) => Err(format!("must be {}", type_noun(ty))),
    }
}

fn is_iso_date(s: &str) -> bool {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok()
        || chrono::DateTime::parse_from_rfc3339(s).is_ok()
}

/// Numbers compare by value (`3` equals `3.0`); everything else structurally.
fn same_value(a: &Json, b: &Json) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// "a string", "a whole number", … for messages.
pub fn type_noun(ty: FieldType) -> &'static str {
    match ty {
        FieldType::String => "a string",
        FieldType::Number => "a number",
        FieldType::Integer => "a whole number",
        FieldType::Boolean => "true or false",
        FieldType::Date => "an ISO 8601 date",
    }
}

/// One rejected form input.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    /// The field key (or the unexpected input key).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// Applies a form's fields to submitted `inputs`: checks each value, fills defaults, and
/// refuses unknown keys. Returns the values to store in `runtime`, or every problem at once.
pub fn resolve_inputs(
    fields: &[Field],
    inputs: &Map<String, Json>,
) -> Result<Map<String, Json>, Vec<FieldError>> {
    let mut out = Map::new();
    let mut errors = Vec::new();
    for field in fields {
        match inputs.get(&field.key).filter(|v| !v.is_null()) {
            Some(value) => match check_value(field, value) {
                Ok(v) => {
                    out.insert(field.key.clone(), v);
                }
                Err(message) => errors.push(FieldError {
                    field: field.key.clone(),
                    message,
                }),
            },
            None => match &field.default {
                Some(default) => {
                    out.insert(field.key.clone(), default.clone());
                }
                None if field.required => errors.push(FieldError {
                    field: field.key.clone(),
                    message: "is required".into(),
                }),
                None => {}
            },
        }
    }
    for key in inputs.keys() {
        if !fields.iter().any(|f| &f.key == key) {
            errors.push(FieldError {
                field: key.clone(),
                message: "is not a field of this form".into(),
            });
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn field(ty: FieldType) -> Field {
        Field {
            key: "f".into(),
            field_type: ty,
            required: false,
            default: None,
            pattern: None,
            allowed: None,
            min: None,
            max: None,
            min_length: None,
            max_length: None,
            label: None,
            description: None,
        }
    }

    #[test]
    fn types_are_enforced() {
        assert!(check_value(&field(FieldType::String), &json!("x")).is_ok());
        assert!(check_value(&field(FieldType::String), &json!(1)).is_err());
        assert_eq!(
            check_value(&field(FieldType::Integer), &json!(3.0)),
            Ok(json!(3))
        );
        assert!(check_value(&field(FieldType::Integer), &json!(3.5)).is_err());
        assert!(check_value(&field(FieldType::Boolean), &json!("true")).is_err());
        assert!(check_value(&field(FieldType::Date), &json!("2026-11-24")).is_ok());
        assert!(check_value(&field(FieldType::Date), &json!("2026-11-24T10:00:00+01:00")).is_ok());
        assert!(check_value(&field(FieldType::Date), &json!("24/11/2026")).is_err());
    }

    #[test]
    fn bounds_enum_and_pattern_apply() {
        let mut f = field(FieldType::Number);
        f.min = Some(500.0);
        f.max = Some(3000.0);
        assert!(check_value(&f, &json!(499)).is_err());
        assert!(check_value(&f, &json!(3000)).is_ok());
        let mut s = field(FieldType::String);
        s.pattern = Some("^.{3,5}$".into());
        s.allowed = Some(vec![json!("abc"), json!("abcdef")]);
        assert!(check_value(&s, &json!("abc")).is_ok());
        assert_eq!(
            check_value(&s, &json!("abcdef")),
            Err("must match the pattern `^.{3,5}$`".into())
        );
        assert!(check_value(&s, &json!("abd")).is_err());
    }

    #[test]
    fn inputs_get_defaults_and_every_error_at_once() {
        let mut topic = field(FieldType::String);
        topic.key = "topic".into();
        topic.required = true;
        let mut words = field(FieldType::Number);
        words.key = "words".into();
        words.default = Some(json!(1000));
        let fields = [topic, words];
        let ok = resolve_inputs(&fields, json!({"topic": "x"}).as_object().expect("obj"));
        assert_eq!(
            ok,
            Ok(json!({"topic": "x", "words": 1000})
                .as_object()
                .expect("obj")
                .clone())
        );
        let errs = resolve_inputs(
            &fields,
            json!({"words": "many", "extra": 1})
                .as_object()
                .expect("obj"),
        )
        .expect_err("invalid");
        let names: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(names, ["topic", "words", "extra"]);
    }
}
