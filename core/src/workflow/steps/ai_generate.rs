//! `ai_generate`: the prompt (stored template or inline), the variables it sees, the schema
//! the answer must satisfy, and provider settings.

use super::super::decode::{Decoder, Obj};
use super::super::{AiGenerateConfig, MOCK_MODES, MockConfig, PROVIDERS, TemplateRef, schema};
use super::{Ctx, data_key, template};
use crate::diag::codes;
use crate::located::Node;
use crate::workflow::is_data_key;

const KEYS: &[&str] = &[
    "template_id",
    "prompt",
    "system",
    "variables",
    "output_key",
    "json_schema",
    "provider",
    "model",
    "temperature",
    "max_tokens",
    "timeout_s",
    "mock",
];

pub(super) fn decode(d: &mut Decoder, cfg: &Node, ctx: &mut Ctx<'_>) -> Option<AiGenerateConfig> {
    let obj = d.mapping(cfg, &ctx.path, KEYS)?;
    let errors_before = d.diags.len();
    let (template_id, prompt) = prompt_source(d, &obj);
    let system = obj
        .get("system")
        .and_then(|n| template(d, n, &obj.path_of("system")));
    let variables = variables(d, &obj);
    let output_key = data_key(d, &obj, "output_key");
    let json_schema = d
        .required(
            &obj,
            "json_schema",
            "the JSON Schema the answer must satisfy",
        )
        .and_then(|n| schema::check(d, n, &obj.path_of("json_schema")));
    if let (Some(s), None) = (&json_schema, &output_key)
        && s.get("type").and_then(|t| t.as_str()) != Some("object")
    {
        d.err(
            codes::SCHEMA_INVALID,
            &obj.path_of("json_schema"),
            obj.value_loc("json_schema"),
            "without `output_key` the answer is merged into runtime key by key, so the \
                 schema must declare `type: object` (or set `output_key`)",
        );
    }
    let provider = obj
        .get("provider")
        .and_then(|n| d.one_of(n, &obj.path_of("provider"), PROVIDERS, "provider"))
        .and_then(|p| serde_json::from_value(serde_json::Value::String(p)).ok());
    let model = d.opt_str(&obj, "model");
    let temperature = d.opt_number(&obj, "temperature");
    if let Some(t) = temperature.filter(|t| !(0.0..=2.0).contains(t)) {
        d.err(
            codes::VALUE_INVALID,
            &obj.path_of("temperature"),
            obj.value_loc("temperature"),
            format!("temperature {t} is outside [0, 2]"),
        );
    }
    let max_tokens = d.opt_count(&obj, "max_tokens", 1);
    let timeout_s = d.opt_number(&obj, "timeout_s");
    if let Some(t) = timeout_s.filter(|t| *t <= 0.0 || *t > 3600.0) {
        d.err(
            codes::VALUE_INVALID,
            &obj.path_of("timeout_s"),
            obj.value_loc("timeout_s"),
            format!("timeout_s {t} is outside (0, 3600]"),
        );
    }
    let mock = obj
        .get("mock")
        .and_then(|n| mock(d, n, &obj.path_of("mock")));
    if d.diags.len() != errors_before {
        return None;
    }
    Some(AiGenerateConfig {
        template_id,
        prompt,
        system,
        variables,
        output_key,
        json_schema: json_schema?,
        provider,
        model,
        temperature,
        max_tokens,
        timeout_s,
        mock,
    })
}

/// Exactly one of `template_id` and `prompt`.
fn prompt_source(d: &mut Decoder, obj: &Obj<'_>) -> (Option<TemplateRef>, Option<String>) {
    match (obj.get("template_id"), obj.get("prompt")) {
        (Some(_), Some(p)) => {
            d.err(
                codes::KEY_CONFLICT,
                &obj.path_of("prompt"),
                p.loc,
                "give either `template_id` or `prompt`, not both",
            );
            (None, None)
        }
        (None, None) => {
            d.missing(
                obj,
                "prompt",
                "an inline `prompt` or a stored `template_id`",
            );
            (None, None)
        }
        (Some(t), None) => {
            let path = obj.path_of("template_id");
            let parsed = d.string(t, &path).and_then(|text| {
                TemplateRef::parse(&text)
                    .map_err(|msg| d.err(codes::VALUE_INVALID, &path, t.loc, msg))
                    .ok()
            });
            (parsed, None)
        }
        (None, Some(p)) => {
            let prompt = template(d, p, &obj.path_of("prompt"));
            if prompt.as_deref().is_some_and(|s| s.trim().is_empty()) {
                d.err(
                    codes::VALUE_INVALID,
                    &obj.path_of("prompt"),
                    p.loc,
                    "the prompt is empty",
                );
                return (None, None);
            }
            (None, prompt)
        }
    }
}

fn variables(d: &mut Decoder, obj: &Obj<'_>) -> Vec<String> {
    let Some(node) = obj.get("variables") else {
        return Vec::new();
    };
    let path = obj.path_of("variables");
    let Some(list) = d.string_list(node, &path) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, (name, loc)) in list.into_iter().enumerate() {
        if !is_data_key(&name) {
            d.err(
                codes::VALUE_INVALID,
                &format!("{path}[{i}]"),
                loc,
                format!("`{name}` is not a valid runtime key"),
            );
        }
        out.push(name);
    }
    out
}

fn mock(d: &mut Decoder, node: &Node, path: &str) -> Option<MockConfig> {
    let obj = d.mapping(node, path, &["mode", "fail_times"])?;
    let mode = d
        .required(
            &obj,
            "mode",
            "success, schema_violation, timeout or transient_error",
        )
        .and_then(|n| d.one_of(n, &obj.path_of("mode"), MOCK_MODES, "mock mode"))
        .and_then(|m| serde_json::from_value(serde_json::Value::String(m)).ok());
    let fail_times = d
        .opt_count(&obj, "fail_times", 0)
        .map(|n| n.min(u32::MAX as u64) as u32);
    Some(MockConfig {
        mode: mode?,
        fail_times,
    })
}
