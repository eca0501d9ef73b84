//! `node::standard::Message::decode` (the `/rendezvous/1.0.0` messages a
//! stock client sends an rdht rendezvous node) never panics, and whatever
//! it accepts re-encodes to bytes that decode to the same message.
//! (Protobuf allows several encodings of one message, field order and
//! unknown fields among them, so the input itself need not come back.)

#![no_main]

use libfuzzer_sys::fuzz_target;
use node::standard::Message;

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = Message::decode(data) {
        let bytes = message.encode();
        assert_eq!(Message::decode(&bytes).as_ref(), Ok(&message));
        // Canonical bytes come back unchanged.
        assert_eq!(message.encode(), bytes);
    }
});
