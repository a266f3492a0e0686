//! The secrets API through the router on both stores, and `scaff secrets rotate-key` as a user
//! runs it: values go in, are sealed at rest, and never come out of any response or log line.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use scaff::secrets::{MasterKey, SecretsService};
use scaff::store::{self, StoreOptions};
use scaff_core::run::SystemClock;
use scaff_core::store::SealedSecret;
use serde_json::{Value, json};

use crate::on_both_stores;
use crate::support::{Reply, TestApp, TestDb};

const VALUE: &str = "sk-live-4f8a9c2e7b1d";

async fn post_secret(app: &TestApp, body: Value) -> Reply {
    app.post("/v1/secrets", "application/json", body.to_string())
        .await
}

async fn delete(app: &TestApp, path: &str) -> Reply {
    app.send(Request::delete(path).body(Body::empty()).expect("request"))
        .await
}

fn assert_no_value(reply: &Reply, value: &str) {
    assert!(
        !reply.text.contains(value),
        "a response carried the value: {}",
        reply.text
    );
    for (name, header) in &reply.headers {
        assert!(
            !header.to_str().unwrap_or("").contains(value),
            "header {name} carried the value"
        );
    }
}

async fn secrets_are_created_listed_replaced_and_deleted(db: &TestDb) {
    let app = TestApp::with_settings(
        db,
        scaff::server::Settings {
            clock: std::sync::Arc::new(crate::support::TickingClock::default()),
            ..scaff::server::Settings::default()
        },
    )
    .await;
    let mut replies = Vec::new();

    let created = post_secret(&app, json!({"name": "cms_token", "value": VALUE})).await;
    assert_eq!(created.status, 201, "{}", created.text);
    assert_eq!(created.json["name"], "cms_token");
    assert_eq!(created.json["created_at"], created.json["updated_at"]);
    assert_eq!(
        created.json.as_object().map(|o| o.len()),
        Some(3),
        "name and times only: {}",
        created.text
    );
    replies.push(created);

    let other = post_secret(&app, json!({"name": "Alpha_2", "value": "second"})).await;
    assert_eq!(other.status, 201);
    replies.push(other);

    let list = app.get("/v1/secrets").await;
    assert_eq!(list.status, 200);
    let names: Vec<&str> = list.json["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["Alpha_2", "cms_token"], "by name");
    for item in list.json["items"].as_array().expect("items") {
        let mut keys: Vec<&String> = item.as_object().expect("object").keys().collect();
        keys.sort();
        assert_eq!(keys, ["created_at", "name", "updated_at"]);
    }
    replies.push(list);

    let replaced = post_secret(&app, json!({"name": "cms_token", "value": "rotated-value"})).await;
    assert_eq!(
        replaced.status, 200,
        "a replacement is 200: {}",
        replaced.text
    );
    assert_eq!(replaced.json["created_at"], replies[0].json["created_at"]);
    assert_ne!(replaced.json["updated_at"], replies[0].json["updated_at"]);
    replies.push(replaced);

    let values = app.state.secret_values().values().await.expect("values");
    assert_eq!(values["cms_token"], "rotated-value");
    assert_eq!(values["Alpha_2"], "second");

    let deleted = delete(&app, "/v1/secrets/cms_token").await;
    assert_eq!(deleted.status, 204);
    assert!(deleted.text.is_empty());
    replies.push(deleted);
    let again = delete(&app, "/v1/secrets/cms_token").await;
    again.problem(404);
    replies.push(again);
    let values = app.state.secret_values().values().await.expect("values");
    assert!(
        !values.contains_key("cms_token"),
        "deletes are seen at once"
    );

    let list = app.get("/v1/secrets").await;
    assert_eq!(list.json["items"].as_array().map(Vec::len), Some(1));
    replies.push(list);
    for reply in &replies {
        assert_no_value(reply, VALUE);
        assert_no_value(reply, "rotated-value");
    }
}

async fn values_are_sealed_at_rest(db: &TestDb) {
    let app = TestApp::new(db).await;
    let reply = post_secret(&app, json!({"name": "api_key", "value": VALUE})).await;
    assert_eq!(reply.status, 201);
    let stored = db
        .store
        .get_secret("api_key")
        .await
        .expect("read")
        .expect("stored");
    assert_eq!(stored.key_id, app.state.secrets.key_id());
    assert_eq!(stored.key_id.len(), 16);
    assert!(
        !stored
            .ciphertext
            .windows(VALUE.len())
            .any(|w| w == VALUE.as_bytes()),
        "the plaintext is not in the stored bytes"
    );
    assert!(stored.ciphertext.len() >= 12 + VALUE.len() + 16);
}

async fn bad_names_and_values_are_422_naming_the_field(db: &TestDb) {
    let app = TestApp::new(db).await;
    let cases = [
        (json!({"name": "bad-name", "value": VALUE}), vec!["name"]),
        (json!({"name": "1st", "value": VALUE}), vec!["name"]),
        (
            json!({"name": "x".repeat(65), "value": VALUE}),
            vec!["name"],
        ),
        (json!({"name": "ok", "value": ""}), vec!["value"]),
        (
            json!({"name": "ok", "value": format!("{VALUE}\u{0}")}),
            vec!["value"],
        ),
        (
            json!({"name": "ok", "value": VALUE.repeat(64 * 1024 / VALUE.len() + 1)}),
            vec!["value"],
        ),
        (
            json!({"name": "ok", "value": 4_242_424_242u64}),
            vec!["value"],
        ),
        (json!({"name": "ok", "value": null}), vec!["value"]),
        (json!({"value": VALUE}), vec!["name"]),
        (json!({"name": "ok"}), vec!["value"]),
        (json!({"name": "a.b", "value": ""}), vec!["name", "value"]),
    ];
    for (body, fields) in cases {
        let reply = post_secret(&app, body.clone()).await;
        let problem = reply.problem(422);
        let paths: Vec<&str> = problem["errors"]
            .as_array()
            .expect("errors")
            .iter()
            .map(|e| e["path"].as_str().expect("path"))
            .collect();
        assert_eq!(paths, fields, "{body}");
        assert_no_value(&reply, VALUE);
        assert_no_value(&reply, "4242424242");
    }
    let unknown = post_secret(&app, json!({"name": "ok", "value": VALUE, "extra": 1})).await;
    unknown.problem(422);
    assert_no_value(&unknown, VALUE);
    let not_json = app.post("/v1/secrets", "text/plain", VALUE).await;
    not_json.problem(415);
    assert_no_value(&not_json, VALUE);
    let broken = app
        .post(
            "/v1/secrets",
            "application/json",
            format!("{{\"name\": \"ok\", \"value\": \"{VALUE}\""),
        )
        .await;
    broken.problem(400);
    assert_no_value(&broken, VALUE);
    assert!(
        db.store.all_secrets().await.expect("all").is_empty(),
        "nothing was stored"
    );
}

async fn deleting_an_unknown_secret_is_404(db: &TestDb) {
    let app = TestApp::new(db).await;
    let reply = delete(&app, "/v1/secrets/never_stored").await;
    let problem = reply.problem(404);
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("never_stored"))
    );
    delete(&app, "/v1/secrets/not%20a%20name")
        .await
        .problem(404);
}

