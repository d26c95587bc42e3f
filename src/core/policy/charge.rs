//! What a charge attempt came to, and what that means for the case.
//!
//! The processor reports each of recoup's own attempts as a [`Charge`]: paid, declined (with
//! every signal Stripe gave), not charged because the invoice is no longer open, or failed because
//! Stripe could not be reached. Stripe's own attempts arrive as `invoice.payment_failed` events that
//! carry no decline details; the worker looks those up on the invoice's payment and feeds them in
//! the same way, as a [`ChargeResult::Declined`] for that attempt number.
//!
//! The latest attempt's decline is the case's decline: it sets the class the plan follows and the
//! card whose network budget the next retry spends. A decline that no schedule fixes (`hard`,
//! `card_data`, `action_required`) leaves the case awaiting the customer.

use jiff::Timestamp;

use super::decline::{self, Signals};
use super::events::record_attempt;
use super::hold;
use super::networks::Charged;
use super::replan::{Telling, replan_telling, settle};
use super::{
    Attempt, Card, Case, Closure, Decision, Decline, DeclineClass, Entry, Hold, HoldBy, Outcome,
    Policy, RecoveredBy, State,
};

/// The result of one charge attempt on a case's invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    /// The invoice's attempt number (Stripe's `attempt_count` once the attempt is made).
    pub attempt: u32,
    /// When the result was known: the processor's now, or the `created` time of Stripe's failure.
    pub at: Timestamp,
    pub result: ChargeResult,
    /// What the card's network is estimated to charge for the attempt ([`super::budget::fees`]):
    /// normally nothing, or a decline fee.
    pub fees: Vec<Charged>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChargeResult {
    /// The invoice is paid.
    Paid,
    /// The card was declined.
    Declined(Declined),
    /// Nothing was charged: the invoice is no longer `open` in Stripe (`paid`, `void`, …).
    NotOpen { status: String },
    /// Stripe could not be asked, or refused for a reason that is not the card's; the same attempt
    /// (and so the same idempotency key) is tried again later.
    Failed { error: String },
}

impl ChargeResult {
    /// The result's name in metrics and logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            ChargeResult::Paid => "paid",
            ChargeResult::Declined(_) => "declined",
            ChargeResult::NotOpen { .. } => "not_open",
            ChargeResult::Failed { .. } => "failed",
        }
    }
}

/// A decline as Stripe reported it, with the card it came from when Stripe named it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Declined {
    pub code: Option<String>,
    pub decline_code: Option<String>,
    pub advice_code: Option<String>,
    pub network_advice_code: Option<String>,
    pub network_decline_code: Option<String>,
    pub card: Option<Card>,
}

impl Declined {
    pub fn signals(&self) -> Signals<'_> {
        Signals {
            code: self.code.as_deref(),
            decline_code: self.decline_code.as_deref(),
            advice_code: self.advice_code.as_deref(),
            network_advice_code: self.network_advice_code.as_deref(),
            network_decline_code: self.network_decline_code.as_deref(),
            brand: self.card.as_ref().map(|c| c.brand.as_str()),
        }
    }

    /// The most specific code: Stripe's `decline_code`, else its error `code`.
    fn best_code(&self) -> Option<String> {
        self.decline_code.clone().or_else(|| self.code.clone())
    }
}

/// The attempt's estimated network fees, when there are any: `; estimated network fee $0.02
/// (mastercard insufficient-funds decline)`.
fn fee_words(fees: &[Charged]) -> String {
    let fees: Vec<String> = fees
        .iter()
        .filter(|f| !f.fee.is_zero())
        .map(|f| format!("{} ({})", f.fee, f.rule))
        .collect();
    if fees.is_empty() {
        return String::new();
    }
    format!("; estimated network fee {}", fees.join(" + "))
}

