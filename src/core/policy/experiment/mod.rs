//! Experiments: proof on real customers that a policy does better than what would have happened
//! anyway.
//!
//! An experiment (`[[experiment]]` in the policy file) splits customers into arms by share. Each
//! arm is either a **holdout** — the plain baseline plan `recoup simulate` compares every policy
//! with (`config/baseline-3-5-7.toml`: a fixed 3/5/7-day schedule and an email with each retry) —
//! or an override of the policy: the `[retries]`, `[learning]`, `[nudges]` and `[end]` keys it
//! names, over whatever plan the case would have had without the experiment (the policy's own or
//! its segment's). A holdout replaces the plan whole, segment or not: it is the "what would have
//! happened anyway" the other arms are measured against.
//!
//! A customer's arm is a pure function of the experiment's key and their Stripe id ([`position`]):
//! the same customer lands in the same arm for every invoice, on every worker and after every
//! restart, with nothing stored to agree on. It is recorded on the case when it opens
//! ([`Assignment`]), so support reads which plan the customer is on and a later change of shares
//! does not move a case already in dunning.
//!
//! What each arm's cases came to is counted once each case's outcome is final ([`outcome`]), and
//! turned into a report with 95% confidence intervals against the holdout ([`report`], [`stats`]).

pub mod outcome;
pub mod report;
pub mod stats;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use super::{EndPlan, Learning, NudgePlan, Plan};

/// Everything a case is dunned by: what the policy, a segment or an experiment's arm sets.
#[derive(Debug, Clone, PartialEq)]
pub struct Treatment {
    pub plan: Plan,
    pub nudges: NudgePlan,
    pub ending: EndPlan,
    /// Set by an arm's `[learning]` (and the holdout's baseline); `None`: the policy's own
    /// `[learning]`, as it stands — so `recoup simulate --learn off` turns it off for such arms too.
    pub learning: Option<Learning>,
}

/// A running experiment: customers split into arms by share.
#[derive(Debug, Clone, PartialEq)]
pub struct Experiment {
    /// What the report and the cases call it.
    pub name: String,
    /// What customers are hashed with (the file's `key`, else the name): a new key reshuffles
    /// every customer, so a second experiment with other arms does not inherit the first's split.
    pub key: String,
    /// In the file's order; their shares add up to 1.
    pub arms: Vec<Arm>,
}

/// One arm of an experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct Arm {
    pub name: String,
    /// The share of customers in the arm, 0 to 1.
    pub share: f64,
    /// Whether the arm is the holdout: the baseline plan, which every other arm is compared with.
    pub holdout: bool,
    /// The arm's treatment of a case in no segment.
    pub own: Treatment,
    /// The arm's treatment of a case in each of the policy's segments, in their order.
    pub segments: Vec<Treatment>,
}

impl Arm {
    /// The arm's treatment of a case in segment `segment` (an index into the policy's segments).
    pub fn treatment(&self, segment: Option<usize>) -> &Treatment {
        segment
            .and_then(|n| self.segments.get(n))
            .unwrap_or(&self.own)
    }
}

/// Which arm of which experiment a case's customer is in, as recorded when the case opened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Assignment {
    pub experiment: String,
    pub arm: String,
    /// Whether the arm is the experiment's holdout (the baseline plan).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub holdout: bool,
}

impl Assignment {
    /// The timeline's sentence, for a support agent who wonders why this customer's emails and
    /// retries differ from another's.
    pub fn sentence(&self) -> String {
        let plan = if self.holdout {
            "the plain baseline plan it is compared with"
        } else {
            "its own variant of the plan"
        };
        format!(
            "the customer takes part in experiment {:?}: they are in arm {:?}, which gets {plan}, \
             for every invoice of theirs",
            self.experiment, self.arm
        )
    }
}

impl Experiment {
    /// The arm customer `customer_id` is in: the one whose slice of [0, 1), laid out by share in
    /// the arms' order, holds the customer's [`position`].
    pub fn assign(&self, customer_id: &str) -> &Arm {
        let at = position(&self.key, customer_id);
        let mut upto = 0.0;
        for arm in &self.arms {
            upto += arm.share;
            if at < upto {
                return arm;
            }
        }
        // Shares add up to 1 within rounding: a position in the rounding gap is the last arm's.
        self.arms.last().expect("an experiment has arms")
    }