on_both_stores!(
    secrets_are_created_listed_replaced_and_deleted,
    values_are_sealed_at_rest,
    bad_names_and_values_are_422_naming_the_field,
    deleting_an_unknown_secret_is_404,
);

/// `scaff serve` with its stderr (the log) going to a file; killed when dropped.
struct Serving {
    child: Child,
    addr: std::net::SocketAddr,
}

impl Serving {
    fn start(dir: &std::path::Path, db_url: &str, log: &std::path::Path) -> Serving {
        let log_file = std::fs::File::create(log).expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_scaff"))
            .current_dir(dir)
            .args([
                "--log-format",
                "json",
                "--log",
                "trace,sqlx=debug,hyper=info,h2=info",
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--auth",
                "none",
            ])
            .env_remove("DATABASE_URL")
            .env_remove("SCAFF_SECRETS_KEY")
            .env_remove("SCAFF_SECRETS_KEY_FILE")
            .env("SCAFF_DATABASE_URL", db_url)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file))
            .spawn()
            .expect("spawn scaff");
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let addr = BufReader::new(text.as_bytes())
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| serde_json::from_str::<Value>(&l).ok())
                .find_map(|v| v["address"].as_str().and_then(|a| a.parse().ok()));
            if let Some(addr) = addr {
                return Serving { child, addr };
            }
            if Instant::now() > until || child.try_wait().ok().flatten().is_some() {
                let _ = child.kill();
                panic!("scaff did not report its address; log: {text}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn scaff(dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_scaff"))
        .current_dir(dir)
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("SCAFF_DATABASE_URL")
        .env_remove("SCAFF_SECRETS_KEY")
        .env_remove("SCAFF_SECRETS_KEY_FILE")
        .output()
        .expect("run scaff")
}

