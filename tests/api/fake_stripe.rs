//! A fake Stripe API, the one fake in the suite: recoup reaches it through async-stripe with
//! `STRIPE_API_BASE`, exactly as it reaches Stripe.
//!
//! It answers the calls recoup makes — list the account's events and its invoices (filtered and
//! paged as Stripe does), read an invoice (with its payments when asked), pay it or mark it
//! uncollectible, read a payment intent, a customer or a disputed charge, open a billing
//! portal session, and read, pause, resume, cancel at period end or cancel a subscription — with
//! Stripe's own example objects (`fixtures/stripe/`, from Stripe's OpenAPI fixtures) filled in with
//! the fake's own state. Like Stripe, it keeps the answer to every executed call that changes
//! something under its `Idempotency-Key`, replays it for a repeat of the key and refuses the key for
//! a different request; injected faults (500, 429) are answered before anything executes and are
//! not kept (list calls have faults of their own, [`FakeStripe::fail_next_lists`]). A chaos run
//! turns on faults drawn at random ([`FakeStripe::random_faults`]) under the same rule. Every
//! request (with its body) and every charge it made is recorded for the test to check.
//!
//! It runs on a thread and runtime of its own, so it keeps answering whatever the test's runtime is
//! doing, and stops when dropped.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use tokio::sync::oneshot;

/// A decline as a card network and Stripe report it.
#[derive(Debug, Clone)]
pub struct Decline {
    pub code: &'static str,
    pub decline_code: Option<&'static str>,
    pub advice_code: Option<&'static str>,
    pub network_advice_code: Option<&'static str>,
    /// The network's own response code (Visa's decides the decline's category).
    pub network_decline_code: Option<&'static str>,
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
            network_decline_code: None,
            brand: "visa",
            fingerprint: "Xt5EWLLDS7FJjR1c",
        }
    }

    /// A Mastercard declined with `decline_code` and merchant advice `advice`.
    pub fn mastercard(decline_code: &'static str, advice: Option<&'static str>) -> Self {
        Self {
            network_advice_code: advice,
            brand: "mastercard",
            fingerprint: "Mc9TqW2xLp7RkV4s",
            ..Self::visa(decline_code)
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
            "network_decline_code": self.network_decline_code,
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
    /// When it left `open` (unix seconds), shown in `status_transitions`.
    pub status_changed_at: Option<i64>,
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
            status_changed_at: None,
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

impl Customer {
    /// Dana, in Chicago, a customer for 400 days whom Stripe knows by name, address and language,
    /// whose default card expires at the end of `card_expires` (month, year).
    pub fn dana(card_expires: (u32, u32)) -> Self {
        Self {
            metadata: json!({"timezone": "America/Chicago"}),
            country: "US",
            created: crate::helpers::unix_now() - 400 * 86_400,
            name: "Dana Whitfield",
            email: "dana@example.com",
            preferred_locales: &["en-US"],
            card_expires,
        }
    }
}

/// A subscription as the fake knows it; subscriptions not added are unknown (404), as in Stripe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub customer: String,
    /// As Stripe names it: "active", "past_due", "unpaid", "canceled", …
    pub status: &'static str,
    /// The pause of collection, if any: its behavior ("keep_as_draft", "mark_uncollectible",
    /// "void") and when it ends by itself (unix seconds).
    pub pause_collection: Option<(String, Option<i64>)>,
    pub cancel_at_period_end: bool,
}

impl Subscription {
    /// An active subscription, neither paused nor set to end.
    pub fn active(customer: &str) -> Self {
        Self {
            customer: customer.to_owned(),
            status: "active",
            pause_collection: None,
            cancel_at_period_end: false,
        }
    }
}

/// A charge as the fake shows it: a disputed one, whose card recoup reads.
#[derive(Debug, Clone)]
pub struct ChargeRecord {
    pub customer: Option<String>,
    pub brand: &'static str,
    pub fingerprint: &'static str,
}

/// One request the fake received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: &'static str,
    pub path: String,
    /// The query string as sent, if any.
    pub query: Option<String>,
    /// When it arrived.
    pub at: std::time::Instant,
    pub idempotency_key: Option<String>,
    pub stripe_version: Option<String>,
    /// The form-encoded body as sent; empty for a GET.
    pub body: String,
}

