//! The store contract: the same bodies run against SQLite and PostgreSQL (and, for runs,
//! templates and settings, the in-memory reference store too).

use std::sync::Arc;

use scaff::store::{self, StoreOptions};
use scaff_core::store::{NewWorkflowVersion, Store, StoreError, WorkflowQuery};
use serde_json::json;

use crate::on_both_stores;
use crate::support::TestDb;

fn new(id: &str, name: &str) -> NewWorkflowVersion {
    NewWorkflowVersion {
        id: id.to_string(),
        name: name.to_string(),
        description: Some("about it".into()),
        definition: json!({"name": name, "start_step": "a", "steps": [{"id": "a"}], "n": 1.5}),
        source: format!("name: {name}\n# verbatim, comments kept\n"),
        start_step: "a".into(),
        created_by: Some("tester".into()),
        expected_version: None,
    }
}

async fn versions_round_trip_every_field(db: &TestDb) {
    let s = &db.store;
    let saved = s.create_workflow(new("wf", "First")).await.expect("create");
    assert_eq!(saved.version, 1);
    let read = s
        .latest_workflow("wf")
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(read, saved, "what is read back is exactly what was saved");
    assert_eq!(read.definition["n"], json!(1.5));
    assert_eq!(read.source, "name: First\n# verbatim, comments kept\n");
    assert_eq!(
        s.workflow_version("wf", 1).await.expect("read"),
        Some(saved)
    );
    assert_eq!(s.workflow_version("wf", 2).await.expect("read"), None);
    assert_eq!(s.latest_workflow("nope").await.expect("read"), None);
}

async fn a_taken_id_is_a_conflict(db: &TestDb) {
    let s = &db.store;
    s.create_workflow(new("wf", "First")).await.expect("create");
    let err = s
        .create_workflow(new("wf", "Again"))
        .await
        .expect_err("taken");
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let latest = s
        .latest_workflow("wf")
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(
        (latest.version, latest.name.as_str()),
        (1, "First"),
        "nothing changed"
    );
}

async fn versions_count_up_and_stay_immutable(db: &TestDb) {
    let s = &db.store;
    let v1 = s.create_workflow(new("wf", "One")).await.expect("v1");
    let v2 = s.add_workflow_version(new("wf", "Two")).await.expect("v2");
    let v3 = s
        .add_workflow_version(new("wf", "Three"))
        .await
        .expect("v3");
    assert_eq!((v2.version, v3.version), (2, 3));
    assert_eq!(s.workflow_version("wf", 1).await.expect("read"), Some(v1));
    assert_eq!(s.latest_workflow("wf").await.expect("read"), Some(v3));
    assert_eq!(s.latest_version("wf").await.expect("read"), Some(3));
}

async fn a_version_of_an_unknown_workflow_is_not_found(db: &TestDb) {
    let err = db
        .store
        .add_workflow_version(new("ghost", "x"))
        .await
        .expect_err("unknown");
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert_eq!(db.store.latest_workflow("ghost").await.expect("read"), None);
    assert_eq!(db.store.latest_version("ghost").await.expect("read"), None);
}

async fn a_stated_version_must_be_the_next_one(db: &TestDb) {
    let s = &db.store;
    let mut first = new("wf", "One");
    first.expected_version = Some(2);
    let err = s.create_workflow(first).await.expect_err("v1 must be 1");
    assert!(
        matches!(
            err,
            StoreError::VersionMismatch {
                expected: 2,
                latest: 0
            }
        ),
        "{err:?}"
    );
    s.create_workflow(new("wf", "One")).await.expect("v1");
    let mut wrong = new("wf", "Two");
    wrong.expected_version = Some(5);
    let err = s.add_workflow_version(wrong).await.expect_err("not next");
    assert!(
        matches!(
            err,
            StoreError::VersionMismatch {
                expected: 5,
                latest: 1
            }
        ),
        "{err:?}"
    );
    let mut right = new("wf", "Two");
    right.expected_version = Some(2);
    assert_eq!(
        s.add_workflow_version(right).await.expect("next").version,
        2
    );
}

async fn concurrent_versions_get_distinct_numbers(db: &TestDb) {
    let s: Arc<dyn Store> = db.store.clone();
    s.create_workflow(new("wf", "base")).await.expect("v1");
    let tasks: Vec<_> = (0..12)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move { s.add_workflow_version(new("wf", &format!("v{i}"))).await })
        })
        .collect();
    let mut versions = Vec::new();
    for t in tasks {
        versions.push(t.await.expect("join").expect("saved").version);
    }
    versions.sort_unstable();
    assert_eq!(versions, (2..=13).collect::<Vec<i64>>());
}

async fn listing_pages_through_latest_versions_by_id(db: &TestDb) {
    let s = &db.store;
    for id in ["e", "a", "d", "b", "c"] {
        s.create_workflow(new(id, &format!("Flow {id}")))
            .await
            .expect("create");
    }
    s.add_workflow_version(new("b", "Flow b, renamed"))
        .await
        .expect("v2");
    let mut query = WorkflowQuery {
        limit: 2,
        ..Default::default()
    };
    let mut seen = Vec::new();
    loop {
        let page = s.list_workflows(&query).await.expect("list");
        assert!(page.items.len() <= 2);
        seen.extend(page.items.iter().map(|w| (w.id.clone(), w.version)));
        match page.next_after {
            Some(after) => query.after_id = Some(after),
            None => break,
        }
    }
    let expected: Vec<(String, i64)> = [("a", 1), ("b", 2), ("c", 1), ("d", 1), ("e", 1)]
        .iter()
        .map(|(i, v)| (i.to_string(), *v))
        .collect();
    assert_eq!(seen, expected);
}

async fn listing_filters_by_name_literally_and_case_insensitively(db: &TestDb) {
    let s = &db.store;
    s.create_workflow(new("one", "Blog Post Generator"))
        .await
        .expect("create");
    s.create_workflow(new("two", "Ticket Triage"))
        .await
        .expect("create");
    s.create_workflow(new("three", "100% off_sale"))
        .await
        .expect("create");
    s.create_workflow(new("four", "100 percent offXsale"))
        .await
        .expect("create");
    let names = |q: &str| {
        let query = WorkflowQuery {
            name_contains: Some(q.to_string()),
            limit: 50,
            ..Default::default()
        };
        async move {
            let page = s.list_workflows(&query).await.expect("list");
            page.items.into_iter().map(|w| w.id).collect::<Vec<_>>()
        }
    };
    assert_eq!(names("post").await, ["one"]);
    assert_eq!(names("TRIAGE").await, ["two"]);
    assert_eq!(names("100%").await, ["three"], "% is literal");
    assert_eq!(names("off_sale").await, ["three"], "_ is literal");
    assert!(names("nothing like it").await.is_empty());
}

async fn ping_answers_and_migrations_are_idempotent(db: &TestDb) {
    db.store.ping().await.expect("ping");
    let again = store::connect(
        &db.url,
        &StoreOptions {
            max_connections: 2,
            migrate: true,
        },
    )
    .await
    .expect("migrating twice is a no-op");
    again.ping().await.expect("ping");
}

on_both_stores!(
    versions_round_trip_every_field,
    a_taken_id_is_a_conflict,
    versions_count_up_and_stay_immutable,
    a_version_of_an_unknown_workflow_is_not_found,
    a_stated_version_must_be_the_next_one,
    concurrent_versions_get_distinct_numbers,
    listing_pages_through_latest_versions_by_id,
    listing_filters_by_name_literally_and_case_insensitively,
    ping_answers_and_migrations_are_idempotent,
);

/// The run and settings capabilities, on SQLite, PostgreSQL and the in-memory reference store.
mod runs {
    use std::collections::{BTreeMap, HashSet};
    use std::sync::Arc;

    use chrono::{DateTime, Duration, SubsecRound, Utc};
    use scaff_core::run::{
        Clock, Context, EventRecord, Run, RunError, RunStatus, StepRecord, StepStatus, SystemClock,
        Waiting, WaitingInput,
    };
    use scaff_core::store::{
        Checkpoint, CreatedRun, NewRun, RunCursor, RunQuery, Store, StoreError,
    };
    use serde_json::{Map, Value, json};
    use uuid::Uuid;

