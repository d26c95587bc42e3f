//! The typed subset of Stripe events that recoup acts on: what the policy reads.
//!
//! These are recoup's own shapes, not Stripe's: one [`Event`] whatever API version the business's
//! endpoint renders, holding every field recoup acts on and nothing else. Stripe's raw JSON and its
//! two invoice shapes are read into this form by [`wire::parse`], at the door; nothing past the
//! door — the inbox, the policy, the simulator — knows about API versions.

pub mod wire;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! event_kinds {
    ($($variant:ident => $name:literal,)*) => {
        /// The Stripe event types recoup acts on (`docs/design/stripe.md#event-types-recoup-acts-on`); every other type is ignored.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum EventKind {
            $(#[serde(rename = $name)] $variant,)*
        }

        impl EventKind {
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant,)*];

            /// Stripe's name for the type, such as `invoice.payment_failed`.
            pub fn as_str(self) -> &'static str {
                match self { $(EventKind::$variant => $name,)* }
            }

            /// The kind for a Stripe type name, or `None` when recoup does not act on it.
            pub fn from_type(name: &str) -> Option<Self> {
                match name { $($name => Some(EventKind::$variant),)* _ => None }
            }
        }
    };
}

event_kinds! {
    InvoicePaymentFailed => "invoice.payment_failed",
    InvoicePaymentActionRequired => "invoice.payment_action_required",
    InvoicePaid => "invoice.paid",
    InvoicePaymentSucceeded => "invoice.payment_succeeded",
    InvoiceVoided => "invoice.voided",
    InvoiceMarkedUncollectible => "invoice.marked_uncollectible",
    InvoiceUpcoming => "invoice.upcoming",
    CustomerSourceExpiring => "customer.source.expiring",
    PaymentMethodAttached => "payment_method.attached",
    PaymentMethodAutomaticallyUpdated => "payment_method.automatically_updated",
    CustomerUpdated => "customer.updated",
    CustomerSubscriptionUpdated => "customer.subscription.updated",
    CustomerSubscriptionDeleted => "customer.subscription.deleted",
    ChargeDisputeCreated => "charge.dispute.created",
    ChargeDisputeClosed => "charge.dispute.closed",
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A verified Stripe event in recoup's normalised form, as stored in the inbox.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: EventKind,
    /// When Stripe created the event (unix seconds).
    pub created: i64,
    pub livemode: bool,
    /// The API version the endpoint renders events in; `None` for events of connected accounts.
    pub api_version: Option<String>,
    pub object: EventObject,
}

/// The `data.object` of an event, by what it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "object", rename_all = "snake_case")]
pub enum EventObject {
    Invoice(Box<Invoice>),
    /// A legacy Card source (`customer.source.expiring`).
    Card(Card),
    PaymentMethod(PaymentMethod),
    Customer(Customer),
    Subscription(Subscription),
    Dispute(Dispute),
}

/// An invoice, whichever API shape it came in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Invoice {
    /// `None` only for the preview in `invoice.upcoming`, which has no id yet.
    pub id: Option<String>,
    pub customer: String,
    pub subscription: Option<String>,
    /// `draft`, `open`, `paid`, `uncollectible` or `void` (kept as text so a new status never fails).
    pub status: Option<String>,
    pub amount_due: i64,
    pub amount_paid: i64,
    pub amount_remaining: i64,
    pub currency: String,
    pub attempt_count: u32,
    pub billing_reason: Option<String>,
    pub collection_method: Option<String>,
    pub hosted_invoice_url: Option<String>,
    /// Set when Stripe itself plans another attempt — a sign its own retries are still on.
    pub next_payment_attempt: Option<i64>,
    pub payment_intent: Option<String>,
    pub charge: Option<String>,
    pub customer_email: Option<String>,
    pub customer_name: Option<String>,
    pub customer_country: Option<String>,
    /// Price ids of the invoice's lines, for segmenting by plan.
    pub price_ids: Vec<String>,
    pub created: Option<i64>,
    pub due_date: Option<i64>,
    pub period_end: Option<i64>,
    pub metadata: BTreeMap<String, String>,
}

/// An invoice as Stripe lists or retrieves it (`GET /v1/invoices`), outside any event: the invoice
/// read exactly as an event's would be, and when it left `open`.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedInvoice {
    pub invoice: Invoice,
    pub livemode: bool,
    /// `status_transitions.paid_at`, unix seconds.
    pub paid_at: Option<i64>,
    /// `status_transitions.voided_at`.
    pub voided_at: Option<i64>,
    /// `status_transitions.marked_uncollectible_at`.
    pub marked_uncollectible_at: Option<i64>,
}

/// What recoup reads of a card, on a PaymentMethod or a legacy source.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CardDetails {
    pub brand: Option<String>,
    /// Stable per card number: network retry budgets are counted per fingerprint.
    pub fingerprint: Option<String>,
    pub exp_month: Option<u32>,
    pub exp_year: Option<u32>,
    pub funding: Option<String>,
    pub last4: Option<String>,
    pub country: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Card {
    pub id: String,
    pub customer: Option<String>,
    pub card: CardDetails,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentMethod {
    pub id: String,
    pub customer: Option<String>,
    /// `card`, `sepa_debit`, …
    pub method_type: String,
    pub card: Option<CardDetails>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    pub id: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub country: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub preferred_locales: Vec<String>,
    pub default_payment_method: Option<String>,
    pub default_source: Option<String>,
    /// True when this update changed `invoice_settings.default_payment_method`.
    pub default_payment_method_changed: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    pub id: String,
    pub customer: String,
    pub status: String,
    /// The status before this update, when it changed.
    pub previous_status: Option<String>,
    pub latest_invoice: Option<String>,
    pub cancel_at_period_end: bool,
    pub pause_collection: Option<PauseCollection>,
    pub canceled_at: Option<i64>,
    pub ended_at: Option<i64>,
    pub metadata: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PauseCollection {
    pub behavior: String,
    pub resumes_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dispute {
    pub id: String,
    /// Disputes name a charge, not a customer; the worker looks the customer up.
    pub charge: String,
    pub payment_intent: Option<String>,
    pub amount: i64,
    pub currency: String,
    /// `needs_response`, `won`, `lost`, …
    pub status: String,
    pub reason: Option<String>,
}
