use std::collections::{HashMap, HashSet};

use jiff::ToSpan;
use jiff::civil::date;

use super::*;
use crate::policy::DeclineClass;
use crate::policy::decline::{Signals, classify};

fn invoices(count: u64, seed: u64) -> Vec<FailedInvoice> {
    population(count, seed).flatten().collect()
}

/// The class of `decline` under the built-in network rules of 2027.
fn class(decline: &DeclineTruth, brand: &str) -> DeclineClass {
    let signals = Signals {
        code: decline.code.as_deref(),
        decline_code: decline.decline_code.as_deref(),
        advice_code: decline.advice_code.as_deref(),
        network_advice_code: decline.network_advice_code.as_deref(),
        network_decline_code: decline.network_decline_code.as_deref(),
        brand: Some(brand),
    };
    let at: jiff::Timestamp = "2027-01-01T00:00:00Z".parse().unwrap();
    classify(&signals, &crate::policy::Networks::built_in(), at).class
}

/// The class of a [`DECLINES`] row, which every brand and network code must keep.
fn row_class(row: &Decline) -> DeclineClass {
    let plain = DeclineTruth {
        code: row.code.map(str::to_owned),
        decline_code: Some(row.decline_code.to_owned()),
        advice_code: row.advice_code.map(str::to_owned),
        ..DeclineTruth::default()
    };
    class(&plain, "unknown")
}

#[test]
fn local_times_agree_with_the_time_zone_rules() {
    let calendar = Calendar::new();
    let earliest = PAY_LANDS_MINUTES.0.min(FAILURE_MINUTES.0);
    let latest = PAY_LANDS_MINUTES.1.max(FAILURE_MINUTES.1) - 1;
    for (at, place) in PLACES.iter().enumerate() {
        let zone = TimeZone::get(place.zone).unwrap();
        for (day, date) in calendar.dates.iter().enumerate() {
            for minute in [earliest, latest] {
                let local = date.at((minute / 60) as i8, (minute % 60) as i8, 0, 0);
                let expected = zone.to_ambiguous_timestamp(local).compatible().unwrap();
                assert_eq!(
                    calendar.local(at, day, minute),
                    expected,
                    "{local} {zone:?}"
                );
            }
        }
    }
}

#[test]
fn ids_are_the_prefix_and_the_number() {
    for number in [0, 7, 10, 1_000_000, u64::MAX] {
        assert_eq!(id("in_", number), format!("in_{number}"));
    }
}

#[test]
fn the_same_seed_gives_the_same_population_and_another_seed_another() {
    let first = invoices(1000, 7);
    assert_eq!(first, invoices(1000, 7));
    assert_ne!(first, invoices(1000, 8));
}

#[test]
fn the_population_has_exactly_the_invoices_asked_for() {
    for count in [0, 1, 7, 1000] {
        assert_eq!(invoices(count, 1).len() as u64, count, "{count} invoices");
    }
}

#[test]
fn every_invoice_reads_back_as_itself() {
    for invoice in invoices(2000, 3) {
        let line = serde_json::to_string(&invoice).unwrap();
        let read = FailedInvoice::parse(line.as_bytes()).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(read, invoice, "{line}");
    }
}

#[test]
fn a_customers_invoices_come_together_and_share_card_and_truth() {
    let mut seen = HashSet::new();
    let mut repeat_customers = 0;
    let customers: Vec<_> = population(5000, 4).collect();
    for invoices in &customers {
        let first = &invoices[0];
        assert!(
            seen.insert(first.customer_id.clone()),
            "{}",
            first.customer_id
        );
        repeat_customers += usize::from(invoices.len() > 1);
        for (k, invoice) in invoices.iter().enumerate() {
            assert_eq!(invoice.customer_id, first.customer_id);
            assert_eq!(invoice.card, first.card);
            assert_eq!(invoice.first_decline, first.first_decline);
            assert_eq!(invoice.card_dead, first.card_dead);
            assert_eq!(invoice.updates_card, first.updates_card);
            assert_eq!(invoice.gives_up_after_nudges, first.gives_up_after_nudges);
            assert_eq!(
                invoice.failed_at,
                first.failed_at + BILLING_PERIOD * k as i32
            );
        }
    }
    let share = repeat_customers as f64 / customers.len() as f64;
    assert!(
        (0.09..0.15).contains(&share),
        "{share} of customers fail again"
    );
}