    use super::new as new_workflow;
    use crate::on_all_stores;
    use crate::support::TestDb;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            other => panic!("not an object: {other}"),
        }
    }

    fn context() -> Context {
        Context {
            static_data: obj(json!({"greeting": "hi", "limits": {"max": 3}})),
            profile: obj(json!({"email": "a@example.com", "tags": ["x", "y"]})),
            inputs: obj(json!({"topic": "Rust ✓", "count": 2, "ratio": 0.25, "none": null})),
            runtime: Map::new(),
        }
    }

    fn event(seq: i32, kind: &str, at: DateTime<Utc>) -> EventRecord {
        EventRecord {
            seq,
            kind: kind.to_string(),
            step_id: None,
            actor: None,
            data: json!({}),
            created_at: at,
        }
    }

    /// A run of `wf` v1 created at `at`, with one `run.created` event.
    fn new_run(workflow_id: &str, at: DateTime<Utc>) -> NewRun {
        NewRun {
            id: Uuid::now_v7(),
            workflow_id: workflow_id.to_string(),
            workflow_version: 1,
            context: context(),
            pins: BTreeMap::new(),
            idempotency_key: None,
            request_fingerprint: None,
            created_by: Some("key:ci".into()),
            created_at: at,
            events: vec![EventRecord {
                actor: Some("key:ci".into()),
                data: json!({"workflow_version": 1}),
                ..event(1, "run.created", at)
            }],
        }
    }

    fn keyed(key: &str, fingerprint: &str, at: DateTime<Utc>) -> NewRun {
        NewRun {
            idempotency_key: Some(key.to_string()),
            request_fingerprint: Some(fingerprint.to_string()),
            ..new_run("wf", at)
        }
    }

    /// A checkpoint of `run` at version `expected` that changes nothing but the version.
    fn checkpoint(run: &Run, expected: i64, status: RunStatus, at: DateTime<Utc>) -> Checkpoint {
        Checkpoint {
            run_id: run.id,
            expected_version: expected,
            status,
            current_step: run.current_step.clone(),
            context: run.context.clone(),
            step_state: run.step_state.clone(),
            waiting: None,
            error: None,
            steps: vec![],
            events: vec![],
            step_seq: run.step_seq,
            event_seq: run.event_seq,
            finished_at: None,
            at,
            timers: vec![],
            messages: vec![],
            wake_at: None,
        }
    }

    async fn created(s: &Arc<dyn Store>, new: NewRun) -> Run {
        match s.create_run(new).await.expect("create run") {
            CreatedRun::New(run) => run,
            other => panic!("expected a new run, got {other:?}"),
        }
    }

    async fn with_workflows(db: &TestDb, ids: &[&str]) -> Arc<dyn Store> {
        for id in ids {
            db.store
                .create_workflow(new_workflow(id, &format!("Flow {id}")))
                .await
                .expect("workflow");
        }
        db.store.clone()
    }

    /// Time steps chosen to trip text ordering of timestamps with a varying number of
    /// fractional digits (`…:00Z` vs `…:00.5Z`).
    fn base() -> DateTime<Utc> {
        SystemClock.now().trunc_subsecs(0) - Duration::hours(1)
    }

    async fn runs_round_trip_every_field(db: &TestDb) {
        let s = with_workflows(db, &["wf"]).await;
        let at = SystemClock.now();
        let mut new = keyed("key-1", "fp-1", at);
        new.pins = BTreeMap::from([
            ("blog_draft".to_string(), 1),
            ("blog_outline".to_string(), 3),
        ]);
        new.events.push(EventRecord {
            step_id: Some("first".into()),
            actor: None,
            data: json!({"nested": {"list": [1, 2.5, "three", null, true]}}),
            ..event(2, "run.note", at + Duration::microseconds(1))
        });
        let id = new.id;
        let events = new.events.clone();
        let run = created(&s, new).await;
        let expected = Run {
            id,
            workflow_id: "wf".into(),
            workflow_version: 1,
            status: RunStatus::Queued,
            current_step: None,
            context: context(),
            waiting: None,
            error: None,
            step_state: None,
            pins: BTreeMap::from([
                ("blog_draft".to_string(), 1),
                ("blog_outline".to_string(), 3),
            ]),
            version: 0,
            step_seq: 0,
            event_seq: 2,
            idempotency_key: Some("key-1".into()),
            request_fingerprint: Some("fp-1".into()),
            created_by: Some("key:ci".into()),
            created_at: at,
            updated_at: at,
            finished_at: None,
            wake_at: None,
        };
        assert_eq!(run, expected, "create returns the stored run");
        let read = s.get_run(id).await.expect("get").expect("exists");
        assert_eq!(
            read, expected,
            "read back exactly, timestamps to the microsecond"
        );
        assert_eq!(read.context.inputs["topic"], json!("Rust ✓"));
        assert_eq!(read.context.inputs["none"], Value::Null);
        assert_eq!(s.run_events(id).await.expect("events"), events);
        assert_eq!(s.run_steps(id).await.expect("steps"), vec![]);
        assert_eq!(s.get_run(Uuid::now_v7()).await.expect("get"), None);
        assert_eq!(s.run_events(Uuid::now_v7()).await.expect("events"), vec![]);
        assert_eq!(s.run_steps(Uuid::now_v7()).await.expect("steps"), vec![]);
    }

    async fn a_repeated_key_returns_the_earlier_run_or_conflicts(db: &TestDb) {
        let s = with_workflows(db, &["wf"]).await;
        let at = SystemClock.now();
        let first = created(&s, keyed("k", "fp", at)).await;

        let retry = keyed("k", "fp", at + Duration::seconds(1));
        let retry_id = retry.id;
        match s.create_run(retry).await.expect("retry") {
            CreatedRun::Existing(run) => assert_eq!(run, first),
            other => panic!("expected the earlier run, got {other:?}"),
        }

        let err = s
            .create_run(keyed("k", "other-fp", at))
            .await
            .expect_err("different request");
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

        let mut no_fp = keyed("k", "fp", at);
        no_fp.request_fingerprint = None;
        let err = s.create_run(no_fp).await.expect_err("no fingerprint");
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");

        assert_eq!(
            s.get_run(retry_id).await.expect("get"),
            None,
            "nothing new stored"
        );
        assert_eq!(s.run_events(first.id).await.expect("events").len(), 1);
        let all = s
            .list_runs(&RunQuery {
                limit: 10,
                ..Default::default()
            })
            .await
            .expect("list");
        assert_eq!(all.items, vec![first.clone()]);

        // Runs without a key never collide; another key is another run.
        let a = created(&s, new_run("wf", at)).await;
        let b = created(&s, new_run("wf", at)).await;
        let c = created(&s, keyed("k2", "fp", at)).await;
        assert_eq!(
            [a.id, b.id, c.id].iter().collect::<HashSet<_>>().len(),
            3,
            "distinct runs"
        );
        assert!(!([a.id, b.id, c.id].contains(&first.id)));
    }

    async fn concurrent_creates_with_one_key_make_one_run(db: &TestDb) {
        let s = with_workflows(db, &["wf"]).await;
        let at = SystemClock.now();
        let tasks: Vec<_> = (0..20)
            .map(|_| {
                let s = s.clone();
                let new = keyed("same", "fp", at);
                tokio::spawn(async move { s.create_run(new).await })
            })
            .collect();
        let (mut new, mut existing) = (Vec::new(), Vec::new());
        for t in tasks {
            match t.await.expect("join").expect("create") {
                CreatedRun::New(run) => new.push(run),
                CreatedRun::Existing(run) => existing.push(run),
            }
        }
        assert_eq!((new.len(), existing.len()), (1, 19), "exactly one new run");
        let winner = &new[0];
        assert!(existing.iter().all(|r| r == winner), "all see the winner");
        let all = s
            .list_runs(&RunQuery {
                limit: 50,
                ..Default::default()
            })
            .await
            .expect("list");
        assert_eq!(all.items, vec![winner.clone()]);
        assert_eq!(s.run_events(winner.id).await.expect("events").len(), 1);
    }

    async fn a_run_of_an_unknown_workflow_version_is_not_found(db: &TestDb) {
        let s = with_workflows(db, &["wf"]).await;
        let at = SystemClock.now();
        let mut ghost = keyed("k", "fp", at);
        ghost.workflow_id = "ghost".into();
        let ghost_id = ghost.id;
        let err = s.create_run(ghost).await.expect_err("unknown workflow");
        assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");

        let mut v2 = keyed("k", "fp", at);
        v2.workflow_version = 2;
        let err = s.create_run(v2).await.expect_err("unknown version");
        assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");

        assert_eq!(s.get_run(ghost_id).await.expect("get"), None);
        assert_eq!(s.run_events(ghost_id).await.expect("events"), vec![]);
        // The refused creates did not take the key.
        let run = created(&s, keyed("k", "fp", at)).await;
        assert_eq!(run.workflow_id, "wf");
    }

    async fn checkpoints_advance_the_version_and_append_history(db: &TestDb) {
        let s = with_workflows(db, &["wf"]).await;
        let t0 = SystemClock.now();
        let run = created(&s, new_run("wf", t0)).await;
        let (t1, t2, t3, t4) = (
            t0 + Duration::microseconds(1),
            t0 + Duration::milliseconds(5),
            t0 + Duration::seconds(1),
            t0 + Duration::seconds(2),
        );

        // queued → running
        let mut cp = checkpoint(&run, 0, RunStatus::Running, t1);
        cp.current_step = Some("collect".into());
        cp.events = vec![event(2, "run.started", t1)];
        cp.event_seq = 2;
        assert_eq!(s.checkpoint(&cp).await.expect("checkpoint"), 1);

        // running → waiting, with a finished step
        let waiting = Waiting {
            step_id: "approve".into(),
            input: WaitingInput::Approval {
                approvers: vec!["boss@example.com".into()],
                min_approvals: 1,
                decisions: Vec::new(),
                message: None,
            },
            since: t2,
            version: 2,
            deadline: None,
            reminders_sent: 0,
        };
        let mut ctx = context();
        ctx.runtime = obj(json!({"title": "Hello", "score": 0.5}));
        let step_state =
            json!({"attempt": 2, "messages": [{"role": "user", "text": "Hi ✓"}], "none": null});
        let step1 = StepRecord {
            seq: 1,
            step_id: "collect".into(),
            step_type: "form".into(),
            attempt: 1,
            status: StepStatus::Completed,
            input: Some(json!({"title": "Hello"})),
            output: Some(json!({"set": ["title", "score"]})),
            error: None,
            started_at: t1,
            finished_at: t2,
        };
        let step2 = StepRecord {
            seq: 2,
            step_id: "noop".into(),
            step_type: "set".into(),
            attempt: 2,
            status: StepStatus::Canceled,
            input: None,
            output: Some(Value::Null),
            error: None,
            started_at: t2,
            finished_at: t2,
        };
        let cp = Checkpoint {
            run_id: run.id,
            expected_version: 1,
            status: RunStatus::Waiting,
            current_step: Some("approve".into()),
            context: ctx.clone(),
            step_state: Some(step_state.clone()),
            waiting: Some(waiting.clone()),
            error: None,
            steps: vec![step1.clone(), step2.clone()],
            events: vec![
                EventRecord {
                    step_id: Some("collect".into()),
                    data: json!({"output": {"title": "Hello"}}),
                    ..event(3, "step.completed", t2)
                },
                EventRecord {
                    step_id: Some("approve".into()),
                    ..event(4, "run.waiting", t2)
                },
            ],
            step_seq: 2,
            event_seq: 4,
            finished_at: None,
            at: t2,
            timers: vec![],
            messages: vec![],
            wake_at: None,
        };
        assert_eq!(s.checkpoint(&cp).await.expect("checkpoint"), 2);
        let read = s.get_run(run.id).await.expect("get").expect("exists");
        assert_eq!(
            read,
            Run {
                status: RunStatus::Waiting,
                current_step: Some("approve".into()),
                context: ctx.clone(),
                step_state: Some(step_state),
                waiting: Some(waiting),
                version: 2,
                step_seq: 2,
                event_seq: 4,
                updated_at: t2,
                ..run.clone()
            }
        );

        // waiting → failed (terminal): finished_at is set
        let error = RunError {
            code: "step.failed".into(),
            message: "the approver said no".into(),
            step_id: Some("approve".into()),
        };
        let step3 = StepRecord {
            seq: 3,
            step_id: "approve".into(),
            step_type: "approval".into(),
            attempt: 1,
            status: StepStatus::Failed,
            input: Some(json!({"decision": "reject"})),
            output: None,
            error: Some(error.clone()),
            started_at: t2,
            finished_at: t3,
        };
        let cp = Checkpoint {
            run_id: run.id,
            expected_version: 2,
            status: RunStatus::Failed,
            current_step: None,
            context: ctx.clone(),
            // The step ended: its kept progress is cleared.
            step_state: None,
            waiting: None,
            error: Some(error.clone()),
            steps: vec![step3.clone()],
            events: vec![EventRecord {
                data: json!({"code": "step.failed"}),
                ..event(5, "run.failed", t3)
            }],
            step_seq: 3,
            event_seq: 5,
            finished_at: Some(t3),
            at: t3,
            timers: vec![],
            messages: vec![],
            wake_at: None,
        };
        assert_eq!(s.checkpoint(&cp).await.expect("checkpoint"), 3);

        // A later checkpoint without finished_at keeps it.
        let failed = s.get_run(run.id).await.expect("get").expect("exists");
        let mut cp = checkpoint(&failed, 3, RunStatus::Failed, t4);
        cp.error = Some(error.clone());
        assert_eq!(s.checkpoint(&cp).await.expect("checkpoint"), 4);

        let read = s.get_run(run.id).await.expect("get").expect("exists");
        assert_eq!(
            read,
            Run {
                status: RunStatus::Failed,
                current_step: None,
                context: ctx,
                step_state: None,
                waiting: None,
                error: Some(error),
                version: 4,
                step_seq: 3,
                event_seq: 5,
                updated_at: t4,
                finished_at: Some(t3),
                ..run.clone()
            }
        );
        assert_eq!(
            s.run_steps(run.id).await.expect("steps"),
            vec![step1, step2, step3]
        );
        let kinds: Vec<(i32, String)> = s
            .run_events(run.id)
            .await
            .expect("events")
            .into_iter()
            .map(|e| (e.seq, e.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                (1, "run.created"),
                (2, "run.started"),
                (3, "step.completed"),
                (4, "run.waiting"),
                (5, "run.failed"),
            ]
            .map(|(n, k)| (n, k.to_string()))
        );
        let events = s.run_events(run.id).await.expect("events");
        assert_eq!(events[2].data, json!({"output": {"title": "Hello"}}));
        assert_eq!(events[2].step_id.as_deref(), Some("collect"));
        assert_eq!(events[2].created_at, t2);
        assert!(s.unfinished_runs().await.expect("unfinished").is_empty());
    }

    async fn a_stale_checkpoint_is_fenced_and_writes_nothing(db: &TestDb) {
        let s = with_workflows(db, &["wf"]).await;
        let t0 = SystemClock.now();
        let run = created(&s, new_run("wf", t0)).await;
        let mut cp = checkpoint(&run, 0, RunStatus::Running, t0 + Duration::seconds(1));
        cp.events = vec![event(2, "run.started", t0)];
        cp.event_seq = 2;
        assert_eq!(s.checkpoint(&cp).await.expect("first writer"), 1);
        let before = s.get_run(run.id).await.expect("get").expect("exists");
        let events_before = s.run_events(run.id).await.expect("events");

        let t1 = t0 + Duration::seconds(5);
        let mut stale = checkpoint(&run, 0, RunStatus::Completed, t1);
        stale.current_step = Some("elsewhere".into());
        stale.steps = vec![StepRecord {
            seq: 1,
            step_id: "a".into(),
            step_type: "set".into(),
            attempt: 1,
            status: StepStatus::Completed,
            input: None,
            output: None,
            error: None,
            started_at: t1,
            finished_at: t1,
        }];
        stale.events = vec![event(3, "run.completed", t1)];
        stale.step_seq = 1;
        stale.event_seq = 3;
        stale.finished_at = Some(t1);
        let err = s.checkpoint(&stale).await.expect_err("stale");
        assert!(
            matches!(err, StoreError::Fenced { run_id, expected: 0 } if run_id == run.id),
            "{err:?}"
        );
        let mut ahead = stale.clone();
        ahead.expected_version = 7;
        let err = s.checkpoint(&ahead).await.expect_err("ahead");
        assert!(
            matches!(err, StoreError::Fenced { expected: 7, .. }),
            "{err:?}"
        );

        assert_eq!(s.get_run(run.id).await.expect("get"), Some(before));
        assert_eq!(s.run_steps(run.id).await.expect("steps"), vec![]);
        assert_eq!(s.run_events(run.id).await.expect("events"), events_before);

        let mut ghost = stale.clone();
        ghost.run_id = Uuid::now_v7();
        let err = s.checkpoint(&ghost).await.expect_err("no such run");
        assert!(
            matches!(err, StoreError::Fenced { run_id, expected: 0 } if run_id == ghost.run_id),
            "{err:?}"
        );
        assert_eq!(s.run_events(ghost.run_id).await.expect("events"), vec![]);
    }

    async fn concurrent_checkpoints_at_one_version_let_one_win(db: &TestDb) {
        let s = with_workflows(db, &["wf"]).await;
        let t0 = SystemClock.now();
        let run = created(&s, new_run("wf", t0)).await;
        let tasks: Vec<_> = (0..10)
            .map(|i| {
                let s = s.clone();
                let mut cp = checkpoint(&run, 0, RunStatus::Running, t0);
                cp.current_step = Some(format!("writer-{i}"));
                cp.events = vec![event(2, "run.started", t0)];
                cp.event_seq = 2;
                tokio::spawn(async move { s.checkpoint(&cp).await })
            })
            .collect();
        let mut won = 0;
        for t in tasks {
            match t.await.expect("join") {
                Ok(version) => {
                    assert_eq!(version, 1);
                    won += 1;
                }
                Err(StoreError::Fenced { .. }) => {}
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        assert_eq!(won, 1, "exactly one writer passes the fence");
        let read = s.get_run(run.id).await.expect("get").expect("exists");
        assert_eq!(read.version, 1);
        assert_eq!(s.run_events(run.id).await.expect("events").len(), 2);
    }

    async fn listing_runs_pages_newest_first_with_filters(db: &TestDb) {
        let s = with_workflows(db, &["wf", "other"]).await;
        let b = base();
        // (workflow, created_at offset in µs); the last two share a time, so ids decide.
        let plan: [(&str, i64); 8] = [
            ("wf", 0),
            ("other", 1),
            ("wf", 500_000),
            ("wf", 1_000_000),
            ("other", 1_000_001),
            ("wf", 10_000_000),
            ("wf", 20_000_000),
            ("wf", 20_000_000),
        ];
        let mut made = Vec::new();
        for (wf, offset) in plan {
            made.push(created(&s, new_run(wf, b + Duration::microseconds(offset))).await);
        }
        // Move some on: index 2 → running, 3 → completed, 6 → running.
        for (i, status) in [
            (2, RunStatus::Running),
            (3, RunStatus::Completed),
            (6, RunStatus::Running),
        ] {
            let v = s
                .checkpoint(&checkpoint(&made[i], 0, status, b + Duration::hours(1)))
                .await
                .expect("checkpoint");
            assert_eq!(v, 1);
            made[i] = s.get_run(made[i].id).await.expect("get").expect("exists");
        }
        let mut newest_first = made.clone();
        newest_first.sort_by_key(|r| std::cmp::Reverse((r.created_at, r.id)));

        let all_pages = |query: RunQuery| {
            let s = s.clone();
            async move {
                let mut query = query;
                let mut pages = Vec::new();
                loop {
                    let page = s.list_runs(&query).await.expect("list");
                    assert!(page.items.len() <= query.limit.max(1) as usize);
                    let last = page.items.last().map(|r| RunCursor {
                        created_at: r.created_at,
                        id: r.id,
                    });
                    pages.push(page.items);
                    match page.next_after {
                        Some(cursor) => {
                            assert_eq!(Some(cursor), last, "the cursor is the last item");
                            query.before = Some(cursor);
                        }
                        None => break,
                    }
                }
                pages
            }
        };

        let pages = all_pages(RunQuery {
            limit: 3,
            ..Default::default()
        })
        .await;
        assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 2]);
        assert_eq!(
            pages.concat(),
            newest_first,
            "every run once, newest first, exact"
        );

        // A page that ends exactly at the last run has no continuation.
        let pages = all_pages(RunQuery {
            limit: 4,
            ..Default::default()
        })
        .await;
        assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [4, 4]);

        // Ties on created_at are ordered by id, newest first, and the cursor splits them.
        let tie = [made[6].id, made[7].id];
        let top = s
            .list_runs(&RunQuery {
                limit: 1,
                ..Default::default()
            })
            .await
            .expect("list");
        assert_eq!(top.items[0].id, *tie.iter().max().expect("two"));
        let next = s
            .list_runs(&RunQuery {
                limit: 1,
                before: top.next_after,
                ..Default::default()
            })
            .await
            .expect("list");
        assert_eq!(next.items[0].id, *tie.iter().min().expect("two"));

        let ids = |runs: Vec<Vec<Run>>| runs.concat().into_iter().map(|r| r.id).collect::<Vec<_>>();
        let of_wf: Vec<Uuid> = newest_first
            .iter()
            .filter(|r| r.workflow_id == "wf")
            .map(|r| r.id)
            .collect();
        assert_eq!(of_wf.len(), 6);
        let got = ids(all_pages(RunQuery {
            workflow_id: Some("wf".into()),
            limit: 4,
            ..Default::default()
        })
        .await);
        assert_eq!(got, of_wf);

        let running: Vec<Uuid> = vec![made[6].id, made[2].id];
        let got = ids(all_pages(RunQuery {
            status: Some(RunStatus::Running),
            limit: 1,
            ..Default::default()
        })
        .await);
        assert_eq!(got, running);

        let got = ids(all_pages(RunQuery {
            workflow_id: Some("other".into()),
            status: Some(RunStatus::Queued),
            limit: 10,
            ..Default::default()
        })
        .await);
        assert_eq!(got, vec![made[4].id, made[1].id]);

        let none = s
            .list_runs(&RunQuery {
                workflow_id: Some("other".into()),
                status: Some(RunStatus::Completed),
                limit: 10,
                ..Default::default()
            })
            .await
            .expect("list");
        assert!(none.items.is_empty() && none.next_after.is_none());

        // A cursor from a run's position lists strictly older runs only.
        let older = s
            .list_runs(&RunQuery {
                before: Some(RunCursor {
                    created_at: made[3].created_at,
                    id: made[3].id,
                }),
                limit: 10,
                ..Default::default()
            })
            .await
            .expect("list");
        assert_eq!(
            older.items.iter().map(|r| r.id).collect::<Vec<_>>(),
            vec![made[2].id, made[1].id, made[0].id]
        );
        assert_eq!(older.next_after, None);

        // A limit of 0 is treated as 1.
        let one = s
            .list_runs(&RunQuery {
                limit: 0,
                ..Default::default()
            })
            .await
            .expect("list");
        assert_eq!(one.items.len(), 1);
        assert!(one.next_after.is_some());
    }

    async fn unfinished_runs_are_queued_or_running_oldest_first_and_counted(db: &TestDb) {
        let s = with_workflows(db, &["wf"]).await;
        let b = base();
        let mut made = Vec::new();
        for offset in [3_000_000, 0, 1_000_000, 500_000, 2_000_000] {
            made.push(created(&s, new_run("wf", b + Duration::microseconds(offset))).await);
        }
        for (i, status) in [
            (0, RunStatus::Running),
            (2, RunStatus::Waiting),
            (3, RunStatus::Canceled),
        ] {
            s.checkpoint(&checkpoint(&made[i], 0, status, b))
                .await
                .expect("checkpoint");
        }
        // Left: 1 (queued, +0), 4 (queued, +2s), 0 (running, +3s).
        assert_eq!(
            s.unfinished_runs().await.expect("unfinished"),
            vec![made[1].id, made[4].id, made[0].id]
        );
        // Counts by status (the waiting-runs gauge reads these).
        for (status, n) in [
            (RunStatus::Queued, 2),
            (RunStatus::Running, 1),
            (RunStatus::Waiting, 1),
            (RunStatus::Canceled, 1),
            (RunStatus::Completed, 0),
        ] {
            assert_eq!(s.count_runs(status).await.expect("count"), n, "{status:?}");
        }
    }

    async fn step_state_is_kept_between_checkpoints_until_cleared(db: &TestDb) {
        let s = with_workflows(db, &["wf"]).await;
        let t0 = SystemClock.now();
        let run = created(&s, new_run("wf", t0)).await;
        assert_eq!(run.step_state, None);
        assert!(run.pins.is_empty(), "no pins by default");

        let kept = json!({"attempt": 1, "errors": [{"path": "/title", "message": "too short"}]});
        let mut cp = checkpoint(&run, 0, RunStatus::Running, t0);
        cp.current_step = Some("generate".into());
        cp.step_state = Some(kept.clone());
        assert_eq!(s.checkpoint(&cp).await.expect("set"), 1);
        let read = s.get_run(run.id).await.expect("get").expect("exists");
        assert_eq!(read.step_state, Some(kept.clone()));

        // A checkpoint carrying the same state keeps it; listing reads it too.
        assert_eq!(
            s.checkpoint(&checkpoint(&read, 1, RunStatus::Running, t0))
                .await
                .expect("keep"),
            2
        );
        let listed = s
            .list_runs(&RunQuery {
                limit: 10,
                ..Default::default()
            })
            .await
            .expect("list");
        assert_eq!(listed.items.len(), 1);
        assert_eq!(listed.items[0].step_state, Some(kept));
        assert!(listed.items[0].pins.is_empty());

        let mut cp = checkpoint(&read, 2, RunStatus::Running, t0);
        cp.step_state = None;
        assert_eq!(s.checkpoint(&cp).await.expect("clear"), 3);
        let read = s.get_run(run.id).await.expect("get").expect("exists");
        assert_eq!(read.step_state, None, "None clears the kept state");
        assert_eq!(read.version, 3);
    }

    async fn settings_keep_the_first_value(db: &TestDb) {
        let s = &db.store;
        assert_eq!(s.setting_or_insert("secret", "a").await.expect("set"), "a");
        assert_eq!(s.setting_or_insert("secret", "b").await.expect("get"), "a");
        assert_eq!(s.setting_or_insert("other", "b").await.expect("set"), "b");
        assert_eq!(s.setting_or_insert("secret", "").await.expect("get"), "a");
    }

    async fn concurrent_settings_agree_on_one_value(db: &TestDb) {
        let s: Arc<dyn Store> = db.store.clone();
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move { s.setting_or_insert("token", &format!("v{i}")).await })
            })
            .collect();
        let mut values = HashSet::new();
        for t in tasks {
            values.insert(t.await.expect("join").expect("setting"));
        }
        assert_eq!(values.len(), 1, "{values:?}");
        let winner = values.into_iter().next().expect("one");
        assert!(winner.starts_with('v'));
        assert_eq!(
            s.setting_or_insert("token", "late").await.expect("get"),
            winner
        );
    }

    /// A completed `set` step record numbered `seq`.
    fn step(seq: i32, step_id: &str, at: DateTime<Utc>) -> StepRecord {
        StepRecord {
            seq,
            step_id: step_id.into(),
            step_type: "set".into(),
            attempt: 1,
            status: StepStatus::Completed,
            input: None,
            output: Some(json!({"n": seq})),
            error: None,
            started_at: at,
            finished_at: at,
        }
    }

    /// A checkpoint of `run` at `expected` that records step `seq` and event `seq + 1`.
    fn stepped(run: &Run, expected: i64, seq: i32, at: DateTime<Utc>) -> Checkpoint {
        let mut cp = checkpoint(run, expected, RunStatus::Running, at);
        cp.current_step = Some(format!("s{seq}"));
        cp.steps = vec![step(seq, &format!("s{seq}"), at)];
        cp.events = vec![event(seq + 1, "step.completed", at)];
        cp.step_seq = seq;
        cp.event_seq = seq + 1;
        cp
    }

    async fn a_batch_fences_each_checkpoint_on_its_own(db: &TestDb) {
        let s = with_workflows(db, &["wf"]).await;
        let t0 = SystemClock.now();
        let a = created(&s, new_run("wf", t0)).await;
        let b = created(&s, new_run("wf", t0)).await;
        let c = created(&s, new_run("wf", t0)).await;
        let t1 = t0 + Duration::seconds(1);
        let stale = stepped(&b, 3, 1, t1);
        let batch = [stepped(&a, 0, 1, t1), stale, stepped(&c, 0, 1, t1)];
        let refs: Vec<&Checkpoint> = batch.iter().collect();
        let results = s.checkpoint_many(&refs).await;
        assert_eq!(results.len(), 3, "one result per checkpoint");
        assert_eq!(results[0].as_ref().ok(), Some(&1), "{:?}", results[0]);
        assert!(
            matches!(&results[1], Err(StoreError::Fenced { run_id, expected: 3 }) if *run_id == b.id),
            "{:?}",
            results[1]
        );
        assert_eq!(results[2].as_ref().ok(), Some(&1), "{:?}", results[2]);
        for run in [&a, &c] {
            let read = s.get_run(run.id).await.expect("get").expect("exists");
            assert_eq!(
                (read.version, read.current_step.as_deref(), read.step_seq),
                (1, Some("s1"), 1)
            );
            assert_eq!(
                s.run_steps(run.id).await.expect("steps"),
                vec![step(1, "s1", t1)]
            );
            let kinds: Vec<_> = s
                .run_events(run.id)
                .await
                .expect("events")
                .into_iter()
                .map(|e| e.kind)
                .collect();
            assert_eq!(kinds, ["run.created", "step.completed"]);
        }
        assert_eq!(
            s.get_run(b.id).await.expect("get"),
            Some(b.clone()),
            "the fenced run is unchanged"
        );
        assert_eq!(s.run_steps(b.id).await.expect("steps"), vec![]);
        assert_eq!(s.run_events(b.id).await.expect("events").len(), 1);
    }

    /// A batch larger than one statement carries (PostgreSQL splits it by size) still
    /// commits every checkpoint whose fence holds, each with its own context and records.
    async fn a_large_batch_commits_every_checkpoint(db: &TestDb) {
        let s = with_workflows(db, &["wf"]).await;
        let t0 = SystemClock.now();
        let t1 = t0 + Duration::seconds(1);
        let mut runs = Vec::new();
        for _ in 0..40 {
            runs.push(created(&s, new_run("wf", t0)).await);
        }
        let batch: Vec<Checkpoint> = runs
            .iter()
            .enumerate()
            .map(|(i, run)| {
                let expected = if i == 17 { 5 } else { 0 };
                let mut cp = stepped(run, expected, 1, t1);
                cp.context
                    .runtime
                    .insert("blob".into(), json!(format!("{i}:{}", "x".repeat(3000))));
                cp
            })
            .collect();
        let refs: Vec<&Checkpoint> = batch.iter().collect();
        let results = s.checkpoint_many(&refs).await;
        assert_eq!(results.len(), 40);
        for (i, (run, result)) in runs.iter().zip(&results).enumerate() {
            let read = s.get_run(run.id).await.expect("get").expect("exists");
            if i == 17 {
                assert!(
                    matches!(result, Err(StoreError::Fenced { .. })),
                    "{result:?}"
                );
                assert_eq!(read.version, 0);
                continue;
            }
            assert_eq!(result.as_ref().ok(), Some(&1), "run {i}: {result:?}");
            assert_eq!(
                read.context.runtime["blob"],
                json!(format!("{i}:{}", "x".repeat(3000)))
            );
            assert_eq!(s.run_steps(run.id).await.expect("steps").len(), 1);
            assert_eq!(s.run_events(run.id).await.expect("events").len(), 2);
        }
    }

    async fn an_empty_batch_writes_nothing(db: &TestDb) {
        let s = with_workflows(db, &["wf"]).await;
        assert!(s.checkpoint_many(&[]).await.is_empty());
    }

    async fn two_checkpoints_of_one_run_in_a_batch_commit_in_order(db: &TestDb) {
        let s = with_workflows(db, &["wf"]).await;
        let t0 = SystemClock.now();
        let run = created(&s, new_run("wf", t0)).await;
        let t1 = t0 + Duration::seconds(1);
        let t2 = t0 + Duration::seconds(2);
        let first = stepped(&run, 0, 1, t1);
        let mut second = stepped(&run, 1, 2, t2);
        second.status = RunStatus::Completed;
        second.current_step = None;
        second.finished_at = Some(t2);
        let results = s.checkpoint_many(&[&first, &second]).await;
        assert_eq!(
            results.iter().map(|r| r.as_ref().ok()).collect::<Vec<_>>(),
            [Some(&1), Some(&2)],
            "{results:?}"
        );
        let read = s.get_run(run.id).await.expect("get").expect("exists");
        assert_eq!(
            (read.version, read.status, read.step_seq, read.finished_at),
            (2, RunStatus::Completed, 2, Some(t2))
        );
        assert_eq!(
            s.run_steps(run.id).await.expect("steps"),
            vec![step(1, "s1", t1), step(2, "s2", t2)]
        );
        let seqs: Vec<_> = s
            .run_events(run.id)
            .await
            .expect("events")
            .into_iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, [1, 2, 3]);
    }

    /// One checkpoint breaking a constraint (a step number already taken) fails alone: the
    /// batch falls back to writing each on its own. The in-memory store checks no such
    /// constraint, so there is nothing to break there.
    async fn a_failing_checkpoint_does_not_fail_its_batch(db: &TestDb) {
        if db.url.is_empty() {
            return;
        }
        let s = with_workflows(db, &["wf"]).await;
        let t0 = SystemClock.now();
        let a = created(&s, new_run("wf", t0)).await;
        let b = created(&s, new_run("wf", t0)).await;
        let t1 = t0 + Duration::seconds(1);
        assert_eq!(s.checkpoint(&stepped(&b, 0, 1, t1)).await.expect("b"), 1);
        // Step 1 of b again, at the right version: the fence holds, the insert does not.
        let bad = stepped(&b, 1, 1, t1);
        let results = s.checkpoint_many(&[&stepped(&a, 0, 1, t1), &bad]).await;
        assert_eq!(results[0].as_ref().ok(), Some(&1), "{:?}", results[0]);
        assert!(
            matches!(&results[1], Err(StoreError::Unavailable(_))),
            "{:?}",
            results[1]
        );
        assert_eq!(s.run_steps(a.id).await.expect("steps").len(), 1);
        let read = s.get_run(b.id).await.expect("get").expect("exists");
        assert_eq!(read.version, 1, "the failed checkpoint wrote nothing");
    }

    async fn a_batch_of_creates_answers_each_run_in_order(db: &TestDb) {
        let s = with_workflows(db, &["wf"]).await;
        let at = SystemClock.now();
        let earlier = created(&s, keyed("k", "fp", at)).await;
        let event = |seq| EventRecord {
            seq,
            kind: "run.created".into(),
            step_id: None,
            actor: Some("key:ci".into()),
            data: json!({"n": seq}),
            created_at: at,
        };
        let a = NewRun {
            events: vec![event(1)],
            ..new_run("wf", at)
        };
        let b = NewRun {
            events: vec![event(1), event(2)],
            ..new_run("wf", at)
        };
        let mut ghost = new_run("wf", at);
        ghost.workflow_version = 9;
        let (a_id, b_id, ghost_id) = (a.id, b.id, ghost.id);
        let batch = vec![
            a,
            keyed("k", "fp", at),
            ghost,
            b,
            keyed("k", "other-fp", at),
        ];
        let results = s.create_runs(batch).await;
        assert_eq!(results.len(), 5, "one answer per run");
        match &results[0] {
            Ok(CreatedRun::New(run)) => assert_eq!(run.id, a_id),
            other => panic!("a: {other:?}"),
        }
        match &results[1] {
            Ok(CreatedRun::Existing(run)) => assert_eq!(run, &earlier),
            other => panic!("the repeated key: {other:?}"),
        }
        assert!(
            matches!(&results[2], Err(StoreError::NotFound(_))),
            "an unknown version fails alone: {:?}",
            results[2]
        );
        match &results[3] {
            Ok(CreatedRun::New(run)) => {
                assert_eq!(run.id, b_id);
                assert_eq!((run.version, run.event_seq), (0, 2));
                let read = s.get_run(b_id).await.expect("get").expect("stored");
                assert_eq!(&read, run, "what is answered is what was stored");
            }
            other => panic!("b: {other:?}"),
        }
        assert!(
            matches!(&results[4], Err(StoreError::Conflict(_))),
            "{:?}",
            results[4]
        );
        assert_eq!(s.run_events(a_id).await.expect("events"), vec![event(1)]);
        assert_eq!(
            s.run_events(b_id).await.expect("events"),
            vec![event(1), event(2)]
        );
        assert_eq!(s.get_run(ghost_id).await.expect("get"), None);
        assert!(s.create_runs(Vec::new()).await.is_empty());
    }

    on_all_stores!(
        runs_round_trip_every_field,
        a_batch_of_creates_answers_each_run_in_order,
        a_repeated_key_returns_the_earlier_run_or_conflicts,
        concurrent_creates_with_one_key_make_one_run,
        a_run_of_an_unknown_workflow_version_is_not_found,
        checkpoints_advance_the_version_and_append_history,
        a_stale_checkpoint_is_fenced_and_writes_nothing,
        concurrent_checkpoints_at_one_version_let_one_win,
        a_batch_fences_each_checkpoint_on_its_own,
        an_empty_batch_writes_nothing,
        a_large_batch_commits_every_checkpoint,
        two_checkpoints_of_one_run_in_a_batch_commit_in_order,
        a_failing_checkpoint_does_not_fail_its_batch,
        listing_runs_pages_newest_first_with_filters,
        unfinished_runs_are_queued_or_running_oldest_first_and_counted,
        step_state_is_kept_between_checkpoints_until_cleared,
        settings_keep_the_first_value,
        concurrent_settings_agree_on_one_value,
    );
}

