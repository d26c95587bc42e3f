//! When a retry may happen, in the customer's own time.
//!
//! A retry is a charge the customer can see. A bank alert at 3 a.m. reads like fraud, and a card
//! that was empty on the 20th is often funded again on payday. The retry policy decides *how long*
//! to wait; this module decides *when* that wait may end, by the customer's own clock:
//!
//! - [`zone_name`] picks that clock: the zone the customer's metadata names, else a representative
//!   zone for their country, else UTC. It returns a name, so a case can store the guess it was
//!   planned with, and [`zone`] turns the stored name back into a zone.
//! - [`into_window`] moves an instant into the daily window (say 9:00–20:00) when charging a
//!   customer is polite.
//! - [`on_payday`] also waits for a payday, for `insufficient_funds` declines: money tends to
//!   arrive on fixed days of the month, so a retry then succeeds more often.
//! - [`jitter`] spreads retries apart: every case pushed into the window lands on its opening
//!   minute, and thousands of charges at 9:00:00 would hit Stripe (and the scheduler) in one burst.
//!
//! Local time is not UTC plus a constant. A DST change can skip the hour a window opens or repeat
//! one, so the window arithmetic follows the zone's real transitions instead of adding hours to a
//! wall clock.
//!
//! Everything here is pure: no clock is read (the caller passes the moment to start from), the
//! jitter comes from hashing the invoice rather than from a random generator, and the only thing
//! consulted is jiff's time zone database. The same inputs always give the same answer, which is
//! what lets a decision be replayed in tests or on a virtual clock.

mod zones;

use std::ops::Range;

use jiff::civil::{Date, DateTime, Time, date};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

/// A daily local-time window, [start, end) in whole hours, 0..=24, start < end. E.g. 9..20.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Window {
    pub start_hour: u8,
    pub end_hour: u8,
}

impl Window {
    /// The local hours (0..=23) the window admits.
    ///
    /// The fields are public and deserialised from config, so they may break the rules; rather
    /// than wait forever for an hour that never comes, an end past 24 counts as 24, and a window
    /// holding no hour at all (start >= end) admits the whole day: a retry at an odd hour beats
    /// no retry.
    fn hours(self) -> Range<i8> {
        let start = i8::try_from(self.start_hour).unwrap_or(i8::MAX);
        let end = i8::try_from(self.end_hour).unwrap_or(i8::MAX).min(24);
        if start < end { start..end } else { 0..24 }
    }

    /// The hours from the earlier start to the later end of the two windows: this one, widened to
    /// take in `other`.
    pub fn widened_by(self, other: Window) -> Window {
        Window {
            start_hour: self.start_hour.min(other.start_hour),
            end_hour: self.end_hour.max(other.end_hour),
        }
    }

    /// Whether the local `hour` is inside the window.
    pub fn admits(self, hour: i8) -> bool {
        self.hours().contains(&hour)
    }
}

/// The IANA name of the customer's time zone: `metadata_timezone` when it names a zone jiff knows
/// (e.g. "America/New_York"; trim whitespace; case as given must resolve via TimeZone::get), else a
/// representative zone for the ISO 3166-1 alpha-2 `country` (case-insensitive, e.g. "us" or "US"),
/// else "UTC".
///
/// A zone the customer (or the merchant) wrote down is better evidence than a country, which
/// only narrows it to a guess; the name comes back in jiff's canonical spelling, so
/// "america/new_york" is stored as "America/New_York".
pub fn zone_name(metadata_timezone: Option<&str>, country: Option<&str>) -> String {
    known_zone(metadata_timezone, country).unwrap_or_else(|| "UTC".to_owned())
}

/// [`zone_name`] without the fallback: `None` when neither the metadata nor the country names a
/// zone, so a guess already made from better evidence is not replaced by UTC.
pub fn known_zone(metadata_timezone: Option<&str>, country: Option<&str>) -> Option<String> {
    metadata_timezone
        .and_then(canonical_name)
        .or_else(|| country.and_then(zones::for_country).map(str::to_owned))
}

