//! The evidence in Redis: one hash, `recoup:evidence`, whose fields are
//! `<reason>|<country or *>|<slot>|t` (tries) and `…|p` (payments) for a group on every card, and
//! `<reason>|<country or *>|<funding>|<slot>|t` and `…|p` for a group on cards of one funding (the
//! first release had only the former, which keep counting where they were). An attempt adds to at
//! most 48 fields (four groups) in one pipeline; a worker reads the hash whole every minute. Its
//! size is fixed by the groups seen: 166 fields a group, under 3 × 251 × 4 groups — a few
//! megabytes at the very most, whatever the number of attempts.

// keys, scripts and helpers of `mod.rs` in scope.
use super::*;
use crate::policy::Evidence;
use crate::policy::learning::{Counts, Funding, Group, Observation, Reason};

const EVIDENCE: &str = "recoup:evidence";

fn field(group: &Group, slot: usize, what: char) -> String {
    let country = group.country.as_deref().unwrap_or("*");
    let reason = group.reason.as_str();
    match group.funding {
        Some(funding) => format!("{reason}|{country}|{}|{slot}|{what}", funding.as_str()),
        None => format!("{reason}|{country}|{slot}|{what}"),
    }
}

/// The group, slot and column a field counts, when this release can read it.
fn parse_field(name: &str) -> Option<(Group, usize, &str)> {
    let parts: Vec<&str> = name.split('|').collect();
    let (reason, country, funding, slot, what) = match parts[..] {
        [reason, country, slot, what] => (reason, country, None, slot, what),
        [reason, country, funding, slot, what] => {
            (reason, country, Some(Funding::parse(funding)?), slot, what)
        }
        _ => return None,
    };
    let group = Group {
        reason: Reason::parse(reason)?,
        country: (country != "*").then(|| country.to_owned()),
        funding,
    };
    Some((group, slot.parse().ok()?, what))
}

impl Outcomes for RedisStore {
    async fn record_outcome(&self, observation: &Observation) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        for group in observation.groups() {
            for slot in std::iter::once(0).chain(observation.moment.slots) {
                pipe.cmd("HINCRBY")
                    .arg(EVIDENCE)
                    .arg(field(&group, slot, 't'))
                    .arg(1)
                    .ignore();
                if observation.paid {
                    pipe.cmd("HINCRBY")
                        .arg(EVIDENCE)
                        .arg(field(&group, slot, 'p'))
                        .arg(1)
                        .ignore();
                }
            }
        }
        let mut conn = self.conn.get();
        self.bounded(pipe.query_async::<()>(&mut conn)).await
    }

    async fn load_evidence(&self) -> Result<Evidence, StoreError> {
        let fields: Vec<(String, u32)> = self.query(redis::cmd("HGETALL").arg(EVIDENCE)).await?;
        let mut evidence = Evidence::default();
        for (name, count) in fields {
            // A field this release cannot read (a later one's, or damaged) is skipped, not fatal:
            // the evidence is advice, and the rest of it still counts.
            let Some((group, slot, what)) = parse_field(&name) else {
                continue;
            };
            let counts: &mut Counts = evidence.groups.entry(group).or_default();
            let column = match what {
                "t" => &mut counts.tries,
                "p" => &mut counts.paid,
                _ => continue,
            };
            if let Some(cell) = column.get_mut(slot) {
                *cell = count;
            }
        }
        Ok(evidence)
    }

    async fn replace_evidence(&self, evidence: &Evidence) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.atomic().cmd("DEL").arg(EVIDENCE).ignore();
        for (group, counts) in &evidence.groups {
            for (slot, (tries, paid)) in counts.tries.iter().zip(counts.paid).enumerate() {
                if *tries > 0 {
                    pipe.cmd("HSET")
                        .arg(EVIDENCE)
                        .arg(field(group, slot, 't'))
                        .arg(*tries)
                        .arg(field(group, slot, 'p'))
                        .arg(paid)
                        .ignore();
                }
            }
        }
        let mut conn = self.conn.get();
        self.bounded(pipe.query_async::<()>(&mut conn)).await
    }
}