/// Prompt templates, on SQLite, PostgreSQL and the in-memory reference store.
mod templates {
    use std::sync::Arc;

    use chrono::{Duration, SubsecRound, Utc};
    use scaff_core::store::{NewTemplateVersion, Store, TemplateQuery};

    use crate::on_all_stores;
    use crate::support::TestDb;

    fn new(id: &str, prompt: &str) -> NewTemplateVersion {
        NewTemplateVersion {
            id: id.to_string(),
            system: Some("You are terse. ✓".into()),
            prompt: prompt.to_string(),
            description: Some("about it".into()),
            created_by: Some("tester".into()),
            created_at: Utc::now().trunc_subsecs(6),
        }
    }

    async fn template_versions_count_up_per_id(db: &TestDb) {
        let s = &db.store;
        let first = new("outline", "Outline {{ topic }}\n");
        let v1 = s.save_template(first.clone()).await.expect("v1");
        assert_eq!(
            (v1.id.as_str(), v1.version, v1.prompt.as_str()),
            ("outline", 1, "Outline {{ topic }}\n")
        );
        assert_eq!(v1.system, first.system);
        assert_eq!(v1.description, first.description);
        assert_eq!(v1.created_by.as_deref(), Some("tester"));
        assert_eq!(v1.created_at, first.created_at);

        let mut bare = new("outline", "Second");
        bare.system = None;
        bare.description = None;
        bare.created_by = None;
        bare.created_at += Duration::seconds(1);
        let v2 = s.save_template(bare).await.expect("v2");
        assert_eq!(v2.version, 2);
        let other = s
            .save_template(new("draft", "Draft"))
            .await
            .expect("other id");
        assert_eq!(other.version, 1, "numbering is per id");

        assert_eq!(
            s.latest_template("outline").await.expect("read"),
            Some(v2.clone())
        );
        assert_eq!(
            s.template_version("outline", 1).await.expect("read"),
            Some(v1)
        );
        assert_eq!(
            s.template_version("outline", 2).await.expect("read"),
            Some(v2)
        );
        assert_eq!(s.template_version("outline", 3).await.expect("read"), None);
        assert_eq!(s.template_version("nope", 1).await.expect("read"), None);
        assert_eq!(s.latest_template("nope").await.expect("read"), None);
        assert_eq!(s.latest_template("draft").await.expect("read"), Some(other));
    }

