//! The support API under `/api/v1`: cases by invoice, customer or subscription; support's hold,
//! resume and retry; the experiments' report; the recovery dashboard; and the test clock. Also its OpenAPI document, `GET /api/openapi.json`.
//!
//! A case changes only through `decide`: support actions are inputs like any event, applied with
//! compare-and-set, each recording the name of the token that made it and the reason given. They
//! make no Stripe call themselves — a support retry is a retry timer due now, which a worker fires
//! within moments, under the same network rules as any retry; one the policy forbids is refused at
//! once (409) with the rule. Every `/api/v1` route needs a bearer token ([`auth`]). Errors are
//! `{"error": "…"}`: 401 without a valid token, 404 for an id recoup has no case for (or the clock
//! route while the test clock is off), 400 for a bad body, 409 for a support action the case's state
//! or the policy forbids, 503 when the store cannot answer.
//!
//! The routes and the document come from one list of handlers, each annotated with what it takes
//! and answers, so every route served is documented and every route documented is served. The
//! document needs no token: it describes the API and holds no data.

pub mod auth;

use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Extension, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, middleware};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};

use self::auth::{Caller, Tokens};
use crate::clock::{Clock, ClockError, Reading};
use crate::dashboard::period::{Period, PeriodError, Summary};
use crate::http::{ErrorBody, error_response};
use crate::policy::experiment::report::Report;
use crate::policy::{Case, Input, Policy, Support, SupportAct};
use crate::store::{self, StoreError, TestClock, Timers};
use crate::telemetry::metric;
use crate::worker::{Applied, Decides, Engine, Inputs};

/// What the API reads, and the policy support actions are decided by. Of the store it uses cases,
/// card histories (for a support retry's network budget), the test clock and, to move that clock,
/// the timers; never the inbox.
pub struct Api<S> {
    pub store: S,
    pub clock: Clock<S>,
    pub policy: Arc<Policy>,
}

/// The `/api/v1` routes, behind the token check, and their OpenAPI document beside them.
pub fn routes<S: Decides + 'static>(api: Arc<Api<S>>, tokens: Tokens) -> Router {
    let document = Bytes::from(
        Document::openapi()
            .to_json()
            .expect("the OpenAPI document serialises to JSON"),
    );
    let v1 = Router::new()
        .route("/api/v1/invoices/{id}", get(invoice::<S>))
        .route("/api/v1/customers/{id}", get(customer::<S>))
        .route("/api/v1/subscriptions/{id}", get(subscription::<S>))
        .route("/api/v1/invoices/{id}/hold", post(hold::<S>))
        .route("/api/v1/invoices/{id}/resume", post(resume::<S>))
        .route("/api/v1/invoices/{id}/retry", post(retry::<S>))
        .route("/api/v1/clock/advance", post(advance_clock::<S>))
        .route("/api/v1/experiments", get(experiments::<S>))
        .route("/api/v1/dashboard", get(dashboard::<S>))
        .with_state(api)
        .layer(middleware::from_fn_with_state(tokens, auth::require_token));
    Router::new()
        .route(
            "/api/openapi.json",
            get(|| async { ([(header::CONTENT_TYPE, "application/json")], document) }),
        )
        .merge(v1)
}

/// The document: every operation of [`routes`] (`tests/api/openapi.rs` calls each one documented
/// and checks the answer against it), with the schemas their annotations name.
#[derive(OpenApi)]
#[openapi(
    info(title = "recoup", version = env!("CARGO_PKG_VERSION")),
    paths(
        invoice,
        customer,
        subscription,
        hold,
        resume,
        retry,
        advance_clock,
        experiments,
        dashboard
    ),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
struct Document;

/// Declares the `bearer` scheme every operation requires.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let mut bearer = Http::new(HttpAuthScheme::Bearer);
        bearer.description = Some(
            "A token from RECOUP_API_TOKENS; the name it is configured under is recorded on \
             support actions."
                .to_owned(),
        );
        openapi
            .components
            .get_or_insert_with(Default::default)
            .add_security_scheme("bearer", SecurityScheme::Http(bearer));
    }
}

/// The cases of a customer or a subscription, newest first.
#[derive(Serialize, ToSchema)]
struct Cases {
    cases: Vec<Case>,
}