/// One pay call the fake executed (not replayed, not faulted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Charge {
    pub invoice_id: String,
    pub idempotency_key: Option<String>,
    pub paid: bool,
}

/// Faults drawn at random for every read, pay and change recoup asks for, as a chaos run wants
/// Stripe: each request is answered with a fault with probability `rate`, the kind drawn evenly
/// from 500, 503, 429, a timeout and (for pays) a stall. The generator is seeded; which request
/// draws which fault still depends on the order requests arrive in.
#[derive(Debug, Clone, Copy)]
pub struct RandomFaults {
    pub seed: u64,
    pub rate: f64,
    /// How long a timeout holds the request before answering 500: longer than recoup waits.
    pub hold: Duration,
    /// How long a stalled pay's answer comes after the charge was made and kept.
    pub stall: Duration,
}

/// A fault drawn for one request.
enum Injected {
    Status(u16),
    Timeout(Duration),
    Stall(Duration),
}

#[derive(Default)]
struct Ledger {
    invoices: HashMap<String, Invoice>,
    customers: HashMap<String, Customer>,
    subscriptions: HashMap<String, Subscription>,
    /// When the fake canceled each subscription (unix seconds), shown as its `canceled_at`.
    cancellations: HashMap<String, i64>,
    charge_records: HashMap<String, ChargeRecord>,
    pay_faults: VecDeque<u16>,
    intent_faults: VecDeque<u16>,
    mutation_faults: VecDeque<u16>,
    /// Each executed answer under its `Idempotency-Key`, with the request it answered: a repeat of
    /// the key must be the same request to be replayed.
    answers: HashMap<String, (Request, StatusCode, Value)>,
    requests: Vec<Request>,
    charges: Vec<Charge>,
    stall: Option<Duration>,
    /// Every event the account has, as Stripe's events API would list them.
    events: Vec<Value>,
    /// Statuses the next event and invoice list calls answer with before listing anything (0:
    /// answer as usual).
    list_faults: VecDeque<u16>,
    /// Whether portal sessions on a flow are refused, as for a portal configuration without it.
    no_portal_flows: bool,
    portal_faults: VecDeque<u16>,
    random: Option<(RandomFaults, ChaCha8Rng)>,
    /// The random faults answered so far, by kind.
    injected: BTreeMap<&'static str, u64>,
}

impl Ledger {
    /// This request's random fault, if one is drawn; a stall only where the caller can answer late.
    fn draw(&mut self, stall_allowed: bool) -> Option<Injected> {
        let (faults, rng) = self.random.as_mut()?;
        if !rng.random_bool(faults.rate) {
            return None;
        }
        let kinds = if stall_allowed { 5 } else { 4 };
        let (name, injected) = match rng.random_range(0..kinds) {
            0 => ("500", Injected::Status(500)),
            1 => ("503", Injected::Status(503)),
            2 => ("429", Injected::Status(429)),
            3 => ("timeout", Injected::Timeout(faults.hold)),
            _ => ("stall", Injected::Stall(faults.stall)),
        };
        *self.injected.entry(name).or_default() += 1;
        Some(injected)
    }
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
            .route("/v1/events", get(list_events))
            .route("/v1/invoices", get(list_invoices))
            .route("/v1/invoices/{id}", get(read_invoice))
            .route("/v1/invoices/{id}/pay", post(pay_invoice))
            .route(
                "/v1/invoices/{id}/mark_uncollectible",
                post(mark_uncollectible),
            )
            .route("/v1/payment_intents/{id}", get(read_payment_intent))
            .route("/v1/customers/{id}", get(read_customer))
            .route(
                "/v1/subscriptions/{id}",
                get(read_subscription)
                    .post(update_subscription)
                    .delete(cancel_subscription),
            )
            .route("/v1/charges/{id}", get(read_charge))
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

    /// Adds (or replaces) a subscription, not canceled by the fake.
    pub fn add_subscription(&self, id: &str, subscription: Subscription) {
        let mut ledger = self.ledger.lock().unwrap();
        ledger.cancellations.remove(id);
        ledger.subscriptions.insert(id.to_owned(), subscription);
    }

