//! Authentication and authorization: API keys and their roles, JWTs (HS256, RS256 from a PEM
//! file or a JWKS), resumes authorized by a resume token alone, the audit trail naming the
//! caller, and — through the real binary — the first admin key printed once and `--auth none`
//! refused off loopback.

use axum::body::Body;
use axum::http::{Request, header};
use chrono::Utc;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use scaff::auth::{self, JwtSettings};
use scaff_core::store::Role;
use serde_json::{Value, json};

use crate::on_both_stores;
use crate::support::{Reply, Server, TestApp, TestDb};

const FORM: &str = r#"
id: brief
name: Brief
start_step: collect
steps:
  - id: collect
    type: form
    config:
      fields:
        - {key: topic, type: string, required: true}
    next: done
  - {id: done, type: set, config: {values: {ok: "true"}}}
"#;

const REVIEW: &str = r#"
id: review
name: Review
start_step: check
steps:
  - id: check
    type: approval
    config:
      approvers: [ann@example.com]
      min_approvals: 1
    next: done
  - {id: done, type: set, config: {values: {ok: "true"}}}
"#;

const SECRET: &str = "a-jwt-secret-of-at-least-32-bytes!!";

/// Sends a request with an optional bearer credential and JSON (or YAML) body.
async fn call(
    app: &TestApp,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> Reply {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(b) = bearer {
        req = req.header(header::AUTHORIZATION, format!("Bearer {b}"));
    }
    let req = match body {
        Some(Value::String(yaml)) => req
            .header(header::CONTENT_TYPE, "application/yaml")
            .body(Body::from(yaml)),
        Some(v) => req
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(v.to_string())),
        None => req.body(Body::empty()),
    };
    app.send(req.expect("request")).await
}

async fn key(db: &TestDb, name: &str, role: Role) -> String {
    auth::issue_key(db.store.as_ref(), name, role, Utc::now())
        .await
        .expect("issue a key")
        .key
}

fn unauthorized(reply: &Reply) -> String {
    let problem = reply.problem(401);
    assert_eq!(problem["type"], "urn:scaff:problem:unauthorized");
    let challenge = reply
        .headers
        .get(header::WWW_AUTHENTICATE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    assert!(challenge.starts_with("Bearer"), "{challenge:?}");
    problem["detail"].as_str().unwrap_or("").to_string()
}

fn forbidden(reply: &Reply) {
    let problem = reply.problem(403);
    assert_eq!(problem["type"], "urn:scaff:problem:forbidden");
}

fn jwt(claims: Value) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("sign")
}

fn in_an_hour() -> i64 {
    Utc::now().timestamp() + 3600
}

