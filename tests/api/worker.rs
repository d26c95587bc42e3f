//! Workers as processes: timers fire once across several workers, nothing a killed worker held is
//! lost, concurrent inputs never overwrite each other, poison entries end in the dead letters, and a
//! stopping worker leaves nothing half-claimed.

use std::time::Duration;

use futures::StreamExt;
use jiff::{SignedDuration, Timestamp};
use recoup::clock::Clock;
use recoup::config::StripeSettings;
use recoup::policy::{Case, Input, Timer, TimerKind};
use recoup::processor::stripe::Stripe;
use recoup::store::redis::{INBOX_GROUP, INBOX_STREAM, case_key, due_key};
use recoup::store::{Cases, Inbox, MemoryStore, RedisStore, TIMER_SHARDS, TestClock};
use recoup::worker::{Engine, Inputs};

use crate::fake_stripe::FakeStripe;
use crate::helpers::{
    RecoupProcess, SETTLE, STRIPE_KEY, TestRedis, event, metric_value, open_case, redis_settings,
    wait_until,
};

const LONG: Duration = Duration::from_secs(120);

/// Saves `count` cases named `<prefix>-<n>`, each with one retry timer due at `due`.
async fn seed_due_cases(store: &RedisStore, prefix: &str, count: usize, due: Timestamp) {
    let saved = futures::stream::iter(0..count)
        .map(|n| async move {
            let mut case = open_case(&format!("{prefix}-{n}"), &format!("cus_{n}"), None, due);
            case.timers = vec![Timer {
                at: due,
                kind: TimerKind::Retry { attempt: 2 },
            }];
            store.save_case(&case).await.unwrap();
        })
        .buffer_unordered(64)
        .count()
        .await;
    assert_eq!(saved, count);
}

/// Loads every case `<prefix>-0..count`.
async fn load_all(store: &RedisStore, prefix: &str, count: usize) -> Vec<Option<Case>> {
    futures::stream::iter(0..count)
        .map(|n| async move { store.load_case(&format!("{prefix}-{n}")).await.unwrap() })
        .buffered(64)
        .collect()
        .await
}

/// How many times the case's retry went to Stripe and came back: its results (a retry whose worker
/// died mid-call is made again, under the same key, and has one result).
fn times_fired(case: &Case) -> usize {
    case.timeline
        .iter()
        .filter(|e| {
            matches!(
                e.what.as_str(),
                "retry succeeded" | "attempt declined" | "retry skipped" | "attempt failed"
            )
        })
        .count()
}

/// How many wake-ups are in the due sets at all, claimed or not.
async fn pending_wakeups(redis: &TestRedis) -> u64 {
    let mut conn = redis.conn().await;
    let mut total = 0;
    for shard in 0..TIMER_SHARDS {
        let n: u64 = redis::cmd("ZCARD")
            .arg(due_key(shard))
            .query_async(&mut conn)
            .await
            .unwrap();
        total += n;
    }
    total
}

/// Wake-ups currently leased: timers that were due by `due_by` but now score a lease (minutes, not
/// the days a real retry waits) ahead, which only a claim does.
async fn leased_wakeups(redis: &TestRedis, due_by: Timestamp) -> u64 {
    let lease_horizon = Timestamp::now() + SignedDuration::from_hours(1);
    let mut conn = redis.conn().await;
    let mut total = 0;
    for shard in 0..TIMER_SHARDS {
        let n: u64 = redis::cmd("ZCOUNT")
            .arg(due_key(shard))
            .arg(format!("({}", due_by.as_millisecond()))
            .arg(lease_horizon.as_millisecond())
            .query_async(&mut conn)
            .await
            .unwrap();
        total += n;
    }
    total
}

/// Inbox entries read by some consumer and not yet acknowledged (0 before any worker read).
async fn pending_entries(redis: &TestRedis) -> u64 {
    let mut conn = redis.conn().await;
    let summary: redis::RedisResult<(u64, redis::Value, redis::Value, redis::Value)> =
        redis::cmd("XPENDING")
            .arg(INBOX_STREAM)
            .arg(INBOX_GROUP)
            .query_async(&mut conn)
            .await;
    summary.map_or(0, |s| s.0)
}

async fn inbox_empty(redis: &TestRedis) -> bool {
    redis.inbox_len().await == 0
}