    /// The subscription as it is now, after whatever recoup asked of it.
    pub fn subscription(&self, id: &str) -> Option<Subscription> {
        self.ledger.lock().unwrap().subscriptions.get(id).cloned()
    }

    pub fn add_charge(&self, id: &str, charge: ChargeRecord) {
        self.ledger
            .lock()
            .unwrap()
            .charge_records
            .insert(id.to_owned(), charge);
    }

    /// Changes an invoice's status behind recoup's back (paid by the customer between a decision
    /// and its call, say); an invoice not added yet is added as an open one first.
    pub fn set_invoice_status(&self, id: &str, status: &'static str) {
        let mut ledger = self.ledger.lock().unwrap();
        let mut invoice = known(&mut ledger, id);
        invoice.status = status;
        invoice.status_changed_at = Some(jiff::Timestamp::now().as_second());
        ledger.invoices.insert(id.to_owned(), invoice);
    }

    /// The invoice as it is now, after whatever recoup asked of it.
    pub fn invoice(&self, id: &str) -> Option<Invoice> {
        self.ledger.lock().unwrap().invoices.get(id).cloned()
    }

    /// The next pay calls answer these statuses before anything is executed.
    pub fn fail_next_pays(&self, statuses: &[u16]) {
        self.ledger.lock().unwrap().pay_faults.extend(statuses);
    }

    /// The next subscription updates and cancellations and invoice mark_uncollectible calls answer
    /// these statuses before anything is executed.
    pub fn fail_next_mutations(&self, statuses: &[u16]) {
        self.ledger.lock().unwrap().mutation_faults.extend(statuses);
    }

    /// Portal sessions asking for a flow (`flow_data[type]=…`) are refused as Stripe refuses them
    /// when the portal's configuration does not offer it.
    pub fn refuse_portal_flows(&self) {
        self.ledger.lock().unwrap().no_portal_flows = true;
    }

    /// The next portal session calls answer these statuses.
    pub fn fail_next_portals(&self, statuses: &[u16]) {
        self.ledger.lock().unwrap().portal_faults.extend(statuses);
    }

    /// The billing portal sessions asked for, executed or not.
    pub fn portal_requests(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == "/v1/billing_portal/sessions")
            .collect()
    }

    /// The next payment intent reads answer these statuses.
    pub fn fail_next_payment_intent_reads(&self, statuses: &[u16]) {
        self.ledger.lock().unwrap().intent_faults.extend(statuses);
    }

    /// Pay calls are executed and kept, but answered only after `stall` (a worker can die waiting).
    pub fn stall_pays(&self, stall: Option<Duration>) {
        self.ledger.lock().unwrap().stall = stall;
    }

    /// Turns faults drawn at random on (or off, with `None`) for every read, pay and change.
    pub fn random_faults(&self, faults: Option<RandomFaults>) {
        self.ledger.lock().unwrap().random = faults.map(|f| (f, ChaCha8Rng::seed_from_u64(f.seed)));
    }

    /// How many random faults were answered, by kind (`500`, `503`, `429`, `timeout`, `stall`).
    pub fn injected(&self) -> BTreeMap<&'static str, u64> {
        self.ledger.lock().unwrap().injected.clone()
    }

    pub fn requests(&self) -> Vec<Request> {
        self.ledger.lock().unwrap().requests.clone()
    }

    /// Adds an event (a whole Stripe event, as its webhook would carry it) to the account's events,
    /// which `GET /v1/events` lists.
    pub fn add_event(&self, event: &[u8]) {
        let event = serde_json::from_slice(event).unwrap();
        self.ledger.lock().unwrap().events.push(event);
    }

    /// The next list calls (events or invoices) answer these statuses before listing anything, in
    /// order; a 0 answers that call as usual.
    pub fn fail_next_lists(&self, statuses: &[u16]) {
        self.ledger.lock().unwrap().list_faults.extend(statuses);
    }

    /// The list calls received at `path` (`/v1/events`, `/v1/invoices`), answered or not, in order.
    pub fn list_requests(&self, path: &str) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.path == path)
            .collect()
    }

    /// The requests that ask for a change (every method but GET), executed or not, in order.
    pub fn mutations(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.method != "GET")
            .collect()
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
    // Read and parsed once per object type: a chaos run answers hundreds of thousands of calls,
    // and parsing Stripe's example invoice for each held the ledger's lock for most of the run.
    static TEMPLATES: OnceLock<Mutex<HashMap<String, Value>>> = OnceLock::new();
    let mut templates = TEMPLATES.get_or_init(Mutex::default).lock().unwrap();
    templates
        .entry(name.to_owned())
        .or_insert_with(|| {
            let path = format!("{}/fixtures/stripe/{name}.json", env!("CARGO_MANIFEST_DIR"));
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
        })
        .clone()
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

