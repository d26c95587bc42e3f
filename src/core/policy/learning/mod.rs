//! Learned retry timing: when, by the evidence of earlier attempts, money is most likely there.
//!
//! The static plan ([`super::Plan`]) says how many retries an invoice gets and roughly when. With
//! learning on, each scheduled retry's moment is chosen again from what recoup's own earlier
//! attempts came to ([`Evidence`]): the candidate moments are every second local hour inside the
//! plan's window, widened to learning's `hours` (03:00–21:00 by default), on each day from
//! `min_gap` after the last attempt up to `look_ahead` later (never past the plan's `within`,
//! never before a wait the card's network asked for), plus the static plan's own moment. Each is
//! given an estimated chance of success, and the best one, discounted 2% for every day it makes
//! the customer wait, is taken.
//!
//! **Hours outside the plan's window.** Money that lands overnight is often gone by mid-morning:
//! a retry at 07:00 finds it, one at 09:00 does not. So learning may retry earlier or later than
//! the plan's own window — but only where its evidence shows money there: with no evidence of its
//! own, an hour outside the window is estimated at [`OUTSIDE_THE_WINDOW`] of the same hour inside
//! it, so the plan's daytime wins until attempts at that hour (those that explore, at first) have
//! paid more often than the daytime's.
//!
//! **The estimate, in one paragraph.** Attempts are grouped by why the invoice failed
//! ([`Reason`]), how the failed card is funded ([`Funding`]) and the customer's country. A
//! group's rate is its payments over its tries, shrunk toward the coarser group's: the country's
//! cards of one funding toward that funding's cards in all countries, which are shrunk toward all
//! cards everywhere, which are shrunk toward a fixed prior (a card whose funding Stripe did not
//! show: its country's cards, toward all cards everywhere); with `n` tries and `s` payments,
//! `(s + k·parent) / (n + k)`, `k` = [`PRIOR_WEIGHT`] — a Beta-binomial posterior mean whose
//! prior is the coarser group, so thin evidence says little and rich evidence speaks for itself.
//! Each feature of the moment (day of the month, weekday, local hour,
//! days after or before the customer's own payday) has a lift, its own shrunk rate over the
//! group's, and the group's rate is multiplied by the geometric mean of the lifts: a day of the
//! month that paid three times as often as the rest, on an ordinary weekday, hour and payday
//! distance, lifts the estimate by 3^¼. Not by their product: the features are one thing — where the customer's
//! money is in its cycle — seen from several sides (a payday is a day of the month, a weekday
//! and a distance from their payday at once), so multiplying them counted the same evidence up
//! to four times, and a moment strong on all four sides drowned everything else. (Measured
//! 2026-12-06: the product recovered 0.1–3.6 points less of the oracle's revenue on all eight
//! synthetic populations tried, `docs/design/learning.md`.) The strongest lift is printed in
//! the explanation.
//!
//! **Exploring.** A choice that only ever exploits never learns about the days it avoids. For a
//! share `explore` of retries — drawn from a hash of the invoice and attempt, so a simulation
//! replays exactly — each estimate is raised by two standard errors of its evidence, which favours
//! moments little tried. The explanation says when a choice explored.
//!
//! Until a reason has `min_evidence` tries in all, the static plan decides alone: learning never
//! starts from nothing. And it never adds an attempt the plan does not have or moves one past a
//! network's rule: the budgets are still checked when the retry comes due.

mod evidence;

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use self::evidence::{Counts, Evidence, FADE_AT, Group, Moment, Observation};
use self::evidence::{PayCycle, SLOTS};
use super::duration::human;
use super::{Case, DeclineClass, NextRetry, Plan, time, timing};

/// Pseudo-tries a group's parent is worth: below this many tries, a group's own rate counts for
/// less than its parent's.
pub const PRIOR_WEIGHT: f64 = 30.0;

