//! `/healthz`, `/readyz`, `/metrics` and request ids.

use crate::helpers::*;

#[tokio::test]
async fn healthz_answers_while_the_process_runs_even_without_redis() {
    let mut app = TestApp::spawn().await;
    assert_eq!(app.get("/healthz").await.status, 200);
    app.redis.stop();
    assert_eq!(app.get("/healthz").await.status, 200);
}

#[tokio::test]
async fn readyz_follows_redis() {
    let mut app = TestApp::spawn().await;
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status, 200);
    assert_eq!(ready.json()["status"], "ready");
    app.redis.stop();
    let not_ready = app.get("/readyz").await;
    assert_eq!(not_ready.status, 503);
    assert_eq!(not_ready.json()["status"], "unavailable");
}

#[tokio::test]
async fn metrics_are_prometheus_text_with_the_webhook_series() {
    let app = TestApp::spawn().await;
    app.deliver(fixture("invoice.payment_failed")).await;
    let metrics = app.get("/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"),
        "{:?}",
        metrics.headers
    );
    assert!(
        metrics
            .text
            .contains("# TYPE recoup_webhook_events_total counter"),
        "{}",
        metrics.text
    );
    assert!(
        metrics
            .text
            .contains("# TYPE recoup_webhook_ingest_seconds histogram"),
        "{}",
        metrics.text
    );
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = TestApp::spawn().await;
    let a = app.get("/healthz").await;
    let b = app.deliver(fixture("invoice.paid")).await;
    let ids: Vec<&str> = [&a, &b]
        .iter()
        .map(|r| r.headers["x-request-id"].to_str().unwrap())
        .collect();
    assert!(ids.iter().all(|id| id.len() >= 32), "{ids:?}");
    assert_ne!(ids[0], ids[1]);
}

#[tokio::test]
async fn a_request_id_sent_by_the_caller_is_kept() {
    let app = TestApp::spawn().await;
    let answer = app
        .http
        .get(app.url("/healthz"))
        .header("x-request-id", "support-ticket-4711")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.headers()["x-request-id"], "support-ticket-4711");
}
