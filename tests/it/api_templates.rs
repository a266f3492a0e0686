//! The templates API through the router, on both stores, and the check that a workflow's
//! `ai_generate` steps name stored templates.

use serde_json::{Value, json};

use crate::on_both_stores;
use crate::support::{Reply, TestApp, TestDb};

async fn post_template(app: &TestApp, body: Value) -> Reply {
    app.post("/v1/templates", "application/json", body.to_string())
        .await
}

/// Saves the prompt templates `examples/blog_post.yaml` uses, so the example saves.
pub async fn seed_example_templates(app: &TestApp) {
    for (id, prompt) in [
        (
            "blog_outline",
            "Outline a post about {{ topic }} for {{ audience }}, in a {{ tone }} tone.",
        ),
        (
            "blog_draft",
            "Write {{ word_count }} words about {{ topic }} for {{ audience }} ({{ tone }}), \
             following: {% for s in sections %}{{ s.heading }}; {% endfor %}",
        ),
    ] {
        let reply = post_template(app, json!({"id": id, "prompt": prompt})).await;
        assert_eq!(reply.status, 201, "{}", reply.text);
    }
}

async fn versions_are_saved_and_read_back(db: &TestDb) {
    let app = TestApp::new(db).await;
    let v1 = post_template(
        &app,
        json!({
            "id": "content_v1",
            "system": "You write for {{ static.brand }}.",
            "prompt": "Write about {{ topic }}.\n",
            "description": "first try",
        }),
    )
    .await;
    assert_eq!(v1.status, 201, "{}", v1.text);
    assert_eq!(
        v1.headers["location"],
        "/v1/templates/content_v1/versions/1"
    );
    assert_eq!(v1.json["id"], "content_v1");
    assert_eq!(v1.json["version"], 1);
    assert_eq!(v1.json["system"], "You write for {{ static.brand }}.");
    assert_eq!(v1.json["prompt"], "Write about {{ topic }}.\n");
    assert_eq!(v1.json["description"], "first try");
    assert!(
        v1.json["created_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );

    let v2 = post_template(
        &app,
        json!({"id": "content_v1", "prompt": "Shorter: {{ topic | upper }}"}),
    )
    .await;
    assert_eq!(v2.status, 201, "{}", v2.text);
    assert_eq!(v2.json["version"], 2);
    assert_eq!(
        v2.headers["location"],
        "/v1/templates/content_v1/versions/2"
    );
    assert!(v2.json.get("system").is_none() && v2.json.get("description").is_none());

    let latest = app.get("/v1/templates/content_v1").await;
    assert_eq!(latest.status, 200);
    assert_eq!(latest.json, v2.json, "GET returns what POST answered");
    let first = app.get("/v1/templates/content_v1/versions/1").await;
    assert_eq!(first.status, 200);
    assert_eq!(first.json, v1.json, "version 1 is unchanged");
}

async fn missing_and_malformed_reads_are_problems(db: &TestDb) {
    let app = TestApp::new(db).await;
    app.get("/v1/templates/ghost").await.problem(404);
    app.get("/v1/templates/ghost/versions/1").await.problem(404);
    let saved = post_template(&app, json!({"id": "t", "prompt": "Hi"})).await;
    assert_eq!(saved.status, 201);
    app.get("/v1/templates/t/versions/2").await.problem(404);
    app.get("/v1/templates/t/versions/abc").await.problem(400);
    app.get("/v1/templates?limit=0").await.problem(400);
    app.get("/v1/templates?cursor=bm9wZQ").await.problem(400);
}

async fn bad_bodies_and_ids_are_refused(db: &TestDb) {
    let app = TestApp::new(db).await;
    let unknown = post_template(&app, json!({"id": "t", "prompt": "Hi", "extra": 1})).await;
    assert_eq!(unknown.problem(422)["errors"][0]["code"], "body.invalid");
    let missing = post_template(&app, json!({"id": "t"})).await;
    missing.problem(422);
    app.post("/v1/templates", "application/json", "{\"id\": ")
        .await
        .problem(400);
    app.post("/v1/templates", "text/plain", "Hi")
        .await
        .problem(415);

    let bad_id = post_template(&app, json!({"id": "no spaces", "prompt": "Hi"})).await;
    let problem = bad_id.problem(422);
    assert_eq!(problem["type"], "urn:scaff:problem:validation");
    assert_eq!(problem["errors"][0]["path"], "id");
    assert_eq!(problem["errors"][0]["code"], "value.invalid");
    let blank = post_template(&app, json!({"id": "t", "prompt": "  \n"})).await;
    assert_eq!(blank.problem(422)["errors"][0]["path"], "prompt");
    app.get("/v1/templates/t").await.problem(404);
}

async fn a_template_syntax_error_is_located_inside_the_template(db: &TestDb) {
    let app = TestApp::new(db).await;
    let reply = post_template(
        &app,
        json!({
            "id": "broken",
            "system": "Fine {{ x }}\n{% for a in b %}never ends",
            "prompt": "Line one\nLine two {{ name",
        }),
    )
    .await;
    let problem = reply.problem(422);
    assert_eq!(problem["type"], "urn:scaff:problem:validation");
    let errors = problem["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 2, "{errors:?}");
    let at = |path: &str| {
        let e = errors
            .iter()
            .find(|e| e["path"] == path)
            .unwrap_or_else(|| panic!("no {path} in {errors:?}"));
        assert_eq!(e["code"], "template.invalid");
        (
            e["line"].as_u64(),
            e["column"].as_u64(),
            e["message"].clone(),
        )
    };
    let (line, column, message) = at("prompt");
    assert_eq!((line, column), (Some(2), Some(10)));
    assert!(
        message.as_str().is_some_and(|m| m.contains("never closed")),
        "{message}"
    );
    let (line, column, message) = at("system");
    assert_eq!((line, column), (Some(2), Some(1)));
    assert!(
        message.as_str().is_some_and(|m| m.contains("endfor")),
        "{message}"
    );

    let expr = post_template(&app, json!({"id": "broken", "prompt": "ok\n  {{ 1 + }}"})).await;
    let problem = expr.problem(422);
    assert_eq!(problem["errors"][0]["path"], "prompt");
    assert_eq!(problem["errors"][0]["line"], 2);
    app.get("/v1/templates/broken").await.problem(404);
}

async fn listing_pages_through_latest_versions(db: &TestDb) {
    let app = TestApp::new(db).await;
    for id in ["e", "a", "d", "b", "c"] {
        let reply = post_template(&app, json!({"id": id, "prompt": format!("{id} v1")})).await;
        assert_eq!(reply.status, 201);
    }
    post_template(&app, json!({"id": "b", "prompt": "b v2"})).await;
    let mut cursor: Option<String> = None;
    let mut seen = Vec::new();
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/templates?limit=2&cursor={c}"),
            None => "/v1/templates?limit=2".to_string(),
        };
        let page = app.get(&path).await;
        assert_eq!(page.status, 200, "{}", page.text);
        let items = page.json["items"].as_array().expect("items");
        assert!(items.len() <= 2);
        seen.extend(items.iter().map(|t| {
            (
                t["id"].as_str().expect("id").to_string(),
                t["version"].as_i64().expect("version"),
                t["prompt"].as_str().expect("prompt").to_string(),
            )
        }));
        match page.json.get("next_cursor").and_then(Value::as_str) {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let expected: Vec<(String, i64, String)> = [
        ("a", 1, "a v1"),
        ("b", 2, "b v2"),
        ("c", 1, "c v1"),
        ("d", 1, "d v1"),
        ("e", 1, "e v1"),
    ]
    .iter()
    .map(|(i, v, p)| (i.to_string(), *v, p.to_string()))
    .collect();
    assert_eq!(seen, expected);
}

/// A workflow with ai_generate steps naming `first` and `second` as their template ids.
fn workflow_using(first: &str, second: &str) -> String {
    format!(
        "id: uses_templates\n\
         name: Uses templates\n\
         start_step: one\n\
         steps:\n\
         \x20 - id: one\n\
         \x20   type: ai_generate\n\
         \x20   config:\n\
         \x20     template_id: {first}\n\
         \x20     json_schema: {{type: object}}\n\
         \x20   next: two\n\
         \x20 - id: two\n\
         \x20   type: ai_generate\n\
         \x20   config: {{template_id: \"{second}\", json_schema: {{type: object}}}}\n"
    )
}

fn unknown_templates(reply: &Reply) -> Vec<(String, u64, u64, String)> {
    let problem = reply.problem(422);
    assert_eq!(problem["type"], "urn:scaff:problem:validation");
    problem["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| {
            assert_eq!(e["code"], "template.unknown", "{e}");
            (
                e["path"].as_str().expect("path").to_string(),
                e["line"].as_u64().expect("line"),
                e["column"].as_u64().expect("column"),
                e["message"].as_str().expect("message").to_string(),
            )
        })
        .collect()
}

async fn workflows_must_name_stored_templates(db: &TestDb) {
    let app = TestApp::new(db).await;
    let yaml = workflow_using("ghost", "tpl@2");
    let reply = app.post_yaml("/v1/workflows", &yaml).await;
    let found = unknown_templates(&reply);
    assert_eq!(found.len(), 2, "every unknown template at once: {found:?}");
    assert_eq!(
        (found[0].0.as_str(), found[0].1, found[0].2),
        ("steps[0].config.template_id", 8, 20)
    );
    assert!(found[0].3.contains("`ghost`"), "{}", found[0].3);
    assert_eq!(
        (found[1].0.as_str(), found[1].1, found[1].2),
        ("steps[1].config.template_id", 13, 27)
    );
    assert!(found[1].3.contains("`tpl`"), "{}", found[1].3);
    // The validate endpoints answer what a save would.
    let validated = app.post_yaml("/v1/workflows/validate", &yaml).await;
    assert_eq!(unknown_templates(&validated), found);

    // With only version 1 of `tpl`, a pin to version 2 is still unknown.
    post_template(&app, json!({"id": "tpl", "prompt": "v1 {{ x }}"})).await;
    post_template(&app, json!({"id": "ghost", "prompt": "boo"})).await;
    let reply = app.post_yaml("/v1/workflows", &yaml).await;
    let found = unknown_templates(&reply);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "steps[1].config.template_id");
    assert!(
        found[0].3.contains("no version 2") && found[0].3.contains("latest is 1"),
        "{}",
        found[0].3
    );
    app.get("/v1/workflows/uses_templates").await.problem(404);

    post_template(&app, json!({"id": "tpl", "prompt": "v2 {{ x }}"})).await;
    let saved = app.post_yaml("/v1/workflows", &yaml).await;
    assert_eq!(saved.status, 201, "{}", saved.text);
    let ok = app.post_yaml("/v1/workflows/validate", &yaml).await;
    assert_eq!(ok.status, 200, "{}", ok.text);

    // A next version, and a candidate checked against the stored one, are held to it too.
    let pinned_ahead = workflow_using("ghost", "tpl@3");
    let reply = app
        .post_yaml("/v1/workflows/uses_templates/versions", &pinned_ahead)
        .await;
    assert_eq!(unknown_templates(&reply).len(), 1);
    let reply = app
        .post_yaml("/v1/workflows/uses_templates/validate", &pinned_ahead)
        .await;
    assert_eq!(unknown_templates(&reply).len(), 1);
    assert_eq!(
        app.get("/v1/workflows/uses_templates").await.json["version"],
        1,
        "nothing was saved"
    );
    let fine = workflow_using("tpl@1", "ghost");
    let reply = app
        .post_yaml("/v1/workflows/uses_templates/versions", &fine)
        .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(reply.json["version"], 2);
}

async fn json_definitions_are_located_in_their_own_text(db: &TestDb) {
    let app = TestApp::new(db).await;
    let definition = "{\n  \"name\": \"J\",\n  \"start_step\": \"a\",\n  \"steps\": [\n    {\"id\": \"a\", \"type\": \"ai_generate\",\n     \"config\": {\"template_id\": \"nope\", \"json_schema\": {\"type\": \"object\"}}}\n  ]\n}\n";
    let reply = app
        .post("/v1/workflows", "application/json", definition)
        .await;
    let found = unknown_templates(&reply);
    assert_eq!(
        found
            .iter()
            .map(|(p, l, c, _)| (p.as_str(), *l, *c))
            .collect::<Vec<_>>(),
        [("steps[0].config.template_id", 6, 32)]
    );
}

async fn the_blog_example_saves_once_its_templates_exist(db: &TestDb) {
    let app = TestApp::new(db).await;
    let yaml = crate::support::example("blog_post.yaml");
    let reply = app.post_yaml("/v1/workflows", &yaml).await;
    let found = unknown_templates(&reply);
    assert_eq!(found.len(), 2, "{found:?}");
    seed_example_templates(&app).await;
    let reply = app.post_yaml("/v1/workflows", &yaml).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
}

on_both_stores!(
    versions_are_saved_and_read_back,
    missing_and_malformed_reads_are_problems,
    bad_bodies_and_ids_are_refused,
    a_template_syntax_error_is_located_inside_the_template,
    listing_pages_through_latest_versions,
    workflows_must_name_stored_templates,
    json_definitions_are_located_in_their_own_text,
    the_blog_example_saves_once_its_templates_exist,
);
