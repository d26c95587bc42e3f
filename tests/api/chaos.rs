//! The chaos run: a realistic stream of signed webhooks for a few hundred (or thousand) invoices
//! through two receivers and two workers — real `recoup serve` processes reaching Redis through a
//! proxy that can black-hole it — while workers are SIGKILLed (some in the middle of a charge),
//! Redis restarts, Stripe answers 5xx, 429, timeouts and stalls, and the mail server is busy. Then
//! the faults stop, everything settles, and the invariants of `docs/design/chaos.md` are checked
//! and printed as a table with the run's figures.
//!
//! `CHAOS_MINUTES` (fractional allowed; 1 by default, which keeps the whole test within 3 minutes
//! on 2 cores) is how long faults are injected, `CHAOS_INVOICES` how many invoices fail (200 a
//! minute by default), `CHAOS_SEED` replays a run's stream and fault schedule (printed at the
//! start and in every failure). `scripts/chaos --minutes 30` runs a long one in release.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use recoup::config::RedisSettings;
use recoup::policy::{Case, HoldBy, NudgeKind, Outcome as Tried, State};
use recoup::processor::idempotency_key;
use recoup::store::redis::{CLOCK_OFFSET, DEAD_LETTERS, INBOX_STREAM, due_key};
use recoup::store::{Cases, RedisStore, Timers, shard_of};
use recoup::webhook::signature;
use serde_json::{Value, json};

use crate::fake_stripe::{
    ChargeRecord, Customer, Decline, FakeStripe, Invoice, Outcome, RandomFaults, Subscription,
};
use crate::helpers::{
    API_TOKEN, API_TOKENS, BlackHoleProxy, LINKS, RecoupProcess, SECRET, TestRedis, fixture,
    unix_now,
};
use crate::smtp_sink::SmtpSink;

const POLICY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api/policies/chaos.toml");
const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;
/// How far the test clock moves at each tick of the run: the policy's ten days of dunning pass in
/// about forty ticks.
const STEP: i64 = 6 * HOUR;
/// How long a tick lasts at least, on the wall clock.
const TICK: Duration = Duration::from_secs(1);
/// Invoices fail during this share of the run; the rest lets the later ones go through dunning
/// while faults still come.
const BIRTHS: f64 = 0.6;
/// Days the test clock moves on once faults stop, one at a time: enough for the last invoice's
/// retries, final notice (tried again for up to 3½ days when the mail server was busy) and decision.
const SETTLE_DAYS: i64 = 16;
/// How many webhooks are in flight at once, as Stripe delivers in parallel.
const IN_FLIGHT: usize = 16;
/// The chance that an event is delivered a second time later, as Stripe does.
const REDELIVERY: f64 = 0.12;
/// The chance that any Stripe call is answered with a fault while faults are on.
const STRIPE_FAULTS: f64 = 0.08;

/// The run's size and seed, from the environment.
struct Knobs {
    minutes: f64,
    invoices: usize,
    seed: u64,
}

impl Knobs {
    fn from_env() -> Self {
        let minutes = std::env::var("CHAOS_MINUTES")
            .ok()
            .map(|m| m.parse::<f64>().expect("CHAOS_MINUTES is a number"))
            .unwrap_or(1.0)
            .max(0.1);
        let invoices = std::env::var("CHAOS_INVOICES")
            .ok()
            .map(|n| n.parse().expect("CHAOS_INVOICES is a whole number"))
            .unwrap_or(((minutes * 200.0) as usize).max(100));
        let seed = std::env::var("CHAOS_SEED")
            .ok()
            .map(|s| s.parse().expect("CHAOS_SEED is a whole number"))
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        Knobs {
            minutes,
            invoices,
            seed,
        }
    }
}

/// What Stripe does around one invoice besides failing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Twist {
    Plain,
    /// The subscription was deleted just before the failure, and Stripe delivers that first.
    DeletedFirst,
    /// A dispute opened and closed at once; the closing is delivered before the opening.
    DisputeClosedFirst,
    /// A dispute opens and closes two days later, in order.
    DisputeClosedLater,
    /// A dispute opens and stays open.
    DisputeLeftOpen,
    /// Collection paused and resumed in the dashboard; the resume is delivered first.
    ResumedBeforePaused,
    /// Collection paused in the dashboard a day after the failure, for good.
    PausedInDashboard,
}

/// One failed invoice and what its customer and Stripe will do.
struct Story {
    invoice: String,
    customer: String,
    subscription: String,
    charge: String,
    dispute: String,
    /// The customer's own address, so the mail server tells whose final notice it delivered.
    email: String,
    /// When it fails, on the wall clock from the start of the run.
    birth: Duration,
    decline: Decline,
    /// The retry (1 = recoup's first) that pays; `None`: every retry is declined.
    pays_on_retry: Option<usize>,
    /// How long after the failure the customer pays by themselves, if they do.
    customer_pays_after: Option<i64>,
    end: &'static str,
    zone: &'static str,
    amount: i64,
    twist: Twist,
}

/// A customer's own text where the fake's types hold `&'static str` (their fixtures are literals):
/// the run's few thousand are leaked for its length.
fn leak(text: String) -> &'static str {
    Box::leak(text.into_boxed_str())
}

/// A card's fingerprint is what the networks' retry budgets count per: one of its own for each
/// customer, so that the budgets of unrelated customers do not mix.
fn fingerprint(n: usize) -> &'static str {
    leak(format!("fp_chaos_{n}"))
}

/// The declines the run's invoices fail with: Visa and Mastercard, soft, ambiguous, hard and
/// card-data, with the networks' advice codes that change what may be retried.
fn decline(rng: &mut ChaCha8Rng, n: usize) -> Decline {
    let visa = |code| Decline {
        fingerprint: fingerprint(n),
        ..Decline::visa(code)
    };
    let mastercard = |code, advice| Decline {
        fingerprint: fingerprint(n),
        ..Decline::mastercard(code, Some(advice))
    };
    match rng.random_range(0..10) {
        0 | 1 => visa("insufficient_funds"),
        2 => visa("do_not_honor"),
        3 => visa("generic_decline"),
        4 => visa("card_velocity_exceeded"),
        5 => visa("lost_card"),
        6 => visa("expired_card"),
        7 => mastercard("do_not_honor", "02"),
        8 => mastercard("insufficient_funds", "24"),
        _ => mastercard("generic_decline", "03"),
    }
}

