//! The in-memory store: the same promises as Redis, held in one process.
//!
//! For the modes that must run without Redis (`demo`, `simulate`) and for fast tests. Everything sits
//! behind one mutex that is never held across an `await`; a lease is measured on tokio's clock, so
//! tests that pause time drive it.
//!
//! One file (some 650 lines) on purpose: every role over one state struct and one lock, short
//! enough per role to read as the executable statement of what the Redis backend must do.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use jiff::Timestamp;
use jiff::civil::Date;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::{
    Answers, Arrival, Arrivals, Cards, Cases, Claim, Counters, DASHBOARD_DAYS, Dashboard,
    DeadLetter, EARLY_EVENTS_KEPT, EarlyEvents, Experiments, Failure, Health, Inbox, InboxEntry,
    Ingest, MAX_FAILURES, Outcomes, Parked, Saved, Session, Sessions, StoreError, TIMER_SHARDS,
    TestClock, Timers, codec, in_created_order, newest_first, shard_of,
};
use crate::dashboard::day::{self, DayCounts};
use crate::dashboard::period::Period;
use crate::event::Event;
use crate::policy::budget::CardHistory;
use crate::policy::experiment::outcome::{ArmCounts, Contribution};
use crate::policy::learning::Observation;
use crate::policy::{Assignment, Case, Evidence};

/// A store that lives as long as the process; clones share it.
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
    arrived: Arc<Notify>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemoryStore")
    }
}

