//! Protocol version 2's peer record: `PeerRecord::decode` (and the
//! envelope's strict protobuf decoder inside it) never panics, and
//! whatever it accepts is canonical: re-encoding gives back the input, and
//! decoding that gives the same value. (Its validation is fuzzed by the
//! `validate` target, mode 4.)

#![no_main]

use libfuzzer_sys::fuzz_target;
use rendezvous_proto::seated::PeerRecord;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = PeerRecord::decode(data) {
        let bytes = record.encode();
        assert_eq!(bytes, data, "accepted a non-canonical encoding");
        assert_eq!(PeerRecord::decode(&bytes).as_ref(), Ok(&record));
    }
});
