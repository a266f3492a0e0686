//! The mock provider: no network, deterministic, schema-driven.
//!
//! An answer depends only on the provider's seed (`MOCK_AI_SEED`, default 42), the rendered
//! conversation (system prompt and messages) and the step's schema: the seed and conversation
//! are hashed with SHA-256 into a generator seed, and the generator walks the schema to build
//! an instance that satisfies it — objects (required properties always, optional ones by the
//! generator's choice), arrays within `minItems`/`maxItems`, strings of lorem-ipsum words with
//! exactly bounded lengths or in a `format` (date, date-time, time, email, uri, uuid, ipv4,
//! ipv6, hostname, duration), numbers within inclusive/exclusive bounds and `multipleOf`,
//! `enum`/`const` anywhere, `type` lists, `anyOf`/`oneOf` (the first non-null branch), `allOf`
//! (merged), and local `$ref`s (`#/$defs/…`, `#/definitions/…`, bounded depth). Candidates are
//! checked with the step's own validator and the first valid one is returned; a schema the
//! generator cannot satisfy (say, a `pattern` that random words do not match) yields its best
//! effort, which the step then treats as a schema violation.
//!
//! Failure modes come from the step's `config.mock` (success by default; `fail_times`
//! defaults to 1):
//! - `schema_violation`: for schema attempts `1..=fail_times` the answer breaks the schema — a
//!   required property dropped, a property of the wrong type, or a wrong top-level value; a
//!   schema that accepts every JSON value gets text that is not JSON at all.
//! - `timeout`: every call fails at once with [`AiError::Timeout`] (no sleeping).
//! - `transient_error`: the first `fail_times` calls for a conversation fail with
//!   [`AiError::Transient`]; the next succeeds and resets the count, so the same conversation
//!   asked again later (another run) fails the same way again.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use async_trait::async_trait;
use scaff_core::ai::{AiError, AiProvider, AiRequest, AiResponse, Role, SchemaCheck};
use scaff_core::workflow::MockMode;
use serde_json::{Map, Number, Value as Json, json};
use sha2::{Digest, Sha256};

/// The seed used when `MOCK_AI_SEED` is not set.
pub const DEFAULT_MOCK_SEED: u64 = 42;

/// The model name the mock reports.
pub const MOCK_MODEL: &str = "mock-1";

/// How deep the generator follows schemas (guards recursive `$ref`s).
const MAX_DEPTH: usize = 32;
/// Below this depth optional properties and extra array items are left out.
const OPTIONAL_DEPTH: usize = 6;
/// The longest array the generator builds, whatever `minItems` says.
const MAX_ITEMS: u64 = 1_000;
/// The longest string the generator builds, whatever `minLength` says.
const MAX_STRING: u64 = 100_000;
/// Candidates tried before settling for an invalid best effort.
const CANDIDATES: u64 = 8;
/// Conversations whose transient failures are being counted, at most.
const MAX_TRACKED: usize = 10_000;
/// The answer when a schema violation is asked for and every JSON value is valid.
const NOT_JSON: &str = "I am sorry, I cannot answer in JSON right now.";

/// Words the generated text is made of.
const WORDS: &[&str] = &[
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "do",
    "eiusmod",
    "tempor",
    "incididunt",
    "ut",
    "labore",
    "et",
    "dolore",
    "magna",
    "aliqua",
    "enim",
    "ad",
    "minim",
    "veniam",
    "quis",
    "nostrud",
    "exercitation",
    "ullamco",
    "laboris",
    "nisi",
    "aliquip",
    "ex",
    "ea",
    "commodo",
    "consequat",
    "duis",
    "aute",
    "irure",
    "in",
    "reprehenderit",
    "voluptate",
    "velit",
    "esse",
    "cillum",
    "fugiat",
    "nulla",
    "pariatur",
];

/// The deterministic, offline provider (see the module documentation).
#[derive(Debug)]
pub struct MockProvider {
    seed: u64,
    /// Transient failures so far, per conversation (hash of the conversation).
    transient_calls: Mutex<HashMap<u64, u32>>,
}

impl Default for MockProvider {
    /// A mock with [`DEFAULT_MOCK_SEED`].
    fn default() -> Self {
        Self::new(DEFAULT_MOCK_SEED)
    }
}

