//! The policy file (`config/policy.toml`): reading it into a [`Policy`], and saying exactly what is
//! wrong with it when it cannot be.
//!
//! Every section is optional and falls back to the built-in default, which the shipped file spells
//! out with the reasons for each number; `version` is required, so a file written for a later format
//! is refused instead of half-read. Unknown keys are errors, not ignored: a misspelt `sofft` that
//! silently kept the default would be a policy nobody chose. Every error names the file, the line,
//! the key and what is allowed, because the person reading it is about to change how customers are
//! charged.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::RangeInclusive;
use std::path::Path;

use jiff::SignedDuration;
use serde::Deserialize;
use toml::Spanned;

use super::budget::{Counts, Rule, Scope};
use super::timing::Window;
use super::{
    Channel, DisputePlan, End, EndPlan, Match, NudgeKind, NudgePlan, PauseBehavior, Plan, Policy,
    Segment, Step, human,
};
use crate::clock::parse_duration;
use crate::config::{DEFAULT_POLICY_PATH, PolicySettings};

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

/// Reads and validates the policy file at `path`.
pub fn load(path: &Path) -> Result<Policy, PolicyError> {
    let text = std::fs::read_to_string(path).map_err(|e| PolicyError {
        file: path.display().to_string(),
        line: None,
        key: String::new(),
        problem: format!("cannot read the policy file: {e}"),
    })?;
    parse(&text, &path.display().to_string())
}

/// The shipped `config/policy.toml`, built into the binary.
const SHIPPED: &str = include_str!("../../config/policy.toml");

impl Policy {
    /// The policy of the shipped `config/policy.toml`: the defaults, and its two segments that pause
    /// large and long-standing accounts instead of cancelling them.
    pub fn shipped() -> Self {
        parse(SHIPPED, DEFAULT_POLICY_PATH).expect("the shipped policy file is valid")
    }
}

/// The policy `recoup serve` runs: the configured file, or the shipped one (built in) when the
/// path was left at its default and no file is there (a binary run outside a checkout still works;
/// a path someone set and got wrong is an error, not a silent fallback).
pub fn for_service(settings: &PolicySettings) -> Result<Policy, PolicyError> {
    if settings.path == Path::new(DEFAULT_POLICY_PATH) && !settings.path.exists() {
        tracing::info!(
            "no policy file at {DEFAULT_POLICY_PATH}; the shipped policy built into recoup applies"
        );
        return Ok(Policy::shipped());
    }
    load(&settings.path)
}

/// What a policy sets, on one line, as `recoup policy check` confirms it.
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
         {}; network rules: {}; segments: {}; nudges: {} ({} a case, {} a customer a day, local \
         {:02}:00–{:02}:00); at the end: {}",
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
        policy.networks.len(),
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
            .map(|step| format!(
                "{} {} after {}",
                step.kind.as_str(),
                step.tier,
                human(step.after)
            ))
            .collect::<Vec<_>>()
            .join(", "),
        policy.nudges.per_case,
        policy.nudges.per_customer_per_day,
        policy.nudges.window.start_hour,
        policy.nudges.window.end_hour,
        ends(&policy.ending),
    )
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

/// Validates policy `text`, naming it `file` in errors.
pub fn parse(text: &str, file: &str) -> Result<Policy, PolicyError> {
    let at = |span: std::ops::Range<usize>, key: &str, problem: String| PolicyError {
        file: file.to_owned(),
        line: Some(text[..span.start.min(text.len())].matches('\n').count() + 1),
        key: key.to_owned(),
        problem,
    };
    let raw: Raw = toml::from_str(text).map_err(|e| {
        at(
            e.span().unwrap_or(0..0),
            "",
            e.message().trim_end().to_owned(),
        )
    })?;
    Reader { at: &at }.policy(raw)
}

type At<'a> = &'a dyn Fn(std::ops::Range<usize>, &str, String) -> PolicyError;

/// Turns the file as written into a [`Policy`], checking each value where it stands.
struct Reader<'a> {
    at: At<'a>,
}

