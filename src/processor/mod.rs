//! The payment processor: the one part of recoup that moves money.
//!
//! The worker asks a [`Processor`] to charge an invoice for a given attempt, for the decline
//! details of a failed payment Stripe made itself, for what Stripe shows of a customer, and for the
//! link that lets a customer fix a payment. Everything it answers is plain policy data ([`ChargeResult`],
//! [`Declined`], [`CustomerFacts`]) that goes back into `decide`; nothing here decides.
//!
//! Never charging twice rests on one rule: every try of one attempt carries the same
//! [`idempotency_key`], and different attempts different keys. A worker that dies between the call
//! and saving its result leaves the timer in the case; the attempt is made again with the same key,
//! and Stripe answers with the result it stored the first time instead of charging again.
//!
//! [`stripe::Stripe`] is the real one. Tests point it at a fake Stripe server through
//! `STRIPE_API_BASE`; benchmarks and the demo bring processors of their own.

pub mod stripe;

use futures_util::future::BoxFuture;

use crate::policy::{CardOnFile, ChargeResult, CustomerFacts, Declined};

/// Where charges go.
pub trait Processor: Send + Sync + 'static {
    /// Makes attempt `attempt` on the invoice: reads it first and charges it only while it is
    /// `open`. Never fails: a call that could not be made is [`ChargeResult::Failed`], for the
    /// policy to try again with the same key.
    fn charge<'a>(&'a self, invoice_id: &'a str, attempt: u32) -> BoxFuture<'a, ChargeResult>;

    /// The decline of the invoice's latest failed payment, read from its payment intent
    /// (`payment_intent` when the event named it, else found through the invoice's payments);
    /// `Ok(None)` when Stripe has no decline to show.
    fn last_decline<'a>(
        &'a self,
        invoice_id: &'a str,
        payment_intent: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<Declined>, ProcessorError>>;

    /// The customer's metadata, billing country and creation time (`past_failures` is the
    /// caller's to fill in); `Ok(None)` when Stripe has no such customer (or it was deleted).
    fn customer<'a>(
        &'a self,
        customer_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<CustomerFacts>, ProcessorError>>;

    /// The card the customer's next invoice will be charged to (their default payment method), if
    /// it is a card.
    fn default_card<'a>(
        &'a self,
        customer_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<CardOnFile>, ProcessorError>>;

    /// The one-click fix for a nudge: the invoice's hosted page when the customer must `confirm`
    /// its payment, else a fresh billing portal session where they can change their card.
    fn fix_link<'a>(
        &'a self,
        invoice_id: Option<&'a str>,
        customer_id: &'a str,
        confirm: bool,
    ) -> BoxFuture<'a, Result<Option<String>, ProcessorError>>;
}

/// A question Stripe did not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ProcessorError {
    pub message: String,
    /// Whether asking again later may work (Stripe unreachable, rate limited, failing), as opposed
    /// to an answer that will not change (no such payment, a key without permission).
    pub passing: bool,
}

/// The `Idempotency-Key` of attempt `attempt` on an invoice: the same for every try of it, so a
/// redo gets Stripe's stored answer, and different for the next attempt, so it is a new charge.
pub fn idempotency_key(invoice_id: &str, attempt: u32) -> String {
    format!("recoup-{invoice_id}-attempt-{attempt}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_key_per_attempt() {
        assert_eq!(idempotency_key("in_1", 2), idempotency_key("in_1", 2));
        assert_ne!(idempotency_key("in_1", 2), idempotency_key("in_1", 3));
        assert_ne!(idempotency_key("in_1", 2), idempotency_key("in_2", 2));
        // Stripe accepts keys of up to 255 characters; invoice ids are far shorter.
        assert!(idempotency_key(&"x".repeat(200), u32::MAX).len() <= 255);
    }
}
