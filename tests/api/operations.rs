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

#[tokio::test]
async fn webhooks_are_stored_again_soon_after_a_black_hole_in_front_of_redis_ends() {
    let redis = TestRedis::start();
    let proxy = BlackHoleProxy::start(redis.port).await;
    let url = proxy.url();
    let receiver = RecoupProcess::serve(
        &redis,
        &[
            ("REDIS_URL", url.as_str()),
            ("RECOUP_REDIS__TIMEOUT_MS", "300"),
        ],
    )
    .await;
    let send = |n: usize| receiver.deliver(event_body(&format!("evt_hole_{n}"), "invoice.paid"));
    assert_eq!(send(0).await.status, 200);

    // The network drops the flow: the socket stays open, and nothing comes back.
    proxy.open_hole();
    for n in 1..=3 {
        assert_eq!(send(n).await.status, 503, "stored through a black hole?");
    }
    assert_eq!(receiver.get("/readyz").await.status, 503);

    // Once the network is back, recoup is on a new connection within a few time bounds, not the
    // kernel's quarter of an hour.
    proxy.close_hole();
    let mut n = 10;
    wait_until("a webhook to be stored again", SETTLE, || {
        n += 1;
        let sent = send(n);
        async move { sent.await.status == 200 }
    })
    .await;
    assert_eq!(receiver.get("/readyz").await.status, 200);
    assert!(redis.inbox_len().await >= 2);
}

#[tokio::test]
async fn unsafe_redis_settings_are_warned_about_at_start_up_and_on_metrics() {
    let redis = TestRedis::start_with(
        ["--maxmemory-policy", "volatile-lru", "--appendonly", "no"]
            .map(String::from)
            .to_vec(),
    );
    let mut receiver = RecoupProcess::serve(&redis, &[]).await;
    let metrics = receiver.metrics().await;
    for setting in ["maxmemory-policy", "appendonly"] {
        let sample = format!("recoup_redis_unsafe_setting{{setting=\"{setting}\"}}");
        assert_eq!(metric_value(&metrics, &sample), 1, "{metrics}");
    }
    receiver.signal("TERM");
    receiver.child.wait().unwrap();
    let logs = receiver.stdout();
    assert!(logs.contains("maxmemory-policy = volatile-lru"), "{logs}");
    assert!(logs.contains("retry budgets silently reset"), "{logs}");
    assert!(logs.contains("appendonly = no"), "{logs}");
}

#[tokio::test]
async fn safe_redis_settings_or_a_disabled_config_command_start_quietly() {
    // The test Redis runs with appendonly yes and no eviction.
    let safe = TestRedis::start();
    let receiver = RecoupProcess::serve(&safe, &[]).await;
    let metrics = receiver.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            "recoup_redis_unsafe_setting{setting=\"appendonly\"}"
        ),
        0,
        "{metrics}"
    );

    // A managed Redis that renamed CONFIG away: recoup starts, and says it could not check.
    let managed = TestRedis::start_with(
        ["--rename-command", "CONFIG", ""]
            .map(String::from)
            .to_vec(),
    );
    let mut receiver = RecoupProcess::serve(&managed, &[]).await;
    assert_eq!(receiver.get("/readyz").await.status, 200);
    receiver.signal("TERM");
    receiver.child.wait().unwrap();
    let logs = receiver.stdout();
    assert!(
        logs.contains("cannot read Redis's maxmemory-policy"),
        "{logs}"
    );
}
