//! The end of dunning: what happens to a subscription when recovery fails, and when.
//!
//! Once no retry is left and the customer has not fixed the payment, the policy decides: pause the
//! subscription's collection, cancel it (now or at the end of its period), mark the invoice
//! uncollectible, or leave it past due. Which one depends on the case's segment and on why dunning
//! ran out — retries of a `soft` or `ambiguous` decline exhausted, or a decline no retry fixes
//! (`hard`, `card_data`, a payment to confirm, a card the customer won a dispute on) with no new card
//! — because an expired card on a five-year account is not a stolen card on a week-old one.
//!
//! The decision waits a grace period after the final notice was delivered (or after the last
//! attempt, when the plan sends none), so the date the notice names is the date it happens; a
//! final notice that no channel could take is tried again first (see `nudged`). It is a timer of the case
//! like a retry: held back while the case is on hold, dropped the moment the invoice is paid,
//! replaced when a new card brings a retry back. Carrying it out is the worker's: right before acting
//! it reads the invoice and the subscription again and leaves both alone if either changed
//! ([`EndResult`]).

use jiff::{SignedDuration, Timestamp};

use super::duration::human;
use super::{Case, CaseDecision, DecisionOutcome, DeclineClass, EndAction, NudgeKind, Policy};
use super::{Outcome, State, TimerKind, time};

/// How long after a decision call that reached no result it is made again.
pub const AFTER_ERROR: SignedDuration = SignedDuration::from_mins(10);

/// What Stripe's `pause_collection[behavior]` does with the invoices of a paused subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PauseBehavior {
    /// New invoices stay drafts, to be collected once the customer is back.
    KeepAsDraft,
    MarkUncollectible,
    Void,
}

impl PauseBehavior {
    pub fn as_str(self) -> &'static str {
        match self {
            PauseBehavior::KeepAsDraft => "keep_as_draft",
            PauseBehavior::MarkUncollectible => "mark_uncollectible",
            PauseBehavior::Void => "void",
        }
    }
}

/// An end action, with how it is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Pause the subscription's collection; it resumes by itself after `resume_after`, if set.
    Pause {
        behavior: PauseBehavior,
        resume_after: Option<SignedDuration>,
    },
    /// Cancel the subscription, now or when its current period ends.
    Cancel { at_period_end: bool },
    /// Mark the invoice uncollectible: written off, the subscription untouched.
    MarkUncollectible,
    /// Stop dunning and change nothing in Stripe.
    LeavePastDue,
}

impl End {
    pub fn action(self) -> EndAction {
        match self {
            End::Pause { .. } => EndAction::Pause,
            End::Cancel { .. } => EndAction::Cancel,
            End::MarkUncollectible => EndAction::MarkUncollectible,
            End::LeavePastDue => EndAction::LeavePastDue,
        }
    }

    /// The change in Stripe's words.
    pub fn how(self) -> String {
        match self {
            End::Pause {
                behavior,
                resume_after,
            } => format!(
                "pause_collection[behavior]={}{}",
                behavior.as_str(),
                resume_after
                    .map(|after| format!(", resuming {} later", human(after)))
                    .unwrap_or_default()
            ),
            End::Cancel {
                at_period_end: true,
            } => "cancel_at_period_end=true".to_owned(),
            End::Cancel {
                at_period_end: false,
            } => "cancel now (DELETE /v1/subscriptions)".to_owned(),
            End::MarkUncollectible => "mark the invoice uncollectible".to_owned(),
            End::LeavePastDue => "nothing in Stripe".to_owned(),
        }
    }

    /// What the final notice tells the customer will happen: `paused`, `canceled`,
    /// `ends_at_period_end` or `overdue` (the templates word each in the customer's language).
    pub fn consequence(self) -> &'static str {
        match self {
            End::Pause { .. } => "paused",
            End::Cancel {
                at_period_end: false,
            } => "canceled",
            End::Cancel {
                at_period_end: true,
            } => "ends_at_period_end",
            End::MarkUncollectible | End::LeavePastDue => "overdue",
        }
    }

    /// Whether it changes the subscription (and so needs one).
    fn needs_subscription(self) -> bool {
        matches!(self, End::Pause { .. } | End::Cancel { .. })
    }
}

/// What happens when dunning runs out, for one segment or the policy's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EndPlan {
    /// After the retries of a `soft` or `ambiguous` decline are spent.
    pub exhausted: End,
    /// After a decline no retry fixes, when no new card came.
    pub no_new_card: End,
    /// How long after the final notice (or the last attempt) the decision waits.
    pub grace: SignedDuration,
}

