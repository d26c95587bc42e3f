//! The status page at `/`: support signs in with an API token, looks up an invoice, customer or
//! subscription, and reads its cases told as `recoup status` tells them ([`crate::story`]); and,
//! behind the same sign-in, the recovery dashboard at `/dashboard` ([`dashboard`]).
//!
//! **Sessions.** The token is posted once to `/signin` and never leaves the server again: a valid
//! one opens a server-side session ([`Sessions`]: Redis, for [`SESSION_LIFETIME`]) under a random
//! 256-bit id, and only that id goes into the `__Host-recoup_session` cookie. The store keeps the
//! session under the id's SHA-256, so what Redis holds cannot be replayed as a cookie. Signing out
//! deletes the session at once; it also ends when its time is up, or when its token is taken out of
//! `RECOUP_API_TOKENS`. The cookie is `HttpOnly` (no script can read it), `Secure` (never sent over
//! plain HTTP; browsers make an exception only for localhost and loopback addresses),
//! `SameSite=Strict` (no other site can make the browser send it) and `__Host-` (only this host,
//! over HTTPS, for `Path=/`, can set it: a sibling subdomain cannot plant one).
//!
//! **Forgery (CSRF).** Both forms carry a hidden `csrf` field. The sign-in form's value is the one
//! in the pre-session cookie `__Host-recoup_csrf` that the page set with the form (double submit:
//! another site can neither read that cookie nor, thanks to `__Host-`, set it, so it cannot fill
//! the field in); the sign-out form's value is the session's own, kept with it in the store.
//! Values are compared in constant time; a post without a matching one is refused (403) and changes
//! nothing. A post that the browser marks as coming from another site (`Sec-Fetch-Site`) is refused
//! before that. `SameSite=Strict` alone would stop most of this; the tokens do not rely on it.
//!
//! **The page.** Templates with HTML auto-escaping on (a layout, the look-up page, the dashboard),
//! so whatever came from Stripe or was typed into a case (ids, decline codes, hold reasons) is
//! shown as text and never read as markup; and its Content-Security-Policy allows no script at all
//! (the pages have none; the dashboard's charts are SVG drawn on the server), only its own
//! stylesheet, and forms that post back to recoup.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router, middleware};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jiff::Timestamp;
use minijinja::value::Serde;
use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value, context};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::api::Api;
use crate::api::auth::{Caller, Tokens};
use crate::store::{
    self, Arrivals, Cards, Cases, Dashboard, Experiments, IdKind, Inbox, LookupError, Session,
    Sessions, TestClock,
};
use crate::story::{self, Told};

mod chart;
mod dashboard;

/// The page's templates, by name: the layout every page extends, and the pages.
const TEMPLATES: [(&str, &str); 3] = [
    ("layout.html", include_str!("layout.html")),
    ("page.html", include_str!("page.html")),
    ("dashboard.html", include_str!("dashboard.html")),
];
/// Inline, so the page is one response; allowed by its hash in the CSP rather than by
/// `'unsafe-inline'`, so a `<style>` that got into the page some other way would not apply.
const STYLE: &str = include_str!("page.css");
/// The session cookie: a random id, never a token.
pub const SESSION_COOKIE: &str = "__Host-recoup_session";
/// The pre-session cookie the sign-in form's anti-forgery field must match.
pub const CSRF_COOKIE: &str = "__Host-recoup_csrf";
/// How long a sign-in lasts: a support agent's working day, then they sign in again.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Random bytes in a session id or an anti-forgery token (256 bits), base64url: 43 characters.
const RANDOM_BYTES: usize = 32;
const RANDOM_CHARS: usize = 43;

static CONTENT_SECURITY_POLICY: LazyLock<HeaderValue> =
    LazyLock::new(|| content_security_policy(STYLE, "'self'"));

/// A Content-Security-Policy for a page of recoup's without script: nothing loads but its own
/// inline stylesheet (allowed by its hash, not by `'unsafe-inline'`), forms post only to
/// `form_action`, and no one frames it.
pub(crate) fn content_security_policy(style: &str, form_action: &str) -> HeaderValue {
    let style = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(style));
    HeaderValue::try_from(format!(
        "default-src 'none'; style-src 'sha256-{style}'; form-action {form_action}; \
         frame-ancestors 'none'; base-uri 'none'"
    ))
    .expect("base64 is a valid header value")
}

