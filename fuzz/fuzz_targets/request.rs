//! `Request::decode` never panics, and whatever it accepts is canonical:
//! re-encoding gives back the input, and decoding that gives the same value.

#![no_main]

use libfuzzer_sys::fuzz_target;
use rendezvous_proto::Request;

fuzz_target!(|data: &[u8]| {
    if let Ok(value) = Request::decode(data) {
        let bytes = value.encode();
        assert_eq!(bytes, data, "accepted a non-canonical encoding");
        assert_eq!(Request::decode(&bytes).as_ref(), Ok(&value));
    }
});