/// Each day a candidate makes the customer wait costs this share of its value (2%): a payment today
/// is worth more than one in a week, when the customer may have left or paid by themselves, and a
/// retry spent early leaves the later ones to find the money — but a likely payday a fortnight away
/// (worth 75% of itself today) still beats an unlikely tomorrow. At 1% a day retries waited for the
/// best-looking day too often and too few were made: 2% recovered 0.8 points more of the oracle's
/// revenue on average over eight synthetic populations (−0.9 to +2.4), for 0.2–0.5 attempts more an
/// invoice; 3% and 4% were no better on the whole and spent up to 3.5 attempts (2026-12-06,
/// docs/design/learning.md).
const DAILY_DISCOUNT: f64 = 0.98;

/// A retry at the local hour the last attempt failed at is worth this much less: when an
/// attempt at one hour fails, the next is not blindly at the same hour.
const SAME_HOUR: f64 = 0.9;

/// What an hour outside the plan's window is estimated at, before its own evidence, beside an
/// hour inside it: it must show money there to be chosen. Measured 2026-12-07 on eight
/// populations, learning from 05:00: with no handicap, early hours were tried before their
/// evidence said no, and seven populations whose money lasts into the day lost up to 0.7 points of
/// the oracle's revenue; at 0.8 they moved −0.4 to +0.3 (0.7 was no better), and one whose money
/// lands overnight and is gone by morning gained 6.8 (7.6 without) (docs/design/learning.md).
pub const OUTSIDE_THE_WINDOW: f64 = 0.8;

/// How learning is tuned (`[learning]` in the policy file).
#[derive(Debug, Clone, PartialEq)]
pub struct Learning {
    pub enabled: bool,
    /// Share of retries, in percent, that explore moments little tried.
    pub explore: u8,
    /// Tries of a reason, in all, before learning chooses for it.
    pub min_evidence: u32,
    /// The earliest candidate: this long after the last attempt.
    pub min_gap: SignedDuration,
    /// The latest candidate: this long after the earliest.
    pub look_ahead: SignedDuration,
    /// The local hours a learned retry may fall in: the plan's window, widened to these; an hour
    /// outside the plan's window is chosen only where the evidence shows money there
    /// ([`OUTSIDE_THE_WINDOW`]).
    pub hours: timing::Window,
}

impl Default for Learning {
    fn default() -> Self {
        Self {
            enabled: true,
            explore: 10,
            min_evidence: 300,
            min_gap: SignedDuration::from_hours(24),
            look_ahead: SignedDuration::from_hours(21 * 24),
            hours: timing::Window {
                start_hour: 3,
                end_hour: 21,
            },
        }
    }
}

/// Why an invoice failed, as far as timing is concerned: an empty account waits for money, other
/// soft declines for the issuer, an ambiguous one for whatever it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Reason {
    InsufficientFunds,
    Soft,
    Ambiguous,
}

impl Reason {
    /// The reason of a case whose retries are planned; `None` for declines no retry plan has.
    pub fn of(case: &Case) -> Option<Reason> {
        let decline = case.decline.as_ref()?;
        match decline.class {
            DeclineClass::Soft if decline.code.as_deref() == Some("insufficient_funds") => {
                Some(Reason::InsufficientFunds)
            }
            DeclineClass::Soft => Some(Reason::Soft),
            DeclineClass::Ambiguous => Some(Reason::Ambiguous),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InsufficientFunds => "insufficient_funds",
            Reason::Soft => "soft",
            Reason::Ambiguous => "ambiguous",
        }
    }

    pub fn parse(word: &str) -> Option<Reason> {
        [Reason::InsufficientFunds, Reason::Soft, Reason::Ambiguous]
            .into_iter()
            .find(|r| r.as_str() == word)
    }

    /// What an attempt is assumed to come to before any evidence: modest, so evidence soon rules.
    fn prior(self) -> f64 {
        match self {
            Reason::InsufficientFunds => 0.15,
            Reason::Soft => 0.25,
            Reason::Ambiguous => 0.1,
        }
    }
}

/// How the failed card is funded, as far as timing is concerned: a credit line frees up when its
/// statement is paid, a debit card's account fills on payday, a prepaid card when it is topped up.
/// Stripe's `unknown`, and a card whose funding Stripe did not show, are none of them: their
/// evidence is their country's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Funding {
    Credit,
    Debit,
    Prepaid,
}