/// The invoice's case.
#[utoipa::path(
    get,
    path = "/api/v1/invoices/{id}",
    params(("id" = String, Path, description = "The Stripe invoice id, `in_…`")),
    responses(
        (status = 200, description = "The invoice's case", body = Case),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "recoup has no case for the invoice", body = ErrorBody),
        (status = 503, description = "The store cannot answer", body = ErrorBody),
    )
)]
async fn invoice<S: store::Cases>(
    State(api): State<Arc<Api<S>>>,
    Path(id): Path<String>,
) -> Response {
    match api.store.load_case(&id).await {
        Ok(Some(case)) => Json(case).into_response(),
        Ok(None) => not_found("invoice", &id),
        Err(e) => unavailable(e),
    }
}

/// The customer's cases.
#[utoipa::path(
    get,
    path = "/api/v1/customers/{id}",
    params(("id" = String, Path, description = "The Stripe customer id, `cus_…`")),
    responses(
        (status = 200, description = "The customer's cases, newest first", body = Cases),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "recoup has no case for the customer", body = ErrorBody),
        (status = 503, description = "The store cannot answer", body = ErrorBody),
    )
)]
async fn customer<S: store::Cases>(
    State(api): State<Arc<Api<S>>>,
    Path(id): Path<String>,
) -> Response {
    cases("customer", &id, api.store.cases_of_customer(&id).await)
}

/// The subscription's cases.
#[utoipa::path(
    get,
    path = "/api/v1/subscriptions/{id}",
    params(("id" = String, Path, description = "The Stripe subscription id, `sub_…`")),
    responses(
        (status = 200, description = "The subscription's cases, newest first", body = Cases),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "recoup has no case for the subscription", body = ErrorBody),
        (status = 503, description = "The store cannot answer", body = ErrorBody),
    )
)]
async fn subscription<S: store::Cases>(
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
        Ok(cases) => Json(Cases { cases }).into_response(),
        Err(e) => unavailable(e),
    }
}

/// The body of a support action: why.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Why {
    /// Recorded on the case's timeline with the token's name; must not be blank.
    reason: String,
}

type WhyBody = Result<Json<Why>, JsonRejection>;

/// Stops dunning on the invoice until support resumes it.
#[utoipa::path(
    post,
    path = "/api/v1/invoices/{id}/hold",
    params(("id" = String, Path, description = "The Stripe invoice id, `in_…`")),
    request_body = Why,
    responses(
        (status = 200, description = "The case, on hold", body = Case),
        (status = 400, description = "No reason, or a body that is not `{\"reason\": \"…\"}`", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "recoup has no case for the invoice", body = ErrorBody),
        (status = 409, description = "Dunning is over for the case: there is nothing to hold", body = ErrorBody),
        (status = 503, description = "The store cannot answer", body = ErrorBody),
    )
)]
async fn hold<S: Decides>(
    State(api): State<Arc<Api<S>>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: WhyBody,
) -> Response {
    support(&api, caller, &id, body, "hold").await
}

/// Restarts dunning on an invoice support put on hold.
#[utoipa::path(
    post,
    path = "/api/v1/invoices/{id}/resume",
    params(("id" = String, Path, description = "The Stripe invoice id, `in_…`")),
    request_body = Why,
    responses(
        (status = 200, description = "The case, released from support's hold", body = Case),
        (status = 400, description = "No reason, or a body that is not `{\"reason\": \"…\"}`", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "recoup has no case for the invoice", body = ErrorBody),
        (status = 409, description = "Support holds nothing on the case; the error says why", body = ErrorBody),
        (status = 503, description = "The store cannot answer", body = ErrorBody),
    )
)]
async fn resume<S: Decides>(
    State(api): State<Arc<Api<S>>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: WhyBody,
) -> Response {
    support(&api, caller, &id, body, "resume").await
}

/// Retries the invoice now, under the same network rules as any retry.
#[utoipa::path(
    post,
    path = "/api/v1/invoices/{id}/retry",
    params(("id" = String, Path, description = "The Stripe invoice id, `in_…`")),
    request_body = Why,
    responses(
        (status = 202, description = "The case with a retry due now, which a worker makes within moments", body = Case),
        (status = 400, description = "No reason, or a body that is not `{\"reason\": \"…\"}`", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "recoup has no case for the invoice", body = ErrorBody),
        (status = 409, description = "The case's state or the policy forbids a retry; the error names the rule", body = ErrorBody),
        (status = 503, description = "The store cannot answer", body = ErrorBody),
    )
)]
async fn retry<S: Decides>(
    State(api): State<Arc<Api<S>>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    body: WhyBody,
) -> Response {
    support(&api, caller, &id, body, "retry").await
}

