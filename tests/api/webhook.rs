//! `POST /webhooks/stripe`, answer by answer as `docs/api.md#the-webhook-endpoint` documents them.

use std::time::Duration;

use recoup::webhook::signature::sign;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;

const SUBSCRIPTION: &str = "sub_1QaZ3pB7WZ01zgkW5hJx2Lq0";

#[tokio::test]
async fn every_fixture_is_stored_once_and_normalised() {
    let app = TestApp::spawn().await;
    let fixtures = all_fixtures();
    assert!(
        fixtures.len() >= 22,
        "expected 22 fixtures, found {}",
        fixtures.len()
    );
    for (name, body) in &fixtures {
        let answer = app.deliver(body.clone()).await;
        assert_eq!(answer.status, 200, "{name}: {}", answer.text);
        assert_eq!(
            answer.json(),
            serde_json::json!({"received": true}),
            "{name}"
        );
    }
    let inbox = app.redis.inbox().await;
    assert_eq!(inbox.len(), fixtures.len());
    // Both invoice shapes read to the same subscription, charge-free or not.
    let invoices: Vec<_> = inbox
        .iter()
        .filter(|e| e["object"]["object"] == "invoice")
        .collect();
    assert_eq!(invoices.len(), 14);
    for invoice in invoices {
        assert_eq!(invoice["object"]["subscription"], SUBSCRIPTION, "{invoice}");
        assert_eq!(
            invoice["object"]["customer"], "cus_R3cvP0qK8yWm2d",
            "{invoice}"
        );
    }
}

#[tokio::test]
async fn a_redelivery_is_a_duplicate_and_stores_nothing_new() {
    let app = TestApp::spawn().await;
    let body = fixture("invoice.payment_failed");
    assert_eq!(
        app.deliver(body.clone()).await.json()["duplicate"],
        serde_json::Value::Null
    );
    let again = app.deliver(body).await;
    assert_eq!(again.status, 200);
    assert_eq!(
        again.json(),
        serde_json::json!({"received": true, "duplicate": true})
    );
    assert_eq!(app.redis.inbox_len().await, 1);
}

/// Delivers one event 20 times at once, spread over `receivers`, and checks that exactly one
/// answer is fresh and the rest are duplicates.
async fn deliver_20_at_once(receivers: &[&TestApp]) {
    let body = fixture("invoice.payment_failed");
    let deliveries = (0..20).map(|i| receivers[i % receivers.len()].deliver(body.clone()));
    let answers = futures::future::join_all(deliveries).await;
    assert!(answers.iter().all(|a| a.status == 200), "{answers:?}");
    let fresh = answers
        .iter()
        .filter(|a| a.json().get("duplicate").is_none())
        .count();
    assert_eq!(fresh, 1, "{answers:?}");
    assert_eq!(receivers[0].redis.inbox_len().await, 1);
}

#[tokio::test]
async fn the_same_event_sent_20_times_at_once_is_stored_once() {
    let app = TestApp::spawn().await;
    deliver_20_at_once(&[&app]).await;
}

#[tokio::test]
async fn two_receivers_on_one_redis_store_a_concurrent_event_once() {
    let first = TestApp::spawn().await;
    // A second receiver against the same Redis (its own TestRedis goes unused).
    let second = TestApp::spawn_with(&[("REDIS_URL", &first.redis.url())]).await;
    deliver_20_at_once(&[&first, &second]).await;
}

#[tokio::test]
async fn an_event_type_recoup_does_not_act_on_is_ignored_and_not_stored() {
    let app = TestApp::spawn().await;
    let answer = app.deliver(event_body("evt_plan_1", "plan.created")).await;
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.json(),
        serde_json::json!({"received": true, "ignored": true})
    );
    assert_eq!(app.redis.inbox_len().await, 0);
}

