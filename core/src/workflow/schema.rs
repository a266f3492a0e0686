//! Checks that a step's `json_schema` is itself a valid JSON Schema (draft 2020-12).
//!
//! Meta-schema errors point into the schema by JSON pointer; the pointer is walked through the
//! located tree so the problem is reported at the exact line and column. Compiling the schema
//! afterwards catches what the meta-schema cannot (a `pattern` that is not a regex, a `$ref`
//! that does not resolve — remote references are never fetched).

use super::decode::{Decoder, index, join};
use crate::diag::{Location, codes};
use crate::located::{Node, Value};

/// Reports every way `node` fails to be a draft 2020-12 schema; returns the schema as JSON.
pub(crate) fn check(d: &mut Decoder, node: &Node, path: &str) -> Option<serde_json::Value> {
    if !matches!(node.value, Value::Map(_) | Value::Bool(_)) {
        d.mismatch(node, path, "a JSON Schema (a mapping)");
        return None;
    }
    let schema = node.to_json();
    let meta = jsonschema::draft202012::meta::validator();
    let mut valid = true;
    for error in meta.iter_errors(&schema) {
        valid = false;
        let pointer = error.instance_path().as_str().to_string();
        let (sub_path, loc) = locate(node, path, &pointer);
        d.err(
            codes::SCHEMA_INVALID,
            &sub_path,
            loc,
            format!("not a valid JSON Schema (draft 2020-12): {error}"),
        );
    }
    if valid && let Err(error) = jsonschema::draft202012::new(&schema) {
        valid = false;
        let pointer = error.schema_path().as_str().to_string();
        let (sub_path, loc) = locate(node, path, &pointer);
        d.err(
            codes::SCHEMA_INVALID,
            &sub_path,
            loc,
            format!("the JSON Schema does not compile: {error}"),
        );
    }
    valid.then_some(schema)
}

/// Follows a JSON pointer as far as it goes; returns the deepest node's path and location.
fn locate(root: &Node, path: &str, pointer: &str) -> (String, Location) {
    let mut node = root;
    let mut out = path.to_string();
    for raw in pointer.split('/').skip(1) {
        let segment = raw.replace("~1", "/").replace("~0", "~");
        let next = match &node.value {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| k.name == segment)
                .map(|(_, v)| (join(&out, &segment), v)),
            Value::Seq(items) => segment
                .parse::<usize>()
                .ok()
                .and_then(|i| items.get(i).map(|v| (index(&out, i), v))),
            _ => None,
        };
        match next {
            Some((p, n)) => {
                out = p;
                node = n;
            }
            None => break,
        }
    }
    (out, node.loc)
}
