//! Stripe, through async-stripe: read the invoice, pay it under the attempt's idempotency key, read
//! declines from the payment intent, read a customer, read an invoice's status and hosted page, open
//! a billing portal session (on the payment-method-update flow where offered), carry out end
//! decisions (pause or cancel the subscription, mark the invoice uncollectible) and resume a paused
//! collection, and read a disputed charge.
//!
//! Carrying out end decisions and resuming collection are in [`ending`]; the lists the backfill and
//! reconciling read (events, open invoices) in [`lists`].
//!
//! Every call is bounded by [`StripeSettings::timeout_ms`], and calls that fail for a passing reason
//! (no answer in time, connection trouble, 409 idempotency conflicts, 429 rate limits and 5xx
//! server errors) are made again after a jittered, growing pause (`backon`) — the pay call with the
//! same key, so Stripe either charges once or answers what it answered before. A card error (402)
//! is not a fault but the attempt's result. Anything else (a key without permission, an invoice
//! that does not exist) comes back as [`ChargeResult::Failed`] with Stripe's own message.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use futures_util::future::BoxFuture;
use secrecy::{ExposeSecret, SecretString};
use stripe::{
    ApiErrors, Client, ClientBuilder, IdempotencyKey, RequestStrategy, StripeError, StripeRequest,
};
use stripe_billing::InvoiceStatus;
use stripe_billing::billing_portal_session::{
    CreateBillingPortalSession, CreateBillingPortalSessionFlowData,
    CreateBillingPortalSessionFlowDataType,
};
use stripe_billing::invoice::{PayInvoice, RetrieveInvoice};
use stripe_core::charge::RetrieveCharge;
use stripe_core::customer::{RetrieveCustomer, RetrieveCustomerReturned};
use stripe_core::payment_intent::RetrievePaymentIntent;
use stripe_shared::SubscriptionStatus;

mod ending;
mod lists;

use super::{DisputedCharge, InvoicePage, Processor, ProcessorError, idempotency_key};
use crate::config::StripeSettings;
use crate::policy::expiring::CardHolder;
use crate::policy::{Card, CardOnFile, ChargeResult, CustomerFacts, Declined, EndOrder, EndResult};

/// The Stripe API version recoup speaks: the one async-stripe pins. The business's webhook
/// endpoint should send events in the same version.
pub fn api_version() -> &'static str {
    static VERSION: stripe_shared::ApiVersion = stripe_shared::version::VERSION;
    VERSION.as_str()
}

/// A Stripe account, as recoup calls it.
pub struct Stripe {
    client: Client,
    settings: StripeSettings,
}

impl Stripe {
    pub fn new(key: &SecretString, settings: &StripeSettings) -> Result<Self, ProcessorError> {
        let client = ClientBuilder::new(key.expose_secret())
            .url(settings.api_base.trim_end_matches('/'))
            .timeout(Duration::from_millis(settings.timeout_ms))
            .app_info(
                "recoup",
                Some(env!("CARGO_PKG_VERSION").to_owned()),
                Some(env!("CARGO_PKG_REPOSITORY").to_owned()),
            )
            .build()
            .map_err(|e| ProcessorError {
                message: format!("cannot set up the Stripe client: {e}"),
                passing: false,
            })?;
        Ok(Self {
            client,
            settings: settings.clone(),
        })
    }