/// Answers this request's random fault, if one is drawn ([`FakeStripe::random_faults`]): a status
/// at once, a timeout after holding the request past recoup's patience — neither executes anything
/// nor is kept under the key. A stall (pays only) is handed back for the caller to answer late.
async fn random_fault(ledger: &Shared, stall_allowed: bool) -> Result<Option<Duration>, Response> {
    let drawn = ledger.lock().unwrap().draw(stall_allowed);
    match drawn {
        None => Ok(None),
        Some(Injected::Status(status)) => Err(fault(status)),
        Some(Injected::Timeout(hold)) => {
            tokio::time::sleep(hold).await;
            Err(fault(500))
        }
        Some(Injected::Stall(stall)) => Ok(Some(stall)),
    }
}

fn stripe_error(status: StatusCode, kind: &str, code: &str, message: &str) -> Response {
    let body = json!({"error": {"type": kind, "code": code, "message": message}});
    (status, axum::Json(body)).into_response()
}

/// Stripe's 404 for an object it does not have.
fn missing(object: &str, id: &str) -> (StatusCode, Value) {
    let message = format!("No such {object}: '{id}'");
    let body = json!({"error": {"type": "invalid_request_error", "code": "resource_missing", "message": message}});
    (StatusCode::NOT_FOUND, body)
}

/// The (first) value of `name` in a form-encoded body.
fn form_value(body: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(body.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// Records the request, and hands it back for its `Idempotency-Key` to be checked.
fn note(
    ledger: &Shared,
    method: &'static str,
    path: String,
    headers: &HeaderMap,
    body: String,
) -> Request {
    note_query(ledger, method, path, None, headers, body)
}

/// [`note`], with the query string.
fn note_query(
    ledger: &Shared,
    method: &'static str,
    path: String,
    query: Option<String>,
    headers: &HeaderMap,
    body: String,
) -> Request {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let request = Request {
        method,
        path,
        query,
        at: std::time::Instant::now(),
        idempotency_key: header("idempotency-key"),
        stripe_version: header("stripe-version"),
        body,
    };
    ledger.lock().unwrap().requests.push(request.clone());
    request
}

/// Stripe's answer to a repeat of a key it keeps an answer under: that answer again for the same
/// request, a refusal for a different one (another method, path or body), which it does not execute.
fn replay(ledger: &Ledger, request: &Request) -> Option<Response> {
    let (first, status, body) = ledger.answers.get(request.idempotency_key.as_ref()?)?;
    if (first.method, &first.path, &first.body) != (request.method, &request.path, &request.body) {
        let message = "Keys for idempotent requests can only be used with the same parameters they were first used with.";
        let body = json!({"error": {"type": "idempotency_error", "message": message}});
        return Some((StatusCode::BAD_REQUEST, axum::Json(body)).into_response());
    }
    Some((*status, axum::Json(body.clone())).into_response())
}

/// Keeps an executed answer under the request's `Idempotency-Key`, if it has one.
fn keep(ledger: &mut Ledger, request: Request, status: StatusCode, body: &Value) {
    if let Some(key) = request.idempotency_key.clone() {
        ledger.answers.insert(key, (request, status, body.clone()));
    }
}

/// Answers a subscription or mark_uncollectible call as Stripe does: a repeated key is replayed
/// (or refused), an injected fault is answered before anything executes, and whatever `execute`
/// answers (a refusal too) is kept under the key.
fn mutate(
    ledger: &Shared,
    request: Request,
    execute: impl FnOnce(&mut Ledger) -> (StatusCode, Value),
) -> Response {
    let mut ledger = ledger.lock().unwrap();
    if let Some(answer) = replay(&ledger, &request) {
        return answer;
    }
    if let Some(status) = ledger.mutation_faults.pop_front() {
        return fault(status);
    }
    let (status, body) = execute(&mut ledger);
    keep(&mut ledger, request, status, &body);
    (status, axum::Json(body)).into_response()
}

/// The invoice as Stripe shows it; an invoice the test did not set up is an open one that pays.
fn invoice_json(id: &str, invoice: &Invoice, with_payments: bool) -> Value {
    let mut json = template("invoice");
    json["id"] = json!(id);
    json["hosted_invoice_url"] = json!(format!("https://invoice.stripe.com/i/acct_test/{id}"));
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
    let transition = match invoice.status {
        "paid" => Some("paid_at"),
        "void" => Some("voided_at"),
        "uncollectible" => Some("marked_uncollectible_at"),
        _ => None,
    };
    if let (Some(field), Some(at)) = (transition, invoice.status_changed_at) {
        json["status_transitions"][field] = json!(at);
    }
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
            status_changed_at: None,
        })
        .clone()
}

