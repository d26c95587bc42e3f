//! Expiring cards, before they fail: the I/O around [`crate::policy::expiring`], which decides. The
//! worker reads the customer from Stripe (default card, subscriptions, zone and contact hours, in one
//! call) where an `invoice.upcoming` or the daily scan asks for it, and sends the `card_expiring`
//! nudge. There is no case for an invoice that has not failed: the nudge is counted and logged, and
//! remembered (per card and expiry, for 400 days) once a channel took it — so a card whose warning
//! could not be delivered is tried again by the next day's scan.
//!
//! Like every nudge it goes out only in the customer's contact window and under their daily cap: one
//! that finds them asleep, or with their day's nudge already had, is put on a list of customers to
//! visit again when their window opens (or tomorrow), which every worker looks at on each scan
//! interval. The visit reads the card again, so a card replaced meanwhile is not nudged.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use jiff::Timestamp;
use tokio::sync::watch;

use super::Worker;
use super::fault::Fault;
use super::nudges::{About, deliver};
use crate::event::Event;
use crate::policy::expiring::{self, CardHolder, Expiring};
use crate::policy::{CardOnFile, NudgeKind, NudgePlan, timing};
use crate::store::Store;

/// How long a card's expiring nudge is remembered: past any card's renewal cycle.
const REMEMBERED: Duration = Duration::from_secs(400 * 86_400);

/// The store's list of customers to visit again when their window opens.
const LATER: &str = "expiring";

/// How many of them one look takes: the rest wait for the next interval.
const VISITS_PER_LOOK: usize = 1_000;

/// How long one worker holds a card's nudge while sending it, so two never send it at once; past
/// any send's timeouts, and short enough that a worker that died mid-send delays it little.
const SENDING: Duration = Duration::from_secs(10 * 60);

/// Checks every scan interval whether today's scan has run, and runs it when no worker has; then
/// visits the customers whose deferred nudge is due. The first look is one interval after start: a
/// worker (re)starting, as a deploy restarts them all, gets on with its cases first.
pub(super) async fn scan_daily<S: Store>(
    worker: Arc<Worker<S>>,
    mut stopped: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(worker.settings.scan_interval()) => {},
            _ = stopped.wait_for(|s| *s) => return,
        }
        if let Err(e) = scan(&worker, &stopped).await {
            tracing::warn!("default cards not scanned: {e}");
        }
    }
}

