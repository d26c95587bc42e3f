//! Checking the policy file as written, value by value, into a [`Policy`]: every refusal names the
//! line, the dotted key and what is allowed.

use std::ops::RangeInclusive;
use std::sync::Arc;

use jiff::SignedDuration;
use toml::Spanned;

use super::shape::{
    Raw, RawEnd, RawEndAction, RawExperiment, RawFeedback, RawLearning, RawNudges, RawOverrides,
    RawRetries, RawRule, RawSegment, RawThreshold,
};
use super::{BASELINE, BASELINE_PATH, FORMAT, PolicyError, parse_with};
use crate::policy::duration::{human, parse_duration};
use crate::policy::networks::{Counts, Dates, Fee, Key, Networks, Rule};
use crate::policy::timing::Window;
use crate::policy::{
    Arm, Channel, DeclineClass, DisputePlan, End, EndPlan, Experiment, FeedbackPlan, Learning,
    Match, NudgeKind, NudgePlan, PauseBehavior, Plan, Policy, Reaction, Segment, Step, Threshold,
    Treatment,
};

pub(super) type At<'a> = &'a dyn Fn(std::ops::Range<usize>, &str, String) -> PolicyError;

/// Turns the file as written into a [`Policy`], checking each value where it stands.
pub(super) struct Reader<'a> {
    pub(super) at: At<'a>,
}

