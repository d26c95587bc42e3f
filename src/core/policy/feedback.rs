//! "What's in the way?": the customer's answer on the feedback page a nudge links to
//! (`<RECOUP_PUBLIC_URL>/feedback/…`), and what the policy does about it.
//!
//! The customer picks one of four [`Answer`]s, with a few words of their own if they like. The
//! case keeps the latest answer ([`Case::answer`]) with the [`Reaction`] the policy chose for it
//! *when it came*, so the case reads the same after the policy file changes, and the timeline says
//! in one sentence what was answered and what happens now. The reactions (`[feedback]` in the
//! policy file, [`FeedbackPlan`]):
//!
//! - **"I can't pay right now"** → [`Reaction::RetryOnPayday`]: the next retry moves to the
//!   customer's next payday (their own paydays when their earlier invoices tell them, else the
//!   policy's; in the retry window), and no nudge goes out until that retry has come to something.
//!   The retry still fires through the case's timer, so the networks' budgets still count it.
//! - **"I want to cancel"** → [`Reaction::StopDunning`]: no more retries or nudges; the case is
//!   closed with the customer's reason and the subscription is left to the business. An answer on
//!   an unauthenticated link is not enough to cancel a paying relationship by default — the link
//!   may have been forwarded, and the business may want to talk to the customer first;
//!   [`Reaction::EndNow`] instead makes the policy's end decision at once (cancel at period end,
//!   pause, …), carried out in Stripe by the worker like any end decision.
//! - **"My card changed"** → [`Reaction::SendUpdateLink`]: the update link goes out again now, once
//!   per case, as an `update_link` nudge — see [`super::NudgePlan::next`] for why it skips the caps
//!   and quiet hours.
//! - **"Something else"** is recorded only.
//!
//! An answer on a case whose dunning is over is recorded and changes nothing else.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::replan::conclude;
use super::{Case, Closure, Decision, Entry, Policy};

/// The most characters of the customer's own words kept; the page refuses more.
pub const MAX_TEXT: usize = 500;

/// What the customer answered to "What's in the way?".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    CardChanged,
    CantPayNow,
    WantToCancel,
    SomethingElse,
}

impl Answer {
    pub const ALL: [Answer; 4] = [
        Answer::CardChanged,
        Answer::CantPayNow,
        Answer::WantToCancel,
        Answer::SomethingElse,
    ];

    /// The name the page's form posts and the case JSON carries.
    pub fn as_str(self) -> &'static str {
        match self {
            Answer::CardChanged => "card_changed",
            Answer::CantPayNow => "cant_pay_now",
            Answer::WantToCancel => "want_to_cancel",
            Answer::SomethingElse => "something_else",
        }
    }

    /// The answer as the customer read it on the page.
    pub fn words(self) -> &'static str {
        match self {
            Answer::CardChanged => "My card changed",
            Answer::CantPayNow => "I can't pay right now",
            Answer::WantToCancel => "I want to cancel",
            Answer::SomethingElse => "Something else",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }
}

/// What the policy did about an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reaction {
    /// Kept on the case; the plan is unchanged.
    Record,
    /// The next retry on the customer's next payday; nudges pause until it has come to something.
    RetryOnPayday,
    /// No more retries or nudges; the case is closed, the subscription left to the business.
    StopDunning,
    /// No more retries or nudges; the policy's end decision is made now.
    EndNow,
    /// The update link is sent again now, once.
    SendUpdateLink,
}

impl Reaction {
    pub fn as_str(self) -> &'static str {
        match self {
            Reaction::Record => "record",
            Reaction::RetryOnPayday => "retry_on_payday",
            Reaction::StopDunning => "stop_dunning",
            Reaction::EndNow => "end_now",
            Reaction::SendUpdateLink => "send_update_link",
        }
    }

    /// What the reaction means for the case, for the timeline.
    fn words(self) -> &'static str {
        match self {
            Reaction::Record => "recorded; the plan is unchanged",
            Reaction::RetryOnPayday => {
                "the next retry moves to their next payday, and no nudge goes out until it has \
                 come to something"
            }
            Reaction::StopDunning => {
                "dunning stopped — no more retries or nudges; the subscription is left to the \
                 business"
            }
            Reaction::EndNow => "dunning stopped; the policy's end decision is made now",
            Reaction::SendUpdateLink => "the update link is sent to them again now",
        }
    }
}

