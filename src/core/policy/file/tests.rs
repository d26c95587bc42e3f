use super::*;
use crate::policy::networks::{Counts, Dates, Fee, Key, Rule};
use crate::policy::tests::experiments::EXPERIMENTING;
use crate::policy::timing::Window;
use crate::policy::*;

fn error(text: &str) -> PolicyError {
    parse(text, "p.toml").expect_err("the file is refused")
}

#[test]
fn the_shipped_file_is_the_built_in_default_and_two_segments() {
    let shipped = parse(SHIPPED, "config/policy.toml").unwrap();
    let pausing = |name: &str, when: Match| Segment {
        name: name.to_owned(),
        when,
        plan: Plan::default(),
        nudges: NudgePlan::default(),
        ending: EndPlan::pausing(),
    };
    // One figure per currency: $200.00 is 20000 cents, and about 280000 won (no minor unit).
    let Some(Threshold::PerCurrency(high)) = shipped.segments[0].when.amount_at_least.clone()
    else {
        panic!("the shipped high-value threshold is per currency");
    };
    assert_eq!(
        (high["usd"], high["jpy"], high["krw"]),
        (20_000, 30_000, 280_000)
    );
    let expected = Policy {
        segments: vec![
            pausing(
                "high value",
                Match {
                    amount_at_least: Some(Threshold::PerCurrency(high)),
                    ..Match::default()
                },
            ),
            pausing(
                "long tenure",
                Match {
                    tenure_months_at_least: Some(24),
                    ..Match::default()
                },
            ),
        ],
        ..Policy::default()
    };
    assert_eq!(shipped, expected);
    assert_eq!(Policy::shipped(), expected);
}

#[test]
fn only_the_version_is_required() {
    assert_eq!(parse("version = 1\n", "p.toml"), Ok(Policy::default()));
    let missing = error("[retries]\nsoft = [\"1d\"]\n");
    assert!(
        missing.problem.contains("missing field `version`"),
        "{missing}"
    );
}

#[test]
fn values_written_are_values_used() {
    let policy = parse(
        "version = 1\n[retries]\nsoft = [\"1d\", \"36h\"]\nmax_attempts = 5\nwithin = \"2w\"\n",
        "p.toml",
    );
    // "2w" is not a duration: the error says where.
    let err = policy.unwrap_err();
    assert_eq!(
        err.to_string(),
        "p.toml:5: retries.within: \"2w\": unknown unit 'w'; expected a duration such as 3d, \
         12h, 90m, 45s or 1d12h"
    );

    let policy = parse(
        "version = 1\n[retries]\nsoft = [\"1d\", \"36h\"]\nmax_attempts = 5\n[timing]\nwindow = [8, 18]\npaydays = [25, 10]\njitter = \"0s\"\n\n[[network]]\nbrand = \"Visa\"\ncounts = \"declines\"\nscope = \"card\"\nmax = 3\nper = \"1d\"\n",
        "p.toml",
    )
    .unwrap();
    assert_eq!(
        policy.plan.soft,
        [
            SignedDuration::from_hours(24),
            SignedDuration::from_hours(36)
        ]
    );
    assert_eq!(policy.plan.ambiguous, Plan::default().ambiguous);
    assert_eq!(policy.plan.max_attempts, 5);
    assert_eq!(
        policy.plan.window,
        Window {
            start_hour: 8,
            end_hour: 18
        }
    );
    assert_eq!(policy.plan.paydays, [10, 25]);
    assert_eq!(policy.plan.jitter, SignedDuration::ZERO);
    // An older file's `[[network]]` row: a limit of its own, added to the networks file's.
    let built_in = crate::policy::Networks::built_in();
    assert_eq!(policy.networks.rules.len(), built_in.rules.len() + 1);
    assert_eq!(
        policy.networks.rules.last(),
        Some(&Rule {
            name: "policy file network[0]".into(),
            brand: "visa".into(),
            counts: Counts::Declines,
            key: Key::default(),
            max: 3,
            per: SignedDuration::from_hours(24),
            resets: false,
            fee: Fee::ZERO,
            dates: Dates::default(),
            source: "the policy file".into(),
        })
    );
}