impl Reader<'_> {
    fn policy(&self, raw: Raw) -> Result<Policy, PolicyError> {
        let version = *raw.version.get_ref();
        if version != FORMAT {
            return Err((self.at)(
                raw.version.span(),
                "version",
                format!("{version} is not a policy format this release reads; allowed: {FORMAT}"),
            ));
        }
        let default = Plan::default();
        let timing = raw.timing.unwrap_or_default();
        let timed = Plan {
            window: match timing.window {
                Some(window) => self.window(&window, "timing.window")?,
                None => default.window,
            },
            paydays: match timing.paydays {
                Some(days) => self.paydays(&days)?,
                None => default.paydays,
            },
            jitter: self.duration_or(
                timing.jitter,
                "timing.jitter",
                SignedDuration::ZERO..=SignedDuration::from_hours(6),
                default.jitter,
            )?,
            ..default
        };
        let plan = self.retries(raw.retries.unwrap_or_default(), "retries", timed)?;
        let networks = match raw.network {
            Some(rules) => rules
                .into_iter()
                .enumerate()
                .map(|(n, rule)| self.rule(rule, &format!("network[{n}]")))
                .collect::<Result<_, _>>()?,
            None => Rule::defaults(),
        };
        let nudges = self.nudges(
            raw.nudges.unwrap_or_default(),
            "nudges",
            NudgePlan::default(),
        )?;
        let ending = self.ending(raw.end.unwrap_or_default(), "end", EndPlan::default())?;
        let disputes = DisputePlan {
            stop_card_when_lost: raw
                .disputes
                .and_then(|d| d.stop_card_when_lost)
                .unwrap_or(DisputePlan::default().stop_card_when_lost),
        };
        let mut segments: Vec<Segment> = Vec::new();
        for (n, raw) in raw.segment.unwrap_or_default().into_iter().enumerate() {
            let key = format!("segment[{n}]");
            let name_at = raw.name.span();
            let segment = self.segment(raw, &key, (&plan, &nudges, &ending))?;
            if segments.iter().any(|s| s.name == segment.name) {
                return Err((self.at)(
                    name_at,
                    &format!("{key}.name"),
                    format!("{:?} names two segments", segment.name),
                ));
            }
            segments.push(segment);
        }
        Ok(Policy {
            plan,
            networks,
            segments,
            nudges,
            ending,
            disputes,
        })
    }

    /// An `[end]` table over `base`.
    fn ending(&self, raw: RawEnd, prefix: &str, base: EndPlan) -> Result<EndPlan, PolicyError> {
        let action = |written: Option<RawEndAction>, name: &str, base: End| {
            written.map_or(Ok(base), |w| self.end(w, &format!("{prefix}.{name}")))
        };
        Ok(EndPlan {
            exhausted: action(raw.exhausted, "exhausted", base.exhausted)?,
            no_new_card: action(raw.no_new_card, "no_new_card", base.no_new_card)?,
            grace: self.duration_or(
                raw.grace,
                &format!("{prefix}.grace"),
                SignedDuration::ZERO..=SignedDuration::from_hours(60 * 24),
                base.grace,
            )?,
        })
    }

    /// One end action, with only the options that belong to it.
    fn end(&self, raw: RawEndAction, key: &str) -> Result<End, PolicyError> {
        #[derive(Clone, Copy)]
        enum Kind {
            Pause,
            Cancel,
            MarkUncollectible,
            LeavePastDue,
        }
        let kind = self.choice(
            &raw.action,
            &format!("{key}.action"),
            &[
                ("pause", Kind::Pause),
                ("cancel", Kind::Cancel),
                ("mark_uncollectible", Kind::MarkUncollectible),
                ("leave_past_due", Kind::LeavePastDue),
            ],
        )?;
        let only = |span: Option<std::ops::Range<usize>>, option: &str, with: &str| match span {
            Some(span) => Err((self.at)(
                span,
                &format!("{key}.{option}"),
                format!("{option} belongs to action = \"{with}\" only"),
            )),
            None => Ok(()),
        };
        if !matches!(kind, Kind::Pause) {
            only(
                raw.behavior.as_ref().map(Spanned::span),
                "behavior",
                "pause",
            )?;
            only(
                raw.resume_after.as_ref().map(Spanned::span),
                "resume_after",
                "pause",
            )?;
        }
        if !matches!(kind, Kind::Cancel) {
            only(
                raw.at_period_end.as_ref().map(Spanned::span),
                "at_period_end",
                "cancel",
            )?;
        }
        Ok(match kind {
            Kind::Pause => End::Pause {
                behavior: match &raw.behavior {
                    Some(behavior) => self.choice(
                        behavior,
                        &format!("{key}.behavior"),
                        &[
                            ("keep_as_draft", PauseBehavior::KeepAsDraft),
                            ("mark_uncollectible", PauseBehavior::MarkUncollectible),
                            ("void", PauseBehavior::Void),
                        ],
                    )?,
                    None => PauseBehavior::KeepAsDraft,
                },
                resume_after: raw
                    .resume_after
                    .as_ref()
                    .map(|after| {
                        self.duration(
                            after,
                            &format!("{key}.resume_after"),
                            &(SignedDuration::from_hours(24)
                                ..=SignedDuration::from_hours(365 * 24)),
                        )
                    })
                    .transpose()?,
            },
            Kind::Cancel => End::Cancel {
                at_period_end: raw.at_period_end.is_none_or(|b| *b.get_ref()),
            },
            Kind::MarkUncollectible => End::MarkUncollectible,
            Kind::LeavePastDue => End::LeavePastDue,
        })
    }

    /// A `[nudges]` table over `default`: what it sets replaces, what it leaves out stays.
    fn nudges(
        &self,
        raw: RawNudges,
        prefix: &str,
        default: NudgePlan,
    ) -> Result<NudgePlan, PolicyError> {
        let kinds = [
            ("payment_failed", NudgeKind::PaymentFailed),
            ("action_required", NudgeKind::ActionRequired),
            ("final_notice", NudgeKind::FinalNotice),
        ];
        let steps = match raw.step {
            None => default.steps,
            Some(steps) => steps
                .iter()
                .enumerate()
                .map(|(n, step)| {
                    let key = |field: &str| format!("{prefix}.step[{n}].{field}");
                    Ok(Step {
                        kind: self.choice(&step.kind, &key("kind"), &kinds)?,
                        tier: self.number(&step.tier, &key("tier"), 1..=9)?,
                        after: self.duration(
                            &step.after,
                            &key("after"),
                            &(SignedDuration::ZERO..=SignedDuration::from_hours(60 * 24)),
                        )?,
                    })
                })
                .collect::<Result<_, _>>()?,
        };
        let channels = match raw.channels {
            None => default.channels,
            Some(channels) => channels
                .iter()
                .enumerate()
                .map(|(n, c)| {
                    self.choice(
                        c,
                        &format!("{prefix}.channels[{n}]"),
                        &[
                            ("email", Channel::Email),
                            ("sms", Channel::Sms),
                            ("webhook", Channel::Webhook),
                        ],
                    )
                })
                .collect::<Result<_, _>>()?,
        };
        Ok(NudgePlan {
            steps,
            window: match raw.window {
                Some(window) => self.window(&window, &format!("{prefix}.window"))?,
                None => default.window,
            },
            per_case: match raw.per_case {
                Some(n) => self.number(&n, &format!("{prefix}.per_case"), 0..=20)?,
                None => default.per_case,
            },
            per_customer_per_day: match raw.per_customer_per_day {
                Some(n) => self.number(&n, &format!("{prefix}.per_customer_per_day"), 1..=10)?,
                None => default.per_customer_per_day,
            },
            channels,
        })
    }

    /// A `[retries]` table over `base`: what it sets replaces, what it leaves out stays.
    fn retries(&self, retries: RawRetries, prefix: &str, base: Plan) -> Result<Plan, PolicyError> {
        let key = |name: &str| format!("{prefix}.{name}");
        Ok(Plan {
            soft: self.gaps(retries.soft, &key("soft"), base.soft)?,
            ambiguous: self.gaps(retries.ambiguous, &key("ambiguous"), base.ambiguous)?,
            max_attempts: match retries.max_attempts {
                Some(n) => self.number(&n, &key("max_attempts"), 1..=35)?,
                None => base.max_attempts,
            },
            within: self.duration_or(
                retries.within,
                &key("within"),
                SignedDuration::from_hours(24)..=SignedDuration::from_hours(120 * 24),
                base.within,
            )?,
            after_new_card: self.duration_or(
                retries.after_new_card,
                &key("after_new_card"),
                SignedDuration::ZERO..=SignedDuration::from_hours(24),
                base.after_new_card,
            )?,
            defer_to_stripe: retries.defer_to_stripe.unwrap_or(base.defer_to_stripe),
            ..base
        })
    }

    fn segment(
        &self,
        raw: RawSegment,
        key: &str,
        (plan, nudges, ending): (&Plan, &NudgePlan, &EndPlan),
    ) -> Result<Segment, PolicyError> {
        let name = raw.name.get_ref().trim().to_owned();
        if name.is_empty() {
            return Err((self.at)(
                raw.name.span(),
                &format!("{key}.name"),
                "a segment needs a name, which cases show to say which plan they are on".into(),
            ));
        }
        let amount = |written: &Option<Spanned<i64>>, field: &str| {
            written
                .as_ref()
                .map(|n| self.number(n, &format!("{key}.{field}"), 0..=i64::MAX))
                .transpose()
        };
        let count = |written: &Option<Spanned<i64>>, field: &str| {
            written
                .as_ref()
                .map(|n| self.number(n, &format!("{key}.{field}"), 0..=100_000))
                .transpose()
        };
        let when = Match {
            amount_at_least: amount(&raw.amount_at_least, "amount_at_least")?,
            amount_below: amount(&raw.amount_below, "amount_below")?,
            currencies: raw
                .currency
                .unwrap_or_default()
                .into_iter()
                .map(|c| c.to_ascii_lowercase())
                .collect(),
            prices: raw.price.unwrap_or_default(),
            metadata: raw.metadata.unwrap_or_default(),
            customer_metadata: raw.customer_metadata.unwrap_or_default(),
            tenure_months_at_least: count(&raw.tenure_months_at_least, "tenure_months_at_least")?,
            tenure_months_below: count(&raw.tenure_months_below, "tenure_months_below")?,
            past_failures_at_least: count(&raw.past_failures_at_least, "past_failures_at_least")?,
            past_failures_below: count(&raw.past_failures_below, "past_failures_below")?,
        };
        Ok(Segment {
            name,
            when,
            plan: self.retries(
                raw.retries.unwrap_or_default(),
                &format!("{key}.retries"),
                plan.clone(),
            )?,
            nudges: self.nudges(
                raw.nudges.unwrap_or_default(),
                &format!("{key}.nudges"),
                nudges.clone(),
            )?,
            ending: self.ending(raw.end.unwrap_or_default(), &format!("{key}.end"), *ending)?,
        })
    }

    fn gaps(
        &self,
        written: Option<Vec<Spanned<String>>>,
        key: &str,
        default: Vec<SignedDuration>,
    ) -> Result<Vec<SignedDuration>, PolicyError> {
        let Some(written) = written else {
            return Ok(default);
        };
        // Sooner than an hour after a decline, a retry only collects another decline.
        let allowed = SignedDuration::from_hours(1)..=SignedDuration::from_hours(60 * 24);
        written
            .iter()
            .enumerate()
            .map(|(n, gap)| self.duration(gap, &format!("{key}[{n}]"), &allowed))
            .collect()
    }

    fn duration_or(
        &self,
        written: Option<Spanned<String>>,
        key: &str,
        allowed: RangeInclusive<SignedDuration>,
        default: SignedDuration,
    ) -> Result<SignedDuration, PolicyError> {
        written.map_or(Ok(default), |d| self.duration(&d, key, &allowed))
    }

    fn duration(
        &self,
        written: &Spanned<String>,
        key: &str,
        allowed: &RangeInclusive<SignedDuration>,
    ) -> Result<SignedDuration, PolicyError> {
        let fail = |problem: String| (self.at)(written.span(), key, problem);
        let seconds = parse_duration(written.get_ref()).map_err(fail)?;
        let duration = SignedDuration::from_secs(seconds);
        if allowed.contains(&duration) {
            return Ok(duration);
        }
        Err(fail(format!(
            "{:?} is out of range; allowed: {} to {}",
            written.get_ref(),
            human(*allowed.start()),
            human(*allowed.end())
        )))
    }

    fn number<T: TryFrom<i64>>(
        &self,
        written: &Spanned<i64>,
        key: &str,
        allowed: RangeInclusive<i64>,
    ) -> Result<T, PolicyError> {
        let n = *written.get_ref();
        allowed
            .contains(&n)
            .then(|| T::try_from(n).ok())
            .flatten()
            .ok_or_else(|| {
                (self.at)(
                    written.span(),
                    key,
                    format!(
                        "{n} is out of range; allowed: {} to {}",
                        allowed.start(),
                        allowed.end()
                    ),
                )
            })
    }

    fn window(
        &self,
        written: &Spanned<Vec<Spanned<i64>>>,
        key: &str,
    ) -> Result<Window, PolicyError> {
        let [start, end] = written.get_ref().as_slice() else {
            return Err((self.at)(
                written.span(),
                key,
                "expected [start hour, end hour], e.g. [9, 20] for 09:00–20:00 local".into(),
            ));
        };
        let start_hour = self.number(start, key, 0..=23)?;
        let end_hour = self.number(end, key, 1..=24)?;
        if start_hour >= end_hour {
            return Err((self.at)(
                written.span(),
                key,
                format!("the window must open before it closes; got {start_hour} to {end_hour}"),
            ));
        }
        Ok(Window {
            start_hour,
            end_hour,
        })
    }

    fn paydays(&self, written: &Spanned<Vec<Spanned<i64>>>) -> Result<Vec<u8>, PolicyError> {
        let mut days: Vec<u8> = Vec::new();
        for (n, day) in written.get_ref().iter().enumerate() {
            let key = format!("timing.paydays[{n}]");
            let day = self.number(day, &key, 1..=31)?;
            if days.contains(&day) {
                return Err((self.at)(
                    written.span(),
                    &key,
                    format!("day {day} is listed twice"),
                ));
            }
            days.push(day);
        }
        days.sort_unstable();
        Ok(days)
    }

    /// One of a fixed set of words.
    fn choice<T: Copy>(
        &self,
        written: &Spanned<String>,
        key: &str,
        allowed: &[(&str, T)],
    ) -> Result<T, PolicyError> {
        let word = written.get_ref();
        if let Some(&(_, value)) = allowed.iter().find(|(name, _)| name == word) {
            return Ok(value);
        }
        let names: Vec<String> = allowed
            .iter()
            .map(|(name, _)| format!("{name:?}"))
            .collect();
        Err((self.at)(
            written.span(),
            key,
            format!("{word:?} is not allowed; allowed: {}", names.join(", ")),
        ))
    }

    fn rule(&self, raw: RawRule, key: &str) -> Result<Rule, PolicyError> {
        let brand = raw.brand.get_ref().trim().to_ascii_lowercase();
        let a_name =
            !brand.is_empty() && brand.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !a_name && brand != "*" {
            return Err((self.at)(
                raw.brand.span(),
                &format!("{key}.brand"),
                "expected a card brand as Stripe names it (visa, mastercard, amex, …) or \"*\" \
                 for every brand"
                    .into(),
            ));
        }
        let counts = self.choice(
            &raw.counts,
            &format!("{key}.counts"),
            &[
                ("attempts", Counts::Attempts),
                ("declines", Counts::Declines),
            ],
        )?;
        let scope = self.choice(
            &raw.scope,
            &format!("{key}.scope"),
            &[("card", Scope::Card), ("invoice", Scope::Invoice)],
        )?;
        Ok(Rule {
            brand,
            counts,
            scope,
            max: self.number(&raw.max, &format!("{key}.max"), 1..=1_000)?,
            per: self.duration(
                &raw.per,
                &format!("{key}.per"),
                &(SignedDuration::from_hours(1)..=SignedDuration::from_hours(90 * 24)),
            )?,
        })
    }
}

