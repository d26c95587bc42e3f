//! Nudge channels against real peers: a real SMTP server, an HTTP receiver that verifies the
//! signature the way a business would, and a Twilio-style SMS API; and the templates they carry.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use recoup::config::{NotifySettings, Secrets};
use recoup::notify::templates::{Context, format_amount};
use recoup::notify::{Delivery, Notifier, Nudge, Recipient};
use recoup::policy::{Channel, NudgeKind};
use recoup::server::Role;
use recoup::webhook::signature::{Verifier, unix_now};
use secrecy::SecretString;

use crate::fake_stripe::{Customer, Decline, Invoice, Outcome, Subscription};
use crate::helpers::{
    API_TOKENS, BlackHoleProxy, LINKS, PUBLIC_URL, Recoup, SETTLE, TestApp, TestRedis, failure_at,
    failure_of, invoice_event, metric_value, wait_until,
};
use crate::smtp_sink::SmtpSink;

const FROM: &str = "Acme Billing <billing@acme.example>";
const NUDGE_SECRET: &str = "whsec_nudges_for_acme_7f3a9c";

/// Requests an HTTP peer received, and the statuses it answers with (200 once they run out).
#[derive(Clone, Default)]
struct Peer {
    received: Arc<Mutex<Vec<(HeaderMap, String)>>>,
    answers: Arc<Mutex<VecDeque<u16>>>,
}

