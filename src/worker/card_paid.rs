//! A retry that went through tells the customer's other open cases on the same card
//! ([`Input::CardPaid`]): their money is there now, and each one's next retry follows
//! ([`crate::policy::AFTER_CARD_PAID`] later).
//!
//! Told from two places, so that neither a worker dying after its charge nor Stripe's event
//! arriving before the charge's result is saved loses it: the firing that made the paying retry,
//! and Stripe's `invoice.paid` for it. Telling twice changes nothing (a case knows the payment it
//! follows). Best effort beyond that: a case that is not told retries on its own schedule.

use jiff::Timestamp;

use super::Worker;
use crate::policy::{Case, Input, RecoveredBy, State};
use crate::store::Store;

/// Tells `case`'s customer's other open cases on its card, when a retry of recoup's paid it.
pub(super) async fn tell<S: Store>(worker: &Worker<S>, case: &Case) {
    let (Some(card), Some(at)) = (case.card.as_ref(), paid_by_retry(case)) else {
        return;
    };
    let others = match worker.store.cases_of_customer(&case.customer_id).await {
        Ok(others) => others,
        Err(e) => {
            tracing::warn!(invoice = %case.invoice_id, "the customer's other cases not told of the payment: {e}");
            return;
        }
    };
    let input = Input::CardPaid {
        invoice_id: case.invoice_id.clone(),
        fingerprint: card.fingerprint.clone(),
        at,
    };
    // The policy says which cases the payment concerns (the same card, still retrying); the
    // worker only spares it the cases that are over.
    for other in others
        .iter()
        .filter(|o| o.invoice_id != case.invoice_id && !o.state.is_final())
    {
        if let Err(e) = worker.apply_one(&other.invoice_id, &input).await {
            tracing::warn!(invoice = %other.invoice_id, paid = %case.invoice_id, "not told of the payment on its card: {e}");
        }
    }
}

/// When a retry of recoup's paid the case's invoice.
fn paid_by_retry(case: &Case) -> Option<Timestamp> {
    (case.state == State::Recovered && case.recovered_by == Some(RecoveredBy::Retry))
        .then_some(case.paid_at)
        .flatten()
}
