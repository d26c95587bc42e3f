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
    /// Counter: inbox entries handled by `outcome` (`done`, `deferred` — Redis unavailable or the
    /// case contended, retried uncounted —, `failed`, `dead_lettered`).
    pub const INBOX_ENTRIES: &str = "recoup_inbox_entries_total";
    /// Counter: entries moved to the dead-letter stream, by event `type`.
    pub const DEAD_LETTERS: &str = "recoup_dead_letters_total";
    /// Counter: case timers fired (each exactly once).
    pub const TIMERS_FIRED: &str = "recoup_timers_fired_total";
    /// Histogram: how late a timer fired after its due time, in seconds (scheduler's clock).
    pub const TIMER_LATENESS_SECONDS: &str = "recoup_timer_lateness_seconds";
    /// Counter: case wake-ups parked after failing again and again (listed by `recoup deadletters`).
    pub const WAKEUPS_PARKED: &str = "recoup_wakeups_parked_total";
    /// Counter: wake-ups that found nothing due (a duplicate claim after a lease ran out).
    pub const STALE_WAKEUPS: &str = "recoup_stale_wakeups_total";
    /// Counter: case saves refused by compare-and-set and retried on fresh state.
    pub const CASE_CONFLICTS: &str = "recoup_case_conflicts_total";
    /// Counter: actions carried out, by `action`.
    pub const ACTIONS: &str = "recoup_actions_total";
    /// Counter: nudge deliveries, by `channel`, `kind`, `tier` and `outcome`.
    pub const NUDGES: &str = "recoup_nudges_total";
    /// Counter: charge attempts recoup made, by `result` (`paid`, `declined`, `not_open`, `failed`).
    pub const CHARGES: &str = "recoup_charge_attempts_total";
    /// Counter: failures whose invoice says Stripe will retry it itself (its own retries are on,
    /// so recoup plans none for it; see `retries.defer_to_stripe`).
    pub const STRIPE_RETRYING: &str = "recoup_stripe_retrying_invoices_total";
    /// Counter: end decisions carried out (or not), by `action` and `result` (`done`,
    /// `found_done`, `not_open`, `changed`, `failed`).
    pub const DECISIONS: &str = "recoup_decisions_total";
    /// Counter: collections resumed after a paused customer paid, by `result`.
    pub const RESUMPTIONS: &str = "recoup_collection_resumptions_total";
    /// Counter: cases put on hold by a dispute or by support, by `by` (`dispute`, `support`).
    pub const HOLDS: &str = "recoup_holds_total";
    /// Counter: support actions through the API, by `action` and `outcome` (`done`, `refused`).
    pub const SUPPORT_ACTIONS: &str = "recoup_support_actions_total";
    /// Counter: cases whose dunning began (their invoice's first failure seen), by `segment`.
    pub const CASES_OPENED: &str = "recoup_cases_opened_total";
    /// Counter: cases recovered, by `currency` and `by` (`retry`, `customer`, `unknown`).
    pub const CASES_RECOVERED: &str = "recoup_cases_recovered_total";
    /// Counter: the amount recovered, in the currency's smallest unit, by `currency`.
    pub const RECOVERED_AMOUNT: &str = "recoup_recovered_amount_total";
    /// Histogram: seconds from the first failure to the payment, per recovered case.
    pub const TIME_TO_RECOVER_SECONDS: &str = "recoup_time_to_recover_seconds";
    /// Histogram: attempts on the invoice (Stripe's first included) per recovered case.
    pub const ATTEMPTS_PER_RECOVERY: &str = "recoup_attempts_per_recovery";
    /// Counter: update links opened (`GET /fix/…`), by `outcome` (`portal`, `already_paid`,
    /// `nothing_to_pay`, `unavailable`, `invalid`, `expired`, `limited`, `off`).
    pub const LINK_OPENINGS: &str = "recoup_link_openings_total";
    /// Counter: feedback pages served (`GET` and `POST /feedback/…`), by `outcome` (`form`,
    /// `answered`, `bad_form`, `already_answered`, `invalid`, `expired`, `limited`, `unavailable`,
    /// `off`).
    pub const FEEDBACK_PAGES: &str = "recoup_feedback_pages_total";
    /// Counter: answers recorded on the feedback page, by `answer` (`card_changed`,
    /// `cant_pay_now`, `want_to_cancel`, `something_else`).
    pub const FEEDBACK_ANSWERS: &str = "recoup_feedback_answers_total";
    /// Counter: due retries a card network's budget held back or dropped, by `brand`.
    pub const NETWORK_REFUSALS: &str = "recoup_network_refusals_total";
    /// Gauge (a running total, in US dollars): the card networks' estimated fees for recoup's
    /// attempts, by `brand` and `rule` (`docs/design/networks.md#fees`). A gauge because the
    /// metrics crate's counters count whole numbers and the fees are cents; it only grows.
    pub const NETWORK_FEES: &str = "recoup_network_fees_estimated_total";
    /// Counter: events a backfill fetched from Stripe's events API, by `outcome` (`new` — missed
    /// by the webhooks —, `duplicate`, `ignored`, `invalid`).
    pub const BACKFILLED_EVENTS: &str = "recoup_backfilled_events_total";
    /// Counter: differences reconciling made up, by `difference` (`opened`, `settled`).
    pub const RECONCILED: &str = "recoup_reconciled_total";
    /// Gauge: Stripe's `created` of the newest event stored, by `source` (`webhook`, `backfill`),
    /// unix seconds; read from the store at each scrape, so every process shows the same.
    pub const NEWEST_EVENT: &str = "recoup_newest_event_timestamp_seconds";
    /// Gauge: every event created before this was read by a backfill (unix seconds).
    pub const BACKFILLED_THROUGH: &str = "recoup_backfilled_through_timestamp_seconds";
    /// Gauge: 1 when a Redis setting recoup checks at start-up breaks one of its promises, by
    /// `setting` (`maxmemory-policy`, `appendonly`).
    pub const REDIS_UNSAFE_SETTING: &str = "recoup_redis_unsafe_setting";
    /// Gauge: the attempts the learning policy's evidence holds, as this worker last read it.
    pub const EVIDENCE_ATTEMPTS: &str = "recoup_evidence_attempts";
}

