//! `/feedback/<token>`: "What's in the way?" — the page a nudge's feedback link opens.
//!
//! Every nudge that asks a customer to pay can carry a second link besides the update link: a tiny
//! page, served by recoup and needing no sign-in, where the customer says what keeps them from
//! paying — "My card changed", "I can't pay right now", "I want to cancel" or "Something else" —
//! with a few words of their own if they like (at most [`MAX_TEXT`] characters, kept and always
//! shown escaped). The answer goes onto the invoice's case through `decide`
//! (`Input::Answered`), where the policy's `[feedback]` section decides what it does
//! ([`crate::policy::feedback`]); the thank-you page says what happens next.
//!
//! The token is an update link's ([`super`]): the same keys, expiry and compact format, nothing
//! personal in the URL, but signed for [`Purpose::Feedback`], so an update link does not answer
//! here nor a feedback link open the billing portal. Unlike an update link it is **single-use**:
//! the first answer marks the link's MAC in the store ([`Answers`]) until the link expires, and
//! every later `POST` — or `GET` — gets a page saying it was answered already (409), changing
//! nothing. An answer that could not be recorded on the case gives its mark back, so the customer
//! can send it again.
//!
//! In order, for `GET` (the form) and `POST` (the answer):
//!
//! 1. the token is verified: a damaged or forged one gets a page saying the link does not work
//!    (404), an expired one a page saying so (410);
//! 2. the link's rate limit, the update links' ([`limit`](super::limit)): too many requests get a
//!    page asking to wait (429, `Retry-After`);
//! 3. an answered link gets "already answered" (409);
//! 4. `GET` shows the form; `POST` checks it — an unknown answer or words too long get the form
//!    again with what is wrong (400), nothing recorded — marks the link answered, records the
//!    answer on the case, and thanks the customer, saying what happens next.
//!
//! `HEAD` (link checkers, mail scanners) only checks the token. Every answer is uncached,
//! unframed, unindexed and sent with `Referrer-Policy: no-referrer`; the page has no script, and
//! its CSP lets its form post to this origin only.

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Router, middleware};
use minijinja::value::Serde;
use minijinja::{Environment, Value, context};
use serde::Serialize;

use super::limit::{Limited, Limits};
use super::route::{STYLE, TEMPLATE as FIX, private};
use super::{Claims, LinkKeys, Purpose, Refusal};
use crate::api::Api;
use crate::notify::templates::format_date;
use crate::page;
use crate::policy::feedback::MAX_TEXT;
use crate::policy::{Answer, Case, Input, Reaction, timing};
use crate::store::Answers;
use crate::telemetry::metric;
use crate::worker::{Decides, Engine, Inputs};

const TEMPLATE: &str = include_str!("feedback.html");

static CONTENT_SECURITY_POLICY: LazyLock<HeaderValue> =
    LazyLock::new(|| page::content_security_policy(STYLE, "'self'"));

/// What answering needs: the keys that verify links, the case store and clock (through the API's
/// handle on them) and the limits.
pub struct Feedback<S> {
    pub keys: LinkKeys,
    pub api: Arc<Api<S>>,
    pub limits: Limits,
}

struct Served<S> {
    feedback: Option<Feedback<S>>,
    templates: Environment<'static>,
}

/// The store roles answering uses: recording on the case, and the single-use marks.
pub trait FeedbackStore: Decides + Answers + 'static {}

impl<S: Decides + Answers + 'static> FeedbackStore for S {}

/// The feedback page: the update link's page (`fix.html`) with the question's form in it.
fn templates() -> minijinja::Environment<'static> {
    page::html_environment(&[("fix.html", FIX), ("feedback.html", TEMPLATE)])
}

