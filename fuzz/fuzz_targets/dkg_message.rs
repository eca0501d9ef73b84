//! `DkgMessage::decode` never panics, and whatever it accepts is canonical:
//! re-encoding gives back the input, and decoding that gives the same value.

#![no_main]

use dkg::dkg::DkgMessage;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = DkgMessage::decode(data) {
        let bytes = message.encode();
        assert_eq!(bytes, data, "accepted a non-canonical encoding");
        assert_eq!(DkgMessage::decode(&bytes).as_ref(), Ok(&message));
    }
});