/// The canonical name of the zone `name` denotes, if jiff knows one. "Etc/Unknown" resolves but
/// names no zone (jiff gives it no IANA name), so it does not count.
fn canonical_name(name: &str) -> Option<String> {
    TimeZone::get(name.trim())
        .ok()?
        .iana_name()
        .map(str::to_owned)
}

/// The zone for a name from `zone_name` (or stored on a case); UTC when the name is unknown.
///
/// A stored name can outlive the database that resolved it (a zone renamed or dropped in a later
/// tzdb release); falling back to UTC keeps the case schedulable instead of failing it.
pub fn zone(name: &str) -> TimeZone {
    // Every decision looks its case's zone up, often several times; the database lookup (a
    // search and a lock) costs more than the rest of a decision's arithmetic, so the last few
    // zones a thread used are kept (a `TimeZone` is a reference-counted handle).
    thread_local! {
        static RECENT: std::cell::RefCell<Vec<(String, TimeZone)>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }
    const KEPT: usize = 8;
    RECENT.with_borrow_mut(|recent| {
        if let Some(at) = recent.iter().position(|(n, _)| n == name) {
            // Most look-ups ask for the zone asked for last: it stays where it is.
            if at == 0 {
                return recent[0].1.clone();
            }
            let found = recent.remove(at);
            let zone = found.1.clone();
            recent.insert(0, found);
            return zone;
        }
        let zone = TimeZone::get(name).unwrap_or(TimeZone::UTC);
        recent.truncate(KEPT - 1);
        recent.insert(0, (name.to_owned(), zone.clone()));
        zone
    })
}

/// The earliest instant at or after `at` whose local time in `zone` is inside `window`.
/// DST-correct: on a day where the window start does not exist (spring-forward gap) use the first
/// valid instant after it; never return an instant before `at`.
///
/// Within a day of the end of jiff's calendar (year 9999) there is no later window, and
/// `at` is returned as it is.
pub fn into_window(at: Timestamp, zone: &TimeZone, window: Window) -> Timestamp {
    first_in_window(at, zone, &window.hours()).unwrap_or(at)
}

/// Walks the stretches between `zone`'s transitions. Within one stretch the offset is fixed, so
/// the local clock keeps pace with real time and the wait for the window is plain arithmetic on
/// the local time. When that wait would run past the next transition, the clock jumps before the
/// window is reached, so the search starts over from the transition, on the clock as it reads
/// after the jump. That is what lands a window start lost in a spring-forward gap on the first
/// instant after the gap, and what notices a fall-back that sets the clock back into the window.
///
/// `None` only when the arithmetic runs off jiff's calendar.
fn first_in_window(at: Timestamp, zone: &TimeZone, hours: &Range<i8>) -> Option<Timestamp> {
    let mut from = at;
    loop {
        let wait = until_window(zone.to_datetime(from), hours)?;
        let arrival = from.checked_add(wait).ok()?;
        match zone.following(from).next() {
            Some(jump) if jump.timestamp() <= arrival => from = jump.timestamp(),
            _ => return Some(arrival),
        }
    }
}

/// How long a clock that never jumps takes from `local` to its next hour in `hours`: nothing when
/// already inside, else until the window opens later today or, once it has closed, tomorrow.
fn until_window(local: DateTime, hours: &Range<i8>) -> Option<SignedDuration> {
    if hours.contains(&local.hour()) {
        return Some(SignedDuration::ZERO);
    }
    let day = if local.hour() < hours.start {
        local.date()
    } else {
        local.date().tomorrow().ok()?
    };
    Some(day.at(hours.start, 0, 0, 0).duration_since(local))
}