fn story(rng: &mut ChaCha8Rng, n: usize, knobs: &Knobs, chaos: Duration) -> Story {
    let birth = chaos.mul_f64(BIRTHS * n as f64 / knobs.invoices as f64);
    let twist = match rng.random_range(0..100) {
        0..5 => Twist::DeletedFirst,
        5..9 => Twist::DisputeClosedFirst,
        9..13 => Twist::DisputeClosedLater,
        13..15 => Twist::DisputeLeftOpen,
        15..19 => Twist::ResumedBeforePaused,
        19..21 => Twist::PausedInDashboard,
        _ => Twist::Plain,
    };
    Story {
        invoice: format!("in_chaos_{n}"),
        customer: format!("cus_chaos_{n}"),
        subscription: format!("sub_chaos_{n}"),
        charge: format!("ch_chaos_{n}"),
        dispute: format!("du_chaos_{n}"),
        email: format!("dana+{n}@example.com"),
        birth,
        decline: decline(rng, n),
        pays_on_retry: rng.random_bool(0.35).then(|| rng.random_range(1..=3)),
        customer_pays_after: rng
            .random_bool(0.2)
            .then(|| rng.random_range(HOUR..6 * DAY)),
        end: ["cancel", "cancel_now", "pause", "write_off", "leave"]
            .choose(rng)
            .unwrap(),
        zone: [
            "America/Chicago",
            "America/New_York",
            "Europe/Berlin",
            "Asia/Tokyo",
            "Australia/Sydney",
        ]
        .choose(rng)
        .unwrap(),
        amount: rng.random_range(5..400) * 100,
        twist,
    }
}

/// A webhook Stripe sends: the event as delivered, every time it is delivered.
struct Sent {
    id: String,
    kind: &'static str,
    story: usize,
    body: Vec<u8>,
    /// Whether a receiver answered one of its deliveries with 200.
    delivered: bool,
}

/// What happens when the test clock reaches its time.
#[derive(Debug, Clone, Copy)]
enum Action {
    Deliver(usize),
    CustomerPays(usize),
    PauseInDashboard(usize),
}

/// The chaos episodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Episode {
    KillWorker,
    KillMidCharge,
    RestartRedis,
    BlackHole,
    BusyMail,
}

const EPISODES: [Episode; 5] = [
    Episode::KillWorker,
    Episode::KillMidCharge,
    Episode::RestartRedis,
    Episode::BlackHole,
    Episode::BusyMail,
];

#[derive(Default)]
struct Figures {
    ticks: u64,
    deliveries: u64,
    refused: u64,
    redeliveries: u64,
    kills: u64,
    kills_mid_charge: u64,
    mid_charge_episodes: u64,
    redis_restarts: u64,
    black_holes: u64,
    busy_mail: u64,
    advances_refused: u64,
}

/// Everything the run drives: the processes, the fakes, and what it has told Stripe to do.
struct Run {
    rng: ChaCha8Rng,
    seed: u64,
    redis: TestRedis,
    proxy: BlackHoleProxy,
    stripe: FakeStripe,
    sink: SmtpSink,
    receivers: Vec<RecoupProcess>,
    workers: Vec<RecoupProcess>,
    /// The workers killed, kept for their logs.
    killed: Vec<RecoupProcess>,
    env: Vec<(String, String)>,
    http: reqwest::Client,
    /// The test clock's offset, as last read from Redis.
    offset: i64,
    stories: Vec<Story>,
    born: usize,
    sent: Vec<Sent>,
    agenda: BinaryHeap<Reverse<(i64, u64, usize)>>,
    actions: Vec<Action>,
    /// What the run last told recoup of each invoice's status and attempts, and of its
    /// subscription: a change found in the fake (recoup's charge, declined or paid, pause,
    /// cancellation, write-off) is reported as Stripe would.
    invoice_seen: HashMap<usize, (&'static str, u32)>,
    subscription_seen: HashMap<usize, Subscription>,
    dashboard_paused: HashSet<String>,
    restart_markers: Vec<String>,
    figures: Figures,
}

impl Run {
    fn clock(&self) -> i64 {
        unix_now() + self.offset
    }

    fn schedule(&mut self, at: i64, action: Action) {
        let seq = self.actions.len() as u64;
        self.actions.push(action);
        self.agenda.push(Reverse((at, seq, self.actions.len() - 1)));
    }

    /// Stores an event Stripe makes and schedules its delivery at `at` (sometimes a second one
    /// later, as Stripe redelivers).
    fn send(&mut self, story: usize, kind: &'static str, event: Value, at: i64) {
        let id = event["id"].as_str().unwrap().to_owned();
        self.sent.push(Sent {
            id,
            kind,
            story,
            body: serde_json::to_vec(&event).unwrap(),
            delivered: false,
        });
        let index = self.sent.len() - 1;
        self.schedule(at, Action::Deliver(index));
        if self.rng.random_bool(REDELIVERY) {
            self.figures.redeliveries += 1;
            let later = at + self.rng.random_range(0..36 * HOUR);
            self.schedule(later, Action::Deliver(index));
        }
    }

    fn event_id(&self, what: &str, story: usize) -> String {
        format!("evt_chaos_{what}_{story}_{}", self.sent.len())
    }

    /// The invoices whose time has come fail: set up in the fake Stripe, their failure (and what
    /// goes with it) scheduled.
    fn births(&mut self, elapsed: Duration) {
        while self.born < self.stories.len() && self.stories[self.born].birth <= elapsed {
            self.birth(self.born);
            self.born += 1;
        }
    }

