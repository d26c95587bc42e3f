//! What became of a nudge: which channels took it, or that the customer's daily cap held it back.

use jiff::Timestamp;

use super::replan::{plan_decision, plan_nudge};
use super::{Case, Decision, Entry, Nudge, NudgeKind, NudgeResult, Policy};

/// What became of a nudge: each channel it went out on joins `nudges`, and the timeline says how
/// every channel fared.
pub(super) fn on_nudged(
    case: &Case,
    (kind, tier): (NudgeKind, u32),
    at: Timestamp,
    template: &str,
    results: &[NudgeResult],
) -> Decision {
    let heading = format!("{} tier {tier} ({template}):", kind.as_str());
    let told = case
        .timeline
        .iter()
        .any(|e| e.what == "nudge delivered" && e.at == at && e.detail.starts_with(&heading));
    if told {
        return Decision::unchanged();
    }
    let mut case = case.clone();
    for result in results.iter().filter(|r| r.sent) {
        case.nudges.push(Nudge {
            at,
            channel: result.channel,
            kind,
            tier,
        });
    }
    let outcomes: Vec<String> = results
        .iter()
        .map(|r| match (r.sent, r.note.as_str()) {
            (true, _) => format!("{} sent", r.channel.as_str()),
            (false, note) => format!("{} not sent ({note})", r.channel.as_str()),
        })
        .collect();
    let outcomes = if outcomes.is_empty() {
        "no channel is set up".to_owned()
    } else {
        outcomes.join(", ")
    };
    case.record(Entry {
        at,
        what: "nudge delivered".to_owned(),
        detail: format!("{heading} {outcomes}"),
        event: None,
    });
    Decision::save(case)
}

/// The customer already had their day's nudges: the nudge waits for `until` and goes out then.
pub(super) fn on_nudge_held(
    policy: &Policy,
    case: &Case,
    kind: NudgeKind,
    tier: u32,
    until: Timestamp,
) -> Decision {
    let Some(position) = case
        .nudged
        .iter()
        .position(|n| n.kind == kind && n.tier == tier)
    else {
        return Decision::unchanged();
    };
    let mut case = case.clone();
    let held_at = case.nudged.remove(position).at;
    case.nudges_held_until = Some(until);
    let next = plan_nudge(policy, &mut case) + &plan_decision(policy, &mut case);
    case.record(Entry {
        at: held_at,
        what: "nudge held back".to_owned(),
        detail: format!(
            "{} tier {tier}: the customer already had {} nudge(s) today{next}",
            kind.as_str(),
            policy.nudges_for(&case).per_customer_per_day
        ),
        event: None,
    });
    Decision::save(case)
}
