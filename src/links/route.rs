//! `GET /fix/<token>`: a customer opens the update link of a nudge.
//!
//! Public (the customer has no API token), served by the receiver role. In order:
//!
//! 1. the token is verified ([`LinkKeys::verify`]): a damaged or forged one gets a page saying the
//!    link does not work (404), an expired one a page saying so (410); neither calls Stripe or
//!    changes anything;
//! 2. the link's rate limit ([`limit`](super::limit)): too many openings get a page asking to wait
//!    (429, `Retry-After`), and nothing else happens;
//! 3. for a link about an invoice, whether it is still to be paid: the case first (a payment recoup
//!    already saw), then Stripe (`GET /v1/invoices/{id}`, since the payment may be seconds old). A
//!    paid invoice gets a short "already paid, thank you" page (200), a voided one a "nothing to
//!    pay" page; a Stripe that does not answer does not stand in the customer's way;
//! 4. the billing portal session is created now (`POST /v1/billing_portal/sessions`, on the
//!    payment-method-update flow where the portal offers it) and the answer is a 303 to its URL; if
//!    Stripe cannot make one, a page asking to try again shortly (503, `Retry-After`).
//!
//! Steps 3 and 4 are recorded on the invoice's case through `decide` (`Input::LinkOpened`): when
//! the link was first opened, how often, and where it led — the first signal that a nudge worked.
//!
//! `HEAD` (link checkers, mail scanners) only checks the token: no Stripe call, nothing recorded.
//!
//! Every answer is uncached, unframed, unindexed and sent with `Referrer-Policy: no-referrer`, so
//! the token in the URL does not travel on to Stripe's page (or anywhere else) as a referrer; the
//! pages have no script and a CSP that allows none.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Router, middleware};
use minijinja::{Environment, Value, context};

use super::limit::{Limited, Limits};
use super::{Claims, LinkKeys, Purpose, Refusal};
use crate::api::Api;
use crate::page;
use crate::policy::{Input, LinkOutcome};
use crate::processor::{InvoicePage, Processor};
use crate::telemetry::metric;
use crate::worker::{Decides, Engine, Inputs};

pub(super) const TEMPLATE: &str = include_str!("fix.html");
/// The stylesheet of the link pages (this one's and the feedback page's), allowed by its hash.
pub(super) const STYLE: &str = include_str!("fix.css");

static CONTENT_SECURITY_POLICY: LazyLock<HeaderValue> =
    LazyLock::new(|| page::content_security_policy(STYLE, "'none'"));

/// What opening a link needs: the keys that verify it, Stripe, the case store and clock (through
/// the API's handle on them) and the limits.
pub struct Fix<S> {
    pub keys: LinkKeys,
    pub processor: Arc<dyn Processor>,
    pub api: Arc<Api<S>>,
    pub limits: Limits,
}

struct Served<S> {
    fix: Option<Fix<S>>,
    templates: Environment<'static>,
}

/// `GET /fix/{token}`. Without `fix` (no `RECOUP_LINK_SECRET` on this process) every link gets a
/// page saying it does not work here (404).
pub fn routes<S: Decides + 'static>(fix: Option<Fix<S>>) -> Router {
    let served = Arc::new(Served {
        fix,
        templates: templates(),
    });
    Router::new()
        .route("/fix/{token}", get(open::<S>).head(peek::<S>))
        .with_state(served)
        .layer(middleware::map_response(guard))
}

async fn guard(response: Response) -> Response {
    private(response, &CONTENT_SECURITY_POLICY)
}

/// A customer's page reached by a link: never cached, framed, indexed, or passed on as a referrer;
/// `csp` says what else it may do (post a form to itself, or nothing).
pub(super) fn private(mut response: Response, csp: &HeaderValue) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CACHE_CONTROL, "no-store"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::HeaderName::from_static("x-robots-tag"), "noindex"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    headers.insert(header::CONTENT_SECURITY_POLICY, csp.clone());
    response
}

/// A page the customer reads instead of being sent on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shown {
    Invalid,
    Expired,
    Limited(Duration),
    AlreadyPaid,
    NothingToPay,
    Unavailable,
    NotHere,
}

