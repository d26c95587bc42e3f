//! The timer loop: claim due wake-ups shard by shard and fire the due timers of each case.
//!
//! Each round visits every shard, starting at a different one per worker so several workers do not
//! all queue on the same set. A shard that yields a full batch is visited again in the next round
//! without pausing; the loop only sleeps when a whole round found nothing, so a backlog drains at
//! full speed while an idle worker costs a few commands per poll interval.

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use jiff::Timestamp;
use tokio::sync::{OwnedSemaphorePermit, watch};

use super::{Inputs, Worker, nudges, store_backoff};
use crate::policy::Action;
use crate::store::{Claim, Failure, Store, TIMER_SHARDS};
use crate::telemetry::metric;

/// How many wake-ups one claim takes at most.
const CLAIM_BATCH: usize = 256;

/// How long an idle worker waits between rounds; bounds how late a timer fires on an idle system.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

pub(super) async fn run<S: Store>(worker: Arc<Worker<S>>, mut stopped: watch::Receiver<bool>) {
    let lease = worker.settings.lease();
    let first = (uuid::Uuid::new_v4().as_u128() % u128::from(TIMER_SHARDS)) as u16;
    // A claim is a round trip and a script run whatever it takes: under load, waiting for a
    // quarter of the budget to come free before claiming again keeps claims from shrinking to one
    // wake-up each (half the store's work), while the other three quarters stay busy.
    let min_claim = worker.settings.concurrency / 4;
    let mut backoff = store_backoff();
    'rounds: while !*stopped.borrow() {
        let mut busy = false;
        for step in 0..TIMER_SHARDS {
            let shard = (first + step) % TIMER_SHARDS;
            let slots = worker.slots(min_claim, CLAIM_BATCH, &mut stopped).await;
            if slots.is_empty() {
                break 'rounds;
            }
            let claimed = match worker.clock.now().await {
                Ok(now) => worker.store.claim_due(shard, now, lease, slots.len()).await,
                Err(e) => Err(e),
            };
            match claimed {
                Ok(claims) => {
                    backoff = store_backoff();
                    busy |= claims.len() == slots.len();
                    for (claim, slot) in claims.into_iter().zip(slots) {
                        tokio::spawn(wake(worker.clone(), claim, slot));
                    }
                }
                Err(e) => {
                    tracing::warn!(shard, "cannot claim timers: {e}");
                    drop(slots);
                    let pause = backoff.next().unwrap_or(Duration::from_secs(2));
                    tokio::select! {
                        () = tokio::time::sleep(pause) => {},
                        _ = stopped.wait_for(|s| *s) => {},
                    }
                }
            }
        }
        if !busy {
            tokio::select! {
                () = tokio::time::sleep(POLL_INTERVAL) => {},
                _ = stopped.wait_for(|s| *s) => {},
            }
        }
    }
}

/// Fires what is due on one claimed case. On failure the claim simply runs out and the wake-up
/// comes back after the lease; a failure of the case's own (a case no release can read, a panic)
/// is counted, and the [`MAX_FAILURES`](crate::store::MAX_FAILURES)th parks the wake-up, which
/// `recoup deadletters` lists and puts back.
async fn wake<S: Store>(worker: Arc<Worker<S>>, claim: Claim, _slot: OwnedSemaphorePermit) {
    let Claim { invoice_id, case } = claim;
    // An unreadable case is read again by `apply`, which reports it as the store error it is.
    let due = Inputs::DueTimers(case.ok().map(|case| case.map(Box::new)));
    let fired = std::panic::AssertUnwindSafe(worker.apply(&invoice_id, due))
        .catch_unwind()
        .await;
    let error = match fired {
        Ok(Ok(applied)) => {
            if let Some(case) = &applied.case {
                nudges::send(&worker, case, &applied.actions).await;
                if applied
                    .actions
                    .iter()
                    .any(|a| matches!(a, Action::Retry { .. }))
                {
                    super::card_paid::tell(&worker, case).await;
                }
            }
            return;
        }
        Ok(Err(e)) if e.is_passing() => {
            tracing::warn!(invoice = %invoice_id, "timer not fired, retried after the lease: {e}");
            return;
        }
        Ok(Err(e)) => e.to_string(),
        Err(panic) => format!("panicked: {}", super::panic_message(panic.as_ref())),
    };
    tracing::warn!(invoice = %invoice_id, %error, "timer failed; retried after the lease");
    match worker
        .store
        .fail_wake(&invoice_id, &error, Timestamp::now())
        .await
    {
        Ok(Failure::WillRetry { failures }) => {
            tracing::info!(invoice = %invoice_id, failures, "wake-up failed");
        }
        Ok(Failure::DeadLettered) => {
            metrics::counter!(metric::WAKEUPS_PARKED).increment(1);
            tracing::error!(invoice = %invoice_id, %error, "wake-up parked after failing again and again; see recoup deadletters list");
        }
        Err(e) => tracing::warn!(invoice = %invoice_id, "cannot record the failed wake-up: {e}"),
    }
}