/// The earliest instant at or after `at` that falls on a payday in `zone`, moved into `window`.
/// `days` are days of the month, 1..=31; a day beyond the month's end means the month's last day
/// (31 → Feb 28/29, Apr 30). If `at`'s local date is itself a payday and `at` can still be moved
/// into that day's window, that day counts. Empty `days` → same as `into_window`.
///
/// A payday is a local date: wages paid "on the 1st" arrive on the 1st where the customer lives,
/// which may still be the 31st in UTC. A day 0 is read as the 1st. Near the end of jiff's
/// calendar, `at` is returned as it is.
pub fn on_payday(at: Timestamp, zone: &TimeZone, days: &[u8], window: Window) -> Timestamp {
    if days.is_empty() {
        return into_window(at, zone, window);
    }
    first_on_payday(at, zone, days, &window.hours()).unwrap_or(at)
}

/// Tries paydays in date order, from the first on or after `at`'s local date: the answer is the
/// first in-window instant from the payday's start (or from `at`, on `at`'s own date) if that
/// instant is on a payday. It need not be: the window can be gone for the day (`at` is past it,
/// or a DST gap swallowed it), and then the next payday is tried. Each turn moves to a later
/// date, so the search ends.
fn first_on_payday(
    at: Timestamp,
    zone: &TimeZone,
    days: &[u8],
    hours: &Range<i8>,
) -> Option<Timestamp> {
    let mut payday = payday_from(zone.to_datetime(at).date(), days)?;
    loop {
        let day_start = zone
            .to_timestamp(payday.to_datetime(Time::midnight()))
            .ok()?;
        let found = first_in_window(day_start.max(at), zone, hours)?;
        if is_payday(zone.to_datetime(found).date(), days) {
            return Some(found);
        }
        payday = payday_from(payday.tomorrow().ok()?, days)?;
    }
}

/// The first payday on or after `date`: one of this month's still to come, else next month's
/// first.
fn payday_from(date: Date, days: &[u8]) -> Option<Date> {
    let next_month = date.last_of_month().tomorrow().ok()?;
    [date.first_of_month(), next_month]
        .into_iter()
        .flat_map(|month| days.iter().map(move |&day| payday_in(month, day)))
        .filter(|&payday| payday >= date)
        .min()
}

pub(crate) fn is_payday(date: Date, days: &[u8]) -> bool {
    days.iter()
        .any(|&day| payday_in(date.first_of_month(), day) == date)
}

/// Payday `day` in `month`'s month, clamped into it: "the 31st" still pays in February, on its
/// last day, the way payroll does.
fn payday_in(month: Date, day: u8) -> Date {
    let last = month.last_of_month();
    let day = i8::try_from(day).map_or(last.day(), |day| day.clamp(1, last.day()));
    date(last.year(), last.month(), day)
}

/// A deterministic offset in [0, spread) for (invoice, attempt), from SHA-256 of both, with
/// millisecond granularity, so thousands of retries scheduled for one moment spread out and the
/// same inputs always give the same offset. spread <= 0 → zero.
///
/// Hashing instead of drawing at random keeps [`decide`](super::decide) replayable: recomputing
/// a plan gives the same instant, so the scheduler never sees a retry drift between two
/// evaluations. The attempt is hashed too, so an invoice that was unlucky once is not always
/// charged at the end of the spread. The hash input is the invoice id followed by the attempt as
/// 4 big-endian bytes; changing that encoding reshuffles every pending offset.
pub fn jitter(invoice_id: &str, attempt: u32, spread: SignedDuration) -> SignedDuration {
    let spread_ms = spread.as_millis();
    if spread_ms <= 0 {
        return SignedDuration::ZERO;
    }
    let digest = Sha256::new()
        .chain_update(invoice_id)
        .chain_update(attempt.to_be_bytes())
        .finalize();
    let head = digest.first_chunk().expect("a SHA-256 digest is 32 bytes");
    let draw = i128::from(u64::from_be_bytes(*head));
    SignedDuration::from_millis_i128(draw % spread_ms)
}

#[cfg(test)]
mod tests {
    use jiff::{Zoned, tz::TimeZoneDatabase};
    use proptest::prelude::*;

    use super::zones::COUNTRY_ZONES;
    use super::*;

    const DAYTIME: Window = Window {
        start_hour: 9,
        end_hour: 20,
    };

