//! The card networks' rules as dated data: the limits on retrying one card, what a network's own
//! decline or advice code asks, and the fees either can cost (`config/networks.toml`, read by
//! [`super::file::networks`]).
//!
//! The networks change these every year or two, announcing each change months ahead, so every row
//! says on which UTC day it takes effect and on which it ends: a rule written down ahead of time
//! starts binding on its day, without a release. This module answers what holds at an instant —
//! which limits bind a brand ([`Networks::rules_at`]), what a code means ([`Networks::meaning`]),
//! which fees a decline costs ([`Networks::decline_fees`]) — and [`super::budget`] does the
//! counting over a card's tries.

use std::sync::{Arc, OnceLock};

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::decline::Signals;

/// Every network rule recoup knows, in force or not.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Networks {
    pub rules: Vec<Rule>,
    pub codes: Vec<Code>,
    pub decline_fees: Vec<DeclineFee>,
}

/// Where the built-in rules come from in a checkout, and the name their errors are reported under.
pub const BUILT_IN_PATH: &str = "config/networks.toml";

const BUILT_IN: &str = include_str!("../../../config/networks.toml");

/// The UTC days a row holds: from `from` (inclusive) to `until` (exclusive), open at either end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Dates {
    pub from: Option<Date>,
    pub until: Option<Date>,
}

impl Dates {
    /// Whether the row holds at `at`.
    pub fn hold_at(&self, at: Timestamp) -> bool {
        let day = at.to_zoned(TimeZone::UTC).date();
        self.from.is_none_or(|from| from <= day) && self.until.is_none_or(|until| day < until)
    }

    /// In words: "since 2025-05-01", "until 2025-05-01", "2024-01-01 to 2025-01-01", "always".
    pub fn describe(&self) -> String {
        match (self.from, self.until) {
            (None, None) => "always".to_owned(),
            (Some(from), None) => format!("since {from}"),
            (None, Some(until)) => format!("until {until}"),
            (Some(from), Some(until)) => format!("{from} to {until}"),
        }
    }
}

/// An estimated network fee, in millionths of a US dollar: integers add up the same in any order,
/// so a simulation's total does not depend on how its threads were scheduled.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Fee(pub i64);

impl Fee {
    pub const ZERO: Fee = Fee(0);

    pub fn is_zero(&self) -> bool {
        *self == Fee::ZERO
    }

    /// In dollars, for people and metrics.
    pub fn usd(self) -> f64 {
        self.0 as f64 / 1_000_000.0
    }
}

impl std::fmt::Display for Fee {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "${:.2}", self.usd())
    }
}

/// One limit: at most `max` counted tries of one key within any `per`-long rolling window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The rule in a few words, the same for every dated row of one rule: `visa reattempts`.
    pub name: String,
    /// The brand the rule binds, as Stripe names it (`visa`, `mastercard`), or `*` for all.
    pub brand: String,
    pub counts: Counts,
    pub key: Key,
    pub max: u32,
    pub per: SignedDuration,
    /// Whether an approved try of the same key starts the count again.
    pub resets: bool,
    /// Per try past the limit.
    pub fee: Fee,
    pub dates: Dates,
    pub source: String,
}

/// Which tries a rule counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counts {
    /// Every try, whatever its outcome.
    Attempts,
    /// Declined tries only; the try being planned may decline, so it counts too.
    Declines,
    /// Every try after a first one of the same key (since the last approval, when the rule
    /// resets): Visa's "reattempts".
    Reattempts,
}

/// What, besides the card, a rule counts tries by. Two tries of one card share a count when they
/// agree on every part the key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Key {
    /// The amount and currency: Mastercard's and Visa's "same card, merchant and amount".
    pub amount: bool,
    /// Customer- or merchant-initiated (Visa counts them apart since May 2025).
    pub initiator: bool,
    /// The invoice: an older policy file's `scope = "invoice"`.
    pub invoice: bool,
}

impl Rule {
    /// Whether the rule binds `brand` at `at`.
    pub fn binds(&self, brand: &str, at: Timestamp) -> bool {
        (self.brand == "*" || self.brand.eq_ignore_ascii_case(brand)) && self.dates.hold_at(at)
    }