    /// Makes one call, again after passing failures, up to the configured number of tries.
    async fn call<T, F, Fut>(&self, what: &str, call: F) -> Result<T, StripeError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StripeError>>,
    {
        let pauses = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(self.settings.backoff_ms))
            .with_max_delay(Duration::from_secs(5))
            .with_max_times(self.settings.retries as usize)
            .with_jitter();
        self.call_pausing(what, pauses, call).await
    }

    /// Makes one call, again after passing failures, pausing as `pauses` says.
    async fn call_pausing<T, F, Fut>(
        &self,
        what: &str,
        pauses: ExponentialBuilder,
        call: F,
    ) -> Result<T, StripeError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StripeError>>,
    {
        call.retry(pauses)
            .when(is_passing)
            .notify(|e, pause| {
                tracing::warn!(
                    call = what,
                    ?pause,
                    "Stripe call failed, trying again: {}",
                    brief(e)
                )
            })
            .await
    }

    async fn charge_invoice(
        &self,
        invoice_id: &str,
        attempt: u32,
        payment_method: Option<&str>,
    ) -> ChargeResult {
        let failed = |what: &str, e: &StripeError| ChargeResult::Failed {
            error: format!("{what}: {}", brief(e)),
        };
        let read = self
            .call("read invoice", || async {
                RetrieveInvoice::new(invoice_id).send(&self.client).await
            })
            .await;
        let invoice = match read {
            Ok(invoice) => invoice,
            Err(e) => return failed("reading the invoice", &e),
        };
        match invoice.status {
            Some(InvoiceStatus::Open) => {}
            Some(status) => {
                return ChargeResult::NotOpen {
                    status: status.as_str().to_owned(),
                };
            }
            None => {
                return ChargeResult::NotOpen {
                    status: "unknown".to_owned(),
                };
            }
        }
        let key = match IdempotencyKey::new(idempotency_key(invoice_id, attempt)) {
            Ok(key) => key,
            Err(e) => {
                return failed(
                    "the idempotency key",
                    &StripeError::ConfigError(e.to_string()),
                );
            }
        };
        let paid = self
            .call("pay invoice", || async {
                let mut pay = PayInvoice::new(invoice_id);
                if let Some(method) = payment_method {
                    pay = pay.payment_method(method);
                }
                pay.customize()
                    .request_strategy(RequestStrategy::Idempotent(key.clone()))
                    .send(&self.client)
                    .await
            })
            .await;
        match paid {
            Ok(invoice) if invoice.status == Some(InvoiceStatus::Paid) => ChargeResult::Paid,
            Ok(invoice) => ChargeResult::Failed {
                error: format!(
                    "Stripe took the payment but the invoice is {}",
                    invoice
                        .status
                        .as_ref()
                        .map_or("without a status", |s| s.as_str())
                ),
            },
            Err(StripeError::Stripe(error, _)) if is_decline(&error) => {
                ChargeResult::Declined(declined(&error))
            }
            Err(e) => failed("paying the invoice", &e),
        }
    }

    async fn decline_of(
        &self,
        invoice_id: &str,
        payment_intent: Option<&str>,
    ) -> Result<Option<Declined>, ProcessorError> {
        let fault = |what: &str, e: StripeError| ProcessorError {
            message: format!("{what}: {}", brief(&e)),
            passing: is_passing(&e),
        };
        let intent_id = match payment_intent {
            Some(id) => id.to_owned(),
            None => {
                // Since 2025-03-31 an invoice names its payments only when asked to.
                let invoice = self
                    .call("read invoice payments", || async {
                        RetrieveInvoice::new(invoice_id)
                            .expand(vec!["payments".to_owned()])
                            .send(&self.client)
                            .await
                    })
                    .await
                    .map_err(|e| fault("reading the invoice's payments", e))?;
                let latest = invoice
                    .payments
                    .iter()
                    .flat_map(|list| &list.data)
                    .filter_map(|p| p.payment.payment_intent.as_ref())
                    .map(|pi| pi.id().as_str().to_owned())
                    .next_back();
                match latest {
                    Some(id) => id,
                    None => return Ok(None),
                }
            }
        };
        let intent = self
            .call("read payment intent", || async {
                RetrievePaymentIntent::new(intent_id.as_str())
                    .send(&self.client)
                    .await
            })
            .await
            .map_err(|e| fault("reading the payment intent", e))?;
        Ok(intent.last_payment_error.as_deref().map(declined))
    }

    async fn invoice_shown(&self, invoice_id: &str) -> Result<Option<InvoicePage>, ProcessorError> {
        let read = self
            .call("read invoice", || async {
                RetrieveInvoice::new(invoice_id).send(&self.client).await
            })
            .await;
        let Some(invoice) = found("reading the invoice", read)? else {
            return Ok(None);
        };
        Ok(Some(InvoicePage {
            status: invoice
                .status
                .as_ref()
                .map_or("unknown", |s| s.as_str())
                .to_owned(),
            hosted_invoice_url: invoice.hosted_invoice_url,
        }))
    }

    /// A portal session on the payment-method-update flow; when Stripe refuses the flow (a portal
    /// configuration without payment method updates, an account or API version without flows) the
    /// portal's home, where the customer finds the same thing a click further.
    async fn open_portal(&self, customer_id: &str) -> Result<String, ProcessorError> {
        let fault = |e: StripeError| ProcessorError {
            message: format!("creating a billing portal session: {}", brief(&e)),
            passing: is_passing(&e),
        };
        let on_flow = self
            .call("create billing portal session", || async {
                CreateBillingPortalSession::new()
                    .customer(customer_id)
                    .flow_data(CreateBillingPortalSessionFlowData::new(
                        CreateBillingPortalSessionFlowDataType::PaymentMethodUpdate,
                    ))
                    .send(&self.client)
                    .await
            })
            .await;
        match on_flow {
            Ok(session) => return Ok(session.url),
            Err(StripeError::Stripe(error, 400))
                if error.code.as_ref().map(|c| c.as_str()) != Some("resource_missing") =>
            {
                tracing::warn!(
                    customer = customer_id,
                    "Stripe refused the portal's payment-method-update flow ({}); opening the \
                     portal's home instead (enable payment method updates in the portal's settings)",
                    error.message.as_deref().unwrap_or("no message")
                );
            }
            Err(e) => return Err(fault(e)),
        }
        let session = self
            .call("create billing portal session", || async {
                CreateBillingPortalSession::new()
                    .customer(customer_id)
                    .send(&self.client)
                    .await
            })
            .await
            .map_err(fault)?;
        Ok(session.url)
    }

    async fn card_holder_of(
        &self,
        customer_id: &str,
    ) -> Result<Option<CardHolder>, ProcessorError> {
        let read = self
            .call("read customer's default card", || async {
                RetrieveCustomer::new(customer_id)
                    .expand(vec![
                        "invoice_settings.default_payment_method".to_owned(),
                        "subscriptions".to_owned(),
                    ])
                    .send(&self.client)
                    .await
            })
            .await;
        let customer = match read {
            Ok(RetrieveCustomerReturned::Customer(customer)) => customer,
            Ok(RetrieveCustomerReturned::DeletedCustomer(_)) | Err(StripeError::Stripe(_, 404)) => {
                return Ok(None);
            }
            Err(e) => {
                return Err(ProcessorError {
                    message: format!("reading the customer's default card: {}", brief(&e)),
                    passing: is_passing(&e),
                });
            }
        };
        let card = customer
            .invoice_settings
            .and_then(|settings| settings.default_payment_method)
            .and_then(|pm| pm.into_object())
            .and_then(|pm| {
                let card = pm.card?;
                Some(CardOnFile {
                    id: pm.id.as_str().to_owned(),
                    brand: card.brand,
                    last4: card.last4,
                    exp_month: u32::try_from(card.exp_month).ok()?,
                    exp_year: u32::try_from(card.exp_year).ok()?,
                })
            });
        // Stripe embeds the first few; a customer with more than that has one that renews as far
        // as recoup can tell without paging.
        let subscribed = customer.subscriptions.is_some_and(|list| {
            list.has_more
                || list.data.iter().any(|s| {
                    matches!(
                        s.status,
                        SubscriptionStatus::Active
                            | SubscriptionStatus::Trialing
                            | SubscriptionStatus::PastDue
                    )
                })
        });
        let metadata = customer.metadata.unwrap_or_default();
        let country = customer.address.and_then(|a| a.country);
        Ok(Some(CardHolder {
            card,
            subscribed,
            timezone: crate::policy::timing::zone_name(
                metadata.get("timezone").map(String::as_str),
                country.as_deref(),
            ),
            contact_window: metadata
                .get("contact_window")
                .and_then(|w| crate::policy::contact_window(w)),
        }))
    }

    async fn customer_facts(
        &self,
        customer_id: &str,
    ) -> Result<Option<CustomerFacts>, ProcessorError> {
        let read = self
            .call("read customer", || async {
                RetrieveCustomer::new(customer_id).send(&self.client).await
            })
            .await;
        let customer = match read {
            Ok(RetrieveCustomerReturned::Customer(customer)) => customer,
            Ok(RetrieveCustomerReturned::DeletedCustomer(_)) => return Ok(None),
            Err(StripeError::Stripe(_, 404)) => return Ok(None),
            Err(e) => {
                return Err(ProcessorError {
                    message: format!("reading the customer: {}", brief(&e)),
                    passing: is_passing(&e),
                });
            }
        };
        let metadata: std::collections::BTreeMap<String, String> =
            customer.metadata.unwrap_or_default().into_iter().collect();
        let country = customer.address.and_then(|a| a.country);
        let zone = crate::policy::timing::zone_name(
            metadata.get("timezone").map(String::as_str),
            country.as_deref(),
        );
        let payment_days = self.payment_days(customer_id, &zone).await;
        Ok(Some(CustomerFacts {
            metadata,
            country,
            created: jiff::Timestamp::from_second(customer.created).ok(),
            past_failures: 0,
            name: customer.name,
            email: customer.email,
            phone: customer.phone,
            preferred_locales: customer.preferred_locales.unwrap_or_default(),
            payment_days,
        }))
    }
}

