//! A synthetic population of failed invoices, for `recoup simulate --synthetic N [--seed S]`.
//!
//! A policy can only be judged against customers whose truth is known: when their account has
//! money again, whether their card is dead, whether they would add a new card after a reminder.
//! Real histories rarely record that, so this module invents customers whose truth follows what
//! is known about failed subscription payments, and writes them as [`FailedInvoice`]s — the same
//! records `--population FILE` reads (`docs/reference/population.md#a-line`).
//!
//! What it models, and why:
//!
//! - **Why the payment failed.** Each customer draws one row of `DECLINES`: the signals Stripe
//!   would report (`code`, `decline_code`, `advice_code`, the Visa response code, sometimes a
//!   Mastercard advice code) and the story behind them (`Truth`). The codes are the ones
//!   the decline classes of `docs/design/declines.md#decline-classes` and recoup's classifier name, so every class a policy treats
//!   differently — soft, ambiguous, card data, action required, hard — is present in a known share.
//! - **When money comes back.** An empty account is refilled on payday, in the customer's local
//!   early morning, and is spent again within days (`docs/design/timing.md#paydays`: paydays on the 1st and 15th, or
//!   Fridays). A customer is paid semi-monthly, monthly on the 1st or the last day, bi-weekly or
//!   weekly; payroll due on a weekend is paid the Friday before. A glitch at the issuer
//!   (`issuer_not_available`, `processing_error`, …) instead clears hours or days after the
//!   failure, whatever the date. A dead, lost or stolen card never pays again.
//! - **What the customer does.** Some add a new card after a reminder — the first two reminders
//!   move more people than later ones, and people who know their card changed move most; some pay
//!   by themselves; a minority cancel when reminded too often, more of them among long-standing,
//!   high-value customers (`docs/design/dunning-practice.md#segments`).
//! - **Who they are.** Countries and IANA zones where a SaaS business's customers live, the
//!   currency they are billed in, a plan and its price, card brand, funding and expiry, tenure,
//!   earlier failures.
//!
//! Every parameter sits in the constants below, with its source (`docs/user-guide/synthetic-population.md#sources`): the domain notes, a dunning
//! article, a public statistic, or — where no source gives a number — a stated assumption.
//! Weights are in parts per thousand.
//!
//! The population is a stream: [`population`] yields one customer (their invoices, consecutive,
//! as the simulator requires) at a time, so a million invoices take no more memory than one.
//! [`Arrivals`] yields the same customers in the order of their first failure, keeping some 48
//! bytes a customer.
//! It is deterministic: the only randomness is a ChaCha8 generator seeded from `seed`, draws are
//! integers (no platform-dependent floating-point functions), and the calendar is fixed, so a
//! `(invoices, seed)` pair names the same population on every machine.

use std::collections::BTreeMap;

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

mod params;
mod profile;
#[cfg(test)]
mod tests;

pub use self::profile::Profile;

use self::params::*;
use super::population::{CardTruth, CardUpdate, DeclineTruth, FailedInvoice, Funds};

/// One customer's failed invoices (consecutive, same customer_id), in order.
///
/// Exactly `invoices` invoices in all; the same `(invoices, seed)` always gives the same
/// population.
pub fn population(invoices: u64, seed: u64) -> impl Iterator<Item = Vec<FailedInvoice>> + Send {
    Generator::new(invoices, seed)
}

/// The same population as [`population`], customer by customer in the order of their first
/// failure (the generator's order breaks ties): the order a learning policy plays them in.
///
/// The generator makes customers in no order of time, and keeping them all to sort them would
/// hold the whole population (gigabytes for a million invoices). A first pass instead keeps where
/// each customer starts in the generator's stream — its position and counters, some 48 bytes a
/// customer — and [`Arrivals::customers`] makes each customer again from there, as often as
/// asked: the random stream is seekable, so a customer made again is the very same one.
pub struct Arrivals {
    invoices: u64,
    seed: u64,
    /// Every customer's start, sorted by first failure, then by the generator's order.
    starts: Vec<Start>,
}

/// Where one customer starts in the generator's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Start {
    /// The customer's first failure, in Unix seconds.
    first_failure: i64,
    /// Customers made before this one.
    customers: u64,
    /// Invoices made before this one's.
    invoices: u64,
    /// The generator's word position before this customer's first draw.
    word_pos: u128,
}