#[derive(Default)]
struct Inner {
    evidence: Evidence,
    /// Experiment arms' counters by experiment and arm, and the (experiment, invoice, what) counted.
    arms: HashMap<String, BTreeMap<String, ArmCounts>>,
    arms_counted: HashSet<(String, String, &'static str)>,
    /// The dashboard's counters by day (kept for the life of the process), and the (invoice, what)
    /// counted.
    days: BTreeMap<Date, DayCounts>,
    days_counted: HashSet<(String, &'static str)>,
    seen: HashSet<String>,
    next_entry: u64,
    inbox: BTreeMap<u64, Slot>,
    failures: HashMap<u64, u32>,
    dead: Vec<DeadLetter>,
    next_dead: u64,
    wake_failures: HashMap<String, u32>,
    parked: BTreeMap<String, Parked>,
    /// Cases encoded as Redis holds them, so both stores round-trip the same bytes.
    cases: HashMap<String, Vec<u8>>,
    due: Vec<BTreeSet<(i64, String)>>,
    wake: HashMap<String, i64>,
    by_customer: HashMap<String, BTreeSet<String>>,
    by_subscription: HashMap<String, BTreeSet<String>>,
    clock_offset: i64,
    /// Card histories as Redis holds them.
    cards: HashMap<String, Vec<u8>>,
    /// Nudges per customer and day.
    nudge_counts: HashMap<(String, String), u64>,
    /// What was done once (kept for the life of the process).
    done: HashSet<String>,
    /// What waits to be done later, by list: each member and when.
    later: HashMap<String, HashMap<String, Timestamp>>,
    /// Events about each customer, newest last, capped (kept for the life of the process).
    early: HashMap<String, VecDeque<Event>>,
    arrivals: Arrivals,
    /// Leases by name: holder and until when.
    leases: HashMap<String, (String, Instant)>,
    /// The status page's sessions, each with when it expires.
    sessions: HashMap<String, (Session, Instant)>,
    /// Feedback links answered, by MAC, each with when its mark expires.
    answered: HashMap<[u8; 16], Instant>,
}

struct Slot {
    event: Event,
    pending: Option<(String, Instant)>,
    deliveries: u32,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere cannot leave this state half-written: every change below is a handful of
        // infallible map operations, so a poisoned lock still guards consistent data.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn entry_id(seq: u64) -> String {
    format!("{seq}-0")
}

fn seq_of(entry_id: &str) -> Option<u64> {
    entry_id.split_once('-').and_then(|(s, _)| s.parse().ok())
}

impl Inner {
    fn count_failure(
        &mut self,
        entry: &InboxEntry,
        error: &str,
        now: Timestamp,
        max: u32,
    ) -> Failure {
        let Some(seq) = seq_of(&entry.entry_id) else {
            return Failure::DeadLettered;
        };
        let failures = {
            let count = self.failures.entry(seq).or_insert(0);
            *count += 1;
            *count
        };
        if failures < max {
            return Failure::WillRetry { failures };
        }
        self.inbox.remove(&seq);
        self.failures.remove(&seq);
        self.next_dead += 1;
        self.dead.push(DeadLetter {
            id: format!("{}-0", self.next_dead),
            entry_id: entry.entry_id.clone(),
            event_id: entry.event.id.clone(),
            event_type: entry.event.kind.as_str().to_owned(),
            failures,
            deliveries: entry.deliveries,
            error: error.to_owned(),
            at: now,
            event: serde_json::to_string(&entry.event).expect("an Event always serialises"),
        });
        Failure::DeadLettered
    }

    /// Hands up to `max` entries that `eligible` accepts to `consumer`, as pending from now.
    fn hand_out(
        &mut self,
        consumer: &str,
        max: usize,
        eligible: impl Fn(&Slot) -> bool,
    ) -> Vec<InboxEntry> {
        let now = Instant::now();
        self.inbox
            .iter_mut()
            .filter(|(_, slot)| eligible(slot))
            .take(max)
            .map(|(&seq, slot)| {
                slot.pending = Some((consumer.to_owned(), now));
                slot.deliveries += 1;
                InboxEntry {
                    entry_id: entry_id(seq),
                    event: slot.event.clone(),
                    deliveries: slot.deliveries,
                }
            })
            .collect()
    }

    fn take_new(&mut self, consumer: &str, max: usize) -> Vec<InboxEntry> {
        self.hand_out(consumer, max, |slot| slot.pending.is_none())
    }

    fn cases_at(&self, ids: Option<&BTreeSet<String>>) -> Result<Vec<Case>, StoreError> {
        let mut cases = ids
            .into_iter()
            .flatten()
            .filter_map(|id| self.cases.get(id))
            .map(|stored| codec::decode(stored))
            .collect::<Result<Vec<_>, _>>()?;
        newest_first(&mut cases);
        Ok(cases)
    }
}

impl Health for MemoryStore {
    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

impl Inbox for MemoryStore {
    async fn ingest_via(&self, event: &Event, via: Arrival) -> Result<Ingest, StoreError> {
        let mut inner = self.lock();
        if !inner.seen.insert(event.id.clone()) {
            return Ok(Ingest::Duplicate);
        }
        let created = Timestamp::from_second(event.created).ok();
        let newest = match via {
            Arrival::Webhook => Some(&mut inner.arrivals.webhook),
            Arrival::Backfill => Some(&mut inner.arrivals.backfill),
            Arrival::Reconcile => None,
        };
        if let Some(newest) = newest {
            *newest = (*newest).max(created);
        }
        inner.next_entry += 1;
        let seq = inner.next_entry;
        inner.inbox.insert(
            seq,
            Slot {
                event: event.clone(),
                pending: None,
                deliveries: 0,
            },
        );
        drop(inner);
        self.arrived.notify_waiters();
        Ok(Ingest::Stored {
            entry_id: entry_id(seq),
        })
    }

    async fn arrivals(&self) -> Result<Arrivals, StoreError> {
        Ok(self.lock().arrivals)
    }

    async fn mark_backfilled(&self, through: Timestamp) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.arrivals.backfilled = inner.arrivals.backfilled.max(Some(through));
        Ok(())
    }

    async fn read_inbox(
        &self,
        consumer: &str,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<InboxEntry>, StoreError> {
        let arrived = self.arrived.notified();
        let entries = self.lock().take_new(consumer, max);
        if !entries.is_empty() {
            return Ok(entries);
        }
        let _ = tokio::time::timeout(wait, arrived).await;
        Ok(self.lock().take_new(consumer, max))
    }

    async fn reclaim_inbox(
        &self,
        consumer: &str,
        lease: Duration,
        max: usize,
        _give_up: u32,
    ) -> Result<Vec<InboxEntry>, StoreError> {
        let now = Instant::now();
        Ok(self.lock().hand_out(consumer, max, |slot| {
            slot.pending
                .as_ref()
                .is_some_and(|(_, since)| now.duration_since(*since) >= lease)
        }))
    }

    async fn ack(&self, entry_id: &str) -> Result<(), StoreError> {
        if let Some(seq) = seq_of(entry_id) {
            let mut inner = self.lock();
            inner.inbox.remove(&seq);
            inner.failures.remove(&seq);
        }
        Ok(())
    }

    async fn fail(
        &self,
        entry: &InboxEntry,
        error: &str,
        now: Timestamp,
    ) -> Result<Failure, StoreError> {
        Ok(self.lock().count_failure(entry, error, now, MAX_FAILURES))
    }

    async fn give_up(
        &self,
        entry: &InboxEntry,
        error: &str,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.lock().count_failure(entry, error, now, 0);
        Ok(())
    }

    async fn dead_letters(&self, max: usize) -> Result<Vec<DeadLetter>, StoreError> {
        Ok(self.lock().dead.iter().rev().take(max).cloned().collect())
    }

    async fn dead_letter(&self, id: &str) -> Result<Option<DeadLetter>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .dead
            .iter()
            .rev()
            .find(|d| d.id == id || d.event_id == id)
            .cloned())
    }

    async fn replay(&self, id: &str) -> Result<Option<String>, StoreError> {
        let mut inner = self.lock();
        let Some(at) = inner.dead.iter().position(|d| d.id == id) else {
            return Ok(None);
        };
        let dead = inner.dead.remove(at);
        let Ok(event) = serde_json::from_str::<Event>(&dead.event) else {
            inner.dead.insert(at, dead);
            return Err(StoreError::Corrupt(format!(
                "dead letter {id} holds no event"
            )));
        };
        inner.next_entry += 1;
        let seq = inner.next_entry;
        inner.inbox.insert(
            seq,
            Slot {
                event,
                pending: None,
                deliveries: 0,
            },
        );
        drop(inner);
        self.arrived.notify_waiters();
        Ok(Some(entry_id(seq)))
    }

    async fn renew_entry(&self, consumer: &str, entry_id: &str) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let slot = seq_of(entry_id).and_then(|seq| inner.inbox.get_mut(&seq));
        match slot.and_then(|slot| slot.pending.as_mut()) {
            Some((holder, since)) if holder == consumer => {
                *since = Instant::now();
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn retire_consumer(&self, _consumer: &str) -> Result<(), StoreError> {
        Ok(())
    }
}

impl Cases for MemoryStore {
    async fn load_case(&self, invoice_id: &str) -> Result<Option<Case>, StoreError> {
        self.lock()
            .cases
            .get(invoice_id)
            .map(|stored| codec::decode(stored))
            .transpose()
    }

    async fn save_case(&self, case: &Case) -> Result<Saved, StoreError> {
        let mut inner = self.lock();
        let stored_version = match inner.cases.get(&case.invoice_id) {
            Some(stored) => codec::decode(stored)?.version,
            None => 0,
        };
        if stored_version != case.version {
            return Ok(Saved::Conflict);
        }
        let mut saved = case.clone();
        saved.version += 1;
        let id = &case.invoice_id;
        inner.cases.insert(id.clone(), codec::encode(&saved));
        let shard = usize::from(shard_of(id));
        if inner.due.is_empty() {
            inner.due = vec![BTreeSet::new(); usize::from(TIMER_SHARDS)];
        }
        if let Some(old) = inner.wake.remove(id) {
            inner.due[shard].remove(&(old, id.clone()));
        }
        inner.wake_failures.remove(id);
        inner.parked.remove(id);
        if let Some(at) = saved.next_wake() {
            let ms = at.as_millisecond();
            inner.due[shard].insert((ms, id.clone()));
            inner.wake.insert(id.clone(), ms);
        }
        inner
            .by_customer
            .entry(case.customer_id.clone())
            .or_default()
            .insert(id.clone());
        if let Some(sub) = &case.subscription_id {
            inner
                .by_subscription
                .entry(sub.clone())
                .or_default()
                .insert(id.clone());
        }
        Ok(Saved::Saved {
            version: saved.version,
        })
    }

    async fn customers(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.lock().by_customer.keys().cloned().collect())
    }

    /// The memory store keeps every case for the life of the process.
    async fn forgotten_at(&self, _invoice_id: &str) -> Result<Option<Timestamp>, StoreError> {
        Ok(None)
    }

    async fn sweep_forgotten(&self) -> Result<u64, StoreError> {
        Ok(0)
    }

    async fn cases_of_customer(&self, customer_id: &str) -> Result<Vec<Case>, StoreError> {
        let inner = self.lock();
        inner.cases_at(inner.by_customer.get(customer_id))
    }

    async fn cases_of_subscription(&self, subscription_id: &str) -> Result<Vec<Case>, StoreError> {
        let inner = self.lock();
        inner.cases_at(inner.by_subscription.get(subscription_id))
    }
}

impl Cards for MemoryStore {
    async fn load_card(&self, fingerprint: &str) -> Result<CardHistory, StoreError> {
        self.lock().cards.get(fingerprint).map_or_else(
            || Ok(CardHistory::new(fingerprint)),
            |stored| codec::decode_card(stored),
        )
    }

    /// Keeps every card for the life of the store (a process): nothing here outlives it anyway.
    async fn save_card(&self, card: &CardHistory, _keep: Duration) -> Result<Saved, StoreError> {
        let mut inner = self.lock();
        let stored_version = match inner.cards.get(&card.fingerprint) {
            Some(stored) => codec::decode_card(stored)?.version,
            None => 0,
        };
        if stored_version != card.version {
            return Ok(Saved::Conflict);
        }
        let saved = CardHistory {
            version: card.version + 1,
            ..card.clone()
        };
        inner
            .cards
            .insert(card.fingerprint.clone(), codec::encode_card(&saved));
        Ok(Saved::Saved {
            version: saved.version,
        })
    }
}

impl Outcomes for MemoryStore {
    async fn record_outcome(&self, observation: &Observation) -> Result<(), StoreError> {
        self.lock().evidence.add(observation);
        Ok(())
    }

    async fn load_evidence(&self) -> Result<Evidence, StoreError> {
        Ok(self.lock().evidence.clone())
    }

    async fn replace_evidence(&self, evidence: &Evidence) -> Result<(), StoreError> {
        self.lock().evidence = evidence.clone();
        Ok(())
    }
}

impl Experiments for MemoryStore {
    async fn count_final(
        &self,
        arm: &Assignment,
        invoice_id: &str,
        contribution: &Contribution,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let mark = |what| (arm.experiment.clone(), invoice_id.to_owned(), what);
        let first = inner.arms_counted.insert(mark("final"));
        let recovery =
            contribution.recovered.is_some() && inner.arms_counted.insert(mark("recovered"));
        let counts = inner
            .arms
            .entry(arm.experiment.clone())
            .or_default()
            .entry(arm.arm.clone())
            .or_default();
        // The same two steps as the Redis script: the outcome once, the recovery once.
        if first {
            counts.add_outcome(contribution);
        }
        if let Some(amount) = contribution.recovered.filter(|_| recovery) {
            counts.add_recovery(&contribution.currency, amount);
        }
        Ok(first || recovery)
    }

    async fn arm_counts(
        &self,
        experiment: &str,
    ) -> Result<BTreeMap<String, ArmCounts>, StoreError> {
        Ok(self
            .lock()
            .arms
            .get(experiment)
            .cloned()
            .unwrap_or_default())
    }
}

impl Dashboard for MemoryStore {
    async fn count_day(
        &self,
        day: Date,
        invoice_id: &str,
        contribution: &day::Contribution,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let first = inner.days_counted.insert((invoice_id.to_owned(), "final"));
        let recovery = !contribution.recovery.is_empty()
            && inner
                .days_counted
                .insert((invoice_id.to_owned(), "recovered"));
        if !(first || recovery) {
            return Ok(false);
        }
        // The same two steps as the Redis script: the outcome once, the recovery once.
        let counts = inner.days.entry(day).or_default();
        let outcome = contribution.outcome.iter().filter(|_| first);
        let recovered = contribution.recovery.iter().filter(|_| recovery);
        for (field, n) in outcome.chain(recovered) {
            counts.add(field.clone(), *n);
        }
        Ok(true)
    }

    async fn days(&self, period: &Period) -> Result<BTreeMap<Date, DayCounts>, StoreError> {
        let inner = self.lock();
        Ok(inner
            .days
            .range(period.from..=period.to)
            .map(|(day, counts)| (*day, counts.clone()))
            .collect())
    }

    /// Everything is kept; a period is still bounded as Redis bounds it by default.
    fn days_kept(&self) -> u32 {
        DASHBOARD_DAYS
    }
}

impl Counters for MemoryStore {
    async fn count_nudge(&self, customer_id: &str, day: &str) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        let count = inner
            .nudge_counts
            .entry((customer_id.to_owned(), day.to_owned()))
            .or_default();
        *count += 1;
        Ok(*count)
    }

    async fn first_time(&self, key: &str, _keep: Duration) -> Result<bool, StoreError> {
        Ok(self.lock().done.insert(key.to_owned()))
    }

    async fn marked(&self, key: &str) -> Result<bool, StoreError> {
        Ok(self.lock().done.contains(key))
    }

    async fn defer(&self, list: &str, member: &str, at: Timestamp) -> Result<(), StoreError> {
        self.lock()
            .later
            .entry(list.to_owned())
            .or_default()
            .insert(member.to_owned(), at);
        Ok(())
    }

    async fn take_due(
        &self,
        list: &str,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let mut inner = self.lock();
        let Some(waiting) = inner.later.get_mut(list) else {
            return Ok(Vec::new());
        };
        let mut due: Vec<(Timestamp, String)> = waiting
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(member, at)| (*at, member.clone()))
            .collect();
        due.sort();
        due.truncate(limit);
        for (_, member) in &due {
            waiting.remove(member);
        }
        Ok(due.into_iter().map(|(_, member)| member).collect())
    }

