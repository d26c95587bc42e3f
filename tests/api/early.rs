//! Events before their case: a subscription deleted, a new card, a dispute or a time zone that
//! Stripe delivers before the `invoice.payment_failed` that opens the case they matter to are kept
//! under the customer and replayed when the case opens.

use serde_json::Value;

use crate::decisions::{app, customer, dispute_event, fail_on, failing};
use crate::fake_stripe::ChargeRecord;
use crate::helpers::{Recoup, SETTLE, TestApp, fixture, unix_now, wait_until};

const DAY: i64 = 86_400;

/// Delivers `event` and waits until the worker has handled it: no case exists for it to change,
/// so only the empty inbox tells.
async fn deliver_and_handle(app: &TestApp, event: &Value) {
    app.deliver(serde_json::to_vec(event).unwrap()).await;
    wait_until("the event to be handled", SETTLE, || async {
        app.redis.inbox_len().await == 0
    })
    .await;
}

/// `customer.updated` for `customer_id`, created `created`, naming the customer's time zone; with
/// `new_card` its default payment method changed to it.
fn customer_updated(
    id: &str,
    customer_id: &str,
    created: i64,
    timezone: &str,
    new_card: Option<&str>,
) -> Value {
    let mut event: Value = serde_json::from_slice(&fixture("customer.updated")).unwrap();
    event["id"] = id.into();
    event["created"] = created.into();
    let object = &mut event["data"]["object"];
    object["id"] = customer_id.into();
    object["metadata"]["timezone"] = timezone.into();
    match new_card {
        Some(card) => object["invoice_settings"]["default_payment_method"] = card.into(),
        None => {
            event["data"]
                .as_object_mut()
                .unwrap()
                .remove("previous_attributes");
        }
    }
    event
}

fn story(case: &Value) -> String {
    case["timeline"].to_string()
}

#[tokio::test]
async fn a_subscription_deleted_before_its_failure_arrived_closes_the_case_and_nothing_is_charged()
{
    let (app, _policy) = app().await;
    app.stripe
        .add_customer("cus_early_gone", customer("cancel"));
    let mut deleted: Value =
        serde_json::from_slice(&fixture("customer.subscription.deleted")).unwrap();
    deleted["id"] = "evt_early_gone".into();
    deleted["created"] = unix_now().into();
    deleted["data"]["object"]["id"] = "sub_early_gone".into();
    deleted["data"]["object"]["customer"] = "cus_early_gone".into();
    deliver_and_handle(&app, &deleted).await;

    let invoice = "in_early_gone";
    fail_on(
        &app,
        invoice,
        ("cus_early_gone", "sub_early_gone"),
        "do_not_honor",
        [],
    )
    .await;
    let closed = app.case_when(invoice, |c| c["state"] == "closed").await;
    assert!(story(&closed).contains("canceled in Stripe"), "{closed}");
    assert_eq!(closed["next_attempt_at"], Value::Null);
    app.advance_clock(3 * DAY).await;
    assert!(app.stripe.charges().is_empty(), "no retry is charged");
}

#[tokio::test]
async fn a_new_card_before_its_failure_arrived_is_tried_when_the_case_opens() {
    let (app, _policy) = app().await;
    app.stripe
        .add_customer("cus_early_card", customer("cancel"));
    // The customer made a new card their default a minute after the failure; Stripe delivered
    // that first.
    let new_card = customer_updated(
        "evt_early_card",
        "cus_early_card",
        unix_now() + 60,
        "America/Chicago",
        Some("pm_early_new"),
    );
    deliver_and_handle(&app, &new_card).await;

    // A decline no schedule retries: only the new card brings a retry.
    let invoice = "in_early_card";
    fail_on(
        &app,
        invoice,
        ("cus_early_card", "sub_early_card"),
        "lost_card",
        [],
    )
    .await;
    let case = app
        .case_when(invoice, |c| {
            c["decline"]["class"].is_string() && c["next_attempt_at"].is_string()
        })
        .await;
    assert_eq!(case["new_payment_method"]["id"], "pm_early_new", "{case}");
    assert_eq!(case["state"], "retrying");
    app.advance_clock(DAY).await;
    let recovered = app.case_when(invoice, |c| c["state"] == "recovered").await;
    assert_eq!(recovered["recovered_by"], "retry");
    assert_eq!(app.stripe.charges().len(), 1);
}

#[tokio::test]
async fn a_dispute_before_its_failure_arrived_holds_the_case_it_opens() {
    let (app, _policy) = app().await;
    app.stripe
        .add_customer("cus_early_dispute", customer("cancel"));
    app.stripe.add_charge(
        "ch_early_disputed",
        ChargeRecord {
            customer: Some("cus_early_dispute".into()),
            brand: "visa",
            fingerprint: "fp_early_disputed",
        },
    );
    let dispute = dispute_event(
        "charge.dispute.created",
        "evt_early_dispute",
        "ch_early_disputed",
        "needs_response",
    );
    deliver_and_handle(&app, &serde_json::from_slice(&dispute).unwrap()).await;

    let invoice = "in_early_dispute";
    failing(
        &app,
        invoice,
        "cus_early_dispute",
        "sub_early_dispute",
        "do_not_honor",
    )
    .await;
    let held = app.case_when(invoice, |c| c["state"] == "on_hold").await;
    assert!(story(&held).contains("evt_early_dispute"), "{held}");
    app.advance_clock(2 * DAY).await;
    assert!(
        app.stripe.charges().is_empty(),
        "nothing charged while held"
    );
}

#[tokio::test]
async fn the_newest_time_zone_before_the_failure_wins_by_stripes_time_not_by_arrival() {
    let (app, _policy) = app().await;
    // A customer Stripe cannot show: the case opens in the invoice's country's zone, and only the
    // kept events tell it better.
    let now = unix_now();
    let newer = customer_updated(
        "evt_tz_newer",
        "cus_early_tz",
        now + 120,
        "Asia/Tokyo",
        None,
    );
    let older = customer_updated(
        "evt_tz_older",
        "cus_early_tz",
        now + 60,
        "Europe/Berlin",
        None,
    );
    deliver_and_handle(&app, &newer).await;
    deliver_and_handle(&app, &older).await;

    let invoice = "in_early_tz";
    failing(
        &app,
        invoice,
        "cus_early_tz",
        "sub_early_tz",
        "do_not_honor",
    )
    .await;
    let case = app
        .case_when(invoice, |c| c["customer_timezone"] == "Asia/Tokyo")
        .await;
    assert!(story(&case).contains("evt_tz_newer"), "{case}");
}