/// What the policy does about each answer (`[feedback]`); "something else" is always recorded only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedbackPlan {
    /// Whether nudges carry the feedback link (when links are set up at all).
    pub enabled: bool,
    /// `SendUpdateLink` or `Record`.
    pub card_changed: Reaction,
    /// `RetryOnPayday` or `Record`.
    pub cant_pay_now: Reaction,
    /// `StopDunning`, `EndNow` or `Record`.
    pub want_to_cancel: Reaction,
}

impl Default for FeedbackPlan {
    /// The link in every nudge; each answer acted on as the module doc says, a wish to cancel by
    /// stopping dunning rather than by cancelling in Stripe.
    fn default() -> Self {
        Self {
            enabled: true,
            card_changed: Reaction::SendUpdateLink,
            cant_pay_now: Reaction::RetryOnPayday,
            want_to_cancel: Reaction::StopDunning,
        }
    }
}

impl FeedbackPlan {
    pub fn reaction(&self, answer: Answer) -> Reaction {
        match answer {
            Answer::CardChanged => self.card_changed,
            Answer::CantPayNow => self.cant_pay_now,
            Answer::WantToCancel => self.want_to_cancel,
            Answer::SomethingElse => Reaction::Record,
        }
    }
}

/// The customer's latest answer, as the case keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CustomerAnswer {
    pub answer: Answer,
    /// Their own words, at most [`MAX_TEXT`] characters; shown escaped wherever they are shown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub at: Timestamp,
    /// What the policy did about it when it came.
    pub reaction: Reaction,
}

impl Case {
    /// The customer's answer, if the policy reacted to it with `reaction`.
    pub(super) fn answered(&self, reaction: Reaction) -> Option<&CustomerAnswer> {
        self.answer.as_deref().filter(|a| a.reaction == reaction)
    }

    /// The customer said they cannot pay now, and no attempt has been made since: the next retry
    /// waits for their payday.
    pub(super) fn retry_waits_for_payday(&self) -> Option<Timestamp> {
        let answer = self.answered(Reaction::RetryOnPayday)?;
        self.attempts
            .iter()
            .all(|a| a.at <= answer.at)
            .then_some(answer.at)
    }

    /// Whether nudges pause for the customer's payday: their retry is planned or under way and has
    /// not come to anything yet. With no retry to wait for (a decline no retry fixes, a retry the
    /// networks dropped) nudges go on: the customer still has to act.
    pub(super) fn nudges_wait_for_payday(&self) -> bool {
        self.retry_waits_for_payday().is_some()
            && (self.retry_under_way.is_some()
                || self
                    .timers
                    .iter()
                    .any(|t| matches!(t.kind, super::TimerKind::Retry { .. })))
    }

    /// When the customer asked to end their subscription and the policy ends it now, while dunning
    /// is not over.
    pub(super) fn ends_on_request(&self) -> Option<Timestamp> {
        self.answered(Reaction::EndNow)
            .filter(|_| !self.state.is_final())
            .map(|a| a.at)
    }
}

/// The customer answered on the feedback page at `at`: the answer is kept on the case, the policy's
/// reaction stamped on it and carried out by planning again, and the timeline told both.
pub(super) fn on_answered(
    policy: &Policy,
    case: Case,
    at: Timestamp,
    answer: Answer,
    text: Option<&str>,
) -> Decision {
    let text = text
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| t.chars().take(MAX_TEXT).collect::<String>());
    let over = case.state.is_final();
    let reaction = if over {
        Reaction::Record
    } else {
        policy.feedback.reaction(answer)
    };
    let state = case.state;
    let mut next = case;
    let wrote = text
        .as_deref()
        .map(|t| format!(" and wrote {t:?}"))
        .unwrap_or_default();
    let then = if over {
        format!("the case is already {}, so nothing changes", state.as_str())
    } else {
        reaction.words().to_owned()
    };
    next.answer = Some(Box::new(CustomerAnswer {
        answer,
        text,
        at,
        reaction,
    }));
    let entry = Entry {
        at,
        what: "customer answered".to_owned(),
        detail: format!(
            "on the feedback link, \"What's in the way?\": {:?}{wrote}; {then}",
            answer.words()
        ),
        event: None,
    };
    if over {
        next.record(entry);
        return Decision::save(next);
    }
    if reaction == Reaction::StopDunning {
        next.closure.get_or_insert(Box::new(Closure {
            at,
            reason: "the customer asked to cancel (feedback link): dunning stopped, the \
                     subscription left to the business"
                .to_owned(),
        }));
    }
    conclude(policy, next, entry)
}