    async fn lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut inner = self.lock();
        if let Some((held_by, until)) = inner.leases.get(name)
            && held_by != holder
            && *until > now
        {
            return Ok(false);
        }
        inner
            .leases
            .insert(name.to_owned(), (holder.to_owned(), now + ttl));
        Ok(true)
    }

    async fn release(&self, name: &str, holder: &str) -> Result<(), StoreError> {
        let mut inner = self.lock();
        if inner
            .leases
            .get(name)
            .is_some_and(|(held_by, _)| held_by == holder)
        {
            inner.leases.remove(name);
        }
        Ok(())
    }
}

impl EarlyEvents for MemoryStore {
    async fn keep_early_event(&self, customer_id: &str, event: &Event) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let kept = inner.early.entry(customer_id.to_owned()).or_default();
        kept.push_back(event.clone());
        if kept.len() > EARLY_EVENTS_KEPT {
            kept.pop_front();
        }
        Ok(())
    }

    async fn early_events(&self, customer_id: &str) -> Result<Vec<Event>, StoreError> {
        let kept = self.lock().early.get(customer_id).cloned();
        Ok(in_created_order(kept.unwrap_or_default().into()))
    }
}

impl Answers for MemoryStore {
    async fn mark_answered(&self, link: &[u8; 16], keep: Duration) -> Result<bool, StoreError> {
        let now = Instant::now();
        let mut inner = self.lock();
        // Expired marks go when a new one comes, as sessions do.
        inner.answered.retain(|_, until| *until > now);
        if inner.answered.contains_key(link) {
            return Ok(false);
        }
        inner.answered.insert(*link, now + keep);
        Ok(true)
    }

