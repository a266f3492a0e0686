//! `form`: fields a person fills in, each with its rules; the rules themselves are checked
//! here (patterns compile, `min <= max`, rules fit the field's type, defaults obey them).

use super::super::decode::{Decoder, Obj, index};
use super::super::field::{check_value, compile_pattern, type_noun};
use super::super::{FIELD_TYPES, Field, FieldType, FormConfig};
use super::{Ctx, wait};
use crate::diag::codes;
use crate::located::Node;
use crate::workflow::is_data_key;

const FIELD_KEYS: &[&str] = &[
    "key",
    "type",
    "required",
    "default",
    "pattern",
    "enum",
    "min",
    "max",
    "min_length",
    "max_length",
    "label",
    "description",
];

/// The `notify` list: e-mail addresses, or templates (rendered when the form starts waiting).
fn recipients(d: &mut Decoder, node: &Node, path: &str) -> Option<Vec<String>> {
    let list = d.string_list(node, path)?;
    let mut out: Vec<String> = Vec::new();
    for (i, (who, loc)) in list.into_iter().enumerate() {
        if who.contains("{{") || who.contains("{%") {
            if let Err(e) = crate::lang::check_template(&who) {
                d.err(
                    codes::TEMPLATE_INVALID,
                    &index(path, i),
                    loc,
                    format!(
                        "invalid template at character {}: {}",
                        e.offset + 1,
                        e.message
                    ),
                );
            }
        } else if !super::approval::is_email(&who) {
            d.err(
                codes::VALUE_INVALID,
                &index(path, i),
                loc,
                format!("`{who}` is not an e-mail address"),
            );
        } else if out.contains(&who) {
            d.err(
                codes::VALUE_INVALID,
                &index(path, i),
                loc,
                format!("`{who}` is listed twice"),
            );
        }
        out.push(who);
    }
    Some(out)
}

pub(super) fn decode(d: &mut Decoder, cfg: &Node, ctx: &mut Ctx<'_>) -> Option<FormConfig> {
    let keys: Vec<&str> = ["fields", "notify"]
        .iter()
        .chain(wait::KEYS)
        .copied()
        .collect();
    let obj = d.mapping(cfg, &ctx.path, &keys)?;
    let wait = wait::decode(d, &obj, ctx);
    let notify = match obj.get("notify") {
        Some(node) => recipients(d, node, &obj.path_of("notify"))?,
        None => Vec::new(),
    };
    let node = d.required(&obj, "fields", "the list of form fields")?;
    let path = obj.path_of("fields");
    let items = d.list(node, &path)?;
    if items.is_empty() {
        d.err(
            codes::VALUE_INVALID,
            &path,
            node.loc,
            "a form needs at least one field",
        );
        return None;
    }
    let mut fields: Vec<Field> = Vec::new();
    let mut complete = true;
    for (i, item) in items.iter().enumerate() {
        match decode_field(d, item, &index(&path, i)) {
            Some((field, key_node)) => {
                if fields.iter().any(|f| f.key == field.key) {
                    d.err(
                        codes::FIELD_DUPLICATE_KEY,
                        &format!("{}.key", index(&path, i)),
                        key_node,
                        format!("another field already has key `{}`", field.key),
                    );
                }
                fields.push(field);
            }
            None => complete = false,
        }
    }
    complete.then_some(FormConfig {
        fields,
        notify,
        wait,
    })
}

fn decode_field(
    d: &mut Decoder,
    node: &Node,
    path: &str,
) -> Option<(Field, crate::diag::Location)> {
    let obj = d.mapping(node, path, FIELD_KEYS)?;
    let errors_before = d.diags.len();
    let key = d.req_str(&obj, "key", "the runtime key the value is stored under");
    let key_loc = obj.get("key").map_or(obj.loc, |n| n.loc);
    if let Some(k) = &key
        && !is_data_key(k)
    {
        d.err(
                codes::VALUE_INVALID,
                &obj.path_of("key"),
                key_loc,
                format!("`{k}` is not a valid runtime key (letters, digits and `_`, not starting with a digit)"),
            );
    }
    let field_type = d
        .required(
            &obj,
            "type",
            "one of string, number, integer, boolean, date",
        )
        .and_then(|n| d.one_of(n, &obj.path_of("type"), FIELD_TYPES, "field type"))
        .and_then(|t| serde_json::from_value::<FieldType>(serde_json::Value::String(t)).ok());
    let mut field = Field {
        key: key.unwrap_or_default(),
        field_type: field_type.unwrap_or(FieldType::String),
        required: d.opt_bool(&obj, "required").unwrap_or(false),
        default: obj.get("default").map(Node::to_json),
        pattern: d.opt_str(&obj, "pattern"),
        allowed: None,
        min: d.opt_number(&obj, "min"),
        max: d.opt_number(&obj, "max"),
        min_length: d.opt_count(&obj, "min_length", 0),
        max_length: d.opt_count(&obj, "max_length", 0),
        label: d.opt_str(&obj, "label"),
        description: d.opt_str(&obj, "description"),
    };
    if field_type.is_some() {
        check_rules(d, &obj, &mut field);
    }
    (d.diags.len() == errors_before).then_some((field, key_loc))
}

