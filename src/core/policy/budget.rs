//! Card-network retry budgets: how many tries the networks allow on one card, and when the next one
//! becomes legal.
//!
//! Visa and Mastercard charge fees (and may block a merchant) for retrying past their limits, and
//! they count per card, not per invoice: two invoices on one card share one budget, which is why a
//! card's history is keyed by Stripe's card `fingerprint`. Within a card they count by what their
//! rules say — the amount, who initiated the payment, since the last approval — so every [`Try`]
//! keeps those. The limits themselves are dated data ([`super::networks`]); this module only does
//! the arithmetic over rolling windows: [`earliest_allowed`] for the planner, [`broken`] for the
//! simulator and the fee ledger.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::decline::Signals;
use super::networks::{Charged, Counts, Fee, Networks, Rule};
use super::time;

/// One past try on a card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Try {
    pub at: Timestamp,
    pub invoice_id: String,
    /// The invoice's attempt number: with the invoice, what makes a try the same try when it is
    /// recorded twice (a redo after a crash, Stripe's webhook after recoup's own result).
    pub attempt: u32,
    /// Counted as declined until known otherwise: a try whose result never arrived may have been a
    /// decline, and counting one too many never breaks a rule.
    pub declined: bool,
    /// The card's network asked, with this decline, that the card not be tried again before then
    /// (Mastercard's merchant advice 24–30): binding for every invoice on the card, not only this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<Timestamp>,
    /// The decline said never to try the card again (a hard decline: lost or stolen, closed,
    /// Mastercard advice 03/21, Visa category 1): binding for every invoice on the card.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub never: bool,
    /// What the network charges for a try after this one's "never" anyway.
    #[serde(default, skip_serializing_if = "Fee::is_zero")]
    pub never_fee: Fee,
    /// What was charged; unknown in a history recorded before amounts were kept, and then counted
    /// with every amount (which never counts too few).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<Amount>,
    #[serde(default)]
    pub initiated: Initiated,
}

/// An amount and its currency, as Stripe has them (smallest unit, lowercase ISO code).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Amount {
    pub value: i64,
    pub currency: String,
}

/// Who asked for a payment. Everything recoup charges is merchant-initiated; the networks count
/// the customer's own payments apart (Visa since May 2025), so a future customer-initiated flow
/// records them as such.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Initiated {
    #[default]
    Merchant,
    Customer,
}

impl Try {
    /// A merchant-initiated try of `invoice_id`'s attempt `attempt` at `at`, paid or declined, of
    /// an amount not known.
    pub fn new(at: Timestamp, invoice_id: &str, attempt: u32, declined: bool) -> Self {
        Self {
            at,
            invoice_id: invoice_id.to_owned(),
            attempt,
            declined,
            wait: None,
            never: false,
            never_fee: Fee::ZERO,
            amount: None,
            initiated: Initiated::Merchant,
        }
    }

    /// Attempt `attempt` of `case`'s invoice at `at`, of the invoice's amount: declined until its
    /// result is known.
    pub fn of_case(case: &super::Case, attempt: u32, at: Timestamp) -> Self {
        Self::new(at, &case.invoice_id, attempt, true).of(case.still_due(), &case.currency)
    }

    /// The same try, of `value` in `currency`.
    pub fn of(mut self, value: i64, currency: &str) -> Self {
        self.amount = Some(Amount {
            value,
            currency: currency.to_ascii_lowercase(),
        });
        self
    }

    /// The same try, declined as `declined` says under `networks`, with what the decline asks of
    /// the whole card.
    pub fn declined_as(mut self, declined: &super::Declined, networks: &Networks) -> Self {
        let signals = declined.signals();
        let classified = super::decline::classify(&signals, networks, self.at);
        self.declined = true;
        self.never = classified.class == super::DeclineClass::Hard;
        self.never_fee = classified.network.map_or(Fee::ZERO, |row| row.fee);
        self.wait = classified.not_before.map(|wait| time::later(self.at, wait));
        self
    }