impl Arrivals {
    /// Makes the population once, keeping only where each customer starts.
    pub fn new(invoices: u64, seed: u64) -> Self {
        let mut generator = Generator::new(invoices, seed);
        let mut starts = Vec::new();
        loop {
            let (customers, made, word_pos) = (
                generator.customers,
                generator.invoices,
                generator.rng.get_word_pos(),
            );
            let Some(customer) = generator.next() else {
                break;
            };
            // A customer's invoices fail a billing period apart, the first one first.
            starts.push(Start {
                first_failure: customer[0].failed_at.as_second(),
                customers,
                invoices: made,
                word_pos,
            });
        }
        starts.sort_unstable();
        Self {
            invoices,
            seed,
            starts,
        }
    }

    /// Every customer, in the order of their first failure.
    pub fn customers(&self) -> impl Iterator<Item = Vec<FailedInvoice>> + Send + '_ {
        let mut generator = Generator::new(self.invoices, self.seed);
        self.starts.iter().filter_map(move |start| {
            generator.rng.set_word_pos(start.word_pos);
            generator.customers = start.customers;
            generator.invoices = start.invoices;
            // As many invoices left as when the customer was first made: its count draws the same.
            generator.left = self.invoices - start.invoices;
            generator.next()
        })
    }
}

impl Decline {
    /// The decline as Stripe reports it on a card of `brand`.
    fn reported(&self, brand: &str, rng: &mut ChaCha8Rng) -> DeclineTruth {
        let network_advice_code = (brand == "mastercard"
            && !self.mastercard.is_empty()
            && chance(rng, MASTERCARD_ADVICE_SHARE))
        .then(|| {
            let at = rng.random_range(0..self.mastercard.len() as u32) as usize;
            self.mastercard[at].to_owned()
        });
        DeclineTruth {
            code: self.code.map(str::to_owned),
            decline_code: Some(self.decline_code.to_owned()),
            advice_code: self.advice_code.map(str::to_owned),
            network_advice_code,
            network_decline_code: self.visa.filter(|_| brand == "visa").map(str::to_owned),
        }
    }
}

impl Cycle {
    /// Calls `each` with every payday in `[from, until]` (days of `calendar`). Monthly payroll
    /// that falls on a weekend is paid the Friday before, as US and European employers do.
    fn paydays(
        self,
        calendar: &[Date],
        (from, until): (usize, usize),
        odd_fortnight: bool,
        mut each: impl FnMut(usize),
    ) {
        let weekday = |day: usize| calendar[day].weekday().to_monday_zero_offset();
        let days_of_month: &[usize] = match self {
            Cycle::SemiMonthly => &[1, 15],
            Cycle::FirstOfMonth => &[1],
            Cycle::LastOfMonth => &[31],
            Cycle::BiWeekly | Cycle::Weekly => {
                let friday = Weekday::Friday.to_monday_zero_offset();
                let mut payday = from + (friday - weekday(from)).rem_euclid(7) as usize;
                let step = if self == Cycle::Weekly { 7 } else { 14 };
                if self == Cycle::BiWeekly && ((payday / 7) % 2 == 1) != odd_fortnight {
                    payday += 7;
                }
                while payday <= until {
                    each(payday);
                    payday += step;
                }
                return;
            }
        };
        let mut month = from + 1 - calendar[from].day() as usize;
        while month <= until {
            let length = calendar[month].days_in_month() as usize;
            for &day in days_of_month {
                let payday = month + day.min(length) - 1;
                // The calendar starts on a Thursday, so stepping back never leaves it.
                let payday = match calendar[payday].weekday() {
                    Weekday::Saturday => payday - 1,
                    Weekday::Sunday => payday - 2,
                    _ => payday,
                };
                if from <= payday && payday <= until {
                    each(payday);
                }
            }
            month += length;
        }
    }

    /// The days of the month a customer paid on before, when it is a fixed day.
    fn days_of_month(self) -> Option<Vec<u8>> {
        match self {
            Cycle::SemiMonthly => Some(vec![1, 15]),
            Cycle::FirstOfMonth => Some(vec![1]),
            // recoup's paydays read 31 as "the last day of the month".
            Cycle::LastOfMonth => Some(vec![31]),
            Cycle::BiWeekly | Cycle::Weekly => None,
        }
    }
}

