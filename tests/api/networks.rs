//! The card networks' rules through the whole service: what a network's code asks of a card, a
//! rule that starts on its day, and limits counted the way the networks count them — signed
//! webhooks in, the worker on the test clock, charges to the fake Stripe.

use jiff::ToSpan;
use recoup::server::Role;
use serde_json::Value;

use crate::fake_stripe::{Decline, Invoice, Outcome};
use crate::helpers::{API_TOKENS, Recoup, SETTLE, TestApp, failure_of, wait_until};

const CUSTOMER: &str = "cus_R3cvP0qK8yWm2d";
const HOUR: i64 = 3_600;
const DAY: i64 = 24 * HOUR;

/// The app on the test clock with a policy file and, when given, a networks file of its own (kept
/// in the returned directory).
async fn app_with(policy: &str, networks: Option<&str>) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let policy_path = dir.path().join("policy.toml");
    std::fs::write(&policy_path, policy).unwrap();
    let networks_path = dir.path().join("networks.toml");
    let mut env = vec![
        ("RECOUP_API_TOKENS", API_TOKENS),
        ("RECOUP_TEST_CLOCK", "1"),
        ("RECOUP_POLICY", policy_path.to_str().unwrap()),
    ];
    if let Some(networks) = networks {
        std::fs::write(&networks_path, networks).unwrap();
        env.push(("RECOUP_NETWORKS", networks_path.to_str().unwrap()));
    }
    (TestApp::spawn_as(Role::All, &env).await, dir)
}

/// A policy that retries ambiguous and soft declines after `gaps`, sends no nudges.
fn policy(gaps: &str) -> String {
    format!(
        "version = 1\n\n[retries]\nsoft = {gaps}\nambiguous = {gaps}\nwithin = \"20d\"\n\n\
         [nudges]\nstep = []\n"
    )
}

/// Stripe's failure of `invoice_id`'s first attempt, for `amount` cents.
fn failure_for(invoice_id: &str, amount: i64) -> Vec<u8> {
    let mut event: Value = serde_json::from_slice(&failure_of(invoice_id)).unwrap();
    event["data"]["object"]["amount_due"] = amount.into();
    event["data"]["object"]["amount_remaining"] = amount.into();
    serde_json::to_vec(&event).unwrap()
}

fn timeline(case: &Value) -> String {
    case["timeline"].to_string()
}