    fn birth(&mut self, n: usize) {
        let now = self.clock();
        let story = &self.stories[n];
        let mut outcomes = Vec::new();
        let declines = story.pays_on_retry.map_or(10, |k| k - 1);
        outcomes.extend((0..declines).map(|_| Outcome::Decline(story.decline.clone())));
        let mut invoice = Invoice::failed(&story.customer, story.decline.clone());
        invoice.amount_due = story.amount;
        invoice.outcomes = outcomes.into();
        self.stripe.add_invoice(&story.invoice, invoice);
        self.stripe.add_customer(
            &story.customer,
            Customer {
                metadata: json!({"timezone": story.zone, "end": story.end}),
                country: "US",
                created: unix_now() - 400 * DAY,
                name: "Dana Whitfield",
                email: leak(story.email.clone()),
                preferred_locales: &["en-US"],
                card_expires: (12, 2030),
            },
        );
        let mut subscription = Subscription::active(&story.customer);
        if story.twist == Twist::DeletedFirst {
            subscription.status = "canceled";
        }
        self.stripe
            .add_subscription(&story.subscription, subscription.clone());
        self.stripe.add_charge(
            &story.charge,
            ChargeRecord {
                customer: Some(story.customer.clone()),
                brand: story.decline.brand,
                fingerprint: story.decline.fingerprint,
            },
        );
        self.invoice_seen.insert(n, ("open", 1));
        self.subscription_seen.insert(n, subscription.clone());
        let (twist, pays_after) = (story.twist, story.customer_pays_after);
        let failed = invoice_event(
            "invoice.payment_failed",
            &self.event_id("failed", n),
            story,
            now,
        );
        match twist {
            Twist::DeletedFirst => {
                let deleted = subscription_event(
                    "customer.subscription.deleted",
                    &self.event_id("deleted", n),
                    &self.stories[n],
                    &subscription,
                    now - 60,
                );
                self.send(n, "customer.subscription.deleted", deleted, now);
                // The failure comes a tick later: delivered after the deletion.
                self.send(n, "invoice.payment_failed", failed, now + 1);
            }
            _ => self.send(n, "invoice.payment_failed", failed, now),
        }
        let (disputed, charge) = (
            self.stories[n].dispute.clone(),
            self.stories[n].charge.clone(),
        );
        let dispute = |kind, id: String, status, created| {
            dispute_event(kind, &id, &disputed, &charge, status, created)
        };
        // Every dispute opens the same way, ten minutes on; how and when it closes is the twist.
        let (opened_id, closed_id) = (
            self.event_id("dispute", n),
            self.event_id("dispute_closed", n),
        );
        let opened = || {
            dispute(
                "charge.dispute.created",
                opened_id.clone(),
                "needs_response",
                now + 600,
            )
        };
        let closed = |status, at| dispute("charge.dispute.closed", closed_id.clone(), status, at);
        match twist {
            Twist::DisputeClosedFirst => {
                self.send(
                    n,
                    "charge.dispute.closed",
                    closed("won", now + 1_200),
                    now + 1,
                );
                self.send(n, "charge.dispute.created", opened(), now + STEP + 1);
            }
            Twist::DisputeClosedLater => {
                let status = if self.rng.random_bool(0.5) {
                    "won"
                } else {
                    "lost"
                };
                self.send(n, "charge.dispute.created", opened(), now + 600);
                self.send(
                    n,
                    "charge.dispute.closed",
                    closed(status, now + 2 * DAY),
                    now + 2 * DAY,
                );
            }
            Twist::DisputeLeftOpen => {
                self.send(n, "charge.dispute.created", opened(), now + 600);
            }
            Twist::ResumedBeforePaused => {
                let mut paused = subscription.clone();
                paused.pause_collection = Some(("keep_as_draft".to_owned(), None));
                let pause = subscription_event(
                    "customer.subscription.updated",
                    &self.event_id("paused", n),
                    &self.stories[n],
                    &paused,
                    now + 600,
                );
                let resume = subscription_event(
                    "customer.subscription.updated",
                    &self.event_id("resumed", n),
                    &self.stories[n],
                    &subscription,
                    now + 1_200,
                );
                self.send(n, "customer.subscription.updated", resume, now + 1_200);
                self.send(
                    n,
                    "customer.subscription.updated",
                    pause,
                    now + STEP + 1_200,
                );
            }
            Twist::PausedInDashboard => self.schedule(now + DAY, Action::PauseInDashboard(n)),
            Twist::Plain | Twist::DeletedFirst => {}
        }
        if let Some(after) = pays_after {
            self.schedule(now + after, Action::CustomerPays(n));
        }
    }

    /// Reports what changed in the fake Stripe since the run last looked — recoup's charges,
    /// pauses, cancellations and write-offs, and the customers' own payments — as the events
    /// Stripe sends for them, created now.
    fn echo(&mut self) -> usize {
        let now = self.clock();
        let mut echoed = 0;
        for n in 0..self.born {
            let invoice = self.stripe.invoice(&self.stories[n].invoice);
            let seen = invoice.as_ref().map(|i| (i.status, i.attempt_count));
            if let Some(invoice) = invoice
                && self.invoice_seen.get(&n).copied() != seen
            {
                let (status, attempts) = self.invoice_seen[&n];
                self.invoice_seen
                    .insert(n, (invoice.status, invoice.attempt_count));
                // Stripe reports every failed payment attempt, recoup's own included: a charge
                // whose answer recoup lost still reaches its case.
                let still_open = status == "open" && invoice.status == "open";
                let failed = (attempts + 1..=invoice.attempt_count).filter(|_| still_open);
                let kind = match invoice.status {
                    "paid" => Some("invoice.paid"),
                    "uncollectible" => Some("invoice.marked_uncollectible"),
                    _ => None,
                };
                let reported = failed
                    .map(|attempt| ("invoice.payment_failed", attempt))
                    .chain(kind.map(|kind| (kind, invoice.attempt_count)));
                for (kind, attempt) in reported.collect::<Vec<_>>() {
                    let id = self.event_id("invoice", n);
                    let mut event = invoice_event(kind, &id, &self.stories[n], now);
                    event["data"]["object"]["attempt_count"] = attempt.into();
                    self.send(n, kind, event, now);
                    echoed += 1;
                }
            }
            let subscription = self.stripe.subscription(&self.stories[n].subscription);
            if let Some(subscription) = subscription
                && self.subscription_seen.get(&n) != Some(&subscription)
            {
                self.subscription_seen.insert(n, subscription.clone());
                let kind = if subscription.status == "canceled" {
                    "customer.subscription.deleted"
                } else {
                    "customer.subscription.updated"
                };
                let id = self.event_id("subscription", n);
                let event = subscription_event(kind, &id, &self.stories[n], &subscription, now);
                self.send(n, kind, event, now);
                echoed += 1;
            }
        }
        echoed
    }

