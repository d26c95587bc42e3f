//! The synthetic population's parameters: every share, range and table the generator draws from,
//! each with its source — the domain notes in `docs/design/declines.md`, `docs/design/timing.md` and
//! `docs/design/dunning-practice.md`, a public statistic,
//! or, where no source gives a number, a stated assumption. Weights are per thousand; ranges of
//! minutes are `[low, high)`. Changing a number here changes the population, and nothing else.

use jiff::SignedDuration;
use jiff::civil::{Date, date};

// ---------------------------------------------------------------------------------------------
// Parameters. Weights are per thousand; ranges of minutes are `[low, high)`.
// ---------------------------------------------------------------------------------------------

/// How many failed invoices a customer has in the population. Most fail once; a customer whose
/// card stays broken fails again at the next renewal. Assumption (no source gives a number).
pub(super) const INVOICES_PER_CUSTOMER: [(u64, u32); 3] = [(1, 880), (2, 100), (3, 20)];

/// A customer's next invoice fails one billing period later (monthly plans).
pub(super) const BILLING_PERIOD: SignedDuration = SignedDuration::from_hours(30 * 24);

/// The simulation horizon: nothing after 60 days from `failed_at` counts (`docs/reference/population.md#how-the-simulator-plays-a-line`).
pub(super) const HORIZON: SignedDuration = SignedDuration::from_hours(60 * 24);

/// First invoices fail on a local day in [`FIRST_FAILURE_DAY`], + [`FAILURE_DAYS`] days, at a
/// local time in [`FAILURE_MINUTES`]: a renewal happens at the hour the customer signed up, which
/// is when people are awake. A fixed calendar (not the wall clock) keeps the output reproducible.
pub(super) const FIRST_FAILURE_DAY: Date = date(2026, 1, 5);
pub(super) const FAILURE_DAYS: usize = 86; // through 2026-03-31
pub(super) const FAILURE_MINUTES: (u32, u32) = (7 * 60, 23 * 60);

/// The days the population can touch: the last failure's third invoice and its horizon end
/// within a year. It starts on the first of a month, a Thursday (see [`Cycle::paydays`]).
pub(super) const CALENDAR_START: Date = date(2026, 1, 1);
pub(super) const CALENDAR_DAYS: usize = 366;