    /// The rule in words: `visa reattempts: at most 20 reattempts per card, amount and initiator
    /// in 30 days`.
    pub fn describe(&self) -> String {
        let what = match self.counts {
            Counts::Attempts => "attempts",
            Counts::Declines => "declines",
            Counts::Reattempts => "reattempts",
        };
        let mut by = vec!["card"];
        if self.key.amount {
            by.push("amount");
        }
        if self.key.initiator {
            by.push("initiator");
        }
        if self.key.invoice {
            by.push("invoice");
        }
        let by = match by.split_last() {
            Some((last, [])) => (*last).to_owned(),
            Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
            None => String::new(),
        };
        format!(
            "{}: at most {} {what} per {by} in {}",
            self.name,
            self.max,
            super::duration::human(self.per)
        )
    }
}

/// Which of Stripe's decline fields a network code arrives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// The network's response code (Visa's places a decline in a category).
    NetworkDeclineCode,
    /// Mastercard's merchant advice code.
    NetworkAdviceCode,
}

/// What some of a network's codes ask of the card that was declined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Code {
    pub brand: String,
    pub field: Field,
    pub codes: Vec<String>,
    /// Visa's category, when the row is Visa's: 1 never, 2–4 retry within the limits.
    pub category: Option<u8>,
    pub means: Means,
    /// Per retry after a code that means never.
    pub fee: Fee,
    pub dates: Dates,
    pub source: String,
}

/// What a code asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Means {
    /// Never try the card again: a new card is needed.
    Never,
    /// Try again once the customer has updated the card, not before.
    NewCard,
    /// Retry, within the limits.
    Retry,
    /// Retry no earlier than this after the decline, on any invoice of the card.
    Wait(SignedDuration),
}

/// A fee on a decline itself, inside every limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeclineFee {
    pub name: String,
    pub brand: String,
    /// Stripe's `decline_code` values it applies to.
    pub decline_codes: Vec<String>,
    pub fee: Fee,
    pub dates: Dates,
    pub source: String,
}

/// A fee one try cost, by the rule that set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charged {
    pub brand: String,
    pub rule: String,
    pub fee: Fee,
}

impl Networks {
    /// The rules of the shipped `config/networks.toml`, built into recoup, read once.
    pub fn built_in() -> Arc<Networks> {
        static BUILT: OnceLock<Arc<Networks>> = OnceLock::new();
        Arc::clone(BUILT.get_or_init(|| {
            Arc::new(
                super::file::networks(BUILT_IN, BUILT_IN_PATH)
                    .expect("the built-in networks file is valid"),
            )
        }))
    }