impl Reader<'_> {
    pub(super) fn policy(&self, raw: Raw, networks: Arc<Networks>) -> Result<Policy, PolicyError> {
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
            Some(rows) => {
                let mut with_rows = Networks::clone(&networks);
                for (n, row) in rows.into_iter().enumerate() {
                    with_rows
                        .rules
                        .push(self.rule(row, &format!("network[{n}]"))?);
                }
                Arc::new(with_rows)
            }
            None => networks,
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
        let feedback = self.feedback(raw.feedback.unwrap_or_default())?;
        let learning = self.learning(
            raw.learning.unwrap_or_default(),
            "learning",
            Learning::default(),
        )?;
        // The policy's learning stays out of its treatment: a segment or arm that does not set
        // `[learning]` follows the policy's, whatever it is turned to later (`simulate --learn`).
        let own = Treatment {
            plan,
            nudges,
            ending,
            learning: None,
        };
        let mut segments: Vec<Segment> = Vec::new();
        for (n, raw) in raw.segment.unwrap_or_default().into_iter().enumerate() {
            let key = format!("segment[{n}]");
            let name_at = raw.name.span();
            let segment = self.segment(raw, &key, &own, &learning)?;
            if segments.iter().any(|s| s.name == segment.name) {
                return Err((self.at)(
                    name_at,
                    &format!("{key}.name"),
                    format!("{:?} names two segments", segment.name),
                ));
            }
            segments.push(segment);
        }
        let experiment = match raw.experiment {
            Some(experiments) => {
                self.experiment(experiments, (&own, &learning), &segments, &networks)?
            }
            None => None,
        };
        Ok(Policy {
            plan: own.plan,
            networks,
            segments,
            nudges: own.nudges,
            ending: own.ending,
            disputes,
            feedback,
            learning,
            experiment,
            evidence: Default::default(),
        })
    }

    /// What `tables` set over `base`, the tables' keys under `key`: what they set replaces, what
    /// they leave out stays. How a segment's plan is made from the policy's own, and an experiment
    /// arm's from either. A `[learning]` table is read over `base`'s learning, else the policy's
    /// (`learning`).
    fn treatment(
        &self,
        tables: &RawOverrides,
        key: &str,
        base: &Treatment,
        learning: &Learning,
    ) -> Result<Treatment, PolicyError> {
        Ok(Treatment {
            plan: self.retries(
                tables.retries.clone().unwrap_or_default(),
                &format!("{key}.retries"),
                base.plan.clone(),
            )?,
            nudges: self.nudges(
                tables.nudges.clone().unwrap_or_default(),
                &format!("{key}.nudges"),
                base.nudges.clone(),
            )?,
            ending: self.ending(
                tables.end.clone().unwrap_or_default(),
                &format!("{key}.end"),
                base.ending,
            )?,
            learning: match &tables.learning {
                Some(raw) => Some(self.learning(
                    raw.clone(),
                    &format!("{key}.learning"),
                    base.learning.clone().unwrap_or_else(|| learning.clone()),
                )?),
                None => base.learning.clone(),
            },
        })
    }

    /// The `[[experiment]]` tables: at most one, whose arms' shares add up to 1.
    fn experiment(
        &self,
        mut written: Vec<RawExperiment>,
        own: (&Treatment, &Learning),
        segments: &[Segment],
        networks: &Arc<Networks>,
    ) -> Result<Option<Experiment>, PolicyError> {
        if let Some(second) = written.get(1) {
            return Err((self.at)(
                second.name.span(),
                "experiment[1]",
                "one experiment runs at a time: two would change the same customers' plans, and \
                 neither's difference could be told from the other's"
                    .into(),
            ));
        }
        if written.is_empty() {
            return Ok(None);
        }
        let raw = written.remove(0);
        let name = self.label(&raw.name, "experiment[0].name", "an experiment")?;
        let key = match &raw.key {
            Some(key) if key.get_ref().trim().is_empty() => {
                return Err((self.at)(
                    key.span(),
                    "experiment[0].key",
                    "an empty key; leave it out to key customers by the experiment's name".into(),
                ));
            }
            Some(key) => key.get_ref().clone(),
            None => name.clone(),
        };
        if raw.arm.len() < 2 {
            return Err((self.at)(
                raw.name.span(),
                "experiment[0].arm",
                format!(
                    "{} arm(s); an experiment compares at least two ([[experiment.arm]] tables)",
                    raw.arm.len()
                ),
            ));
        }
        let mut arms: Vec<Arm> = Vec::new();
        for (n, written) in raw.arm.into_iter().enumerate() {
            let key = format!("experiment[0].arm[{n}]");
            let at = written.name.span();
            let arm = self.arm(written, &key, own, segments, networks)?;
            if arms.iter().any(|a| a.name == arm.name) {
                return Err((self.at)(
                    at.clone(),
                    &format!("{key}.name"),
                    format!("{:?} names two arms", arm.name),
                ));
            }
            if arm.holdout && arms.iter().any(|a| a.holdout) {
                return Err((self.at)(
                    at,
                    &format!("{key}.holdout"),
                    "a second holdout; an experiment has at most one, which every other arm is \
                     compared with"
                        .into(),
                ));
            }
            arms.push(arm);
        }
        let total: f64 = arms.iter().map(|a| a.share).sum();
        if (total - 1.0).abs() > 1e-6 {
            return Err((self.at)(
                raw.name.span(),
                "experiment[0].arm.share",
                format!(
                    "the arms' shares add up to {total}; they must add up to 1 (every customer is \
                     in exactly one arm)"
                ),
            ));
        }
        Ok(Some(Experiment { name, key, arms }))
    }

    /// The name of an experiment or an arm: what the report, the cases and the store's counters
    /// (`<arm>|<field>`) call it, so letters, digits, spaces, `-`, `_` and `.` only.
    fn label(
        &self,
        written: &Spanned<String>,
        key: &str,
        what: &str,
    ) -> Result<String, PolicyError> {
        let name = written.get_ref().trim();
        let allowed = |c: char| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.');
        if name.is_empty() || !name.chars().all(allowed) {
            return Err((self.at)(
                written.span(),
                key,
                format!(
                    "{name:?}: {what} needs a name of letters, digits, spaces, '-', '_' and '.', \
                     which the report and the cases show"
                ),
            ));
        }
        Ok(name.to_owned())
    }

    /// One `[[experiment.arm]]`: the baseline plan for a holdout, else its tables over the policy's
    /// own plan and over each segment's.
    fn arm(
        &self,
        raw: super::shape::RawArm,
        key: &str,
        (own, learning): (&Treatment, &Learning),
        segments: &[Segment],
        networks: &Arc<Networks>,
    ) -> Result<Arm, PolicyError> {
        let name = self.label(&raw.name, &format!("{key}.name"), "an arm")?;
        let share = *raw.share.get_ref();
        if !(share > 0.0 && share <= 1.0) {
            return Err((self.at)(
                raw.share.span(),
                &format!("{key}.share"),
                format!("{share} is out of range; allowed: more than 0, at most 1"),
            ));
        }
        let holdout = raw.holdout.as_ref().is_some_and(|h| *h.get_ref());
        let tables = RawOverrides {
            retries: raw.retries,
            nudges: raw.nudges,
            end: raw.end,
            learning: raw.learning,
        };
        if holdout {
            let named = [
                ("retries", tables.retries.is_some()),
                ("nudges", tables.nudges.is_some()),
                ("end", tables.end.is_some()),
                ("learning", tables.learning.is_some()),
            ];
            if let Some((table, _)) = named.iter().find(|(_, set)| *set) {
                return Err((self.at)(
                    raw.name.span(),
                    &format!("{key}.{table}"),
                    format!(
                        "a holdout gets the baseline plan ({BASELINE_PATH}) whole; it takes no \
                         [experiment.arm.{table}] table"
                    ),
                ));
            }
            let baseline = baseline(networks);
            return Ok(Arm {
                name,
                share,
                holdout,
                segments: vec![baseline.clone(); segments.len()],
                own: baseline,
            });
        }
        let over_segments = segments
            .iter()
            .map(|s| {
                let base = Treatment {
                    plan: s.plan.clone(),
                    nudges: s.nudges.clone(),
                    ending: s.ending,
                    learning: None,
                };
                self.treatment(&tables, key, &base, learning)
            })
            .collect::<Result<_, _>>()?;
        Ok(Arm {
            name,
            share,
            holdout,
            own: self.treatment(&tables, key, own, learning)?,
            segments: over_segments,
        })
    }

    /// A `[learning]` table over `default`.
    fn learning(
        &self,
        raw: RawLearning,
        prefix: &str,
        default: Learning,
    ) -> Result<Learning, PolicyError> {
        let key = |name: &str| format!("{prefix}.{name}");
        let hours = SignedDuration::from_hours;
        Ok(Learning {
            enabled: raw.enabled.unwrap_or(default.enabled),
            explore: match raw.explore {
                Some(n) => self.number(&n, &key("explore"), 0..=50)?,
                None => default.explore,
            },
            min_evidence: match raw.min_evidence {
                Some(n) => self.number(&n, &key("min_evidence"), 0..=1_000_000)?,
                None => default.min_evidence,
            },
            min_gap: self.duration_or(
                raw.min_gap,
                &key("min_gap"),
                hours(1)..=hours(7 * 24),
                default.min_gap,
            )?,
            look_ahead: self.duration_or(
                raw.look_ahead,
                &key("look_ahead"),
                hours(24)..=hours(30 * 24),
                default.look_ahead,
            )?,
            hours: match raw.hours {
                Some(window) => self.window(&window, &key("hours"))?,
                None => default.hours,
            },
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
    /// `[feedback]`: each answer's reaction, one of those that make sense for it.
    fn feedback(&self, raw: RawFeedback) -> Result<FeedbackPlan, PolicyError> {
        let default = FeedbackPlan::default();
        let reaction = |written: Option<Spanned<String>>, key: &str, allowed: &[Reaction], or| {
            written.map_or(Ok(or), |written| {
                let names: Vec<(&str, Reaction)> =
                    allowed.iter().map(|r| (r.as_str(), *r)).collect();
                self.choice(&written, &format!("feedback.{key}"), &names)
            })
        };
        Ok(FeedbackPlan {
            enabled: raw.enabled.unwrap_or(default.enabled),
            card_changed: reaction(
                raw.card_changed,
                "card_changed",
                &[Reaction::SendUpdateLink, Reaction::Record],
                default.card_changed,
            )?,
            cant_pay_now: reaction(
                raw.cant_pay_now,
                "cant_pay_now",
                &[Reaction::RetryOnPayday, Reaction::Record],
                default.cant_pay_now,
            )?,
            want_to_cancel: reaction(
                raw.want_to_cancel,
                "want_to_cancel",
                &[Reaction::StopDunning, Reaction::EndNow, Reaction::Record],
                default.want_to_cancel,
            )?,
        })
    }

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
        let classes = [
            DeclineClass::Soft,
            DeclineClass::Ambiguous,
            DeclineClass::Hard,
            DeclineClass::CardData,
            DeclineClass::ActionRequired,
        ]
        .map(|class| (class.as_str(), class));
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
                        declines: step
                            .declines
                            .iter()
                            .flatten()
                            .map(|class| self.choice(class, &key("declines"), &classes))
                            .collect::<Result<_, _>>()?,
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
            once_per_subscription: self.duration_or(
                raw.once_per_subscription,
                &format!("{prefix}.once_per_subscription"),
                SignedDuration::ZERO..=SignedDuration::from_hours(120 * 24),
                default.once_per_subscription,
            )?,
            per_customer: match raw.per_customer {
                Some(n) => self.number(&n, &format!("{prefix}.per_customer"), 0..=50)?,
                None => default.per_customer,
            },
            per_customer_within: self.duration_or(
                raw.per_customer_within,
                &format!("{prefix}.per_customer_within"),
                SignedDuration::from_hours(24)..=SignedDuration::from_hours(365 * 24),
                default.per_customer_within,
            )?,
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
        own: &Treatment,
        learning: &Learning,
    ) -> Result<Segment, PolicyError> {
        let name = raw.name.get_ref().trim().to_owned();
        if name.is_empty() {
            return Err((self.at)(
                raw.name.span(),
                &format!("{key}.name"),
                "a segment needs a name, which cases show to say which plan they are on".into(),
            ));
        }
        let amount = |written: &Option<Spanned<RawThreshold>>, field: &str| {
            written
                .as_ref()
                .map(|n| self.threshold(n, &format!("{key}.{field}")))
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
        let tables = RawOverrides {
            retries: raw.retries,
            nudges: raw.nudges,
            end: raw.end,
            learning: None,
        };
        let treatment = self.treatment(&tables, key, own, learning)?;
        Ok(Segment {
            name,
            when,
            plan: treatment.plan,
            nudges: treatment.nudges,
            ending: treatment.ending,
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

    pub(super) fn duration(
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

    /// An amount threshold: one figure for every currency, or a table by lowercase ISO code.
    fn threshold(
        &self,
        written: &Spanned<RawThreshold>,
        key: &str,
    ) -> Result<Threshold, PolicyError> {
        let fail = |problem: String| (self.at)(written.span(), key, problem);
        match written.get_ref() {
            RawThreshold::Every(n) if *n >= 0 => Ok(Threshold::Every(*n)),
            RawThreshold::Every(n) => Err(fail(format!(
                "{n} is out of range; allowed: 0 or more, in the currency's smallest unit"
            ))),
            RawThreshold::PerCurrency(table) => {
                let mut checked = std::collections::BTreeMap::new();
                for (currency, n) in table {
                    let code = currency.to_ascii_lowercase();
                    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_lowercase()) {
                        return Err(fail(format!(
                            "{currency:?} is not a currency; allowed: ISO 4217 codes such as usd"
                        )));
                    }
                    if *n < 0 {
                        return Err(fail(format!(
                            "{currency} = {n} is out of range; allowed: 0 or more, in the \
                             currency's smallest unit"
                        )));
                    }
                    checked.insert(code, *n);
                }
                Ok(Threshold::PerCurrency(checked))
            }
        }
    }

    pub(super) fn number<T: TryFrom<i64>>(
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
    pub(super) fn choice<T: Copy>(
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

    /// A card brand as Stripe names it, or `*` for every brand.
    pub(super) fn brand(
        &self,
        written: &Spanned<String>,
        key: &str,
    ) -> Result<String, PolicyError> {
        let brand = written.get_ref().trim().to_ascii_lowercase();
        let a_name =
            !brand.is_empty() && brand.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !a_name && brand != "*" {
            return Err((self.at)(
                written.span(),
                key,
                "expected a card brand as Stripe names it (visa, mastercard, amex, …) or \"*\" \
                 for every brand"
                    .into(),
            ));
        }
        Ok(brand)
    }

    /// A `[[network]]` row of an older policy file: a limit with no end date, added to the
    /// networks file's (a limit can only make retrying more cautious).
    fn rule(&self, raw: RawRule, key: &str) -> Result<Rule, PolicyError> {
        let brand = self.brand(&raw.brand, &format!("{key}.brand"))?;
        let counts = self.choice(
            &raw.counts,
            &format!("{key}.counts"),
            &[
                ("attempts", Counts::Attempts),
                ("declines", Counts::Declines),
            ],
        )?;
        let per_invoice = self.choice(
            &raw.scope,
            &format!("{key}.scope"),
            &[("card", false), ("invoice", true)],
        )?;
        Ok(Rule {
            name: format!("policy file {key}"),
            brand,
            counts,
            key: Key {
                invoice: per_invoice,
                ..Key::default()
            },
            max: self.number(&raw.max, &format!("{key}.max"), 1..=1_000)?,
            per: self.duration(
                &raw.per,
                &format!("{key}.per"),
                &(SignedDuration::from_hours(1)..=SignedDuration::from_hours(90 * 24)),
            )?,
            resets: false,
            fee: Fee::ZERO,
            dates: Dates::default(),
            source: "the policy file".to_owned(),
        })
    }
}

/// The holdout's plan: the baseline `recoup simulate` sets beside every policy
/// ([`BASELINE_PATH`], built in), under the policy's network rules.
fn baseline(networks: &Arc<Networks>) -> Treatment {
    let policy = parse_with(BASELINE, BASELINE_PATH, Arc::clone(networks))
        .expect("the built-in baseline policy is valid");
    Treatment {
        plan: policy.plan,
        nudges: policy.nudges,
        ending: policy.ending,
        learning: Some(policy.learning),
    }
}