#[test]
fn learning_reads_the_hours_it_may_retry_in() {
    let policy = parse("version = 1\n[learning]\nhours = [6, 22]\n", "p.toml").unwrap();
    assert_eq!(
        policy.learning.hours,
        Window {
            start_hour: 6,
            end_hour: 22
        }
    );
    let unset = parse("version = 1\n", "p.toml").unwrap();
    assert_eq!(unset.learning.hours, Learning::default().hours);
}

#[test]
fn every_bad_value_is_named_with_its_line_key_and_what_is_allowed() {
    let cases: &[(&str, usize, &str, &str)] = &[
        ("version = 2", 1, "version", "allowed: 1"),
        (
            "version = 1\n[end]\nexhausted = { action = \"delete\" }",
            3,
            "end.exhausted.action",
            "allowed: \"pause\", \"cancel\", \"mark_uncollectible\", \"leave_past_due\"",
        ),
        (
            "version = 1\n[end]\nno_new_card = { action = \"cancel\", behavior = \"void\" }",
            3,
            "end.no_new_card.behavior",
            "behavior belongs to action = \"pause\" only",
        ),
        (
            "version = 1\n[end]\nexhausted = { action = \"pause\", behavior = \"drop\" }",
            3,
            "end.exhausted.behavior",
            "allowed: \"keep_as_draft\", \"mark_uncollectible\", \"void\"",
        ),
        (
            "version = 1\n[[nudges.step]]\nkind = \"payment_failed\"\ntier = 2\nafter = \"10d\"\ndeclines = [\"hard\", \"stolen\"]",
            6,
            "nudges.step[0].declines",
            "allowed: \"soft\", \"ambiguous\", \"hard\", \"card_data\", \"action_required\"",
        ),
        (
            "version = 1\n[end]\ngrace = \"90d\"",
            3,
            "end.grace",
            "allowed: 0s to 60 days",
        ),
        (
            "version = 1\n[[segment]]\nname = \"a\"\n[segment.end]\nexhausted = { action = \"pause\", resume_after = \"1h\" }",
            5,
            "segment[0].end.exhausted.resume_after",
            "allowed: 1 day to 365 days",
        ),
        (
            "version = 1\n[disputes]\nstop_card = true",
            3,
            "",
            "unknown field `stop_card`",
        ),
        (
            "version = 1\n[retries]\nsofft = [\"1d\"]",
            3,
            "",
            "unknown field `sofft`",
        ),
        (
            "version = 1\n[retries]\nhard = [\"1d\"]",
            3,
            "",
            "expected one of",
        ),
        (
            "version = 1\n[retries]\nsoft = [\"3d\", \"30m\"]",
            3,
            "retries.soft[1]",
            "allowed: 1h to 60 days",
        ),
        (
            "version = 1\n[retries]\nambiguous = [\"x\"]",
            3,
            "retries.ambiguous[0]",
            "expected a duration",
        ),
        (
            "version = 1\n[retries]\nmax_attempts = 0",
            3,
            "retries.max_attempts",
            "allowed: 1 to 35",
        ),
        (
            "version = 1\n[retries]\nwithin = \"1h\"",
            3,
            "retries.within",
            "allowed: 1 day to 120 days",
        ),
        (
            "version = 1\n[learning]\nhours = [5, 25]",
            3,
            "learning.hours",
            "allowed: 1 to 24",
        ),
        (
            "version = 1\n[learning]\nhours = [7]",
            3,
            "learning.hours",
            "expected [start hour, end hour]",
        ),
        (
            "version = 1\n[timing]\nwindow = [20, 9]",
            3,
            "timing.window",
            "must open before it closes",
        ),
        (
            "version = 1\n[timing]\nwindow = [9]",
            3,
            "timing.window",
            "expected [start hour, end hour]",
        ),
        (
            "version = 1\n[timing]\nwindow = [9, 25]",
            3,
            "timing.window",
            "allowed: 1 to 24",
        ),
        (
            "version = 1\n[timing]\npaydays = [1, 32]",
            3,
            "timing.paydays[1]",
            "allowed: 1 to 31",
        ),
        (
            "version = 1\n[timing]\npaydays = [1, 1]",
            3,
            "timing.paydays[1]",
            "listed twice",
        ),
        (
            "version = 1\n[timing]\njitter = \"7h\"",
            3,
            "timing.jitter",
            "allowed: 0s to 6h",
        ),
        (
            "version = 1\n\n[[network]]\nbrand = \"visa\"\ncounts = \"tries\"\nscope = \"card\"\nmax = 3\nper = \"1d\"",
            5,
            "network[0].counts",
            "allowed: \"attempts\", \"declines\"",
        ),
        (
            "version = 1\n\n[[network]]\nbrand = \"visa\"\ncounts = \"attempts\"\nscope = \"bank\"\nmax = 3\nper = \"1d\"",
            6,
            "network[0].scope",
            "allowed: \"card\", \"invoice\"",
        ),
        (
            "version = 1\n\n[[network]]\nbrand = \"visa card\"\ncounts = \"attempts\"\nscope = \"card\"\nmax = 3\nper = \"1d\"",
            4,
            "network[0].brand",
            "card brand",
        ),
        (
            "version = 1\n\n[[network]]\nbrand = \"visa\"\ncounts = \"attempts\"\nscope = \"card\"\nmax = 0\nper = \"1d\"",
            7,
            "network[0].max",
            "allowed: 1 to 1000",
        ),
        (
            "version = 1\n\n[[network]]\nbrand = \"visa\"\ncounts = \"attempts\"\nscope = \"card\"\nmax = 3",
            3,
            "",
            "missing field `per`",
        ),
        ("version = 1\n[timing\n", 2, "", "invalid table header"),
        (
            "version = 1\n[[segment]]\nname = \"a\"\n[segment.retries]\nsoft = [\"1s\"]",
            5,
            "segment[0].retries.soft[0]",
            "allowed: 1h to 60 days",
        ),
        (
            "version = 1\n[[segment]]\nname = \"a\"\n[[segment]]\nname = \"a\"",
            5,
            "segment[1].name",
            "names two segments",
        ),
        (
            "version = 1\n[[segment]]\nname = \" \"",
            3,
            "segment[0].name",
            "needs a name",
        ),
        (
            "version = 1\n[[segment]]\nname = \"a\"\namount_below = -1",
            4,
            "segment[0].amount_below",
            "allowed: 0 or more",
        ),
        (
            "version = 1\n[[segment]]\nname = \"a\"\namount_at_least = { usd = 100, dollars = 5 }",
            4,
            "segment[0].amount_at_least",
            "\"dollars\" is not a currency",
        ),
        (
            "version = 1\n[[segment]]\nname = \"a\"\namount_at_least = { krw = -5 }",
            4,
            "segment[0].amount_at_least",
            "krw = -5 is out of range",
        ),
        (
            "version = 1\n[[segment]]\nname = \"a\"\ncountry = [\"us\"]",
            4,
            "",
            "unknown field `country`",
        ),
        (
            "version = 1\n[[segment]]\nname = \"a\"\n\ntenure_months_at_least = -3",
            5,
            "segment[0].tenure_months_at_least",
            "allowed: 0 to 100000",
        ),
    ];
    for &(text, line, key, problem) in cases {
        let err = error(text);
        assert_eq!(err.line, Some(line), "{text:?}: {err}");
        assert_eq!(err.key, key, "{text:?}: {err}");
        assert!(err.problem.contains(problem), "{text:?}: {err}");
        assert!(
            err.to_string().starts_with(&format!("p.toml:{line}: ")),
            "{err}"
        );
    }
}