/// Today's scan (the scheduler's day, UTC), once across all workers, and the deferred visits whose
/// time has come. On shutdown it visits no further customer: those in hand are finished, the rest
/// wait for the next look (a deferred customer taken but not visited is found by tomorrow's scan).
async fn scan<S: Store>(worker: &Worker<S>, stopped: &watch::Receiver<bool>) -> Result<(), String> {
    let now = worker.clock.now().await.map_err(|e| e.to_string())?;
    let today = now.to_zoned(jiff::tz::TimeZone::UTC).date();
    let first = worker
        .store
        .first_time(
            &format!("scan:expiring:{today}"),
            Duration::from_secs(2 * 86_400),
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut customers = if first {
        let customers = worker.store.customers().await.map_err(|e| e.to_string())?;
        tracing::info!(
            customers = customers.len(),
            "scanning default cards for expiry"
        );
        customers
    } else {
        Vec::new()
    };
    let deferred = worker
        .store
        .take_due(LATER, now, VISITS_PER_LOOK)
        .await
        .map_err(|e| e.to_string())?;
    // Each customer once: a deferred one may also be in today's scan (a set, not a search of a
    // list of every customer per deferred one).
    customers.extend(deferred);
    let customers: std::collections::BTreeSet<String> = customers.into_iter().collect();
    let mut stopping = stopped.clone();
    let shutdown = async move {
        let _ = stopping.wait_for(|s| *s).await;
    };
    futures_util::stream::iter(customers)
        .take_until(shutdown)
        .for_each_concurrent(8, |customer| async move {
            match worker.processor.card_holder(&customer).await {
                Ok(Some(holder)) => {
                    if let Some(card) = holder.due_in_scan(now) {
                        let card = card.clone();
                        // Not delivered: not marked either, so tomorrow's scan tries again.
                        if let Err(e) =
                            nudge_once(worker, &customer, &holder, card, None, now).await
                        {
                            tracing::warn!(%customer, "expiring card not nudged: {e}");
                        }
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(%customer, "default card not read: {e}"),
            }
        })
        .await;
    Ok(())
}

/// Nudges the customer about an expiring card when `event` says one is.
pub(super) async fn handle<S: Store>(worker: &Worker<S>, event: &Event) -> Result<(), Fault> {
    let passing = |e: String| Fault::Passing(e);
    let Some(expiring) = expiring::from_event(event) else {
        return Ok(());
    };
    let customer = match &expiring {
        Expiring::Card { customer, .. } | Expiring::Renewal { customer, .. } => customer.clone(),
    };
    let holder = match worker.processor.card_holder(&customer).await {
        Ok(Some(holder)) => holder,
        Ok(None) => return Ok(()),
        Err(e) if e.passing => return Err(passing(e.message)),
        Err(e) => {
            tracing::warn!(%customer, "customer not read for an expiring card: {e}");
            return Ok(());
        }
    };
    let (card, amount) = match expiring {
        Expiring::Card { card, .. } => (card, None),
        Expiring::Renewal {
            renewal,
            amount_due,
            currency,
            ..
        } => match &holder.card {
            Some(card) if card.expired_by(renewal) => (card.clone(), Some((amount_due, currency))),
            _ => return Ok(()),
        },
    };
    let now = worker
        .clock
        .now()
        .await
        .map_err(|e| passing(e.to_string()))?;
    match nudge_once(worker, &customer, &holder, card, amount, now).await {
        // Tried again with the event: by then the server may take it.
        Err(Undelivered::Passing(e)) => Err(passing(e)),
        Err(Undelivered::ForGood(e)) => {
            tracing::warn!(%customer, "expiring card not nudged: {e}");
            Ok(())
        }
        Ok(()) => Ok(()),
    }
}

/// Why an expiring card's nudge did not go out now (one put off to the customer's window did).
#[derive(Debug, thiserror::Error)]
enum Undelivered {
    /// The store or a channel failed for a passing reason: worth trying again soon.
    #[error("{0}")]
    Passing(String),
    /// No channel can take it.
    #[error("{0}")]
    ForGood(String),
}

impl From<crate::store::StoreError> for Undelivered {
    fn from(e: crate::store::StoreError) -> Self {
        Self::Passing(e.to_string())
    }
}

/// Sends the customer one `card_expiring` nudge for `card`, unless this card and expiry had one:
/// now, when `now` is in their contact window and their day's cap has room; else they go on the
/// list to visit again then. The card is marked as warned once a channel took the nudge.
async fn nudge_once<S: Store>(
    worker: &Worker<S>,
    customer: &str,
    holder: &CardHolder,
    card: CardOnFile,
    amount: Option<(i64, String)>,
    now: Timestamp,
) -> Result<(), Undelivered> {
    let once = expiring::once_key(customer, &card);
    let store = &worker.store;
    if store.marked(&once).await? {
        return Ok(());
    }
    // Another worker sending this card's nudge right now (an `invoice.upcoming` and the scan).
    let sending = format!("{once}:sending");
    if !store.lease(&sending, &worker.consumer, SENDING).await? {
        return Ok(());
    }
    let sent = send(worker, customer, holder, &card, amount, now).await;
    if let Err(e) = store.release(&sending, &worker.consumer).await {
        tracing::warn!(%customer, "expiring card's lease not given back: {e}");
    }
    if sent? {
        store.first_time(&once, REMEMBERED).await?;
    }
    Ok(())
}

/// Sends the nudge, or defers it to the customer's window or their next day; whether a channel took
/// it (`false` when deferred).
async fn send<S: Store>(
    worker: &Worker<S>,
    customer: &str,
    holder: &CardHolder,
    card: &CardOnFile,
    amount: Option<(i64, String)>,
    now: Timestamp,
) -> Result<bool, Undelivered> {
    let store = &worker.store;
    let policy = worker.policy();
    let plan = &policy.nudges;
    let defer = |at: Timestamp| async move {
        tracing::info!(%customer, card = %card.id, %at, "expiring card's nudge waits for the customer's window");
        store.defer(LATER, customer, at).await?;
        Ok(false)
    };
    let reachable = holder.into_window(plan, now);
    if reachable > now {
        return defer(reachable).await;
    }
    let zone = timing::zone(&holder.timezone);
    if let Some(today) = NudgePlan::capped_day(NudgeKind::CardExpiring, &zone, now) {
        let count = store.count_nudge(customer, &today.to_string()).await?;
        if let Some(tomorrow) = plan.held_by_day_cap(&zone, now, count) {
            return defer(holder.into_window(plan, tomorrow)).await;
        }
    }
    let (amount_due, currency) = amount.unwrap_or((0, String::new()));
    let about = About {
        customer_id: customer,
        invoice_id: None,
        amount_due,
        currency: &currency,
        zone: &zone,
        next_attempt: None,
        consequence: "",
        consequence_at: None,
        card: card.describe(),
        channels: &plan.channels,
        billed_to: None,
    };
    let (_, results) = deliver(worker, NudgeKind::CardExpiring, 1, &about)
        .await
        .map_err(Undelivered::ForGood)?;
    let sent: Vec<&str> = results
        .iter()
        .filter(|r| r.sent)
        .map(|r| r.channel.as_str())
        .collect();
    if sent.is_empty() {
        let why = results
            .iter()
            .map(|r| format!("{}: {}", r.channel.as_str(), r.note))
            .collect::<Vec<_>>()
            .join(", ");
        let why = format!("not delivered ({why})");
        return Err(if results.iter().any(|r| r.passing) {
            Undelivered::Passing(why)
        } else {
            Undelivered::ForGood(why)
        });
    }
    tracing::info!(%customer, card = %card.id, ?sent, "expiring card nudged");
    Ok(true)
}