impl Stripe {
    async fn charge_of_dispute(
        &self,
        charge_id: &str,
    ) -> Result<Option<DisputedCharge>, ProcessorError> {
        let read = self
            .call("read charge", || async {
                RetrieveCharge::new(charge_id).send(&self.client).await
            })
            .await;
        let Some(charge) = found("reading the disputed charge", read)? else {
            return Ok(None);
        };
        let card = charge
            .payment_method_details
            .and_then(|details| details.card)
            .and_then(|card| {
                Some(Card {
                    fingerprint: card.fingerprint?,
                    brand: card.brand?,
                    funding: card.funding,
                    expires_at: expires_at(card.exp_month, card.exp_year),
                })
            });
        Ok(Some(DisputedCharge {
            customer: charge.customer.map(|c| c.id().as_str().to_owned()),
            card,
        }))
    }
}

impl Processor for Stripe {
    fn charge<'a>(
        &'a self,
        invoice_id: &'a str,
        attempt: u32,
        payment_method: Option<&'a str>,
    ) -> BoxFuture<'a, ChargeResult> {
        Box::pin(self.charge_invoice(invoice_id, attempt, payment_method))
    }

    fn last_decline<'a>(
        &'a self,
        invoice_id: &'a str,
        payment_intent: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<Declined>, ProcessorError>> {
        Box::pin(self.decline_of(invoice_id, payment_intent))
    }

    fn customer<'a>(
        &'a self,
        customer_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<CustomerFacts>, ProcessorError>> {
        Box::pin(self.customer_facts(customer_id))
    }

    fn card_holder<'a>(
        &'a self,
        customer_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<CardHolder>, ProcessorError>> {
        Box::pin(self.card_holder_of(customer_id))
    }

    fn invoice_page<'a>(
        &'a self,
        invoice_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<InvoicePage>, ProcessorError>> {
        Box::pin(self.invoice_shown(invoice_id))
    }

    fn portal_session<'a>(
        &'a self,
        customer_id: &'a str,
    ) -> BoxFuture<'a, Result<String, ProcessorError>> {
        Box::pin(self.open_portal(customer_id))
    }

    fn end<'a>(&'a self, order: &'a EndOrder) -> BoxFuture<'a, EndResult> {
        Box::pin(self.carry_out(order))
    }

    fn resume<'a>(
        &'a self,
        invoice_id: &'a str,
        subscription_id: &'a str,
    ) -> BoxFuture<'a, EndResult> {
        Box::pin(self.resume_collection(invoice_id, subscription_id))
    }

    fn disputed_charge<'a>(
        &'a self,
        charge_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<DisputedCharge>, ProcessorError>> {
        Box::pin(self.charge_of_dispute(charge_id))
    }
}