async fn without_credentials_only_the_public_routes_answer(db: &TestDb) {
    let app = TestApp::with_auth(db, JwtSettings::default()).await;
    for path in ["/v1/workflows", "/v1/executions", "/v1/usage", "/v1/keys"] {
        let detail = unauthorized(&call(&app, "GET", path, None, None).await);
        assert!(detail.contains("scaff keys create"), "{detail}");
    }
    unauthorized(&call(&app, "POST", "/v1/executions", None, Some(json!({}))).await);
    for path in ["/healthz", "/metrics", "/openapi.yaml", "/docs"] {
        assert_eq!(
            call(&app, "GET", path, None, None).await.status,
            200,
            "{path}"
        );
    }
    assert_eq!(call(&app, "GET", "/readyz", None, None).await.status, 200);
    // No route: 404 whoever asks.
    assert_eq!(
        call(&app, "GET", "/v1/nothing", None, None).await.status,
        404
    );

    let not_bearer = app
        .send(
            Request::get("/v1/workflows")
                .header(header::AUTHORIZATION, "Basic YWRtaW46YWRtaW4=")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    unauthorized(&not_bearer);
    let fake = format!("scaff_aaaaaaaa_{}", "b".repeat(32));
    let detail = unauthorized(&call(&app, "GET", "/v1/workflows", Some(&fake), None).await);
    assert_eq!(detail, "the API key is not valid");
    // A real key's prefix with another secret is refused as well.
    let real = key(db, "real", Role::Admin).await;
    let forged = format!("{}{}", &real[..15], "c".repeat(32));
    unauthorized(&call(&app, "GET", "/v1/workflows", Some(&forged), None).await);
    // A JWT where none is configured.
    let detail = unauthorized(
        &call(
            &app,
            "GET",
            "/v1/workflows",
            Some(&jwt(
                json!({"sub": "x", "role": "admin", "exp": in_an_hour()}),
            )),
            None,
        )
        .await,
    );
    assert!(detail.contains("API keys only"), "{detail}");
}

async fn each_role_may_do_what_it_should_and_no_more(db: &TestDb) {
    let app = TestApp::with_auth(db, JwtSettings::default()).await;
    let admin = key(db, "root", Role::Admin).await;
    let ops = key(db, "deployer", Role::Operator).await;
    let viewer = key(db, "dashboard", Role::Viewer).await;

    // Workflows: admin writes, operator may not; everyone reads and validates.
    let created = call(
        &app,
        "POST",
        "/v1/workflows",
        Some(&admin),
        Some(json!(FORM)),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.json["created_by"], "key:root");
    forbidden(
        &call(
            &app,
            "POST",
            "/v1/workflows",
            Some(&ops),
            Some(json!(REVIEW)),
        )
        .await,
    );
    forbidden(
        &call(
            &app,
            "POST",
            "/v1/templates",
            Some(&ops),
            Some(json!({"id": "t", "prompt": "hi"})),
        )
        .await,
    );
    let t = call(
        &app,
        "POST",
        "/v1/templates",
        Some(&admin),
        Some(json!({"id": "t", "prompt": "hi"})),
    )
    .await;
    assert_eq!(t.status, 201, "{}", t.text);
    assert_eq!(t.json["created_by"], "key:root");
    for k in [&admin, &ops, &viewer] {
        assert_eq!(
            call(&app, "GET", "/v1/workflows/brief", Some(k), None)
                .await
                .status,
            200
        );
        assert_eq!(
            call(&app, "GET", "/metrics", Some(k), None).await.status,
            200
        );
        let v = call(
            &app,
            "POST",
            "/v1/workflows/validate",
            Some(k),
            Some(json!(FORM)),
        )
        .await;
        assert_eq!(v.status, 200, "{}", v.text);
    }

    // Runs: operators start and cancel; viewers read, without the resume token.
    let start = json!({"workflow_id": "brief", "wait_ms": 5000});
    forbidden(
        &call(
            &app,
            "POST",
            "/v1/executions",
            Some(&viewer),
            Some(start.clone()),
        )
        .await,
    );
    let run = call(&app, "POST", "/v1/executions", Some(&ops), Some(start)).await;
    assert_eq!(run.status, 202, "{}", run.text);
    assert_eq!(run.json["created_by"], "key:deployer");
    assert!(run.json["resume_token"].is_string(), "{}", run.text);
    let id = run.json["id"].as_str().expect("id");
    let seen = call(
        &app,
        "GET",
        &format!("/v1/executions/{id}"),
        Some(&viewer),
        None,
    )
    .await;
    assert_eq!(seen.status, 200);
    assert_eq!(seen.json["status"], "waiting");
    assert!(seen.json.get("resume_token").is_none(), "{}", seen.text);
    let listed = call(&app, "GET", "/v1/executions", Some(&viewer), None).await;
    assert!(
        listed.json["items"][0].get("resume_token").is_none(),
        "{}",
        listed.text
    );
    let cancel = format!("/v1/executions/{id}/cancel");
    forbidden(&call(&app, "POST", &cancel, Some(&viewer), None).await);
    let canceled = call(&app, "POST", &cancel, Some(&ops), None).await;
    assert_eq!(canceled.status, 200, "{}", canceled.text);
    let events = call(
        &app,
        "GET",
        &format!("/v1/executions/{id}/events"),
        Some(&viewer),
        None,
    )
    .await;
    let actors: Vec<(String, String)> = events.json["items"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| {
            Some((
                e["kind"].as_str()?.to_string(),
                e["actor"].as_str()?.to_string(),
            ))
        })
        .collect();
    assert!(
        actors.contains(&("run.created".into(), "key:deployer".into())),
        "{actors:?}"
    );
    assert!(
        actors.contains(&("run.canceled".into(), "key:deployer".into())),
        "{actors:?}"
    );

    // Secrets, keys and the outbox: admin only.
    for k in [&ops, &viewer] {
        forbidden(&call(&app, "GET", "/v1/secrets", Some(k), None).await);
        forbidden(&call(&app, "GET", "/v1/keys", Some(k), None).await);
        forbidden(&call(&app, "GET", "/v1/outbox", Some(k), None).await);
        forbidden(
            &call(
                &app,
                "POST",
                "/v1/keys",
                Some(k),
                Some(json!({"name": "x", "role": "admin"})),
            )
            .await,
        );
    }
    assert_eq!(
        call(&app, "GET", "/v1/secrets", Some(&admin), None)
            .await
            .status,
        200
    );
    assert_eq!(
        call(&app, "GET", "/v1/outbox", Some(&admin), None)
            .await
            .status,
        200
    );
}

async fn keys_are_created_listed_and_revoked_through_the_api(db: &TestDb) {
    let app = TestApp::with_auth(db, JwtSettings::default()).await;
    let admin = key(db, "root", Role::Admin).await;
    let created = call(
        &app,
        "POST",
        "/v1/keys",
        Some(&admin),
        Some(json!({"name": "ci", "role": "operator"})),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let ci = created.json["key"]
        .as_str()
        .expect("the key, once")
        .to_string();
    assert!(ci.starts_with("scaff_"), "{ci}");
    assert_eq!(created.json["role"], "operator");
    assert!(ci.starts_with(created.json["prefix"].as_str().expect("prefix")));
    let ci_id = created.json["id"].as_str().expect("id").to_string();

    // The new key works, with its role.
    assert_eq!(
        call(&app, "GET", "/v1/workflows", Some(&ci), None)
            .await
            .status,
        200
    );
    forbidden(&call(&app, "GET", "/v1/keys", Some(&ci), None).await);

    // Listing shows no secret at all.
    let listed = call(&app, "GET", "/v1/keys", Some(&admin), None).await;
    assert_eq!(listed.status, 200);
    assert!(!listed.text.contains(&ci[15..]), "{}", listed.text);
    assert!(!listed.text.contains("hash"), "{}", listed.text);
    let names: Vec<&str> = listed.json["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|k| k["name"].as_str())
        .collect();
    assert_eq!(names, ["root", "ci"]);
    assert!(
        listed.json["items"][0]["last_used_at"].is_string(),
        "{}",
        listed.text
    );

    // Bad requests.
    let bad_role = call(
        &app,
        "POST",
        "/v1/keys",
        Some(&admin),
        Some(json!({"name": "x", "role": "root"})),
    )
    .await;
    assert_eq!(bad_role.problem(422)["errors"][0]["path"], "role");
    let blank = call(
        &app,
        "POST",
        "/v1/keys",
        Some(&admin),
        Some(json!({"name": " ", "role": "viewer"})),
    )
    .await;
    assert_eq!(blank.problem(422)["errors"][0]["path"], "name");
    let dup = call(
        &app,
        "POST",
        "/v1/keys",
        Some(&admin),
        Some(json!({"name": "ci", "role": "viewer"})),
    )
    .await;
    dup.problem(409);

    // Revoked: 401 from then on; revoking again is harmless; unknown ids are 404.
    let path = format!("/v1/keys/{ci_id}");
    assert_eq!(
        call(&app, "DELETE", &path, Some(&admin), None).await.status,
        204
    );
    let detail = unauthorized(&call(&app, "GET", "/v1/workflows", Some(&ci), None).await);
    assert!(detail.contains("revoked"), "{detail}");
    assert_eq!(
        call(&app, "DELETE", &path, Some(&admin), None).await.status,
        204
    );
    call(&app, "DELETE", "/v1/keys/not-a-uuid", Some(&admin), None)
        .await
        .problem(404);
    let listed = call(&app, "GET", "/v1/keys", Some(&admin), None).await;
    assert!(
        listed.json["items"][1]["revoked_at"].is_string(),
        "{}",
        listed.text
    );
}

async fn hs256_jwts_carry_subject_and_role(db: &TestDb) {
    let app = TestApp::with_auth(
        db,
        JwtSettings {
            secret: Some(SECRET.into()),
            ..JwtSettings::default()
        },
    )
    .await;
    let admin = key(db, "root", Role::Admin).await;
    let r = call(
        &app,
        "POST",
        "/v1/workflows",
        Some(&admin),
        Some(json!(FORM)),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);

    let alice = jwt(json!({"sub": "alice", "role": "operator", "exp": in_an_hour()}));
    let run = call(
        &app,
        "POST",
        "/v1/executions",
        Some(&alice),
        Some(json!({"workflow_id": "brief"})),
    )
    .await;
    assert_eq!(run.status, 202, "{}", run.text);
    assert_eq!(run.json["created_by"], "jwt:alice");
    forbidden(
        &call(
            &app,
            "POST",
            "/v1/workflows",
            Some(&alice),
            Some(json!(REVIEW)),
        )
        .await,
    );
    // A list of roles grants the highest.
    let bob = jwt(json!({"sub": "bob", "role": ["viewer", "admin"], "exp": in_an_hour()}));
    assert_eq!(
        call(&app, "GET", "/v1/keys", Some(&bob), None).await.status,
        200
    );

    let expired =
        jwt(json!({"sub": "alice", "role": "admin", "exp": Utc::now().timestamp() - 3600}));
    let detail = unauthorized(&call(&app, "GET", "/v1/workflows", Some(&expired), None).await);
    assert!(detail.contains("expired"), "{detail}");
    let foreign = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"sub": "mallory", "role": "admin", "exp": in_an_hour()}),
        &EncodingKey::from_secret(b"another-secret-another-secret-another"),
    )
    .expect("sign");
    unauthorized(&call(&app, "GET", "/v1/workflows", Some(&foreign), None).await);
    let no_exp = jwt(json!({"sub": "alice", "role": "admin"}));
    unauthorized(&call(&app, "GET", "/v1/workflows", Some(&no_exp), None).await);
    let no_role = jwt(json!({"sub": "carol", "exp": in_an_hour()}));
    forbidden(&call(&app, "GET", "/v1/workflows", Some(&no_role), None).await);
    let odd_role = jwt(json!({"sub": "carol", "role": "superuser", "exp": in_an_hour()}));
    forbidden(&call(&app, "GET", "/v1/workflows", Some(&odd_role), None).await);
    // A resume token (signed by the server) is no bearer credential.
    let run_id = run.json["id"].as_str().expect("id");
    let seen = call(
        &app,
        "GET",
        &format!("/v1/executions/{run_id}?wait_ms=5000"),
        Some(&alice),
        None,
    )
    .await;
    let token = seen.json["resume_token"].as_str().expect("resume token");
    unauthorized(&call(&app, "GET", "/v1/workflows", Some(token), None).await);
}