impl Peer {
    async fn start(path: &str, answers: &[u16]) -> (Self, String) {
        let peer = Peer::default();
        peer.answers.lock().unwrap().extend(answers);
        let app = axum::Router::new()
            .route(path, post(receive))
            .with_state(peer.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (peer, url)
    }

    fn received(&self) -> Vec<(HeaderMap, String)> {
        self.received.lock().unwrap().clone()
    }
}

async fn receive(State(peer): State<Peer>, headers: HeaderMap, body: String) -> StatusCode {
    peer.received.lock().unwrap().push((headers, body));
    let status = peer.answers.lock().unwrap().pop_front().unwrap_or(200);
    StatusCode::from_u16(status).unwrap()
}

fn settings() -> NotifySettings {
    NotifySettings {
        email_from: Some(FROM.to_owned()),
        retries: 2,
        ..NotifySettings::default()
    }
}

fn nudge(notifier: &Notifier, kind_tier: &str, locales: &[&str], to: Recipient) -> Nudge {
    let locales: Vec<String> = locales.iter().map(|l| (*l).to_owned()).collect();
    let language = locales.first().map_or("en", |l| &l[..2]);
    let context = Context {
        customer_name: "Dana Whitfield".into(),
        amount: format_amount(4900, "usd", language),
        plan: "Pro monthly".into(),
        update_url: "https://billing.stripe.com/p/session/test_YWNjdF8x".into(),
        business: "Acme".into(),
        ..Context::default()
    };
    Nudge {
        id: Nudge::id_for("in_1QaZ4rB7WZ01zgkWfT9s8KpM", NudgeKind::PaymentFailed, 1),
        kind: NudgeKind::PaymentFailed,
        tier: 1,
        customer_id: "cus_R3cvP0qK8yWm2d".into(),
        invoice_id: Some("in_1QaZ4rB7WZ01zgkWfT9s8KpM".into()),
        amount_due: 4900,
        currency: "usd".into(),
        update_url: Some(context.update_url.clone()),
        feedback_url: None,
        to,
        message: notifier
            .templates
            .render(kind_tier, &locales, &context)
            .unwrap(),
    }
}

/// A real SMTP server, and a notifier that emails through it.
fn emailing() -> (SmtpSink, Notifier) {
    let sink = SmtpSink::start();
    let secrets = Secrets {
        smtp_url: Some(SecretString::from(sink.url())),
        ..Secrets::default()
    };
    let notifier = Notifier::new(&settings(), &secrets).unwrap();
    (sink, notifier)
}

fn dana() -> Recipient {
    Recipient {
        name: Some("Dana Whitfield".into()),
        email: Some("dana@example.com".into()),
        phone: Some("+13125550123".into()),
        sms_opt_in: false,
    }
}

#[tokio::test]
async fn an_email_nudge_arrives_with_subject_text_html_link_and_language() {
    let (sink, notifier) = emailing();
    assert_eq!(notifier.channels(), [Channel::Email]);
    let german = nudge(&notifier, "payment_failed-1", &["de-DE"], dana());
    let results = notifier.deliver(&german, &[Channel::Email]).await;
    assert_eq!(results, [(Channel::Email, Delivery::Sent)]);

    let mails = sink.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].from, "billing@acme.example");
    assert_eq!(mails[0].to, ["dana@example.com"]);
    let message = mails[0].parsed();
    assert_eq!(
        message.subject(),
        Some("Ihre Zahlung an Acme ist nicht durchgegangen")
    );
    let text = mails[0].text();
    assert!(text.contains("Hallo Dana Whitfield"), "{text}");
    assert!(text.contains("49,00 $"), "{text}");
    assert!(
        text.contains("https://billing.stripe.com/p/session/test_YWNjdF8x"),
        "{text}"
    );
    // Everything inserted into HTML is escaped, `/` included (`&#x2f;`), which browsers undo.
    let html = message.body_html(0).unwrap().replace("&#x2f;", "/");
    assert!(
        html.contains(r#"href="https://billing.stripe.com/p/session/test_YWNjdF8x""#),
        "{html}"
    );
    assert!(html.contains(r#"<html lang="de">"#));
}

#[tokio::test]
async fn a_busy_mail_server_is_tried_again_and_a_refused_address_is_not() {
    let (sink, notifier) = emailing();
    sink.busy_for(1);
    let english = nudge(&notifier, "payment_failed-2", &["en-US"], dana());
    let results = notifier.deliver(&english, &[Channel::Email]).await;
    assert_eq!(results, [(Channel::Email, Delivery::Sent)]);
    assert_eq!(sink.mails().len(), 1);

    let refused = Recipient {
        email: Some("reject@example.com".into()),
        ..dana()
    };
    let before = sink.sessions();
    let results = notifier
        .deliver(
            &nudge(&notifier, "payment_failed-2", &[], refused),
            &[Channel::Email],
        )
        .await;
    let [(Channel::Email, Delivery::Failed { error, passing })] = results.as_slice() else {
        panic!("{results:?}");
    };
    assert!(
        error.contains("550") || error.contains("permanent"),
        "{error}"
    );
    assert!(!passing, "a 550 does not pass");
    assert_eq!(
        sink.sessions() - before,
        1,
        "a permanent refusal is not retried"
    );
    // Sent again (its answer lost), it is the same message: the nudge's id is its Message-ID.
    notifier.deliver(&english, &[Channel::Email]).await;
    let ids: Vec<String> = sink
        .mails()
        .iter()
        .map(|m| m.parsed().message_id().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        ids,
        vec![format!("{}@acme.example", english.id); 2],
        "{ids:?}"
    );
}

/// Sends one nudge to a webhook receiver answering `answers` (then 200).
async fn to_webhook(answers: &[u16]) -> (Peer, Vec<(Channel, Delivery)>) {
    let (peer, url) = Peer::start("/nudges", answers).await;
    let settings = NotifySettings {
        webhook_url: Some(format!("{url}/nudges")),
        ..settings()
    };
    let secrets = Secrets {
        nudge_webhook_secret: Some(SecretString::from(NUDGE_SECRET)),
        ..Secrets::default()
    };
    let notifier = Notifier::new(&settings, &secrets).unwrap();
    let nudge = nudge(&notifier, "payment_failed-1", &[], dana());
    let results = notifier.deliver(&nudge, &[Channel::Webhook]).await;
    (peer, results)
}

#[tokio::test]
async fn the_nudge_webhook_is_signed_like_stripe_and_retried_on_a_server_error() {
    let (peer, results) = to_webhook(&[500, 503]).await;
    assert_eq!(results, [(Channel::Webhook, Delivery::Sent)]);

    let received = peer.received();
    assert_eq!(received.len(), 3, "two server errors, then delivered");
    let (headers, body) = received.last().unwrap();
    // Verified with the very code that verifies Stripe's webhooks.
    let verifier = Verifier::new([NUDGE_SECRET.as_bytes()], 300);
    let header = headers.get("recoup-signature").unwrap().to_str().unwrap();
    verifier
        .verify(Some(header), body.as_bytes(), unix_now())
        .expect("a valid signature");
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(json["type"], "recoup.nudge");
    assert_eq!(
        json["id"],
        Nudge::id_for("in_1QaZ4rB7WZ01zgkWfT9s8KpM", NudgeKind::PaymentFailed, 1)
    );
    assert_eq!(json["kind"], "payment_failed");
    assert_eq!(json["tier"], 1);
    assert_eq!(json["customer_id"], "cus_R3cvP0qK8yWm2d");
    assert_eq!(json["invoice_id"], "in_1QaZ4rB7WZ01zgkWfT9s8KpM");
    assert_eq!(json["amount_due"], 4900);
    assert_eq!(json["currency"], "usd");
    assert_eq!(
        json["update_url"],
        "https://billing.stripe.com/p/session/test_YWNjdF8x"
    );
    assert_eq!(json["subject"], "Your Acme payment didn't go through");
    assert!(json["text"].as_str().unwrap().contains("$49.00"));

    // A refusal that is not the receiver's passing trouble is not retried.
    let (refusing, results) = to_webhook(&[400]).await;
    assert!(
        matches!(results[0].1, Delivery::Failed { .. }),
        "{results:?}"
    );
    assert_eq!(refusing.received().len(), 1);
}

#[tokio::test]
async fn sms_goes_only_to_customers_who_opted_in() {
    let (peer, base) = Peer::start("/2010-04-01/Accounts/AC123/Messages.json", &[]).await;
    let settings = NotifySettings {
        sms_api_base: Some(base),
        sms_account_sid: Some("AC123".into()),
        sms_from: Some("+13125550100".into()),
        ..settings()
    };
    let secrets = Secrets {
        sms_auth_token: Some(SecretString::from("twilio_token_5b9e")),
        ..Secrets::default()
    };
    let notifier = Notifier::new(&settings, &secrets).unwrap();
    let quiet = notifier
        .deliver(
            &nudge(&notifier, "payment_failed-1", &[], dana()),
            &[Channel::Sms, Channel::Email],
        )
        .await;
    assert!(
        matches!(&quiet[0], (Channel::Sms, Delivery::Skipped { why }) if why.contains("opted in"))
    );
    assert!(
        matches!(&quiet[1], (Channel::Email, Delivery::Skipped { why }) if why.contains("off"))
    );
    assert!(peer.received().is_empty());

    let opted_in = Recipient {
        sms_opt_in: true,
        ..dana()
    };
    let sent = notifier
        .deliver(
            &nudge(&notifier, "payment_failed-1", &[], opted_in),
            &[Channel::Sms],
        )
        .await;
    assert_eq!(sent, [(Channel::Sms, Delivery::Sent)]);
    let (headers, body) = peer.received().pop().unwrap();
    let auth = headers.get("authorization").unwrap().to_str().unwrap();
    assert!(auth.starts_with("Basic "), "{auth}");
    let form: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes())
        .into_owned()
        .collect();
    assert!(
        form.contains(&("To".into(), "+13125550123".into())),
        "{form:?}"
    );
    assert!(
        form.contains(&("From".into(), "+13125550100".into())),
        "{form:?}"
    );
    let text = &form.iter().find(|(k, _)| k == "Body").unwrap().1;
    assert!(
        text.ends_with("https://billing.stripe.com/p/session/test_YWNjdF8x"),
        "{text}"
    );
}

/// Why the notifier refuses these settings.
fn refusal(settings: NotifySettings, secrets: Secrets) -> String {
    Notifier::new(&settings, &secrets)
        .err()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn a_channel_set_up_halfway_is_refused_naming_what_is_missing() {
    let smtp = |url: &str| Secrets {
        smtp_url: Some(SecretString::from(url)),
        ..Secrets::default()
    };
    let from = |from: Option<&str>| NotifySettings {
        email_from: from.map(str::to_owned),
        ..settings()
    };
    let err = refusal(from(None), smtp("smtp://127.0.0.1:2525"));
    assert!(err.starts_with("RECOUP_EMAIL_FROM: required"), "{err}");
    let err = refusal(from(Some("billing at acme")), smtp("smtp://127.0.0.1:2525"));
    assert!(err.starts_with("RECOUP_EMAIL_FROM"), "{err}");
    let err = refusal(settings(), smtp("ftp://user:hunter2@mail.example"));
    assert!(
        err.starts_with("RECOUP_SMTP_URL") && !err.contains("hunter2"),
        "{err}"
    );

    let unsigned = NotifySettings {
        webhook_url: Some("https://acme.example/nudges".into()),
        ..settings()
    };
    let err = refusal(unsigned, Secrets::default());
    assert!(err.starts_with("RECOUP_NUDGE_WEBHOOK_SECRET"), "{err}");
    let half_sms = NotifySettings {
        sms_api_base: Some("https://api.twilio.com".into()),
        ..settings()
    };
    let err = refusal(half_sms, Secrets::default());
    assert!(err.contains("RECOUP_SMS_ACCOUNT_SID"), "{err}");
    let nowhere = NotifySettings {
        templates: "/nonexistent/templates".into(),
        ..settings()
    };
    let err = refusal(nowhere, Secrets::default());
    assert!(err.contains("/nonexistent/templates"), "{err}");
}

/// recoup with its shipped policy (nudges on), email through a real SMTP server, update links
/// under [`PUBLIC_URL`], and the daily card scan looking every second whether the (test clock's)
/// day has been scanned.
pub(crate) async fn emailing_app() -> (TestApp, SmtpSink) {
    emailing_app_with("config/policy.toml").await
}

/// The same, with the policy file at `policy`.
async fn emailing_app_with(policy: &str) -> (TestApp, SmtpSink) {
    let sink = SmtpSink::start();
    let smtp = sink.url();
    let app = TestApp::spawn_as(
        Role::All,
        &[
            ("RECOUP_API_TOKENS", API_TOKENS),
            ("RECOUP_TEST_CLOCK", "1"),
            ("RECOUP_POLICY", policy),
            ("RECOUP_SMTP_URL", &smtp),
            ("RECOUP_EMAIL_FROM", FROM),
            ("RECOUP_WORKER__SCAN_INTERVAL_SECS", "1"),
            LINKS[0],
            LINKS[1],
        ],
    )
    .await;
    (app, sink)
}

/// A policy whose note that a payment failed goes within the hour whatever the decline (the
/// shipped one waits 14 days where a retry may fix it), and the final notice.
const NOTE_AT_ONCE: &str = r#"
version = 1
[[nudges.step]]
kind = "payment_failed"
tier = 1
after = "1h"
[[nudges.step]]
kind = "final_notice"
tier = 1
after = "50d"
"#;

/// recoup emailing under [`NOTE_AT_ONCE`], with a customer in Chicago whose card is good for
/// years: for tests of the note of a decline a retry may still fix (what the customer does with
/// it, which notes a customer gets), not of when the shipped policy sends it.
pub(crate) async fn noting_app() -> (TestApp, SmtpSink, tempfile::TempDir) {
    let (app, sink, dir) = emailing_app_under(NOTE_AT_ONCE).await;
    app.stripe
        .add_customer(CUSTOMER, Customer::dana((12, 2030)));
    (app, sink, dir)
}

/// recoup emailing under a policy file of `text`. The policy's directory goes with the returned
/// guard.
async fn emailing_app_under(text: &str) -> (TestApp, SmtpSink, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(&policy, text).unwrap();
    let (app, sink) = emailing_app_with(policy.to_str().unwrap()).await;
    (app, sink, dir)
}

/// The same, with a customer in Chicago whom Stripe knows by name and address.
async fn nudging_app() -> (TestApp, SmtpSink) {
    let (app, sink) = emailing_app().await;
    app.stripe
        .add_customer(CUSTOMER, Customer::dana((12, 2026)));
    (app, sink)
}

const CUSTOMER: &str = "cus_R3cvP0qK8yWm2d";
const DAY: i64 = 86_400;

fn subjects(sink: &SmtpSink) -> Vec<String> {
    sink.mails().iter().map(|m| m.subject()).collect()
}

async fn emails(sink: &SmtpSink, count: usize) -> Vec<String> {
    wait_until(&format!("{count} emails"), SETTLE, || async {
        sink.mails().len() >= count
    })
    .await;
    subjects(sink)
}

/// The subjects of the emails about the invoice, leaving out card-expiry warnings.
fn dunning(sink: &SmtpSink) -> Vec<String> {
    subjects(sink)
        .into_iter()
        .filter(|s| s != "Your card is about to expire")
        .collect()
}

async fn dunning_emails(sink: &SmtpSink, count: usize) {
    wait_until(&format!("{count} dunning emails"), SETTLE, || async {
        dunning(sink).len() >= count
    })
    .await;
}

#[tokio::test]
async fn a_soft_decline_gets_its_nudges_in_daytime_and_a_thank_you_when_paid() {
    let (app, sink) = nudging_app().await;
    let invoice = "in_nudged_1";
    // Every retry declines too (a payday may fall within the days this test moves through), so
    // only the customer's own payment ends the case.
    let mut stripe_invoice = Invoice::failed(CUSTOMER, Decline::visa("insufficient_funds"));
    stripe_invoice.outcomes.extend(
        std::iter::repeat_with(|| Outcome::Decline(Decline::visa("insufficient_funds"))).take(8),
    );
    app.stripe.add_invoice(invoice, stripe_invoice);
    app.deliver(failure_of(invoice)).await;
    let opened = app
        .case_when(invoice, |c| c["decline"]["class"] == "soft")
        .await;
    assert_eq!(opened["customer_timezone"], "America/Chicago");
    assert!(sink.mails().is_empty(), "nothing before its time");
    // A soft decline's note waits 14 days, for the retries that usually fix it first.
    let failed_at = timestamp(&opened["failed_at"]);
    let note = opened["timers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["kind"] == "nudge")
        .map(|t| timestamp(&t["at"]))
        .expect("a note planned");
    assert!(
        note.duration_since(failed_at) >= jiff::SignedDuration::from_hours(14 * 24),
        "{opened}"
    );

    app.advance_into_daytime(14 * DAY, "America/Chicago").await;
    assert_eq!(
        emails(&sink, 1).await,
        ["Your Acme Billing payment didn't go through"]
    );
    let text = sink.mails()[0].text();
    assert!(text.contains("Hi Dana Whitfield"), "{text}");
    assert!(text.contains("$49.00"), "{text}");
    assert!(
        text.contains(&format!("{PUBLIC_URL}/fix/")),
        "the fix link is recoup's own update link: {text}"
    );
    assert!(
        app.stripe.portal_requests().is_empty(),
        "no portal session before the link is opened"
    );

    // No reminder between: the next message is the final notice on day 50; a card-expiry warning
    // may come between (the customer's card expires soon), which is not a dunning nudge.
    let waiting = app
        .case_when(invoice, |c| {
            c["timeline"]
                .to_string()
                .contains("next nudge final_notice tier 1")
        })
        .await;
    assert!(
        !waiting["timeline"]
            .to_string()
            .contains("payment_failed tier 2"),
        "{waiting}"
    );
    app.advance_into_daytime(36 * DAY, "America/Chicago").await;
    dunning_emails(&sink, 2).await;
    assert!(
        dunning(&sink)[1].starts_with("Final notice"),
        "{:?}",
        subjects(&sink)
    );

    // Paid (by the customer, in the portal): the sequence stops and one thank-you goes out.
    let paid = invoice_event(
        "invoice.paid",
        "evt_paid_nudged",
        invoice,
        unix_now() + 51 * DAY,
        1,
    );
    app.deliver(paid).await;
    dunning_emails(&sink, 3).await;
    assert_eq!(dunning(&sink)[2], "Thank you: your payment went through");
    app.advance_clock(30 * DAY).await;
    let case = app.case_when(invoice, |c| c["state"] == "recovered").await;
    assert_eq!(
        dunning(&sink).len(),
        3,
        "nothing after the thank-you: {:?}",
        subjects(&sink)
    );

    // Every nudge is on the case, each sent in the customer's daytime.
    let nudges = case["nudges"].as_array().unwrap();
    let kinds: Vec<(&str, u64)> = nudges
        .iter()
        .map(|n| (n["kind"].as_str().unwrap(), n["tier"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [("payment_failed", 1), ("final_notice", 1), ("recovered", 1)]
    );
    let chicago = jiff::tz::TimeZone::get("America/Chicago").unwrap();
    for nudge in &nudges[..2] {
        let at: jiff::Timestamp = nudge["at"].as_str().unwrap().parse().unwrap();
        let local = at.to_zoned(chicago.clone());
        assert!(
            (9..20).contains(&local.hour()),
            "a nudge in quiet hours: {local}"
        );
        assert_eq!(nudge["channel"], "email");
    }
    let story = case["timeline"].to_string();
    assert!(
        story.contains("payment_failed tier 1 (en/payment_failed-1): email sent"),
        "{story}"
    );
}

/// Fails the first attempt of `invoice`, of the customer's `subscription`, at `created` (Unix
/// seconds), as `TestApp::fail_at` does for the fixture's subscription. For [`noting_app`]: these
/// tests are about which notes go, not when the shipped policy sends them.
async fn fail_of(
    app: &TestApp,
    invoice: &str,
    subscription: &str,
    created: i64,
) -> serde_json::Value {
    // A decline a retry may fix: its note goes within the hour under [`noting_app`]'s policy.
    // Every retry declines again, so which notes go out never hangs on whether a retry came due
    // before them — that depends on the hour of the day the test runs at.
    let mut failed = Invoice::failed(CUSTOMER, Decline::visa("do_not_honor"));
    failed.outcomes = std::iter::repeat_with(|| Outcome::Decline(Decline::visa("do_not_honor")))
        .take(10)
        .collect();
    app.stripe.add_invoice(invoice, failed);
    let mut failure: serde_json::Value =
        serde_json::from_slice(&failure_at(invoice, created)).unwrap();
    failure["data"]["object"]["parent"]["subscription_details"]["subscription"] =
        subscription.into();
    app.deliver(serde_json::to_vec(&failure).unwrap()).await;
    app.case_when(invoice, |c| c["decline"]["class"].is_string())
        .await
}

#[tokio::test]
async fn a_burst_of_failures_for_one_customer_gets_one_nudge_a_day() {
    let (app, sink, _policy) = noting_app().await;
    let invoices = ["in_burst_1", "in_burst_2", "in_burst_3"];
    // Three subscriptions: the same one's invoices would be one conversation (the next test).
    for (n, invoice) in invoices.into_iter().enumerate() {
        fail_of(&app, invoice, &format!("sub_burst_{n}"), unix_now()).await;
    }

    app.advance_into_daytime(DAY, "America/Chicago").await;
    emails(&sink, 1).await;
    let mut held = 0;
    for invoice in invoices {
        let case = app
            .case_when(invoice, |c| {
                let story = c["timeline"].to_string();
                story.contains("nudge delivered") || story.contains("nudge held back")
            })
            .await;
        if case["timeline"].to_string().contains("nudge held back") {
            held += 1;
        }
    }
    assert_eq!(
        held, 2,
        "the customer's one nudge a day went to one invoice"
    );
    assert_eq!(sink.mails().len(), 1);
}

#[tokio::test]
async fn a_renewal_that_fails_while_the_last_invoice_is_unpaid_gets_no_second_note() {
    let (app, sink, _policy) = noting_app().await;
    let chicago = "America/Chicago";
    fail_of(&app, "in_month_1", "sub_monthly", unix_now()).await;
    app.advance_into_daytime(DAY, chicago).await;
    emails(&sink, 1).await;
    app.case_when("in_month_1", |c| story(c).contains("nudge delivered"))
        .await;

    // The next renewal fails too, on the same card, while the first is still unpaid.
    let now = app.advance_clock(1).await;
    fail_of(&app, "in_month_2", "sub_monthly", now.as_second()).await;
    app.advance_into_daytime(DAY, chicago).await;
    let renewal = app
        .case_when("in_month_2", |c| story(c).contains("nudge covered"))
        .await;
    let said = story(&renewal);
    assert!(
        said.contains("payment_failed tier 1 not sent: the customer had it at")
            && said.contains("about in_month_1, another invoice of subscription sub_monthly"),
        "{said}"
    );
    assert_eq!(
        renewal["nudged"][0]["covered_by"], "in_month_1",
        "{renewal}"
    );
    // Its final notice is still planned: the conversation goes on, once.
    assert!(said.contains("final_notice"), "{said}");
    assert_eq!(dunning(&sink).len(), 1, "{:?}", subjects(&sink));
}

#[tokio::test]
async fn a_customer_who_had_two_messages_gets_no_third_note_whatever_the_subscription() {
    let (app, sink, _policy) = noting_app().await;
    let chicago = "America/Chicago";
    let invoices = ["in_budget_1", "in_budget_2", "in_budget_3"];
    for (n, invoice) in invoices.into_iter().enumerate() {
        fail_of(&app, invoice, &format!("sub_budget_{n}"), unix_now()).await;
    }
    // One a day (the daily cap): the first two notes go out on two days...
    app.advance_into_daytime(DAY, chicago).await;
    emails(&sink, 1).await;
    app.advance_into_daytime(DAY, chicago).await;
    emails(&sink, 2).await;
    // ...and the third, on the third, is left unsent: the customer's budget is spent.
    app.advance_into_daytime(DAY, chicago).await;
    let mut covered = Vec::new();
    for invoice in invoices {
        let case = app
            .case_when(invoice, |c| {
                let said = story(c);
                said.contains("nudge delivered") || said.contains("nudge covered")
            })
            .await;
        let said = story(&case);
        if said.contains("nudge covered") {
            assert!(
                said.contains(
                    "payment_failed tier 1 not sent: the customer had 2 messages within 90 days, \
                     the most the policy sends a customer"
                ),
                "{said}"
            );
            // The final notice is still planned: the budget never holds it back.
            assert!(said.contains("final_notice"), "{said}");
            covered.push(invoice);
        }
    }
    assert_eq!(covered.len(), 1, "{covered:?}");
    assert_eq!(dunning(&sink).len(), 2, "{:?}", subjects(&sink));
}

/// Everything the case's timeline says, as one string.
fn story(case: &serde_json::Value) -> String {
    case["timeline"].to_string()
}

fn timestamp(value: &serde_json::Value) -> jiff::Timestamp {
    value.as_str().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_final_notice_the_mail_server_turned_away_is_delivered_later_in_daytime_and_grace_counts_from_then()
 {
    const POLICY: &str = r#"
version = 1
[nudges]
channels = ["email"]
[[nudges.step]]
kind = "final_notice"
tier = 1
after = "1h"
[end]
no_new_card = { action = "leave_past_due" }
grace = "7d"
"#;
    let (app, sink, _policy) = emailing_app_under(POLICY).await;
    app.stripe
        .add_customer(CUSTOMER, Customer::dana((12, 2030)));
    let chicago = "America/Chicago";
    let invoice = "in_notice_busy_1";
    sink.busy_for(u32::MAX);
    app.fail(
        invoice,
        Invoice::failed(CUSTOMER, Decline::visa("lost_card")),
    )
    .await;

    // The notice comes due while the mail server answers "451 try again later".
    app.advance_into_daytime(2 * 3_600, chicago).await;
    let refused = app
        .case_when(invoice, |c| story(c).contains("nudge not delivered"))
        .await;
    assert!(sink.mails().is_empty());
    let said = story(&refused);
    assert!(
        said.contains("451") && said.contains("tried again at"),
        "{said}"
    );
    let decide = |c: &serde_json::Value| {
        c["timers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["kind"] == "decide")
            .map(|t| timestamp(&t["at"]))
    };
    assert_eq!(decide(&refused), None, "no decision from a notice only due");

    // A day on, still busy: tried again, turned away again.
    app.advance_clock(DAY).await;
    let again = app
        .case_when(invoice, |c| story(c).contains("try 3 of 6"))
        .await;
    assert_eq!(decide(&again), None);

    // The server is back: the next try, the day after, delivers it.
    sink.busy_for(0);
    app.advance_clock(DAY).await;
    assert_eq!(emails(&sink, 1).await.len(), 1);
    assert!(
        subjects(&sink)[0].starts_with("Final notice"),
        "{:?}",
        subjects(&sink)
    );
    let delivered = app
        .case_when(invoice, |c| c["nudged"][0]["delivered_at"].is_string())
        .await;
    let delivered_at = timestamp(&delivered["nudged"][0]["delivered_at"]);
    let first_due = timestamp(&delivered["nudged"][0]["at"]);
    assert!(delivered_at >= first_due + jiff::SignedDuration::from_hours(40));
    let local = delivered_at.to_zoned(jiff::tz::TimeZone::get(chicago).unwrap());
    assert!(
        (9..20).contains(&local.hour()),
        "delivered in quiet hours: {local}"
    );
    let grace = jiff::SignedDuration::from_hours(7 * 24);
    assert_eq!(decide(&delivered), Some(delivered_at + grace));

    // Six days after the delivery nothing is decided; the seventh, the decision comes.
    app.advance_clock(6 * DAY).await;
    let waiting = app.case_when(invoice, |c| c["decision"].is_null()).await;
    assert_eq!(waiting["state"], "awaiting_customer");
    app.advance_clock(DAY + 3_600).await;
    let decided = app
        .case_when(invoice, |c| c["decision"]["outcome"] == "carried_out")
        .await;
    assert_eq!(decided["decision"]["action"], "leave_past_due");
    assert_eq!(timestamp(&decided["decision"]["at"]), delivered_at + grace);
    // A retried nudge is sent at least once (a worker that loses its claim mid-send under load may
    // send it again, under the same nudge id): every mail is the final notice, nothing else.
    assert!(
        subjects(&sink)
            .iter()
            .all(|s| s.starts_with("Final notice")),
        "only the final notice went out: {:?}",
        subjects(&sink)
    );
}

#[tokio::test]
async fn a_nudge_the_webhook_answered_503_for_is_delivered_later_with_the_same_id() {
    // Every quick try of the first delivery meets a 503; the next answers are 200.
    let (peer, url) = Peer::start("/nudges", &[503; 4]).await;
    let webhook_url = format!("{url}/nudges");
    let invoice = "in_webhook_busy_1";
    let app = webhook_nudging_app(&webhook_url, &[("RECOUP_NOTIFY__RETRIES", "3")], invoice).await;

    app.advance_into_daytime(DAY, "America/Chicago").await;
    let refused = app
        .case_when(invoice, |c| story(c).contains("nudge not delivered"))
        .await;
    assert_eq!(peer.received().len(), 4, "the quick tries, all refused");
    assert!(story(&refused).contains("503"), "{}", story(&refused));
    assert!(refused["nudged"][0]["delivered_at"].is_null());

    // The retry, an hour or more later and still in the customer's daytime, is taken.
    app.advance_clock(2 * 3_600).await;
    let delivered = app
        .case_when(invoice, |c| c["nudged"][0]["delivered_at"].is_string())
        .await;
    let received = peer.received();
    assert_eq!(received.len(), 5);
    let ids: Vec<serde_json::Value> = received
        .iter()
        .map(|(_, body)| serde_json::from_str::<serde_json::Value>(body).unwrap()["id"].clone())
        .collect();
    assert!(ids[0].as_str().unwrap().starts_with("nudge_"), "{ids:?}");
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "one id on every try: {ids:?}"
    );
    assert_eq!(delivered["nudges"][0]["channel"], "webhook");
    assert_eq!(
        delivered["nudges"][0]["at"],
        delivered["nudged"][0]["delivered_at"]
    );
}

#[tokio::test]
async fn a_nudge_delivered_while_redis_was_unreachable_is_recorded_once_it_is_back() {
    // Redis behind a proxy that drops every byte from the moment the webhook takes the nudge (once
    // the clock's move has been answered), for longer than a store operation may take: the
    // result comes back to a store that cannot answer.
    let redis = TestRedis::start();
    let proxy = Arc::new(BlackHoleProxy::start(redis.port).await);
    let received = Arc::new(Mutex::new(0_usize));
    let moved = Arc::new(tokio::sync::Notify::new());
    let receive = {
        let (proxy, received, moved) = (proxy.clone(), received.clone(), moved.clone());
        move || async move {
            *received.lock().unwrap() += 1;
            moved.notified().await;
            proxy.open_hole();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(1_500)).await;
                proxy.close_hole();
            });
            StatusCode::OK
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let webhook_url = format!("http://{}/nudges", listener.local_addr().unwrap());
    let peer = axum::Router::new().route("/nudges", post(receive));
    tokio::spawn(async move { axum::serve(listener, peer).await });
    let redis_url = proxy.url();
    let invoice = "in_webhook_hole_1";
    let app = webhook_nudging_app(
        &webhook_url,
        &[
            ("REDIS_URL", &redis_url),
            ("RECOUP_REDIS__TIMEOUT_MS", "300"),
        ],
        invoice,
    )
    .await;

    app.advance_into_daytime(DAY, "America/Chicago").await;
    moved.notify_one();
    // Recorded without the clock moving on: not left to the try an hour later, which would send
    // the customer the same message again.
    let delivered = app
        .case_when(invoice, |c| c["nudged"][0]["delivered_at"].is_string())
        .await;
    assert_eq!(*received.lock().unwrap(), 1);
    assert_eq!(
        delivered["nudges"].as_array().unwrap().len(),
        1,
        "{delivered}"
    );
    assert_eq!(delivered["nudges"][0]["channel"], "webhook");
}

/// recoup under the shipped policy, nudging through the webhook at `webhook_url` alone (with
/// `extra` settings), and `invoice` of a customer in Chicago failed on a card only they can
/// replace: its note is due within the hour.
async fn webhook_nudging_app(webhook_url: &str, extra: &[(&str, &str)], invoice: &str) -> TestApp {
    let mut env = vec![
        ("RECOUP_API_TOKENS", API_TOKENS),
        ("RECOUP_TEST_CLOCK", "1"),
        ("RECOUP_POLICY", "config/policy.toml"),
        ("RECOUP_NUDGE_WEBHOOK_URL", webhook_url),
        ("RECOUP_NUDGE_WEBHOOK_SECRET", NUDGE_SECRET),
        LINKS[0],
        LINKS[1],
    ];
    env.extend_from_slice(extra);
    let app = TestApp::spawn_as(Role::All, &env).await;
    app.stripe
        .add_customer(CUSTOMER, Customer::dana((12, 2030)));
    app.fail(
        invoice,
        Invoice::failed(CUSTOMER, Decline::visa("expired_card")),
    )
    .await;
    app
}

/// Waits for the expiring-card email about the customer's Visa 4242 expiring at the end of
/// `expiry` (`12/2026`), and returns its text.
async fn card_expiring_email(sink: &SmtpSink, expiry: &str) -> String {
    assert_eq!(emails(sink, 1).await, ["Your card is about to expire"]);
    let text = sink.mails()[0].text();
    assert!(
        text.contains(&format!("Visa ending 4242, expiring {expiry}")),
        "{text}"
    );
    text
}

/// `invoice.upcoming` for the customer, renewing at `renews` (unix seconds).
fn upcoming(event_id: &str, renews: i64) -> Vec<u8> {
    let mut event: serde_json::Value =
        serde_json::from_slice(&crate::helpers::fixture("invoice.upcoming")).unwrap();
    event["id"] = event_id.into();
    event["created"] = unix_now().into();
    event["data"]["object"]["next_payment_attempt"] = renews.into();
    serde_json::to_vec(&event).unwrap()
}

#[tokio::test]
async fn a_default_card_expiring_before_the_renewal_gets_one_card_expiring_nudge() {
    let (app, sink) = nudging_app().await;
    app.advance_into_daytime(1, "America/Chicago").await;
    // The mail server is busy for the first try: the card is not marked as warned, and the event
    // tried again delivers it.
    sink.busy_for(1);
    // The card is good through December 2026: a renewal in January finds it expired.
    let january: jiff::Timestamp = "2027-01-05T15:00:00Z".parse().unwrap();
    app.deliver(upcoming("evt_upcoming_1", january.as_second()))
        .await;
    let text = card_expiring_email(&sink, "12/2026").await;
    assert!(text.contains(&format!("{PUBLIC_URL}/fix/")), "{text}");

    // Told again (Stripe sends invoice.upcoming more than once), the card is not nudged again; a
    // renewal the card will still be good for is not nudged at all.
    app.deliver(upcoming("evt_upcoming_2", january.as_second()))
        .await;
    let december: jiff::Timestamp = "2026-12-20T15:00:00Z".parse().unwrap();
    app.deliver(upcoming("evt_upcoming_3", december.as_second()))
        .await;
    wait_until("both events to be handled", SETTLE, || async {
        app.redis.inbox_len().await == 0
    })
    .await;
    assert_eq!(sink.mails().len(), 1, "{:?}", subjects(&sink));
}

#[tokio::test]
async fn a_legacy_card_source_expiring_gets_one_nudge() {
    let (app, sink) = nudging_app().await;
    app.advance_into_daytime(1, "America/Chicago").await;
    app.deliver(crate::helpers::fixture("customer.source.expiring"))
        .await;
    card_expiring_email(&sink, "12/2026").await;
}

/// The customers waiting for their window before their expiring card's nudge goes out.
async fn waiting_for_window(app: &TestApp) -> Vec<String> {
    let mut redis = app.redis.conn().await;
    redis::cmd("ZRANGE")
        .arg("recoup:later:expiring")
        .arg(0)
        .arg(-1)
        .query_async(&mut redis)
        .await
        .unwrap()
}

/// Makes `customer` known to recoup through an invoice that failed and was paid at once (before
/// any nudge: no dunning message competes with the card's for the day).
async fn known_through_a_paid_invoice(app: &TestApp, invoice: &str, customer: &str) {
    app.stripe.add_invoice(
        invoice,
        Invoice::failed(customer, Decline::visa("insufficient_funds")),
    );
    let mut failed: serde_json::Value = serde_json::from_slice(&failure_of(invoice)).unwrap();
    failed["data"]["object"]["customer"] = customer.into();
    app.deliver(serde_json::to_vec(&failed).unwrap()).await;
    app.case_when(invoice, |c| c["decline"]["class"].is_string())
        .await;
    app.stripe.set_invoice_status(invoice, "paid");
    let mut paid: serde_json::Value = serde_json::from_slice(&crate::helpers::invoice_event(
        "invoice.paid",
        &format!("evt_paid_{invoice}"),
        invoice,
        unix_now(),
        1,
    ))
    .unwrap();
    paid["data"]["object"]["customer"] = customer.into();
    app.deliver(serde_json::to_vec(&paid).unwrap()).await;
    app.case_when(invoice, |c| c["state"] == "recovered").await;
}

#[tokio::test]
async fn the_daily_scan_nudges_a_subscriber_whose_card_will_expire_in_their_daytime_only() {
    let (app, sink) = emailing_app().await;
    // Cards good through the first month that starts 40 days or more from now: not due in the
    // scans of the first days, due from the first of that month (the scan looks 35 days ahead).
    let soon =
        jiff::Zoned::now().with_time_zone(jiff::tz::TimeZone::UTC) + jiff::Span::new().days(40);
    let month = soon
        .date()
        .first_of_month()
        .checked_add(jiff::Span::new().months(1))
        .unwrap();
    let expires = (month.month() as u32, month.year() as u32);
    let gone = "cus_Sc4nG0neC4nc3l";
    for customer in [CUSTOMER, gone] {
        app.stripe.add_customer(customer, Customer::dana(expires));
    }
    app.stripe
        .add_subscription("sub_scan_active", Subscription::active(CUSTOMER));
    app.stripe.add_subscription(
        "sub_scan_canceled",
        Subscription {
            status: "canceled",
            ..Subscription::active(gone)
        },
    );
    known_through_a_paid_invoice(&app, "in_scan_active", CUSTOMER).await;
    known_through_a_paid_invoice(&app, "in_scan_gone", gone).await;

    // That day's scan at 12:00 UTC finds 06:00 in Chicago: the subscriber's nudge waits for their
    // window; the customer whose subscription was canceled is left out.
    let dawn = month
        .at(12, 0, 0, 0)
        .to_zoned(jiff::tz::TimeZone::UTC)
        .unwrap()
        .timestamp();
    let now = app.advance_clock(1).await;
    app.advance_clock(dawn.as_second() - now.as_second()).await;
    wait_until(
        "the nudge to wait for the customer's window",
        Duration::from_secs(20),
        || async { waiting_for_window(&app).await == [CUSTOMER] },
    )
    .await;
    assert!(
        !subjects(&sink).contains(&"Your card is about to expire".to_owned()),
        "{:?}",
        subjects(&sink)
    );

    // At noon in Chicago it goes out, once, to the subscriber only.
    app.advance_into_daytime(1, "America/Chicago").await;
    card_expiring_email(&sink, &format!("{:02}/{}", month.month(), month.year())).await;
    wait_until("the waiting list to be taken", SETTLE, || async {
        waiting_for_window(&app).await.is_empty()
    })
    .await;
    assert_eq!(sink.mails().len(), 1, "{:?}", subjects(&sink));
}

#[tokio::test]
async fn a_customer_stripe_cannot_show_is_written_to_where_the_invoice_went() {
    // Nor its decline: one never read counts as ambiguous, whose note the shipped policy sends
    // after 14 days; this test is about where the note goes, so its policy sends it at once.
    let (app, sink, _policy) = emailing_app_under(NOTE_AT_ONCE).await;
    let invoice = "in_unknown_customer_1";
    app.deliver(failure_of(invoice)).await;
    let case = app.case_when(invoice, |c| c["state"] == "retrying").await;

    let zone = case["customer_timezone"].as_str().unwrap();
    app.advance_into_daytime(DAY, zone).await;
    emails(&sink, 1).await;
    let mail = sink.mails().remove(0);
    assert_eq!(
        mail.to,
        ["dana@example.com"],
        "the invoice's customer_email"
    );
    let text = mail.text();
    assert!(text.contains("Hi Dana Whitfield"), "{text}");
}

#[tokio::test]
async fn a_partly_paid_invoice_is_nudged_and_counted_for_what_is_still_due() {
    let (app, sink, _policy) = noting_app().await;
    let invoice = "in_partly_paid";
    app.stripe.add_invoice(
        invoice,
        Invoice::failed(CUSTOMER, Decline::visa("do_not_honor")),
    );
    // 20.00 of the 49.00 was paid already: 29.00 is still due. In a currency of its own, so that
    // no other test's recoveries (the metrics are the process's) add to the count.
    let mut event: serde_json::Value = serde_json::from_slice(&failure_of(invoice)).unwrap();
    event["data"]["object"]["currency"] = "chf".into();
    event["data"]["object"]["amount_paid"] = 2_000.into();
    event["data"]["object"]["amount_remaining"] = 2_900.into();
    app.deliver(serde_json::to_vec(&event).unwrap()).await;
    let opened = app
        .case_when(invoice, |c| c["decline"]["class"] == "ambiguous")
        .await;
    assert_eq!(opened["amount_remaining"], 2_900, "{opened}");

    app.advance_into_daytime(DAY, "America/Chicago").await;
    dunning_emails(&sink, 1).await;
    let mail = sink
        .mails()
        .into_iter()
        .find(|m| m.subject() == "Your Acme Billing payment didn't go through")
        .unwrap();
    let text = mail.text();
    assert!(
        text.contains(&format_amount(2_900, "chf", "en"))
            && !text.contains(&format_amount(4_900, "chf", "en")),
        "{text}"
    );

    // The retry pays: the recovery counts what was still due, not the whole invoice.
    app.advance_clock(4 * DAY).await;
    app.case_when(invoice, |c| c["state"] == "recovered").await;
    // Counted just after the case is saved: wait for the count, then check it is the right one.
    let sample = "recoup_recovered_amount_total{currency=\"chf\"}";
    wait_until("the recovery in the metrics", SETTLE, || async {
        metric_value(&app.get("/metrics").await.text, sample) > 0
    })
    .await;
    let metrics = app.get("/metrics").await.text;
    assert_eq!(metric_value(&metrics, sample), 2_900, "{metrics}");
}
