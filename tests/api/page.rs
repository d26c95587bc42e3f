//! The status page as support uses it: in Debian's Chromium, headless, driven through chromedriver
//! (WebDriver) — sign in, look up a case, read it, read the recovery dashboard, sign out — and its
//! server-side session, its forms' anti-forgery tokens and its headers as plain HTTP shows them.

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::wd::Capabilities;
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use recoup::server::Role;
use recoup::store::RedisStore;
use serde_json::json;

use crate::dashboard::count_busy_day;
use crate::fake_stripe::{Decline, Invoice};
use crate::helpers::{
    API_TOKEN, API_TOKENS, Recoup, SETTLE, TestApp, free_port, header, plain_http, redis_settings,
    wait_until,
};

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
        wait_until("chromedriver to listen", SETTLE, || async {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        })
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
    // What the browser keeps is a session id, not the token.
    let cookies = browser.get_all_cookies().await.unwrap();
    let session = cookies
        .iter()
        .find(|c| c.name() == "__Host-recoup_session")
        .expect("the browser keeps the session cookie");
    assert_ne!(session.value(), API_TOKEN);
    assert!(cookies.iter().all(|c| !c.value().contains(API_TOKEN)));

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

    save_screenshot("status-page.png", &browser.screenshot().await.unwrap());

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

/// Where the browser tests keep their screenshots.
fn save_screenshot(name: &str, png: &[u8]) {
    assert!(png.starts_with(b"\x89PNG"));
    let artifacts = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    std::fs::write(artifacts.join(name), png).unwrap();
}

#[tokio::test]
async fn in_a_browser_support_reads_the_recovery_dashboard_drawn_without_script() {
    let app = TestApp::spawn_as(Role::Receiver, &[("RECOUP_API_TOKENS", API_TOKENS)]).await;
    // Three busy days of final invoices: today, yesterday and five days ago (UTC).
    let store = RedisStore::connect(&redis_settings(&app.redis))
        .await
        .unwrap();
    let today = jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date();
    for (ago, invoices) in [(0, 60), (1, 30), (5, 45)] {
        let day = today.checked_sub(jiff::Span::new().days(ago)).unwrap();
        count_busy_day(&store, day, invoices, "browser").await;
    }
    let driver = ChromeDriver::start().await;
    let browser = driver.browser().await;

    // Signed out, the dashboard is the sign-in form; signed in, the header links to it.
    browser.goto(&app.url("/dashboard")).await.unwrap();
    submit(&browser, "signin", "token", API_TOKEN, "form.lookup").await;
    browser
        .find(Locator::LinkText("Dashboard"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("svg.chart"))
        .await
        .expect("the dashboard draws its charts");
    let text = shown(&browser).await;
    // Two of every three busy invoices were recovered: 40 + 20 + 30 of 60 + 30 + 45.
    for figure in [
        "Recovery dashboard",
        "66.7% (90 recovered of 135 final invoices)",
        "(30 days, UTC)",
        "Days to recover",
        "By nudge",
        "What customers said",
        "I can't pay right now",
        "The policy runs no experiment.",
    ] {
        assert!(text.contains(figure), "{figure:?} in {text}");
    }
    assert_eq!(browser.title().await.unwrap(), "recoup · dashboard");
    // Each of the three days has its bars; the stylesheet colours them (its hash is allowed).
    let daily = browser
        .find(Locator::Css("svg.chart"))
        .await
        .unwrap()
        .find_all(Locator::Css("rect"))
        .await
        .unwrap();
    assert_eq!(
        daily.len(),
        6,
        "a final and a recovered bar on each of three days"
    );
    let recovered = browser
        .find(Locator::Css("svg.chart rect.recovered"))
        .await
        .unwrap();
    let fill = recovered.css_value("fill").await.unwrap();
    assert!(fill.contains("47, 111, 214"), "{fill}");
    save_screenshot("dashboard.png", &browser.screenshot().await.unwrap());

    // Another period, asked for in the address: yesterday alone.
    let yesterday = today.yesterday().unwrap();
    browser
        .goto(&app.url(&format!("/dashboard?from={yesterday}&to={yesterday}")))
        .await
        .unwrap();
    let text = shown(&browser).await;
    assert!(
        text.contains("66.7% (20 recovered of 30 final invoices)"),
        "{text}"
    );
    assert!(text.contains("(1 day, UTC)"), "{text}");
    browser.close().await.unwrap();
}

async fn page(app: &TestApp, path_and_query: &str, cookie: Option<&str>) -> reqwest::Response {
    let mut request = plain_http().get(app.url(path_and_query));
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    request.send().await.unwrap()
}

/// The status page sessions in the app's Redis, by key.
async fn session_keys(app: &TestApp) -> Vec<String> {
    redis::cmd("KEYS")
        .arg("recoup:session:*")
        .query_async(&mut app.redis.conn().await)
        .await
        .unwrap()
}

/// The anti-forgery token a page's form carries in its hidden `csrf` field.
fn csrf_field(html: &str) -> String {
    let marker = r#"name="csrf" value=""#;
    let start = html
        .find(marker)
        .unwrap_or_else(|| panic!("no csrf field in {html}"))
        + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

/// The `name=value` part of the `Set-Cookie` that sets `name`.
fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with(&format!("{name}=")))
        .map(|c| c.split(';').next().unwrap().to_owned())
}