    async fn answered(&self, link: &[u8; 16]) -> Result<bool, StoreError> {
        let now = Instant::now();
        Ok(self
            .lock()
            .answered
            .get(link)
            .is_some_and(|until| *until > now))
    }

    async fn unmark_answered(&self, link: &[u8; 16]) -> Result<(), StoreError> {
        self.lock().answered.remove(link);
        Ok(())
    }
}

impl Sessions for MemoryStore {
    async fn open_session(
        &self,
        key: &str,
        session: &Session,
        keep: Duration,
    ) -> Result<(), StoreError> {
        let now = Instant::now();
        let mut inner = self.lock();
        // Expired sessions go when a new one comes, so the map holds no more than the live ones.
        inner.sessions.retain(|_, (_, until)| *until > now);
        inner
            .sessions
            .insert(key.to_owned(), (session.clone(), now + keep));
        Ok(())
    }

    async fn session(&self, key: &str) -> Result<Option<Session>, StoreError> {
        let now = Instant::now();
        Ok(self
            .lock()
            .sessions
            .get(key)
            .filter(|(_, until)| *until > now)
            .map(|(session, _)| session.clone()))
    }

    async fn close_session(&self, key: &str) -> Result<(), StoreError> {
        self.lock().sessions.remove(key);
        Ok(())
    }
}