pub(super) fn on_charge(policy: &Policy, case: Case, charge: &Charge) -> Decision {
    let Charge { attempt, at, .. } = *charge;
    // The decline of the latest failure, whose line left the plan to it (Stripe's events carry
    // none).
    let latest = case.attempts.iter().all(|a| a.number <= attempt);
    let telling = match charge.result {
        ChargeResult::Declined(_) if latest && case.decline_unread(attempt) => Telling::DeclineRead,
        _ => Telling::Changes,
    };
    // Told twice (a redo, or Stripe's webhook and recoup's own result), a result changes nothing.
    // Only a result for an attempt the case already holds, or an invoice no longer open, can be
    // told twice — any other adds an attempt — so only then is the case copied to compare.
    let repeat = matches!(charge.result, ChargeResult::NotOpen { .. })
        || case.attempts.iter().any(|a| a.number == attempt);
    let before = repeat.then(|| case.clone());
    let mut next = case;
    if next.retry_under_way.is_some_and(|r| r.attempt == attempt) {
        next.retry_under_way = None;
    }
    let (what, detail) = match &charge.result {
        ChargeResult::Paid => {
            record_attempt(&mut next, attempt, at, Outcome::Succeeded, None);
            next.paid_at = Some(next.paid_at.map_or(at, |p| p.min(at)));
            next.recovered_by = Some(RecoveredBy::Retry);
            (
                "retry succeeded",
                format!("attempt {attempt} paid the invoice"),
            )
        }
        ChargeResult::Declined(declined) => {
            let classified = decline::classify(&declined.signals(), &policy.networks, at);
            record_attempt(
                &mut next,
                attempt,
                at,
                Outcome::Failed,
                declined.best_code(),
            );
            if next.attempts.iter().all(|a| a.number <= attempt) {
                next.decline = Some(Decline {
                    code: declined.best_code(),
                    class: classified.class,
                    advice_code: declined.advice_code.clone(),
                    network_advice_code: declined.network_advice_code.clone(),
                    network_wait: classified.not_before,
                });
                if let Some(card) = &declined.card {
                    next.card = Some(card.clone());
                }
                let answered = next.new_payment_method.as_ref().is_some_and(|c| c.at > at);
                let needs_customer = matches!(
                    classified.class,
                    DeclineClass::Hard | DeclineClass::CardData | DeclineClass::ActionRequired
                );
                if needs_customer && !answered && next.state == State::Retrying {
                    next.state = State::AwaitingCustomer;
                }
            }
            let detail = next.words(|| {
                let card = declined
                    .card
                    .as_ref()
                    .map(|c| format!(" on {} card {}", c.brand, c.fingerprint))
                    .unwrap_or_default();
                format!(
                    "attempt {attempt}{card}: {}, {} ({})",
                    declined.best_code().as_deref().unwrap_or("no code"),
                    classified.class.as_str(),
                    classified.because()
                )
            });
            ("attempt declined", detail)
        }
        ChargeResult::NotOpen { status } => {
            if status == "paid" {
                next.paid_at = Some(next.paid_at.map_or(at, |p| p.min(at)));
            } else if next.closure.is_none() {
                next.closure = Some(Box::new(Closure {
                    at,
                    reason: format!("invoice is {status} in Stripe"),
                }));
            }
            (
                "retry skipped",
                format!("attempt {attempt} not made: the invoice is {status} in Stripe"),
            )
        }
        ChargeResult::Failed { error } => {
            record_attempt(&mut next, attempt, at, Outcome::Error, None);
            let errors = next
                .attempts
                .iter()
                .find(|a| a.number == attempt)
                .map_or(0, |a| a.errors);
            if errors >= Attempt::MAX_ERRORS && !next.state.is_final() {
                let reason = format!(
                    "Stripe answered attempt {attempt} with no result {errors} times in a row \
                     (last: {error}): held until support resumes it, once the cause is fixed"
                );
                hold::hold(
                    &mut next,
                    Hold {
                        by: HoldBy::Support {
                            name: "recoup".to_owned(),
                        },
                        reason,
                        at,
                    },
                );
                (
                    "attempt held for support",
                    format!(
                        "attempt {attempt} did not reach a result {errors} times in a row \
                         ({error}); no more tries until support resumes the case"
                    ),
                )
            } else {
                (
                    "attempt failed",
                    format!(
                        "attempt {attempt} did not reach a result ({error}); it is tried again \
                         with the same idempotency key"
                    ),
                )
            }
        }
    };
    settle(&mut next);
    let (planned, actions) = replan_telling(policy, &mut next, at, telling);
    if let Some(before) = before.filter(|before| *before == next) {
        return Decision::unchanged(before);
    }
    next.record(Entry {
        at,
        what: what.to_owned(),
        detail: detail + &fee_words(&charge.fees) + &planned,
        event: None,
    });
    Decision {
        actions,
        ..Decision::save(next)
    }
}
