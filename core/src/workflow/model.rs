//! The typed, canonical workflow definition.
//!
//! This is what the server stores as `definition` and what runs execute. It is produced only
//! by `workflow::parse` (which checks every rule) and serializes to JSON that is itself a valid
//! input definition, so a client can read a workflow back, edit it and post it again.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

/// A validated workflow definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Workflow {
    /// The id chosen in the file; `None` lets the server assign one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Display name.
    pub name: String,
    /// Free text shown to people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The version the author expects this to become; the server assigns versions and refuses
    /// a mismatch, so two editors cannot silently overwrite each other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i64>,
    /// Id of the step a run begins with.
    pub start_step: String,
    /// Constant data every run sees as `static`.
    #[serde(
        default,
        rename = "static",
        skip_serializing_if = "serde_json::Map::is_empty"
    )]
    pub static_data: serde_json::Map<String, Json>,
    /// Whether step cycles (loops back to an earlier step) are intended.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_cycles: bool,
    /// The steps, in file order.
    pub steps: Vec<Step>,
}

impl Workflow {
    /// Finds a step by id.
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id == id)
    }
}

/// One step of a workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// Unique id within the workflow.
    pub id: String,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Free text shown to people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// What the step does, with its configuration.
    #[serde(flatten)]
    pub kind: StepKind,
    /// The step that follows; `None` ends the run. Conditionals route by their branches instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// The step types and their configurations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "config", rename_all = "snake_case")]
pub enum StepKind {
    /// Wait for a person to fill in fields.
    Form(FormConfig),
    /// Choose the next step by expressions.
    Conditional(ConditionalConfig),
    /// Assign computed values into `runtime`.
    Set(SetConfig),
    /// Ask a model for JSON that satisfies a schema.
    AiGenerate(AiGenerateConfig),
    /// Call an HTTP endpoint.
    ApiCall(ApiCallConfig),
    /// Wait for approvers to decide.
    Approval(ApprovalConfig),
}

impl StepKind {
    /// The `type` name as written in workflow files.
    pub fn type_name(&self) -> &'static str {
        match self {
            StepKind::Form(_) => "form",
            StepKind::Conditional(_) => "conditional",
            StepKind::Set(_) => "set",
            StepKind::AiGenerate(_) => "ai_generate",
            StepKind::ApiCall(_) => "api_call",
            StepKind::Approval(_) => "approval",
        }
    }

    /// Whether executing the step acts outside the run before its checkpoint (a model or an
    /// HTTP call). Every other step only computes, or asks for input through messages that are
    /// written with its (fenced) checkpoint, so a stale copy of a run executing it does nothing
    /// anyone can see.
    pub fn reaches_out(&self) -> bool {
        matches!(self, StepKind::AiGenerate(_) | StepKind::ApiCall(_))
    }
}

/// Every step type name, for messages and suggestions.
pub const STEP_TYPES: &[&str] = &[
    "form",
    "conditional",
    "set",
    "ai_generate",
    "api_call",
    "approval",
];

/// Deadline and reminder of a step that waits for people (forms and approvals).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct WaitPolicy {
    /// How long to wait, as a duration (`90s`, `12h`, `2d`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<super::Duration>,
    /// When to remind the people waited on, as a duration from the start of the wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reminder: Option<super::Duration>,
    /// Step to continue with when the timeout passes; without it the run fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_timeout: Option<String>,
}

/// A form: fields a person fills in; valid input lands in `runtime.<key>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FormConfig {
    /// The fields, in display order.
    pub fields: Vec<Field>,
    /// E-mail addresses (or templates yielding them) told when the form starts waiting, and
    /// reminded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notify: Vec<String>,
    /// Deadline and reminder.
    #[serde(flatten)]
    pub wait: WaitPolicy,
}

/// The type of a form field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    /// Text.
    String,
    /// Any number.
    Number,
    /// A whole number.
    Integer,
    /// true or false.
    Boolean,
    /// An ISO 8601 date (`2026-11-24`) or date-time.
    Date,
}

/// Every field type name.
pub const FIELD_TYPES: &[&str] = &["string", "number", "integer", "boolean", "date"];

/// One form field and its rules.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Field {
    /// The runtime key the value is stored under.
    pub key: String,
    /// The value's type.
    #[serde(rename = "type")]
    pub field_type: FieldType,
    /// Whether a value must be given (a default satisfies it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub required: bool,
    /// Used when no value is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Json>,
    /// Regular expression a string must match (anywhere, unless anchored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// The only values allowed.
    #[serde(default, rename = "enum", skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Vec<Json>>,
    /// Smallest number allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// Largest number allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// Fewest characters allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_length: Option<u64>,
    /// Most characters allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u64>,
    /// Label shown to people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Help text shown to people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A conditional: the first branch whose `when` holds wins, else `default`.
/// (`when/then/else` in a file is stored as one branch plus a default.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConditionalConfig {
    /// Branches, tried in order.
    pub branches: Vec<Branch>,
    /// Step taken when no branch holds.
    pub default: String,
}

/// One branch of a conditional.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Branch {
    /// A boolean expression over the context.
    pub when: String,
    /// Step taken when it holds.
    pub next: String,
}

/// `set`: each value is an expression whose result is stored under its key in `runtime`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetConfig {
    /// Runtime key → expression.
    pub values: BTreeMap<String, String>,
}

