//! Retries through Stripe, end to end: signed webhooks into the receiver, the worker on the test
//! clock, and charges through async-stripe to the fake Stripe — which shows what was charged, with
//! which idempotency key, and how often.

use std::time::Duration;

use recoup::processor::stripe::api_version;
use recoup::server::Role;
use serde_json::Value;

use crate::fake_stripe::{Customer, Decline, FakeStripe, Invoice, Outcome, Subscription};
use crate::helpers::{
    API_TOKENS, Recoup, RecoupProcess, SETTLE, TestApp, TestRedis, failure_of, invoice_event,
    unix_now, wait_until,
};

const CUSTOMER: &str = "cus_R3cvP0qK8yWm2d";
const DAY: i64 = 86_400;

async fn app() -> TestApp {
    TestApp::spawn_as(Role::All, &clock_env()).await
}

fn clock_env() -> [(&'static str, &'static str); 2] {
    [
        ("RECOUP_API_TOKENS", API_TOKENS),
        ("RECOUP_TEST_CLOCK", "1"),
    ]
}

/// The app with a policy file of its own (kept in the returned directory).
async fn app_with_policy(policy: &str) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, policy).unwrap();
    let mut env = clock_env().to_vec();
    env.push(("RECOUP_POLICY", path.to_str().unwrap()));
    (TestApp::spawn_as(Role::All, &env).await, dir)
}

/// A Redis, a fake Stripe showing `invoice` failed, and the environment of recoup processes on the
/// test clock against both, with leases of `lease_secs`.
fn processes_env(
    invoice: &str,
    lease_secs: &str,
) -> (TestRedis, FakeStripe, Vec<(String, String)>) {
    let redis = TestRedis::start();
    let stripe = FakeStripe::start();
    stripe.add_invoice(
        invoice,
        Invoice::failed(CUSTOMER, Decline::visa("generic_decline")),
    );
    let mut env: Vec<(String, String)> = clock_env()
        .iter()
        .chain(&[("RECOUP_WORKER__LEASE_SECS", lease_secs)])
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    env.extend(stripe.env().map(|(k, v)| (k.to_owned(), v)));
    (redis, stripe, env)
}

fn key(invoice_id: &str, attempt: u32) -> Option<String> {
    Some(recoup::processor::idempotency_key(invoice_id, attempt))
}

fn attempts(case: &Value) -> Vec<(u64, String, Option<String>)> {
    case["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["number"].as_u64().unwrap(),
                a["outcome"].as_str().unwrap().to_owned(),
                a["decline_code"].as_str().map(str::to_owned),
            )
        })
        .collect()
}

