//! Expiring cards, before they fail: `customer.source.expiring` (Stripe's warning for legacy card
//! sources) and, for PaymentMethod integrations that get no such warning, `invoice.upcoming`: the
//! customer's default card is read from Stripe and, when it will have expired by the renewal, the
//! customer gets one `card_expiring` nudge for that card and expiry. A card the network updater
//! refreshed (`payment_method.automatically_updated`) already shows its new expiry, so it is not
//! nudged. There is no case for an invoice that has not failed: the nudge is counted and logged,
//! and remembered (per card and expiry, for a year) so it goes out once.

use std::time::Duration;

use jiff::Timestamp;

use super::Worker;
use super::inbox::Fault;
use super::nudges::{About, deliver};
use crate::policy::{CardOnFile, NudgeKind, timing};
use crate::store::Store;
use crate::webhook::event::{Event, EventKind, EventObject};

/// How long a card's expiring nudge is remembered: past any card's renewal cycle.
const REMEMBERED: Duration = Duration::from_secs(400 * 86_400);

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
    let once = format!(
        "expiring:{customer}:{}:{}-{}",
        card.id, card.exp_year, card.exp_month
    );
    if !worker
        .store
        .first_time(&once, REMEMBERED)
        .await
        .map_err(|e| moment(e.to_string()))?
    {
        return Ok(());
    }
    let zone = timing::zone("UTC");
    let (amount_due, currency) = amount.unwrap_or((0, String::new()));
    let about = About {
        customer_id: &customer,
        invoice_id: None,
        amount_due,
        currency: &currency,
        zone: &zone,
        next_attempt: None,
        consequence_at: None,
        card: card.describe(),
        channels: &worker.policy.nudges.channels,
        billed_to: None,
    };
    match deliver(worker, NudgeKind::CardExpiring, 1, &about).await {
        Ok((_, results)) => {
            let sent: Vec<&str> = results
                .iter()
                .filter(|r| r.sent)
                .map(|r| r.channel.as_str())
                .collect();
            tracing::info!(%customer, card = %card.id, ?sent, "expiring card nudged");
        }
        Err(e) => tracing::warn!(%customer, "expiring card not nudged: {e}"),
    }
    Ok(())
}