struct Page<S> {
    api: Arc<Api<S>>,
    tokens: Tokens,
    templates: Environment<'static>,
}

/// What the template shows: the sign-in form without `signed_in`, else the look-up form and what
/// the look-up found.
#[derive(Serialize, Default)]
struct View<'a> {
    /// The name of the signed-in token.
    signed_in: Option<&'a str>,
    /// Why a sign-in (or sign-out) was refused.
    refused: Option<&'static str>,
    /// The anti-forgery token the page's form posts back.
    csrf: &'a str,
    /// The id looked up, shown again in the look-up form.
    id: &'a str,
    /// Why the look-up found no case.
    problem: Option<String>,
    cases: Vec<Told>,
    /// When the newest events arrived, by webhook and by backfill ([`newest_events`]).
    events: Option<String>,
}

/// `/`, `/dashboard`, `/signin` and `/signout`, every answer uncached and under the CSP.
pub fn routes<
    S: Cases + Cards + Inbox + TestClock + Sessions + Dashboard + Experiments + 'static,
>(
    api: Arc<Api<S>>,
    tokens: Tokens,
) -> Router {
    let page = Arc::new(Page {
        api,
        tokens,
        templates: templates(),
    });
    Router::new()
        .route("/", get(home::<S>))
        .route("/dashboard", get(dashboard::dashboard::<S>))
        .route("/signin", post(sign_in::<S>))
        .route("/signout", post(sign_out::<S>))
        .with_state(page)
        .layer(middleware::map_response(guard))
}