const SEGMENTED: &str = r#"version = 1
[retries]
soft = ["2d"]

[[segment]]
name = "high value"
amount_at_least = 50000
currency = ["USD", "eur"]
metadata = { tier = "enterprise" }
[segment.retries]
ambiguous = ["5d"]
max_attempts = 4

[[segment]]
name = "small"
amount_below = 1000
customer_metadata = { plan = "solo" }
tenure_months_below = 6
past_failures_at_least = 1
[segment.nudges]
per_case = 2

[[segment.nudges.step]]
kind = "payment_failed"
tier = 1
after = "0s"
"#;

#[test]
fn segments_inherit_the_policys_plan_and_replace_what_they_set() {
    let policy = parse(SEGMENTED, "p.toml").unwrap();
    let [high, small] = policy.segments.as_slice() else {
        panic!("two segments: {:?}", policy.segments);
    };
    assert_eq!(high.name, "high value");
    assert_eq!(high.when.amount_at_least, Some(Threshold::Every(50_000)));
    assert_eq!(high.when.currencies, ["usd", "eur"]);
    assert_eq!(high.when.metadata["tier"], "enterprise");
    assert_eq!(
        high.plan.soft,
        [SignedDuration::from_hours(48)],
        "inherited"
    );
    assert_eq!(high.plan.ambiguous, [SignedDuration::from_hours(120)]);
    assert_eq!(small.when.customer_metadata["plan"], "solo");
    assert_eq!(small.when.tenure_months_below, Some(6));
    assert_eq!(small.when.past_failures_at_least, Some(1));
    assert_eq!(small.when.tenure_months_at_least, None);
    // A segment's nudges replace what they set and keep the rest of the policy's.
    assert_eq!(small.nudges.per_case, 2);
    assert_eq!(small.nudges.steps.len(), 1);
    assert_eq!(small.nudges.window, policy.nudges.window);
    assert_eq!(high.nudges, policy.nudges);
    assert_eq!(high.plan.max_attempts, 4);
    assert_eq!(small.when.amount_below, Some(Threshold::Every(1_000)));
    assert_eq!(small.plan, policy.plan);
    assert!(
        super::describe(&policy).contains(
            "network rules: 5 dated rows; segments: \"high value\" ending with cancel_at_period_end=true (7 \
             days after the final notice), \"small\" ending with"
        ),
        "{}",
        super::describe(&policy)
    );
    // The feedback link's reactions, at their defaults here.
    assert!(
        super::describe(&policy).contains(
            "; feedback link: card_changed → send_update_link, cant_pay_now → retry_on_payday, \
             want_to_cancel → stop_dunning"
        ),
        "{}",
        super::describe(&policy)
    );
}

