//! What carrying out an end decision, or resuming collection, came to in Stripe: the case is paused,
//! canceled or closed; a decision Stripe's state overtook is recorded and nothing else done; a call
//! that failed is made again later under the same idempotency key.

use jiff::Timestamp;

use super::duration::human;
use super::replan::{conclude, plan_resume};
use super::{
    Case, Closure, Decision, DecisionOutcome, EndAction, EndResult, Entry, Policy, Resumption,
    State, ending,
};

/// What carrying out the decision came to: the case is `paused` or `canceled` (or closed, for an
/// invoice written off); a decision Stripe's state overtook is recorded and nothing else done.
pub(super) fn on_ended(policy: &Policy, case: Case, at: Timestamp, result: &EndResult) -> Decision {
    let Some(mut decision) = case
        .decision
        .clone()
        .filter(|d| d.outcome == DecisionOutcome::UnderWay)
    else {
        return Decision::unchanged(case);
    };
    let mut next = case;
    let (what, detail) = match result {
        EndResult::Done { already } => {
            decision.outcome = if *already {
                DecisionOutcome::FoundDone
            } else {
                DecisionOutcome::CarriedOut
            };
            match decision.action {
                EndAction::Pause => next.state = State::Paused,
                EndAction::Cancel => next.state = State::Canceled,
                EndAction::MarkUncollectible => {
                    next.closure.get_or_insert(Box::new(Closure {
                        at,
                        reason: "marked uncollectible by recoup's decision".to_owned(),
                    }));
                }
                EndAction::LeavePastDue => {
                    next.closure.get_or_insert(Box::new(Closure {
                        at,
                        reason: "left past due by recoup's decision: dunning is over".to_owned(),
                    }));
                }
            }
            let how = if *already {
                "Stripe already showed it (an earlier try of this decision, or the dashboard)"
            } else {
                "done in Stripe"
            };
            ("decision carried out", format!("{}: {how}", decision.how))
        }
        EndResult::NotOpen { status } => {
            decision.outcome = DecisionOutcome::NotCarriedOut;
            decision.note = Some(format!("the invoice is {status} in Stripe"));
            if status == "paid" {
                next.paid_at = Some(next.paid_at.map_or(at, |p| p.min(at)));
            } else {
                next.closure.get_or_insert(Box::new(Closure {
                    at,
                    reason: format!("invoice is {status} in Stripe"),
                }));
            }
            (
                "decision not carried out",
                format!("read right before acting: the invoice is {status}; nothing changed"),
            )
        }
        EndResult::Changed { now } => {
            decision.outcome = DecisionOutcome::NotCarriedOut;
            decision.note = Some(now.clone());
            next.closure.get_or_insert(Box::new(Closure {
                at,
                reason: format!("{now}: recoup leaves the subscription as it is"),
            }));
            (
                "decision not carried out",
                format!("read right before acting: {now}; recoup leaves it as it is"),
            )
        }
        EndResult::Failed { error } => {
            decision.outcome = DecisionOutcome::Failed;
            // Kept on the case like its timeline: no URL's credentials.
            decision.note = Some(crate::redact::text(error).into_owned());
            decision.at = at;
            (
                "decision failed",
                format!(
                    "{error}; tried again {} later with the same idempotency key",
                    human(ending::AFTER_ERROR)
                ),
            )
        }
    };
    next.decision = Some(decision);
    let entry = Entry {
        at,
        what: what.to_owned(),
        detail,
        event: None,
    };
    conclude(policy, next, entry)
}

/// What resuming the paused collection came to.
pub(super) fn on_resumed(case: Case, at: Timestamp, result: &EndResult) -> Decision {
    let settled = case
        .resumption
        .as_ref()
        .is_some_and(|r| !r.outcome.to_redo());
    if settled {
        return Decision::unchanged(case);
    }
    let mut next = case;
    let (outcome, note, detail) = match result {
        EndResult::Done { .. } => (
            DecisionOutcome::CarriedOut,
            None,
            "collection resumed in Stripe (pause_collection cleared)".to_owned(),
        ),
        EndResult::NotOpen { status } | EndResult::Changed { now: status } => (
            DecisionOutcome::NotCarriedOut,
            Some(status.clone()),
            format!("not resumed: {status}"),
        ),
        EndResult::Failed { error } => (
            DecisionOutcome::Failed,
            Some(crate::redact::text(error).into_owned()),
            format!("{error}; tried again {} later", human(ending::AFTER_ERROR)),
        ),
    };
    let what = match outcome {
        DecisionOutcome::Failed => "collection not resumed yet",
        DecisionOutcome::NotCarriedOut => "collection left as it is",
        _ => "collection resumed",
    };
    next.resumption = Some(Box::new(Resumption { at, outcome, note }));
    plan_resume(&mut next);
    next.record(Entry {
        at,
        what: what.to_owned(),
        detail,
        event: None,
    });
    Decision::save(next)
}
