//! `recoup simulate`: what a policy would recover, before it touches a real customer.
//!
//! The policy core is pure, so the very [`crate::policy::decide`] that runs in production can run a
//! population of failed invoices on a virtual clock: no Redis, no HTTP, no sleeping. The pieces:
//!
//! - [`population`] reads the JSON Lines population (`docs/reference/population.md`), customer by customer;
//!   [`synthetic`] makes one from a seed, with documented, sourced parameters;
//! - [`world`] plays Stripe and the customer for one customer's invoices under one policy, and
//!   reveals the truth only the way Stripe would;
//! - [`oracle`] says what a policy that knew the truth could recover: the yardstick;
//! - [`tally`] keeps sums only, so memory does not grow with the invoices simulated;
//! - [`report`] turns tallies into the printed table, the JSON and the [`chart`].
//!
//! [`run`] streams the population through every policy compared: policies that do not learn
//! side by side, a reader feeding chunks of customers to one simulating thread per core, each
//! keeping its own tallies, summed at the end (sums add up in any order, so every run of the same
//! population gives the same report); each learning policy on a virtual timeline of its own, a
//! virtual hour at a time.

pub mod chart;
pub mod command;
pub mod oracle;
pub mod population;
pub mod report;
pub mod synthetic;
pub mod tally;
pub mod tune;
pub mod world;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, mpsc};

use jiff::Timestamp;

use self::population::{FailedInvoice, PopulationError};
use self::tally::{Population, Tally};
use self::world::World;
use crate::policy::{Evidence, Policy};

pub use crate::policy::file::{BASELINE, BASELINE_PATH};

/// Customers handed to a simulating thread at a time: enough to make the hand-over cheap.
const CHUNK: usize = 256;

/// A policy under test: its name in the report, where it came from, and the policy itself.
#[derive(Debug, Clone)]
pub struct Contender {
    pub name: String,
    pub path: PathBuf,
    pub policy: Policy,
}

/// What a run found: the population and one tally per contender, in their order.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub population: Population,
    pub tallies: Vec<Tally>,
    /// What each learning contender had learned by the end, by its place among the contenders.
    pub learned: Vec<(usize, Evidence)>,
}

impl Outcome {
    fn empty(contenders: usize) -> Self {
        Self {
            population: Population::default(),
            tallies: vec![Tally::default(); contenders],
            learned: Vec::new(),
        }
    }

    fn add(&mut self, contenders: &[&Contender], invoices: &Arc<[FailedInvoice]>) {
        self.population.add(invoices);
        for (contender, tally) in contenders.iter().zip(&mut self.tallies) {
            let result = world::simulate(&contender.policy, Arc::clone(invoices));
            tally.add(&contender.policy, invoices, &result);
        }
    }

    fn merge(&mut self, other: &Outcome) {
        self.population.merge(&other.population);
        for (mine, theirs) in self.tallies.iter_mut().zip(&other.tallies) {
            mine.merge(theirs);
        }
    }
}

