use proptest::prelude::*;

use super::knobs::Space;
use super::*;
use crate::policy::Policy;
use crate::sim::tally::Tally;

const SHIPPED: &str = include_str!("../../../config/policy.toml");
const BASELINE: &str = include_str!("../../../config/baseline-3-5-7.toml");

fn space(text: &str) -> Space {
    let policy = file::parse(text, "base.toml").unwrap();
    Space::new(text, &policy, "base.toml").unwrap()
}

fn knob(space: &Space, name: &str) -> usize {
    space
        .knobs
        .iter()
        .position(|k| k.name == name)
        .unwrap_or_else(|| panic!("no knob {name}"))
}

#[test]
fn the_base_point_is_the_base_file_byte_for_byte() {
    for text in [SHIPPED, BASELINE, "version = 1\n"] {
        let space = space(text);
        let (document, changes) = space.edit(&space.base(), None);
        assert!(changes.is_empty(), "{changes:?}");
        assert_eq!(document.to_string(), text);
    }
}

#[test]
fn a_changed_value_is_written_where_it_was_and_commented() {
    let space = space(SHIPPED);
    let mut point = space.base();
    point[knob(&space, "retries.soft (retries)")] = 4;
    point[knob(&space, "retries.soft[1]")] = 9;
    point[knob(&space, "timing.paydays")] = 0;
    point[knob(&space, "nudges.step[3].after")] = 3;
    let (document, changes) = space.edit(&point, Some("measured"));
    let keys: Vec<&str> = changes.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(
        keys,
        ["retries.soft", "timing.paydays", "nudges.step[3].after"]
    );
    assert_eq!(
        changes[0].was,
        r#"["3d", "3d", "3d", "4d", "4d", "4d", "5d", "5d", "5d", "5d", "5d", "5d"]"#
    );
    // The gaps left alone keep their spelling; the one changed is in days.
    assert_eq!(changes[0].now, r#"["3d", "9d", "3d", "4d"]"#);
    let text = document.to_string();
    assert!(
        text.contains(
            "# tuned: was [\"3d\", \"3d\", \"3d\", \"4d\", \"4d\", \"4d\", \"5d\", \"5d\", \"5d\", \
             \"5d\", \"5d\", \"5d\"] — with the other changes, measured\nsoft = [\"3d\", \"9d\", \
             \"3d\", \"4d\"]\n"
        ),
        "{text}"
    );
    assert!(text.contains("# tuned: was [1, 15] — with the other changes, measured\npaydays = []"));
    assert!(
        text.contains("# tuned: was \"2d\" — with the other changes, measured\nafter = \"3d\"")
    );
    // Every comment of the base file is still there.
    for line in SHIPPED.lines().filter(|l| l.starts_with('#')) {
        assert!(text.contains(line), "lost: {line}");
    }
    let policy = file::parse(&text, "tuned.toml").unwrap();
    assert_eq!(policy.plan.soft.len(), 4);
    assert_eq!(
        policy.plan.soft[1],
        jiff::SignedDuration::from_hours(9 * 24)
    );
    assert!(policy.plan.paydays.is_empty());
    assert_eq!(
        policy.nudges.steps[3].after,
        jiff::SignedDuration::from_hours(3 * 24)
    );
    assert_eq!(policy, space.policy(&point).unwrap().1);
}

#[test]
fn a_later_step_dropped_is_removed_and_told_above_the_first_step() {
    let space = space(SHIPPED);
    let mut point = space.base();
    point[knob(&space, "nudges.step (action_required steps)")] = 1;
    // The dropped step's own `after` no longer matters.
    let after = knob(&space, "nudges.step[3].after");
    assert!(!space.matters(&point, after) && space.matters(&space.base(), after));
    let (document, changes) = space.edit(&point, Some("measured"));
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].key, "nudges.step[3]");
    assert_eq!(changes[0].was, "the action_required tier 2 step after 2d");
    let text = document.to_string();
    assert!(
        text.contains(
            "# tuned: removed the action_required tier 2 step after 2d — with the other changes, \
             measured\n[[nudges.step]]\nkind = \"payment_failed\"\ntier = 1\n"
        ),
        "{text}"
    );
    let policy = file::parse(&text, "tuned.toml").unwrap();
    let steps: Vec<(&str, u32)> = policy
        .nudges
        .steps
        .iter()
        .map(|s| (s.kind.as_str(), s.tier))
        .collect();
    assert_eq!(
        steps,
        [
            ("payment_failed", 1),
            ("payment_failed", 1),
            ("action_required", 1),
            ("payment_failed", 2),
            ("final_notice", 1)
        ]
    );
}

#[test]
fn a_key_the_base_leaves_out_is_added_and_says_it_was_the_default() {
    let space = space("version = 1\n");
    let mut point = space.base();
    point[knob(&space, "end.grace")] = 2;
    let (document, changes) = space.edit(&point, None);
    assert_eq!(changes[0].key, "end.grace");
    assert_eq!(changes[0].was, "(not set: the default)");
    let policy = file::parse(&document.to_string(), "tuned.toml").unwrap();
    assert_eq!(policy.ending.grace, jiff::SignedDuration::from_hours(48));
}