/// Applies a support action to the invoice's case: the case as saved (202 for a retry, which a
/// worker makes within moments), or 409 with the reason the policy refused it.
async fn support<S: Decides>(
    api: &Api<S>,
    caller: Caller,
    id: &str,
    body: WhyBody,
    action: &'static str,
) -> Response {
    let reason = match body {
        Ok(Json(Why { reason })) if !reason.trim().is_empty() => reason.trim().to_owned(),
        Ok(_) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "reason is empty: say why, for the case's timeline",
            );
        }
        Err(rejection) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                &format!(
                    "expected {{\"reason\": \"…\"}} saying why: {}",
                    rejection.body_text()
                ),
            );
        }
    };
    let case = match api.store.load_case(id).await {
        Ok(Some(case)) => case,
        Ok(None) => return not_found("invoice", id),
        Err(e) => return unavailable(e),
    };
    let act = match action {
        "hold" => SupportAct::Hold,
        "resume" => SupportAct::Resume,
        _ => match store::card_tries(&api.store, &case).await {
            Ok(card) => SupportAct::Retry { card },
            Err(e) => return unavailable(e),
        },
    };
    let at = match api.clock.now().await {
        Ok(now) => now,
        Err(e) => return unavailable(e),
    };
    let input = Input::Support(Box::new(Support {
        by: caller.0.clone(),
        reason,
        at,
        act,
    }));
    let engine = Engine {
        store: &api.store,
        policy: &api.policy,
        processor: None,
        clock: &api.clock,
        lease: None,
    };
    let applied = engine.apply(id, Inputs::One(&input)).await;
    let outcome = match &applied {
        Ok(Applied {
            refused: Some(_), ..
        }) => "refused",
        Ok(_) => "done",
        Err(_) => "failed",
    };
    metrics::counter!(metric::SUPPORT_ACTIONS, "action" => action, "outcome" => outcome)
        .increment(1);
    tracing::info!(invoice = id, by = %caller.0, action, outcome, "support action");
    match applied {
        Ok(Applied {
            refused: Some(why), ..
        }) => error_response(StatusCode::CONFLICT, &why),
        Ok(Applied {
            case: Some(case), ..
        }) => {
            if action == "hold" {
                metrics::counter!(metric::HOLDS, "by" => "support").increment(1);
            }
            let status = if action == "retry" {
                StatusCode::ACCEPTED
            } else {
                StatusCode::OK
            };
            (status, Json(case)).into_response()
        }
        Ok(Applied { case: None, .. }) => Json(case).into_response(),
        Err(e) => {
            tracing::error!("support action on {id}: {e}");
            error_response(StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
        }
    }
}

/// The policy's experiments, each with its arms' figures.
#[derive(Serialize, ToSchema)]
struct Experiments {
    /// Empty when the policy runs no experiment; at most one runs at a time.
    experiments: Vec<Report>,
}

/// What each arm of the policy's experiment recovered, against its holdout, with 95% intervals
/// (`docs/user-guide/experiments.md`). Counts only invoices whose outcome is final.
#[utoipa::path(
    get,
    path = "/api/v1/experiments",
    responses(
        (status = 200, description = "The experiments' reports", body = Experiments),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 503, description = "The store cannot answer", body = ErrorBody),
    )
)]
async fn experiments<S: store::Experiments>(State(api): State<Arc<Api<S>>>) -> Response {
    match store::experiment_reports(&api.store, &api.policy).await {
        Ok(experiments) => Json(Experiments { experiments }).into_response(),
        Err(e) => unavailable(e),
    }
}

/// The period a dashboard is asked for; both ends included, both optional.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PeriodQuery {
    /// The first day, `YYYY-MM-DD` (UTC): 29 days before `to` by default.
    pub from: Option<String>,
    /// The last day, `YYYY-MM-DD` (UTC): today on the scheduler's clock by default.
    pub to: Option<String>,
}

/// The recovery dashboard of a period.
#[derive(Serialize, ToSchema)]
pub struct Recovery {
    /// What the period's daily counters come to (`docs/user-guide/dashboard.md`).
    pub figures: Summary,
    /// The policy's experiment, as `GET /api/v1/experiments` gives it: every final invoice since
    /// it began, not only the period's (its counters are not kept by day).
    pub experiments: Vec<Report>,
}