impl Funding {
    /// The funding of the card `case` failed on, when it is one evidence is kept for.
    pub fn of(case: &Case) -> Option<Funding> {
        Funding::parse(case.card.as_ref()?.funding.as_deref()?)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Funding::Credit => "credit",
            Funding::Debit => "debit",
            Funding::Prepaid => "prepaid",
        }
    }

    pub fn parse(word: &str) -> Option<Funding> {
        [Funding::Credit, Funding::Debit, Funding::Prepaid]
            .into_iter()
            .find(|f| f.as_str() == word)
    }
}

/// A learned choice of a retry's moment, kept on the case so that later inputs do not move it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RetryChoice {
    pub attempt: u32,
    /// The attempt it was planned after (its time): a new attempt makes a new choice.
    #[schema(value_type = String, format = DateTime)]
    pub after: Timestamp,
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    /// The explanation, for the timeline and the status page.
    pub why: String,
}

/// The retry the static plan chose, moved to the moment the evidence favours when learning
/// applies; the case's earlier choice for the same attempt when it has one.
pub fn retime(
    learning: &Learning,
    evidence: &Evidence,
    plan: &Plan,
    case: &Case,
    next: NextRetry,
) -> (NextRetry, Option<RetryChoice>) {
    let Some(last) = case.attempts.last() else {
        return (next, None);
    };
    if let Some(kept) = case
        .retry_choice
        .as_ref()
        .filter(|c| c.attempt == next.attempt && c.after == last.at)
    {
        let at = kept.at;
        let why = kept.why.clone();
        return (NextRetry { at, why, ..next }, Some(kept.clone()));
    }
    let Some(reason) = Reason::of(case) else {
        return (next, None);
    };
    if next.prompted || !learning.enabled || evidence.tries(reason) < learning.min_evidence {
        return (next, None);
    }
    let Some(first_failure) = case.failed_at else {
        return (next, None);
    };
    let zone = timing::zone(&case.customer_timezone);
    let network_wait = super::plan::network_wait(case);
    let hours = plan.window.widened_by(learning.hours);
    let earliest = timing::into_window(
        time::later(last.at, learning.min_gap.max(network_wait)),
        &zone,
        hours,
    );
    let latest = time::later(earliest, learning.look_ahead).min(plan.end(case, first_failure).at);
    // No candidate fits before the end (the card expires first): the static plan's retry stands.
    if earliest > latest {
        return (next, None);
    }
    let funding = Funding::of(case);
    let groups = Groups::new(
        evidence,
        reason,
        case.country.as_deref(),
        funding,
        plan.window,
    );
    let explore = explores(&case.invoice_id, next.attempt, learning.explore);
    let last_hour = at_hour(last.at, &zone);
    let mut candidates = Candidates::between(earliest, latest, &zone, hours, plan.window);
    if next.at <= latest {
        let local = next.at.to_zoned(zone.clone());
        candidates.push(next.at, local.date(), local.hour());
    }
    let (Some(&first), Some(&last_date)) =
        (candidates.days.iter().min(), candidates.days.iter().max())
    else {
        return (next, None);
    };
    let cycle = PayCycle::new(case, first, last_date);
    // What each day's evidence says, worked out once a day, not once for each of its hours.
    let days: Vec<DayLifts> = candidates
        .days
        .iter()
        .map(|&date| groups.day(date, cycle.slot(date)))
        .collect();
    // The discount of waiting from `earliest` to `at`: DAILY_DISCOUNT^days, as an `exp` (half a
    // `powf`).
    let per_day = DAILY_DISCOUNT.ln();
    let discount = |at: Timestamp| {
        let waited = at.duration_since(earliest).as_secs_f64().max(0.0) / 86_400.0;
        (waited * per_day).exp()
    };
    let score = |candidate: &Candidate| {
        let chance = groups.chance(&days[candidate.day], groups.hour(candidate.hour));
        let mut value = chance;
        if explore {
            value += 2.0 * (value * (1.0 - value) / (f64::from(groups.tries) + 1.0)).sqrt();
        }
        if candidate.hour == last_hour {
            value *= SAME_HOUR;
        }
        Scored {
            value: value * discount(candidate.at),
            at: candidate.at,
            day: candidate.day,
            hour: candidate.hour,
            chance,
        }
    };
    // Best first; ties go to the earlier moment, so the order of candidates never decides.
    let better = |a: &&Scored, b: &&Scored| a.value.total_cmp(&b.value).then(b.at.cmp(&a.at));
    // Nobody reads the reasons of a case that keeps no story (a simulated one): the choice is
    // all it needs, and writing them (or keeping every score for the runner-up) would cost more
    // than making it.
    if case.untold {
        // A day whose best imaginable moment — its hours' most favoured one, at its first
        // moment's discount, with the widest exploring bonus — cannot beat the best moment found
        // so far is not scored: the same choice as scoring it, for most days' work saved (later
        // days carry more discount). Each step of the bound is a monotone float operation on
        // larger inputs than the moment's own, so it is never below a moment's value; the
        // margin is for the `exp` of arguments a few hours apart.
        let top_hour = candidates
            .moments
            .iter()
            .map(|c| groups.hour(c.hour))
            .fold(0.0, f64::max);
        let bonus = if explore {
            2.0 * (0.25 / (f64::from(groups.tries) + 1.0)).sqrt()
        } else {
            0.0
        };
        let mut best: Option<Scored> = None;
        // The day of the run of moments the bound is for, and the moment whose discount it took:
        // a run's later moments wait longer. (The static plan's moment, added last, can fall
        // before the moments of its day: it starts a run of its own.)
        let mut run: Option<(usize, Timestamp)> = None;
        let mut beaten = false;
        for candidate in &candidates.moments {
            if run.is_none_or(|(day, from)| candidate.day != day || candidate.at < from) {
                run = Some((candidate.day, candidate.at));
                let bound = (groups.chance(&days[candidate.day], top_hour) + bonus)
                    * discount(candidate.at)
                    * (1.0 + 1e-9);
                beaten = best.as_ref().is_some_and(|best| bound < best.value);
            }
            if beaten {
                continue;
            }
            let scored = score(candidate);
            if best
                .as_ref()
                .is_none_or(|best| better(&&scored, &best).is_ge())
            {
                best = Some(scored);
            }
        }
        let Some(best) = best else {
            return (next, None);
        };
        let at = best.at;
        let choice = RetryChoice {
            attempt: next.attempt,
            after: last.at,
            at,
            why: String::new(),
        };
        return (
            NextRetry {
                at,
                why: String::new(),
                ..next
            },
            Some(choice),
        );
    }
    let scored: Vec<Scored> = candidates.moments.iter().map(&score).collect();
    let Some(best) = scored.iter().max_by(better) else {
        return (next, None);
    };
    let at = best.at;
    let best_date = candidates.days[best.day];
    let best_moment = Moment::on(best_date, best.hour, days[best.day].payday, case, at);
    let zone_name = &case.customer_timezone;
    let local = |t: Timestamp| {
        t.to_zoned(zone.clone())
            .strftime("%a %-d %b %H:%M")
            .to_string()
    };
    let runner_up = scored
        .iter()
        .filter(|s| candidates.days[s.day] != best_date)
        .max_by(better)
        .map(|s| format!("; runner-up {} at {:.0}%", local(s.at), s.chance * 100.0))
        .unwrap_or_default();
    // The finest group with tries of its own: what the estimate rests on most.
    let country = case.country.as_deref().map(str::to_ascii_uppercase);
    let finest = match funding {
        Some(_) => vec![(country, funding), (None, funding)],
        None => vec![(country, None)],
    };
    let rested = finest
        .into_iter()
        .find_map(|(country, funding)| {
            let group = Group {
                reason,
                country,
                funding,
            };
            let tries = evidence.groups.get(&group).map_or(0, |c| c.tries[0]);
            (tries > 0 && group != Group::everywhere(reason)).then_some((group, tries))
        })
        .map_or_else(
            || {
                format!(
                    "{} tries of {} declines in all countries",
                    evidence.tries(reason),
                    reason.as_str()
                )
            },
            |(group, tries)| format!("{tries} tries of {}", group.words()),
        );
    // Learning's own hours: the evidence showed money there, or this retry explores.
    let outside = if plan.window.admits(best.hour) {
        String::new()
    } else {
        format!(
            ", outside the plan's {:02}:00–{:02}:00",
            plan.window.start_hour, plan.window.end_hour
        )
    };
    let why = format!(
        "retry {} chosen by what earlier attempts came to: {} {zone_name}{outside}, estimated \
         {:.0}% ({}; from {rested}){runner_up}{}; the static plan said {}; between {} (the last \
         attempt + {}) and {}",
        next.attempt - 1,
        local(at),
        best.chance * 100.0,
        groups.strongest(&best_moment),
        if explore {
            "; this retry explores moments little tried"
        } else {
            ""
        },
        local(next.at),
        local(earliest),
        human(learning.min_gap.max(network_wait)),
        local(latest),
    );
    let choice = RetryChoice {
        attempt: next.attempt,
        after: last.at,
        at,
        why: why.clone(),
    };
    (NextRetry { at, why, ..next }, Some(choice))
}