/// A valid networks file with one rule, whose `key = value` line `line` is replaced.
fn networks_with(line: &str) -> String {
    let rule = [
        "name = \"r\"",
        "brand = \"visa\"",
        "counts = \"reattempts\"",
        "key = [\"amount\"]",
        "max = 20",
        "per = \"30d\"",
        "resets = \"approval\"",
        "fee_usd = 0.10",
        "from = 2025-05-01",
        "source = \"s\"",
    ];
    let key = line.split(" = ").next().unwrap();
    let body: Vec<&str> = rule
        .iter()
        .map(|l| {
            if l.starts_with(&format!("{key} ")) {
                line
            } else {
                *l
            }
        })
        .collect();
    format!("version = 1\n[[rule]]\n{}\n", body.join("\n"))
}

#[test]
fn the_built_in_networks_file_holds_every_rule_with_its_day() {
    let networks = crate::policy::Networks::built_in();
    let at = |day: &str| -> jiff::Timestamp { format!("{day}T12:00:00Z").parse().unwrap() };
    let names = |day| -> Vec<String> {
        networks
            .in_force(at(day))
            .into_iter()
            .filter(|l| l.contains("at most"))
            .collect()
    };
    assert_eq!(names("2026-12-06").len(), 3, "{:?}", names("2026-12-06"));
    assert!(names("2025-04-30")[0].contains("at most 15 reattempts"));
    assert!(
        names("2026-12-06")[0].contains("at most 20 reattempts per card, amount and initiator")
    );
    let changes = networks.changes(at("2026-10-01"), 90);
    assert_eq!(
        changes
            .iter()
            .map(|(day, _)| day.to_string())
            .collect::<Vec<_>>(),
        ["2026-10-25", "2026-10-25"]
    );
    assert!(
        changes[0]
            .1
            .contains("visa response 57 (category 1): never retry"),
        "{changes:?}"
    );
    assert_eq!(networks.changes(at("2026-12-06"), 90), []);
}