    /// The limits binding a card of `brand` at `at`.
    pub fn rules_at<'a>(
        &'a self,
        brand: &'a str,
        at: Timestamp,
    ) -> impl Iterator<Item = &'a Rule> + 'a {
        self.rules.iter().filter(move |r| r.binds(brand, at))
    }

    /// The first midnight (UTC) after `at` on which a limit of `brand` starts or ends: a try held
    /// back by one limit may become legal then rather than when its tries age out.
    pub fn next_change(&self, brand: &str, at: Timestamp) -> Option<Timestamp> {
        self.rules
            .iter()
            .filter(|r| r.brand == "*" || r.brand.eq_ignore_ascii_case(brand))
            .flat_map(|r| [r.dates.from, r.dates.until])
            .flatten()
            .filter_map(|day| day.to_zoned(TimeZone::UTC).ok().map(|z| z.timestamp()))
            .filter(|midnight| *midnight > at)
            .min()
    }

    /// The longest window any rule counts over: how long a card's tries matter.
    pub fn longest(&self) -> SignedDuration {
        self.rules.iter().map(|r| r.per).max().unwrap_or_default()
    }

    /// What the network's own codes in `signals` ask, at the decline's time `at`: the row that
    /// says so, and the code it matched. A code of another brand's row is not read as one (Visa's
    /// categories are Visa's); with no brand known, every row is, which only errs on the side of
    /// caution.
    pub fn meaning<'a>(
        &'a self,
        signals: &Signals<'_>,
        at: Timestamp,
    ) -> Option<(&'a Code, &'a str)> {
        self.codes.iter().find_map(|row| {
            let written = match row.field {
                Field::NetworkDeclineCode => signals.network_decline_code,
                Field::NetworkAdviceCode => signals.network_advice_code,
            }?;
            let brand_fits = signals
                .brand
                .is_none_or(|b| row.brand == "*" || row.brand.eq_ignore_ascii_case(b));
            if !brand_fits {
                return None;
            }
            // The code first: a row's dates cost a time zone conversion, its codes a comparison.
            let code = row.codes.iter().find(|c| c.eq_ignore_ascii_case(written))?;
            row.dates.hold_at(at).then_some((row, code.as_str()))
        })
    }

    /// The fees a decline with `signals` on a card of `brand` costs by itself at `at`.
    pub fn decline_fees(&self, brand: &str, signals: &Signals<'_>, at: Timestamp) -> Vec<Charged> {
        let Some(code) = signals.decline_code else {
            return Vec::new();
        };
        self.decline_fees
            .iter()
            .filter(|f| f.brand == "*" || f.brand.eq_ignore_ascii_case(brand))
            .filter(|f| f.dates.hold_at(at) && f.decline_codes.iter().any(|c| c == code))
            .map(|f| Charged {
                brand: brand.to_ascii_lowercase(),
                rule: f.name.clone(),
                fee: f.fee,
            })
            .collect()
    }

    /// Every row that starts or ends within `days` after `now`, by day: what `recoup policy check`
    /// warns of.
    pub fn changes(&self, now: Timestamp, days: i64) -> Vec<(Date, String)> {
        let today = now.to_zoned(TimeZone::UTC).date();
        let Ok(horizon) = today.checked_add(jiff::Span::new().days(days)) else {
            return Vec::new();
        };
        let soon = |d: &Option<Date>| d.filter(|d| today < *d && *d <= horizon);
        let mut changes = Vec::new();
        let mut note = |dates: &Dates, what: String| {
            if let Some(from) = soon(&dates.from) {
                changes.push((from, format!("starts: {what}")));
            }
            if let Some(until) = soon(&dates.until) {
                changes.push((until, format!("ends: {what}")));
            }
        };
        for rule in &self.rules {
            note(&rule.dates, rule.describe());
        }
        for row in &self.codes {
            note(&row.dates, row.describe());
        }
        for fee in &self.decline_fees {
            note(&fee.dates, fee.describe());
        }
        changes.sort();
        changes
    }

    /// Every row in force at `now`, one line each: what `recoup policy check` prints.
    pub fn in_force(&self, now: Timestamp) -> Vec<String> {
        let rules = self.rules.iter().filter(|r| r.dates.hold_at(now)).map(|r| {
            format!(
                "{} — fee {} per try past it; {}",
                r.describe(),
                r.fee,
                r.dates.describe()
            )
        });
        let codes = self
            .codes
            .iter()
            .filter(|c| c.dates.hold_at(now))
            .map(|c| format!("{}; {}", c.describe(), c.dates.describe()));
        let fees = self
            .decline_fees
            .iter()
            .filter(|f| f.dates.hold_at(now))
            .map(|f| format!("{}; {}", f.describe(), f.dates.describe()));
        rules.chain(codes).chain(fees).collect()
    }
}

impl Code {
    /// The row in words: `visa response 57 (category 1): never retry`.
    pub fn describe(&self) -> String {
        let field = match self.field {
            Field::NetworkDeclineCode => "response",
            Field::NetworkAdviceCode => "advice",
        };
        let category = self
            .category
            .map_or_else(String::new, |c| format!(" (category {c})"));
        let means = match self.means {
            Means::Never => format!("never retry the card (fee {} per retry)", self.fee),
            Means::NewCard => "retry once the card is updated".to_owned(),
            Means::Retry => "retry within the limits".to_owned(),
            Means::Wait(wait) => format!("wait {} before any retry", super::duration::human(wait)),
        };
        format!(
            "{} {field} {}{category}: {means}",
            self.brand,
            self.codes.join("/")
        )
    }
}

impl DeclineFee {
    fn describe(&self) -> String {
        format!(
            "{}: {} per {} decline",
            self.name,
            self.fee,
            self.decline_codes.join("/")
        )
    }
}
