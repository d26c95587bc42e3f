//! A simulation population: failed invoices with the truth about their customers.
//!
//! One line of JSON per failed invoice (`docs/reference/population.md#keys`). Each line holds what
//! Stripe would show recoup — ids, amount, time zone, card, tenure, the first decline — and what
//! only the customer knows: when their account has money (`funds`), whether the card is dead, whether
//! and when they would add a new card, pay by themselves, or give up on being nagged. The simulator
//! ([`super::world`]) shows the policy only the first part, and the second only the way Stripe would.
//!
//! A customer's invoices share their nudge count and their card, so they are simulated together:
//! they must be on consecutive lines. [`Customers`] reads a population customer by customer, one
//! line at a time, so a population of any size is read in constant memory.

use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::io::BufRead;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// One failed invoice and the truth about its customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedInvoice {
    pub invoice_id: String,
    pub customer_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscription_id: Option<String>,
    /// In the currency's smallest unit.
    pub amount_due: i64,
    pub currency: String,
    /// When Stripe's first attempt failed: the simulation's start for this invoice.
    pub failed_at: Timestamp,
    /// The customer's IANA time zone (the `timezone` Stripe metadata recoup reads).
    #[serde(default = "utc")]
    pub timezone: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    pub card: CardTruth,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
    #[serde(default)]
    pub tenure_months: u32,
    #[serde(default)]
    pub past_failures: u32,
    /// Days of the month the customer paid on before (visible to a policy; recoup's own plan keys
    /// on its configured paydays).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub past_payment_days: Vec<u8>,
    pub first_decline: DeclineTruth,

    // What the policy never sees.
    /// When an attempt on the card goes through: each window's start included, its end excluded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub funds: Vec<Funds>,
    /// How an attempt outside the funds windows declines; the first decline's way when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outside_funds_decline: Option<DeclineTruth>,
    /// No attempt on this card ever succeeds (closed account, stolen card).
    #[serde(default)]
    pub card_dead: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updates_card: Option<CardUpdate>,
    /// When the customer pays through the portal by themselves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pays_unprompted_at: Option<Timestamp>,
    /// One nudge more than this and the customer cancels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gives_up_after_nudges: Option<u32>,
}

fn utc() -> String {
    "UTC".to_owned()
}

/// The card as Stripe shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardTruth {
    pub fingerprint: String,
    /// Stripe's brand name (`visa`, `mastercard`, …); an unknown brand binds no network rule.
    #[serde(default = "unknown_brand")]
    pub brand: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub funding: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp_month: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp_year: Option<i16>,
}

fn unknown_brand() -> String {
    "unknown".to_owned()
}

/// A decline as Stripe reports it on a charge.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclineTruth {
    /// Stripe's error `code` when it is not `card_declined` (`expired_card`,
    /// `authentication_required`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default)]
    pub decline_code: Option<String>,
    #[serde(default)]
    pub advice_code: Option<String>,
    #[serde(default)]
    pub network_advice_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_decline_code: Option<String>,
}

/// A time the customer's account can pay: `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Funds {
    pub from: Timestamp,
    pub to: Timestamp,
}

impl Funds {
    pub fn contains(&self, at: Timestamp) -> bool {
        self.from <= at && at < self.to
    }
}

/// The customer adds a new card `reply_hours` after their `after_nudges`-th nudge (quiet-hour
/// nudges not counted).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CardUpdate {
    pub after_nudges: u32,
    pub reply_hours: f64,
}

/// Why a population cannot be read, with the line it is about.
#[derive(Debug, thiserror::Error)]
pub enum PopulationError {
    #[error("population line {line}: {reason}")]
    Line { line: u64, reason: String },
    #[error("reading the population: {0}")]
    Read(#[from] std::io::Error),
}

impl FailedInvoice {
    /// Reads one line, checking what serde cannot: amounts, currencies, zones, windows.
    pub fn parse(text: &str) -> Result<Self, String> {
        let invoice: Self = serde_json::from_str(text).map_err(|e| {
            // serde_json's own position is within the line; the line number is ours.
            let message = e.to_string();
            match message.rfind(" at line ") {
                Some(cut) => format!("{} (column {})", &message[..cut], e.column()),
                None => message,
            }
        })?;
        invoice.check()?;
        Ok(invoice)
    }