impl Default for EndPlan {
    /// A small self-serve plan ends with its period: the customer keeps what they paid for and
    /// nothing renews unpaid. Seven days after the final notice, as the notice says.
    fn default() -> Self {
        let at_period_end = End::Cancel {
            at_period_end: true,
        };
        Self {
            exhausted: at_period_end,
            no_new_card: at_period_end,
            grace: SignedDuration::from_hours(7 * 24),
        }
    }
}

impl EndPlan {
    /// Pausing instead of cancelling: for accounts worth keeping, whose owners come back.
    pub fn pausing() -> Self {
        let pause = End::Pause {
            behavior: PauseBehavior::KeepAsDraft,
            resume_after: None,
        };
        Self {
            exhausted: pause,
            no_new_card: pause,
            ..Self::default()
        }
    }
}

/// What the policy does about disputes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DisputePlan {
    /// When the customer wins a dispute, the card it was on is not charged again.
    pub stop_card_when_lost: bool,
}

impl Default for DisputePlan {
    /// A customer who won a chargeback told their bank not to pay: charging that card again
    /// invites a second dispute and its fee.
    fn default() -> Self {
        Self {
            stop_card_when_lost: true,
        }
    }
}

/// A decision the worker carries out in Stripe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndOrder {
    pub invoice_id: String,
    pub subscription_id: Option<String>,
    pub end: End,
    pub resumes_at: Option<Timestamp>,
}

/// What carrying out a decision (or resuming collection) came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndResult {
    /// Done; `already` when Stripe already showed exactly this change.
    Done { already: bool },
    /// Nothing done: the invoice is no longer `open` (`paid`, `void`, …).
    NotOpen { status: String },
    /// Nothing done: the subscription changed in a way recoup does not override (in words).
    Changed { now: String },
    /// Stripe could not be reached or refused; tried again later with the same key.
    Failed { error: String },
}

impl EndResult {
    pub fn as_str(&self) -> &'static str {
        match self {
            EndResult::Done { already: false } => "done",
            EndResult::Done { already: true } => "found_done",
            EndResult::NotOpen { .. } => "not_open",
            EndResult::Changed { .. } => "changed",
            EndResult::Failed { .. } => "failed",
        }
    }
}

/// The rule and end action that apply to `case` if dunning ends now, and why.
pub fn choose(policy: &Policy, case: &Case) -> (End, String, String) {
    let plan = policy.ending_for(case);
    let class = case
        .decline
        .as_ref()
        .map_or(DeclineClass::Ambiguous, |d| d.class);
    let (end, situation) = if card_stopped(case) {
        (
            plan.no_new_card,
            "a card the customer won a dispute on, and no new card",
        )
    } else {
        match class {
            DeclineClass::Soft | DeclineClass::Ambiguous => (plan.exhausted, "retries exhausted"),
            DeclineClass::CardData | DeclineClass::ActionRequired | DeclineClass::Hard => (
                plan.no_new_card,
                "a decline no retry fixes, and no new card",
            ),
        }
    };
    let unsubscribed = end.needs_subscription() && case.subscription_id.is_none();
    let end = if unsubscribed { End::LeavePastDue } else { end };
    // The rule and the reason are words for support; a case that keeps no story (the
    // simulator's) is given none.
    if case.untold {
        return (end, String::new(), String::new());
    }
    let segment = case
        .segment
        .as_deref()
        .filter(|name| policy.segments.iter().any(|s| s.name == *name))
        .map_or_else(
            || "the policy's own".to_owned(),
            |s| format!("segment {s:?}"),
        );
    // The plan an experiment arm gave the case is named too: a holdout's is the baseline's alone.
    let segment = match policy.arm_of(case) {
        Some(arm) if arm.holdout => format!("experiment arm {:?} (the baseline plan)", arm.name),
        Some(arm) => format!("{segment}, experiment arm {:?}", arm.name),
        None => segment,
    };
    let failed = case
        .attempts
        .iter()
        .filter(|a| a.outcome == Outcome::Failed)
        .count();
    let last = case
        .decline
        .as_ref()
        .map(|d| {
            format!(
                "the last declined {} ({})",
                d.code.as_deref().unwrap_or("without a code"),
                d.class.as_str()
            )
        })
        .unwrap_or_else(|| "no decline details".to_owned());
    let situation = match case.ends_on_request() {
        Some(_) => "the customer asked to cancel",
        None => situation,
    };
    let notice = case
        .nudged
        .iter()
        .find(|n| n.kind == NudgeKind::FinalNotice)
        .map(|n| match (n.delivered_at, n.given_up_at, &n.covered_by) {
            (Some(at), _, Some(by)) => format!("; final notice covered {at} by {by}'s"),
            (Some(at), _, None) => format!("; final notice delivered {at}"),
            (None, Some(at), _) => format!("; final notice never delivered (given up {at})"),
            (None, None, _) => format!("; final notice {}", n.at),
        })
        .unwrap_or_default();
    let mut reason = match case.ends_on_request() {
        Some(at) => format!(
            "the customer asked to cancel on the feedback link at {at}; {failed} attempt(s) \
             failed, {last}"
        ),
        None => format!(
            "{failed} attempt(s) failed, {last}{notice}; {} grace",
            human(plan.grace)
        ),
    };
    if unsubscribed {
        reason += "; the invoice belongs to no subscription, so it is left past due";
    }
    (end, format!("{segment}: {situation}"), reason)
}

