//! Decline classification: what a card decline means for retrying.
//!
//! Stripe reports a decline with up to five signals (on the PaymentIntent's `last_payment_error`, or
//! the Charge's `outcome`): its own `code` and `decline_code`, its `advice_code`, and since
//! 2024-12-18 the card network's `network_advice_code` (Mastercard's Merchant Advice Code) and
//! `network_decline_code` (for Visa, the response code that places a decline in a category).
//! [`classify`] turns them into one [`DeclineClass`] and says which signal decided, so a case's
//! timeline can explain why it is, or is not, retried.
//!
//! The order follows `docs/design/declines.md#the-order-of-the-signals` — advice first, then the network's advice, then the decline codes, and
//! an unknown code is `ambiguous`, never `soft` — with one rule above it: a signal that forbids
//! retrying wins wherever it appears. A `try_again_later` advice does not make a retry after
//! Mastercard's advice 03 or a Visa category 1 decline free of the networks' fees, nor a stolen card
//! worth charging again, so those stay `hard` whatever else the decline says.

use jiff::{SignedDuration, Timestamp};

use super::DeclineClass;
use super::networks::{Code, Means, Networks};

/// The decline signals Stripe reports, as they came.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Signals<'a> {
    /// Stripe's error code: `card_declined`, `expired_card`, `authentication_required`, …
    pub code: Option<&'a str>,
    pub decline_code: Option<&'a str>,
    /// `try_again_later`, `do_not_try_again` or `confirm_card_data`.
    pub advice_code: Option<&'a str>,
    /// Mastercard's Merchant Advice Code, two digits.
    pub network_advice_code: Option<&'a str>,
    /// The network's own response code (Visa's decides the decline category).
    pub network_decline_code: Option<&'a str>,
    /// The card brand as Stripe names it: `visa`, `mastercard`, …
    pub brand: Option<&'a str>,
}

/// The class of a decline, the signal that decided it, and how long the network asks to wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classified<'a> {
    pub class: DeclineClass,
    /// Mastercard advice 24–30: no retry before this much time has passed since the decline.
    pub not_before: Option<SignedDuration>,
    /// The networks' own row for the decline's codes, whichever signal decided: what a retry after
    /// it costs ([`Code::fee`]).
    pub network: Option<&'a Code>,
    /// The signal that decided, kept as it came: its words are made only when a timeline asks
    /// ([`Classified::because`]) — the networks' budgets classify every try they count.
    signal: Signal<'a>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal<'a> {
    Advice(&'a str),
    Network(&'a Code, &'a str),
    Code(&'a str),
    Unknown(&'a str),
}

impl Classified<'_> {
    /// Which signal decided, in words a support agent can repeat: `advice_code do_not_try_again`.
    pub fn because(&self) -> String {
        match self.signal {
            Signal::Advice(advice) => format!("advice_code {advice}"),
            Signal::Network(row, code) => {
                let brand = super::plan::capitalised(&row.brand);
                match row.category {
                    Some(category) => {
                        format!("{brand} category {category} decline (response {code})")
                    }
                    None => format!("{brand} advice {code}"),
                }
            }
            Signal::Code(code) => format!("decline code {code}"),
            Signal::Unknown(code) => {
                format!("decline code {code} (not one recoup knows: ambiguous)")
            }
        }
    }
}

/// Classifies one decline made at `at`, reading the network's own codes as `networks` has them
/// that day; see the module documentation for the order of the signals.
pub fn classify<'a>(
    signals: &Signals<'a>,
    networks: &'a Networks,
    at: Timestamp,
) -> Classified<'a> {
    let meaning = networks.meaning(signals, at);
    let not_before = meaning.and_then(|(row, _)| match row.means {
        Means::Wait(wait) => Some(wait),
        Means::Never | Means::NewCard | Means::Retry => None,
    });
    let advice = signals
        .advice_code
        .and_then(|a| by_advice(a).map(|class| (class, Signal::Advice(a))));
    let network = meaning.map(|(row, code)| {
        let class = match row.means {
            Means::Never => DeclineClass::Hard,
            Means::NewCard => DeclineClass::CardData,
            Means::Retry | Means::Wait(_) => DeclineClass::Soft,
        };
        (class, Signal::Network(row, code))
    });
    let codes = [signals.decline_code, signals.code]
        .into_iter()
        .flatten()
        .find_map(|c| by_code(c).map(|class| (class, Signal::Code(c))));

    let found = [advice, network, codes];
    let hard = found
        .iter()
        .flatten()
        .find(|(class, _)| *class == DeclineClass::Hard);
    let (class, signal) = hard
        .or_else(|| found.iter().flatten().next())
        .copied()
        .unwrap_or_else(|| {
            let code = signals.decline_code.or(signals.code).unwrap_or("none");
            (DeclineClass::Ambiguous, Signal::Unknown(code))
        });
    Classified {
        class,
        not_before,
        network: meaning.map(|(row, _)| row),
        signal,
    }
}