    fn check(&self) -> Result<(), String> {
        let blank = [
            ("invoice_id", &self.invoice_id),
            ("customer_id", &self.customer_id),
            ("card.fingerprint", &self.card.fingerprint),
        ];
        if let Some((key, _)) = blank.iter().find(|(_, v)| v.trim().is_empty()) {
            return Err(format!("`{key}` is empty"));
        }
        if self.amount_due <= 0 {
            return Err(format!(
                "`amount_due` must be above 0 (the currency's smallest unit); got {}",
                self.amount_due
            ));
        }
        if self.currency.len() != 3 || !self.currency.bytes().all(|b| b.is_ascii_lowercase()) {
            return Err(format!(
                "`currency` must be a lowercase ISO 4217 code like \"usd\"; got {:?}",
                self.currency
            ));
        }
        if jiff::tz::TimeZone::get(&self.timezone).is_err() {
            return Err(format!(
                "`timezone` {:?} is not an IANA time zone",
                self.timezone
            ));
        }
        if let Some(month) = self.card.exp_month
            && !(1..=12).contains(&month)
        {
            return Err(format!("`card.exp_month` must be 1 to 12; got {month}"));
        }
        if let Some(window) = self.funds.iter().find(|f| f.from >= f.to) {
            return Err(format!(
                "a `funds` window must start before it ends; got {} to {}",
                window.from, window.to
            ));
        }
        if let Some(update) = self.updates_card
            && !(update.reply_hours.is_finite() && update.reply_hours >= 0.0)
        {
            return Err(format!(
                "`updates_card.reply_hours` must be 0 or more; got {}",
                update.reply_hours
            ));
        }
        Ok(())
    }
}

/// Reads a population customer by customer: each item is one customer's invoices, in file order.
pub struct Customers<R> {
    lines: std::io::Lines<R>,
    line: u64,
    /// The next customer's first invoice, read while finishing the one before.
    ahead: Option<FailedInvoice>,
    /// Customers already done (hashed), to catch one whose lines are not together; a collision
    /// would need billions of customers.
    done: HashSet<u64, BuildHasherDefault<DefaultHasher>>,
}

impl<R: BufRead> Customers<R> {
    pub fn new(reader: R) -> Self {
        Self {
            lines: reader.lines(),
            line: 0,
            ahead: None,
            done: HashSet::default(),
        }
    }

    fn next_invoice(&mut self) -> Option<Result<FailedInvoice, PopulationError>> {
        loop {
            let text = match self.lines.next()? {
                Ok(text) => text,
                Err(e) => return Some(Err(e.into())),
            };
            self.line += 1;
            if text.trim().is_empty() {
                continue;
            }
            let line = self.line;
            return Some(
                FailedInvoice::parse(&text)
                    .map_err(|reason| PopulationError::Line { line, reason }),
            );
        }
    }
}

impl<R: BufRead> Iterator for Customers<R> {
    type Item = Result<Vec<FailedInvoice>, PopulationError>;

    fn next(&mut self) -> Option<Self::Item> {
        let first = match self.ahead.take() {
            Some(invoice) => invoice,
            None => match self.next_invoice()? {
                Ok(invoice) => invoice,
                Err(e) => return Some(Err(e)),
            },
        };
        let hash = self.done.hasher().hash_one(&first.customer_id);
        if !self.done.insert(hash) {
            return Some(Err(PopulationError::Line {
                line: self.line,
                reason: format!(
                    "customer {} appeared on earlier lines: a customer's invoices must be on \
                     consecutive lines (they share a card and a nudge count)",
                    first.customer_id
                ),
            }));
        }
        let mut invoices = vec![first];
        while let Some(next) = self.next_invoice() {
            match next {
                Ok(invoice) if invoice.customer_id == invoices[0].customer_id => {
                    invoices.push(invoice);
                }
                Ok(invoice) => {
                    self.ahead = Some(invoice);
                    break;
                }
                Err(e) => return Some(Err(e)),
            }
        }
        Some(Ok(invoices))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"invoice_id":"in_1","customer_id":"cus_1","amount_due":4900,"currency":"usd","failed_at":"2026-01-03T10:00:00Z","card":{"fingerprint":"fp_1"},"first_decline":{"decline_code":"insufficient_funds"}}"#;

