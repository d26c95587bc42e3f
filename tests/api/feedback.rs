//! "What's in the way?" as a customer meets it: the nudge in their mailbox (a real SMTP server)
//! carries a `/feedback/<token>` link beside the update link; the page it opens asks, the answer
//! posted over real HTTP lands on the case (read back through the API) and the policy acts on it —
//! the retry moved to a payday, the update link mailed again, dunning stopped. A forged, expired,
//! reused or update-link token, a bad form and too many requests each get their page and change
//! nothing.

use crate::helpers::{PUBLIC_URL, Recoup, SETTLE, TestApp, header, plain_http, wait_until};
use crate::links::{CUSTOMER, nudged_mail, open};
use crate::nudges::noting_app;
use crate::smtp_sink::SmtpSink;

const DAY: i64 = 86_400;

/// Fails `invoice` with a decline that time may fix (its retries follow the plan's gaps, not
/// paydays), whose note goes within the hour under [`noting_app`]'s policy, and returns the
/// nudge's text.
async fn nudged(app: &TestApp, sink: &SmtpSink, invoice: &str) -> String {
    nudged_mail(app, sink, invoice, "do_not_honor").await
}

/// The link under `{PUBLIC_URL}/{path}/` in a message's text.
fn link_in(text: &str, path: &str) -> String {
    let start = text
        .find(&format!("{PUBLIC_URL}/{path}/"))
        .unwrap_or_else(|| panic!("no {path} link in {text}"));
    text[start..].split_whitespace().next().unwrap().to_owned()
}

/// Posts the form to `link` as a browser would.
async fn post(app: &TestApp, link: &str, form: &[(&str, &str)]) -> reqwest::Response {
    let path = link.strip_prefix(PUBLIC_URL).unwrap_or(link);
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    plain_http()
        .post(app.url(path))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap()
}

