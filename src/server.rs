//! The service: HTTP routes and middleware, the worker, operations endpoints, and a graceful stop.
//!
//! [`Application::build`] does everything that can fail at start-up — connect to Redis, bind the
//! port — so `recoup serve` either refuses to start with a clear reason or runs. What runs depends on
//! the [`Role`]: a `receiver` serves the webhook, the support API and the status page, a `worker`
//! runs the scheduler and executors, `all` does both; every role serves the operations endpoints,
//! so each process can be health-checked and scraped. Running stops on the shutdown future
//! (SIGTERM/SIGINT in `main`): the listener closes at once, requests in flight finish, the worker
//! stops claiming and finishes its cases in flight, and only then does [`Application::run_until`]
//! return.
//!
//! Operations endpoints: `/healthz` answers while the process runs, `/readyz` only while Redis
//! answers and every loop of the process runs (a load balancer should stop sending webhooks to an
//! instance that cannot store them, and an orchestrator restart one whose worker died; see
//! [`crate::worker::loops`]), `/metrics` renders Prometheus text, with the times of the newest
//! events (by webhook, by backfill) read from the store at each scrape. At start-up the Redis
//! settings recoup's promises rest on are checked, and an unsafe one is logged loudly.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use tokio::sync::watch;

use crate::api::{self, Api, auth::Tokens};
use crate::clock::Clock;
use crate::config::Settings;
use crate::links::{self, LinkKeys, Links};
use crate::notify::{Notifier, NotifyError};
use crate::page;
use crate::policy::file::PolicyError;
use crate::processor::stripe::{self, Stripe};
use crate::processor::{Listings, ProcessorError};
use crate::store::{Health, Inbox, RedisStore, StoreError};
use crate::telemetry::{self, metric};
use crate::webhook::{self, Receiver, signature::Verifier};
use crate::worker::Worker;
use crate::worker::loops::{DeadLoop, Loops};

/// What a `recoup serve` process runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    /// Webhook receiver, support API, status page and worker, in one process.
    #[default]
    All,
    /// Webhook receiver, support API and status page only.
    Receiver,
    /// Scheduler and executors only.
    Worker,
}

impl Role {
    fn receives(self) -> bool {
        self != Role::Worker
    }

