//! Missed webhooks, caught up from Stripe's events API: `recoup backfill` (the real binary) and a
//! worker's own backfill at start, through the fake Stripe's events list.

use std::time::Duration;

use recoup::server::Role;
use recoup::store::{Inbox, RedisStore};
use serde_json::Value;

use crate::fake_stripe::{Decline, FakeStripe, Invoice, Request};
use crate::helpers::*;

const CUSTOMER: &str = "cus_R3cvP0qK8yWm2d";
const CARDS: [&str; 6] = [
    "fp_day_1", "fp_day_2", "fp_day_3", "fp_day_4", "fp_day_5", "fp_day_6",
];
const HOUR: i64 = 3600;
const DAY: i64 = 86_400;

/// Runs `recoup <args>` against `redis` and `stripe`, with `env` on top; (exit code, stdout, stderr).
pub fn recoup_run(
    args: &[&str],
    redis: &TestRedis,
    stripe: &FakeStripe,
    env: &[(&str, &str)],
) -> (Option<i32>, String, String) {
    output_of(
        recoup_command()
            .args(args)
            .envs(base_env(redis))
            .envs(stripe.env())
            .envs(env.iter().copied()),
    )
}

/// Stripe's `invoice.payment_failed` of an invoice's first attempt, `created` then, in the current
/// invoice shape or (`legacy`) the pre-2025 one, naming the payment intent the fake shows the
/// decline on.
fn failed_event(invoice_id: &str, created: i64, legacy: bool) -> Vec<u8> {
    let fixture = if legacy {
        "legacy/invoice.payment_failed"
    } else {
        "invoice.payment_failed"
    };
    let id = format!("evt_failed_{invoice_id}");
    let mut event: Value =
        serde_json::from_slice(&invoice_event(fixture, &id, invoice_id, created, 1)).unwrap();
    let object = &mut event["data"]["object"];
    if legacy {
        object["payment_intent"] = format!("pi_for_{invoice_id}").into();
    } else {
        let payment = &mut object["payments"]["data"][0];
        payment["invoice"] = invoice_id.into();
        payment["payment"]["payment_intent"] = format!("pi_for_{invoice_id}").into();
    }
    serde_json::to_vec(&event).unwrap()
}

/// `stdout`'s count on the line starting `label:`.
fn count(stdout: &str, label: &str) -> usize {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(label)?.strip_prefix(": "))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {label:?} in {stdout}"))
}

/// The `created[gte]` an events list call asked for.
fn since(request: &Request) -> i64 {
    let query = request.query.as_deref().unwrap_or_default();
    query
        .split('&')
        .find_map(|p| p.strip_prefix("created%5Bgte%5D="))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no created[gte] in {query}"))
}