#[tokio::test]
async fn two_worker_processes_fire_10_000_timers_exactly_once() {
    const TIMERS: usize = 10_000;
    let redis = TestRedis::start();
    let store = RedisStore::connect(&redis_settings(&redis)).await.unwrap();
    let workers = [
        RecoupProcess::serve_as(&redis, "worker", &[]).await,
        RecoupProcess::serve_as(&redis, "worker", &[]).await,
    ];
    // Due at once: the workers fire while the rest is still being seeded.
    seed_due_cases(&store, "in_timer", TIMERS, Timestamp::now()).await;

    let fired = || async {
        let mut total = 0;
        for worker in &workers {
            total += worker.counter("recoup_timers_fired_total").await;
        }
        total
    };
    wait_until("every timer to fire", LONG, || async {
        fired().await >= TIMERS as u64 && pending_wakeups(&redis).await == 0
    })
    .await;

    assert_eq!(fired().await, TIMERS as u64, "a timer fired twice");
    for (n, case) in load_all(&store, "in_timer", TIMERS)
        .await
        .iter()
        .enumerate()
    {
        let case = case.as_ref().unwrap_or_else(|| panic!("case {n} vanished"));
        assert_eq!(times_fired(case), 1, "case {n}: {:?}", case.timeline);
        assert!(case.timers.is_empty());
        assert_eq!(
            case.version, 3,
            "case {n}: saved once at seeding, then as under way before the charge and with its result"
        );
    }
}