    fn ts(zoned: &str) -> Timestamp {
        zoned.parse::<Zoned>().unwrap().timestamp()
    }

    fn local(at: Timestamp, zone: &str) -> DateTime {
        super::zone(zone).to_datetime(at)
    }

    fn window(start_hour: u8, end_hour: u8) -> Window {
        Window {
            start_hour,
            end_hour,
        }
    }

    // zone_name and zone

    #[test]
    fn metadata_zone_wins_over_country() {
        assert_eq!(zone_name(Some("Asia/Tokyo"), Some("US")), "Asia/Tokyo");
    }

    #[test]
    fn metadata_zone_is_trimmed_and_canonicalised() {
        assert_eq!(
            zone_name(Some("  america/new_york\n"), None),
            "America/New_York"
        );
    }

    #[test]
    fn invalid_metadata_falls_back_to_country() {
        for metadata in ["Mars/Olympus", "", "   ", "Etc/Unknown", "+02:00"] {
            assert_eq!(
                zone_name(Some(metadata), Some("FR")),
                "Europe/Paris",
                "{metadata:?}"
            );
        }
    }

    #[test]
    fn country_is_case_insensitive() {
        assert_eq!(zone_name(None, Some("us")), "America/New_York");
        assert_eq!(zone_name(None, Some(" Gb ")), "Europe/London");
    }

    #[test]
    fn unknown_country_or_none_is_utc() {
        assert_eq!(zone_name(None, Some("ZZ")), "UTC");
        assert_eq!(zone_name(None, Some("USA")), "UTC");
        assert_eq!(zone_name(Some("Mars/Olympus"), Some("")), "UTC");
        assert_eq!(zone_name(None, None), "UTC");
    }

    #[test]
    fn multi_zone_countries_get_their_most_populous_zone() {
        let expected = [
            ("US", "America/New_York"),
            ("CA", "America/Toronto"),
            ("RU", "Europe/Moscow"),
            ("AU", "Australia/Sydney"),
            ("BR", "America/Sao_Paulo"),
            ("MX", "America/Mexico_City"),
            ("AR", "America/Argentina/Buenos_Aires"),
            ("ID", "Asia/Jakarta"),
            ("KZ", "Asia/Almaty"),
            ("CN", "Asia/Shanghai"),
            ("ES", "Europe/Madrid"),
            ("PT", "Europe/Lisbon"),
            ("CL", "America/Santiago"),
            ("EC", "America/Guayaquil"),
            ("DE", "Europe/Berlin"),
            ("NZ", "Pacific/Auckland"),
            ("UA", "Europe/Kyiv"),
            ("MN", "Asia/Ulaanbaatar"),
            ("CD", "Africa/Kinshasa"),
            ("MY", "Asia/Kuala_Lumpur"),
            ("PS", "Asia/Hebron"),
            ("UZ", "Asia/Tashkent"),
        ];
        for (country, zone) in expected {
            assert_eq!(zone_name(None, Some(country)), zone, "{country}");
        }
    }

    #[test]
    fn country_table_is_sorted_by_unique_alpha2_codes() {
        assert!(COUNTRY_ZONES.len() > 240, "covers every zone.tab country");
        assert!(COUNTRY_ZONES.windows(2).all(|pair| pair[0].0 < pair[1].0));
        for (code, _) in COUNTRY_ZONES {
            assert!(
                code.len() == 2 && code.bytes().all(|b| b.is_ascii_uppercase()),
                "{code}"
            );
        }
    }

    /// Production images carry no tzdata, so the table must resolve in jiff's bundled copy, and in
    /// the system database too where there is one.
    #[test]
    fn every_country_zone_resolves() {
        let bundled = TimeZoneDatabase::bundled();
        for (code, name) in COUNTRY_ZONES {
            assert!(TimeZone::get(name).is_ok(), "{code} {name}");
            assert!(bundled.get(name).is_ok(), "{code} {name} (bundled)");
            assert_eq!(zone_name(None, Some(code)), *name);
        }
    }

