//! Timer firings per second, and how late timers fire with a million pending:
//! `scripts/bench-timers` runs this against a Redis of its own.
//!
//! 1. **Seed** `PENDING` open cases (as full as in the memory benchmark), each with one retry timer:
//!    a month out, and `BACKLOG` more already due.
//! 2. **Throughput:** once Redis has finished the AOF rewrite the seeding set off, one worker with
//!    the default settings drains the backlog; every timer fires a retry whose action is only
//!    counted (charging comes with the processor), so this measures the machinery: claim, load,
//!    decide, compare-and-set save with the next wake-up.
//! 3. **Lateness:** `RATE` more timers a second come due for `SECONDS` seconds while the rest stay
//!    pending, and a fresh worker fires them as they come due. Their due times are placed two days
//!    out and the test clock is moved to just before them (seeding takes longer than the first would
//!    wait); lateness is measured on that same clock, from due time to the firing's save.
//! 4. **Learning:** what a learned retry costs: one thread deciding a declined attempt (which plans
//!    the next retry) with learning on and evidence enough to use it, and with learning off, beside
//!    the time of one firing in phase 2.

// A test (and a benchmark) may unwrap: a panic there is the failure report.
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{StreamExt, stream};
use jiff::{SignedDuration, Timestamp};
use metrics::{
    Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit,
};
use recoup::clock::Clock;
use recoup::config::WorkerSettings;
use recoup::policy::{NudgePlan, Policy};
use recoup::store::redis::due_key;
use recoup::store::{RedisStore, TIMER_SHARDS, TestClock};
use recoup::telemetry::metric;
use recoup::worker::Worker;
use tokio::sync::oneshot;

const IN_FLIGHT: usize = 512;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let pending = setting("PENDING", 1_000_000);
    let backlog = setting("BACKLOG", 200_000);
    let rate = setting("RATE", 5_000);
    let seconds = setting("SECONDS", 20);
    let capture = Capture::install();
    let store = support::store().await;

    // 1. Seed.
    let started = Instant::now();
    let now = support::now();
    let month = SignedDuration::from_hours(24 * 30);
    seed(&store, 0..backlog + pending, |n| {
        if n < backlog {
            now - SignedDuration::from_secs(60) + SignedDuration::from_micros(n as i64)
        } else {
            now + month + SignedDuration::from_millis(n as i64)
        }
    })
    .await;
    let seeded = started.elapsed();
    println!(
        "seeded:     {} open cases with a timer in {:.1} s ({:.0}/s): {backlog} due, {pending} due in a month",
        backlog + pending,
        seeded.as_secs_f64(),
        (backlog + pending) as f64 / seeded.as_secs_f64()
    );

    // 2. Throughput: drain the backlog, once the AOF rewrite seeding set off is done.
    let settled = support::settle().await;
    println!(
        "settled:    Redis finished rewriting its AOF {:.1} s after seeding",
        settled.as_secs_f64()
    );
    let settings = WorkerSettings {
        concurrency: setting("CONCURRENCY", WorkerSettings::default().concurrency as u64) as usize,
        ..WorkerSettings::default()
    };
    let cpu_before = cpu_seconds().await;
    let (elapsed, fired) = run_worker(
        &store,
        false,
        &settings,
        &capture,
        backlog,
        Duration::from_secs(600),
    )
    .await;
    let cpu_after = cpu_seconds().await;
    assert_eq!(fired, backlog, "every due timer fired exactly once");
    println!(
        "throughput: {backlog} due timers fired in {:.2} s = {:.0} firings/s (concurrency {}, lease {} s)",
        elapsed.as_secs_f64(),
        backlog as f64 / elapsed.as_secs_f64(),
        settings.concurrency,
        settings.lease_secs
    );
    // Processor time, unlike wall time, does not depend on what else the machine runs: what one
    // firing costs the worker and Redis, and so what a rate would need of the machine's cores.
    let per_firing = |before: f64, after: f64| (after - before) / backlog as f64 * 1e6;
    println!(
        "cpu:        {:.0} µs of the worker's processor time a firing, {:.0} µs of Redis's",
        per_firing(cpu_before.0, cpu_after.0),
        per_firing(cpu_before.1, cpu_after.1)
    );
    capture.take_lateness();

    // 3. Lateness at a steady due rate, a million pending.
    let steady = rate * seconds;
    let first_due = support::now() + SignedDuration::from_hours(48);
    let first = backlog + pending;
    seed(&store, first..first + steady, |n| {
        first_due + SignedDuration::from_micros(((n - first) * 1_000_000 / rate) as i64)
    })
    .await;
    // Seeding took a while: move the clock to just before the first of them is due.
    let offset = first_due.duration_since(support::now()).as_secs() - 1;
    store.advance_clock(offset).await.unwrap();
    let waiting = pending_timers().await;
    let (_, fired) = run_worker(
        &store,
        true,
        &settings,
        &capture,
        steady,
        Duration::from_secs(seconds + 120),
    )
    .await;
    let mut late = capture.take_lateness();
    late.sort_by(f64::total_cmp);
    let at = |q: f64| late[((late.len() as f64 - 1.0) * q).round() as usize] * 1_000.0;
    println!(
        "lateness:   {fired} timers coming due at {rate}/s for {seconds} s, {waiting} pending: \
         p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        at(0.5),
        at(0.99),
        at(1.0)
    );
    assert_eq!(
        fired, steady,
        "every timer that came due fired exactly once"
    );

    // 4. What learning adds to an attempt: the next retry planned after a decline, by the
    //    evidence (scoring the candidate moments of three weeks) or by the static plan alone.
    let firing = elapsed.as_secs_f64() / backlog as f64;
    let (learned, planned) = (learning_cost(true), learning_cost(false));
    println!(
        "learning:   a declined attempt's next retry planned in {:.1} µs with learning on, \
         {:.1} µs off: learning adds {:.1} µs an attempt, {:.0}% of one timer firing ({:.0} µs)",
        learned * 1e6,
        planned * 1e6,
        (learned - planned) * 1e6,
        (learned - planned) / firing * 100.0,
        firing * 1e6
    );
}