#[tokio::test]
async fn insufficient_funds_waits_for_the_day_the_customers_earlier_failures_were_paid_on() {
    let app = app().await;
    app.stripe
        .add_customer(CUSTOMER, Customer::dana((12, 2030)));
    // Two earlier invoices, each paid after a failed attempt on a 28th (noon in Chicago), and one
    // paid at its first attempt on the 3rd, which says only when it was billed.
    let at = |month: i8, day: i8| {
        jiff::civil::date(2026, month, day)
            .at(12, 0, 0, 0)
            .in_tz("America/Chicago")
            .unwrap()
            .timestamp()
            .as_second()
    };
    for (id, paid_at, attempts) in [
        ("in_paid_late_1", at(9, 28), 2),
        ("in_paid_late_2", at(10, 28), 3),
        ("in_paid_on_time", at(11, 3), 1),
    ] {
        let mut paid = Invoice::failed(CUSTOMER, Decline::visa("insufficient_funds"));
        paid.status = "paid";
        paid.status_changed_at = Some(paid_at);
        paid.attempt_count = attempts;
        app.stripe.add_invoice(id, paid);
    }
    let planned = app
        .fail(
            "in_short_again",
            Invoice::failed(CUSTOMER, Decline::visa("insufficient_funds")),
        )
        .await;
    assert_eq!(planned["paydays"], serde_json::json!([28]), "{planned}");
    let next: jiff::Timestamp = planned["next_attempt_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let local = next.in_tz("America/Chicago").unwrap();
    assert_eq!(local.day(), 28, "{local}");
    let story = planned["timeline"].to_string();
    assert!(
        story.contains(
            "on the customer's next payday (the days their earlier invoices were paid on)"
        ),
        "{story}"
    );
    assert!(!app.stripe.list_requests("/v1/invoices").is_empty());
}

#[tokio::test]
async fn a_soft_decline_waits_for_payday_then_is_retried_and_recovered() {
    let app = app().await;
    let invoice = "in_soft_1";
    let planned = app
        .fail(
            invoice,
            Invoice::failed(CUSTOMER, Decline::visa("insufficient_funds")),
        )
        .await;
    assert_eq!(planned["decline"]["class"], "soft");
    assert_eq!(planned["state"], "retrying");
    assert_eq!(planned["decline"]["code"], "insufficient_funds");
    assert!(planned["next_attempt_at"].is_string(), "{planned}");
    let story = planned["timeline"].to_string();
    assert!(story.contains("on the next payday"), "{story}");
    assert!(
        app.stripe.pay_requests(invoice).is_empty(),
        "nothing is charged before its time"
    );

    // The next 1st or 15th is at most 16 days after the 3-day gap.
    app.advance_clock(20 * DAY).await;
    let recovered = app.case_when(invoice, |c| c["state"] == "recovered").await;
    assert_eq!(recovered["recovered_by"], "retry");
    assert_eq!(
        attempts(&recovered),
        vec![
            (1, "failed".into(), Some("insufficient_funds".into())),
            (2, "succeeded".into(), None)
        ]
    );
    assert_eq!(recovered["next_attempt_at"], Value::Null);
    let charges = app.stripe.charges();
    assert_eq!(charges.len(), 1, "{charges:?}");
    assert_eq!(charges[0].idempotency_key, key(invoice, 2));

    // /metrics counts the recovery (the recorder is shared by the tests in this process, so only
    // the series is checked).
    let metrics = app.get("/metrics").await.text;
    for series in [
        "recoup_cases_opened_total{segment=\"\"}",
        "recoup_cases_recovered_total{currency=\"usd\",by=\"retry\"}",
        "recoup_recovered_amount_total{currency=\"usd\"}",
        "recoup_time_to_recover_seconds_bucket",
        "recoup_attempts_per_recovery_bucket",
    ] {
        assert!(metrics.contains(series), "{series} in {metrics}");
    }

    // The invoice was read before it was paid, and every call spoke the pinned API version.
    let requests = app.stripe.requests();
    let read = requests
        .iter()
        .position(|r| r.path == format!("/v1/invoices/{invoice}"));
    let paid = requests
        .iter()
        .position(|r| r.path == format!("/v1/invoices/{invoice}/pay"));
    assert!(read.is_some() && read < paid, "{requests:?}");
    assert!(
        requests
            .iter()
            .all(|r| r.stripe_version.as_deref() == Some(api_version())),
        "{requests:?}"
    );
}

#[tokio::test]
async fn a_retry_declined_for_good_goes_back_into_the_policy_and_stops_the_retries() {
    let app = app().await;
    let invoice = "in_lost_card_1";
    let mut stripe_invoice = Invoice::failed(CUSTOMER, Decline::visa("generic_decline"));
    let lost = Decline {
        advice_code: Some("do_not_try_again"),
        ..Decline::visa("lost_card")
    };
    stripe_invoice.outcomes.push_back(Outcome::Decline(lost));
    app.stripe.add_invoice(invoice, stripe_invoice);
    app.deliver(failure_of(invoice)).await;
    let planned = app
        .case_when(invoice, |c| c["decline"]["class"] == "ambiguous")
        .await;
    assert!(planned["next_attempt_at"].is_string(), "{planned}");

    app.advance_clock(10 * DAY).await;
    let stopped = app
        .case_when(invoice, |c| c["decline"]["class"] == "hard")
        .await;
    assert_eq!(stopped["state"], "awaiting_customer");
    assert_eq!(stopped["next_attempt_at"], Value::Null);
    assert_eq!(
        attempts(&stopped),
        vec![
            (1, "failed".into(), Some("generic_decline".into())),
            (2, "failed".into(), Some("lost_card".into()))
        ]
    );
    assert_eq!(stopped["decline"]["advice_code"], "do_not_try_again");
    let story = stopped["timeline"].to_string();
    assert!(story.contains("advice_code do_not_try_again"), "{story}");

    app.advance_clock(30 * DAY).await;
    assert_eq!(app.stripe.charges().len(), 1, "one retry, then none");
}

#[tokio::test]
async fn a_decline_stripe_could_not_show_at_first_is_read_when_the_event_comes_back() {
    let mut env = clock_env().to_vec();
    env.extend([
        ("RECOUP_WORKER__LEASE_SECS", "1"),
        ("RECOUP_STRIPE__BACKOFF_MS", "5"),
    ]);
    let app = TestApp::spawn_as(Role::All, &env).await;
    let invoice = "in_unread_1";
    app.stripe.add_invoice(
        invoice,
        Invoice::failed(CUSTOMER, Decline::visa("stolen_card")),
    );
    // Stripe fails the first read and the three tries after it; the event waits for the lease.
    app.stripe
        .fail_next_payment_intent_reads(&[503, 503, 503, 503]);
    app.deliver(failure_of(invoice)).await;
    let case = app
        .case_when(invoice, |c| c["decline"]["class"] == "hard")
        .await;
    assert_eq!(case["state"], "awaiting_customer");
    let reads = app
        .stripe
        .requests()
        .into_iter()
        .filter(|r| r.path == format!("/v1/payment_intents/pi_for_{invoice}"))
        .count();
    assert_eq!(reads, 5, "four failed reads, then the one that worked");
    assert!(app.stripe.pay_requests(invoice).is_empty());
}

#[tokio::test]
async fn a_hard_decline_is_never_charged_again() {
    let app = app().await;
    let invoice = "in_hard_1";
    let case = app
        .fail(
            invoice,
            Invoice::failed(CUSTOMER, Decline::visa("stolen_card")),
        )
        .await;
    assert_eq!(case["decline"]["class"], "hard");
    assert_eq!(case["state"], "awaiting_customer");
    assert_eq!(case["next_attempt_at"], Value::Null);
    assert!(
        case["timers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["kind"] == "decide"),
        "no retry, only the end decision waits: {case}"
    );
    assert!(
        case["timeline"]
            .to_string()
            .contains("decline code stolen_card"),
        "{case}"
    );

    // Weeks pass without a new card: the policy's end (cancel at period end), never a charge.
    app.stripe.add_subscription(
        "sub_1QaZ3pB7WZ01zgkW5hJx2Lq0",
        Subscription::active(CUSTOMER),
    );
    app.advance_clock(60 * DAY).await;
    let later = app.case_when(invoice, |c| c["state"] == "canceled").await;
    assert_eq!(later["decision"]["how"], "cancel_at_period_end=true");
    assert!(app.stripe.pay_requests(invoice).is_empty());
    assert!(app.stripe.charges().is_empty());
}

#[tokio::test]
async fn an_invoice_paid_before_its_failure_arrived_is_never_charged() {
    let app = app().await;
    let invoice = "in_paid_first";
    let now = unix_now();
    let paid = invoice_event("invoice.paid", "evt_paid_first", invoice, now - 60, 2);
    app.deliver(paid).await;
    app.deliver(failure_of(invoice)).await;
    let case = app
        .case_when(invoice, |c| c["timeline"].as_array().unwrap().len() == 2)
        .await;
    assert_eq!(case["state"], "closed");
    assert_eq!(case["timers"], serde_json::json!([]));

    app.advance_clock(60 * DAY).await;
    assert!(app.stripe.pay_requests(invoice).is_empty());
    assert!(app.stripe.charges().is_empty());
}

#[tokio::test]
async fn stripe_failing_then_limiting_is_retried_with_one_key_and_charges_once() {
    let app = app().await;
    let invoice = "in_flaky_1";
    app.stripe.fail_next_pays(&[500, 429]);
    app.fail(
        invoice,
        Invoice::failed(CUSTOMER, Decline::visa("generic_decline")),
    )
    .await;

    app.advance_clock(10 * DAY).await;
    let recovered = app.case_when(invoice, |c| c["state"] == "recovered").await;
    assert_eq!(recovered["recovered_by"], "retry");
    let pays = app.stripe.pay_requests(invoice);
    assert_eq!(pays.len(), 3, "a 500, a 429, then the charge: {pays:?}");
    assert!(pays.iter().all(|p| p.idempotency_key == key(invoice, 2)));
    assert_eq!(app.stripe.charges().len(), 1);
}

#[tokio::test]
async fn an_invoice_no_longer_open_is_read_not_paid_and_its_case_closed() {
    let app = app().await;
    let invoice = "in_voided_1";
    app.fail(
        invoice,
        Invoice::failed(CUSTOMER, Decline::visa("generic_decline")),
    )
    .await;
    // Voided in the dashboard, and the webhook saying so lost or late.
    app.stripe.add_invoice(
        invoice,
        Invoice {
            status: "void",
            ..Invoice::failed(CUSTOMER, Decline::visa("generic_decline"))
        },
    );

    app.advance_clock(10 * DAY).await;
    let closed = app.case_when(invoice, |c| c["state"] == "closed").await;
    assert!(
        closed["timeline"]
            .to_string()
            .contains("the invoice is void in Stripe"),
        "{closed}"
    );
    assert!(app.stripe.pay_requests(invoice).is_empty());
}

#[tokio::test]
async fn a_worker_killed_during_the_pay_call_is_replaced_and_nothing_is_charged_twice() {
    let invoice = "in_crash_1";
    let (redis, stripe, env) = processes_env(invoice, "2");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let receiver = RecoupProcess::serve_as(&redis, "receiver", &env).await;
    let mut doomed = RecoupProcess::serve_as(&redis, "worker", &env).await;
    assert_eq!(receiver.deliver(failure_of(invoice)).await.status, 200);
    let planned = receiver
        .case_when(invoice, |c| c["decline"]["code"].is_string())
        .await;
    assert_eq!(planned["decline"]["code"], "generic_decline");
    assert!(planned["next_attempt_at"].is_string(), "{planned}");

    // Stripe takes the charge but its answer never reaches the worker, which dies waiting.
    stripe.stall_pays(Some(Duration::from_secs(120)));
    receiver.advance_clock(10 * DAY).await;
    wait_until("the charge to be made", Duration::from_secs(30), || async {
        !stripe.charges().is_empty()
    })
    .await;
    doomed.child.kill().unwrap();
    doomed.child.wait().unwrap();
    stripe.stall_pays(None);

    // The survivor takes the timer over once the lease runs out and makes the same attempt: the
    // invoice it reads first is paid, so it records the recovery and charges nothing.
    let _survivor = RecoupProcess::serve_as(&redis, "worker", &env).await;
    let recovered = receiver
        .case_when(invoice, |c| c["state"] == "recovered")
        .await;
    let charges = stripe.charges();
    assert_eq!(charges.len(), 1, "charged once: {charges:?}");
    let pays = stripe.pay_requests(invoice);
    assert!(pays.iter().all(|p| p.idempotency_key == key(invoice, 2)));
    assert!(
        recovered["timeline"]
            .to_string()
            .contains("the invoice is paid in Stripe"),
        "{recovered}"
    );
}

#[tokio::test]
async fn a_pay_call_slower_than_the_lease_is_made_once_and_shows_as_under_way_meanwhile() {
    let invoice = "in_slow_lease_1";
    let (redis, stripe, env) = processes_env(invoice, "1");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let receiver = RecoupProcess::serve_as(&redis, "receiver", &env).await;
    let _workers = [
        RecoupProcess::serve_as(&redis, "worker", &env).await,
        RecoupProcess::serve_as(&redis, "worker", &env).await,
    ];
    assert_eq!(receiver.deliver(failure_of(invoice)).await.status, 200);
    receiver
        .case_when(invoice, |c| c["next_attempt_at"].is_string())
        .await;

    // Stripe takes the charge at once but answers only after four leases have run out.
    stripe.stall_pays(Some(Duration::from_secs(4)));
    receiver.advance_clock(10 * DAY).await;
    wait_until("the charge to be made", Duration::from_secs(30), || async {
        !stripe.charges().is_empty()
    })
    .await;
    // While Stripe has not answered, the case says which attempt is under way.
    let under_way = receiver
        .case_when(invoice, |c| c["retry_under_way"]["attempt"] == 2)
        .await;
    assert_eq!(under_way["state"], "retrying", "{under_way}");

    // Neither worker makes the call a second time from a stale read of the case: one request, one
    // key, one charge.
    let recovered = receiver
        .case_when(invoice, |c| c["state"] == "recovered")
        .await;
    assert_eq!(recovered["recovered_by"], "retry");
    assert!(recovered.get("retry_under_way").is_none(), "{recovered}");
    let pays = stripe.pay_requests(invoice);
    assert_eq!(pays.len(), 1, "{pays:?}");
    assert_eq!(pays[0].idempotency_key, key(invoice, 2));
    assert_eq!(stripe.charges().len(), 1);
}

#[tokio::test]
async fn a_pay_call_that_times_out_is_made_again_with_its_key_and_gets_stripes_stored_answer() {
    let app = TestApp::spawn_as(
        Role::All,
        &[
            ("RECOUP_API_TOKENS", API_TOKENS),
            ("RECOUP_TEST_CLOCK", "1"),
            ("RECOUP_STRIPE__TIMEOUT_MS", "300"),
        ],
    )
    .await;
    let invoice = "in_slow_1";
    app.fail(
        invoice,
        Invoice::failed(CUSTOMER, Decline::visa("generic_decline")),
    )
    .await;
    // Stripe charges, but answers too late; the repeat with the same key is answered at once.
    app.stripe.stall_pays(Some(Duration::from_secs(2)));

    app.advance_clock(10 * DAY).await;
    let recovered = app.case_when(invoice, |c| c["state"] == "recovered").await;
    assert_eq!(recovered["recovered_by"], "retry");
    let pays = app.stripe.pay_requests(invoice);
    assert_eq!(pays.len(), 2, "{pays:?}");
    assert!(pays.iter().all(|p| p.idempotency_key == key(invoice, 2)));
    assert_eq!(app.stripe.charges().len(), 1);
}

#[tokio::test]
async fn two_invoices_on_one_card_share_its_network_budget() {
    // A budget of three tries per card in 30 days: Stripe's failed first attempt of each invoice
    // takes two, so only one of the two retries fits. Retries at any hour, so what the test clock
    // moves fires whatever the hour the test runs at.
    let (app, _policy) = app_with_policy(
        "version = 1\n\n[retries]\nwithin = \"28d\"\n\n[timing]\nwindow = [0, 24]\n\n\
         [[network]]\nbrand = \"visa\"\ncounts = \"attempts\"\nscope = \"card\"\nmax = 3\n\
         per = \"30d\"\n\n[nudges]\nstep = []\n",
    )
    .await;
    let invoices = ["in_shared_card_a", "in_shared_card_b"];
    for invoice in invoices {
        app.fail(
            invoice,
            Invoice::failed(CUSTOMER, Decline::visa("generic_decline")),
        )
        .await;
    }

    app.advance_clock(10 * DAY).await;
    // Both retries are due at once and one of them is paid. The other is refused by the budget
    // when it fires: at once, or — when the payment reaches its case first — half an hour after
    // the payment, which the retry that paid brings it forward to (`card paid another invoice`)
    // and the hour below reaches. Which comes first is the worker's race, not the test's.
    wait_until("one retry to be paid", SETTLE, || async {
        app.stripe.charges().len() == 1
    })
    .await;
    app.advance_clock(3600).await;
    let mut held_back = 0;
    for invoice in invoices {
        let case = app
            .case_when(invoice, |c| {
                c["state"] == "recovered"
                    || c["timers"]
                        .as_array()
                        .is_some_and(|t| t.iter().all(|t| t["kind"] != "retry"))
            })
            .await;
        let story = case["timeline"].to_string();
        if case["state"] != "recovered" {
            held_back += 1;
            assert!(
                story.contains(
                    "dropped: policy file network[0]: at most 3 attempts per card in 30 days"
                ),
                "{story}"
            );
            // No retry left: the end decision waits, or (ten days on) has been made.
            let kinds: Vec<&Value> = case["timers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| &t["kind"])
                .collect();
            assert!(
                kinds == ["decide"] || case["decision"].is_object(),
                "{case}"
            );
        }
    }
    assert_eq!(held_back, 1, "exactly one retry fits the budget");
    assert_eq!(app.stripe.charges().len(), 1);
    let metrics = app.get("/metrics").await.text;
    assert!(
        metrics.contains("recoup_network_refusals_total{brand=\"visa\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_retry_paying_one_invoice_brings_forward_the_next_retry_of_another_on_the_card() {
    let app = app().await;
    let (first, second) = ("in_card_paid_first", "in_card_paid_second");
    app.fail(
        first,
        Invoice::failed(CUSTOMER, Decline::visa("generic_decline")),
    )
    .await;
    // The second fails two days later on the same card: its first retry is due five days after
    // the first failure at the earliest, two after the first invoice's.
    let now = app.advance_clock(2 * DAY).await;
    let planned = app
        .fail_at(
            second,
            Invoice::failed(CUSTOMER, Decline::visa("generic_decline")),
            now.as_second(),
        )
        .await;
    let scheduled: jiff::Timestamp = planned["next_attempt_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        scheduled >= now + jiff::SignedDuration::from_hours(3 * 24),
        "{planned}"
    );

    // Two days on, the first invoice's retry has come due and paid; the second, told of it, has
    // its retry half an hour after that payment, a day before its own schedule.
    let moved_on = app.advance_clock(2 * DAY).await;
    assert!(moved_on < scheduled);
    let paid = app.case_when(first, |c| c["state"] == "recovered").await;
    assert_eq!(paid["recovered_by"], "retry");
    let told = app.case_when(second, |c| c["card_paid"].is_object()).await;
    let paid_at: jiff::Timestamp = paid["paid_at"].as_str().unwrap().parse().unwrap();
    let next: jiff::Timestamp = told["next_attempt_at"].as_str().unwrap().parse().unwrap();
    // In the customer's daytime: the payment may have come at the window's close.
    let due = recoup::policy::timing::into_window(
        paid_at + recoup::policy::AFTER_CARD_PAID,
        &recoup::policy::timing::zone("America/New_York"),
        recoup::policy::Plan::default().window,
    );
    assert_eq!(next, due, "{told}");
    assert!(next < scheduled);
    let story = told["timeline"].to_string();
    assert!(
        story.contains("card paid another invoice")
            && story.contains("a retry of in_card_paid_first went through on the same card"),
        "{story}"
    );
    app.advance_clock(next.duration_since(moved_on).as_secs() + 60)
        .await;
    let told = app.case_when(second, |c| c["state"] == "recovered").await;
    assert_eq!(told["recovered_by"], "retry");
    assert_eq!(
        attempts(&told),
        vec![
            (1, "failed".into(), Some("generic_decline".into())),
            (2, "succeeded".into(), None)
        ]
    );
    assert_eq!(app.stripe.pay_requests(second).len(), 1);
}

#[tokio::test]
async fn an_invoice_failing_on_a_card_the_customer_already_replaced_is_charged_on_the_new_one() {
    let app = app().await;
    let (first, second) = ("in_newer_card_first", "in_newer_card_second");
    // A stolen card: no retry on it, the customer is asked for a new one, and gives it.
    app.fail(
        first,
        Invoice::failed(CUSTOMER, Decline::visa("stolen_card")),
    )
    .await;
    let mut attached: Value =
        serde_json::from_slice(&crate::helpers::fixture("payment_method.attached")).unwrap();
    attached["created"] = (unix_now() + 60).into();
    assert_eq!(
        app.deliver(serde_json::to_vec(&attached).unwrap())
            .await
            .status,
        200
    );
    app.advance_clock(10 * 60).await;
    let paid = app.case_when(first, |c| c["state"] == "recovered").await;
    assert_eq!(paid["recovered_by"], "retry");
    let method = "payment_method=pm_1QbB9kB7WZ01zgkWnEw2Card";
    let charged = app.stripe.pay_requests(first);
    assert!(
        charged.iter().all(|r| r.body.contains(method)),
        "{charged:?}"
    );

    // A month on, the subscription's renewal fails on the old card: its own default was never
    // changed. The case hears of the card the customer gave and charges it five minutes later.
    let now = app.advance_clock(30 * DAY).await;
    app.fail_at(
        second,
        Invoice::failed(CUSTOMER, Decline::visa("stolen_card")),
        now.as_second(),
    )
    .await;
    let told = app
        .case_when(second, |c| {
            c["timeline"].to_string().contains("customer's newer card")
        })
        .await;
    let story = told["timeline"].to_string();
    assert!(
        story.contains("the customer gave the card pm_1QbB9kB7WZ01zgkWnEw2Card on another invoice"),
        "{story}"
    );
    let next: jiff::Timestamp = told["next_attempt_at"].as_str().unwrap().parse().unwrap();
    assert!(next <= now + jiff::SignedDuration::from_mins(6), "{told}");
    app.advance_clock(10 * 60).await;
    let recovered = app.case_when(second, |c| c["state"] == "recovered").await;
    assert_eq!(recovered["recovered_by"], "retry");
    let charged = app.stripe.pay_requests(second);
    assert_eq!(charged.len(), 1);
    assert!(charged[0].body.contains(method), "{charged:?}");
}

#[tokio::test]
async fn a_case_opens_in_the_customers_time_zone_and_the_segment_of_their_tenure() {
    let (app, _policy) = app_with_policy(
        "version = 1\n\n[[segment]]\nname = \"loyal\"\ntenure_months_at_least = 24\n\
         past_failures_below = 1\n\n[nudges]\nstep = []\n",
    )
    .await;
    app.stripe.add_customer(
        CUSTOMER,
        Customer {
            metadata: serde_json::json!({"timezone": "Asia/Tokyo"}),
            country: "US",
            created: unix_now() - 3 * 365 * DAY,
            name: "Dana Whitfield",
            email: "dana@example.com",
            preferred_locales: &[],
            card_expires: (12, 2030),
        },
    );
    let first = "in_tenure_1";
    app.deliver(failure_of(first)).await;
    let case = app.case_when(first, |c| c["timers"] != Value::Null).await;
    assert_eq!(case["customer_timezone"], "Asia/Tokyo");
    assert_eq!(case["segment"], "loyal");
    let next: jiff::Timestamp = case["next_attempt_at"].as_str().unwrap().parse().unwrap();
    let local = next.to_zoned(jiff::tz::TimeZone::get("Asia/Tokyo").unwrap());
    assert!((9..20).contains(&local.hour()), "{local}");

    // The same customer's next failure is their second: no longer in a segment for first failures.
    let second = "in_tenure_2";
    app.deliver(failure_of(second)).await;
    let case = app.case_when(second, |c| c["timers"] != Value::Null).await;
    assert_eq!(case["customer_timezone"], "Asia/Tokyo");
    assert_eq!(case.get("segment"), None, "{case}");
}
