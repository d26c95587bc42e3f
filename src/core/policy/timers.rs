//! A case's own timers coming due: a retry (inside the networks' budgets, or moved to the earliest
//! legal time), a nudge, the end decision, resuming collection. A timer fires only while the case
//! still holds it, so a timer the plan has since replaced does nothing.

use jiff::Timestamp;

use super::duration::human;
use super::replan::{plan_decision, plan_nudge};
use super::{
    Action, Case, Decision, Entry, NudgeKind, Nudged, Policy, RETRY_GAPS, RETRY_UNDER_WAY,
    RetryUnderWay, State, Timer, TimerKind, budget, ending, time, timing,
};

/// The timeline's words for a retry the card networks' rules refused at its time (moved later, or
/// dropped): what the dashboard counts network refusals by.
pub const HELD_BACK_BY_NETWORK: &str = "retry held back by a network rule";

pub(super) fn on_timer(
    policy: &Policy,
    case: Case,
    timer: &Timer,
    card: &[budget::Try],
    now: Timestamp,
) -> Decision {
    let Some(held) = case.timers.iter().position(|t| t == timer) else {
        return Decision::unchanged(case);
    };
    let mut case = case;
    case.timers.remove(held);
    if case.state == State::OnHold {
        // The plan is made again from the facts when the hold ends.
        case.record(Entry {
            at: timer.at,
            what: "timer let go while on hold".to_owned(),
            detail: format!(
                "{}: not done while the case is on hold; planned again when the hold ends",
                describe_timer(timer.kind)
            ),
            event: None,
        });
        return Decision::save(case);
    }
    let attempt = match timer.kind {
        TimerKind::Retry { attempt } => attempt,
        TimerKind::Nudge { nudge, tier } => return fire_nudge(policy, case, nudge, tier, now),
        TimerKind::Decide => return decide_end(policy, case, timer.at),
        TimerKind::Resume => {
            return Decision {
                actions: vec![Action::Resume],
                ..Decision::save(case)
            };
        }
    };
    case.next_attempt_at = None;
    // A retry the customer's new payment method answers goes to that card, whose history is not
    // the old card's: the old card's budgets, waits and "never again" do not bind it.
    let card = case
        .card
        .clone()
        .filter(|_| !case.answered_by_new_card())
        .map(|c| (c, others(&case, attempt, card)));
    let refused = card
        .as_ref()
        .and_then(|(c, tries)| network_refusal(policy, &case, attempt, &c.brand, tries, now));
    if let Some(refused) = refused {
        let plan = policy.plan_for(&case);
        let detail = match refused {
            Ok(deferral) => {
                let zone = timing::zone(&case.customer_timezone);
                let at = timing::into_window(deferral.until, &zone, plan.window);
                if case
                    .failed_at
                    .is_some_and(|f| at > time::later(f, plan.within))
                {
                    format!(
                        "attempt {attempt} dropped: {} allows it only at {at}, after the policy's \
                         {} from the first failure",
                        deferral.because,
                        human(plan.within)
                    )
                } else {
                    case.timers.push(Timer {
                        at,
                        kind: timer.kind,
                    });
                    case.next_attempt_at = Some(at);
                    format!(
                        "attempt {attempt} moved to {at}: {} (the earliest legal time, in the \
                         customer's daytime)",
                        deferral.because
                    )
                }
            }
            Err(never) => format!("attempt {attempt} dropped: {never} allows no try on this card"),
        };
        // A dropped retry may have been the last: the end decision takes its place. A dropped
        // redo of a retry under way is no longer under way: if its first call reached Stripe,
        // Stripe's own event tells what it came to.
        if timer.kind == (TimerKind::Retry { attempt })
            && !case.timers.iter().any(|t| t.kind == timer.kind)
            && case.retry_under_way.is_some_and(|r| r.attempt == attempt)
        {
            case.retry_under_way = None;
        }
        // Nudges paused for a payday retry the networks dropped go on.
        let ending = plan_nudge(policy, &mut case) + &plan_decision(policy, &mut case);
        case.record(Entry {
            at: now,
            what: HELD_BACK_BY_NETWORK.to_owned(),
            detail: detail + &ending,
            event: None,
        });
        return Decision::save(case);
    }
    case.retry_under_way = Some(RetryUnderWay {
        attempt,
        at: timer.at,
    });
    let detail = case.words(|| {
        let budget = card.map_or_else(String::new, |(c, tries)| {
            let next = budget::Try::of_case(&case, attempt, now);
            let left = budget::left_after(&policy.networks, &c.brand, &tries, &next);
            let left: Vec<String> = left
                .into_iter()
                .map(|(rule, n)| format!("{rule}: {n} left"))
                .collect();
            let on = format!(" on {} card {}", c.brand, c.fingerprint);
            let left = if left.is_empty() {
                on
            } else {
                format!("{on}; after it, {}", left.join("; "))
            };
            // What trying now may cost: a decline like the last one, at its network's fee.
            let code = case.decline.as_ref().and_then(|d| d.code.as_deref());
            let signals = super::decline::Signals {
                decline_code: code,
                brand: Some(&c.brand),
                ..super::decline::Signals::default()
            };
            let fees: Vec<String> = policy
                .networks
                .decline_fees(&c.brand, &signals, now)
                .iter()
                .map(|f| format!("{} ({})", f.fee, f.rule))
                .collect();
            if fees.is_empty() {
                left
            } else {
                format!(
                    "{left}; declined like the last attempt, it costs an estimated {}",
                    fees.join(" + ")
                )
            }
        });
        format!("attempt {attempt}{budget}")
    });
    case.record(Entry {
        at: timer.at,
        what: "retry due".to_owned(),
        detail,
        event: None,
    });
    Decision {
        actions: vec![Action::Retry { attempt }],
        ..Decision::save(case)
    }
}

