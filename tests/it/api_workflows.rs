//! The workflows API through the router, on both stores: what a REST client sees.

use axum::body::Body;
use axum::http::Request;
use scaff::api::Limits;
use serde_json::{Value, json};

use crate::on_both_stores;
use crate::support::{TestApp, TestDb, example};

const EXAMPLES: &[&str] = &[
    "blog_post.yaml",
    "chain10.yaml",
    "content_draft.yaml",
    "human_loop.yaml",
    "triage.yaml",
];

const SMALL: &str = "id: small\nname: Small\nstart_step: a\nsteps:\n  - id: a\n    type: set\n    config: {values: {n: '1'}}\n";

async fn list_ids(app: &TestApp) -> Vec<String> {
    let reply = app.get("/v1/workflows?limit=200").await;
    assert_eq!(reply.status, 200);
    reply.json["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|w| w["id"].as_str().expect("id").to_string())
        .collect()
}

async fn every_example_saves_as_version_one(db: &TestDb) {
    let app = TestApp::new(db).await;
    crate::api_templates::seed_example_templates(&app).await;
    for name in EXAMPLES {
        let yaml = example(name);
        let reply = app.post_yaml("/v1/workflows", &yaml).await;
        assert_eq!(reply.status, 201, "{name}: {}", reply.text);
        let body = &reply.json;
        let id = body["id"].as_str().expect("id");
        assert_eq!(body["version"], 1);
        assert!(body["name"].is_string() && body["start_step"].is_string());
        assert!(
            body["created_at"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z'))
        );
        assert_eq!(
            body["yaml"],
            yaml.as_str(),
            "the original text is kept verbatim"
        );
        assert_eq!(body["definition"]["id"], id);
        let location = reply.headers["location"].to_str().expect("location");
        assert_eq!(location, format!("/v1/workflows/{id}"));
        let read = app.get(location).await;
        assert_eq!(read.status, 200);
        assert_eq!(read.json, reply.json, "GET returns what POST answered");
    }
    assert_eq!(list_ids(&app).await.len(), EXAMPLES.len());
}

async fn versions_are_added_and_earlier_ones_stay(db: &TestDb) {
    let app = TestApp::new(db).await;
    let v1 = app.post_yaml("/v1/workflows", SMALL).await;
    assert_eq!(v1.status, 201);
    let again = app.post_yaml("/v1/workflows", SMALL).await;
    let problem = again.problem(409);
    assert!(
        problem["detail"]
            .as_str()
            .expect("detail")
            .contains("/v1/workflows/small/versions")
    );

    let edited = SMALL.replace("name: Small", "name: Small, edited");
    let v2 = app.post_yaml("/v1/workflows/small/versions", &edited).await;
    assert_eq!(v2.status, 201, "{}", v2.text);
    assert_eq!(v2.json["version"], 2);
    assert_eq!(v2.headers["location"], "/v1/workflows/small/versions/2");

    let latest = app.get("/v1/workflows/small").await;
    assert_eq!(latest.json["version"], 2);
    assert_eq!(latest.json["name"], "Small, edited");
    let first = app.get("/v1/workflows/small/versions/1").await;
    assert_eq!(first.status, 200);
    assert_eq!(first.json, v1.json, "version 1 is unchanged");
    app.get("/v1/workflows/small/versions/9").await.problem(404);
    app.get("/v1/workflows/small/versions/abc")
        .await
        .problem(400);
    app.get("/v1/workflows/ghost").await.problem(404);
    app.post_yaml(
        "/v1/workflows/ghost/versions",
        SMALL.replace("id: small\n", "").as_str(),
    )
    .await
    .problem(404);
}

async fn a_stated_version_out_of_turn_is_a_conflict(db: &TestDb) {
    let app = TestApp::new(db).await;
    app.post_yaml("/v1/workflows", SMALL).await;
    let stated = format!("version: 5\n{SMALL}");
    let problem = app.post_yaml("/v1/workflows/small/versions", &stated).await;
    assert!(
        problem.problem(409)["detail"]
            .as_str()
            .expect("detail")
            .contains("next version would be 2")
    );
    let ok = app
        .post_yaml(
            "/v1/workflows/small/versions",
            &stated.replace("version: 5", "version: 2"),
        )
        .await;
    assert_eq!(ok.status, 201, "{}", ok.text);
}

async fn a_body_naming_another_id_is_refused(db: &TestDb) {
    let app = TestApp::new(db).await;
    app.post_yaml("/v1/workflows", SMALL).await;
    let other = SMALL.replace("id: small", "id: other");
    let reply = app.post_yaml("/v1/workflows/small/versions", &other).await;
    let problem = reply.problem(422);
    assert_eq!(problem["errors"][0]["path"], "id");
    assert_eq!(problem["errors"][0]["line"], 1);
    assert_eq!(problem["errors"][0]["column"], 5);
    assert_eq!(app.get("/v1/workflows/small").await.json["version"], 1);
}

async fn json_bodies_are_accepted_in_both_forms(db: &TestDb) {
    let app = TestApp::new(db).await;
    let wrapped = json!({"yaml": example("chain10.yaml")}).to_string();
    let reply = app.post("/v1/workflows", "application/json", wrapped).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(reply.json["yaml"], example("chain10.yaml").as_str());

    // The canonical definition read back is itself a valid definition.
    let id = reply.json["id"].as_str().expect("id").to_string();
    let definition = reply.json["definition"].to_string();
    let again = app
        .post(
            &format!("/v1/workflows/{id}/versions"),
            "application/json; charset=utf-8",
            definition,
        )
        .await;
    assert_eq!(again.status, 201, "{}", again.text);
    assert_eq!(again.json["version"], 2);
    assert_eq!(again.json["definition"], reply.json["definition"]);
}

async fn invalid_definitions_answer_every_problem_and_save_nothing(db: &TestDb) {
    let app = TestApp::new(db).await;
    let yaml = "name: Broken\nstart_step: first\nsteps:\n  - id: first\n    type: form\n    config:\n      fields: [{key: topic, type: string}]\n    nxet: second\n  - id: second\n    type: sett\n    config: {}\n";
    let reply = app.post_yaml("/v1/workflows", yaml).await;
    let problem = reply.problem(422);
    assert_eq!(problem["type"], "urn:scaff:problem:validation");
    let errors = problem["errors"].as_array().expect("errors");
    let find = |code: &str| {
        errors
            .iter()
            .find(|e| e["code"] == code)
            .unwrap_or_else(|| panic!("no {code} in {errors:?}"))
    };
    let typo = find("key.unknown");
    assert_eq!(
        (
            typo["path"].as_str(),
            typo["line"].as_u64(),
            typo["column"].as_u64()
        ),
        (Some("steps[0].nxet"), Some(8), Some(5))
    );
    assert!(
        typo["message"]
            .as_str()
            .expect("message")
            .contains("did you mean `next`")
    );
    let ty = find("step.unknown_type");
    assert_eq!(
        (
            ty["path"].as_str(),
            ty["line"].as_u64(),
            ty["column"].as_u64()
        ),
        (Some("steps[1].type"), Some(10), Some(11))
    );
    let unreachable = find("graph.unreachable");
    assert_eq!(unreachable["path"], "steps[1].id");
    assert!(list_ids(&app).await.is_empty(), "nothing was saved");
}

async fn malformed_and_hostile_bodies_are_refused(db: &TestDb) {
    let app = TestApp::new(db).await;
    let bad_json = app
        .post("/v1/workflows", "application/json", "{\"name\": \n  oops}")
        .await;
    let problem = bad_json.problem(400);
    assert_eq!(problem["errors"][0]["code"], "json.syntax");
    assert_eq!(problem["errors"][0]["line"], 2);

    let bad_yaml = app
        .post_yaml("/v1/workflows", "name: [unclosed\nsteps: x\n")
        .await;
    assert_eq!(bad_yaml.problem(422)["errors"][0]["code"], "yaml.syntax");

    let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let p = i - 1;
        bomb.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let reply = app.post_yaml("/v1/workflows", &bomb).await;
    assert_eq!(reply.problem(422)["errors"][0]["code"], "yaml.alias_limit");

    let deep = format!("name: {}{}", "[".repeat(5000), "]".repeat(5000));
    let code =
        app.post_yaml("/v1/workflows", &deep).await.problem(422)["errors"][0]["code"].clone();
    assert!(code == "yaml.too_deep" || code == "yaml.syntax", "{code}");
    let deep_json = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    app.post("/v1/workflows", "application/json", deep_json)
        .await
        .problem(400);

    app.post("/v1/workflows", "text/csv", "a,b")
        .await
        .problem(415);
    let untyped = app
        .send(
            Request::post("/v1/workflows")
                .body(Body::from(SMALL))
                .expect("request"),
        )
        .await;
    untyped.problem(415);
    app.post(
        "/v1/workflows",
        "application/yaml",
        vec![0xff_u8, 0xfe, 0x00],
    )
    .await
    .problem(400);
    app.post("/v1/workflows", "application/json", "{\"yaml\": 42}")
        .await
        .problem(400);
    assert!(list_ids(&app).await.is_empty(), "nothing was saved");
}

async fn bodies_over_the_limit_get_413(db: &TestDb) {
    let app = TestApp::with_limits(
        db,
        Limits {
            max_body_bytes: 1024,
        },
    )
    .await;
    let big = format!("{SMALL}description: \"{}\"\n", "x".repeat(2048));
    let reply = app.post_yaml("/v1/workflows", &big).await;
    assert!(
        reply.problem(413)["detail"]
            .as_str()
            .expect("detail")
            .contains("1024")
    );
    let fits = app.post_yaml("/v1/workflows", SMALL).await;
    assert_eq!(fits.status, 201);
}

async fn listing_filters_and_pages_with_cursors(db: &TestDb) {
    let app = TestApp::new(db).await;
    crate::api_templates::seed_example_templates(&app).await;
    for name in EXAMPLES {
        assert_eq!(
            app.post_yaml("/v1/workflows", &example(name)).await.status,
            201
        );
    }
    let mut cursor: Option<String> = None;
    let mut all = Vec::new();
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/workflows?limit=2&cursor={c}"),
            None => "/v1/workflows?limit=2".to_string(),
        };
        let page = app.get(&path).await;
        assert_eq!(page.status, 200);
        let items = page.json["items"].as_array().expect("items");
        assert!(items.len() <= 2);
        all.extend(items.iter().map(|w| w["id"].clone()));
        match page.json.get("next_cursor").and_then(Value::as_str) {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(all.len(), EXAMPLES.len());
    let mut sorted = all.clone();
    sorted.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
    assert_eq!(all, sorted, "ordered by id");

    let triage = app.get("/v1/workflows?name=triage").await;
    let names: Vec<&Value> = triage.json["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|w| &w["name"])
        .collect();
    assert_eq!(names, [&json!("Ticket Triage")]);
    app.get("/v1/workflows?cursor=not-a-cursor")
        .await
        .problem(400);
    app.get("/v1/workflows?limit=0").await.problem(400);
    app.get("/v1/workflows?limit=many").await.problem(400);
}

async fn validation_endpoints_check_without_saving(db: &TestDb) {
    let app = TestApp::new(db).await;
    let ok = app
        .post_yaml("/v1/workflows/validate", &example("triage.yaml"))
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(ok.json["valid"], true);
    assert_eq!(ok.json["definition"]["name"], "Ticket Triage");
    let bad = app
        .post_yaml("/v1/workflows/validate", "name: x\nsteps: []\n")
        .await;
    let errors = bad.problem(422)["errors"]
        .as_array()
        .expect("errors")
        .clone();
    assert!(
        errors
            .iter()
            .any(|e| e["code"] == "key.missing" && e["path"] == "start_step")
    );
    assert!(list_ids(&app).await.is_empty(), "validate saves nothing");

    app.post_yaml("/v1/workflows", SMALL).await;
    let stored = app
        .post("/v1/workflows/small/validate", "application/yaml", "")
        .await;
    assert_eq!(stored.status, 200, "{}", stored.text);
    let empty = app
        .send(
            Request::post("/v1/workflows/small/validate")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_eq!(empty.status, 200, "no body checks the stored version");
    let candidate = SMALL.replace("'1'", "'len(x'");
    let reply = app
        .post_yaml("/v1/workflows/small/validate", &candidate)
        .await;
    assert_eq!(
        reply.problem(422)["errors"][0]["code"],
        "expression.invalid"
    );
    app.post("/v1/workflows/ghost/validate", "application/yaml", "")
        .await
        .problem(404);
    assert_eq!(app.get("/v1/workflows/small").await.json["version"], 1);
}

async fn operations_and_unknown_routes(db: &TestDb) {
    let app = TestApp::new(db).await;
    let health = app.get("/healthz").await;
    assert_eq!(
        (health.status.as_u16(), health.json["status"].as_str()),
        (200, Some("ok"))
    );
    let ready = app.get("/readyz").await;
    assert_eq!(
        (ready.status.as_u16(), ready.json["status"].as_str()),
        (200, Some("ready"))
    );
    app.get("/v2/anything").await.problem(404);
    let wrong = app
        .send(
            Request::delete("/v1/workflows")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    wrong.problem(405);
    let docs = app.get("/docs").await;
    assert_eq!(docs.status, 200);
    assert!(docs.content_type().starts_with("text/html"));
    assert!(
        docs.text.contains("Scaff API"),
        "the page embeds the API description"
    );
    let spec = app.get("/openapi.yaml").await;
    assert_eq!(spec.content_type(), "application/yaml");
    assert!(spec.text.starts_with("openapi: 3.1"));
}

on_both_stores!(
    every_example_saves_as_version_one,
    versions_are_added_and_earlier_ones_stay,
    a_stated_version_out_of_turn_is_a_conflict,
    a_body_naming_another_id_is_refused,
    json_bodies_are_accepted_in_both_forms,
    invalid_definitions_answer_every_problem_and_save_nothing,
    malformed_and_hostile_bodies_are_refused,
    bodies_over_the_limit_get_413,
    listing_filters_and_pages_with_cursors,
    validation_endpoints_check_without_saving,
    operations_and_unknown_routes,
);
