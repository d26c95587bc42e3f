//! The status page at `/`: support signs in with an API token, looks up an invoice, customer or
//! subscription, and reads its cases told as `recoup status` tells them ([`crate::story`]).
//!
//! The token is posted once to `/signin` and kept in the `recoup_session` cookie: `HttpOnly`, so no
//! script can read it; `Secure`, so it never travels over plain HTTP (browsers make an exception
//! only for localhost and loopback addresses); `SameSite=Strict`, so no other site can make the
//! browser send it, and a form elsewhere cannot act as the agent. Every request checks it as the API checks a bearer
//! token ([`Tokens`], constant time). The page is one template with HTML auto-escaping on, so
//! whatever came from Stripe or was typed into a case (ids, decline codes, hold reasons) is shown
//! as text and never read as markup; and its Content-Security-Policy allows no script at all (the
//! page has none), only its own stylesheet, and forms that post back to recoup.

use std::sync::{Arc, LazyLock};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router, middleware};
use base64::Engine;
use jiff::Timestamp;
use minijinja::value::Serde;
use minijinja::{AutoEscape, Environment, UndefinedBehavior, Value, context};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::api::Api;
use crate::api::auth::{Caller, Tokens};
use crate::store::{self, Arrivals, Cards, Cases, IdKind, Inbox, LookupError, TestClock};
use crate::story::{self, Told};

const TEMPLATE: &str = include_str!("page.html");
/// Inline, so the page is one response; allowed by its hash in the CSP rather than by
/// `'unsafe-inline'`, so a `<style>` that got into the page some other way would not apply.
const STYLE: &str = include_str!("page.css");
const COOKIE: &str = "recoup_session";

static CONTENT_SECURITY_POLICY: LazyLock<HeaderValue> = LazyLock::new(|| {
    let style = base64::engine::general_purpose::STANDARD.encode(Sha256::digest(STYLE));
    HeaderValue::try_from(format!(
        "default-src 'none'; style-src 'sha256-{style}'; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'"
    ))
    .expect("base64 is a valid header value")
});

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
    /// Why a sign-in was refused.
    refused: Option<&'static str>,
    /// The id looked up, shown again in the look-up form.
    id: &'a str,
    /// Why the look-up found no case.
    problem: Option<String>,
    cases: Vec<Told>,
    /// When the newest events arrived, by webhook and by backfill ([`newest_events`]).
    events: Option<String>,
}

/// `/`, `/signin` and `/signout`, every answer uncached and under the CSP.
pub fn routes<S: Cases + Cards + Inbox + TestClock + 'static>(
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
        .route("/signin", post(sign_in::<S>))
        .route("/signout", post(sign_out))
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

async fn home<S: Cases + Cards + Inbox + TestClock>(
    State(page): State<Arc<Page<S>>>,
    headers: HeaderMap,
    Query(LookUp { id }): Query<LookUp>,
) -> Response {
    let Some(Caller(name)) = page.session(&headers) else {
        return page.render(StatusCode::OK, &View::default());
    };
    let id = id.trim();
    let events = match page.api.store.arrivals().await {
        Ok(arrivals) => newest_events(&arrivals, Timestamp::now()),
        Err(e) => format!("Newest events: not known ({e})"),
    };
    let mut view = View {
        signed_in: Some(&name),
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
}

/// A valid token becomes the session cookie and the agent is sent to the page (303, so reloading
/// does not post the token again); any other is refused with the form again and no cookie.
async fn sign_in<S>(
    State(page): State<Arc<Page<S>>>,
    Form(SignIn { token }): Form<SignIn>,
) -> Response {
    let token = token.trim();
    let refused = match page.tokens.caller(token) {
        None => "that token is not valid",
        // A configured token may hold characters a cookie cannot (spaces, quotes, `;`, non-ASCII).
        Some(_) if !token.bytes().all(is_cookie_octet) => {
            "that token cannot be kept in a cookie (it has a space, quote, comma, semicolon, \
             backslash or non-ASCII character): sign in with another"
        }
        Some(_) => {
            return session_cookie(&format!(
                "{COOKIE}={token}; HttpOnly; Secure; SameSite=Strict; Path=/"
            ));
        }
    };
    let view = View {
        refused: Some(refused),
        ..View::default()
    };
    page.render(StatusCode::UNAUTHORIZED, &view)
}

async fn sign_out() -> Response {
    session_cookie(&format!(
        "{COOKIE}=; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=0"
    ))
}

/// Sets (or clears) the session cookie and sends the browser to the page.
fn session_cookie(cookie: &str) -> Response {
    let cookie = HeaderValue::try_from(cookie).expect("cookie octets are a valid header value");
    ([(header::SET_COOKIE, cookie)], Redirect::to("/")).into_response()
}

/// RFC 6265's `cookie-octet`: what a cookie value can hold unquoted.
fn is_cookie_octet(b: u8) -> bool {
    b.is_ascii_graphic() && !matches!(b, b'"' | b',' | b';' | b'\\')
}

impl<S> Page<S> {
    /// The caller whose token the request's session cookie holds, if it holds a valid one.
    fn session(&self, headers: &HeaderMap) -> Option<Caller> {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == COOKIE)
            .and_then(|(_, token)| self.tokens.caller(token))
    }

    fn render(&self, status: StatusCode, view: &View) -> Response {
        match render(&self.templates, view) {
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
    let mut templates = Environment::new();
    templates.set_auto_escape_callback(|_| AutoEscape::Html);
    // A name the template uses and the view lacks is an error, not a silently empty page.
    templates.set_undefined_behavior(UndefinedBehavior::Strict);
    templates
        .add_template("page.html", TEMPLATE)
        .expect("the status page template parses");
    templates
}

fn render(templates: &Environment, view: &View) -> Result<String, minijinja::Error> {
    templates.get_template("page.html")?.render(context! {
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
        let html = render(&templates(), &view).unwrap();
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
        let html = render(&templates(), &view).unwrap();
        assert!(html.contains(r#"<form method="post" action="/signin""#));
        assert!(html.contains(r#"type="password""#));
        assert!(html.contains("that token is not valid"));
        assert!(!html.contains("Look up"));
    }
}