/// `GET`, `HEAD` and `POST /feedback/{token}`. Without `feedback` (no `RECOUP_LINK_SECRET` on this
/// process) every link gets a page saying it does not work here (404).
pub fn routes<S: FeedbackStore>(feedback: Option<Feedback<S>>) -> Router {
    let served = Arc::new(Served {
        feedback,
        templates: templates(),
    });
    Router::new()
        .route(
            "/feedback/{token}",
            get(form::<S>).head(peek::<S>).post(answer::<S>),
        )
        .with_state(served)
        .layer(middleware::map_response(guard))
}

async fn guard(response: Response) -> Response {
    private(response, &CONTENT_SECURITY_POLICY)
}

/// The page the customer reads.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Shown {
    /// The question, with what was wrong with the answer sent, if anything, and what it said.
    Form {
        problem: Option<String>,
        picked: Option<Answer>,
        words: String,
    },
    /// The answer is recorded; what happens next.
    Thanks(Reaction, Option<String>),
    AlreadyAnswered,
    Invalid,
    Expired,
    Limited(Duration),
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
    fn blank() -> Self {
        Shown::Form {
            problem: None,
            picked: None,
            words: String::new(),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Shown::Form { problem: None, .. } | Shown::Thanks(..) => StatusCode::OK,
            Shown::Form { .. } => StatusCode::BAD_REQUEST,
            Shown::AlreadyAnswered => StatusCode::CONFLICT,
            Shown::Invalid | Shown::NotHere => StatusCode::NOT_FOUND,
            Shown::Expired => StatusCode::GONE,
            Shown::Limited(_) => StatusCode::TOO_MANY_REQUESTS,
            Shown::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn words(&self) -> (&'static str, String) {
        let (heading, text): (&str, &str) = match self {
            Shown::Form { .. } => (
                "What's in the way?",
                "Your payment did not go through. If something keeps you from paying, tell us: we \
                 read every answer and will do what we can.",
            ),
            Shown::Thanks(reaction, next_retry) => return thanks(*reaction, next_retry.as_deref()),
            Shown::AlreadyAnswered => (
                "You have answered already",
                "Thank you — we have your answer from this link, and it cannot be changed here. \
                 If something else has come up, please reply to our most recent message.",
            ),
            Shown::Invalid => (
                "This link does not work",
                "It may have been cut short or changed on its way to you. Please use the link in \
                 the most recent message we sent you, or reply to that message.",
            ),
            Shown::Expired => (
                "This link has expired",
                "Links in our messages work for a limited time. Please use the link in our most \
                 recent message, or reply to it.",
            ),
            Shown::Limited(_) => (
                "Please wait a moment",
                "This link was used many times in a short while. Please try again in a minute.",
            ),
            Shown::Unavailable => (
                "We could not save your answer",
                "Something went wrong on our side. Please try again in a few minutes.",
            ),
            Shown::NotHere => (
                "This link does not work here",
                "This address does not take answers. Please use the link in the message you \
                 received.",
            ),
        };
        (heading, text.to_owned())
    }

    fn metric(&self) -> &'static str {
        match self {
            Shown::Form { problem: None, .. } => "form",
            Shown::Form { .. } => "bad_form",
            Shown::Thanks(..) => "answered",
            Shown::AlreadyAnswered => "already_answered",
            Shown::Invalid => "invalid",
            Shown::Expired => "expired",
            Shown::Limited(_) => "limited",
            Shown::Unavailable => "unavailable",
            Shown::NotHere => "off",
        }
    }
}

