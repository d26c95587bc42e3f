//! A simulation population: failed invoices with the truth about their customers.
//!
//! One line of JSON per failed invoice (`docs/reference/population.md#keys`). Each line holds what
//! Stripe would show recoup — ids, amount, time zone, card, tenure, the first decline — and what
//! only the customer knows: when their account has money (`funds`), whether the card is dead, whether
//! and when they would add a new card, pay by themselves, or give up on being nagged. The simulator
//! ([`super::world`]) shows the policy only the first part, and the second only the way Stripe would.
//!
//! A customer's invoices share their nudge count and their card, so they are simulated together,
//! wherever their lines are in the file: [`Customers`] indexes the file, then reads it customer by
//! customer in the order of their first failure.

use std::collections::{BTreeMap, HashMap};
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

/// serde_json's message without its position in the line (the line number is ours), with the column.
fn json_error(e: &serde_json::Error) -> String {
    let message = e.to_string();
    match message.rfind(" at line ") {
        Some(cut) => format!("{} (column {})", &message[..cut], e.column()),
        None => message,
    }
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
    pub fn parse(text: &[u8]) -> Result<Self, String> {
        let invoice: Self = serde_json::from_slice(text).map_err(|e| json_error(&e))?;
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

/// Where a population's lines can be read: once from the start, then again one line at a time by
/// position. A file, or bytes already in memory.
pub trait Source {
    /// Reads the whole population from its start.
    fn whole(&self) -> impl BufRead;
    /// Reads `buf.len()` bytes at `offset`.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()>;
}

impl Source for std::fs::File {
    fn whole(&self) -> impl BufRead {
        std::io::BufReader::with_capacity(1 << 20, self)
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, offset)
    }
}

impl Source for &[u8] {
    fn whole(&self) -> impl BufRead {
        *self
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let line = self
            .get(start..start.saturating_add(buf.len()))
            .ok_or(std::io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(line);
        Ok(())
    }
}

/// Where one invoice's line is, and the order it is simulated in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    /// Its customer's first failure (Unix seconds): customers are simulated in that order.
    first_failure: i64,
    /// Its customer, numbered in the order the file first names them.
    customer: u32,
    /// Its own failure (Unix seconds): a customer's invoices in the order they failed.
    failed_at: i64,
    line: u64,
    offset: u64,
    len: u32,
}

/// The keys the first pass reads of every line (a missing `invoice_id` is named by the second,
/// with the rest of the line).
#[derive(Deserialize)]
struct Who<'a> {
    #[serde(borrow)]
    customer_id: std::borrow::Cow<'a, str>,
    failed_at: Timestamp,
    #[serde(borrow)]
    invoice_id: Option<std::borrow::Cow<'a, str>>,
}

/// A population read in any line order (an export sorted by time is the usual case), customer by
/// customer.
///
/// A customer's invoices share a card and a nudge count, so they are simulated together; a file
/// need not keep them together. The first pass reads three keys of every line and keeps only where
/// each line is — 40 bytes a line plus some 30 a customer, about 70 MB for a million invoices,
/// whatever the lines hold, and 16 more while it looks for an invoice on two lines — and the second
/// reads each customer's lines again, parsing them whole.
/// Customers come in the order of their first failure (the file's order breaks ties), each
/// customer's invoices in the order they failed: the order a learning policy sees them in.
pub struct Customers<S> {
    source: S,
    entries: Vec<Entry>,
}

impl<S: Source> Customers<S> {
    /// Indexes `source`; a line that is not JSON, or lacks `customer_id` or `failed_at`, stops it
    /// with its line number (the rest of a line is checked when it is read again).
    pub fn read(source: S) -> Result<Self, PopulationError> {
        let mut entries = Vec::new();
        // Customers by id: their number and first failure. Ids are kept whole (no hash that two
        // customers could share): a million customers is some 50 MB.
        let mut customers: HashMap<String, (u32, i64)> = HashMap::new();
        // Each line's invoice id as a hash, and the line's entry: two lines that share a hash are
        // compared by their ids, read again.
        let mut invoices: Vec<(u64, usize)> = Vec::new();
        let mut reader = source.whole();
        let mut text = Vec::new();
        let (mut line, mut offset) = (0u64, 0u64);
        loop {
            text.clear();
            let read = reader.read_until(b'\n', &mut text)?;
            if read == 0 {
                break;
            }
            line += 1;
            let at = offset;
            offset += read as u64;
            if text.trim_ascii().is_empty() {
                continue;
            }
            let who: Who = serde_json::from_slice(&text).map_err(|e| PopulationError::Line {
                line,
                reason: json_error(&e),
            })?;
            if let Some(invoice) = &who.invoice_id {
                invoices.push((hash(invoice), entries.len()));
            }
            let failed_at = who.failed_at.as_second();
            let count = u32::try_from(customers.len()).map_err(|_| PopulationError::Line {
                line,
                reason: "more than 4 billion customers".to_owned(),
            })?;
            let customer = match customers.get_mut(who.customer_id.as_ref()) {
                Some((number, first)) => {
                    *first = (*first).min(failed_at);
                    *number
                }
                None => {
                    customers.insert(who.customer_id.into_owned(), (count, failed_at));
                    count
                }
            };
            entries.push(Entry {
                first_failure: 0,
                customer,
                failed_at,
                line,
                offset: at,
                len: u32::try_from(read).map_err(|_| PopulationError::Line {
                    line,
                    reason: "the line is longer than 4 GiB".to_owned(),
                })?,
            });
        }
        drop(reader);
        invoices.sort_unstable();
        for pair in invoices.windows(2) {
            let [(a, earlier), (b, later)] = [pair[0], pair[1]];
            if a != b {
                continue;
            }
            let id = |entry: &Entry| -> Result<String, PopulationError> {
                let text = line_of(&source, entry)?;
                let who: Who =
                    serde_json::from_slice(&text).map_err(|e| PopulationError::Line {
                        line: entry.line,
                        reason: json_error(&e),
                    })?;
                Ok(who.invoice_id.unwrap_or_default().into_owned())
            };
            let (earlier, later) = (&entries[earlier], &entries[later]);
            let invoice = id(later)?;
            if invoice == id(earlier)? {
                return Err(PopulationError::Line {
                    line: later.line,
                    reason: format!(
                        "invoice {invoice} is on line {} already: an invoice fails once in a \
                         population (its retries are the policy's to make)",
                        earlier.line
                    ),
                });
            }
        }
        drop(invoices);
        let mut first = vec![0i64; customers.len()];
        for (number, failure) in customers.into_values() {
            first[number as usize] = failure;
        }
        for entry in &mut entries {
            entry.first_failure = first[entry.customer as usize];
        }
        entries.sort_unstable();
        Ok(Self { source, entries })
    }