/// The file as written; values are checked by [`Reader`], with their place in the file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    version: Spanned<i64>,
    retries: Option<RawRetries>,
    timing: Option<RawTiming>,
    network: Option<Vec<RawRule>>,
    segment: Option<Vec<RawSegment>>,
    nudges: Option<RawNudges>,
    end: Option<RawEnd>,
    disputes: Option<RawDisputes>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawEnd {
    grace: Option<Spanned<String>>,
    exhausted: Option<RawEndAction>,
    no_new_card: Option<RawEndAction>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEndAction {
    action: Spanned<String>,
    behavior: Option<Spanned<String>>,
    resume_after: Option<Spanned<String>>,
    at_period_end: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDisputes {
    stop_card_when_lost: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawNudges {
    window: Option<Spanned<Vec<Spanned<i64>>>>,
    per_case: Option<Spanned<i64>>,
    per_customer_per_day: Option<Spanned<i64>>,
    channels: Option<Vec<Spanned<String>>>,
    step: Option<Vec<RawStep>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    kind: Spanned<String>,
    tier: Spanned<i64>,
    after: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSegment {
    name: Spanned<String>,
    amount_at_least: Option<Spanned<i64>>,
    amount_below: Option<Spanned<i64>>,
    currency: Option<Vec<String>>,
    price: Option<Vec<String>>,
    metadata: Option<BTreeMap<String, String>>,
    customer_metadata: Option<BTreeMap<String, String>>,
    tenure_months_at_least: Option<Spanned<i64>>,
    tenure_months_below: Option<Spanned<i64>>,
    past_failures_at_least: Option<Spanned<i64>>,
    past_failures_below: Option<Spanned<i64>>,
    retries: Option<RawRetries>,
    nudges: Option<RawNudges>,
    end: Option<RawEnd>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRetries {
    soft: Option<Vec<Spanned<String>>>,
    ambiguous: Option<Vec<Spanned<String>>>,
    max_attempts: Option<Spanned<i64>>,
    within: Option<Spanned<String>>,
    after_new_card: Option<Spanned<String>>,
    defer_to_stripe: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTiming {
    window: Option<Spanned<Vec<Spanned<i64>>>>,
    paydays: Option<Spanned<Vec<Spanned<i64>>>>,
    jitter: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    brand: Spanned<String>,
    counts: Spanned<String>,
    scope: Spanned<String>,
    max: Spanned<i64>,
    per: Spanned<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> PolicyError {
        parse(text, "p.toml").expect_err("the file is refused")
    }

    #[test]
    fn the_shipped_file_is_the_built_in_default_and_two_segments() {
        let shipped = parse(SHIPPED, "config/policy.toml").unwrap();
        let pausing = |name: &str, when: Match| Segment {
            name: name.to_owned(),
            when,
            plan: Plan::default(),
            nudges: NudgePlan::default(),
            ending: EndPlan::pausing(),
        };
        let expected = Policy {
            segments: vec![
                pausing(
                    "high value",
                    Match {
                        amount_at_least: Some(20_000),
                        ..Match::default()
                    },
                ),
                pausing(
                    "long tenure",
                    Match {
                        tenure_months_at_least: Some(24),
                        ..Match::default()
                    },
                ),
            ],
            ..Policy::default()
        };
        assert_eq!(shipped, expected);
        assert_eq!(Policy::shipped(), expected);
    }

    #[test]
    fn only_the_version_is_required() {
        assert_eq!(parse("version = 1\n", "p.toml"), Ok(Policy::default()));
        let missing = error("[retries]\nsoft = [\"1d\"]\n");
        assert!(
            missing.problem.contains("missing field `version`"),
            "{missing}"
        );
    }

    #[test]
    fn values_written_are_values_used() {
        let policy = parse(
            "version = 1\n[retries]\nsoft = [\"1d\", \"36h\"]\nmax_attempts = 5\nwithin = \"2w\"\n",
            "p.toml",
        );
        // "2w" is not a duration: the error says where.
        let err = policy.unwrap_err();
        assert_eq!(
            err.to_string(),
            "p.toml:5: retries.within: \"2w\": unknown unit 'w'; expected a duration such as 3d, \
             12h, 90m, 45s or 1d12h"
        );

        let policy = parse(
            "version = 1\n[retries]\nsoft = [\"1d\", \"36h\"]\nmax_attempts = 5\n[timing]\nwindow = [8, 18]\npaydays = [25, 10]\njitter = \"0s\"\n\n[[network]]\nbrand = \"Visa\"\ncounts = \"declines\"\nscope = \"card\"\nmax = 3\nper = \"1d\"\n",
            "p.toml",
        )
        .unwrap();
        assert_eq!(
            policy.plan.soft,
            [
                SignedDuration::from_hours(24),
                SignedDuration::from_hours(36)
            ]
        );
        assert_eq!(policy.plan.ambiguous, Plan::default().ambiguous);
        assert_eq!(policy.plan.max_attempts, 5);
        assert_eq!(
            policy.plan.window,
            Window {
                start_hour: 8,
                end_hour: 18
            }
        );
        assert_eq!(policy.plan.paydays, [10, 25]);
        assert_eq!(policy.plan.jitter, SignedDuration::ZERO);
        assert_eq!(
            policy.networks,
            [Rule {
                brand: "visa".into(),
                counts: Counts::Declines,
                scope: Scope::Card,
                max: 3,
                per: SignedDuration::from_hours(24),
            }]
        );
    }

    #[test]
    fn every_bad_value_is_named_with_its_line_key_and_what_is_allowed() {
        let cases: &[(&str, usize, &str, &str)] = &[
            ("version = 2", 1, "version", "allowed: 1"),
            (
                "version = 1\n[end]\nexhausted = { action = \"delete\" }",
                3,
                "end.exhausted.action",
                "allowed: \"pause\", \"cancel\", \"mark_uncollectible\", \"leave_past_due\"",
            ),
            (
                "version = 1\n[end]\nno_new_card = { action = \"cancel\", behavior = \"void\" }",
                3,
                "end.no_new_card.behavior",
                "behavior belongs to action = \"pause\" only",
            ),
            (
                "version = 1\n[end]\nexhausted = { action = \"pause\", behavior = \"drop\" }",
                3,
                "end.exhausted.behavior",
                "allowed: \"keep_as_draft\", \"mark_uncollectible\", \"void\"",
            ),
            (
                "version = 1\n[end]\ngrace = \"90d\"",
                3,
                "end.grace",
                "allowed: 0s to 60 days",
            ),
            (
                "version = 1\n[[segment]]\nname = \"a\"\n[segment.end]\nexhausted = { action = \"pause\", resume_after = \"1h\" }",
                5,
                "segment[0].end.exhausted.resume_after",
                "allowed: 1 day to 365 days",
            ),
            (
                "version = 1\n[disputes]\nstop_card = true",
                3,
                "",
                "unknown field `stop_card`",
            ),
            (
                "version = 1\n[retries]\nsofft = [\"1d\"]",
                3,
                "",
                "unknown field `sofft`",
            ),
            (
                "version = 1\n[retries]\nhard = [\"1d\"]",
                3,
                "",
                "expected one of",
            ),
            (
                "version = 1\n[retries]\nsoft = [\"3d\", \"30m\"]",
                3,
                "retries.soft[1]",
                "allowed: 1h to 60 days",
            ),
            (
                "version = 1\n[retries]\nambiguous = [\"x\"]",
                3,
                "retries.ambiguous[0]",
                "expected a duration",
            ),
            (
                "version = 1\n[retries]\nmax_attempts = 0",
                3,
                "retries.max_attempts",
                "allowed: 1 to 35",
            ),
            (
                "version = 1\n[retries]\nwithin = \"1h\"",
                3,
                "retries.within",
                "allowed: 1 day to 120 days",
            ),
            (
                "version = 1\n[timing]\nwindow = [20, 9]",
                3,
                "timing.window",
                "must open before it closes",
            ),
            (
                "version = 1\n[timing]\nwindow = [9]",
                3,
                "timing.window",
                "expected [start hour, end hour]",
            ),
            (
                "version = 1\n[timing]\nwindow = [9, 25]",
                3,
                "timing.window",
                "allowed: 1 to 24",
            ),
            (
                "version = 1\n[timing]\npaydays = [1, 32]",
                3,
                "timing.paydays[1]",
                "allowed: 1 to 31",
            ),
            (
                "version = 1\n[timing]\npaydays = [1, 1]",
                3,
                "timing.paydays[1]",
                "listed twice",
            ),
            (
                "version = 1\n[timing]\njitter = \"7h\"",
                3,
                "timing.jitter",
                "allowed: 0s to 6h",
            ),
            (
                "version = 1\n\n[[network]]\nbrand = \"visa\"\ncounts = \"tries\"\nscope = \"card\"\nmax = 3\nper = \"1d\"",
                5,
                "network[0].counts",
                "allowed: \"attempts\", \"declines\"",
            ),
            (
                "version = 1\n\n[[network]]\nbrand = \"visa\"\ncounts = \"attempts\"\nscope = \"bank\"\nmax = 3\nper = \"1d\"",
                6,
                "network[0].scope",
                "allowed: \"card\", \"invoice\"",
            ),
            (
                "version = 1\n\n[[network]]\nbrand = \"visa card\"\ncounts = \"attempts\"\nscope = \"card\"\nmax = 3\nper = \"1d\"",
                4,
                "network[0].brand",
                "card brand",
            ),
            (
                "version = 1\n\n[[network]]\nbrand = \"visa\"\ncounts = \"attempts\"\nscope = \"card\"\nmax = 0\nper = \"1d\"",
                7,
                "network[0].max",
                "allowed: 1 to 1000",
            ),
            (
                "version = 1\n\n[[network]]\nbrand = \"visa\"\ncounts = \"attempts\"\nscope = \"card\"\nmax = 3",
                3,
                "",
                "missing field `per`",
            ),
            ("version = 1\n[timing\n", 2, "", "invalid table header"),
            (
                "version = 1\n[[segment]]\nname = \"a\"\n[segment.retries]\nsoft = [\"1s\"]",
                5,
                "segment[0].retries.soft[0]",
                "allowed: 1h to 60 days",
            ),
            (
                "version = 1\n[[segment]]\nname = \"a\"\n[[segment]]\nname = \"a\"",
                5,
                "segment[1].name",
                "names two segments",
            ),
            (
                "version = 1\n[[segment]]\nname = \" \"",
                3,
                "segment[0].name",
                "needs a name",
            ),
            (
                "version = 1\n[[segment]]\nname = \"a\"\namount_below = -1",
                4,
                "segment[0].amount_below",
                "allowed: 0 to",
            ),
            (
                "version = 1\n[[segment]]\nname = \"a\"\ncountry = [\"us\"]",
                4,
                "",
                "unknown field `country`",
            ),
            (
                "version = 1\n[[segment]]\nname = \"a\"\n\ntenure_months_at_least = -3",
                5,
                "segment[0].tenure_months_at_least",
                "allowed: 0 to 100000",
            ),
        ];
        for &(text, line, key, problem) in cases {
            let err = error(text);
            assert_eq!(err.line, Some(line), "{text:?}: {err}");
            assert_eq!(err.key, key, "{text:?}: {err}");
            assert!(err.problem.contains(problem), "{text:?}: {err}");
            assert!(
                err.to_string().starts_with(&format!("p.toml:{line}: ")),
                "{err}"
            );
        }
    }

    const SEGMENTED: &str = r#"version = 1
[retries]
soft = ["2d"]

[[segment]]
name = "high value"
amount_at_least = 50000
currency = ["USD", "eur"]
metadata = { tier = "enterprise" }
[segment.retries]
ambiguous = ["5d"]
max_attempts = 4

[[segment]]
name = "small"
amount_below = 1000
customer_metadata = { plan = "solo" }
tenure_months_below = 6
past_failures_at_least = 1
[segment.nudges]
per_case = 2

[[segment.nudges.step]]
kind = "payment_failed"
tier = 1
after = "0s"
"#;

    #[test]
    fn segments_inherit_the_policys_plan_and_replace_what_they_set() {
        let policy = parse(SEGMENTED, "p.toml").unwrap();
        let [high, small] = policy.segments.as_slice() else {
            panic!("two segments: {:?}", policy.segments);
        };
        assert_eq!(high.name, "high value");
        assert_eq!(high.when.amount_at_least, Some(50_000));
        assert_eq!(high.when.currencies, ["usd", "eur"]);
        assert_eq!(high.when.metadata["tier"], "enterprise");
        assert_eq!(
            high.plan.soft,
            [SignedDuration::from_hours(48)],
            "inherited"
        );
        assert_eq!(high.plan.ambiguous, [SignedDuration::from_hours(120)]);
        assert_eq!(small.when.customer_metadata["plan"], "solo");
        assert_eq!(small.when.tenure_months_below, Some(6));
        assert_eq!(small.when.past_failures_at_least, Some(1));
        assert_eq!(small.when.tenure_months_at_least, None);
        // A segment's nudges replace what they set and keep the rest of the policy's.
        assert_eq!(small.nudges.per_case, 2);
        assert_eq!(small.nudges.steps.len(), 1);
        assert_eq!(small.nudges.window, policy.nudges.window);
        assert_eq!(high.nudges, policy.nudges);
        assert_eq!(high.plan.max_attempts, 4);
        assert_eq!(small.when.amount_below, Some(1_000));
        assert_eq!(small.plan, policy.plan);
        assert!(
            describe(&policy).contains(
                "network rules: 3; segments: \"high value\" ending with cancel_at_period_end=true (7 \
                 days after the final notice), \"small\" ending with"
            ),
            "{}",
            describe(&policy)
        );
    }

    #[test]
    fn an_unreadable_file_says_so() {
        let err = load(Path::new("/nonexistent/policy.toml")).unwrap_err();
        assert_eq!(err.line, None);
        assert!(
            err.to_string()
                .starts_with("/nonexistent/policy.toml: cannot read the policy file"),
            "{err}"
        );
    }
}
