//! Expiring cards, before they fail: the I/O around [`crate::policy::expiring`], which decides. The
//! worker reads the customer's default card from Stripe where an `invoice.upcoming` or the daily
//! scan asks for it, and sends the `card_expiring` nudge. There is no case for an invoice that has
//! not failed: the nudge is counted and logged, and remembered (per card and expiry, for 400 days)
//! so it goes out once.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::watch;

use super::Worker;
use super::fault::Fault;
use super::nudges::{About, deliver};
use crate::event::Event;
use crate::policy::expiring::{self, Expiring};
use crate::policy::{CardOnFile, NudgeKind};
use crate::store::Store;

/// How long a card's expiring nudge is remembered: past any card's renewal cycle.
const REMEMBERED: Duration = Duration::from_secs(400 * 86_400);

/// Checks every scan interval whether today's scan has run, and runs it when no worker has. The
/// first look is one interval after start: a worker (re)starting, as a deploy restarts them all,
/// gets on with its cases first.
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

/// Today's scan (the scheduler's day, UTC), once across all workers. On shutdown it visits no
/// further customer: those in hand are finished, the rest wait for tomorrow's scan.
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
    if !first {
        return Ok(());
    }
    let customers = worker.store.customers().await.map_err(|e| e.to_string())?;
    tracing::info!(
        customers = customers.len(),
        "scanning default cards for expiry"
    );
    let mut stopping = stopped.clone();
    let shutdown = async move {
        let _ = stopping.wait_for(|s| *s).await;
    };
    futures_util::stream::iter(customers)
        .take_until(shutdown)
        .for_each_concurrent(8, |customer| async move {
            match worker.processor.default_card(&customer).await {
                Ok(Some(card)) if expiring::due_in_scan(&card, now) => {
                    if let Err(e) = nudge_once(worker, &customer, card, None).await {
                        tracing::warn!(%customer, "expiring card not nudged: {e}");
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(%customer, "default card not read: {e}"),
            }
        })
        .await;
    Ok(())
}

/// Nudges the customer about an expiring card when `event` says one is.
pub(super) async fn handle<S: Store>(worker: &Worker<S>, event: &Event) -> Result<(), Fault> {
    let passing = |e: String| Fault::Passing(e);
    let (customer, card, amount) = match expiring::from_event(event) {
        Some(Expiring::Card { customer, card }) => (customer, card, None),
        Some(Expiring::Renewal {
            customer,
            renewal,
            amount_due,
            currency,
        }) => {
            let card = match worker.processor.default_card(&customer).await {
                Ok(Some(card)) if card.expired_by(renewal) => card,
                Ok(_) => return Ok(()),
                Err(e) if e.passing => return Err(passing(e.message)),
                Err(e) => {
                    tracing::warn!(%customer, "default card not read: {e}");
                    return Ok(());
                }
            };
            (customer, card, Some((amount_due, currency)))
        }
        None => return Ok(()),
    };
    nudge_once(worker, &customer, card, amount)
        .await
        .map_err(passing)
}

/// Sends the customer one `card_expiring` nudge for `card`, unless this card and expiry had one.
async fn nudge_once<S: Store>(
    worker: &Worker<S>,
    customer: &str,
    card: CardOnFile,
    amount: Option<(i64, String)>,
) -> Result<(), String> {
    let once = expiring::once_key(customer, &card);
    if !worker
        .store
        .first_time(&once, REMEMBERED)
        .await
        .map_err(|e| e.to_string())?
    {
        return Ok(());
    }
    let zone = jiff::tz::TimeZone::UTC;
    let (amount_due, currency) = amount.unwrap_or((0, String::new()));
    let policy = worker.policy();
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
        channels: &policy.nudges.channels,
        billed_to: None,
    };
    let (_, results) = deliver(worker, NudgeKind::CardExpiring, 1, &about).await?;
    let sent: Vec<&str> = results
        .iter()
        .filter(|r| r.sent)
        .map(|r| r.channel.as_str())
        .collect();
    tracing::info!(%customer, card = %card.id, ?sent, "expiring card nudged");
    Ok(())
}
