//! The simulator against populations whose outcome is known, and against itself.

use jiff::SignedDuration;

use super::population::{Customers, FailedInvoice};
use super::report::Report;
use super::*;
use crate::policy::RecoveredBy;

const RULES: &str = include_str!("../../fixtures/simulate/rules.jsonl");

fn shipped() -> Contender {
    Contender {
        name: "shipped".to_owned(),
        path: PathBuf::from("config/policy.toml"),
        policy: Policy::shipped(),
    }
}

fn baseline() -> Contender {
    Contender {
        name: "baseline".to_owned(),
        path: PathBuf::from(BASELINE_PATH),
        policy: crate::policy::file::parse(BASELINE, BASELINE_PATH).unwrap(),
    }
}

fn customers(text: &str) -> Vec<Vec<FailedInvoice>> {
    Customers::read(text.as_bytes())
        .unwrap()
        .iter()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// The customer whose first invoice is `id`.
fn invoice<'a>(customers: &'a [Vec<FailedInvoice>], id: &str) -> &'a [FailedInvoice] {
    customers
        .iter()
        .find(|c| c[0].invoice_id == id)
        .unwrap_or_else(|| panic!("no invoice {id}"))
}

fn report(contenders: &[Contender], text: &str, threads: usize) -> Report {
    let customers = Customers::read(text.as_bytes()).unwrap();
    let outcome = run(contenders, || customers.iter(), threads, |_| Ok(())).unwrap();
    Report::new(
        "test".to_owned(),
        contenders,
        &outcome.population,
        &outcome.tallies,
    )
}

/// What one invoice of `rules.jsonl` must come to: recovered by whom after how long, recoup's
/// attempts, nudges delivered, and whether the customer gave up.
type Known = (
    &'static str,
    Option<(RecoveredBy, SignedDuration)>,
    u32,
    u32,
    bool,
);

fn hours(h: i64, m: i64) -> SignedDuration {
    SignedDuration::from_hours(h) + SignedDuration::from_mins(m)
}

fn check(contender: &Contender, known: &[Known]) {
    let customers = customers(RULES);
    assert_eq!(customers.len(), known.len());
    for &(id, recovered, attempts, nudges, gave_up) in known {
        let invoices = invoice(&customers, id);
        let result = world::simulate(&contender.policy, invoices.into());
        let got = &result.invoices[0];
        // The jitter moves a retry by up to half an hour; a payment is known to the minute.
        let recovered_to_the_minute = got
            .recovered
            .map(|(by, after)| (by, SignedDuration::from_mins(after.as_secs() / 60)));
        assert_eq!(
            (
                recovered_to_the_minute,
                got.attempts,
                got.nudges,
                result.gave_up
            ),
            (recovered, attempts, nudges, gave_up),
            "{id} under {}",
            contender.name
        );
        assert!(got.breaches.is_empty(), "{id} under {}", contender.name);
    }
}

#[test]
fn each_rule_of_the_hand_written_population_comes_out_as_reasoned_under_the_shipped_policy() {
    let retry = RecoveredBy::Retry;
    check(
        &shipped(),
        &[
            // insufficient_funds waits for the payday, the 15th, 09:00 local plus this invoice's
            // jitter: the money is there, before the note due on day 14: never nudged.
            ("in_funds_hit", Some((retry, hours(282, 25))), 1, 0, false),
            // The money was there only on Sunday the 8th; the payday retries on the 15th, the 1st,
            // the 15th and the 1st again (within 60 days) all miss it. Two nudges: on day 14 and the
            // final notice.
            ("in_funds_missed", None, 4, 2, false),
            // A stolen card: no retry, three nudges (1 h, the reminder only a new card can answer
            // on day 10, the final notice), no card.
            ("in_dead_card", None, 0, 3, false),
            // An expired card: the second nudge — the reminder on day 10, 15:00 — brings a new
            // card 18 h later, tried 5 minutes after it arrives.
            ("in_new_card", Some((retry, hours(258, 5))), 1, 2, false),
            // Failed at 23:30 in Tokyo: the first nudge waits for 09:00 there (9 h 30 m later), and
            // the card comes 2 h after it.
            ("in_quiet", Some((retry, hours(11, 35))), 1, 1, false),
            // do_not_honor is retried once on day 3 (declined: the card is dead); the customer
            // pays by themselves on day 5 — which the worker cannot tell from any other payment —
            // before the note due on day 14.
            (
                "in_unprompted",
                Some((RecoveredBy::Unknown, hours(120, 0))),
                1,
                0,
                false,
            ),
            // The second nudge (the reminder on day 10) is one too many: the customer cancels
            // before the new card the same nudge would have brought.
            ("in_gives_up", None, 0, 2, true),
        ],
    );
}

