//! What happens when recovery fails, end to end: the decision per segment with the right Stripe
//! call, the re-read right before acting, the way back for a paused customer, disputes, support's
//! hold, resume and retry, and changes made in Stripe's dashboard — each Stripe mutation under one
//! idempotency key.

use std::collections::BTreeMap;

use recoup::notify::templates::format_date;
use recoup::policy::EndAction;
use recoup::processor::{decision_key, idempotency_key, resume_key};
use recoup::server::Role;
use serde_json::{Value, json};

use crate::fake_stripe::{
    ChargeRecord, Customer, Decline, FakeStripe, Invoice, Outcome, Subscription,
};
use crate::helpers::{
    API_TOKENS, LINKS, Recoup, SETTLE, TestApp, failure_of, fixture, unix_now, wait_until,
};
use crate::smtp_sink::SmtpSink;

const DAY: i64 = 86_400;

/// One quick retry of an ambiguous decline, no nudges, two days' grace, and an end per customer
/// segment, so each end action is one invoice away.
const POLICY: &str = r#"
version = 1
[retries]
ambiguous = ["1d"]
[nudges]
step = []
[end]
exhausted = { action = "cancel", at_period_end = false }
no_new_card = { action = "cancel", at_period_end = false }
grace = "2d"
[[segment]]
name = "pausing"
customer_metadata = { end = "pause" }
[segment.end]
exhausted = { action = "pause", behavior = "keep_as_draft" }
no_new_card = { action = "pause", behavior = "keep_as_draft" }
[[segment]]
name = "ending with the period"
customer_metadata = { end = "period" }
[segment.end]
exhausted = { action = "cancel", at_period_end = true }
[[segment]]
name = "writing off"
customer_metadata = { end = "write_off" }
[segment.end]
exhausted = { action = "mark_uncollectible" }
[[segment]]
name = "leaving"
customer_metadata = { end = "leave" }
[segment.end]
exhausted = { action = "leave_past_due" }
"#;

/// The app on the test clock with [`POLICY`] (kept in the returned directory).
pub(crate) async fn app() -> (TestApp, tempfile::TempDir) {
    app_with(POLICY, &[]).await
}

/// The app on the test clock with `policy` and more environment.
pub(crate) async fn app_with(policy: &str, extra: &[(&str, &str)]) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, policy).unwrap();
    let mut env = vec![
        ("RECOUP_API_TOKENS", API_TOKENS),
        ("RECOUP_TEST_CLOCK", "1"),
        ("RECOUP_STRIPE__BACKOFF_MS", "5"),
        ("RECOUP_POLICY", path.to_str().unwrap()),
    ];
    env.extend_from_slice(extra);
    (TestApp::spawn_as(Role::All, &env).await, dir)
}

/// A customer whose metadata puts their invoices in the segment for `end`.
pub(crate) fn customer(end: &str) -> Customer {
    Customer {
        metadata: json!({ "end": end }),
        country: "US",
        created: unix_now() - 90 * DAY,
        name: "Dana Reyes",
        email: "dana@example.com",
        preferred_locales: &["en"],
        card_expires: (12, 2030),
    }
}

/// An invoice of `customer` on subscription `subscription`, whose first attempt failed with
/// `decline` and whose every retry is declined the same way, set up in the fake Stripe and
/// delivered to recoup; returns the case once recoup has read the decline.
pub(crate) async fn failing(
    app: &TestApp,
    invoice: &str,
    customer_id: &str,
    subscription: &str,
    decline: &'static str,
) -> Value {
    let retries = (0..5).map(|_| Outcome::Decline(Decline::visa(decline)));
    fail_on(app, invoice, (customer_id, subscription), decline, retries).await;
    app.case_when(invoice, |c| c["decline"]["class"].is_string())
        .await
}