/// While the Stripe calls `actions` ask for are made, the case keeps a timer for each, due at
/// `redo_at` (the worker's claim on the case running out): saved before the calls, so that a worker
/// dying in the middle leaves them to be made again, under the same idempotency keys, instead of
/// lost. The calls' results, fed back in, replace them with the plan's own timers.
pub fn await_results(case: &mut Case, actions: &[Action], redo_at: Timestamp) {
    for action in actions {
        let kind = match *action {
            Action::Retry { attempt } => TimerKind::Retry { attempt },
            Action::End(_) => TimerKind::Decide,
            Action::Resume => TimerKind::Resume,
            Action::Nudge { .. } => continue,
        };
        case.timers.retain(|t| t.kind != kind);
        case.timers.push(Timer { at: redo_at, kind });
    }
}

fn describe_timer(kind: TimerKind) -> String {
    match kind {
        TimerKind::Retry { attempt } => format!("retry (attempt {attempt})"),
        TimerKind::Nudge { nudge, tier } => format!("nudge {} tier {tier}", nudge.as_str()),
        TimerKind::Decide => "the end decision".to_owned(),
        TimerKind::Resume => "resuming collection".to_owned(),
    }
}

/// Dunning ran out: the policy's end decision is made and recorded, and handed to the worker to
/// carry out in Stripe; its result is saved with it.
fn decide_end(policy: &Policy, mut case: Case, at: Timestamp) -> Decision {
    let retried = case.decision.is_some();
    let (end, decision) = ending::decision(policy, &case, at);
    let detail = case.words(|| {
        format!(
            "{}: {} — {}; {}",
            end.action().as_str(),
            end.how(),
            decision.rule,
            decision.reason
        )
    });
    let what = if retried {
        "decision tried again"
    } else {
        "decision made"
    };
    // Leaving an invoice past due changes nothing in Stripe; the worker answers it without a call.
    let actions = vec![Action::End(end)];
    case.decision = Some(Box::new(decision));
    case.record(Entry {
        at,
        what: what.to_owned(),
        detail,
        event: None,
    });
    Decision {
        actions,
        ..Decision::save(case)
    }
}