/// The days the population can touch, and each place's UTC offset on each of them, worked out
/// once: a million customers' paydays are then array look-ups, not date and time-zone arithmetic.
/// A day is an index into `dates`.
struct Calendar {
    /// [`CALENDAR_DAYS`] dates from [`CALENDAR_START`].
    dates: Vec<Date>,
    /// [`CALENDAR_START`]'s midnight UTC, in seconds since the Unix epoch.
    start: i64,
    /// Each place's UTC offset at local noon on each day, in seconds, at
    /// `[place * CALENDAR_DAYS + day]`. Zones change their offset at night (01:00–03:00 local in
    /// every zone of [`PLACES`]) and this module places nothing before 05:00, so noon's offset
    /// holds for every time it uses (a test checks).
    offsets: Vec<i32>,
    /// [`FIRST_FAILURE_DAY`] as a day.
    first_failure_day: usize,
}

impl Calendar {
    fn new() -> Calendar {
        let dates: Vec<Date> = std::iter::successors(Some(CALENDAR_START), |d| d.tomorrow().ok())
            .take(CALENDAR_DAYS)
            .collect();
        let in_range = "the population's dates are far inside jiff's range";
        let offsets = PLACES
            .iter()
            .flat_map(|place| {
                let zone = TimeZone::get(place.zone).expect("PLACES' zones are in the tzdb");
                dates.iter().map(move |day| {
                    let noon = zone.to_ambiguous_timestamp(day.at(12, 0, 0, 0));
                    zone.to_offset(noon.compatible().expect(in_range)).seconds()
                })
            })
            .collect();
        let start = TimeZone::UTC.to_ambiguous_timestamp(CALENDAR_START.at(0, 0, 0, 0));
        Calendar {
            start: start.compatible().expect(in_range).as_second(),
            offsets,
            first_failure_day: (FIRST_FAILURE_DAY.duration_since(CALENDAR_START).as_hours() / 24)
                as usize,
            dates,
        }
    }

    /// `minute` minutes after local midnight of `day` at `place` (minute 300, 05:00, or later).
    fn local(&self, place: usize, day: usize, minute: u32) -> Timestamp {
        let offset = self.offsets[place * CALENDAR_DAYS + day];
        let utc = self.start + day as i64 * 86_400 + i64::from(minute) * 60 - i64::from(offset);
        Timestamp::from_second(utc).expect("the population's dates are far inside jiff's range")
    }

    /// The UTC date of `at`, a moment of the population.
    fn utc_date(&self, at: Timestamp) -> Date {
        self.dates[(at.as_second() - self.start).div_euclid(86_400) as usize]
    }
}

/// The stream behind [`population`]: its state is one generator and a few counters.
struct Generator {
    rng: ChaCha8Rng,
    calendar: Calendar,
    left: u64,
    customers: u64,
    invoices: u64,
}

impl Iterator for Generator {
    type Item = Vec<FailedInvoice>;

    fn next(&mut self) -> Option<Vec<FailedInvoice>> {
        if self.left == 0 {
            return None;
        }
        let count = pick(&mut self.rng, &INVOICES_PER_CUSTOMER).min(self.left);
        self.left -= count;
        Some(self.customer(count))
    }
}

impl Generator {
    fn new(invoices: u64, seed: u64) -> Self {
        Generator {
            rng: ChaCha8Rng::seed_from_u64(seed),
            calendar: Calendar::new(),
            left: invoices,
            customers: 0,
            invoices: 0,
        }
    }

    fn next_invoice_id(&mut self) -> String {
        self.invoices += 1;
        id("in_", self.invoices)
    }

