//! A synthetic population of failed invoices, for `recoup simulate --synthetic N [--seed S]`.
//!
//! A policy can only be judged against customers whose truth is known: when their account has
//! money again, whether their card is dead, whether they would add a new card after a reminder.
//! Real histories rarely record that, so this module invents customers whose truth follows what
//! is known about failed subscription payments, and writes them as [`FailedInvoice`]s — the same
//! records `--population FILE` reads (CONTRACT.md, "Simulation population").
//!
//! What it models, and why:
//!
//! - **Why the payment failed.** Each customer draws one row of `DECLINES`: the signals Stripe
//!   would report (`code`, `decline_code`, `advice_code`, the Visa response code, sometimes a
//!   Mastercard advice code) and the story behind them (`Truth`). The codes are the ones
//!   DOMAIN.md's decline table and recoup's classifier name, so every class a policy treats
//!   differently — soft, ambiguous, card data, action required, hard — is present in a known share.
//! - **When money comes back.** An empty account is refilled on payday, in the customer's local
//!   early morning, and is spent again within days (DOMAIN.md: paydays on the 1st and 15th, or
//!   Fridays). A customer is paid semi-monthly, monthly on the 1st or the last day, bi-weekly or
//!   weekly; payroll due on a weekend is paid the Friday before. A glitch at the issuer
//!   (`issuer_not_available`, `processing_error`, …) instead clears hours or days after the
//!   failure, whatever the date. A dead, lost or stolen card never pays again.
//! - **What the customer does.** Some add a new card after a reminder — the first two reminders
//!   move more people than later ones, and people who know their card changed move most; some pay
//!   by themselves; a minority cancel when reminded too often, more of them among long-standing,
//!   high-value customers (seeds/001's segments).
//! - **Who they are.** Countries and IANA zones where a SaaS business's customers live, the
//!   currency they are billed in, a plan and its price, card brand, funding and expiry, tenure,
//!   earlier failures.
//!
//! Every parameter sits in the constants below, with its source: DOMAIN.md, CONTRACT.md, a seed
//! article, a public statistic, or — where no source gives a number — a stated assumption.
//! Weights are in parts per thousand.
//!
//! The population is a stream: [`population`] yields one customer (their invoices, consecutive,
//! as the simulator requires) at a time, so a million invoices take no more memory than one.
//! It is deterministic: the only randomness is a ChaCha8 generator seeded from `seed`, draws are
//! integers (no platform-dependent floating-point functions), and the calendar is fixed, so a
//! `(invoices, seed)` pair names the same population on every machine.

use std::collections::BTreeMap;

use jiff::civil::{Date, Weekday, date};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::population::{CardTruth, CardUpdate, DeclineTruth, FailedInvoice, Funds};

// ---------------------------------------------------------------------------------------------
// Parameters. Weights are per thousand; ranges of minutes are `[low, high)`.
// ---------------------------------------------------------------------------------------------

/// How many failed invoices a customer has in the population. Most fail once; a customer whose
/// card stays broken fails again at the next renewal. Assumption (no source gives a number).
const INVOICES_PER_CUSTOMER: [(u64, u32); 3] = [(1, 880), (2, 100), (3, 20)];

/// A customer's next invoice fails one billing period later (monthly plans).
const BILLING_PERIOD: SignedDuration = SignedDuration::from_hours(30 * 24);

/// The simulation horizon: nothing after 60 days from `failed_at` counts (CONTRACT.md).
const HORIZON: SignedDuration = SignedDuration::from_hours(60 * 24);

/// First invoices fail on a local day in [`FIRST_FAILURE_DAY`], + [`FAILURE_DAYS`] days, at a
/// local time in [`FAILURE_MINUTES`]: a renewal happens at the hour the customer signed up, which
/// is when people are awake. A fixed calendar (not the wall clock) keeps the output reproducible.
const FIRST_FAILURE_DAY: Date = date(2026, 1, 5);
const FAILURE_DAYS: usize = 86; // through 2026-03-31
const FAILURE_MINUTES: (u32, u32) = (7 * 60, 23 * 60);

/// The days the population can touch: the last failure's third invoice and its horizon end
/// within a year. It starts on the first of a month, a Thursday (see [`Cycle::paydays`]).
const CALENDAR_START: Date = date(2026, 1, 1);
const CALENDAR_DAYS: usize = 366;

