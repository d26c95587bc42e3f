//! The payment processor: the one part of recoup that moves money.
//!
//! The worker asks a [`Processor`] to charge an invoice for a given attempt, for the decline
//! details of a failed payment Stripe made itself, for what Stripe shows of a customer, to carry
//! out an end decision (pause, cancel, write off) and resume a paused collection, and for the
//! customer of a disputed charge; the update-link page ([`crate::links`]) asks it for an invoice's
//! status and hosted page and for a fresh billing portal session. Everything it answers
//! is plain policy data ([`ChargeResult`], [`Declined`], [`CustomerFacts`], [`EndResult`]) that goes
//! back into `decide`; nothing here decides.
//!
//! Never charging (or cancelling) twice rests on one rule: every try of one change carries the same
//! idempotency key — [`idempotency_key`] per attempt, [`decision_key`] per decision,
//! [`resume_key`] per resumption — and different changes different keys. A worker that dies
//! between the call and saving its result leaves the timer in the case; the change is made again
//! with the same key, and Stripe answers with the result it stored the first time.
//!
//! [`stripe::Stripe`] is the real one. Tests point it at a fake Stripe server through
//! `STRIPE_API_BASE`; benchmarks and the demo bring processors of their own.

pub mod stripe;

use futures_util::future::BoxFuture;

use crate::policy::expiring::CardHolder;
use crate::policy::{Card, ChargeResult, CustomerFacts, Declined, EndAction, EndOrder, EndResult};

/// Where charges go.
pub trait Processor: Send + Sync + 'static {
    /// Makes attempt `attempt` on the invoice: reads it first and charges it only while it is
    /// `open`, on `payment_method` when given (the customer's new card, which the subscription's
    /// own default may not be), else on the invoice's default. Never fails: a call that could not
    /// be made is [`ChargeResult::Failed`], for the policy to try again with the same key.
    fn charge<'a>(
        &'a self,
        invoice_id: &'a str,
        attempt: u32,
        payment_method: Option<&'a str>,
    ) -> BoxFuture<'a, ChargeResult>;

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

    /// The card the customer's next invoice will be charged to (their default payment method, if
    /// it is a card), whether a subscription will charge it, and where and when they can be
    /// reached; `Ok(None)` when Stripe has no such customer.
    fn card_holder<'a>(
        &'a self,
        customer_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<CardHolder>, ProcessorError>>;

    /// The invoice as a customer's fix needs it: its status and its hosted page (where a payment
    /// that needs the customer is confirmed); `Ok(None)` when Stripe has no such invoice.
    fn invoice_page<'a>(
        &'a self,
        invoice_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<InvoicePage>, ProcessorError>>;

    /// A billing portal session for the customer, created now (they expire within minutes when
    /// not visited), opened on the payment-method-update flow where the account's portal offers
    /// it, else on the portal's home page; its URL.
    fn portal_session<'a>(
        &'a self,
        customer_id: &'a str,
    ) -> BoxFuture<'a, Result<String, ProcessorError>>;

    /// Carries out an end decision: reads the invoice and the subscription first and changes
    /// nothing if the invoice is no longer `open` or the subscription already changed; a change
    /// Stripe already shows exactly is `Done { already: true }`. Never fails: a call that could not
    /// be made is [`EndResult::Failed`], for the policy to try again with the same key.
    fn end<'a>(&'a self, order: &'a EndOrder) -> BoxFuture<'a, EndResult>;

    /// Resumes the collection recoup paused (clears `pause_collection`), unless it is no longer
    /// paused or the subscription ended.
    fn resume<'a>(
        &'a self,
        invoice_id: &'a str,
        subscription_id: &'a str,
    ) -> BoxFuture<'a, EndResult>;

    /// The customer and card of a charge (disputes name a charge, not a customer); `Ok(None)` when
    /// Stripe has no such charge.
    fn disputed_charge<'a>(
        &'a self,
        charge_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<DisputedCharge>, ProcessorError>>;
}

/// Stripe's lists — events, open invoices — and one invoice, read as raw JSON: recoup reads each
/// object with its own wire parser ([`crate::event::wire`]), exactly as it reads a webhook body, so
/// an event fetched is the same typed event as the event delivered, in either invoice shape.
///
/// Apart from [`Processor`] because only the backfill and reconciling use it (the demo's stand-in
/// for Stripe has no history to list). A list call that Stripe rate-limits (429) or fails (5xx, no
/// answer) is asked again after a growing pause, more patiently than a charge; a page is never
/// skipped, so what a list holds is either read whole or the listing fails.
pub trait Listings: Send + Sync + 'static {
    /// One page of the events of `types` created at or after `since` (unix seconds), newest
    /// first, after the event `starting_after` (`GET /v1/events`).
    fn events<'a>(
        &'a self,
        since: i64,
        types: &'a [&'a str],
        starting_after: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Page, ListError>>;

    /// One page of the open invoices Stripe collects automatically, after `starting_after`
    /// (`GET /v1/invoices?status=open&collection_method=charge_automatically`).
    fn open_invoices<'a>(
        &'a self,
        starting_after: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Page, ListError>>;

    /// An invoice's JSON (`GET /v1/invoices/{id}`); `Ok(None)` when Stripe has no such invoice.
    fn invoice<'a>(
        &'a self,
        invoice_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, ListError>>;
}

/// One page of a Stripe list, each object as its JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Page {
    pub objects: Vec<Listed>,
    /// Whether Stripe has more after the last object.
    pub has_more: bool,
}

/// One object of a list: its id (what the next page starts after) and its JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub id: String,
    pub json: Vec<u8>,
}

/// A list Stripe did not give.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListError {
    /// The key was refused (401) or may not read this (403): asking again will not help.
    #[error(
        "Stripe refused the API key ({status}): {message} (set STRIPE_API_KEY to the account's \
         secret key, or a restricted key that may read events and invoices)"
    )]
    Refused { status: u16, message: String },
    /// Anything else, after the retries: rate limited throughout, failing, unreachable.
    #[error("{0}")]
    Failed(String),
}

/// What an invoice shows a customer who came to settle it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoicePage {
    /// Stripe's status: `draft`, `open`, `paid`, `uncollectible` or `void`.
    pub status: String,
    /// The invoice's hosted page, which does not expire.
    pub hosted_invoice_url: Option<String>,
}

/// What a disputed charge shows: whose it was, and on which card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisputedCharge {
    pub customer: Option<String>,
    pub card: Option<Card>,
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

/// The `Idempotency-Key` of a case's end decision: one per invoice and action, so every try of the
/// decision is the same request to Stripe.
pub fn decision_key(invoice_id: &str, action: EndAction) -> String {
    format!("recoup-{invoice_id}-decision-{}", action.as_str())
}

/// The `Idempotency-Key` of resuming the collection paused for an invoice.
pub fn resume_key(invoice_id: &str) -> String {
    format!("recoup-{invoice_id}-resume")
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

    #[test]
    fn one_key_per_decision_and_none_shared_with_attempts() {
        let pause = decision_key("in_1", EndAction::Pause);
        assert_eq!(pause, "recoup-in_1-decision-pause");
        assert_ne!(pause, decision_key("in_1", EndAction::Cancel));
        assert_ne!(pause, decision_key("in_2", EndAction::Pause));
        assert_ne!(resume_key("in_1"), pause);
        assert_ne!(resume_key("in_1"), idempotency_key("in_1", 1));
    }
}
