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

#[tokio::test]
async fn a_client_that_stalls_mid_body_gets_408_and_nothing_is_stored() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let app = TestApp::spawn_with(&[("RECOUP_SERVER__REQUEST_TIMEOUT_SECS", "1")]).await;
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(
            b"POST /webhooks/stripe HTTP/1.1\r\nHost: recoup\r\nStripe-Signature: t=1,v1=00\r\n\
              Content-Length: 1000\r\n\r\n{\"id\":",
        )
        .await
        .unwrap();
    let mut response = String::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_string(&mut response),
    )
    .await;
    assert!(read.is_ok(), "no answer to a stalled request");
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert_eq!(app.redis.inbox_len().await, 0);
}