/// Whether the retry `attempt` of `invoice_id` explores: a fixed draw from a hash of both.
fn explores(invoice_id: &str, attempt: u32, percent: u8) -> bool {
    let digest = Sha256::new()
        .chain_update(b"explore")
        .chain_update(invoice_id)
        .chain_update(attempt.to_be_bytes())
        .finalize();
    digest
        .first()
        .is_some_and(|b| u32::from(*b) * 100 < u32::from(percent) * 256)
}

fn at_hour(at: Timestamp, zone: &jiff::tz::TimeZone) -> i8 {
    at.to_zoned(zone.clone()).hour()
}

/// A candidate moment and its value.
struct Scored {
    value: f64,
    at: Timestamp,
    /// Its local day, as an index into [`Candidates::days`], and its local hour.
    day: usize,
    hour: i8,
    /// Its estimated chance of success.
    chance: f64,
}

/// The moments a choice scores, by the local day each falls on: a day's evidence is read once
/// for all of its hours.
struct Candidates {
    /// The local dates the moments fall on, each once.
    days: Vec<jiff::civil::Date>,
    moments: Vec<Candidate>,
}

/// One candidate moment: its time, the index of its local date in [`Candidates::days`] and its
/// local hour (which scoring needs, and which cost a time-zone lookup to work out again).
struct Candidate {
    at: Timestamp,
    day: usize,
    hour: i8,
}

