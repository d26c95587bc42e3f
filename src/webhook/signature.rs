//! The `Stripe-Signature` header: parsing, verification, and signing.
//!
//! Stripe signs every delivery as `t=<unix seconds>,v1=<hex>[,v1=<hex>…][,v0=…]`, where each `v1` is
//! HMAC-SHA256 over `"<t>.<raw body>"` keyed with an endpoint secret (the whole `whsec_…` string).
//! While a secret is being rolled, Stripe sends one `v1` per live secret; recoup accepts a delivery
//! when *any* `v1` matches *any* configured secret, so both sides can rotate without downtime.
//!
//! The raw bytes are verified before anything parses them, comparisons are constant-time, and a
//! timestamp further from now than the tolerance — in either direction — is refused, so a captured
//! delivery cannot be replayed later. Error messages name the problem but never a secret or an
//! expected signature.
//!
//! The same scheme signs recoup's own outgoing webhooks (`Recoup-Signature`) and the fixtures that
//! `recoup webhook send` replays, which is why [`sign`] lives here too.
//!
//! ```
//! use recoup::webhook::signature::{SignatureError, Verifier, sign};
//!
//! let body = br#"{"id":"evt_1","type":"invoice.paid","data":{"object":{}}}"#;
//! let now = 1_790_000_000;
//! let header = sign(b"whsec_new", now, body);
//!
//! // During a rotation both secrets are configured; either one verifies.
//! let verifier = Verifier::new([&b"whsec_old"[..], &b"whsec_new"[..]], 300);
//! assert!(verifier.verify(Some(&header), body, now + 10).is_ok());
//!
//! // Ten minutes later the same delivery is a replay.
//! assert!(matches!(
//!     verifier.verify(Some(&header), body, now + 600),
//!     Err(SignatureError::OutsideTolerance { .. })
//! ));
//! ```

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = Hmac<Sha256>;

/// Length of an HMAC-SHA256 tag in bytes.
const TAG_LEN: usize = 32;

/// Why a delivery was refused. The `reason` strings are stable: they label metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing Stripe-Signature header")]
    Missing,
    #[error("malformed Stripe-Signature header: {0}")]
    Malformed(&'static str),
    #[error("Stripe-Signature header has no v1 signature")]
    NoV1,
    #[error("no v1 signature matches any configured webhook secret")]
    NoMatch,
    #[error(
        "Stripe-Signature timestamp is {skew_secs} s from now, more than the {tolerance_secs} s tolerance"
    )]
    OutsideTolerance { skew_secs: i64, tolerance_secs: u64 },
}

impl SignatureError {
    /// A short, stable label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            SignatureError::Missing => "missing_header",
            SignatureError::Malformed(_) => "malformed_header",
            SignatureError::NoV1 => "no_v1_signature",
            SignatureError::NoMatch => "no_matching_signature",
            SignatureError::OutsideTolerance { .. } => "timestamp_outside_tolerance",
        }
    }
}

/// A parsed header: the timestamp and every well-formed `v1` tag. Other schemes are dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeader {
    pub timestamp: i64,
    pub v1: Vec<[u8; TAG_LEN]>,
}

/// Parses a header value.
///
/// Items are split on `,` and each on its first `=`; spaces around items, keys and values are
/// tolerated and empty items skipped. Exactly one `t` is required. A `v1` that is not 64 hex digits
/// can never match and is dropped, like any unknown scheme; [`SignatureError::NoV1`] follows when
/// none is left.
pub fn parse(header: &str) -> Result<SignatureHeader, SignatureError> {
    let mut timestamp = None;
    let mut v1 = Vec::new();
    for item in header.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let (key, value) = item
            .split_once('=')
            .ok_or(SignatureError::Malformed("an item is not key=value"))?;
        match key.trim() {
            "t" => {
                if timestamp.is_some() {
                    return Err(SignatureError::Malformed("more than one t= timestamp"));
                }
                let value = value.trim();
                if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(SignatureError::Malformed("t= is not a unix timestamp"));
                }
                timestamp = Some(
                    value
                        .parse::<i64>()
                        .map_err(|_| SignatureError::Malformed("t= is not a unix timestamp"))?,
                );
            }
            "v1" => {
                let mut tag = [0u8; TAG_LEN];
                if hex::decode_to_slice(value.trim(), &mut tag).is_ok() {
                    v1.push(tag);
                }
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed("no t= timestamp"))?;
    if v1.is_empty() {
        return Err(SignatureError::NoV1);
    }
    Ok(SignatureHeader { timestamp, v1 })
}

/// Checks deliveries against a set of secrets and a timestamp tolerance.
///
/// Each secret is kept as a keyed HMAC state, so a verification costs two SHA-256 passes per secret
/// and never re-derives keys.
#[derive(Clone)]
pub struct Verifier {
    keys: Vec<HmacSha256>,
    tolerance_secs: u64,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("secrets", &format_args!("[{} redacted]", self.keys.len()))
            .field("tolerance_secs", &self.tolerance_secs)
            .finish()
    }
}

