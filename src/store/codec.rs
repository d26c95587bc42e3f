//! A case as stored: `<version>:`, a format byte, then the case's JSON compressed.
//!
//! The version leads in plain digits so the save script can compare it without decoding the rest.
//! Format `1` is zstd against a fixed dictionary of what every case repeats (field names, states,
//! decline codes, timeline phrases): a case's own JSON is too short for a compressor to find much to
//! reuse within it, and with the dictionary a worked case takes about 40% of what plain LZ4 leaves —
//! the bulk of what an open case costs in Redis (`scripts/bench-memory`). The dictionary can never
//! change under format `1`; a better one is a new format byte, with `decode` keeping the old ones.

use std::cell::RefCell;
use std::sync::LazyLock;

use zstd::bulk::{Compressor, Decompressor};
use zstd::dict::{DecoderDictionary, EncoderDictionary};

use super::StoreError;
use crate::policy::Case;
use crate::policy::budget::CardHistory;

const FORMAT: u8 = b'1';
const DICTIONARY: &[u8] = include_bytes!("case.dict");
/// Level 4 takes half the time of level 6 for 5% more bytes (which Redis's allocator mostly
/// rounds away); below it a case grows faster than it speeds up.
const LEVEL: i32 = 4;
/// A case saved with a retry under way — between handing the charge to Stripe and saving its
/// result, moments later — is overwritten before its size matters: it is compressed at the fastest
/// level. Any zstd decoder reads every level, so the stored format is the same.
const UNDER_WAY_LEVEL: i32 = 1;
/// A stored case claiming to be larger than this when decompressed is damaged, not a case.
const MAX_JSON: usize = 16 << 20;

static ENCODING: LazyLock<EncoderDictionary<'static>> =
    LazyLock::new(|| EncoderDictionary::copy(DICTIONARY, LEVEL));
static ENCODING_UNDER_WAY: LazyLock<EncoderDictionary<'static>> =
    LazyLock::new(|| EncoderDictionary::copy(DICTIONARY, UNDER_WAY_LEVEL));
static DECODING: LazyLock<DecoderDictionary<'static>> =
    LazyLock::new(|| DecoderDictionary::copy(DICTIONARY));

thread_local! {
    // zstd contexts are reusable but not shareable: one per thread spares an allocation of
    // several hundred KiB on every save.
    static COMPRESSOR: RefCell<Compressor<'static>> = RefCell::new(
        Compressor::with_prepared_dictionary(&ENCODING).expect("zstd allocates a context"),
    );
    static COMPRESSOR_UNDER_WAY: RefCell<Compressor<'static>> = RefCell::new(
        Compressor::with_prepared_dictionary(&ENCODING_UNDER_WAY)
            .expect("zstd allocates a context"),
    );
    static DECOMPRESSOR: RefCell<Decompressor<'static>> = RefCell::new(
        Decompressor::with_prepared_dictionary(&DECODING).expect("zstd allocates a context"),
    );
}

pub fn encode(case: &Case) -> Vec<u8> {
    let json = serde_json::to_vec(case).expect("a Case always serialises");
    let compressor = if case.retry_under_way.is_some() {
        &COMPRESSOR_UNDER_WAY
    } else {
        &COMPRESSOR
    };
    let body = compressor
        .with_borrow_mut(|zstd| zstd.compress(&json))
        .expect("zstd compresses what fits in memory");
    let mut stored = format!("{}:", case.version).into_bytes();
    stored.push(FORMAT);
    stored.extend(body);
    stored
}

/// A card's history: `<version>:` and its JSON, small enough to need no compression.
pub fn encode_card(card: &CardHistory) -> Vec<u8> {
    let mut stored = format!("{}:", card.version).into_bytes();
    serde_json::to_writer(&mut stored, card).expect("a card history always serialises");
    stored
}

pub fn decode_card(stored: &[u8]) -> Result<CardHistory, StoreError> {
    let (version, json) = split_version(stored)?;
    let mut card: CardHistory = serde_json::from_slice(json)
        .map_err(|e| StoreError::Corrupt(format!("a card history that is not JSON: {e}")))?;
    card.version = version;
    Ok(card)
}

