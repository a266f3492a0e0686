//! Builds a located [`Node`] tree from yaml-rust2's event stream, with hard limits.
//!
//! Written on top of the event parser rather than a ready-made loader so that positions
//! survive and so that hostile input is refused instead of expanded: aliases are counted
//! against a node budget (a "billion laughs" document fails fast, using little memory),
//! nesting depth is bounded, and only one document per text is accepted.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use super::{Key, Node, Value};
use crate::diag::{Diagnostic, Location, codes};

/// Bounds on what a document may expand to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Deepest nesting of lists and mappings accepted.
    pub max_depth: usize,
    /// Most nodes the document may hold once every alias is expanded.
    pub max_nodes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_depth: 64,
            max_nodes: 200_000,
        }
    }
}

/// Parses `src` into a node tree. A fatal problem (syntax, limits) is the `Err`; problems that
/// still leave a usable tree (duplicate keys) come back beside it.
pub fn load(src: &str, limits: Limits) -> Result<(Node, Vec<Diagnostic>), Diagnostic> {
    let mut builder = Builder::new(limits);
    let mut parser = Parser::new_from_str(src);
    loop {
        let (event, mark) = parser.next_token().map_err(|e| {
            Diagnostic::new(
                codes::YAML_SYNTAX,
                "",
                loc(*e.marker()),
                format!("invalid YAML: {}", e.info()),
            )
        })?;
        if matches!(event, Event::StreamEnd) {
            break;
        }
        builder.on_event(event, mark)?;
    }
    let root = builder.root.unwrap_or(Node {
        value: Value::Null,
        loc: Location::new(1, 1),
    });
    Ok((root, builder.warnings))
}

fn loc(m: Marker) -> Location {
    Location::new(m.line(), m.col() + 1)
}

/// A collection under construction.
enum Frame {
    Seq {
        items: Vec<Node>,
        loc: Location,
        anchor: usize,
    },
    Map {
        entries: Vec<(Key, Node)>,
        pending: Option<Key>,
        loc: Location,
        anchor: usize,
    },
}

/// An anchored node kept for aliases, with its cost in nodes and its height.
struct Anchored {
    node: Node,
    size: usize,
    height: usize,
}

struct Builder {
    limits: Limits,
    stack: Vec<Frame>,
    anchors: HashMap<usize, Anchored>,
    nodes: usize,
    documents: usize,
    root: Option<Node>,
    warnings: Vec<Diagnostic>,
}

impl Builder {
    fn new(limits: Limits) -> Self {
        Self {
            limits,
            stack: Vec::new(),
            anchors: HashMap::new(),
            nodes: 0,
            documents: 0,
            root: None,
            warnings: Vec::new(),
        }
    }