/// Where customers live: country, a zone of that country, the currency they are billed in, and
/// the share of customers. Assumption: a US-led SaaS customer base with Europe, Latin America and
/// Asia-Pacific behind it; within the US, zones roughly by population. Pay cycles follow the
/// country (see [`CYCLES_NORTH_AMERICA`]).
const PLACES: [Place; 17] = [
    place("US", "America/New_York", "usd", 250, &CYCLES_NORTH_AMERICA),
    place("US", "America/Chicago", "usd", 155, &CYCLES_NORTH_AMERICA),
    place("US", "America/Denver", "usd", 35, &CYCLES_NORTH_AMERICA),
    place("US", "America/Phoenix", "usd", 10, &CYCLES_NORTH_AMERICA),
    place(
        "US",
        "America/Los_Angeles",
        "usd",
        100,
        &CYCLES_NORTH_AMERICA,
    ),
    place("CA", "America/Toronto", "usd", 30, &CYCLES_NORTH_AMERICA),
    place("CA", "America/Vancouver", "usd", 10, &CYCLES_NORTH_AMERICA),
    place("GB", "Europe/London", "gbp", 90, &CYCLES_ELSEWHERE),
    place("DE", "Europe/Berlin", "eur", 70, &CYCLES_ELSEWHERE),
    place("FR", "Europe/Paris", "eur", 50, &CYCLES_ELSEWHERE),
    place("ES", "Europe/Madrid", "eur", 20, &CYCLES_ELSEWHERE),
    place("NL", "Europe/Amsterdam", "eur", 20, &CYCLES_ELSEWHERE),
    place("BR", "America/Sao_Paulo", "usd", 40, &CYCLES_ELSEWHERE),
    place("MX", "America/Mexico_City", "usd", 20, &CYCLES_ELSEWHERE),
    place("IN", "Asia/Kolkata", "usd", 40, &CYCLES_ELSEWHERE),
    place("AU", "Australia/Sydney", "usd", 40, &CYCLES_ELSEWHERE),
    place("JP", "Asia/Tokyo", "usd", 20, &CYCLES_ELSEWHERE),
];

/// Plans and their monthly price in the currency's minor unit (the same number in usd, eur and
/// gbp, as SaaS price lists usually are). Assumption: self-serve tiers dominate, a tail of team
/// and business plans.
const PLANS: [((&str, i64), u32); 7] = [
    (("starter", 900), 250),
    (("basic", 1500), 150),
    (("pro", 2900), 250),
    (("plus", 4900), 170),
    (("team", 9900), 100),
    (("business", 19900), 50),
    (("enterprise", 49900), 30),
];

/// Card brands as Stripe names them. Assumption: Visa leads, then Mastercard, some Amex.
const BRANDS: [(&str, u32); 4] = [
    ("visa", 540),
    ("mastercard", 350),
    ("amex", 90),
    ("discover", 20),
];

/// Card funding. Debit and prepaid cards run dry far more often than credit cards, so customers
/// whose account is short of money (a [`Truth::Payday`] story) hold more of them. Assumption.
const FUNDING_SHORT_OF_MONEY: [(&str, u32); 3] =
    [("debit", 550), ("credit", 350), ("prepaid", 100)];
const FUNDING_OTHERWISE: [(&str, u32); 3] = [("credit", 650), ("debit", 320), ("prepaid", 30)];

/// A live card expires 0 to 47 months after the failure month (cards are issued for 3–5 years),
/// so a few expire within the horizon, as real cards on file do. An `expired_card` decline's
/// card expired 1 to 3 months before the failure month. Months are UTC months, as the simulator
/// reads an expiry. Assumption.
const LIVE_CARD_MONTHS_LEFT: (u32, u32) = (0, 48);
const EXPIRED_CARD_MONTHS_AGO: (u32, u32) = (1, 4);

