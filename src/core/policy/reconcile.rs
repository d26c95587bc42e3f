//! Reconciling Stripe's invoices with recoup's cases: events say what happened, the invoice list
//! says what *is*. Where the two disagree — an invoice Stripe failed to collect that has no case,
//! or an open case whose invoice Stripe shows paid, void or uncollectible — the difference is the
//! event recoup missed. It is made here, from the invoice as Stripe shows it, and goes through the
//! inbox like a delivered one, so the case opens or settles exactly as that event would have made it.
//!
//! A made event's id is `reconcile:<invoice>:<what>` (`failed-<attempt>`, `paid`, `voided`,
//! `uncollectible`): the same difference found twice is the same event, which the inbox dedupes and
//! a case ignores the second time.

use jiff::Timestamp;

use super::{Case, State};
use crate::event::{Event, EventKind, EventObject, ListedInvoice};

/// What the id of every event reconciling makes starts with.
pub const EVENT_PREFIX: &str = "reconcile:";

/// Whether reconciling compares `case` with Stripe: its dunning is not over (or collection is only
/// paused, which a payment still ends).
pub fn is_open(case: &Case) -> bool {
    !case.state.is_final() || case.state == State::Paused
}

/// The failure recoup missed for `listed`, an invoice it has no case for: Stripe tried to collect
/// it automatically at least once and it is still open. The failure is stamped `now`, when recoup
/// learned of it — an invoice does not say when its last attempt failed — so the case's plan starts
/// from now rather than from a day long gone. `None` when the invoice is no such failure.
pub fn missed_failure(listed: &ListedInvoice, now: Timestamp) -> Option<Event> {
    let invoice = &listed.invoice;
    let unpaid = invoice.status.as_deref() == Some("open")
        && invoice.attempt_count >= 1
        && invoice.collection_method.as_deref() != Some("send_invoice");
    unpaid.then(|| {
        made(
            listed,
            EventKind::InvoicePaymentFailed,
            &format!("failed-{}", invoice.attempt_count),
            now.as_second(),
        )
    })
}

/// The settlement recoup missed for `case`, whose invoice Stripe shows as `listed`: paid, void or
/// uncollectible while the case is still open. It is stamped with Stripe's own time of that change
/// (`status_transitions`), or `now` when Stripe shows none, so a payment made after the failure
/// recovers the case and one made before it closes it, as the event would. `None` when there is
/// nothing to settle.
pub fn missed_settlement(case: &Case, listed: &ListedInvoice, now: Timestamp) -> Option<Event> {
    if !is_open(case) || listed.invoice.id.as_deref() != Some(case.invoice_id.as_str()) {
        return None;
    }
    let (kind, what, at) = match listed.invoice.status.as_deref()? {
        "paid" => (EventKind::InvoicePaid, "paid", listed.paid_at),
        "void" => (EventKind::InvoiceVoided, "voided", listed.voided_at),
        "uncollectible" => (
            EventKind::InvoiceMarkedUncollectible,
            "uncollectible",
            listed.marked_uncollectible_at,
        ),
        _ => return None,
    };
    Some(made(listed, kind, what, at.unwrap_or(now.as_second())))
}