    #[test]
    fn zone_resolves_names_and_falls_back_to_utc() {
        assert_eq!(zone("Europe/Paris").iana_name(), Some("Europe/Paris"));
        assert_eq!(zone("Mars/Olympus"), TimeZone::UTC);
        assert_eq!(zone(""), TimeZone::UTC);
    }

    // into_window

    #[test]
    fn before_the_window_moves_to_its_start_the_same_day() {
        let at = ts("2026-06-10T06:15-04[America/New_York]");
        let got = into_window(at, &zone("America/New_York"), DAYTIME);
        assert_eq!(got, ts("2026-06-10T09:00-04[America/New_York]"));
    }

    #[test]
    fn inside_the_window_is_unchanged() {
        let at = ts("2026-06-10T13:37:12.5+02[Europe/Paris]");
        assert_eq!(into_window(at, &zone("Europe/Paris"), DAYTIME), at);
    }

    #[test]
    fn after_the_window_moves_to_the_next_days_start() {
        let at = ts("2026-06-10T20:00+02[Europe/Paris]");
        let got = into_window(at, &zone("Europe/Paris"), DAYTIME);
        assert_eq!(got, ts("2026-06-11T09:00+02[Europe/Paris]"));
    }

    #[test]
    fn the_window_is_local_not_utc() {
        // 23:00 UTC is already 08:00 the next morning in Tokyo: one hour to wait, not ten.
        let at = ts("2026-06-10T23:00Z[UTC]");
        let got = into_window(at, &zone("Asia/Tokyo"), DAYTIME);
        assert_eq!(got, ts("2026-06-11T00:00Z[UTC]"));
    }

    #[test]
    fn window_start_lost_in_us_spring_forward_is_the_first_instant_after_the_gap() {
        // 2026-03-08: New York clocks jump from 02:00 EST to 03:00 EDT.
        let ny = zone("America/New_York");
        let at = ts("2026-03-08T00:30-05[America/New_York]");
        let got = into_window(at, &ny, window(2, 20));
        assert_eq!(got, ts("2026-03-08T03:00-04[America/New_York]"));
        assert_eq!(local(got, "America/New_York").hour(), 3);
    }

    #[test]
    fn a_window_wholly_inside_the_gap_waits_for_the_next_day() {
        let ny = zone("America/New_York");
        let at = ts("2026-03-08T00:30-05[America/New_York]");
        let got = into_window(at, &ny, window(2, 3));
        assert_eq!(got, ts("2026-03-09T02:00-04[America/New_York]"));
    }

    #[test]
    fn a_gap_that_starts_before_the_window_ends_where_the_clock_resumes() {
        // Lord Howe springs forward half an hour, 02:00 → 02:30, on 2026-10-04.
        let lord_howe = zone("Australia/Lord_Howe");
        let at = ts("2026-10-04T01:00+10:30[Australia/Lord_Howe]");
        let got = into_window(at, &lord_howe, window(2, 20));
        assert_eq!(got, ts("2026-10-04T02:30+11[Australia/Lord_Howe]"));
    }

    #[test]
    fn us_fall_back_counts_the_repeated_hour_once_it_is_reached() {
        // 2026-11-01: New York clocks fall back from 02:00 EDT to 01:00 EST.
        let ny = zone("America/New_York");
        let first_pass = ts("2026-11-01T00:30-04[America/New_York]");
        assert_eq!(
            into_window(first_pass, &ny, window(1, 2)),
            ts("2026-11-01T01:00-04[America/New_York]")
        );
        let second_pass = ts("2026-11-01T01:30-05[America/New_York]");
        assert_eq!(into_window(second_pass, &ny, window(1, 2)), second_pass);
        let got = into_window(first_pass, &ny, DAYTIME);
        assert_eq!(got, ts("2026-11-01T09:00-05[America/New_York]"));
    }