impl MockProvider {
    /// A mock whose answers are determined by `seed` (the server passes `MOCK_AI_SEED`) and the
    /// conversation.
    pub fn new(seed: u64) -> Self {
        Self {
            seed,
            transient_calls: Mutex::new(HashMap::new()),
        }
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Counts a call of a `transient_error` conversation; true when this call should fail.
    fn fails_transiently(&self, conversation: u64, fail_times: u32) -> bool {
        let mut calls = self
            .transient_calls
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let so_far = calls.get(&conversation).copied().unwrap_or(0);
        if so_far < fail_times {
            if calls.len() >= MAX_TRACKED && !calls.contains_key(&conversation) {
                calls.clear();
            }
            calls.insert(conversation, so_far + 1);
            true
        } else {
            calls.remove(&conversation);
            false
        }
    }
}

#[async_trait]
impl AiProvider for MockProvider {
    async fn generate(&self, request: &AiRequest) -> Result<AiResponse, AiError> {
        let (mode, fail_times) = match &request.mock {
            Some(config) => (config.mode, config.fail_times.unwrap_or(1)),
            None => (MockMode::Success, 1),
        };
        match mode {
            MockMode::Timeout => return Err(AiError::Timeout(request.timeout)),
            MockMode::TransientError
                if self.fails_transiently(conversation_hash(None, request), fail_times) =>
            {
                return Err(AiError::Transient {
                    message: "mock provider: simulated overload (mode transient_error)".into(),
                    retry_after: None,
                });
            }
            _ => {}
        }
        let seed = conversation_hash(Some(self.seed), request);
        let text = if mode == MockMode::SchemaViolation && request.attempt <= fail_times {
            violating_answer(&request.json_schema, seed)
        } else {
            valid_answer(&request.json_schema, seed).to_string()
        };
        let prompt_tokens = request
            .messages
            .iter()
            .map(|m| approx_tokens(&m.content))
            .sum::<u64>()
            + request.system.as_deref().map_or(0, approx_tokens);
        Ok(AiResponse {
            tokens_output: approx_tokens(&text),
            tokens_prompt: prompt_tokens.max(1),
            text,
            model: MOCK_MODEL.into(),
        })
    }
}

/// A stable hash of the conversation (and the seed, when given).
fn conversation_hash(seed: Option<u64>, request: &AiRequest) -> u64 {
    let mut hasher = Sha256::new();
    hasher.update(b"scaff-mock-v1\0");
    if let Some(seed) = seed {
        hasher.update(seed.to_le_bytes());
    }
    let mut field = |tag: u8, text: &str| {
        hasher.update([tag]);
        hasher.update((text.len() as u64).to_le_bytes());
        hasher.update(text.as_bytes());
    };
    if let Some(system) = &request.system {
        field(b's', system);
    }
    for m in &request.messages {
        let tag = match m.role {
            Role::User => b'u',
            Role::Assistant => b'a',
        };
        field(tag, &m.content);
    }
    hasher
        .finalize()
        .iter()
        .take(8)
        .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
}

/// A rough, deterministic token count: the larger of words × 4/3 and characters / 4, at least 1.
fn approx_tokens(text: &str) -> u64 {
    let words = text.split_whitespace().count() as u64;
    let chars = text.chars().count() as u64;
    (words * 4).div_ceil(3).max(chars.div_ceil(4)).max(1)
}

/// The first generated instance that satisfies `schema` (of a few candidates), or the first
/// candidate when none does or the schema does not compile.
fn valid_answer(schema: &Json, seed: u64) -> Json {
    let check = SchemaCheck::compile(schema).ok();
    valid_instance(schema, seed, check.as_ref())
}

fn valid_instance(schema: &Json, seed: u64, check: Option<&SchemaCheck>) -> Json {
    let mut first = None;
    for i in 0..CANDIDATES {
        let candidate =
            Generator::new(schema, seed ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).value(schema, 0);
        match check {
            Some(check) if !check.violations(&candidate).is_empty() => {
                first.get_or_insert(candidate);
            }
            _ => return candidate,
        }
    }
    first.unwrap_or(Json::Null)
}

/// An answer that breaks `schema`: a valid instance with a required property dropped, or one
/// property of the wrong type, or a wrong top-level value; text that is not JSON when the
/// schema accepts everything (or does not compile).
fn violating_answer(schema: &Json, seed: u64) -> String {
    let Ok(check) = SchemaCheck::compile(schema) else {
        return NOT_JSON.into();
    };
    let rejected = |v: &Json| !check.violations(v).is_empty();
    let valid = valid_instance(schema, seed, Some(&check));
    if let Json::Object(object) = &valid {
        let required = schema.get("required").and_then(Json::as_array);
        for name in required.into_iter().flatten().filter_map(Json::as_str) {
            let mut broken = object.clone();
            if broken.shift_remove(name).is_some() && rejected(&Json::Object(broken.clone())) {
                return Json::Object(broken).to_string();
            }
        }
        for (name, value) in object {
            let mut broken = object.clone();
            broken.insert(name.clone(), wrong_type(value));
            if rejected(&Json::Object(broken.clone())) {
                return Json::Object(broken).to_string();
            }
        }
    }
    let wrong_roots = [
        json!("not valid"),
        json!(12345),
        json!([]),
        json!({}),
        Json::Null,
        json!(true),
        wrong_type(&valid),
    ];
    wrong_roots
        .into_iter()
        .find(|v| rejected(v))
        .map_or_else(|| NOT_JSON.into(), |v| v.to_string())
}

/// A value of another JSON type than `value`.
fn wrong_type(value: &Json) -> Json {
    match value {
        Json::String(_) => json!(12345),
        Json::Number(_) => json!("not a number"),
        Json::Bool(_) => json!("yes"),
        Json::Array(_) => json!("not a list"),
        Json::Object(_) => json!("not an object"),
        Json::Null => json!(0),
    }
}

/// SplitMix64: small, fast, and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// Uniform in `lo..=hi` (`lo` when the range is empty).
    fn between(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        let span = (i128::from(hi) - i128::from(lo) + 1) as u128;
        let offset = u128::from(self.next_u64()) % span;
        (i128::from(lo) + offset as i128) as i64
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `numerator / denominator`.
    fn chance(&mut self, numerator: u64, denominator: u64) -> bool {
        self.below(denominator) < numerator
    }

    fn word(&mut self) -> &'static str {
        WORDS[self.below(WORDS.len() as u64) as usize]
    }
}

/// Walks a schema and builds an instance of it.
struct Generator<'a> {
    root: &'a Json,
    rng: Rng,
}