    fn works(self) -> bool {
        self != Role::Receiver
    }
}

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(
        "STRIPE_WEBHOOK_SECRETS is not set: recoup cannot verify Stripe's signatures without the endpoint's signing secret(s)"
    )]
    NoWebhookSecret,
    #[error(
        "STRIPE_API_KEY is not set: the worker charges invoices through Stripe and needs the account's secret key (sk_… or a restricted rk_… key)"
    )]
    NoStripeKey,
    #[error(
        "RECOUP_LINK_SECRET is set but STRIPE_API_KEY is not: a receiver opens customers' update links (/fix/…) by creating a billing portal session in Stripe, which needs the account's secret key"
    )]
    NoStripeKeyForLinks,
    #[error(
        "{0} is not set: every nudge channel that is on carries an update link, <RECOUP_PUBLIC_URL>/fix/<token>, signed with RECOUP_LINK_SECRET (comma-separated keys of at least 32 characters, newest first; openssl rand -hex 32 makes one); set both, or turn the nudge channels off"
    )]
    NoLinks(&'static str),
    #[error("Stripe: {0}")]
    Processor(#[from] ProcessorError),
    #[error("nudges: {0}")]
    Notify(#[from] NotifyError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("policy: {0}")]
    Policy(#[from] PolicyError),
    #[error("cannot listen on {addr}: {source} (set RECOUP_LISTEN to a free address)")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A bound, connected service, ready to run.
pub struct Application {
    listener: TcpListener,
    router: Router,
    metrics: PrometheusHandle,
    worker: Option<Worker<RedisStore>>,
    loops: Loops,
}

#[derive(Clone)]
struct Ops {
    store: RedisStore,
    metrics: PrometheusHandle,
    loops: Loops,
}

impl Application {
    pub async fn build(settings: &Settings, role: Role) -> Result<Self, StartError> {
        if role.receives() && settings.secrets.webhook_secrets.is_empty() {
            return Err(StartError::NoWebhookSecret);
        }
        let policy = crate::config::policy::for_service(&settings.policy)?;
        let link_keys = LinkKeys::new(&settings.secrets.link_secrets);
        // A worker charges through Stripe; a receiver that opens update links makes portal sessions.
        let opens_links = role.receives() && link_keys.is_some();
        let processor: Option<Arc<Stripe>> = match &settings.secrets.stripe_api_key {
            _ if !role.works() && !opens_links => None,
            None if role.works() => return Err(StartError::NoStripeKey),
            None => return Err(StartError::NoStripeKeyForLinks),
            Some(key) => Some(Arc::new(Stripe::new(key, &settings.stripe)?)),
        };
        // Set up now, so a wrong channel setting or a broken template stops start-up, not a nudge.
        let notifier = match role.works() {
            true => {
                let notifier = Notifier::new(&settings.notify, &settings.secrets)?;
                let channels: Vec<&str> = notifier
                    .channels()
                    .into_iter()
                    .map(|c| c.as_str())
                    .collect();
                tracing::info!(?channels, templates = %settings.notify.templates.display(), "nudge channels");
                if !channels.is_empty() {
                    if settings.links.public_url.is_none() {
                        return Err(StartError::NoLinks("RECOUP_PUBLIC_URL"));
                    }
                    if link_keys.is_none() {
                        return Err(StartError::NoLinks("RECOUP_LINK_SECRET"));
                    }
                }
                Some(Arc::new(notifier))
            }
            false => None,
        };
        let store = RedisStore::connect(&settings.redis).await?;
        let metrics = telemetry::metrics_handle();
        check_redis(&store).await;
        let clock = Clock::new(store.clone(), settings.clock.test);
        let loops = Loops::default();
        let ops = Ops {
            store: store.clone(),
            metrics: metrics.clone(),
            loops: loops.clone(),
        };
        let mut routes = Router::new()
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .route("/metrics", get(render_metrics))
            .with_state(ops);
        if role.receives() {
            let receiver = Arc::new(Receiver {
                verifier: Verifier::new(
                    settings.secrets.webhook_secret_bytes(),
                    settings.webhook.tolerance_secs,
                ),
                store: store.clone(),
            });
            let api = Arc::new(Api {
                store: store.clone(),
                clock: clock.clone(),
                policy: Arc::new(policy.clone()),
            });
            let tokens = Tokens::new(settings.secrets.api_tokens.clone());
            let fix = link_keys
                .clone()
                .zip(processor.clone())
                .map(|(keys, processor)| links::Fix {
                    keys,
                    processor,
                    api: api.clone(),
                    limits: Default::default(),
                });
            if fix.is_none() {
                tracing::warn!(
                    "RECOUP_LINK_SECRET is not set: this receiver answers customers' update links \
                     (/fix/…) with a page saying they do not work here"
                );
            }
            // Answering needs no Stripe call: only the link secret.
            let feedback = link_keys.clone().map(|keys| links::Feedback {
                keys,
                api: api.clone(),
                limits: Default::default(),
            });
            routes = routes
                .merge(webhook::routes(receiver, settings.server.body_limit_bytes))
                .merge(api::routes(api.clone(), tokens.clone()))
                .merge(links::routes(fix))
                .merge(links::feedback::routes(feedback))
                .merge(page::routes(api, tokens));
        }
        let processor = processor.filter(|_| role.works());
        let links = link_keys
            .zip(settings.links.public_url.as_deref())
            .map(|(keys, url)| Links::new(keys, url, settings.links.lifetime()));
        let worker = processor.zip(notifier).map(|(processor, notifier)| {
            tracing::info!(
                api_base = %settings.stripe.api_base,
                api_version = stripe::api_version(),
                "charging through Stripe"
            );
            let listings: Arc<dyn Listings> = processor.clone();
            let worker = Worker::new(
                store.clone(),
                policy,
                processor,
                notifier,
                clock,
                settings.worker.clone(),
            )
            .with_listings(listings)
            .watched_by(loops.clone());
            match links {
                Some(links) => worker.with_links(links),
                None => worker,
            }
        });
        let router = routes.layer(
            tower::ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(TraceLayer::new_for_http().make_span_with(request_span))
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::REQUEST_TIMEOUT,
                    Duration::from_secs(settings.server.request_timeout_secs),
                )),
        );
        let addr = settings.server.listen;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartError::Bind { addr, source })?;
        Ok(Self {
            listener,
            router,
            metrics,
            worker,
            loops,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves (and works) until `shutdown` completes, then lets requests and cases in flight
    /// finish.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop, stopped) = watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop.send(true);
        });
        let until_stopped = |mut stopped: watch::Receiver<bool>| async move {
            let _ = stopped.wait_for(|s| *s).await;
        };
        tracing::info!(addr = %self.local_addr(), "recoup listening");
        let worker = self.worker.map(|worker| {
            let stopped = until_stopped(stopped.clone());
            tokio::spawn(worker.run(stopped))
        });
        // Histograms keep raw samples until drained; drain them even when nobody scrapes.
        let metrics = self.metrics.clone();
        let upkeep = self.loops.watch("metrics upkeep", || false, async move {
            let mut every = tokio::time::interval(Duration::from_secs(5));
            loop {
                every.tick().await;
                metrics.run_upkeep();
            }
        });
        let served = axum::serve(self.listener, self.router)
            .with_graceful_shutdown(until_stopped(stopped))
            .await;
        if let Some(worker) = worker {
            let _ = worker.await;
        }
        upkeep.abort();
        tracing::info!("recoup stopped");
        served
    }
}

/// Warns, loudly and on `/metrics`, about Redis settings that break recoup's promises: eviction
/// that silently drops keys, and no append-only file. Starting anyway is deliberate: the settings
/// may be out of recoup's hands (a managed Redis), and a service that stays down helps nobody.
async fn check_redis(store: &RedisStore) {
    match store.risky_settings().await {
        Ok(risks) => {
            for risk in &risks {
                tracing::error!(
                    setting = risk.setting,
                    value = %risk.value,
                    "Redis is configured unsafely for recoup: {} = {}: {}",
                    risk.setting,
                    risk.value,
                    risk.why
                );
            }
            for setting in ["maxmemory-policy", "appendonly"] {
                let unsafe_ = risks.iter().any(|r| r.setting == setting);
                metrics::gauge!(telemetry::metric::REDIS_UNSAFE_SETTING, "setting" => setting)
                    .set(if unsafe_ { 1.0 } else { 0.0 });
            }
        }
        Err(e) => tracing::warn!(
            "cannot read Redis's maxmemory-policy and appendonly ({e}); make sure they are \
             noeviction and yes (docs/operator-guide/redis.md#settings-recoup-checks)"
        ),
    }
}

fn request_span<B>(request: &Request<B>) -> tracing::Span {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    // An update link's token opens a customer's billing portal: it never goes into a log.
    let path = request.uri().path();
    let path = match path.strip_prefix("/fix/") {
        Some(_) => "/fix/…",
        None => path,
    };
    tracing::info_span!(
        "request",
        method = %request.method(),
        path = %path,
        request_id,
    )
}

async fn healthz() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"status":"ok"}"#,
    )
        .into_response()
}