/// What a read found: the object, none when Stripe has no such thing (404), or the fault.
fn found<T>(what: &str, read: Result<T, StripeError>) -> Result<Option<T>, ProcessorError> {
    match read {
        Ok(object) => Ok(Some(object)),
        Err(StripeError::Stripe(_, 404)) => Ok(None),
        Err(e) => Err(ProcessorError {
            message: format!("{what}: {}", brief(&e)),
            passing: is_passing(&e),
        }),
    }
}

/// Whether a failed call is worth making again: Stripe's documented passing statuses, and calls
/// that got no answer at all.
fn is_passing(error: &StripeError) -> bool {
    match error {
        StripeError::Stripe(_, status) => matches!(status, 409 | 429 | 500..=599),
        StripeError::ClientError(_) | StripeError::Timeout | StripeError::JSONDeserialize(_) => {
            true
        }
        StripeError::ConfigError(_) => false,
    }
}

/// A card error, or a payment that needs the customer to authenticate: the attempt's result.
fn is_decline(error: &ApiErrors) -> bool {
    error.type_.as_str() == "card_error"
        || error.code.as_ref().map(|c| c.as_str()) == Some("invoice_payment_intent_requires_action")
}

/// The decline an error reports, filled in from its payment intent's `last_payment_error` where
/// the error itself leaves a signal out.
fn declined(error: &ApiErrors) -> Declined {
    let last = error
        .payment_intent
        .as_ref()
        .and_then(|pi| pi.last_payment_error.as_deref());
    let either = |field: fn(&ApiErrors) -> Option<&String>| {
        field(error).or_else(|| last.and_then(field)).cloned()
    };
    let code = error
        .code
        .as_ref()
        .or_else(|| last.and_then(|l| l.code.as_ref()))
        .map(|c| match c.as_str() {
            // Stripe's name for "the customer must confirm this payment" on an invoice.
            "invoice_payment_intent_requires_action" => "authentication_required".to_owned(),
            other => other.to_owned(),
        });
    let card = error
        .payment_method
        .as_ref()
        .or_else(|| last.and_then(|l| l.payment_method.as_ref()))
        .and_then(|pm| pm.card.as_ref())
        .and_then(|card| {
            Some(Card {
                fingerprint: card.fingerprint.clone()?,
                brand: card.brand.clone(),
                funding: Some(card.funding.clone()),
                expires_at: expires_at(card.exp_month, card.exp_year),
            })
        });
    Declined {
        code,
        decline_code: either(|e| e.decline_code.as_ref()),
        advice_code: either(|e| e.advice_code.as_ref()),
        network_advice_code: either(|e| e.network_advice_code.as_ref()),
        network_decline_code: either(|e| e.network_decline_code.as_ref()),
        card,
    }
}