/// Seconds of one thread to decide a declined attempt (which plans the next retry), on a case as
/// full as the seeded ones, with learning on and evidence enough to use it, or off.
fn learning_cost(learning: bool) -> f64 {
    const DECIDES: u32 = 20_000;
    let now = support::now();
    let (mut case, _) = support::worked_case(0, now, now);
    case.timers.clear();
    // A debit card in a country: a learned choice reads all three of its groups (the country's
    // debit cards, debit cards everywhere, everywhere).
    case.country = Some("US".to_owned());
    case.card = Some(recoup::policy::Card {
        fingerprint: "fp_bench".to_owned(),
        brand: "visa".to_owned(),
        funding: Some("debit".to_owned()),
        expires_at: None,
    });
    let declined = recoup::policy::Input::Charge(Box::new(recoup::policy::Charge {
        attempt: 4,
        at: now,
        result: recoup::policy::ChargeResult::Declined(recoup::policy::Declined {
            code: Some("card_declined".to_owned()),
            decline_code: Some("insufficient_funds".to_owned()),
            ..Default::default()
        }),
        fees: Vec::new(),
    }));
    let mut policy = Policy {
        learning: recoup::policy::Learning {
            enabled: learning,
            ..Default::default()
        },
        ..Policy::default()
    };
    // A population's worth of evidence about such declines over the moments of two months: more
    // than learning needs to choose.
    let mut evidence = recoup::policy::Evidence::default();
    let known = recoup::policy::decide(&policy, Some(case.clone()), &declined, now)
        .case
        .unwrap();
    for n in 0..50_000i64 {
        let at = now + SignedDuration::from_mins(n * 7);
        evidence.record(&known, at, n % 9 == 0);
    }
    policy.evidence = Arc::new(evidence);
    let started = Instant::now();
    for _ in 0..DECIDES {
        let decided = recoup::policy::decide(&policy, Some(case.clone()), &declined, now)
            .case
            .unwrap();
        assert_eq!(
            decided.retry_choice.is_some(),
            learning,
            "learning chooses the moment exactly when it is on"
        );
    }
    started.elapsed().as_secs_f64() / f64::from(DECIDES)
}

