//! Stripe's lists, read raw for the backfill and reconciling ([`Listings`]): `GET /v1/events` and
//! `GET /v1/invoices`, paged by the caller with `starting_after`, and one invoice.
//!
//! async-stripe's typed objects are not what recoup reads: an event's JSON goes through recoup's
//! own wire parser, exactly as a webhook body does, and the typed event would have lost the older
//! invoice shape on the way. So these requests go through async-stripe's `RequestBuilder`, with the
//! same client, key, version header and timeout as every other call, and each listed object comes
//! back as its JSON. A list is read more patiently than a charge is made: a rate limit (429) or a
//! failure (5xx, no answer) is asked again up to [`LIST_TRIES`] times, pausing from
//! `stripe.backoff_ms` doubling up to [`LIST_MAX_PAUSE`]. async-stripe does not hand over
//! `Retry-After`, so the pauses are recoup's own.

use std::time::Duration;

use backon::ExponentialBuilder;
use futures_util::future::BoxFuture;
use miniserde::json::Value;
use stripe::StripeError;
use stripe_client_core::{RequestBuilder, StripeMethod};

use super::{Stripe, brief};
use crate::processor::{ListError, Listed, Listings, Page};

/// Objects per page: Stripe's most.
pub const LIST_LIMIT: usize = 100;

/// How many times a list call is made at most after a passing failure.
pub const LIST_TRIES: usize = 10;

/// The longest pause between two tries of a list call.
pub const LIST_MAX_PAUSE: Duration = Duration::from_secs(30);

/// A page as Stripe sends it, each object kept whole.
#[derive(miniserde::Deserialize)]
struct RawPage {
    data: Vec<Value>,
    has_more: bool,
}

impl Stripe {
    pub(super) async fn page(
        &self,
        what: &str,
        path: &str,
        query: String,
    ) -> Result<Page, ListError> {
        let raw: RawPage = self
            .patiently(what, || {
                let mut request = RequestBuilder::new(StripeMethod::Get, path);
                request.query = Some(query.clone());
                request.customize::<RawPage>().send(&self.client)
            })
            .await?;
        let objects = raw
            .data
            .iter()
            .map(|object| {
                let id = match object {
                    Value::Object(fields) => match fields.get("id") {
                        Some(Value::String(id)) => Some(id.clone()),
                        _ => None,
                    },
                    _ => None,
                };
                let id = id.ok_or_else(|| {
                    ListError::Failed(format!("{what}: Stripe listed an object without an id"))
                })?;
                Ok(Listed {
                    id,
                    json: miniserde::json::to_string(object).into_bytes(),
                })
            })
            .collect::<Result<_, ListError>>()?;
        Ok(Page {
            objects,
            has_more: raw.has_more,
        })
    }

    /// Makes a read call, again after passing failures, patiently.
    async fn patiently<T, F, Fut>(&self, what: &str, call: F) -> Result<T, ListError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StripeError>>,
    {
        self.patiently_or_missing(what, call)
            .await?
            .ok_or_else(|| ListError::Failed(format!("{what}: Stripe answered 404")))
    }

    /// Like [`Self::patiently`], with `Ok(None)` for Stripe's 404.
    async fn patiently_or_missing<T, F, Fut>(
        &self,
        what: &str,
        call: F,
    ) -> Result<Option<T>, ListError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StripeError>>,
    {
        let pauses = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(self.settings.backoff_ms))
            .with_max_delay(LIST_MAX_PAUSE)
            .with_max_times(LIST_TRIES.max(self.settings.retries as usize))
            .with_jitter();
        match self.call_pausing(what, pauses, call).await {
            Ok(answer) => Ok(Some(answer)),
            Err(StripeError::Stripe(_, 404)) => Ok(None),
            Err(StripeError::Stripe(e, status @ (401 | 403))) => Err(ListError::Refused {
                status,
                message: e.message.unwrap_or_else(|| "no message".to_owned()),
            }),
            Err(e) => Err(ListError::Failed(format!("{what}: {}", brief(&e)))),
        }
    }

    async fn invoice_json(&self, invoice_id: &str) -> Result<Option<Vec<u8>>, ListError> {
        let path = format!("/invoices/{invoice_id}");
        let invoice = self
            .patiently_or_missing("read invoice", || {
                RequestBuilder::new(StripeMethod::Get, path.as_str())
                    .customize::<Value>()
                    .send(&self.client)
            })
            .await?;
        Ok(invoice.map(|invoice| miniserde::json::to_string(&invoice).into_bytes()))
    }
}

