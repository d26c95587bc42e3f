//! Stripe's events about a case's invoice and customer: a failure opens a case (in the customer's
//! own zone and segment), a payment or closure settles it, a new card or time zone moves its plan.
//!
//! Each invoice event is turned into a [`Fact`] stamped with Stripe's `created`, never with its
//! arrival, so the state that follows is the same whatever order the events came in.

use jiff::Timestamp;

use super::replan::{Telling, replan, replan_telling, settle};
use super::{
    Attempt, BilledTo, Card, Case, Closure, CustomerFacts, Decision, EndAction, Entry,
    NewPaymentMethod, Outcome, Policy, State, hold, nudge, timing,
};
use crate::event::{Event, EventKind, EventObject, Invoice, PaymentMethod};

/// An invoice event, or a customer's, for `case`. `opening`: what Stripe shows of the invoice's
/// customer, and whether the case the event opens keeps no story ([`super::Input::Opening`]).
pub(super) fn on_event(
    policy: &Policy,
    case: Option<Case>,
    event: &Event,
    opening: Option<(&CustomerFacts, bool)>,
    now: Timestamp,
) -> Decision {
    let case = match case {
        Some(case) if case.has_seen(&event.id) => return Decision::unchanged(case),
        case => case,
    };
    let (invoice, case) = match (&event.object, case) {
        (EventObject::Invoice(invoice), case) if invoice.id.is_some() => (invoice, case),
        (EventObject::Subscription(subscription), Some(case)) => {
            return hold::on_subscription(policy, case, event, subscription);
        }
        (_, case) => return on_customer_event(policy, case, event),
    };
    let fact = match event.kind {
        EventKind::InvoicePaymentFailed | EventKind::InvoicePaymentActionRequired => Fact::Failed {
            needs_customer: event.kind == EventKind::InvoicePaymentActionRequired,
        },
        EventKind::InvoicePaid | EventKind::InvoicePaymentSucceeded => Fact::Paid,
        EventKind::InvoiceVoided => Fact::Closed("voided in Stripe"),
        EventKind::InvoiceMarkedUncollectible
            if case
                .as_ref()
                .is_some_and(|c| c.decided(EndAction::MarkUncollectible)) =>
        {
            Fact::Closed("marked uncollectible by recoup's decision")
        }
        EventKind::InvoiceMarkedUncollectible => Fact::Closed("marked uncollectible in Stripe"),
        _ => return case.map_or_else(Decision::default, Decision::unchanged),
    };
    let at = Timestamp::from_second(event.created).unwrap_or(now);
    let before = case.as_ref().map(|c| c.state);
    let mut telling = Telling::Changes;
    let mut case =
        case.unwrap_or_else(|| open(policy, invoice, opening, fact.opening_state(), at, now));
    match fact {
        Fact::Failed { needs_customer } => {
            case.failed_at = Some(case.failed_at.map_or(at, |f| f.min(at)));
            // Only the latest failure tells whether Stripe still plans an attempt of its own.
            if case.attempts.iter().all(|a| a.at <= at) {
                case.stripe_retries_at = invoice
                    .next_payment_attempt
                    .and_then(|t| Timestamp::from_second(t).ok());
                case.amount_remaining = remaining(invoice);
            }
            let attempt = invoice.attempt_count.max(1);
            record_attempt(&mut case, attempt, at, Outcome::Failed, None);
            // The plan follows the latest decline: an older failure's leaves it as it is.
            if case.decline_unread(attempt) && case.attempts.iter().all(|a| a.number <= attempt) {
                telling = Telling::DeclineUnread;
            }
            // A payment method the customer added after this failure already answers it.
            let answered = case.new_payment_method.as_ref().is_some_and(|c| c.at > at);
            if needs_customer && !answered && case.state == State::Retrying {
                case.state = State::AwaitingCustomer;
            }
        }
        Fact::Paid => {
            if case.paid_at.is_none() {
                case.paid_first = case.failed_at.is_none();
            }
            case.paid_at = Some(case.paid_at.map_or(at, |p| p.min(at)));
        }
        Fact::Closed(reason) => {
            if case.closure.as_ref().is_none_or(|c| at < c.at) {
                case.closure = Some(Box::new(Closure {
                    at,
                    reason: reason.to_owned(),
                }));
            }
        }
    }
    settle(&mut case);
    let (planned, actions) = replan_telling(policy, &mut case, at, telling);
    let detail = case.words(|| describe(event, invoice, before, &case)) + &planned;
    case.record(Entry {
        at,
        what: event.kind.as_str().to_owned(),
        detail,
        event: Some(event.id.clone()),
    });
    Decision {
        actions,
        ..Decision::save(case)
    }
}