    #[test]
    fn paris_dst_changes_keep_the_local_window() {
        let paris = zone("Europe/Paris");
        // 2026-03-29: 02:00 CET → 03:00 CEST.
        let at = ts("2026-03-29T01:00+01[Europe/Paris]");
        let got = into_window(at, &paris, window(2, 20));
        assert_eq!(got, ts("2026-03-29T03:00+02[Europe/Paris]"));
        // 2026-10-25: 03:00 CEST → 02:00 CET; 02:00–03:00 happens twice.
        let repeated = ts("2026-10-25T02:30+01[Europe/Paris]");
        assert_eq!(into_window(repeated, &paris, window(2, 3)), repeated);
        let after_both = ts("2026-10-25T03:10+01[Europe/Paris]");
        assert_eq!(
            into_window(after_both, &paris, window(2, 3)),
            ts("2026-10-26T02:00+01[Europe/Paris]")
        );
    }

    #[test]
    fn a_clock_set_back_into_the_window_is_used_at_once() {
        // Magadan, 2014-10-26: at 02:00 (+12) the clock went back two hours, to 00:00 (+10). At
        // 01:30 the window [0, 1) has closed for the day, but half an hour later it is open again.
        let magadan = zone("Asia/Magadan");
        let at = ts("2014-10-26T01:30+12[Asia/Magadan]");
        let got = into_window(at, &magadan, window(0, 1));
        assert_eq!(got, ts("2014-10-26T00:00+10[Asia/Magadan]"));
        assert_eq!(got.duration_since(at), SignedDuration::from_mins(30));
    }

    #[test]
    fn a_window_holding_no_hour_admits_the_whole_day() {
        let at = ts("2026-06-10T03:00Z[UTC]");
        assert_eq!(into_window(at, &TimeZone::UTC, window(20, 9)), at);
        assert_eq!(into_window(at, &TimeZone::UTC, window(9, 9)), at);
        let late = ts("2026-06-10T23:30Z[UTC]");
        assert_eq!(into_window(late, &TimeZone::UTC, window(22, 200)), late);
    }

    #[test]
    fn a_window_to_midnight_admits_the_last_hour() {
        let late = ts("2026-06-10T23:59:59Z[UTC]");
        assert_eq!(into_window(late, &TimeZone::UTC, window(21, 24)), late);
    }

    // on_payday

    #[test]
    fn waits_for_the_next_payday_at_the_window_start() {
        let ny = zone("America/New_York");
        let at = ts("2026-01-20T11:00-05[America/New_York]");
        let got = on_payday(at, &ny, &[1, 15], DAYTIME);
        assert_eq!(got, ts("2026-02-01T09:00-05[America/New_York]"));
    }

    #[test]
    fn a_payday_past_the_months_end_is_its_last_day() {
        let utc = TimeZone::UTC;
        let at = ts("2026-02-03T12:00Z[UTC]");
        assert_eq!(
            on_payday(at, &utc, &[31], DAYTIME),
            ts("2026-02-28T09:00Z[UTC]")
        );
        let leap = ts("2028-02-03T12:00Z[UTC]");
        assert_eq!(
            on_payday(leap, &utc, &[31], DAYTIME),
            ts("2028-02-29T09:00Z[UTC]")
        );
        let april = ts("2026-04-03T12:00Z[UTC]");
        assert_eq!(
            on_payday(april, &utc, &[31], DAYTIME),
            ts("2026-04-30T09:00Z[UTC]")
        );
    }

    #[test]
    fn a_payday_before_its_window_counts() {
        let paris = zone("Europe/Paris");
        let at = ts("2026-03-15T06:00+01[Europe/Paris]");
        let got = on_payday(at, &paris, &[1, 15], DAYTIME);
        assert_eq!(got, ts("2026-03-15T09:00+01[Europe/Paris]"));
    }

    #[test]
    fn a_payday_inside_its_window_is_unchanged() {
        let paris = zone("Europe/Paris");
        let at = ts("2026-03-15T10:20+01[Europe/Paris]");
        assert_eq!(on_payday(at, &paris, &[15], DAYTIME), at);
    }

