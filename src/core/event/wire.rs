//! Stripe's wire shapes, read leniently from either API version into the typed [`Event`].
//!
//! Stripe changed the invoice in API version 2025-03-31: before it, an invoice carried
//! `subscription`, `charge` and `payment_intent`; since, the subscription sits under
//! `parent.subscription_details.subscription` and payments in a `payments` list. A business may have
//! its endpoint on either version, and Stripe may deliver an old event after an upgrade, so
//! [`parse`] reads both and produces one normalised [`Event`]. That normalised form — not Stripe's raw
//! JSON — is what goes into the inbox: it holds every field recoup acts on, is a tenth of the size,
//! and means nothing downstream has to know about API versions.
//!
//! Lenient means: unknown fields are ignored, ids may come as strings or expanded objects, fields
//! recoup can live without may be missing or null. What an event cannot lack (an invoice's customer,
//! amount and currency, say) is an error, so a broken delivery is refused at the door instead of
//! poisoning a case later. Event types outside [`EventKind`] are recognised as such and ignored.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use serde_json::value::RawValue;

use super::{
    Card, CardDetails, Customer, Dispute, Event, EventKind, EventObject, Invoice, ListedInvoice,
    PauseCollection, PaymentMethod, Subscription,
};

/// The outcome of reading a verified body.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// An event recoup acts on.
    Acted(Box<Event>),
    /// A well-formed Stripe event of a type recoup does not act on.
    Ignored { id: String, event_type: String },
}

/// Why a verified body could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error(
        "body is not a Stripe event (a JSON object with a string id, a string type and an object data.object): {0}"
    )]
    NotAnEvent(String),
    #[error("{kind} event {id}: data.object is not a readable {expected}: {message}")]
    BadObject {
        kind: EventKind,
        id: String,
        expected: &'static str,
        message: String,
    },
}

/// Reads a (verified) request body.
pub fn parse(body: &[u8]) -> Result<Parsed, EventError> {
    let envelope: RawEnvelope<'_> =
        serde_json::from_slice(body).map_err(|e| EventError::NotAnEvent(e.to_string()))?;
    if !envelope.data.object.get().starts_with('{') {
        return Err(EventError::NotAnEvent(
            "data.object is not an object".into(),
        ));
    }
    // Stripe never sends an empty one, and every event with an empty id would be one event to
    // the dedupe.
    if envelope.id.is_empty() || envelope.kind.is_empty() {
        return Err(EventError::NotAnEvent("an empty id or type".into()));
    }
    let Some(kind) = EventKind::from_type(&envelope.kind) else {
        return Ok(Parsed::Ignored {
            id: envelope.id,
            event_type: envelope.kind,
        });
    };
    let object =
        read_object(kind, &envelope).map_err(|(expected, message)| EventError::BadObject {
            kind,
            id: envelope.id.clone(),
            expected,
            message,
        })?;
    Ok(Parsed::Acted(Box::new(Event {
        id: envelope.id,
        kind,
        created: envelope.created,
        livemode: envelope.livemode,
        api_version: envelope.api_version,
        object,
    })))
}

/// Reads an invoice as Stripe lists or retrieves it, in either API shape, into the same
/// [`Invoice`] an event about it would carry; `Err` says what is wrong with it.
pub fn parse_invoice(body: &[u8]) -> Result<ListedInvoice, String> {
    let text = std::str::from_utf8(body).map_err(|e| e.to_string())?;
    let invoice = read::<RawInvoice>(text, "invoice")
        .map_err(|(_, message)| message)?
        .normalise();
    if invoice.id.is_none() {
        return Err("the invoice has no id".into());
    }
    let extra: RawListedInvoice = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let transitions = extra.status_transitions.unwrap_or_default();
    Ok(ListedInvoice {
        invoice,
        livemode: extra.livemode,
        paid_at: transitions.paid_at,
        voided_at: transitions.voided_at,
        marked_uncollectible_at: transitions.marked_uncollectible_at,
    })
}

