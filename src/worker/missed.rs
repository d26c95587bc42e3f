//! What the webhooks missed, caught up by the workers: a backfill of Stripe's events once when a
//! worker starts and every `worker.backfill_secs` ([`crate::backfill`]), and a reconcile of Stripe's
//! open invoices every `worker.reconcile_secs` ([`crate::reconcile`]).
//!
//! One worker at a time backfills: a run holds the `backfill` lease (taken for [`LEASE`], extended
//! while it runs, given back at the end), and a worker that finds it taken tries again
//! [`BUSY_RETRY`] later. A periodic run is skipped when another worker's backfill finished within
//! half an interval, so a fleet backfills about once an interval, not once per worker. Each run
//! starts where the last complete one ended ([`backfill::window_start`]), so a worker restarted
//! after webhooks broke catches up by itself.
//!
//! Reconciling runs once per `worker.reconcile_secs` across all workers (the first worker to look
//! in a new period runs it). Workers look every period or every hour, whichever is sooner, and the
//! first look is that long after start: a worker (re)starting, as a deploy restarts them all, gets
//! on with its cases first.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::watch;

use super::Worker;
use crate::backfill::{self, Tally};
use crate::processor::Listings;
use crate::reconcile;
use crate::store::Store;

/// How long a backfill's lease lasts unless extended: a worker that dies mid-run holds up the
/// others this long at most.
const LEASE: Duration = Duration::from_secs(60);

/// How soon a worker that found another one backfilling looks again.
const BUSY_RETRY: Duration = Duration::from_secs(15);

/// How soon a failed backfill is tried again (or at the next interval, if that comes first).
const FAILED_RETRY: Duration = Duration::from_secs(300);

/// The longest a worker waits between two looks at whether reconciling is due.
const RECONCILE_LOOK: Duration = Duration::from_secs(3600);

/// What one look at the backfill came to.
#[derive(Debug)]
enum Look {
    Ran(Tally),
    /// Another worker backfilled within half an interval.
    Fresh,
    /// Another worker holds the lease.
    Busy,
    Failed(String),
}

/// Backfills at once, then every `interval`, until stopped.
pub(super) async fn backfill<S: Store>(
    worker: Arc<Worker<S>>,
    stripe: Arc<dyn Listings>,
    interval: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    let mut starting = true;
    loop {
        let look = tokio::select! {
            look = backfill_once(&worker, stripe.as_ref(), interval, starting) => look,
            _ = stopped.wait_for(|s| *s) => return,
        };
        let next = match look {
            Look::Ran(tally) => {
                starting = false;
                report(&tally);
                interval
            }
            Look::Fresh => interval,
            Look::Busy => BUSY_RETRY.min(interval),
            Look::Failed(why) => {
                tracing::warn!(
                    "backfill from Stripe's events API failed, trying again later: {why}"
                );
                FAILED_RETRY.min(interval)
            }
        };
        tokio::select! {
            () = tokio::time::sleep(next) => {},
            _ = stopped.wait_for(|s| *s) => return,
        }
    }
}

async fn backfill_once<S: Store>(
    worker: &Worker<S>,
    stripe: &dyn Listings,
    interval: Duration,
    starting: bool,
) -> Look {
    let holder = worker.consumer.as_str();
    match worker.store.lease("backfill", holder, LEASE).await {
        Ok(true) => {}
        Ok(false) => return Look::Busy,
        Err(e) => return Look::Failed(e.to_string()),
    }
    let look = backfill_holding(worker, stripe, interval, starting).await;
    if let Err(e) = worker.store.release("backfill", holder).await {
        tracing::warn!("backfill lease not given back (it runs out by itself): {e}");
    }
    look
}

async fn backfill_holding<S: Store>(
    worker: &Worker<S>,
    stripe: &dyn Listings,
    interval: Duration,
    starting: bool,
) -> Look {
    let now = Timestamp::now();
    let arrivals = match worker.store.arrivals().await {
        Ok(arrivals) => arrivals,
        Err(e) => return Look::Failed(e.to_string()),
    };
    let half = jiff::SignedDuration::try_from(interval / 2).unwrap_or_default();
    if !starting && arrivals.backfilled.is_some_and(|at| now - half < at) {
        return Look::Fresh;
    }
    let since = backfill::window_start(&arrivals, now);
    tracing::info!(%since, "backfilling from Stripe's events API");
    let run = backfill::run(&worker.store, stripe, since, now);
    let outcome = tokio::select! {
        outcome = run => outcome,
        () = keep_lease(worker) => unreachable!("keeping the lease never ends"),
    };
    match outcome {
        Ok(tally) => Look::Ran(tally),
        Err(stopped) => {
            report(&stopped.tally);
            Look::Failed(stopped.reason.to_string())
        }
    }
}

/// Extends the backfill lease every third of it, for as long as it is polled.
async fn keep_lease<S: Store>(worker: &Worker<S>) {
    loop {
        tokio::time::sleep(LEASE / 3).await;
        if let Err(e) = worker
            .store
            .lease("backfill", &worker.consumer, LEASE)
            .await
        {
            tracing::warn!("backfill lease not extended: {e}");
        }
    }
}

fn report(tally: &Tally) {
    if tally.new > 0 {
        tracing::warn!(
            new = tally.new,
            known = tally.duplicate,
            pages = tally.pages,
            "backfill found events the webhooks missed; check the webhook endpoint in Stripe"
        );
    } else {
        tracing::info!(
            known = tally.duplicate,
            pages = tally.pages,
            "backfill found nothing missed"
        );
    }
}

/// Reconciles once per `interval` across all workers, looking every `interval` or hour.
pub(super) async fn reconcile<S: Store>(
    worker: Arc<Worker<S>>,
    stripe: Arc<dyn Listings>,
    interval: Duration,
    mut stopped: watch::Receiver<bool>,
) {
    let look = interval.min(RECONCILE_LOOK);
    loop {
        tokio::select! {
            () = tokio::time::sleep(look) => {},
            _ = stopped.wait_for(|s| *s) => return,
        }
        let period = Timestamp::now().as_second()
            / i64::try_from(interval.as_secs().max(1)).unwrap_or(i64::MAX);
        match worker
            .store
            .first_time(&format!("reconcile:{period}"), interval)
            .await
        {
            Ok(true) => {}
            Ok(false) => continue,
            Err(e) => {
                tracing::warn!("cannot tell whether reconciling is due: {e}");
                continue;
            }
        }
        let run = reconcile::run(&worker.store, stripe.as_ref(), Timestamp::now(), false);
        let report = tokio::select! {
            report = run => report,
            _ = stopped.wait_for(|s| *s) => return,
        };
        match report {
            Ok(report) => tracing::info!(
                open_invoices = report.open_invoices,
                open_cases = report.open_cases,
                differences = report.differences.len(),
                problems = report.problems.len(),
                "reconciled Stripe's open invoices with the open cases"
            ),
            Err(e) => tracing::warn!("reconciling with Stripe's invoices failed: {e}"),
        }
    }
}