async fn read_invoice(
    State(ledger): State<Shared>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    note(
        &ledger,
        "GET",
        format!("/v1/invoices/{id}"),
        &headers,
        String::new(),
    );
    if let Err(answer) = random_fault(&ledger, false).await {
        return answer;
    }
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
        String::new(),
    );
    if let Err(answer) = random_fault(&ledger, false).await {
        return answer;
    }
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
    note(
        &ledger,
        "GET",
        format!("/v1/customers/{id}"),
        &headers,
        String::new(),
    );
    if let Err(answer) = random_fault(&ledger, false).await {
        return answer;
    }
    let ledger = ledger.lock().unwrap();
    let Some(customer) = ledger.customers.get(&id).cloned() else {
        let (status, body) = missing("customer", &id);
        return (status, axum::Json(body)).into_response();
    };
    let mut json = template("customer");
    json["id"] = json!(id);
    json["metadata"] = customer.metadata;
    json["address"]["country"] = json!(customer.country);
    json["created"] = json!(customer.created);
    json["name"] = json!(customer.name);
    json["email"] = json!(customer.email);
    json["preferred_locales"] = json!(customer.preferred_locales);
    if query
        .as_ref()
        .is_some_and(|q| q.contains("default_payment_method"))
    {
        let mut method = template("payment_method");
        method["id"] = json!(format!("pm_for_{id}"));
        method["customer"] = json!(id);
        method["card"]["exp_month"] = json!(customer.card_expires.0);
        method["card"]["exp_year"] = json!(customer.card_expires.1);
        json["invoice_settings"]["default_payment_method"] = method;
    }
    if query.is_some_and(|q| q.contains("subscriptions")) {
        // Stripe's list of the customer's current subscriptions: the canceled ones are not in it.
        let current: Vec<Value> = ledger
            .subscriptions
            .iter()
            .filter(|(_, s)| s.customer == id && s.status != "canceled")
            .map(|(sub_id, s)| subscription_json(sub_id, s, None))
            .collect();
        json["subscriptions"] = json!({
            "object": "list",
            "data": current,
            "has_more": false,
            "url": format!("/v1/customers/{id}/subscriptions"),
        });
    }
    axum::Json(json).into_response()
}