fn read_object(
    kind: EventKind,
    envelope: &RawEnvelope<'_>,
) -> Result<EventObject, (&'static str, String)> {
    use EventKind::*;
    let raw = envelope.data.object.get();
    let previous = envelope.data.previous_attributes.map(RawValue::get);
    Ok(match kind {
        InvoicePaymentFailed
        | InvoicePaymentActionRequired
        | InvoicePaid
        | InvoicePaymentSucceeded
        | InvoiceVoided
        | InvoiceMarkedUncollectible
        | InvoiceUpcoming => {
            let invoice = read::<RawInvoice>(raw, "invoice")?.normalise();
            if invoice.id.is_none() && kind != InvoiceUpcoming {
                return Err(("invoice", "it has no id".into()));
            }
            EventObject::Invoice(Box::new(invoice))
        }
        CustomerSourceExpiring => EventObject::Card(read::<RawCard>(raw, "card")?.normalise()),
        PaymentMethodAttached | PaymentMethodAutomaticallyUpdated => {
            EventObject::PaymentMethod(read::<RawPaymentMethod>(raw, "payment method")?.normalise())
        }
        CustomerUpdated => {
            let previous = previous
                .map(|p| read::<RawCustomerPrevious>(p, "customer"))
                .transpose()?;
            EventObject::Customer(read::<RawCustomer>(raw, "customer")?.normalise(previous))
        }
        CustomerSubscriptionUpdated | CustomerSubscriptionDeleted => {
            let previous = previous
                .map(|p| read::<RawSubscriptionPrevious>(p, "subscription"))
                .transpose()?;
            EventObject::Subscription(
                read::<RawSubscription>(raw, "subscription")?.normalise(previous),
            )
        }
        ChargeDisputeCreated | ChargeDisputeClosed => {
            EventObject::Dispute(read::<RawDispute>(raw, "dispute")?.normalise())
        }
    })
}

fn read<'a, T: Deserialize<'a>>(
    raw: &'a str,
    expected: &'static str,
) -> Result<T, (&'static str, String)> {
    serde_json::from_str(raw).map_err(|e| (expected, e.to_string()))
}

// ---- Stripe's wire shapes (private): only the fields recoup reads. ----

#[derive(Deserialize)]
#[serde(expecting = "a Stripe event: an object with id, type and data")]
struct RawEnvelope<'a> {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    created: i64,
    #[serde(default)]
    livemode: bool,
    api_version: Option<String>,
    #[serde(borrow)]
    data: RawData<'a>,
}

#[derive(Deserialize)]
#[serde(expecting = "the event's data: an object with an object")]
struct RawData<'a> {
    #[serde(borrow)]
    object: &'a RawValue,
    #[serde(default, borrow)]
    previous_attributes: Option<&'a RawValue>,
}

/// An id that Stripe may send as a string or, when expanded, as an object with an `id`.
struct Id(String);

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct IdVisitor;
        impl<'de> Visitor<'de> for IdVisitor {
            type Value = Id;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an id string or an expanded object with an id")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Id, E> {
                Ok(Id(v.to_owned()))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Id, A::Error> {
                let mut id = None;
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    if key == "id" {
                        id = Some(map.next_value::<String>()?);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                id.map(Id).ok_or_else(|| de::Error::missing_field("id"))
            }
        }
        deserializer.deserialize_any(IdVisitor)
    }
}

fn id(v: Option<Id>) -> Option<String> {
    v.map(|Id(s)| s)
}

#[derive(Deserialize)]
struct RawList<T> {
    #[serde(default = "Vec::new")]
    data: Vec<T>,
}

#[derive(Deserialize)]
struct RawAddress {
    country: Option<String>,
}

type Metadata = Option<BTreeMap<String, String>>;

#[derive(Deserialize)]
struct RawInvoice {
    id: Option<String>,
    customer: Id,
    /// Before 2025-03-31.
    subscription: Option<Id>,
    /// Since 2025-03-31.
    parent: Option<RawInvoiceParent>,
    status: Option<String>,
    amount_due: i64,
    #[serde(default)]
    amount_paid: i64,
    amount_remaining: Option<i64>,
    currency: String,
    #[serde(default)]
    attempt_count: u32,
    billing_reason: Option<String>,
    collection_method: Option<String>,
    hosted_invoice_url: Option<String>,
    next_payment_attempt: Option<i64>,
    /// Before 2025-03-31.
    payment_intent: Option<Id>,
    /// Before 2025-03-31.
    charge: Option<Id>,
    /// Since 2025-03-31.
    payments: Option<RawList<RawInvoicePayment>>,
    customer_email: Option<String>,
    customer_name: Option<String>,
    customer_address: Option<RawAddress>,
    lines: Option<RawList<RawLine>>,
    created: Option<i64>,
    due_date: Option<i64>,
    period_end: Option<i64>,
    metadata: Metadata,
}