    /// Whether `rule` counts this try and `other` together.
    fn shares_key(&self, other: &Try, rule: &Rule) -> bool {
        (!rule.key.invoice || self.invoice_id == other.invoice_id)
            && (!rule.key.amount
                || self.amount.is_none()
                || other.amount.is_none()
                || self.amount == other.amount)
            && (!rule.key.initiator || self.initiated == other.initiated)
    }
}

/// Every recent try on one card, across all its invoices: what the budgets are counted over.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CardHistory {
    /// Stripe's card `fingerprint`: the same for every copy of one card number, whichever customer
    /// or payment method holds it.
    pub fingerprint: String,
    pub tries: Vec<Try>,
    /// Bumped by the store on every save; a save naming an older version is refused.
    #[serde(skip)]
    pub version: u64,
}

impl CardHistory {
    /// A card with no tries yet.
    pub fn new(fingerprint: &str) -> Self {
        Self {
            fingerprint: fingerprint.to_owned(),
            ..Self::default()
        }
    }

    /// How long a card's tries matter: twice the longest window of any rule, so that whether the
    /// oldest try in a window was itself a reattempt (it was, if a try of its key came before it)
    /// can still be told.
    pub fn keep(networks: &Networks) -> std::time::Duration {
        (networks.longest() * 2).unsigned_abs()
    }

    /// Adds `try_` unless the same try (invoice and attempt) is already there, in which case a
    /// result that is now known replaces a pessimistic "declined"; forgets tries older than
    /// [`CardHistory::keep`]. Returns whether anything changed.
    pub fn record(&mut self, try_: Try, networks: &Networks, now: Timestamp) -> bool {
        let before = self.tries.len();
        self.tries
            .retain(|t| t.at > time::earlier(now, networks.longest() * 2));
        let forgot = self.tries.len() != before;
        match self
            .tries
            .iter_mut()
            .find(|t| t.invoice_id == try_.invoice_id && t.attempt == try_.attempt)
        {
            Some(known) if known.declined && !try_.declined => {
                known.declined = false;
                true
            }
            Some(known)
                if (known.wait, known.never) != (try_.wait, try_.never) && try_.declined =>
            {
                known.wait = known.wait.max(try_.wait);
                known.never |= try_.never;
                known.never_fee = known.never_fee.max(try_.never_fee);
                true
            }
            Some(_) => forgot,
            None => {
                self.tries.push(try_);
                true
            }
        }
    }
}

/// The times of the tries in `history` that `rule` counts against `next` in the window ending at
/// `at`, and whether `next` itself counts. An iterator, not a list: most callers only count them,
/// and this runs for every rule on every planned retry.
fn counted<'a>(
    rule: &'a Rule,
    history: &'a [Try],
    next: &'a Try,
    at: Timestamp,
) -> (impl Iterator<Item = Timestamp> + 'a, bool) {
    let shared = move |t: &&Try| t.at <= at && t.shares_key(next, rule);
    // An approval resets a rule that says so: only the tries after the latest one count.
    let approved = if rule.resets {
        history
            .iter()
            .filter(shared)
            .filter(|t| !t.declined)
            .map(|t| t.at)
            .max()
    } else {
        None
    };
    let group = move |t: &&Try| shared(t) && approved.is_none_or(|approved| t.at > approved);
    let first = history.iter().filter(group).map(|t| t.at).min();
    let counts = move |t: &Try| match rule.counts {
        Counts::Attempts => true,
        Counts::Declines => t.declined,
        // A retry is a reattempt by its number; another invoice's first try is one when a try of
        // the same key came before it.
        Counts::Reattempts => t.attempt > 1 || first.is_some_and(|f| f < t.at),
    };
    let since = time::earlier(at, rule.per);
    let window = history
        .iter()
        .filter(group)
        .filter(move |t| t.at > since && counts(t))
        .map(|t| t.at);
    let next_counts = match rule.counts {
        Counts::Reattempts => next.attempt > 1 || first.is_some(),
        Counts::Attempts | Counts::Declines => true,
    };
    (window, next_counts)
}