/// An event about the case's customer: a new payment method — the best moment to retry, even for
/// a decline no schedule retries, as the old card's decline says nothing about the new one — or the
/// customer's own time zone, which moves the planned retry into their daytime.
fn on_customer_event(policy: &Policy, case: Option<Case>, event: &Event) -> Decision {
    let Some(case) = case else {
        return Decision::default();
    };
    // A paused customer's new card is the way back: it is retried like any other.
    if case.state.is_final() && case.state != State::Paused {
        return Decision::unchanged(case);
    }
    let (customer, method, card, zone) = match (&event.object, event.kind) {
        (
            EventObject::PaymentMethod(pm),
            EventKind::PaymentMethodAttached | EventKind::PaymentMethodAutomaticallyUpdated,
        ) => (pm.customer.as_deref(), Some(&pm.id), card_of(pm), None),
        (EventObject::Customer(customer), EventKind::CustomerUpdated) => (
            Some(customer.id.as_str()),
            customer
                .default_payment_method
                .as_ref()
                .filter(|_| customer.default_payment_method_changed),
            None,
            timing::known_zone(
                customer.metadata.get("timezone").map(String::as_str),
                customer.country.as_deref(),
            ),
        ),
        _ => return Decision::unchanged(case),
    };
    if customer != Some(case.customer_id.as_str()) {
        return Decision::unchanged(case);
    }
    let at = Timestamp::from_second(event.created).unwrap_or(case.opened_at);
    // The newest `customer.updated` says where the customer is, whatever order they arrive in.
    let zone = zone.filter(|_| case.zone_as_of.is_none_or(|seen| seen <= at));
    let mut case = case;
    let zone_as_of = case.zone_as_of;
    if zone.is_some() {
        case.zone_as_of = Some(at);
    }
    let zone = zone.filter(|zone| *zone != case.customer_timezone);
    if method.is_none() && zone.is_none() {
        return if case.zone_as_of == zone_as_of {
            Decision::unchanged(case)
        } else {
            Decision::save(case)
        };
    }
    let mut notes = Vec::new();
    if let Some(zone) = zone {
        notes.push(format!("the customer's time zone is {zone}"));
        case.customer_timezone = zone;
    }
    if let Some(method) = method {
        notes.push(format!("new payment method {method}"));
        if case
            .new_payment_method
            .as_ref()
            .is_none_or(|known| known.at <= at)
        {
            case.new_payment_method = Some(Box::new(NewPaymentMethod {
                id: method.clone(),
                at,
            }));
        }
        // The new card is the one the retry will charge: its network budget is the one to keep.
        if let Some(card) = card {
            case.card = Some(card);
        }
        if case.state == State::AwaitingCustomer && case.answered_by_new_card() {
            case.state = State::Retrying;
        }
    }
    let (planned, actions) = replan(policy, &mut case, at);
    case.record(Entry {
        at,
        what: event.kind.as_str().to_owned(),
        detail: notes.join("; ") + &planned,
        event: Some(event.id.clone()),
    });
    Decision {
        actions,
        ..Decision::save(case)
    }
}

/// The card a payment method is, when Stripe's event gave its fingerprint and brand.
pub(super) fn card_of(pm: &PaymentMethod) -> Option<Card> {
    let card = pm.card.as_ref()?;
    Some(Card {
        fingerprint: card.fingerprint.clone()?,
        brand: card.brand.clone()?,
        funding: card.funding.clone(),
        expires_at: card
            .exp_month
            .zip(card.exp_year)
            .and_then(|(month, year)| super::card_expires_at(month, year)),
    })
}

