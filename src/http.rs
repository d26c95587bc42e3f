//! The one JSON error body every endpoint of recoup answers with: `{"error": "…"}`.
//!
//! One shape for every failure — a webhook Stripe must deliver again, a support API call refused, a
//! missing token — so whoever reads an answer (Stripe's dashboard, a support script, the OpenAPI
//! document, a person with curl) finds the reason in the same place whatever went wrong; the status
//! code says what kind of failure it is. It lives apart from [`crate::server`], which assembles
//! the routes, so the modules that serve them ([`crate::webhook`], [`crate::api`]) answer with it
//! without importing the server that imports them.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// How every route of recoup reports a problem.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// What went wrong, for a person to read.
    pub error: String,
}

/// `{"error": message}` with `status`.
pub fn error_response(status: StatusCode, message: &str) -> Response {
    let body = ErrorBody {
        error: message.to_owned(),
    };
    (status, axum::Json(body)).into_response()
}
