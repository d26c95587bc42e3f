//! A case as stored: `<version>:`, a format byte, then the case's JSON compressed.
//!
//! The version leads in plain digits so the save script can compare it without decoding the rest.
//! Every format is zstd against a fixed dictionary of what every case repeats (field names, states,
//! decline codes, timeline phrases): a case's own JSON is too short for a compressor to find much to
//! reuse within it. A dictionary can never change under its format byte; a better one is a new
//! format, written from then on, and `decode` keeps reading the old ones.
//!
//! - `1`: a hand-written dictionary (`case-1.dict`), compressed at level 4. Read, no longer written.
//! - `2`: a dictionary trained by `zstd --train` on the cases the test suite and the demo save
//!   (`case-2.dict`, docs/operator-guide/redis.md#why-so-few-keys). Besides the phrases, it carries the
//!   statistics zstd would otherwise build afresh for every case, so level 1 — the cheapest search
//!   — stores a case in about two thirds of the bytes format `1` took at level 4, compressed 3.7
//!   times as fast.

use std::cell::RefCell;
use std::sync::LazyLock;

use zstd::bulk::{Compressor, Decompressor};
use zstd::dict::{DecoderDictionary, EncoderDictionary};

use super::StoreError;
use crate::policy::Case;
use crate::policy::budget::CardHistory;

/// The format written.
const FORMAT: u8 = b'2';
const DICTIONARY: &[u8] = include_bytes!("case-2.dict");
/// The format written until the trained dictionary: still read.
const FORMAT_1: u8 = b'1';
const DICTIONARY_1: &[u8] = include_bytes!("case-1.dict");
/// With the trained dictionary, level 4 stores a case in 14% fewer bytes than level 1 at less
/// than half its speed: the worker's time is the scarcer of the two.
const LEVEL: i32 = 1;
/// A stored case claiming to be larger than this when decompressed is damaged, not a case.
const MAX_JSON: usize = 16 << 20;

static ENCODING: LazyLock<EncoderDictionary<'static>> =
    LazyLock::new(|| EncoderDictionary::copy(DICTIONARY, LEVEL));
static DECODING: LazyLock<DecoderDictionary<'static>> =
    LazyLock::new(|| DecoderDictionary::copy(DICTIONARY));
static DECODING_1: LazyLock<DecoderDictionary<'static>> =
    LazyLock::new(|| DecoderDictionary::copy(DICTIONARY_1));

thread_local! {
    // zstd contexts are reusable but not shareable: one per thread spares an allocation of
    // several hundred KiB on every save.
    static COMPRESSOR: RefCell<Compressor<'static>> = RefCell::new(
        Compressor::with_prepared_dictionary(&ENCODING).expect("zstd allocates a context"),
    );
    static DECOMPRESSOR: RefCell<Decompressor<'static>> = RefCell::new(
        Decompressor::with_prepared_dictionary(&DECODING).expect("zstd allocates a context"),
    );
    static DECOMPRESSOR_1: RefCell<Decompressor<'static>> = RefCell::new(
        Decompressor::with_prepared_dictionary(&DECODING_1).expect("zstd allocates a context"),
    );
}

pub fn encode(case: &Case) -> Vec<u8> {
    let json = serde_json::to_vec(case).expect("a Case always serialises");
    let body = COMPRESSOR
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
    let decompressor = match body.split_first() {
        Some((&FORMAT, _)) => &DECOMPRESSOR,
        Some((&FORMAT_1, _)) => &DECOMPRESSOR_1,
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
    let json = decompressor
        .with_borrow_mut(|zstd| zstd.decompress(&body[1..], MAX_JSON))
        .map_err(|e| corrupt(format!("case does not decompress: {e}")))?;
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
        assert!(stored.starts_with(b"41:2"));
        assert_eq!(decode(&stored).unwrap(), case);
        let json = serde_json::to_vec(&case).unwrap();
        let plain = zstd::bulk::compress(&json, LEVEL).unwrap();
        assert!(
            stored.len() * 2 < plain.len(),
            "{} bytes with the dictionary, {} without",
            stored.len(),
            plain.len()
        );
        let format_1 = zstd::bulk::Compressor::with_dictionary(4, DICTIONARY_1)
            .unwrap()
            .compress(&json)
            .unwrap();
        assert!(
            stored.len() < format_1.len(),
            "{} bytes in format 2, {} in format 1",
            stored.len(),
            format_1.len()
        );
    }

    #[test]
    fn a_case_an_earlier_release_stored_in_format_1_still_reads() {
        let case = case();
        let mut stored = b"41:1".to_vec();
        stored.extend(
            zstd::bulk::Compressor::with_dictionary(4, DICTIONARY_1)
                .unwrap()
                .compress(&serde_json::to_vec(&case).unwrap())
                .unwrap(),
        );
        assert_eq!(decode(&stored).unwrap(), case);
        assert!(
            encode(&case).starts_with(b"41:2"),
            "saved again in the current format"
        );
    }

    #[test]
    fn an_unknown_format_or_a_damaged_body_is_corrupt_not_a_panic() {
        let mut stored = encode(&case());
        stored[3] = b'9';
        let err = decode(&stored).unwrap_err();
        assert!(matches!(err, StoreError::Newer(_)), "{err}");
        assert!(err.to_string().contains("format '9'"), "{err}");
        for broken in [
            &b"41"[..],
            b"41:",
            b"41:2",
            b"41:2\x28\xb5\x2f\xfdxx",
            b"41:1\x28\xb5\x2f\xfdxx",
            b"41:0\x28\xb5\x2f\xfdxx",
        ] {
            assert!(
                matches!(decode(broken), Err(StoreError::Corrupt(_))),
                "{broken:?}"
            );
        }
    }
}
