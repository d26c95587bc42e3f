//! Evidence: what recoup's own attempts came to, as counts by what Stripe showed at the time.
//!
//! Every attempt adds one try (and one payment, when it went through) to a fixed set of counters
//! of each of its *groups* — the reason the invoice first failed ([`Reason`]), in the customer's
//! country on cards of the failed card's funding ([`Funding`]), in that country on every card, on
//! cards of that funding in every country, and everywhere — one counter per feature value of the
//! attempt's moment: the local day of the month, the weekday, the local hour, how far the
//! customer's own payday was ([`Moment::payday`]: days after it, or 1–3 days before the next) and
//! how long after the failure it was. A group is 83 pairs of counters (664 bytes) whatever the
//! number of attempts, and there are at most 3 reasons × 251 countries (and "every country") × 4
//! fundings (and "every card") of them: under 2 MiB for any history. Old evidence fades by
//! halving: once a group holds [`FADE_AT`] tries, every counter of it is halved, so the recent
//! past always weighs at least as much as everything before it.
//!
//! Nothing here knows the truth behind an attempt: only what the attempt came to, the way Stripe
//! answered it.

use std::collections::BTreeMap;

use jiff::Timestamp;
use jiff::civil::{Date, Weekday};

use super::{Funding, Reason};
use crate::policy::{Case, timing};

/// A group's tries that make its counters halve.
pub const FADE_AT: u32 = 100_000;

/// Counter slots: the group's total first, then each feature's values.
const BASE: usize = 0;
const DAY: usize = 1; // 31 days of the month, 1..=31
const WEEKDAY: usize = 32; // 7, Monday first
const HOUR: usize = 39; // 24 local hours
const PAYDAY: usize = 63; // 0..=7 days after the customer's payday, 8: no payday known
const SINCE: usize = 72; // 8 spans of time since the failure
// 1..=3 days before the customer's payday: after the rest, so older counts keep their slots.
const BEFORE: usize = 80;
pub(super) const SLOTS: usize = 83;

/// What a feature is called in an explanation and an export, and where its values start.
pub(super) const FEATURES: [(&str, usize, usize); 6] = [
    ("day", DAY, 31),
    ("weekday", WEEKDAY, 7),
    ("hour", HOUR, 24),
    ("payday", PAYDAY, 9),
    ("since", SINCE, 8),
    ("before", BEFORE, 3),
];

/// Where "days since the failure" ends each span: up to a day, 2, 3, 5, 8, 14, 21, and beyond.
const SINCE_SPANS: [i64; 7] = [1, 2, 3, 5, 8, 14, 21];

/// Tries and payments of one group, slot by slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counts {
    pub tries: [u32; SLOTS],
    pub paid: [u32; SLOTS],
}

impl Counts {
    fn halve(&mut self) {
        for n in self.tries.iter_mut().chain(self.paid.iter_mut()) {
            *n /= 2;
        }
    }
}

impl Default for Counts {
    fn default() -> Self {
        Self {
            tries: [0; SLOTS],
            paid: [0; SLOTS],
        }
    }
}

/// The features of one moment of one case: the slots an attempt then would count in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moment {
    pub slots: [usize; 5],
}

impl Moment {
    /// The moment `at` for `case`, on the customer's own clock.
    pub fn of(case: &Case, at: Timestamp) -> Self {
        let local = at.to_zoned(timing::zone(&case.customer_timezone));
        let date = local.date();
        let payday = PayCycle::new(case, date, date).slot(date);
        Self::on(date, local.hour(), payday, case, at)
    }

    /// The moment at local `hour` of `date` (`at` on the universal clock), which falls at `payday`
    /// in the customer's pay cycle ([`PayCycle::slot`]).
    pub fn on(date: Date, hour: i8, payday: usize, case: &Case, at: Timestamp) -> Self {
        let [day, weekday] = Self::date_slots(date);
        Self {
            slots: [
                day,
                weekday,
                Self::hour_slot(hour),
                payday,
                SINCE + since(case, at),
            ],
        }
    }

    /// The slots of a local date: its day of the month and its weekday.
    pub fn date_slots(date: Date) -> [usize; 2] {
        let day = usize::try_from(date.day()).unwrap_or(1).clamp(1, 31);
        let weekday = usize::from(date.weekday().to_monday_zero_offset().unsigned_abs());
        [DAY + day - 1, WEEKDAY + weekday]
    }

