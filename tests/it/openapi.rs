//! The committed `openapi.yaml` is exactly what the server serves; regenerate it with
//! `UPDATE_OPENAPI=1 cargo test --test it openapi` (or `scaff openapi > openapi.yaml`).

use crate::support::{TestApp, TestDb};

fn committed_path() -> String {
    format!("{}/openapi.yaml", env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test]
async fn the_committed_document_is_the_served_document() {
    let generated = scaff::api::openapi_yaml();
    if std::env::var("UPDATE_OPENAPI").is_ok_and(|v| v == "1") {
        std::fs::write(committed_path(), &generated).expect("write openapi.yaml");
    }
    let committed = std::fs::read_to_string(committed_path()).expect("openapi.yaml is committed");
    assert!(
        committed == generated,
        "openapi.yaml differs from the handlers; run `UPDATE_OPENAPI=1 cargo test --test it openapi` and commit it"
    );
    let db = TestDb::sqlite().await;
    let served = TestApp::new(&db).await.get("/openapi.yaml").await;
    assert_eq!(served.text, committed);
}

#[test]
fn every_route_of_the_contract_is_described() {
    let doc = scaff::api::openapi();
    let paths: Vec<&String> = doc.paths.paths.keys().collect();
    for path in [
        "/v1/workflows",
        "/v1/workflows/validate",
        "/v1/workflows/{id}",
        "/v1/workflows/{id}/versions",
        "/v1/workflows/{id}/versions/{version}",
        "/v1/workflows/{id}/validate",
        "/v1/executions/{id}/stream",
        "/v1/events/stream",
        "/healthz",
        "/readyz",
        "/metrics",
        "/openapi.yaml",
        "/docs",
    ] {
        assert!(
            doc.paths.paths.contains_key(path),
            "{path} missing from {paths:?}"
        );
    }
}
