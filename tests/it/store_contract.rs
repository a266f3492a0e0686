//! The store contract: the same bodies run against SQLite and PostgreSQL.

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
}

async fn a_version_of_an_unknown_workflow_is_not_found(db: &TestDb) {
    let err = db
        .store
        .add_workflow_version(new("ghost", "x"))
        .await
        .expect_err("unknown");
    assert!(matches!(err, StoreError::NotFound(_)), "{err:?}");
    assert_eq!(db.store.latest_workflow("ghost").await.expect("read"), None);
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