impl Timers for MemoryStore {
    async fn claim_due(
        &self,
        shard: u16,
        now: Timestamp,
        lease: Duration,
        max: usize,
    ) -> Result<Vec<Claim>, StoreError> {
        let mut inner = self.lock();
        let Some(set) = inner.due.get_mut(usize::from(shard)) else {
            return Ok(Vec::new());
        };
        let now_ms = now.as_millisecond();
        let claimed: Vec<(i64, String)> = set
            .iter()
            .take_while(|(ms, _)| *ms <= now_ms)
            .take(max)
            .cloned()
            .collect();
        let until = now_ms + lease.as_millis() as i64;
        for entry in &claimed {
            set.remove(entry);
            set.insert((until, entry.1.clone()));
        }
        for (_, id) in &claimed {
            inner.wake.insert(id.clone(), until);
        }
        Ok(claimed
            .into_iter()
            .map(|(_, invoice_id)| Claim {
                case: inner
                    .cases
                    .get(&invoice_id)
                    .map(|stored| codec::decode(stored))
                    .transpose()
                    .map_err(|e| e.to_string()),
                invoice_id,
            })
            .collect())
    }

    async fn renew_claim(&self, invoice_id: &str, until: Timestamp) -> Result<(), StoreError> {
        let mut inner = self.lock();
        let until = until.as_millisecond();
        let Some(&old) = inner.wake.get(invoice_id).filter(|&&old| old < until) else {
            return Ok(());
        };
        let shard = usize::from(shard_of(invoice_id));
        inner.due[shard].remove(&(old, invoice_id.to_owned()));
        inner.due[shard].insert((until, invoice_id.to_owned()));
        inner.wake.insert(invoice_id.to_owned(), until);
        Ok(())
    }