/// What each rule binding `brand` still allows once `next` is made at its time: the rule in words
/// and how many more tries it leaves in its window.
pub fn left_after(
    networks: &Networks,
    brand: &str,
    history: &[Try],
    next: &Try,
) -> Vec<(String, u32)> {
    networks
        .rules_at(brand, next.at)
        .map(|rule| {
            let (window, counts) = counted(rule, history, next, next.at);
            let used = u32::try_from(window.count())
                .unwrap_or(u32::MAX)
                .saturating_add(u32::from(counts));
            (rule.describe(), rule.max.saturating_sub(used))
        })
        .collect()
}

/// The rules `made` broke, given the tries on its card before it: what the simulator counts as
/// breaches and the fee ledger charges.
pub fn broken<'a>(
    networks: &'a Networks,
    brand: &'a str,
    history: &[Try],
    made: &Try,
) -> Vec<&'a Rule> {
    networks
        .rules_at(brand, made.at)
        .filter(|rule| {
            let (window, counts) = counted(rule, history, made, made.at);
            let max = rule.max as usize;
            counts && window.take(max).count() >= max
        })
        .collect()
}

/// What the networks would charge for `made`, a try on a card of `brand` whose earlier tries are
/// `history`, declined with `declined` (`None` when it was paid): a fee per rule it broke, for a
/// try after a decline that said never, and on the decline itself. Normally only the last.
pub fn fees(
    networks: &Networks,
    brand: &str,
    history: &[Try],
    made: &Try,
    declined: Option<&Signals<'_>>,
) -> Vec<Charged> {
    let brand_name = brand.to_ascii_lowercase();
    let charged = |rule: &str, fee| Charged {
        brand: brand_name.clone(),
        rule: rule.to_owned(),
        fee,
    };
    let mut fees: Vec<Charged> = broken(networks, brand, history, made)
        .into_iter()
        .map(|rule| charged(&rule.name, rule.fee))
        .collect();
    if let Some(stop) = history.iter().find(|t| t.never && t.at <= made.at) {
        fees.push(charged(NEVER, stop.never_fee));
    }
    if let Some(signals) = declined {
        fees.extend(networks.decline_fees(brand, signals, made.at));
    }
    fees
}

/// The rule a retry after a decline that said "never" breaks, by name.
pub const NEVER: &str = "retry after a never-retry decline";

/// Why a try cannot happen when wanted, and when it can.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deferral {
    pub until: Timestamp,
    /// The rule that moved it last, in words: `mastercard declines a day: at most 10 declines per
    /// card in 1 day`.
    pub because: String,
}

/// The earliest instant at or after `next.at` at which `next`, on a card of `brand` with
/// `history`, breaks no rule of `networks` in force then: `Ok(next.at)` when it already breaks
/// none, else the later instant and the rule that set it. `Err` names a decline or a rule that can
/// never allow it (a `max` of zero).
pub fn earliest_allowed(
    networks: &Networks,
    brand: &str,
    history: &[Try],
    next: &Try,
) -> Result<Result<Timestamp, Deferral>, String> {
    let wanted = next.at;
    // What a decline of the card asked, whichever invoice it was for: a hard decline stops the
    // card, an advice to wait holds it until then.
    if let Some(stop) = history.iter().find(|t| t.never && t.at <= wanted) {
        return Err(format!(
            "{brand}: a decline of this card ({}, attempt {}) said never to try it again",
            stop.invoice_id, stop.attempt
        ));
    }
    let mut at = wanted;
    let mut because = None;
    if let Some(wait) = history
        .iter()
        .filter(|t| t.at <= wanted)
        .filter_map(|t| t.wait.map(|until| (until, t)))
        .filter(|(until, _)| *until > wanted)
        .max_by_key(|(until, _)| *until)
    {
        at = wait.0;
        because = Some(format!(
            "{brand}: a decline of this card ({}, attempt {}) asked to wait until {}",
            wait.1.invoice_id, wait.1.attempt, wait.0
        ));
    }
    // Each pass moves `at` past at least one counted try, or into the days of other rows, so this
    // ends within a few passes per try and row; the bound only guards against a mistake here
    // looping forever.
    for _ in 0..=(history.len() + 2) * (networks.rules.len() + 1) {
        let mut moved = false;
        for rule in networks.rules_at(brand, at) {
            if rule.max == 0 {
                return Err(rule.describe());
            }
            let (window, counts) = counted(rule, history, next, at);
            let mut window: Vec<Timestamp> = window.collect();
            let allowed = rule.max as usize - usize::from(counts);
            if window.len() > allowed {
                window.sort();
                // Once the oldest tries beyond the allowance have left the window, one more fits
                // — or sooner, on the day the limits change.
                let aged = time::later(window[window.len() - allowed - 1], rule.per);
                at = networks
                    .next_change(brand, at)
                    .map_or(aged, |change| change.min(aged));
                because = Some(rule.describe());
                moved = true;
                break;
            }
        }
        if !moved {
            return Ok(match because {
                None => Ok(at),
                Some(because) => Err(Deferral { until: at, because }),
            });
        }
    }
    unreachable!("every pass moves past at least one try")
}