async fn open_portal(State(ledger): State<Shared>, headers: HeaderMap, body: String) -> Response {
    let customer = form_value(&body, "customer").unwrap_or_default();
    let flow = form_value(&body, "flow_data[type]");
    note(
        &ledger,
        "POST",
        "/v1/billing_portal/sessions".to_owned(),
        &headers,
        body,
    );
    if let Err(answer) = random_fault(&ledger, false).await {
        return answer;
    }
    {
        let mut ledger = ledger.lock().unwrap();
        if let Some(status) = ledger.portal_faults.pop_front() {
            return fault(status);
        }
        if flow.is_some() && ledger.no_portal_flows {
            return stripe_error(
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "parameter_invalid_empty",
                "This flow is not enabled in your customer portal configuration.",
            );
        }
    }
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
    body: String,
) -> Response {
    let path = format!("/v1/invoices/{id}/pay");
    let request = note(&ledger, "POST", path, &headers, body);
    let stalled = match random_fault(&ledger, true).await {
        Ok(stalled) => stalled,
        Err(answer) => return answer,
    };
    let key = request.idempotency_key.clone();
    let (status, body, stall) = {
        let mut ledger = ledger.lock().unwrap();
        if let Some(answer) = replay(&ledger, &request) {
            return answer;
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
                    invoice.status_changed_at = Some(jiff::Timestamp::now().as_second());
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
        keep(&mut ledger, request, status, &body);
        (status, body, stalled.or(ledger.stall))
    };
    if let Some(stall) = stall {
        tokio::time::sleep(stall).await;
    }
    (status, axum::Json(body)).into_response()
}

async fn mark_uncollectible(
    State(ledger): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let path = format!("/v1/invoices/{id}/mark_uncollectible");
    let request = note(&ledger, "POST", path, &headers, body);
    if let Err(answer) = random_fault(&ledger, false).await {
        return answer;
    }
    mutate(&ledger, request, |ledger| {
        let mut invoice = known(ledger, &id);
        if invoice.status != "open" {
            let message = format!(
                "Invoice {id} is {}; only open invoices can be marked uncollectible.",
                invoice.status
            );
            let body = json!({"error": {"type": "invalid_request_error", "code": "invoice_not_open", "message": message}});
            return (StatusCode::BAD_REQUEST, body);
        }
        invoice.status = "uncollectible";
        invoice.status_changed_at = Some(jiff::Timestamp::now().as_second());
        let json = invoice_json(&id, &invoice, false);
        ledger.invoices.insert(id.clone(), invoice);
        (StatusCode::OK, json)
    })
}

/// The subscription as Stripe shows it; `canceled_at` is when the fake canceled it (a subscription
/// added canceled keeps the example's times).
fn subscription_json(id: &str, subscription: &Subscription, canceled_at: Option<i64>) -> Value {
    let mut json = template("subscription");
    json["id"] = json!(id);
    json["customer"] = json!(subscription.customer);
    json["status"] = json!(subscription.status);
    json["items"]["data"][0]["subscription"] = json!(id);
    json["items"]["url"] = json!(format!("/v1/subscription_items?subscription={id}"));
    json["pause_collection"] = match &subscription.pause_collection {
        Some((behavior, resumes_at)) => json!({"behavior": behavior, "resumes_at": resumes_at}),
        None => Value::Null,
    };
    json["cancel_at_period_end"] = json!(subscription.cancel_at_period_end);
    // Set to end with the period, it shows when that is.
    json["cancel_at"] = if subscription.cancel_at_period_end {
        json["items"]["data"][0]["current_period_end"].clone()
    } else {
        Value::Null
    };
    if subscription.status != "canceled" {
        json["canceled_at"] = Value::Null;
        json["ended_at"] = Value::Null;
    } else if let Some(at) = canceled_at {
        json["canceled_at"] = json!(at);
        json["ended_at"] = json!(at);
    }
    json
}

async fn read_subscription(
    State(ledger): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/v1/subscriptions/{id}");
    note(&ledger, "GET", path, &headers, String::new());
    if let Err(answer) = random_fault(&ledger, false).await {
        return answer;
    }
    let ledger = ledger.lock().unwrap();
    let (status, body) = match ledger.subscriptions.get(&id) {
        Some(subscription) => {
            let canceled_at = ledger.cancellations.get(&id).copied();
            (
                StatusCode::OK,
                subscription_json(&id, subscription, canceled_at),
            )
        }
        None => missing("subscription", &id),
    };
    (status, axum::Json(body)).into_response()
}

/// Pauses collection (`pause_collection[behavior]`, optionally `pause_collection[resumes_at]`),
/// resumes it (an empty `pause_collection`, as Stripe takes it), and sets `cancel_at_period_end`;
/// other parameters are ignored.
async fn update_subscription(
    State(ledger): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let path = format!("/v1/subscriptions/{id}");
    let request = note(&ledger, "POST", path, &headers, body.clone());
    if let Err(answer) = random_fault(&ledger, false).await {
        return answer;
    }
    mutate(&ledger, request, |ledger| {
        let Some(subscription) = ledger.subscriptions.get_mut(&id) else {
            return missing("subscription", &id);
        };
        if form_value(&body, "pause_collection").is_some_and(|v| v.is_empty()) {
            subscription.pause_collection = None;
        }
        if let Some(behavior) = form_value(&body, "pause_collection[behavior]") {
            let resumes_at =
                form_value(&body, "pause_collection[resumes_at]").and_then(|t| t.parse().ok());
            subscription.pause_collection = Some((behavior, resumes_at));
        }
        if let Some(flag) = form_value(&body, "cancel_at_period_end") {
            subscription.cancel_at_period_end = flag == "true";
        }
        let canceled_at = ledger.cancellations.get(&id).copied();
        (
            StatusCode::OK,
            subscription_json(&id, subscription, canceled_at),
        )
    })
}

/// Cancels at once; Stripe refuses to cancel a subscription twice.
async fn cancel_subscription(
    State(ledger): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let path = format!("/v1/subscriptions/{id}");
    let request = note(&ledger, "DELETE", path, &headers, body);
    if let Err(answer) = random_fault(&ledger, false).await {
        return answer;
    }
    mutate(&ledger, request, |ledger| {
        let Some(subscription) = ledger.subscriptions.get_mut(&id) else {
            return missing("subscription", &id);
        };
        if subscription.status == "canceled" {
            let message = format!("Subscription {id} has already been canceled.");
            let body = json!({"error": {"type": "invalid_request_error", "message": message}});
            return (StatusCode::BAD_REQUEST, body);
        }
        subscription.status = "canceled";
        let now = jiff::Timestamp::now().as_second();
        ledger.cancellations.insert(id.clone(), now);
        (
            StatusCode::OK,
            subscription_json(&id, subscription, Some(now)),
        )
    })
}

/// A disputed charge, as recoup reads it to learn the card behind a dispute.
async fn read_charge(
    State(ledger): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/v1/charges/{id}");
    note(&ledger, "GET", path, &headers, String::new());
    if let Err(answer) = random_fault(&ledger, false).await {
        return answer;
    }
    let Some(charge) = ledger.lock().unwrap().charge_records.get(&id).cloned() else {
        let (status, body) = missing("charge", &id);
        return (status, axum::Json(body)).into_response();
    };
    let mut json = template("charge");
    json["id"] = json!(id);
    json["customer"] = json!(charge.customer);
    json["disputed"] = json!(true);
    json["payment_method_details"]["card"]["brand"] = json!(charge.brand);
    json["payment_method_details"]["card"]["fingerprint"] = json!(charge.fingerprint);
    json["refunds"]["url"] = json!(format!("/v1/charges/{id}/refunds"));
    axum::Json(json).into_response()
}

/// Every value of `name` in a query string (`types[]` comes once per type).
fn query_values(query: &str, name: &str) -> Vec<String> {
    form_urlencoded::parse(query.as_bytes())
        .filter(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
        .collect()
}

/// A page of `objects` (already in list order) as Stripe pages: up to `limit` (10 by default, 100
/// at most) after the object `starting_after`, with `has_more`.
fn page(objects: Vec<Value>, query: &str, url: &str) -> Response {
    let first = |name: &str| query_values(query, name).into_iter().next();
    let limit = first("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(10)
        .clamp(1, 100);
    let start = match first("starting_after") {
        Some(after) => match objects.iter().position(|o| o["id"] == after.as_str()) {
            Some(at) => at + 1,
            None => {
                return stripe_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request_error",
                    "resource_missing",
                    &format!("No such object: '{after}'"),
                );
            }
        },
        None => 0,
    };
    let data: Vec<Value> = objects.iter().skip(start).take(limit).cloned().collect();
    let has_more = start + data.len() < objects.len();
    axum::Json(json!({"object": "list", "url": url, "has_more": has_more, "data": data}))
        .into_response()
}

/// Stripe's refusal of the request's key, for the keys the fake refuses: a revoked key
/// (`…revoked…`, 401) and a restricted key (`rk_…`, 403, as one without read access to the list).
fn refused_key(headers: &HeaderMap) -> Option<Response> {
    let key = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let masked = format!(
        "{}…{}",
        &key[..key.len().min(8)],
        &key[key.len().saturating_sub(4)..]
    );
    if key.contains("revoked") {
        let message = format!("Invalid API Key provided: {masked}");
        return Some(stripe_error(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            "",
            &message,
        ));
    }
    if key.starts_with("rk_") {
        let message = format!(
            "The provided key '{masked}' does not have the required permissions for this endpoint."
        );
        return Some(stripe_error(
            StatusCode::FORBIDDEN,
            "invalid_request_error",
            "",
            &message,
        ));
    }
    None
}

/// Records a list call and answers what comes before listing: a refused key, an injected fault.
/// Otherwise hands back the ledger to list from.
fn list_call<'a>(
    ledger: &'a Shared,
    path: &str,
    query: &str,
    headers: &HeaderMap,
) -> Result<std::sync::MutexGuard<'a, Ledger>, Box<Response>> {
    let query = Some(query.to_owned());
    note_query(
        ledger,
        "GET",
        path.to_owned(),
        query,
        headers,
        String::new(),
    );
    if let Some(refused) = refused_key(headers) {
        return Err(Box::new(refused));
    }
    let mut ledger = ledger.lock().unwrap();
    match ledger.list_faults.pop_front().filter(|s| *s != 0) {
        Some(status) => Err(Box::new(fault(status))),
        None => Ok(ledger),
    }
}