    /// Invoices in the population.
    pub fn invoices(&self) -> usize {
        self.entries.len()
    }

    /// Each customer's invoices, parsed and checked, customer by customer.
    pub fn iter(&self) -> impl Iterator<Item = Result<Vec<FailedInvoice>, PopulationError>> + '_ {
        self.entries
            .chunk_by(|a, b| a.customer == b.customer)
            .map(|lines| lines.iter().map(|entry| self.invoice(entry)).collect())
    }

    fn invoice(&self, entry: &Entry) -> Result<FailedInvoice, PopulationError> {
        let text = line_of(&self.source, entry)?;
        FailedInvoice::parse(&text).map_err(|reason| PopulationError::Line {
            line: entry.line,
            reason,
        })
    }
}

/// The text of `entry`'s line, read again.
fn line_of<S: Source>(source: &S, entry: &Entry) -> Result<Vec<u8>, PopulationError> {
    let mut text = vec![0; entry.len as usize];
    source.read_at(&mut text, entry.offset)?;
    Ok(text)
}

fn hash(id: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"invoice_id":"in_1","customer_id":"cus_1","amount_due":4900,"currency":"usd","failed_at":"2026-01-03T10:00:00Z","card":{"fingerprint":"fp_1"},"first_decline":{"decline_code":"insufficient_funds"}}"#;

    fn read(text: &str) -> Vec<Result<Vec<FailedInvoice>, String>> {
        match Customers::read(text.as_bytes()) {
            Ok(customers) => customers
                .iter()
                .map(|c| c.map_err(|e| e.to_string()))
                .collect(),
            Err(e) => vec![Err(e.to_string())],
        }
    }

    #[test]
    fn a_minimal_line_takes_the_contracts_defaults() {
        let invoice = FailedInvoice::parse(LINE.as_bytes()).unwrap();
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
        let invoice = FailedInvoice::parse(example.as_bytes()).unwrap();
        assert_eq!(invoice.card.exp_year, Some(2027));
        assert_eq!(invoice.funds.len(), 1);
        assert_eq!(invoice.gives_up_after_nudges, Some(6));
        let again = FailedInvoice::parse(&serde_json::to_vec(&invoice).unwrap()).unwrap();
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
            let line = line.replace("in_1", "in_2");
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
    fn a_customer_split_across_the_file_comes_together_in_failure_order() {
        let at = |day: u8| format!("2026-01-{day:02}T10:00:00Z");
        let line = |invoice: &str, customer: &str, day: u8| {
            LINE.replace("in_1", invoice)
                .replace("cus_1", customer)
                .replace("2026-01-03T10:00:00Z", &at(day))
        };
        // Sorted by time, as an export is: cus_2 fails first, cus_1's invoices are apart and
        // out of their own order.
        let text = [
            line("in_b", "cus_1", 9),
            line("in_x", "cus_2", 2),
            line("in_y", "cus_3", 9),
            line("in_a", "cus_1", 5),
        ]
        .join("\n");
        let ids: Vec<Vec<String>> = read(&text)
            .into_iter()
            .map(|c| c.unwrap().into_iter().map(|i| i.invoice_id).collect())
            .collect();
        assert_eq!(ids, [vec!["in_x"], vec!["in_a", "in_b"], vec!["in_y"]]);
    }

    #[test]
    fn an_invoice_on_two_lines_is_named_by_the_later_one() {
        let other = LINE.replace("in_1", "in_2");
        let again = LINE.replace("cus_1", "cus_9");
        let read = read(&format!("{LINE}\n{other}\n\n{again}\n"));
        let error = read.last().unwrap().as_ref().unwrap_err();
        assert!(
            error.starts_with("population line 4: invoice in_1 is on line 1 already"),
            "{error}"
        );
    }

    #[test]
    fn a_line_without_its_customer_or_failure_is_named_before_anything_runs() {
        let broken = LINE.replace(r#""failed_at":"2026-01-03T10:00:00Z","#, "");
        let read = read(&format!("{LINE}\n{broken}\n"));
        let error = read.last().unwrap().as_ref().unwrap_err();
        assert!(
            error.starts_with("population line 2: missing field `failed_at`"),
            "{error}"
        );
    }
}