    /// One customer with `count` failed invoices, a billing period apart, sharing card and truth.
    fn customer(&mut self, count: u64) -> Vec<FailedInvoice> {
        self.customers += 1;
        let customer = self.customers;
        let rng = &mut self.rng;

        let at = pick_index(rng, PLACES.iter().map(|p| p.weight));
        let place = &PLACES[at];
        let calendar = &self.calendar;
        let (plan, amount_due) = pick(rng, &PLANS);
        let decline = pick(rng, &DECLINES);
        let short_of_money = decline.truth == Truth::Payday;
        let brand = pick(rng, &BRANDS);
        let funding = match (brand, short_of_money) {
            ("amex", _) => "credit",
            (_, true) => pick(rng, &FUNDING_SHORT_OF_MONEY),
            (_, false) => pick(rng, &FUNDING_OTHERWISE),
        };

        let first_day =
            calendar.first_failure_day + rng.random_range(0..FAILURE_DAYS as u32) as usize;
        let failure_day = calendar.dates[first_day];
        let first_failure = calendar.local(at, first_day, between(rng, FAILURE_MINUTES));
        let failures: Vec<Timestamp> = (0..count)
            .map(|k| first_failure + BILLING_PERIOD * k as i32)
            .collect();

        let failure_month = calendar.utc_date(first_failure);
        let (exp_month, exp_year) = if decline.truth == Truth::ExpiredCard {
            month_offset(
                failure_month,
                -(between(rng, EXPIRED_CARD_MONTHS_AGO) as i32),
            )
        } else {
            // Past the last failure's month (a period is at most two calendar months on): a card
            // that expired since the first failure would contradict the later invoices' decline.
            let months_left = between(rng, LIVE_CARD_MONTHS_LEFT) + 2 * (count as u32 - 1);
            month_offset(failure_month, months_left as i32)
        };
        let card = CardTruth {
            fingerprint: id("fp_", customer),
            brand: brand.to_owned(),
            funding: Some(funding.to_owned()),
            exp_month: Some(exp_month),
            exp_year: Some(exp_year),
        };
        let first_decline = decline.reported(brand, rng);
        let outside_funds_decline = (short_of_money
            && decline.decline_code != "insufficient_funds"
            && chance(rng, LATER_DECLINES_SAY_FUNDS))
        .then(|| DeclineTruth {
            decline_code: Some("insufficient_funds".to_owned()),
            ..DeclineTruth::default()
        });

        let cycle = pick(rng, place.cycles);
        let funds = match decline.truth {
            Truth::Payday if !chance(rng, NO_MONEY_IN_HORIZON) => {
                // Local days: the failure's, to past the last failure's horizon (60 days of
                // 24 hours can end on the next local day across a DST change).
                let days = (first_day, first_day + 30 * (count as usize - 1) + 61);
                payday_funds(rng, calendar, at, cycle, days)
            }
            Truth::Transient => failures
                .iter()
                .map(|&failed_at| {
                    let from = failed_at + minutes(pick_between(rng, &GLITCH_CLEARS_MINUTES));
                    Funds {
                        from,
                        to: from + HORIZON,
                    }
                })
                .collect(),
            _ => Vec::new(),
        };
        let funds = consistent(funds, &failures);

        let updates_card = chance(rng, decline.updates_card).then(|| CardUpdate {
            after_nudges: pick(rng, &AFTER_NUDGES),
            // Two decimals: JSON prints it as written and serde_json reads back the same f64
            // (a longer decimal such as 0.9666666666666667 may come back one bit off).
            reply_hours: f64::from(pick_between(rng, &REPLY_HUNDREDTHS_OF_HOURS)) / 100.0,
        });
        let pays_unprompted_after = chance(rng, decline.pays_unprompted)
            .then(|| minutes(pick_between(rng, &PAYS_UNPROMPTED_MINUTES)));
        let tenure_months = pick_between(rng, &TENURE_MONTHS);
        let past_failures = pick_between(
            rng,
            if short_of_money {
                &PAST_FAILURES_SHORT_OF_MONEY
            } else {
                &PAST_FAILURES_OTHERWISE
            },
        );
        let high_value =
            amount_due >= HIGH_VALUE_AMOUNT || tenure_months >= HIGH_VALUE_TENURE_MONTHS;
        let gives_up_after_nudges = chance(
            rng,
            if high_value {
                GIVES_UP_HIGH_VALUE
            } else {
                GIVES_UP
            },
        )
        .then(|| pick(rng, &GIVES_UP_AFTER));
        // A customer who failed before and then paid did so just after payday; one who never
        // failed paid on the renewal day; one in their first month has no history.
        let past_payment_days = match cycle.days_of_month() {
            _ if tenure_months == 0 => Vec::new(),
            Some(days) if short_of_money && past_failures > 0 => days,
            _ => vec![failure_day.day() as u8],
        };
        let mut metadata = BTreeMap::from([("plan".to_owned(), plan.to_owned())]);
        if chance(rng, SMS_OPT_IN) {
            metadata.insert("sms_opt_in".to_owned(), "true".to_owned());
        }

        let windows = |failed_at: Timestamp| -> Vec<Funds> {
            funds
                .iter()
                .filter(|w| failed_at < w.from && w.from < failed_at + HORIZON)
                .copied()
                .collect()
        };
        let mut invoices = Vec::with_capacity(failures.len());
        invoices.push(FailedInvoice {
            invoice_id: self.next_invoice_id(),
            customer_id: id("cus_", customer),
            subscription_id: Some(id("sub_", customer)),
            amount_due,
            currency: place.currency.to_owned(),
            failed_at: first_failure,
            timezone: place.zone.to_owned(),
            country: Some(place.country.to_owned()),
            card,
            metadata,
            tenure_months,
            past_failures,
            past_payment_days,
            first_decline,
            funds: windows(first_failure),
            outside_funds_decline,
            card_dead: decline.truth == Truth::DeadCard,
            updates_card,
            pays_unprompted_at: pays_unprompted_after.map(|after| first_failure + after),
            gives_up_after_nudges,
        });
        // A later invoice is the same customer a billing period on: one month older, one
        // failure more.
        for &failed_at in &failures[1..] {
            let before = &invoices[invoices.len() - 1];
            let next = FailedInvoice {
                invoice_id: self.next_invoice_id(),
                failed_at,
                tenure_months: before.tenure_months + 1,
                past_failures: before.past_failures + 1,
                funds: windows(failed_at),
                pays_unprompted_at: pays_unprompted_after.map(|after| failed_at + after),
                ..before.clone()
            };
            invoices.push(next);
        }
        invoices
    }
}

