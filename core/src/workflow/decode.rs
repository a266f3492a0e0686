//! Typed reads from located nodes that collect every problem instead of stopping at the first.
//!
//! Each decoder asks a [`Decoder`] for a mapping with its known keys, then for the values it
//! needs. A missing key, a wrong type or an unknown key (with the closest known key suggested)
//! becomes a [`Diagnostic`] and the read yields `None`, so decoding goes on and the author sees
//! all problems in one pass.

use crate::diag::{Diagnostic, Location, codes};
use crate::located::{Key, Node, Value};

/// Collects diagnostics while decoding.
#[derive(Default)]
pub(crate) struct Decoder {
    /// Every problem found so far.
    pub diags: Vec<Diagnostic>,
}

/// A mapping node whose keys were checked against a known set.
pub(crate) struct Obj<'n> {
    /// Path of the mapping itself.
    pub path: String,
    /// Where the mapping starts.
    pub loc: Location,
    entries: &'n [(Key, Node)],
}

impl<'n> Obj<'n> {
    /// The value under `key`, treating an explicit `null` as absent.
    pub fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(_, v)| v)
            .filter(|v| v.value != Value::Null)
    }

    /// Whether `key` is written at all (even as `null`).
    pub fn has(&self, key: &str) -> bool {
        self.entries.iter().any(|(k, _)| k.name == key)
    }

    /// The location of `key` itself, or of the mapping when absent.
    pub fn key_loc(&self, key: &str) -> Location {
        self.entries
            .iter()
            .find(|(k, _)| k.name == key)
            .map_or(self.loc, |(k, _)| k.loc)
    }

    /// The location of the value under `key`, or of the mapping when absent.
    pub fn value_loc(&self, key: &str) -> Location {
        self.entries
            .iter()
            .find(|(k, _)| k.name == key)
            .map_or(self.loc, |(_, v)| v.loc)
    }

    /// The path of `key` inside this mapping.
    pub fn path_of(&self, key: &str) -> String {
        join(&self.path, key)
    }
}

/// Appends `key` to a dotted path.
pub(crate) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Appends an index to a path.
pub(crate) fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// The closest of `known` to `word`, if it is close enough to be a likely typo.
pub(crate) fn suggest<'a>(word: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (strsim::damerau_levenshtein(word, k), *k))
        .filter(|(d, k)| *d <= 2 && *d < word.len().max(k.len()) / 2 + 1)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

impl Decoder {
    /// Records a problem.
    pub fn err(&mut self, code: &'static str, path: &str, loc: Location, msg: impl Into<String>) {
        self.diags.push(Diagnostic::new(code, path, loc, msg));
    }

    /// Records a wrong-type problem.
    pub fn mismatch(&mut self, node: &Node, path: &str, expected: &str) {
        self.err(
            codes::TYPE_MISMATCH,
            path,
            node.loc,
            format!("expected {expected}, found {}", node.kind()),
        );
    }

