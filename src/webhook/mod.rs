//! Receiving Stripe webhooks: `POST /webhooks/stripe`.
//!
//! The receiver owns the door and nothing behind it: it verifies the signature over the raw bytes,
//! reads the event leniently into recoup's typed subset, and hands it to the store, which dedupes and
//! appends it to the inbox in one atomic step. Only then does Stripe get its 200. It decides nothing
//! about dunning; that is the worker's job, and because the inbox holds each event exactly once,
//! nothing downstream has to think about Stripe's redeliveries.
//!
//! | outcome | answer |
//! | --- | --- |
//! | stored | 200 `{"received":true}` |
//! | already stored | 200 `{"received":true,"duplicate":true}` |
//! | a type recoup does not act on | 200 `{"received":true,"ignored":true}` |
//! | bad or missing signature, stale timestamp, not a Stripe event | 400 `{"error":"…"}` |
//! | body over the limit | 413 `{"error":"…"}` |
//! | store unavailable or too slow | 503 `{"error":"…"}` — Stripe delivers again |

pub mod send;
pub mod signature;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;

use self::signature::Verifier;
use crate::event::Event;
use crate::event::wire::{self, EventError, Parsed};
use crate::http::error_response as error;
use crate::store::{Arrival, Inbox, Ingest, StoreError};
use crate::telemetry::metric;

/// The route Stripe posts to.
pub const PATH: &str = "/webhooks/stripe";

/// Everything a delivery needs: the verifier and the store, of which it only writes the inbox.
#[derive(Debug)]
pub struct Receiver<S> {
    pub verifier: Verifier,
    pub store: S,
}

/// The webhook route, with its body limit.
pub fn routes<S: Inbox + 'static>(receiver: Arc<Receiver<S>>, body_limit_bytes: usize) -> Router {
    Router::new()
        .route(PATH, post(receive::<S>))
        .layer(DefaultBodyLimit::max(body_limit_bytes))
        .with_state(receiver)
}

async fn receive<S: Inbox>(
    State(receiver): State<Arc<Receiver<S>>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let response = handle(&receiver, &headers, body).await;
    metrics::histogram!(metric::WEBHOOK_INGEST_SECONDS).record(started.elapsed().as_secs_f64());
    response
}

async fn handle<S: Inbox>(
    receiver: &Receiver<S>,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            // Over the limit (413), or the client broke off mid-body (400).
            let status = rejection.status();
            tracing::warn!(%status, "webhook body refused: {}", rejection.body_text());
            count(status_outcome(status), "unknown");
            return error(status, &rejection.body_text());
        }
    };

    // The signature is checked on the raw bytes, before anything looks inside them.
    let header = headers
        .get("stripe-signature")
        .map(|v| v.to_str().unwrap_or("\u{fffd}"));
    if let Err(e) = receiver
        .verifier
        .verify(header, &body, signature::unix_now())
    {
        tracing::warn!(reason = e.reason(), "webhook signature refused: {e}");
        metrics::counter!(metric::WEBHOOK_VERIFICATION_FAILURES, "reason" => e.reason())
            .increment(1);
        count("refused", "unknown");
        return error(StatusCode::BAD_REQUEST, &e.to_string());
    }

    match take_in(&receiver.store, &body, Arrival::Webhook).await {
        Ok(Taken::Stored { event, entry_id }) => {
            let kind = event.kind.as_str();
            tracing::debug!(event_id = %event.id, event_type = kind, %entry_id, "webhook stored");
            count("stored", kind);
            json(StatusCode::OK, r#"{"received":true}"#)
        }
        Ok(Taken::Duplicate { event }) => {
            let kind = event.kind.as_str();
            tracing::debug!(event_id = %event.id, event_type = kind, "webhook duplicate");
            count("duplicate", kind);
            json(StatusCode::OK, r#"{"received":true,"duplicate":true}"#)
        }
        Ok(Taken::Ignored { id, event_type }) => {
            tracing::debug!(event_id = %id, %event_type, "webhook ignored: recoup does not act on this type");
            count("ignored", "other");
            json(StatusCode::OK, r#"{"received":true,"ignored":true}"#)
        }
        Ok(Taken::Invalid(e)) => {
            let kind = match &e {
                EventError::BadObject { kind, .. } => kind.as_str(),
                EventError::NotAnEvent(_) => "unknown",
            };
            tracing::warn!("webhook body refused: {e}");
            count("invalid", kind);
            error(StatusCode::BAD_REQUEST, &e.to_string())
        }
        Err(NotStored { event, error: e }) => {
            let kind = event.kind.as_str();
            tracing::error!(event_id = %event.id, event_type = kind, "webhook not stored, Stripe will deliver again: {e}");
            count("unavailable", kind);
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the event store is unavailable; deliver again later",
            )
        }
    }
}

/// What became of a Stripe event's JSON handed to [`take_in`].
#[derive(Debug)]
pub enum Taken {
    /// New: appended to the inbox under `entry_id`.
    Stored { event: Box<Event>, entry_id: String },
    /// Already in the inbox (or acted on): nothing was written.
    Duplicate { event: Box<Event> },
    /// A well-formed event of a type recoup does not act on: nothing was written.
    Ignored { id: String, event_type: String },
    /// Not a Stripe event recoup can read: nothing was written.
    Invalid(EventError),
}

/// A readable event the store could not take; nothing was acknowledged.
#[derive(Debug, thiserror::Error)]
#[error("event {} not stored: {error}", event.id)]
pub struct NotStored {
    pub event: Box<Event>,
    pub error: StoreError,
}

/// Reads a Stripe event's JSON and stores it in the inbox, exactly once: the one way into the
/// inbox for every event Stripe sends, delivered to the webhook or fetched by a backfill, so both
/// are read into the same typed event (both invoice shapes) and deduped on the same id.
pub async fn take_in<S: Inbox>(store: &S, body: &[u8], via: Arrival) -> Result<Taken, NotStored> {
    let event = match wire::parse(body) {
        Ok(Parsed::Acted(event)) => event,
        Ok(Parsed::Ignored { id, event_type }) => return Ok(Taken::Ignored { id, event_type }),
        Err(e) => return Ok(Taken::Invalid(e)),
    };
    match store.ingest_via(&event, via).await {
        Ok(Ingest::Stored { entry_id }) => Ok(Taken::Stored { event, entry_id }),
        Ok(Ingest::Duplicate) => Ok(Taken::Duplicate { event }),
        Err(error) => Err(NotStored { event, error }),
    }
}

fn count(outcome: &'static str, kind: &'static str) {
    metrics::counter!(metric::WEBHOOK_EVENTS, "type" => kind, "outcome" => outcome).increment(1);
}

fn status_outcome(status: StatusCode) -> &'static str {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        "too_large"
    } else {
        "invalid"
    }
}

fn json(status: StatusCode, body: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}
