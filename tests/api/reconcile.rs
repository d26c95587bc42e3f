//! Reconciling Stripe's open invoices with recoup's cases: `recoup reconcile` (the real binary) and
//! a worker's own, through the fake Stripe's invoice list.

use recoup::server::Role;

use crate::backfill::recoup_run;
use crate::fake_stripe::{Decline, Invoice};
use crate::helpers::*;

const CUSTOMER: &str = "cus_R3cvP0qK8yWm2d";

fn app_env() -> [(&'static str, &'static str); 3] {
    [
        ("RECOUP_API_TOKENS", API_TOKENS),
        ("RECOUP_TEST_CLOCK", "1"),
        ("RECOUP_WORKER__BACKFILL_SECS", "0"),
    ]
}

/// The line of `stdout` about `invoice`.
fn line<'a>(stdout: &'a str, invoice: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.contains(&format!(" {invoice}:")))
        .unwrap_or_else(|| panic!("nothing about {invoice} in {stdout}"))
}

#[tokio::test]
async fn reconcile_opens_a_case_older_than_the_events_and_settles_one_paid_without_an_event() {
    let app = TestApp::spawn_as(Role::All, &app_env()).await;
    // Failed 40 days ago, beyond what Stripe's events API still lists: only the invoice says so.
    let old = "in_failed_long_ago";
    let mut stripe_old = Invoice::failed(CUSTOMER, Decline::visa("do_not_honor"));
    stripe_old.attempt_count = 2;
    app.stripe.add_invoice(old, stripe_old);
    // Failed, then paid by the customer; the invoice.paid webhook was lost.
    let paid = "in_paid_quietly";
    app.fail(
        paid,
        Invoice::failed(CUSTOMER, Decline::visa("insufficient_funds")),
    )
    .await;
    app.stripe.set_invoice_status(paid, "paid");
    // Failed, seen, still open: nothing to do.
    let seen = "in_seen_open";
    app.fail(
        seen,
        Invoice::failed(CUSTOMER, Decline::visa("insufficient_funds")),
    )
    .await;
    // Open and never attempted: not a failure.
    app.stripe.add_invoice(
        "in_never_tried",
        Invoice {
            attempt_count: 0,
            last_decline: None,
            ..Invoice::failed(CUSTOMER, Decline::visa("insufficient_funds"))
        },
    );
    let inbox = app.redis.inbox_len().await;

    let (code, stdout, stderr) =
        recoup_run(&["reconcile", "--dry-run"], &app.redis, &app.stripe, &[]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(line(&stdout, old).starts_with("would open"), "{stdout}");
    assert!(
        line(&stdout, old).contains("after 2 attempt(s)"),
        "{stdout}"
    );
    assert!(line(&stdout, paid).starts_with("would settle"), "{stdout}");
    assert!(line(&stdout, paid).contains("paid"), "{stdout}");
    assert!(
        !stdout.contains(seen) && !stdout.contains("in_never_tried"),
        "{stdout}"
    );
    assert!(
        stdout.contains("2 difference(s); dry run: nothing changed"),
        "{stdout}"
    );
    assert!(
        stdout.contains("3 open invoice(s) it collects automatically, 2 of them failed; recoup has 2 open case(s)"),
        "{stdout}"
    );
    assert_eq!(
        app.redis.inbox_len().await,
        inbox,
        "a dry run stores nothing"
    );
    assert_eq!(
        app.api_get(&format!("/api/v1/invoices/{old}")).await.status,
        404
    );
    assert_eq!(
        app.api_get(&format!("/api/v1/invoices/{paid}"))
            .await
            .json()["state"],
        "retrying"
    );

    let (code, stdout, stderr) = recoup_run(&["reconcile"], &app.redis, &app.stripe, &[]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(line(&stdout, old).starts_with("opened"), "{stdout}");
    assert!(line(&stdout, paid).starts_with("settled"), "{stdout}");
    // Opened as a failure opens it: the decline read from Stripe, the attempt Stripe made.
    let opened = app
        .case_when(old, |c| c["decline"]["code"] == "do_not_honor")
        .await;
    assert_eq!(opened["state"], "retrying", "{opened}");
    assert_eq!(opened["attempts"][0]["number"], 2, "{opened}");
    assert_eq!(opened["attempts"][0]["outcome"], "failed", "{opened}");
    // Settled as invoice.paid would have: by Stripe's time of the payment, after the failure.
    let settled = app.case_when(paid, |c| c["state"] == "recovered").await;
    assert_eq!(
        settled["next_attempt_at"],
        serde_json::Value::Null,
        "{settled}"
    );
    assert!(app.stripe.pay_requests(paid).is_empty());

    // Found again, nothing is different any more; and the same difference is the same event.
    let (code, stdout, _) = recoup_run(&["reconcile"], &app.redis, &app.stripe, &[]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("no differences"), "{stdout}");
    let timeline = opened["timeline"].to_string();
    assert!(
        timeline.contains("reconcile:in_failed_long_ago:failed-2"),
        "{timeline}"
    );
}

#[tokio::test]
async fn a_worker_reconciles_by_itself_once_a_period() {
    let mut env = app_env().to_vec();
    env.push(("RECOUP_WORKER__RECONCILE_SECS", "1"));
    let app = TestApp::spawn_as(Role::All, &env).await;
    let invoice = "in_found_by_the_worker";
    app.stripe.add_invoice(
        invoice,
        Invoice::failed(CUSTOMER, Decline::visa("insufficient_funds")),
    );
    let case = app
        .case_when(invoice, |c| c["decline"]["class"] == "soft")
        .await;
    assert_eq!(case["state"], "retrying", "{case}");
    assert!(!app.stripe.list_requests("/v1/invoices").is_empty());
}

#[tokio::test]
async fn reconcile_exits_1_when_stripe_refuses_the_key() {
    let redis = TestRedis::start();
    let stripe = crate::fake_stripe::FakeStripe::start();
    let key = [("STRIPE_API_KEY", "sk_test_revoked_4eC39HqLyjWDarjtT1zdp7dc")];
    let (code, stdout, stderr) = recoup_run(&["reconcile"], &redis, &stripe, &key);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(
        stderr.contains("Stripe refused the API key (401)"),
        "{stderr}"
    );
    let (code, _, stderr) = recoup_run(&["reconcile"], &redis, &stripe, &[("STRIPE_API_KEY", "")]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("STRIPE_API_KEY is not set"), "{stderr}");
}