async fn readyz(State(ops): State<Ops>) -> Response {
    readiness(ops.store.ping().await, &ops.loops.dead())
}

/// Ready while Redis answers and every loop of the process runs; otherwise 503 saying which is not.
fn readiness(ping: Result<(), StoreError>, dead: &[DeadLoop]) -> Response {
    let error = match (ping, dead.first()) {
        (Ok(()), None) => {
            return (
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"status":"ready"}"#,
            )
                .into_response();
        }
        (Err(e), _) => e.to_string(),
        (Ok(()), Some(first)) => format!(
            "the {} loop of this process died ({}); restart the process",
            first.name, first.why
        ),
    };
    tracing::warn!("not ready: {error}");
    let body = serde_json::json!({"status": "unavailable", "error": error, "dead_loops": dead});
    (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
}

async fn render_metrics(State(ops): State<Ops>) -> Response {
    record_arrivals(&ops.store).await;
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        ops.metrics.render(),
    )
        .into_response()
}

/// Sets the gauges of when the newest events arrived, from the store, so every process shows the
/// same; when Redis does not answer they keep their last values (and `/readyz` says why).
async fn record_arrivals<S: Inbox>(store: &S) {
    let arrivals = match store.arrivals().await {
        Ok(arrivals) => arrivals,
        Err(e) => {
            tracing::debug!("newest events not read for /metrics: {e}");
            return;
        }
    };
    let seconds = |at: jiff::Timestamp| at.as_second() as f64;
    for (source, at) in [
        ("webhook", arrivals.webhook),
        ("backfill", arrivals.backfill),
    ] {
        if let Some(at) = at {
            metrics::gauge!(metric::NEWEST_EVENT, "source" => source).set(seconds(at));
        }
    }
    if let Some(at) = arrivals.backfilled {
        metrics::gauge!(metric::BACKFILLED_THROUGH).set(seconds(at));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body(response: Response) -> (StatusCode, serde_json::Value) {
        let status = response.status();
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).unwrap())
    }

    #[tokio::test]
    async fn a_dead_loop_turns_readiness_red_naming_it() {
        let (status, ready) = body(readiness(Ok(()), &[])).await;
        assert_eq!(
            (status, ready["status"].as_str()),
            (StatusCode::OK, Some("ready"))
        );

        let dead = [DeadLoop {
            name: "timers",
            why: "panicked: overflow".to_owned(),
        }];
        let (status, answer) = body(readiness(Ok(()), &dead)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        let error = answer["error"].as_str().unwrap();
        assert!(
            error.contains("timers loop") && error.contains("overflow"),
            "{answer}"
        );
        assert_eq!(answer["dead_loops"][0]["name"], "timers");

        let (status, answer) = body(readiness(Err(StoreError::Timeout(1000)), &[])).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(
            answer["error"].as_str().unwrap().contains("1000 ms"),
            "{answer}"
        );
    }
}