fn points(space: &Space) -> impl Strategy<Value = Vec<i64>> + use<> {
    space
        .ranges()
        .into_iter()
        .map(|r| r.min..=r.max)
        .collect::<Vec<_>>()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn every_point_of_the_space_is_a_policy_the_file_accepts(
        (text, point) in prop_oneof![Just(SHIPPED), Just(BASELINE), Just("version = 1\n")]
            .prop_flat_map(|text| (Just(text), points(&space(text))))
    ) {
        let space = space(text);
        let (written, policy) = space.policy(&point).map_err(|e| TestCaseError::fail(e.to_string()))?;
        // Read back, each knob says what the point says.
        let count = |name: &str| point[knob(&space, name)] as usize;
        prop_assert_eq!(policy.plan.soft.len(), count("retries.soft (retries)"));
        prop_assert_eq!(policy.plan.ambiguous.len(), count("retries.ambiguous (retries)"));
        prop_assert_eq!(policy.nudges.per_case as usize, count("nudges.per_case"));
        prop_assert_eq!(policy.ending.grace.as_secs(), point[knob(&space, "end.grace")] * 86_400);
        let kept: usize = space
            .knobs
            .iter()
            .enumerate()
            .filter(|(_, k)| k.name.ends_with(" steps)"))
            .map(|(n, _)| point[n] as usize)
            .sum();
        if text == SHIPPED {
            // The two action_required steps may be dropped to one, and the two payment_failed
            // steps; the final notice stays.
            prop_assert_eq!(policy.nudges.steps.len(), kept + 1);
        }
        // And the same point gives the same text.
        prop_assert_eq!(written, space.policy(&point).unwrap().0);
    }
}

#[test]
fn the_holdout_split_is_stable_disjoint_and_near_its_share() {
    let ids: Vec<String> = (0..20_000).map(|n| format!("cus_{n:06}")).collect();
    let held: Vec<&String> = ids.iter().filter(|id| held_out(id, 0.5)).collect();
    assert!((9_500..=10_500).contains(&held.len()), "{}", held.len());
    // The same id lands on the same side on every call, and a smaller share holds out a subset.
    for id in &ids {
        assert_eq!(held_out(id, 0.5), held_out(id, 0.5));
        assert!(!held_out(id, 0.2) || held_out(id, 0.5));
    }
    // Fixed by the hash, not by the run: these are the same on every machine and release.
    assert_eq!(
        ["cus_a", "cus_b", "cus_c", "cus_d"].map(|id| held_out(id, 0.5)),
        [false, true, true, false]
    );
}

fn report(breaches: u64, attempts: f64, lost: u64) -> PolicyReport {
    let policy = Policy::shipped();
    let contender = Contender {
        name: "p".into(),
        path: "p.toml".into(),
        policy,
    };
    let mut report = Report::new(
        String::new(),
        &[contender],
        &Default::default(),
        &[Tally::default()],
    )
    .policies
    .remove(0);
    report.breaches = breaches;
    report.attempts_per_invoice = attempts;
    report.lost_to_nagging = lost;
    report
}

#[test]
fn a_breach_or_a_limit_passed_counts_against_a_candidate_and_keeping_them_wins() {
    let limits = Constraints {
        max_attempts_per_invoice: Some(2.0),
        max_lost_to_nagging: Some(0.01),
    };
    assert_eq!(limits.violation(&report(0, 2.0, 10), 1000), 0.0);
    assert_eq!(limits.violation(&report(3, 1.0, 0), 1000), 3.0);
    assert!((limits.violation(&report(0, 3.0, 0), 1000) - 0.5).abs() < 1e-9);
    assert!((limits.violation(&report(0, 1.0, 20), 1000) - 1.0).abs() < 1e-9);
    assert_eq!(
        Constraints::default().violation(&report(0, 9.0, 900), 1000),
        0.0
    );
    use search::Score as _;
    let keeps = Score {
        violation: 0.0,
        objective: 0.5,
    };
    let breaks = Score {
        violation: 1.0,
        objective: 0.9,
    };
    assert!(keeps.beats(&breaks) && !breaks.beats(&keeps));
    let barely = Score {
        objective: 0.5 + MIN_GAIN / 2.0,
        ..keeps
    };
    assert!(
        !barely.beats(&keeps),
        "a gain under MIN_GAIN does not move the search"
    );
}

#[test]
fn the_same_options_write_the_same_file_and_a_stop_writes_the_best_so_far() {
    let dir = tempfile::tempdir().unwrap();
    let options = |out: &str| Options {
        policy: "config/policy.toml".into(),
        source: Source::Synthetic {
            invoices: 400,
            seed: 5,
            profile: crate::sim::synthetic::Profile::Standard,
        },
        constraints: Constraints::default(),
        holdout: 0.5,
        budget: Duration::from_secs(600),
        max_candidates: Some(9),
        threads: Some(2),
        out: dir.path().join(out),
        chart: None,
    };
    let never = AtomicBool::new(false);
    let mut heard = Vec::new();
    let first = run(&options("a.toml"), &never, &mut |p| heard.push(*p)).unwrap();
    run(&options("b.toml"), &never, &mut |_| {}).unwrap();
    assert_eq!(first.ended, Ended::Candidates);
    let a = std::fs::read_to_string(dir.path().join("a.toml")).unwrap();
    assert_eq!(
        a,
        std::fs::read_to_string(dir.path().join("b.toml")).unwrap()
    );
    assert!(heard.len() <= 9 && heard.len() >= 8, "{}", heard.len());
    assert!(heard.windows(2).all(|w| w[0].candidates < w[1].candidates));
    file::parse(&a, "a.toml").unwrap();

    // Stopped before the first candidate: the base is the best so far, written as it is.
    let stopped = AtomicBool::new(false);
    let tuned = run(&options("c.toml"), &stopped, &mut |_| {
        stopped.store(true, Ordering::Relaxed)
    })
    .unwrap();
    assert_eq!(tuned.ended, Ended::Interrupted);
    let c = std::fs::read_to_string(dir.path().join("c.toml")).unwrap();
    assert!(c.ends_with(SHIPPED), "the base policy, under its header");
    assert!(c.contains("stopped by Ctrl-C"));
}