    /// The slot of a local hour.
    pub fn hour_slot(hour: i8) -> usize {
        HOUR + usize::try_from(hour).unwrap_or(0).min(23)
    }

    /// The local hour a slot counts, when it is an hour's.
    pub fn hour_of(slot: usize) -> Option<i8> {
        (HOUR..PAYDAY)
            .contains(&slot)
            .then(|| i8::try_from(slot - HOUR).unwrap_or(0))
    }

    /// The features an estimate multiplies: day of the month, weekday, hour and days after the
    /// customer's payday. The time since the failure is counted and shown but not used: which
    /// retries are made when after a failure is the plan's doing, so its rates mostly measure the
    /// plan (the customers still unpaid three weeks on are the hard ones), not the moment.
    pub fn factors(&self) -> [usize; 4] {
        [self.slots[0], self.slots[1], self.slots[2], self.slots[3]]
    }

    /// The moment's words for one feature, for an explanation: "day 25", "Friday", "14:00".
    pub fn words(slot: usize) -> String {
        match slot {
            s if s < WEEKDAY => format!("day {} of the month", s - DAY + 1),
            s if s < HOUR => {
                let weekday =
                    Weekday::from_monday_zero_offset(i8::try_from(s - WEEKDAY).unwrap_or(0))
                        .unwrap_or(Weekday::Monday);
                format!("{weekday:?}")
            }
            s if s < PAYDAY => format!("{:02}:00 local", s - HOUR),
            s if s < SINCE => match s - PAYDAY {
                0 => "their payday".to_owned(),
                8 => "no known payday".to_owned(),
                7 => "a week or more after their payday".to_owned(),
                1 => "the day after their payday".to_owned(),
                n => format!("{n} days after their payday"),
            },
            s if s >= BEFORE => match s - BEFORE {
                0 => "the day before their payday".to_owned(),
                n => format!("{} days before their payday", n + 1),
            },
            s => {
                let span = s - SINCE;
                let from = span.checked_sub(1).map_or(0, |p| SINCE_SPANS[p]);
                match SINCE_SPANS.get(span) {
                    Some(to) => format!("{from}–{to} days after the failure"),
                    None => format!("{from}+ days after the failure"),
                }
            }
        }
    }
}

/// One attempt's outcome, with what it is counted by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub reason: Reason,
    pub country: Option<String>,
    pub funding: Option<Funding>,
    pub moment: Moment,
    pub paid: bool,
}

impl Observation {
    /// An attempt of `case` at `at`; `None` for a case no retry plan learns for (a hard decline),
    /// for an attempt on the customer's new payment method (that one says what a new card does,
    /// not what the moment does for the card that failed), and for one that followed another
    /// invoice's payment on the card (that payment chose the moment, not the moment's features).
    pub fn of(case: &Case, at: Timestamp, paid: bool) -> Option<Self> {
        if case.answered_by_new_card() || case.card_paid_since_last_attempt().is_some() {
            return None;
        }
        Some(Self {
            reason: Reason::of(case)?,
            country: case.country.as_deref().map(str::to_ascii_uppercase),
            funding: Funding::of(case),
            moment: Moment::of(case, at),
            paid,
        })
    }

    /// The groups the attempt counts in: its country on its funding's cards, its country, its
    /// funding's cards in every country, and everywhere — those it knows.
    pub fn groups(&self) -> impl Iterator<Item = Group> + '_ {
        let countries = self.country.iter().cloned().map(Some).chain([None]);
        countries.flat_map(move |country| {
            let fundings = self.funding.into_iter().map(Some).chain([None]);
            fundings.map(move |funding| Group {
                reason: self.reason,
                country: country.clone(),
                funding,
            })
        })
    }
}

/// The value an export gives a feature's first slot: days of the month and days before a payday
/// count from 1, the rest from 0.
fn first_value(feature: &str) -> usize {
    usize::from(matches!(feature, "day" | "before"))
}

/// The span of time since the case's failure that `at` falls in.
fn since(case: &Case, at: Timestamp) -> usize {
    let days = case
        .failed_at
        .map_or(0, |failed| at.duration_since(failed).as_hours() / 24);
    SINCE_SPANS
        .iter()
        .position(|&end| days < end)
        .unwrap_or(SINCE_SPANS.len())
}

