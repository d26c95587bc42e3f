//! A fake Stripe API, the one fake in the suite: recoup reaches it through async-stripe with
//! `STRIPE_API_BASE`, exactly as it reaches Stripe.
//!
//! It answers the calls recoup makes — read an invoice (with its payments when asked), pay it, read
//! a payment intent, read a customer, open a billing portal session — with Stripe's own example objects (`fixtures/stripe/`, from Stripe's OpenAPI
//! fixtures) filled in with each invoice's state. Like Stripe, it keeps the answer to every
//! executed pay call under its `Idempotency-Key` and replays it for a repeat of the key; injected
//! faults (500, 429) are answered before anything executes and are not kept. Every request and every
//! charge it made is recorded for the test to check.
//!
//! It runs on a thread and runtime of its own, so it keeps answering whatever the test's runtime is
//! doing, and stops when dropped.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// A decline as a card network and Stripe report it.
#[derive(Debug, Clone)]
pub struct Decline {
    pub code: &'static str,
    pub decline_code: Option<&'static str>,
    pub advice_code: Option<&'static str>,
    pub network_advice_code: Option<&'static str>,
    pub brand: &'static str,
    pub fingerprint: &'static str,
}

impl Decline {
    /// A card declined with `decline_code`, no advice, on a Visa card.
    pub fn visa(decline_code: &'static str) -> Self {
        Self {
            code: "card_declined",
            decline_code: Some(decline_code),
            advice_code: None,
            network_advice_code: None,
            brand: "visa",
            fingerprint: "Xt5EWLLDS7FJjR1c",
        }
    }

    fn error(&self, message: &str) -> Value {
        let mut payment_method = template("payment_method");
        payment_method["card"]["brand"] = json!(self.brand);
        payment_method["card"]["display_brand"] = json!(self.brand);
        payment_method["card"]["fingerprint"] = json!(self.fingerprint);
        json!({
            "type": "card_error",
            "code": self.code,
            "decline_code": self.decline_code,
            "advice_code": self.advice_code,
            "network_advice_code": self.network_advice_code,
            "message": message,
            "payment_method": payment_method,
        })
    }
}

/// What paying an invoice does.
#[derive(Debug, Clone)]
pub enum Outcome {
    Pay,
    Decline(Decline),
}

/// An invoice as the fake knows it.
#[derive(Debug, Clone)]
pub struct Invoice {
    pub status: &'static str,
    pub customer: String,
    pub amount_due: i64,
    pub attempt_count: u32,
    /// The decline of Stripe's own latest failed attempt, shown on its payment intent.
    pub last_decline: Option<Decline>,
    /// What the next pay calls do, in order; once they run out, paying succeeds.
    pub outcomes: VecDeque<Outcome>,
}

impl Invoice {
    /// An open invoice whose first (Stripe's) attempt failed with `decline`.
    pub fn failed(customer: &str, decline: Decline) -> Self {
        Self {
            status: "open",
            customer: customer.to_owned(),
            amount_due: 4900,
            attempt_count: 1,
            last_decline: Some(decline),
            outcomes: VecDeque::new(),
        }
    }
}

/// A customer as the fake shows it; customers not added are unknown (404), as in Stripe.
#[derive(Debug, Clone)]
pub struct Customer {
    pub metadata: Value,
    pub country: &'static str,
    /// Unix seconds.
    pub created: i64,
    pub name: &'static str,
    pub email: &'static str,
    pub preferred_locales: &'static [&'static str],
    /// The default payment method's card expiry (month, year), shown when asked to expand it.
    pub card_expires: (u32, u32),
}

/// One request the fake received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: &'static str,
    pub path: String,
    pub idempotency_key: Option<String>,
    pub stripe_version: Option<String>,
}

/// One pay call the fake executed (not replayed, not faulted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    pub invoice_id: String,
    pub idempotency_key: Option<String>,
    pub paid: bool,
}

#[derive(Default)]
struct Ledger {
    invoices: HashMap<String, Invoice>,
    customers: HashMap<String, Customer>,
    pay_faults: VecDeque<u16>,
    intent_faults: VecDeque<u16>,
    answers: HashMap<String, (StatusCode, Value)>,
    requests: Vec<Request>,
    charges: Vec<Charge>,
    stall: Option<Duration>,
}

type Shared = Arc<Mutex<Ledger>>;