impl<'a> Generator<'a> {
    fn new(root: &'a Json, seed: u64) -> Self {
        Self {
            root,
            rng: Rng(seed),
        }
    }

    /// A local reference's target (`#`, `#/$defs/x`, `#/definitions/x`, any JSON pointer).
    fn resolve(&self, reference: &str) -> Option<&'a Json> {
        let pointer = reference.strip_prefix('#')?;
        let root: &'a Json = self.root;
        if pointer.is_empty() {
            return Some(root);
        }
        let decoded: String = pointer.replace("%25", "%").replace("%24", "$");
        root.pointer(&decoded)
    }

    /// `schema` with a `$ref` target resolved (one level), for merging.
    fn dereferenced(&self, schema: &Json) -> Json {
        match schema.get("$ref").and_then(Json::as_str) {
            Some(reference) => {
                let mut merged = self.resolve(reference).cloned().unwrap_or(json!({}));
                if let (Json::Object(merged), Json::Object(siblings)) = (&mut merged, schema) {
                    for (k, v) in siblings {
                        if k != "$ref" {
                            merged.insert(k.clone(), v.clone());
                        }
                    }
                }
                merged
            }
            None => schema.clone(),
        }
    }

    fn value(&mut self, schema: &Json, depth: usize) -> Json {
        if depth > MAX_DEPTH {
            return Json::Null;
        }
        let map = match schema {
            Json::Object(map) => map,
            Json::Bool(false) => return Json::Null,
            _ => return self.free_value(depth),
        };
        if let Some(reference) = map.get("$ref").and_then(Json::as_str) {
            let target = self.resolve(reference);
            if map.len() == 1 {
                return match target {
                    Some(target) => self.value(target, depth + 1),
                    None => self.free_value(depth),
                };
            }
            let mut merged = map.clone();
            merged.shift_remove("$ref");
            if let Some(Json::Object(target)) = target {
                merge_into(&mut merged, target);
            }
            return self.value(&Json::Object(merged), depth + 1);
        }
        if let Some(all) = map.get("allOf").and_then(Json::as_array) {
            let mut merged = map.clone();
            merged.shift_remove("allOf");
            for part in all {
                if let Json::Object(part) = self.dereferenced(part) {
                    merge_into(&mut merged, &part);
                }
            }
            return self.value(&Json::Object(merged), depth + 1);
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(branches) = map.get(key).and_then(Json::as_array) {
                let chosen = branches
                    .iter()
                    .map(|b| self.dereferenced(b))
                    .find(|b| !only_null(b))
                    .or_else(|| branches.first().cloned());
                let mut merged = map.clone();
                merged.shift_remove(key);
                match chosen {
                    Some(Json::Object(branch)) => merge_into(&mut merged, &branch),
                    Some(Json::Bool(false)) => return Json::Null,
                    _ => {}
                }
                return self.value(&Json::Object(merged), depth + 1);
            }
        }
        if let Some(constant) = map.get("const") {
            return constant.clone();
        }
        if let Some(options) = map.get("enum").and_then(Json::as_array)
            && !options.is_empty()
        {
            let i = self.rng.below(options.len() as u64) as usize;
            return options[i].clone();
        }
        match schema_type(map) {
            Some("object") => self.object(map, depth),
            Some("array") => self.array(map, depth),
            Some("string") => self.string(map),
            Some("integer") => self.number(map, true),
            Some("number") => self.number(map, false),
            Some("boolean") => Json::Bool(self.rng.chance(1, 2)),
            Some("null") => Json::Null,
            _ if depth == 0 => self.object(map, depth),
            _ => self.free_value(depth),
        }
    }

    /// A value for a schema without constraints: an object at the top (answers are merged
    /// into the run key by key), a short text below.
    fn free_value(&mut self, depth: usize) -> Json {
        if depth == 0 {
            self.object(&Map::new(), depth)
        } else {
            let len = 10 + self.rng.below(30);
            Json::String(self.text(len as usize))
        }
    }

    fn object(&mut self, map: &Map<String, Json>, depth: usize) -> Json {
        let empty = Map::new();
        let properties = map
            .get("properties")
            .and_then(Json::as_object)
            .unwrap_or(&empty);
        let required: Vec<&str> = map
            .get("required")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
            .filter_map(Json::as_str)
            .collect();
        let min_properties = map
            .get("minProperties")
            .and_then(Json::as_u64)
            .unwrap_or(0)
            .min(MAX_ITEMS) as usize;
        let max_properties = map
            .get("maxProperties")
            .and_then(Json::as_u64)
            .map_or(usize::MAX, |n| n as usize);
        let additional = map.get("additionalProperties");
        let closed = matches!(additional, Some(Json::Bool(false)));

        // Which properties: every required one, optional ones by chance (not too deep).
        let mut chosen: Vec<&str> = required.clone();
        for name in properties.keys() {
            if chosen.len() >= max_properties.max(required.len()) {
                break;
            }
            if !required.contains(&name.as_str()) && depth < OPTIONAL_DEPTH && self.rng.chance(2, 3)
            {
                chosen.push(name);
            }
        }
        for name in properties.keys() {
            if chosen.len() >= min_properties.min(max_properties) {
                break;
            }
            if !chosen.contains(&name.as_str()) {
                chosen.push(name);
            }
        }

        let mut out = Map::new();
        for (name, schema) in properties {
            if chosen.contains(&name.as_str()) {
                let value = self.value(schema, depth + 1);
                out.insert(name.clone(), value);
            }
        }
        let extra_schema = additional.filter(|a| a.is_object());
        for name in &required {
            if !out.contains_key(*name) {
                let value = match extra_schema {
                    Some(schema) => self.value(schema, depth + 1),
                    None => self.free_value(depth + 1),
                };
                out.insert((*name).to_string(), value);
            }
        }
        let wanted_extras = if properties.is_empty() && required.is_empty() {
            min_properties.max(1)
        } else {
            min_properties
        };
        let mut n = 0;
        while !closed && out.len() < wanted_extras.min(max_properties) {
            let name = if n == 0 && properties.is_empty() {
                "answer".to_string()
            } else {
                format!("{}_{n}", self.rng.word())
            };
            n += 1;
            if out.contains_key(&name) {
                continue;
            }
            let value = match extra_schema {
                Some(schema) => self.value(schema, depth + 1),
                None => self.free_value(depth + 1),
            };
            out.insert(name, value);
        }
        Json::Object(out)
    }

    fn array(&mut self, map: &Map<String, Json>, depth: usize) -> Json {
        // 2020-12 `prefixItems` + `items`, or the older `items: [..]` + `additionalItems`.
        let (prefix, rest): (&[Json], Option<&Json>) =
            match (map.get("prefixItems"), map.get("items")) {
                (Some(Json::Array(prefix)), items) => (prefix, items),
                (None, Some(Json::Array(prefix))) => (prefix, map.get("additionalItems")),
                (_, items) => (&[], items),
            };
        let min = map
            .get("minItems")
            .and_then(Json::as_u64)
            .unwrap_or(0)
            .min(MAX_ITEMS);
        let mut max = map
            .get("maxItems")
            .and_then(Json::as_u64)
            .unwrap_or(u64::MAX);
        if matches!(rest, Some(Json::Bool(false))) {
            max = max.min(prefix.len() as u64);
        }
        let lo = if min == 0 && max >= 1 { 1 } else { min };
        let len = if depth >= OPTIONAL_DEPTH {
            lo
        } else {
            let hi = max
                .min(lo.max(prefix.len() as u64).saturating_add(2))
                .max(lo);
            lo + self.rng.below(hi - lo + 1)
        };
        let unique = map.get("uniqueItems") == Some(&Json::Bool(true));
        let contains = map.get("contains");
        let free = Json::Bool(true);
        let mut items: Vec<Json> = Vec::with_capacity(len as usize);
        for i in 0..len as usize {
            let schema = match (i, contains) {
                (0, Some(contains)) => contains,
                _ => prefix.get(i).or(rest).unwrap_or(&free),
            };
            let mut item = self.value(schema, depth + 1);
            let mut tries = 0;
            while unique && items.contains(&item) && tries < 16 {
                item = self.value(schema, depth + 1);
                tries += 1;
            }
            if unique && items.contains(&item) && i as u64 >= min {
                break;
            }
            items.push(item);
        }
        Json::Array(items)
    }

    fn string(&mut self, map: &Map<String, Json>) -> Json {
        let min = map
            .get("minLength")
            .and_then(Json::as_u64)
            .unwrap_or(0)
            .min(MAX_STRING);
        let max = map
            .get("maxLength")
            .and_then(Json::as_u64)
            .unwrap_or(u64::MAX)
            .max(min);
        if let Some(format) = map.get("format").and_then(Json::as_str)
            && let Some(s) = self.formatted(format)
            && (min..=max).contains(&(s.chars().count() as u64))
        {
            return Json::String(s);
        }
        let natural = 12 + self.rng.below(48);
        let len = if (min..=max).contains(&natural) {
            natural
        } else {
            min + self.rng.below(max.saturating_sub(min).min(64) + 1)
        };
        Json::String(self.text(len as usize))
    }

    /// Lorem-ipsum words, capitalised, exactly `len` characters (all ASCII).
    fn text(&mut self, len: usize) -> String {
        let mut s = String::with_capacity(len + 16);
        while s.len() < len {
            if !s.is_empty() {
                s.push(' ');
            }
            s.push_str(self.rng.word());
        }
        s.truncate(len);
        if s.ends_with(' ') {
            s.pop();
            s.push('.');
        }
        if let Some(first) = s.get(..1) {
            let upper = first.to_ascii_uppercase();
            s.replace_range(..1, &upper);
        }
        s
    }

    /// A string in `format`, for the formats the validator checks.
    fn formatted(&mut self, format: &str) -> Option<String> {
        let r = &mut self.rng;
        let date = |r: &mut Rng| {
            format!(
                "{:04}-{:02}-{:02}",
                2020 + r.below(6),
                1 + r.below(12),
                1 + r.below(28)
            )
        };
        let time =
            |r: &mut Rng| format!("{:02}:{:02}:{:02}Z", r.below(24), r.below(60), r.below(60));
        Some(match format {
            "date" => date(r),
            "time" => time(r),
            "date-time" => {
                let d = date(r);
                format!("{d}T{}", time(r))
            }
            "email" | "idn-email" => format!("{}.{}@example.com", r.word(), r.word()),
            "uri" | "url" | "iri" => format!("https://example.com/{}/{}", r.word(), r.word()),
            "uri-reference" | "iri-reference" => format!("/{}/{}", r.word(), r.word()),
            "hostname" | "idn-hostname" => format!("{}.example.com", r.word()),
            "ipv4" => format!("192.0.2.{}", 1 + r.below(254)),
            "ipv6" => format!("2001:db8::{:x}", 1 + r.below(0xfffe)),
            "uuid" => {
                let a = r.next_u64();
                let b = r.next_u64();
                format!(
                    "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
                    a >> 32,
                    (a >> 16) & 0xffff,
                    a & 0xfff,
                    0x8000 | ((b >> 48) & 0x3fff),
                    b & 0xffff_ffff_ffff
                )
            }
            "duration" => format!("P{}D", 1 + r.below(30)),
            "json-pointer" => format!("/{}/{}", r.word(), r.below(10)),
            "regex" => "^[a-z]+$".to_string(),
            _ => return None,
        })
    }

    fn number(&mut self, map: &Map<String, Json>, integer: bool) -> Json {
        let get = |key: &str| {
            map.get(key)
                .and_then(Json::as_f64)
                .filter(|v| v.is_finite())
        };
        // Draft 4 spelled exclusive bounds as booleans next to minimum/maximum.
        let (mut min, mut max) = (get("minimum"), get("maximum"));
        let mut xmin = get("exclusiveMinimum");
        let mut xmax = get("exclusiveMaximum");
        if map.get("exclusiveMinimum") == Some(&Json::Bool(true)) {
            xmin = min.take();
        }
        if map.get("exclusiveMaximum") == Some(&Json::Bool(true)) {
            xmax = max.take();
        }
        let multiple = get("multipleOf").filter(|m| *m > 0.0);
        const LIMIT: f64 = 9.0e15;

        // The tightest bounds, with a default window of about a hundred when open.
        let lower = match (min, xmin) {
            (Some(a), Some(b)) => Some((a.max(b), b >= a)),
            (Some(a), None) => Some((a, false)),
            (None, Some(b)) => Some((b, true)),
            (None, None) => None,
        };
        let upper = match (max, xmax) {
            (Some(a), Some(b)) => Some((a.min(b), b <= a)),
            (Some(a), None) => Some((a, false)),
            (None, Some(b)) => Some((b, true)),
            (None, None) => None,
        };
        let (lo, lo_excl, hi, hi_excl) = match (lower, upper) {
            (Some((lo, le)), Some((hi, he))) => (lo, le, hi, he),
            (Some((lo, le)), None) => (lo, le, if lo < 100.0 { 100.0 } else { lo + 100.0 }, false),
            (None, Some((hi, he))) => (if hi > 1.0 { 1.0 } else { hi - 100.0 }, false, hi, he),
            (None, None) => (1.0, false, 100.0, false),
        };
        let (lo, hi) = (lo.clamp(-LIMIT, LIMIT), hi.clamp(-LIMIT, LIMIT));
        let above = |v: f64| if lo_excl { v > lo } else { v >= lo };
        let below = |v: f64| if hi_excl { v < hi } else { v <= hi };

        if let Some(m) = multiple {
            let mut k_lo = (lo / m).ceil();
            let mut k_hi = (hi / m).floor();
            if !above(k_lo * m) {
                k_lo += 1.0;
            }
            if !below(k_hi * m) {
                k_hi -= 1.0;
            }
            if k_lo <= k_hi && k_hi - k_lo < LIMIT {
                let k = k_lo + self.rng.below((k_hi - k_lo) as u64 + 1) as f64;
                let v = round_to(k * m, decimals(m));
                if integer && v.fract() == 0.0 {
                    return json!(v as i64);
                }
                if !integer {
                    return Number::from_f64(v).map_or(Json::Null, Json::Number);
                }
            }
        }
        if integer {
            let mut lo_i = lo.ceil();
            if lo_excl && lo_i <= lo {
                lo_i += 1.0;
            }
            let mut hi_i = hi.floor();
            if hi_excl && hi_i >= hi {
                hi_i -= 1.0;
            }
            return json!(self.rng.between(lo_i as i64, hi_i as i64));
        }
        let mut v = round_to(lo + self.rng.unit() * (hi - lo), 2);
        if !(above(v) && below(v)) {
            v = lo + (hi - lo) / 2.0;
        }
        Number::from_f64(v).map_or(Json::Null, Json::Number)
    }
}