    fn on_event(&mut self, event: Event, mark: Marker) -> Result<(), Diagnostic> {
        let at = loc(mark);
        match event {
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(Diagnostic::new(
                        codes::YAML_UNSUPPORTED,
                        "",
                        at,
                        "a workflow file holds exactly one YAML document; remove the second `---`",
                    ));
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                if self.expecting_key() {
                    return self.push_key(text, at);
                }
                let value = resolve_scalar(text, style, tag.as_ref(), at)?;
                self.count(1, at)?;
                self.finish_node(Node { value, loc: at }, anchor, 1, 0)?;
            }
            Event::SequenceStart(anchor, tag) => {
                refuse_collection_tag(tag.as_ref(), "seq", at)?;
                self.open(at)?;
                self.stack.push(Frame::Seq {
                    items: Vec::new(),
                    loc: at,
                    anchor,
                });
            }
            Event::MappingStart(anchor, tag) => {
                refuse_collection_tag(tag.as_ref(), "map", at)?;
                self.open(at)?;
                self.stack.push(Frame::Map {
                    entries: Vec::new(),
                    pending: None,
                    loc: at,
                    anchor,
                });
            }
            Event::SequenceEnd | Event::MappingEnd => self.close()?,
            Event::Alias(id) => self.alias(id, at)?,
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd | Event::Nothing => {}
        }
        Ok(())
    }

    fn expecting_key(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Map { pending: None, .. }))
    }

    fn open(&mut self, at: Location) -> Result<(), Diagnostic> {
        if self.expecting_key() {
            return Err(unsupported_key(at));
        }
        if self.stack.len() + 1 > self.limits.max_depth {
            return Err(Diagnostic::new(
                codes::YAML_TOO_DEEP,
                self.path(),
                at,
                format!("nesting deeper than {} levels", self.limits.max_depth),
            ));
        }
        self.count(1, at)
    }

    fn count(&mut self, n: usize, at: Location) -> Result<(), Diagnostic> {
        self.nodes = self.nodes.saturating_add(n);
        if self.nodes > self.limits.max_nodes {
            return Err(Diagnostic::new(
                codes::YAML_ALIAS_LIMIT,
                self.path(),
                at,
                format!(
                    "the document expands to more than {} values (aliases included); \
                     refusing to expand it",
                    self.limits.max_nodes
                ),
            ));
        }
        Ok(())
    }

    fn push_key(&mut self, name: String, at: Location) -> Result<(), Diagnostic> {
        let duplicate = matches!(
            self.stack.last(),
            Some(Frame::Map { entries, .. }) if entries.iter().any(|(k, _)| k.name == name)
        );
        if duplicate {
            let path = join_key(&self.path(), &name);
            self.warnings.push(Diagnostic::new(
                codes::YAML_DUPLICATE_KEY,
                path,
                at,
                format!("key `{name}` appears twice in this mapping"),
            ));
        }
        if let Some(Frame::Map { pending, .. }) = self.stack.last_mut() {
            *pending = Some(Key { name, loc: at });
        }
        Ok(())
    }

    fn close(&mut self) -> Result<(), Diagnostic> {
        let Some(frame) = self.stack.pop() else {
            return Ok(());
        };
        let (node, anchor) = match frame {
            Frame::Seq { items, loc, anchor } => (
                Node {
                    value: Value::Seq(items),
                    loc,
                },
                anchor,
            ),
            Frame::Map {
                entries,
                loc,
                anchor,
                ..
            } => {
                // yaml-rust2 marks a block mapping after its first key; the mapping starts
                // where that key does (a flow mapping's `{` comes first and is kept).
                let loc = match entries.first() {
                    Some((k, _)) if (k.loc.line, k.loc.column) < (loc.line, loc.column) => k.loc,
                    _ => loc,
                };
                (
                    Node {
                        value: Value::Map(entries),
                        loc,
                    },
                    anchor,
                )
            }
        };
        let (size, height) = if anchor > 0 { measure(&node) } else { (0, 0) };
        self.finish_node(node, anchor, size, height)
    }

    fn alias(&mut self, id: usize, at: Location) -> Result<(), Diagnostic> {
        if self.expecting_key() {
            return Err(unsupported_key(at));
        }
        let Some(anchored) = self.anchors.get(&id) else {
            return Err(Diagnostic::new(
                codes::YAML_SYNTAX,
                self.path(),
                at,
                "alias to an unknown anchor",
            ));
        };
        let (size, height) = (anchored.size, anchored.height);
        if self.stack.len() + height > self.limits.max_depth {
            return Err(Diagnostic::new(
                codes::YAML_TOO_DEEP,
                self.path(),
                at,
                format!(
                    "the alias expands to nesting deeper than {} levels",
                    self.limits.max_depth
                ),
            ));
        }
        let mut node = anchored.node.clone();
        self.count(size, at)?;
        node.loc = at;
        self.attach(node);
        Ok(())
    }

    /// Records an anchor (if any) and hands the finished node to its parent.
    fn finish_node(
        &mut self,
        node: Node,
        anchor: usize,
        size: usize,
        height: usize,
    ) -> Result<(), Diagnostic> {
        if anchor > 0 {
            self.anchors.insert(
                anchor,
                Anchored {
                    node: node.clone(),
                    size,
                    height,
                },
            );
        }
        self.attach(node);
        Ok(())
    }

    fn attach(&mut self, node: Node) {
        match self.stack.last_mut() {
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map {
                entries, pending, ..
            }) => {
                if let Some(key) = pending.take() {
                    entries.push((key, node));
                }
            }
            None => {
                if self.root.is_none() {
                    self.root = Some(node);
                }
            }
        }
    }

    /// The dotted path of the place the next node will land, for messages.
    fn path(&self) -> String {
        let mut path = String::new();
        for frame in &self.stack {
            match frame {
                Frame::Seq { items, .. } => path.push_str(&format!("[{}]", items.len())),
                Frame::Map { pending, .. } => {
                    if let Some(key) = pending {
                        path = join_key(&path, &key.name);
                    }
                }
            }
        }
        path
    }
}

