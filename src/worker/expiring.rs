//! Expiring cards, before they fail: `customer.source.expiring` (Stripe's warning for legacy card
//! sources) and, for PaymentMethod integrations that get no such warning, `invoice.upcoming` — the
//! customer's default card is read from Stripe and checked against the renewal — and a daily scan
//! of the default cards of every customer recoup knows, for renewals whose `invoice.upcoming` the
//! account does not send. The customer gets one `card_expiring` nudge per card and expiry. A card
//! the network updater refreshed (`payment_method.automatically_updated`) already shows its new
//! expiry, so it is not nudged. There is no case for an invoice that has not failed: the nudge is
//! counted and logged, and remembered (per card and expiry, for 400 days) so it goes out once.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use jiff::{SignedDuration, Timestamp};
use tokio::sync::watch;

use super::Worker;
use super::inbox::Fault;
use super::nudges::{About, deliver};
use crate::policy::{CardOnFile, NudgeKind};
use crate::store::Store;
use crate::event::{Event, EventKind, EventObject};

/// How long a card's expiring nudge is remembered: past any card's renewal cycle.
const REMEMBERED: Duration = Duration::from_secs(400 * 86_400);

/// How far ahead the daily scan looks: a card that will have expired by then is nudged. A month and
/// a few days covers the next renewal of a monthly plan; customers on yearly plans hear early.
const AHEAD: SignedDuration = SignedDuration::from_hours(35 * 24);

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
        if let Err(e) = scan(&worker).await {
            tracing::warn!("default cards not scanned: {e}");
        }
    }
}

/// Today's scan (the scheduler's day, UTC), once across all workers.
async fn scan<S: Store>(worker: &Worker<S>) -> Result<(), String> {
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
    futures_util::stream::iter(customers)
        .for_each_concurrent(8, |customer| async move {
            match worker.processor.default_card(&customer).await {
                Ok(Some(card)) if card.expired_by(now + AHEAD) => {
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
    let moment = |e: String| Fault::Moment(e);
    let (customer, card, amount) = match (&event.object, event.kind) {
        (EventObject::Card(source), EventKind::CustomerSourceExpiring) => {
            let Some(customer) = source.customer.clone() else {
                return Ok(());
            };
            let details = &source.card;
            let card = CardOnFile {
                id: source.id.clone(),
                brand: details.brand.clone().unwrap_or_else(|| "card".to_owned()),
                last4: details.last4.clone().unwrap_or_default(),
                exp_month: details.exp_month.unwrap_or(12),
                exp_year: details.exp_year.unwrap_or(0),
            };
            (customer, card, None)
        }
        (EventObject::Invoice(upcoming), EventKind::InvoiceUpcoming) => {
            let renewal = upcoming
                .next_payment_attempt
                .or(upcoming.due_date)
                .or(upcoming.period_end)
                .and_then(|t| Timestamp::from_second(t).ok());
            let Some(renewal) = renewal else {
                return Ok(());
            };
            let card = match worker.processor.default_card(&upcoming.customer).await {
                Ok(Some(card)) if card.expired_by(renewal) => card,
                Ok(_) => return Ok(()),
                Err(e) if e.passing => return Err(moment(e.message)),
                Err(e) => {
                    tracing::warn!(customer = %upcoming.customer, "default card not read: {e}");
                    return Ok(());
                }
            };
            let amount = (upcoming.amount_due, upcoming.currency.clone());
            (upcoming.customer.clone(), card, Some(amount))
        }
        _ => return Ok(()),
    };
    nudge_once(worker, &customer, card, amount)
        .await
        .map_err(moment)
}

/// Sends the customer one `card_expiring` nudge for `card`, unless this card and expiry had one.
async fn nudge_once<S: Store>(
    worker: &Worker<S>,
    customer: &str,
    card: CardOnFile,
    amount: Option<(i64, String)>,
) -> Result<(), String> {
    let once = format!(
        "expiring:{customer}:{}:{}-{}",
        card.id, card.exp_year, card.exp_month
    );
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
        channels: &worker.policy.nudges.channels,
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
