//! The store suite: every promise of `Store`, written once and run against one Redis, a three-node
//! Redis Cluster and the memory store alike.

use std::time::Duration;

use jiff::civil::date;
use jiff::{SignedDuration, Timestamp};
use recoup::dashboard::day::{self, Field, Money};
use recoup::dashboard::period::Period;
use recoup::policy::experiment::outcome::Contribution;
use recoup::policy::{Assignment, Case, Timer, TimerKind};
use recoup::store::{
    Arrival, Arrivals, EARLY_EVENTS_KEEP, EARLY_EVENTS_KEPT, EarlyEvents, Failure, Inbox, Ingest,
    MemoryStore, RedisStore, Saved, Session, Store, TIMER_SHARDS,
};

use crate::helpers::{TestCluster, TestRedis, event, open_case, redis_settings};

macro_rules! store_suite {
    ($($name:ident),* $(,)?) => {
        mod on_redis {
            $(
                #[tokio::test]
                async fn $name() {
                    let redis = super::TestRedis::start();
                    let store = super::RedisStore::connect(&super::redis_settings(&redis))
                        .await
                        .unwrap();
                    super::$name(&store).await;
                }
            )*
        }
        mod on_cluster {
            $(
                #[tokio::test]
                async fn $name() {
                    let cluster = super::TestCluster::start().await;
                    let settings = recoup::config::RedisSettings {
                        url: cluster.url(),
                        cluster: true,
                        ..Default::default()
                    };
                    let store = super::RedisStore::connect(&settings).await.unwrap();
                    super::$name(&store).await;
                }
            )*
        }
        mod in_memory {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(&super::MemoryStore::new()).await;
                }
            )*
        }
    };
}

store_suite!(
    ingest_dedupes_and_hands_each_entry_to_one_reader,
    a_pending_entry_is_reclaimed_only_after_its_lease,
    an_entry_is_dead_lettered_on_its_fifth_failure,
    saves_are_compare_and_set,
    cases_are_found_by_customer_and_subscription_newest_first,
    a_due_wakeup_is_claimed_once_until_its_lease_runs_out,
    the_clock_offset_only_moves_when_advanced,
    the_newest_event_is_remembered_by_how_it_came_and_the_backfill_mark_only_moves_forward,
    a_lease_has_one_holder_until_given_back_or_run_out,
    a_session_lasts_until_it_expires_or_is_closed,
    a_feedback_link_is_answered_once_until_its_mark_expires_or_is_given_back,
    a_mark_is_seen_and_what_waits_is_taken_when_due_by_one_taker,
    a_customers_early_events_are_kept_capped_each_once_in_stripes_order,
    a_final_case_counts_in_its_arm_once_and_a_later_recovery_once_more,
    a_final_case_counts_on_its_day_once_and_a_later_recovery_on_its_own_day,
);

const LONG: Duration = Duration::from_secs(60);

fn t(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + seconds).unwrap()
}

/// Claims from every shard, as a worker's round does; checks that each claim carries its case as
/// stored, and returns the invoice ids.
async fn claim_all<S: Store>(store: &S, now: Timestamp, lease: Duration) -> Vec<String> {
    let mut claimed = Vec::new();
    for shard in 0..TIMER_SHARDS {
        for claim in store.claim_due(shard, now, lease, 100).await.unwrap() {
            let stored = store.load_case(&claim.invoice_id).await.unwrap();
            assert!(
                stored.is_some(),
                "{} is claimed with its case",
                claim.invoice_id
            );
            assert_eq!(claim.case, Ok(stored));
            claimed.push(claim.invoice_id);
        }
    }
    claimed.sort();
    claimed
}

fn with_timer(mut case: Case, at: Timestamp) -> Case {
    case.timers = vec![Timer {
        at,
        kind: TimerKind::Retry { attempt: 2 },
    }];
    case
}

