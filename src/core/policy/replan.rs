//! The re-planning engine: after any input, the state is computed again from the case's facts and
//! the case's timers are made to match it — exactly one pending retry, nudge, decision and resume
//! each, or none. Every input handler ends here, so the plan depends on the facts, not on the
//! order they arrived in.

use jiff::Timestamp;

use super::{
    Action, Case, Decision, DecisionOutcome, EndAction, Entry, NudgeKind, Nudged, Policy,
    RecoveredBy, State, Timer, TimerKind, ending, learning, time,
};

/// Computes the state from the case's facts; a payment beats a closure, which beats dunning.
pub(super) fn settle(case: &mut Case) {
    let state = match (case.paid_at, case.failed_at) {
        (Some(paid), Some(failed)) if failed < paid || (failed == paid && !case.paid_first) => {
            State::Recovered
        }
        (Some(_), _) => State::Closed,
        (None, _) if case.closure.is_some() => State::Closed,
        (None, _) => case.state,
    };
    case.state = state;
    case.recovered_by =
        (state == State::Recovered).then(|| case.recovered_by.unwrap_or(RecoveredBy::Unknown));
    if state.is_final() {
        case.timers.clear();
        // Over is over: a hold has nothing left to hold (the timeline keeps its story).
        case.holds.clear();
        case.held_state = None;
    }
}

/// How an input's timeline line tells the retry plan; the plan itself is the same whichever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Telling {
    /// When it changes.
    Changes,
    /// Its time only: the latest failure's decline, which the plan follows, is still to be read
    /// (see [`Case::decline_unread`]), and the line of that decline tells the plan with its reason.
    DeclineUnread,
    /// Even when its time stays: the input is the decline the plan was waiting for.
    DeclineRead,
}

/// Keeps exactly one pending retry, the plan's next, while the case is retrying, and none otherwise;
/// the plan depends on the facts, not on their arrival order. Returns what to add to the timeline.
fn plan_retry(policy: &Policy, case: &mut Case, telling: Telling) -> String {
    let mut choice = None;
    let next = match case.state {
        State::Retrying => Some(policy.plan_for(case).next_retry(case).map(|next| {
            let (next, chosen) = learning::retime(
                policy.learning_for(case),
                &policy.evidence,
                policy.plan_for(case),
                case,
                next,
            );
            choice = chosen;
            next
        })),
        // A paused customer's new card (or support's request) is tried; nothing else is.
        State::Paused => policy
            .plan_for(case)
            .next_retry(case)
            .ok()
            .filter(|next| next.prompted)
            .map(Ok),
        _ => None,
    };
    let before = case.timers.iter().find(|t| is_retry(t)).cloned();
    let redo = retry_redo(case);
    case.retry_choice = choice;
    case.timers.retain(|t| !is_retry(t));
    case.next_attempt_at = None;
    match next {
        // A retry handed to Stripe keeps a timer until its result is in, so that a worker dying
        // mid-call leaves the attempt to be made again under the same idempotency key.
        Some(Err(_)) if case.state == State::Retrying && redo.is_some() => {
            let Some((redo, left)) = redo else {
                return String::new();
            };
            case.timers.push(redo);
            match case.retry_under_way.filter(|_| !left) {
                Some(under_way) => case.words(|| {
                    format!(
                        "; retry {} is under way since {}: made again at {} with the same \
                         idempotency key unless its result comes first",
                        under_way.attempt, under_way.at, redo.at
                    )
                }),
                None => String::new(),
            }
        }
        Some(Ok(next)) => {
            let timer = Timer {
                at: next.at,
                kind: TimerKind::Retry {
                    attempt: next.attempt,
                },
            };
            case.timers.push(timer);
            case.next_attempt_at = Some(next.at);
            match telling {
                _ if before == Some(timer) && telling != Telling::DeclineRead => String::new(),
                Telling::DeclineUnread => case.words(|| {
                    format!(
                        "; next retry {} for now: the decline's details are read from Stripe \
                         next, and the plan follows them",
                        next.at
                    )
                }),
                _ => case.words(|| format!("; next retry {}: {}", next.at, next.why)),
            }
        }
        Some(Err(none)) => case.words(|| format!("; no retry: {none}")),
        // The case has stopped retrying (a late decline left the card to the customer, say) while
        // a retry was out with no result: made again, it would be a new try of a card the case no
        // longer tries if the first call never reached Stripe. It is let go — if it did reach
        // Stripe, Stripe's own event tells what it came to — so the end decision can be planned.
        None if !case.state.is_final() && redo.is_some() => {
            let Some(under_way) = case.retry_under_way.take() else {
                return String::new();
            };
            case.words(|| {
                format!(
                    "; retry {} (under way since {}) is not made again: the case no longer \
                     retries; had it reached Stripe, Stripe's event will say what it came to",
                    under_way.attempt, under_way.at
                )
            })
        }
        None if case.state == State::AwaitingCustomer && before.is_some() => {
            "; no retry until the customer acts: a new payment method, or confirming the payment"
                .to_owned()
        }
        None => String::new(),
    }
}

/// The timer that makes a retry under way again if its result never comes, and whether it is the
/// one the worker left while making it (else one [`ending::AFTER_ERROR`] after the retry went out,
/// for a case whose timer a hold let go). `None` once the attempt's result is on the case.
fn retry_redo(case: &Case) -> Option<(Timer, bool)> {
    let under_way = case.retry_under_way?;
    if case.attempts.iter().any(|a| a.number >= under_way.attempt) {
        return None;
    }
    let kind = TimerKind::Retry {
        attempt: under_way.attempt,
    };
    match case.timers.iter().find(|t| t.kind == kind) {
        Some(&left) => Some((left, true)),
        None => Some((
            Timer {
                at: time::later(under_way.at, ending::AFTER_ERROR),
                kind,
            },
            false,
        )),
    }
}

