//! Logs and metrics: the tracing subscriber and the Prometheus recorder.
//!
//! Logs go to stdout, as text or (with `RECOUP_LOG_FORMAT=json`) one JSON object per line, filtered
//! by `RUST_LOG` (default `info`). Every HTTP request runs in a span carrying its `x-request-id`, so
//! a log line can be tied to the request that caused it. Metrics are recorded through the `metrics`
//! facade into one process-wide Prometheus recorder and rendered at `GET /metrics`.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::FmtSpan;

use crate::config::LogFormat;

/// Metric names, in one place so the code and the docs agree.
pub mod metric {
    /// Counter: webhook deliveries by `type` and `outcome`
    /// (`stored`, `duplicate`, `ignored`, `refused`, `invalid`, `too_large`, `unavailable`).
    pub const WEBHOOK_EVENTS: &str = "recoup_webhook_events_total";
    /// Counter: signature verification failures by `reason`.
    pub const WEBHOOK_VERIFICATION_FAILURES: &str = "recoup_webhook_verification_failures_total";
    /// Histogram: time from receiving a webhook body to answering it, in seconds.
    pub const WEBHOOK_INGEST_SECONDS: &str = "recoup_webhook_ingest_seconds";
}

/// Buckets for request latencies: fine-grained where the webhook normally answers (< 10 ms).
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Installs the logging subscriber; a second call (tests) is a no-op.
pub fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colours only for a person at a terminal, never into a log file or a collector.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_span_events(FmtSpan::NONE)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    };
}

/// The process-wide Prometheus recorder, installed on first use.
pub fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(metric::WEBHOOK_INGEST_SECONDS.to_owned()),
                    LATENCY_BUCKETS,
                )
                .expect("bucket list is not empty")
                .install_recorder()
                .expect("the metrics recorder is installed once, here");
            describe();
            handle
        })
        .clone()
}

fn describe() {
    metrics::describe_counter!(
        metric::WEBHOOK_EVENTS,
        "Stripe webhook deliveries by event type and outcome."
    );
    metrics::describe_counter!(
        metric::WEBHOOK_VERIFICATION_FAILURES,
        "Stripe webhook deliveries refused by signature verification, by reason."
    );
    metrics::describe_histogram!(
        metric::WEBHOOK_INGEST_SECONDS,
        metrics::Unit::Seconds,
        "Time from receiving a webhook body to answering it."
    );
}