#[test]
fn every_row_keeps_its_class_on_every_brand_and_network_code() {
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for (row, _) in &DECLINES {
        for brand in ["visa", "mastercard", "amex"] {
            for _ in 0..50 {
                let reported = row.reported(brand, &mut rng);
                assert_eq!(class(&reported, brand), row_class(row), "{reported:?}");
            }
        }
    }
}

#[test]
fn the_decline_mix_matches_the_parameters() {
    let total: u32 = DECLINES.iter().map(|(_, weight)| weight).sum();
    let mut expected: HashMap<&str, f64> = HashMap::new();
    for (row, weight) in &DECLINES {
        *expected.entry(row_class(row).as_str()).or_default() +=
            f64::from(*weight) / f64::from(total);
    }
    let population = invoices(20_000, 11);
    let mut seen: HashMap<&str, f64> = HashMap::new();
    for invoice in &population {
        *seen
            .entry(class(&invoice.first_decline, &invoice.card.brand).as_str())
            .or_default() += 1.0 / population.len() as f64;
    }
    assert_eq!(expected.len(), 5, "every class is in the mix");
    for (class, share) in expected {
        let got = seen.get(&class).copied().unwrap_or_default();
        assert!(
            (got - share).abs() < 0.015,
            "{class}: {got:.3} of invoices, parameters say {share:.3}"
        );
    }
}

#[test]
fn funds_windows_follow_the_failure_within_the_horizon() {
    let population = invoices(20_000, 12);
    for invoice in &population {
        for window in &invoice.funds {
            assert!(invoice.failed_at < window.from, "{invoice:?}");
            assert!(window.from < window.to, "{invoice:?}");
            assert!(window.from < invoice.failed_at + HORIZON, "{invoice:?}");
        }
        assert!(
            invoice.funds.windows(2).all(|w| w[0].to <= w[1].from),
            "windows in order and apart: {invoice:?}"
        );
    }
    let with_funds = population.iter().filter(|i| !i.funds.is_empty()).count();
    assert!(with_funds > population.len() / 3, "{with_funds} with funds");
}

#[test]
fn the_card_fits_the_decline() {
    for invoice in invoices(20_000, 13) {
        let class = class(&invoice.first_decline, &invoice.card.brand);
        let card = &invoice.card;
        // As the simulator reads it: expired from the first of the next month, UTC.
        let expiry = date(card.exp_year.unwrap(), card.exp_month.unwrap() as i8, 1);
        let void_from = (expiry + 1.month()).to_zoned(TimeZone::UTC).unwrap();
        let expired = void_from.timestamp() <= invoice.failed_at;
        let says_expired = invoice.first_decline.code.as_deref() == Some("expired_card");
        assert_eq!(expired, says_expired, "{invoice:?}");
        if class == DeclineClass::Hard {
            assert!(invoice.card_dead, "{invoice:?}");
        }
        if class == DeclineClass::Soft {
            assert!(!invoice.card_dead, "{invoice:?}");
        }
    }
}

#[test]
fn behaviours_are_each_present_in_a_plausible_share() {
    let population = invoices(20_000, 14);
    let share = |test: &dyn Fn(&FailedInvoice) -> bool| {
        population.iter().filter(|i| test(i)).count() as f64 / population.len() as f64
    };
    let updates = share(&|i| i.updates_card.is_some());
    let pays = share(&|i| i.pays_unprompted_at.is_some());
    let late = share(&|i| {
        i.pays_unprompted_at
            .is_some_and(|at| at > i.failed_at + HORIZON)
    });
    let gives_up = share(&|i| i.gives_up_after_nudges.is_some());
    assert!((0.2..0.4).contains(&updates), "{updates} update their card");
    assert!((0.05..0.15).contains(&pays), "{pays} pay by themselves");
    assert!(
        late > 0.0 && late < pays / 2.0,
        "{late} pay after the horizon"
    );
    assert!((0.1..0.3).contains(&gives_up), "{gives_up} give up");
    let first_nudge = share(&|i| i.updates_card.is_some_and(|u| u.after_nudges == 1));
    let fourth_nudge = share(&|i| i.updates_card.is_some_and(|u| u.after_nudges == 4));
    assert!(first_nudge > 2.0 * fourth_nudge);
}

#[test]
fn arrivals_are_the_population_in_the_order_of_the_first_failure() {
    let mut sorted: Vec<_> = population(3_000, 9).collect();
    // A stable sort: the generator's order breaks ties.
    sorted.sort_by_key(|c| c[0].failed_at);
    let arrivals = Arrivals::new(3_000, 9);
    assert_eq!(arrivals.customers().collect::<Vec<_>>(), sorted);
    assert_eq!(arrivals.customers().count(), sorted.len());
}