#[test]
fn the_fixed_baseline_misses_paydays_and_nudges_at_night() {
    let retry = RecoveredBy::Retry;
    check(
        &baseline(),
        &[
            // Days 3, 5 and 7 all miss the money that comes on the 15th.
            ("in_funds_hit", None, 3, 4, false),
            // Day 5 falls on the Sunday the money is there: a fixed schedule can be lucky.
            ("in_funds_missed", Some((retry, hours(120, 0))), 2, 2, false),
            ("in_dead_card", None, 0, 4, false),
            // Nudged at once and on day 3: the card comes 18 h after the second.
            ("in_new_card", Some((retry, hours(90, 5))), 1, 2, false),
            // Every nudge reaches Tokyo at 23:30: read at night, they persuade nobody.
            ("in_quiet", None, 0, 4, false),
            (
                "in_unprompted",
                Some((RecoveredBy::Unknown, hours(120, 0))),
                1,
                2,
                false,
            ),
            ("in_gives_up", None, 0, 2, true),
        ],
    );
}

#[test]
fn the_report_of_the_hand_written_population_adds_up_every_invoice() {
    let report = report(&[shipped(), baseline()], RULES, 2);
    assert_eq!(
        (report.population.customers, report.population.invoices),
        (7, 7)
    );
    assert_eq!(report.population.revenue["usd"], 7 * 4900);
    // Recoverable: funds_hit and funds_missed (money within reach), new_card and quiet (a card),
    // unprompted (pays); not the dead card, nor the customer who gives up before their card.
    assert_eq!(report.oracle.invoices, 5);
    assert_eq!(report.oracle.revenue["usd"], 5 * 4900);

    let shipped = &report.policies[0];
    assert_eq!(shipped.recovered_invoices, 4);
    assert_eq!(shipped.recovered_revenue["usd"], 4 * 4900);
    assert!((shipped.recovery_rate - 4.0 / 7.0).abs() < 1e-9);
    assert!((shipped.oracle_share - 0.8).abs() < 1e-9);
    assert!((shipped.oracle_share_by_currency["usd"] - 0.8).abs() < 1e-9);
    assert_eq!(
        (shipped.recovered_by.retry, shipped.recovered_by.customer),
        (3, 1)
    );
    assert_eq!((shipped.lost_to_nagging, shipped.breaches), (1, 0));
    assert!((shipped.attempts_per_invoice - 8.0 / 7.0).abs() < 1e-9);
    assert!((shipped.nudges_per_invoice - 10.0 / 7.0).abs() < 1e-9);
    // Recovered after 11, 120, 258 and 282 whole hours: the median is the 2nd (121 h counted to
    // the hour), p90 the 4th.
    assert!((shipped.days_to_recover.p50 - 121.0 / 24.0).abs() < 1e-9);
    assert!((shipped.days_to_recover.p90 - 283.0 / 24.0).abs() < 1e-9);
    let rates: Vec<(&str, u64, u64)> = shipped
        .by_decline_class
        .iter()
        .map(|(class, r)| (class.as_str(), r.invoices, r.recovered))
        .collect();
    assert_eq!(
        rates,
        [
            ("ambiguous", 1, 1),
            ("card_data", 2, 2),
            ("hard", 2, 0),
            ("soft", 2, 1)
        ]
    );
    assert_eq!(shipped.by_segment["(none)"].invoices, 7);
    let usd = &shipped.cumulative_revenue_by_day["usd"];
    assert_eq!(usd.len(), 61);
    // Day by day: 11 h → by the end of day 1; 120 h → day 6 (exactly 5 days is the start of day
    // 6); 258 h → day 11; 282 h → day 12.
    assert_eq!((usd[0], usd[1], usd[4], usd[5]), (0, 4900, 4900, 4900));
    assert_eq!((usd[6], usd[10], usd[11]), (9800, 9800, 14700));
    assert_eq!((usd[12], usd[60]), (19600, 19600));

    let baseline = &report.policies[1];
    assert_eq!(baseline.recovered_invoices, 3);
    assert!((baseline.oracle_share - 0.6).abs() < 1e-9);
    assert_eq!(
        (baseline.recovered_by.retry, baseline.recovered_by.customer),
        (2, 1)
    );
    assert_eq!((baseline.lost_to_nagging, baseline.breaches), (1, 0));
    assert!((baseline.attempts_per_invoice - 7.0 / 7.0).abs() < 1e-9);
    assert!((baseline.nudges_per_invoice - 20.0 / 7.0).abs() < 1e-9);
}