    async fn concurrent_template_saves_get_consecutive_versions(db: &TestDb) {
        let s: Arc<dyn Store> = db.store.clone();
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move { s.save_template(new("busy", &format!("p{i}"))).await })
            })
            .collect();
        let mut saved = Vec::new();
        for t in tasks {
            saved.push(t.await.expect("join").expect("saved"));
        }
        let mut versions: Vec<i64> = saved.iter().map(|t| t.version).collect();
        versions.sort_unstable();
        assert_eq!(versions, (1..=16).collect::<Vec<i64>>());
        for t in saved {
            assert_eq!(
                s.template_version("busy", t.version).await.expect("read"),
                Some(t),
                "each saver got the version its text was stored under"
            );
        }
        assert_eq!(
            s.latest_template("busy")
                .await
                .expect("read")
                .map(|t| t.version),
            Some(16)
        );
    }

    async fn listing_templates_pages_through_latest_versions_by_id(db: &TestDb) {
        let s = &db.store;
        for id in ["e", "a", "d", "b", "c", "B", "a-1", "a_1"] {
            s.save_template(new(id, &format!("{id} v1")))
                .await
                .expect("save");
        }
        s.save_template(new("b", "b v2")).await.expect("v2");
        s.save_template(new("b", "b v3")).await.expect("v3");
        let mut query = TemplateQuery {
            after_id: None,
            limit: 3,
        };
        let mut seen = Vec::new();
        let mut pages = 0;
        loop {
            let page = s.list_templates(&query).await.expect("list");
            pages += 1;
            assert!(page.items.len() <= 3);
            seen.extend(
                page.items
                    .iter()
                    .map(|t| (t.id.clone(), t.version, t.prompt.clone())),
            );
            match page.next_after {
                Some(after) => query.after_id = Some(after),
                None => break,
            }
        }
        assert_eq!(pages, 3);
        let expected: Vec<(String, i64, String)> = [
            ("B", 1, "B v1"),
            ("a", 1, "a v1"),
            ("a-1", 1, "a-1 v1"),
            ("a_1", 1, "a_1 v1"),
            ("b", 3, "b v3"),
            ("c", 1, "c v1"),
            ("d", 1, "d v1"),
            ("e", 1, "e v1"),
        ]
        .iter()
        .map(|(i, v, p)| (i.to_string(), *v, p.to_string()))
        .collect();
        assert_eq!(seen, expected, "latest versions, in byte order of id");

        let exact = s
            .list_templates(&TemplateQuery {
                after_id: None,
                limit: 8,
            })
            .await
            .expect("list");
        assert_eq!(exact.items.len(), 8);
        assert_eq!(
            exact.next_after, None,
            "a full last page has no continuation"
        );
        let empty = s
            .list_templates(&TemplateQuery {
                after_id: Some("e".into()),
                limit: 5,
            })
            .await
            .expect("list");
        assert!(empty.items.is_empty() && empty.next_after.is_none());
    }

    on_all_stores!(
        template_versions_count_up_per_id,
        concurrent_template_saves_get_consecutive_versions,
        listing_templates_pages_through_latest_versions_by_id,
    );
}