fn is_retry(timer: &Timer) -> bool {
    matches!(timer.kind, TimerKind::Retry { .. })
}

/// Re-plans what the case's facts call for: the next retry, the next nudge, and the thank-you
/// once a customer who heard from recoup has paid. Returns what to add to the timeline, and the
/// actions.
pub(super) fn replan(policy: &Policy, case: &mut Case, at: Timestamp) -> (String, Vec<Action>) {
    replan_telling(policy, case, at, Telling::Changes)
}

/// [`replan`], its retry told as `telling` says.
pub(super) fn replan_telling(
    policy: &Policy,
    case: &mut Case,
    at: Timestamp,
    telling: Telling,
) -> (String, Vec<Action>) {
    // A held case keeps its timers; the plan is made again when the hold ends.
    if case.state == State::OnHold {
        return (String::new(), Vec::new());
    }
    let mut note = plan_retry(policy, case, telling);
    note += &plan_nudge(policy, case);
    note += &plan_decision(policy, case);
    plan_resume(case);
    let mut actions = Vec::new();
    // A customer no nudge could ever reach did not hear from recoup about this invoice (nor one
    // whose every message was another invoice's): nothing to thank them for.
    let heard = case.nudged.iter().any(|n| {
        n.kind != NudgeKind::Recovered && n.given_up_at.is_none() && n.covered_by.is_none()
    });
    if case.state == State::Recovered && heard && !case.has_nudged(NudgeKind::Recovered, 1) {
        case.nudged
            .push(Nudged::going_out(NudgeKind::Recovered, 1, at));
        actions.push(Action::Nudge {
            kind: NudgeKind::Recovered,
            tier: 1,
        });
        note += "; thank-you sent";
    }
    (note, actions)
}

/// Keeps one pending decision timer while the end decision is due (or due again after a failed
/// call), and none otherwise.
pub(super) fn plan_decision(policy: &Policy, case: &mut Case) -> String {
    if let Some(decision) = case
        .decision
        .as_ref()
        .filter(|d| d.outcome == DecisionOutcome::UnderWay && !case.state.is_final())
    {
        // Handed to Stripe, its result not in yet: the timer the worker left while making the call
        // stays, so a worker dying mid-call leaves the decision to be made again (same key); one
        // that a hold let go comes back a while after the decision went out.
        if !case.timers.iter().any(|t| t.kind == TimerKind::Decide) {
            case.timers.push(Timer {
                at: time::later(decision.at, ending::AFTER_ERROR),
                kind: TimerKind::Decide,
            });
        }
        return String::new();
    }
    let due = ending::due(policy, case);
    let before = case
        .timers
        .iter()
        .find(|t| t.kind == TimerKind::Decide)
        .copied();
    case.timers.retain(|t| t.kind != TimerKind::Decide);
    let Some(at) = due else {
        return String::new();
    };
    let timer = Timer {
        at,
        kind: TimerKind::Decide,
    };
    case.timers.push(timer);
    if before == Some(timer) || case.decision.is_some() {
        return String::new();
    }
    case.words(|| {
        let (end, rule, _) = ending::choose(policy, case);
        format!("; decision due {at}: {} ({rule})", end.action().as_str())
    })
}

/// Keeps a timer to resume the collection recoup paused, once the invoice is paid.
pub(super) fn plan_resume(case: &mut Case) {
    // A resumption under way (none recorded yet) keeps the timer the worker left while making it.
    let left = case
        .timers
        .iter()
        .find(|t| t.kind == TimerKind::Resume)
        .copied();
    case.timers.retain(|t| t.kind != TimerKind::Resume);
    let paused_by_recoup = case
        .decision
        .as_ref()
        .is_some_and(|d| d.action == EndAction::Pause && d.outcome.done());
    if case.state != State::Recovered || !paused_by_recoup || case.subscription_id.is_none() {
        return;
    }
    let at = match &case.resumption {
        None => left.map_or(case.paid_at.unwrap_or(case.opened_at), |t| t.at),
        Some(r) if r.outcome == DecisionOutcome::Failed => time::later(r.at, ending::AFTER_ERROR),
        Some(_) => return,
    };
    case.timers.push(Timer {
        at,
        kind: TimerKind::Resume,
    });
}

/// Keeps exactly one pending nudge, the plan's next, and none once nothing more is due.
pub(super) fn plan_nudge(policy: &Policy, case: &mut Case) -> String {
    let next = policy.nudges_for(case).next(case);
    let before = case
        .timers
        .iter()
        .find(|t| matches!(t.kind, TimerKind::Nudge { .. }))
        .copied();
    case.timers
        .retain(|t| !matches!(t.kind, TimerKind::Nudge { .. }));
    let Some((nudge, tier, at)) = next else {
        return String::new();
    };
    let timer = Timer {
        at,
        kind: TimerKind::Nudge { nudge, tier },
    };
    case.timers.push(timer);
    if before == Some(timer) {
        String::new()
    } else {
        case.words(|| format!("; next nudge {} tier {tier} at {at}", nudge.as_str()))
    }
}

/// How an input that changed a case's facts ends: the state is settled from the facts, the plan made
/// again, and the timeline told what happened (`entry`, with the plan's note added to its detail).
pub(super) fn conclude(policy: &Policy, mut case: Case, mut entry: Entry) -> Decision {
    settle(&mut case);
    let (planned, actions) = replan(policy, &mut case, entry.at);
    entry.detail += &planned;
    case.record(entry);
    Decision {
        actions,
        ..Decision::save(case)
    }
}
