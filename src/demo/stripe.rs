//! The demo's one stand-in: Stripe, answering the worker in-process with each story's outcome — the
//! same answer for every try of a call, as Stripe answers a redo under the same idempotency key.

use std::collections::HashMap;
use std::sync::Mutex;

use futures_util::future::BoxFuture;
use jiff::{SignedDuration, Timestamp};

use super::Story;
use crate::policy::expiring::CardHolder;
use crate::policy::{Card, ChargeResult, CustomerFacts, Declined, EndOrder, EndResult};
use crate::processor::{DisputedCharge, InvoicePage, Processor, ProcessorError};

/// The demo's Stripe: answers the worker in-process, the same way for every try of a call.
pub(super) struct DemoStripe {
    customers: HashMap<&'static str, CustomerFacts>,
    declines: HashMap<&'static str, Declined>,
    retries: HashMap<&'static str, ChargeResult>,
    /// Invoices the customer paid themselves: no longer open.
    paid: Mutex<Vec<String>>,
    calls: Mutex<u32>,
}

impl DemoStripe {
    pub(super) fn new(stories: &[Story]) -> Self {
        let now = Timestamp::now();
        let customers = stories
            .iter()
            .map(|s| {
                let facts = CustomerFacts {
                    metadata: [("timezone".to_owned(), s.timezone.to_owned())].into(),
                    created: Some(now - SignedDuration::from_hours(s.months * 31 * 24)),
                    name: Some(s.name.to_owned()),
                    email: Some(format!(
                        "{}@example.com",
                        s.name
                            .split(' ')
                            .next()
                            .unwrap_or("customer")
                            .to_lowercase()
                    )),
                    preferred_locales: vec!["en".to_owned()],
                    ..CustomerFacts::default()
                };
                (s.customer, facts)
            })
            .collect();
        let declines = stories
            .iter()
            .map(|s| {
                let declined = match s.decline {
                    Some(code) => Declined {
                        code: Some(
                            if code == "expired_card" {
                                code
                            } else {
                                "card_declined"
                            }
                            .into(),
                        ),
                        decline_code: Some(code.into()),
                        card: Some(Card {
                            fingerprint: format!("fp_demo_{}", s.customer),
                            brand: "visa".into(),
                            funding: None,
                            expires_at: None,
                        }),
                        ..Declined::default()
                    },
                    None => Declined {
                        code: Some("authentication_required".into()),
                        ..Declined::default()
                    },
                };
                (s.invoice, declined)
            })
            .collect();
        let retries = stories
            .iter()
            .map(|s| (s.invoice, s.retries.clone()))
            .collect();
        Self {
            customers,
            declines,
            retries,
            paid: Mutex::new(Vec::new()),
            calls: Mutex::new(0),
        }
    }

    fn call(&self) {
        *self.calls.lock().expect("not poisoned") += 1;
    }

    pub(super) fn calls(&self) -> u32 {
        *self.calls.lock().expect("not poisoned")
    }

    /// Whether the customer paid the invoice themselves.
    fn paid(&self, invoice: &str) -> bool {
        self.paid
            .lock()
            .expect("not poisoned")
            .iter()
            .any(|i| i == invoice)
    }

    pub(super) fn paid_by_customer(&self, invoice: &str) {
        self.paid
            .lock()
            .expect("not poisoned")
            .push(invoice.to_owned());
    }
}

impl Processor for DemoStripe {
    fn charge<'a>(
        &'a self,
        invoice_id: &'a str,
        _: u32,
        _: Option<&'a str>,
    ) -> BoxFuture<'a, ChargeResult> {
        self.call();
        let result = if self.paid(invoice_id) {
            ChargeResult::NotOpen {
                status: "paid".into(),
            }
        } else {
            self.retries
                .get(invoice_id)
                .cloned()
                .unwrap_or(ChargeResult::Paid)
        };
        Box::pin(async move { result })
    }

    fn last_decline<'a>(
        &'a self,
        invoice_id: &'a str,
        _: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<Declined>, ProcessorError>> {
        self.call();
        let declined = self.declines.get(invoice_id).cloned();
        Box::pin(async move { Ok(declined) })
    }

    fn customer<'a>(
        &'a self,
        customer_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<CustomerFacts>, ProcessorError>> {
        self.call();
        let facts = self.customers.get(customer_id).cloned();
        Box::pin(async move { Ok(facts) })
    }

    fn card_holder<'a>(
        &'a self,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Option<CardHolder>, ProcessorError>> {
        self.call();
        Box::pin(async { Ok(None) })
    }

    fn invoice_page<'a>(
        &'a self,
        invoice_id: &'a str,
    ) -> BoxFuture<'a, Result<Option<InvoicePage>, ProcessorError>> {
        self.call();
        let page = InvoicePage {
            status: if self.paid(invoice_id) {
                "paid"
            } else {
                "open"
            }
            .to_owned(),
            hosted_invoice_url: Some(format!("https://invoice.stripe.com/i/demo_{invoice_id}")),
        };
        Box::pin(async move { Ok(Some(page)) })
    }

    fn portal_session<'a>(
        &'a self,
        customer_id: &'a str,
    ) -> BoxFuture<'a, Result<String, ProcessorError>> {
        self.call();
        let url = format!("https://billing.stripe.com/p/session/demo_{customer_id}");
        Box::pin(async move { Ok(url) })
    }

    fn end<'a>(&'a self, _: &'a EndOrder) -> BoxFuture<'a, EndResult> {
        self.call();
        Box::pin(async { EndResult::Done { already: false } })
    }

    fn resume<'a>(&'a self, _: &'a str, _: &'a str) -> BoxFuture<'a, EndResult> {
        self.call();
        Box::pin(async { EndResult::Done { already: false } })
    }

    fn disputed_charge<'a>(
        &'a self,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Option<DisputedCharge>, ProcessorError>> {
        self.call();
        Box::pin(async { Ok(None) })
    }
}