impl Verifier {
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a [u8]>, tolerance_secs: u64) -> Self {
        let keys = secrets
            .into_iter()
            .map(|s| HmacSha256::new_from_slice(s).expect("HMAC takes keys of any length"))
            .collect();
        Self {
            keys,
            tolerance_secs,
        }
    }

    /// Verifies `body` against the header value (`None` when the header was absent) at `now`
    /// (unix seconds, from the real wall clock).
    ///
    /// The signature is checked before the timestamp, as Stripe's libraries do, so a
    /// [`SignatureError::OutsideTolerance`] always means a genuine but stale (or future) delivery —
    /// usually clock skew or a replay — rather than a forgery.
    pub fn verify(
        &self,
        header: Option<&str>,
        body: &[u8],
        now: i64,
    ) -> Result<SignatureHeader, SignatureError> {
        let parsed = parse(header.ok_or(SignatureError::Missing)?)?;
        let matched = self.keys.iter().any(|key| {
            let expected = tag(key.clone(), parsed.timestamp, body);
            // Every candidate is compared in constant time; only the overall yes/no is revealed.
            parsed
                .v1
                .iter()
                .fold(subtle::Choice::from(0), |any, candidate| {
                    any | candidate.ct_eq(&expected)
                })
                .into()
        });
        if !matched {
            return Err(SignatureError::NoMatch);
        }
        let skew = now.saturating_sub(parsed.timestamp);
        if skew.unsigned_abs() > self.tolerance_secs {
            return Err(SignatureError::OutsideTolerance {
                skew_secs: skew,
                tolerance_secs: self.tolerance_secs,
            });
        }
        Ok(parsed)
    }
}