/// Runs every contender over the customers `population()` yields (in the order of their first
/// failure), and returns their tallies in the contenders' order.
///
/// A policy that does not learn sees each customer alone, so customers are handed out in chunks
/// to `threads` simulating threads (the calling thread reads), each keeping its own tallies,
/// summed at the end. A learning policy's choices depend on what earlier attempts of *other*
/// customers came to, so each one plays every customer on one virtual timeline of its own, a
/// virtual hour at a time, that hour's customers side by side ([`in_time_order`]; the threads are
/// shared among the learning policies): the same population gives the same report on any number
/// of threads. A bad line stops the run with its error; `each` sees every customer as the
/// first pass reads it (to write the population out, say) and may stop the run too.
pub fn run<I, P, F>(
    contenders: &[Contender],
    population: P,
    threads: usize,
    each: F,
) -> Result<Outcome, PopulationError>
where
    I: Iterator<Item = Result<Vec<FailedInvoice>, PopulationError>>,
    P: Fn() -> I + Sync,
    F: FnMut(&[FailedInvoice]) -> Result<(), PopulationError>,
{
    let (learning, alone): (Vec<_>, Vec<_>) = contenders
        .iter()
        .enumerate()
        .partition(|(_, c)| c.policy.learns());
    let alone_contenders: Vec<&Contender> = alone.iter().map(|(_, c)| *c).collect();
    // The cores shared among the learning policies: one policy alone gets them all.
    let per_learner = (threads / learning.len().max(1)).max(1);
    std::thread::scope(|scope| {
        let learners: Vec<_> = learning
            .iter()
            .map(|&(n, contender)| {
                let population = &population;
                (
                    n,
                    scope.spawn(move || in_time_order(contender, population(), per_learner)),
                )
            })
            .collect();
        let together = side_by_side(&alone_contenders, population(), threads, each);
        let mut tallies = vec![Tally::default(); contenders.len()];
        let mut learned = Vec::new();
        let mut found = together.map(|outcome| {
            for ((n, _), tally) in alone.iter().zip(outcome.tallies) {
                tallies[*n] = tally;
            }
            outcome.population
        });
        for (n, learner) in learners {
            match learner.join() {
                Ok(Ok((tally, evidence))) => {
                    tallies[n] = tally;
                    learned.push((n, evidence));
                }
                Ok(Err(e)) => found = found.and(Err(e)),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        found.map(|population| Outcome {
            population,
            tallies,
            learned,
        })
    })
}

/// The contenders that do not learn, customer by customer on `threads` threads.
fn side_by_side<I, F>(
    contenders: &[&Contender],
    customers: I,
    threads: usize,
    mut each: F,
) -> Result<Outcome, PopulationError>
where
    I: Iterator<Item = Result<Vec<FailedInvoice>, PopulationError>>,
    F: FnMut(&[FailedInvoice]) -> Result<(), PopulationError>,
{
    let (send, receive) = mpsc::sync_channel::<Vec<Arc<[FailedInvoice]>>>(threads.max(1) * 2);
    let receive = Arc::new(Mutex::new(receive));
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads.max(1))
            .map(|_| {
                let receive = receive.clone();
                scope.spawn(move || {
                    let mut outcome = Outcome::empty(contenders.len());
                    loop {
                        let chunk = receive.lock().map(|r| r.recv());
                        let Ok(Ok(chunk)) = chunk else {
                            return outcome;
                        };
                        for invoices in &chunk {
                            outcome.add(contenders, invoices);
                        }
                    }
                })
            })
            .collect();
        let read = (|| {
            let mut chunk = Vec::with_capacity(CHUNK);
            for customer in customers {
                let customer = customer?;
                each(&customer)?;
                chunk.push(Arc::from(customer));
                if chunk.len() == CHUNK {
                    // The workers only stop early by panicking, which the join below reports.
                    let _ = send.send(std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK)));
                }
            }
            let _ = send.send(chunk);
            Ok(())
        })();
        drop(send);
        let mut total = Outcome::empty(contenders.len());
        for worker in workers {
            match worker.join() {
                Ok(outcome) => total.merge(&outcome),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        read.map(|()| total)
    })
}

/// Plays every customer under a learning policy on one virtual timeline, a virtual hour at a
/// time: every customer with a moment in that hour plays it (and any other they have in it)
/// against the evidence as it stood when the hour began, and what their attempts came to is
/// folded into the evidence when the hour ends. Earlier outcomes shape later choices and never the
/// other way round; a new customer joins in the hour of their first failure. `customers` must come
/// in the order of their first failure ([`population::Customers`] reads them so).
///
/// Within an hour the customers do not depend on one another, so they are played on `threads`
/// threads, and their outcomes folded in the one order the hour's moments give: the same report
/// and evidence on any number of threads. Why an hour and not a day: on a population whose money
/// lasts hours, evidence a day stale recovered 2.6 points less of the oracle's revenue, an hour's
/// the same as folding every attempt at once (docs/design/learning.md#in-recoup-simulate).
/// Returns the tally and what was learned; the memory is that of the customers still being played.
pub fn in_time_order<I>(
    contender: &Contender,
    customers: I,
    threads: usize,
) -> Result<(Tally, Evidence), PopulationError>
where
    I: Iterator<Item = Result<Vec<FailedInvoice>, PopulationError>>,
{
    std::thread::scope(|scope| {
        let helpers: Vec<Helper> = (1..threads).map(|_| Helper::start(scope)).collect();
        let mut policy = Arc::new(contender.policy.clone());
        let mut tally = Tally::default();
        let mut worlds: Vec<Option<World>> = Vec::new();
        let mut free: Vec<usize> = Vec::new();
        let mut due: BinaryHeap<Reverse<(Timestamp, usize)>> = BinaryHeap::new();
        let mut customers = customers.peekable();
        let mut done = |world: World| {
            let invoices = Arc::clone(world.invoices());
            tally.add(&contender.policy, &invoices, &world.finish());
        };
        loop {
            // A customer with no invoice (or a bad line) has nothing to wait for: at once.
            let arrival = customers
                .peek()
                .map(|customer| first_failure(customer).unwrap_or(Timestamp::MIN));
            let next = due.peek().map(|&Reverse((at, _))| at);
            let Some(first) = arrival.into_iter().chain(next).min() else {
                let learned = Arc::unwrap_or_clone(policy).evidence;
                return Ok((tally, Arc::unwrap_or_clone(learned)));
            };
            let end = hour_after(first);
            while let Some(customer) =
                customers.next_if(|customer| first_failure(customer).is_none_or(|at| at < end))
            {
                let world = World::new(Arc::from(customer?));
                let Some(at) = world.next_at() else {
                    done(world);
                    continue;
                };
                let slot = free.pop().unwrap_or_else(|| {
                    worlds.push(None);
                    worlds.len() - 1
                });
                worlds[slot] = Some(world);
                due.push(Reverse((at, slot)));
            }
            let mut hour = Vec::new();
            while let Some(&Reverse((at, slot))) = due.peek() {
                if at >= end {
                    break;
                }
                due.pop();
                hour.extend(worlds[slot].take().map(|world| (slot, world)));
            }
            let played = play_hour(&policy, &helpers, hour, end);
            // The helpers hold the policy no more: the evidence changes in place.
            let evidence = Arc::make_mut(&mut Arc::make_mut(&mut policy).evidence);
            for (slot, mut world) in played {
                for observation in world.observed() {
                    evidence.add(&observation);
                }
                match world.next_at() {
                    Some(at) => {
                        due.push(Reverse((at, slot)));
                        worlds[slot] = Some(world);
                    }
                    None => {
                        done(world);
                        free.push(slot);
                    }
                }
            }
        }
    })
}