/// Saves cases `range`, case `n` with its timer due at `due(n)`.
async fn seed(store: &RedisStore, range: std::ops::Range<u64>, due: impl Fn(u64) -> Timestamp) {
    let opened_at = support::now() - SignedDuration::from_hours(24 * 7);
    stream::iter(range)
        .map(|n| {
            let (case, _) = support::worked_case(n, opened_at, due(n));
            let store = store.clone();
            async move {
                support::save_new(&store, &case).await;
            }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect::<()>()
        .await;
}

/// Runs a worker until it has fired `expected` timers (or `limit` passes); returns how long that
/// took and how many fired, counted after the worker has stopped, so a second firing would show.
async fn run_worker(
    store: &RedisStore,
    test_clock: bool,
    settings: &WorkerSettings,
    capture: &Capture,
    expected: u64,
    limit: Duration,
) -> (Duration, u64) {
    let before = capture.fired.load(Ordering::Acquire);
    // Retries only: a nudge's cost is its channels' (SMTP, HTTP), which this does not measure.
    let policy = Policy {
        nudges: NudgePlan {
            steps: Vec::new(),
            ..NudgePlan::default()
        },
        ..Policy::default()
    };
    let worker = Worker::new(
        store.clone(),
        policy,
        std::sync::Arc::new(support::Declining),
        std::sync::Arc::new(
            recoup::notify::Notifier::new(&Default::default(), &Default::default())
                .expect("the shipped templates load"),
        ),
        Clock::new(store.clone(), test_clock),
        settings.clone(),
    );
    let (stop, stopped) = oneshot::channel::<()>();
    let started = Instant::now();
    let running = tokio::spawn(worker.run(async move {
        let _ = stopped.await;
    }));
    while capture.fired.load(Ordering::Acquire) - before < expected && started.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    let _ = stop.send(());
    running.await.unwrap();
    (elapsed, capture.fired.load(Ordering::Acquire) - before)
}

/// Processor seconds used so far by this process (user and system, from `/proc/self/stat`, in the
/// kernel's 100 ticks a second) and by Redis's own process (`INFO cpu`).
async fn cpu_seconds() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    let mut conn = support::raw().await;
    let info: String = redis::cmd("INFO")
        .arg("cpu")
        .query_async(&mut conn)
        .await
        .unwrap();
    let redis = info
        .lines()
        .filter_map(|l| l.split_once(':'))
        .filter(|(k, _)| matches!(*k, "used_cpu_sys" | "used_cpu_user"))
        .map(|(_, v)| v.trim().parse::<f64>().unwrap())
        .sum();
    (ticks / 100.0, redis)
}

async fn pending_timers() -> u64 {
    let mut conn = support::raw().await;
    let mut total = 0;
    for shard in 0..TIMER_SHARDS {
        total += redis::cmd("ZCARD")
            .arg(due_key(shard))
            .query_async::<u64>(&mut conn)
            .await
            .unwrap();
    }
    total
}

/// A metrics recorder that keeps what the benchmark reads: the firing count and every lateness
/// sample (a Prometheus histogram would only give bucket bounds).
#[derive(Clone, Default)]
struct Capture {
    fired: Arc<AtomicU64>,
    lateness: Arc<Samples>,
}

#[derive(Default)]
struct Samples(Mutex<Vec<f64>>);

impl HistogramFn for Samples {
    fn record(&self, value: f64) {
        self.0.lock().unwrap().push(value);
    }
}

impl Capture {
    fn install() -> Self {
        let capture = Capture::default();
        metrics::set_global_recorder(capture.clone()).expect("the only recorder");
        capture
    }

    fn take_lateness(&self) -> Vec<f64> {
        std::mem::take(&mut self.lateness.0.lock().unwrap())
    }
}

impl Recorder for Capture {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        if key.name() == metric::TIMERS_FIRED {
            Counter::from_arc(self.fired.clone())
        } else {
            Counter::noop()
        }
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        if key.name() == metric::TIMER_LATENESS_SECONDS {
            Histogram::from_arc(self.lateness.clone())
        } else {
            Histogram::noop()
        }
    }
}
