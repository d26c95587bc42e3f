//! Redis memory per open case: `scripts/bench-memory` runs this against a Redis of its own.
//!
//! Stores `CASES` open cases the way the worker leaves them after three failed attempts and two
//! emails — the case itself (attempts, nudges, timeline, one pending timer), its wake-up entry, its
//! place in the customer and subscription indexes — plus the dedupe fingerprints of the three events that
//! built it, ingested and acknowledged through the inbox as the receiver and worker do. Reports
//! Redis's `used_memory` growth per case, and where it goes.

// A test (and a benchmark) may unwrap: a panic there is the failure report.
#![allow(clippy::unwrap_used)]

mod support;

use std::time::Instant;

use futures_util::{StreamExt, stream};
use jiff::SignedDuration;
use recoup::policy::learning::Observation;
use recoup::policy::{Card, Decline, DeclineClass};
use recoup::store::redis::{SEEN_PREFIX, case_key};
use recoup::store::{Inbox, Ingest, Outcomes};
use redis::AsyncCommands;

const IN_FLIGHT: usize = 256;

#[tokio::main]
async fn main() {
    let cases: u64 = std::env::var("CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let store = support::store().await;
    let mut raw = support::raw().await;

    // Warm up what exists once per deployment (scripts, the inbox stream and its group), so the
    // figure is what each case adds.
    let (warm, warm_events) = support::worked_case(u64::MAX / 2, support::now(), support::now());
    let _ = store
        .read_inbox("bench", 1, std::time::Duration::ZERO)
        .await
        .unwrap();
    support::save_new(&store, &warm).await;
    let _ = warm_events;
    let before = used_memory(&mut raw).await;

    let started = Instant::now();
    let opened_at = support::now() - SignedDuration::from_hours(24 * 7);
    let due = support::now() + SignedDuration::from_hours(48);
    stream::iter(0..cases)
        .map(|n| {
            let store = store.clone();
            async move {
                let (case, events) = support::worked_case(n, opened_at, due);
                for (k, event_id) in events.iter().enumerate() {
                    let event = support::failed_event(
                        event_id,
                        &case.invoice_id,
                        &case.customer_id,
                        case.subscription_id.as_deref().unwrap(),
                    );
                    let stored = store.ingest(&event).await.unwrap();
                    assert!(
                        matches!(stored, Ingest::Stored { .. }),
                        "event {k} of case {n}"
                    );
                }
                support::save_new(&store, &case).await;
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect::<()>()
        .await;
    let mut acked = 0;
    loop {
        let entries = store
            .read_inbox("bench", 1_000, std::time::Duration::ZERO)
            .await
            .unwrap();
        if entries.is_empty() {
            break;
        }
        acked += entries.len();
        stream::iter(entries)
            .map(|entry| {
                let store = store.clone();
                async move { store.ack(&entry.entry_id).await.unwrap() }
            })
            .buffer_unordered(IN_FLIGHT)
            .collect::<()>()
            .await;
    }
    assert_eq!(
        acked as u64,
        cases * 3,
        "every event went through the inbox"
    );
    let stored_in = started.elapsed();
    let after = used_memory(&mut raw).await;
    let per_case = (after - before) as f64 / cases as f64;

    // Where it goes: exact sizes of a sample of each kind of key, scaled up.
    let sample: Vec<u64> = (0..cases)
        .step_by((cases / 1_000).max(1) as usize)
        .collect();
    let mut case_bytes = 0u64;
    let mut encoded = 0u64;
    for &n in &sample {
        let (case, _) = support::worked_case(n, opened_at, due);
        let key = case_key(&case.invoice_id);
        encoded += raw.strlen::<_, u64>(&key).await.unwrap();
        case_bytes += memory_usage(&mut raw, &key).await;
    }
    let due_bytes = memory_of(&mut raw, "recoup:{t*}:due").await;
    let seen_bytes = memory_of(&mut raw, &format!("{SEEN_PREFIX}*")).await;
    let index_bytes = memory_of(&mut raw, "recoup:{ix*}:cases").await;
    let k = sample.len() as f64;
    let keys: u64 = redis::cmd("DBSIZE").query_async(&mut raw).await.unwrap();

    let n = cases as f64;
    let the_case = case_bytes as f64 / k;
    let indexes = index_bytes as f64 / n;
    let seen = seen_bytes as f64 / n;
    let wake_up = due_bytes as f64 / n;
    println!("cases:           {cases} open, each with 3 attempts, 2 nudges, 1 timer, 3 events");
    println!(
        "stored in:       {:.1} s ({:.0} cases/s with their events)",
        stored_in.as_secs_f64(),
        n / stored_in.as_secs_f64()
    );
    println!("redis keys:      {keys}");
    println!(
        "used_memory:     {:.1} MiB more",
        (after - before) as f64 / 1_048_576.0
    );
    println!("per open case:   {per_case:.0} bytes (target: 1024)");
    println!(
        "  the case:      {the_case:.0} bytes (its value {:.0} bytes of compressed JSON)",
        encoded as f64 / k
    );
    println!("  events seen:   {seen:.0} bytes (3 fingerprints in the dedupe sets)");
    println!("  indexes:       {indexes:.0} bytes (customer and subscription)");
    println!("  wake-up entry: {wake_up:.0} bytes");
    println!(
        "  rest:          {:.0} bytes (Redis's key table, allocator)",
        per_case - the_case - indexes - seen - wake_up
    );

    evidence(&store, &mut raw).await;
}

/// Learning's evidence: what counting attempts' outcomes adds to Redis, and how fast it goes. Its
/// size is fixed by the groups (reason × country × card funding) and their moments' slots, not by
/// the attempts.
async fn evidence(store: &recoup::store::RedisStore, raw: &mut redis::aio::MultiplexedConnection) {
    let attempts: u64 = std::env::var("ATTEMPTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(200_000);
    const COUNTRIES: u64 = 40;
    const FUNDINGS: [&str; 3] = ["credit", "debit", "prepaid"];
    let failed_at = support::now() - SignedDuration::from_hours(24 * 60);
    let (case, _) = support::worked_case(0, failed_at, support::now());
    // One case per reason learning counts: insufficient funds, another soft decline, ambiguous.
    let reasons: Vec<_> = [
        ("insufficient_funds", DeclineClass::Soft),
        ("processing_error", DeclineClass::Soft),
        ("do_not_honor", DeclineClass::Ambiguous),
    ]
    .into_iter()
    .map(|(code, class)| {
        let mut case = case.clone();
        case.decline = Some(Decline::of_code(code, class));
        case
    })
    .collect();
    let observations: Vec<Observation> = (0..attempts)
        .map(|n| {
            let mut case = reasons[(n % 3) as usize].clone();
            case.country = Some(format!("C{}", n / 3 % COUNTRIES));
            case.card = Some(Card {
                fingerprint: format!("fp_{n}"),
                brand: "visa".to_owned(),
                funding: Some(FUNDINGS[(n / 7 % 3) as usize].to_owned()),
                expires_at: None,
            });
            // Every hour of two months after the failure, over and over.
            let at = failed_at + SignedDuration::from_hours((n % (24 * 60)) as i64);
            Observation::of(&case, at, n % 7 == 0).expect("a retried decline is counted")
        })
        .collect();
    let before = used_memory(raw).await;
    let started = Instant::now();
    stream::iter(&observations)
        .map(|observation| async move { store.record_outcome(observation).await.unwrap() })
        .buffer_unordered(IN_FLIGHT)
        .collect::<()>()
        .await;
    let took = started.elapsed();
    let grown = used_memory(raw).await - before;
    let fields: u64 = redis::cmd("HLEN")
        .arg("recoup:evidence")
        .query_async(raw)
        .await
        .unwrap();
    let hash = memory_usage(raw, "recoup:evidence").await;
    println!(
        "evidence:        {attempts} attempts in {} groups (3 reasons × {COUNTRIES} countries and \
         all countries × 3 fundings and every card): {:.0} KiB in Redis ({fields} fields; used_memory {:.0} KiB more), counted \
         at {:.0} attempts/s ({:.1} µs each with {IN_FLIGHT} in flight); its size is fixed by the \
         groups, not the attempts",
        3 * (COUNTRIES + 1) * 4,
        hash as f64 / 1024.0,
        grown as f64 / 1024.0,
        attempts as f64 / took.as_secs_f64(),
        took.as_secs_f64() * 1e6 / attempts as f64
    );
}

async fn used_memory(conn: &mut redis::aio::MultiplexedConnection) -> i64 {
    let info: String = redis::cmd("INFO")
        .arg("memory")
        .query_async(conn)
        .await
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("INFO memory reports used_memory")
}

/// The memory of every key matching `pattern`.
async fn memory_of(conn: &mut redis::aio::MultiplexedConnection, pattern: &str) -> u64 {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(pattern)
        .query_async(conn)
        .await
        .unwrap();
    let mut total = 0;
    for key in &keys {
        total += memory_usage(conn, key).await;
    }
    total
}

async fn memory_usage(conn: &mut redis::aio::MultiplexedConnection, key: &str) -> u64 {
    let bytes: Option<u64> = redis::cmd("MEMORY")
        .arg("USAGE")
        .arg(key)
        .arg("SAMPLES")
        .arg(0)
        .query_async(conn)
        .await
        .unwrap();
    bytes.unwrap_or_else(|| panic!("{key} exists"))
}
