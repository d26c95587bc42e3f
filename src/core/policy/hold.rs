//! Holds, and what people outside recoup do to a case: support agents, disputes, and the business
//! changing a subscription in Stripe's dashboard.
//!
//! A hold stops all dunning on a case — no retry, no nudge, no decision — and keeps its plan: a timer
//! that comes due while held is let go, and when the last hold ends the plan is made again from the
//! case's facts, so a missed retry happens at the first moment it is allowed. A case can be held for
//! several reasons at once (a dispute and a support agent); it is `on_hold` while any remains, and
//! returns to the state it was in — `awaiting_customer` becomes `retrying` if a new card arrived
//! meanwhile.
//!
//! Support acts through the API, each action recorded with the name of the token that did it and
//! why. A support retry runs now, or is refused with the rule that forbids it — the same rules a
//! planned retry obeys, checked here so the agent hears why at once.

use jiff::Timestamp;

use super::budget::{self, Try};
use super::ending::card_stopped;
use super::replan::{conclude, replan};
use super::{
    Card, Case, Closure, Decision, ENDED_HOLDS_KEPT, EndAction, Entry, Hold, HoldBy, LostDispute,
    Policy, RetryRequest, State,
};
use crate::event::{Dispute, Event, EventKind, Subscription};

/// A support agent's action on one case.
#[derive(Debug, Clone, PartialEq)]
pub struct Support {
    /// The name of the API token that asked.
    pub by: String,
    pub reason: String,
    pub at: Timestamp,
    pub act: SupportAct,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SupportAct {
    /// Stop all dunning on the invoice until support resumes it.
    Hold,
    /// Lift support's holds.
    Resume,
    /// Charge now; `card` holds the recent tries on the case's card, for the networks' budgets.
    Retry { card: Vec<Try> },
}

impl SupportAct {
    pub fn as_str(&self) -> &'static str {
        match self {
            SupportAct::Hold => "hold",
            SupportAct::Resume => "resume",
            SupportAct::Retry { .. } => "retry",
        }
    }
}

pub(super) fn on_support(policy: &Policy, case: Case, support: &Support) -> Decision {
    let Support { by, reason, at, .. } = support;
    let mut next = case;
    let what = match &support.act {
        SupportAct::Hold => {
            if next.state.is_final() {
                let why = format!(
                    "the case is {}: there is no dunning to hold",
                    next.state.as_str()
                );
                return refused(next, why);
            }
            hold(
                &mut next,
                Hold {
                    by: HoldBy::Support { name: by.clone() },
                    reason: reason.clone(),
                    at: *at,
                },
            );
            "support put the case on hold"
        }
        SupportAct::Resume => {
            let support_held = |h: &Hold| matches!(h.by, HoldBy::Support { .. });
            if !next.holds.iter().any(support_held) {
                let why = match next.holds.first() {
                    Some(other) => format!(
                        "support holds nothing here; the case is on hold for another reason \
                         ({}), which ends by itself",
                        other.reason
                    ),
                    None => format!("the case is {}, not on hold", next.state.as_str()),
                };
                return refused(next, why);
            }
            next.holds.retain(|h| !support_held(h));
            // An attempt held after errors in a row is tried afresh, its count started again.
            if let Some(last) = next.attempts.last_mut() {
                last.errors = 0;
            }
            "support resumed dunning"
        }
        SupportAct::Retry { card } => {
            if let Err(why) = retry_allowed(policy, &next, card, *at) {
                return refused(next, why);
            }
            next.retry_requested = Some(Box::new(RetryRequest {
                by: by.clone(),
                reason: reason.clone(),
                at: *at,
            }));
            "support asked for a retry now"
        }
    };
    let released = match support.act {
        SupportAct::Resume => release_if_free(&mut next),
        SupportAct::Hold | SupportAct::Retry { .. } => String::new(),
    };
    let (planned, actions) = replan(policy, &mut next, *at);
    next.record(Entry {
        at: *at,
        what: what.to_owned(),
        detail: format!("by {by}: {reason}{released}{planned}"),
        event: None,
    });
    Decision {
        actions,
        ..Decision::save(next)
    }
}