/// Why a dashboard cannot be shown.
#[derive(Debug, thiserror::Error)]
pub enum DashboardError {
    /// The period asked for is not one there is to show (a 400).
    #[error(transparent)]
    Period(#[from] PeriodError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl<S: store::Dashboard + store::Experiments + TestClock> Api<S> {
    /// The recovery dashboard of the period `from` to `to` ask for: by default the last 30 days,
    /// today by the scheduler's clock included. The API and the status page both show this.
    pub async fn dashboard(
        &self,
        from: Option<&str>,
        to: Option<&str>,
    ) -> Result<Recovery, DashboardError> {
        let now = self.clock.now().await?;
        let today = now.to_zoned(jiff::tz::TimeZone::UTC).date();
        let period = Period::choose(from, to, today, self.store.days_kept())?;
        let days = self.store.days(&period).await?;
        Ok(Recovery {
            figures: Summary::of(&period, &days),
            experiments: store::experiment_reports(&self.store, &self.policy).await?,
        })
    }
}

/// What recovery came to over a period, from the daily counters: recovery rate, revenue, who paid,
/// days to recover, and breakdowns by decline class, segment, nudge, end decision and network
/// refusals; with the experiments' reports (`docs/user-guide/dashboard.md`).
#[utoipa::path(
    get,
    path = "/api/v1/dashboard",
    params(PeriodQuery),
    responses(
        (status = 200, description = "The period's figures", body = Recovery),
        (status = 400, description = "Not a period there is to show: a date that is not YYYY-MM-DD, `from` after `to`, or days older or more than are kept", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 503, description = "The store cannot answer", body = ErrorBody),
    )
)]
async fn dashboard<S: store::Dashboard + store::Experiments + TestClock>(
    State(api): State<Arc<Api<S>>>,
    query: Result<Query<PeriodQuery>, QueryRejection>,
) -> Response {
    let Query(PeriodQuery { from, to }) = match query {
        Ok(query) => query,
        Err(rejection) => return error_response(StatusCode::BAD_REQUEST, &rejection.body_text()),
    };
    match api.dashboard(from.as_deref(), to.as_deref()).await {
        Ok(recovery) => Json(recovery).into_response(),
        Err(DashboardError::Period(e)) => error_response(StatusCode::BAD_REQUEST, &e.to_string()),
        Err(DashboardError::Store(e)) => unavailable(e),
    }
}

/// How far to move the test clock.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct Advance {
    #[schema(minimum = 1, maximum = 34_560_000)]
    seconds: i64,
}

/// Moves the test clock forward, and answers once every timer that came due has been claimed.
#[utoipa::path(
    post,
    path = "/api/v1/clock/advance",
    request_body = Advance,
    responses(
        (status = 200, description = "The clock after the move", body = Reading),
        (status = 400, description = "Anything but a whole number of seconds from 1 to 34,560,000 (400 days)", body = ErrorBody),
        (status = 401, description = "No valid bearer token", body = ErrorBody),
        (status = 404, description = "The test clock is off", body = ErrorBody),
        (status = 503, description = "The store cannot answer, or no worker claimed what came due", body = ErrorBody),
    )
)]
async fn advance_clock<S: TestClock + Timers>(
    State(api): State<Arc<Api<S>>>,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Response {
    if !api.clock.is_test() {
        return error_response(StatusCode::NOT_FOUND, &ClockError::Off.to_string());
    }
    // Read as a value first: serde would take `[5]` for the struct's one field.
    let advance = match body {
        Ok(Json(object @ serde_json::Value::Object(_))) => {
            serde_json::from_value::<Advance>(object).map_err(|e| e.to_string())
        }
        Ok(Json(_)) => Err("not a JSON object".to_owned()),
        Err(rejection) => Err(rejection.body_text()),
    };
    let seconds = match advance {
        Ok(Advance { seconds }) => seconds,
        Err(why) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                &format!(
                    "expected {{\"seconds\": N}} with N a whole number from 1 to 34560000: {why}"
                ),
            );
        }
    };
    match api.clock.advance(seconds).await {
        Ok(reading) => Json(reading).into_response(),
        Err(e @ ClockError::OutOfRange(_)) => {
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