/// The thank-you, saying what the policy's reaction means for the customer; `next_retry` is the
/// day of the retry a "can't pay now" moved, in the customer's words.
fn thanks(reaction: Reaction, next_retry: Option<&str>) -> (&'static str, String) {
    match reaction {
        Reaction::RetryOnPayday => (
            "Thank you — we will wait for your payday",
            match next_retry {
                Some(day) => format!(
                    "We will try the payment again on {day}, and we will not send you reminders \
                     until then."
                ),
                None => "We will try the payment again on your next payday, and we will not send \
                         you reminders until then."
                    .to_owned(),
            },
        ),
        Reaction::StopDunning => (
            "Thank you for telling us",
            "We will not try to charge this invoice again or send you more reminders about it. \
             Your subscription itself has not been changed; we will be in touch about it."
                .to_owned(),
        ),
        Reaction::EndNow => (
            "Thank you for telling us",
            "We will not send you more reminders, and your subscription will be ended as our \
             terms describe. You will hear from us when it is done."
                .to_owned(),
        ),
        Reaction::SendUpdateLink => (
            "Thank you — a new link is on its way",
            "We are sending you a link to add your new card. It should reach you within a few \
             minutes."
                .to_owned(),
        ),
        Reaction::Record => (
            "Thank you for telling us",
            "Your answer has reached our team. There is nothing more you need to do here."
                .to_owned(),
        ),
    }
}

/// One answer as the form offers it.
#[derive(Serialize)]
struct Offered {
    value: &'static str,
    label: &'static str,
    checked: bool,
}

/// What the customer's form said: an answer and their words, or what is wrong with it.
fn read_form(body: &[u8]) -> Result<(Answer, Option<String>), Shown> {
    let mut answer = None;
    let mut words = String::new();
    for (key, value) in form_urlencoded::parse(body) {
        match &*key {
            "answer" => answer = Some(value.into_owned()),
            "text" => words = value.into_owned(),
            _ => {}
        }
    }
    let picked = answer.as_deref().and_then(Answer::parse);
    // Browsers send a textarea's line breaks as CRLF; a character is what the customer typed.
    let words = words.replace("\r\n", "\n");
    let problem = if picked.is_none() {
        Some("Please choose one of the answers.".to_owned())
    } else if words.chars().count() > MAX_TEXT {
        Some(format!(
            "Please keep what you write to {MAX_TEXT} characters (this is {}).",
            words.chars().count()
        ))
    } else {
        None
    };
    match (picked, problem) {
        (Some(answer), None) => {
            let words = words.trim();
            Ok((answer, (!words.is_empty()).then(|| words.to_owned())))
        }
        (picked, problem) => Err(Shown::Form {
            problem,
            picked,
            words: words.chars().take(4 * MAX_TEXT).collect(),
        }),
    }
}

impl<S: FeedbackStore> Feedback<S> {
    /// The link's claims at the scheduler's now, once it passes its signature, expiry and rate
    /// limit; else the page to show.
    async fn admit(&self, token: &str) -> Result<(Claims, jiff::Timestamp), Shown> {
        let (claims, now) = self
            .keys
            .check(&self.api.clock, Purpose::Feedback, token, "feedback link")
            .await?;
        if let Err(Limited::Link { retry_after } | Limited::Busy { retry_after }) =
            self.limits.open(claims.mac)
        {
            tracing::info!(customer = %claims.customer_id, invoice = ?claims.invoice_id, "feedback link used too often: asked to wait");
            return Err(Shown::Limited(retry_after));
        }
        match self.api.store.answered(&claims.mac).await {
            Ok(false) => Ok((claims, now)),
            Ok(true) => Err(Shown::AlreadyAnswered),
            Err(e) => {
                tracing::warn!("feedback link: the store did not answer: {e}");
                Err(Shown::Unavailable)
            }
        }
    }