/// When the case's end decision is due, or `None` while something else may still happen: a
/// retry planned (a redo of an attempt that reached no result included) or under way, the final
/// notice still to go out or to be delivered, Stripe's own retries on, the case on hold or over,
/// or a decision already made.
pub fn due(policy: &Policy, case: &Case) -> Option<Timestamp> {
    if let Some(decision) = &case.decision {
        return (decision.outcome == DecisionOutcome::Failed)
            .then(|| time::later(decision.at, AFTER_ERROR));
    }
    if !matches!(case.state, State::Retrying | State::AwaitingCustomer) {
        return None;
    }
    // The customer asked to cancel and the policy ends the subscription at once: now, once a
    // retry under way has come back.
    if let Some(asked) = case.ends_on_request() {
        return case.retry_under_way.is_none().then_some(asked);
    }
    let retrying = case
        .timers
        .iter()
        .any(|t| matches!(t.kind, TimerKind::Retry { .. }));
    let stripe_retries = case.stripe_retries_at.is_some() && policy.plan_for(case).defer_to_stripe;
    if retrying || case.retry_under_way.is_some() || stripe_retries {
        return None;
    }
    case.attempts.last()?;
    // Grace counts from the final notice's delivery, never from its coming due: while it is still
    // being tried the decision waits. One that could never be delivered counts from the try recoup
    // gave up after — the customer cannot be told, and waiting longer would not tell them.
    let notice = match case
        .nudged
        .iter()
        .find(|n| n.kind == NudgeKind::FinalNotice)
    {
        Some(notice) => Some(notice.settled_at()?),
        None if policy.nudges_for(case).will_send_final_notice(case) => return None,
        None => None,
    };
    let last_at = case.attempts.iter().map(|a| a.at).max()?;
    Some(time::later(
        notice.map_or(last_at, |n| n.max(last_at)),
        policy.ending_for(case).grace,
    ))
}

/// The decision a final notice sent at `at` announces, and its date: the grace after the notice,
/// or after the next retry when one is still planned later.
pub fn announced(policy: &Policy, case: &Case, at: Timestamp) -> (End, Timestamp) {
    let (end, _, _) = choose(policy, case);
    let from = case.next_attempt_at.map_or(at, |next| next.max(at));
    (end, time::later(from, policy.ending_for(case).grace))
}

/// The decision `choose` makes, as the case records it while it is carried out.
pub(super) fn decision(policy: &Policy, case: &Case, now: Timestamp) -> (End, CaseDecision) {
    let (end, rule, reason) = choose(policy, case);
    let resumes_at = match end {
        End::Pause {
            resume_after: Some(after),
            ..
        } => Some(time::later(now, after)),
        _ => None,
    };
    let decision = CaseDecision {
        action: end.action(),
        at: now,
        rule,
        reason,
        how: end.how(),
        resumes_at,
        outcome: DecisionOutcome::UnderWay,
        note: None,
    };
    (end, decision)
}

/// Whether the case's card is one the customer won a dispute on, with no new card since.
pub(super) fn card_stopped(case: &Case) -> bool {
    case.lost_dispute.as_ref().is_some_and(|lost| {
        let same_card = match (&lost.card, &case.card) {
            (Some(lost), Some(card)) => *lost == card.fingerprint,
            _ => true,
        };
        let replaced = case
            .new_payment_method
            .as_ref()
            .is_some_and(|m| m.at > lost.at);
        same_card && !replaced
    })
}