/// What an invoice event establishes about the case, independent of when it arrived.
enum Fact {
    Failed { needs_customer: bool },
    Paid,
    Closed(&'static str),
}

impl Fact {
    fn opening_state(&self) -> State {
        match self {
            Fact::Failed {
                needs_customer: true,
            } => State::AwaitingCustomer,
            _ => State::Retrying,
        }
    }
}

/// The customer's likely paydays: the days of the month their earlier invoices were paid on, but
/// for the day this one failed on. That is its renewal day — an invoice paid when it was billed
/// says when it was billed, not when money comes in — and the money was not there on it this time.
fn paydays(customer: &CustomerFacts, timezone: &str, failed_at: Timestamp) -> Vec<u8> {
    let billed_on = failed_at.to_zoned(timing::zone(timezone)).day();
    customer
        .payment_days
        .iter()
        .copied()
        .filter(|day| i8::try_from(*day) != Ok(billed_on))
        .collect()
}

/// A new case for `invoice`, whose first event happened `at`.
fn open(
    policy: &Policy,
    invoice: &Invoice,
    opening: Option<(&CustomerFacts, bool)>,
    state: State,
    at: Timestamp,
    now: Timestamp,
) -> Case {
    let unknown = CustomerFacts::default();
    let (customer, untold) = opening.unwrap_or((&unknown, false));
    let timezone = timing::zone_name(
        customer.metadata.get("timezone").map(String::as_str),
        customer
            .country
            .as_deref()
            .or(invoice.customer_country.as_deref()),
    );
    let paydays = paydays(customer, &timezone, at);
    Case {
        invoice_id: invoice.id.clone().unwrap_or_default(),
        customer_id: invoice.customer.clone(),
        subscription_id: invoice.subscription.clone(),
        amount_due: invoice.amount_due,
        amount_remaining: remaining(invoice),
        currency: invoice.currency.clone(),
        state,
        customer_timezone: timezone,
        decline: None,
        attempts: Vec::new(),
        next_attempt_at: None,
        nudges: Vec::new(),
        recovered_by: None,
        decision: None,
        timers: Vec::new(),
        timeline: Vec::new(),
        failed_at: None,
        paid_at: None,
        paid_first: false,
        closure: None,
        new_payment_method: None,
        card_paid: None,
        stripe_retries_at: None,
        retry_under_way: None,
        card: None,
        nudged: Vec::new(),
        billed_to: (invoice.customer_name.is_some() || invoice.customer_email.is_some()).then(
            || BilledTo {
                name: invoice.customer_name.clone(),
                email: invoice.customer_email.clone(),
            },
        ),
        contact_window: customer
            .metadata
            .get("contact_window")
            .and_then(|w| nudge::contact_window(w)),
        holds: Vec::new(),
        held_state: None,
        holds_ended: Vec::new(),
        subscription_as_of: None,
        zone_as_of: None,
        retry_requested: None,
        lost_dispute: None,
        resumption: None,
        link_opened_at: None,
        link_opens: 0,
        answer: None,
        country: customer
            .country
            .as_deref()
            .or(invoice.customer_country.as_deref())
            .map(str::to_ascii_uppercase),
        paydays,
        retry_choice: None,
        nudges_held_until: None,
        untold,
        segment: policy
            .segment_for(invoice, customer, at)
            .map(|s| s.name.clone()),
        arm: policy
            .experiment
            .as_ref()
            .map(|e| Box::new(e.assignment(&invoice.customer))),
        opened_at: now,
        version: 0,
    }
}

/// What a partial payment left due, when it left less than the whole invoice.
fn remaining(invoice: &Invoice) -> Option<i64> {
    (invoice.amount_remaining < invoice.amount_due).then_some(invoice.amount_remaining)
}

/// Records an attempt's outcome. Told twice, an attempt keeps its earliest time; a real outcome
/// replaces an `error` (the same attempt made again with the same key), and an `error` never hides
/// a real outcome.
pub(super) fn record_attempt(
    case: &mut Case,
    number: u32,
    at: Timestamp,
    outcome: Outcome,
    decline_code: Option<String>,
) {
    if let Some(known) = case.attempts.iter_mut().find(|a| a.number == number) {
        if outcome == Outcome::Error {
            // Another try of the same attempt, no result again: counted, and the next try is
            // spaced from this one.
            if known.outcome == Outcome::Error && at > known.at {
                known.errors += 1;
                known.at = at;
            }
            return;
        }
        known.errors = 0;
        known.at = if known.outcome == Outcome::Error {
            at
        } else {
            known.at.min(at)
        };
        known.outcome = outcome;
        known.decline_code = decline_code.or(known.decline_code.take());
        return;
    }
    let position = case.attempts.partition_point(|a| a.number < number);
    case.attempts.insert(
        position,
        Attempt {
            at,
            number,
            outcome,
            decline_code,
            errors: u32::from(outcome == Outcome::Error),
        },
    );
}

fn describe(event: &Event, invoice: &Invoice, before: Option<State>, case: &Case) -> String {
    let after = case.state;
    let amount = format!("{} {}", invoice.amount_due, invoice.currency);
    let change = match (before, &case.segment) {
        (None, Some(segment)) => format!("case opened {} in segment {segment:?}", after.as_str()),
        (None, None) => format!("case opened {}", after.as_str()),
        (Some(before), _) if before == after => format!("case stays {}", after.as_str()),
        (Some(before), _) => format!("case {} → {}", before.as_str(), after.as_str()),
    };
    let arm = match (before, &case.arm) {
        (None, Some(assigned)) => format!("; {}", assigned.sentence()),
        _ => String::new(),
    };
    format!("{amount}; {change}{arm}")
        + match (event.kind, after) {
            (EventKind::InvoicePaid | EventKind::InvoicePaymentSucceeded, State::Closed) => {
                " (paid before any failure was seen)"
            }
            _ => "",
        }
}