#[test]
fn a_customers_invoices_share_the_nudge_count_and_the_new_card() {
    // Two invoices of two subscriptions a day apart: the second one's nudges add to the first
    // one's, and the new card the customer adds after two nudges pays both.
    let first = invoice(&customers(RULES), "in_new_card")[0].clone();
    let mut second = first.clone();
    second.invoice_id = "in_new_card_2".to_owned();
    second.subscription_id = Some("sub_new_2".to_owned());
    second.failed_at = first.failed_at + SignedDuration::from_hours(24);
    let result = world::simulate(&Policy::shipped(), vec![first, second].into());
    let recovered: Vec<bool> = result
        .invoices
        .iter()
        .map(|r| r.recovered.is_some())
        .collect();
    assert_eq!(recovered, [true, true]);
    // One nudge a day across both invoices: day 0 brings the first invoice's, day 1 the second's
    // — the two that bring the card (18 h after the second).
    let nudges: u32 = result.invoices.iter().map(|r| r.nudges).sum();
    assert_eq!(nudges, 2);
    let after = result.invoices[0].recovered.unwrap().1;
    assert!(after < SignedDuration::from_hours(72), "{after:?}");
}

#[test]
fn a_renewal_failing_while_the_last_invoice_is_unpaid_is_one_conversation() {
    // The same subscription's next invoice fails a day later: its note is the first invoice's
    // (`NudgePlan::covered_by`), so the customer hears two messages in all, and adds the card after
    // the second — the first invoice's reminder (an expired card: only a new one helps), 10 days
    // on, before the renewal's own reminder is due.
    let first = invoice(&customers(RULES), "in_new_card")[0].clone();
    let mut renewal = first.clone();
    renewal.invoice_id = "in_new_card_2".to_owned();
    renewal.failed_at = first.failed_at + SignedDuration::from_hours(24);
    let result = world::simulate(&Policy::shipped(), vec![first, renewal].into());
    let nudges: Vec<u32> = result.invoices.iter().map(|r| r.nudges).collect();
    assert_eq!(nudges, [2, 0]);
    let after = result.invoices[1]
        .recovered
        .expect("the new card pays it")
        .1;
    assert!(
        (SignedDuration::from_hours(9 * 24)..SignedDuration::from_hours(10 * 24)).contains(&after),
        "{after:?}"
    );
}

/// `rules.jsonl` `n` times over, each copy's invoices and customers named apart.
fn copies(n: usize) -> String {
    (0..n)
        .flat_map(|n| {
            RULES.lines().map(move |line| {
                line.replace("\"in_", &format!("\"in_{n}_"))
                    .replace("\"cus_", &format!("\"cus_{n}_"))
                    + "\n"
            })
        })
        .collect()
}

#[test]
fn the_same_population_gives_the_same_report_on_any_number_of_threads() {
    let text = copies(50);
    let contenders = [shipped(), baseline()];
    let customers = Customers::read(text.as_bytes()).unwrap();
    let one = run(&contenders, || customers.iter(), 1, |_| Ok(())).unwrap();
    let three = run(&contenders, || customers.iter(), 3, |_| Ok(())).unwrap();
    assert_eq!(one, three);
    assert_eq!(one.population.invoices, 350);
    assert_eq!(one.tallies[0].recovered, 200);
}

#[test]
fn a_learning_policy_learns_the_same_on_any_number_of_threads() {
    // A hundred customers with the same moments: every such hour is shared out among the threads.
    let text = copies(100);
    let customers = Customers::read(text.as_bytes()).unwrap();
    let mut learning = shipped();
    learning.policy.learning.min_evidence = 0;
    let play = |threads| in_time_order(&learning, customers.iter(), threads).unwrap();
    let (tally, evidence) = play(1);
    assert!(
        evidence.tries(crate::policy::learning::Reason::InsufficientFunds) > 100,
        "{evidence:?}"
    );
    assert_eq!(tally.recovered, 500);
    for threads in [2, 3] {
        assert_eq!(
            play(threads),
            (tally.clone(), evidence.clone()),
            "{threads}"
        );
    }
}

#[test]
fn a_bad_line_stops_the_run_with_its_number() {
    let text = format!("{RULES}{{\"invoice_id\":\"in_x\"}}\n");
    let error = Customers::read(text.as_bytes())
        .and_then(|customers| run(&[shipped()], || customers.iter(), 2, |_| Ok(())))
        .unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("population line 8: missing field"),
        "{error}"
    );
}

