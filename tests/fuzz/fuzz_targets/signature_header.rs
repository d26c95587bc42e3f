//! The Stripe-Signature parser and verifier must never panic, whatever the header and body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use recoup::webhook::signature::{Verifier, parse};

fuzz_target!(|input: (&str, &[u8])| {
    let (header, body) = input;
    let _ = parse(header);
    let verifier = Verifier::new([&b"whsec_fuzz"[..]], 300);
    let _ = verifier.verify(Some(header), body, 1_790_000_000);
});