/// Which model provider serves an `ai_generate` step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    /// Deterministic, offline, schema-driven.
    Mock,
    /// Any OpenAI-compatible Chat Completions API.
    Openai,
    /// Anthropic's Messages API.
    Anthropic,
}

/// Provider names.
pub const PROVIDERS: &[&str] = &["mock", "openai", "anthropic"];

/// How the mock provider behaves for a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MockMode {
    /// Always a valid answer.
    Success,
    /// Invalid answers for the first `fail_times` attempts.
    SchemaViolation,
    /// Never answers in time.
    Timeout,
    /// Fails like an overloaded service for the first `fail_times` attempts.
    TransientError,
}

/// Mock mode names.
pub const MOCK_MODES: &[&str] = &["success", "schema_violation", "timeout", "transient_error"];

/// Per-step settings of the mock provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MockConfig {
    /// The behaviour.
    pub mode: MockMode,
    /// How many attempts misbehave before it succeeds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_times: Option<u32>,
}

/// A reference to a stored prompt template, optionally pinned to a version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateRef {
    /// Template id.
    pub id: String,
    /// Pinned version; `None` takes the latest when the run starts.
    pub version: Option<i64>,
}

impl std::fmt::Display for TemplateRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.version {
            Some(v) => write!(f, "{}@{v}", self.id),
            None => f.write_str(&self.id),
        }
    }
}

impl Serialize for TemplateRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TemplateRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        TemplateRef::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl TemplateRef {
    /// Parses `id` or `id@version`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (id, version) = match text.split_once('@') {
            Some((id, v)) => match v.parse::<i64>() {
                Ok(n) if n >= 1 => (id, Some(n)),
                _ => return Err(format!("`{v}` is not a version number (1, 2, …)")),
            },
            None => (text, None),
        };
        if !super::is_identifier(id) {
            return Err(format!(
                "`{id}` is not a template id (letters, digits, `_`, `-`, `.`)"
            ));
        }
        Ok(Self {
            id: id.to_string(),
            version,
        })
    }
}

/// `ai_generate`: render a prompt, ask a model, hold the answer to `json_schema`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AiGenerateConfig {
    /// A stored prompt template (exclusive with `prompt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_id: Option<TemplateRef>,
    /// An inline prompt template (exclusive with `template_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// An inline system prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// Runtime keys exposed to the template by bare name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variables: Vec<String>,
    /// Store the whole answer under this runtime key instead of merging it key by key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_key: Option<String>,
    /// The draft 2020-12 schema the answer must satisfy.
    pub json_schema: Json,
    /// Provider; the server default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<Provider>,
    /// Model name; the provider's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Sampling temperature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    /// Most output tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    /// Per-request timeout in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<f64>,
    /// Mock provider behaviour for this step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mock: Option<MockConfig>,
}

/// HTTP methods an `api_call` may use.
pub const HTTP_METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// `api_call`: one HTTP request whose `{status, headers, body}` lands in runtime.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiCallConfig {
    /// Upper-case HTTP method.
    pub method: String,
    /// URL template (http or https).
    pub url: String,
    /// Header templates.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Query parameter templates.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query: BTreeMap<String, String>,
    /// Body; its strings are templates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Json>,
    /// Per-request timeout in seconds.
    #[serde(default = "default_timeout_s")]
    pub timeout_s: f64,
    /// Runtime key of the result; the step id when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_key: Option<String>,
    /// Statuses that count as success; any 2xx when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expect_status: Vec<u16>,
    /// Retries after 5xx, timeouts and connection errors.
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
}

/// The default `api_call` timeout in seconds.
pub const DEFAULT_API_TIMEOUT_S: f64 = 30.0;
/// The default number of `api_call` retries.
pub const DEFAULT_API_RETRIES: u32 = 3;

fn default_timeout_s() -> f64 {
    DEFAULT_API_TIMEOUT_S
}

fn default_max_retries() -> u32 {
    DEFAULT_API_RETRIES
}

/// `approval`: approvers decide; enough approvals continue the run, a rejection fails it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApprovalConfig {
    /// E-mail addresses (or templates yielding them) of the people who decide.
    pub approvers: Vec<String>,
    /// How many approvals continue the run.
    #[serde(default = "one")]
    pub min_approvals: u32,
    /// Text shown to approvers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Deadline and reminder.
    #[serde(flatten)]
    pub wait: WaitPolicy,
}

fn one() -> u32 {
    1
}

#[cfg(test)]
mod tests {
    /// Only model and HTTP calls act outside the run before their checkpoint.
    #[test]
    fn only_model_and_http_steps_reach_out() {
        let triage = crate::workflow::parse(include_str!("../../../examples/triage.yaml"))
            .expect("triage.yaml parses");
        let human = crate::workflow::parse(include_str!("../../../examples/human_loop.yaml"))
            .expect("human_loop.yaml parses");
        let mut seen = std::collections::BTreeMap::new();
        for step in triage.steps.iter().chain(&human.steps) {
            seen.insert(step.kind.type_name(), step.kind.reaches_out());
        }
        assert_eq!(seen.get("ai_generate"), Some(&true));
        assert_eq!(seen.get("api_call"), Some(&true));
        for quiet in ["form", "approval", "conditional"] {
            assert_eq!(seen.get(quiet), Some(&false), "{quiet}");
        }
    }
}