/// `GET /v1/events`: the account's events, newest first, filtered by `created[gte]` and the
/// repeated `types[]`.
async fn list_events(
    State(ledger): State<Shared>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let query = query.unwrap_or_default();
    let ledger = match list_call(&ledger, "/v1/events", &query, &headers) {
        Ok(ledger) => ledger,
        Err(refused) => return *refused,
    };
    let since = query_values(&query, "created[gte]")
        .first()
        .and_then(|s| s.parse::<i64>().ok())
        .unwrap_or(i64::MIN);
    let types = query_values(&query, "types[]");
    let mut events: Vec<(usize, Value)> = ledger
        .events
        .iter()
        .cloned()
        .enumerate()
        .filter(|(_, e)| e["created"].as_i64().unwrap_or(0) >= since)
        .filter(|(_, e)| types.is_empty() || types.iter().any(|t| e["type"] == t.as_str()))
        .collect();
    // Newest first; of two created in the same second, the one added later first.
    events.sort_by_key(|(n, e)| std::cmp::Reverse((e["created"].as_i64().unwrap_or(0), *n)));
    page(
        events.into_iter().map(|(_, e)| e).collect(),
        &query,
        "/v1/events",
    )
}

/// `GET /v1/invoices`: the invoices the fake knows, filtered by `status`, `collection_method` and
/// `customer`, by id descending (the fake keeps no creation times).
async fn list_invoices(
    State(ledger): State<Shared>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let query = query.unwrap_or_default();
    let ledger = match list_call(&ledger, "/v1/invoices", &query, &headers) {
        Ok(ledger) => ledger,
        Err(refused) => return *refused,
    };
    let status = query_values(&query, "status").into_iter().next();
    let method = query_values(&query, "collection_method").into_iter().next();
    let customer = query_values(&query, "customer").into_iter().next();
    // Filtered before they are rendered: a customer's paid invoices are asked for at every case
    // opening, and rendering every invoice of a chaos run's thousands for each made it quadratic.
    let mut ids: Vec<&String> = ledger
        .invoices
        .iter()
        .filter(|(_, i)| status.as_ref().is_none_or(|s| i.status == s.as_str()))
        .filter(|(_, i)| customer.as_ref().is_none_or(|c| i.customer == *c))
        .map(|(id, _)| id)
        .collect();
    ids.sort_by(|a, b| b.cmp(a));
    let invoices = ids
        .into_iter()
        .map(|id| invoice_json(id, &ledger.invoices[id], false))
        .filter(|i| {
            method
                .as_ref()
                .is_none_or(|m| i["collection_method"] == m.as_str())
        })
        .collect();
    page(invoices, &query, "/v1/invoices")
}