fn made(listed: &ListedInvoice, kind: EventKind, what: &str, created: i64) -> Event {
    let invoice_id = listed.invoice.id.as_deref().unwrap_or_default();
    Event {
        id: format!("{EVENT_PREFIX}{invoice_id}:{what}"),
        kind,
        created,
        livemode: listed.livemode,
        api_version: None,
        object: EventObject::Invoice(Box::new(listed.invoice.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::wire::parse_invoice;
    use crate::policy::{Input, Policy, decide};

    fn listed(status: &str, attempts: u32, transitions: serde_json::Value) -> ListedInvoice {
        let invoice = serde_json::json!({
            "id": "in_1", "customer": "cus_1", "amount_due": 4900, "currency": "usd",
            "status": status, "attempt_count": attempts,
            "collection_method": "charge_automatically", "status_transitions": transitions,
        });
        parse_invoice(&serde_json::to_vec(&invoice).unwrap()).unwrap()
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).unwrap()
    }

    const NOW: i64 = 1_790_000_000;

    #[test]
    fn an_open_invoice_stripe_failed_to_collect_is_a_missed_failure_once_per_attempt() {
        let made = missed_failure(&listed("open", 2, serde_json::json!({})), at(NOW)).unwrap();
        assert_eq!(made.id, "reconcile:in_1:failed-2");
        assert_eq!(made.kind, EventKind::InvoicePaymentFailed);
        assert_eq!(made.created, NOW);
        assert_eq!(
            missed_failure(&listed("open", 2, serde_json::json!({})), at(NOW + 60))
                .unwrap()
                .id,
            made.id,
            "found again later, it is the same event"
        );
        // Never attempted, not open, or sent to the customer to pay: nothing failed.
        assert!(missed_failure(&listed("open", 0, serde_json::json!({})), at(NOW)).is_none());
        assert!(missed_failure(&listed("paid", 1, serde_json::json!({})), at(NOW)).is_none());
        let mut sent = listed("open", 1, serde_json::json!({}));
        sent.invoice.collection_method = Some("send_invoice".into());
        assert!(missed_failure(&sent, at(NOW)).is_none());
    }

    /// The case a missed failure of `in_1` opens.
    fn opened() -> Case {
        let failure = missed_failure(&listed("open", 1, serde_json::json!({})), at(NOW)).unwrap();
        applied(None, failure)
    }

    /// The case `made` leaves.
    fn applied(case: Option<&Case>, made: Event) -> Case {
        decide(
            &Policy::default(),
            case.cloned(),
            &Input::Event(Box::new(made)),
            at(NOW),
        )
        .case
        .unwrap()
    }

    #[test]
    fn a_payment_after_the_failure_recovers_the_case_and_one_before_it_closes_it() {
        let case = opened();
        assert!(is_open(&case));

        let later = listed("paid", 1, serde_json::json!({"paid_at": NOW + 3600}));
        let paid = missed_settlement(&case, &later, at(NOW + 7200)).unwrap();
        assert_eq!(
            (paid.id.as_str(), paid.kind, paid.created),
            ("reconcile:in_1:paid", EventKind::InvoicePaid, NOW + 3600)
        );
        let settled = applied(Some(&case), paid);
        assert_eq!(settled.state, State::Recovered);
        assert!(
            missed_settlement(&settled, &later, at(NOW)).is_none(),
            "a settled case is not open"
        );

        let before = listed("paid", 1, serde_json::json!({"paid_at": NOW - 60}));
        let paid = missed_settlement(&case, &before, at(NOW)).unwrap();
        assert_eq!(applied(Some(&case), paid).state, State::Closed);
    }

    #[test]
    fn a_void_or_uncollectible_invoice_closes_the_case_and_an_open_one_changes_nothing() {
        let case = opened();
        for (status, id, kind) in [
            ("void", "reconcile:in_1:voided", EventKind::InvoiceVoided),
            (
                "uncollectible",
                "reconcile:in_1:uncollectible",
                EventKind::InvoiceMarkedUncollectible,
            ),
        ] {
            // No time of the change shown: it is stamped when reconciling found it.
            let made = missed_settlement(
                &case,
                &listed(status, 1, serde_json::json!({})),
                at(NOW + 5),
            )
            .unwrap();
            assert_eq!(
                (made.id.as_str(), made.kind, made.created),
                (id, kind, NOW + 5)
            );
            assert_eq!(applied(Some(&case), made).state, State::Closed, "{status}");
        }
        let open = listed("open", 1, serde_json::json!({}));
        assert!(missed_settlement(&case, &open, at(NOW)).is_none());
        let mut other = listed("paid", 1, serde_json::json!({}));
        other.invoice.id = Some("in_2".into());
        assert!(
            missed_settlement(&case, &other, at(NOW)).is_none(),
            "another invoice's status says nothing about this case"
        );
    }
}