/// Sends `body` with `signature` and checks for a 400 whose error mentions `needle`, and that
/// nothing was stored.
async fn assert_refused(app: &TestApp, body: Vec<u8>, signature: Option<String>, needle: &str) {
    let answer = app.post_webhook(body, signature).await;
    assert_eq!(answer.status, 400, "{}", answer.text);
    let error = answer.json()["error"].as_str().unwrap().to_owned();
    assert!(
        error.contains(needle),
        "{error:?} does not mention {needle:?}"
    );
    assert!(
        !error.contains(SECRET) && !error.contains("whsec_"),
        "leaks a secret: {error}"
    );
    assert_eq!(app.redis.inbox_len().await, 0);
}

#[tokio::test]
async fn a_missing_signature_is_refused() {
    let app = TestApp::spawn().await;
    assert_refused(
        &app,
        fixture("invoice.paid"),
        None,
        "missing Stripe-Signature",
    )
    .await;
}

#[tokio::test]
async fn a_malformed_signature_is_refused() {
    let app = TestApp::spawn().await;
    for header in ["", "nonsense", "t=notanumber,v1=00", "v1=abcdef"] {
        assert_refused(
            &app,
            fixture("invoice.paid"),
            Some(header.into()),
            "malformed",
        )
        .await;
    }
}

#[tokio::test]
async fn a_signature_without_v1_is_refused() {
    let app = TestApp::spawn().await;
    let body = fixture("invoice.paid");
    let v0_only = sign(SECRET.as_bytes(), unix_now(), &body).replace("v1=", "v0=");
    assert_refused(&app, body, Some(v0_only), "no v1").await;
}

#[tokio::test]
async fn the_wrong_secret_is_refused() {
    let app = TestApp::spawn().await;
    let body = fixture("invoice.paid");
    let header = sign(b"whsec_someone_else", unix_now(), &body);
    assert_refused(&app, body, Some(header), "no v1 signature matches").await;
}

#[tokio::test]
async fn a_tampered_body_is_refused() {
    let app = TestApp::spawn().await;
    let body = fixture("invoice.payment_failed");
    let header = sign(SECRET.as_bytes(), unix_now(), &body);
    let tampered = String::from_utf8(body).unwrap().replace("4900", "49");
    assert_refused(
        &app,
        tampered.into_bytes(),
        Some(header),
        "no v1 signature matches",
    )
    .await;
}

#[tokio::test]
async fn several_v1_signatures_pass_when_one_matches() {
    let app = TestApp::spawn().await;
    let body = fixture("invoice.paid");
    let now = unix_now();
    let good = sign(SECRET.as_bytes(), now, &body);
    let bad = sign(b"whsec_stale", now, &body);
    let header = format!("{bad},{},v0=deadbeef", good.split_once(',').unwrap().1);
    let answer = app.post_webhook(body, Some(header)).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
}

#[tokio::test]
async fn timestamps_inside_the_tolerance_pass_in_both_directions() {
    let app = TestApp::spawn().await;
    // 5 s inside the 300 s tolerance, so the test does not race the clock.
    for (i, offset) in [-295i64, 295].into_iter().enumerate() {
        let body = event_body(&format!("evt_inside_{i}"), "invoice.paid");
        let header = sign(SECRET.as_bytes(), unix_now() + offset, &body);
        let answer = app.post_webhook(body, Some(header)).await;
        assert_eq!(answer.status, 200, "offset {offset}: {}", answer.text);
    }
    assert_eq!(app.redis.inbox_len().await, 2);
}

#[tokio::test]
async fn timestamps_outside_the_tolerance_fail_in_both_directions() {
    let app = TestApp::spawn().await;
    for offset in [-305i64, 305] {
        let body = fixture("invoice.paid");
        let header = sign(SECRET.as_bytes(), unix_now() + offset, &body);
        assert_refused(&app, body, Some(header), "tolerance").await;
    }
}