/// An RSA key pair made by `openssl` in `dir`: (private PEM, public PEM path).
fn rsa_pair(dir: &std::path::Path) -> (Vec<u8>, std::path::PathBuf) {
    let private = dir.join("private.pem");
    let public = dir.join("public.pem");
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let (private_s, public_s) = (private.display().to_string(), public.display().to_string());
    run(&["genrsa", "-out", &private_s, "2048"]);
    run(&["rsa", "-in", &private_s, "-pubout", "-out", &public_s]);
    (std::fs::read(&private).expect("private key"), public)
}

async fn rs256_jwts_verify_with_a_pem_key_or_a_jwks(db: &TestDb) {
    let dir = tempfile::tempdir().expect("dir");
    let (private, public) = rsa_pair(dir.path());
    let signing = EncodingKey::from_rsa_pem(&private).expect("RSA key");
    let sign = |header: Header, claims: Value| {
        jsonwebtoken::encode(&header, &claims, &signing).expect("sign")
    };
    let claims = json!({"sub": "svc", "realm": {"roles": ["viewer"]}, "exp": in_an_hour()});

    let app = TestApp::with_auth(
        db,
        JwtSettings {
            public_key_file: Some(public),
            role_claim: "realm.roles".into(),
            ..JwtSettings::default()
        },
    )
    .await;
    let token = sign(Header::new(Algorithm::RS256), claims.clone());
    assert_eq!(
        call(&app, "GET", "/v1/workflows", Some(&token), None)
            .await
            .status,
        200
    );
    forbidden(
        &call(
            &app,
            "POST",
            "/v1/executions",
            Some(&token),
            Some(json!({"workflow_id": "x"})),
        )
        .await,
    );
    // HS256 signed with the public key's text (algorithm confusion) is refused.
    let pem = std::fs::read(dir.path().join("public.pem")).expect("pem");
    let confused = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(&pem),
    )
    .expect("sign");
    unauthorized(&call(&app, "GET", "/v1/workflows", Some(&confused), None).await);

    // The same key in a JWKS, found by `kid`.
    let mut jwk =
        jsonwebtoken::jwk::Jwk::from_encoding_key(&signing, Algorithm::RS256).expect("jwk");
    jwk.common.key_id = Some("k1".into());
    let jwks = dir.path().join("jwks.json");
    std::fs::write(
        &jwks,
        serde_json::to_vec(&json!({"keys": [jwk]})).expect("json"),
    )
    .expect("write");
    let app = TestApp::with_auth(
        db,
        JwtSettings {
            jwks_file: Some(jwks),
            role_claim: "realm.roles".into(),
            ..JwtSettings::default()
        },
    )
    .await;
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("k1".into());
    let token = sign(header, claims.clone());
    assert_eq!(
        call(&app, "GET", "/v1/workflows", Some(&token), None)
            .await
            .status,
        200
    );
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("other".into());
    unauthorized(
        &call(
            &app,
            "GET",
            "/v1/workflows",
            Some(&sign(header, claims)),
            None,
        )
        .await,
    );
}