/// The decline mix. Each row is one way a renewal fails, with the signals Stripe reports (DOMAIN.md,
/// "Which declines to retry", and `policy::decline`), the story behind it, and per thousand such
/// customers how many add a new card after nudges and how many pay by themselves.
///
/// Visa response codes are Visa's own for the same reason (51 insufficient funds, 05 do not
/// honor, 54 expired card, 41 lost, 43 stolen, R1 revocation, …); only the hard rows carry a
/// category 1 code.
///
/// Shares by class: soft 500 (insufficient funds alone 400), ambiguous 220, card data 170,
/// action required 30, hard 80. Assumption in the order commonly reported for subscription
/// payments — insufficient funds the largest single reason, expired cards next, then vague bank
/// declines — which seeds/004 echoes ("around 50% of all lost customers are due to failed
/// transactions and expired credit cards"); no seed gives the shares themselves.
///
/// Card updates are likelier when the customer knows the card changed (expired, lost, stolen:
/// seeds/004, "forgot to update their billing information when their credit card expired") and
/// rare for a customer who told the bank to stop paying (`revocation_of_authorization`).
const DECLINES: [(Decline, u32); 21] = [
    // Soft: the account is short of money until payday.
    (
        decline("insufficient_funds", Truth::Payday, 120, 100)
            .visa("51")
            .mastercard(&MASTERCARD_WAIT),
        400,
    ),
    // Soft: a glitch at the issuer or network, or a spending limit, that clears by itself.
    (
        decline("issuer_not_available", Truth::Transient, 50, 50)
            .visa("91")
            .mastercard(&MASTERCARD_WAIT),
        30,
    ),
    (
        decline("processing_error", Truth::Transient, 50, 50)
            .code("processing_error")
            .visa("96")
            .mastercard(&MASTERCARD_WAIT),
        25,
    ),
    (
        decline("try_again_later", Truth::Transient, 50, 50).mastercard(&MASTERCARD_WAIT),
        20,
    ),
    (
        decline("card_velocity_exceeded", Truth::Transient, 50, 50)
            .visa("61")
            .mastercard(&MASTERCARD_WAIT),
        15,
    ),
    (
        decline("generic_decline", Truth::Transient, 50, 50)
            .advice("try_again_later")
            .mastercard(&MASTERCARD_WAIT),
        10,
    ),
    // Ambiguous: the bank does not say why; behind it, no money, a glitch, or a dead card.
    (
        decline("do_not_honor", Truth::Payday, 150, 100).visa("05"),
        70,
    ),
    (
        decline("do_not_honor", Truth::Transient, 50, 50).visa("05"),
        25,
    ),
    (
        decline("do_not_honor", Truth::DeadCard, 500, 60).visa("05"),
        40,
    ),
    (decline("generic_decline", Truth::Payday, 150, 100), 30),
    (decline("generic_decline", Truth::Transient, 50, 50), 15),
    (decline("generic_decline", Truth::DeadCard, 500, 60), 40),
    // Card data: the card on file cannot be charged as it is.
    (
        decline("expired_card", Truth::ExpiredCard, 650, 120)
            .code("expired_card")
            .visa("54")
            .mastercard(&MASTERCARD_NEW_ACCOUNT),
        120,
    ),
    (
        decline("incorrect_cvc", Truth::DeadCard, 600, 80)
            .code("incorrect_cvc")
            .visa("N7"),
        25,
    ),
    (
        decline("incorrect_zip", Truth::DeadCard, 600, 80).code("incorrect_zip"),
        10,
    ),
    (
        decline("do_not_honor", Truth::DeadCard, 550, 80)
            .advice("confirm_card_data")
            .mastercard(&MASTERCARD_NEW_ACCOUNT),
        15,
    ),
    // Action required: an off-session charge needs the customer to authenticate (SCA). The
    // contract has no separate "authenticates" event; a customer who completes it after nudges
    // is modelled as `updates_card` (a payment method that then succeeds).
    (
        decline("authentication_required", Truth::MustAuthenticate, 550, 120)
            .code("authentication_required")
            .visa("1A"),
        30,
    ),
    // Hard: the issuer will never approve this card again.
    (
        decline("lost_card", Truth::DeadCard, 600, 60)
            .visa("41")
            .mastercard(&MASTERCARD_NEVER),
        20,
    ),
    (
        decline("stolen_card", Truth::DeadCard, 600, 60)
            .visa("43")
            .mastercard(&MASTERCARD_NEVER),
        25,
    ),
    (
        decline("revocation_of_authorization", Truth::DeadCard, 150, 20)
            .visa("R1")
            .mastercard(&MASTERCARD_NEVER),
        15,
    ),
    (
        decline("generic_decline", Truth::DeadCard, 450, 50)
            .advice("do_not_try_again")
            .mastercard(&MASTERCARD_NEVER),
        20,
    ),
];

/// Mastercard adds its Merchant Advice Code to a share of its declines on Mastercard cards;
/// which codes fit depends on the row: 24/25 ("retry after 1 hour / 24 hours") on soft declines,
/// 01 ("new account information") on card-data ones, 03 ("do not try again") on hard ones
/// (DOMAIN.md, decline table; `policy::decline::by_mastercard`). Share: assumption.
const MASTERCARD_ADVICE_SHARE: u32 = 300;
const MASTERCARD_WAIT: [&str; 2] = ["24", "25"];
const MASTERCARD_NEW_ACCOUNT: [&str; 1] = ["01"];
const MASTERCARD_NEVER: [&str; 1] = ["03"];

/// Of the customers whose bank first said only `do_not_honor`/`generic_decline` although the
/// account was empty, how many get `insufficient_funds` on later declines (issuers are not
/// consistent). Assumption.
const LATER_DECLINES_SAY_FUNDS: u32 = 300;