/// An error in one line: Stripe's own message where it gave one, never the whole debug dump.
fn brief(error: &StripeError) -> String {
    match error {
        StripeError::Stripe(e, status) => format!(
            "Stripe answered {status}{}: {}",
            e.code
                .as_ref()
                .map(|c| format!(" {}", c.as_str()))
                .unwrap_or_default(),
            e.message.as_deref().unwrap_or("no message")
        ),
        other => other.to_string(),
    }
}

/// When a card Stripe shows with `exp_month`/`exp_year` stops working.
fn expires_at(exp_month: i64, exp_year: i64) -> Option<jiff::Timestamp> {
    crate::policy::card_expires_at(
        u32::try_from(exp_month).ok()?,
        u32::try_from(exp_year).ok()?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pinned_api_version_is_the_one_the_readme_and_fixtures_name() {
        assert_eq!(api_version(), "2026-09-30.endive");
    }

    #[test]
    fn passing_faults_are_retried_and_answers_are_not() {
        let answered = |status| StripeError::Stripe(Box::new(api_error("api_error")), status);
        for status in [409, 429, 500, 502, 503] {
            assert!(is_passing(&answered(status)), "{status}");
        }
        for status in [400, 401, 402, 403, 404] {
            assert!(!is_passing(&answered(status)), "{status}");
        }
        assert!(is_passing(&StripeError::Timeout));
        assert!(is_passing(&StripeError::ClientError("reset".into())));
        assert!(!is_passing(&StripeError::ConfigError("bad".into())));
    }

    fn api_error(kind: &str) -> ApiErrors {
        miniserde::json::from_str(&format!(r#"{{"type":"{kind}"}}"#)).unwrap()
    }

    #[test]
    fn a_decline_is_read_from_the_error_and_filled_in_from_its_payment_intent() {
        let mut payment_method: serde_json::Value =
            serde_json::from_str(include_str!("../../../fixtures/stripe/payment_method.json"))
                .unwrap();
        payment_method["card"]["brand"] = "mastercard".into();
        payment_method["card"]["fingerprint"] = "fp_mc_1".into();
        let mut intent: serde_json::Value =
            serde_json::from_str(include_str!("../../../fixtures/stripe/payment_intent.json"))
                .unwrap();
        intent["last_payment_error"] = serde_json::json!({
            "type": "card_error", "code": "card_declined", "decline_code": "do_not_honor",
            "network_advice_code": "03", "network_decline_code": "05",
            "payment_method": payment_method,
        });
        let error = serde_json::json!({
            "type": "card_error", "code": "card_declined", "decline_code": "do_not_honor",
            "message": "Your card was declined.", "payment_intent": intent,
        });
        let error: ApiErrors = miniserde::json::from_str(&error.to_string()).unwrap();
        assert!(is_decline(&error));
        let read = declined(&error);
        assert_eq!(read.decline_code.as_deref(), Some("do_not_honor"));
        assert_eq!(read.network_advice_code.as_deref(), Some("03"));
        assert_eq!(read.network_decline_code.as_deref(), Some("05"));
        assert_eq!(read.advice_code, None);
        assert_eq!(
            read.card,
            Some(Card {
                fingerprint: "fp_mc_1".into(),
                brand: "mastercard".into(),
                funding: Some("credit".into()),
                // The card shows 08/2030: it works through August.
                expires_at: Some("2030-09-01T00:00:00Z".parse().unwrap()),
            })
        );

        // A payment that needs the customer comes back as Stripe's invoice error code.
        let action: ApiErrors = miniserde::json::from_str(
            r#"{"type":"invalid_request_error","code":"invoice_payment_intent_requires_action"}"#,
        )
        .unwrap();
        assert!(is_decline(&action));
        assert_eq!(
            declined(&action).code.as_deref(),
            Some("authentication_required")
        );
    }
}