#[cfg(test)]
mod tests {
    use jiff::SignedDuration;
    use proptest::prelude::*;

    use super::*;
    use crate::policy::networks::{Dates, Key};

    const HOUR: i64 = 3_600;
    const DAY: i64 = 24 * HOUR;

    /// Noon UTC on `day`, plus `seconds`.
    fn on(day: &str, seconds: i64) -> Timestamp {
        let noon: Timestamp = format!("{day}T12:00:00Z").parse().unwrap();
        noon + SignedDuration::from_secs(seconds)
    }

    /// A declined try of `invoice`'s attempt `attempt`, of `amount` US cents.
    fn declined(at: Timestamp, invoice: &str, attempt: u32, amount: i64) -> Try {
        Try::new(at, invoice, attempt, true).of(amount, "usd")
    }

    /// Whether `next` may be made when wanted under the built-in rules.
    fn allowed(brand: &str, history: &[Try], next: &Try) -> bool {
        let networks = Networks::built_in();
        let when = earliest_allowed(&networks, brand, history, next);
        let broken = broken(&networks, brand, history, next);
        // The two answers agree: a try allowed when wanted breaks nothing, and the reverse.
        assert_eq!(
            when == Ok(Ok(next.at)),
            broken.is_empty(),
            "{when:?} vs {broken:?}"
        );
        broken.is_empty()
    }

    /// One invoice's first try and `retries` retries, an hour apart from `day`'s noon.
    fn chain(day: &str, invoice: &str, retries: u32, amount: i64) -> Vec<Try> {
        (0..=retries)
            .map(|n| declined(on(day, i64::from(n) * HOUR), invoice, n + 1, amount))
            .collect()
    }

