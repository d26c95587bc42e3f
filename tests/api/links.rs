//! Update links as a customer meets them: a nudge in their mailbox (a real SMTP server) carries
//! recoup's own `/fix/<token>` link; opening it — days later, on the test clock — makes the billing
//! portal session in the fake Stripe at that moment and answers 303 to it; a paid invoice, a forged
//! or an expired link, too many openings each get their page and no portal session.

use recoup::config::Settings;
use recoup::server::{Application, Role};

use crate::fake_stripe::{Customer, Decline, Invoice};
use crate::helpers::{
    LINK_SECRET, LINKS, PUBLIC_URL, Recoup, SETTLE, TestApp, TestRedis, base_env, header,
    invoice_event, plain_http, unix_now, wait_until,
};
use crate::smtp_sink::SmtpSink;

pub(crate) const CUSTOMER: &str = "cus_R3cvP0qK8yWm2d";
const DAY: i64 = 86_400;

/// recoup with nudges on (the shipped policy), email through a real SMTP server, update links
/// under [`PUBLIC_URL`], and a customer Stripe knows.
pub(crate) async fn nudging_app() -> (TestApp, SmtpSink) {
    let (app, sink) = crate::nudges::emailing_app().await;
    // A card good for years: no expiring-card nudge among the ones these tests read.
    app.stripe
        .add_customer(CUSTOMER, Customer::dana((12, 2030)));
    (app, sink)
}

/// Fails `invoice` on an expired card (only a new one helps), moves a day on and returns the
/// update link of the first nudge, as the customer's mail shows it.
async fn nudged(app: &TestApp, sink: &SmtpSink, invoice: &str) -> String {
    link_in(&nudged_mail(app, sink, invoice, "expired_card").await)
}

/// Fails `invoice` with `decline_code` (every retry declines alike), moves a day on and returns
/// the text of the first nudge, as the customer's mail shows it. The decline must be one whose
/// note goes within the hour under the app's policy (under the shipped one, not a soft or
/// ambiguous decline, whose note waits 14 days for the retries).
pub(crate) async fn nudged_mail(
    app: &TestApp,
    sink: &SmtpSink,
    invoice: &str,
    decline_code: &'static str,
) -> String {
    let mut stripe_invoice = Invoice::failed(CUSTOMER, Decline::visa(decline_code));
    stripe_invoice.outcomes.extend(
        std::iter::repeat_with(|| {
            crate::fake_stripe::Outcome::Decline(Decline::visa(decline_code))
        })
        .take(12),
    );
    app.fail(invoice, stripe_invoice).await;
    app.advance_into_daytime(DAY, "America/Chicago").await;
    wait_until("the first nudge", SETTLE, || async {
        !sink.mails().is_empty()
    })
    .await;
    // The mail goes out before the case records it: wait for the case too, so that a test reading
    // the case next sees it settled.
    app.case_when(invoice, |c| {
        c["timeline"].to_string().contains("nudge delivered")
    })
    .await;
    sink.mails()[0].text()
}

/// The update link in a message's text.
fn link_in(text: &str) -> String {
    let start = text
        .find(&format!("{PUBLIC_URL}/fix/"))
        .unwrap_or_else(|| panic!("no update link in {text}"));
    text[start..].split_whitespace().next().unwrap().to_owned()
}

/// What a browser that does not follow redirects gets for `link`, asked of the app itself.
pub(crate) async fn open(app: &impl Recoup, link: &str) -> reqwest::Response {
    let path = link.strip_prefix(PUBLIC_URL).unwrap_or(link);
    plain_http().get(app.url(path)).send().await.unwrap()
}