#[tokio::test]
async fn the_tolerance_is_configurable() {
    let app = TestApp::spawn_with(&[("RECOUP_WEBHOOK__TOLERANCE_SECS", "30")]).await;
    let body = fixture("invoice.paid");
    let header = sign(SECRET.as_bytes(), unix_now() - 60, &body);
    assert_refused(&app, body, Some(header), "30 s tolerance").await;
}

#[tokio::test]
async fn rotated_secrets_are_all_accepted() {
    let both = format!("{SECRET},{OLD_SECRET}");
    let app = TestApp::spawn_with(&[("STRIPE_WEBHOOK_SECRETS", &both)]).await;
    for (id, secret) in [("evt_new_secret", SECRET), ("evt_old_secret", OLD_SECRET)] {
        let body = event_body(id, "invoice.paid");
        let header = sign(secret.as_bytes(), unix_now(), &body);
        assert_eq!(
            app.post_webhook(body, Some(header)).await.status,
            200,
            "{id}"
        );
    }
    // Once the old secret is removed from the configuration, it no longer passes.
    let app = TestApp::spawn().await;
    let body = event_body("evt_retired", "invoice.paid");
    let header = sign(OLD_SECRET.as_bytes(), unix_now(), &body);
    assert_refused(&app, body, Some(header), "no v1 signature matches").await;
}

#[tokio::test]
async fn a_signed_body_that_is_not_a_stripe_event_is_refused() {
    let app = TestApp::spawn().await;
    for body in [
        &b"not json at all"[..],
        b"[1,2,3]",
        br#"{"type":"invoice.paid","data":{"object":{}}}"#,
        br#"{"id":42,"type":"invoice.paid","data":{"object":{}}}"#,
        br#"{"id":"evt_1","data":{"object":{}}}"#,
        br#"{"id":"evt_1","type":"invoice.paid","data":{"object":"in_1"}}"#,
        br#"{"id":"evt_1","type":"invoice.paid"}"#,
    ] {
        let header = sign(SECRET.as_bytes(), unix_now(), body);
        assert_refused(&app, body.to_vec(), Some(header), "not a Stripe event").await;
    }
}

#[tokio::test]
async fn an_acted_on_event_whose_object_lacks_what_recoup_needs_is_refused() {
    let app = TestApp::spawn().await;
    let body = br#"{"id":"evt_1","type":"invoice.payment_failed","data":{"object":{"id":"in_1","customer":"cus_1"}}}"#;
    let header = sign(SECRET.as_bytes(), unix_now(), body);
    assert_refused(&app, body.to_vec(), Some(header), "amount_due").await;
}

/// A valid signed event padded with trailing whitespace to exactly `len` bytes.
fn padded_event(len: usize) -> Vec<u8> {
    let mut body = event_body("evt_padded", "invoice.paid");
    assert!(body.len() <= len);
    body.resize(len, b' ');
    body
}

#[tokio::test]
async fn a_body_at_the_limit_passes_and_one_byte_more_is_413() {
    let app = TestApp::spawn().await;
    let answer = app.deliver(padded_event(1_048_577)).await;
    assert_eq!(answer.status, 413, "{}", answer.text);
    assert!(answer.json()["error"].is_string(), "{}", answer.text);
    assert_eq!(app.redis.inbox_len().await, 0);
    let answer = app.deliver(padded_event(1_048_576)).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(app.redis.inbox_len().await, 1);
}