/// Sets up an invoice of `customer` on `subscription` in the fake Stripe, whose first attempt
/// failed with `decline` and whose retries come to `retries` (then paid), and delivers its failure
/// to recoup.
pub(crate) async fn fail_on(
    app: &TestApp,
    invoice: &str,
    (customer_id, subscription): (&str, &str),
    decline: &'static str,
    retries: impl IntoIterator<Item = Outcome>,
) {
    let mut stripe_invoice = Invoice::failed(customer_id, Decline::visa(decline));
    stripe_invoice.outcomes = retries.into_iter().collect();
    app.stripe.add_invoice(invoice, stripe_invoice);
    app.stripe
        .add_subscription(subscription, Subscription::active(customer_id));
    let mut event: Value = serde_json::from_slice(&failure_of(invoice)).unwrap();
    let object = &mut event["data"]["object"];
    object["customer"] = customer_id.into();
    object["parent"]["subscription_details"]["subscription"] = subscription.into();
    app.deliver(serde_json::to_vec(&event).unwrap()).await;
}

/// Every mutation the fake Stripe received carried an idempotency key, and no change to a
/// subscription or invoice was sent under two keys (charges are one key per attempt, by design:
/// the retry tests check those).
fn assert_one_key_per_change(stripe: &FakeStripe) {
    let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for request in stripe.mutations() {
        let key = request
            .idempotency_key
            .clone()
            .unwrap_or_else(|| panic!("{request:?} carried no idempotency key"));
        if request.path.ends_with("/pay") {
            continue;
        }
        let change = format!("{} {} {}", request.method, request.path, request.body);
        let seen = keys.entry(change).or_default();
        if !seen.contains(&key) {
            seen.push(key);
        }
    }
    for (change, keys) in keys {
        assert_eq!(keys.len(), 1, "{change} was sent under {keys:?}");
    }
}

fn decision_of(case: &Value) -> (&str, &str) {
    (
        case["decision"]["action"].as_str().unwrap_or_default(),
        case["decision"]["outcome"].as_str().unwrap_or_default(),
    )
}