/// `<version>:<rest>`: the version every stored value leads with, and the rest.
fn split_version(stored: &[u8]) -> Result<(u64, &[u8]), StoreError> {
    let colon = stored
        .iter()
        .position(|&b| b == b':')
        .ok_or_else(|| StoreError::Corrupt("a stored value without its version".into()))?;
    let version = std::str::from_utf8(&stored[..colon])
        .ok()
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| StoreError::Corrupt("a stored value with a damaged version".into()))?;
    Ok((version, &stored[colon + 1..]))
}

pub fn decode(stored: &[u8]) -> Result<Case, StoreError> {
    let corrupt = |why: String| StoreError::Corrupt(why);
    let (_, body) = split_version(stored)?;
    let json = match body.split_first() {
        Some((&FORMAT, compressed)) => DECOMPRESSOR
            .with_borrow_mut(|zstd| zstd.decompress(compressed, MAX_JSON))
            .map_err(|e| corrupt(format!("case does not decompress: {e}")))?,
        Some((other, _)) if other.is_ascii_digit() && *other > FORMAT => {
            return Err(StoreError::Newer(format!(
                "case stored in format {:?}, which this release cannot read",
                char::from(*other)
            )));
        }
        Some((other, _)) => {
            return Err(corrupt(format!(
                "case stored in format {:?}, which no release writes",
                char::from(*other)
            )));
        }
        None => return Err(corrupt("a case without its body".into())),
    };
    serde_json::from_slice(&json).map_err(|e| corrupt(format!("case does not parse: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::wire::{Parsed, parse};
    use crate::policy::{Input, Policy, decide};

    fn case() -> Case {
        let body = include_bytes!("../../fixtures/events/invoice.payment_failed.json");
        let Ok(Parsed::Acted(event)) = parse(body) else {
            panic!("the fixture is an event recoup acts on");
        };
        let mut case = decide(
            &Policy::default(),
            None,
            &Input::Event(event),
            jiff::Timestamp::now(),
        )
        .case
        .unwrap();
        case.version = 41;
        case
    }

    #[test]
    fn a_case_comes_back_as_it_went_in_and_smaller_than_without_the_dictionary() {
        let case = case();
        let stored = encode(&case);
        assert!(stored.starts_with(b"41:1"));
        assert_eq!(decode(&stored).unwrap(), case);
        let plain = zstd::bulk::compress(&serde_json::to_vec(&case).unwrap(), LEVEL).unwrap();
        assert!(
            stored.len() * 3 < plain.len() * 2,
            "{} bytes with the dictionary, {} without",
            stored.len(),
            plain.len()
        );
    }

    #[test]
    fn a_case_saved_with_a_retry_under_way_is_compressed_at_its_own_level_in_the_same_format() {
        let mut case = case();
        case.retry_under_way = Some(crate::policy::RetryUnderWay {
            attempt: 2,
            at: case.opened_at,
        });
        let stored = encode(&case);
        assert!(stored.starts_with(b"41:1"), "the same format byte");
        assert_eq!(decode(&stored).unwrap(), case);
        let at_rest = COMPRESSOR
            .with_borrow_mut(|zstd| zstd.compress(&serde_json::to_vec(&case).unwrap()))
            .unwrap();
        assert_ne!(
            &stored[4..],
            &at_rest[..],
            "compressed at the under-way level, not the resting one"
        );
    }

    #[test]
    fn an_unknown_format_or_a_damaged_body_is_corrupt_not_a_panic() {
        let mut stored = encode(&case());
        stored[3] = b'9';
        let err = decode(&stored).unwrap_err();
        assert!(matches!(err, StoreError::Newer(_)), "{err}");
        assert!(err.to_string().contains("format '9'"), "{err}");
        for broken in [&b"41"[..], b"41:", b"41:1", b"41:1\x28\xb5\x2f\xfdxx"] {
            assert!(
                matches!(decode(broken), Err(StoreError::Corrupt(_))),
                "{broken:?}"
            );
        }
    }
}