#[tokio::test]
async fn a_link_opened_days_later_makes_the_portal_session_then_and_is_recorded() {
    let (app, sink) = nudging_app().await;
    let invoice = "in_linked_1";
    let link = nudged(&app, &sink, invoice).await;
    // Nothing personal in the URL, and no session made before anyone asked for one.
    assert!(!link.contains(CUSTOMER) && !link.contains(invoice) && !link.contains("dana"));
    assert!(app.stripe.portal_requests().is_empty());

    // A mail scanner's HEAD makes no session and records nothing.
    let path = link.strip_prefix(PUBLIC_URL).unwrap();
    let peeked = plain_http().head(app.url(path)).send().await.unwrap();
    assert_eq!(peeked.status(), 200);
    assert!(app.stripe.portal_requests().is_empty());

    // Read five days later: a Stripe portal session made at send time would be dead by now.
    app.advance_clock(5 * DAY).await;
    let opened = open(&app, &link).await;
    assert_eq!(opened.status(), 303);
    assert_eq!(
        header(&opened, "location"),
        format!("https://billing.stripe.com/p/session/test_{CUSTOMER}")
    );
    assert_eq!(header(&opened, "referrer-policy"), "no-referrer");
    assert_eq!(header(&opened, "cache-control"), "no-store");
    let portals = app.stripe.portal_requests();
    assert_eq!(
        portals.len(),
        1,
        "one session, made when the link was opened"
    );
    let body: Vec<(String, String)> = form_urlencoded::parse(portals[0].body.as_bytes())
        .into_owned()
        .collect();
    assert!(
        body.contains(&("customer".into(), CUSTOMER.into())),
        "{body:?}"
    );
    assert!(
        body.contains(&("flow_data[type]".into(), "payment_method_update".into())),
        "straight to the card form: {body:?}"
    );

    // The opening is on the case: when, how often, and a line of its story.
    let case = app
        .case_when(invoice, |c| c["link_opened_at"].is_string())
        .await;
    assert_eq!(case["link_opens"], 1);
    let story = case["timeline"].to_string();
    assert!(
        story.contains("update link opened")
            && story.contains("sent to Stripe's billing portal to update their payment method"),
        "{story}"
    );

    // Thirty days after the nudge the link has expired: a page says so, and Stripe is not asked.
    app.advance_clock(26 * DAY).await;
    let expired = open(&app, &link).await;
    assert_eq!(expired.status(), 410);
    assert_eq!(header(&expired, "referrer-policy"), "no-referrer");
    assert!(
        expired
            .text()
            .await
            .unwrap()
            .contains("This link has expired")
    );
    assert_eq!(app.stripe.portal_requests().len(), 1);
    let case = app.case_when(invoice, |_| true).await;
    assert_eq!(case["link_opens"], 1, "an expired link changes nothing");
}

#[tokio::test]
async fn a_forged_or_damaged_link_gets_a_clear_page_and_no_stripe_call() {
    let (app, sink) = nudging_app().await;
    let invoice = "in_linked_forged";
    let link = nudged(&app, &sink, invoice).await;
    let before = app.stripe.requests().len();
    let version = app.case_when(invoice, |_| true).await["version"].clone();

    let token = link.rsplit('/').next().unwrap();
    let mut damaged = token.to_owned().into_bytes();
    damaged[4] = if damaged[4] == b'A' { b'B' } else { b'A' };
    let damaged = String::from_utf8(damaged).unwrap();
    let mut cut = token.to_owned();
    cut.truncate(token.len() - 3);
    for bad in [
        damaged.as_str(),
        cut.as_str(),
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "not-a-token",
        "%3Cscript%3E",
    ] {
        let answer = open(&app, &format!("/fix/{bad}")).await;
        assert_eq!(answer.status(), 404, "{bad}");
        assert_eq!(header(&answer, "content-type"), "text/html; charset=utf-8");
        let csp = header(&answer, "content-security-policy").to_owned();
        assert!(csp.starts_with("default-src 'none';"), "{csp}");
        let html = answer.text().await.unwrap();
        assert!(html.contains("This link does not work"), "{html}");
        assert!(!html.contains("<script"), "{html}");
    }
    assert_eq!(app.stripe.requests().len(), before, "Stripe was not asked");
    let case = app.case_when(invoice, |_| true).await;
    assert_eq!(case["version"], version, "the case did not change");
    assert!(case.get("link_opened_at").is_none());
}

#[tokio::test]
async fn a_paid_invoice_gets_a_thank_you_instead_of_the_portal() {
    let (app, sink) = nudging_app().await;
    let invoice = "in_linked_paid";
    let link = nudged(&app, &sink, invoice).await;

    // Paid in Stripe seconds ago; recoup has not heard yet: Stripe is asked.
    app.stripe.set_invoice_status(invoice, "paid");
    let thanked = open(&app, &link).await;
    assert_eq!(thanked.status(), 200);
    assert!(
        thanked
            .text()
            .await
            .unwrap()
            .contains("Already paid — thank you")
    );
    assert!(app.stripe.portal_requests().is_empty());
    let case = app.case_when(invoice, |c| c["link_opens"] == 1).await;
    assert!(
        case["timeline"]
            .to_string()
            .contains("the invoice was already paid"),
        "{}",
        case["timeline"]
    );

    // Once the case knows the payment, Stripe is not even asked.
    let paid = invoice_event(
        "invoice.paid",
        "evt_paid_linked",
        invoice,
        unix_now() + 2 * DAY,
        1,
    );
    app.deliver(paid).await;
    app.case_when(invoice, |c| c["state"] == "recovered").await;
    let reads = |app: &TestApp| {
        app.stripe
            .requests()
            .iter()
            .filter(|r| r.path == format!("/v1/invoices/{invoice}"))
            .count()
    };
    let before = reads(&app);
    let again = open(&app, &link).await;
    assert_eq!(again.status(), 200);
    assert!(again.text().await.unwrap().contains("Already paid"));
    assert_eq!(reads(&app), before);
    assert!(app.stripe.portal_requests().is_empty());
}