/// Rows the adapters cannot map are errors, never panics (needs the URL: databases only).
mod corrupt_rows {
    use chrono::Utc;
    use scaff_core::store::{CreatedRun, NewRun, StoreError};
    use uuid::Uuid;

    use super::new as new_workflow;
    use crate::on_both_stores;
    use crate::support::TestDb;

    async fn raw(db: &TestDb, run_id: Uuid) {
        if db.url.starts_with("sqlite:") {
            let pool = sqlx::SqlitePool::connect(&db.url).await.expect("sqlite");
            sqlx::query(
                "INSERT INTO run_steps (run_id, seq, step_id, step_type, attempt, status, \
                 started_at, finished_at) VALUES (?1, 1, 'a', 'set', 1, 'exploded', \
                 '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.000000Z')",
            )
            .bind(run_id.to_string())
            .execute(&pool)
            .await
            .expect("insert step");
            sqlx::query(
                "INSERT INTO events (run_id, seq, kind, data, created_at) \
                 VALUES (?1, NULL, 'odd', '{}', '2026-01-01T00:00:00.000000Z')",
            )
            .bind(run_id.to_string())
            .execute(&pool)
            .await
            .expect("insert event");
            pool.close().await;
        } else {
            let pool = sqlx::PgPool::connect(&db.url).await.expect("postgres");
            sqlx::query(
                "INSERT INTO run_steps (run_id, seq, step_id, step_type, attempt, status, \
                 started_at, finished_at) VALUES ($1, 1, 'a', 'set', 1, 'exploded', now(), now())",
            )
            .bind(run_id)
            .execute(&pool)
            .await
            .expect("insert step");
            sqlx::query("INSERT INTO events (run_id, seq, kind) VALUES ($1, NULL, 'odd')")
                .bind(run_id)
                .execute(&pool)
                .await
                .expect("insert event");
            pool.close().await;
        }
    }