async fn ingest_dedupes_and_hands_each_entry_to_one_reader<S: Store>(store: &S) {
    let first = event("evt_one", "in_one");
    assert!(matches!(
        store.ingest(&first).await.unwrap(),
        Ingest::Stored { .. }
    ));
    assert_eq!(store.ingest(&first).await.unwrap(), Ingest::Duplicate);
    store.ingest(&event("evt_two", "in_two")).await.unwrap();

    let read = store
        .read_inbox("worker-a", 10, Duration::from_millis(100))
        .await
        .unwrap();
    let ids: Vec<_> = read.iter().map(|e| e.event.id.as_str()).collect();
    assert_eq!(ids, ["evt_one", "evt_two"]);
    assert_eq!(read[0].event, first, "the event comes back as it went in");

    let other = tokio::time::timeout(
        Duration::from_secs(5),
        store.read_inbox("worker-b", 10, Duration::ZERO),
    )
    .await
    .expect("a read that may not wait answers at once, even with nothing new")
    .unwrap();
    assert!(other.is_empty(), "entries already read go to nobody else");

    for entry in &read {
        store.ack(&entry.entry_id).await.unwrap();
    }
    let reclaimed = store
        .reclaim_inbox("worker-b", Duration::ZERO, 10, 100)
        .await
        .unwrap();
    assert!(reclaimed.is_empty(), "acknowledged entries are gone");
}

async fn a_pending_entry_is_reclaimed_only_after_its_lease<S: Store>(store: &S) {
    store.ingest(&event("evt_one", "in_one")).await.unwrap();
    let read = store
        .read_inbox("dead-worker", 10, Duration::from_millis(100))
        .await
        .unwrap();
    assert_eq!(read.len(), 1);

    let early = store
        .reclaim_inbox("survivor", LONG, 10, 100)
        .await
        .unwrap();
    assert!(early.is_empty(), "reclaimed before the lease ran out");

    let lease = Duration::from_millis(200);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let reclaimed = loop {
        let found = store
            .reclaim_inbox("survivor", lease, 10, 100)
            .await
            .unwrap();
        if !found.is_empty() {
            break found;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the entry never became reclaimable"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(reclaimed[0].event.id, "evt_one");
    assert_eq!(reclaimed[0].entry_id, read[0].entry_id);
}

async fn an_entry_is_dead_lettered_on_its_fifth_failure<S: Store>(store: &S) {
    store.ingest(&event("evt_poison", "in_one")).await.unwrap();
    let entry = store
        .read_inbox("worker", 1, Duration::from_millis(100))
        .await
        .unwrap()
        .remove(0);
    for failures in 1..5 {
        assert_eq!(
            store.fail(&entry, "boom", t(0)).await.unwrap(),
            Failure::WillRetry { failures }
        );
    }
    assert!(store.dead_letters(10).await.unwrap().is_empty());
    assert_eq!(
        store
            .fail(&entry, "case in_one is unreadable", t(5))
            .await
            .unwrap(),
        Failure::DeadLettered
    );

    let dead = store.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].entry_id, entry.entry_id);
    assert_eq!(dead[0].event_id, "evt_poison");
    assert_eq!(dead[0].event_type, "invoice.payment_failed");
    assert_eq!(dead[0].failures, 5);
    assert_eq!(dead[0].error, "case in_one is unreadable");
    assert_eq!(dead[0].at, t(5));
    assert!(dead[0].event.contains("evt_poison"), "{}", dead[0].event);
    let reclaimed = store
        .reclaim_inbox("worker", Duration::ZERO, 10, 100)
        .await
        .unwrap();
    assert!(reclaimed.is_empty(), "a dead letter is off the inbox");
}