/// Where customers live: country, a zone of that country, the currency they are billed in, and
/// the share of customers. Assumption: a US-led SaaS customer base with Europe, Latin America and
/// Asia-Pacific behind it; within the US, zones roughly by population. Pay cycles follow the
/// country (see [`CYCLES_NORTH_AMERICA`]).
pub(super) const PLACES: [Place; 17] = [
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
pub(super) const PLANS: [((&str, i64), u32); 7] = [
    (("starter", 900), 250),
    (("basic", 1500), 150),
    (("pro", 2900), 250),
    (("plus", 4900), 170),
    (("team", 9900), 100),
    (("business", 19900), 50),
    (("enterprise", 49900), 30),
];

/// Card brands as Stripe names them. Assumption: Visa leads, then Mastercard, some Amex.
pub(super) const BRANDS: [(&str, u32); 4] = [
    ("visa", 540),
    ("mastercard", 350),
    ("amex", 90),
    ("discover", 20),
];

/// Card funding. Debit and prepaid cards run dry far more often than credit cards, so customers
/// whose account is short of money (a [`Truth::Payday`] story) hold more of them. Assumption.
pub(super) const FUNDING_SHORT_OF_MONEY: [(&str, u32); 3] =
    [("debit", 550), ("credit", 350), ("prepaid", 100)];
pub(super) const FUNDING_OTHERWISE: [(&str, u32); 3] =
    [("credit", 650), ("debit", 320), ("prepaid", 30)];

/// A live card expires 0 to 47 months after the failure month (cards are issued for 3–5 years),
/// so a few expire within the horizon, as real cards on file do. An `expired_card` decline's
/// card expired 1 to 3 months before the failure month. Months are UTC months, as the simulator
/// reads an expiry. Assumption.
pub(super) const LIVE_CARD_MONTHS_LEFT: (u32, u32) = (0, 48);
pub(super) const EXPIRED_CARD_MONTHS_AGO: (u32, u32) = (1, 4);

/// The decline mix. Each row is one way a renewal fails, with the signals Stripe reports (`docs/design/declines.md#decline-classes`, and `policy::decline`), the story behind it, and per thousand such
/// customers how many add a new card after nudges and how many pay by themselves.
///
/// Visa response codes are Visa's own for the same reason (51 insufficient funds, 05 do not
/// honor, 54 expired card, 41 lost, 43 stolen, R1 revocation, …); only the hard rows carry a
/// category 1 code.
///
/// Shares by class: soft 500 (insufficient funds alone 400), ambiguous 220, card data 170,
/// action required 30, hard 80. Assumption in the order commonly reported for subscription
/// payments — insufficient funds the largest single reason, expired cards next, then vague bank
/// declines — which article 4 of `docs/design/dunning-practice.md#escalate-in-tiers` echoes ("around 50% of all lost customers are due to failed
/// transactions and expired credit cards"); no seed gives the shares themselves.
///
/// Card updates are likelier when the customer knows the card changed (expired, lost, stolen:
/// article 4, "forgot to update their billing information when their credit card expired") and
/// rare for a customer who told the bank to stop paying (`revocation_of_authorization`).
pub(super) const DECLINES: [(Decline, u32); 21] = [
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
/// (`docs/design/declines.md#mastercard-merchant-advice-codes`; `policy::decline::by_mastercard`). Share: assumption.
pub(super) const MASTERCARD_ADVICE_SHARE: u32 = 300;
pub(super) const MASTERCARD_WAIT: [&str; 2] = ["24", "25"];
pub(super) const MASTERCARD_NEW_ACCOUNT: [&str; 1] = ["01"];
pub(super) const MASTERCARD_NEVER: [&str; 1] = ["03"];

/// Of the customers whose bank first said only `do_not_honor`/`generic_decline` although the
/// account was empty, how many get `insufficient_funds` on later declines (issuers are not
/// consistent). Assumption.
pub(super) const LATER_DECLINES_SAY_FUNDS: u32 = 300;

/// How US and Canadian customers are paid: bi-weekly 36.5%, weekly 32.4%, semi-monthly 19.8%,
/// monthly 11.3% of private businesses (US BLS, Current Employment Statistics, March 2013;
/// "How frequently do private businesses pay workers?"), monthly split between the 1st and the
/// last day. Semi-monthly is on the 1st and 15th (`docs/design/timing.md#paydays`).
pub(super) const CYCLES_NORTH_AMERICA: [(Cycle, u32); 5] = [
    (Cycle::BiWeekly, 365),
    (Cycle::Weekly, 325),
    (Cycle::SemiMonthly, 198),
    (Cycle::FirstOfMonth, 56),
    (Cycle::LastOfMonth, 56),
];

/// Elsewhere a monthly salary is the norm, usually paid at the end of the month. Assumption.
pub(super) const CYCLES_ELSEWHERE: [(Cycle, u32); 5] = [
    (Cycle::LastOfMonth, 500),
    (Cycle::FirstOfMonth, 200),
    (Cycle::SemiMonthly, 150),
    (Cycle::BiWeekly, 100),
    (Cycle::Weekly, 50),
];

/// Pay lands in the early local morning (payroll deposits are posted overnight). Assumption.
pub(super) const PAY_LANDS_MINUTES: (u32, u32) = (5 * 60, 9 * 60);

/// How long the money lasts after payday before other debits take it: about a day, two or three
/// days, or most of a week (never longer than a weekly cycle, so windows never overlap).
/// Assumption.
pub(super) const MONEY_LASTS_MINUTES: [((u32, u32), u32); 3] = [
    ((12 * 60, 36 * 60), 300),
    ((36 * 60, 84 * 60), 450),
    ((84 * 60, 144 * 60), 250),
];

/// Not every payday leaves enough for the invoice; and some customers (a lost job, a closed
/// account) have no money at all before the horizon. Assumption.
pub(super) const PAYDAY_COVERS_INVOICE: u32 = 850;
pub(super) const NO_MONEY_IN_HORIZON: u32 = 120;

/// A glitch clears within hours (half), a day or two, or up to a week; from then on the card
/// works (`docs/design/declines.md#decline-classes`: these are "soft, time helps"). The times: assumption.
pub(super) const GLITCH_CLEARS_MINUTES: [((u32, u32), u32); 3] = [
    ((60, 12 * 60), 500),
    ((12 * 60, 48 * 60), 350),
    ((48 * 60, 7 * 24 * 60), 150),
];

/// After how many nudges a customer who will add a card does so: the first reminders move the
/// most people (`docs/design/dunning-practice.md#escalate-in-tiers`, article 4: a friendly first reminder, then firmer ones; articles 0 and 4:
/// reminders at 3 or 7, 14 and 21 days). Assumption for the shares.
pub(super) const AFTER_NUDGES: [(u32, u32); 4] = [(1, 450), (2, 300), (3, 150), (4, 100)];

/// How long after that nudge the new card appears, in hundredths of an hour: minutes, hours, or
/// a day or two. Assumption.
pub(super) const REPLY_HUNDREDTHS_OF_HOURS: [((u32, u32), u32); 3] =
    [((8, 100), 250), ((100, 1200), 350), ((1200, 4800), 400)];

/// When a customer who pays by themselves does so, after each failure: within days (noticed the
/// email from Stripe or lost access), within weeks, or late — some of those after the 60-day
/// horizon. Assumption.
pub(super) const PAYS_UNPROMPTED_MINUTES: [((u32, u32), u32); 3] = [
    ((30, 3 * 24 * 60), 350),
    ((3 * 24 * 60, 21 * 24 * 60), 350),
    ((21 * 24 * 60, 75 * 24 * 60), 300),
];

/// Customers who cancel when nagged, and after how many nudges. High-value, long-standing
/// customers expect fewer, personal messages (`docs/design/dunning-practice.md#segments`, article 1's segment table; "Talking to
/// customers"), so more of them give up. Shares: assumption.
pub(super) const GIVES_UP: u32 = 150;
pub(super) const GIVES_UP_HIGH_VALUE: u32 = 250;
pub(super) const HIGH_VALUE_AMOUNT: i64 = 9900;
pub(super) const HIGH_VALUE_TENURE_MONTHS: u32 = 24;
pub(super) const GIVES_UP_AFTER: [(u32, u32); 4] = [(2, 200), (3, 350), (4, 250), (5, 200)];

/// Months as a customer before this failure. Assumption: young subscriptions churn most, so
/// they are most of a failing population.
pub(super) const TENURE_MONTHS: [((u32, u32), u32); 3] =
    [((0, 7), 350), ((7, 25), 400), ((25, 73), 250)];

/// Earlier failed payments: customers short of money have a record of it (article 1's, `docs/design/dunning-practice.md#segments`:
/// "risk-prone clients: history of late payments"). Assumption for the shares.
pub(super) const PAST_FAILURES_SHORT_OF_MONEY: [((u32, u32), u32); 4] =
    [((0, 1), 400), ((1, 2), 300), ((2, 3), 180), ((3, 6), 120)];
pub(super) const PAST_FAILURES_OTHERWISE: [((u32, u32), u32); 4] =
    [((0, 1), 650), ((1, 2), 230), ((2, 3), 80), ((3, 6), 40)];

/// Customers who opted in to SMS nudges (`metadata.sms_opt_in`, `docs/user-guide/nudges.md#sms`).
/// Assumption.
pub(super) const SMS_OPT_IN: u32 = 250;

// ---------------------------------------------------------------------------------------------

/// The story behind a decline: what an attempt on this card meets over the horizon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Truth {
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
pub(super) struct Decline {
    /// Stripe's error `code` when it is not `card_declined`.
    pub(super) code: Option<&'static str>,
    pub(super) decline_code: &'static str,
    pub(super) advice_code: Option<&'static str>,
    /// Visa's response code, reported as `network_decline_code` on Visa cards.
    pub(super) visa: Option<&'static str>,
    /// Mastercard advice codes that fit this decline.
    pub(super) mastercard: &'static [&'static str],
    pub(super) truth: Truth,
    /// Per thousand customers, how many add a new card after nudges.
    pub(super) updates_card: u32,
    /// Per thousand customers, how many pay by themselves.
    pub(super) pays_unprompted: u32,
}

pub(super) const fn decline(
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
    pub(super) const fn code(self, code: &'static str) -> Self {
        Self {
            code: Some(code),
            ..self
        }
    }

    pub(super) const fn advice(self, advice: &'static str) -> Self {
        Self {
            advice_code: Some(advice),
            ..self
        }
    }

    pub(super) const fn visa(self, response: &'static str) -> Self {
        Self {
            visa: Some(response),
            ..self
        }
    }

    pub(super) const fn mastercard(self, advice: &'static [&'static str]) -> Self {
        Self {
            mastercard: advice,
            ..self
        }
    }
}

/// A place customers live in: one row of [`PLACES`].
pub(super) struct Place {
    pub(super) country: &'static str,
    pub(super) zone: &'static str,
    pub(super) currency: &'static str,
    pub(super) weight: u32,
    pub(super) cycles: &'static [(Cycle, u32)],
}

pub(super) const fn place(
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
pub(super) enum Cycle {
    /// The 1st and the 15th.
    SemiMonthly,
    FirstOfMonth,
    LastOfMonth,
    /// Every other Friday.
    BiWeekly,
    /// Every Friday.
    Weekly,
}