/// Signs in to the status page of the recoup at `base` as its own form would, and returns the session
/// cookie (`name=value`) a browser then sends.
pub(crate) async fn session_at(base: &str, token: &str) -> String {
    let form = plain_http().get(format!("{base}/")).send().await.unwrap();
    let cookie = set_cookie(&form, "__Host-recoup_csrf").expect("the form comes with its cookie");
    let csrf = csrf_field(&form.text().await.unwrap());
    let signed = plain_http()
        .post(format!("{base}/signin"))
        .header("cookie", cookie)
        .form(&[("token", token), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    set_cookie(&signed, "__Host-recoup_session").expect("signed in")
}

/// What a browser holds after showing the sign-in form: the pre-session cookie, and the form's
/// anti-forgery field.
async fn sign_in_form(app: &TestApp) -> (String, String) {
    let form = page(app, "/", None).await;
    let cookie = set_cookie(&form, "__Host-recoup_csrf").expect("the form comes with its cookie");
    let csrf = csrf_field(&form.text().await.unwrap());
    assert_eq!(cookie, format!("__Host-recoup_csrf={csrf}"));
    (cookie, csrf)
}

/// Posts the sign-in form as this page's own form would: with its pre-session cookie and field.
async fn sign_in(app: &TestApp, token: &str) -> reqwest::Response {
    let (cookie, csrf) = sign_in_form(app).await;
    post_sign_in(app, token, Some(&cookie), &csrf).await
}

async fn post_sign_in(
    app: &TestApp,
    token: &str,
    cookie: Option<&str>,
    csrf: &str,
) -> reqwest::Response {
    let mut request = plain_http()
        .post(app.url("/signin"))
        .form(&[("token", token), ("csrf", csrf)]);
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    request.send().await.unwrap()
}

async fn sign_out(app: &TestApp, session: &str, csrf: &str) -> reqwest::Response {
    plain_http()
        .post(app.url("/signout"))
        .header("cookie", session)
        .form(&[("csrf", csrf)])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_sign_in_form_from_elsewhere_is_refused_and_opens_no_session() {
    let app = app_with_a_held_case().await;
    let (cookie, csrf) = sign_in_form(&app).await;
    let other = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    // A site posting the form has no pre-session cookie to match, or cannot know its value.
    for (cookie, csrf) in [
        (None, csrf.as_str()),
        (None, ""),
        (Some(cookie.as_str()), ""),
        (Some(cookie.as_str()), other),
        (Some("__Host-recoup_csrf=short"), "short"),
    ] {
        let refused = post_sign_in(&app, API_TOKEN, cookie, csrf).await;
        assert_eq!(refused.status(), 403, "{cookie:?} {csrf:?}");
        assert!(set_cookie(&refused, "__Host-recoup_session").is_none());
        let html = refused.text().await.unwrap();
        assert!(html.contains("did not come from this page"), "{html}");
        assert!(
            html.contains(r#"action="/signin""#),
            "the form again: {html}"
        );
    }
    // A browser that says the post comes from another site is refused whatever it carries.
    let cross_site = plain_http()
        .post(app.url("/signin"))
        .header("cookie", &cookie)
        .header("sec-fetch-site", "cross-site")
        .form(&[("token", API_TOKEN), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), 403);
    assert!(set_cookie(&cross_site, "__Host-recoup_session").is_none());
    let keys = session_keys(&app).await;
    assert!(keys.is_empty(), "no session was opened: {keys:?}");

    // The page's own form, in the same browser, signs in.
    let signed_in = post_sign_in(&app, API_TOKEN, Some(&cookie), &csrf).await;
    assert_eq!(signed_in.status(), 303);
    assert!(set_cookie(&signed_in, "__Host-recoup_session").is_some());
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
    assert!(set_cookie(&refused, "__Host-recoup_session").is_none());
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
    let cookie = signed_in
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|c| c.starts_with("__Host-recoup_session="))
        .unwrap()
        .to_owned();
    let attributes: Vec<&str> = cookie.split(';').map(str::trim).collect();
    for attribute in [
        "HttpOnly",
        "Secure",
        "SameSite=Strict",
        "Path=/",
        "Max-Age=43200",
    ] {
        assert!(attributes.contains(&attribute), "{attribute} in {cookie}");
    }
    let session = attributes[0].to_owned();
    let id = session.strip_prefix("__Host-recoup_session=").unwrap();
    // The cookie holds a random id, not the token; the token is in no cookie at all.
    assert!(
        !cookie.contains(API_TOKEN) && !cookie.contains("tok_support"),
        "{cookie}"
    );
    assert_eq!(id.len(), 43, "{id}");
    // The session is kept in Redis, for twelve hours, under a hash of the id — not the id itself.
    let keys = session_keys(&app).await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    let mut redis = app.redis.conn().await;
    assert!(!keys[0].contains(id), "{keys:?}");
    let ttl: i64 = redis::cmd("TTL")
        .arg(&keys[0])
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!((43_000..=43_200).contains(&ttl), "{ttl}");
    let stored: String = redis::cmd("GET")
        .arg(&keys[0])
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(!stored.contains(API_TOKEN), "{stored}");

    // Neither a made-up id nor the API token itself (what the cookie used to hold) is a session.
    for bogus in [
        "__Host-recoup_session=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_owned(),
        format!("__Host-recoup_session={API_TOKEN}"),
        format!("recoup_session={API_TOKEN}"),
    ] {
        let html = page(&app, &look_up, Some(&bogus))
            .await
            .text()
            .await
            .unwrap();
        assert!(
            html.contains(r#"action="/signin""#) && !html.contains("signed in as"),
            "{bogus}: {html}"
        );
        assert!(!html.contains("insufficient_funds"), "{html}");
    }

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
    let signed_in_csrf = csrf_field(&html);

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

    // Signing out needs the session's own form: a forged one (no or another token) changes nothing.
    for forged in ["", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"] {
        let refused = sign_out(&app, &session, forged).await;
        assert_eq!(refused.status(), 403, "{forged:?}");
        assert!(set_cookie(&refused, "__Host-recoup_session").is_none());
    }
    let still = page(&app, "/", Some(&session)).await.text().await.unwrap();
    assert!(still.contains("signed in as support-ana"), "{still}");

    let signed_out = sign_out(&app, &session, &signed_in_csrf).await;
    assert_eq!(signed_out.status(), 303);
    let cleared = header(&signed_out, "set-cookie");
    assert!(
        cleared.starts_with("__Host-recoup_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
    // The session is gone from the store: the old cookie, replayed, opens nothing.
    let replayed = page(&app, &look_up, Some(&session))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        replayed.contains(r#"action="/signin""#) && !replayed.contains("signed in as"),
        "{replayed}"
    );
    let keys = session_keys(&app).await;
    assert!(keys.is_empty(), "{keys:?}");
}