    async fn unknown_stored_values_are_corrupt_rows(db: &TestDb) {
        let s = &db.store;
        s.create_workflow(new_workflow("wf", "Flow"))
            .await
            .expect("workflow");
        let id = Uuid::now_v7();
        let created = s
            .create_run(NewRun {
                id,
                workflow_id: "wf".into(),
                workflow_version: 1,
                context: Default::default(),
                pins: Default::default(),
                idempotency_key: None,
                request_fingerprint: None,
                created_by: None,
                created_at: Utc::now(),
                events: vec![],
            })
            .await
            .expect("create");
        assert!(matches!(created, CreatedRun::New(_)));
        raw(db, id).await;
        for err in [
            s.run_steps(id).await.map(|_| ()).expect_err("bad status"),
            s.run_events(id).await.map(|_| ()).expect_err("no seq"),
        ] {
            assert!(
                matches!(&err, StoreError::Unavailable(m) if m.starts_with("corrupt row: ")),
                "{err:?}"
            );
        }
    }

    on_both_stores!(unknown_stored_values_are_corrupt_rows);
}

/// Sealed secrets: upserts keep `created_at`, reads, listing by name, deletes.
mod secrets {
    use chrono::{DateTime, Duration, TimeZone, Utc};
    use scaff_core::store::SealedSecret;

    use crate::on_all_stores;
    use crate::support::TestDb;

    fn at(seconds: i64, micros: u32) -> DateTime<Utc> {
        Utc.timestamp_opt(1_790_000_000 + seconds, micros * 1000)
            .single()
            .expect("valid time")
    }

    fn sealed(name: &str, bytes: &[u8], created: DateTime<Utc>) -> SealedSecret {
        SealedSecret {
            name: name.into(),
            ciphertext: bytes.to_vec(),
            key_id: "0123456789abcdef".into(),
            created_at: created,
            updated_at: created,
        }
    }

    async fn secrets_round_trip_every_field(db: &TestDb) {
        let s = &db.store;
        // Every byte value, NULs and invalid UTF-8 included: ciphertext is binary.
        let bytes: Vec<u8> = (0..=255u8).rev().chain(0..=255u8).collect();
        let secret = sealed("api_token", &bytes, at(0, 123_456));
        s.put_secret(secret.clone()).await.expect("put");
        assert_eq!(
            s.get_secret("api_token").await.expect("get"),
            Some(secret),
            "what is read back is exactly what was stored"
        );
        assert_eq!(s.get_secret("nope").await.expect("get"), None);
        assert_eq!(
            s.get_secret("API_TOKEN").await.expect("get"),
            None,
            "names are case-sensitive"
        );
    }