#[tokio::test]
async fn without_the_flow_in_the_portal_the_link_opens_the_portal_home() {
    let (app, sink) = nudging_app().await;
    let link = nudged(&app, &sink, "in_linked_noflow").await;
    app.stripe.refuse_portal_flows();
    let opened = open(&app, &link).await;
    assert_eq!(opened.status(), 303);
    let portals = app.stripe.portal_requests();
    assert_eq!(portals.len(), 2, "{portals:?}");
    assert!(portals[0].body.contains("flow_data"));
    assert!(!portals[1].body.contains("flow_data"), "{:?}", portals[1]);

    // Stripe failing altogether: a page asking to come back, with when.
    app.stripe
        .fail_next_portals(&[500, 500, 500, 500, 500, 500, 500, 500]);
    let failed = open(&app, &link).await;
    assert_eq!(failed.status(), 503);
    assert!(failed.headers().get("retry-after").is_some());
    assert!(
        failed
            .text()
            .await
            .unwrap()
            .contains("We could not open the payment page")
    );
}

#[tokio::test]
async fn a_link_opened_too_often_is_asked_to_wait() {
    let (app, sink) = nudging_app().await;
    let link = nudged(&app, &sink, "in_linked_hammered").await;
    for i in 0..10 {
        assert_eq!(open(&app, &link).await.status(), 303, "opening {i}");
    }
    let limited = open(&app, &link).await;
    assert_eq!(limited.status(), 429);
    let wait: u64 = header(&limited, "retry-after").parse().unwrap();
    assert!((1..=6).contains(&wait), "{wait}");
    assert!(
        limited
            .text()
            .await
            .unwrap()
            .contains("Please wait a moment")
    );
    assert_eq!(app.stripe.portal_requests().len(), 10);
    // Counted, not told over and over: one line on the timeline for the visit.
    let case = app
        .case_when("in_linked_hammered", |c| c["link_opens"] == 10)
        .await;
    let told = case["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["what"] == "update link opened")
        .count();
    assert_eq!(told, 1);
}

#[tokio::test]
async fn a_payment_to_confirm_links_the_hosted_invoice_page() {
    let (app, sink) = nudging_app().await;
    let invoice = "in_linked_3ds";
    let mut stripe_invoice = Invoice::failed(CUSTOMER, Decline::visa("insufficient_funds"));
    stripe_invoice.status = "open";
    app.stripe.add_invoice(invoice, stripe_invoice);
    app.deliver(invoice_event(
        "invoice.payment_action_required",
        "evt_3ds_linked",
        invoice,
        unix_now(),
        1,
    ))
    .await;
    app.case_when(invoice, |c| c["state"] == "awaiting_customer")
        .await;
    app.advance_into_daytime(DAY, "America/Chicago").await;
    wait_until("the nudge", SETTLE, || async { !sink.mails().is_empty() }).await;
    let text = sink.mails()[0].text();
    assert!(
        text.contains(&format!("https://invoice.stripe.com/i/acct_test/{invoice}")),
        "the invoice's own page, which does not expire: {text}"
    );
    assert!(!text.contains("/fix/"), "{text}");
}

/// Why recoup refuses to start with these extra settings (over the test base), as `serve` says it.
async fn refusal(role: Role, extra: &[(&str, &str)]) -> String {
    let redis = TestRedis::start();
    let mut env = base_env(&redis);
    env.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let settings = Settings::load(None, env).unwrap();
    match Application::build(&settings, role).await {
        Ok(_) => panic!("started"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn a_worker_that_nudges_needs_a_public_url_and_a_link_key() {
    let webhook = [
        ("RECOUP_NUDGE_WEBHOOK_URL", "http://127.0.0.1:9/nudges"),
        (
            "RECOUP_NUDGE_WEBHOOK_SECRET",
            "whsec_nudges_for_acme_7f3a9c",
        ),
    ];
    let err = refusal(Role::Worker, &webhook).await;
    assert!(err.starts_with("RECOUP_PUBLIC_URL is not set"), "{err}");
    let with_url = [webhook[0], webhook[1], LINKS[0]];
    let err = refusal(Role::All, &with_url).await;
    assert!(err.starts_with("RECOUP_LINK_SECRET is not set"), "{err}");
    // A receiver that opens links makes portal sessions: it needs the Stripe key.
    let redis = TestRedis::start();
    let mut env = base_env(&redis);
    env.retain(|(k, _)| k != "STRIPE_API_KEY");
    env.push(("RECOUP_LINK_SECRET".into(), LINK_SECRET.into()));
    let settings = Settings::load(None, env).unwrap();
    let err = Application::build(&settings, Role::Receiver)
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("STRIPE_API_KEY"), "{err}");
}

#[tokio::test]
async fn a_receiver_without_the_link_key_says_links_do_not_work_there() {
    let app = TestApp::spawn().await;
    let answer = open(&app, "/fix/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").await;
    assert_eq!(answer.status(), 404);
    assert!(
        answer
            .text()
            .await
            .unwrap()
            .contains("This link does not work here")
    );
    assert!(app.stripe.requests().is_empty());
}