async fn saves_are_compare_and_set<S: Store>(store: &S) {
    let case = open_case("in_cas", "cus_a", Some("sub_a"), t(0));
    assert_eq!(case.version, 0);
    assert!(store.load_case("in_cas").await.unwrap().is_none());
    assert_eq!(
        store.save_case(&case).await.unwrap(),
        Saved::Saved { version: 1 }
    );
    assert_eq!(
        store.save_case(&case).await.unwrap(),
        Saved::Conflict,
        "a second creator must not overwrite the first"
    );

    let mut loaded = store.load_case("in_cas").await.unwrap().unwrap();
    assert_eq!(loaded.version, 1);
    let stale = loaded.clone();
    loaded.amount_due = 1234;
    assert_eq!(
        store.save_case(&loaded).await.unwrap(),
        Saved::Saved { version: 2 }
    );
    assert_eq!(store.save_case(&stale).await.unwrap(), Saved::Conflict);

    let last = store.load_case("in_cas").await.unwrap().unwrap();
    assert_eq!(last.version, 2);
    assert_eq!(last.amount_due, 1234);
    let mut expected = loaded.clone();
    expected.version = 2;
    assert_eq!(last, expected, "the case round-trips whole");
}

async fn cases_are_found_by_customer_and_subscription_newest_first<S: Store>(store: &S) {
    for case in [
        open_case("in_old", "cus_a", Some("sub_a"), t(0)),
        open_case("in_new", "cus_a", Some("sub_b"), t(60)),
        open_case("in_other", "cus_b", Some("sub_a"), t(30)),
    ] {
        store.save_case(&case).await.unwrap();
    }
    let ids = |cases: Vec<Case>| cases.into_iter().map(|c| c.invoice_id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.cases_of_customer("cus_a").await.unwrap()),
        ["in_new", "in_old"]
    );
    assert_eq!(
        ids(store.cases_of_subscription("sub_a").await.unwrap()),
        ["in_other", "in_old"]
    );
    assert!(store.cases_of_customer("cus_x").await.unwrap().is_empty());
    assert!(
        store
            .cases_of_subscription("sub_x")
            .await
            .unwrap()
            .is_empty()
    );
}

async fn a_due_wakeup_is_claimed_once_until_its_lease_runs_out<S: Store>(store: &S) {
    let lease = Duration::from_secs(10);
    let soon = with_timer(open_case("in_soon", "cus_a", None, t(0)), t(100));
    let later = with_timer(open_case("in_later", "cus_a", None, t(0)), t(3_600));
    let never = open_case("in_never", "cus_a", None, t(0));
    for case in [&soon, &later, &never] {
        store.save_case(case).await.unwrap();
    }

    assert!(
        claim_all(store, t(99), lease).await.is_empty(),
        "not due yet"
    );
    assert_eq!(store.count_due(t(100)).await.unwrap(), 1);
    assert_eq!(claim_all(store, t(100), lease).await, ["in_soon"]);
    assert_eq!(
        store.count_due(t(100)).await.unwrap(),
        0,
        "claimed is not due"
    );
    assert!(
        claim_all(store, t(105), lease).await.is_empty(),
        "claimed once"
    );
    assert_eq!(
        claim_all(store, t(110), lease).await,
        ["in_soon"],
        "back when the lease ran out"
    );

    // Saving the case sets its real next wake-up, which ends the claim.
    let mut fired = store.load_case("in_soon").await.unwrap().unwrap();
    fired.timers.clear();
    store.save_case(&fired).await.unwrap();
    assert_eq!(
        claim_all(store, t(4_000), lease).await,
        ["in_later"],
        "a case without timers never wakes"
    );

    let mut moved = store.load_case("in_later").await.unwrap().unwrap();
    moved.timers[0].at = t(5_000);
    store.save_case(&moved).await.unwrap();
    assert!(claim_all(store, t(4_999), lease).await.is_empty());
    assert_eq!(claim_all(store, t(5_000), lease).await, ["in_later"]);
}

async fn the_clock_offset_only_moves_when_advanced<S: Store>(store: &S) {
    assert_eq!(store.clock_offset().await.unwrap(), 0);
    assert_eq!(store.advance_clock(60).await.unwrap(), 60);
    assert_eq!(
        store
            .advance_clock(SignedDuration::from_hours(72).as_secs())
            .await
            .unwrap(),
        60 + 259_200
    );
    assert_eq!(store.clock_offset().await.unwrap(), 259_260);
}

