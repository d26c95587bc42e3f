//! The worker: turns inbox entries and due timers into decided, saved cases.
//!
//! Two loops share one budget of [`WorkerSettings::concurrency`] cases in flight (beside them, the
//! daily expiring-card scan in [`expiring`], and the backfill and reconcile of what webhooks missed
//! in [`missed`], which only store events in the inbox):
//!
//! - the **inbox** loop ([`inbox`]) reads new entries through the consumer group, and every lease
//!   reclaims entries a dead worker left pending; an entry is acknowledged only once every case it
//!   touches is saved, and one that keeps failing is dead-lettered;
//! - the **timer** loop ([`timers`]) claims due wake-ups shard by shard, each under a lease, and
//!   feeds the case's due timers into `decide`.
//!
//! Both go through [`apply`]: load the case, decide, save with compare-and-set, and on a conflict do
//! it again on fresh state, so concurrent inputs for one case never overwrite each other.
//!
//! A due retry is charged *before* its case is saved, and the result saved with the timer's removal
//! in one write; so are an end decision (pause, cancel, write off) and resuming a paused collection.
//! A worker that dies in between leaves the timer in the case: it fires again after the lease, as
//! the same call with the same idempotency key, and Stripe answers what it answered the first time. Before the charge, the try is written to the card's history (compare-and-set
//! too), so two workers charging one card for different invoices cannot both spend the last try
//! a network allows. Within one process, inputs for the same case also take turns
//! ([`locks`]): compare-and-set keeps them correct, taking turns keeps a burst of events for one
//! invoice from turning into a storm of conflicts; only workers in different processes still race.
//!
//! Every loop runs [watched](loops::Loops): one that dies turns `/readyz` red. A third and fourth
//! loop run the daily expiring-card scan and the retention sweep.
//!
//! Shutdown: both loops stop claiming at once; the worker then waits for every case in flight (it
//! only ever claims as much as it can start immediately, so nothing claimed is left unstarted), and
//! retires its consumer name when it holds nothing pending. A worker killed outright leaves its
//! claims to run out; another worker takes them over one lease later.

mod card_paid;
mod engine;
mod expiring;
mod fault;
mod inbox;
mod learning;
mod locks;
pub mod loops;
mod missed;
mod newer_card;
mod nudges;
mod retention;
mod timers;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::clock::Clock;
use crate::config::WorkerSettings;
use crate::links::Links;
use crate::notify::Notifier;
use crate::policy::{Action, Case, Input, Policy};
use crate::processor::{Listings, Processor};
use crate::store::{Store, StoreError};

pub(crate) use self::engine::note_try;
pub use self::engine::{Decides, Engine, Inputs};

/// The longest a worker keeps retrying one input against a hot case before giving up on it for now
/// (the entry or timer then comes back after its lease).
const MAX_CONFLICTS: u32 = 1_000;

/// A worker process's scheduler and executors.
pub struct Worker<S> {
    store: S,
    /// The policy, with the evidence last read from the store ([`learning::refresh`]).
    policy: std::sync::RwLock<Arc<Policy>>,
    processor: Arc<dyn Processor>,
    /// Stripe's lists, for backfilling missed events and reconciling invoices; `None` where there
    /// is no Stripe to list (the demo, benchmarks).
    listings: Option<Arc<dyn Listings>>,
    notifier: Arc<Notifier>,
    clock: Clock<S>,
    settings: WorkerSettings,
    consumer: String,
    permits: Arc<Semaphore>,
    locks: locks::CaseLocks,
    /// Makes the update links nudges carry; `None` only where no nudge channel is on.
    links: Option<Arc<Links>>,
    loops: loops::Loops,
}

/// What [`apply`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    /// The case as saved, or `None` when the input changed nothing.
    pub case: Option<Case>,
    pub actions: Vec<Action>,
    /// Why the policy refused a support action (nothing was saved).
    pub refused: Option<String>,
}

/// Why an input could not be applied; the entry or timer stays claimed and comes back.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("case {0} kept changing under {MAX_CONFLICTS} attempts to save it")]
    Contended(String),
}

impl ApplyError {
    /// Whether the fault is passing (Redis down or slow, a hot case) rather than the input's own; such failures are retried without counting toward the dead letters, so an outage
    /// cannot push good events out of the inbox.
    pub fn is_passing(&self) -> bool {
        matches!(
            self,
            ApplyError::Store(
                StoreError::Timeout(_) | StoreError::Unreachable { .. } | StoreError::Newer(_)
            ) | ApplyError::Contended(_)
        )
    }
}