/// `key=value&…`, form-encoded as Stripe reads a query.
fn query<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (key, value) in pairs {
        query.append_pair(key, value);
    }
    query.finish()
}

impl Listings for Stripe {
    fn events<'a>(
        &'a self,
        since: i64,
        types: &'a [&'a str],
        starting_after: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Page, ListError>> {
        let since = since.to_string();
        let limit = LIST_LIMIT.to_string();
        let mut pairs = vec![("created[gte]", since.as_str()), ("limit", limit.as_str())];
        pairs.extend(types.iter().map(|t| ("types[]", *t)));
        pairs.extend(starting_after.map(|id| ("starting_after", id)));
        let query = query(pairs);
        Box::pin(self.page("list events", "/events", query))
    }

    fn open_invoices<'a>(
        &'a self,
        starting_after: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Page, ListError>> {
        let limit = LIST_LIMIT.to_string();
        let mut pairs = vec![
            ("status", "open"),
            ("collection_method", "charge_automatically"),
            ("limit", limit.as_str()),
        ];
        pairs.extend(starting_after.map(|id| ("starting_after", id)));
        let query = query(pairs);
        Box::pin(self.page("list open invoices", "/invoices", query))
    }

    fn invoice<'a>(
        &'a self,
        invoice_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<Vec<u8>>, ListError>> {
        Box::pin(self.invoice_json(invoice_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_types_entry_per_type_and_brackets_encoded() {
        let q = query([
            ("created[gte]", "1790000000"),
            ("types[]", "invoice.paid"),
            ("types[]", "invoice.voided"),
        ]);
        assert_eq!(
            q,
            "created%5Bgte%5D=1790000000&types%5B%5D=invoice.paid&types%5B%5D=invoice.voided"
        );
    }
}

impl Stripe {
    /// The local days of the month (in `zone`) the customer's latest invoices that were paid
    /// *after* a failed attempt were paid on: when money came back, their likely paydays. At most
    /// [`PAYMENT_HISTORY`] invoices are read (one page); an invoice paid at its first attempt says
    /// only when it was billed, and is left out. Best effort: a failed read gives no days.
    pub(super) async fn payment_days(&self, customer_id: &str, zone: &str) -> Vec<u8> {
        let limit = PAYMENT_HISTORY.to_string();
        let pairs = vec![
            ("customer", customer_id),
            ("status", "paid"),
            ("limit", limit.as_str()),
        ];
        let page = match self
            .page("list paid invoices", "/invoices", query(pairs))
            .await
        {
            Ok(page) => page,
            Err(e) => {
                tracing::warn!(customer = customer_id, "no payment history read: {e:?}");
                return Vec::new();
            }
        };
        let zone = crate::policy::timing::zone(zone);
        let mut days: Vec<u8> = page
            .objects
            .iter()
            .filter_map(|listed| serde_json::from_slice::<PaidInvoice>(&listed.json).ok())
            .filter(|invoice| invoice.attempt_count > 1)
            .filter_map(|invoice| invoice.status_transitions?.paid_at)
            .filter_map(|paid| jiff::Timestamp::from_second(paid).ok())
            .filter_map(|paid| u8::try_from(paid.to_zoned(zone.clone()).day()).ok())
            .collect();
        days.sort_unstable();
        days.dedup();
        days
    }
}

/// How many of a customer's paid invoices are read for their paydays: a year of monthly ones.
pub const PAYMENT_HISTORY: usize = 12;

/// What a paid invoice tells of when money came.
#[derive(serde::Deserialize)]
struct PaidInvoice {
    #[serde(default)]
    attempt_count: u32,
    status_transitions: Option<Transitions>,
}

#[derive(serde::Deserialize)]
struct Transitions {
    paid_at: Option<i64>,
}
