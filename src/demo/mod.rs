//! `recoup demo`: the whole product in one process, with nothing to set up.
//!
//! The real receiver listens on a local port, and the real policy (the shipped one) and worker run
//! on the in-memory store with the test clock. Stripe is the one stand-in: [`DemoStripe`] answers the
//! worker's calls in-process with a realistic mix — a decline for insufficient funds that the payday
//! retry collects, an expired card, a stolen card, a payment that needs 3-D Secure. The bundled
//! fixture events are sent to the receiver as signed HTTP requests, exactly as Stripe would; nudges
//! go out on the signed webhook channel to a route of the demo, where the customers read them and
//! some act (open the update link, add a new card, confirm a payment), through the demo's own
//! `/fix/…` route and more signed events. The clock jumps from one
//! due timer to the next, so a month of dunning takes seconds. At the end each invoice's story is
//! printed as `recoup status` tells it, with a summary.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use jiff::{SignedDuration, Timestamp};
use secrecy::SecretString;
use serde_json::Value;
use tokio::sync::oneshot;

mod stripe;

use self::stripe::DemoStripe;
use crate::api::Api;
use crate::cli::output::{out, outln};
use crate::clock::Clock;
use crate::config::{LinkSettings, NotifySettings, Secrets, WorkerSettings};
use crate::links::{self, LinkKeys, Links};
use crate::notify::Notifier;
use crate::notify::templates::format_amount;
use crate::policy::{Card, Case, ChargeResult, Declined, Policy, State as CaseState};
use crate::store::{Cases, MemoryStore};
use crate::webhook::signature::{Verifier, sign};
use crate::webhook::{self, Receiver};
use crate::worker::Worker;

/// The signing secret the demo's "Stripe" and its receiver share.
const SECRET: &str = "whsec_recoup_demo_only";
/// The secret nudges are signed with on their way to the demo's customers.
const NUDGE_SECRET: &str = "whsec_recoup_demo_nudges";
/// The key the demo's update links are signed with (its public URL is its own local port).
const LINK_SECRET: &str = "recoup-demo-only-link-key-0123456789abcdef";
/// The longest the demo follows its invoices on the test clock.
const HORIZON: SignedDuration = SignedDuration::from_hours(60 * 24);

/// One invoice of the demo: who, how much, and what its card does.
struct Story {
    invoice: &'static str,
    customer: &'static str,
    name: &'static str,
    timezone: &'static str,
    /// How long the customer has been with the business.
    months: i64,
    amount: i64,
    /// What the demo shows with it.
    about: &'static str,
    /// The decline of Stripe's own first attempt; `None` for a payment that needs 3-D Secure.
    decline: Option<&'static str>,
    /// What recoup's retries of it come to.
    retries: ChargeResult,
    /// What the customer does on reading a nudge.
    reacts: Reaction,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Reaction {
    Nothing,
    /// Adds a new card (`payment_method.attached`).
    NewCard,
    /// Confirms the payment on the hosted invoice page (`invoice.paid`).
    Confirms,
}

fn stories() -> Vec<Story> {
    let declined = |code: &str| Declined {
        code: Some("card_declined".into()),
        decline_code: Some(code.into()),
        card: Some(Card {
            fingerprint: format!("fp_demo_{code}"),
            brand: "visa".into(),
            funding: None,
            expires_at: None,
        }),
        ..Declined::default()
    };
    vec![
        Story {
            invoice: "in_demo_payday",
            customer: "cus_demo_ana",
            name: "Ana Lima",
            timezone: "America/Chicago",
            months: 8,
            amount: 4_900,
            about: "soft decline (insufficient funds), recovered by the retry after payday",
            decline: Some("insufficient_funds"),
            retries: ChargeResult::Paid,
            reacts: Reaction::Nothing,
        },
        Story {
            invoice: "in_demo_expired",
            customer: "cus_demo_ben",
            name: "Ben Okafor",
            timezone: "Europe/Berlin",
            months: 14,
            amount: 1_900,
            about: "expired card, updated by the customer after the first nudge",
            decline: Some("expired_card"),
            retries: ChargeResult::Paid,
            reacts: Reaction::NewCard,
        },
        Story {
            invoice: "in_demo_stolen",
            customer: "cus_demo_cho",
            name: "Cho Park",
            timezone: "Asia/Seoul",
            months: 30,
            amount: 9_900,
            about: "stolen card on a long-standing account: no retry, nudges, then paused",
            decline: Some("stolen_card"),
            retries: ChargeResult::Declined(declined("stolen_card")),
            reacts: Reaction::Nothing,
        },
        Story {
            invoice: "in_demo_3ds",
            customer: "cus_demo_dev",
            name: "Dev Sharma",
            timezone: "Asia/Kolkata",
            months: 3,
            amount: 2_900,
            about: "3-D Secure needed: the customer confirms the payment from the nudge's link",
            decline: None,
            retries: ChargeResult::Paid,
            reacts: Reaction::Confirms,
        },
    ]
}

/// What the demo came to, for its summary (and its test).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub invoices: usize,
    /// (invoice, final state).
    pub states: Vec<(String, String)>,
    pub recovered: usize,
    pub recovered_amount: i64,
    pub attempts: usize,
    pub nudges: usize,
    pub days: i64,
}