async fn the_newest_event_is_remembered_by_how_it_came_and_the_backfill_mark_only_moves_forward<
    S: Store,
>(
    store: &S,
) {
    assert_eq!(store.arrivals().await.unwrap(), Arrivals::default());
    let at = |id: &str, seconds: i64| {
        let mut e = event(id, "in_one");
        e.created = t(seconds).as_second();
        e
    };
    store.ingest(&at("evt_hook_new", 100)).await.unwrap();
    store.ingest(&at("evt_hook_old", 50)).await.unwrap();
    store
        .ingest_via(&at("evt_fetched", 80), Arrival::Backfill)
        .await
        .unwrap();
    // A duplicate and a made-up event say nothing about how Stripe reaches recoup.
    let duplicate = store
        .ingest_via(&at("evt_hook_new", 500), Arrival::Backfill)
        .await
        .unwrap();
    assert_eq!(duplicate, Ingest::Duplicate);
    store
        .ingest_via(&at("reconcile:in_one:paid", 900), Arrival::Reconcile)
        .await
        .unwrap();
    let arrivals = store.arrivals().await.unwrap();
    assert_eq!(arrivals.webhook, Some(t(100)));
    assert_eq!(arrivals.backfill, Some(t(80)));
    assert_eq!(arrivals.newest(), Some(t(100)));
    assert_eq!(arrivals.backfilled, None);

    store.mark_backfilled(t(300)).await.unwrap();
    store.mark_backfilled(t(200)).await.unwrap();
    assert_eq!(store.arrivals().await.unwrap().backfilled, Some(t(300)));
}

async fn a_lease_has_one_holder_until_given_back_or_run_out<S: Store>(store: &S) {
    let short = Duration::from_millis(300);
    assert!(store.lease("backfill", "worker-a", short).await.unwrap());
    assert!(!store.lease("backfill", "worker-b", LONG).await.unwrap());
    assert!(
        store.lease("other", "worker-b", LONG).await.unwrap(),
        "another lease is another lease"
    );
    // Extended by its holder, it outlives its first term.
    assert!(store.lease("backfill", "worker-a", LONG).await.unwrap());
    tokio::time::sleep(short * 2).await;
    assert!(!store.lease("backfill", "worker-b", LONG).await.unwrap());
    // Given back by someone else, it stays; by its holder, it is free.
    store.release("backfill", "worker-b").await.unwrap();
    assert!(!store.lease("backfill", "worker-b", LONG).await.unwrap());
    store.release("backfill", "worker-a").await.unwrap();
    assert!(store.lease("backfill", "worker-b", short).await.unwrap());
    // Not extended, it runs out by itself.
    tokio::time::sleep(short * 2).await;
    assert!(store.lease("backfill", "worker-a", LONG).await.unwrap());
}

async fn a_mark_is_seen_and_what_waits_is_taken_when_due_by_one_taker<S: Store>(store: &S) {
    assert!(!store.marked("card:1").await.unwrap());
    assert!(store.first_time("card:1", LONG).await.unwrap());
    assert!(store.marked("card:1").await.unwrap());
    assert!(!store.marked("card:2").await.unwrap(), "another mark");

    let now: Timestamp = "2026-12-15T12:00:00Z".parse().unwrap();
    let hour = SignedDuration::from_hours(1);
    store.defer("expiring", "cus_a", now).await.unwrap();
    store.defer("expiring", "cus_b", now + hour).await.unwrap();
    store.defer("expiring", "cus_c", now - hour).await.unwrap();
    store.defer("other", "cus_d", now).await.unwrap();
    // Deferred again, a member moves: once, to its new time.
    store
        .defer("expiring", "cus_a", now + hour * 2)
        .await
        .unwrap();
    assert_eq!(
        store.take_due("expiring", now, 10).await.unwrap(),
        ["cus_c"]
    );
    assert!(
        store
            .take_due("expiring", now, 10)
            .await
            .unwrap()
            .is_empty(),
        "taken once"
    );
    let later = now + hour * 3;
    let (first, second) = tokio::join!(
        store.take_due("expiring", later, 1),
        store.take_due("expiring", later, 10)
    );
    let mut taken = [first.unwrap(), second.unwrap()].concat();
    taken.sort();
    assert_eq!(taken, ["cus_a", "cus_b"], "each by one taker");
    assert_eq!(store.take_due("other", later, 10).await.unwrap(), ["cus_d"]);
}

