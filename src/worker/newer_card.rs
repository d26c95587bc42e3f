//! A case whose invoice failed on a card the customer has already replaced hears of the newer card
//! ([`Input::NewerCard`]), and charges it as any new card.
//!
//! The newer card is found in the events kept about the customer ([`EarlyEvents`](crate::store::EarlyEvents): the newest
//! twenty, for 30 days after the last), where the `payment_method.attached` they caused on another
//! invoice still is: one read of a short list, whatever the number of the customer's cases. Told
//! after each failure Stripe reports, once its decline (and the card it came from) is read; the
//! policy takes the card once and ignores it after. Best effort: a case that is not told waits for
//! the customer as before.

use super::Worker;
use crate::policy::{Case, newer_card};
use crate::store::Store;

/// Tells `case` of the newest card its customer gave, if Stripe's kept events name one.
pub(super) async fn tell<S: Store>(worker: &Worker<S>, case: &Case) {
    if case.state.is_final() {
        return;
    }
    let events = match worker.store.early_events(&case.customer_id).await {
        Ok(events) => events,
        Err(e) => {
            tracing::warn!(invoice = %case.invoice_id, "the customer's newer card not looked for: {e}");
            return;
        }
    };
    let now = match worker.clock.now().await {
        Ok(now) => now,
        Err(e) => {
            tracing::warn!(invoice = %case.invoice_id, "the customer's newer card not told: {e}");
            return;
        }
    };
    let Some(input) = newer_card(&events, now) else {
        return;
    };
    if let Err(e) = worker.apply_one(&case.invoice_id, &input).await {
        tracing::warn!(invoice = %case.invoice_id, "not told of the customer's newer card: {e}");
    }
}