    #[test]
    fn a_payday_after_its_window_waits_for_the_next_payday() {
        let paris = zone("Europe/Paris");
        let at = ts("2026-03-15T21:00+01[Europe/Paris]");
        let got = on_payday(at, &paris, &[1, 15], DAYTIME);
        assert_eq!(got, ts("2026-04-01T09:00+02[Europe/Paris]"));
    }

    #[test]
    fn paydays_are_local_dates() {
        // 2026-01-31T23:30 UTC is already the 1st in Tokyo.
        let at = ts("2026-01-31T23:30Z[UTC]");
        let got = on_payday(at, &zone("Asia/Tokyo"), &[1], DAYTIME);
        assert_eq!(got, ts("2026-02-01T09:00+09[Asia/Tokyo]"));
    }

    #[test]
    fn a_payday_whose_window_falls_in_a_gap_moves_to_the_next_payday() {
        let ny = zone("America/New_York");
        let at = ts("2026-03-01T12:00-05[America/New_York]");
        let got = on_payday(at, &ny, &[8], window(2, 3));
        assert_eq!(got, ts("2026-04-08T02:00-04[America/New_York]"));
    }

    #[test]
    fn no_paydays_means_just_the_window() {
        let ny = zone("America/New_York");
        let at = ts("2026-01-20T21:00-05[America/New_York]");
        assert_eq!(
            on_payday(at, &ny, &[], DAYTIME),
            into_window(at, &ny, DAYTIME)
        );
    }

    #[test]
    fn day_zero_is_the_first() {
        let at = ts("2026-01-20T12:00Z[UTC]");
        assert_eq!(
            on_payday(at, &TimeZone::UTC, &[0], DAYTIME),
            ts("2026-02-01T09:00Z[UTC]")
        );
    }

    // jitter

    #[test]
    fn jitter_is_deterministic() {
        let spread = SignedDuration::from_mins(30);
        assert_eq!(jitter("in_1Abc", 2, spread), jitter("in_1Abc", 2, spread));
    }

    /// Pins the hash encoding (checked by hand: the first 8 bytes of SHA-256("in_1Abc" ++
    /// 00 00 00 02), big-endian, mod 3 600 000): a change here moves every pending retry.
    #[test]
    fn jitter_is_stable_across_releases() {
        let spread = SignedDuration::from_hours(1);
        assert_eq!(
            jitter("in_1Abc", 2, spread),
            SignedDuration::from_millis(3_490_622)
        );
    }

    #[test]
    fn jitter_differs_between_invoices_and_attempts() {
        let spread = SignedDuration::from_hours(1);
        let mut offsets: Vec<_> = (0..100)
            .map(|n| jitter(&format!("in_{n}"), 1, spread))
            .collect();
        offsets.sort();
        offsets.dedup();
        assert!(offsets.len() >= 99, "only {} distinct", offsets.len());
        assert_ne!(jitter("in_1", 1, spread), jitter("in_1", 2, spread));
    }

    #[test]
    fn jitter_has_millisecond_granularity() {
        let spread = SignedDuration::from_hours(1);
        for n in 0..50 {
            let offset = jitter(&format!("in_{n}"), 1, spread);
            assert_eq!(offset.subsec_nanos() % 1_000_000, 0, "{offset:?}");
        }
    }

    #[test]
    fn no_spread_means_no_jitter() {
        for spread in [
            SignedDuration::ZERO,
            SignedDuration::from_secs(-5),
            SignedDuration::from_micros(999),
        ] {
            assert_eq!(
                jitter("in_1", 1, spread),
                SignedDuration::ZERO,
                "{spread:?}"
            );
        }
        assert_eq!(
            jitter("in_1", 1, SignedDuration::from_millis(1)),
            SignedDuration::ZERO
        );
    }

    // properties

    /// Zones whose transitions are unusual: half-hour DST, 45-minute offsets, a skipped day.
    const ODD_ZONES: &[&str] = &[
        "Australia/Lord_Howe",
        "Pacific/Chatham",
        "America/St_Johns",
        "Asia/Kathmandu",
        "Pacific/Apia",
        "America/Santiago",
        "Asia/Gaza",
    ];

