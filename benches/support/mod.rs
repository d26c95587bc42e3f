//! What both store benchmarks share: a connection to the Redis the bench script started, Stripe-shaped
//! ids, and open cases as full as the memory and timer targets assume.

#![allow(dead_code)] // each benchmark uses its own part of this module

use futures_util::future::BoxFuture;
use jiff::{SignedDuration, Timestamp};
use recoup::config::RedisSettings;
use recoup::event::wire::{Parsed, parse};
use recoup::event::{Event, EventObject};
use recoup::policy::expiring::CardHolder;
use recoup::policy::{
    Attempt, Case, Channel, ChargeResult, CustomerFacts, Declined, EndOrder, EndResult, Entry,
    Input, Nudge, NudgeKind, Outcome, Policy, Timer, TimerKind, decide,
};
use recoup::processor::{DisputedCharge, InvoicePage, Processor, ProcessorError};
use recoup::store::{Cases, RedisStore, Saved};

/// A processor answering in-process, so a benchmark measures recoup and Redis, not a network: every
/// charge is declined for insufficient funds, as most retries of a backlog are.
pub struct Declining;

impl Processor for Declining {
    fn charge<'a>(&'a self, _: &'a str, _: u32, _: Option<&'a str>) -> BoxFuture<'a, ChargeResult> {
        Box::pin(async {
            ChargeResult::Declined(Declined {
                code: Some("card_declined".to_owned()),
                decline_code: Some("insufficient_funds".to_owned()),
                ..Declined::default()
            })
        })
    }

    fn last_decline<'a>(
        &'a self,
        _: &'a str,
        _: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Option<Declined>, ProcessorError>> {
        Box::pin(async { Ok(None) })
    }

    fn customer<'a>(
        &'a self,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Option<CustomerFacts>, ProcessorError>> {
        Box::pin(async { Ok(None) })
    }

    fn card_holder<'a>(
        &'a self,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Option<CardHolder>, ProcessorError>> {
        Box::pin(async { Ok(None) })
    }

    fn invoice_page<'a>(
        &'a self,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Option<InvoicePage>, ProcessorError>> {
        Box::pin(async { Ok(None) })
    }

    fn portal_session<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Result<String, ProcessorError>> {
        Box::pin(async { Ok("https://billing.stripe.com/p/session/bench".to_owned()) })
    }

    fn end<'a>(&'a self, _: &'a EndOrder) -> BoxFuture<'a, EndResult> {
        Box::pin(async { EndResult::Done { already: false } })
    }

    fn resume<'a>(&'a self, _: &'a str, _: &'a str) -> BoxFuture<'a, EndResult> {
        Box::pin(async { EndResult::Done { already: false } })
    }

    fn disputed_charge<'a>(
        &'a self,
        _: &'a str,
    ) -> BoxFuture<'a, Result<Option<DisputedCharge>, ProcessorError>> {
        Box::pin(async { Ok(None) })
    }
}

/// The allocator the `recoup` binary runs with, so the figures are the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn redis_url() -> String {
    std::env::var("REDIS_URL").expect("run this through scripts/bench-*, which sets REDIS_URL")
}

/// The Redis the bench script started (`REDIS_URL`).
pub async fn store() -> RedisStore {
    let settings = RedisSettings {
        url: redis_url(),
        timeout_ms: 10_000,
        ..RedisSettings::default()
    };
    RedisStore::connect(&settings).await.expect("Redis answers")
}

/// A plain connection to the same Redis, for what the benchmarks read beside the store (`INFO`,
/// the due sets).
pub async fn raw() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .expect("a Redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("Redis answers")
}