impl Candidates {
    /// Every second local hour inside `hours`, counted from the opening of the plan's own
    /// `window` (so the plan's own hours are always among them), on each day from `earliest` to
    /// `latest`.
    fn between(
        earliest: Timestamp,
        latest: Timestamp,
        zone: &jiff::tz::TimeZone,
        hours: timing::Window,
        window: timing::Window,
    ) -> Self {
        let first = window.start_hour
            - (window.start_hour - hours.start_hour.min(window.start_hour)) / 2 * 2;
        let hours = || {
            (first..hours.end_hour.min(24))
                .step_by(2)
                .map(|hour| i8::try_from(hour).unwrap_or(0))
        };
        let days =
            usize::try_from(latest.duration_since(earliest).as_hours() / 24 + 2).unwrap_or(0);
        let mut found = Self {
            days: Vec::with_capacity(days),
            moments: Vec::with_capacity(days * hours().count()),
        };
        let mut day = earliest.to_zoned(zone.clone()).date();
        // A day's start and offset, known without a look-up when the day before was steady.
        let mut carried: Option<(Timestamp, jiff::tz::Offset)> = None;
        loop {
            let (start, offset, midnight) = match carried.take() {
                Some((start, offset)) => (start, offset, true),
                None => {
                    let Ok(start) = day.to_zoned(zone.clone()) else {
                        break;
                    };
                    (start.timestamp(), start.offset(), start.hour() == 0)
                }
            };
            if start > latest {
                break;
            }
            // On a day that starts at midnight and whose clocks do not change for 25 hours
            // (almost all), the local hour h is h hours after the day's start, and the next day
            // starts 24 hours after it: one look-up of the zone a day, not one an hour.
            let steady = midnight
                && zone.to_offset(time::later(start, SignedDuration::from_hours(25))) == offset;
            for hour in hours() {
                // Midnight in any zone is a whole second, so this is the day's start plus `hour`
                // hours to the nanosecond, for a few instructions less than a duration's sum.
                let at = if steady {
                    Timestamp::from_second(start.as_second() + 3600 * i64::from(hour))
                } else {
                    day.at(hour, 0, 0, 0)
                        .to_zoned(zone.clone())
                        .map(|z| z.timestamp())
                };
                if let Some(at) = at.ok().filter(|at| earliest <= *at && *at <= latest) {
                    if found.days.last() != Some(&day) {
                        found.days.push(day);
                    }
                    let day = found.days.len() - 1;
                    found.moments.push(Candidate { at, day, hour });
                }
            }
            let Ok(next) = day.tomorrow() else { break };
            day = next;
            if steady {
                carried = Timestamp::from_second(start.as_second() + 86_400)
                    .ok()
                    .map(|start| (start, offset));
            }
        }
        if found.moments.is_empty() {
            let local = earliest.to_zoned(zone.clone());
            found.push(earliest, local.date(), local.hour());
        }
        found
    }

