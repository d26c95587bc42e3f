//! Credentials in URLs stay out of what recoup writes: a password with an `@` of its own is masked
//! whole in log and error lines, and a URL's credentials never reach a case's timeline.

use std::process::Stdio;
use std::time::Duration;

use recoup::server::Role;

use crate::fake_stripe::{Decline, Invoice};
use crate::helpers::{API_TOKENS, LINKS, Recoup, TestApp, recoup_command, wait_until};

const CUSTOMER: &str = "cus_R3cvP0qK8yWm2d";

#[test]
fn a_redis_password_with_an_at_sign_is_masked_whole_when_redis_is_unreachable() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let url = format!("redis://recoup:p@ssw0rd-tail@127.0.0.1:{port}/0");
    let output = recoup_command()
        .args(["serve"])
        .env("STRIPE_WEBHOOK_SECRETS", crate::helpers::SECRET)
        .env("STRIPE_API_KEY", crate::helpers::STRIPE_KEY)
        .env("REDIS_URL", &url)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(output.status.code(), Some(1), "{said}");
    assert!(said.contains("cannot reach Redis"), "{said}");
    assert!(
        said.contains(&format!("redis://recoup:***@127.0.0.1:{port}/0")),
        "{said}"
    );
    for part in ["p@ss", "ssw0rd", "w0rd-tail", "p%40ss"] {
        assert!(!said.contains(part), "{part:?} shown: {said}");
    }
}

#[tokio::test]
async fn a_nudge_webhook_url_with_credentials_never_reaches_the_timeline() {
    // The business's nudge receiver takes a user and password in its URL, or a token in its query
    // (as many hook endpoints do), and is down.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let hook =
        format!("http://acme:hunter2-s3cret@127.0.0.1:{port}/nudges?access_token=tok-s3cret-9&v=2");
    let app = TestApp::spawn_as(
        Role::All,
        &[
            ("RECOUP_API_TOKENS", API_TOKENS),
            ("RECOUP_TEST_CLOCK", "1"),
            ("RECOUP_POLICY", "config/policy.toml"),
            ("RECOUP_NUDGE_WEBHOOK_URL", &hook),
            (
                "RECOUP_NUDGE_WEBHOOK_SECRET",
                "whsec_nudges_for_acme_7f3a9c",
            ),
            ("RECOUP_NOTIFY__RETRIES", "0"),
            LINKS[0],
            LINKS[1],
        ],
    )
    .await;
    let invoice = "in_hook_down_1";
    app.fail(
        invoice,
        Invoice::failed(CUSTOMER, Decline::visa("expired_card")),
    )
    .await;
    app.advance_into_daytime(86_400, "America/New_York").await;
    let case = app
        .case_when(invoice, |c| {
            c["timeline"].to_string().contains("webhook not sent")
        })
        .await;
    let story = case["timeline"].to_string();
    assert!(
        !story.contains("hunter2") && !story.contains("tok-s3cret"),
        "{story}"
    );
    assert!(
        story.contains(&format!("127.0.0.1:{port}/nudges?access_token=***&v=2")),
        "the failure still says where: {story}"
    );
    // Nowhere else on the case either, as the API shows it.
    wait_until("the case to settle", Duration::from_secs(5), || async {
        !app.api_get(&format!("/api/v1/invoices/{invoice}"))
            .await
            .text
            .contains("s3cret")
    })
    .await;
}
