//! Tests of [`parse`]: every validation rule reports its stable code, the path into the
//! document and the 1-based line and column of the offending node (a key problem points at
//! the key, a value problem at the value's first character, a missing key at the mapping
//! that lacks it). The shared example workflows must parse and round-trip through JSON.

use serde_json::json;

use super::*;
use crate::diag::{Diagnostic, codes};

/// The shared example workflows, by file name.
const EXAMPLES: &[(&str, &str)] = &[
    (
        "blog_post.yaml",
        include_str!("../../../examples/blog_post.yaml"),
    ),
    (
        "chain10.yaml",
        include_str!("../../../examples/chain10.yaml"),
    ),
    (
        "content_draft.yaml",
        include_str!("../../../examples/content_draft.yaml"),
    ),
    (
        "human_loop.yaml",
        include_str!("../../../examples/human_loop.yaml"),
    ),
    ("triage.yaml", include_str!("../../../examples/triage.yaml")),
];

/// Joins `lines` with newlines: element `i` is line `i + 1` of the document.
fn lines(ls: &[&str]) -> String {
    let mut src = ls.join("\n");
    src.push('\n');
    src
}

/// A one-step workflow whose step `a` has type `ty`. Line 6 is `    config:` and the lines of
/// `config` follow from line 7, indented by six spaces: a character at column `c` of a
/// config line is at column `6 + c` of the document.
fn step(ty: &str, config: &[&str]) -> String {
    let ty_line = format!("    type: {ty}");
    let mut all = vec![
        "name: t",
        "start_step: a",
        "steps:",
        "  - id: a",
        &ty_line,
        "    config:",
    ];
    let config: Vec<String> = config.iter().map(|l| format!("      {l}")).collect();
    all.extend(config.iter().map(String::as_str));
    lines(&all)
}

/// A one-step workflow whose step `a` is a form with `fields`, one per line from line 8.
/// Each line is `        - <field>`, so a field's first character is at column 11.
fn form(fields: &[&str]) -> String {
    let items: Vec<String> = fields.iter().map(|f| format!("  - {f}")).collect();
    let mut config = vec!["fields:"];
    config.extend(items.iter().map(String::as_str));
    step("form", &config)
}

/// Parses `src`, which must succeed.
fn ok(src: &str) -> Workflow {
    match parse(src) {
        Ok(wf) => wf,
        Err(ds) => panic!("expected a valid workflow, got {ds:#?}\n--- source ---\n{src}"),
    }
}

/// Parses `src`, which must fail, and returns every problem.
fn diags(src: &str) -> Vec<Diagnostic> {
    match parse(src) {
        Ok(wf) => panic!("expected problems, parsed to {wf:#?}\n--- source ---\n{src}"),
        Err(ds) => ds,
    }
}

/// Parses `src`, which must fail with exactly one problem, and returns it.
fn one(src: &str) -> Diagnostic {
    let ds = diags(src);
    assert_eq!(
        ds.len(),
        1,
        "expected exactly one problem, got {ds:#?}\n--- source ---\n{src}"
    );
    ds.into_iter().next().expect("one problem")
}

/// Asserts a problem's code, path, line and column.
#[track_caller]
fn assert_at(d: &Diagnostic, code: &str, path: &str, line: usize, column: usize) {
    assert_eq!(
        (d.code, d.path.as_str(), d.line, d.column),
        (code, path, line, column),
        "{d:#?}"
    );
}

/// Asserts a problem's code, path and line (for the tests that pin the column separately).
#[track_caller]
fn assert_on_line(d: &Diagnostic, code: &str, path: &str, line: usize) {
    assert_eq!(
        (d.code, d.path.as_str(), d.line),
        (code, path, line),
        "{d:#?}"
    );
}

/// Asserts that a problem's message contains `text`.
#[track_caller]
fn assert_says(d: &Diagnostic, text: &str) {
    assert!(
        d.message.contains(text),
        "message should contain {text:?}: {d:#?}"
    );
}

fn kind<'w>(wf: &'w Workflow, id: &str) -> &'w StepKind {
    &wf.step(id).unwrap_or_else(|| panic!("no step `{id}`")).kind
}

fn form_of<'w>(wf: &'w Workflow, id: &str) -> &'w FormConfig {
    match kind(wf, id) {
        StepKind::Form(cfg) => cfg,
        other => panic!("step `{id}` is not a form: {other:?}"),
    }
}

fn approval_of<'w>(wf: &'w Workflow, id: &str) -> &'w ApprovalConfig {
    match kind(wf, id) {
        StepKind::Approval(cfg) => cfg,
        other => panic!("step `{id}` is not an approval: {other:?}"),
    }
}

fn ai_of<'w>(wf: &'w Workflow, id: &str) -> &'w AiGenerateConfig {
    match kind(wf, id) {
        StepKind::AiGenerate(cfg) => cfg,
        other => panic!("step `{id}` is not ai_generate: {other:?}"),
    }
}

