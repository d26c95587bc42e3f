//! The oracle: what a policy that knew the truth could recover, the yardstick for every policy.
//!
//! It knows when each customer's money is there, whether the card is dead, whether the customer
//! would add a card or pay by themselves — all a policy never sees — and recovers an invoice when
//! any of those could pay it within the horizon without breaking a network rule (`docs/reference/population.md#the-oracle`,
//! "Simulation population"). No policy recovers more; how close one comes is its `oracle_share`.

use jiff::SignedDuration;

use super::population::FailedInvoice;
use super::world::{HORIZON, signals};
use crate::policy::{DeclineClass, Networks, card_expired, decline};

/// Whether a perfect, rule-abiding policy could recover `invoice` within the horizon.
pub fn recoverable(invoice: &FailedInvoice) -> bool {
    let horizon = invoice.failed_at + HORIZON;
    let networks = Networks::built_in();
    let first = decline::classify(
        &signals(&invoice.first_decline, &invoice.card.brand),
        &networks,
        invoice.failed_at,
    );
    // A decline the networks forbid retrying leaves the card dead whatever else is known.
    let live = !invoice.card_dead && first.class != DeclineClass::Hard;
    let earliest = invoice.failed_at + first.not_before.unwrap_or(SignedDuration::ZERO);
    let expired = |at| match (invoice.card.exp_month, invoice.card.exp_year) {
        (Some(month), Some(year)) => {
            card_expired(u32::from(month), u32::try_from(year).unwrap_or(0), at)
        }
        _ => false,
    };
    let by_retry = live
        && invoice.funds.iter().any(|funds| {
            let at = funds.from.max(earliest);
            at < funds.to && at <= horizon && !expired(at)
        });
    let by_new_card = invoice.updates_card.is_some_and(|update| {
        invoice
            .gives_up_after_nudges
            .is_none_or(|most| update.after_nudges <= most)
            && invoice.failed_at + super::world::reply(update.reply_hours) <= horizon
    });
    let by_customer = invoice.pays_unprompted_at.is_some_and(|at| at <= horizon);
    by_retry || by_new_card || by_customer
}