async fn a_session_lasts_until_it_expires_or_is_closed<S: Store>(store: &S) {
    let ana = Session {
        name: "support-ana".into(),
        csrf: "csrf-of-ana".into(),
    };
    let bo = Session {
        name: "support-bo".into(),
        csrf: "csrf-of-bo".into(),
    };
    assert_eq!(store.session("key-ana").await.unwrap(), None);
    store.open_session("key-ana", &ana, LONG).await.unwrap();
    store
        .open_session("key-bo", &bo, Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(store.session("key-ana").await.unwrap(), Some(ana.clone()));
    assert_eq!(store.session("key-bo").await.unwrap(), Some(bo));

    // Signing out ends one session, and only that one.
    store.close_session("key-ana").await.unwrap();
    assert_eq!(store.session("key-ana").await.unwrap(), None);
    store.close_session("key-ana").await.unwrap();

    // A session is forgotten when its time runs out.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(store.session("key-bo").await.unwrap(), None);
}

async fn a_feedback_link_is_answered_once_until_its_mark_expires_or_is_given_back<S: Store>(
    store: &S,
) {
    let (link, other) = ([7_u8; 16], [8_u8; 16]);
    assert!(!store.answered(&link).await.unwrap());
    assert!(
        store.mark_answered(&link, LONG).await.unwrap(),
        "the first answer"
    );
    assert!(
        !store.mark_answered(&link, LONG).await.unwrap(),
        "a second one is refused"
    );
    assert!(store.answered(&link).await.unwrap());
    assert!(
        !store.answered(&other).await.unwrap(),
        "each link is its own"
    );

    // An answer that was not recorded gives its mark back; the link answers again.
    store.unmark_answered(&link).await.unwrap();
    assert!(!store.answered(&link).await.unwrap());
    assert!(store.mark_answered(&link, LONG).await.unwrap());

    // A mark is kept as long as its link works, then forgotten.
    assert!(
        store
            .mark_answered(&other, Duration::from_millis(200))
            .await
            .unwrap()
    );
    crate::helpers::wait_until("the mark to expire", Duration::from_secs(5), || async {
        !store.answered(&other).await.unwrap()
    })
    .await;
    assert!(store.mark_answered(&other, LONG).await.unwrap());
}

async fn a_customers_early_events_are_kept_capped_each_once_in_stripes_order<S: Store>(store: &S) {
    let created = |id: &str, at: i64| {
        let mut kept = event(id, "in_early");
        kept.created = at;
        kept
    };
    let ids = |events: Vec<recoup::event::Event>| -> Vec<String> {
        events.into_iter().map(|e| e.id).collect()
    };
    assert!(store.early_events("cus_a").await.unwrap().is_empty());
    // Kept out of Stripe's order, and one of them twice (an entry retried after a failure).
    for (id, at) in [("evt_later", 200), ("evt_sooner", 100), ("evt_later", 200)] {
        store
            .keep_early_event("cus_a", &created(id, at))
            .await
            .unwrap();
    }
    store
        .keep_early_event("cus_b", &created("evt_other", 150))
        .await
        .unwrap();
    assert_eq!(
        ids(store.early_events("cus_a").await.unwrap()),
        ["evt_sooner", "evt_later"]
    );
    assert_eq!(
        ids(store.early_events("cus_b").await.unwrap()),
        ["evt_other"]
    );

    // Only the newest are kept.
    for n in 0..EARLY_EVENTS_KEPT + 5 {
        let at = 1_000 + i64::try_from(n).unwrap();
        store
            .keep_early_event("cus_a", &created(&format!("evt_{n:02}"), at))
            .await
            .unwrap();
    }
    let kept = ids(store.early_events("cus_a").await.unwrap());
    assert_eq!(kept.len(), EARLY_EVENTS_KEPT);
    assert_eq!(kept.first().map(String::as_str), Some("evt_05"));
    assert_eq!(kept.last().map(String::as_str), Some("evt_24"));
}

/// Redis forgets a customer's early events by itself, a while after the last one kept.
#[tokio::test]
async fn redis_forgets_a_customers_early_events_after_their_keep() {
    let redis = TestRedis::start();
    let store = RedisStore::connect(&redis_settings(&redis)).await.unwrap();
    store
        .keep_early_event("cus_ttl", &event("evt_ttl", "in_ttl"))
        .await
        .unwrap();
    let ttl: i64 = redis::cmd("TTL")
        .arg(recoup::store::redis::early_key("cus_ttl"))
        .query_async(&mut redis.conn().await)
        .await
        .unwrap();
    let keep = i64::try_from(EARLY_EVENTS_KEEP.as_secs()).unwrap();
    assert!(ttl > keep - 5 && ttl <= keep, "kept {ttl} s, not {keep} s");
}

/// How Redis keeps the events it has seen: compact (one intset per bucket and week, no key per
/// event) and for at least the dedupe window.
#[tokio::test]
async fn redis_remembers_events_in_compact_sets_for_the_whole_dedupe_window() {
    let redis = TestRedis::start();
    let settings = redis_settings(&redis);
    let store = RedisStore::connect(&settings).await.unwrap();
    let events = 2_000;
    for n in 0..events {
        let stored = store
            .ingest(&event(&format!("evt_{n:024}"), "in_one"))
            .await
            .unwrap();
        assert!(matches!(stored, Ingest::Stored { .. }));
    }
    assert_eq!(
        store
            .ingest(&event("evt_000000000000000000000007", "in_one"))
            .await
            .unwrap(),
        Ingest::Duplicate
    );

    let mut conn = redis.conn().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("recoup:{inbox}:seen:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(
        keys.len() > 100 && keys.len() < events,
        "events are spread over buckets, several to a set: {} sets",
        keys.len()
    );
    let mut members = 0;
    for key in &keys {
        let encoding: String = redis::cmd("OBJECT")
            .arg("ENCODING")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(encoding, "intset", "{key}");
        members += redis::cmd("SCARD")
            .arg(key)
            .query_async::<usize>(&mut conn)
            .await
            .unwrap();
        let ttl: i64 = redis::cmd("TTL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .unwrap();
        let window = i64::try_from(settings.dedupe_ttl_secs).unwrap();
        assert!(
            ttl >= window - 5 && ttl <= window + 7 * 86_400,
            "{key} lives {ttl} s; the window is {window} s"
        );
    }
    assert_eq!(members, events, "one fingerprint per event");
}

async fn a_final_case_counts_in_its_arm_once_and_a_later_recovery_once_more<S: Store>(store: &S) {
    let arm = |name: &str| Assignment {
        experiment: "proof".to_owned(),
        arm: name.to_owned(),
        holdout: name == "holdout",
    };
    let paid = |amount: i64| Contribution {
        currency: "usd".to_owned(),
        recovered: Some(amount),
        attempts: 2,
        nudges: 1,
        lost: false,
    };
    assert!(
        store
            .count_final(&arm("quick"), "in_1", &paid(4900))
            .await
            .unwrap()
    );
    // The same final case saved again (a retried save, a later event): not counted again.
    assert!(
        !store
            .count_final(&arm("quick"), "in_1", &paid(4900))
            .await
            .unwrap()
    );
    assert!(
        store
            .count_final(&arm("quick"), "in_2", &paid(100))
            .await
            .unwrap()
    );
    // Paused first, recovered later: the outcome once, the recovery once more.
    let paused = Contribution {
        recovered: None,
        lost: false,
        currency: "eur".to_owned(),
        ..paid(0)
    };
    assert!(
        store
            .count_final(&arm("holdout"), "in_3", &paused)
            .await
            .unwrap()
    );
    let recovered = Contribution {
        recovered: Some(2500),
        ..paused.clone()
    };
    assert!(
        store
            .count_final(&arm("holdout"), "in_3", &recovered)
            .await
            .unwrap()
    );
    assert!(
        !store
            .count_final(&arm("holdout"), "in_3", &recovered)
            .await
            .unwrap()
    );

    let counts = store.arm_counts("proof").await.unwrap();
    let quick = &counts["quick"];
    assert_eq!(
        (
            quick.invoices,
            quick.recovered,
            quick.attempts,
            quick.nudges,
            quick.lost
        ),
        (2, 2, 4, 2, 0)
    );
    let usd = quick.revenue["usd"];
    assert_eq!((usd.invoices, usd.sum), (2, 5000));
    assert_eq!(usd.sum_squares, 4900.0 * 4900.0 + 100.0 * 100.0);
    let holdout = &counts["holdout"];
    assert_eq!((holdout.invoices, holdout.recovered), (1, 1));
    assert_eq!(holdout.revenue["eur"].sum, 2500);
    // Another experiment's counters are its own.
    assert!(store.arm_counts("other").await.unwrap().is_empty());
}

async fn a_final_case_counts_on_its_day_once_and_a_later_recovery_on_its_own_day<S: Store>(
    store: &S,
) {
    let (monday, tuesday, friday) = (date(2026, 11, 30), date(2026, 12, 1), date(2026, 12, 4));
    let ended = |state: &str| {
        vec![
            (Field::Invoices, 1),
            (Field::State(state.to_owned()), 1),
            (Field::Currency("usd".to_owned(), Money::Due), 4900),
        ]
    };
    let recovery = vec![
        (Field::Recovered, 1),
        (Field::Currency("usd".to_owned(), Money::Recovered), 4900),
        (Field::Days(3), 1),
    ];
    let recovered = day::Contribution {
        outcome: ended("recovered"),
        recovery: recovery.clone(),
    };
    assert!(store.count_day(monday, "in_1", &recovered).await.unwrap());
    // Saved again, even on a later day: not counted again.
    assert!(!store.count_day(monday, "in_1", &recovered).await.unwrap());
    assert!(!store.count_day(tuesday, "in_1", &recovered).await.unwrap());
    // Paused on Monday, recovered on Friday: the outcome on Monday, the recovery on Friday.
    let paused = day::Contribution {
        outcome: ended("paused"),
        recovery: Vec::new(),
    };
    assert!(store.count_day(monday, "in_2", &paused).await.unwrap());
    let paid_later = day::Contribution {
        outcome: ended("paused"),
        recovery,
    };
    assert!(store.count_day(friday, "in_2", &paid_later).await.unwrap());
    assert!(!store.count_day(friday, "in_2", &paid_later).await.unwrap());

    let week = Period {
        from: monday,
        to: friday,
    };
    let days = store.days(&week).await.unwrap();
    assert_eq!(days.keys().copied().collect::<Vec<_>>(), [monday, friday]);
    let (mon, fri) = (&days[&monday], &days[&friday]);
    assert_eq!(
        (mon.get(&Field::Invoices), mon.get(&Field::Recovered)),
        (2, 1)
    );
    assert_eq!(mon.get(&Field::State("paused".to_owned())), 1);
    assert_eq!(
        mon.get(&Field::Currency("usd".to_owned(), Money::Due)),
        9800
    );
    assert_eq!(
        (fri.get(&Field::Invoices), fri.get(&Field::Recovered)),
        (0, 1)
    );
    assert_eq!(fri.get(&Field::Days(3)), 1);
    // A period reads only its own days.
    let tuesday_only = Period {
        from: tuesday,
        to: tuesday,
    };
    assert!(store.days(&tuesday_only).await.unwrap().is_empty());
    assert_eq!(store.days_kept(), recoup::store::DASHBOARD_DAYS);
}