    /// Each row: a rule, the history that uses it up to the limit, and the try that would break
    /// it — allowed one try earlier, refused at the limit, around the rule's dates.
    #[test]
    fn every_built_in_rule_allows_up_to_its_limit_and_refuses_the_next_try() {
        struct Row {
            what: &'static str,
            brand: &'static str,
            /// The tries that fill the limit exactly: one fewer leaves room for `next`.
            full: Vec<Try>,
            next: Try,
        }
        let later =
            |day, invoice, attempt, amount| declined(on(day, 20 * HOUR), invoice, attempt, amount);
        let rows = vec![
            Row {
                what: "visa: 20 reattempts of one amount in 30 days (since May 2025)",
                brand: "visa",
                full: chain("2026-03-01", "in_1", 20, 1_000),
                next: later("2026-03-02", "in_1", 22, 1_000),
            },
            Row {
                what: "visa: 15 reattempts before May 2025",
                brand: "visa",
                full: chain("2025-03-01", "in_1", 15, 1_000),
                next: later("2025-03-02", "in_1", 17, 1_000),
            },
            Row {
                what: "visa: another invoice's first try of the same amount is a reattempt",
                brand: "visa",
                full: (1..=8)
                    .flat_map(|n| {
                        let invoice = format!("in_{n}");
                        // 8 first tries, then 13 retries: 7 + 13 = 20 reattempts.
                        let retries = if n <= 5 { 2 } else { 1 };
                        chain(&format!("2026-03-{n:02}"), &invoice, retries, 1_000)
                    })
                    .collect(),
                next: later("2026-03-10", "in_1", 4, 1_000),
            },
            Row {
                what: "mastercard: 10 declines on one card in a day, whatever the amount",
                brand: "mastercard",
                full: (0..10)
                    .map(|n| declined(on("2026-03-01", n * 60), &format!("in_{n}"), 2, 1_000 + n))
                    .collect(),
                next: declined(on("2026-03-01", 2 * HOUR), "in_x", 2, 5_000),
            },
            Row {
                what: "mastercard: 35 declines of one amount in 30 days",
                brand: "mastercard",
                full: (0..35)
                    .map(|n| declined(on("2026-03-01", n * 18 * HOUR), "in_1", 2 + n as u32, 1_000))
                    .collect(),
                next: later("2026-03-28", "in_1", 40, 1_000),
            },
        ];
        for row in rows {
            let (_, fewer) = row.full.split_last().unwrap();
            assert!(
                allowed(row.brand, fewer, &row.next),
                "{}: one under the limit is allowed",
                row.what
            );
            assert!(
                !allowed(row.brand, &row.full, &row.next),
                "{}: at the limit the next try is refused",
                row.what
            );
        }
    }

    #[test]
    fn visa_counts_each_amount_and_initiator_apart_and_an_approval_starts_again() {
        let full = chain("2026-03-01", "in_1", 20, 1_000);
        let next = |amount| declined(on("2026-03-02", 0), "in_2", 2, amount);
        assert!(!allowed("visa", &full, &next(1_000)));
        assert!(allowed("visa", &full, &next(2_000)), "another amount");

        let customer: Vec<Try> = full
            .iter()
            .cloned()
            .map(|t| Try {
                initiated: Initiated::Customer,
                ..t
            })
            .collect();
        assert!(
            allowed("visa", &customer, &next(1_000)),
            "customer-initiated apart"
        );
        // Before May 2025 Visa did not count them apart.
        let old: Vec<Try> = chain("2025-03-01", "in_1", 15, 1_000)
            .into_iter()
            .map(|t| Try {
                initiated: Initiated::Customer,
                ..t
            })
            .collect();
        assert!(!allowed(
            "visa",
            &old,
            &declined(on("2025-03-02", 0), "in_2", 2, 1_000)
        ));

        let mut approved = full.clone();
        approved.push(Try::new(on("2026-03-01", 21 * HOUR), "in_9", 1, false).of(1_000, "usd"));
        assert!(
            allowed("visa", &approved, &next(1_000)),
            "an approval resets"
        );

        // A try of unknown amount (recorded before amounts were kept) counts with every amount.
        let unknown: Vec<Try> = full
            .iter()
            .cloned()
            .map(|t| Try { amount: None, ..t })
            .collect();
        assert!(!allowed("visa", &unknown, &next(2_000)));
    }

    #[test]
    fn a_limit_that_changes_on_a_day_binds_from_that_day() {
        // 16 reattempts: over the old limit of 15, inside the new one of 20 from 1 May 2025.
        let history = chain("2025-04-29", "in_1", 16, 1_000);
        let networks = Networks::built_in();
        let before = declined(on("2025-04-30", 0), "in_1", 18, 1_000);
        let Ok(Err(deferral)) = earliest_allowed(&networks, "visa", &history, &before) else {
            panic!("held back before May");
        };
        // Held back to the day the new rule takes effect, not 30 days.
        assert_eq!(deferral.until, on("2025-05-01", -12 * HOUR));
        assert!(allowed(
            "visa",
            &history,
            &declined(on("2025-05-01", 0), "in_1", 18, 1_000)
        ));
    }

