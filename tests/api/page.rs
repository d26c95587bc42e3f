//! The status page as support uses it: in Debian's Chromium, headless, driven through chromedriver
//! (WebDriver) — sign in, look up a case, read it — and its session cookie and headers as plain
//! HTTP shows them.

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::wd::Capabilities;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use recoup::server::Role;
use serde_json::json;

use crate::fake_stripe::{Decline, Invoice};
use crate::helpers::{API_TOKEN, API_TOKENS, Recoup, TestApp, free_port, wait_until};

const INVOICE: &str = "in_1QaZ4rB7WZ01zgkWpAgE5t7s";
const CUSTOMER: &str = "cus_R3cvP0qK8yWm2d";
/// A hold reason that would retitle the page if the page ran it as a script.
const SCRIPT: &str = "<script>document.title='pwned'</script>";

/// recoup with a case on hold whose reason is [`SCRIPT`].
async fn app_with_a_held_case() -> TestApp {
    let app = TestApp::spawn_as(
        Role::All,
        &[
            ("RECOUP_API_TOKENS", API_TOKENS),
            ("RECOUP_TEST_CLOCK", "1"),
        ],
    )
    .await;
    app.fail(
        INVOICE,
        Invoice::failed(CUSTOMER, Decline::visa("insufficient_funds")),
    )
    .await;
    let hold = app
        .api_post(
            &format!("/api/v1/invoices/{INVOICE}/hold"),
            &json!({ "reason": SCRIPT }).to_string(),
        )
        .await;
    assert_eq!(hold.status, 200, "{}", hold.text);
    app
}

/// Where a program is on `PATH`; the browser test fails, not passes, without its browser.
fn installed(program: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(program))
                .find(|candidate| candidate.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "{program} is not installed: run scripts/test, which installs chromium and \
                 chromium-driver with apt-get"
            )
        })
}

/// chromedriver on a free port of this test's own, in a process group of its own so the browsers
/// it starts go with it when it is dropped, even when the test fails half-way.
struct ChromeDriver {
    child: Child,
    port: u16,
}

impl ChromeDriver {
    async fn start() -> Self {
        let driver = installed("chromedriver");
        let port = free_port();
        let child = Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("chromedriver starts");
        wait_until(
            "chromedriver to listen",
            Duration::from_secs(10),
            || async { TcpStream::connect(("127.0.0.1", port)).is_ok() },
        )
        .await;
        ChromeDriver { child, port }
    }

    /// A headless Chromium session.
    async fn browser(&self) -> Client {
        let mut capabilities = Capabilities::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": installed("chromium"),
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1600"],
            }),
        );
        ClientBuilder::new(HttpConnector::new())
            .capabilities(capabilities)
            .connect(&format!("http://127.0.0.1:{}", self.port))
            .await
            .expect("chromedriver starts a Chromium session")
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .status();
        let _ = self.child.wait();
    }
}