fn join_key(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn unsupported_key(at: Location) -> Diagnostic {
    Diagnostic::new(
        codes::YAML_UNSUPPORTED,
        "",
        at,
        "mapping keys must be plain strings, not lists, mappings or aliases",
    )
}

/// Lists and mappings accept only their own core tag (`!!seq`, `!!map`).
fn refuse_collection_tag(tag: Option<&Tag>, own: &str, at: Location) -> Result<(), Diagnostic> {
    match tag {
        Some(t) if !((t.handle == "!!" || t.handle == "tag:yaml.org,2002:") && t.suffix == own) => {
            Err(Diagnostic::new(
                codes::YAML_UNSUPPORTED,
                "",
                at,
                format!("unsupported tag `{}{}`", t.handle, t.suffix),
            ))
        }
        _ => Ok(()),
    }
}

/// Counts nodes and height of a finished subtree (only for anchored nodes).
fn measure(node: &Node) -> (usize, usize) {
    match &node.value {
        Value::Seq(items) => {
            let (mut size, mut height) = (1, 0);
            for item in items {
                let (s, h) = measure(item);
                size += s;
                height = height.max(h);
            }
            (size, height + 1)
        }
        Value::Map(entries) => {
            let (mut size, mut height) = (1, 0);
            for (_, v) in entries {
                let (s, h) = measure(v);
                size += s;
                height = height.max(h);
            }
            (size, height + 1)
        }
        _ => (1, 0),
    }
}

/// Resolves a scalar by the YAML 1.2 core schema; quoted scalars are always strings.
fn resolve_scalar(
    text: String,
    style: TScalarStyle,
    tag: Option<&Tag>,
    at: Location,
) -> Result<Value, Diagnostic> {
    if let Some(tag) = tag {
        let suffix = tag.suffix.as_str();
        let core = tag.handle == "!!" || tag.handle == "tag:yaml.org,2002:";
        return match (core, suffix) {
            (true, "str") => Ok(Value::Str(text)),
            (true, "null" | "bool" | "int" | "float") => Ok(resolve_plain(text)),
            _ => Err(Diagnostic::new(
                codes::YAML_UNSUPPORTED,
                "",
                at,
                format!("unsupported tag `{}{}`", tag.handle, tag.suffix),
            )),
        };
    }
    if style == TScalarStyle::Plain {
        Ok(resolve_plain(text))
    } else {
        Ok(Value::Str(text))
    }
}

fn resolve_plain(text: String) -> Value {
    match text.as_str() {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Value::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Value::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Value::Float(f64::NAN),
        _ => {}
    }
    if let Some(hex) = text.strip_prefix("0x") {
        if let Ok(i) = i64::from_str_radix(hex, 16) {
            return Value::Int(i);
        }
    } else if let Some(oct) = text.strip_prefix("0o")
        && let Ok(i) = i64::from_str_radix(oct, 8)
    {
        return Value::Int(i);
    }
    if looks_numeric(&text) {
        if let Ok(i) = text.parse::<i64>() {
            return Value::Int(i);
        }
        if let Ok(f) = text.parse::<f64>() {
            return Value::Float(f);
        }
    }
    Value::Str(text)
}

/// The core schema's number shapes: `[-+]?digits`, with optional fraction and exponent.
/// (Rust's parsers also accept words like `inf` and `nan`, which YAML reads as strings.)
fn looks_numeric(text: &str) -> bool {
    let body = text.strip_prefix(['-', '+']).unwrap_or(text);
    let starts_ok = body.starts_with(|c: char| c.is_ascii_digit())
        || (body.starts_with('.') && body[1..].starts_with(|c: char| c.is_ascii_digit()));
    starts_ok
        && body
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(src: &str) -> Result<(Node, Vec<Diagnostic>), Diagnostic> {
        load(src, Limits::default())
    }

    fn map_get<'a>(node: &'a Node, key: &str) -> &'a Node {
        match &node.value {
            Value::Map(entries) => &entries.iter().find(|(k, _)| k.name == key).expect("key").1,
            _ => panic!("not a map"),
        }
    }

    #[test]
    fn scalars_resolve_by_the_core_schema() {
        let (root, _) = parse(
            "a: 1\nb: 1.5\nc: true\nd: ~\ne: '1'\nf: hello\ng: 0x1F\nh: -2e3\ni: nan\nj: .inf",
        )
        .expect("parses");
        assert_eq!(map_get(&root, "a").value, Value::Int(1));
        assert_eq!(map_get(&root, "b").value, Value::Float(1.5));
        assert_eq!(map_get(&root, "c").value, Value::Bool(true));
        assert_eq!(map_get(&root, "d").value, Value::Null);
        assert_eq!(map_get(&root, "e").value, Value::Str("1".into()));
        assert_eq!(map_get(&root, "f").value, Value::Str("hello".into()));
        assert_eq!(map_get(&root, "g").value, Value::Int(31));
        assert_eq!(map_get(&root, "h").value, Value::Float(-2000.0));
        assert_eq!(map_get(&root, "i").value, Value::Str("nan".into()));
        assert_eq!(map_get(&root, "j").value, Value::Float(f64::INFINITY));
    }

    #[test]
    fn nodes_and_keys_carry_one_based_positions() {
        let (root, _) = parse("name: x\nsteps:\n  - id: a\n    next: b\n").expect("parses");
        let Value::Map(entries) = &root.value else {
            panic!("map")
        };
        assert_eq!(entries[1].0.loc, Location::new(2, 1));
        let steps = map_get(&root, "steps");
        let Value::Seq(items) = &steps.value else {
            panic!("seq")
        };
        assert_eq!(items[0].loc, Location::new(3, 5));
        assert_eq!(map_get(&items[0], "next").loc, Location::new(4, 11));
    }

    #[test]
    fn json_parses_with_positions() {
        let (root, _) = parse("{\"name\": \"x\",\n \"steps\": [1, 2]}").expect("parses");
        assert_eq!(map_get(&root, "steps").loc, Location::new(2, 11));
    }

    #[test]
    fn syntax_errors_are_located() {
        let err = parse("name: x\nsteps: [a, b\nnext: c\n").expect_err("fails");
        assert_eq!(err.code, codes::YAML_SYNTAX);
        assert!(err.line >= 2, "{err:?}");
    }

    #[test]
    fn a_billion_laughs_is_refused_not_expanded() {
        let mut src = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let prev = i - 1;
            src.push_str(&format!(
                "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
            ));
        }
        let err = parse(&src).expect_err("refused");
        assert_eq!(err.code, codes::YAML_ALIAS_LIMIT);
    }

    #[test]
    fn modest_aliases_expand() {
        let (root, _) = parse("base: &b {x: 1}\ncopy: *b\n").expect("parses");
        assert_eq!(
            map_get(&root, "copy").to_json(),
            serde_json::json!({"x": 1})
        );
    }

    #[test]
    fn deep_nesting_is_refused() {
        let src = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let err = parse(&src).expect_err("refused");
        assert!(
            err.code == codes::YAML_TOO_DEEP || err.code == codes::YAML_SYNTAX,
            "{err:?}"
        );
        let src = format!("{}{}", "[".repeat(65), "]".repeat(65));
        assert_eq!(parse(&src).expect_err("refused").code, codes::YAML_TOO_DEEP);
    }

    #[test]
    fn duplicate_keys_are_reported_with_their_path() {
        let (_, warnings) = parse("a:\n  b: 1\n  b: 2\n").expect("parses");
        assert_eq!(warnings.len(), 1);
        assert_eq!(warnings[0].path, "a.b");
        assert_eq!(warnings[0].code, codes::YAML_DUPLICATE_KEY);
        assert_eq!((warnings[0].line, warnings[0].column), (3, 3));
    }

    #[test]
    fn second_documents_and_custom_tags_are_refused() {
        assert_eq!(
            parse("a: 1\n---\nb: 2\n").expect_err("refused").code,
            codes::YAML_UNSUPPORTED
        );
        assert_eq!(
            parse("a: !python/object x\n").expect_err("refused").code,
            codes::YAML_UNSUPPORTED
        );
    }

    #[test]
    fn empty_input_is_null() {
        assert_eq!(parse("").expect("parses").0.value, Value::Null);
    }
}