/// How US and Canadian customers are paid: bi-weekly 36.5%, weekly 32.4%, semi-monthly 19.8%,
/// monthly 11.3% of private businesses (US BLS, Current Employment Statistics, March 2013;
/// "How frequently do private businesses pay workers?"), monthly split between the 1st and the
/// last day. Semi-monthly is on the 1st and 15th (DOMAIN.md, "Timing that recovers more").
const CYCLES_NORTH_AMERICA: [(Cycle, u32); 5] = [
    (Cycle::BiWeekly, 365),
    (Cycle::Weekly, 325),
    (Cycle::SemiMonthly, 198),
    (Cycle::FirstOfMonth, 56),
    (Cycle::LastOfMonth, 56),
];

/// Elsewhere a monthly salary is the norm, usually paid at the end of the month. Assumption.
const CYCLES_ELSEWHERE: [(Cycle, u32); 5] = [
    (Cycle::LastOfMonth, 500),
    (Cycle::FirstOfMonth, 200),
    (Cycle::SemiMonthly, 150),
    (Cycle::BiWeekly, 100),
    (Cycle::Weekly, 50),
];

/// Pay lands in the early local morning (payroll deposits are posted overnight). Assumption.
const PAY_LANDS_MINUTES: (u32, u32) = (5 * 60, 9 * 60);

/// How long the money lasts after payday before other debits take it: about a day, two or three
/// days, or most of a week (never longer than a weekly cycle, so windows never overlap).
/// Assumption.
const MONEY_LASTS_MINUTES: [((u32, u32), u32); 3] = [
    ((12 * 60, 36 * 60), 300),
    ((36 * 60, 84 * 60), 450),
    ((84 * 60, 144 * 60), 250),
];

/// Not every payday leaves enough for the invoice; and some customers (a lost job, a closed
/// account) have no money at all before the horizon. Assumption.
const PAYDAY_COVERS_INVOICE: u32 = 850;
const NO_MONEY_IN_HORIZON: u32 = 120;

/// A glitch clears within hours (half), a day or two, or up to a week; from then on the card
/// works (DOMAIN.md: these are "soft, time helps"). The times: assumption.
const GLITCH_CLEARS_MINUTES: [((u32, u32), u32); 3] = [
    ((60, 12 * 60), 500),
    ((12 * 60, 48 * 60), 350),
    ((48 * 60, 7 * 24 * 60), 150),
];

/// After how many nudges a customer who will add a card does so: the first reminders move the
/// most people (seeds/004: a friendly first reminder, then firmer ones; seeds/000 and seeds/004:
/// reminders at 3 or 7, 14 and 21 days). Assumption for the shares.
const AFTER_NUDGES: [(u32, u32); 4] = [(1, 450), (2, 300), (3, 150), (4, 100)];

/// How long after that nudge the new card appears, in hundredths of an hour: minutes, hours, or
/// a day or two. Assumption.
const REPLY_HUNDREDTHS_OF_HOURS: [((u32, u32), u32); 3] =
    [((8, 100), 250), ((100, 1200), 350), ((1200, 4800), 400)];

/// When a customer who pays by themselves does so, after each failure: within days (noticed the
/// email from Stripe or lost access), within weeks, or late — some of those after the 60-day
/// horizon. Assumption.
const PAYS_UNPROMPTED_MINUTES: [((u32, u32), u32); 3] = [
    ((30, 3 * 24 * 60), 350),
    ((3 * 24 * 60, 21 * 24 * 60), 350),
    ((21 * 24 * 60, 75 * 24 * 60), 300),
];

/// Customers who cancel when nagged, and after how many nudges. High-value, long-standing
/// customers expect fewer, personal messages (seeds/001's segment table; DOMAIN.md, "Talking to
/// customers"), so more of them give up. Shares: assumption.
const GIVES_UP: u32 = 150;
const GIVES_UP_HIGH_VALUE: u32 = 250;
const HIGH_VALUE_AMOUNT: i64 = 9900;
const HIGH_VALUE_TENURE_MONTHS: u32 = 24;
const GIVES_UP_AFTER: [(u32, u32); 4] = [(2, 200), (3, 350), (4, 250), (5, 200)];

/// Months as a customer before this failure. Assumption: young subscriptions churn most, so
/// they are most of a failing population.
const TENURE_MONTHS: [((u32, u32), u32); 3] = [((0, 7), 350), ((7, 25), 400), ((25, 73), 250)];

