//! Located problems found in a workflow definition.
//!
//! Every check reports a [`Diagnostic`] — a stable `code`, the `path` into the document
//! (`steps[2].config.when`), the 1-based `line`/`column` in the source, and a message — so the
//! API, the CLI and the tests all speak about the same problem in the same words.

use serde::Serialize;

/// A position in the source text, 1-based, as editors count.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Location {
    /// Line number, starting at 1.
    pub line: usize,
    /// Column number (in characters), starting at 1.
    pub column: usize,
}

impl Location {
    /// Builds a location from 1-based line and column numbers.
    pub fn new(line: usize, column: usize) -> Self {
        Self { line, column }
    }
}

/// One problem in a definition: what, where, and a stable code clients can match on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Dotted path into the document, e.g. `steps[2].next`; empty for the document itself.
    pub path: String,
    /// Line of the offending node (1-based).
    pub line: usize,
    /// Column of the offending node (1-based).
    pub column: usize,
    /// Stable machine-readable code, e.g. `key.unknown` (see [`codes`]).
    pub code: &'static str,
    /// Human-readable explanation, with a suggestion where one exists.
    pub message: String,
}

impl Diagnostic {
    /// Creates a diagnostic at `loc` for the node at `path`.
    pub fn new(
        code: &'static str,
        path: impl Into<String>,
        loc: Location,
        message: impl Into<String>,
    ) -> Self {
        Self {
            path: path.into(),
            line: loc.line,
            column: loc.column,
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "{} [{}]", self.message, self.code)
        } else {
            write!(f, "{}: {} [{}]", self.path, self.message, self.code)
        }
    }
}

/// The stable diagnostic codes. Clients match on these; never rename one.
pub mod codes {
    /// The text is not well-formed YAML (or JSON).
    pub const YAML_SYNTAX: &str = "yaml.syntax";
    /// A JSON request body that does not parse (reported with 400, before validation).
    pub const JSON_SYNTAX: &str = "json.syntax";
    /// A JSON request body whose fields have the wrong shape (reported with 422).
    pub const BODY_INVALID: &str = "body.invalid";
    /// A submitted form value that breaks its field's rules (reported with 422).
    pub const INPUT_INVALID: &str = "input.invalid";
    /// Nesting deeper than the limit.
    pub const YAML_TOO_DEEP: &str = "yaml.too_deep";
    /// Aliases would expand past the node budget (a "billion laughs" document).
    pub const YAML_ALIAS_LIMIT: &str = "yaml.alias_limit";
    /// A construct Scaff does not accept: several documents, custom tags, non-string keys.
    pub const YAML_UNSUPPORTED: &str = "yaml.unsupported";
    /// The same key twice in one mapping.
    pub const YAML_DUPLICATE_KEY: &str = "yaml.duplicate_key";
    /// A value of the wrong type (a list where a string belongs, …).
    pub const TYPE_MISMATCH: &str = "type.mismatch";
    /// A key the format does not define (often a typo; the message suggests the closest key).
    pub const KEY_UNKNOWN: &str = "key.unknown";
    /// A required key is absent.
    pub const KEY_MISSING: &str = "key.missing";
    /// Two keys that exclude each other are both present.
    pub const KEY_CONFLICT: &str = "key.conflict";
    /// A value outside its allowed set or range.
    pub const VALUE_INVALID: &str = "value.invalid";
    /// A step `type` that does not exist.
    pub const STEP_UNKNOWN_TYPE: &str = "step.unknown_type";
    /// Two steps share an id.
    pub const STEP_DUPLICATE_ID: &str = "step.duplicate_id";
    /// `start_step`, `next` or another reference names no step.
    pub const STEP_UNKNOWN_REF: &str = "step.unknown_ref";
    /// A step no path from `start_step` reaches.
    pub const GRAPH_UNREACHABLE: &str = "graph.unreachable";
    /// Steps form a cycle and the workflow does not declare `allow_cycles: true`.
    pub const GRAPH_CYCLE: &str = "graph.cycle";
    /// A `json_schema` that is not a valid draft 2020-12 schema.
    pub const SCHEMA_INVALID: &str = "schema.invalid";
    /// A form field `pattern` that is not a valid regular expression.
    pub const FIELD_INVALID_PATTERN: &str = "field.invalid_pattern";
    /// `min` greater than `max` (or `min_length` greater than `max_length`).
    pub const FIELD_MIN_GT_MAX: &str = "field.min_gt_max";
    /// A field `default` that its own rules (enum, type, bounds, pattern) reject.
    pub const FIELD_INVALID_DEFAULT: &str = "field.invalid_default";
    /// Two form fields share a key.
    pub const FIELD_DUPLICATE_KEY: &str = "field.duplicate_key";
    /// A rule that does not apply to the field's type (`pattern` on a number, …).
    pub const FIELD_RULE_NOT_APPLICABLE: &str = "field.rule_not_applicable";
    /// An expression that does not parse or names something it may not.
    pub const EXPRESSION_INVALID: &str = "expression.invalid";
    /// A template that does not parse.
    pub const TEMPLATE_INVALID: &str = "template.invalid";
}
