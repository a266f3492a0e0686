//! Crash safety and memory, on PostgreSQL: a `kill -9` loses nothing and commits no step
//! twice; ten thousand parked runs hold no actors and any of them resumes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use scaff_core::run::RunStatus;
use scaff_core::store::RunQuery;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::support::{Server, TestApp, TestDb, example, wait_for};

const FORM_THEN_SET: &str = r#"
id: intake
name: Intake
start_step: collect
steps:
  - id: collect
    type: form
    config: {fields: [{key: topic, type: string, required: true}]}
    next: tag
  - {id: tag, type: set, config: {values: {label: "upper(runtime.topic)"}}}
"#;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

async fn post_json(url: String, body: Value) -> Option<Value> {
    let reply = client().post(url).json(&body).send().await.ok()?;
    reply.json().await.ok()
}

async fn count(db: &TestDb, workflow: &str, status: Option<RunStatus>) -> usize {
    let mut total = 0;
    let mut query = RunQuery {
        workflow_id: Some(workflow.to_string()),
        status,
        before: None,
        limit: 200,
    };
    loop {
        let page = db.store.list_runs(&query).await.expect("list");
        total += page.items.len();
        match page.next_after {
            Some(c) => query.before = Some(c),
            None => return total,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_restarts_and_every_run_finishes_exactly_once() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let dir = tempfile::tempdir().expect("dir");
    let env = [("DATABASE_URL", db.url.as_str())];
    let mut server = Server::start(dir.path(), &env, &[]);
    let chain = post_yaml(
        &server,
        &example("chain10.yaml").replace("name: chain10", "id: chain10\nname: chain10"),
    )
    .await;
    assert_eq!(chain, 201);
    assert_eq!(post_yaml(&server, FORM_THEN_SET).await, 201);

    // Clients keep starting runs until the server dies under them.
    let firing = Arc::new(AtomicBool::new(true));
    let mut clients = Vec::new();
    for c in 0..16 {
        let firing = firing.clone();
        let url = server.url("/v1/executions");
        clients.push(tokio::spawn(async move {
            let mut i = 0;
            while firing.load(Ordering::Relaxed) {
                let workflow = if i % 5 == 0 { "intake" } else { "chain10" };
                let body = json!({"workflow_id": workflow, "inputs": {"client": c, "i": i}});
                if post_json(url.clone(), body).await.is_none() {
                    break;
                }
                i += 1;
            }
        }));
    }
    let enough = wait_for(Duration::from_secs(60), || async {
        (count(&db, "chain10", Some(RunStatus::Completed)).await >= 30).then_some(())
    })
    .await;
    assert!(enough.is_some(), "runs complete before the kill");
    firing.store(false, Ordering::Relaxed);
    for c in clients {
        let _ = c.await;
    }
    // A burst of starts, then the kill at once: thousands of checkpoints are still to come.
    let burst: Vec<_> = (0..200)
        .map(|i| {
            let url = server.url("/v1/executions");
            let workflow = if i % 5 == 0 { "intake" } else { "chain10" };
            tokio::spawn(post_json(
                url,
                json!({"workflow_id": workflow, "inputs": {"burst": i}}),
            ))
        })
        .collect();
    for b in burst {
        let _ = b.await;
    }
    server.child.kill().expect("kill -9");
    let _ = server.child.wait();

    let in_flight = db.store.unfinished_runs().await.expect("unfinished");
    assert!(!in_flight.is_empty(), "the kill caught runs mid-flight");

    let restarted = Server::start(dir.path(), &env, &[]);
    let drained = wait_for(Duration::from_secs(120), || async {
        db.store
            .unfinished_runs()
            .await
            .expect("unfinished")
            .is_empty()
            .then_some(())
    })
    .await;
    assert!(
        drained.is_some(),
        "every run left in flight finishes after the restart"
    );

    let total_chain = count(&db, "chain10", None).await;
    assert_eq!(
        count(&db, "chain10", Some(RunStatus::Completed)).await,
        total_chain,
        "no chain run failed or stuck"
    );
    let mut query = RunQuery {
        workflow_id: Some("chain10".into()),
        status: None,
        before: None,
        limit: 200,
    };
    loop {
        let page = db.store.list_runs(&query).await.expect("list");
        for run in &page.items {
            assert_eq!(
                run.context.runtime.get("n"),
                Some(&json!(10)),
                "run {}",
                run.id
            );
            let steps: Vec<String> = db
                .store
                .run_steps(run.id)
                .await
                .expect("steps")
                .into_iter()
                .map(|s| s.step_id)
                .collect();
            let expected: Vec<String> = (1..=10).map(|i| format!("s{i}")).collect();
            assert_eq!(
                steps, expected,
                "each step committed exactly once in run {}",
                run.id
            );
        }
        match page.next_after {
            Some(c) => query.before = Some(c),
            None => break,
        }
    }

    // Form runs wait; their tokens still work after the restart (the secret is kept).
    let waiting = count(&db, "intake", Some(RunStatus::Waiting)).await;
    assert_eq!(
        waiting,
        count(&db, "intake", None).await,
        "every form run waits"
    );
    let page = db
        .store
        .list_runs(&RunQuery {
            workflow_id: Some("intake".into()),
            status: None,
            before: None,
            limit: 20,
        })
        .await
        .expect("list");
    for run in page.items {
        let view: Value = client()
            .get(restarted.url(&format!("/v1/executions/{}", run.id)))
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        let token = view["resume_token"].clone();
        let done = post_json(
            restarted.url(&format!("/v1/executions/{}/resume", run.id)),
            json!({"resume_token": token, "inputs": {"topic": "crash"}, "wait_ms": 10000}),
        )
        .await
        .expect("resumed");
        assert_eq!(done["status"], "completed", "{done}");
    }
}

async fn post_yaml(server: &Server, yaml: &str) -> u16 {
    client()
        .post(server.url("/v1/workflows"))
        .header("content-type", "application/yaml")
        .body(yaml.to_string())
        .send()
        .await
        .expect("post")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_parked_runs_hold_no_actors() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let app = Arc::new(TestApp::new(&db).await);
    assert_eq!(
        app.post_yaml("/v1/workflows", FORM_THEN_SET).await.status,
        201
    );
    const RUNS: usize = 10_000;
    const LANES: usize = 32;
    let mut lanes = Vec::new();
    for lane in 0..LANES {
        let app = app.clone();
        lanes.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for _ in (lane..RUNS).step_by(LANES) {
                let reply = app
                    .post(
                        "/v1/executions",
                        "application/json",
                        json!({"workflow_id": "intake"}).to_string(),
                    )
                    .await;
                assert_eq!(reply.status, 202, "{}", reply.text);
                ids.push(reply.json["id"].as_str().expect("id").to_string());
            }
            ids
        }));
    }
    let mut ids = Vec::new();
    for lane in lanes {
        ids.extend(lane.await.expect("lane"));
    }
    assert_eq!(ids.len(), RUNS);
    let parked = wait_for(Duration::from_secs(120), || async {
        (count(&db, "intake", Some(RunStatus::Waiting)).await == RUNS).then_some(())
    })
    .await;
    assert!(parked.is_some(), "all runs reach their form");
    let idle = wait_for(Duration::from_secs(30), || async {
        (app.state.runtime.live_count() == 0).then_some(())
    })
    .await;
    assert!(
        idle.is_some(),
        "no actor is alive for {RUNS} waiting runs (live: {})",
        app.state.runtime.live_count()
    );

    for pick in [0, RUNS / 2, RUNS - 1] {
        let id = Uuid::parse_str(&ids[pick]).expect("uuid");
        let view = app.get(&format!("/v1/executions/{id}")).await;
        let token = view.json["resume_token"].clone();
        let done = app
            .post(
                &format!("/v1/executions/{id}/resume"),
                "application/json",
                json!({"resume_token": token, "inputs": {"topic": "parked"}, "wait_ms": 10000})
                    .to_string(),
            )
            .await;
        assert_eq!(done.json["status"], "completed", "{}", done.text);
    }
    let idle = wait_for(Duration::from_secs(10), || async {
        (app.state.runtime.live_count() == 0).then_some(())
    })
    .await;
    assert!(idle.is_some(), "finished runs release their actors too");
}
