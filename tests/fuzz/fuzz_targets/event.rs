//! The event reader must never panic, and whatever it accepts must survive the inbox round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use recoup::event::Event;
use recoup::event::wire::{Parsed, parse};

fuzz_target!(|body: &[u8]| {
    if let Ok(Parsed::Acted(event)) = parse(body) {
        let stored = serde_json::to_string(&event).expect("an event serialises");
        let back: Event = serde_json::from_str(&stored).expect("the stored form reads back");
        assert_eq!(back, *event);
    }
});