/// The text of the page as the browser shows it.
async fn shown(browser: &Client) -> String {
    browser
        .find(Locator::Css("body"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Types `text` into the field and presses the form's button, then waits for what the answer shows.
async fn submit(browser: &Client, form: &str, field: &str, text: &str, then: &str) {
    let input = browser
        .find(Locator::Css(&format!("form.{form} input[name={field}]")))
        .await
        .unwrap();
    input.clear().await.unwrap();
    input.send_keys(text).await.unwrap();
    browser
        .find(Locator::Css(&format!("form.{form} button[type=submit]")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(then))
        .await
        .unwrap_or_else(|e| panic!("after submitting {form}, no {then}: {e}"));
}

#[tokio::test]
async fn in_a_browser_support_signs_in_and_reads_a_case_whose_markup_stays_text() {
    let app = app_with_a_held_case().await;
    let driver = ChromeDriver::start().await;
    let browser = driver.browser().await;

    browser.goto(&app.url("/")).await.unwrap();
    browser
        .find(Locator::Css("form.signin input[name=token][type=password]"))
        .await
        .expect("the sign-in form asks for a token, hidden as it is typed");
    assert!(!shown(&browser).await.contains(INVOICE));

    submit(
        &browser,
        "signin",
        "token",
        "tok_not_a_real_one_0000",
        ".problem",
    )
    .await;
    assert!(
        shown(&browser).await.contains("that token is not valid"),
        "{}",
        shown(&browser).await
    );

    submit(&browser, "signin", "token", API_TOKEN, "form.lookup").await;
    assert!(shown(&browser).await.contains("signed in as support-ana"));

    submit(&browser, "lookup", "id", INVOICE, "article.case").await;
    let text = shown(&browser).await;
    assert!(
        text.contains(&format!("{INVOICE} · $49.00 · on_hold")),
        "the case's title: {text}"
    );
    assert!(
        text.contains("Next: Nothing while the case is on hold"),
        "{text}"
    );
    assert!(text.contains("insufficient_funds (soft)"), "{text}");
    assert!(
        text.contains(&format!("by support-ana: {SCRIPT}")),
        "the hold reason, as text, on the timeline: {text}"
    );
    let title = browser.title().await.unwrap();
    assert_eq!(title, format!("recoup · {INVOICE}"), "no script ran");
    let next = browser.find(Locator::Css(".next")).await.unwrap();
    let color = next.css_value("border-left-color").await.unwrap();
    assert!(
        color.contains("47, 111, 214"),
        "the stylesheet applies (its hash is the one the CSP allows): {color}"
    );

    let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let png = browser.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"));
    std::fs::write(artifacts.join("status-page.png"), png).unwrap();

    browser
        .find(Locator::Css("form.signout button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("form.signin"))
        .await
        .expect("signing out shows the sign-in form again");
    browser.close().await.unwrap();
}

/// A client that shows redirects instead of following them, and keeps no cookies.
fn plain_http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn page(app: &TestApp, path_and_query: &str, cookie: Option<&str>) -> reqwest::Response {
    let mut request = plain_http().get(app.url(path_and_query));
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    request.send().await.unwrap()
}

async fn sign_in(app: &TestApp, token: &str) -> reqwest::Response {
    plain_http()
        .post(app.url("/signin"))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap()
}

fn header<'r>(response: &'r reqwest::Response, name: &str) -> &'r str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
}

#[tokio::test]
async fn only_a_valid_session_cookie_shows_cases_and_no_answer_is_cached_or_scriptable() {
    let app = app_with_a_held_case().await;
    let look_up = format!("/?id={INVOICE}");

    let anonymous = page(&app, &look_up, None).await;
    assert_eq!(anonymous.status(), 200);
    assert_eq!(
        header(&anonymous, "content-type"),
        "text/html; charset=utf-8"
    );
    assert_eq!(header(&anonymous, "cache-control"), "no-store");
    let policy = header(&anonymous, "content-security-policy").to_owned();
    assert!(policy.starts_with("default-src 'none';"), "{policy}");
    assert!(
        !policy.contains("script-src") && !policy.contains("unsafe"),
        "{policy}"
    );
    let html = anonymous.text().await.unwrap();
    assert!(
        html.contains(r#"<form method="post" action="/signin""#),
        "{html}"
    );
    assert!(
        !html.contains("insufficient_funds") && !html.contains(CUSTOMER),
        "{html}"
    );

    let refused = sign_in(&app, "tok_not_a_real_one_0000").await;
    assert_eq!(refused.status(), 401);
    assert!(refused.headers().get("set-cookie").is_none());
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("that token is not valid")
    );

    let signed_in = sign_in(&app, API_TOKEN).await;
    assert_eq!(signed_in.status(), 303);
    assert_eq!(header(&signed_in, "location"), "/");
    let cookie = header(&signed_in, "set-cookie");
    let attributes: Vec<&str> = cookie.split(';').map(str::trim).collect();
    assert_eq!(attributes[0], format!("recoup_session={API_TOKEN}"));
    for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
        assert!(attributes.contains(&attribute), "{attribute} in {cookie}");
    }
    let session = attributes[0].to_owned();

    let bogus = page(
        &app,
        &look_up,
        Some("recoup_session=tok_support_ana_0123456788"),
    )
    .await;
    let html = bogus.text().await.unwrap();
    assert!(
        html.contains(r#"action="/signin""#) && !html.contains("signed in as"),
        "{html}"
    );
    assert!(!html.contains("insufficient_funds"), "{html}");

    let found = page(&app, &look_up, Some(&format!("theme=dark; {session}"))).await;
    assert_eq!(found.status(), 200);
    let html = found.text().await.unwrap();
    assert!(html.contains("signed in as support-ana"), "{html}");
    assert!(
        html.contains(&format!("{INVOICE} · $49.00 · on_hold")),
        "{html}"
    );
    assert!(
        html.contains("&lt;script&gt;document.title=&#x27;pwned&#x27;&lt;&#x2f;script&gt;"),
        "the hold reason, escaped: {html}"
    );
    assert!(!html.contains("<script"), "{html}");

    let by_customer = page(&app, &format!("/?id={CUSTOMER}"), Some(&session)).await;
    assert_eq!(by_customer.status(), 200);
    assert!(by_customer.text().await.unwrap().contains(INVOICE));
    let unknown = page(&app, "/?id=in_nobody", Some(&session)).await;
    assert_eq!(unknown.status(), 404);
    assert!(
        unknown
            .text()
            .await
            .unwrap()
            .contains("recoup has no case for invoice in_nobody")
    );
    let not_an_id = page(&app, "/?id=pi_123", Some(&session)).await;
    assert_eq!(not_an_id.status(), 400);
    assert!(
        not_an_id
            .text()
            .await
            .unwrap()
            .contains("is not an invoice (in_…), customer (cus_…) or subscription (sub_…) id")
    );

    let signed_out = plain_http()
        .post(app.url("/signout"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(signed_out.status(), 303);
    let cleared = header(&signed_out, "set-cookie");
    assert!(
        cleared.starts_with("recoup_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
}