    /// Reads `node` as a mapping and reports every key not in `known`.
    pub fn mapping<'n>(&mut self, node: &'n Node, path: &str, known: &[&str]) -> Option<Obj<'n>> {
        let Value::Map(entries) = &node.value else {
            self.mismatch(node, path, "a mapping");
            return None;
        };
        for (key, _) in entries {
            if !known.contains(&key.name.as_str()) {
                let hint = match suggest(&key.name, known) {
                    Some(s) => format!("; did you mean `{s}`?"),
                    None => format!("; expected one of: {}", known.join(", ")),
                };
                self.err(
                    codes::KEY_UNKNOWN,
                    &join(path, &key.name),
                    key.loc,
                    format!("unknown key `{}`{hint}", key.name),
                );
            }
        }
        Some(Obj {
            path: path.to_string(),
            loc: node.loc,
            entries,
        })
    }

    /// Reports `key` as missing from `obj`.
    pub fn missing(&mut self, obj: &Obj<'_>, key: &str, what: &str) {
        self.err(
            codes::KEY_MISSING,
            &obj.path_of(key),
            obj.loc,
            format!("missing `{key}` ({what})"),
        );
    }

    /// A required value of any type.
    pub fn required<'n>(&mut self, obj: &Obj<'n>, key: &str, what: &str) -> Option<&'n Node> {
        let node = obj.get(key);
        if node.is_none() {
            self.missing(obj, key, what);
        }
        node
    }

    /// A string at `node`.
    pub fn string(&mut self, node: &Node, path: &str) -> Option<String> {
        match &node.value {
            Value::Str(s) => Some(s.clone()),
            _ => {
                self.mismatch(node, path, "a string");
                None
            }
        }
    }

    /// An optional string under `key`.
    pub fn opt_str(&mut self, obj: &Obj<'_>, key: &str) -> Option<String> {
        let node = obj.get(key)?;
        self.string(node, &obj.path_of(key))
    }

    /// A required string under `key`.
    pub fn req_str(&mut self, obj: &Obj<'_>, key: &str, what: &str) -> Option<String> {
        let node = self.required(obj, key, what)?;
        self.string(node, &obj.path_of(key))
    }

    /// An optional boolean under `key`.
    pub fn opt_bool(&mut self, obj: &Obj<'_>, key: &str) -> Option<bool> {
        let node = obj.get(key)?;
        match node.value {
            Value::Bool(b) => Some(b),
            _ => {
                self.mismatch(node, &obj.path_of(key), "true or false");
                None
            }
        }
    }

    /// An optional finite number under `key`.
    pub fn opt_number(&mut self, obj: &Obj<'_>, key: &str) -> Option<f64> {
        let node = obj.get(key)?;
        match node.as_f64() {
            Some(f) if f.is_finite() => Some(f),
            _ => {
                self.mismatch(node, &obj.path_of(key), "a finite number");
                None
            }
        }
    }

    /// An optional whole number of at least `min` under `key`.
    pub fn opt_count(&mut self, obj: &Obj<'_>, key: &str, min: u64) -> Option<u64> {
        let node = obj.get(key)?;
        match node.value {
            Value::Int(i) if i >= 0 && i as u64 >= min => Some(i as u64),
            Value::Int(_) => {
                self.err(
                    codes::VALUE_INVALID,
                    &obj.path_of(key),
                    node.loc,
                    format!("must be at least {min}"),
                );
                None
            }
            _ => {
                self.mismatch(node, &obj.path_of(key), "a whole number");
                None
            }
        }
    }

    /// A list at `node`.
    pub fn list<'n>(&mut self, node: &'n Node, path: &str) -> Option<&'n [Node]> {
        match &node.value {
            Value::Seq(items) => Some(items),
            _ => {
                self.mismatch(node, path, "a list");
                None
            }
        }
    }

    /// A list of strings at `node`; items of other types are reported and skipped.
    pub fn string_list(&mut self, node: &Node, path: &str) -> Option<Vec<(String, Location)>> {
        let items = self.list(node, path)?;
        Some(
            items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| self.string(item, &index(path, i)).map(|s| (s, item.loc)))
                .collect(),
        )
    }

    /// One of `allowed` (exactly as written) at `node`.
    pub fn one_of(
        &mut self,
        node: &Node,
        path: &str,
        allowed: &[&str],
        what: &str,
    ) -> Option<String> {
        let text = self.string(node, path)?;
        if allowed.contains(&text.as_str()) {
            return Some(text);
        }
        let hint = match suggest(&text, allowed) {
            Some(s) => format!("; did you mean `{s}`?"),
            None => format!("; expected one of: {}", allowed.join(", ")),
        };
        self.err(
            codes::VALUE_INVALID,
            path,
            node.loc,
            format!("`{text}` is not a valid {what}{hint}"),
        );
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_typos_only() {
        let known = ["id", "type", "next", "config", "name"];
        assert_eq!(suggest("nxet", &known), Some("next"));
        assert_eq!(suggest("confg", &known), Some("config"));
        assert_eq!(suggest("tpye", &known), Some("type"));
        assert_eq!(suggest("completely_else", &known), None);
        assert_eq!(suggest("x", &known), None);
    }
}
