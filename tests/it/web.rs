//! The admin page is served without a token, as HTML that calls the API.

use crate::support::TestApp;
use crmsync_schema::test_support::TestDb;

#[tokio::test]
async fn the_admin_page_is_served() {
    let db = TestDb::sqlite();
    let app = TestApp::start(&db).await;
    let root = app.base.trim_end_matches("/api/v1").to_string();
    let resp = reqwest::get(format!("{root}/")).await.expect("GET /");
    assert_eq!(resp.status(), 200);
    assert!(resp.headers()["content-type"]
        .to_str()
        .unwrap_or("")
        .starts_with("text/html"));
    let body = resp.text().await.expect("body");
    assert!(body.contains("Start synchronization") && body.contains("/sync-status"));
}