    fn read(text: &str) -> Vec<Result<Vec<FailedInvoice>, String>> {
        Customers::new(text.as_bytes())
            .map(|c| c.map_err(|e| e.to_string()))
            .collect()
    }

    #[test]
    fn a_minimal_line_takes_the_contracts_defaults() {
        let invoice = FailedInvoice::parse(LINE).unwrap();
        assert_eq!(invoice.timezone, "UTC");
        assert_eq!(invoice.card.brand, "unknown");
        assert!(invoice.funds.is_empty() && !invoice.card_dead);
        assert_eq!(invoice.updates_card, None);
        assert_eq!(invoice.pays_unprompted_at, None);
        assert_eq!(invoice.gives_up_after_nudges, None);
    }

    #[test]
    fn the_contracts_example_line_reads_and_writes_back_the_same() {
        let example = r#"{"invoice_id":"in_1","customer_id":"cus_1","subscription_id":"sub_1","amount_due":4900,"currency":"usd",
 "failed_at":"2026-01-03T10:00:00Z","timezone":"America/Chicago","country":"US",
 "card":{"fingerprint":"fp_1","brand":"visa","funding":"debit","exp_month":4,"exp_year":2027},
 "metadata":{"plan":"pro"},"tenure_months":14,"past_failures":1,
 "first_decline":{"decline_code":"insufficient_funds","advice_code":null,"network_advice_code":null},
 "funds":[{"from":"2026-01-15T00:00:00Z","to":"2026-01-18T00:00:00Z"}],
 "outside_funds_decline":{"decline_code":"insufficient_funds"},
 "card_dead":false,
 "updates_card":{"after_nudges":2,"reply_hours":18},
 "pays_unprompted_at":null,
 "gives_up_after_nudges":6}"#
            .replace('\n', "");
        let invoice = FailedInvoice::parse(&example).unwrap();
        assert_eq!(invoice.card.exp_year, Some(2027));
        assert_eq!(invoice.funds.len(), 1);
        assert_eq!(invoice.gives_up_after_nudges, Some(6));
        let again = FailedInvoice::parse(&serde_json::to_string(&invoice).unwrap()).unwrap();
        assert_eq!(again, invoice);
    }

    #[test]
    fn bad_lines_are_named_with_what_is_wrong() {
        let cases = [
            (LINE.replace(r#""invoice_id":"in_1","#, ""), "missing field `invoice_id`"),
            (LINE.replace("4900", "-5"), "`amount_due` must be above 0"),
            (LINE.replace("\"usd\"", "\"USD\""), "`currency` must be a lowercase"),
            (
                LINE.replace("\"card\"", "\"timezone\":\"Mars/Base\",\"card\""),
                "not an IANA time zone",
            ),
            (
                LINE.replace(
                    "\"first_decline\"",
                    r#""funds":[{"from":"2026-01-05T00:00:00Z","to":"2026-01-04T00:00:00Z"}],"first_decline""#,
                ),
                "must start before it ends",
            ),
            (LINE.replace("}}", "}"), "EOF while parsing"),
        ];
        for (line, wanted) in cases {
            let text = format!("{LINE}\n\n{line}\n");
            let read = read(&text);
            let error = read.last().unwrap().as_ref().unwrap_err();
            assert!(
                error.starts_with("population line 3: ") && error.contains(wanted),
                "{error} (wanted {wanted})"
            );
        }
    }

    #[test]
    fn a_customers_consecutive_invoices_come_together() {
        let second = LINE.replace("in_1", "in_2");
        let other = LINE.replace("in_1", "in_3").replace("cus_1", "cus_2");
        let read = read(&format!("{LINE}\n{second}\n{other}\n"));
        let ids: Vec<Vec<String>> = read
            .into_iter()
            .map(|c| c.unwrap().into_iter().map(|i| i.invoice_id).collect())
            .collect();
        assert_eq!(ids, [vec!["in_1", "in_2"], vec!["in_3"]]);
    }

    #[test]
    fn a_customer_split_across_the_file_is_an_error() {
        let other = LINE.replace("in_1", "in_3").replace("cus_1", "cus_2");
        let again = LINE.replace("in_1", "in_4");
        let read = read(&format!("{LINE}\n{other}\n{again}\n"));
        let error = read.last().unwrap().as_ref().unwrap_err();
        assert!(
            error.starts_with("population line 3: customer cus_1 appeared on earlier lines"),
            "{error}"
        );
    }
}