async fn values_with(db_url: &str, key: MasterKey) -> Result<Vec<(String, String)>, String> {
    let store = store::connect(db_url, &StoreOptions::default())
        .await
        .expect("store");
    let service = SecretsService::new(store, key, Arc::new(SystemClock));
    use scaff_core::http::SecretValues;
    service
        .values()
        .await
        .map(|m| m.into_iter().collect::<Vec<_>>())
}

#[tokio::test]
async fn rotate_key_reseals_every_secret_and_swaps_the_key_file() {
    let dir = tempfile::tempdir().expect("dir");
    let db_url = format!("sqlite://{}", dir.path().join("scaff.db").display());
    let key_file = dir.path().join("scaff.key");
    let log = dir.path().join("serve.log");

    // The server creates the key file (0600) on first start; secrets go in over HTTP.
    let server = Serving::start(dir.path(), &db_url, &log);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file)
            .expect("key file created")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let client = reqwest::Client::new();
    for (name, value) in [("cms_token", VALUE), ("chat_hook", "hook-secret-77")] {
        let reply = client
            .post(format!("http://{}/v1/secrets", server.addr))
            .json(&json!({"name": name, "value": value}))
            .send()
            .await
            .expect("post");
        assert_eq!(reply.status(), 201);
        let text = reply.text().await.expect("body");
        assert!(!text.contains(value));
    }
    let listed = client
        .get(format!("http://{}/v1/secrets", server.addr))
        .send()
        .await
        .expect("list")
        .text()
        .await
        .expect("body");
    assert!(!listed.contains(VALUE) && listed.contains("cms_token"));
    drop(server);
    let logged = std::fs::read_to_string(&log).expect("log");
    assert!(logged.contains("/v1/secrets"), "requests are logged");
    for value in [VALUE, "hook-secret-77"] {
        assert!(!logged.contains(value), "the log carried a value");
    }

    let old_key = MasterKey::load_file(&key_file).expect("old key");
    let rotated = scaff(
        dir.path(),
        &["secrets", "rotate-key", "--database-url", &db_url],
    );
    let stdout = String::from_utf8_lossy(&rotated.stdout);
    assert!(
        rotated.status.success(),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&rotated.stderr)
    );
    assert!(stdout.contains("re-sealed 2 secret(s)"), "{stdout}");
    assert!(!stdout.contains(VALUE));

    let new_key = MasterKey::load_file(&key_file).expect("new key");
    assert_ne!(new_key.key_id(), old_key.key_id());
    assert!(!dir.path().join("scaff.key.new").exists());
    let kept = MasterKey::load_file(&dir.path().join("scaff.key.old")).expect("old kept");
    assert_eq!(kept.key_id(), old_key.key_id());
    let values = values_with(&db_url, new_key.clone())
        .await
        .expect("the new key opens every secret");
    assert_eq!(
        values,
        [
            ("chat_hook".to_string(), "hook-secret-77".to_string()),
            ("cms_token".to_string(), VALUE.to_string())
        ]
    );
    let err = values_with(&db_url, old_key).await.expect_err("old key");
    assert!(err.contains("sealed by key"), "{err}");

    // A secret of a key nobody has: the rotation refuses, naming it, and changes nothing.
    let store = store::connect(&db_url, &StoreOptions::default())
        .await
        .expect("store");
    let stranger = MasterKey::generate();
    store
        .put_secret(SealedSecret {
            name: "orphan".into(),
            ciphertext: scaff::secrets::seal(&stranger, "orphan", b"lost"),
            key_id: stranger.key_id().into(),
            created_at: chrono::Utc::now(),
            updated_at: chrono::Utc::now(),
        })
        .await
        .expect("put");
    let before = store.all_secrets().await.expect("all");
    let refused = scaff(
        dir.path(),
        &["secrets", "rotate-key", "--database-url", &db_url],
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("`orphan`") && stderr.contains(stranger.key_id()),
        "{stderr}"
    );
    assert_eq!(store.all_secrets().await.expect("all"), before);
    assert_eq!(
        MasterKey::load_file(&key_file).expect("key").key_id(),
        new_key.key_id(),
        "the key file is unchanged"
    );
    assert!(!dir.path().join("scaff.key.new").exists());
}

#[test]
fn rotate_key_documents_itself() {
    let dir = tempfile::tempdir().expect("dir");
    let help = scaff(dir.path(), &["secrets", "rotate-key", "--help"]);
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    for needle in [
        "--secrets-key-file",
        "--new-key-file",
        "--database-url",
        ".old",
        "nothing is changed",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
}