    /// Marks the link answered and records the answer on the case; the thank-you, or why not.
    async fn record(
        &self,
        claims: &Claims,
        now: jiff::Timestamp,
        answer: Answer,
        text: Option<String>,
    ) -> Shown {
        let keep = claims.expires_at.duration_since(now).unsigned_abs();
        match self.api.store.mark_answered(&claims.mac, keep).await {
            Ok(true) => {}
            Ok(false) => return Shown::AlreadyAnswered,
            Err(e) => {
                tracing::warn!("feedback link: the store did not answer: {e}");
                return Shown::Unavailable;
            }
        }
        let Some(invoice_id) = &claims.invoice_id else {
            // Recoup makes feedback links for invoices only; a token without one was never sent.
            return Shown::Thanks(Reaction::Record, None);
        };
        let engine = Engine {
            store: &self.api.store,
            policy: &self.api.policy,
            processor: None,
            clock: &self.api.clock,
            lease: None,
        };
        let input = Input::Answered {
            at: now,
            answer,
            text,
        };
        match engine.apply(invoice_id, Inputs::One(&input)).await {
            Ok(applied) => {
                metrics::counter!(metric::FEEDBACK_ANSWERS, "answer" => answer.as_str())
                    .increment(1);
                tracing::info!(invoice = %invoice_id, answer = answer.as_str(), "feedback answered");
                match applied.case {
                    Some(case) => thanked(&case),
                    None => {
                        tracing::warn!(invoice = %invoice_id, "feedback answered for an invoice recoup has no case for");
                        Shown::Thanks(Reaction::Record, None)
                    }
                }
            }
            Err(e) => {
                tracing::warn!(invoice = %invoice_id, "feedback answer not recorded: {e}");
                if let Err(e) = self.api.store.unmark_answered(&claims.mac).await {
                    tracing::warn!(invoice = %invoice_id, "feedback link left marked answered: {e}");
                }
                Shown::Unavailable
            }
        }
    }
}

/// The thank-you for the answer just saved on `case`.
fn thanked(case: &Case) -> Shown {
    let reaction = case
        .answer
        .as_ref()
        .map_or(Reaction::Record, |a| a.reaction);
    let next_retry = case
        .next_attempt_at
        .filter(|_| reaction == Reaction::RetryOnPayday)
        .map(|at| format_date(at, &timing::zone(&case.customer_timezone), "en"));
    Shown::Thanks(reaction, next_retry)
}

/// `HEAD /feedback/{token}`: the token checked and the status told; nothing else.
async fn peek<S: FeedbackStore>(
    State(served): State<Arc<Served<S>>>,
    Path(token): Path<String>,
) -> Response {
    let Some(feedback) = &served.feedback else {
        return served.show(Shown::NotHere);
    };
    match feedback
        .keys
        .check(
            &feedback.api.clock,
            Purpose::Feedback,
            &token,
            "feedback link",
        )
        .await
    {
        Ok(_) => StatusCode::OK.into_response(),
        Err(refusal) => served.show(refusal.into()),
    }
}

/// `GET /feedback/{token}`: the question.
async fn form<S: FeedbackStore>(
    State(served): State<Arc<Served<S>>>,
    Path(token): Path<String>,
) -> Response {
    let Some(feedback) = &served.feedback else {
        return served.show(Shown::NotHere);
    };
    match feedback.admit(&token).await {
        Ok(_) => served.show(Shown::blank()),
        Err(shown) => served.show(shown),
    }
}

/// `POST /feedback/{token}`: the answer.
async fn answer<S: FeedbackStore>(
    State(served): State<Arc<Served<S>>>,
    Path(token): Path<String>,
    body: Bytes,
) -> Response {
    let Some(feedback) = &served.feedback else {
        return served.show(Shown::NotHere);
    };
    let (claims, now) = match feedback.admit(&token).await {
        Ok(admitted) => admitted,
        Err(shown) => return served.show(shown),
    };
    let shown = match read_form(&body) {
        Ok((answer, text)) => feedback.record(&claims, now, answer, text).await,
        Err(shown) => shown,
    };
    served.show(shown)
}