/// The windows a payday customer has money in, from their first failure to the last one's
/// horizon.
fn payday_funds(
    rng: &mut ChaCha8Rng,
    calendar: &Calendar,
    place: usize,
    cycle: Cycle,
    days: (usize, usize),
) -> Vec<Funds> {
    let odd_fortnight = chance(rng, 500);
    let mut funds = Vec::new();
    cycle.paydays(&calendar.dates, days, odd_fortnight, |payday| {
        if chance(rng, PAYDAY_COVERS_INVOICE) {
            let from = calendar.local(place, payday, between(rng, PAY_LANDS_MINUTES));
            let to = from + minutes(pick_between(rng, &MONEY_LASTS_MINUTES));
            funds.push(Funds { from, to });
        }
    });
    funds
}

/// Makes the windows agree with the failures: a payment failed at each failure, so no window may
/// hold one. A window running over a later failure ends there (the money was gone); one starting
/// at or before the first failure is dropped.
fn consistent(mut funds: Vec<Funds>, failures: &[Timestamp]) -> Vec<Funds> {
    for window in &mut funds {
        for &failed_at in failures {
            if window.from < failed_at && failed_at < window.to {
                window.to = failed_at;
            }
        }
    }
    funds.retain(|w| failures[0] < w.from && !failures.contains(&w.from));
    funds
}

/// The (month, year) `months` months after `day`'s month.
fn month_offset(day: Date, months: i32) -> (u8, i16) {
    let count = i32::from(day.year()) * 12 + i32::from(day.month()) - 1 + months;
    (
        (count.rem_euclid(12) + 1) as u8,
        count.div_euclid(12) as i16,
    )
}

/// `prefix` and `number` in decimal. Three ids an invoice, a million invoices: this skips the
/// formatting machinery that `format!` goes through, a tenth of the generator's time.
fn id(prefix: &str, number: u64) -> String {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    let mut rest = number;
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    let mut id = String::with_capacity(prefix.len() + digits.len() - start);
    id.push_str(prefix);
    id.extend(digits[start..].iter().map(|&digit| char::from(digit)));
    id
}

fn minutes(count: u32) -> SignedDuration {
    SignedDuration::from_mins(i64::from(count))
}

/// True `per_thousand` times in a thousand.
fn chance(rng: &mut ChaCha8Rng, per_thousand: u32) -> bool {
    rng.random_range(0..1000) < per_thousand
}

fn between(rng: &mut ChaCha8Rng, (low, high): (u32, u32)) -> u32 {
    rng.random_range(low..high)
}

/// A value from a weighted table of ranges: a range by weight, then a value in it.
fn pick_between(rng: &mut ChaCha8Rng, table: &[((u32, u32), u32)]) -> u32 {
    let range = pick(rng, table);
    between(rng, range)
}

fn pick<T: Copy>(rng: &mut ChaCha8Rng, table: &[(T, u32)]) -> T {
    table[pick_index(rng, table.iter().map(|&(_, weight)| weight))].0
}

/// An index drawn in proportion to `weights`.
fn pick_index(rng: &mut ChaCha8Rng, weights: impl Iterator<Item = u32> + Clone) -> usize {
    let mut roll = rng.random_range(0..weights.clone().sum::<u32>());
    for (index, weight) in weights.enumerate() {
        if roll < weight {
            return index;
        }
        roll -= weight;
    }
    unreachable!("the roll is below the sum of the weights")
}