/// What an invoice outside an event adds: whether it is live, and when its status changed.
#[derive(Deserialize)]
struct RawListedInvoice {
    #[serde(default)]
    livemode: bool,
    status_transitions: Option<RawStatusTransitions>,
}

#[derive(Deserialize, Default)]
struct RawStatusTransitions {
    paid_at: Option<i64>,
    voided_at: Option<i64>,
    marked_uncollectible_at: Option<i64>,
}

#[derive(Deserialize)]
struct RawInvoiceParent {
    subscription_details: Option<RawSubscriptionDetails>,
}

#[derive(Deserialize)]
struct RawSubscriptionDetails {
    subscription: Option<Id>,
}

#[derive(Deserialize)]
struct RawInvoicePayment {
    #[serde(default)]
    is_default: bool,
    payment: Option<RawPaymentRef>,
}

#[derive(Deserialize)]
struct RawPaymentRef {
    payment_intent: Option<Id>,
    charge: Option<Id>,
}

#[derive(Deserialize)]
struct RawLine {
    /// Since 2025-03-31: `pricing.price_details.price`.
    pricing: Option<RawPricing>,
    /// Before 2025-03-31: the line's `price` object.
    price: Option<Id>,
}

#[derive(Deserialize)]
struct RawPricing {
    price_details: Option<RawPriceDetails>,
}

#[derive(Deserialize)]
struct RawPriceDetails {
    price: Option<Id>,
}

impl RawInvoice {
    fn normalise(self) -> Invoice {
        let subscription = self
            .parent
            .and_then(|p| p.subscription_details)
            .and_then(|d| id(d.subscription))
            .or_else(|| id(self.subscription));
        let payment = self.payments.and_then(|list| {
            let mut data = list.data;
            let pick = data.iter().position(|p| p.is_default).unwrap_or(0);
            (pick < data.len()).then(|| data.swap_remove(pick))
        });
        let (pi_from_payments, charge_from_payments) = payment
            .and_then(|p| p.payment)
            .map(|p| (id(p.payment_intent), id(p.charge)))
            .unwrap_or_default();
        let mut price_ids: Vec<String> = self
            .lines
            .map(|l| l.data)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|line| {
                line.pricing
                    .and_then(|p| p.price_details)
                    .and_then(|d| id(d.price))
                    .or_else(|| id(line.price))
            })
            .collect();
        price_ids.dedup();
        Invoice {
            id: self.id,
            customer: self.customer.0,
            subscription,
            status: self.status,
            amount_due: self.amount_due,
            amount_paid: self.amount_paid,
            amount_remaining: self
                .amount_remaining
                .unwrap_or(self.amount_due - self.amount_paid),
            currency: self.currency,
            attempt_count: self.attempt_count,
            billing_reason: self.billing_reason,
            collection_method: self.collection_method,
            hosted_invoice_url: self.hosted_invoice_url,
            next_payment_attempt: self.next_payment_attempt,
            payment_intent: id(self.payment_intent).or(pi_from_payments),
            charge: id(self.charge).or(charge_from_payments),
            customer_email: self.customer_email,
            customer_name: self.customer_name,
            customer_country: self.customer_address.and_then(|a| a.country),
            price_ids,
            created: self.created,
            due_date: self.due_date,
            period_end: self.period_end,
            metadata: self.metadata.unwrap_or_default(),
        }
    }
}

#[derive(Deserialize)]
struct RawCardDetails {
    brand: Option<String>,
    fingerprint: Option<String>,
    exp_month: Option<u32>,
    exp_year: Option<u32>,
    funding: Option<String>,
    last4: Option<String>,
    country: Option<String>,
}

impl From<RawCardDetails> for CardDetails {
    fn from(r: RawCardDetails) -> Self {
        CardDetails {
            brand: r.brand,
            fingerprint: r.fingerprint,
            exp_month: r.exp_month,
            exp_year: r.exp_year,
            funding: r.funding,
            last4: r.last4,
            country: r.country,
        }
    }
}

#[derive(Deserialize)]
struct RawCard {
    id: String,
    customer: Option<Id>,
    #[serde(flatten)]
    details: RawCardDetails,
}