/// The page's status and text.
async fn page(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

fn timer_kinds(case: &serde_json::Value) -> Vec<String> {
    case["timers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["kind"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn cant_pay_now_from_a_real_email_moves_the_retry_to_a_payday_and_pauses_nudges() {
    let (app, sink, _policy) = noting_app().await;
    let invoice = "in_feedback_payday";
    let text = nudged(&app, &sink, invoice).await;
    assert!(
        text.contains(&format!(
            "Something in the way? Tell us: {PUBLIC_URL}/feedback/"
        )),
        "{text}"
    );
    let link = link_in(&text, "feedback");
    assert_ne!(link, link_in(&text, "fix"));
    // Nothing personal in the URL.
    assert!(!link.contains(CUSTOMER) && !link.contains(invoice) && !link.contains("dana"));
    let before = app.case_when(invoice, |c| c["state"] == "retrying").await;
    assert!(
        timer_kinds(&before).contains(&"nudge".to_owned()),
        "{before}"
    );

    // The page: the question, its four answers, a form that posts back here, no script.
    let shown = open(&app, &link).await;
    assert_eq!(shown.status(), 200);
    assert_eq!(header(&shown, "cache-control"), "no-store");
    assert_eq!(header(&shown, "referrer-policy"), "no-referrer");
    assert_eq!(header(&shown, "x-robots-tag"), "noindex");
    let csp = header(&shown, "content-security-policy").to_owned();
    assert!(
        csp.starts_with("default-src 'none';") && csp.contains("form-action 'self'"),
        "{csp}"
    );
    let html = shown.text().await.unwrap();
    assert!(html.contains("What&#x27;s in the way?"), "{html}");
    for value in [
        "card_changed",
        "cant_pay_now",
        "want_to_cancel",
        "something_else",
    ] {
        assert!(html.contains(&format!("value=\"{value}\"")), "{html}");
    }
    assert!(html.contains(r#"<form method="post">"#) && !html.contains("<script"));
    // Looking changes nothing.
    let looked = app.case_when(invoice, |_| true).await;
    assert_eq!(looked["version"], before["version"]);

    let (status, thanks) = page(
        post(
            &app,
            &link,
            &[
                ("answer", "cant_pay_now"),
                ("text", "<b>Paid on the 15th</b>"),
            ],
        )
        .await,
    )
    .await;
    assert_eq!(status, 200, "{thanks}");
    assert!(
        thanks.contains("we will wait for your payday")
            && thanks.contains("We will try the payment again on"),
        "{thanks}"
    );

    // On the case: the answer, the customer's words as they wrote them, the reaction.
    let case = app.case_when(invoice, |c| c["answer"].is_object()).await;
    assert_eq!(case["answer"]["answer"], "cant_pay_now");
    assert_eq!(case["answer"]["reaction"], "retry_on_payday");
    assert_eq!(case["answer"]["text"], "<b>Paid on the 15th</b>");
    // The next retry moved to a payday (the policy's 1st and 15th: this customer has no history),
    // in their daytime; no nudge until it has come to something.
    let next: jiff::Timestamp = case["next_attempt_at"].as_str().unwrap().parse().unwrap();
    let local = next.to_zoned(jiff::tz::TimeZone::get("America/Chicago").unwrap());
    assert!([1, 15].contains(&local.day()), "{local}");
    assert!((9..20).contains(&local.hour()), "{local}");
    assert_eq!(timer_kinds(&case), ["retry"], "{case}");
    let story = case["timeline"].to_string();
    assert!(
        story.contains("customer answered")
            && story.contains("I can't pay right now")
            && story.contains("moved to their next payday"),
        "{story}"
    );

    // The link answered once: again, by POST or GET, is refused with a page and changes nothing.
    let (status, again) = page(post(&app, &link, &[("answer", "want_to_cancel")]).await).await;
    assert_eq!(status, 409);
    assert!(again.contains("You have answered already"), "{again}");
    let (status, _) = page(open(&app, &link).await).await;
    assert_eq!(status, 409);
    let after = app.case_when(invoice, |_| true).await;
    assert_eq!(after["version"], case["version"]);
    assert_eq!(after["answer"]["answer"], "cant_pay_now");
    // A link checker's HEAD is told the link is sound, and nothing else happens.
    let path = link.strip_prefix(PUBLIC_URL).unwrap();
    let peeked = plain_http().head(app.url(path)).send().await.unwrap();
    assert_eq!(peeked.status(), 200);
}

#[tokio::test]
async fn card_changed_mails_the_update_link_again_at_once() {
    let (app, sink, _policy) = noting_app().await;
    let invoice = "in_feedback_card";
    let link = link_in(&nudged(&app, &sink, invoice).await, "feedback");
    let (status, thanks) = page(post(&app, &link, &[("answer", "card_changed")]).await).await;
    assert_eq!(status, 200);
    assert!(thanks.contains("a new link is on its way"), "{thanks}");
    // The worker sends it at once, past the daily cap the first nudge used up.
    wait_until("the update link mailed again", SETTLE, || async {
        sink.mails().len() == 2
    })
    .await;
    let again = &sink.mails()[1];
    assert_eq!(again.subject(), "Your link to update your card");
    let text = again.text();
    assert!(text.contains(&format!("{PUBLIC_URL}/fix/")), "{text}");
    assert!(
        !text.contains("/feedback/"),
        "no question in the answer to it: {text}"
    );
    let case = app
        .case_when(invoice, |c| {
            c["timeline"].to_string().contains("update_link tier 1")
                && c["nudged"]
                    .as_array()
                    .is_some_and(|n| n.iter().any(|n| n["kind"] == "update_link"))
        })
        .await;
    assert_eq!(case["answer"]["reaction"], "send_update_link");
}

#[tokio::test]
async fn want_to_cancel_stops_dunning_and_changes_nothing_in_stripe() {
    let (app, sink, _policy) = noting_app().await;
    let invoice = "in_feedback_cancel";
    let link = link_in(&nudged(&app, &sink, invoice).await, "feedback");
    let stripe_calls = app.stripe.requests().len();
    let (status, thanks) = page(
        post(
            &app,
            &link,
            &[
                ("answer", "want_to_cancel"),
                ("text", "We are closing the shop."),
            ],
        )
        .await,
    )
    .await;
    assert_eq!(status, 200);
    assert!(thanks.contains("has not been changed"), "{thanks}");
    let case = app.case_when(invoice, |c| c["state"] == "closed").await;
    assert_eq!(case["answer"]["reaction"], "stop_dunning");
    assert_eq!(case["answer"]["text"], "We are closing the shop.");
    assert!(case["timers"].as_array().unwrap().is_empty(), "{case}");
    assert!(
        case["closure"]["reason"]
            .as_str()
            .unwrap()
            .contains("asked to cancel"),
        "{case}"
    );
    assert!(case["decision"].is_null());
    assert_eq!(
        app.stripe.requests().len(),
        stripe_calls,
        "Stripe was not asked"
    );
}

#[tokio::test]
async fn forged_expired_and_update_link_tokens_and_bad_forms_change_nothing() {
    let (app, sink, _policy) = noting_app().await;
    let invoice = "in_feedback_refused";
    let text = nudged(&app, &sink, invoice).await;
    let link = link_in(&text, "feedback");
    let fix = link_in(&text, "fix");
    let token = link.rsplit('/').next().unwrap();
    let fix_token = fix.rsplit('/').next().unwrap();
    let version = app.case_when(invoice, |_| true).await["version"].clone();

    let mut damaged = token.to_owned().into_bytes();
    damaged[4] = if damaged[4] == b'A' { b'B' } else { b'A' };
    let damaged = String::from_utf8(damaged).unwrap();
    for bad in [
        format!("/feedback/{damaged}"),
        format!("/feedback/{}", &token[..token.len() - 3]),
        // An update link's token is no feedback token, and a feedback token opens no portal.
        format!("/feedback/{fix_token}"),
        "/feedback/not-a-token".to_owned(),
    ] {
        let (status, html) = page(open(&app, &bad).await).await;
        assert_eq!(status, 404, "{bad}");
        assert!(html.contains("This link does not work"), "{bad}: {html}");
        let (status, _) = page(post(&app, &bad, &[("answer", "want_to_cancel")]).await).await;
        assert_eq!(status, 404, "{bad}");
    }
    assert_eq!(open(&app, &format!("/fix/{token}")).await.status(), 404);
    assert!(app.stripe.portal_requests().is_empty());

    // A bad form gets the form again with what is wrong, and leaves the link unanswered.
    let (status, html) = page(post(&app, &link, &[("answer", "refund_me")]).await).await;
    assert_eq!(status, 400);
    assert!(html.contains("Please choose one of the answers.") && html.contains("<form"));
    let long = "x".repeat(501);
    let (status, html) = page(
        post(
            &app,
            &link,
            &[("answer", "something_else"), ("text", long.as_str())],
        )
        .await,
    )
    .await;
    assert_eq!(status, 400);
    assert!(html.contains("500 characters (this is 501)"), "{html}");
    let case = app.case_when(invoice, |_| true).await;
    assert_eq!(case["version"], version, "nothing recorded");
    assert!(case.get("answer").is_none());

    // Thirty-one days on the link has expired: a page says so, and an answer changes nothing.
    app.advance_clock(31 * DAY).await;
    let (status, html) = page(open(&app, &link).await).await;
    assert_eq!(status, 410);
    assert!(html.contains("This link has expired"), "{html}");
    let (status, _) = page(post(&app, &link, &[("answer", "something_else")]).await).await;
    assert_eq!(status, 410);
    let case = app.case_when(invoice, |_| true).await;
    assert!(case.get("answer").is_none(), "{case}");
}

#[tokio::test]
async fn a_feedback_link_used_too_often_is_asked_to_wait() {
    let (app, sink, _policy) = noting_app().await;
    let link = link_in(
        &nudged(&app, &sink, "in_feedback_hammered").await,
        "feedback",
    );
    for i in 0..10 {
        assert_eq!(open(&app, &link).await.status(), 200, "request {i}");
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
    // An answer is limited too, and not recorded.
    let (status, _) = page(post(&app, &link, &[("answer", "something_else")]).await).await;
    assert_eq!(status, 429);
    let case = app.case_when("in_feedback_hammered", |_| true).await;
    assert!(case.get("answer").is_none());
}