#[tokio::test]
async fn a_worker_killed_holding_claims_loses_nothing_to_the_survivor() {
    const EVENTS: usize = 2_000;
    const TIMERS: usize = 2_000;
    let redis = TestRedis::start();
    let store = RedisStore::connect(&redis_settings(&redis)).await.unwrap();
    for n in 0..EVENTS {
        store
            .ingest(&event(&format!("evt_kill_{n}"), &format!("in_event-{n}")))
            .await
            .unwrap();
    }
    let seeded_at = Timestamp::now();
    seed_due_cases(&store, "in_timer", TIMERS, seeded_at).await;

    let lease = [("RECOUP_WORKER__LEASE_SECS", "2")];
    let doomed = RecoupProcess::serve_as(
        &redis,
        "worker",
        &[lease[0], ("RECOUP_WORKER__CONCURRENCY", "8")],
    )
    .await;
    // Freeze it mid-work until it is caught holding claims, then kill it outright.
    let mut held = (0, 0);
    for _ in 0..200 {
        doomed.signal("STOP");
        held = (
            pending_entries(&redis).await,
            leased_wakeups(&redis, seeded_at).await,
        );
        if held.0 > 0 && held.1 > 0 {
            break;
        }
        doomed.signal("CONT");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(
        held.0 > 0 && held.1 > 0,
        "never caught holding both kinds of claim: {held:?}"
    );
    doomed.signal("KILL");

    let _survivor = RecoupProcess::serve_as(&redis, "worker", &lease).await;
    wait_until("the survivor to finish everything", LONG, || async {
        inbox_empty(&redis).await
            && pending_entries(&redis).await == 0
            && leased_wakeups(&redis, seeded_at).await == 0
            && pending_wakeups(&redis).await == EVENTS as u64
    })
    .await;

    for (n, case) in load_all(&store, "in_event", EVENTS)
        .await
        .iter()
        .enumerate()
    {
        let case = case
            .as_ref()
            .unwrap_or_else(|| panic!("event {n} was lost"));
        assert!(case.has_seen(&format!("evt_kill_{n}")));
        assert_eq!(case.timers.len(), 1, "its first retry is scheduled");
    }
    for (n, case) in load_all(&store, "in_timer", TIMERS)
        .await
        .iter()
        .enumerate()
    {
        let case = case.as_ref().unwrap();
        assert_eq!(times_fired(case), 1, "timer case {n}: {:?}", case.timeline);
    }
}

/// One failure event of invoice `in_hot` whose attempt number is `n`.
fn hot_failure(n: u32) -> recoup::event::Event {
    let mut failure = event(&format!("evt_hot_{n}"), "in_hot");
    if let recoup::event::EventObject::Invoice(invoice) = &mut failure.object {
        invoice.attempt_count = n;
    }
    failure
}

/// What 1,000 failures of one invoice, applied in any interleaving, must leave.
fn assert_no_update_lost(case: &Case) {
    assert_eq!(case.attempts.len(), 1_000, "an update was lost");
    assert_eq!(case.timeline.len(), 1_000);
    assert_eq!(case.version, 1_000);
    assert!(
        case.timers.iter().all(|t| t.kind == TimerKind::Decide),
        "1,000 attempts are past the plan's cap, so no retry: {:?}",
        case.timers
    );
}

#[tokio::test]
async fn a_thousand_inputs_on_one_case_through_two_workers_lose_no_update() {
    let redis = TestRedis::start();
    let store = RedisStore::connect(&redis_settings(&redis)).await.unwrap();
    for n in 1..=1_000 {
        store.ingest(&hot_failure(n)).await.unwrap();
    }
    let workers = [
        RecoupProcess::serve_as(&redis, "worker", &[]).await,
        RecoupProcess::serve_as(&redis, "worker", &[]).await,
    ];
    wait_until("every input to be applied", LONG, || async {
        inbox_empty(&redis).await
    })
    .await;
    assert_no_update_lost(&store.load_case("in_hot").await.unwrap().unwrap());
    let mut conflicts = 0;
    for worker in &workers {
        conflicts += worker.counter("recoup_case_conflicts_total").await;
    }
    assert!(conflicts > 0, "the inputs never actually collided");
}

#[tokio::test]
async fn a_thousand_simultaneous_inputs_on_one_case_lose_no_update() {
    let store = MemoryStore::new();
    let clock = Clock::new(store.clone(), false);
    let policy =
        recoup::config::policy::load(std::path::Path::new(crate::helpers::RETRIES_ONLY), None)
            .unwrap();
    let fake = FakeStripe::start();
    let settings = StripeSettings {
        api_base: format!("http://{}", fake.addr),
        ..StripeSettings::default()
    };
    let stripe = Stripe::new(&STRIPE_KEY.into(), &settings).unwrap();
    let applied = futures::future::join_all((1..=1_000).map(|n| {
        let (store, clock, policy, stripe) = (&store, &clock, &policy, &stripe);
        async move {
            let input = Input::Event(Box::new(hot_failure(n)));
            let engine = Engine {
                store,
                policy,
                processor: Some(stripe),
                clock,
                lease: Some(std::time::Duration::from_secs(10)),
            };
            engine.apply("in_hot", Inputs::One(&input)).await
        }
    }))
    .await;
    for result in applied {
        result.expect("every input is applied");
    }
    assert_no_update_lost(&store.load_case("in_hot").await.unwrap().unwrap());
}

#[tokio::test]
async fn an_entry_failing_five_times_is_dead_lettered_counted_and_inspectable() {
    let redis = TestRedis::start();
    let store = RedisStore::connect(&redis_settings(&redis)).await.unwrap();
    let mut conn = redis.conn().await;
    // A case that cannot be read makes every attempt at its events fail.
    let _: () = redis::cmd("SET")
        .arg(case_key("in_broken"))
        .arg("7:not lz4")
        .query_async(&mut conn)
        .await
        .unwrap();
    store
        .ingest(&event("evt_broken", "in_broken"))
        .await
        .unwrap();
    // And an inbox entry that is not an event at all cannot be retried into shape.
    let _: String = redis::cmd("XADD")
        .arg(INBOX_STREAM)
        .arg("*")
        .arg("id")
        .arg("evt_garbage")
        .arg("type")
        .arg("invoice.paid")
        .arg("event")
        .arg("{not json")
        .query_async(&mut conn)
        .await
        .unwrap();
    store.ingest(&event("evt_fine", "in_fine")).await.unwrap();

    let worker =
        RecoupProcess::serve_as(&redis, "worker", &[("RECOUP_WORKER__LEASE_SECS", "1")]).await;
    wait_until("both to be dead-lettered", LONG, || async {
        store.dead_letters(10).await.unwrap().len() == 2
    })
    .await;

    let dead = store.dead_letters(10).await.unwrap();
    let broken = dead.iter().find(|d| d.event_id == "evt_broken").unwrap();
    assert_eq!(broken.failures, 5);
    assert!(broken.error.contains("unreadable"), "{}", broken.error);
    assert!(broken.event.contains("in_broken"));
    let garbage = dead.iter().find(|d| d.event_id == "evt_garbage").unwrap();
    assert_eq!(garbage.failures, 1, "unreadable entries are not retried");
    assert!(
        garbage.error.contains("unreadable inbox entry"),
        "{}",
        garbage.error
    );

    let metrics = worker.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            r#"recoup_dead_letters_total{type="invoice.payment_failed"}"#
        ),
        1,
        "{metrics}"
    );
    assert!(
        store.load_case("in_fine").await.unwrap().is_some(),
        "the rest flows on"
    );
    assert!(inbox_empty(&redis).await);
}