    async fn fail_wake(
        &self,
        invoice_id: &str,
        error: &str,
        now: Timestamp,
    ) -> Result<Failure, StoreError> {
        let mut inner = self.lock();
        let failures = {
            let count = inner
                .wake_failures
                .entry(invoice_id.to_owned())
                .or_insert(0);
            *count += 1;
            *count
        };
        if failures < MAX_FAILURES {
            return Ok(Failure::WillRetry { failures });
        }
        inner.wake_failures.remove(invoice_id);
        if let Some(old) = inner.wake.remove(invoice_id) {
            let shard = usize::from(shard_of(invoice_id));
            inner.due[shard].remove(&(old, invoice_id.to_owned()));
        }
        inner.parked.insert(
            invoice_id.to_owned(),
            Parked {
                invoice_id: invoice_id.to_owned(),
                failures,
                error: error.to_owned(),
                at: now,
            },
        );
        Ok(Failure::DeadLettered)
    }

    async fn parked(&self) -> Result<Vec<Parked>, StoreError> {
        Ok(self.lock().parked.values().cloned().collect())
    }

    async fn unpark(&self, invoice_id: &str, now: Timestamp) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        if inner.parked.remove(invoice_id).is_none() {
            return Ok(false);
        }
        if inner.due.is_empty() {
            inner.due = vec![BTreeSet::new(); usize::from(TIMER_SHARDS)];
        }
        let ms = now.as_millisecond();
        let shard = usize::from(shard_of(invoice_id));
        if let Some(old) = inner.wake.insert(invoice_id.to_owned(), ms) {
            inner.due[shard].remove(&(old, invoice_id.to_owned()));
        }
        inner.due[shard].insert((ms, invoice_id.to_owned()));
        Ok(true)
    }

    async fn count_due(&self, now: Timestamp) -> Result<u64, StoreError> {
        let now_ms = now.as_millisecond();
        Ok(self
            .lock()
            .due
            .iter()
            .map(|set| set.iter().take_while(|(ms, _)| *ms <= now_ms).count() as u64)
            .sum())
    }
}

impl TestClock for MemoryStore {
    async fn clock_offset(&self) -> Result<i64, StoreError> {
        Ok(self.lock().clock_offset)
    }

    async fn advance_clock(&self, seconds: i64) -> Result<i64, StoreError> {
        let mut inner = self.lock();
        inner.clock_offset += seconds;
        Ok(inner.clock_offset)
    }
}