#[test]
fn the_shipped_policy_recovers_no_less_than_the_fixed_baseline_on_a_synthetic_population() {
    let contenders = [shipped(), baseline()];
    let mut customers: Vec<_> = synthetic::population(4_000, 11).collect();
    customers.sort_by_key(|c| c[0].failed_at);
    let outcome = run(
        &contenders,
        || customers.iter().cloned().map(Ok),
        2,
        |_| Ok(()),
    )
    .unwrap();
    let report = Report::new(
        "synthetic".to_owned(),
        &contenders,
        &outcome.population,
        &outcome.tallies,
    );
    println!("{report}");
    let [shipped, baseline] = &report.policies[..] else {
        panic!("two policies");
    };
    assert!(
        shipped.oracle_share >= baseline.oracle_share,
        "shipped {} < baseline {}",
        shipped.oracle_share,
        baseline.oracle_share
    );
    assert!(shipped.recovered_invoices >= baseline.recovered_invoices);
    assert_eq!((shipped.breaches, baseline.breaches), (0, 0));
}

/// Every policy file recoup ships, with learning as each says and with learning off.
fn shipped_policies() -> Vec<Contender> {
    let mut contenders = vec![shipped(), baseline()];
    let mut static_shipped = shipped();
    static_shipped.name = "shipped, static".to_owned();
    static_shipped.policy.learning.enabled = false;
    contenders.push(static_shipped);
    contenders
}

/// A customer's first invoice repeated `copies` times: subscriptions of one price on one card,
/// failing an hour apart — the way one card reaches the networks' limits.
fn on_one_card(customer: Vec<FailedInvoice>, copies: usize, brand: &str) -> Vec<FailedInvoice> {
    let first = &customer[0];
    (0..copies)
        .map(|n| {
            let mut copy = first.clone();
            copy.invoice_id = format!("{}_{n}", first.invoice_id);
            copy.subscription_id = Some(format!("sub_copy_{}_{n}", first.invoice_id));
            copy.failed_at = first.failed_at + SignedDuration::from_hours(n as i64);
            copy.card.brand = brand.to_owned();
            copy
        })
        .collect()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(8))]

    /// Over whole synthetic populations — and the same customers with many invoices of one price
    /// on one card — no shipped policy breaks a card-network rule.
    #[test]
    fn no_shipped_policy_breaks_a_network_rule_on_any_population(
        seed in 0u64..1_000,
        copies in 1usize..10,
        brand in proptest::prelude::prop_oneof![
            proptest::strategy::Just("visa"),
            proptest::strategy::Just("mastercard")
        ],
        later in proptest::prelude::any::<bool>(),
    ) {
        let profile = if later { synthetic::Profile::Later } else { synthetic::Profile::Standard };
        let mut customers: Vec<Vec<FailedInvoice>> = synthetic::population(300, seed)
            .map(|c| profile.apply(c))
            .map(|c| if copies > 1 { on_one_card(c, copies, brand) } else { c })
            .collect();
        customers.sort_by_key(|c| c[0].failed_at);
        let contenders = shipped_policies();
        let outcome = run(&contenders, || customers.iter().cloned().map(Ok), 2, |_| Ok(())).unwrap();
        let report = Report::new("proptest".to_owned(), &contenders, &outcome.population, &outcome.tallies);
        for policy in &report.policies {
            proptest::prop_assert_eq!(
                policy.breaches, 0,
                "{} breaks: {}", policy.name, report.explain_breaches(3)
            );
        }
    }
}

/// The shipped policy, static, running an experiment: half the customers held out on the baseline.
fn experimenting() -> Contender {
    let text = format!(
        "{}\n[[experiment]]\nname = \"proof\"\n\n[[experiment.arm]]\nname = \"holdout\"\nshare = \
         0.5\nholdout = true\n\n[[experiment.arm]]\nname = \"recoup\"\nshare = 0.5\n",
        include_str!("../../config/policy.toml")
            .replace("[learning]\nenabled = true", "[learning]\nenabled = false")
    );
    Contender {
        name: "experimenting".to_owned(),
        path: PathBuf::from("experimenting.toml"),
        policy: crate::policy::file::parse(&text, "experimenting.toml").unwrap(),
    }
}