/// Where a date falls in the customer's pay cycle, given whether the date `n` days from it is one
/// of their likely paydays: on one, or 1–3 days before one (the days their earlier invoices were
/// paid on are often a day or more after the money came, so the money may be there before them),
/// else the days since the latest one (up to 7 for a week or more).
fn payday_slot(payday: impl Fn(i64) -> bool) -> usize {
    if payday(0) {
        return PAYDAY;
    }
    if let Some(ahead) = (1..=3).find(|&ahead| payday(ahead)) {
        return BEFORE + usize::try_from(ahead - 1).unwrap_or(0);
    }
    (1..7)
        .find(|&back| payday(-back))
        .map_or(PAYDAY + 7, |back| {
            PAYDAY + usize::try_from(back).unwrap_or(7)
        })
}

/// Where each of a run of local dates falls in a case's pay cycle ([`Moment`]'s payday slot), worked
/// out together: a choice scores three weeks of days, and each alone would test ten dates for a
/// payday.
pub struct PayCycle {
    /// The first date the table covers: six days before the first date asked about.
    first: Date,
    /// Whether each date from `first` on is a likely payday; empty when none is known.
    paydays: Vec<bool>,
}

impl PayCycle {
    /// The pay cycle of `case` around the dates `from` to `to`.
    pub fn new(case: &Case, from: Date, to: Date) -> Self {
        let first = from.checked_sub(jiff::Span::new().days(6)).unwrap_or(from);
        let mut paydays = Vec::new();
        if !case.paydays.is_empty() {
            let mut date = first;
            while date <= to.checked_add(jiff::Span::new().days(3)).unwrap_or(to) {
                paydays.push(timing::is_payday(date, &case.paydays));
                let Ok(next) = date.tomorrow() else { break };
                date = next;
            }
        }
        Self { first, paydays }
    }

    /// Where `date` falls: "no payday known" when the case knows none, and as if no date outside
    /// the table were a payday.
    pub fn slot(&self, date: Date) -> usize {
        if self.paydays.is_empty() {
            return PAYDAY + 8;
        }
        let from_first = date.duration_since(self.first).as_hours() / 24;
        payday_slot(|days| {
            usize::try_from(from_first + days)
                .ok()
                .and_then(|n| self.paydays.get(n))
                .is_some_and(|&payday| payday)
        })
    }
}

/// A group of evidence: a reason, in one country (`None`: in all of them), on cards of one
/// funding (`None`: on every card).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Group {
    pub reason: Reason,
    pub country: Option<String>,
    pub funding: Option<Funding>,
}

impl Group {
    /// The group in words: "insufficient_funds declines in BR on debit cards".
    pub fn words(&self) -> String {
        let mut words = format!("{} declines", self.reason.as_str());
        match &self.country {
            Some(country) => words += &format!(" in {country}"),
            None => words += " in all countries",
        }
        if let Some(funding) = self.funding {
            words += &format!(" on {} cards", funding.as_str());
        }
        words
    }

    /// Every card in every country: where a reason's tries are all counted.
    pub fn everywhere(reason: Reason) -> Self {
        Self {
            reason,
            country: None,
            funding: None,
        }
    }
}

/// Everything learned: counts by group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evidence {
    pub groups: BTreeMap<Group, Counts>,
}

impl Evidence {
    /// Counts one attempt of `case` at `at` that was paid or not.
    pub fn record(&mut self, case: &Case, at: Timestamp, paid: bool) {
        if let Some(observation) = Observation::of(case, at, paid) {
            self.add(&observation);
        }
    }

    /// Counts one observed attempt in each of its groups ([`Observation::groups`]).
    pub fn add(&mut self, observation: &Observation) {
        for group in observation.groups() {
            let counts = self.groups.entry(group).or_default();
            for slot in std::iter::once(BASE).chain(observation.moment.slots) {
                counts.tries[slot] = counts.tries[slot].saturating_add(1);
                counts.paid[slot] = counts.paid[slot].saturating_add(u32::from(observation.paid));
            }
            if counts.tries[BASE] >= FADE_AT {
                counts.halve();
            }
        }
    }

    /// Halves every group with `at` tries or more; whether any was.
    pub fn fade(&mut self, at: u32) -> bool {
        let mut faded = false;
        for counts in self.groups.values_mut().filter(|c| c.tries[BASE] >= at) {
            counts.halve();
            faded = true;
        }
        faded
    }

