//! The networks file (`config/networks.toml`): its text into [`Networks`], every refusal naming the
//! line, the key and what is allowed — the same way as the policy file, with the same [`Reader`].

use jiff::SignedDuration;
use jiff::civil::Date;
use serde::Deserialize;
use toml::Spanned;
use toml::value::Datetime;

use super::check::Reader;
use super::{FORMAT, PolicyError};
use crate::policy::networks::{
    Code, Counts, Dates, DeclineFee, Fee, Field, Key, Means, Networks, Rule,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetworks {
    version: Spanned<i64>,
    #[serde(default)]
    rule: Vec<RawRule>,
    #[serde(default)]
    code: Vec<RawCode>,
    #[serde(default)]
    decline_fee: Vec<RawDeclineFee>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Spanned<String>,
    brand: Spanned<String>,
    counts: Spanned<String>,
    key: Spanned<Vec<Spanned<String>>>,
    max: Spanned<i64>,
    per: Spanned<String>,
    resets: Spanned<String>,
    fee_usd: Option<Spanned<f64>>,
    from: Option<Spanned<Datetime>>,
    until: Option<Spanned<Datetime>>,
    source: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCode {
    brand: Spanned<String>,
    field: Spanned<String>,
    codes: Spanned<Vec<String>>,
    category: Option<Spanned<i64>>,
    means: Spanned<String>,
    wait: Option<Spanned<String>>,
    fee_usd: Option<Spanned<f64>>,
    from: Option<Spanned<Datetime>>,
    until: Option<Spanned<Datetime>>,
    source: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDeclineFee {
    name: Spanned<String>,
    brand: Spanned<String>,
    decline_codes: Spanned<Vec<String>>,
    fee_usd: Spanned<f64>,
    from: Option<Spanned<Datetime>>,
    until: Option<Spanned<Datetime>>,
    source: Spanned<String>,
}

/// Validates networks file `text`, naming it `file` in errors.
pub fn networks(text: &str, file: &str) -> Result<Networks, PolicyError> {
    let at = super::locator(text, file);
    let raw: RawNetworks = super::shaped(text, &at)?;
    let reader = Reader { at: &at };
    let version = *raw.version.get_ref();
    if version != FORMAT {
        return Err(at(
            raw.version.span(),
            "version",
            format!("{version} is not a networks format this release reads; allowed: {FORMAT}"),
        ));
    }
    Ok(Networks {
        rules: each(raw.rule, "rule", |r, key| reader.network_rule(r, key))?,
        codes: each(raw.code, "code", |c, key| reader.network_code(c, key))?,
        decline_fees: each(raw.decline_fee, "decline_fee", |f, key| {
            reader.decline_fee(f, key)
        })?,
    })
}

/// Every row of the array of tables `table`, read by `read` under its key (`rule[2]`).
fn each<R, T>(
    rows: Vec<R>,
    table: &str,
    read: impl Fn(R, &str) -> Result<T, PolicyError>,
) -> Result<Vec<T>, PolicyError> {
    rows.into_iter()
        .enumerate()
        .map(|(n, row)| read(row, &format!("{table}[{n}]")))
        .collect()
}

impl Reader<'_> {
    fn network_rule(&self, raw: RawRule, key: &str) -> Result<Rule, PolicyError> {
        let mut by = Key::default();
        for part in raw.key.get_ref() {
            let flag = self.choice(
                part,
                &format!("{key}.key"),
                &[("amount", 0), ("initiator", 1), ("invoice", 2)],
            )?;
            *[&mut by.amount, &mut by.initiator, &mut by.invoice][flag] = true;
        }
        Ok(Rule {
            name: self.text(&raw.name, &format!("{key}.name"))?,
            brand: self.brand(&raw.brand, &format!("{key}.brand"))?,
            counts: self.choice(
                &raw.counts,
                &format!("{key}.counts"),
                &[
                    ("attempts", Counts::Attempts),
                    ("declines", Counts::Declines),
                    ("reattempts", Counts::Reattempts),
                ],
            )?,
            key: by,
            max: self.number(&raw.max, &format!("{key}.max"), 0..=1_000)?,
            per: self.duration(
                &raw.per,
                &format!("{key}.per"),
                &(SignedDuration::from_hours(1)..=SignedDuration::from_hours(90 * 24)),
            )?,
            resets: self.choice(
                &raw.resets,
                &format!("{key}.resets"),
                &[("approval", true), ("never", false)],
            )?,
            fee: self.fee(raw.fee_usd.as_ref(), &format!("{key}.fee_usd"))?,
            dates: self.dates(raw.from.as_ref(), raw.until.as_ref(), key)?,
            source: self.text(&raw.source, &format!("{key}.source"))?,
        })
    }

    fn network_code(&self, raw: RawCode, key: &str) -> Result<Code, PolicyError> {
        let means = self.choice(
            &raw.means,
            &format!("{key}.means"),
            &[
                ("never", Means::Never),
                ("new_card", Means::NewCard),
                ("retry", Means::Retry),
                ("wait", Means::Wait(SignedDuration::ZERO)),
            ],
        )?;
        let means = match (means, &raw.wait) {
            (Means::Wait(_), Some(wait)) => Means::Wait(self.duration(
                wait,
                &format!("{key}.wait"),
                &(SignedDuration::from_mins(1)..=SignedDuration::from_hours(60 * 24)),
            )?),
            (Means::Wait(_), None) => {
                return Err((self.at)(
                    raw.means.span(),
                    &format!("{key}.wait"),
                    "means = \"wait\" needs a wait, e.g. wait = \"1d\"".into(),
                ));
            }
            (_, Some(wait)) => {
                return Err((self.at)(
                    wait.span(),
                    &format!("{key}.wait"),
                    "a wait is only read with means = \"wait\"".into(),
                ));
            }
            (means, None) => means,
        };
        let codes = self.codes(&raw.codes, &format!("{key}.codes"))?;
        Ok(Code {
            brand: self.brand(&raw.brand, &format!("{key}.brand"))?,
            field: self.choice(
                &raw.field,
                &format!("{key}.field"),
                &[
                    ("network_decline_code", Field::NetworkDeclineCode),
                    ("network_advice_code", Field::NetworkAdviceCode),
                ],
            )?,
            codes,
            category: raw
                .category
                .as_ref()
                .map(|c| self.number(c, &format!("{key}.category"), 1..=4))
                .transpose()?,
            means,
            fee: self.fee(raw.fee_usd.as_ref(), &format!("{key}.fee_usd"))?,
            dates: self.dates(raw.from.as_ref(), raw.until.as_ref(), key)?,
            source: self.text(&raw.source, &format!("{key}.source"))?,
        })
    }

    fn decline_fee(&self, raw: RawDeclineFee, key: &str) -> Result<DeclineFee, PolicyError> {
        Ok(DeclineFee {
            name: self.text(&raw.name, &format!("{key}.name"))?,
            brand: self.brand(&raw.brand, &format!("{key}.brand"))?,
            decline_codes: self.codes(&raw.decline_codes, &format!("{key}.decline_codes"))?,
            fee: self.fee(Some(&raw.fee_usd), &format!("{key}.fee_usd"))?,
            dates: self.dates(raw.from.as_ref(), raw.until.as_ref(), key)?,
            source: self.text(&raw.source, &format!("{key}.source"))?,
        })
    }

    /// Text that must say something: a rule's name, its source.
    fn text(&self, written: &Spanned<String>, key: &str) -> Result<String, PolicyError> {
        let text = written.get_ref().trim();
        if text.is_empty() {
            return Err((self.at)(written.span(), key, "must not be empty".into()));
        }
        Ok(text.to_owned())
    }

    fn codes(&self, written: &Spanned<Vec<String>>, key: &str) -> Result<Vec<String>, PolicyError> {
        let codes = written.get_ref();
        if codes.is_empty() || codes.iter().any(|c| c.trim().is_empty()) {
            return Err((self.at)(
                written.span(),
                key,
                "expected a list of codes as Stripe reports them, e.g. [\"57\"]".into(),
            ));
        }
        Ok(codes.iter().map(|c| c.trim().to_owned()).collect())
    }

    fn fee(&self, written: Option<&Spanned<f64>>, key: &str) -> Result<Fee, PolicyError> {
        let Some(written) = written else {
            return Ok(Fee::ZERO);
        };
        let usd = *written.get_ref();
        if !(0.0..=100.0).contains(&usd) {
            return Err((self.at)(
                written.span(),
                key,
                format!("{usd} is out of range; allowed: 0 to 100 (US dollars)"),
            ));
        }
        // Whole millionths of a dollar: the rounding is the point.
        #[allow(clippy::cast_possible_truncation)]
        Ok(Fee((usd * 1_000_000.0).round() as i64))
    }

    fn dates(
        &self,
        from: Option<&Spanned<Datetime>>,
        until: Option<&Spanned<Datetime>>,
        key: &str,
    ) -> Result<Dates, PolicyError> {
        let day = |written: Option<&Spanned<Datetime>>, name: &str| {
            written
                .map(|d| {
                    let fail = || {
                        (self.at)(
                            d.span(),
                            &format!("{key}.{name}"),
                            format!("{} is not a day; expected one like 2026-10-25", d.get_ref()),
                        )
                    };
                    match (d.get_ref().date, d.get_ref().time) {
                        (Some(day), None) => Date::new(
                            i16::try_from(day.year).map_err(|_| fail())?,
                            i8::try_from(day.month).map_err(|_| fail())?,
                            i8::try_from(day.day).map_err(|_| fail())?,
                        )
                        .map_err(|_| fail()),
                        _ => Err(fail()),
                    }
                })
                .transpose()
        };
        let dates = Dates {
            from: day(from, "from")?,
            until: day(until, "until")?,
        };
        if let (Some(from), Some(until), Some(written)) = (dates.from, dates.until, until)
            && from >= until
        {
            return Err((self.at)(
                written.span(),
                &format!("{key}.until"),
                format!("{until} is not after from = {from}"),
            ));
        }
        Ok(dates)
    }
}