/// Whether support may retry the case now, or the rule that forbids it.
pub fn retry_allowed(
    policy: &Policy,
    case: &Case,
    card: &[Try],
    now: Timestamp,
) -> Result<u32, String> {
    let paused = case.state == State::Paused
        && case
            .decision
            .as_ref()
            .is_some_and(|d| d.outcome.done() && d.action == super::EndAction::Pause);
    match case.state {
        State::Retrying => {}
        State::Paused if paused => {}
        State::OnHold => {
            return Err(format!(
                "the case is on hold ({}): resume it first",
                case.holds
                    .iter()
                    .map(|h| h.reason.as_str())
                    .collect::<Vec<_>>()
                    .join("; ")
            ));
        }
        State::AwaitingCustomer => {
            let decline = case.decline.as_ref().map_or_else(
                || "the payment must be confirmed by the customer".to_owned(),
                |d| {
                    format!(
                        "the last decline ({}, {}) needs the customer",
                        d.code.as_deref().unwrap_or("no code"),
                        d.class.as_str()
                    )
                },
            );
            return Err(format!(
                "{decline}: a new card or confirming the payment; a retry now would only be \
                 declined again"
            ));
        }
        state => {
            return Err(format!(
                "the case is {}: there is nothing to retry",
                state.as_str()
            ));
        }
    }
    if let Some(under_way) = case.retry_under_way {
        return Err(format!(
            "retry {} is under way since {}",
            under_way.attempt, under_way.at
        ));
    }
    let plan = policy.plan_for(case);
    if case.stripe_retries_at.is_some() && plan.defer_to_stripe {
        return Err(
            "Stripe retries this invoice itself (its own retries are on): recoup does not \
             charge it besides"
                .to_owned(),
        );
    }
    if card_stopped(case) {
        return Err(
            "the customer won a dispute on this card: it is not charged again; a new card is"
                .to_owned(),
        );
    }
    let attempt = case.attempts.last().map_or(1, |a| a.number) + 1;
    if attempt > plan.max_attempts {
        return Err(format!(
            "no attempt left: the policy allows {} on one invoice",
            plan.max_attempts
        ));
    }
    if let Some(brand) = case.card.as_ref().map(|c| c.brand.as_str()) {
        let next = Try::of_case(case, attempt, now);
        match budget::earliest_allowed(&policy.networks, brand, card, &next) {
            Ok(Ok(_)) => {}
            Ok(Err(deferral)) => {
                return Err(format!(
                    "{}; the earliest legal retry is {}",
                    deferral.because, deferral.until
                ));
            }
            Err(never) => return Err(format!("{never} allows no try on this card")),
        }
    }
    Ok(attempt)
}

/// A dispute event for one of the customer's cases: `charge.dispute.created` holds it,
/// `charge.dispute.closed` lets go of that hold; a lost dispute stops the disputed card when the
/// policy says so.
pub(super) fn on_dispute(
    policy: &Policy,
    case: Case,
    event: &Event,
    dispute: &Dispute,
    card: Option<&Card>,
) -> Decision {
    let at = Timestamp::from_second(event.created).unwrap_or(case.opened_at);
    // Disputes are rare: a copy tells whether the event changed anything.
    let mut next = case.clone();
    let by = HoldBy::Dispute {
        dispute: dispute.id.clone(),
    };
    let about = format!(
        "dispute {} on charge {} ({}, {} {})",
        dispute.id,
        dispute.charge,
        dispute.reason.as_deref().unwrap_or("no reason given"),
        dispute.amount,
        dispute.currency
    );
    let detail = match event.kind {
        EventKind::ChargeDisputeCreated => {
            if case.state.is_final() || case.holds.iter().any(|h| h.by == by) {
                return Decision::unchanged(case);
            }
            if case.holds_ended.iter().any(|h| h.by == by) {
                // Stripe sent the closing after the opening, but it arrived first.
                let detail = format!("{about}: already closed, so nothing to hold");
                return after_event(policy, next, event, at, detail);
            }
            hold(
                &mut next,
                Hold {
                    by,
                    reason: about.clone(),
                    at,
                },
            );
            format!("{about}: no retries, no nudges until it closes")
        }
        _ => {
            if case.state.is_final() && !case.holds.iter().any(|h| h.by == by) {
                return Decision::unchanged(case);
            }
            next.holds.retain(|h| h.by != by);
            end_hold(
                &mut next,
                Hold {
                    by,
                    reason: about.clone(),
                    at,
                },
            );
            let lost = dispute.status == "lost";
            if lost && policy.disputes.stop_card_when_lost {
                next.lost_dispute = Some(Box::new(LostDispute {
                    dispute: dispute.id.clone(),
                    card: card.map(|c| c.fingerprint.clone()),
                    at,
                }));
            }
            let effect = match (lost, policy.disputes.stop_card_when_lost) {
                (true, true) => "; the customer won it, so the disputed card is not charged again",
                (true, false) => "; the customer won it (the policy keeps retrying the card)",
                (false, _) => "",
            };
            format!("{about} closed: {}{effect}", dispute.status)
        }
    };
    let released = release_if_free(&mut next);
    // A stopped card answers nothing more: the case waits for a new one.
    if card_stopped(&next) {
        let state = match next.state {
            State::OnHold => next.held_state.as_mut(),
            _ => Some(&mut next.state),
        };
        if let Some(state) = state.filter(|s| **s == State::Retrying) {
            *state = State::AwaitingCustomer;
        }
    }
    if next == case {
        return Decision::unchanged(case);
    }
    after_event(policy, next, event, at, detail + &released)
}