#[test]
fn every_bad_networks_value_is_named_with_its_line_and_key() {
    assert!(super::networks(&networks_with("max = 20"), "n.toml").is_ok());
    let cases = [
        (
            "counts = \"retries\"",
            "rule[0].counts",
            "allowed: \"attempts\", \"declines\", \"reattempts\"",
        ),
        (
            "key = [\"merchant\"]",
            "rule[0].key",
            "allowed: \"amount\", \"initiator\", \"invoice\"",
        ),
        ("max = -1", "rule[0].max", "allowed: 0 to 1000"),
        ("per = \"0s\"", "rule[0].per", "out of range"),
        (
            "resets = \"sometimes\"",
            "rule[0].resets",
            "allowed: \"approval\", \"never\"",
        ),
        ("fee_usd = -0.5", "rule[0].fee_usd", "allowed: 0 to 100"),
        (
            "from = 2025-05-01T10:00:00Z",
            "rule[0].from",
            "expected one like 2026-10-25",
        ),
        ("source = \" \"", "rule[0].source", "must not be empty"),
        (
            "brand = \"Visa Inc\"",
            "rule[0].brand",
            "expected a card brand",
        ),
    ];
    for (line, key, problem) in cases {
        let text = networks_with(line);
        let error = super::networks(&text, "n.toml").unwrap_err();
        let at = text.lines().position(|l| l == line).unwrap() + 1;
        assert_eq!(
            (error.key.as_str(), error.line),
            (key, Some(at)),
            "{line}: {error}"
        );
        assert!(error.problem.contains(problem), "{line}: {error}");
        assert!(
            error
                .to_string()
                .starts_with(&format!("n.toml:{at}: {key}: ")),
            "{error}"
        );
    }
    let ends_first = format!("{}until = 2025-01-01\n", networks_with("max = 20"));
    let error = super::networks(&ends_first, "n.toml").unwrap_err();
    assert_eq!(error.key, "rule[0].until");
    assert!(
        error.problem.contains("is not after from = 2025-05-01"),
        "{error}"
    );
    let unknown = super::networks("version = 1\n[[rule]]\nlimit = 3\n", "n.toml").unwrap_err();
    assert_eq!(unknown.line, Some(3), "{unknown}");
    let wait = "version = 1\n[[code]]\nbrand = \"mastercard\"\nfield = \"network_advice_code\"\n\
                codes = [\"25\"]\nmeans = \"wait\"\nsource = \"s\"\n";
    let error = super::networks(wait, "n.toml").unwrap_err();
    assert_eq!(error.key, "code[0].wait");
}

#[test]
fn an_arm_overrides_what_it_names_over_each_plan_and_a_holdout_takes_the_baseline() {
    let policy = parse(EXPERIMENTING, "p.toml").unwrap();
    let experiment = policy.experiment.as_ref().unwrap();
    assert_eq!(
        (experiment.name.as_str(), experiment.key.as_str()),
        ("gentle", "gentle-2026")
    );
    let [holdout, gentle] = experiment.arms.as_slice() else {
        panic!("two arms");
    };
    // The holdout is the simulator's baseline, whole, in and out of segments.
    let baseline = parse(BASELINE, BASELINE_PATH).unwrap();
    assert!(holdout.holdout);
    assert_eq!(holdout.own.plan, baseline.plan);
    assert_eq!(holdout.own.nudges, baseline.nudges);
    assert_eq!(holdout.segments[0].ending, baseline.ending);
    assert_eq!(holdout.own.learning, Some(baseline.learning.clone()));
    // The arm replaces the gaps and learning it names, over the policy's own plan...
    assert_eq!(gentle.own.plan.soft, [SignedDuration::from_hours(120)]);
    assert_eq!(gentle.own.plan.max_attempts, policy.plan.max_attempts);
    assert!(gentle.own.learning.as_ref().is_some_and(|l| !l.enabled) && policy.learning.enabled);
    assert_eq!(gentle.own.nudges, policy.nudges);
    // ...and over the segment's: the segment's pause stays.
    assert_eq!(
        gentle.segments[0].plan.soft,
        [SignedDuration::from_hours(120)]
    );
    assert_eq!(gentle.segments[0].ending, policy.segments[0].ending);
    assert_ne!(gentle.segments[0].ending, gentle.own.ending);
    assert!(
        describe(&policy).ends_with(
            "; experiment \"gentle\": \"holdout\" 20% (holdout: the baseline plan), \"gentle\" 80%"
        ),
        "{}",
        describe(&policy)
    );
    // An arm that sets no [learning] follows the policy's, as `simulate --learn off` turns it.
    let mut following = parse(
        &EXPERIMENTING.replace("[experiment.arm.learning]\nenabled = false\n", ""),
        "p.toml",
    )
    .unwrap();
    assert_eq!(
        following.experiment.as_ref().unwrap().arms[1].own.learning,
        None
    );
    assert!(following.learns());
    following.learning.enabled = false;
    assert!(
        !following.learns(),
        "the holdout's baseline does not learn either"
    );
    // Without a key, customers are keyed by the name.
    let unkeyed = parse(
        &EXPERIMENTING.replace("key = \"gentle-2026\"\n", ""),
        "p.toml",
    )
    .unwrap();
    assert_eq!(unkeyed.experiment.unwrap().key, "gentle");
}