#[tokio::test]
async fn exhausted_retries_end_with_each_segments_action_and_its_stripe_call() {
    let (app, _policy) = app().await;
    let stories = [
        ("pause", "in_end_pause", "sub_end_pause", "paused"),
        ("period", "in_end_period", "sub_end_period", "canceled"),
        (
            "write_off",
            "in_end_write_off",
            "sub_end_write_off",
            "closed",
        ),
        ("leave", "in_end_leave", "sub_end_leave", "closed"),
        ("cancel", "in_end_cancel", "sub_end_cancel", "canceled"),
    ];
    for (end, invoice, subscription, _) in stories {
        let customer_id = format!("cus_end_{end}");
        app.stripe.add_customer(&customer_id, customer(end));
        let case = failing(&app, invoice, &customer_id, subscription, "do_not_honor").await;
        assert_eq!(case["decline"]["class"], "ambiguous");
    }
    // The one retry, a day later in the customer's daytime; then two days' grace.
    app.advance_clock(2 * DAY).await;
    for (_, invoice, _, _) in stories {
        app.case_when(invoice, |c| c["attempts"].as_array().unwrap().len() == 2)
            .await;
    }
    app.advance_clock(2 * DAY + 3_600).await;
    for (end, invoice, subscription, state) in stories {
        let case = app.case_when(invoice, |c| c["state"] == state).await;
        let action = match end {
            "pause" => "pause",
            "write_off" => "mark_uncollectible",
            "leave" => "leave_past_due",
            _ => "cancel",
        };
        assert_eq!(decision_of(&case), (action, "carried_out"), "{case}");
        assert!(
            case["decision"]["rule"]
                .as_str()
                .unwrap()
                .ends_with("retries exhausted"),
            "{case}"
        );
        let story = case["timeline"].to_string();
        assert!(story.contains("decision carried out"), "{story}");
        let on_subscription: Vec<_> = app
            .stripe
            .mutations()
            .into_iter()
            .filter(|r| r.path.contains(subscription) || r.path.contains(invoice))
            .filter(|r| !r.path.ends_with("/pay"))
            .collect();
        let now = app.stripe.subscription(subscription).unwrap();
        match end {
            "pause" => {
                assert_eq!(on_subscription.len(), 1, "{on_subscription:?}");
                assert_eq!(on_subscription[0].method, "POST");
                assert_eq!(
                    on_subscription[0].body,
                    "pause_collection[behavior]=keep_as_draft"
                );
                assert_eq!(now.pause_collection.as_ref().unwrap().0, "keep_as_draft");
            }
            "period" => {
                assert_eq!(on_subscription[0].body, "cancel_at_period_end=true");
                assert!(now.cancel_at_period_end);
                assert_eq!(now.status, "active", "it ends with its period");
            }
            "cancel" => {
                assert_eq!(on_subscription[0].method, "DELETE");
                assert_eq!(now.status, "canceled");
            }
            "write_off" => {
                assert_eq!(
                    on_subscription[0].path,
                    format!("/v1/invoices/{invoice}/mark_uncollectible")
                );
                assert_eq!(now.status, "active", "the subscription goes on");
            }
            _ => assert!(on_subscription.is_empty(), "{on_subscription:?}"),
        }
        if end != "leave" {
            let action = match end {
                "pause" => EndAction::Pause,
                "write_off" => EndAction::MarkUncollectible,
                _ => EndAction::Cancel,
            };
            assert_eq!(
                on_subscription[0].idempotency_key,
                Some(decision_key(invoice, action))
            );
        }
    }
    assert_one_key_per_change(&app.stripe);

    // /metrics counts the decisions by action and result (the recorder is the process's, shared
    // by the tests running in it, so only the series is checked).
    let metrics = app.get("/metrics").await.text;
    for action in ["pause", "cancel", "mark_uncollectible", "leave_past_due"] {
        let series = format!(r#"recoup_decisions_total{{action="{action}",result="done"}}"#);
        assert!(metrics.contains(&series), "{series} in {metrics}");
    }
}

#[tokio::test]
async fn a_hard_decline_gets_no_retry_and_its_decision_after_the_grace() {
    let (app, _policy) = app().await;
    app.stripe.add_customer("cus_stolen", customer("pause"));
    let case = failing(&app, "in_stolen", "cus_stolen", "sub_stolen", "stolen_card").await;
    assert_eq!(case["state"], "awaiting_customer");
    assert_eq!(case["next_attempt_at"], Value::Null);

    app.advance_clock(2 * DAY + 60).await;
    let paused = app.case_when("in_stolen", |c| c["state"] == "paused").await;
    assert!(
        paused["decision"]["rule"]
            .as_str()
            .unwrap()
            .ends_with("a decline no retry fixes, and no new card"),
        "{paused}"
    );
    assert_eq!(app.stripe.charges().len(), 0, "never charged");
}

#[tokio::test]
async fn the_final_notice_names_the_end_and_its_date_and_the_decision_keeps_to_both() {
    const NOTICE_POLICY: &str = r#"
version = 1
[nudges]
channels = ["email"]
[[nudges.step]]
kind = "final_notice"
tier = 1
after = "1d"
[end]
no_new_card = { action = "pause", behavior = "keep_as_draft" }
grace = "2d"
"#;
    let sink = SmtpSink::start();
    let smtp = sink.url();
    let (app, _policy) = app_with(
        NOTICE_POLICY,
        &[
            ("RECOUP_SMTP_URL", &smtp),
            ("RECOUP_EMAIL_FROM", "Acme Billing <billing@acme.example>"),
            LINKS[0],
            LINKS[1],
        ],
    )
    .await;
    app.stripe.add_customer("cus_noticed", customer("any"));
    let case = failing(
        &app,
        "in_noticed",
        "cus_noticed",
        "sub_noticed",
        "lost_card",
    )
    .await;
    assert_eq!(case["state"], "awaiting_customer");

    let zone = case["customer_timezone"].as_str().unwrap();
    app.advance_into_daytime(2 * DAY, zone).await;
    wait_until("the final notice", SETTLE, || async {
        !sink.mails().is_empty()
    })
    .await;
    let mail = &sink.mails()[0];
    // The decision counts from the notice's delivery, recorded once the mail went out.
    let noticed = app
        .case_when("in_noticed", |c| c["nudged"][0]["delivered_at"].is_string())
        .await;
    let due: jiff::Timestamp = noticed["timers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["kind"] == "decide")
        .unwrap()["at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let zone = recoup::policy::timing::zone(noticed["customer_timezone"].as_str().unwrap());
    let date = format_date(due, &zone, "en");
    assert_eq!(
        mail.subject(),
        format!("Final notice: your subscription will be paused on {date}")
    );
    assert!(
        mail.text().contains(&format!("will be paused on {date}")),
        "{}",
        mail.text()
    );

    app.advance_clock(3 * DAY).await;
    let paused = app
        .case_when("in_noticed", |c| c["state"] == "paused")
        .await;
    let decided: jiff::Timestamp = paused["decision"]["at"].as_str().unwrap().parse().unwrap();
    assert_eq!(decided, due, "decided on the date the notice named");
}

#[tokio::test]
async fn a_payment_between_the_decision_and_the_call_means_no_cancel() {
    let (app, _policy) = app().await;
    app.stripe
        .add_customer("cus_late_payer", customer("cancel"));
    failing(
        &app,
        "in_late_payer",
        "cus_late_payer",
        "sub_late_payer",
        "do_not_honor",
    )
    .await;
    app.advance_clock(2 * DAY).await;
    app.case_when("in_late_payer", |c| {
        c["attempts"].as_array().unwrap().len() == 2
    })
    .await;
    // The customer pays in the dashboard; the webhook has not arrived when the decision comes due.
    app.stripe.set_invoice_status("in_late_payer", "paid");
    app.advance_clock(2 * DAY + 3_600).await;
    let case = app
        .case_when("in_late_payer", |c| c["state"] == "recovered")
        .await;
    assert_eq!(decision_of(&case), ("cancel", "not_carried_out"));
    assert_eq!(case["decision"]["note"], "the invoice is paid in Stripe");
    assert_eq!(
        app.stripe.subscription("sub_late_payer").unwrap().status,
        "active"
    );
    assert!(
        app.stripe
            .mutations()
            .iter()
            .all(|r| !r.path.starts_with("/v1/subscriptions")),
        "{:?}",
        app.stripe.mutations()
    );
}

#[tokio::test]
async fn a_paused_customer_who_adds_a_card_is_retried_recovered_and_collection_resumes() {
    let (app, _policy) = app().await;
    app.stripe.add_customer("cus_back", customer("pause"));
    failing(&app, "in_back", "cus_back", "sub_back", "do_not_honor").await;
    app.advance_clock(2 * DAY).await;
    app.case_when("in_back", |c| c["attempts"].as_array().unwrap().len() == 2)
        .await;
    app.advance_clock(2 * DAY + 3_600).await;
    app.case_when("in_back", |c| c["state"] == "paused").await;

    // A new card, weeks later; the next charge succeeds.
    app.advance_clock(20 * DAY).await;
    let mut stripe_invoice = Invoice::failed("cus_back", Decline::visa("do_not_honor"));
    stripe_invoice.attempt_count = 2;
    app.stripe.add_invoice("in_back", stripe_invoice);
    let mut attached: Value = serde_json::from_slice(&fixture("payment_method.attached")).unwrap();
    attached["id"] = "evt_card_back".into();
    attached["created"] = (unix_now() + 23 * DAY).into();
    attached["data"]["object"]["customer"] = "cus_back".into();
    app.deliver(serde_json::to_vec(&attached).unwrap()).await;
    app.case_when("in_back", |c| c["next_attempt_at"].is_string())
        .await;
    app.advance_clock(600).await;
    let recovered = app
        .case_when("in_back", |c| {
            c["state"] == "recovered" && c["timeline"].to_string().contains("collection resumed")
        })
        .await;
    assert_eq!(recovered["recovered_by"], "retry");
    assert_eq!(recovered["decision"]["action"], "pause");
    assert!(
        app.stripe
            .subscription("sub_back")
            .unwrap()
            .pause_collection
            .is_none(),
        "{recovered}"
    );
    let resume = app
        .stripe
        .mutations()
        .into_iter()
        .find(|r| r.body == "pause_collection=")
        .expect("collection resumed");
    assert_eq!(resume.path, "/v1/subscriptions/sub_back");
    assert_eq!(resume.idempotency_key, Some(resume_key("in_back")));
    assert_one_key_per_change(&app.stripe);
}

/// A dispute event on `charge`, in a given status.
pub(crate) fn dispute_event(kind: &str, id: &str, charge: &str, status: &str) -> Vec<u8> {
    let mut event: Value = serde_json::from_slice(&fixture(kind)).unwrap();
    event["id"] = id.into();
    event["created"] = unix_now().into();
    event["data"]["object"]["charge"] = charge.into();
    event["data"]["object"]["status"] = status.into();
    serde_json::to_vec(&event).unwrap()
}

#[tokio::test]
async fn a_dispute_holds_every_open_case_of_the_customer_until_it_closes() {
    let (app, _policy) = app().await;
    app.stripe.add_customer("cus_disputing", customer("cancel"));
    app.stripe.add_charge(
        "ch_disputed",
        ChargeRecord {
            customer: Some("cus_disputing".into()),
            brand: "visa",
            fingerprint: "fp_disputed",
        },
    );
    for invoice in ["in_disputing_1", "in_disputing_2"] {
        failing(
            &app,
            invoice,
            "cus_disputing",
            "sub_disputing",
            "do_not_honor",
        )
        .await;
    }
    app.deliver(dispute_event(
        "charge.dispute.created",
        "evt_dispute_open",
        "ch_disputed",
        "needs_response",
    ))
    .await;
    for invoice in ["in_disputing_1", "in_disputing_2"] {
        let held = app.case_when(invoice, |c| c["state"] == "on_hold").await;
        assert!(
            held["timeline"]
                .to_string()
                .contains("no retries, no nudges")
        );
    }
    // The retries come due while held: nothing is charged.
    app.advance_clock(2 * DAY).await;
    app.case_when("in_disputing_1", |c| {
        c["timeline"]
            .to_string()
            .contains("timer let go while on hold")
    })
    .await;
    assert!(
        app.stripe.charges().is_empty(),
        "{:?}",
        app.stripe.charges()
    );

    app.deliver(dispute_event(
        "charge.dispute.closed",
        "evt_dispute_won",
        "ch_disputed",
        "won",
    ))
    .await;
    let released = app
        .case_when("in_disputing_1", |c| c["state"] == "retrying")
        .await;
    assert!(released["next_attempt_at"].is_string(), "{released}");
    app.advance_clock(DAY).await;
    app.case_when("in_disputing_1", |c| {
        c["attempts"].as_array().unwrap().len() == 2
    })
    .await;
    assert!(
        app.stripe
            .requests()
            .iter()
            .any(|r| r.path == "/v1/charges/ch_disputed"),
        "the dispute's customer was found through its charge"
    );
}

#[tokio::test]
async fn support_holds_resumes_and_retries_with_its_name_and_reason() {
    let (app, _policy) = app().await;
    app.stripe.add_customer("cus_calling", customer("cancel"));
    failing(
        &app,
        "in_calling",
        "cus_calling",
        "sub_calling",
        "do_not_honor",
    )
    .await;
    let path = |action: &str| format!("/api/v1/invoices/in_calling/{action}");

    let held = app
        .api_post(
            &path("hold"),
            r#"{"reason":"customer disputes the amount by phone"}"#,
        )
        .await;
    assert_eq!(held.status, 200, "{}", held.text);
    let held = held.json();
    assert_eq!(held["state"], "on_hold");
    assert_eq!(held["holds"][0]["by"], "support");
    assert_eq!(held["holds"][0]["name"], "support-ana");
    assert!(
        held["timeline"]
            .to_string()
            .contains("by support-ana: customer disputes the amount by phone")
    );

    let refused = app
        .api_post(&path("retry"), r#"{"reason":"try now"}"#)
        .await;
    assert_eq!(refused.status, 409, "{}", refused.text);
    assert!(
        refused.json()["error"]
            .as_str()
            .unwrap()
            .contains("on hold")
    );

    let no_reason = app.api_post(&path("resume"), r#"{"reason":"  "}"#).await;
    assert_eq!(no_reason.status, 400, "{}", no_reason.text);
    let bad_body = app.api_post(&path("resume"), "{}").await;
    assert_eq!(bad_body.status, 400, "{}", bad_body.text);
    assert_eq!(
        app.case_when("in_calling", |_| true).await["state"],
        "on_hold",
        "a bad request changes nothing"
    );

    let resumed = app
        .api_post(&path("resume"), r#"{"reason":"sorted out on the phone"}"#)
        .await;
    assert_eq!(resumed.status, 200, "{}", resumed.text);
    assert_eq!(resumed.json()["state"], "retrying");

    let retried = app
        .api_post(
            &path("retry"),
            r#"{"reason":"customer topped up their account"}"#,
        )
        .await;
    assert_eq!(retried.status, 202, "{}", retried.text);
    let case = app
        .case_when("in_calling", |c| {
            c["attempts"].as_array().unwrap().len() == 2
        })
        .await;
    assert!(
        case["timeline"]
            .to_string()
            .contains("support (support-ana) asked for it: customer topped up their account"),
        "{case}"
    );
    assert_eq!(
        app.stripe.pay_requests("in_calling")[0].idempotency_key,
        Some(idempotency_key("in_calling", 2))
    );

    let unknown = app
        .api_post("/api/v1/invoices/in_nobody/hold", r#"{"reason":"x"}"#)
        .await;
    assert_eq!(unknown.status, 404);

    // A stolen card is not retried because support asks: 409 with the rule.
    app.stripe
        .add_customer("cus_stolen_call", customer("cancel"));
    failing(
        &app,
        "in_stolen_call",
        "cus_stolen_call",
        "sub_stolen_call",
        "stolen_card",
    )
    .await;
    let forbidden = app
        .api_post(
            "/api/v1/invoices/in_stolen_call/retry",
            r#"{"reason":"please"}"#,
        )
        .await;
    assert_eq!(forbidden.status, 409);
    assert!(
        forbidden.json()["error"]
            .as_str()
            .unwrap()
            .starts_with("the last decline (stolen_card, hard) needs the customer"),
        "{}",
        forbidden.text
    );
    let metrics = app.get("/metrics").await.text;
    assert!(
        metrics.contains(r#"recoup_support_actions_total{action="retry",outcome="refused"}"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_subscription_canceled_in_the_dashboard_closes_its_cases() {
    let (app, _policy) = app().await;
    app.stripe.add_customer("cus_gone", customer("cancel"));
    failing(&app, "in_gone", "cus_gone", "sub_gone", "do_not_honor").await;
    let mut deleted: Value =
        serde_json::from_slice(&fixture("customer.subscription.deleted")).unwrap();
    deleted["id"] = "evt_sub_gone".into();
    deleted["created"] = unix_now().into();
    deleted["data"]["object"]["id"] = "sub_gone".into();
    deleted["data"]["object"]["customer"] = "cus_gone".into();
    app.deliver(serde_json::to_vec(&deleted).unwrap()).await;
    let closed = app.case_when("in_gone", |c| c["state"] == "closed").await;
    assert_eq!(closed["next_attempt_at"], Value::Null);
    assert!(
        closed["timeline"]
            .to_string()
            .contains("canceled in Stripe")
    );
    app.advance_clock(5 * DAY).await;
    assert!(app.stripe.charges().is_empty());
    assert!(app.stripe.mutations().is_empty(), "recoup changed nothing");
}

#[tokio::test]
async fn a_decision_stripe_cannot_take_is_made_again_under_the_same_key() {
    let (app, _policy) = app().await;
    app.stripe.add_customer("cus_flaky", customer("pause"));
    failing(&app, "in_flaky", "cus_flaky", "sub_flaky", "do_not_honor").await;
    app.advance_clock(2 * DAY).await;
    app.case_when("in_flaky", |c| c["attempts"].as_array().unwrap().len() == 2)
        .await;
    // More failures than the client's own retries: the decision call fails as a whole.
    app.stripe.fail_next_mutations(&[503, 503, 503, 503]);
    app.advance_clock(2 * DAY + 3_600).await;
    let failed = app
        .case_when("in_flaky", |c| c["decision"]["outcome"] == "failed")
        .await;
    assert_eq!(failed["state"], "retrying");
    app.advance_clock(600).await;
    app.case_when("in_flaky", |c| c["state"] == "paused").await;
    let pauses: Vec<_> = app
        .stripe
        .mutations()
        .into_iter()
        .filter(|r| r.path == "/v1/subscriptions/sub_flaky")
        .collect();
    assert!(pauses.len() >= 5, "{pauses:?}");
    assert_one_key_per_change(&app.stripe);
}