#[tokio::test]
async fn visa_57_is_retried_before_the_day_it_becomes_category_1_and_never_after() {
    // The built-in rules with Visa's change of 57 moved to four or five days from now: the test
    // clock only moves forward, and the change must happen on its day without a release.
    let today = jiff::Zoned::now()
        .with_time_zone(jiff::tz::TimeZone::UTC)
        .date();
    let change = today.checked_add(5.days()).unwrap();
    let built_in = include_str!("../../config/networks.toml");
    assert!(built_in.contains("from = 2026-10-25"));
    let networks = built_in.replace("from = 2026-10-25", &format!("from = {change}"));
    let (app, _dir) = app_with(&policy(r#"["3d", "3d", "3d"]"#), Some(&networks)).await;

    let fifty_seven = Decline {
        network_decline_code: Some("57"),
        ..Decline::visa("generic_decline")
    };
    let invoice = "in_visa_57";
    let mut stripe_invoice = Invoice::failed(CUSTOMER, fifty_seven.clone());
    for _ in 0..3 {
        stripe_invoice
            .outcomes
            .push_back(Outcome::Decline(fifty_seven.clone()));
    }
    let case = app.fail(invoice, stripe_invoice).await;
    assert_eq!(case["decline"]["class"], "ambiguous", "{case}");

    // Before the change: a retry, declined with 57 again, and another retry planned.
    app.advance_clock(4 * DAY).await;
    let retried = app
        .case_when(invoice, |c| c["attempts"].as_array().unwrap().len() == 2)
        .await;
    assert_eq!(retried["decline"]["class"], "ambiguous", "{retried}");
    assert!(retried["next_attempt_at"].is_string(), "{retried}");

    // After it: the next retry's 57 is category 1, and the card is never tried again.
    app.advance_clock(4 * DAY).await;
    let stopped = app
        .case_when(invoice, |c| c["attempts"].as_array().unwrap().len() == 3)
        .await;
    assert_eq!(stopped["decline"]["class"], "hard", "{stopped}");
    assert!(
        timeline(&stopped).contains("Visa category 1 decline (response 57)"),
        "{stopped}"
    );
    app.advance_clock(15 * DAY).await;
    let later = app.case_when(invoice, |c| c["decision"].is_object()).await;
    assert_eq!(later["attempts"].as_array().unwrap().len(), 3, "{later}");
    assert_eq!(app.stripe.pay_requests(invoice).len(), 2);
}

#[tokio::test]
async fn a_mastercard_03_stops_every_invoice_on_the_card() {
    let (app, _dir) = app_with(&policy(r#"["1d", "1d"]"#), None).await;
    let stopped = app
        .fail(
            "in_mc_03",
            Invoice::failed(CUSTOMER, Decline::mastercard("generic_decline", Some("03"))),
        )
        .await;
    assert_eq!(stopped["decline"]["class"], "hard", "{stopped}");
    assert!(
        timeline(&stopped).contains("Mastercard advice 03"),
        "{stopped}"
    );

    // Another invoice on the same card, declined for insufficient funds: its own decline would be
    // retried, but the card's 03 binds it too.
    let other = "in_mc_same_card";
    app.fail(
        other,
        Invoice::failed(CUSTOMER, Decline::mastercard("insufficient_funds", None)),
    )
    .await;
    app.advance_clock(30 * DAY).await;
    let held = app
        .case_when(other, |c| {
            timeline(c).contains("said never to try it again")
        })
        .await;
    assert!(
        timeline(&held).contains("retry held back by a network rule"),
        "{held}"
    );
    assert!(app.stripe.pay_requests("in_mc_03").is_empty());
    assert!(app.stripe.pay_requests(other).is_empty());
}

#[tokio::test]
async fn mastercard_advice_25_waits_a_day_and_its_insufficient_funds_decline_costs_a_fee() {
    let (app, _dir) = app_with(&policy(r#"["1h", "1h"]"#), None).await;
    // A decline that waits for no payday, so only the advice can hold the retry a day.
    let advised = Decline::mastercard("try_again_later", Some("25"));
    let mut stripe_invoice = Invoice::failed(CUSTOMER, advised);
    stripe_invoice
        .outcomes
        .push_back(Outcome::Decline(Decline::mastercard(
            "insufficient_funds",
            Some("25"),
        )));
    let invoice = "in_mc_25";
    let waited = app.fail(invoice, stripe_invoice).await;
    let failed_at: jiff::Timestamp = waited["failed_at"].as_str().unwrap().parse().unwrap();
    let next: jiff::Timestamp = waited["next_attempt_at"].as_str().unwrap().parse().unwrap();
    assert!(
        next >= failed_at + jiff::SignedDuration::from_hours(24),
        "{waited}"
    );

    // The same decline on a Visa, without the advice: the policy's hour (in the daytime).
    let visa = "in_visa_no_advice";
    let plain = app
        .fail(
            visa,
            Invoice::failed(
                "cus_Visa0nly4Tst",
                Decline {
                    fingerprint: "Vz0Other9Card1x",
                    ..Decline::visa("try_again_later")
                },
            ),
        )
        .await;
    let failed_at: jiff::Timestamp = plain["failed_at"].as_str().unwrap().parse().unwrap();
    let next: jiff::Timestamp = plain["next_attempt_at"].as_str().unwrap().parse().unwrap();
    assert!(
        next < failed_at + jiff::SignedDuration::from_hours(24),
        "{plain}"
    );

    // The retry, a day on, is declined for insufficient funds again: a fee on the ledger.
    app.advance_clock(2 * DAY).await;
    let charged = app
        .case_when(invoice, |c| c["attempts"].as_array().unwrap().len() == 2)
        .await;
    assert!(
        timeline(&charged)
            .contains("estimated network fee $0.02 (mastercard insufficient-funds decline)"),
        "{charged}"
    );
    let sample = "recoup_network_fees_estimated_total{brand=\"mastercard\",rule=\"mastercard \
                  insufficient-funds decline\"}";
    wait_until("the fee in the metrics", SETTLE, || async {
        app.get("/metrics")
            .await
            .text
            .lines()
            .any(|l| l.starts_with(sample))
    })
    .await;
    let metrics = app.get("/metrics").await.text;
    let value: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(sample))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!((value - 0.02).abs() < 1e-9, "{value}");

    // The next retry (on the next payday, after an insufficient-funds decline) knows what it may
    // cost before it is made.
    app.advance_clock(12 * DAY).await;
    let paid = app.case_when(invoice, |c| c["state"] == "recovered").await;
    assert!(
        timeline(&paid).contains(
            "declined like the last attempt, it costs an estimated $0.02 (mastercard \
             insufficient-funds decline)"
        ),
        "{paid}"
    );
}

#[tokio::test]
async fn two_amounts_on_one_mastercard_are_counted_apart_where_the_rule_keys_by_amount() {
    // One limit: two declines of one amount on one card in 30 days (the real one is 35).
    let networks = "version = 1\n\n[[rule]]\nname = \"mastercard declines per amount\"\n\
                    brand = \"mastercard\"\ncounts = \"declines\"\nkey = [\"amount\"]\nmax = 2\n\
                    per = \"30d\"\nresets = \"approval\"\nsource = \"a test\"\n";
    let (app, _dir) = app_with(&policy(r#"["1d", "1d", "1d"]"#), Some(networks)).await;
    let declined = Decline::mastercard("generic_decline", None);
    let invoices = [("in_mc_small", 4_900), ("in_mc_large", 9_900)];
    for (invoice, amount) in invoices {
        let mut stripe_invoice = Invoice::failed(CUSTOMER, declined.clone());
        stripe_invoice.amount_due = amount;
        for _ in 0..3 {
            stripe_invoice
                .outcomes
                .push_back(Outcome::Decline(declined.clone()));
        }
        app.stripe.add_invoice(invoice, stripe_invoice);
        app.deliver(failure_for(invoice, amount)).await;
        app.case_when(invoice, |c| c["decline"]["class"].is_string())
            .await;
    }
    // Counted per card, the two first declines would leave no retry at all; per amount, each
    // invoice has one, and the next is dropped when due.
    app.advance_clock(3 * DAY).await;
    for (invoice, _) in invoices {
        app.case_when(invoice, |c| c["attempts"].as_array().unwrap().len() == 2)
            .await;
    }
    app.advance_clock(3 * DAY).await;
    for (invoice, _) in invoices {
        let case = app
            .case_when(invoice, |c| {
                timeline(c).contains("dropped: mastercard declines per amount")
            })
            .await;
        assert_eq!(case["attempts"].as_array().unwrap().len(), 2, "{case}");
        assert_eq!(app.stripe.pay_requests(invoice).len(), 1, "{invoice}");
    }
}