fn by_advice(advice: &str) -> Option<DeclineClass> {
    Some(match advice {
        "do_not_try_again" => DeclineClass::Hard,
        "confirm_card_data" => DeclineClass::CardData,
        "try_again_later" => DeclineClass::Soft,
        _ => return None,
    })
}

/// Stripe's `decline_code` and `code` values recoup knows (`docs/design/declines.md#codes-recoup-knows`).
fn by_code(code: &str) -> Option<DeclineClass> {
    Some(match code {
        "lost_card"
        | "stolen_card"
        | "pickup_card"
        | "incorrect_number"
        | "invalid_number"
        | "revocation_of_authorization"
        | "revocation_of_all_authorizations"
        | "stop_payment_order"
        | "highest_risk_level"
        | "fraudulent"
        | "merchant_blacklist"
        | "security_violation" => DeclineClass::Hard,
        "authentication_required" => DeclineClass::ActionRequired,
        "expired_card"
        | "incorrect_cvc"
        | "invalid_cvc"
        | "incorrect_zip"
        | "invalid_expiry_month"
        | "invalid_expiry_year"
        | "invalid_account"
        | "new_account_information_available"
        | "card_not_supported"
        | "currency_not_supported" => DeclineClass::CardData,
        "insufficient_funds"
        | "try_again_later"
        | "processing_error"
        | "issuer_not_available"
        | "reenter_transaction"
        | "approve_with_id"
        | "card_velocity_exceeded"
        | "withdrawal_count_limit_exceeded" => DeclineClass::Soft,
        "do_not_honor" | "generic_decline" => DeclineClass::Ambiguous,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A decline in 2027, under the built-in network rules.
    fn classified<'a>(signals: &Signals<'a>) -> Classified<'a> {
        static NETWORKS: std::sync::LazyLock<std::sync::Arc<Networks>> =
            std::sync::LazyLock::new(Networks::built_in);
        classify(signals, &NETWORKS, on("2027-01-15"))
    }

    fn on(day: &str) -> Timestamp {
        format!("{day}T12:00:00Z").parse().unwrap()
    }

    fn class(signals: Signals<'_>) -> DeclineClass {
        classified(&signals).class
    }

    #[test]
    fn visa_57_is_category_1_from_25_october_2026_and_83_category_2() {
        let response = |code| Signals {
            network_decline_code: Some(code),
            brand: Some("visa"),
            ..decline("generic_decline")
        };
        let networks = Networks::built_in();
        let before = classify(&response("57"), &networks, on("2026-10-24"));
        assert_eq!(before.class, DeclineClass::Ambiguous, "{before:?}");
        let after = classify(&response("57"), &networks, on("2026-10-25"));
        assert_eq!(after.class, DeclineClass::Hard);
        assert_eq!(after.because(), "Visa category 1 decline (response 57)");
        assert_eq!(
            classify(&response("83"), &networks, on("2026-10-25")).class,
            DeclineClass::Soft
        );
        // 5C moved the other way in April 2025.
        assert_eq!(
            classify(&response("5C"), &networks, on("2025-03-31")).class,
            DeclineClass::Hard
        );
        assert_eq!(
            classify(&response("5C"), &networks, on("2025-04-01")).class,
            DeclineClass::Soft
        );
    }

    fn decline(code: &str) -> Signals<'_> {
        Signals {
            code: Some("card_declined"),
            decline_code: Some(code),
            ..Signals::default()
        }
    }

    #[test]
    fn every_code_of_the_domain_table_lands_in_its_class() {
        let table: [(&[&str], DeclineClass); 5] = [
            (
                &[
                    "lost_card",
                    "stolen_card",
                    "pickup_card",
                    "incorrect_number",
                    "revocation_of_authorization",
                    "revocation_of_all_authorizations",
                    "highest_risk_level",
                ],
                DeclineClass::Hard,
            ),
            (&["authentication_required"], DeclineClass::ActionRequired),
            (
                &[
                    "expired_card",
                    "incorrect_cvc",
                    "incorrect_zip",
                    "invalid_account",
                    "card_not_supported",
                    "currency_not_supported",
                ],
                DeclineClass::CardData,
            ),
            (
                &[
                    "insufficient_funds",
                    "try_again_later",
                    "processing_error",
                    "issuer_not_available",
                    "reenter_transaction",
                    "card_velocity_exceeded",
                    "withdrawal_count_limit_exceeded",
                ],
                DeclineClass::Soft,
            ),
            (
                &[
                    "do_not_honor",
                    "generic_decline",
                    "a_code_stripe_adds_next_year",
                ],
                DeclineClass::Ambiguous,
            ),
        ];
        for (codes, expected) in table {
            for code in codes {
                assert_eq!(class(decline(code)), expected, "{code}");
            }
        }
    }

    #[test]
    fn stripe_code_alone_is_read_when_there_is_no_decline_code() {
        let signals = Signals {
            code: Some("authentication_required"),
            ..Signals::default()
        };
        assert_eq!(class(signals), DeclineClass::ActionRequired);
        let bare = Signals {
            code: Some("card_declined"),
            ..Signals::default()
        };
        assert_eq!(class(bare), DeclineClass::Ambiguous);
        assert_eq!(class(Signals::default()), DeclineClass::Ambiguous);
    }

    #[test]
    fn advice_outranks_the_decline_code() {
        let soft_by_code = Signals {
            advice_code: Some("confirm_card_data"),
            ..decline("insufficient_funds")
        };
        let classified = classified(&soft_by_code);
        assert_eq!(classified.class, DeclineClass::CardData);
        assert_eq!(classified.because(), "advice_code confirm_card_data");

        let ambiguous_by_code = Signals {
            advice_code: Some("try_again_later"),
            ..decline("do_not_honor")
        };
        assert_eq!(class(ambiguous_by_code), DeclineClass::Soft);
    }

    #[test]
    fn mastercard_advice_comes_before_the_decline_code_and_sets_the_wait() {
        let expected = [
            ("01", DeclineClass::CardData, None),
            ("02", DeclineClass::Soft, None),
            ("03", DeclineClass::Hard, None),
            ("21", DeclineClass::Hard, None),
            ("24", DeclineClass::Soft, Some(1)),
            ("25", DeclineClass::Soft, Some(24)),
            ("26", DeclineClass::Soft, Some(48)),
            ("27", DeclineClass::Soft, Some(96)),
            ("28", DeclineClass::Soft, Some(144)),
            ("29", DeclineClass::Soft, Some(192)),
            ("30", DeclineClass::Soft, Some(240)),
        ];
        for (mac, class, hours) in expected {
            let classified = classified(&Signals {
                network_advice_code: Some(mac),
                brand: Some("mastercard"),
                ..decline("generic_decline")
            });
            assert_eq!(classified.class, class, "MAC {mac}");
            assert_eq!(
                classified.not_before,
                hours.map(SignedDuration::from_hours),
                "MAC {mac}"
            );
        }
    }

    #[test]
    fn a_signal_that_forbids_retrying_wins_wherever_it_appears() {
        let mac_03 = Signals {
            advice_code: Some("try_again_later"),
            network_advice_code: Some("03"),
            brand: Some("mastercard"),
            ..decline("insufficient_funds")
        };
        let classified = classified(&mac_03);
        assert_eq!(classified.class, DeclineClass::Hard);
        assert_eq!(classified.because(), "Mastercard advice 03");

        let visa_stolen = Signals {
            advice_code: Some("try_again_later"),
            network_decline_code: Some("43"),
            brand: Some("visa"),
            ..decline("generic_decline")
        };
        assert_eq!(class(visa_stolen), DeclineClass::Hard);

        // Category 1 is Visa's: the same response code from another network is not read as one.
        let other_network = Signals {
            network_decline_code: Some("43"),
            brand: Some("amex"),
            ..decline("insufficient_funds")
        };
        assert_eq!(class(other_network), DeclineClass::Soft);
    }

    #[test]
    fn an_unknown_code_is_ambiguous_and_says_so() {
        let classified = classified(&decline("brand_new_code"));
        assert_eq!(classified.class, DeclineClass::Ambiguous);
        assert!(
            classified.because().contains("brand_new_code"),
            "{classified:?}"
        );
    }

    proptest! {
        /// Whatever arrives, a decline is `hard` exactly when some signal forbids retrying, and
        /// signals recoup does not know never make it `soft`.
        #[test]
        fn unknown_signals_are_never_soft_and_forbidding_ones_always_win(
            code in "[a-z_]{0,24}",
            advice in proptest::option::of(prop_oneof![
                Just("try_again_later"), Just("do_not_try_again"), Just("confirm_card_data"), Just("x")
            ]),
            mac in proptest::option::of("[0-3][0-9]"),
            visa in proptest::option::of(prop_oneof![Just("41"), Just("05"), Just("R1")]),
        ) {
            let signals = Signals {
                code: Some("card_declined"),
                decline_code: Some(&code),
                advice_code: advice,
                network_advice_code: mac.as_deref(),
                network_decline_code: visa,
                brand: Some(if visa.is_some() { "visa" } else { "mastercard" }),
            };
            let classified = classified(&signals);
            // Mastercard's advice is read on a Mastercard, Visa's categories on a Visa.
            let mac = mac.as_deref().filter(|_| visa.is_none());
            let forbids = advice == Some("do_not_try_again")
                || matches!(mac, Some("03" | "21"))
                || matches!(visa, Some("41" | "R1"))
                || by_code(&code) == Some(DeclineClass::Hard);
            prop_assert_eq!(forbids, classified.class == DeclineClass::Hard, "{:?}", classified);
            let known = by_code(&code).is_some()
                || advice.and_then(by_advice).is_some()
                || mac.is_some_and(|m| {
                    matches!(m, "01" | "02" | "03" | "04" | "21" | "24" | "25" | "26" | "27" | "28" | "29" | "30")
                });
            if !known {
                prop_assert_ne!(classified.class, DeclineClass::Soft);
            }
        }
    }
}