fn times(case: &Value, what: &str) -> usize {
    case["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["what"] == what)
        .count()
}

#[tokio::test]
async fn after_a_day_of_dropped_webhooks_backfill_opens_every_case_and_applies_nothing_twice() {
    // A worker that does not backfill by itself: here the operator runs `recoup backfill`.
    let app = TestApp::spawn_as(
        Role::All,
        &[
            ("RECOUP_API_TOKENS", API_TOKENS),
            ("RECOUP_TEST_CLOCK", "1"),
            ("RECOUP_WORKER__BACKFILL_SECS", "0"),
        ],
    )
    .await;
    let now = unix_now();
    // Six invoices failed over the last day, two in the pre-2025 shape; Stripe sent every event,
    // and only two webhooks got through.
    let failed: Vec<String> = (1..=6).map(|n| format!("in_dropped_{n}")).collect();
    for (n, invoice) in failed.iter().enumerate() {
        let created = now - 23 * HOUR + n as i64 * 4 * HOUR;
        let event = failed_event(invoice, created, n % 3 == 1);
        // A card each, so no card network's budget holds a retry back.
        let decline = Decline {
            fingerprint: CARDS[n],
            ..Decline::visa("insufficient_funds")
        };
        app.stripe
            .add_invoice(invoice, Invoice::failed(CUSTOMER, decline));
        app.stripe.add_event(&event);
        if n < 2 {
            assert_eq!(app.deliver(event).await.status, 200);
        }
    }
    // One more failed and was then paid by the customer, both webhooks lost.
    let paid = "in_dropped_paid";
    app.stripe.add_invoice(
        paid,
        Invoice::failed(CUSTOMER, Decline::visa("insufficient_funds")),
    );
    app.stripe.set_invoice_status(paid, "paid");
    app.stripe
        .add_event(&failed_event(paid, now - 20 * HOUR, false));
    let paid_event = invoice_event("invoice.paid", "evt_paid_late", paid, now - 10 * HOUR, 1);
    app.stripe.add_event(&paid_event);
    // An event of a type recoup does not act on is not even asked for.
    app.stripe
        .add_event(&event_body("evt_plan", "plan.created"));
    for delivered in &failed[..2] {
        app.case_when(delivered, |c| c["decline"]["class"] == "soft")
            .await;
    }

    let (code, stdout, stderr) = recoup_run(&["backfill"], &app.redis, &app.stripe, &[]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert_eq!(count(&stdout, "new"), 6, "{stdout}");
    assert_eq!(count(&stdout, "already known"), 2, "{stdout}");
    assert_eq!(count(&stdout, "ignored"), 0, "{stdout}");
    let asked = app.stripe.list_requests("/v1/events");
    let query = asked[0].query.clone().unwrap();
    assert_eq!(query.matches("types%5B%5D=").count(), 15, "{query}");
    assert!(query.contains("limit=100"), "{query}");
    assert!(
        (since(&asked[0]) - (now - 3 * DAY)).abs() < 60,
        "72h back by default: {query}"
    );

    // Every case exists, its decline read from Stripe as a delivered failure's would be.
    for invoice in &failed {
        let case = app
            .case_when(invoice, |c| c["decline"]["class"] == "soft")
            .await;
        assert_eq!(case["state"], "retrying", "{case}");
        assert_eq!(times(&case, "invoice.payment_failed"), 1, "{case}");
    }
    // Paid after it failed, by someone other than recoup.
    let recovered = app.case_when(paid, |c| c["state"] == "recovered").await;
    assert_eq!(recovered["recovered_by"], "unknown", "{recovered}");

    // Running it again finds nothing new, and changes nothing.
    let (code, stdout, _) = recoup_run(&["backfill"], &app.redis, &app.stripe, &[]);
    assert_eq!(code, Some(0), "{stdout}");
    assert_eq!(count(&stdout, "new"), 0, "{stdout}");
    assert_eq!(count(&stdout, "already known"), 8, "{stdout}");

    // And the cases proceed: each is retried once, on its payday, and recovered.
    app.advance_clock(20 * DAY).await;
    for invoice in &failed {
        let case = app.case_when(invoice, |c| c["state"] == "recovered").await;
        assert_eq!(case["recovered_by"], "retry", "{case}");
        assert_eq!(times(&case, "invoice.payment_failed"), 1, "{case}");
    }
    let charges = app.stripe.charges();
    for invoice in &failed {
        let made = charges.iter().filter(|c| &c.invoice_id == invoice).count();
        assert_eq!(made, 1, "{invoice}: {charges:?}");
    }
    assert!(
        app.stripe.pay_requests(paid).is_empty(),
        "a paid invoice is never charged"
    );
}

#[tokio::test]
async fn a_worker_restarted_after_the_webhooks_broke_backfills_by_itself() {
    let redis = TestRedis::start();
    let stripe = FakeStripe::start();
    let base = format!("http://{}", stripe.addr);
    let env = [
        ("STRIPE_API_BASE", base.as_str()),
        ("RECOUP_API_TOKENS", API_TOKENS),
    ];
    let store = RedisStore::connect(&redis_settings(&redis)).await.unwrap();
    let mut first = RecoupProcess::serve_as(&redis, "all", &env).await;
    // Its own backfill at start found nothing, and marked how far it read.
    wait_until("the first worker's backfill", SETTLE, || async {
        store.arrivals().await.unwrap().backfilled.is_some()
    })
    .await;
    assert_eq!(stripe.list_requests("/v1/events").len(), 1);

    // Then the webhooks broke: three failures that Stripe could not deliver.
    let now = unix_now();
    let missed: Vec<String> = (1..=3).map(|n| format!("in_restart_{n}")).collect();
    for (n, invoice) in missed.iter().enumerate() {
        stripe.add_invoice(
            invoice,
            Invoice::failed(CUSTOMER, Decline::visa("insufficient_funds")),
        );
        stripe.add_event(&failed_event(invoice, now - 30 + n as i64, n == 0));
    }
    first.signal("TERM");
    first.child.wait().unwrap();

    let second = RecoupProcess::serve_as(&redis, "all", &env).await;
    for invoice in &missed {
        let case = second
            .case_when(invoice, |c| c["decline"]["class"] == "soft")
            .await;
        assert_eq!(case["state"], "retrying", "{case}");
    }
    // It read on from where the first one's backfill ended, less the overlap.
    let asked = stripe.list_requests("/v1/events");
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert!((since(&asked[0]) - (now - 3 * DAY)).abs() < 60, "{asked:?}");
    assert!((since(&asked[1]) - (now - 600)).abs() < 60, "{asked:?}");

    // The health signal: the newest event came by backfill, none by webhook.
    let metrics = second.metrics().await;
    assert_eq!(
        metric_value(&metrics, r#"recoup_backfilled_events_total{outcome="new"}"#),
        3,
        "{metrics}"
    );
    assert_eq!(
        metric_value(
            &metrics,
            r#"recoup_newest_event_timestamp_seconds{source="backfill"}"#
        ),
        (now - 28) as u64,
        "{metrics}"
    );
    assert!(!metrics.contains(r#"source="webhook""#), "{metrics}");
    let signed_in = crate::page::session_at(second.url("").trim_end_matches('/'), API_TOKEN).await;
    let request = second
        .http()
        .get(second.url("/"))
        .header("cookie", signed_in);
    let page = Answer::from(request.send().await.unwrap()).await.text;
    assert!(
        page.contains("Newest event by webhook: none yet; by backfill: "),
        "{page}"
    );
    assert!(page.contains("check the webhook endpoint"), "{page}");
}

#[tokio::test]
async fn a_rate_limited_events_list_slows_the_backfill_and_loses_nothing() {
    let redis = TestRedis::start();
    let stripe = FakeStripe::start();
    let now = unix_now();
    for n in 0..250 {
        let id = format!("evt_busy_{n:03}");
        let invoice = format!("in_busy_{n:03}");
        stripe.add_event(&invoice_event("invoice.paid", &id, &invoice, now - n, 1));
    }
    // The second page is refused twice as too many requests.
    stripe.fail_next_lists(&[0, 429, 429]);
    let backoff = [("RECOUP_STRIPE__BACKOFF_MS", "300")];
    let (code, stdout, stderr) =
        recoup_run(&["backfill", "--since", "1h"], &redis, &stripe, &backoff);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert_eq!(count(&stdout, "new"), 250, "{stdout}");
    assert_eq!(redis.inbox_len().await, 250);
    let asked = stripe.list_requests("/v1/events");
    assert_eq!(asked.len(), 5, "three pages and two refusals: {asked:?}");
    for pair in asked[1..4].windows(2) {
        assert_eq!(
            pair[0].query, pair[1].query,
            "the refused page is asked again"
        );
        let pause = pair[1].at.duration_since(pair[0].at);
        assert!(
            pause >= Duration::from_millis(300),
            "no back-off: {pause:?}"
        );
    }

    // Refused throughout: the run stops with the reason, keeps what it stored, and the next run
    // finds the rest.
    let redis = TestRedis::start();
    let mut faults = vec![0];
    faults.extend([429; 11]);
    stripe.fail_next_lists(&faults);
    let quick = [("RECOUP_STRIPE__BACKOFF_MS", "1")];
    let (code, stdout, stderr) =
        recoup_run(&["backfill", "--since", "1h"], &redis, &stripe, &quick);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("429"), "{stderr}");
    assert!(stderr.contains("100 new"), "{stderr}");
    let store = RedisStore::connect(&redis_settings(&redis)).await.unwrap();
    assert_eq!(store.arrivals().await.unwrap().backfilled, None);
    let (code, stdout, _) = recoup_run(&["backfill", "--since", "1h"], &redis, &stripe, &quick);
    assert_eq!(code, Some(0), "{stdout}");
    assert_eq!(count(&stdout, "new"), 150, "{stdout}");
    assert_eq!(count(&stdout, "already known"), 100, "{stdout}");
    assert_eq!(redis.inbox_len().await, 250);
}

#[tokio::test]
async fn backfill_exits_1_with_the_reason_for_a_refused_key_or_a_bad_since() {
    let redis = TestRedis::start();
    let stripe = FakeStripe::start();
    let revoked = "sk_test_revoked_4eC39HqLyjWDarjtT1zdp7dc";
    for (key, status) in [(revoked, "401"), ("rk_test_readonly_no_events_51Hx", "403")] {
        let (code, stdout, stderr) =
            recoup_run(&["backfill"], &redis, &stripe, &[("STRIPE_API_KEY", key)]);
        assert_eq!(code, Some(1), "{stdout}{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(
            stderr.contains(&format!("Stripe refused the API key ({status})")),
            "{stderr}"
        );
        assert!(stderr.contains("STRIPE_API_KEY"), "{stderr}");
        assert!(
            !stderr.contains(key),
            "the key reached the output: {stderr}"
        );
    }
    assert_eq!(
        stripe.list_requests("/v1/events").len(),
        2,
        "a refusal is not asked again"
    );
    for since in ["31d", "0s", "soon"] {
        let (code, _, stderr) = recoup_run(&["backfill", "--since", since], &redis, &stripe, &[]);
        assert_eq!(code, Some(1), "{since}: {stderr}");
        assert!(stderr.contains("--since"), "{stderr}");
    }
    let (code, _, stderr) = recoup_run(&["backfill", "--since", "30d"], &redis, &stripe, &[]);
    assert_eq!(code, Some(0), "30 days is allowed: {stderr}");
}