/// Runs the demo and prints it; returns the summary.
pub async fn run() -> anyhow::Result<Summary> {
    let started = Instant::now();
    let store = MemoryStore::new();
    let clock = Clock::new(store.clone(), true);
    let stripe = Arc::new(DemoStripe::new(&stories()));
    let customers = Customers::default();

    // The receiver and the customers' inbox for nudges, on one local port.
    let receiver = Arc::new(Receiver {
        verifier: Verifier::new([SECRET.as_bytes()], 300),
        store: store.clone(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let policy = Policy::shipped();
    let link_keys = LinkKeys::new(&[SecretString::from(LINK_SECRET)]).expect("one key");
    let api = Arc::new(Api {
        store: store.clone(),
        clock: clock.clone(),
        policy: Arc::new(policy.clone()),
    });
    let fix = links::Fix {
        keys: link_keys.clone(),
        processor: stripe.clone(),
        api: api.clone(),
        limits: Default::default(),
    };
    let feedback = links::Feedback {
        keys: link_keys.clone(),
        api,
        limits: Default::default(),
    };
    let routes = webhook::routes(receiver, 1 << 20)
        .merge(links::routes(Some(fix)))
        .merge(links::feedback::routes(Some(feedback)))
        .merge(
            Router::new()
                .route("/demo/nudges", post(read_nudge))
                .with_state(customers.clone()),
        );
    let (stop_server, server_stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, routes)
            .with_graceful_shutdown(async {
                let _ = server_stopped.await;
            })
            .await
    });

    let notify = NotifySettings {
        webhook_url: Some(format!("http://{addr}/demo/nudges")),
        email_from: Some("Acme <billing@acme.example>".into()),
        ..NotifySettings::default()
    };
    let secrets = Secrets {
        nudge_webhook_secret: Some(SecretString::from(NUDGE_SECRET)),
        ..Secrets::default()
    };
    let notifier = Notifier::new(&notify, &secrets)
        .map_err(|e| anyhow::anyhow!("the demo's nudge channel: {e}"))?;
    let worker = Worker::new(
        store.clone(),
        policy.clone(),
        stripe.clone(),
        Arc::new(notifier),
        clock.clone(),
        WorkerSettings::default(),
    )
    .with_links(Links::new(
        link_keys,
        &format!("http://{addr}"),
        LinkSettings::default().lifetime(),
    ));
    let (stop_worker, worker_stopped) = oneshot::channel::<()>();
    let working = tokio::spawn(worker.run(async {
        let _ = worker_stopped.await;
    }));

    outln!(
        "recoup demo: the receiver on http://{addr}, the shipped policy, the worker on an \
         in-memory store,\na built-in stand-in for Stripe, and the test clock. Nothing leaves this \
         machine.\n"
    );
    let http = reqwest::Client::new();
    let deliver = |event: Value| {
        let http = http.clone();
        async move {
            let body = serde_json::to_vec(&event)?;
            let now = jiff::Timestamp::now().as_second();
            let signature = sign(SECRET.as_bytes(), now, &body);
            let answer = http
                .post(format!("http://{addr}/webhooks/stripe"))
                .header("stripe-signature", signature)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await?;
            anyhow::ensure!(
                answer.status().is_success(),
                "the receiver answered {}",
                answer.status()
            );
            anyhow::Ok(())
        }
    };

    let start = clock.now().await?;
    for story in stories() {
        let kind = if story.decline.is_some() {
            "invoice.payment_failed"
        } else {
            "invoice.payment_action_required"
        };
        outln!(
            "Stripe: {kind} for {} ({}, {}) — {}",
            story.invoice,
            story.name,
            format_amount(story.amount, "usd", "en"),
            story.about
        );
        deliver(invoice_event(kind, &story, start)).await?;
    }
    let invoices: Vec<&str> = stories().iter().map(|s| s.invoice).collect();
    settle(&store, &invoices).await?;

    // Follow the invoices from one due timer to the next, letting the customers act on what
    // they read, until every case is over or the horizon is reached.
    let mut acted: Vec<&str> = Vec::new();
    loop {
        let cases = load(&store, &invoices).await?;
        let now = clock.now().await?;
        for story in stories() {
            let told = customers.read(story.customer);
            if story.reacts == Reaction::Nothing || !told || acted.contains(&story.invoice) {
                continue;
            }
            acted.push(story.invoice);
            let event = match story.reacts {
                Reaction::NewCard => {
                    if let Some(link) = customers.link(story.customer) {
                        let opened = open_link(&link).await?;
                        outln!(
                            "{}: opens the update link from the nudge → {opened}",
                            story.name
                        );
                    }
                    outln!("{}: reads the nudge and adds a new card", story.name);
                    card_event(&story, now)
                }
                _ => {
                    outln!("{}: reads the nudge and confirms the payment", story.name);
                    stripe.paid_by_customer(story.invoice);
                    invoice_event("invoice.paid", &story, now)
                }
            };
            deliver(event).await?;
        }
        settle(&store, &invoices).await?;
        let cases = if acted.is_empty() {
            cases
        } else {
            load(&store, &invoices).await?
        };
        let next = cases
            .iter()
            .flat_map(|c| c.timers.iter().map(|t| t.at))
            .min();
        let Some(next) = next.filter(|at| *at < start + HORIZON) else {
            break;
        };
        let ahead = next.as_second() - clock.now().await?.as_second() + 1;
        if ahead > 0 {
            clock.advance(ahead).await?;
        }
        settle(&store, &invoices).await?;
    }

    let cases = load(&store, &invoices).await?;
    let now = clock.now().await?;
    outln!();
    for (story, case) in stories().iter().zip(&cases) {
        outln!("──── {} — {}", story.name, story.about);
        out!("{}", crate::story::tell(case, &policy, &[], now));
        outln!();
    }
    let summary = Summary {
        invoices: cases.len(),
        states: cases
            .iter()
            .map(|c| (c.invoice_id.clone(), c.state.as_str().to_owned()))
            .collect(),
        recovered: cases
            .iter()
            .filter(|c| c.state == CaseState::Recovered)
            .count(),
        recovered_amount: cases
            .iter()
            .filter(|c| c.state == CaseState::Recovered)
            .map(|c| c.amount_due)
            .sum(),
        attempts: cases.iter().map(|c| c.attempts.len()).sum(),
        nudges: cases.iter().map(|c| c.nudged.len()).sum(),
        days: now.duration_since(start).as_hours() / 24,
    };
    let due: i64 = cases.iter().map(|c| c.amount_due).sum();
    outln!(
        "Summary: {} invoices, {} due; recovered {} of {} ({}); {}; {} charge attempts, {} \
         messages, {} Stripe calls; {} simulated days in {:.1} s.",
        summary.invoices,
        format_amount(due, "usd", "en"),
        summary.recovered,
        summary.invoices,
        format_amount(summary.recovered_amount, "usd", "en"),
        summary
            .states
            .iter()
            .map(|(invoice, state)| format!("{invoice} {state}"))
            .collect::<Vec<_>>()
            .join(", "),
        summary.attempts,
        summary.nudges,
        stripe.calls(),
        summary.days,
        started.elapsed().as_secs_f64()
    );
    let _ = stop_worker.send(());
    let _ = working.await;
    let _ = stop_server.send(());
    let _ = server.await;
    Ok(summary)
}

async fn load(store: &MemoryStore, invoices: &[&str]) -> anyhow::Result<Vec<Case>> {
    let mut cases = Vec::with_capacity(invoices.len());
    for invoice in invoices {
        match store.load_case(invoice).await? {
            Some(case) => cases.push(case),
            None => anyhow::bail!("no case for {invoice} yet"),
        }
    }
    Ok(cases)
}

/// Waits until the worker has caught up: every invoice has a case and no case changed for a few
/// polls in a row (bounded: a stuck worker ends the demo with an error, not a hang).
async fn settle(store: &MemoryStore, invoices: &[&str]) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut last = Vec::new();
    let mut quiet = 0;
    while quiet < 4 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the worker did not settle within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(30)).await;
        let mut versions = Vec::with_capacity(invoices.len());
        for invoice in invoices {
            versions.push(store.load_case(invoice).await?.map(|c| c.version));
        }
        let all_there = versions.iter().all(Option::is_some);
        quiet = if all_there && versions == last {
            quiet + 1
        } else {
            0
        };
        last = versions;
    }
    Ok(())
}