/// The business changed the case's subscription in Stripe. recoup follows, never fights: a
/// subscription that ended closes the case; collection paused in Stripe holds it until it is
/// resumed there; a cancellation at period end is noted (the decision, if it comes to one, will
/// find it and leave it).
pub(super) fn on_subscription(
    policy: &Policy,
    case: Case,
    event: &Event,
    subscription: &Subscription,
) -> Decision {
    if case.subscription_id.as_deref() != Some(subscription.id.as_str()) {
        return Decision::unchanged(case);
    }
    let at = Timestamp::from_second(event.created).unwrap_or(case.opened_at);
    if case.subscription_as_of.is_some_and(|seen| at < seen) {
        // An older snapshot than one already applied: what it says is no longer so.
        return Decision::unchanged(case);
    }
    let ended = event.kind == EventKind::CustomerSubscriptionDeleted
        || matches!(
            subscription.status.as_str(),
            "canceled" | "incomplete_expired"
        );
    // Subscription events are few: a copy tells whether one changed anything.
    let mut next = case.clone();
    next.subscription_as_of = Some(at);
    // Nothing to tell, but the snapshot's time is kept, so an older one cannot undo what it says.
    let quietly = |next: Case, case: Case| {
        if next == case {
            Decision::unchanged(case)
        } else {
            Decision::save(next)
        }
    };
    let by = HoldBy::Stripe {
        subscription: subscription.id.clone(),
    };
    let detail = if ended {
        // recoup's own cancellation, reported back, changes nothing; nor does anything after a
        // subscription ended (no later snapshot can undo that).
        if matches!(
            case.state,
            State::Canceled | State::Recovered | State::Closed
        ) || case.decided(EndAction::Cancel)
        {
            return Decision::unchanged(case);
        }
        if next.closure.is_none() {
            next.closure = Some(Box::new(Closure {
                at,
                reason: format!("subscription {} canceled in Stripe", subscription.id),
            }));
        }
        format!(
            "subscription {} is {} in Stripe: dunning stops",
            subscription.id, subscription.status
        )
    } else if let Some(pause) = &subscription.pause_collection {
        // A pause recoup made itself is already on the case (as `paused`, or as the decision
        // under way when Stripe's report of it comes before Stripe's answer).
        if case.state.is_final()
            || case.holds.iter().any(|h| h.by == by)
            || case.decided(EndAction::Pause)
        {
            return quietly(next, case);
        }
        hold(
            &mut next,
            Hold {
                by,
                reason: format!(
                    "collection paused in Stripe ({})",
                    pause.behavior.replace('_', " ")
                ),
                at,
            },
        );
        format!(
            "collection of subscription {} paused in Stripe ({}): recoup holds the case until \
             it is resumed there",
            subscription.id, pause.behavior
        )
    } else if case.holds.iter().any(|h| h.by == by) {
        next.holds.retain(|h| h.by != by);
        format!(
            "collection of subscription {} resumed in Stripe",
            subscription.id
        )
    } else if subscription.cancel_at_period_end && !case.state.is_final() {
        let noted = "set to cancel at the end of its period in Stripe";
        if case.timeline.iter().any(|e| e.detail.contains(noted)) {
            return quietly(next, case);
        }
        format!("subscription {} {noted}", subscription.id)
    } else {
        return quietly(next, case);
    };
    let released = release_if_free(&mut next);
    after_event(policy, next, event, at, detail + &released)
}

/// Settles and re-plans a case an event changed, and tells the timeline what the event did.
fn after_event(
    policy: &Policy,
    next: Case,
    event: &Event,
    at: Timestamp,
    detail: String,
) -> Decision {
    let entry = Entry {
        at,
        what: event.kind.as_str().to_owned(),
        detail,
        event: Some(event.id.clone()),
    };
    conclude(policy, next, entry)
}

/// Puts a hold on the case; the first hold remembers the state to return to.
pub(super) fn hold(case: &mut Case, hold: Hold) {
    if case.state != State::OnHold {
        case.held_state = Some(case.state);
        case.state = State::OnHold;
    }
    case.holds.push(hold);
}

/// Remembers that `hold` ended (as of Stripe's time), keeping the latest [`ENDED_HOLDS_KEPT`].
fn end_hold(case: &mut Case, hold: Hold) {
    if case.holds_ended.iter().any(|h| h.by == hold.by) {
        return;
    }
    case.holds_ended.push(hold);
    let over = case.holds_ended.len().saturating_sub(ENDED_HOLDS_KEPT);
    case.holds_ended.drain(..over);
}

/// Returns a case whose last hold was lifted to the state it was held in (a new card that arrived
/// meanwhile answers a request to act). Says so for the timeline.
fn release_if_free(case: &mut Case) -> String {
    if case.state != State::OnHold {
        return String::new();
    }
    if !case.holds.is_empty() {
        return "; still on hold".to_owned();
    }
    let state = case.held_state.take().unwrap_or(State::Retrying);
    case.state = if state == State::AwaitingCustomer && case.answered_by_new_card() {
        State::Retrying
    } else {
        state
    };
    format!("; hold over, the case is {} again", case.state.as_str())
}

/// Support's act refused for `why`: the case goes back as it came.
fn refused(case: Case, why: String) -> Decision {
    Decision {
        refused: Some(why),
        ..Decision::unchanged(case)
    }
}
