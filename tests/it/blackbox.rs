//! The built binary as a user runs it: real HTTP on loopback, the CLI, signals.

use std::process::{Command, Output};
use std::time::Duration;

use crate::support::{Server, TestDb, example, wait_for};

fn scaff(args: &[&str], cwd: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_scaff"))
        .args(args)
        .current_dir(cwd)
        .env_remove("DATABASE_URL")
        .env_remove("SCAFF_DATABASE_URL")
        .output()
        .expect("run scaff")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

async fn post_yaml(server: &Server, path: &str, body: String) -> reqwest::Response {
    client()
        .post(server.url(path))
        .header("content-type", "application/yaml")
        .body(body)
        .send()
        .await
        .expect("request")
}

#[tokio::test]
async fn with_nothing_configured_it_keeps_data_in_a_local_sqlite_file() {
    let dir = tempfile::tempdir().expect("dir");
    let first = Server::start(dir.path(), &[], &[]);
    assert!(
        dir.path().join("scaff.db").exists(),
        "the default store is ./scaff.db"
    );
    let ready = client()
        .get(first.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(ready.status(), 200);
    let created = post_yaml(&first, "/v1/workflows", example("chain10.yaml")).await;
    assert_eq!(created.status(), 201);
    let id = created.json::<serde_json::Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string();
    drop(first);

    let second = Server::start(dir.path(), &[], &[]);
    let read = client()
        .get(second.url(&format!("/v1/workflows/{id}")))
        .send()
        .await
        .expect("get");
    assert_eq!(read.status(), 200, "the workflow survived the restart");
}

#[tokio::test]
async fn database_url_selects_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(dir.path(), &[("DATABASE_URL", &db.url)], &[]);
    let created = post_yaml(&server, "/v1/workflows", example("triage.yaml")).await;
    assert_eq!(created.status(), 201);
    let id = created.json::<serde_json::Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let stored = db.store.latest_workflow(&id).await.expect("read");
    assert_eq!(stored.map(|w| w.name), Some("Ticket Triage".to_string()));
    assert!(
        !dir.path().join("scaff.db").exists(),
        "no SQLite file when PostgreSQL is configured"
    );
}

#[tokio::test]
async fn env_twins_configure_listen_address_and_body_limit() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(dir.path(), &[("SCAFF_MAX_BODY_BYTES", "1000")], &[]);
    let big = format!("name: x\ndescription: \"{}\"\n", "y".repeat(5000));
    let reply = post_yaml(&server, "/v1/workflows", big).await;
    assert_eq!(reply.status(), 413);
    assert_eq!(reply.headers()["content-type"], "application/problem+json");
}

#[test]
fn serve_help_shows_every_flag_with_its_env_twin() {
    let dir = tempfile::tempdir().expect("dir");
    let out = scaff(&["serve", "--help"], dir.path());
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for (flag, env) in [
        ("--listen", "SCAFF_LISTEN"),
        ("--database-url", "SCAFF_DATABASE_URL"),
        ("--max-body-bytes", "SCAFF_MAX_BODY_BYTES"),
        ("--db-max-connections", "SCAFF_DB_MAX_CONNECTIONS"),
        ("--shutdown-grace-s", "SCAFF_SHUTDOWN_GRACE_S"),
        ("--log-format", "SCAFF_LOG_FORMAT"),
        ("--log", "SCAFF_LOG"),
    ] {
        let start = help
            .find(&format!("      {flag} "))
            .unwrap_or_else(|| panic!("{flag} missing from:\n{help}"));
        let block = &help[start + flag.len() + 6..];
        let block = &block[..block.find("\n      -").unwrap_or(block.len())];
        assert!(
            block.contains(&format!("[env: {env}=")),
            "{flag} lacks env {env}:\n{block}"
        );
    }
    assert!(help.contains("[default: 127.0.0.1:8080]"));
    assert!(help.contains("DATABASE_URL"));
}

#[tokio::test]
async fn sigterm_shuts_down_gracefully() {
    let dir = tempfile::tempdir().expect("dir");
    let mut server = Server::start(dir.path(), &[], &[]);
    let pid = server.child.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = wait_for(Duration::from_secs(20), || {
        let exited = server.child.try_wait().expect("wait");
        async move { exited }
    })
    .await
    .expect("the server stops after SIGTERM");
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn validate_prints_compiler_style_problems_and_fails() {
    let dir = tempfile::tempdir().expect("dir");
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "name: Bad\nstart_step: a\nsteps:\n  - id: a\n    type: set\n    config: {values: {n: '1'}}\n    nxet: b\n",
    )
    .expect("write");
    let good = dir.path().join("good.yaml");
    std::fs::write(&good, example("triage.yaml")).expect("write");

    let ok = scaff(&["validate", "good.yaml"], dir.path());
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );

    let out = scaff(
        &["validate", "good.yaml", "bad.yaml", "missing.yaml"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("bad.yaml:7:5: error: unknown key `nxet`; did you mean `next`?"),
        "{stdout}"
    );
    assert!(stdout.contains("good.yaml: ok"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("missing.yaml: error: cannot read the file"),
        "{stderr}"
    );
}

#[test]
fn validate_accepts_every_example() {
    let dir = tempfile::tempdir().expect("dir");
    let root = env!("CARGO_MANIFEST_DIR");
    let mut args = vec!["validate".to_string()];
    for folder in [
        format!("{root}/examples"),
        format!("{root}/../shared/examples"),
    ] {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries {
            args.push(entry.expect("entry").path().display().to_string());
        }
    }
    assert!(args.len() >= 6, "the examples are present");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = scaff(&args, dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn the_examples_are_the_shared_ones() {
    let root = env!("CARGO_MANIFEST_DIR");
    let Ok(shared) = std::fs::read_dir(format!("{root}/../shared/examples")) else {
        return; // no ../shared beside this checkout
    };
    for entry in shared {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .to_string();
        let ours =
            std::fs::read_to_string(format!("{root}/examples/{name}")).unwrap_or_else(|_| {
                panic!("examples/{name} is missing; copy it from ../shared/examples")
            });
        assert_eq!(
            ours,
            std::fs::read_to_string(&path).expect("read"),
            "examples/{name} differs from ../shared"
        );
    }
}

#[tokio::test]
async fn migrate_prepares_a_database_and_exits() {
    let dir = tempfile::tempdir().expect("dir");
    let out = scaff(
        &["migrate", "--database-url", "sqlite://fresh.db"],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("fresh.db").exists());
    let pool = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        dir.path().join("fresh.db").display()
    ))
    .await
    .expect("open");
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE '\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite%' ORDER BY name",
    )
    .fetch_all(&pool)
    .await
    .expect("tables");
    assert_eq!(
        tables,
        [
            "api_keys",
            "events",
            "outbox",
            "run_steps",
            "runs",
            "secrets",
            "settings",
            "templates",
            "timers",
            "workflows",
        ]
    );

    if let Some(db) = TestDb::postgres().await {
        let out = Command::new(env!("CARGO_BIN_EXE_scaff"))
            .args(["migrate"])
            .env("SCAFF_DATABASE_URL", &db.url)
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let refused = scaff(&["migrate", "--database-url", "mysql://nope"], dir.path());
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("unsupported database URL"));
}