async fn a_resume_token_alone_authorizes_its_resume(db: &TestDb) {
    let app = TestApp::with_auth(db, JwtSettings::default()).await;
    let admin = key(db, "root", Role::Admin).await;
    let ops = key(db, "deployer", Role::Operator).await;
    for src in [FORM, REVIEW] {
        let r = call(
            &app,
            "POST",
            "/v1/workflows",
            Some(&admin),
            Some(json!(src)),
        )
        .await;
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let start = |wf: &str| json!({"workflow_id": wf, "wait_ms": 5000});

    // A form: the token, no credentials.
    let run = call(
        &app,
        "POST",
        "/v1/executions",
        Some(&ops),
        Some(start("brief")),
    )
    .await;
    let id = run.json["id"].as_str().expect("id").to_string();
    let token = run.json["resume_token"]
        .as_str()
        .expect("token")
        .to_string();
    let resume = format!("/v1/executions/{id}/resume");
    // Bad credentials are refused even with a good token.
    unauthorized(
        &call(
            &app,
            "POST",
            &resume,
            Some("scaff_nope"),
            Some(json!({"resume_token": token, "inputs": {"topic": "x"}})),
        )
        .await,
    );
    // A bad token without credentials is the handler's 401.
    unauthorized(
        &call(
            &app,
            "POST",
            &resume,
            None,
            Some(json!({"resume_token": "forged", "inputs": {"topic": "x"}})),
        )
        .await,
    );
    let done = call(
        &app,
        "POST",
        &resume,
        None,
        Some(json!({"resume_token": token, "inputs": {"topic": "x"}, "wait_ms": 5000})),
    )
    .await;
    assert_eq!(done.status, 200, "{}", done.text);
    assert_eq!(done.json["status"], "completed", "{}", done.text);

    // The same with credentials: the key is the actor.
    let run = call(
        &app,
        "POST",
        "/v1/executions",
        Some(&ops),
        Some(start("brief")),
    )
    .await;
    let id2 = run.json["id"].as_str().expect("id").to_string();
    let token = run.json["resume_token"].as_str().expect("token");
    let done = call(
        &app,
        "POST",
        &format!("/v1/executions/{id2}/resume"),
        Some(&ops),
        Some(json!({"resume_token": token, "inputs": {"topic": "y"}})),
    )
    .await;
    assert_eq!(done.status, 200, "{}", done.text);

    // An approval: the approver's token alone decides, and the approver is the actor.
    let run = call(
        &app,
        "POST",
        "/v1/executions",
        Some(&ops),
        Some(start("review")),
    )
    .await;
    let rid = run.json["id"].as_str().expect("id").to_string();
    let approvals = format!("/v1/executions/{rid}/approvals");
    let viewer = key(db, "dashboard", Role::Viewer).await;
    forbidden(&call(&app, "GET", &approvals, Some(&viewer), None).await);
    let tokens = call(&app, "GET", &approvals, Some(&ops), None).await;
    assert_eq!(tokens.status, 200, "{}", tokens.text);
    let ann = tokens.json["approvers"][0]["resume_token"]
        .as_str()
        .expect("ann's token");
    let decided = call(
        &app,
        "POST",
        &format!("/v1/executions/{rid}/resume"),
        None,
        Some(json!({"resume_token": ann, "approvals": [{"step_id": "check", "approved": true}], "wait_ms": 5000})),
    )
    .await;
    assert_eq!(decided.status, 200, "{}", decided.text);

    let actor_of = |events: &Reply, kind: &str| {
        events.json["items"]
            .as_array()
            .expect("events")
            .iter()
            .find(|e| e["kind"] == kind)
            .map(|e| e["actor"].clone())
            .unwrap_or(Value::Null)
    };
    let events = |run: String| {
        let app = &app;
        let ops = ops.clone();
        async move {
            call(
                app,
                "GET",
                &format!("/v1/executions/{run}/events"),
                Some(&ops),
                None,
            )
            .await
        }
    };
    assert_eq!(actor_of(&events(id).await, "run.resumed"), "resume-token");
    assert_eq!(actor_of(&events(id2).await, "run.resumed"), "key:deployer");
    assert_eq!(
        actor_of(&events(rid).await, "approval.decided"),
        "ann@example.com"
    );
}

async fn the_openapi_document_names_the_scheme_and_each_role(db: &TestDb) {
    let app = TestApp::with_auth(db, JwtSettings::default()).await;
    let doc = call(&app, "GET", "/openapi.yaml", None, None).await;
    assert_eq!(doc.status, 200);
    let doc: Value = serde_yaml::from_str(&doc.text).expect("yaml");
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
    let start = &doc["paths"]["/v1/executions"]["post"];
    assert_eq!(start["security"][0]["bearer"], json!([]));
    assert!(
        start["description"]
            .as_str()
            .unwrap_or("")
            .contains("`operator`")
    );
    assert!(start["responses"]["403"].is_object());
    assert_eq!(doc["paths"]["/healthz"]["get"]["security"], json!([]));
}

on_both_stores!(
    without_credentials_only_the_public_routes_answer,
    each_role_may_do_what_it_should_and_no_more,
    keys_are_created_listed_and_revoked_through_the_api,
    hs256_jwts_carry_subject_and_role,
    rs256_jwts_verify_with_a_pem_key_or_a_jwks,
    a_resume_token_alone_authorizes_its_resume,
    the_openapi_document_names_the_scheme_and_each_role,
);

/// The key in the banner the server printed, if any.
fn printed_key(lines: &[String]) -> Option<String> {
    lines.iter().find_map(|l| {
        l.split(|c: char| c.is_whitespace() || c == '│')
            .find(|w| auth::key_prefix(w).is_some())
            .map(str::to_string)
    })
}

fn scaff_cli(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_scaff"))
        .current_dir(dir)
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("SCAFF_DATABASE_URL")
        .output()
        .expect("run scaff")
}

#[tokio::test]
async fn the_first_start_prints_an_admin_key_once_and_the_cli_manages_keys() {
    let dir = tempfile::tempdir().expect("dir");
    let client = reqwest::Client::new();
    let first = Server::start_secured(dir.path(), &[], &[]);
    let admin = printed_key(&first.logs()).expect("the first start prints a key");
    let url = first.url("/v1/workflows");
    assert_eq!(client.get(&url).send().await.expect("send").status(), 401);
    let ok = client
        .get(&url)
        .bearer_auth(&admin)
        .send()
        .await
        .expect("send");
    assert_eq!(ok.status(), 200);
    assert_eq!(
        client
            .get(first.url("/healthz"))
            .send()
            .await
            .expect("send")
            .status(),
        200
    );
    // The log line says a key was made, never which.
    let logged: Vec<String> = first
        .logs()
        .into_iter()
        .filter(|l| l.starts_with('{'))
        .collect();
    assert!(
        logged.iter().any(|l| l.contains("first admin API key")),
        "{logged:?}"
    );
    assert!(!logged.iter().any(|l| l.contains(&admin)), "{logged:?}");
    drop(first);

    let second = Server::start_secured(dir.path(), &[], &[]);
    assert_eq!(printed_key(&second.logs()), None, "{:?}", second.logs());
    let ok = client
        .get(second.url("/v1/workflows"))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("send");
    assert_eq!(ok.status(), 200);

    // `scaff keys create` prints the key alone on stdout; it works against the running server.
    let out = scaff_cli(
        dir.path(),
        &["keys", "create", "--name", "ci", "--role", "viewer"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ci = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(auth::key_prefix(&ci).is_some(), "{ci}");
    let seen = client
        .get(second.url("/v1/executions"))
        .bearer_auth(&ci)
        .send()
        .await
        .expect("send");
    assert_eq!(seen.status(), 200);
    let refused = client
        .post(second.url("/v1/executions"))
        .bearer_auth(&ci)
        .json(&json!({"workflow_id": "x"}))
        .send()
        .await
        .expect("send");
    assert_eq!(refused.status(), 403);

    let out = scaff_cli(dir.path(), &["keys", "list"]);
    let listing = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        listing.contains("admin (first start)") && listing.contains("ci"),
        "{listing}"
    );
    assert!(
        !listing.contains(&ci) && !listing.contains(&admin),
        "{listing}"
    );
    let ci_id = listing
        .lines()
        .find(|l| l.ends_with("  ci"))
        .and_then(|l| l.split_whitespace().next())
        .expect("ci's id")
        .to_string();
    let out = scaff_cli(dir.path(), &["keys", "revoke", &ci_id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let gone = client
        .get(second.url("/v1/executions"))
        .bearer_auth(&ci)
        .send()
        .await
        .expect("send");
    assert_eq!(gone.status(), 401);
    let out = scaff_cli(
        dir.path(),
        &["keys", "create", "--name", "x", "--role", "root"],
    );
    assert!(!out.status.success());
}

#[test]
fn auth_none_is_refused_off_loopback() {
    let dir = tempfile::tempdir().expect("dir");
    let out = scaff_cli(
        dir.path(),
        &["serve", "--auth", "none", "--listen", "0.0.0.0:0"],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--auth none is refused") && stderr.contains("0.0.0.0"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("scaff.db").exists(),
        "refused before touching anything"
    );
}