    /// All tries of `reason`, in every country.
    pub fn tries(&self, reason: Reason) -> u32 {
        self.groups
            .get(&Group::everywhere(reason))
            .map_or(0, |c| c.tries[BASE])
    }

    /// Adds another evidence's counts to this one (an import on top of what is known).
    pub fn merge(&mut self, other: &Evidence) {
        for (group, theirs) in &other.groups {
            let mine = self.groups.entry(group.clone()).or_default();
            for slot in 0..SLOTS {
                mine.tries[slot] = mine.tries[slot].saturating_add(theirs.tries[slot]);
                mine.paid[slot] = mine.paid[slot].saturating_add(theirs.paid[slot]);
            }
        }
    }

    /// The evidence as text, one line per group and feature value with tries and payments:
    /// `insufficient_funds BR debit day 25 412 160` (`*` for every country or every card). Stable
    /// and diffable; [`Evidence::parse`] reads it.
    pub fn export(&self) -> String {
        let mut text =
            String::from("# recoup evidence v2: reason country funding feature value tries paid\n");
        for (group, counts) in &self.groups {
            let country = group.country.as_deref().unwrap_or("*");
            let funding = group.funding.map_or("*", Funding::as_str);
            let group = format!("{} {country} {funding}", group.reason.as_str());
            let base = (counts.tries[BASE], counts.paid[BASE]);
            text += &format!("{group} all 0 {} {}\n", base.0, base.1);
            for (name, start, len) in FEATURES {
                for value in 0..len {
                    let slot = start + value;
                    if counts.tries[slot] > 0 {
                        let shown = value + first_value(name);
                        text += &format!(
                            "{group} {name} {shown} {} {}\n",
                            counts.tries[slot], counts.paid[slot]
                        );
                    }
                }
            }
        }
        text
    }

    /// Reads what [`Evidence::export`] wrote, and the first version's lines, which had no funding
    /// (`insufficient_funds BR day 25 412 160`: every card); a bad line is named with what is
    /// wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut evidence = Evidence::default();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fail = |why: &str| format!("line {}: {why}: {line:?}", n + 1);
            let words: Vec<&str> = line.split_whitespace().collect();
            let (reason, country, funding, feature, value, tries, paid) = match words[..] {
                [r, c, f, feature, v, t, p] => (r, c, f, feature, v, t, p),
                [r, c, feature, v, t, p] => (r, c, "*", feature, v, t, p),
                _ => {
                    return Err(fail(
                        "expected seven words: reason country funding feature value tries paid",
                    ));
                }
            };
            let reason = Reason::parse(reason)
                .ok_or_else(|| fail("unknown reason (insufficient_funds, soft or ambiguous)"))?;
            let country = match country {
                "*" => None,
                c if c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()) => {
                    Some(c.to_owned())
                }
                _ => return Err(fail("the country must be two capital letters or *")),
            };
            let funding = match funding {
                "*" => None,
                f => Some(
                    Funding::parse(f)
                        .ok_or_else(|| fail("the funding must be credit, debit, prepaid or *"))?,
                ),
            };
            let value: usize = value
                .parse()
                .map_err(|_| fail("the value must be a whole number"))?;
            let slot = match feature {
                "all" if value == 0 => BASE,
                _ => FEATURES
                    .iter()
                    .find(|(name, _, _)| *name == feature)
                    .and_then(|&(name, start, len)| {
                        let value = value.checked_sub(first_value(name))?;
                        (value < len).then_some(start + value)
                    })
                    .ok_or_else(|| {
                        fail("unknown feature or value (all 0, day 1–31, weekday 0–6, hour 0–23, payday 0–8, since 0–7, before 1–3)")
                    })?,
            };
            let count = |word: &str| {
                word.parse::<u32>()
                    .map_err(|_| fail("tries and paid must be whole numbers"))
            };
            let (tries, paid) = (count(tries)?, count(paid)?);
            if paid > tries {
                return Err(fail("more paid than tries"));
            }
            let group = Group {
                reason,
                country,
                funding,
            };
            let counts = evidence.groups.entry(group).or_default();
            counts.tries[slot] = tries;
            counts.paid[slot] = paid;
        }
        Ok(evidence)
    }
}