    /// Adds the moment `at`, at local `hour` of `date`.
    fn push(&mut self, at: Timestamp, date: jiff::civil::Date, hour: i8) {
        let day = match self.days.iter().rposition(|&d| d == date) {
            Some(day) => day,
            None => {
                self.days.push(date);
                self.days.len() - 1
            }
        };
        self.moments.push(Candidate { at, day, hour });
    }
}

/// What the evidence says of one local date: the product of its day of the month's and its
/// weekday's lifts, and its payday slot and that slot's lift.
struct DayLifts {
    date: f64,
    payday: usize,
    payday_lift: f64,
}

/// One group's rates, its total's (slot 0) and each feature value's, each shrunk toward what the
/// group above it says: `(paid + k·expected) / (tries + k)`, `k` = [`PRIOR_WEIGHT`].
struct Level {
    rates: [f64; SLOTS],
    /// The group's own tries.
    tries: u32,
}

impl Level {
    /// The group of every country and card: shrunk toward the reason's fixed prior, times
    /// `handicap` of a slot (an hour outside the plan's window starts lower).
    fn root(counts: Option<&Counts>, prior: f64, handicap: impl Fn(usize) -> f64) -> Self {
        let base = shrunk(counts, 0, prior);
        let mut rates = [base; SLOTS];
        for (slot, rate) in rates.iter_mut().enumerate().skip(1) {
            *rate = shrunk(counts, slot, base * handicap(slot));
        }
        Self {
            rates,
            tries: counts.map_or(0, |c| c.tries[0]),
        }
    }

    /// A group below `parent`: its total shrunk toward the parent's, and each feature value
    /// toward the parent's rate there scaled by the two totals (a country whose cards pay half as
    /// often as everywhere's is expected to pay half as often on the 25th too, until its own
    /// 25ths say otherwise).
    fn under(counts: Option<&Counts>, parent: &Level) -> Self {
        let base = shrunk(counts, 0, parent.rates[0]);
        let mut rates = [base; SLOTS];
        for (slot, rate) in rates.iter_mut().enumerate().skip(1) {
            *rate = shrunk(counts, slot, parent.rates[slot] * base / parent.rates[0]);
        }
        Self {
            rates,
            tries: counts.map_or(0, |c| c.tries[0]),
        }
    }
}

/// A group's rate at `slot`, shrunk toward `expected`: a Beta-binomial posterior mean whose prior
/// is worth [`PRIOR_WEIGHT`] tries.
fn shrunk(counts: Option<&Counts>, slot: usize, expected: f64) -> f64 {
    let (tries, paid) = counts.map_or((0.0, 0.0), |c| {
        (f64::from(c.tries[slot]), f64::from(c.paid[slot]))
    });
    (paid + PRIOR_WEIGHT * expected) / (tries + PRIOR_WEIGHT)
}

/// What a case's evidence says of each moment: its base rate, and each feature value's lift.
///
/// A choice scores a hundred-odd candidate moments that share a few dozen feature values, so
/// each value's lift is worked out once, when the groups are read, not once per moment.
struct Groups {
    /// The reason's rate in the case's country, shrunk toward all countries'.
    base: f64,
    /// Each slot's lift over `base` (1 for the slots no estimate multiplies).
    lift: [f64; SLOTS],
    /// The tries of the case's own group (the reason in its country on its funding's cards, or
    /// as much of that as the case knows).
    tries: u32,
}