/// A nudge came due at `now`: it is marked on the case before it goes out, and the plan's next one
/// takes its place. Every try — the first too — keeps a later try planned while it is under way
/// ([`RETRY_UNDER_WAY`]): a worker dying mid-send, or a send that failed before any channel was
/// asked (the store did not answer), does not lose the nudge, and the end decision, which waits for
/// the final notice to be settled, does not count from a notice that never went out. Quiet
/// hours are checked now, not only when the nudge was planned: one that comes due in them — the
/// clock moved on, a hold or a retry pushed it — waits for the window's next opening.
fn fire_nudge(
    policy: &Policy,
    mut case: Case,
    kind: NudgeKind,
    tier: u32,
    now: Timestamp,
) -> Decision {
    // The update link the customer asked for goes out while they are there to read it.
    let opening = match kind {
        NudgeKind::UpdateLink => now,
        _ => policy.nudges_for(&case).into_window(&case, now),
    };
    let retry = case
        .nudged
        .iter()
        .position(|n| n.kind == kind && n.tier == tier && n.retry_at.is_some());
    // A nudge a channel took is never sent again, whatever timer a late or repeated input left.
    if case
        .nudged
        .iter()
        .any(|n| n.kind == kind && n.tier == tier && n.delivered_at.is_some())
    {
        let next = plan_nudge(policy, &mut case) + &plan_decision(policy, &mut case);
        case.record(Entry {
            at: now,
            what: "nudge not sent again".to_owned(),
            detail: case
                .words(|| format!("{} tier {tier} was delivered already{next}", kind.as_str())),
            event: None,
        });
        return Decision::save(case);
    }
    if opening > now {
        match retry {
            Some(i) => case.nudged[i].retry_at = Some(opening),
            None => {
                case.nudges_held_until = Some(
                    case.nudges_held_until
                        .map_or(opening, |held| held.max(opening)),
                )
            }
        }
        let next = plan_nudge(policy, &mut case) + &plan_decision(policy, &mut case);
        case.record(Entry {
            at: now,
            what: "nudge moved out of quiet hours".to_owned(),
            detail: case.words(|| {
                format!(
                    "{} tier {tier} came due in the customer's quiet hours: it waits for their \
                     window to open at {opening}{next}",
                    kind.as_str()
                )
            }),
            event: None,
        });
        return Decision::save(case);
    }
    let (what, try_) = match retry {
        Some(i) if case.nudged[i].tries as usize > RETRY_GAPS.len() => {
            // As many tries as a nudge gets, and the results of some never came back: recoup
            // stops, rather than send it every hour for ever.
            let nudged = &mut case.nudged[i];
            let tries = nudged.tries;
            nudged.retry_at = None;
            nudged.given_up_at = Some(now);
            let next = plan_nudge(policy, &mut case) + &plan_decision(policy, &mut case);
            case.record(Entry {
                at: now,
                what: "nudge given up".to_owned(),
                detail: case.words(|| {
                    format!(
                        "{} tier {tier}: {tries} tries made, not all reported back{next}",
                        kind.as_str()
                    )
                }),
                event: None,
            });
            return Decision::save(case);
        }
        Some(i) => {
            let nudged = &mut case.nudged[i];
            nudged.tries += 1;
            nudged.retry_at = Some(time::later(now, RETRY_UNDER_WAY));
            ("nudge tried again", Some(nudged.tries))
        }
        None => {
            let mut going_out = Nudged::going_out(kind, tier, now);
            going_out.retry_at = Some(time::later(now, RETRY_UNDER_WAY));
            case.nudged.push(going_out);
            ("nudge due", None)
        }
    };
    // The pending nudge is this one, once more, for when its result does not come back: said so,
    // rather than as the plan's next message.
    plan_nudge(policy, &mut case);
    let once_more = time::later(now, RETRY_UNDER_WAY);
    let next = case
        .words(|| format!("; tried once more at {once_more} if its result does not come back"))
        + &plan_decision(policy, &mut case);
    case.record(Entry {
        at: now,
        what: what.to_owned(),
        detail: case.words(|| {
            let try_ = try_.map(|n| format!(", try {n}")).unwrap_or_default();
            format!("{} tier {tier}{try_}{next}", kind.as_str())
        }),
        event: None,
    });
    Decision {
        actions: vec![Action::Nudge { kind, tier }],
        ..Decision::save(case)
    }
}

/// The card's tries that count against attempt `attempt`: all but the attempt's own, which an
/// earlier run of it may have recorded before it was interrupted.
fn others(case: &Case, attempt: u32, card: &[budget::Try]) -> Vec<budget::Try> {
    card.iter()
        .filter(|t| t.invoice_id != case.invoice_id || t.attempt != attempt)
        .cloned()
        .collect()
}

/// Why the networks do not allow attempt `attempt` at `now` on a card of `brand`: `Ok` with the earliest
/// time they do, `Err` when they never will; `None` when they allow it.
fn network_refusal(
    policy: &Policy,
    case: &Case,
    attempt: u32,
    brand: &str,
    tries: &[budget::Try],
    now: Timestamp,
) -> Option<Result<budget::Deferral, String>> {
    let next = budget::Try::of_case(case, attempt, now);
    match budget::earliest_allowed(&policy.networks, brand, tries, &next) {
        Ok(Ok(_)) => None,
        Ok(Err(deferral)) => Some(Ok(deferral)),
        Err(never) => Some(Err(never)),
    }
}