/// Support's pages hold customers' payment history: never cached, never framed, no referrer, no
/// script.
async fn guard(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        CONTENT_SECURITY_POLICY.clone(),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[derive(Deserialize)]
struct LookUp {
    #[serde(default)]
    id: String,
}

async fn home<S: Cases + Cards + Inbox + TestClock + Sessions>(
    State(page): State<Arc<Page<S>>>,
    headers: HeaderMap,
    Query(LookUp { id }): Query<LookUp>,
) -> Response {
    let session = match page.session(&headers).await {
        Ok(session) => session,
        Err(response) => return *response,
    };
    let Some((Caller(name), session)) = session else {
        return page.sign_in_form(&headers, StatusCode::OK, None);
    };
    let id = id.trim();
    let events = match page.api.store.arrivals().await {
        Ok(arrivals) => newest_events(&arrivals, Timestamp::now()),
        Err(e) => format!("Newest events: not known ({e})"),
    };
    let mut view = View {
        signed_in: Some(&name),
        csrf: &session.csrf,
        id,
        events: Some(events),
        ..View::default()
    };
    if id.is_empty() {
        return page.render(StatusCode::OK, &view);
    }
    let status = match page.tell(id).await {
        Ok(cases) => {
            view.cases = cases;
            StatusCode::OK
        }
        Err(e) => {
            let status = match e {
                LookupError::NotAnId(_) => StatusCode::BAD_REQUEST,
                LookupError::NoCase { .. } => StatusCode::NOT_FOUND,
                LookupError::Store(_) => {
                    tracing::error!("status page: {e}");
                    StatusCode::SERVICE_UNAVAILABLE
                }
            };
            view.problem = Some(e.to_string());
            status
        }
    };
    page.render(status, &view)
}

#[derive(Deserialize)]
struct SignIn {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
}

/// A valid token, posted from this page's own form, opens a session and the agent is sent to the
/// page (303, so reloading does not post the token again); a form from elsewhere is refused (403)
/// and any other token too (401), each with the form again and no session.
async fn sign_in<S: Sessions>(
    State(page): State<Arc<Page<S>>>,
    headers: HeaderMap,
    Form(SignIn { token, csrf }): Form<SignIn>,
) -> Response {
    let expected = cookie(&headers, CSRF_COOKIE).filter(|c| is_random(c));
    let genuine = !from_another_site(&headers) && expected.is_some_and(|e| same(e, &csrf));
    if !genuine {
        return page.sign_in_form(
            &headers,
            StatusCode::FORBIDDEN,
            Some(
                "the sign-in form had expired or did not come from this page: sign in again \
                 (cookies must be on)",
            ),
        );
    }
    let Some(Caller(name)) = page.tokens.caller(token.trim()) else {
        return page.sign_in_form(
            &headers,
            StatusCode::UNAUTHORIZED,
            Some("that token is not valid"),
        );
    };
    let id = random();
    let session = Session {
        name,
        csrf: random(),
    };
    if let Err(e) = page
        .api
        .store
        .open_session(&session_key(&id), &session, SESSION_LIFETIME)
        .await
    {
        tracing::error!("status page: cannot open a session: {e}");
        return page.sign_in_form(
            &headers,
            StatusCode::SERVICE_UNAVAILABLE,
            Some("signing in is not possible right now (the store did not answer): try again"),
        );
    }
    tracing::info!(by = %session.name, "status page: signed in");
    let lifetime = SESSION_LIFETIME.as_secs();
    redirect_home(&[
        format!(
            "{SESSION_COOKIE}={id}; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age={lifetime}"
        ),
        // The pre-session's token has done its work; the signed-in page carries the session's.
        format!("{CSRF_COOKIE}=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0"),
    ])
}

#[derive(Deserialize)]
struct SignOut {
    #[serde(default)]
    csrf: String,
}

/// Ends the session — deleted from the store, so the cookie is worthless even if it was copied —
/// when the form is the session's own; a forged sign-out (no or another anti-forgery token)
/// changes nothing.
async fn sign_out<S: Sessions>(
    State(page): State<Arc<Page<S>>>,
    headers: HeaderMap,
    Form(SignOut { csrf }): Form<SignOut>,
) -> Response {
    let Some(id) = cookie(&headers, SESSION_COOKIE).filter(|id| is_random(id)) else {
        return redirect_home(&[clear_session()]);
    };
    let key = session_key(id);
    match page.api.store.session(&key).await {
        Ok(None) => redirect_home(&[clear_session()]),
        Ok(Some(session)) if !from_another_site(&headers) && same(&session.csrf, &csrf) => {
            if let Err(e) = page.api.store.close_session(&key).await {
                tracing::error!("status page: cannot close a session: {e}");
                return page.unavailable();
            }
            tracing::info!(by = %session.name, "status page: signed out");
            redirect_home(&[clear_session()])
        }
        Ok(Some(_)) => (
            StatusCode::FORBIDDEN,
            "sign-out refused: the form did not come from this page",
        )
            .into_response(),
        Err(e) => {
            tracing::error!("status page: {e}");
            page.unavailable()
        }
    }
}

fn clear_session() -> String {
    format!("{SESSION_COOKIE}=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0")
}

/// Sets (or clears) cookies and sends the browser to the page.
fn redirect_home(cookies: &[String]) -> Response {
    let mut response = Redirect::to("/").into_response();
    for cookie in cookies {
        let cookie = HeaderValue::try_from(cookie).expect("cookie octets are a valid header value");
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// 256 random bits, base64url: a session id or an anti-forgery token.
fn random() -> String {
    let mut bytes = [0u8; RANDOM_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether a cookie's value has the shape [`random`] gives (anything else is not looked up).
fn is_random(value: &str) -> bool {
    value.len() == RANDOM_CHARS
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Where a session is kept: the SHA-256 of its id, so the store never holds a usable cookie.
fn session_key(id: &str) -> String {
    hex::encode(Sha256::digest(id.as_bytes()))
}

/// Constant-time equality of two anti-forgery tokens (an empty one never matches).
fn same(expected: &str, presented: &str) -> bool {
    !expected.is_empty() && bool::from(Sha256::digest(expected).ct_eq(&Sha256::digest(presented)))
}

/// Whether the browser says the request comes from another site (`Sec-Fetch-Site`); browsers
/// that do not send the header are judged by the anti-forgery token alone.
fn from_another_site(headers: &HeaderMap) -> bool {
    headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|site| !matches!(site, "same-origin" | "none"))
}

/// The value of the cookie `name` in the request.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

impl<S: Sessions> Page<S> {
    /// The signed-in agent and their session, if the request's cookie names a live session whose
    /// token is still configured; an error page when the store cannot say.
    async fn session(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<(Caller, Session)>, Box<Response>> {
        let Some(id) = cookie(headers, SESSION_COOKIE).filter(|id| is_random(id)) else {
            return Ok(None);
        };
        match self.api.store.session(&session_key(id)).await {
            Ok(session) => Ok(session.and_then(|s| Some((self.tokens.named(&s.name)?, s)))),
            Err(e) => {
                tracing::error!("status page: {e}");
                Err(Box::new(self.unavailable()))
            }
        }
    }
}

impl<S> Page<S> {
    /// The sign-in form, with its anti-forgery token: the one in the request's pre-session cookie,
    /// or a new one set with the answer.
    fn sign_in_form(
        &self,
        headers: &HeaderMap,
        status: StatusCode,
        refused: Option<&'static str>,
    ) -> Response {
        let (csrf, new) = match cookie(headers, CSRF_COOKIE).filter(|c| is_random(c)) {
            Some(csrf) => (csrf.to_owned(), false),
            None => (random(), true),
        };
        let view = View {
            refused,
            csrf: &csrf,
            ..View::default()
        };
        let mut response = self.render(status, &view);
        if new {
            let cookie = format!("{CSRF_COOKIE}={csrf}; HttpOnly; Secure; SameSite=Strict; Path=/");
            response.headers_mut().append(
                header::SET_COOKIE,
                HeaderValue::try_from(cookie).expect("base64url is a valid header value"),
            );
        }
        response
    }

    fn unavailable(&self) -> Response {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the status page cannot reach its store right now; the log says why",
        )
            .into_response()
    }

    fn render(&self, status: StatusCode, view: &View) -> Response {
        self.render_as("page.html", status, view)
    }

    /// The template `name` with `view`, or a plain error page when it cannot be rendered.
    fn render_as(&self, name: &str, status: StatusCode, view: &impl Serialize) -> Response {
        match render(&self.templates, name, view) {
            Ok(html) => (status, Html(html)).into_response(),
            Err(e) => {
                tracing::error!("status page: {e:#}");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the status page could not be shown; the log says why",
                )
                    .into_response()
            }
        }
    }
}

impl<S: Cases + Cards + TestClock> Page<S> {
    /// Every case under `id`, told as of the API's clock with its card's history.
    async fn tell(&self, id: &str) -> Result<Vec<Told>, LookupError> {
        let api = &self.api;
        let cases = IdKind::of(id)?.cases(&api.store, id).await?;
        let now = api.clock.now().await?;
        let mut told = Vec::with_capacity(cases.len());
        for case in &cases {
            let card = store::card_tries(&api.store, case).await?;
            told.push(story::tell(case, &api.policy, &card, now));
        }
        Ok(told)
    }
}

/// One line for the operator: when the newest event came by webhook and by backfill, and a warning
/// when backfills bring what webhooks no longer do ("webhooks broken since Tuesday").
fn newest_events(arrivals: &Arrivals, now: Timestamp) -> String {
    let told = |at: Option<Timestamp>| match at {
        Some(at) => format!("{} ({})", story::when(at, "UTC"), ago(at, now)),
        None => "none yet".to_owned(),
    };
    let mut line = format!(
        "Newest event by webhook: {}; by backfill: {}",
        told(arrivals.webhook),
        told(arrivals.backfill)
    );
    if arrivals.backfill > arrivals.webhook {
        line.push_str(
            ". Backfills are finding events the webhooks did not bring: check the webhook \
             endpoint and its signing secret in Stripe",
        );
    }
    line
}

/// `12 minutes ago`, `3 hours ago`, `2 days ago`.
fn ago(at: Timestamp, now: Timestamp) -> String {
    let seconds = now.duration_since(at).as_secs();
    let (n, unit) = match seconds {
        ..60 => return "just now".to_owned(),
        60..3600 => (seconds / 60, "minute"),
        3600..86_400 => (seconds / 3600, "hour"),
        _ => (seconds / 86_400, "day"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

fn templates() -> Environment<'static> {
    html_environment(&TEMPLATES)
}

/// One HTML template of recoup's own, with everything inserted escaped.
pub(crate) fn html_templates(name: &'static str, source: &'static str) -> Environment<'static> {
    html_environment(&[(name, source)])
}

/// HTML templates of recoup's own, which may extend one another, with everything inserted escaped.
pub(crate) fn html_environment(sources: &[(&'static str, &'static str)]) -> Environment<'static> {
    let mut templates = Environment::new();
    templates.set_auto_escape_callback(|_| AutoEscape::Html);
    // A name the template uses and the view lacks is an error, not a silently empty page.
    templates.set_undefined_behavior(UndefinedBehavior::Strict);
    for &(name, source) in sources {
        templates
            .add_template(name, source)
            .unwrap_or_else(|e| panic!("the template {name} does not parse: {e}"));
    }
    templates
}

fn render(
    templates: &Environment,
    name: &str,
    view: &impl Serialize,
) -> Result<String, minijinja::Error> {
    templates.get_template(name)?.render(context! {
        // Trusted: recoup's own stylesheet, which the CSP allows by its hash.
        style => Value::from_safe_string(STYLE.to_owned()),
        ..Value::from(Serde(view))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn told(text: &str) -> Told {
        Told {
            title: format!("in_1 · $49.00 · {text}"),
            facts: vec![("Customer", text.to_owned())],
            attempts: vec![text.to_owned()],
            nudges: vec![text.to_owned()],
            decision: Some(text.to_owned()),
            next: text.to_owned(),
            timeline: vec![(text.to_owned(), text.to_owned(), text.to_owned())],
        }
    }

    #[test]
    fn everything_a_case_says_is_text_not_markup() {
        let markup = r#"<script>alert("x")</script><img src=x onerror='y'>"#;
        let view = View {
            signed_in: Some(markup),
            id: markup,
            problem: Some(markup.to_owned()),
            cases: vec![told(markup)],
            ..View::default()
        };
        let html = render(&templates(), "page.html", &view).unwrap();
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        // The page's title, who, the id and the problem; the case's title, next, fact, attempt,
        // message, decision and timeline row (3).
        assert_eq!(html.matches("&lt;script&gt;").count(), 13, "{html}");
        assert!(html.contains(&format!("<style>{STYLE}</style>")));
    }

    #[test]
    fn the_newest_events_say_when_webhooks_stopped_and_backfills_took_over() {
        let now = Timestamp::from_second(1_800_000_000).unwrap();
        let hours = |h: i64| now - jiff::SignedDuration::from_hours(h);
        assert_eq!(
            newest_events(&Arrivals::default(), now),
            "Newest event by webhook: none yet; by backfill: none yet"
        );
        let healthy = Arrivals {
            webhook: Some(hours(0)),
            backfill: None,
            backfilled: Some(hours(1)),
        };
        assert_eq!(
            newest_events(&healthy, now),
            "Newest event by webhook: Fri 2027-01-15 08:00 UTC (just now); by backfill: none yet"
        );
        let broken = Arrivals {
            webhook: Some(hours(50)),
            backfill: Some(hours(2)),
            backfilled: Some(hours(0)),
        };
        let line = newest_events(&broken, now);
        assert!(line.contains("(2 days ago)"), "{line}");
        assert!(line.contains("(2 hours ago)"), "{line}");
        assert!(line.contains("check the webhook endpoint"), "{line}");
    }

    #[test]
    fn without_a_session_the_page_is_the_sign_in_form() {
        let view = View {
            refused: Some("that token is not valid"),
            ..View::default()
        };
        let html = render(&templates(), "page.html", &view).unwrap();
        assert!(html.contains(r#"<form method="post" action="/signin""#));
        assert!(html.contains(r#"type="password""#));
        assert!(html.contains("that token is not valid"));
        assert!(html.contains(r#"<input type="hidden" name="csrf" value="">"#));
        assert!(!html.contains("Look up"));
    }
}
