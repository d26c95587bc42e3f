//! The policy file (`config/policy.toml`): turning its text into a [`Policy`], and saying exactly
//! what is wrong with it when it cannot be. Reading the file from disk is the shell's job
//! (`recoup::config::policy`); this module only ever sees text.
//!
//! Every section is optional and falls back to the built-in default, which the shipped file spells
//! out with the reasons for each number; `version` is required, so a file written for a later format
//! is refused instead of half-read. Unknown keys are errors, not ignored: a misspelt `sofft` that
//! silently kept the default would be a policy nobody chose. Every error names the file, the line,
//! the key and what is allowed, because the person reading it is about to change how customers are
//! charged.

use std::fmt;
use std::sync::Arc;

use jiff::SignedDuration;

use self::check::Reader;
use self::shape::Raw;
use super::duration::human;
use super::networks::Networks;
use super::{EndPlan, Policy};

/// The one format this release reads.
pub const FORMAT: i64 = 1;

/// What is wrong with a policy file, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyError {
    pub file: String,
    /// 1-based; `None` when the file could not be read at all.
    pub line: Option<usize>,
    /// The dotted key, `retries.soft[2]`; empty for a syntax error.
    pub key: String,
    pub problem: String,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": {}", self.key)?;
        }
        write!(f, ": {}", self.problem)
    }
}

/// Where the shipped policy file lives in a checkout, and the name errors in it are reported under.
pub const SHIPPED_PATH: &str = "config/policy.toml";

/// The policy file of the fixed "retry after 3, 5 and 7 days" schedule: what every `recoup
/// simulate` report compares with, and the plan of an experiment's holdout arm.
pub const BASELINE_PATH: &str = "config/baseline-3-5-7.toml";
/// The same file, built in, for a recoup run outside its source tree.
pub const BASELINE: &str = include_str!("../../../../config/baseline-3-5-7.toml");

/// The shipped `config/policy.toml`, built into the binary.
const SHIPPED: &str = include_str!("../../../../config/policy.toml");

impl Policy {
    /// The policy of the shipped `config/policy.toml`: the defaults, and its two segments that pause
    /// large and long-standing accounts instead of cancelling them.
    pub fn shipped() -> Self {
        parse(SHIPPED, SHIPPED_PATH).expect("the shipped policy file is valid")
    }
}

/// What a policy sets, on one line, as `recoup policy check` confirms it.
/// The feedback link's part of [`describe`]: whether nudges carry it, and each answer's reaction.
fn feedback(plan: &super::FeedbackPlan) -> String {
    if !plan.enabled {
        return "; feedback link: off".to_owned();
    }
    format!(
        "; feedback link: card_changed → {}, cant_pay_now → {}, want_to_cancel → {}",
        plan.card_changed.as_str(),
        plan.cant_pay_now.as_str(),
        plan.want_to_cancel.as_str()
    )
}