impl Groups {
    /// The case's groups of evidence, each shrunk toward the one above it ([`Level`]): its reason
    /// everywhere; on cards of its funding in every country; in its country on cards of that
    /// funding — or, when Stripe did not show the card's funding, in its country on every card.
    /// The finest the case knows is its estimate. An hour outside the plan's `window` starts from [`OUTSIDE_THE_WINDOW`] of the
    /// rate everywhere, which its own evidence then moves.
    fn new(
        evidence: &Evidence,
        reason: Reason,
        country: Option<&str>,
        funding: Option<Funding>,
        window: timing::Window,
    ) -> Self {
        let get = |country: Option<String>, funding: Option<Funding>| {
            evidence.groups.get(&Group {
                reason,
                country,
                funding,
            })
        };
        let country = country.map(str::to_ascii_uppercase);
        let everywhere = Level::root(
            get(None, None),
            reason.prior(),
            |slot| match Moment::hour_of(slot) {
                Some(hour) if !window.admits(hour) => OUTSIDE_THE_WINDOW,
                _ => 1.0,
            },
        );
        // A card's funding says more of when money comes than its country does: a credit line
        // frees up at its statement, a prepaid card when topped up, wherever they are. So a
        // country's cards of one funding are shrunk toward that funding's cards everywhere, not
        // toward the country's every card (measured: docs/design/learning.md#funding).
        let on_funding = funding.map(|f| Level::under(get(None, Some(f)), &everywhere));
        let own = match (country, on_funding) {
            (Some(country), Some(on_funding)) => {
                Level::under(get(Some(country), funding), &on_funding)
            }
            (Some(country), None) => Level::under(get(Some(country), None), &everywhere),
            (None, Some(on_funding)) => on_funding,
            (None, None) => everywhere,
        };
        let mut lift = [1.0; SLOTS];
        for (slot, lift) in lift.iter_mut().enumerate().skip(1) {
            *lift = own.rates[slot] / own.rates[0];
        }
        Self {
            base: own.rates[0],
            lift,
            tries: own.tries,
        }
    }

    /// What the evidence says of `date`, which falls at `payday` in the customer's pay cycle.
    fn day(&self, date: jiff::civil::Date, payday: usize) -> DayLifts {
        let [day, weekday] = Moment::date_slots(date);
        DayLifts {
            date: self.lift[day] * self.lift[weekday],
            payday,
            payday_lift: self.lift[payday],
        }
    }

    /// The lift of a local hour.
    fn hour(&self, hour: i8) -> f64 {
        self.lift[Moment::hour_slot(hour)]
    }

    /// The estimated chance of an attempt at an hour of lift `hour` on a day the evidence says
    /// `day` of.
    fn chance(&self, day: &DayLifts, hour: f64) -> f64 {
        // The geometric mean of the four lifts (day of the month, weekday, hour, payday), not
        // their product: see the module's doc. (The fourth root of their product, as two square
        // roots, which cost a tenth of a `powf`: four lifts between 1/60 and 60 stay far inside
        // the floats' range.)
        let lifts = day.date * hour * day.payday_lift;
        let lift = lifts.sqrt().sqrt();
        (self.base * lift).clamp(0.0005, 0.95)
    }

    /// The factor that moved a moment's estimate most, either way (a lift of ×2 and one of ×0.5
    /// are as strong), in words: "day 25 of the month ×2.8".
    fn strongest(&self, moment: &Moment) -> String {
        let mut strongest = None;
        let mut strongest_moved = 1.0f64;
        for slot in moment.factors() {
            let lift = self.lift[slot];
            let moved = lift.max(1.0 / lift);
            if moved > strongest_moved {
                strongest_moved = moved;
                strongest = Some((lift, slot));
            }
        }
        match strongest {
            Some((lift, slot)) => format!("{} ×{lift:.1}", Moment::words(slot)),
            None => "no moment stands out".to_owned(),
        }
    }
}