/// Rules that must fit together: applicability by type, bounds order, pattern, enum, default.
fn check_rules(d: &mut Decoder, obj: &Obj<'_>, field: &mut Field) {
    let ty = field.field_type;
    let numeric = matches!(ty, FieldType::Number | FieldType::Integer);
    let textual = ty == FieldType::String;
    for (key, applies) in [
        ("min", numeric),
        ("max", numeric),
        ("pattern", textual),
        ("min_length", textual),
        ("max_length", textual),
    ] {
        if obj.get(key).is_some() && !applies {
            d.err(
                codes::FIELD_RULE_NOT_APPLICABLE,
                &obj.path_of(key),
                obj.key_loc(key),
                format!(
                    "`{key}` does not apply to a field of type {}",
                    type_name(ty)
                ),
            );
        }
    }
    if let (Some(min), Some(max)) = (field.min, field.max)
        && min > max
    {
        d.err(
            codes::FIELD_MIN_GT_MAX,
            &obj.path_of("min"),
            obj.value_loc("min"),
            format!("`min` ({min}) is greater than `max` ({max})"),
        );
    }
    if let (Some(min), Some(max)) = (field.min_length, field.max_length)
        && min > max
    {
        d.err(
            codes::FIELD_MIN_GT_MAX,
            &obj.path_of("min_length"),
            obj.value_loc("min_length"),
            format!("`min_length` ({min}) is greater than `max_length` ({max})"),
        );
    }
    if let (Some(pattern), Some(node)) = (&field.pattern, obj.get("pattern"))
        && let Err(e) = compile_pattern(pattern)
    {
        d.err(
            codes::FIELD_INVALID_PATTERN,
            &obj.path_of("pattern"),
            node.loc,
            format!(
                "`{pattern}` is not a valid regular expression: {}",
                first_line(&e)
            ),
        );
        field.pattern = None;
    }
    field.allowed = decode_enum(d, obj, ty);
    if let (Some(default), Some(node)) = (&field.default, obj.get("default")) {
        match check_value(field, default) {
            Ok(v) => field.default = Some(v),
            Err(why) => d.err(
                codes::FIELD_INVALID_DEFAULT,
                &obj.path_of("default"),
                node.loc,
                format!("the default {default} breaks the field's own rules: it {why}"),
            ),
        }
    }
}

fn decode_enum(d: &mut Decoder, obj: &Obj<'_>, ty: FieldType) -> Option<Vec<serde_json::Value>> {
    let node = obj.get("enum")?;
    let path = obj.path_of("enum");
    let items = d.list(node, &path)?;
    if items.is_empty() {
        d.err(
            codes::VALUE_INVALID,
            &path,
            node.loc,
            "`enum` is empty; give the allowed values",
        );
        return None;
    }
    let probe = Field {
        key: String::new(),
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
    };
    let mut values = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let value = item.to_json();
        match check_value(&probe, &value) {
            Ok(v) => values.push(v),
            Err(_) => d.err(
                codes::TYPE_MISMATCH,
                &index(&path, i),
                item.loc,
                format!("enum value {value} is not {} like the field", type_noun(ty)),
            ),
        }
    }
    Some(values)
}

fn type_name(ty: FieldType) -> &'static str {
    match ty {
        FieldType::String => "string",
        FieldType::Number => "number",
        FieldType::Integer => "integer",
        FieldType::Boolean => "boolean",
        FieldType::Date => "date",
    }
}

fn first_line(s: &str) -> String {
    s.lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or(s)
        .trim()
        .to_string()
}
