//! What became of a nudge: which channels took it — or, when none could, whether it is tried
//! again later or given up on — or that the customer's daily cap held it back.
//!
//! A nudge counts as sent only once a channel took it. One that no channel took for a passing
//! reason (no answer, "451 try later", a 503) is tried again after [`RETRY_GAPS`], always in the
//! customer's contact window; one every channel refused for good (a 550, a 400, no address, no
//! channel at all) is not. The end decision's grace counts from the final notice's delivery, or,
//! when it could never be delivered, from the try recoup gave up after (see `ending::due`).

use jiff::Timestamp;

use super::duration::human;
use super::nudge::RETRY_GAPS;
use super::replan::{plan_decision, plan_nudge};
use super::{Case, Cover, Covered, Decision, Entry, Nudge, NudgeKind, NudgeResult, Policy, time};

/// The timeline's words for a try's outcome: what a repeated report is recognised by.
const DELIVERED: &str = "nudge delivered";
const NOT_DELIVERED: &str = "nudge not delivered";

/// What became of one try of a nudge at `at`: each channel it went out on joins `nudges`, and the
/// timeline says in one sentence how every channel fared and what happens next.
pub(super) fn on_nudged(
    policy: &Policy,
    case: Case,
    (kind, tier): (NudgeKind, u32),
    at: Timestamp,
    template: &str,
    results: &[NudgeResult],
) -> Decision {
    let heading = || format!("{} tier {tier} ({template}):", kind.as_str());
    // An empty timeline holds no result told before: a case that keeps none (the simulator's)
    // does not write the heading to look for.
    let told = !case.timeline.is_empty() && {
        let heading = heading();
        case.timeline.iter().any(|e| {
            (e.what == DELIVERED || e.what == NOT_DELIVERED)
                && e.at == at
                && e.detail.starts_with(&heading)
        })
    };
    let Some(position) = case
        .nudged
        .iter()
        .position(|n| n.kind == kind && n.tier == tier)
    else {
        return Decision::unchanged(case);
    };
    if told {
        return Decision::unchanged(case);
    }
    let mut case = case;
    for result in results.iter().filter(|r| r.sent) {
        case.nudges.push(Nudge {
            at,
            channel: result.channel,
            kind,
            tier,
        });
    }
    let outcomes = || {
        let outcomes: Vec<String> = results
            .iter()
            .map(|r| match (r.sent, r.note.as_str()) {
                (true, _) => format!("{} sent", r.channel.as_str()),
                (false, note) => format!("{} not sent ({note})", r.channel.as_str()),
            })
            .collect();
        if outcomes.is_empty() {
            "no channel is set up".to_owned()
        } else {
            outcomes.join(", ")
        }
    };
    let delivered = results.iter().any(|r| r.sent);
    let passing = results.iter().any(|r| !r.sent && r.passing);
    // A try whose result comes back late — its worker stalled while a later try went out — finds
    // the nudge delivered (or given up) already: it is told, and takes nothing back. Tried again,
    // a delivered final notice would count as unsettled and the end decision would never come.
    let settled = {
        let nudged = &case.nudged[position];
        nudged.delivered_at.is_some() || nudged.given_up_at.is_some()
    };
    // The next try, when no channel took this one for a passing reason and tries are left.
    let failed_tries = case.nudged[position].failed_tries;
    let retry_at = RETRY_GAPS
        .get(failed_tries as usize)
        .filter(|_| passing && !delivered && !settled)
        .map(|&gap| {
            let plan = policy.nudges_for(&case);
            plan.into_window(&case, time::later(at, gap))
        });
    let nudged = &mut case.nudged[position];
    let tries = RETRY_GAPS.len() + 1;
    let then = if delivered {
        // The first delivery is the one the customer got, and what the end decision counted from.
        nudged.delivered_at.get_or_insert(at);
        nudged.retry_at = None;
        String::new()
    } else if settled {
        "; another try of it was settled first, so nothing changes".to_owned()
    } else if let Some(retry_at) = retry_at {
        nudged.failed_tries += 1;
        nudged.retry_at = Some(retry_at);
        let waits = if kind == NudgeKind::FinalNotice {
            "; the end decision waits for its delivery"
        } else {
            ""
        };
        format!(
            "; tried again at {retry_at}, in the customer's window (try {} of {tries}){waits}",
            failed_tries + 2
        )
    } else {
        nudged.retry_at = None;
        nudged.given_up_at = Some(at);
        if passing {
            format!("; given up after {tries} tries")
        } else {
            "; not tried again: no channel can take it".to_owned()
        }
    };
    let next = plan_nudge(policy, &mut case) + &plan_decision(policy, &mut case);
    case.record(Entry {
        at,
        what: if delivered { DELIVERED } else { NOT_DELIVERED }.to_owned(),
        detail: case.words(|| format!("{} {}{then}{next}", heading(), outcomes())),
        event: None,
    });
    Decision::save(case)
}