/// A fixture event for the story's invoice (or customer), as Stripe would send it at `at`.
fn invoice_event(kind: &str, story: &Story, at: Timestamp) -> Value {
    let fixture: &[u8] = match kind {
        "invoice.payment_failed" => {
            include_bytes!("../../fixtures/events/invoice.payment_failed.json")
        }
        "invoice.payment_action_required" => {
            include_bytes!("../../fixtures/events/invoice.payment_action_required.json")
        }
        _ => include_bytes!("../../fixtures/events/invoice.paid.json"),
    };
    let mut event: Value = serde_json::from_slice(fixture).expect("bundled fixtures are JSON");
    event["id"] = format!("evt_demo_{}_{kind}", story.invoice).into();
    event["created"] = at.as_second().into();
    let invoice = &mut event["data"]["object"];
    invoice["id"] = story.invoice.into();
    invoice["customer"] = story.customer.into();
    invoice["customer_name"] = story.name.into();
    invoice["amount_due"] = story.amount.into();
    invoice["amount_remaining"] = story.amount.into();
    invoice["parent"]["subscription_details"]["subscription"] =
        story.customer.replacen("cus_", "sub_", 1).into();
    invoice["next_payment_attempt"] = Value::Null;
    event
}

fn card_event(story: &Story, at: Timestamp) -> Value {
    let fixture = include_bytes!("../../fixtures/events/payment_method.attached.json");
    let mut event: Value = serde_json::from_slice(fixture).expect("bundled fixtures are JSON");
    event["id"] = format!("evt_demo_{}_new_card", story.customer).into();
    event["created"] = at.as_second().into();
    event["data"]["object"]["customer"] = story.customer.into();
    event
}