impl RawCard {
    fn normalise(self) -> Card {
        Card {
            id: self.id,
            customer: id(self.customer),
            card: self.details.into(),
        }
    }
}

#[derive(Deserialize)]
struct RawPaymentMethod {
    id: String,
    customer: Option<Id>,
    #[serde(rename = "type")]
    method_type: String,
    card: Option<RawCardDetails>,
}

impl RawPaymentMethod {
    fn normalise(self) -> PaymentMethod {
        PaymentMethod {
            id: self.id,
            customer: id(self.customer),
            method_type: self.method_type,
            card: self.card.map(Into::into),
        }
    }
}

#[derive(Deserialize)]
struct RawCustomer {
    id: String,
    email: Option<String>,
    name: Option<String>,
    address: Option<RawAddress>,
    metadata: Metadata,
    preferred_locales: Option<Vec<String>>,
    invoice_settings: Option<RawInvoiceSettings>,
    default_source: Option<Id>,
}

#[derive(Deserialize)]
struct RawInvoiceSettings {
    default_payment_method: Option<Id>,
}

/// `previous_attributes` of `customer.updated`: the old values of the fields that changed.
#[derive(Deserialize)]
struct RawCustomerPrevious {
    invoice_settings: Option<RawPreviousInvoiceSettings>,
}

#[derive(Deserialize)]
struct RawPreviousInvoiceSettings {
    /// Present (even as null) only when the default payment method changed.
    #[serde(default, deserialize_with = "present")]
    default_payment_method: bool,
}

/// Deserializes any value (null included) as `true`: the key was there.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    IgnoredAny::deserialize(deserializer).map(|_| true)
}

impl RawCustomer {
    fn normalise(self, previous: Option<RawCustomerPrevious>) -> Customer {
        Customer {
            id: self.id,
            email: self.email,
            name: self.name,
            country: self.address.and_then(|a| a.country),
            metadata: self.metadata.unwrap_or_default(),
            preferred_locales: self.preferred_locales.unwrap_or_default(),
            default_payment_method: self
                .invoice_settings
                .and_then(|s| id(s.default_payment_method)),
            default_source: id(self.default_source),
            default_payment_method_changed: previous
                .and_then(|p| p.invoice_settings)
                .is_some_and(|s| s.default_payment_method),
        }
    }
}

#[derive(Deserialize)]
struct RawSubscription {
    id: String,
    customer: Id,
    status: String,
    latest_invoice: Option<Id>,
    #[serde(default)]
    cancel_at_period_end: bool,
    pause_collection: Option<RawPauseCollection>,
    canceled_at: Option<i64>,
    ended_at: Option<i64>,
    metadata: Metadata,
}

#[derive(Deserialize)]
struct RawPauseCollection {
    behavior: String,
    resumes_at: Option<i64>,
}

#[derive(Deserialize)]
struct RawSubscriptionPrevious {
    status: Option<String>,
}

impl RawSubscription {
    fn normalise(self, previous: Option<RawSubscriptionPrevious>) -> Subscription {
        Subscription {
            id: self.id,
            customer: self.customer.0,
            status: self.status,
            previous_status: previous.and_then(|p| p.status),
            latest_invoice: id(self.latest_invoice),
            cancel_at_period_end: self.cancel_at_period_end,
            pause_collection: self.pause_collection.map(|p| PauseCollection {
                behavior: p.behavior,
                resumes_at: p.resumes_at,
            }),
            canceled_at: self.canceled_at,
            ended_at: self.ended_at,
            metadata: self.metadata.unwrap_or_default(),
        }
    }
}

#[derive(Deserialize)]
struct RawDispute {
    id: String,
    charge: Id,
    payment_intent: Option<Id>,
    amount: i64,
    currency: String,
    status: String,
    reason: Option<String>,
}