impl<S: Store> Worker<S> {
    pub fn new(
        store: S,
        policy: Policy,
        processor: Arc<dyn Processor>,
        notifier: Arc<Notifier>,
        clock: Clock<S>,
        settings: WorkerSettings,
    ) -> Self {
        let consumer = format!(
            "{}-{}-{}",
            hostname(),
            std::process::id(),
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        Self {
            permits: Arc::new(Semaphore::new(settings.concurrency)),
            store,
            policy: std::sync::RwLock::new(Arc::new(policy)),
            processor,
            listings: None,
            notifier,
            clock,
            settings,
            consumer,
            locks: locks::CaseLocks::default(),
            links: None,
            loops: loops::Loops::default(),
        }
    }

    /// Backfills missed events and reconciles invoices through `listings`, as often as the
    /// settings say ([`missed`]).
    pub fn with_listings(mut self, listings: Arc<dyn Listings>) -> Self {
        self.listings = Some(listings);
        self
    }

    /// Nudges about a card carry update links made by `links` (`<RECOUP_PUBLIC_URL>/fix/…`).
    pub fn with_links(mut self, links: Links) -> Self {
        self.links = Some(Arc::new(links));
        self
    }

    /// Reports this worker's loops (inbox, timers, daily scan, backfill) to `loops`, which
    /// `/readyz` reads.
    pub fn watched_by(mut self, loops: loops::Loops) -> Self {
        self.loops = loops;
        self
    }

    /// This worker's name in the inbox's consumer group.
    pub fn consumer(&self) -> &str {
        &self.consumer
    }

    /// Runs until `shutdown` completes, then finishes the cases in flight and returns.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let worker = Arc::new(self);
        let (stop, stopped) = watch::channel(false);
        let stopping = |stopped: &watch::Receiver<bool>| {
            let stopped = stopped.clone();
            move || *stopped.borrow()
        };
        let loops = &worker.loops;
        let mut tasks = vec![
            loops.watch(
                "inbox",
                stopping(&stopped),
                inbox::run(worker.clone(), stopped.clone()),
            ),
            loops.watch(
                "timers",
                stopping(&stopped),
                timers::run(worker.clone(), stopped.clone()),
            ),
            loops.watch(
                "expiring-card scan",
                stopping(&stopped),
                expiring::scan_daily(worker.clone(), stopped.clone()),
            ),
            loops.watch(
                "retention sweep",
                stopping(&stopped),
                retention::sweep(worker.clone(), stopped.clone()),
            ),
            loops.watch(
                "evidence refresh",
                stopping(&stopped),
                learning::refresh(worker.clone(), stopped.clone()),
            ),
        ];
        if let Some(stripe) = worker.listings.clone() {
            if let Some(interval) = worker.settings.backfill_interval() {
                let task =
                    missed::backfill(worker.clone(), stripe.clone(), interval, stopped.clone());
                tasks.push(loops.watch("backfill", stopping(&stopped), task));
            }
            if let Some(interval) = worker.settings.reconcile_interval() {
                let task = missed::reconcile(worker.clone(), stripe, interval, stopped.clone());
                tasks.push(loops.watch("reconcile", stopping(&stopped), task));
            }
        }
        tracing::info!(consumer = %worker.consumer, "worker started");
        shutdown.await;
        let _ = stop.send(true);
        for task in tasks {
            let _ = task.await;
        }
        // Every case in flight holds a permit; having them all back means all of it is finished.
        let all = u32::try_from(worker.settings.concurrency).unwrap_or(u32::MAX);
        let _ = worker.permits.acquire_many(all).await;
        if let Err(e) = worker.store.retire_consumer(&worker.consumer).await {
            tracing::warn!(consumer = %worker.consumer, "could not retire the consumer: {e}");
        }
        tracing::info!(consumer = %worker.consumer, "worker stopped; nothing left in flight");
    }

    /// Waits for `min` free slots (fewer if the budget is smaller), then takes as many more as are
    /// free, up to `max`.
    async fn slots(
        &self,
        min: usize,
        max: usize,
        stopped: &mut watch::Receiver<bool>,
    ) -> Vec<OwnedSemaphorePermit> {
        let min = min.clamp(1, self.settings.concurrency.max(1));
        let first = tokio::select! {
            permit = self.permits.clone().acquire_many_owned(u32::try_from(min).unwrap_or(1)) => permit,
            _ = stopped.wait_for(|s| *s) => return Vec::new(),
        };
        let Ok(mut first) = first else {
            return Vec::new();
        };
        let mut slots = Vec::with_capacity(max.max(min));
        while first.num_permits() > 1 {
            slots.extend(first.split(1));
        }
        slots.push(first);
        while slots.len() < max {
            match self.permits.clone().try_acquire_owned() {
                Ok(permit) => slots.push(permit),
                Err(_) => break,
            }
        }
        slots
    }

