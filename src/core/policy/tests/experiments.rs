//! Experiments in `decide`: a case records its customer's arm when it opens, says so on its
//! timeline, and is dunned by the arm's plan.

use super::*;

/// A policy with a segment and an experiment: a holdout and a gentler arm without learning.
pub(crate) const EXPERIMENTING: &str = r#"version = 1
[retries]
soft = ["2d", "3d"]

[[segment]]
name = "high value"
amount_at_least = 1000
[segment.end]
exhausted = { action = "pause" }

[[experiment]]
name = "gentle"
key = "gentle-2026"

[[experiment.arm]]
name = "holdout"
share = 0.2
holdout = true

[[experiment.arm]]
name = "gentle"
share = 0.8
[experiment.arm.retries]
soft = ["5d"]
[experiment.arm.learning]
enabled = false
"#;

/// The case a failed invoice of `customer` opens.
fn opened_for(policy: &Policy, customer: &str) -> Case {
    let Input::Event(mut event) = failed("evt_exp", NOW, 1) else {
        panic!("an event");
    };
    if let EventObject::Invoice(invoice) = &mut event.object {
        invoice.customer = customer.to_owned();
    }
    decide(policy, None, &Input::Event(event), now())
        .case
        .unwrap()
}

#[test]
fn a_case_opens_in_its_customers_arm_and_is_dunned_by_it() {
    let policy = crate::policy::file::parse(EXPERIMENTING, "p.toml").unwrap();
    let experiment = policy.experiment.as_ref().unwrap();
    // One customer of each arm.
    let customer_in = |arm: &str| {
        (0..100)
            .map(|n| format!("cus_{n}"))
            .find(|c| experiment.assign(c).name == arm)
            .unwrap()
    };
    let holdout = opened_for(&policy, &customer_in("holdout"));
    let gentle = opened_for(&policy, &customer_in("gentle"));
    assert_eq!(holdout.arm.as_ref().unwrap().arm, "holdout");
    assert!(holdout.arm.as_ref().unwrap().holdout);
    assert_eq!(gentle.arm.as_ref().unwrap().arm, "gentle");
    // The timeline says it, in words.
    assert!(
        gentle.timeline[0]
            .detail
            .contains("experiment \"gentle\": they are in arm \"gentle\""),
        "{:?}",
        gentle.timeline[0]
    );
    // The arm's plan over the segment's; the holdout's is the baseline, whatever the segment.
    assert_eq!(gentle.segment.as_deref(), Some("high value"));
    assert_eq!(
        policy.plan_for(&gentle).soft,
        [SignedDuration::from_hours(120)]
    );
    assert!(!policy.learning_for(&gentle).enabled && policy.learning.enabled);
    assert_eq!(policy.ending_for(&gentle), &policy.segments[0].ending);
    // An end decision names the plan it came from.
    let (_, rule, _) = crate::policy::ending::choose(&policy, &gentle);
    assert!(
        rule.starts_with("segment \"high value\", experiment arm \"gentle\": "),
        "{rule}"
    );
    let baseline = crate::policy::file::parse(
        crate::policy::file::BASELINE,
        crate::policy::file::BASELINE_PATH,
    )
    .unwrap();
    assert_eq!(policy.plan_for(&holdout), &baseline.plan);
    assert_eq!(policy.ending_for(&holdout), &baseline.ending);
    assert!(!policy.learning_for(&holdout).enabled);
    let (_, rule, _) = crate::policy::ending::choose(&policy, &holdout);
    assert!(
        rule.starts_with("experiment arm \"holdout\" (the baseline plan): "),
        "{rule}"
    );
    // A policy without the experiment any more gives the case its segment's plan again.
    let ended = Policy {
        experiment: None,
        ..policy.clone()
    };
    assert_eq!(ended.plan_for(&gentle), &ended.segments[0].plan);
}

#[test]
fn a_policy_without_an_experiment_records_no_arm() {
    let case = opened_for(&Policy::default(), "cus_1");
    assert_eq!(case.arm, None);
    assert!(!case.timeline[0].detail.contains("experiment"));
}