/// Whether a schema only allows `null`.
fn only_null(schema: &Json) -> bool {
    match schema.get("type") {
        Some(Json::String(t)) => t == "null",
        Some(Json::Array(ts)) => ts.iter().all(|t| t == "null"),
        _ => schema.get("const") == Some(&Json::Null),
    }
}

/// The type to generate: the first non-null of `type`, else guessed from the keywords.
fn schema_type(map: &Map<String, Json>) -> Option<&str> {
    match map.get("type") {
        Some(Json::String(t)) => return Some(t),
        Some(Json::Array(types)) => {
            let names: Vec<&str> = types.iter().filter_map(Json::as_str).collect();
            return names
                .iter()
                .find(|t| **t != "null")
                .or(names.first())
                .copied();
        }
        _ => {}
    }
    let has = |keys: &[&str]| keys.iter().any(|k| map.contains_key(*k));
    if has(&[
        "properties",
        "required",
        "additionalProperties",
        "minProperties",
        "maxProperties",
    ]) {
        Some("object")
    } else if has(&[
        "items",
        "prefixItems",
        "minItems",
        "maxItems",
        "contains",
        "uniqueItems",
    ]) {
        Some("array")
    } else if has(&["minLength", "maxLength", "pattern", "format"]) {
        Some("string")
    } else if has(&[
        "minimum",
        "maximum",
        "exclusiveMinimum",
        "exclusiveMaximum",
        "multipleOf",
    ]) {
        Some("number")
    } else {
        None
    }
}