/// Earlier failed payments: customers short of money have a record of it (seeds/001's
/// "risk-prone clients: history of late payments"). Assumption for the shares.
const PAST_FAILURES_SHORT_OF_MONEY: [((u32, u32), u32); 4] =
    [((0, 1), 400), ((1, 2), 300), ((2, 3), 180), ((3, 6), 120)];
const PAST_FAILURES_OTHERWISE: [((u32, u32), u32); 4] =
    [((0, 1), 650), ((1, 2), 230), ((2, 3), 80), ((3, 6), 40)];

/// Customers who opted in to SMS nudges (`metadata.sms_opt_in`, CONTRACT.md "Nudges").
/// Assumption.
const SMS_OPT_IN: u32 = 250;

// ---------------------------------------------------------------------------------------------

/// One customer's failed invoices (consecutive, same customer_id), in order.
///
/// Exactly `invoices` invoices in all; the same `(invoices, seed)` always gives the same
/// population.
pub fn population(invoices: u64, seed: u64) -> impl Iterator<Item = Vec<FailedInvoice>> + Send {
    Generator {
        rng: ChaCha8Rng::seed_from_u64(seed),
        calendar: Calendar::new(),
        left: invoices,
        customers: 0,
        invoices: 0,
    }
}

/// The story behind a decline: what an attempt on this card meets over the horizon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Truth {
    /// Money arrives on paydays and lasts a few days.
    Payday,
    /// The card works again some hours or days after the failure.
    Transient,
    /// No attempt on this card ever succeeds.
    DeadCard,
    /// The card's expiry is past; the simulator declines it with `expired_card`.
    ExpiredCard,
    /// Every off-session attempt needs authentication, so none succeeds.
    MustAuthenticate,
}

/// One row of [`DECLINES`].
#[derive(Debug, Clone, Copy)]
struct Decline {
    /// Stripe's error `code` when it is not `card_declined`.
    code: Option<&'static str>,
    decline_code: &'static str,
    advice_code: Option<&'static str>,
    /// Visa's response code, reported as `network_decline_code` on Visa cards.
    visa: Option<&'static str>,
    /// Mastercard advice codes that fit this decline.
    mastercard: &'static [&'static str],
    truth: Truth,
    /// Per thousand customers, how many add a new card after nudges.
    updates_card: u32,
    /// Per thousand customers, how many pay by themselves.
    pays_unprompted: u32,
}

const fn decline(
    decline_code: &'static str,
    truth: Truth,
    updates_card: u32,
    pays_unprompted: u32,
) -> Decline {
    Decline {
        code: None,
        decline_code,
        advice_code: None,
        visa: None,
        mastercard: &[],
        truth,
        updates_card,
        pays_unprompted,
    }
}

impl Decline {
    const fn code(self, code: &'static str) -> Self {
        Self {
            code: Some(code),
            ..self
        }
    }

    const fn advice(self, advice: &'static str) -> Self {
        Self {
            advice_code: Some(advice),
            ..self
        }
    }

    const fn visa(self, response: &'static str) -> Self {
        Self {
            visa: Some(response),
            ..self
        }
    }

    const fn mastercard(self, advice: &'static [&'static str]) -> Self {
        Self {
            mastercard: advice,
            ..self
        }
    }

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

/// A place customers live in: one row of [`PLACES`].
struct Place {
    country: &'static str,
    zone: &'static str,
    currency: &'static str,
    weight: u32,
    cycles: &'static [(Cycle, u32)],
}

const fn place(
    country: &'static str,
    zone: &'static str,
    currency: &'static str,
    weight: u32,
    cycles: &'static [(Cycle, u32)],
) -> Place {
    Place {
        country,
        zone,
        currency,
        weight,
        cycles,
    }
}

/// How often, and on which days, a customer is paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cycle {
    /// The 1st and the 15th.
    SemiMonthly,
    FirstOfMonth,
    LastOfMonth,
    /// Every other Friday.
    BiWeekly,
    /// Every Friday.
    Weekly,
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

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use jiff::ToSpan;

    use super::*;
    use crate::policy::DeclineClass;
    use crate::policy::decline::{Signals, classify};

    fn invoices(count: u64, seed: u64) -> Vec<FailedInvoice> {
        population(count, seed).flatten().collect()
    }

    fn class(decline: &DeclineTruth, brand: &str) -> DeclineClass {
        classify(&Signals {
            code: decline.code.as_deref(),
            decline_code: decline.decline_code.as_deref(),
            advice_code: decline.advice_code.as_deref(),
            network_advice_code: decline.network_advice_code.as_deref(),
            network_decline_code: decline.network_decline_code.as_deref(),
            brand: Some(brand),
        })
        .class
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
            let read = FailedInvoice::parse(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
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
}