    /// Carries out what is due on the test clock, and delivers the webhooks due, a few at a time
    /// to either receiver; one not answered 200 is delivered again at the next tick.
    async fn deliver_due(&mut self) {
        let now = self.clock();
        let mut due = Vec::new();
        while let Some(Reverse((at, _, action))) = self.agenda.peek().copied() {
            if at > now {
                break;
            }
            self.agenda.pop();
            match self.actions[action] {
                Action::Deliver(event) => due.push(event),
                Action::CustomerPays(n) => {
                    let invoice = &self.stories[n].invoice;
                    if self
                        .stripe
                        .invoice(invoice)
                        .is_some_and(|i| i.status == "open")
                    {
                        self.stripe.set_invoice_status(invoice, "paid");
                    }
                }
                Action::PauseInDashboard(n) => {
                    let story = &self.stories[n];
                    if let Some(mut subscription) = self.stripe.subscription(&story.subscription)
                        && subscription.status == "active"
                        && subscription.pause_collection.is_none()
                    {
                        subscription.pause_collection = Some(("void".to_owned(), None));
                        self.stripe
                            .add_subscription(&story.subscription, subscription);
                        self.dashboard_paused.insert(story.subscription.clone());
                    }
                }
            }
        }
        self.echo();
        // Echoes are due now too.
        while let Some(Reverse((at, _, action))) = self.agenda.peek().copied() {
            match self.actions[action] {
                Action::Deliver(event) if at <= now => {
                    self.agenda.pop();
                    due.push(event);
                }
                _ => break,
            }
        }
        let receivers: Vec<SocketAddr> = self.receivers.iter().map(|r| r.addr).collect();
        let picks: Vec<SocketAddr> = due
            .iter()
            .map(|_| *receivers.choose(&mut self.rng).unwrap())
            .collect();
        let http = &self.http;
        let sent = &self.sent;
        let answers: Vec<(usize, u16)> = futures::stream::iter(due.into_iter().zip(picks))
            .map(|(event, receiver)| async move {
                (event, deliver(http, receiver, &sent[event].body).await)
            })
            .buffer_unordered(IN_FLIGHT)
            .collect()
            .await;
        for (event, status) in answers {
            self.figures.deliveries += 1;
            if status == 200 {
                self.sent[event].delivered = true;
            } else {
                // Stripe delivers again; the next tick is sooner than Stripe, and as good.
                self.figures.refused += 1;
                self.schedule(now, Action::Deliver(event));
            }
        }
    }