fn api_of<'w>(wf: &'w Workflow, id: &str) -> &'w ApiCallConfig {
    match kind(wf, id) {
        StepKind::ApiCall(cfg) => cfg,
        other => panic!("step `{id}` is not api_call: {other:?}"),
    }
}

fn timeout_text(wait: &WaitPolicy) -> Option<String> {
    wait.timeout.map(|t| t.to_string())
}

// ----- the shared examples -----------------------------------------------------------------

#[test]
fn every_example_parses() {
    for (name, src) in EXAMPLES {
        if let Err(ds) = parse(src) {
            panic!("{name} does not parse: {ds:#?}");
        }
    }
}

#[test]
fn blog_post_example_decodes_to_the_expected_model() {
    let wf = ok(EXAMPLES[0].1);
    assert_eq!(wf.name, "Blog Post Generator");
    assert_eq!(wf.start_step, "collect_brief");
    assert_eq!(
        wf.static_data.get("cms_base_url"),
        Some(&json!("http://127.0.0.1:9001"))
    );
    let ids: Vec<&str> = wf.steps.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "collect_brief",
            "generate_outline",
            "review_outline",
            "generate_draft",
            "publish_to_cms",
            "notify_success"
        ]
    );
    let fields = &form_of(&wf, "collect_brief").fields;
    assert_eq!(fields[3].key, "word_count");
    assert_eq!(fields[3].field_type, FieldType::Number);
    assert_eq!(fields[3].default, Some(json!(1000)));
    assert_eq!((fields[3].min, fields[3].max), (Some(500.0), Some(3000.0)));
    assert_eq!(
        fields[1].allowed,
        Some(vec![
            json!("developers"),
            json!("marketers"),
            json!("executives")
        ])
    );
    let outline = ai_of(&wf, "generate_outline");
    assert_eq!(
        outline.template_id,
        Some(TemplateRef {
            id: "blog_outline".into(),
            version: None
        })
    );
    assert_eq!(outline.variables, ["topic", "audience", "tone"]);
    let review = approval_of(&wf, "review_outline");
    assert_eq!(review.approvers, ["editor@example.com"]);
    assert_eq!(review.min_approvals, 1);
    assert_eq!(timeout_text(&review.wait).as_deref(), Some("1d"));
    assert_eq!(
        review.wait.reminder.map(|r| r.to_string()).as_deref(),
        Some("12h")
    );
    let publish = api_of(&wf, "publish_to_cms");
    assert_eq!(publish.method, "POST");
    assert_eq!(publish.timeout_s, 10.0);
    assert_eq!(publish.max_retries, DEFAULT_API_RETRIES);
    assert_eq!(
        publish.headers.get("Content-Type").map(String::as_str),
        Some("application/json")
    );
    assert_eq!(publish.output_key.as_deref(), Some("cms_response"));
    assert_eq!(wf.step("notify_success").and_then(|s| s.next.clone()), None);
}

#[test]
fn chain10_example_is_a_straight_line_of_set_steps() {
    let wf = ok(EXAMPLES[1].1);
    assert_eq!(wf.steps.len(), 10);
    for (i, s) in wf.steps.iter().enumerate() {
        assert_eq!(s.id, format!("s{}", i + 1));
        let expected_next = (i < 9).then(|| format!("s{}", i + 2));
        assert_eq!(s.next, expected_next, "next of {}", s.id);
        let StepKind::Set(cfg) = &s.kind else {
            panic!("{} is not a set step", s.id)
        };
        let expected = if i == 0 { "1" } else { "runtime.n + 1" };
        assert_eq!(cfg.values.get("n").map(String::as_str), Some(expected));
    }
}

#[test]
fn human_loop_and_triage_examples_decode_to_the_expected_model() {
    let wf = ok(EXAMPLES[3].1);
    let summarize = ai_of(&wf, "summarize");
    assert_eq!(summarize.provider, Some(Provider::Mock));
    assert_eq!(summarize.output_key.as_deref(), Some("summary"));
    let priority = &form_of(&wf, "brief").fields[1];
    assert_eq!(priority.field_type, FieldType::Integer);
    assert_eq!(priority.default, Some(json!(3)));

    let wf = ok(EXAMPLES[4].1);
    let StepKind::Conditional(route) = kind(&wf, "route") else {
        panic!("route is not a conditional")
    };
    assert_eq!(route.branches.len(), 3);
    assert_eq!(route.branches[0].when, "runtime.triage.category == 'abuse'");
    assert_eq!(route.branches[2].next, "file_ticket");
    assert_eq!(route.default, "file_ticket");
    assert_eq!(
        timeout_text(&approval_of(&wf, "escalate").wait).as_deref(),
        Some("1h")
    );
    assert_eq!(api_of(&wf, "file_ticket").method, "PUT");
}

