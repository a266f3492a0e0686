//! `api_call`: method, URL, headers, query, body (strings are templates), timeout, retries
//! and the statuses that count as success.

use std::collections::BTreeMap;

use super::super::decode::{Decoder, Obj, index, join};
use super::super::{ApiCallConfig, DEFAULT_API_RETRIES, DEFAULT_API_TIMEOUT_S, HTTP_METHODS};
use super::{Ctx, data_key, template, templates_within};
use crate::diag::codes;
use crate::located::{Node, Value};

const KEYS: &[&str] = &[
    "method",
    "url",
    "headers",
    "query",
    "body",
    "timeout_s",
    "output_key",
    "expect_status",
    "max_retries",
];

/// The longest per-request timeout accepted, in seconds.
const MAX_TIMEOUT_S: f64 = 3_600.0;
/// The most retries accepted.
const MAX_RETRIES: u64 = 10;

pub(super) fn decode(d: &mut Decoder, cfg: &Node, ctx: &mut Ctx<'_>) -> Option<ApiCallConfig> {
    let obj = d.mapping(cfg, &ctx.path, KEYS)?;
    let errors_before = d.diags.len();
    let method = d
        .required(&obj, "method", "GET, POST, PUT, PATCH, DELETE, …")
        .and_then(|n| {
            let upper = n.as_str().map(str::to_ascii_uppercase);
            match upper {
                Some(m) if HTTP_METHODS.contains(&m.as_str()) => Some(m),
                _ => d.one_of(n, &obj.path_of("method"), HTTP_METHODS, "HTTP method"),
            }
        });
    let url = d
        .required(&obj, "url", "the URL to call (http or https)")
        .and_then(|n| url(d, n, &obj.path_of("url")));
    let headers = string_map(d, &obj, "headers");
    let query = string_map(d, &obj, "query");
    let body = obj.get("body").map(|n| {
        templates_within(d, n, &obj.path_of("body"));
        n.to_json()
    });
    let timeout_s = d.opt_number(&obj, "timeout_s");
    if let Some(t) = timeout_s.filter(|t| *t <= 0.0 || *t > MAX_TIMEOUT_S) {
        d.err(
            codes::VALUE_INVALID,
            &obj.path_of("timeout_s"),
            obj.value_loc("timeout_s"),
            format!("timeout_s {t} is outside (0, {MAX_TIMEOUT_S}]"),
        );
    }
    let max_retries = d.opt_count(&obj, "max_retries", 0);
    if let Some(r) = max_retries.filter(|r| *r > MAX_RETRIES) {
        d.err(
            codes::VALUE_INVALID,
            &obj.path_of("max_retries"),
            obj.value_loc("max_retries"),
            format!("max_retries {r} is more than {MAX_RETRIES}"),
        );
    }
    let expect_status = expect_status(d, &obj);
    let output_key = data_key(d, &obj, "output_key");
    if d.diags.len() != errors_before {
        return None;
    }
    Some(ApiCallConfig {
        method: method?,
        url: url?,
        headers,
        query,
        body,
        timeout_s: timeout_s.unwrap_or(DEFAULT_API_TIMEOUT_S),
        output_key,
        expect_status,
        max_retries: max_retries.map_or(DEFAULT_API_RETRIES, |r| r as u32),
    })
}

fn url(d: &mut Decoder, node: &Node, path: &str) -> Option<String> {
    let url = template(d, node, path)?;
    let lower = url.trim_start().to_ascii_lowercase();
    let templated_start = lower.starts_with("{{") || lower.starts_with("{%");
    if !templated_start && !lower.starts_with("http://") && !lower.starts_with("https://") {
        d.err(
            codes::VALUE_INVALID,
            path,
            node.loc,
            format!("`{url}` is not an http or https URL"),
        );
        return None;
    }
    Some(url)
}

/// A mapping of names to templated strings (numbers and booleans are taken as their text).
fn string_map(d: &mut Decoder, obj: &Obj<'_>, key: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Some(node) = obj.get(key) else {
        return out;
    };
    let path = obj.path_of(key);
    let Value::Map(entries) = &node.value else {
        d.mismatch(node, &path, "a mapping of names to strings");
        return out;
    };
    for (k, v) in entries {
        let item_path = join(&path, &k.name);
        let text = match &v.value {
            Value::Str(_) => template(d, v, &item_path),
            Value::Int(_) | Value::Float(_) | Value::Bool(_) => Some(v.to_json().to_string()),
            _ => {
                d.mismatch(v, &item_path, "a string");
                None
            }
        };
        if let Some(text) = text {
            out.insert(k.name.clone(), text);
        }
    }
    out
}

fn expect_status(d: &mut Decoder, obj: &Obj<'_>) -> Vec<u16> {
    let Some(node) = obj.get("expect_status") else {
        return Vec::new();
    };
    let path = obj.path_of("expect_status");
    let Some(items) = d.list(node, &path) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match item.value {
            Value::Int(code) if (100..=599).contains(&code) => out.push(code as u16),
            _ => d.err(
                codes::VALUE_INVALID,
                &index(&path, i),
                item.loc,
                "expected an HTTP status code between 100 and 599",
            ),
        }
    }
    out
}