    /// Moves the test clock through a receiver, which answers once the due timers are claimed,
    /// and reads the offset back from Redis (an advance answered 503 may have moved it all the
    /// same).
    async fn advance(&mut self, seconds: i64) {
        let receiver = self.receivers.choose(&mut self.rng).unwrap().addr;
        let answer = self
            .http
            .post(format!("http://{receiver}/api/v1/clock/advance"))
            .bearer_auth(API_TOKEN)
            .header("content-type", "application/json")
            .body(format!(r#"{{"seconds":{seconds}}}"#))
            .timeout(Duration::from_secs(45))
            .send()
            .await;
        if !answer.is_ok_and(|a| a.status() == 200) {
            self.figures.advances_refused += 1;
        }
        if let Some(offset) = read_offset(&self.redis).await {
            self.offset = offset;
        }
    }

    fn worker_env(&self) -> Vec<(&str, &str)> {
        self.env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    }

    async fn start_worker(&mut self) {
        let worker = RecoupProcess::serve_as(&self.redis, "worker", &self.worker_env()).await;
        self.workers.push(worker);
    }

    fn kill_worker(&mut self, index: usize) {
        let mut worker = self.workers.remove(index);
        worker.child.kill().unwrap();
        worker.child.wait().unwrap();
        self.figures.kills += 1;
        self.killed.push(worker);
    }

    /// One chaos episode; each leaves Redis up, the hole closed and two workers running, so the
    /// run can go on (a worker cannot start without Redis).
    async fn episode(&mut self, episode: Episode) {
        match episode {
            Episode::KillWorker => {
                let index = self.rng.random_range(0..self.workers.len());
                self.kill_worker(index);
                self.start_worker().await;
            }
            Episode::KillMidCharge => {
                // Stripe takes the charges but holds their answers back; the clock moves on in
                // small steps until a retry is charged, and every worker dies waiting (so the one
                // charging does).
                self.figures.mid_charge_episodes += 1;
                self.stripe.stall_pays(Some(Duration::from_secs(4)));
                let charged = self.stripe.charges().len();
                for _ in 0..4 {
                    self.advance(2 * HOUR).await;
                    let deadline = Instant::now() + Duration::from_millis(1_500);
                    while self.stripe.charges().len() == charged && Instant::now() < deadline {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    if self.stripe.charges().len() > charged {
                        self.figures.kills_mid_charge += self.workers.len() as u64;
                        break;
                    }
                }
                while !self.workers.is_empty() {
                    self.kill_worker(0);
                }
                self.stripe.stall_pays(None);
                self.start_worker().await;
                self.start_worker().await;
            }
            Episode::RestartRedis => {
                // A marker written just before the restart must be there after it: the AOF kept
                // what Redis had acknowledged.
                let marker = format!("chaos:marker:{}", self.figures.redis_restarts);
                let mut conn = self.redis.conn().await;
                let _: () = redis::cmd("SET")
                    .arg(&marker)
                    .arg(1)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
                self.restart_markers.push(marker);
                self.redis.stop();
                self.figures.redis_restarts += 1;
                let down = Duration::from_millis(self.rng.random_range(300..1_500));
                self.during(down).await;
                self.redis.restart();
            }
            Episode::BlackHole => {
                // Longer than Redis's timeout (1 s): every connection open now is found dead.
                self.proxy.open_hole();
                self.figures.black_holes += 1;
                let hole = Duration::from_millis(self.rng.random_range(1_500..4_000));
                self.during(hole).await;
                self.proxy.close_hole();
            }
            Episode::BusyMail => {
                self.figures.busy_mail += 1;
                self.sink.busy_for(self.rng.random_range(20..80));
            }
        }
    }

    /// Delivers what is due while an outage lasts (the receivers answer 503), for `length`.
    async fn during(&mut self, length: Duration) {
        let until = Instant::now() + length;
        self.deliver_due().await;
        tokio::time::sleep(until.saturating_duration_since(Instant::now())).await;
    }

    fn faults(&self, on: bool) {
        self.stripe.random_faults(on.then_some(RandomFaults {
            seed: self.seed,
            rate: STRIPE_FAULTS,
            hold: Duration::from_millis(1_500),
            stall: Duration::from_millis(1_500),
        }));
    }

    /// Whether the run has nothing left in flight: every event delivered, the inbox empty, no
    /// wake-up due and nothing changed in Stripe that recoup has not been told.
    async fn quiet(&mut self, store: &RedisStore) -> bool {
        let now = self.clock();
        if self.echo() > 0
            || self
                .agenda
                .peek()
                .is_some_and(|Reverse((at, ..))| *at <= now)
        {
            return false;
        }
        let Some(inbox) = inbox_left(&self.redis).await else {
            return false;
        };
        let due = store
            .count_due(jiff::Timestamp::from_second(now).unwrap())
            .await;
        inbox == 0 && due.is_ok_and(|d| d == 0)
    }
}

/// Delivers one webhook, signed now; the status, or 0 when no answer came.
async fn deliver(http: &reqwest::Client, receiver: SocketAddr, body: &[u8]) -> u16 {
    let header = signature::sign(SECRET.as_bytes(), unix_now(), body);
    http.post(format!("http://{receiver}/webhooks/stripe"))
        .header("stripe-signature", header)
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

async fn read_offset(redis: &TestRedis) -> Option<i64> {
    let mut conn = redis::Client::open(redis.url())
        .ok()?
        .get_multiplexed_async_connection()
        .await
        .ok()?;
    let offset: Option<i64> = redis::cmd("GET")
        .arg(CLOCK_OFFSET)
        .query_async(&mut conn)
        .await
        .ok()?;
    Some(offset.unwrap_or(0))
}

/// Entries still in the inbox (unread or pending): 0 once every stored event was applied.
async fn inbox_left(redis: &TestRedis) -> Option<u64> {
    let mut conn = redis::Client::open(redis.url())
        .ok()?
        .get_multiplexed_async_connection()
        .await
        .ok()?;
    redis::cmd("XLEN")
        .arg(INBOX_STREAM)
        .query_async(&mut conn)
        .await
        .ok()
}

/// The invoices a violation names (`in_chaos_<n>`).
fn invoices_named(text: &str) -> Vec<String> {
    text.match_indices("in_chaos_")
        .map(|(at, prefix)| {
            let digits: String = text[at + prefix.len()..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            format!("{prefix}{digits}")
        })
        .collect()
}

/// What support would read of the first cases that broke an invariant, and every log line of
/// every recoup process (killed ones too) about them: where to start looking.
async fn suspects(run: &mut Run, store: &RedisStore, checks: &[Check]) -> String {
    let mut named: Vec<String> = checks
        .iter()
        .flat_map(|c| c.violations.iter().flat_map(|v| invoices_named(v)))
        .collect();
    named.dedup();
    named.truncate(3);
    if named.is_empty() {
        return String::new();
    }
    let mut logs = String::new();
    for process in run
        .killed
        .iter_mut()
        .chain(run.workers.iter_mut())
        .chain(run.receivers.iter_mut())
    {
        let _ = process.child.kill();
        let _ = process.child.wait();
        logs.push_str(&process.stdout());
    }
    let mut out = String::new();
    for invoice in named {
        let case = store.load_case(&invoice).await.ok().flatten();
        writeln!(
            out,
            "\n{invoice}, as stored:\n{}",
            serde_json::to_string_pretty(&case).unwrap()
        )
        .unwrap();
        let lines: Vec<&str> = logs.lines().filter(|l| l.contains(&invoice)).collect();
        writeln!(out, "log lines naming {invoice}:\n{}", lines.join("\n")).unwrap();
    }
    out
}

/// An invoice event of the story's invoice, created at `created`.
fn invoice_event(kind: &str, id: &str, story: &Story, created: i64) -> Value {
    let mut event: Value = serde_json::from_slice(&fixture(kind)).unwrap();
    event["id"] = id.into();
    event["created"] = created.into();
    let object = &mut event["data"]["object"];
    object["id"] = story.invoice.as_str().into();
    object["customer"] = story.customer.as_str().into();
    object["customer_email"] = story.email.as_str().into();
    object["amount_due"] = story.amount.into();
    object["amount_remaining"] = if kind == "invoice.payment_failed" {
        story.amount.into()
    } else {
        0.into()
    };
    object["attempt_count"] = 1.into();
    object["parent"]["subscription_details"]["subscription"] = story.subscription.as_str().into();
    if let Some(payment) = object["payments"]["data"].get_mut(0) {
        payment["invoice"] = story.invoice.as_str().into();
        payment["payment"]["payment_intent"] = format!("pi_for_{}", story.invoice).into();
    }
    event
}

/// A subscription event: the subscription as it is, a snapshot at `created`.
fn subscription_event(
    kind: &str,
    id: &str,
    story: &Story,
    subscription: &Subscription,
    created: i64,
) -> Value {
    let mut event: Value = serde_json::from_slice(&fixture(kind)).unwrap();
    event["id"] = id.into();
    event["created"] = created.into();
    event["data"]
        .as_object_mut()
        .unwrap()
        .remove("previous_attributes");
    let object = &mut event["data"]["object"];
    object["id"] = story.subscription.as_str().into();
    object["customer"] = story.customer.as_str().into();
    object["status"] = subscription.status.into();
    object["cancel_at_period_end"] = subscription.cancel_at_period_end.into();
    object["pause_collection"] = match &subscription.pause_collection {
        Some((behavior, resumes_at)) => json!({"behavior": behavior, "resumes_at": resumes_at}),
        None => Value::Null,
    };
    if subscription.status == "canceled" {
        object["canceled_at"] = created.into();
        object["ended_at"] = created.into();
    }
    event
}

fn dispute_event(
    kind: &str,
    id: &str,
    dispute: &str,
    charge: &str,
    status: &str,
    created: i64,
) -> Value {
    let mut event: Value = serde_json::from_slice(&fixture(kind)).unwrap();
    event["id"] = id.into();
    event["created"] = created.into();
    event["data"]["object"]["id"] = dispute.into();
    event["data"]["object"]["charge"] = charge.into();
    event["data"]["object"]["status"] = status.into();
    event
}

/// One invariant: what it says, over how many it was checked, and what broke it.
struct Check {
    what: &'static str,
    checked: usize,
    violations: Vec<String>,
}

impl Check {
    fn new(what: &'static str) -> Self {
        Check {
            what,
            checked: 0,
            violations: Vec::new(),
        }
    }

    fn expect(&mut self, holds: bool, violation: impl FnOnce() -> String) {
        self.checked += 1;
        if !holds {
            self.violations.push(violation());
        }
    }
}

/// The attempt number an idempotency key of the invoice names.
fn attempt_of(invoice: &str, key: Option<&str>) -> Option<u32> {
    let prefix = idempotency_key(invoice, 0);
    let prefix = prefix.strip_suffix('0').unwrap();
    key?.strip_prefix(prefix)?.parse().ok()
}

/// Checks the invariants over the settled run.
async fn check(run: &Run, store: &RedisStore) -> Vec<Check> {
    let mut cases: HashMap<usize, Case> = HashMap::new();
    for (n, story) in run.stories.iter().enumerate().take(run.born) {
        if let Some(case) = store.load_case(&story.invoice).await.unwrap() {
            cases.insert(n, case);
        }
    }
    let mut conn = run.redis.conn().await;

    let mut drained = Check::new("1. every delivered event applied: inbox drained, no dead letter");
    let delivered = run.sent.iter().filter(|s| s.delivered).count();
    let left: u64 = redis::cmd("XLEN")
        .arg(INBOX_STREAM)
        .query_async(&mut conn)
        .await
        .unwrap();
    let dead: u64 = redis::cmd("XLEN")
        .arg(DEAD_LETTERS)
        .query_async(&mut conn)
        .await
        .unwrap();
    drained.checked = delivered;
    if left > 0 {
        drained
            .violations
            .push(format!("{left} entries left in the inbox"));
    }
    if dead > 0 {
        drained
            .violations
            .push(format!("{dead} events dead-lettered"));
    }
    let failures_shown = {
        let mut check = Check::new("1. every delivered failure is on its invoice's case");
        for sent in run.sent.iter().filter(|s| s.delivered) {
            if sent.kind != "invoice.payment_failed" {
                continue;
            }
            let invoice = &run.stories[sent.story].invoice;
            let shown = cases.get(&sent.story).is_some_and(|c| c.has_seen(&sent.id));
            check.expect(shown, || {
                format!("{} not on the case of {invoice}", sent.id)
            });
        }
        check
    };

    let mut awaited =
        Check::new("2. every open invoice has a case with a timer or an awaited result");
    let parked = store.parked().await.unwrap();
    for (n, story) in run.stories.iter().enumerate().take(run.born) {
        if run
            .stripe
            .invoice(&story.invoice)
            .is_none_or(|i| i.status != "open")
        {
            continue;
        }
        let Some(case) = cases.get(&n) else {
            awaited.expect(false, || format!("{}: open, and no case", story.invoice));
            continue;
        };
        let woken: Option<f64> = redis::cmd("ZSCORE")
            .arg(due_key(shard_of(&story.invoice)))
            .arg(&story.invoice)
            .query_async(&mut conn)
            .await
            .unwrap();
        let fine = match case.state {
            State::Recovered => false,
            // Dunning is over: decided, or closed by something Stripe reported.
            State::Paused | State::Canceled | State::Closed => true,
            // Waiting for its holds to end (checked by 4).
            State::OnHold => !case.holds.is_empty(),
            State::Retrying | State::AwaitingCustomer => {
                !case.timers.is_empty()
                    && woken.is_some()
                    && !parked.iter().any(|p| p.invoice_id == story.invoice)
            }
        };
        awaited.expect(fine, || {
            format!(
                "{}: open in Stripe, case {} with timers {:?}, wake-up {woken:?}",
                story.invoice,
                case.state.as_str(),
                case.timers
            )
        });
    }

    let charges = run.stripe.charges();
    let mut once = Check::new("3. at most one successful charge per invoice");
    let mut by_invoice: BTreeMap<&str, Vec<_>> = BTreeMap::new();
    for charge in &charges {
        by_invoice
            .entry(charge.invoice_id.as_str())
            .or_default()
            .push(charge);
    }
    for (invoice, charged) in &by_invoice {
        let paid = charged.iter().filter(|c| c.paid).count();
        once.expect(paid <= 1, || {
            format!("{invoice} charged successfully {paid} times")
        });
    }
    let mut keyed = Check::new("3. every charge on its case under its attempt's one key");
    let story_of: HashMap<&str, usize> = run
        .stories
        .iter()
        .enumerate()
        .map(|(n, s)| (s.invoice.as_str(), n))
        .collect();
    for charge in &charges {
        let invoice = charge.invoice_id.as_str();
        let case = story_of.get(invoice).and_then(|n| cases.get(n));
        let attempt = attempt_of(invoice, charge.idempotency_key.as_deref());
        let later = |n: u32| {
            by_invoice[invoice]
                .iter()
                .any(|c| attempt_of(invoice, c.idempotency_key.as_deref()) > Some(n))
        };
        let fine = match (case, attempt) {
            (Some(case), Some(n)) => match case.attempts.iter().find(|a| a.number == n) {
                // Its answer was lost: made again under the same key, or settled otherwise.
                Some(recorded) if recorded.outcome == Tried::Error => {
                    !later(n) && (case.state.is_final() || !case.timers.is_empty())
                }
                Some(recorded) => {
                    recorded.outcome
                        == if charge.paid {
                            Tried::Succeeded
                        } else {
                            Tried::Failed
                        }
                }
                // Its answer was lost and the invoice settled otherwise before the redo: fine,
                // unless a later attempt was charged meanwhile (the same attempt under a new key).
                None => case.state.is_final() && !later(n),
            },
            _ => false,
        };
        keyed.expect(fine, || {
            format!(
                "{invoice}: charge {:?} (paid: {}) vs attempts {:?}",
                charge.idempotency_key,
                charge.paid,
                case.map(|c| &c.attempts)
            )
        });
    }
    for (n, case) in &cases {
        let invoice = run.stories[*n].invoice.as_str();
        for attempt in case.attempts.iter().filter(|a| a.number > 1) {
            if attempt.outcome == Tried::Error {
                continue;
            }
            let made = by_invoice.get(invoice).is_some_and(|charged| {
                charged.iter().any(|c| {
                    attempt_of(invoice, c.idempotency_key.as_deref()) == Some(attempt.number)
                })
            });
            keyed.expect(made, || {
                format!(
                    "{invoice}: attempt {} recorded, never charged",
                    attempt.number
                )
            });
        }
    }
    let mut one_key = Check::new("3. every decision and resumption sent under one key");
    let mut changes: BTreeMap<String, HashSet<Option<String>>> = BTreeMap::new();
    for request in run.stripe.mutations() {
        if request.path.ends_with("/pay") || request.path.starts_with("/v1/billing_portal") {
            continue;
        }
        let change = format!("{} {} {}", request.method, request.path, request.body);
        changes
            .entry(change)
            .or_default()
            .insert(request.idempotency_key);
    }
    for (change, keys) in &changes {
        one_key.expect(keys.len() == 1 && !keys.contains(&None), || {
            format!("{change} sent under {keys:?}")
        });
    }

    let mut holds = Check::new("4. no case on hold without an open hold reason");
    for (n, case) in &cases {
        let story = &run.stories[*n];
        let open = |hold: &HoldBy| match hold {
            HoldBy::Dispute { dispute } => {
                story.twist == Twist::DisputeLeftOpen && *dispute == story.dispute
            }
            HoldBy::Stripe { subscription } => {
                run.dashboard_paused.contains(subscription)
                    && run
                        .stripe
                        .subscription(subscription)
                        .is_some_and(|s| s.pause_collection.is_some())
            }
            // Held by recoup itself for support (an attempt that never reached a result).
            HoldBy::Support { name } => name == "recoup",
        };
        let fine = (case.state == State::OnHold) != case.holds.is_empty()
            && case.holds.iter().all(|h| open(&h.by));
        holds.expect(fine, || {
            format!(
                "{}: {} with holds {:?} ({:?})",
                story.invoice,
                case.state.as_str(),
                case.holds,
                story.twist
            )
        });
    }

    // What the mail server received, not what the cases say: a final notice counts as delivered
    // once the customer's mailbox has it.
    let notified: HashSet<String> = run
        .sink
        .mails()
        .iter()
        .filter(|mail| mail.subject().starts_with("Final notice"))
        .flat_map(|mail| mail.to.clone())
        .collect();
    let mut noticed = Check::new("5. no decision after an undelivered final notice");
    for (n, case) in &cases {
        let Some(decision) = &case.decision else {
            continue;
        };
        let notice = case
            .nudged
            .iter()
            .find(|nudge| nudge.kind == NudgeKind::FinalNotice);
        let settled = notice.and_then(|nudge| nudge.settled_at());
        let fine = settled.is_some_and(|at| at <= decision.at)
            && notice.is_some_and(|nudge| {
                nudge.given_up_at.is_some() || notified.contains(&run.stories[*n].email)
            });
        noticed.expect(fine, || {
            format!(
                "{}: {} {} at {} after final notice {notice:?}",
                run.stories[*n].invoice,
                decision.action.as_str(),
                decision.outcome.as_str(),
                decision.at
            )
        });
    }
    vec![
        drained,
        failures_shown,
        awaited,
        once,
        keyed,
        one_key,
        holds,
        noticed,
    ]
}

/// The table of invariants and the run's figures, as printed.
async fn report(run: &Run, store: &RedisStore, checks: &[Check], knobs: &Knobs) -> String {
    let mut out = String::new();
    let width = checks.iter().map(|c| c.what.len()).max().unwrap_or(0);
    writeln!(
        out,
        "\nchaos run, seed {} (CHAOS_SEED={} replays it)",
        run.seed, run.seed
    )
    .unwrap();
    writeln!(
        out,
        "{:width$}  {:>8}  {:>10}",
        "invariant", "checked", "violations"
    )
    .unwrap();
    for check in checks {
        writeln!(
            out,
            "{:width$}  {:>8}  {:>10}",
            check.what,
            check.checked,
            check.violations.len()
        )
        .unwrap();
    }
    for check in checks {
        for violation in check.violations.iter().take(10) {
            writeln!(out, "  violation of {}: {violation}", &check.what[..2]).unwrap();
        }
    }
    let figures = &run.figures;
    let charges = run.stripe.charges();
    let mut states: BTreeMap<&str, usize> = BTreeMap::new();
    let (mut nudge_retries, mut given_up) = (0, 0);
    for story in run.stories.iter().take(run.born) {
        if let Ok(Some(case)) = store.load_case(&story.invoice).await {
            *states.entry(case.state.as_str()).or_default() += 1;
            nudge_retries += case.nudged.iter().map(|n| n.failed_tries).sum::<u32>();
            given_up += case
                .nudged
                .iter()
                .filter(|n| n.given_up_at.is_some())
                .count();
        }
    }
    let decisions = run
        .stripe
        .mutations()
        .iter()
        .filter(|r| !r.path.ends_with("/pay") && !r.path.starts_with("/v1/billing_portal"))
        .count();
    let injected = run.stripe.injected();
    let faults: Vec<String> = injected.iter().map(|(k, v)| format!("{k}: {v}")).collect();
    let rows = [
        (
            "length",
            format!(
                "{} min of faults, {} ticks, test clock moved {} days",
                knobs.minutes,
                figures.ticks,
                run.offset / DAY
            ),
        ),
        ("invoices failed", run.born.to_string()),
        (
            "events sent",
            format!(
                "{} ({} deliveries, {} answered other than 200 and delivered again, {} redelivered \
                 as Stripe does)",
                run.sent.len(),
                figures.deliveries,
                figures.refused,
                figures.redeliveries
            ),
        ),
        (
            "charges made",
            format!(
                "{} ({} paid)",
                charges.len(),
                charges.iter().filter(|c| c.paid).count()
            ),
        ),
        ("decision and resumption calls", decisions.to_string()),
        (
            "workers killed (SIGKILL)",
            format!(
                "{} ({} while a charge was in flight, in {} episodes)",
                figures.kills, figures.kills_mid_charge, figures.mid_charge_episodes
            ),
        ),
        ("Redis restarts", figures.redis_restarts.to_string()),
        ("Redis black holes", figures.black_holes.to_string()),
        (
            "Stripe faults injected",
            format!("{} ({})", injected.values().sum::<u64>(), faults.join(", ")),
        ),
        (
            "clock advances not answered 200",
            figures.advances_refused.to_string(),
        ),
        (
            "nudges",
            format!(
                "{} delivered, {} turned away (451) in {} busy spells, {} tried again later, {} \
                 given up",
                run.sink.mails().len(),
                run.sink.turned_away(),
                figures.busy_mail,
                nudge_retries,
                given_up
            ),
        ),
        ("cases by state", format!("{states:?}")),
    ];
    writeln!(out).unwrap();
    for (what, value) in rows {
        writeln!(out, "{what:31}  {value}").unwrap();
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_run_keeps_every_invariant() {
    let knobs = Knobs::from_env();
    let chaos = Duration::from_secs_f64(knobs.minutes * 60.0);
    println!(
        "chaos run: seed {} (CHAOS_SEED replays it), {} invoices, {} min of faults",
        knobs.seed, knobs.invoices, knobs.minutes
    );
    let mut rng = ChaCha8Rng::seed_from_u64(knobs.seed);
    let stories = (0..knobs.invoices)
        .map(|n| story(&mut rng, n, &knobs, chaos))
        .collect();

    let redis = TestRedis::start();
    let proxy = BlackHoleProxy::start(redis.port).await;
    let stripe = FakeStripe::start();
    let sink = SmtpSink::start();
    let mut env: Vec<(String, String)> = [
        ("REDIS_URL", proxy.url()),
        // What the processes log, kept for the cases that break an invariant.
        (
            "RUST_LOG",
            std::env::var("CHAOS_LOG").unwrap_or_else(|_| "warn".to_owned()),
        ),
        ("RECOUP_API_TOKENS", API_TOKENS.to_owned()),
        ("RECOUP_TEST_CLOCK", "1".to_owned()),
        ("RECOUP_POLICY", POLICY.to_owned()),
        ("RECOUP_SMTP_URL", sink.url()),
        ("RECOUP_EMAIL_FROM", "billing@acme.example".to_owned()),
        ("RECOUP_WORKER__LEASE_SECS", "3".to_owned()),
        ("RECOUP_STRIPE__TIMEOUT_MS", "1000".to_owned()),
        ("RECOUP_STRIPE__BACKOFF_MS", "50".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .chain(stripe.env().map(|(k, v)| (k.to_owned(), v)))
    .collect();
    let receiver_env: Vec<(&str, &str)> =
        env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let receivers = vec![
        RecoupProcess::serve_as(&redis, "receiver", &receiver_env).await,
        RecoupProcess::serve_as(&redis, "receiver", &receiver_env).await,
    ];
    env.extend(LINKS.map(|(k, v)| (k.to_owned(), v.to_owned())));
    let mut run = Run {
        rng,
        seed: knobs.seed,
        redis,
        proxy,
        stripe,
        sink,
        receivers,
        workers: Vec::new(),
        killed: Vec::new(),
        env,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap(),
        offset: 0,
        stories,
        born: 0,
        sent: Vec::new(),
        agenda: BinaryHeap::new(),
        actions: Vec::new(),
        invoice_seen: HashMap::new(),
        subscription_seen: HashMap::new(),
        dashboard_paused: HashSet::new(),
        restart_markers: Vec::new(),
        figures: Figures::default(),
    };
    run.start_worker().await;
    run.start_worker().await;
    run.faults(true);

    // The first episodes go through every kind once, in a random order; then they come at random.
    let mut first: Vec<Episode> = EPISODES.to_vec();
    first.shuffle(&mut run.rng);
    let start = Instant::now();
    while start.elapsed() < chaos {
        let tick = Instant::now();
        run.figures.ticks += 1;
        run.births(start.elapsed());
        run.deliver_due().await;
        // Not before the first retries come due (a day after the first failures).
        let episode =
            if run.figures.ticks > 4 && run.figures.ticks.is_multiple_of(3) && !first.is_empty() {
                first.pop()
            } else if run.rng.random_bool(0.25) {
                EPISODES.choose(&mut run.rng).copied()
            } else {
                None
            };
        match episode {
            // That episode moves the clock itself.
            Some(Episode::KillMidCharge) => run.episode(Episode::KillMidCharge).await,
            Some(episode) => {
                run.episode(episode).await;
                run.advance(STEP).await;
            }
            None => run.advance(STEP).await,
        }
        tokio::time::sleep(TICK.saturating_sub(tick.elapsed())).await;
    }
    // Every invoice fails, even on a machine too slow for the schedule.
    run.births(Duration::MAX);

    // Faults stop; the clock runs on until every invoice's dunning is through.
    run.faults(false);
    run.sink.busy_for(0);
    for _ in 0..SETTLE_DAYS {
        run.deliver_due().await;
        run.advance(DAY).await;
    }
    let store = RedisStore::connect(&RedisSettings {
        url: run.redis.url(),
        ..RedisSettings::default()
    })
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut settled = false;
    while Instant::now() < deadline {
        run.deliver_due().await;
        if run.quiet(&store).await {
            settled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let mut conn = run.redis.conn().await;
    for marker in &run.restart_markers {
        let kept: bool = redis::cmd("EXISTS")
            .arg(marker)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(kept, "seed {}: Redis lost {marker} in a restart", run.seed);
    }
    let checks = check(&run, &store).await;
    let report = report(&run, &store, &checks, &knobs).await;
    println!("{report}");
    println!("{}", suspects(&mut run, &store, &checks).await);
    assert!(
        settled,
        "seed {}: the run did not settle within 90 s{report}",
        run.seed
    );
    assert!(
        checks.iter().all(|c| c.violations.is_empty()),
        "seed {}: an invariant was broken{report}",
        run.seed
    );
}