fn tag(mut mac: HmacSha256, timestamp: i64, body: &[u8]) -> [u8; TAG_LEN] {
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// The real wall clock in unix seconds: signature timestamps are always checked against it, never
/// against a test clock.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// The header value `t=<timestamp>,v1=<hex>` for `body` signed with `secret`.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let key = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
    format!(
        "t={timestamp},v1={}",
        hex::encode(tag(key, timestamp, body))
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SECRET: &[u8] = b"whsec_test_secret";
    const OTHER: &[u8] = b"whsec_other_secret";
    const NOW: i64 = 1_790_000_000;
    const BODY: &[u8] = br#"{"id":"evt_1","type":"invoice.paid","data":{"object":{}}}"#;

    fn verifier(secrets: &[&[u8]]) -> Verifier {
        Verifier::new(secrets.iter().copied(), 300)
    }

    fn v1(secret: &[u8], t: i64, body: &[u8]) -> String {
        sign(secret, t, body)
            .split_once(",v1=")
            .unwrap()
            .1
            .to_owned()
    }

    // The checklist of Stripe's official libraries, one case each.

    #[test]
    fn accepts_a_valid_signature() {
        let header = sign(SECRET, NOW, BODY);
        assert!(verifier(&[SECRET]).verify(Some(&header), BODY, NOW).is_ok());
    }

    #[test]
    fn accepts_when_one_of_several_v1_matches() {
        let header = format!(
            "t={NOW},v1={},v1={},v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39",
            v1(OTHER, NOW, BODY),
            v1(SECRET, NOW, BODY)
        );
        assert!(verifier(&[SECRET]).verify(Some(&header), BODY, NOW).is_ok());
    }

    #[test]
    fn refuses_a_header_without_v1() {
        let header = format!("t={NOW},v0={}", v1(SECRET, NOW, BODY));
        assert_eq!(
            verifier(&[SECRET]).verify(Some(&header), BODY, NOW),
            Err(SignatureError::NoV1)
        );
    }

    #[test]
    fn refuses_malformed_headers() {
        for header in [
            "",
            "garbage",
            "v1=abc",
            "t=,v1=00",
            "t=12x,v1=00",
            "t=-5,v1=00",
            "t=1,t=2,v1=00",
        ] {
            assert!(
                matches!(
                    verifier(&[SECRET]).verify(Some(header), BODY, NOW),
                    Err(SignatureError::Malformed(_))
                ),
                "{header:?}"
            );
        }
        assert_eq!(
            verifier(&[SECRET]).verify(None, BODY, NOW),
            Err(SignatureError::Missing)
        );
    }

    #[test]
    fn refuses_the_wrong_secret() {
        let header = sign(OTHER, NOW, BODY);
        assert_eq!(
            verifier(&[SECRET]).verify(Some(&header), BODY, NOW),
            Err(SignatureError::NoMatch)
        );
    }

    #[test]
    fn refuses_a_tampered_body() {
        let header = sign(SECRET, NOW, BODY);
        let mut tampered = BODY.to_vec();
        tampered[10] ^= 1;
        assert_eq!(
            verifier(&[SECRET]).verify(Some(&header), &tampered, NOW),
            Err(SignatureError::NoMatch)
        );
    }

    #[test]
    fn timestamps_just_inside_the_tolerance_pass_in_both_directions() {
        for t in [NOW - 300, NOW + 300] {
            let header = sign(SECRET, t, BODY);
            assert!(
                verifier(&[SECRET]).verify(Some(&header), BODY, NOW).is_ok(),
                "{t}"
            );
        }
    }

    #[test]
    fn timestamps_just_outside_the_tolerance_fail_in_both_directions() {
        for (t, skew) in [(NOW - 301, 301), (NOW + 301, -301)] {
            let header = sign(SECRET, t, BODY);
            assert_eq!(
                verifier(&[SECRET]).verify(Some(&header), BODY, NOW),
                Err(SignatureError::OutsideTolerance {
                    skew_secs: skew,
                    tolerance_secs: 300
                })
            );
        }
    }

    #[test]
    fn accepts_any_configured_secret_during_rotation() {
        let both = verifier(&[OTHER, SECRET]);
        assert!(
            both.verify(Some(&sign(SECRET, NOW, BODY)), BODY, NOW)
                .is_ok()
        );
        assert!(
            both.verify(Some(&sign(OTHER, NOW, BODY)), BODY, NOW)
                .is_ok()
        );
        let retired = verifier(&[SECRET]);
        assert_eq!(
            retired.verify(Some(&sign(OTHER, NOW, BODY)), BODY, NOW),
            Err(SignatureError::NoMatch)
        );
    }

    #[test]
    fn tolerates_spaces_and_ignores_unknown_schemes() {
        let header = format!(
            " t = {NOW} , v2=zzz,  v1= {} ,, scheme=with=equals ",
            v1(SECRET, NOW, BODY)
        );
        assert!(verifier(&[SECRET]).verify(Some(&header), BODY, NOW).is_ok());
    }

    #[test]
    fn errors_never_show_the_secret_or_the_expected_signature() {
        let expected = v1(SECRET, NOW, BODY);
        let header = format!("t={NOW},v1={}", "0".repeat(64));
        let err = verifier(&[SECRET])
            .verify(Some(&header), BODY, NOW)
            .unwrap_err();
        let shown = format!("{err} {err:?} {:?}", verifier(&[SECRET]));
        assert!(!shown.contains("whsec_test_secret"), "{shown}");
        assert!(!shown.contains(&expected), "{shown}");
    }

    #[test]
    fn matches_an_independent_hmac() {
        // printf '%s' '1700000000.{}' | openssl dgst -sha256 -hmac whsec_test
        assert_eq!(
            sign(b"whsec_test", 1_700_000_000, b"{}"),
            "t=1700000000,v1=35495024f4ef3f94e5a93e22221544c4b75e9a42300cd965ab81cb85cd994e91"
        );
    }

    proptest! {
        #[test]
        fn parse_never_panics(header in ".{0,200}") {
            let _ = parse(&header);
        }

        #[test]
        fn parse_never_panics_on_near_headers(
            header in r"( ?(t|v1|v0|x)? ?=? ?[0-9a-fA-F ,=-]{0,70}){0,5}"
        ) {
            let _ = parse(&header);
        }

        #[test]
        fn parse_reads_back_what_was_written(
            t in 0i64..=4_000_000_000,
            tags in prop::collection::vec(any::<[u8; 32]>(), 1..4),
            v0 in prop::option::of(any::<[u8; 32]>()),
            pad in prop::sample::select(vec!["", " ", "  "]),
            t_last in any::<bool>(),
        ) {
            let mut items: Vec<String> = tags.iter().map(|g| format!("v1={}", hex::encode(g))).collect();
            if let Some(v0) = v0 {
                items.insert(0, format!("v0={}", hex::encode(v0)));
            }
            let t_item = format!("t={t}");
            if t_last { items.push(t_item) } else { items.insert(0, t_item) }
            let header = items.join(&format!("{pad},{pad}"));
            let parsed = parse(&header).unwrap();
            prop_assert_eq!(parsed.timestamp, t);
            prop_assert_eq!(parsed.v1, tags);
        }

        #[test]
        fn verify_accepts_exactly_the_right_signature(
            body in prop::collection::vec(any::<u8>(), 0..256),
            skew in -400i64..=400,
            use_right_secret in any::<bool>(),
            flip in prop::option::of(0usize..32),
        ) {
            let secret: &[u8] = if use_right_secret { SECRET } else { OTHER };
            let t = NOW + skew;
            let mut tag = [0u8; 32];
            hex::decode_to_slice(v1(secret, t, &body), &mut tag).unwrap();
            if let Some(i) = flip { tag[i] ^= 0x80; }
            let header = format!("t={t},v1={}", hex::encode(tag));
            let result = verifier(&[SECRET]).verify(Some(&header), &body, NOW);
            let should_pass = use_right_secret && flip.is_none() && skew.abs() <= 300;
            prop_assert_eq!(result.is_ok(), should_pass, "{:?}", result);
        }
    }
}