impl<S> Served<S> {
    fn show(&self, shown: Shown) -> Response {
        metrics::counter!(metric::FEEDBACK_PAGES, "outcome" => shown.metric()).increment(1);
        let status = shown.status();
        let mut response = match self.page(&shown) {
            Ok(html) => (status, Html(html)).into_response(),
            Err(e) => {
                tracing::error!("feedback page: {e:#}");
                (status, shown.words().0).into_response()
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

    /// The page's HTML: the heading and text, and for the form its answers, what was wrong and the
    /// customer's words (escaped, as everything the template inserts).
    fn page(&self, shown: &Shown) -> Result<String, minijinja::Error> {
        let (heading, text) = shown.words();
        let (problem, answers, words) = match shown {
            Shown::Form {
                problem,
                picked,
                words,
            } => {
                let answers: Vec<Offered> = Answer::ALL
                    .into_iter()
                    .map(|a| Offered {
                        value: a.as_str(),
                        label: a.words(),
                        checked: *picked == Some(a),
                    })
                    .collect();
                (problem.clone(), answers, words.clone())
            }
            _ => (None, Vec::new(), String::new()),
        };
        self.templates
            .get_template("feedback.html")?
            .render(context! {
                heading, text, words,
                answers => Value::from(Serde(answers)),
                error => problem,
                max => MAX_TEXT,
                // Trusted: recoup's own stylesheet, which the CSP allows by its hash.
                style => Value::from_safe_string(STYLE.to_owned()),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_with_a_known_answer_and_words_that_fit_is_read() {
        assert_eq!(
            read_form(b"answer=cant_pay_now&text=+paid+on+the+20th%0D%0A+"),
            Ok((Answer::CantPayNow, Some("paid on the 20th".to_owned())))
        );
        assert_eq!(
            read_form(b"answer=something_else&text="),
            Ok((Answer::SomethingElse, None))
        );
        let fits = format!("answer=card_changed&text={}", "é".repeat(MAX_TEXT));
        assert!(read_form(fits.as_bytes()).is_ok());
    }

    #[test]
    fn an_unknown_answer_or_too_many_words_get_the_form_again_with_the_reason() {
        for body in ["", "answer=refund_me", "text=hello"] {
            let Err(Shown::Form { problem, .. }) = read_form(body.as_bytes()) else {
                panic!("{body} is refused");
            };
            assert_eq!(
                problem.as_deref(),
                Some("Please choose one of the answers.")
            );
        }
        let long = format!("answer=want_to_cancel&text={}", "a".repeat(MAX_TEXT + 1));
        let Err(shown) = read_form(long.as_bytes()) else {
            panic!("too long");
        };
        assert_eq!(shown.status(), StatusCode::BAD_REQUEST);
        let Shown::Form {
            problem, picked, ..
        } = shown
        else {
            unreachable!()
        };
        assert_eq!(
            picked,
            Some(Answer::WantToCancel),
            "kept for the form again"
        );
        assert!(problem.unwrap().contains("500 characters (this is 501)"));
    }

    #[test]
    fn every_page_renders_and_the_customers_words_are_escaped() {
        let served: Served<()> = Served {
            feedback: None,
            templates: templates(),
        };
        let pages = [
            Shown::blank(),
            Shown::Thanks(
                Reaction::RetryOnPayday,
                Some("Friday, 20 November 2026".into()),
            ),
            Shown::Thanks(Reaction::StopDunning, None),
            Shown::AlreadyAnswered,
            Shown::Invalid,
            Shown::Expired,
            Shown::Limited(Duration::from_secs(6)),
            Shown::Unavailable,
            Shown::NotHere,
        ];
        for shown in pages {
            let status = shown.status();
            assert_eq!(served.show(shown).status(), status);
        }
        let hostile = Shown::Form {
            problem: Some("Please choose one of the answers.".into()),
            picked: None,
            words: "</textarea><script>alert(1)</script>".into(),
        };
        let html = served.page(&hostile).unwrap();
        assert!(!html.contains("<script>"), "{html}");
        assert!(
            html.contains("&lt;&#x2f;textarea&gt;&lt;script&gt;"),
            "{html}"
        );
        assert!(html.contains(r#"<form method="post">"#));
        for answer in Answer::ALL {
            let offered = format!(
                r#"value="{}" required> {}"#,
                answer.as_str(),
                answer.words()
            );
            assert!(html.contains(&offered.replace('\'', "&#x27;")), "{html}");
        }
    }
}
