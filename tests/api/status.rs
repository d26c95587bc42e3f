//! Cases as support sees them through `/api/v1`, and the test clock, with receiver and worker in one
//! process as `recoup serve` runs by default.

use recoup::server::Role;
use serde_json::Value;

use crate::helpers::{API_TOKEN, API_TOKENS, Recoup, TestApp, fixture, invoice_event, unix_now};

const INVOICE: &str = "in_1QaZ4rB7WZ01zgkWfT9s8KpM";
const CUSTOMER: &str = "cus_R3cvP0qK8yWm2d";
const SUBSCRIPTION: &str = "sub_1QaZ3pB7WZ01zgkW5hJx2Lq0";

async fn app() -> TestApp {
    TestApp::spawn_as(
        Role::All,
        &[
            ("RECOUP_API_TOKENS", API_TOKENS),
            ("RECOUP_TEST_CLOCK", "1"),
        ],
    )
    .await
}

/// A bundled event as if it had just happened: retries are planned from Stripe's time of the
/// failure, and the fixture's lies weeks back, where its first retry would be due at once.
fn happening_now(name: &str) -> Vec<u8> {
    let mut event: Value = serde_json::from_slice(&fixture(name)).unwrap();
    event["created"] = unix_now().into();
    serde_json::to_vec(&event).unwrap()
}

fn saw(case: &Value, events: usize) -> bool {
    case["timeline"]
        .as_array()
        .is_some_and(|t| t.iter().filter(|e| e["event"].is_string()).count() == events)
}

#[tokio::test]
async fn the_api_answers_only_a_configured_bearer_token() {
    let app = app().await;
    let path = format!("/api/v1/invoices/{INVOICE}");
    let bare = app.get(&path).await;
    assert_eq!(bare.status, 401);
    assert_eq!(bare.headers["www-authenticate"], r#"Bearer realm="recoup""#);
    assert!(
        bare.json()["error"]
            .as_str()
            .unwrap()
            .contains("RECOUP_API_TOKENS")
    );
    for header in [
        "Bearer not-the-token".to_owned(),
        format!("Basic {API_TOKEN}"),
        format!("Bearer {API_TOKEN}x"),
    ] {
        let answer = app
            .http
            .get(app.url(&path))
            .header("authorization", header.as_str())
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 401, "{header}");
    }
    assert_eq!(
        app.api_get(&path).await.status,
        404,
        "a good token gets through"
    );

    let without_tokens = TestApp::spawn_as(Role::All, &[]).await;
    assert_eq!(without_tokens.api_get(&path).await.status, 401);
}