/// When a customer's first invoice failed; `None` for a customer with no invoice or a bad line.
fn first_failure(customer: &Result<Vec<FailedInvoice>, PopulationError>) -> Option<Timestamp> {
    customer.as_ref().ok()?.iter().map(|i| i.failed_at).min()
}

/// The first moment of the hour after the one `at` falls in.
fn hour_after(at: Timestamp) -> Timestamp {
    const HOUR: i64 = 3_600;
    let next = (at.as_second().div_euclid(HOUR) + 1).saturating_mul(HOUR);
    Timestamp::from_second(next).unwrap_or(Timestamp::MAX)
}

/// An hour's customers to play, the policy to play them under, and the hour's end.
type Hour = (Arc<Policy>, Vec<(usize, World)>, Timestamp);

/// A thread that plays its share of each hour's customers, for as long as the timeline runs.
struct Helper {
    hours: mpsc::SyncSender<Hour>,
    played: mpsc::Receiver<Vec<(usize, World)>>,
}

impl Helper {
    fn start<'scope>(scope: &'scope std::thread::Scope<'scope, '_>) -> Self {
        let (hours, to_play) = mpsc::sync_channel::<Hour>(1);
        let (done, played) = mpsc::sync_channel(1);
        scope.spawn(move || {
            for (policy, mut worlds, end) in to_play {
                play(&policy, &mut worlds, end);
                // Let go of the policy before handing back, so the evidence changes in place.
                drop(policy);
                if done.send(worlds).is_err() {
                    return;
                }
            }
        });
        Self { hours, played }
    }
}

/// Fewer customers than this in an hour are played on the calling thread alone: handing them out
/// would cost more than it saves.
const ALONE_BELOW: usize = 64;

/// Plays the hour's customers, a share each on the calling thread and on the helpers; returns them
/// in the order given, whoever played them.
fn play_hour(
    policy: &Arc<Policy>,
    helpers: &[Helper],
    mut hour: Vec<(usize, World)>,
    end: Timestamp,
) -> Vec<(usize, World)> {
    if helpers.is_empty() || hour.len() < ALONE_BELOW {
        play(policy, &mut hour, end);
        return hour;
    }
    let share = hour.len().div_ceil(helpers.len() + 1);
    let mut shares = Vec::with_capacity(helpers.len());
    while hour.len() > share {
        shares.push(hour.split_off(hour.len() - share));
    }
    let handed: Vec<&Helper> = helpers
        .iter()
        .zip(shares.into_iter().rev())
        .map(|(helper, worlds)| {
            // A helper stops only by panicking, which the scope reports when it ends.
            let _ = helper.hours.send((Arc::clone(policy), worlds, end));
            helper
        })
        .collect();
    play(policy, &mut hour, end);
    for helper in handed {
        match helper.played.recv() {
            Ok(worlds) => hour.extend(worlds),
            Err(_) => panic!("a simulating thread stopped"),
        }
    }
    hour
}

/// Plays each world's moments before `end`.
fn play(policy: &Policy, worlds: &mut [(usize, World)], end: Timestamp) {
    for (_, world) in worlds {
        while world.next_at().is_some_and(|at| at < end) {
            world.step(policy);
        }
    }
}

#[cfg(test)]
mod tests;