    async fn replacing_a_secret_keeps_created_at_and_moves_updated_at(db: &TestDb) {
        let s = &db.store;
        let first = sealed("token", b"first", at(0, 1));
        s.put_secret(first.clone()).await.expect("put");
        let replacement = SealedSecret {
            ciphertext: b"second".to_vec(),
            key_id: "fedcba9876543210".into(),
            created_at: at(3600, 0),
            updated_at: at(3600, 5),
            ..first.clone()
        };
        s.put_secret(replacement).await.expect("replace");
        let read = s.get_secret("token").await.expect("get").expect("exists");
        assert_eq!(read.created_at, first.created_at, "created_at is kept");
        assert_eq!(read.updated_at, at(3600, 5));
        assert_eq!(read.ciphertext, b"second");
        assert_eq!(read.key_id, "fedcba9876543210");
        assert_eq!(s.all_secrets().await.expect("all").len(), 1);
    }

    async fn all_secrets_are_listed_by_name(db: &TestDb) {
        let s = &db.store;
        assert!(s.all_secrets().await.expect("all").is_empty());
        for (i, name) in ["b", "a_1", "B", "_x", "a", "Z9"].iter().enumerate() {
            let created = at(0, 0) + Duration::seconds(i as i64);
            s.put_secret(sealed(name, name.as_bytes(), created))
                .await
                .expect("put");
        }
        let names: Vec<String> = s
            .all_secrets()
            .await
            .expect("all")
            .into_iter()
            .map(|x| x.name)
            .collect();
        assert_eq!(names, ["B", "Z9", "_x", "a", "a_1", "b"], "byte order");
    }

    async fn deleting_says_whether_there_was_a_secret(db: &TestDb) {
        let s = &db.store;
        s.put_secret(sealed("gone", b"x", at(0, 0)))
            .await
            .expect("put");
        s.put_secret(sealed("kept", b"y", at(0, 0)))
            .await
            .expect("put");
        assert!(s.delete_secret("gone").await.expect("delete"));
        assert!(!s.delete_secret("gone").await.expect("again"));
        assert!(!s.delete_secret("never").await.expect("never"));
        assert_eq!(s.get_secret("gone").await.expect("get"), None);
        let names: Vec<String> = s
            .all_secrets()
            .await
            .expect("all")
            .into_iter()
            .map(|x| x.name)
            .collect();
        assert_eq!(names, ["kept"]);
        // A deleted name can be stored again, as a new secret.
        let again = sealed("gone", b"z", at(10, 0));
        s.put_secret(again.clone()).await.expect("put again");
        assert_eq!(s.get_secret("gone").await.expect("get"), Some(again));
    }

    on_all_stores!(
        secrets_round_trip_every_field,
        replacing_a_secret_keeps_created_at_and_moves_updated_at,
        all_secrets_are_listed_by_name,
        deleting_says_whether_there_was_a_secret,
    );
}

/// The notification outbox, on SQLite, PostgreSQL and the in-memory reference store: messages
/// queued by checkpoints, claimed by senders (exclusively, under a lease), delivered or failed.
mod outbox {
    use std::collections::{BTreeMap, HashSet};
    use std::sync::Arc;

    use chrono::{DateTime, Duration, SubsecRound, Utc};
    use scaff_core::run::{Context, Run, RunStatus};
    use scaff_core::store::{
        Checkpoint, CreatedRun, MessageKind, MessageStatus, NewMessage, NewRun, OutboxMessage,
        OutboxQuery, Store,
    };
    use serde_json::json;
    use uuid::Uuid;

    use super::new as new_workflow;
    use crate::on_all_stores;
    use crate::support::TestDb;

    const LEASE: std::time::Duration = std::time::Duration::from_secs(60);

    fn at() -> DateTime<Utc> {
        Utc::now().trunc_subsecs(6) - Duration::hours(1)
    }

    async fn store_with_run(db: &TestDb, when: DateTime<Utc>) -> (Arc<dyn Store>, Run) {
        let s = db.store.clone();
        if s.latest_workflow("wf").await.expect("read").is_none() {
            s.create_workflow(new_workflow("wf", "Flow"))
                .await
                .expect("wf");
        }
        let run = match s
            .create_run(NewRun {
                id: Uuid::now_v7(),
                workflow_id: "wf".into(),
                workflow_version: 1,
                context: Context::default(),
                pins: BTreeMap::new(),
                idempotency_key: None,
                request_fingerprint: None,
                created_by: None,
                created_at: when,
                events: vec![],
            })
            .await
            .expect("create run")
        {
            CreatedRun::New(run) => run,
            other => panic!("expected a new run, got {other:?}"),
        };
        (s, run)
    }

    /// `n` message ids in increasing order (UUIDv7 sorts by time).
    fn ids(n: usize) -> Vec<Uuid> {
        let mut ids: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
        ids.sort();
        ids
    }

    fn message(id: Uuid, kind: MessageKind, recipient: &str) -> NewMessage {
        NewMessage {
            id,
            kind,
            recipient: recipient.to_string(),
            step_id: "check".into(),
            wait_version: 2,
            data: json!({"workflow_id": "wf", "workflow_name": "Flow ✓", "message": null,
                         "min_approvals": 1, "deadline": null, "reminder": 0}),
        }
    }

    /// Queues `messages` for `run` in a checkpoint at `when`.
    async fn queue(s: &Arc<dyn Store>, run: &Run, when: DateTime<Utc>, messages: Vec<NewMessage>) {
        s.checkpoint(&Checkpoint {
            run_id: run.id,
            expected_version: run.version,
            status: RunStatus::Waiting,
            current_step: Some("check".into()),
            context: run.context.clone(),
            step_state: None,
            waiting: None,
            error: None,
            steps: vec![],
            events: vec![],
            step_seq: run.step_seq,
            event_seq: run.event_seq,
            finished_at: None,
            at: when,
            timers: vec![],
            messages,
            wake_at: None,
        })
        .await
        .expect("checkpoint");
    }

    fn ids_of(messages: &[OutboxMessage]) -> Vec<Uuid> {
        messages.iter().map(|m| m.message.id).collect()
    }

    async fn all(s: &Arc<dyn Store>) -> Vec<OutboxMessage> {
        s.list_messages(&OutboxQuery {
            limit: 200,
            ..OutboxQuery::default()
        })
        .await
        .expect("list")
        .items
    }

    async fn queued_messages_round_trip_and_claims_are_leased(db: &TestDb) {
        let t = at();
        let (s, run) = store_with_run(db, t).await;
        let id = ids(3);
        let queued = vec![
            message(id[0], MessageKind::ApprovalRequested, "ann@example.com"),
            message(id[1], MessageKind::ApprovalRequested, "bob@example.com"),
            message(id[2], MessageKind::ApprovalReminder, "max@example.com"),
        ];
        queue(&s, &run, t, queued.clone()).await;

        let listed = all(&s).await;
        assert_eq!(ids_of(&listed), [id[2], id[1], id[0]], "newest first");
        assert_eq!(
            listed[2],
            OutboxMessage {
                message: queued[0].clone(),
                run_id: run.id,
                status: MessageStatus::Pending,
                attempts: 0,
                last_error: None,
                subject: None,
                body: None,
                created_at: t,
                next_attempt_at: t,
                sent_at: None,
            },
            "every field round-trips"
        );
        assert_eq!(listed[0].message.kind, MessageKind::ApprovalReminder);

        let early = s
            .claim_messages(t - Duration::seconds(1), LEASE, 10)
            .await
            .expect("claim");
        assert!(early.is_empty(), "nothing is due before it was queued");
        let first = s.claim_messages(t, LEASE, 2).await.expect("claim");
        assert_eq!(
            ids_of(&first),
            [id[0], id[1]],
            "oldest first, up to the limit"
        );
        assert!(
            first
                .iter()
                .all(|m| m.next_attempt_at == t + Duration::seconds(60)),
            "claimed messages are leased"
        );
        let second = s.claim_messages(t, LEASE, 10).await.expect("claim");
        assert_eq!(ids_of(&second), [id[2]], "leased messages are skipped");
        assert!(
            s.claim_messages(t + Duration::seconds(59), LEASE, 10)
                .await
                .expect("claim")
                .is_empty()
        );
        let lapsed = s
            .claim_messages(t + Duration::seconds(60), LEASE, 10)
            .await
            .expect("claim");
        assert_eq!(
            ids_of(&lapsed),
            [id[0], id[1], id[2]],
            "a lapsed lease lets another sender retry"
        );
    }