/// Something spoke for this message ([`Covered`]: the same message about another invoice of the
/// subscription, or the customer's spent budget): it is not sent, and counts as said from `at` (the end decision's grace after a final notice counts from
/// then, so the customer always has the whole grace after recoup last had something to tell them).
pub(super) fn on_nudge_covered(
    policy: &Policy,
    case: Case,
    (kind, tier): (NudgeKind, u32),
    at: Timestamp,
    cover: &Cover,
) -> Decision {
    let Some(position) = first_try(&case, kind, tier) else {
        return Decision::unchanged(case);
    };
    let mut case = case;
    let nudged = &mut case.nudged[position];
    nudged.delivered_at = Some(at);
    nudged.retry_at = None;
    nudged.covered_by = Some(cover.invoice_id.clone());
    let next = plan_nudge(policy, &mut case) + &plan_decision(policy, &mut case);
    let why = || match cover.why {
        Covered::Conversation => format!(
            "the customer had it at {} about {}, another invoice of subscription {}",
            cover.at,
            cover.invoice_id,
            case.subscription_id.as_deref().unwrap_or_default()
        ),
        Covered::Budget(spent) => format!(
            "the customer had {spent} messages within {}, the most the policy sends a customer \
             (the latest at {} about {})",
            human(policy.nudges_for(&case).per_customer_within),
            cover.at,
            cover.invoice_id
        ),
    };
    case.record(Entry {
        at,
        what: "nudge covered".to_owned(),
        detail: case.words(|| format!("{} tier {tier} not sent: {}{next}", kind.as_str(), why())),
        event: None,
    });
    Decision::save(case)
}

/// The customer already had their day's nudges: the nudge waits for `until` and goes out then.
pub(super) fn on_nudge_held(
    policy: &Policy,
    case: Case,
    kind: NudgeKind,
    tier: u32,
    until: Timestamp,
) -> Decision {
    let Some(position) = first_try(&case, kind, tier) else {
        return Decision::unchanged(case);
    };
    let mut case = case;
    let held_at = case.nudged.remove(position).at;
    case.nudges_held_until = Some(until);
    let next = plan_nudge(policy, &mut case) + &plan_decision(policy, &mut case);
    case.record(Entry {
        at: held_at,
        what: "nudge held back".to_owned(),
        detail: case.words(|| {
            format!(
                "{} tier {tier}: the customer already had {} nudge(s) today{next}",
                kind.as_str(),
                policy.nudges_for(&case).per_customer_per_day
            )
        }),
        event: None,
    });
    Decision::save(case)
}

/// Where the nudge of `kind` and `tier` is on its first try, not yet delivered. Only a first try is
/// counted against the day or looked up among the subscription's other invoices, so only a first
/// try can be held back or covered: an answer that comes back late, after another try was made or
/// a channel took the nudge, is stale and must not take back what the customer got.
fn first_try(case: &Case, kind: NudgeKind, tier: u32) -> Option<usize> {
    case.nudged.iter().position(|n| {
        n.kind == kind
            && n.tier == tier
            && n.tries <= 1
            && n.failed_tries == 0
            && n.delivered_at.is_none()
    })
}