/// Opens an update link as a customer's browser would, and says where it led.
async fn open_link(link: &str) -> anyhow::Result<String> {
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let answer = browser.get(link).send().await?;
    let status = answer.status();
    Ok(
        match answer
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
        {
            Some(to) => format!("{} to {to}", status.as_u16()),
            None => format!("{status}"),
        },
    )
}

/// The customers' inbox: who has read a nudge, and the latest update link each was sent.
#[derive(Clone, Default)]
struct Customers(Arc<Mutex<HashMap<String, Read>>>);

/// What one customer read: how many nudges, and the latest update link among them.
#[derive(Default)]
struct Read {
    nudges: u32,
    link: Option<String>,
}

impl Customers {
    fn read(&self, customer: &str) -> bool {
        self.0
            .lock()
            .expect("not poisoned")
            .get(customer)
            .is_some_and(|read| read.nudges > 0)
    }

    /// The latest recoup update link (`/fix/…`) the customer was sent.
    fn link(&self, customer: &str) -> Option<String> {
        self.0
            .lock()
            .expect("not poisoned")
            .get(customer)
            .and_then(|read| read.link.clone())
    }
}

/// A nudge reaching a customer: signed as Stripe signs webhooks, verified here as a business would.
async fn read_nudge(
    State(customers): State<Customers>,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    let verifier = Verifier::new([NUDGE_SECRET.as_bytes()], 300);
    let header = headers
        .get("recoup-signature")
        .and_then(|v| v.to_str().ok());
    let signed = verifier
        .verify(header, body.as_bytes(), Timestamp::now().as_second())
        .is_ok();
    if !signed {
        return StatusCode::BAD_REQUEST;
    }
    let Ok(nudge) = serde_json::from_str::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let customer = nudge["customer_id"].as_str().unwrap_or_default().to_owned();
    outln!(
        "  nudge → {customer}: {:?} ({} tier {}, link {})",
        nudge["subject"].as_str().unwrap_or_default(),
        nudge["kind"].as_str().unwrap_or_default(),
        nudge["tier"],
        nudge["update_url"].as_str().unwrap_or("none")
    );
    let link = nudge["update_url"]
        .as_str()
        .filter(|url| url.contains("/fix/"))
        .map(str::to_owned);
    let mut inbox = customers.0.lock().expect("not poisoned");
    let read = inbox.entry(customer).or_default();
    read.nudges += 1;
    if link.is_some() {
        read.link = link;
    }
    StatusCode::OK
}