pub fn describe(policy: &Policy) -> String {
    let gaps = |gaps: &[SignedDuration]| {
        gaps.iter()
            .map(|&g| human(g))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let plan = &policy.plan;
    format!(
        "format {FORMAT}; soft declines retried after {}; ambiguous after {}; at most {} attempts \
         within {}; a new card tried after {}; {}; local {:02}:00–{:02}:00, paydays {:?}, jitter \
         {}; network rules: {} dated rows; segments: {}; nudges: {} ({} a case, {} a customer a day, local \
         {:02}:00–{:02}:00, {}, {}); at the end: {}",
        gaps(&plan.soft),
        gaps(&plan.ambiguous),
        plan.max_attempts,
        human(plan.within),
        human(plan.after_new_card),
        if plan.defer_to_stripe {
            "none while Stripe's own retries are on"
        } else {
            "retried even while Stripe's own retries are on"
        },
        plan.window.start_hour,
        plan.window.end_hour,
        plan.paydays,
        human(plan.jitter),
        policy.networks.rules.len(),
        if policy.segments.is_empty() {
            "none".to_owned()
        } else {
            policy
                .segments
                .iter()
                .map(|s| format!("{:?} ending with {}", s.name, ends(&s.ending)))
                .collect::<Vec<_>>()
                .join(", ")
        },
        policy
            .nudges
            .steps
            .iter()
            .map(|step| {
                let declines = if step.declines.is_empty() {
                    String::new()
                } else {
                    let classes: Vec<_> = step.declines.iter().map(|c| c.as_str()).collect();
                    format!(" for {} declines", classes.join("/"))
                };
                format!(
                    "{} {} after {}{declines}",
                    step.kind.as_str(),
                    step.tier,
                    human(step.after)
                )
            })
            .collect::<Vec<_>>()
            .join(", "),
        policy.nudges.per_case,
        policy.nudges.per_customer_per_day,
        policy.nudges.window.start_hour,
        policy.nudges.window.end_hour,
        if policy.nudges.once_per_subscription.is_zero() {
            "each invoice its own messages".to_owned()
        } else {
            format!(
                "one conversation per subscription for {}",
                human(policy.nudges.once_per_subscription)
            )
        },
        if policy.nudges.per_customer == 0 {
            "no budget per customer".to_owned()
        } else {
            format!(
                "a customer's notes and requests held back after {} messages within {}",
                policy.nudges.per_customer,
                human(policy.nudges.per_customer_within)
            )
        },
        ends(&policy.ending),
    ) + &feedback(&policy.feedback)
        + &policy.experiment.as_ref().map_or(String::new(), |e| {
            let arms: Vec<String> = e
                .arms
                .iter()
                .map(|a| {
                    format!(
                        "{:?} {}%{}",
                        a.name,
                        (a.share * 100.0 * 100.0).round() / 100.0,
                        if a.holdout {
                            " (holdout: the baseline plan)"
                        } else {
                            ""
                        }
                    )
                })
                .collect();
            format!("; experiment {:?}: {}", e.name, arms.join(", "))
        })
}

/// What an end plan does, in a few words.
fn ends(plan: &EndPlan) -> String {
    let after = human(plan.grace);
    if plan.exhausted == plan.no_new_card {
        format!("{} ({after} after the final notice)", plan.exhausted.how())
    } else {
        format!(
            "{} after exhausted retries, {} after a decline no retry fixes ({after} after the \
             final notice)",
            plan.exhausted.how(),
            plan.no_new_card.how()
        )
    }
}

/// Validates policy `text`, naming it `file` in errors, under the built-in network rules.
pub fn parse(text: &str, file: &str) -> Result<Policy, PolicyError> {
    parse_with(text, file, Networks::built_in())
}

/// Validates policy `text` under `networks` (a networks file of the operator's own); a policy
/// file's own `[[network]]` rows are added to them.
pub fn parse_with(text: &str, file: &str, networks: Arc<Networks>) -> Result<Policy, PolicyError> {
    let at = locator(text, file);
    let raw: Raw = shaped(text, &at)?;
    Reader { at: &at }.policy(raw, networks)
}

/// Makes the error of a value at `span` of `text`, naming its line.
fn locator<'a>(
    text: &'a str,
    file: &'a str,
) -> impl Fn(std::ops::Range<usize>, &str, String) -> PolicyError + 'a {
    move |span, key, problem| PolicyError {
        file: file.to_owned(),
        line: Some(text[..span.start.min(text.len())].matches('\n').count() + 1),
        key: key.to_owned(),
        problem,
    }
}

/// `text` read as TOML of the shape `T`: a syntax error, an unknown key or a missing one is
/// named at its line.
fn shaped<T: serde::de::DeserializeOwned>(text: &str, at: check::At<'_>) -> Result<T, PolicyError> {
    toml::from_str(text).map_err(|e| {
        at(
            e.span().unwrap_or(0..0),
            "",
            e.message().trim_end().to_owned(),
        )
    })
}

mod check;
mod networks;
mod shape;

pub use self::networks::networks;
#[cfg(test)]
mod tests;
