//! The policy file as written: serde shapes that keep each value's place in the file (toml's
//! `Spanned`), so [`super::check`] can name the line of a bad value. Unknown keys are refused here.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// The file as written; values are checked by [`super::check::Reader`], with their place in the file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Raw {
    pub(super) version: Spanned<i64>,
    pub(super) retries: Option<RawRetries>,
    pub(super) timing: Option<RawTiming>,
    pub(super) network: Option<Vec<RawRule>>,
    pub(super) segment: Option<Vec<RawSegment>>,
    pub(super) nudges: Option<RawNudges>,
    pub(super) end: Option<RawEnd>,
    pub(super) disputes: Option<RawDisputes>,
    pub(super) feedback: Option<RawFeedback>,
    pub(super) learning: Option<RawLearning>,
    pub(super) experiment: Option<Vec<RawExperiment>>,
}

/// An `[[experiment]]` table.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExperiment {
    pub(super) name: Spanned<String>,
    pub(super) key: Option<Spanned<String>>,
    pub(super) arm: Vec<RawArm>,
}

/// An `[[experiment.arm]]` table: a holdout, or the tables it overrides.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawArm {
    pub(super) name: Spanned<String>,
    pub(super) share: Spanned<f64>,
    pub(super) holdout: Option<Spanned<bool>>,
    pub(super) retries: Option<RawRetries>,
    pub(super) nudges: Option<RawNudges>,
    pub(super) end: Option<RawEnd>,
    pub(super) learning: Option<RawLearning>,
}

/// The tables a segment or an experiment arm sets over the plan it starts from (a segment sets no
/// `learning`). Not a serde shape of its own: `deny_unknown_fields` does not work through
/// `flatten`, so each table keeps its fields and hands them over in one of these.
#[derive(Default, Clone)]
pub(super) struct RawOverrides {
    pub(super) retries: Option<RawRetries>,
    pub(super) nudges: Option<RawNudges>,
    pub(super) end: Option<RawEnd>,
    pub(super) learning: Option<RawLearning>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLearning {
    pub(super) enabled: Option<bool>,
    pub(super) explore: Option<Spanned<i64>>,
    pub(super) min_evidence: Option<Spanned<i64>>,
    pub(super) min_gap: Option<Spanned<String>>,
    pub(super) look_ahead: Option<Spanned<String>>,
    pub(super) hours: Option<Spanned<Vec<Spanned<i64>>>>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEnd {
    pub(super) grace: Option<Spanned<String>>,
    pub(super) exhausted: Option<RawEndAction>,
    pub(super) no_new_card: Option<RawEndAction>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEndAction {
    pub(super) action: Spanned<String>,
    pub(super) behavior: Option<Spanned<String>>,
    pub(super) resume_after: Option<Spanned<String>>,
    pub(super) at_period_end: Option<Spanned<bool>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDisputes {
    pub(super) stop_card_when_lost: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFeedback {
    pub(super) enabled: Option<bool>,
    pub(super) card_changed: Option<Spanned<String>>,
    pub(super) cant_pay_now: Option<Spanned<String>>,
    pub(super) want_to_cancel: Option<Spanned<String>>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNudges {
    pub(super) window: Option<Spanned<Vec<Spanned<i64>>>>,
    pub(super) per_case: Option<Spanned<i64>>,
    pub(super) per_customer_per_day: Option<Spanned<i64>>,
    pub(super) once_per_subscription: Option<Spanned<String>>,
    pub(super) per_customer: Option<Spanned<i64>>,
    pub(super) per_customer_within: Option<Spanned<String>>,
    pub(super) channels: Option<Vec<Spanned<String>>>,
    pub(super) step: Option<Vec<RawStep>>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStep {
    pub(super) kind: Spanned<String>,
    pub(super) tier: Spanned<i64>,
    pub(super) after: Spanned<String>,
    pub(super) declines: Option<Vec<Spanned<String>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSegment {
    pub(super) name: Spanned<String>,
    pub(super) amount_at_least: Option<Spanned<RawThreshold>>,
    pub(super) amount_below: Option<Spanned<RawThreshold>>,
    pub(super) currency: Option<Vec<String>>,
    pub(super) price: Option<Vec<String>>,
    pub(super) metadata: Option<BTreeMap<String, String>>,
    pub(super) customer_metadata: Option<BTreeMap<String, String>>,
    pub(super) tenure_months_at_least: Option<Spanned<i64>>,
    pub(super) tenure_months_below: Option<Spanned<i64>>,
    pub(super) past_failures_at_least: Option<Spanned<i64>>,
    pub(super) past_failures_below: Option<Spanned<i64>>,
    pub(super) retries: Option<RawRetries>,
    pub(super) nudges: Option<RawNudges>,
    pub(super) end: Option<RawEnd>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRetries {
    pub(super) soft: Option<Vec<Spanned<String>>>,
    pub(super) ambiguous: Option<Vec<Spanned<String>>>,
    pub(super) max_attempts: Option<Spanned<i64>>,
    pub(super) within: Option<Spanned<String>>,
    pub(super) after_new_card: Option<Spanned<String>>,
    pub(super) defer_to_stripe: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTiming {
    pub(super) window: Option<Spanned<Vec<Spanned<i64>>>>,
    pub(super) paydays: Option<Spanned<Vec<Spanned<i64>>>>,
    pub(super) jitter: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    pub(super) brand: Spanned<String>,
    pub(super) counts: Spanned<String>,
    pub(super) scope: Spanned<String>,
    pub(super) max: Spanned<i64>,
    pub(super) per: Spanned<String>,
}

/// An amount threshold as written: one number, or a table of numbers by currency.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum RawThreshold {
    Every(i64),
    PerCurrency(BTreeMap<String, i64>),
}