#[test]
fn an_experiment_splits_a_synthetic_population_and_its_holdout_does_what_the_baseline_does() {
    let contender = experimenting();
    let experiment = contender.policy.experiment.clone().unwrap();
    let customers: Vec<_> = synthetic::population(3_000, 7).collect();
    // Every invoice of a customer is in the customer's arm, the one `serve` would give them.
    let (mut held_out, mut treated) = (Vec::new(), Vec::new());
    for customer in &customers {
        let result = world::simulate(&contender.policy, Arc::from(customer.clone()));
        let want = experiment
            .arms
            .iter()
            .position(|a| *a == *experiment.assign(&customer[0].customer_id));
        // A customer who cancelled has no case for their later invoices, as in `serve`.
        assert!(want.is_some() && result.invoices[0].arm == want);
        assert!(
            result
                .invoices
                .iter()
                .all(|i| i.arm == want || (i.arm.is_none() && result.gave_up))
        );
        match want {
            Some(0) => held_out.push(customer.clone()),
            _ => treated.push(customer.clone()),
        }
    }
    let outcome = |contenders: &[Contender], customers: &[Vec<FailedInvoice>]| {
        let outcome = run(
            contenders,
            || customers.iter().cloned().map(Ok),
            2,
            |_| Ok(()),
        )
        .unwrap();
        Report::new(
            "synthetic".to_owned(),
            contenders,
            &outcome.population,
            &outcome.tallies,
        )
    };
    let report = outcome(std::slice::from_ref(&contender), &customers);
    println!("{report}");
    let arms = &report.policies[0].experiment.as_ref().unwrap().arms;
    // Every invoice with a case is final at the horizon and counted in its arm; invoices a
    // customer who cancelled never got are not.
    let counted = arms.iter().map(|a| a.invoices).sum::<u64>();
    assert!(counted <= report.population.invoices && counted > report.population.invoices * 9 / 10);
    // The holdout's customers fare exactly as under the baseline policy file; the other arm's as
    // under the policy without the experiment.
    let baseline = outcome(&[baseline()], &held_out);
    assert_eq!(arms[0].recovered, baseline.policies[0].recovered_invoices);
    let mut plain = contender.clone();
    plain.policy.experiment = None;
    let plain = outcome(&[plain], &treated);
    assert_eq!(arms[1].recovered, plain.policies[0].recovered_invoices);
    assert_eq!(
        arms[1]
            .revenue
            .iter()
            .map(|r| (r.currency.clone(), r.recovered))
            .collect::<std::collections::BTreeMap<_, _>>(),
        plain.policies[0].recovered_revenue
    );
    // Enough invoices for an interval, and what the lift seen would need.
    let versus = arms[1].versus_holdout.as_ref().unwrap();
    assert!(versus.enough_data);
    let rate = versus.rate_difference.unwrap();
    assert!(rate.low < rate.estimate && rate.estimate < rate.high);
    assert!(versus.invoices_needed.is_some());
    assert!(
        report
            .to_string()
            .contains("The experiment of experimenting:")
    );
}

#[test]
fn a_renewal_is_retried_on_the_day_the_customers_last_invoice_was_paid() {
    // The customer pays their first invoice through the portal on 20 March, none of the
    // policy's paydays; the renewal a month later fails with money on 20 April only. As the
    // worker reads the customer's paid invoices from Stripe when a case opens, the simulator
    // tells the renewal's case the day this run saw the first one paid on: its
    // `insufficient_funds` retry waits for the 20th, where without it the retries go to the
    // policy's paydays (the 15th, then the 1st of May) and miss the money.
    let policy = Policy::shipped();
    let mut first = invoice(&customers(RULES), "in_funds_hit")[0].clone();
    first.funds = Vec::new();
    first.pays_unprompted_at = Some("2026-03-20T12:00:00Z".parse().unwrap());
    assert!(!policy.plan.paydays.contains(&20));
    let mut renewal = first.clone();
    renewal.invoice_id = "in_funds_hit_renewal".to_owned();
    renewal.failed_at = "2026-04-03T15:00:00Z".parse().unwrap();
    renewal.pays_unprompted_at = None;
    renewal.funds = vec![population::Funds {
        from: "2026-04-20T00:00:00Z".parse().unwrap(),
        to: "2026-04-20T20:00:00Z".parse().unwrap(),
    }];

    let both = world::simulate(&policy, vec![first, renewal.clone()].into());
    assert!(both.invoices[0].recovered.is_some(), "{both:?}");
    let got = &both.invoices[1];
    assert_eq!(
        (got.recovered.map(|r| r.0), got.attempts),
        (Some(RecoveredBy::Retry), 1)
    );

    let unknown = world::simulate(&policy, vec![renewal].into());
    assert_eq!(unknown.invoices[0].recovered, None, "{unknown:?}");
}