    fn any_zone() -> impl Strategy<Value = TimeZone> {
        let table = COUNTRY_ZONES
            .iter()
            .map(|&(_, name)| name)
            .collect::<Vec<_>>();
        prop_oneof![
            3 => prop::sample::select(table),
            1 => prop::sample::select(ODD_ZONES),
        ]
        .prop_map(zone)
    }

    /// Any instant from 2000 to 2100, to the millisecond.
    fn any_instant() -> impl Strategy<Value = Timestamp> {
        let from = ts("2000-01-01T00:00Z[UTC]").as_millisecond();
        let to = ts("2100-01-01T00:00Z[UTC]").as_millisecond();
        (from..to).prop_map(|ms| Timestamp::from_millisecond(ms).unwrap())
    }

    fn any_window() -> impl Strategy<Value = Window> {
        (0u8..24)
            .prop_flat_map(|start| (Just(start), start + 1..=24).prop_map(|(s, e)| window(s, e)))
    }

    fn in_window(at: Timestamp, zone: &TimeZone, window: Window) -> bool {
        let hour = zone.to_datetime(at).hour();
        (i8::try_from(window.start_hour).unwrap()..i8::try_from(window.end_hour).unwrap())
            .contains(&hour)
    }

    /// Whether `hit` holds for no instant in [from, to), sampled every `step`.
    fn none_earlier(
        from: Timestamp,
        to: Timestamp,
        step: SignedDuration,
        hit: impl Fn(Timestamp) -> bool,
    ) -> bool {
        std::iter::successors(Some(from), |&t| Some(t + step))
            .take_while(|&t| t < to)
            .all(|t| !hit(t))
    }

    proptest! {
        #[test]
        fn into_window_is_the_earliest_instant_in_the_window(
            at in any_instant(),
            zone in any_zone(),
            window in any_window(),
        ) {
            let got = into_window(at, &zone, window);
            prop_assert!(got >= at);
            prop_assert!(in_window(got, &zone, window), "local {}", zone.to_datetime(got));
            // At most 23 hours on the wall clock, plus a fall-back of up to 2 hours.
            prop_assert!(got.duration_since(at) <= SignedDuration::from_hours(25));
            let earliest = none_earlier(at, got, SignedDuration::from_mins(1), |t| {
                in_window(t, &zone, window)
            });
            prop_assert!(earliest, "an earlier instant is in the window");
            prop_assert_eq!(into_window(got, &zone, window), got);
        }

        #[test]
        fn on_payday_lands_in_the_window_on_a_payday(
            at in any_instant(),
            zone in any_zone(),
            window in any_window(),
            days in prop::collection::vec(1u8..=31, 1..4),
        ) {
            let got = on_payday(at, &zone, &days, window);
            let local = zone.to_datetime(got);
            prop_assert!(got >= at);
            prop_assert!(in_window(got, &zone, window), "local {local}");
            let last = local.date().last_of_month().day();
            prop_assert!(
                days.iter().any(|&d| i8::try_from(d).unwrap().min(last) == local.day()),
                "local {local} is not one of {days:?}"
            );
            // A payday comes every month; its window can be lost to a DST gap once.
            prop_assert!(got.duration_since(at) <= SignedDuration::from_hours(63 * 24));
            let earliest = none_earlier(at, got, SignedDuration::from_mins(15), |t| {
                in_window(t, &zone, window) && is_payday(zone.to_datetime(t).date(), &days)
            });
            prop_assert!(earliest, "an earlier payday instant is in the window");
        }

        #[test]
        fn jitter_stays_within_the_spread(
            invoice in "in_[A-Za-z0-9]{1,24}",
            attempt in any::<u32>(),
            spread_ms in 1i64..=7 * 24 * 3_600_000,
        ) {
            let spread = SignedDuration::from_millis(spread_ms);
            let offset = jitter(&invoice, attempt, spread);
            prop_assert!(offset >= SignedDuration::ZERO && offset < spread, "{offset:?}");
        }
    }
}
