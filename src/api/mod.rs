//! The support API under `/api/v1`: cases by invoice, customer or subscription, and the test clock.
//!
//! Read-only toward cases: a case changes only through `decide`, in the worker. Every route needs a
//! bearer token ([`auth`]). Errors are `{"error": "…"}`: 401 without a valid token, 404 for an id
//! recoup has no case for (or the clock route while the test clock is off), 400 for a bad body, 503
//! when the store cannot answer.

pub mod auth;

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, middleware};
use serde::Deserialize;

use self::auth::Tokens;
use crate::clock::{Clock, ClockError};
use crate::policy::Case;
use crate::server::error_response;
use crate::store::{Store, StoreError};

/// What the API reads.
pub struct Api<S> {
    pub store: S,
    pub clock: Clock<S>,
}

/// The `/api/v1` routes, behind the token check.
pub fn routes<S: Store>(api: Arc<Api<S>>, tokens: Tokens) -> Router {
    Router::new()
        .route("/api/v1/invoices/{id}", get(invoice::<S>))
        .route("/api/v1/customers/{id}", get(customer::<S>))
        .route("/api/v1/subscriptions/{id}", get(subscription::<S>))
        .route("/api/v1/clock/advance", post(advance_clock::<S>))
        .with_state(api)
        .layer(middleware::from_fn_with_state(tokens, auth::require_token))
}

async fn invoice<S: Store>(State(api): State<Arc<Api<S>>>, Path(id): Path<String>) -> Response {
    match api.store.load_case(&id).await {
        Ok(Some(case)) => Json(case).into_response(),
        Ok(None) => not_found("invoice", &id),
        Err(e) => unavailable(e),
    }
}

async fn customer<S: Store>(State(api): State<Arc<Api<S>>>, Path(id): Path<String>) -> Response {
    cases("customer", &id, api.store.cases_of_customer(&id).await)
}

async fn subscription<S: Store>(
    State(api): State<Arc<Api<S>>>,
    Path(id): Path<String>,
) -> Response {
    cases(
        "subscription",
        &id,
        api.store.cases_of_subscription(&id).await,
    )
}

fn cases(what: &str, id: &str, found: Result<Vec<Case>, StoreError>) -> Response {
    match found {
        Ok(cases) if cases.is_empty() => not_found(what, id),
        Ok(cases) => Json(serde_json::json!({ "cases": cases })).into_response(),
        Err(e) => unavailable(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Advance {
    seconds: i64,
}

async fn advance_clock<S: Store>(
    State(api): State<Arc<Api<S>>>,
    body: Result<Json<Advance>, JsonRejection>,
) -> Response {
    if !api.clock.is_test() {
        return error_response(StatusCode::NOT_FOUND, &ClockError::Off.to_string());
    }
    let Json(Advance { seconds }) = match body {
        Ok(body) => body,
        Err(rejection) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                &format!(
                    "expected {{\"seconds\": N}} with N a positive whole number: {}",
                    rejection.body_text()
                ),
            );
        }
    };
    match api.clock.advance(seconds).await {
        Ok(reading) => Json(reading).into_response(),
        Err(e @ ClockError::NotForward(_)) => {
            error_response(StatusCode::BAD_REQUEST, &e.to_string())
        }
        Err(e @ ClockError::Off) => error_response(StatusCode::NOT_FOUND, &e.to_string()),
        Err(e @ (ClockError::Unclaimed { .. } | ClockError::Store(_))) => {
            error_response(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
        }
    }
}

fn not_found(what: &str, id: &str) -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        &format!("recoup has no case for {what} {id}"),
    )
}

fn unavailable(e: StoreError) -> Response {
    tracing::error!("status API: {e}");
    error_response(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
}