#[tokio::test]
async fn sigterm_finishes_cases_in_flight_and_leaves_nothing_claimed() {
    const TIMERS: usize = 3_000;
    let redis = TestRedis::start();
    let store = RedisStore::connect(&redis_settings(&redis)).await.unwrap();
    let mut worker = RecoupProcess::serve_as(&redis, "worker", &[]).await;
    let seeded_at = Timestamp::now();
    seed_due_cases(&store, "in_timer", TIMERS, seeded_at).await;
    wait_until("the worker to be busy", LONG, || async {
        worker.counter("recoup_timers_fired_total").await > 0
    })
    .await;

    worker.signal("TERM");
    let status = worker.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert_eq!(
        leased_wakeups(&redis, seeded_at).await,
        0,
        "a claim outlived its worker"
    );
    assert_eq!(pending_entries(&redis).await, 0);
    let mut conn = redis.conn().await;
    let consumers: Vec<redis::Value> = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(INBOX_STREAM)
        .arg(INBOX_GROUP)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        consumers.is_empty(),
        "the stopped worker's name was not retired"
    );
    // What it fired stays fired; the rest is still due, for the next worker.
    for case in load_all(&store, "in_timer", TIMERS)
        .await
        .into_iter()
        .flatten()
    {
        assert!(times_fired(&case) <= 1);
        assert_eq!(case.timers.is_empty(), times_fired(&case) == 1);
    }
    let stdout = worker.stdout();
    assert!(stdout.contains("nothing left in flight"), "{stdout}");
}

#[tokio::test]
async fn the_test_clock_is_shared_through_redis_and_fires_timers_on_advance() {
    let redis = TestRedis::start();
    let store = RedisStore::connect(&redis_settings(&redis)).await.unwrap();
    let clock_env = [("RECOUP_TEST_CLOCK", "1")];
    let _worker = RecoupProcess::serve_as(&redis, "worker", &clock_env).await;
    let in_three_days = Timestamp::now() + SignedDuration::from_hours(72);
    seed_due_cases(&store, "in_later", 50, in_three_days).await;

    let output = crate::helpers::recoup_command()
        .args(["clock", "advance", "3d"])
        .env("REDIS_URL", redis.url())
        .envs(clock_env)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("offset 259200 s"), "{stdout}");
    // The command returns once every timer that came due is claimed; firing follows at once.
    wait_until("the timers to fire", SETTLE, || async {
        load_all(&store, "in_later", 50)
            .await
            .iter()
            .all(|c| c.as_ref().is_some_and(|c| times_fired(c) == 1))
    })
    .await;
    assert_eq!(store.clock_offset().await.unwrap(), 259_200);
}

/// An idle inbox must not sit on the worker's budget: the inbox loop waits for new events holding a
/// single slot, so timers coming due get every other one. (It used to wait holding all of them, and
/// the timer loop got one slot a second.)
#[tokio::test]
async fn an_idle_inbox_leaves_the_budget_to_timers() {
    let redis = TestRedis::start();
    let store = RedisStore::connect(&redis_settings(&redis)).await.unwrap();
    let env = [
        ("RECOUP_TEST_CLOCK", "1"),
        ("RECOUP_WORKER__CONCURRENCY", "4"),
    ];
    let _worker = RecoupProcess::serve_as(&redis, "worker", &env).await;
    let in_an_hour = Timestamp::now() + SignedDuration::from_hours(1);
    let count = 400;
    seed_due_cases(&store, "in_soon", count, in_an_hour).await;

    // With four slots and 400 timers, claiming one batch a second would take minutes; the advance
    // gives up (and says so) after 30 s.
    let output = crate::helpers::recoup_command()
        .args(["clock", "advance", "2h"])
        .env("REDIS_URL", redis.url())
        .envs(env)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{} {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    wait_until("the timers to fire", SETTLE, || async {
        load_all(&store, "in_soon", count)
            .await
            .iter()
            .all(|c| c.as_ref().is_some_and(|c| times_fired(c) == 1))
    })
    .await;
}