/// Waits (up to ten minutes) until Redis is not rewriting its append-only file, and returns how long
/// that took. Seeding a million cases makes Redis rewrite a gigabyte of AOF in a forked child,
/// which on a small machine takes a core for tens of seconds; a measurement should say whether it
/// ran beside that or not.
pub async fn settle() -> std::time::Duration {
    let started = std::time::Instant::now();
    let mut conn = raw().await;
    while started.elapsed() < std::time::Duration::from_secs(600) {
        let info: String = redis::cmd("INFO")
            .arg("persistence")
            .query_async(&mut conn)
            .await
            .expect("Redis answers INFO");
        if info.contains("aof_rewrite_in_progress:0") && info.contains("aof_rewrite_scheduled:0") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    started.elapsed()
}

/// Saves a case that must be new, as both benchmarks seed Redis.
pub async fn save_new(store: &RedisStore, case: &Case) {
    assert_eq!(
        store.save_case(case).await.unwrap(),
        Saved::Saved { version: 1 }
    );
}

/// A Stripe-style id: the prefix, `_`, then 24 base-62 characters, as long as Stripe's own.
pub fn stripe_id(prefix: &str, n: u64) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    // splitmix64 seeded by prefix and number: ids look random, as Stripe's do, so they share no
    // more with each other (or the case dictionary) than real ones, and spread over the shards.
    let mut state = prefix
        .bytes()
        .fold(n, |h, b| h.rotate_left(8) ^ u64::from(b));
    let mut next = || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let tail: String = (0..24)
        .map(|_| char::from(ALPHABET[(next() % 62) as usize]))
        .collect();
    format!("{prefix}_{tail}")
}

/// Now, in whole milliseconds, as the scheduler's clock reads.
pub fn now() -> Timestamp {
    Timestamp::from_millisecond(Timestamp::now().as_millisecond()).unwrap()
}

/// The fixture's `invoice.payment_failed`, re-addressed to the given invoice and customer.
pub fn failed_event(
    event_id: &str,
    invoice_id: &str,
    customer_id: &str,
    subscription_id: &str,
) -> Event {
    let body = include_bytes!("../../fixtures/events/invoice.payment_failed.json");
    let Ok(Parsed::Acted(mut event)) = parse(body) else {
        panic!("the fixture is an event recoup acts on");
    };
    event.id = event_id.to_owned();
    if let EventObject::Invoice(invoice) = &mut event.object {
        invoice.id = Some(invoice_id.to_owned());
        invoice.customer = customer_id.to_owned();
        invoice.subscription = Some(subscription_id.to_owned());
    }
    *event
}

/// Open case number `n` as it stands after three failed attempts and two emails, waiting for its
/// fourth attempt at `due`: the shape the memory target is stated for. Returns the case and the ids
/// of the three `invoice.payment_failed` events that built it.
pub fn worked_case(n: u64, opened_at: Timestamp, due: Timestamp) -> (Case, [String; 3]) {
    let invoice_id = stripe_id("in", n);
    let customer_id = stripe_id("cus", n);
    let subscription_id = stripe_id("sub", n);
    let events = [1, 2, 3].map(|k| stripe_id("evt", n * 4 + k));
    let first = failed_event(&events[0], &invoice_id, &customer_id, &subscription_id);
    let mut case = decide(
        &Policy::default(),
        None,
        &Input::Event(Box::new(first)),
        opened_at,
    )
    .case
    .expect("a failure opens a case");
    let day = SignedDuration::from_hours(24);
    for (k, event_id) in events.iter().enumerate().skip(1) {
        let at = opened_at + day * (3 * k as i32);
        let number = k as u32 + 1;
        case.attempts.push(Attempt {
            at,
            number,
            outcome: Outcome::Failed,
            decline_code: Some("insufficient_funds".to_owned()),
            errors: 0,
        });
        case.record(Entry {
            at,
            what: "invoice.payment_failed".to_owned(),
            detail: format!(
                "attempt {number} failed: insufficient_funds (soft decline); next attempt in 3 days"
            ),
            event: Some(event_id.clone()),
        });
        case.nudges.push(Nudge {
            at: at + SignedDuration::from_mins(5),
            channel: Channel::Email,
            kind: NudgeKind::PaymentFailed,
            tier: number - 1,
        });
        case.record(Entry {
            at: at + SignedDuration::from_mins(5),
            what: "nudge sent".to_owned(),
            detail: format!("email payment_failed, tier {}", number - 1),
            event: None,
        });
    }
    case.timers = vec![Timer {
        at: due,
        kind: TimerKind::Retry { attempt: 4 },
    }];
    case.next_attempt_at = Some(due);
    (case, events)
}