    async fn deliveries_and_failures_are_recorded(db: &TestDb) {
        let t = at();
        let (s, run) = store_with_run(db, t).await;
        let id = ids(2);
        queue(
            &s,
            &run,
            t,
            vec![
                message(id[0], MessageKind::ApprovalRequested, "ann@example.com"),
                message(id[1], MessageKind::ApprovalRequested, "bob@example.com"),
            ],
        )
        .await;
        assert_eq!(
            s.claim_messages(t, LEASE, 10).await.expect("claim").len(),
            2
        );

        // A transient failure: retried at the given time.
        s.mark_failed(id[0], "451 try later", Some(t + Duration::seconds(5)))
            .await
            .expect("failed");
        let a = &all(&s).await[1];
        assert_eq!(
            (
                a.status,
                a.attempts,
                a.last_error.as_deref(),
                a.next_attempt_at
            ),
            (
                MessageStatus::Pending,
                1,
                Some("451 try later"),
                t + Duration::seconds(5)
            )
        );
        assert!(
            s.claim_messages(t + Duration::seconds(4), LEASE, 10)
                .await
                .expect("claim")
                .is_empty()
        );
        let retried = s
            .claim_messages(t + Duration::seconds(5), LEASE, 10)
            .await
            .expect("claim");
        assert_eq!(ids_of(&retried), [id[0]]);
        assert_eq!(retried[0].attempts, 1);

        // Delivered on the second attempt.
        let sent_at = t + Duration::seconds(6) + Duration::microseconds(7);
        s.mark_sent(id[0], "Approval needed", "Hello,\nbody ✓", sent_at)
            .await
            .expect("sent");
        // A permanent failure: given up on.
        s.mark_failed(id[1], "550 no such user", None)
            .await
            .expect("failed");

        let listed = all(&s).await;
        let (b, a) = (&listed[0], &listed[1]);
        assert_eq!(a.status, MessageStatus::Sent);
        assert_eq!(a.attempts, 2);
        assert_eq!(a.subject.as_deref(), Some("Approval needed"));
        assert_eq!(a.body.as_deref(), Some("Hello,\nbody ✓"));
        assert_eq!(a.sent_at, Some(sent_at));
        assert_eq!(a.last_error, None, "a delivery clears the last error");
        assert_eq!(b.status, MessageStatus::Failed);
        assert_eq!(b.attempts, 1);
        assert_eq!(b.last_error.as_deref(), Some("550 no such user"));
        assert_eq!(b.sent_at, None);
        assert!(
            s.claim_messages(t + Duration::days(1), LEASE, 10)
                .await
                .expect("claim")
                .is_empty(),
            "sent and failed messages are never claimed again"
        );
    }

    async fn listing_filters_and_pages_newest_first(db: &TestDb) {
        let t = at();
        let (s, one) = store_with_run(db, t).await;
        let (_, two) = store_with_run(db, t).await;
        let id = ids(5);
        queue(
            &s,
            &one,
            t,
            id[..3]
                .iter()
                .map(|i| message(*i, MessageKind::ApprovalRequested, "ann@example.com"))
                .collect(),
        )
        .await;
        queue(
            &s,
            &two,
            t,
            id[3..]
                .iter()
                .map(|i| message(*i, MessageKind::ApprovalReminder, "bob@example.com"))
                .collect(),
        )
        .await;
        s.mark_sent(id[1], "s", "b", t).await.expect("sent");
        s.mark_sent(id[4], "s", "b", t).await.expect("sent");

        let list = |q: OutboxQuery| {
            let s = s.clone();
            async move { s.list_messages(&q).await.expect("list") }
        };
        let of_one = list(OutboxQuery {
            run_id: Some(one.id),
            limit: 50,
            ..OutboxQuery::default()
        })
        .await;
        assert_eq!(ids_of(&of_one.items), [id[2], id[1], id[0]]);
        assert_eq!(of_one.next_after, None);
        let sent = list(OutboxQuery {
            status: Some(MessageStatus::Sent),
            limit: 50,
            ..OutboxQuery::default()
        })
        .await;
        assert_eq!(ids_of(&sent.items), [id[4], id[1]]);
        let pending_of_two = list(OutboxQuery {
            status: Some(MessageStatus::Pending),
            run_id: Some(two.id),
            limit: 50,
            ..OutboxQuery::default()
        })
        .await;
        assert_eq!(ids_of(&pending_of_two.items), [id[3]]);
        assert!(
            list(OutboxQuery {
                status: Some(MessageStatus::Failed),
                limit: 50,
                ..OutboxQuery::default()
            })
            .await
            .items
            .is_empty()
        );

        let mut seen = Vec::new();
        let mut before = None;
        loop {
            let page = list(OutboxQuery {
                before,
                limit: 2,
                ..OutboxQuery::default()
            })
            .await;
            assert!(page.items.len() <= 2);
            seen.extend(ids_of(&page.items));
            match page.next_after {
                Some(next) => before = Some(next),
                None => break,
            }
        }
        let mut newest_first = id.clone();
        newest_first.reverse();
        assert_eq!(
            seen, newest_first,
            "pages cover everything once, newest first"
        );
    }

    async fn concurrent_claims_never_share_a_message(db: &TestDb) {
        let t = at();
        let (s, run) = store_with_run(db, t).await;
        let id = ids(20);
        queue(
            &s,
            &run,
            t,
            id.iter()
                .map(|i| message(*i, MessageKind::ApprovalRequested, "ann@example.com"))
                .collect(),
        )
        .await;
        let claims = (0..4).map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.claim_messages(t, LEASE, 6).await.expect("claim") })
        });
        let mut claimed = Vec::new();
        for c in claims {
            claimed.extend(ids_of(&c.await.expect("task")));
        }
        let distinct: HashSet<Uuid> = claimed.iter().copied().collect();
        assert_eq!(distinct.len(), claimed.len(), "no message claimed twice");
        assert_eq!(claimed.len(), 20, "every message claimed by someone");
    }

    on_all_stores!(
        queued_messages_round_trip_and_claims_are_leased,
        deliveries_and_failures_are_recorded,
        listing_filters_and_pages_newest_first,
        concurrent_claims_never_share_a_message,
    );
}

mod keys {
    use chrono::{DateTime, Duration, SubsecRound, Utc};
    use scaff_core::store::{NewApiKey, Role, StoreError};
    use uuid::Uuid;

    use crate::on_all_stores;
    use crate::support::TestDb;

    fn now() -> DateTime<Utc> {
        Utc::now().trunc_subsecs(6)
    }

    fn key(name: &str, prefix: &str, role: Role, at: DateTime<Utc>) -> NewApiKey {
        NewApiKey {
            id: Uuid::now_v7(),
            name: name.into(),
            role,
            prefix: prefix.into(),
            hash: format!("{:0>64}", prefix),
            created_at: at,
        }
    }

    async fn keys_round_trip_and_list_oldest_first(db: &TestDb) {
        let s = db.store.as_ref();
        assert_eq!(s.count_keys().await.expect("count"), 0);
        let t = now();
        let ci = s
            .create_key(key("ci", "aaaaaaaa", Role::Operator, t))
            .await
            .expect("create");
        assert_eq!(
            (ci.name.as_str(), ci.role, ci.prefix.as_str(), ci.created_at),
            ("ci", Role::Operator, "aaaaaaaa", t)
        );
        assert_eq!((ci.last_used_at, ci.revoked_at), (None, None));
        let ops = s
            .create_key(key(
                "ops ✓",
                "bbbbbbbb",
                Role::Admin,
                t + Duration::seconds(1),
            ))
            .await
            .expect("create");
        let read = s
            .key_by_prefix("aaaaaaaa")
            .await
            .expect("read")
            .expect("found");
        assert_eq!(read, ci);
        assert_eq!(s.key_by_prefix("zzzzzzzz").await.expect("read"), None);
        let listed = s.list_keys().await.expect("list");
        assert_eq!(listed, vec![ci.clone(), ops]);
        assert_eq!(s.count_keys().await.expect("count"), 2);
        let used = t + Duration::seconds(5);
        s.touch_key(ci.id, used).await.expect("touch");
        let read = s
            .key_by_prefix("aaaaaaaa")
            .await
            .expect("read")
            .expect("found");
        assert_eq!(read.last_used_at, Some(used));
    }

    async fn prefixes_are_unique_and_names_unique_among_live_keys(db: &TestDb) {
        let s = db.store.as_ref();
        let t = now();
        let first = s
            .create_key(key("ci", "cccccccc", Role::Viewer, t))
            .await
            .expect("create");
        let taken = s
            .create_key(key("other", "cccccccc", Role::Viewer, t))
            .await;
        assert!(matches!(taken, Err(StoreError::Conflict(_))), "{taken:?}");
        let same_name = s.create_key(key("ci", "dddddddd", Role::Viewer, t)).await;
        assert!(
            matches!(same_name, Err(StoreError::Conflict(_))),
            "{same_name:?}"
        );
        s.revoke_key(first.id, t).await.expect("revoke");
        s.create_key(key("ci", "dddddddd", Role::Viewer, t))
            .await
            .expect("a revoked key's name is free again");
    }

    async fn revoking_keeps_the_first_time_and_counts_stay(db: &TestDb) {
        let s = db.store.as_ref();
        let t = now();
        let k = s
            .create_key(key("gone", "eeeeeeee", Role::Admin, t))
            .await
            .expect("create");
        let revoked = s
            .revoke_key(k.id, t + Duration::seconds(1))
            .await
            .expect("revoke")
            .expect("found");
        assert_eq!(revoked.revoked_at, Some(t + Duration::seconds(1)));
        let again = s
            .revoke_key(k.id, t + Duration::seconds(9))
            .await
            .expect("revoke")
            .expect("found");
        assert_eq!(again.revoked_at, Some(t + Duration::seconds(1)));
        assert_eq!(s.revoke_key(Uuid::now_v7(), t).await.expect("revoke"), None);
        assert_eq!(
            s.count_keys().await.expect("count"),
            1,
            "revoked keys count"
        );
        let read = s
            .key_by_prefix("eeeeeeee")
            .await
            .expect("read")
            .expect("kept");
        assert_eq!(read.revoked_at, Some(t + Duration::seconds(1)));
    }

    on_all_stores!(
        keys_round_trip_and_list_oldest_first,
        prefixes_are_unique_and_names_unique_among_live_keys,
        revoking_keeps_the_first_time_and_counts_stay,
    );
}