/// Adds `extra`'s keywords to `base`: properties are merged (recursively), `required` lists
/// joined, and other keywords added where `base` has none.
fn merge_into(base: &mut Map<String, Json>, extra: &Map<String, Json>) {
    for (key, value) in extra {
        match (key.as_str(), base.get_mut(key), value) {
            ("properties", Some(Json::Object(mine)), Json::Object(theirs)) => {
                for (name, schema) in theirs {
                    match (mine.get_mut(name), schema) {
                        (Some(Json::Object(a)), Json::Object(b)) => merge_into(a, b),
                        (Some(_), _) => {}
                        (None, _) => {
                            mine.insert(name.clone(), schema.clone());
                        }
                    }
                }
            }
            ("required", Some(Json::Array(mine)), Json::Array(theirs)) => {
                for name in theirs {
                    if !mine.contains(name) {
                        mine.push(name.clone());
                    }
                }
            }
            (_, Some(_), _) => {}
            (_, None, _) => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

/// Decimal places of a `multipleOf` (at most 12), to undo floating-point noise.
fn decimals(m: f64) -> i32 {
    let mut scaled = m;
    for d in 0..12 {
        if (scaled - scaled.round()).abs() < 1e-9 {
            return d;
        }
        scaled *= 10.0;
    }
    12
}

fn round_to(v: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    let rounded = (v * scale).round() / scale;
    if rounded.is_finite() { rounded } else { v }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use scaff_core::ai::{ChatMessage, extract_json};
    use scaff_core::workflow::{MockConfig, Provider};

    use super::*;
    use crate::executors::ai::test_support::request;

    fn ask(schema: Json, prompt: &str) -> AiRequest {
        let mut req = request(Provider::Mock);
        req.json_schema = schema;
        req.messages = vec![ChatMessage {
            role: Role::User,
            content: prompt.into(),
        }];
        req
    }

    fn with_mode(mut req: AiRequest, mode: MockMode, fail_times: Option<u32>) -> AiRequest {
        req.mock = Some(MockConfig { mode, fail_times });
        req
    }

    /// Whether `text` is JSON that satisfies `schema`; the problems otherwise.
    fn check(schema: &Json, text: &str) -> Result<(), String> {
        let value = extract_json(text)?;
        let problems = SchemaCheck::compile(schema)?.violations(&value);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(format!("{text} breaks the schema: {problems:?}"))
        }
    }

    /// Schemas from the examples and beyond: nesting, bounds, formats, references, unions.
    fn schemas() -> Vec<(&'static str, Json)> {
        vec![
            (
                "content_draft",
                json!({"type": "object", "properties": {"draft": {"type": "string"}},
                       "required": ["draft"]}),
            ),
            (
                "human_loop",
                json!({"type": "object",
                       "properties": {"headline": {"type": "string", "minLength": 5},
                                      "risk": {"type": "string", "enum": ["low", "medium", "high"]}},
                       "required": ["headline", "risk"]}),
            ),
            (
                "triage",
                json!({"type": "object",
                       "properties": {
                           "category": {"type": "string", "enum": ["billing", "bug", "how_to", "abuse"]},
                           "urgency": {"type": "integer", "minimum": 1, "maximum": 5},
                           "labels": {"type": "array", "items": {"type": "string"}}},
                       "required": ["category", "urgency", "labels"]}),
            ),
            (
                "blog_outline",
                json!({"type": "object",
                       "properties": {
                           "title": {"type": "string", "minLength": 10, "maxLength": 100},
                           "sections": {"type": "array", "minItems": 3, "maxItems": 7,
                               "items": {"type": "object",
                                   "properties": {"heading": {"type": "string"},
                                                  "key_points": {"type": "array", "items": {"type": "string"}}},
                                   "required": ["heading", "key_points"]}}},
                       "required": ["title", "sections"]}),
            ),
            (
                "blog_draft",
                json!({"type": "object",
                       "properties": {
                           "content": {"type": "string", "minLength": 500},
                           "meta_description": {"type": "string", "maxLength": 160},
                           "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 5}},
                       "required": ["content", "meta_description", "tags"]}),
            ),
            (
                "nested_arrays_and_exact_lengths",
                json!({"type": "object",
                       "properties": {
                           "matrix": {"type": "array", "minItems": 2, "maxItems": 2,
                               "items": {"type": "array", "minItems": 3, "maxItems": 3,
                                         "items": {"type": "integer", "minimum": -5, "maximum": 5}}},
                           "code": {"type": "string", "minLength": 7, "maxLength": 7},
                           "tiny": {"type": "string", "minLength": 1, "maxLength": 1},
                           "empty": {"type": "array", "maxItems": 0},
                           "many": {"type": "array", "minItems": 12, "items": {"type": "boolean"}}},
                       "required": ["matrix", "code", "tiny", "empty", "many"]}),
            ),
            (
                "numeric_bounds",
                json!({"type": "object",
                       "properties": {
                           "ratio": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1},
                           "step": {"type": "integer", "minimum": 12, "maximum": 38, "multipleOf": 5},
                           "quarter": {"type": "number", "minimum": -3, "maximum": 3, "multipleOf": 0.25},
                           "cents": {"type": "number", "multipleOf": 0.01, "exclusiveMinimum": 0.5,
                                     "maximum": 0.6},
                           "negative": {"type": "integer", "exclusiveMaximum": 0},
                           "big": {"type": "integer", "minimum": 1_000_000_000_000_i64},
                           "pinned": {"type": "integer", "minimum": 7, "maximum": 7},
                           "score": {"type": "number", "minimum": 0.1, "maximum": 0.2}},
                       "required": ["ratio", "step", "quarter", "cents", "negative", "big",
                                    "pinned", "score"]}),
            ),
            (
                "formats",
                json!({"type": "object",
                       "properties": {
                           "day": {"type": "string", "format": "date"},
                           "at": {"type": "string", "format": "date-time"},
                           "clock": {"type": "string", "format": "time"},
                           "mail": {"type": "string", "format": "email"},
                           "link": {"type": "string", "format": "uri"},
                           "id": {"type": "string", "format": "uuid"},
                           "ip": {"type": "string", "format": "ipv4"},
                           "ip6": {"type": "string", "format": "ipv6"},
                           "host": {"type": "string", "format": "hostname"},
                           "period": {"type": "string", "format": "duration"}},
                       "required": ["day", "at", "clock", "mail", "link", "id", "ip", "ip6",
                                    "host", "period"]}),
            ),
            (
                "recursive_defs",
                json!({"$defs": {"node": {"type": "object",
                           "properties": {"name": {"type": "string", "maxLength": 12},
                                          "children": {"type": "array", "maxItems": 2,
                                                       "items": {"$ref": "#/$defs/node"}}},
                           "required": ["name"]}},
                       "type": "object",
                       "properties": {"root": {"$ref": "#/$defs/node"}},
                       "required": ["root"]}),
            ),
            (
                "definitions_and_ref_siblings",
                json!({"definitions": {"money": {"type": "object",
                           "properties": {"amount": {"type": "number", "minimum": 0},
                                          "currency": {"enum": ["EUR", "USD"]}},
                           "required": ["amount", "currency"]}},
                       "type": "object",
                       "properties": {"price": {"$ref": "#/definitions/money",
                                                "description": "what it costs"},
                                      "items": {"type": "array", "minItems": 1,
                                                "items": {"$ref": "#/definitions/money"}}},
                       "required": ["price", "items"]}),
            ),
            (
                "type_lists",
                json!({"type": "object",
                       "properties": {"maybe": {"type": ["null", "string"], "minLength": 3},
                                      "count": {"type": ["integer", "null"], "minimum": 10},
                                      "nothing": {"type": "null"},
                                      "flag": {"type": "boolean"}},
                       "required": ["maybe", "count", "nothing", "flag"]}),
            ),
            (
                "unions",
                json!({"type": "object",
                       "properties": {
                           "either": {"oneOf": [{"type": "string", "enum": ["a", "b"]},
                                                {"type": "integer"}]},
                           "optional": {"anyOf": [{"type": "null"},
                                                  {"type": "object",
                                                   "properties": {"x": {"type": "integer"}},
                                                   "required": ["x"]}]},
                           "both": {"allOf": [{"type": "object", "properties": {"a": {"type": "string"}},
                                               "required": ["a"]},
                                              {"properties": {"b": {"type": "integer", "minimum": 3}},
                                               "required": ["b"]}]}},
                       "required": ["either", "optional", "both"]}),
            ),
            (
                "const_and_enums",
                json!({"type": "object",
                       "properties": {"version": {"const": "v1"},
                                      "shape": {"enum": [{"kind": "circle"}, [1, 2], 3, null]},
                                      "tags": {"type": "array", "uniqueItems": true, "minItems": 3,
                                               "items": {"enum": ["red", "green", "blue", "cyan"]}}},
                       "required": ["version", "shape", "tags"]}),
            ),
            (
                "closed_objects",
                json!({"type": "object", "additionalProperties": false, "minProperties": 2,
                       "properties": {"a": {"type": "string"}, "b": {"type": "string"},
                                      "c": {"type": "string"}}}),
            ),
            (
                "open_map",
                json!({"type": "object", "minProperties": 2, "maxProperties": 4,
                       "additionalProperties": {"type": "integer", "minimum": 0}}),
            ),
            (
                "tuple",
                json!({"type": "array", "prefixItems": [{"type": "string"}, {"type": "integer"}],
                       "items": false, "minItems": 2}),
            ),
            (
                "root_string",
                json!({"type": "string", "minLength": 20, "maxLength": 25}),
            ),
            ("anything", json!({})),
            ("true", json!(true)),
        ]
    }

    #[tokio::test]
    async fn answers_satisfy_a_variety_of_schemas() {
        for (name, schema) in schemas() {
            assert!(SchemaCheck::compile(&schema).is_ok(), "{name} compiles");
            for seed in 0..25 {
                let mock = MockProvider::new(seed);
                let answer = mock
                    .generate(&ask(schema.clone(), &format!("prompt for {name}")))
                    .await
                    .expect("answer");
                if let Err(problem) = check(&schema, &answer.text) {
                    panic!("{name}, seed {seed}: {problem}");
                }
                assert_eq!(answer.model, MOCK_MODEL);
                assert!(answer.tokens_prompt > 0 && answer.tokens_output > 0);
            }
        }
    }

    #[test]
    fn the_first_candidate_is_already_valid() {
        // The generator itself satisfies these schemas; the candidate loop is only a safety net.
        for (name, schema) in schemas() {
            let check = SchemaCheck::compile(&schema).expect("schema");
            for seed in 0..200 {
                let value = Generator::new(&schema, seed).value(&schema, 0);
                let problems = check.violations(&value);
                assert!(
                    problems.is_empty(),
                    "{name}, seed {seed}: {value} {problems:?}"
                );
            }
        }
    }

    #[tokio::test]
    async fn answers_are_deterministic_for_a_seed_and_prompt() {
        let (_, schema) = schemas().swap_remove(3);
        let req = ask(schema, "Write an outline about Rust.");
        let a = MockProvider::new(42).generate(&req).await.expect("answer");
        let b = MockProvider::default()
            .generate(&req)
            .await
            .expect("answer");
        assert_eq!(a, b);

        let other_seed = MockProvider::new(43).generate(&req).await.expect("answer");
        assert_ne!(a.text, other_seed.text);

        let mut other_prompt = req.clone();
        other_prompt.messages[0].content.push('!');
        let c = MockProvider::new(42)
            .generate(&other_prompt)
            .await
            .expect("answer");
        assert_ne!(a.text, c.text);
        assert!(c.tokens_prompt >= a.tokens_prompt);
    }

    #[tokio::test]
    async fn strings_look_like_text_with_exact_bounds() {
        let mut g = Generator::new(&Json::Null, 7);
        for len in [0, 1, 2, 5, 17, 64, 501] {
            let s = g.text(len);
            assert_eq!(s.chars().count(), len, "{s:?}");
            assert!(!s.ends_with(' ') && !s.starts_with(' '), "{s:?}");
        }
        let words = g.text(80);
        assert!(words.split(' ').count() > 5, "{words}");
        assert!(
            words
                .chars()
                .all(|c| c.is_ascii_alphabetic() || c == ' ' || c == '.')
        );
    }

    #[tokio::test]
    async fn schema_violations_for_fail_times_attempts_then_valid() {
        for (name, schema) in schemas() {
            for fail_times in [None, Some(2)] {
                let mock = MockProvider::new(42);
                let base = ask(schema.clone(), "prompt");
                let failing = fail_times.unwrap_or(1);
                for attempt in 1..=failing + 1 {
                    let mut req = with_mode(base.clone(), MockMode::SchemaViolation, fail_times);
                    req.attempt = attempt;
                    let answer = mock.generate(&req).await.expect("answer");
                    let result = check(&schema, &answer.text);
                    if attempt <= failing {
                        assert!(result.is_err(), "{name} attempt {attempt}: {}", answer.text);
                    } else {
                        assert_eq!(result, Ok(()), "{name} attempt {attempt}");
                    }
                }
            }
        }
    }

    #[tokio::test]
    async fn violations_prefer_a_missing_required_property() {
        let (_, schema) = schemas().swap_remove(1);
        let req = with_mode(ask(schema, "p"), MockMode::SchemaViolation, None);
        let answer = MockProvider::new(1).generate(&req).await.expect("answer");
        let value: Json = serde_json::from_str(&answer.text).expect("JSON");
        assert!(
            value.is_object() && value.get("headline").is_none(),
            "{value}"
        );
        assert!(value.get("risk").is_some(), "{value}");
    }

    #[tokio::test]
    async fn transient_errors_then_success_per_conversation() {
        let mock = MockProvider::new(42);
        let (_, schema) = schemas().swap_remove(0);
        let req = with_mode(
            ask(schema.clone(), "one"),
            MockMode::TransientError,
            Some(2),
        );
        let other = with_mode(ask(schema, "two"), MockMode::TransientError, None);
        for _ in 0..2 {
            assert!(matches!(
                mock.generate(&req).await,
                Err(AiError::Transient {
                    retry_after: None,
                    ..
                })
            ));
        }
        // Another conversation counts on its own (default fail_times 1).
        assert!(matches!(
            mock.generate(&other).await,
            Err(AiError::Transient { .. })
        ));
        let answer = mock.generate(&req).await.expect("third call succeeds");
        assert_eq!(check(&req.json_schema, &answer.text), Ok(()));
        assert!(mock.generate(&other).await.is_ok());
        // The count restarts after a success: the same conversation later fails again.
        assert!(mock.generate(&req).await.is_err());
    }

    #[tokio::test]
    async fn timeouts_fail_at_once() {
        let mut req = with_mode(ask(json!({"type": "object"}), "p"), MockMode::Timeout, None);
        req.timeout = Duration::from_secs(30);
        let started = Instant::now();
        let result = MockProvider::default().generate(&req).await;
        assert_eq!(result, Err(AiError::Timeout(Duration::from_secs(30))));
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn success_mode_ignores_fail_times() {
        let req = with_mode(
            ask(schemas().swap_remove(0).1, "p"),
            MockMode::Success,
            Some(3),
        );
        let answer = MockProvider::default()
            .generate(&req)
            .await
            .expect("answer");
        assert_eq!(check(&req.json_schema, &answer.text), Ok(()));
    }

    #[test]
    fn tokens_are_rough_and_never_zero() {
        assert_eq!(approx_tokens(""), 1);
        assert_eq!(approx_tokens("one two three"), 4);
        assert_eq!(approx_tokens(&"x".repeat(400)), 100);
    }
}