impl RawDispute {
    fn normalise(self) -> Dispute {
        Dispute {
            id: self.id,
            charge: self.charge.0,
            payment_intent: id(self.payment_intent),
            amount: self.amount,
            currency: self.currency,
            status: self.status,
            reason: self.reason,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn event(kind: &str, object: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "id": "evt_test", "object": "event", "type": kind, "created": 1_790_000_000,
            "livemode": false, "api_version": "2026-09-30.endive", "data": {"object": object}
        }))
        .unwrap()
    }

    fn acted(body: &[u8]) -> Event {
        match parse(body).unwrap() {
            Parsed::Acted(e) => *e,
            other => panic!("expected an acted-on event, got {other:?}"),
        }
    }

    #[test]
    fn refuses_what_is_not_a_stripe_event() {
        for body in [
            &b"not json"[..],
            b"[]",
            b"{}",
            br#"{"id":5,"type":"invoice.paid","data":{"object":{}}}"#,
            br#"{"id":"evt_1","type":null,"data":{"object":{}}}"#,
            br#"{"id":"evt_1","type":"invoice.paid"}"#,
            br#"{"id":"evt_1","type":"invoice.paid","data":{}}"#,
            br#"{"id":"evt_1","type":"invoice.paid","data":{"object":"in_1"}}"#,
            br#"{"id":"evt_1","type":"invoice.paid","data":{"object":null}}"#,
            br#"{"id":"","type":"invoice.paid","data":{"object":{}}}"#,
            br#"{"id":"evt_1","type":"","data":{"object":{}}}"#,
        ] {
            assert!(
                matches!(parse(body), Err(EventError::NotAnEvent(_))),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn ignores_types_recoup_does_not_act_on() {
        let body = event("plan.created", json!({"id": "plan_1"}));
        assert_eq!(
            parse(&body).unwrap(),
            Parsed::Ignored {
                id: "evt_test".into(),
                event_type: "plan.created".into()
            }
        );
    }

    #[test]
    fn reads_the_legacy_invoice_shape() {
        let e = acted(&event(
            "invoice.payment_failed",
            json!({
                "id": "in_1", "object": "invoice", "customer": "cus_1", "subscription": "sub_1",
                "charge": "ch_1", "payment_intent": {"id": "pi_1", "object": "payment_intent"},
                "amount_due": 4900, "amount_paid": 0, "amount_remaining": 4900, "currency": "usd",
                "status": "open", "attempt_count": 1, "unknown_future_field": {"x": [1, 2]},
                "lines": {"object": "list", "data": [{"price": {"id": "price_1", "object": "price"}}]}
            }),
        ));
        let EventObject::Invoice(inv) = e.object else {
            panic!()
        };
        assert_eq!(inv.subscription.as_deref(), Some("sub_1"));
        assert_eq!(inv.payment_intent.as_deref(), Some("pi_1"));
        assert_eq!(inv.charge.as_deref(), Some("ch_1"));
        assert_eq!(inv.price_ids, vec!["price_1".to_owned()]);
    }

    #[test]
    fn reads_the_current_invoice_shape() {
        let e = acted(&event(
            "invoice.payment_failed",
            json!({
                "id": "in_1", "object": "invoice", "customer": {"id": "cus_1", "object": "customer"},
                "subscription": null,
                "parent": {"type": "subscription_details", "quote_details": null,
                           "subscription_details": {"metadata": {}, "subscription": "sub_1"}},
                "payments": {"object": "list", "data": [
                    {"is_default": false, "payment": {"type": "charge", "charge": "ch_old"}},
                    {"is_default": true, "payment": {"type": "payment_intent", "payment_intent": "pi_1"}}
                ]},
                "amount_due": 4900, "currency": "eur", "status": "open",
                "lines": {"object": "list", "data": [
                    {"pricing": {"type": "price_details", "price_details": {"price": "price_1", "product": "prod_1"}}}
                ]}
            }),
        ));
        let EventObject::Invoice(inv) = e.object else {
            panic!()
        };
        assert_eq!(inv.customer, "cus_1");
        assert_eq!(inv.subscription.as_deref(), Some("sub_1"));
        assert_eq!(inv.payment_intent.as_deref(), Some("pi_1"));
        assert_eq!(inv.charge, None);
        assert_eq!(inv.amount_remaining, 4900);
        assert_eq!(inv.price_ids, vec!["price_1".to_owned()]);
    }

    #[test]
    fn an_invoice_without_what_recoup_needs_is_refused_with_the_field() {
        let err = parse(&event(
            "invoice.paid",
            json!({"id": "in_1", "customer": "cus_1", "amount_due": 1}),
        ))
        .unwrap_err();
        assert!(err.to_string().contains("currency"), "{err}");
        assert!(err.to_string().contains("invoice.paid"), "{err}");
        let err = parse(&event(
            "invoice.paid",
            json!({"customer": "cus_1", "amount_due": 1, "currency": "usd"}),
        ))
        .unwrap_err();
        assert!(err.to_string().contains("no id"), "{err}");
    }

    #[test]
    fn a_listed_invoice_reads_as_an_event_s_invoice_with_its_status_times() {
        let object = json!({
            "id": "in_1", "object": "invoice", "customer": "cus_1", "livemode": true,
            "parent": {"subscription_details": {"subscription": "sub_1"}},
            "amount_due": 4900, "currency": "usd", "status": "paid", "attempt_count": 2,
            "status_transitions": {"finalized_at": 1_790_000_000, "paid_at": 1_790_086_400,
                                   "voided_at": null, "marked_uncollectible_at": null}
        });
        let listed = parse_invoice(&serde_json::to_vec(&object).unwrap()).unwrap();
        let EventObject::Invoice(from_event) = acted(&event("invoice.paid", object)).object else {
            panic!("not an invoice")
        };
        assert_eq!(listed.invoice, *from_event);
        assert!(listed.livemode);
        assert_eq!(listed.paid_at, Some(1_790_086_400));
        assert_eq!(
            (listed.voided_at, listed.marked_uncollectible_at),
            (None, None)
        );

        let err = parse_invoice(br#"{"customer":"cus_1","amount_due":1,"currency":"usd"}"#);
        assert!(err.unwrap_err().contains("no id"));
        let err = parse_invoice(br#"{"id":"in_1","customer":"cus_1","amount_due":1}"#);
        assert!(err.unwrap_err().contains("currency"));
    }

    #[test]
    fn an_upcoming_invoice_has_no_id() {
        let e = acted(&event(
            "invoice.upcoming",
            json!({"customer": "cus_1", "amount_due": 4900, "currency": "usd"}),
        ));
        let EventObject::Invoice(invoice) = e.object else {
            panic!("not an invoice")
        };
        assert_eq!(invoice.id, None);
    }

    #[test]
    fn customer_updated_tells_whether_the_default_payment_method_changed() {
        let customer = json!({"id": "cus_1", "object": "customer",
            "invoice_settings": {"default_payment_method": "pm_new"}, "metadata": {"timezone": "Europe/Paris"}});
        let mut changed: serde_json::Value =
            serde_json::from_slice(&event("customer.updated", customer.clone())).unwrap();
        changed["data"]["previous_attributes"] =
            json!({"invoice_settings": {"default_payment_method": null}});
        let e = acted(&serde_json::to_vec(&changed).unwrap());
        let EventObject::Customer(c) = e.object else {
            panic!()
        };
        assert!(c.default_payment_method_changed);
        assert_eq!(c.default_payment_method.as_deref(), Some("pm_new"));
        assert_eq!(c.metadata["timezone"], "Europe/Paris");

        let mut other: serde_json::Value =
            serde_json::from_slice(&event("customer.updated", customer)).unwrap();
        other["data"]["previous_attributes"] = json!({"email": "old@example.com"});
        let EventObject::Customer(c) = acted(&serde_json::to_vec(&other).unwrap()).object else {
            panic!()
        };
        assert!(!c.default_payment_method_changed);
    }

    #[test]
    fn the_stored_form_round_trips() {
        let e = acted(&event(
            "charge.dispute.created",
            json!({"id": "du_1", "charge": "ch_1", "amount": 4900, "currency": "usd",
                   "status": "needs_response", "reason": "fraudulent"}),
        ));
        let stored = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<Event>(&stored).unwrap(), e);
        assert!(
            stored.contains(r#""type":"charge.dispute.created""#),
            "{stored}"
        );
    }

    #[test]
    fn every_kind_names_itself() {
        for kind in EventKind::ALL {
            assert_eq!(EventKind::from_type(kind.as_str()), Some(*kind));
        }
        assert_eq!(EventKind::ALL.len(), 15);
    }

    proptest! {
        #[test]
        fn parse_never_panics_on_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&body);
        }

        #[test]
        fn parse_never_panics_on_event_like_json(
            kind in prop::sample::select(EventKind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>()),
            object in r#"\{("[a-z_]{1,12}":("[a-z_0-9]{0,8}"|[0-9]{1,6}|null|true|\{\}|\[\]),?){0,8}\}"#,
        ) {
            let body = format!(r#"{{"id":"evt_1","type":"{kind}","data":{{"object":{object}}}}}"#);
            let _ = parse(body.as_bytes());
        }
    }
}