#[test]
fn every_bad_experiment_is_named_with_its_line_and_key() {
    let cases = [
        (
            EXPERIMENTING.replace("share = 0.8", "share = 0.7"),
            "p.toml:12: experiment[0].arm.share: the arms' shares add up to",
        ),
        (
            EXPERIMENTING.replace("name = \"gentle\"\nshare", "name = \"holdout\"\nshare"),
            "p.toml:21: experiment[0].arm[1].name: \"holdout\" names two arms",
        ),
        (
            EXPERIMENTING.replace("share = 0.8\n", "share = 0.8\nholdout = true\n"),
            "experiment[0].arm[1].retries: a holdout gets the baseline plan",
        ),
        (
            EXPERIMENTING.replace(
                "[experiment.arm.retries]\nsoft = [\"5d\"]\n[experiment.arm.learning]\nenabled = false\n",
                "holdout = true\n",
            ),
            "experiment[0].arm[1].holdout: a second holdout",
        ),
        (
            EXPERIMENTING.replace("[experiment.arm.learning]", "colour = \"blue\"\n[experiment.arm.learning]"),
            "p.toml:25: unknown field `colour`",
        ),
        (
            EXPERIMENTING.replace("soft = [\"5d\"]", "soft = [\"5m\"]"),
            "p.toml:24: experiment[0].arm[1].retries.soft[0]: \"5m\" is out of range",
        ),
        (
            EXPERIMENTING.replace("share = 0.2", "share = 0"),
            "p.toml:17: experiment[0].arm[0].share: 0 is out of range",
        ),
        (
            EXPERIMENTING.replace("name = \"gentle\"\nshare", "name = \"a|b\"\nshare"),
            "p.toml:21: experiment[0].arm[1].name: \"a|b\": an arm needs a name of letters",
        ),
        (
            format!("{EXPERIMENTING}\n[[experiment]]\nname = \"again\"\narm = []\n"),
            "experiment[1]: one experiment runs at a time",
        ),
    ];
    for (text, said) in cases {
        let err = error(&text).to_string();
        assert!(
            err.starts_with("p.toml") && err.contains(said),
            "{err}\nwanted: {said}"
        );
    }
}

#[test]
fn feedback_reactions_are_read_and_each_answer_takes_only_its_own() {
    let policy = parse(
        "version = 1\n[feedback]\nenabled = false\ncard_changed = \"record\"\n\
         want_to_cancel = \"end_now\"\n",
        "p.toml",
    )
    .unwrap();
    assert_eq!(
        policy.feedback,
        FeedbackPlan {
            enabled: false,
            card_changed: Reaction::Record,
            cant_pay_now: Reaction::RetryOnPayday,
            want_to_cancel: Reaction::EndNow,
        }
    );
    let wrong = error("version = 1\n[feedback]\ncant_pay_now = \"end_now\"\n");
    assert_eq!(wrong.line, Some(3));
    assert_eq!(wrong.key, "feedback.cant_pay_now");
    assert_eq!(
        wrong.problem,
        "\"end_now\" is not allowed; allowed: \"retry_on_payday\", \"record\""
    );
    let unknown = error("version = 1\n[feedback]\nsomething_else = \"record\"\n");
    assert!(unknown.problem.contains("unknown field"), "{unknown}");
}