#[tokio::test]
async fn the_body_limit_is_configurable_and_applies_without_content_length() {
    let app = TestApp::spawn_with(&[("RECOUP_SERVER__BODY_LIMIT_BYTES", "2048")]).await;
    // A chunked body, so the limit must be enforced while reading, not from a header.
    let body = padded_event(4096);
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let head = format!(
        "POST /webhooks/stripe HTTP/1.1\r\nHost: recoup\r\nConnection: close\r\n\
         Stripe-Signature: t=1,v1=00\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body).await.unwrap();
    stream.write_all(b"\r\n0\r\n\r\n").await.unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert_eq!(app.redis.inbox_len().await, 0);
}

#[tokio::test]
async fn redis_down_means_503_and_recoup_recovers_when_it_returns() {
    let mut app = TestApp::spawn().await;
    let first = event_body("evt_before_outage", "invoice.payment_failed");
    assert_eq!(app.deliver(first).await.status, 200);

    app.redis.stop();
    let during = event_body("evt_during_outage", "invoice.payment_failed");
    // A long outage: Stripe keeps redelivering, well past the connection manager's own retries.
    for _ in 0..4 {
        let answer = app.deliver(during.clone()).await;
        assert_eq!(answer.status, 503, "{}", answer.text);
        assert!(
            answer.json()["error"]
                .as_str()
                .unwrap()
                .contains("deliver again")
        );
        assert_eq!(app.get("/readyz").await.status, 503);
        tokio::time::sleep(Duration::from_millis(700)).await;
    }

    app.redis.restart();
    let readyz = app.url("/readyz");
    let http = app.http.clone();
    wait_until(
        "readyz after Redis restarted",
        Duration::from_secs(15),
        || {
            let (http, readyz) = (http.clone(), readyz.clone());
            async move {
                http.get(&readyz)
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == 200)
            }
        },
    )
    .await;

    // Stripe delivers the refused event again; it was never acknowledged, so it is new now.
    let answer = app.deliver(during).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.json(), serde_json::json!({"received": true}));
    let ids: Vec<_> = app
        .redis
        .inbox()
        .await
        .into_iter()
        .map(|e| e["id"].clone())
        .collect();
    assert_eq!(ids, vec!["evt_before_outage", "evt_during_outage"]);
}

#[tokio::test]
async fn a_stalled_redis_means_503_within_the_bound_and_nothing_twice() {
    let app = TestApp::spawn_with(&[("RECOUP_REDIS__TIMEOUT_MS", "200")]).await;
    // Redis blocks for 5 s; recoup must answer long before that (the client gives up after 3 s).
    let stall = tokio::spawn({
        let url = app.redis.url();
        async move {
            let mut conn = redis::Client::open(url)
                .unwrap()
                .get_multiplexed_async_connection_with_config(
                    &redis::AsyncConnectionConfig::new().set_response_timeout(None),
                )
                .await
                .unwrap();
            let _: () = redis::cmd("DEBUG")
                .arg("SLEEP")
                .arg(5)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
    });
    wait_until("Redis to stall", Duration::from_secs(4), || async {
        !app.redis.answers()
    })
    .await;
    let body = event_body("evt_stalled", "invoice.payment_failed");
    let header = sign(SECRET.as_bytes(), unix_now(), &body);
    let answer = app
        .http
        .post(app.url("/webhooks/stripe"))
        .header("stripe-signature", header)
        .timeout(Duration::from_secs(3))
        .body(body.clone())
        .send()
        .await
        .expect("recoup answers before Redis wakes up");
    assert_eq!(answer.status(), 503);
    stall.await.unwrap();

    // The refused delivery may still have landed once Redis woke up; Stripe's redelivery must then
    // be a duplicate, never a second entry.
    let answer = app.deliver(body).await;
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(app.redis.inbox_len().await, 1);
}

#[tokio::test]
async fn a_redis_cluster_stores_each_event_once() {
    let cluster = TestCluster::start().await;
    let url = cluster.url();
    let app = TestApp::spawn_with(&[("REDIS_URL", &url), ("RECOUP_REDIS__CLUSTER", "true")]).await;
    assert_eq!(app.get("/readyz").await.status, 200);
    for name in [
        "invoice.payment_failed",
        "legacy/invoice.paid",
        "charge.dispute.created",
    ] {
        let answer = app.deliver(fixture(name)).await;
        assert_eq!(
            answer.json(),
            serde_json::json!({"received": true}),
            "{name}"
        );
    }
    let again = app.deliver(fixture("invoice.payment_failed")).await;
    assert_eq!(again.json()["duplicate"], true);
    assert_eq!(cluster.inbox_len().await, 3);
}