impl From<Refusal> for Shown {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Invalid => Shown::Invalid,
            Refusal::Expired => Shown::Expired,
            Refusal::Unavailable => Shown::Unavailable,
        }
    }
}

impl Shown {
    fn status(self) -> StatusCode {
        match self {
            Shown::Invalid | Shown::NotHere => StatusCode::NOT_FOUND,
            Shown::Expired => StatusCode::GONE,
            Shown::Limited(_) => StatusCode::TOO_MANY_REQUESTS,
            Shown::AlreadyPaid | Shown::NothingToPay => StatusCode::OK,
            Shown::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn words(self) -> (&'static str, &'static str) {
        match self {
            Shown::Invalid => (
                "This link does not work",
                "It may have been cut short or changed on its way to you. Please use the button in \
                 the most recent message we sent you, or reply to that message and we will help.",
            ),
            Shown::Expired => (
                "This link has expired",
                "For your security, links to update your payment details work for a limited time. \
                 Please use the link in our most recent message, or reply to it and we will send \
                 you a new one.",
            ),
            Shown::Limited(_) => (
                "Please wait a moment",
                "This link was opened many times in a short while. Please try again in a minute.",
            ),
            Shown::AlreadyPaid => (
                "Already paid — thank you",
                "This invoice has been paid. There is nothing more for you to do.",
            ),
            Shown::NothingToPay => (
                "Nothing to pay",
                "This invoice was canceled, so there is nothing to pay on it.",
            ),
            Shown::Unavailable => (
                "We could not open the payment page",
                "Our payment provider did not answer just now. Please try again in a few minutes.",
            ),
            Shown::NotHere => (
                "This link does not work here",
                "This address does not open payment links. Please use the link in the message you \
                 received.",
            ),
        }
    }

    fn metric(self) -> &'static str {
        match self {
            Shown::Invalid => "invalid",
            Shown::Expired => "expired",
            Shown::Limited(_) => "limited",
            Shown::AlreadyPaid => "already_paid",
            Shown::NothingToPay => "nothing_to_pay",
            Shown::Unavailable => "unavailable",
            Shown::NotHere => "off",
        }
    }
}

/// `HEAD /fix/{token}`: what a link checker or mail scanner asks before (or instead of) opening a
/// link. The token is checked and the status told, but no Stripe call is made and nothing is
/// recorded: only a real opening creates a portal session.
async fn peek<S: Decides>(
    State(served): State<Arc<Served<S>>>,
    Path(token): Path<String>,
) -> Response {
    let Some(fix) = &served.fix else {
        return served.show(Shown::NotHere);
    };
    match fix
        .keys
        .check(&fix.api.clock, Purpose::Update, &token, "update link")
        .await
    {
        Ok(_) => StatusCode::OK.into_response(),
        Err(refusal) => served.show(refusal.into()),
    }
}

async fn open<S: Decides>(
    State(served): State<Arc<Served<S>>>,
    Path(token): Path<String>,
) -> Response {
    let Some(fix) = &served.fix else {
        return served.show(Shown::NotHere);
    };
    let (claims, now) = match fix
        .keys
        .check(&fix.api.clock, Purpose::Update, &token, "update link")
        .await
    {
        Ok(checked) => checked,
        Err(refusal) => return served.show(refusal.into()),
    };
    if let Err(limited) = fix.limits.open(claims.mac) {
        let (Limited::Link { retry_after } | Limited::Busy { retry_after }) = limited;
        tracing::info!(customer = %claims.customer_id, invoice = ?claims.invoice_id, "update link opened too often: asked to wait");
        return served.show(Shown::Limited(retry_after));
    }
    let (outcome, answer) = match fix.settle(&claims).await {
        Ok(url) => (LinkOutcome::Portal, Ok(url)),
        Err(shown @ Shown::Limited(_)) => return served.show(shown),
        Err(shown) => {
            let outcome = match shown {
                Shown::AlreadyPaid => LinkOutcome::AlreadyPaid,
                Shown::NothingToPay => LinkOutcome::NothingToPay,
                _ => LinkOutcome::Unavailable,
            };
            (outcome, Err(shown))
        }
    };
    if let Some(invoice_id) = &claims.invoice_id {
        fix.record(invoice_id, now, outcome).await;
    }
    tracing::info!(customer = %claims.customer_id, invoice = ?claims.invoice_id, outcome = ?outcome, "update link opened");
    match answer {
        Ok(url) => {
            metrics::counter!(metric::LINK_OPENINGS, "outcome" => "portal").increment(1);
            Redirect::to(&url).into_response()
        }
        Err(shown) => served.show(shown),
    }
}

impl<S: Decides> Fix<S> {
    /// Where the link leads: the URL of a fresh portal session, or the page to show instead.
    async fn settle(&self, claims: &Claims) -> Result<String, Shown> {
        if let Some(invoice_id) = &claims.invoice_id {
            match self.api.store.load_case(invoice_id).await {
                Ok(Some(case)) if case.paid_at.is_some() => return Err(Shown::AlreadyPaid),
                Ok(_) => {}
                Err(e) => tracing::warn!(invoice = %invoice_id, "update link: case not read: {e}"),
            }
            match self.processor.invoice_page(invoice_id).await {
                Ok(Some(InvoicePage { status, .. })) if status == "paid" => {
                    return Err(Shown::AlreadyPaid);
                }
                Ok(Some(InvoicePage { status, .. })) if status == "void" => {
                    return Err(Shown::NothingToPay);
                }
                Ok(_) => {}
                // The portal may still open: not knowing the status is no reason to turn the
                // customer away.
                Err(e) => {
                    tracing::warn!(invoice = %invoice_id, "update link: invoice not read: {e}")
                }
            }
        }
        if let Err(Limited::Link { retry_after } | Limited::Busy { retry_after }) =
            self.limits.portal_session()
        {
            tracing::warn!("update link: portal sessions at this process's limit; asked to wait");
            return Err(Shown::Limited(retry_after));
        }
        self.processor
            .portal_session(&claims.customer_id)
            .await
            .map_err(|e| {
                tracing::warn!(customer = %claims.customer_id, "update link: no portal session: {e}");
                Shown::Unavailable
            })
    }