    #[test]
    fn the_eleventh_mastercard_decline_in_a_day_waits_for_the_first_to_age_out() {
        let history: Vec<Try> = (0..10)
            .map(|n| declined(on("2026-03-01", n * 60), "in_1", n as u32 + 1, 1_000))
            .collect();
        let next = declined(on("2026-03-01", HOUR), "in_1", 11, 1_000);
        let allowed = earliest_allowed(&Networks::built_in(), "mastercard", &history, &next);
        let Ok(Err(deferral)) = allowed else {
            panic!("deferred, not {allowed:?}");
        };
        assert_eq!(deferral.until, on("2026-03-01", DAY));
        assert_eq!(
            deferral.because,
            "mastercard declines a day: at most 10 declines per card in 1 day"
        );
    }

    #[test]
    fn brands_without_a_published_limit_are_not_held_and_a_zero_budget_never_allows() {
        let history: Vec<Try> = (0..50)
            .map(|n| declined(on("2026-03-01", n * 60), "in_1", n as u32 + 1, 1_000))
            .collect();
        let next = declined(on("2026-03-01", HOUR), "in_1", 51, 1_000);
        assert!(allowed("amex", &history, &next));
        let never = Networks {
            rules: vec![Rule {
                brand: "*".into(),
                max: 0,
                ..Networks::built_in().rules[0].clone()
            }],
            ..Networks::default()
        };
        assert!(earliest_allowed(&never, "amex", &[], &next).is_err());
    }