pub struct FakeStripe {
    pub addr: SocketAddr,
    ledger: Shared,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FakeStripe {
    pub fn start() -> Self {
        let ledger = Shared::default();
        let app = Router::new()
            .route("/v1/invoices/{id}", get(read_invoice))
            .route("/v1/invoices/{id}/pay", post(pay_invoice))
            .route("/v1/payment_intents/{id}", get(read_payment_intent))
            .route("/v1/customers/{id}", get(read_customer))
            .route("/v1/billing_portal/sessions", post(open_portal))
            .fallback(|| async {
                stripe_error(
                    StatusCode::NOT_FOUND,
                    "invalid_request_error",
                    "resource_missing",
                    "Unrecognized request URL.",
                )
            })
            .with_state(ledger.clone());
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                axum::serve(listener, app)
                    .with_graceful_shutdown(async {
                        let _ = stopped.await;
                    })
                    .await
                    .unwrap();
            });
            // A stalled answer must not keep the thread (and the test) alive.
            runtime.shutdown_timeout(Duration::from_millis(100));
        });
        Self {
            addr,
            ledger,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// The environment that points recoup at this fake.
    pub fn env(&self) -> [(&'static str, String); 1] {
        [("STRIPE_API_BASE", format!("http://{}", self.addr))]
    }

    pub fn add_invoice(&self, id: &str, invoice: Invoice) {
        self.ledger
            .lock()
            .unwrap()
            .invoices
            .insert(id.to_owned(), invoice);
    }

    pub fn add_customer(&self, id: &str, customer: Customer) {
        self.ledger
            .lock()
            .unwrap()
            .customers
            .insert(id.to_owned(), customer);
    }

    /// The next pay calls answer these statuses before anything is executed.
    pub fn fail_next_pays(&self, statuses: &[u16]) {
        self.ledger.lock().unwrap().pay_faults.extend(statuses);
    }

    /// The next payment intent reads answer these statuses.
    pub fn fail_next_payment_intent_reads(&self, statuses: &[u16]) {
        self.ledger.lock().unwrap().intent_faults.extend(statuses);
    }

    /// Pay calls are executed and kept, but answered only after `stall` (a worker can die waiting).
    pub fn stall_pays(&self, stall: Option<Duration>) {
        self.ledger.lock().unwrap().stall = stall;
    }

    pub fn requests(&self) -> Vec<Request> {
        self.ledger.lock().unwrap().requests.clone()
    }

    /// The pay calls received for `invoice_id`, executed or not.
    pub fn pay_requests(&self, invoice_id: &str) -> Vec<Request> {
        let path = format!("/v1/invoices/{invoice_id}/pay");
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    pub fn charges(&self) -> Vec<Charge> {
        self.ledger.lock().unwrap().charges.clone()
    }
}

impl Drop for FakeStripe {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn template(name: &str) -> Value {
    let path = format!("{}/fixtures/stripe/{name}.json", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Stripe's answer to a request it could not take: rate limited, or failing on its side.
fn fault(status: u16) -> Response {
    let (kind, message) = if status == 429 {
        (
            "invalid_request_error",
            "Too many requests in a period of time.",
        )
    } else {
        ("api_error", "An unknown error occurred on Stripe's end.")
    };
    stripe_error(StatusCode::from_u16(status).unwrap(), kind, "", message)
}

fn stripe_error(status: StatusCode, kind: &str, code: &str, message: &str) -> Response {
    let body = json!({"error": {"type": kind, "code": code, "message": message}});
    (status, axum::Json(body)).into_response()
}

fn note(ledger: &Shared, method: &'static str, path: String, headers: &HeaderMap) {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    ledger.lock().unwrap().requests.push(Request {
        method,
        path,
        idempotency_key: header("idempotency-key"),
        stripe_version: header("stripe-version"),
    });
}

/// The invoice as Stripe shows it; an invoice the test did not set up is an open one that pays.
fn invoice_json(id: &str, invoice: &Invoice, with_payments: bool) -> Value {
    let mut json = template("invoice");
    json["id"] = json!(id);
    json["status"] = json!(invoice.status);
    json["customer"] = json!(invoice.customer);
    json["amount_due"] = json!(invoice.amount_due);
    json["amount_remaining"] = json!(if invoice.status == "paid" {
        0
    } else {
        invoice.amount_due
    });
    json["amount_paid"] = json!(if invoice.status == "paid" {
        invoice.amount_due
    } else {
        0
    });
    json["attempt_count"] = json!(invoice.attempt_count);
    if with_payments {
        let mut payment = template("invoice_payment");
        payment["invoice"] = json!(id);
        payment["payment"]["payment_intent"] = json!(format!("pi_for_{id}"));
        json["payments"] = json!({
            "object": "list", "data": [payment], "has_more": false,
            "url": format!("/v1/invoice_payments?invoice={id}"),
        });
    }
    json
}

fn known(ledger: &mut Ledger, id: &str) -> Invoice {
    ledger
        .invoices
        .entry(id.to_owned())
        .or_insert_with(|| Invoice {
            status: "open",
            customer: "cus_unknown".to_owned(),
            amount_due: 4900,
            attempt_count: 1,
            last_decline: None,
            outcomes: VecDeque::new(),
        })
        .clone()
}

async fn read_invoice(
    State(ledger): State<Shared>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    note(&ledger, "GET", format!("/v1/invoices/{id}"), &headers);
    let invoice = known(&mut ledger.lock().unwrap(), &id);
    let with_payments = query.is_some_and(|q| q.contains("payments"));
    axum::Json(invoice_json(&id, &invoice, with_payments)).into_response()
}

async fn read_payment_intent(
    State(ledger): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    note(
        &ledger,
        "GET",
        format!("/v1/payment_intents/{id}"),
        &headers,
    );
    if let Some(status) = ledger.lock().unwrap().intent_faults.pop_front() {
        return fault(status);
    }
    // Each invoice's payment intent is `pi_for_<invoice id>`; any other shows no decline.
    let invoice = id
        .strip_prefix("pi_for_")
        .and_then(|invoice_id| ledger.lock().unwrap().invoices.get(invoice_id).cloned());
    let mut json = template("payment_intent");
    json["id"] = json!(id);
    if let Some(invoice) = invoice {
        json["customer"] = json!(invoice.customer);
        json["amount"] = json!(invoice.amount_due);
        json["last_payment_error"] = invoice
            .last_decline
            .as_ref()
            .map_or(Value::Null, |d| d.error("Your card was declined."));
    }
    axum::Json(json).into_response()
}

async fn read_customer(
    State(ledger): State<Shared>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    note(&ledger, "GET", format!("/v1/customers/{id}"), &headers);
    let Some(customer) = ledger.lock().unwrap().customers.get(&id).cloned() else {
        let message = format!("No such customer: '{id}'");
        return stripe_error(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            "resource_missing",
            &message,
        );
    };
    let mut json = template("customer");
    json["id"] = json!(id);
    json["metadata"] = customer.metadata;
    json["address"]["country"] = json!(customer.country);
    json["created"] = json!(customer.created);
    json["name"] = json!(customer.name);
    json["email"] = json!(customer.email);
    json["preferred_locales"] = json!(customer.preferred_locales);
    if query.is_some_and(|q| q.contains("default_payment_method")) {
        let mut method = template("payment_method");
        method["id"] = json!(format!("pm_for_{id}"));
        method["customer"] = json!(id);
        method["card"]["exp_month"] = json!(customer.card_expires.0);
        method["card"]["exp_year"] = json!(customer.card_expires.1);
        json["invoice_settings"]["default_payment_method"] = method;
    }
    axum::Json(json).into_response()
}

async fn open_portal(State(ledger): State<Shared>, headers: HeaderMap, body: String) -> Response {
    note(
        &ledger,
        "POST",
        "/v1/billing_portal/sessions".to_owned(),
        &headers,
    );
    let customer = form_urlencoded::parse(body.as_bytes())
        .find(|(key, _)| key == "customer")
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default();
    let mut json = template("billing_portal_session");
    json["customer"] = json!(customer);
    json["url"] = json!(format!(
        "https://billing.stripe.com/p/session/test_{customer}"
    ));
    axum::Json(json).into_response()
}

async fn pay_invoice(
    State(ledger): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    note(&ledger, "POST", format!("/v1/invoices/{id}/pay"), &headers);
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (status, body, stall) = {
        let mut ledger = ledger.lock().unwrap();
        if let Some((status, body)) = key.as_ref().and_then(|k| ledger.answers.get(k)) {
            return (*status, axum::Json(body.clone())).into_response();
        }
        if let Some(status) = ledger.pay_faults.pop_front() {
            return fault(status);
        }
        let mut invoice = known(&mut ledger, &id);
        let (status, body) = if invoice.status != "open" {
            let message = format!(
                "Invoice {id} is {}; only open invoices can be paid.",
                invoice.status
            );
            let body = json!({"error": {"type": "invalid_request_error", "code": "invoice_not_open", "message": message}});
            (StatusCode::BAD_REQUEST, body)
        } else {
            invoice.attempt_count += 1;
            let outcome = invoice.outcomes.pop_front().unwrap_or(Outcome::Pay);
            let paid = matches!(outcome, Outcome::Pay);
            ledger.charges.push(Charge {
                invoice_id: id.clone(),
                idempotency_key: key.clone(),
                paid,
            });
            match outcome {
                Outcome::Pay => {
                    invoice.status = "paid";
                    (StatusCode::OK, invoice_json(&id, &invoice, false))
                }
                Outcome::Decline(decline) => {
                    let error = decline.error("Your card was declined.");
                    invoice.last_decline = Some(decline);
                    (StatusCode::PAYMENT_REQUIRED, json!({ "error": error }))
                }
            }
        };
        ledger.invoices.insert(id.clone(), invoice);
        if let Some(key) = &key {
            ledger.answers.insert(key.clone(), (status, body.clone()));
        }
        (status, body, ledger.stall)
    };
    if let Some(stall) = stall {
        tokio::time::sleep(stall).await;
    }
    (status, axum::Json(body)).into_response()
}