    /// Puts the opening on the invoice's case, through `decide`. Best effort: the customer's way to
    /// the portal matters more than the record of it.
    async fn record(&self, invoice_id: &str, at: jiff::Timestamp, outcome: LinkOutcome) {
        let engine = Engine {
            store: &self.api.store,
            policy: &self.api.policy,
            processor: None,
            clock: &self.api.clock,
            lease: None,
        };
        let input = Input::LinkOpened { at, outcome };
        if let Err(e) = engine.apply(invoice_id, Inputs::One(&input)).await {
            tracing::warn!(
                invoice = invoice_id,
                "update link opening not recorded: {e}"
            );
        }
    }
}

impl<S> Served<S> {
    fn show(&self, shown: Shown) -> Response {
        metrics::counter!(metric::LINK_OPENINGS, "outcome" => shown.metric()).increment(1);
        let (heading, text) = shown.words();
        let html = self.templates.get_template("fix.html").and_then(|t| {
            t.render(context! {
                heading, text,
                style => Value::from_safe_string(STYLE.to_owned()),
            })
        });
        let mut response = match html {
            Ok(html) => (shown.status(), Html(html)).into_response(),
            Err(e) => {
                tracing::error!("update link page: {e:#}");
                (shown.status(), heading).into_response()
            }
        };
        let retry_after = match shown {
            Shown::Limited(wait) => Some(wait.as_secs().max(1)),
            Shown::Unavailable => Some(60),
            _ => None,
        };
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

fn templates() -> Environment<'static> {
    page::html_templates("fix.html", TEMPLATE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_renders_with_its_words() {
        let served: Served<()> = Served {
            fix: None,
            templates: templates(),
        };
        for shown in [
            Shown::Invalid,
            Shown::Expired,
            Shown::Limited(Duration::from_secs(6)),
            Shown::AlreadyPaid,
            Shown::NothingToPay,
            Shown::Unavailable,
            Shown::NotHere,
        ] {
            let response = served.show(shown);
            assert_eq!(response.status(), shown.status());
        }
    }
}