    #[test]
    fn what_a_decline_asks_binds_every_invoice_on_the_card_and_costs_its_fee() {
        let networks = Networks::built_in();
        let mac = |code: &'static str| super::super::Declined {
            code: Some("card_declined".into()),
            network_advice_code: Some(code.into()),
            card: Some(super::super::Card {
                fingerprint: "fp".into(),
                brand: "mastercard".into(),
                funding: None,
                expires_at: None,
            }),
            ..super::super::Declined::default()
        };
        let t0 = on("2026-03-01", 0);
        let waited = declined(t0, "in_1", 1, 1_000).declined_as(&mac("25"), &networks);
        let other = declined(on("2026-03-01", HOUR), "in_2", 2, 2_000);
        assert_eq!(
            earliest_allowed(&networks, "mastercard", &[waited], &other)
                .unwrap()
                .unwrap_err()
                .until,
            on("2026-03-02", 0),
            "advice 25: a day"
        );
        let stopped = declined(t0, "in_1", 1, 1_000).declined_as(&mac("03"), &networks);
        assert!(stopped.never);
        assert!(
            earliest_allowed(
                &networks,
                "mastercard",
                std::slice::from_ref(&stopped),
                &other
            )
            .is_err()
        );
        let fees = fees(&networks, "mastercard", &[stopped], &other, None);
        assert_eq!(fees.len(), 1);
        assert_eq!((fees[0].rule.as_str(), fees[0].fee), (NEVER, Fee(500_000)));
    }

    #[test]
    fn a_mastercard_insufficient_funds_decline_costs_its_fee_from_14_july_2025() {
        let networks = Networks::built_in();
        let signals = super::super::decline::Signals {
            decline_code: Some("insufficient_funds"),
            brand: Some("mastercard"),
            ..Default::default()
        };
        let fee_on = |day| {
            let made = declined(on(day, 0), "in_1", 2, 1_000);
            fees(&networks, "mastercard", &[], &made, Some(&signals))
        };
        assert_eq!(fee_on("2025-07-13"), []);
        let charged = fee_on("2025-07-14");
        assert_eq!(charged.len(), 1);
        assert_eq!(charged[0].fee, Fee(20_000));
        assert_eq!(charged[0].rule, "mastercard insufficient-funds decline");
        assert_eq!(
            fees(
                &networks,
                "visa",
                &[],
                &declined(on("2026-01-01", 0), "in_1", 2, 1),
                Some(&signals)
            ),
            []
        );
    }

    #[test]
    fn a_try_is_recorded_once_its_result_corrected_and_old_tries_forgotten() {
        let networks = Networks::built_in();
        let mut card = CardHistory::new("fp_1");
        let t0 = on("2026-03-01", 0);
        let try_at = |s: i64, attempt, declined| {
            Try::new(t0 + SignedDuration::from_secs(s), "in_1", attempt, declined)
        };
        assert!(card.record(try_at(0, 1, true), &networks, t0));
        assert!(
            !card.record(try_at(5, 1, true), &networks, t0),
            "the same try twice"
        );
        assert!(
            card.record(try_at(5, 1, false), &networks, t0),
            "its result came in"
        );
        assert!(
            !card.record(try_at(5, 1, true), &networks, t0),
            "a success stays one"
        );
        assert_eq!(card.tries, vec![try_at(0, 1, false)]);

        // Twice the longest window (30 days): a try older than that matters nowhere.
        let late = t0 + SignedDuration::from_hours(61 * 24);
        assert!(card.record(try_at(61 * DAY, 2, true), &networks, late));
        assert_eq!(card.tries, vec![try_at(61 * DAY, 2, true)]);
    }

    /// Any rule set: a limit on one of the ways to count, keyed one of the ways, in force from or
    /// until a day.
    fn any_rules() -> impl Strategy<Value = Networks> {
        let rule = (
            prop_oneof![
                Just(Counts::Attempts),
                Just(Counts::Declines),
                Just(Counts::Reattempts)
            ],
            (any::<bool>(), any::<bool>(), any::<bool>()),
            1u32..12,
            1i64..20 * 24,
            any::<bool>(),
            prop::option::of(0i64..40),
            prop::option::of(0i64..40),
        )
            .prop_map(
                |(counts, (amount, initiator, invoice), max, hours, resets, from, until)| {
                    let day = |d: i64| {
                        on("2026-03-01", d * DAY)
                            .to_zoned(jiff::tz::TimeZone::UTC)
                            .date()
                    };
                    Rule {
                        name: "any".into(),
                        brand: "visa".into(),
                        counts,
                        key: Key {
                            amount,
                            initiator,
                            invoice,
                        },
                        max,
                        per: SignedDuration::from_hours(hours),
                        resets,
                        fee: Fee::ZERO,
                        dates: Dates {
                            from: from.map(day),
                            until: until.map(|u| day(u + from.unwrap_or(0) + 1)),
                        },
                        source: "proptest".into(),
                    }
                },
            );
        prop::collection::vec(rule, 1..4).prop_map(|rules| Networks {
            rules,
            ..Networks::default()
        })
    }

    proptest! {
        /// Under any rule set, wherever the planned try lands it breaks no rule in force at that
        /// moment, and it never lands before it was wanted.
        #[test]
        fn the_allowed_time_breaks_no_rule_in_force_then(
            networks in any_rules(),
            past in prop::collection::vec((0i64..40 * DAY, any::<bool>(), 0usize..3, 0i64..2), 0..60),
            wanted in 40 * DAY..50 * DAY,
        ) {
            let invoices = ["in_a", "in_b", "in_c"];
            let history: Vec<Try> = past
                .iter()
                .enumerate()
                .map(|(n, &(s, declined, i, amount))| {
                    Try::new(on("2026-03-01", s), invoices[i], n as u32 + 1, declined).of(1_000 + amount, "usd")
                })
                .collect();
            let next = Try::new(on("2026-03-01", wanted), "in_a", 99, true).of(1_000, "usd");
            let Ok(result) = earliest_allowed(&networks, "visa", &history, &next) else {
                return Ok(());
            };
            let when = result.clone().unwrap_or_else(|d| d.until);
            prop_assert!(when >= next.at);
            let planned = Try { at: when, ..next };
            let broken = broken(&networks, "visa", &history, &planned);
            prop_assert!(broken.is_empty(), "{:?} broken at {}", broken, when);
        }
    }
}