    /// The policy as it stands, with the evidence last read.
    fn policy(&self) -> Arc<Policy> {
        Arc::clone(&self.policy.read().unwrap_or_else(|p| p.into_inner()))
    }

    async fn apply(&self, invoice_id: &str, inputs: Inputs<'_>) -> Result<Applied, ApplyError> {
        let turn = self.locks.turn(invoice_id).await;
        // A case read before waiting for its turn is stale by the time the turn comes (the task
        // that had it may have charged and saved meanwhile): decide on a fresh read.
        let inputs = match inputs {
            Inputs::DueTimers(Some(_)) if turn.waited() => Inputs::DueTimers(None),
            inputs => inputs,
        };
        let policy = self.policy();
        let engine = Engine {
            store: &self.store,
            policy: &policy,
            processor: Some(self.processor.as_ref()),
            clock: &self.clock,
            lease: Some(self.settings.lease()),
        };
        engine.apply(invoice_id, inputs).await
    }

    /// Applies one input to a case and sends the nudges its decision asks for: what every input
    /// from outside a timer's firing does.
    async fn apply_one(&self, invoice_id: &str, input: &Input) -> Result<Applied, ApplyError> {
        let applied = self.apply(invoice_id, Inputs::One(input)).await?;
        if let Some(case) = &applied.case {
            nudges::send(self, case, &applied.actions).await;
        }
        Ok(applied)
    }
}

/// Runs `work`, calling `renew` every third of `lease` while it lasts (never more often than every
/// 100 ms): how a worker keeps what it claimed while it waits for something slower than a lease.
async fn renewing<T, R: Future<Output = ()>>(
    lease: Duration,
    work: impl Future<Output = T>,
    mut renew: impl FnMut() -> R,
) -> T {
    let every = (lease / 3).max(Duration::from_millis(100));
    let mut work = std::pin::pin!(work);
    loop {
        tokio::select! {
            biased;
            out = &mut work => return out,
            () = tokio::time::sleep(every) => renew().await,
        }
    }
}

/// What a caught panic said.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".to_owned())
}

/// Pauses between failed store calls of a loop, so a Redis outage is not a busy loop.
fn store_backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(50))
        .with_max_delay(Duration::from_secs(2))
        .with_jitter()
        .without_max_times()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processor::stripe::Stripe;
    use crate::store::MemoryStore;

    fn worker(concurrency: usize) -> Worker<MemoryStore> {
        let store = MemoryStore::new();
        let clock = Clock::new(store.clone(), false);
        let settings = WorkerSettings {
            concurrency,
            ..WorkerSettings::default()
        };
        let notifier = Notifier::new(&Default::default(), &Default::default()).unwrap();
        // The slot tests call no processor; one that would reach nothing stands in.
        let key = secrecy::SecretString::from("sk_test_unused");
        let processor = Stripe::new(&key, &Default::default()).unwrap();
        Worker::new(
            store,
            Policy::default(),
            Arc::new(processor),
            Arc::new(notifier),
            clock,
            settings,
        )
    }

    #[tokio::test]
    async fn slots_wait_for_the_minimum_then_take_what_is_free() {
        let worker = worker(8);
        let (_running, mut stopped) = watch::channel(false);
        let busy = worker.slots(7, 7, &mut stopped).await;
        assert_eq!(busy.len(), 7);

        // One slot free: a claim that wants at least two waits for a second.
        let wanting = tokio::time::timeout(
            Duration::from_millis(50),
            worker.slots(2, 256, &mut stopped),
        )
        .await;
        assert!(wanting.is_err(), "took fewer slots than the minimum");

        let mut busy = busy.into_iter();
        drop(busy.next());
        drop(busy.next());
        let taken = worker.slots(2, 256, &mut stopped).await;
        assert_eq!(taken.len(), 3, "the minimum and then every free slot");
        assert_eq!(worker.permits.available_permits(), 0);
        drop(taken);
        assert_eq!(
            worker.permits.available_permits(),
            3,
            "every slot goes back"
        );

        // A minimum above the whole budget is the budget, not a wait forever.
        drop(busy);
        assert_eq!(worker.slots(100, 100, &mut stopped).await.len(), 8);
    }
}
