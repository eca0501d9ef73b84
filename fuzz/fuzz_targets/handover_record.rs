//! `HandoverRecord::decode` never panics, and whatever it accepts is
//! canonical: re-encoding gives back the input, and decoding that gives the
//! same value. Whatever decodes also goes through `verify_handover`, which
//! must not panic either.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rendezvous_proto::{verify_handover, HandoverRecord};

const NOW: u64 = 1_700_000_000_000;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = HandoverRecord::decode(data) {
        let bytes = value.encode();
        assert_eq!(bytes, data, "accepted a non-canonical encoding");
        assert_eq!(HandoverRecord::decode(&bytes).as_ref(), Ok(&value));
        let _ = verify_handover(&value, NOW);
    }
});