#[tokio::test]
async fn a_failed_invoice_is_a_case_support_can_find_by_invoice_customer_and_subscription() {
    let app = app().await;
    assert_eq!(
        app.deliver(happening_now("invoice.payment_failed"))
            .await
            .status,
        200
    );
    let case = app.case_when(INVOICE, |c| saw(c, 1)).await;
    assert_eq!(case["invoice_id"], INVOICE);
    assert_eq!(case["customer_id"], CUSTOMER);
    assert_eq!(case["subscription_id"], SUBSCRIPTION);
    assert_eq!(case["amount_due"], 4900);
    assert_eq!(case["currency"], "usd");
    assert_eq!(case["state"], "retrying");
    assert!(case["customer_timezone"].is_string());
    assert_eq!(case["attempts"][0]["number"], 1);
    assert_eq!(case["attempts"][0]["outcome"], "failed");
    assert!(case["next_attempt_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(case["nudges"], serde_json::json!([]));
    assert!(case["decision"].is_null());
    assert_eq!(case["timeline"][0]["what"], "invoice.payment_failed");

    for path in [
        format!("/api/v1/customers/{CUSTOMER}"),
        format!("/api/v1/subscriptions/{SUBSCRIPTION}"),
    ] {
        let listed = app.api_get(&path).await;
        assert_eq!(listed.status, 200, "{path}");
        assert_eq!(listed.json()["cases"][0]["invoice_id"], INVOICE, "{path}");
    }
}

#[tokio::test]
async fn the_legacy_invoice_shape_makes_the_same_case() {
    let app = app().await;
    app.deliver(happening_now("legacy/invoice.payment_failed"))
        .await;
    let case = app.case_when(INVOICE, |c| saw(c, 1)).await;
    assert_eq!(case["subscription_id"], SUBSCRIPTION);
    assert_eq!(case["state"], "retrying");
}

#[tokio::test]
async fn unknown_ids_are_404_with_a_reason() {
    let app = app().await;
    for path in [
        "/api/v1/invoices/in_unknown",
        "/api/v1/customers/cus_unknown",
        "/api/v1/subscriptions/sub_unknown",
    ] {
        let answer = app.api_get(path).await;
        assert_eq!(answer.status, 404, "{path}");
        assert!(
            answer.json()["error"]
                .as_str()
                .unwrap()
                .contains("no case for")
        );
    }
}

#[tokio::test]
async fn a_customers_cases_are_listed_newest_first() {
    let app = app().await;
    let now = unix_now() as i64;
    for invoice in ["in_older", "in_newer"] {
        let body = invoice_event(
            "invoice.payment_failed",
            &format!("evt_{invoice}"),
            invoice,
            now,
            1,
        );
        app.deliver(body).await;
        app.case_when(invoice, |c| saw(c, 1)).await;
    }
    let listed = app
        .api_get(&format!("/api/v1/customers/{CUSTOMER}"))
        .await
        .json();
    let ids: Vec<_> = listed["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["invoice_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["in_newer", "in_older"]);
}

/// An event of a story: its type, its `created` offset in seconds, and the invoice's attempt count.
type StoryEvent = (&'static str, i64, u64);

fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![Vec::new()];
    }
    let mut all = Vec::new();
    for rest in permutations(n - 1) {
        for at in 0..=rest.len() {
            let mut order = rest.clone();
            order.insert(at, n - 1);
            all.push(order);
        }
    }
    all
}

/// What delivery order must not change.
fn outcome(case: &Value) -> Value {
    serde_json::json!({
        "state": case["state"], "attempts": case["attempts"], "recovered_by": case["recovered_by"],
        "next_attempt_at": case["next_attempt_at"], "timers": case["timers"],
    })
}

#[tokio::test]
async fn every_delivery_order_of_an_invoices_events_ends_in_the_same_state() {
    let app = app().await;
    let t = unix_now() as i64 - 3_600;
    // (kind, created offset, attempt): failed twice, then paid — and a story where the payment
    // came first, so the late failure must leave the case closed with nothing scheduled.
    let stories: [(&str, &[StoryEvent], &str); 2] = [
        (
            "in_story_recovered",
            &[
                ("invoice.payment_failed", 0, 1),
                ("invoice.payment_failed", 100, 2),
                ("invoice.paid", 200, 2),
                ("invoice.payment_succeeded", 201, 2),
            ],
            "recovered",
        ),
        (
            "in_story_paid_first",
            &[
                ("invoice.paid", 0, 1),
                ("invoice.payment_succeeded", 1, 1),
                ("invoice.payment_failed", 100, 1),
            ],
            "closed",
        ),
    ];
    for (story, events, final_state) in stories {
        let orders = permutations(events.len());
        let deliveries = orders.iter().enumerate().map(|(o, order)| {
            let app = &app;
            async move {
                let invoice = format!("{story}_{o}");
                // Each order is delivered as written, with the first event delivered once more at
                // the end, as Stripe's retries would.
                for &i in order.iter().chain([&order[0]]) {
                    let (kind, offset, attempt) = events[i];
                    let body = invoice_event(
                        kind,
                        &format!("evt_{invoice}_{i}"),
                        &invoice,
                        t + offset,
                        attempt,
                    );
                    assert_eq!(app.deliver(body).await.status, 200);
                }
                outcome(&app.case_when(&invoice, |c| saw(c, events.len())).await)
            }
        });
        let outcomes = futures::future::join_all(deliveries).await;
        assert_eq!(outcomes[0]["state"], final_state, "{story}");
        for (o, seen) in outcomes.iter().enumerate() {
            assert_eq!(seen, &outcomes[0], "{story}, order {:?}", orders[o]);
        }
        assert!(
            outcomes[0]["next_attempt_at"].is_null(),
            "{story}: nothing scheduled"
        );
    }
}

#[tokio::test]
async fn advancing_the_test_clock_fires_what_came_due_at_once() {
    let app = app().await;
    app.deliver(happening_now("invoice.payment_failed")).await;
    let opened = app.case_when(INVOICE, |c| saw(c, 1)).await;
    assert_eq!(opened["timers"].as_array().unwrap().len(), 1);

    let hour = app
        .api_post("/api/v1/clock/advance", r#"{"seconds":3600}"#)
        .await;
    assert_eq!(hour.status, 200, "{}", hour.text);
    assert_eq!(hour.json()["offset_seconds"], 3600);
    let after_an_hour = app
        .api_get(&format!("/api/v1/invoices/{INVOICE}"))
        .await
        .json();
    assert_eq!(
        after_an_hour["timers"], opened["timers"],
        "nothing was due yet"
    );

    // The first retry is three days out, moved into the customer's daytime: four days pass it.
    let days = app
        .api_post("/api/v1/clock/advance", r#"{"seconds":345600}"#)
        .await;
    assert_eq!(days.status, 200, "{}", days.text);
    let moved = days.json();
    assert_eq!(moved["offset_seconds"], 349_200);
    let now: jiff::Timestamp = moved["now"].as_str().unwrap().parse().unwrap();
    let due: jiff::Timestamp = opened["next_attempt_at"].as_str().unwrap().parse().unwrap();
    assert!(now >= due);
    // Stripe (the fake) takes the charge, and the case says so in the same save.
    let fired = app
        .case_when(INVOICE, |c| c["timers"] == serde_json::json!([]))
        .await;
    let story: Vec<&str> = fired["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["what"].as_str().unwrap())
        .collect();
    assert_eq!(story[1..], ["retry due", "retry succeeded"]);
    assert_eq!(fired["state"], "recovered");
}

#[tokio::test]
async fn a_bad_clock_move_is_refused_and_moves_nothing() {
    let app = app().await;
    for body in [
        r#"{"seconds":-60}"#,
        r#"{"seconds":0}"#,
        r#"{"secs":60}"#,
        "60",
        r#"{"seconds":"1d"}"#,
        r#"{"seconds":34560001}"#,
        r#"{"seconds":300000000000}"#,
        "[60]",
        "null",
    ] {
        let answer = app.api_post("/api/v1/clock/advance", body).await;
        assert_eq!(answer.status, 400, "{body}: {}", answer.text);
        assert!(answer.json()["error"].is_string());
    }
    let still = app
        .api_post("/api/v1/clock/advance", r#"{"seconds":1}"#)
        .await;
    assert_eq!(
        still.json()["offset_seconds"],
        1,
        "the refused moves moved nothing"
    );
    let most = app
        .api_post("/api/v1/clock/advance", r#"{"seconds":34560000}"#)
        .await;
    assert_eq!(most.status, 200, "400 days is allowed: {}", most.text);

    let off = TestApp::spawn_as(Role::All, &[("RECOUP_API_TOKENS", API_TOKENS)]).await;
    let answer = off
        .api_post("/api/v1/clock/advance", r#"{"seconds":60}"#)
        .await;
    assert_eq!(answer.status, 404);
    assert!(
        answer.json()["error"]
            .as_str()
            .unwrap()
            .contains("RECOUP_TEST_CLOCK")
    );
}

/// A bundled event (any type) as if it had just happened.
fn event_now(kind: &str, edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let mut event: Value = serde_json::from_slice(&fixture(kind)).unwrap();
    event["created"] = unix_now().into();
    edit(&mut event);
    serde_json::to_vec(&event).unwrap()
}

#[tokio::test]
async fn a_new_card_brings_the_retry_to_within_minutes() {
    let app = app().await;
    app.deliver(happening_now("invoice.payment_failed")).await;
    let opened = app.case_when(INVOICE, |c| saw(c, 1)).await;
    let planned: jiff::Timestamp = opened["next_attempt_at"].as_str().unwrap().parse().unwrap();

    // A second after the failure: a card that came with it would have been the one that failed.
    let attached = event_now("payment_method.attached", |event| {
        event["created"] = (unix_now() + 1).into();
    });
    assert_eq!(app.deliver(attached).await.status, 200);
    let case = app.case_when(INVOICE, |c| saw(c, 2)).await;
    let soon: jiff::Timestamp = case["next_attempt_at"].as_str().unwrap().parse().unwrap();
    assert!(soon < planned, "{soon} is not before {planned}");
    assert!(soon <= jiff::Timestamp::now() + jiff::SignedDuration::from_mins(6));
    let entry = case["timeline"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(entry["what"], "payment_method.attached");
    assert!(
        entry["detail"]
            .as_str()
            .unwrap()
            .contains("new payment method pm_1QbB9kB7WZ01zgkWnEw2Card arrived after attempt 1"),
        "{entry}"
    );
}

#[tokio::test]
async fn while_stripe_retries_the_invoice_recoup_schedules_nothing_and_says_why() {
    let app = app().await;
    let stripe_retrying = event_now("invoice.payment_failed", |event| {
        event["data"]["object"]["next_payment_attempt"] = (unix_now() + 86_400).into();
    });
    assert_eq!(app.deliver(stripe_retrying).await.status, 200);
    let case = app.case_when(INVOICE, |c| saw(c, 1)).await;
    assert_eq!(case["timers"], serde_json::json!([]));
    assert!(case["next_attempt_at"].is_null());
    let detail = case["timeline"][0]["detail"].as_str().unwrap();
    assert!(
        detail.contains("no retry: Stripe will retry this invoice itself"),
        "{detail}"
    );
}

#[tokio::test]
async fn a_case_whose_dunning_is_over_is_forgotten_with_its_index_entries_after_the_retention() {
    let app = TestApp::spawn_as(
        Role::All,
        &[
            ("RECOUP_API_TOKENS", API_TOKENS),
            ("RECOUP_REDIS__CASE_RETENTION_SECS", "3"),
            ("RECOUP_WORKER__SCAN_INTERVAL_SECS", "1"),
        ],
    )
    .await;
    let failed = invoice_event(
        "invoice.payment_failed",
        "evt_f_keep",
        INVOICE,
        unix_now(),
        1,
    );
    app.deliver(failed).await;
    let open = app.case_when(INVOICE, |c| c["state"] == "retrying").await;
    // Still in dunning: kept for good, whatever the retention.
    let (_, stdout) = status(&app, INVOICE);
    assert!(!stdout.contains("keeps this case until"), "{stdout}");
    assert!(open["next_attempt_at"].is_string());

    let paid = invoice_event("invoice.paid", "evt_p_keep", INVOICE, unix_now() + 1, 1);
    app.deliver(paid).await;
    app.case_when(INVOICE, |c| c["state"] == "recovered").await;
    let (code, stdout) = status(&app, INVOICE);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("keeps this case until"), "{stdout}");

    // Past the retention, Redis forgets the case and the sweep its customer and subscription entries.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let gone = app
            .api_get(&format!("/api/v1/invoices/{INVOICE}"))
            .await
            .status
            == 404
            && app
                .api_get(&format!("/api/v1/customers/{CUSTOMER}"))
                .await
                .status
                == 404;
        let indexed: usize = redis::cmd("ZCARD")
            .arg(recoup::store::redis::index_key(CUSTOMER))
            .query_async(&mut app.redis.conn().await)
            .await
            .unwrap();
        if gone && indexed == 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never forgotten ({indexed} in the index)"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let sub_indexed: usize = redis::cmd("ZCARD")
        .arg(recoup::store::redis::index_key(SUBSCRIPTION))
        .query_async(&mut app.redis.conn().await)
        .await
        .unwrap();
    assert_eq!(sub_indexed, 0);
}

/// `recoup status ID` against the app's Redis: exit code and stdout.
fn status(app: &TestApp, id: &str) -> (Option<i32>, String) {
    let output = crate::helpers::recoup_command()
        .args(["status", id])
        .env("REDIS_URL", app.redis.url())
        .output()
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr),
    )
}