    /// The assignment recorded on a case of `customer_id`.
    pub fn assignment(&self, customer_id: &str) -> Assignment {
        let arm = self.assign(customer_id);
        Assignment {
            experiment: self.name.clone(),
            arm: arm.name.clone(),
            holdout: arm.holdout,
        }
    }

    /// The holdout arm, if the experiment has one.
    pub fn holdout(&self) -> Option<&Arm> {
        self.arms.iter().find(|a| a.holdout)
    }
}

/// Where a customer falls in [0, 1) for an experiment keyed `key`: the first 53 bits of
/// SHA-256(length of key, key, customer id). A keyed hash, not std's `DefaultHasher`, whose output
/// may change with the Rust release: an assignment must survive upgrades as much as restarts. The
/// key's length goes first so that no key and id run into each other ("ab" + "c" ≠ "a" + "bc").
pub fn position(key: &str, customer_id: &str) -> f64 {
    let digest = Sha256::new()
        .chain_update((key.len() as u64).to_be_bytes())
        .chain_update(key)
        .chain_update(customer_id)
        .finalize();
    let head = digest.first_chunk().expect("a SHA-256 digest is 32 bytes");
    // 53 bits: every value exactly representable as an f64 in [0, 1).
    (u64::from_be_bytes(*head) >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn treatment() -> Treatment {
        Treatment {
            plan: Plan::default(),
            nudges: NudgePlan::default(),
            ending: EndPlan::default(),
            learning: None,
        }
    }

    fn experiment(shares: &[(&str, f64)]) -> Experiment {
        Experiment {
            name: "gentle".to_owned(),
            key: "gentle-2026".to_owned(),
            arms: shares
                .iter()
                .map(|&(name, share)| Arm {
                    name: name.to_owned(),
                    share,
                    holdout: name == "holdout",
                    own: treatment(),
                    segments: Vec::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_customer_is_always_in_the_same_arm() {
        let experiment = experiment(&[("holdout", 0.5), ("gentle", 0.5)]);
        for n in 0..200 {
            let customer = format!("cus_{n}");
            let first = experiment.assign(&customer).name.clone();
            // A copy, as another worker or a restarted process has it.
            assert_eq!(experiment.clone().assign(&customer).name, first);
        }
        // Pinned: a change of hash would silently move every customer of a running experiment.
        // Computed apart from this code, in Python: sha256(struct.pack('>Q', 11) +
        // b'gentle-2026' + b'cus_PinnedCustomer'), first 8 bytes big-endian >> 11, / 2**53.
        let pinned = position("gentle-2026", "cus_PinnedCustomer");
        assert_eq!(pinned, 0.997_935_428_905_720_8);
    }

    #[test]
    fn arms_get_their_share_of_customers() {
        let experiment = experiment(&[("holdout", 0.2), ("gentle", 0.3), ("firm", 0.5)]);
        let mut counts = [0u32; 3];
        let customers = 20_000;
        for n in 0..customers {
            let arm = experiment.assign(&format!("cus_{n:08}"));
            let i = experiment.arms.iter().position(|a| a == arm).unwrap();
            counts[i] += 1;
        }
        // Binomial: at 20000 customers one standard deviation is at most 0.35 percentage points;
        // 1.5 points is more than four of them.
        for (count, share) in counts.iter().zip([0.2, 0.3, 0.5]) {
            let seen = f64::from(*count) / f64::from(customers);
            assert!((seen - share).abs() < 0.015, "{counts:?}");
        }
    }

    #[test]
    fn another_key_reshuffles_customers() {
        let moved = (0..1000)
            .filter(|n| {
                let customer = format!("cus_{n}");
                (position("a", &customer) < 0.5) != (position("b", &customer) < 0.5)
            })
            .count();
        // Independent halves disagree about half the time.
        assert!((400..600).contains(&moved), "{moved}");
        assert_ne!(position("ab", "c"), position("a", "bc"));
    }

    #[test]
    fn the_timeline_says_which_arm_in_words() {
        let said = Assignment {
            experiment: "gentle".to_owned(),
            arm: "holdout".to_owned(),
            holdout: true,
        }
        .sentence();
        assert!(said.contains("arm \"holdout\""), "{said}");
        assert!(said.contains("baseline"), "{said}");
    }
}
