//! Durations as people write them in the policy file and on the command line: `3d`, `12h`, `90m`,
//! `45s`, or combinations such as `1d12h`. Whole seconds only, because every rule recoup keeps (a
//! network's 24-hour window, a grace of 3 days) is stated in whole units; [`human`] writes them back
//! the same way for timelines and `recoup policy check`.

use jiff::SignedDuration;

/// Parses `3d`, `12h`, `90m`, `45s` or combinations such as `1d12h` into seconds.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    let allowed = "a duration such as 3d, 12h, 90m, 45s or 1d12h";
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("empty duration; expected {allowed}"));
    }
    if text.starts_with('-') {
        return Err(format!(
            "{text:?}: a duration is never negative; expected {allowed}"
        ));
    }
    let mut total: i64 = 0;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit = match c {
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            _ => return Err(format!("{text:?}: unknown unit {c:?}; expected {allowed}")),
        };
        if digits.is_empty() {
            return Err(format!(
                "{text:?}: a number must come before {c:?}; expected {allowed}"
            ));
        }
        let n: i64 = digits
            .parse()
            .map_err(|_| format!("{text:?} is too long a duration"))?;
        total = n
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(|| format!("{text:?} is too long a duration"))?;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(format!(
            "{text:?}: {digits} needs a unit; expected {allowed}"
        ));
    }
    Ok(total)
}

/// "3 days" where a gap is whole days, as policies are written; jiff's "36h" otherwise.
pub fn human(gap: SignedDuration) -> String {
    const DAY: i64 = 86_400;
    match gap.as_secs() {
        0 if gap.subsec_nanos() == 0 => "0s".to_owned(),
        secs if secs == DAY && gap.subsec_nanos() == 0 => "1 day".to_owned(),
        secs if secs % DAY == 0 && gap.subsec_nanos() == 0 => format!("{} days", secs / DAY),
        _ => format!("{gap:#}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_the_contract() {
        assert_eq!(parse_duration("3d"), Ok(259_200));
        assert_eq!(parse_duration("12h"), Ok(43_200));
        assert_eq!(parse_duration("90m"), Ok(5_400));
        assert_eq!(parse_duration("1d12h30m5s"), Ok(131_405));
        for (bad, why) in [
            ("", "empty"),
            ("3", "needs a unit"),
            ("d", "a number must come before"),
            ("3w", "unknown unit"),
            ("-3d", "never negative"),
            ("99999999999999999999d", "too long"),
        ] {
            let error = parse_duration(bad).unwrap_err();
            assert!(error.contains(why), "{bad:?}: {error}");
        }
    }
}