/// Buckets for time to recover: an hour to two months.
const RECOVERY_BUCKETS: &[f64] = &[
    3600.0, 21600.0, 86400.0, 172800.0, 259200.0, 604800.0, 1209600.0, 2419200.0, 5184000.0,
];

/// Buckets for attempts per recovery: one per attempt, up to the networks' ceilings.
const ATTEMPT_BUCKETS: &[f64] = &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0, 35.0];

/// Buckets for timer lateness: sub-second when healthy, up to days after a test-clock jump.
const LATENESS_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0, 86400.0,
];

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
                .set_buckets_for_metric(
                    Matcher::Full(metric::TIMER_LATENESS_SECONDS.to_owned()),
                    LATENESS_BUCKETS,
                )
                .expect("bucket list is not empty")
                .set_buckets_for_metric(
                    Matcher::Full(metric::TIME_TO_RECOVER_SECONDS.to_owned()),
                    RECOVERY_BUCKETS,
                )
                .expect("bucket list is not empty")
                .set_buckets_for_metric(
                    Matcher::Full(metric::ATTEMPTS_PER_RECOVERY.to_owned()),
                    ATTEMPT_BUCKETS,
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
    metrics::describe_counter!(
        metric::INBOX_ENTRIES,
        "Inbox entries handled by workers, by outcome (done, deferred, failed, dead_lettered)."
    );
    metrics::describe_counter!(
        metric::DEAD_LETTERS,
        "Inbox entries moved to the dead-letter stream recoup:{inbox}:dead, by event type."
    );
    metrics::describe_counter!(metric::TIMERS_FIRED, "Case timers fired.");
    metrics::describe_counter!(
        metric::WAKEUPS_PARKED,
        "Case wake-ups parked after failing again and again for a reason of their own; see recoup deadletters list."
    );
    metrics::describe_histogram!(
        metric::TIMER_LATENESS_SECONDS,
        metrics::Unit::Seconds,
        "How late timers fired after their due time, on the scheduler's clock."
    );
    metrics::describe_counter!(
        metric::STALE_WAKEUPS,
        "Case wake-ups that found no timer due (claimed again after a lease ran out)."
    );
    metrics::describe_counter!(
        metric::CASE_CONFLICTS,
        "Case saves refused by compare-and-set because another input saved first; retried."
    );
    metrics::describe_counter!(metric::ACTIONS, "Actions carried out, by action.");
    metrics::describe_counter!(
        metric::NUDGES,
        "Nudge deliveries, by channel, kind, tier and outcome (sent, failed, skipped)."
    );
    metrics::describe_counter!(
        metric::CHARGES,
        "Charge attempts recoup made through the processor, by result."
    );
    metrics::describe_counter!(
        metric::STRIPE_RETRYING,
        "Failed payments Stripe says it will retry itself: its own retries are still on."
    );
    metrics::describe_counter!(
        metric::DECISIONS,
        "End decisions (pause, cancel, mark_uncollectible, leave_past_due), by action and result."
    );
    metrics::describe_counter!(
        metric::RESUMPTIONS,
        "Collections recoup resumed after a paused customer paid, by result."
    );
    metrics::describe_counter!(
        metric::HOLDS,
        "Cases put on hold by a dispute or by support, by who held them."
    );
    metrics::describe_counter!(
        metric::CASES_OPENED,
        "Cases whose dunning began (the invoice's first failure), by segment."
    );
    metrics::describe_counter!(
        metric::CASES_RECOVERED,
        "Cases recovered (the invoice paid after dunning began), by currency and who paid."
    );
    metrics::describe_counter!(
        metric::RECOVERED_AMOUNT,
        "Amount recovered, in the currency's smallest unit (cents), by currency."
    );
    metrics::describe_histogram!(
        metric::TIME_TO_RECOVER_SECONDS,
        "Seconds from an invoice's first failure to its payment, per recovered case."
    );
    metrics::describe_histogram!(
        metric::ATTEMPTS_PER_RECOVERY,
        "Attempts on an invoice (Stripe's first included) per recovered case."
    );
    metrics::describe_counter!(
        metric::NETWORK_REFUSALS,
        "Due retries a card network's budget moved or dropped, by card brand."
    );
    metrics::describe_gauge!(
        metric::NETWORK_FEES,
        "Estimated card-network fees for recoup's attempts, a running total in US dollars, by brand and rule."
    );
    metrics::describe_gauge!(
        metric::EVIDENCE_ATTEMPTS,
        "Attempts the learning policy's evidence holds, as this worker last read it."
    );
    metrics::describe_gauge!(
        metric::REDIS_UNSAFE_SETTING,
        "1 when a Redis setting checked at start-up (maxmemory-policy, appendonly) breaks one of recoup's promises."
    );
    metrics::describe_counter!(
        metric::BACKFILLED_EVENTS,
        "Events a backfill fetched from Stripe's events API, by outcome; new ones were missed by the webhooks."
    );
    metrics::describe_counter!(
        metric::RECONCILED,
        "Cases reconciling opened or settled from Stripe's invoices, by difference."
    );
    metrics::describe_gauge!(
        metric::NEWEST_EVENT,
        metrics::Unit::Seconds,
        "Stripe's created time of the newest event stored, by source (webhook, backfill)."
    );
    metrics::describe_gauge!(
        metric::BACKFILLED_THROUGH,
        metrics::Unit::Seconds,
        "Every event created before this time has been read by a backfill."
    );
    metrics::describe_counter!(
        metric::SUPPORT_ACTIONS,
        "Support actions through the API (hold, resume, retry), by outcome (done, refused)."
    );
}