#[test]
fn every_example_round_trips_through_its_canonical_json() {
    for (name, src) in EXAMPLES {
        let wf = ok(src);
        let canonical = serde_json::to_string(&wf).expect("serializes");
        let again = match parse(&canonical) {
            Ok(wf) => wf,
            Err(ds) => panic!("{name}: canonical JSON does not parse: {ds:#?}\n{canonical}"),
        };
        assert_eq!(again, wf, "{name}: round trip changed the workflow");
        assert_eq!(
            serde_json::to_string(&again).expect("serializes"),
            canonical,
            "{name}: canonical JSON is not stable"
        );
    }
}

// ----- YAML-level problems -----------------------------------------------------------------

#[test]
fn yaml_syntax_error_is_located_and_reported_alone() {
    let src = lines(&["name: t", "start_step: a", "description: a: b", "steps: {}"]);
    let d = one(&src);
    assert_at(&d, codes::YAML_SYNTAX, "", 3, 15);
    assert_says(&d, "mapping values are not allowed");
}

#[test]
fn alias_bomb_is_refused() {
    let mut src = String::from("name: t\nstatic:\n  a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let p = i - 1;
        src.push_str(&format!(
            "  a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    // Up to `a4` the document holds 123,456 values; the first `*a4` of `a5` (line 8, after
    // `  a5: &a5 [`) adds 111,111 more and crosses the 200,000 budget.
    let d = one(&src);
    assert_at(&d, codes::YAML_ALIAS_LIMIT, "static.a5[0]", 8, 12);
}

#[test]
fn deep_nesting_is_refused() {
    let src = format!("name: t\nstatic: {}{}\n", "[".repeat(70), "]".repeat(70));
    // The top-level mapping is level 1, so the 64th `[` (column 8 + 64) is level 65.
    let d = one(&src);
    assert_at(
        &d,
        codes::YAML_TOO_DEEP,
        &format!("static{}", "[0]".repeat(63)),
        2,
        72,
    );
}

#[test]
fn duplicate_mapping_key_points_at_the_second_key() {
    let src = lines(&[
        "name: t",
        "start_step: a",
        "steps:",
        "  - id: a",
        "    type: set",
        "    config: {values: {x: 1}}",
        "    type: form",
    ]);
    let d = one(&src);
    assert_at(&d, codes::YAML_DUPLICATE_KEY, "steps[0].type", 7, 5);
    assert_says(&d, "`type` appears twice");
}

// ----- types and keys ----------------------------------------------------------------------

#[test]
fn a_list_where_a_string_belongs_is_a_type_mismatch() {
    let src = lines(&[
        "name: [1]",
        "start_step: a",
        "steps:",
        "  - {id: a, type: set, config: {values: {x: 1}}}",
    ]);
    let d = one(&src);
    assert_at(&d, codes::TYPE_MISMATCH, "name", 1, 7);
    assert_says(&d, "expected a string, found a list");
}

#[test]
fn yes_is_not_a_boolean() {
    let src = lines(&[
        "name: t",
        "start_step: a",
        "allow_cycles: yes",
        "steps:",
        "  - {id: a, type: set, config: {values: {x: 1}}}",
    ]);
    let d = one(&src);
    assert_at(&d, codes::TYPE_MISMATCH, "allow_cycles", 3, 15);
    assert_says(&d, "expected true or false, found a string");
}

#[test]
fn steps_given_as_a_mapping_is_a_type_mismatch() {
    let src = lines(&["name: t", "start_step: a", "steps: {}"]);
    let ds = diags(&src);
    let d = ds
        .iter()
        .find(|d| d.code == codes::TYPE_MISMATCH)
        .unwrap_or_else(|| panic!("no type.mismatch in {ds:#?}"));
    assert_at(d, codes::TYPE_MISMATCH, "steps", 3, 8);
    assert_says(d, "expected a list, found a mapping");
}

#[test]
fn steps_given_as_a_mapping_is_the_only_problem() {
    let src = lines(&["name: t", "start_step: a", "steps: {}"]);
    assert_at(&one(&src), codes::TYPE_MISMATCH, "steps", 3, 8);
}

#[test]
fn unknown_key_on_a_step_suggests_the_closest_key() {
    let src = lines(&[
        "name: t",
        "start_step: a",
        "steps:",
        "  - id: a",
        "    type: set",
        "    config: {values: {x: 1}}",
        "    nxet: a",
    ]);
    let d = one(&src);
    assert_at(&d, codes::KEY_UNKNOWN, "steps[0].nxet", 7, 5);
    assert_says(&d, "did you mean `next`");
}

#[test]
fn unknown_step_type_suggests_the_closest_type() {
    let src = lines(&[
        "name: t",
        "start_step: a",
        "steps:",
        "  - id: a",
        "    type: from",
        "    config: {fields: [{key: x, type: string}]}",
    ]);
    let d = one(&src);
    assert_at(&d, codes::STEP_UNKNOWN_TYPE, "steps[0].type", 5, 11);
    assert_says(&d, "unknown step type `from`; did you mean `form`?");
}

#[test]
fn missing_start_step_in_a_flow_document_points_at_its_brace() {
    // A flow mapping starts at its `{`: a missing key is reported there.
    let src = "{name: t, steps: [{id: a, type: set, config: {values: {x: 1}}}]}";
    let d = one(src);
    assert_at(&d, codes::KEY_MISSING, "start_step", 1, 1);
    assert_says(&d, "missing `start_step`");
}

#[test]
fn missing_start_step_points_at_the_top_level_block_mapping() {
    let src = lines(&[
        "name: t",
        "steps:",
        "  - {id: a, type: set, config: {values: {x: 1}}}",
    ]);
    assert_at(&one(&src), codes::KEY_MISSING, "start_step", 1, 1);
    // The same for a block mapping written where a string belongs.
    let src = lines(&[
        "name:",
        "  first: x",
        "start_step: a",
        "steps:",
        "  - {id: a, type: set, config: {values: {x: 1}}}",
    ]);
    assert_at(&one(&src), codes::TYPE_MISMATCH, "name", 2, 3);
}

#[test]
fn missing_start_step_is_reported_on_the_top_level_mapping() {
    let src = lines(&[
        "name: t",
        "steps:",
        "  - {id: a, type: set, config: {values: {x: 1}}}",
    ]);
    assert_on_line(&one(&src), codes::KEY_MISSING, "start_step", 1);
}

// ----- step references and the graph ------------------------------------------------------

#[test]
fn duplicate_step_id_points_at_the_second_id() {
    let src = lines(&[
        "name: t",
        "start_step: a",
        "steps:",
        "  - {id: a, type: set, config: {values: {x: 1}}, next: b}",
        "  - {id: b, type: set, config: {values: {x: 1}}}",
        "  - {id: a, type: set, config: {values: {x: 2}}}",
    ]);
    let d = one(&src);
    assert_at(&d, codes::STEP_DUPLICATE_ID, "steps[2].id", 6, 10);
    assert_says(&d, "`a`");
}

#[test]
fn unknown_start_step_is_an_unknown_ref_with_a_suggestion() {
    let src = lines(&[
        "name: t",
        "start_step: colect",
        "steps:",
        "  - {id: collect, type: set, config: {values: {x: 1}}}",
    ]);
    let d = one(&src);
    assert_at(&d, codes::STEP_UNKNOWN_REF, "start_step", 2, 13);
    assert_says(&d, "no step has id `colect`; did you mean `collect`?");
}

#[test]
fn next_naming_no_step_is_an_unknown_ref() {
    let src = lines(&[
        "name: t",
        "start_step: a",
        "steps:",
        "  - id: a",
        "    type: set",
        "    config: {values: {x: 1}}",
        "    next: nowhere",
    ]);
    let d = one(&src);
    assert_at(&d, codes::STEP_UNKNOWN_REF, "steps[0].next", 7, 11);
    assert_says(&d, "no step has id `nowhere`");
}

#[test]
fn unreachable_step_points_at_its_id() {
    let src = lines(&[
        "name: t",
        "start_step: a",
        "steps:",
        "  - {id: a, type: set, config: {values: {x: 1}}}",
        "  - {id: b, type: set, config: {values: {x: 1}}}",
    ]);
    let d = one(&src);
    assert_at(&d, codes::GRAPH_UNREACHABLE, "steps[1].id", 5, 10);
    assert_says(&d, "step `b` is unreachable");
}

const CYCLE: &[&str] = &[
    "name: t",
    "start_step: a",
    "steps:",
    "  - {id: a, type: set, config: {values: {x: 1}}, next: b}",
    "  - {id: b, type: set, config: {values: {x: 1}}, next: a}",
];

#[test]
fn cycle_is_reported_at_the_reference_that_closes_it() {
    let d = one(&lines(CYCLE));
    assert_at(&d, codes::GRAPH_CYCLE, "steps[1].next", 5, 56);
    assert_says(&d, "a → b → a");
    assert_says(&d, "allow_cycles: true");
}

#[test]
fn allow_cycles_silences_the_cycle() {
    let mut src = vec!["allow_cycles: true"];
    src.extend_from_slice(CYCLE);
    let wf = ok(&lines(&src));
    assert!(wf.allow_cycles);
    assert_eq!(wf.step("b").and_then(|s| s.next.as_deref()), Some("a"));
}

// ----- required config keys per step type -------------------------------------------------

#[test]
fn form_without_fields_is_missing_fields() {
    let d = one(&step("form", &["{timeout: 1h}"]));
    assert_at(&d, codes::KEY_MISSING, "steps[0].config.fields", 7, 7);
}

#[test]
fn ai_generate_without_prompt_or_template_id_is_missing_prompt() {
    let d = one(&step("ai_generate", &["{json_schema: {type: object}}"]));
    assert_at(&d, codes::KEY_MISSING, "steps[0].config.prompt", 7, 7);
    assert_says(&d, "template_id");
}

#[test]
fn ai_generate_without_json_schema_is_missing_json_schema() {
    let d = one(&step("ai_generate", &["{prompt: hi}"]));
    assert_at(&d, codes::KEY_MISSING, "steps[0].config.json_schema", 7, 7);
}

#[test]
fn approval_without_approvers_is_missing_approvers() {
    let d = one(&step("approval", &["{min_approvals: 1}"]));
    assert_at(&d, codes::KEY_MISSING, "steps[0].config.approvers", 7, 7);
}

#[test]
fn api_call_without_method_and_url_is_missing_both() {
    let ds = diags(&step("api_call", &["{timeout_s: 5}"]));
    assert_eq!(ds.len(), 2, "{ds:#?}");
    assert_at(&ds[0], codes::KEY_MISSING, "steps[0].config.method", 7, 7);
    assert_at(&ds[1], codes::KEY_MISSING, "steps[0].config.url", 7, 7);
}

#[test]
fn conditional_without_branches_or_when_is_missing_them() {
    // `branches`/`default` form without `branches`.
    let src = lines(&[
        "name: t",
        "start_step: a",
        "steps:",
        "  - {id: a, type: conditional, config: {default: b}}",
        "  - {id: b, type: set, config: {values: {x: 1}}}",
    ]);
    let d = one(&src);
    assert_at(&d, codes::KEY_MISSING, "steps[0].config.branches", 4, 40);
    // `when`/`then`/`else` form without `when`.
    let src = lines(&[
        "name: t",
        "start_step: a",
        "steps:",
        "  - {id: a, type: conditional, config: {then: b, else: b}}",
        "  - {id: b, type: set, config: {values: {x: 1}}}",
    ]);
    let d = one(&src);
    assert_at(&d, codes::KEY_MISSING, "steps[0].config.when", 4, 40);
}

#[test]
fn set_without_values_is_missing_values() {
    let d = one(&step("set", &["{}"]));
    assert_at(&d, codes::KEY_MISSING, "steps[0].config.values", 7, 7);
}

// ----- ai_generate json_schema ------------------------------------------------------------

#[test]
fn json_schema_with_a_numeric_type_is_invalid_at_the_type() {
    let d = one(&step(
        "ai_generate",
        &["prompt: hi", "json_schema: {type: 12}"],
    ));
    assert_at(
        &d,
        codes::SCHEMA_INVALID,
        "steps[0].config.json_schema.type",
        8,
        27,
    );
    assert_says(&d, "draft 2020-12");
}

#[test]
fn json_schema_with_negative_min_properties_is_invalid_at_the_number() {
    let d = one(&step(
        "ai_generate",
        &[
            "prompt: hi",
            "json_schema: {type: object, minProperties: -1}",
        ],
    ));
    assert_at(
        &d,
        codes::SCHEMA_INVALID,
        "steps[0].config.json_schema.minProperties",
        8,
        50,
    );
}

#[test]
fn json_schema_error_deep_inside_is_located_there() {
    let d = one(&step(
        "ai_generate",
        &[
            "prompt: hi",
            "json_schema:",
            "  type: object",
            "  properties:",
            "    x: {type: strin}",
        ],
    ));
    assert_at(
        &d,
        codes::SCHEMA_INVALID,
        "steps[0].config.json_schema.properties.x.type",
        11,
        21,
    );
}

#[test]
fn json_schema_not_an_object_needs_an_output_key() {
    let d = one(&step(
        "ai_generate",
        &["prompt: hi", "json_schema: {type: string}"],
    ));
    assert_on_line(&d, codes::SCHEMA_INVALID, "steps[0].config.json_schema", 8);
    assert_says(&d, "type: object");
    // With `output_key` the answer is stored whole, so any schema will do.
    let wf = ok(&step(
        "ai_generate",
        &[
            "prompt: hi",
            "output_key: out",
            "json_schema: {type: string}",
        ],
    ));
    assert_eq!(ai_of(&wf, "a").json_schema, json!({"type": "string"}));
}

#[test]
fn json_schema_not_an_object_points_at_the_schema() {
    let d = one(&step(
        "ai_generate",
        &["prompt: hi", "json_schema: {type: string}"],
    ));
    assert_at(
        &d,
        codes::SCHEMA_INVALID,
        "steps[0].config.json_schema",
        8,
        20,
    );
}

// ----- form fields ------------------------------------------------------------------------

#[test]
fn field_pattern_that_is_not_a_regex_is_invalid_at_the_pattern() {
    let d = one(&form(&[r#"{key: x, type: string, pattern: "a("}"#]));
    assert_at(
        &d,
        codes::FIELD_INVALID_PATTERN,
        "steps[0].config.fields[0].pattern",
        8,
        43,
    );
    assert_says(&d, "is not a valid regular expression");
}

#[test]
fn field_min_greater_than_max() {
    let d = one(&form(&["{key: n, type: number, min: 5, max: 1}"]));
    assert_on_line(
        &d,
        codes::FIELD_MIN_GT_MAX,
        "steps[0].config.fields[0].min",
        8,
    );
    assert_says(&d, "`min` (5) is greater than `max` (1)");
}

#[test]
fn field_min_greater_than_max_points_at_the_min_value() {
    let d = one(&form(&["{key: n, type: number, min: 5, max: 1}"]));
    assert_at(
        &d,
        codes::FIELD_MIN_GT_MAX,
        "steps[0].config.fields[0].min",
        8,
        39,
    );
}

#[test]
fn field_min_length_greater_than_max_length() {
    let d = one(&form(&[
        "{key: s, type: string, min_length: 5, max_length: 2}",
    ]));
    assert_on_line(
        &d,
        codes::FIELD_MIN_GT_MAX,
        "steps[0].config.fields[0].min_length",
        8,
    );
    assert_says(&d, "`min_length` (5) is greater than `max_length` (2)");
}

#[test]
fn field_min_length_greater_than_max_length_points_at_the_value() {
    let d = one(&form(&[
        "{key: s, type: string, min_length: 5, max_length: 2}",
    ]));
    assert_at(
        &d,
        codes::FIELD_MIN_GT_MAX,
        "steps[0].config.fields[0].min_length",
        8,
        46,
    );
}

#[test]
fn field_default_outside_its_enum_is_invalid() {
    let d = one(&form(&["{key: t, type: string, enum: [a, b], default: c}"]));
    assert_at(
        &d,
        codes::FIELD_INVALID_DEFAULT,
        "steps[0].config.fields[0].default",
        8,
        57,
    );
    assert_says(&d, "must be one of");
}

#[test]
fn field_default_of_the_wrong_type_is_invalid() {
    let d = one(&form(&[r#"{key: n, type: integer, default: "3"}"#]));
    assert_at(
        &d,
        codes::FIELD_INVALID_DEFAULT,
        "steps[0].config.fields[0].default",
        8,
        44,
    );
    assert_says(&d, "must be a whole number");
}

#[test]
fn field_enum_item_of_the_wrong_type_is_a_type_mismatch() {
    let d = one(&form(&["{key: n, type: number, enum: [1, two, 3]}"]));
    assert_at(
        &d,
        codes::TYPE_MISMATCH,
        "steps[0].config.fields[0].enum[1]",
        8,
        44,
    );
}

#[test]
fn field_pattern_on_a_number_does_not_apply() {
    let d = one(&form(&[r#"{key: n, type: number, pattern: "^1"}"#]));
    assert_at(
        &d,
        codes::FIELD_RULE_NOT_APPLICABLE,
        "steps[0].config.fields[0].pattern",
        8,
        34,
    );
    assert_says(&d, "does not apply to a field of type number");
}

#[test]
fn duplicate_field_key_points_at_the_second_key() {
    let d = one(&form(&["{key: x, type: string}", "{key: x, type: number}"]));
    assert_at(
        &d,
        codes::FIELD_DUPLICATE_KEY,
        "steps[0].config.fields[1].key",
        9,
        17,
    );
}

// ----- approval ---------------------------------------------------------------------------

#[test]
fn min_approvals_above_the_number_of_approvers() {
    let d = one(&step(
        "approval",
        &["approvers: [a@example.com]", "min_approvals: 2"],
    ));
    assert_on_line(&d, codes::VALUE_INVALID, "steps[0].config.min_approvals", 8);
    assert_says(&d, "needs 2 approvals but only 1 approvers are listed");
}

#[test]
fn min_approvals_above_the_number_of_approvers_points_at_the_value() {
    let d = one(&step(
        "approval",
        &["approvers: [a@example.com]", "min_approvals: 2"],
    ));
    assert_at(
        &d,
        codes::VALUE_INVALID,
        "steps[0].config.min_approvals",
        8,
        22,
    );
}

#[test]
fn approver_that_is_not_an_email_is_invalid() {
    let d = one(&step(
        "approval",
        &["approvers: [a@example.com, not-an-email]"],
    ));
    assert_at(
        &d,
        codes::VALUE_INVALID,
        "steps[0].config.approvers[1]",
        7,
        34,
    );
    assert_says(&d, "`not-an-email` is not an e-mail address");
}

#[test]
fn timeout_and_timeout_hours_conflict() {
    let d = one(&step(
        "approval",
        &[
            "approvers: [a@example.com]",
            "timeout: 2h",
            "timeout_hours: 3",
        ],
    ));
    assert_on_line(&d, codes::KEY_CONFLICT, "steps[0].config.timeout_hours", 9);
    assert_says(&d, "either `timeout` or `timeout_hours`");
}

#[test]
fn timeout_and_timeout_hours_conflict_points_at_the_key() {
    let d = one(&step(
        "approval",
        &[
            "approvers: [a@example.com]",
            "timeout: 2h",
            "timeout_hours: 3",
        ],
    ));
    assert_at(
        &d,
        codes::KEY_CONFLICT,
        "steps[0].config.timeout_hours",
        9,
        7,
    );
}

#[test]
fn reminder_after_the_timeout_is_invalid() {
    let d = one(&step(
        "approval",
        &["approvers: [a@example.com]", "timeout: 1h", "reminder: 2h"],
    ));
    assert_on_line(&d, codes::VALUE_INVALID, "steps[0].config.reminder", 9);
    assert_says(&d, "the reminder (2h) must come before the timeout (1h)");
}

#[test]
fn reminder_after_the_timeout_points_at_the_reminder_value() {
    let d = one(&step(
        "approval",
        &["approvers: [a@example.com]", "timeout: 1h", "reminder: 2h"],
    ));
    assert_at(&d, codes::VALUE_INVALID, "steps[0].config.reminder", 9, 17);
}

#[test]
fn late_reminder_hours_is_reported_under_reminder_hours() {
    let d = one(&step(
        "approval",
        &[
            "approvers: [a@example.com]",
            "timeout_hours: 1",
            "reminder_hours: 2",
        ],
    ));
    assert_at(
        &d,
        codes::VALUE_INVALID,
        "steps[0].config.reminder_hours",
        9,
        23,
    );
}

const ON_TIMEOUT_WITHOUT_TIMEOUT: &[&str] = &[
    "name: t",
    "start_step: a",
    "steps:",
    "  - id: a",
    "    type: approval",
    "    config: {approvers: [a@example.com], on_timeout: b}",
    "  - {id: b, type: set, config: {values: {x: 1}}}",
];

#[test]
fn on_timeout_without_a_timeout_is_missing_the_timeout() {
    let d = one(&lines(ON_TIMEOUT_WITHOUT_TIMEOUT));
    assert_on_line(&d, codes::KEY_MISSING, "steps[0].config.timeout", 6);
    assert_says(&d, "`on_timeout` needs a `timeout`");
}

#[test]
fn on_timeout_without_a_timeout_points_at_the_config_mapping() {
    let d = one(&lines(ON_TIMEOUT_WITHOUT_TIMEOUT));
    assert_at(&d, codes::KEY_MISSING, "steps[0].config.timeout", 6, 13);
}

#[test]
fn on_timeout_naming_no_step_is_an_unknown_ref() {
    let d = one(&step(
        "approval",
        &[
            "approvers: [a@example.com]",
            "timeout: 1h",
            "on_timeout: nowhere",
        ],
    ));
    assert_at(
        &d,
        codes::STEP_UNKNOWN_REF,
        "steps[0].config.on_timeout",
        9,
        19,
    );
}

// ----- api_call ---------------------------------------------------------------------------

#[test]
fn api_call_with_an_unknown_method_is_invalid() {
    let d = one(&step(
        "api_call",
        &["method: FETCH", "url: https://example.com/x"],
    ));
    assert_at(&d, codes::VALUE_INVALID, "steps[0].config.method", 7, 15);
    assert_says(&d, "`FETCH` is not a valid HTTP method");
}

#[test]
fn api_call_with_an_ftp_url_is_invalid() {
    let d = one(&step(
        "api_call",
        &["method: get", "url: ftp://example.com/x"],
    ));
    assert_at(&d, codes::VALUE_INVALID, "steps[0].config.url", 8, 12);
    assert_says(&d, "is not an http or https URL");
}

#[test]
fn api_call_expecting_status_700_is_invalid() {
    let d = one(&step(
        "api_call",
        &[
            "method: GET",
            "url: https://example.com/x",
            "expect_status: [200, 700]",
        ],
    ));
    assert_at(
        &d,
        codes::VALUE_INVALID,
        "steps[0].config.expect_status[1]",
        9,
        28,
    );
    assert_says(&d, "between 100 and 599");
}

// ----- conditional, expressions and templates ---------------------------------------------

#[test]
fn conditional_with_both_forms_is_a_conflict() {
    let src = lines(&[
        "name: t",
        "start_step: a",
        "steps:",
        "  - id: a",
        "    type: conditional",
        r#"    config: {when: "runtime.x > 1", then: b, else: b, branches: [{when: "true", next: b}]}"#,
        "  - {id: b, type: set, config: {values: {x: 1}}}",
    ]);
    let d = one(&src);
    assert_at(&d, codes::KEY_CONFLICT, "steps[0].config", 6, 13);
    assert_says(&d, "not both");
}

#[test]
fn conflicting_conditional_still_reaches_its_targets() {
    let src = lines(&[
        "name: t",
        "start_step: a",
        "steps:",
        "  - id: a",
        "    type: conditional",
        r#"    config: {when: "runtime.x > 1", then: b, else: b, branches: [{when: "true", next: b}]}"#,
        "  - {id: b, type: set, config: {values: {x: 1}}}",
    ]);
    assert_at(&one(&src), codes::KEY_CONFLICT, "steps[0].config", 6, 13);
}

#[test]
fn next_on_a_conditional_is_an_error_at_the_key() {
    let src = lines(&[
        "name: t",
        "start_step: a",
        "steps:",
        "  - id: a",
        "    type: conditional",
        r#"    config: {when: "runtime.x > 1", then: b, else: b}"#,
        "    next: b",
        "  - {id: b, type: set, config: {values: {x: 1}}}",
    ]);
    let d = one(&src);
    assert_at(&d, codes::KEY_UNKNOWN, "steps[0].next", 7, 5);
    assert_says(&d, "config.default");
}

#[test]
fn unbalanced_expression_is_invalid() {
    let src = lines(&[
        "name: t",
        "start_step: a",
        "steps:",
        "  - id: a",
        "    type: conditional",
        r#"    config: {when: "len(runtime.x", then: b, else: b}"#,
        "  - {id: b, type: set, config: {values: {x: 1}}}",
    ]);
    let d = one(&src);
    assert_at(&d, codes::EXPRESSION_INVALID, "steps[0].config.when", 6, 20);
    assert_says(&d, "at character 4: `(` is never closed");
}

#[test]
fn unbalanced_expression_in_a_branch_is_invalid() {
    let src = lines(&[
        "name: t",
        "start_step: a",
        "steps:",
        "  - id: a",
        "    type: conditional",
        "    config:",
        "      branches:",
        "        - when: len(x",
        "          next: b",
        "      default: b",
        "  - {id: b, type: set, config: {values: {x: 1}}}",
    ]);
    let d = one(&src);
    assert_at(
        &d,
        codes::EXPRESSION_INVALID,
        "steps[0].config.branches[0].when",
        8,
        17,
    );
}

#[test]
fn unclosed_template_in_a_prompt_is_invalid() {
    let d = one(&step(
        "ai_generate",
        &[r#"{prompt: "Hi {{ topic", json_schema: {type: object}}"#],
    ));
    assert_at(&d, codes::TEMPLATE_INVALID, "steps[0].config.prompt", 7, 16);
    assert_says(&d, "at character 4: `{{` is never closed by `}}`");
}

// ----- several problems at once -----------------------------------------------------------

#[test]
fn every_problem_is_reported_at_once_sorted_by_line() {
    let src = lines(&[
        "name: t",
        "start_step: a",
        "steps:",
        "  - id: a",
        "    type: form",
        "    config:",
        "      fields:",
        "        - {key: x, type: strng}",
        "    nxet: b",
        "  - id: b",
        "    type: api_call",
        "    config: {method: GET, url: ftp://x}",
    ]);
    let ds = diags(&src);
    let got: Vec<(&str, &str, usize, usize)> = ds
        .iter()
        .map(|d| (d.code, d.path.as_str(), d.line, d.column))
        .collect();
    assert_eq!(
        got,
        [
            (
                codes::VALUE_INVALID,
                "steps[0].config.fields[0].type",
                8,
                26
            ),
            (codes::KEY_UNKNOWN, "steps[0].nxet", 9, 5),
            (codes::GRAPH_UNREACHABLE, "steps[1].id", 10, 9),
            (codes::VALUE_INVALID, "steps[1].config.url", 12, 32),
        ],
        "{ds:#?}"
    );
    assert_says(&ds[0], "did you mean `string`?");
}

// ----- durations --------------------------------------------------------------------------

#[test]
fn timeout_hours_canonicalizes_to_hours_and_minutes() {
    let wf = ok(&step(
        "approval",
        &["approvers: [a@example.com]", "timeout_hours: 1.5"],
    ));
    let wait = &approval_of(&wf, "a").wait;
    assert_eq!(wait.timeout.map(Duration::as_secs), Some(5_400));
    assert_eq!(timeout_text(wait).as_deref(), Some("1h30m"));
    let canonical = serde_json::to_value(&wf).expect("serializes");
    assert_eq!(canonical["steps"][0]["config"]["timeout"], json!("1h30m"));
}

#[test]
fn timeout_in_seconds_is_kept_as_seconds() {
    let wf = ok(&step(
        "form",
        &["timeout: 90s", "fields: [{key: x, type: string}]"],
    ));
    assert_eq!(
        form_of(&wf, "a").wait.timeout.map(Duration::as_secs),
        Some(90)
    );
}

#[test]
fn timeout_of_90s_canonicalizes_with_largest_units_first() {
    let wf = ok(&step(
        "form",
        &["timeout: 90s", "fields: [{key: x, type: string}]"],
    ));
    assert_eq!(
        timeout_text(&form_of(&wf, "a").wait).as_deref(),
        Some("1m30s")
    );
}

#[test]
fn a_form_notify_entry_that_is_not_an_email_is_invalid() {
    let d = one(&step(
        "form",
        &[
            "fields: [{key: x, type: string}]",
            "notify: [a@example.com, nobody]",
        ],
    ));
    assert_eq!(d.path, "steps[0].config.notify[1]");
    assert_eq!(d.code, codes::VALUE_INVALID);
    assert_says(&d, "`nobody` is not an e-mail address");
}
