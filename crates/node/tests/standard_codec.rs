//! `node::standard`'s codec of the `/rendezvous/1.0.0` messages against
//! the schema as prost (what `libp2p-rendezvous` 0.18 encodes with)
//! derives it, both ways, and against `libp2p-rendezvous`'s public cookie
//! encoding; garbage never panics and never allocates past its bounds.

use node::standard::{Message, Register, Status, MAX_COOKIE_BYTES};
use proptest::prelude::*;
use prost::Message as _;

/// libp2p-rendezvous's `rpc.proto` (proto2), as prost derives it.
mod pb {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Message {
        #[prost(int32, optional, tag = "1")]
        pub r#type: Option<i32>,
        #[prost(message, optional, tag = "2")]
        pub register: Option<Register>,
        #[prost(message, optional, tag = "3")]
        pub register_response: Option<RegisterResponse>,
        #[prost(message, optional, tag = "4")]
        pub unregister: Option<Unregister>,
        #[prost(message, optional, tag = "5")]
        pub discover: Option<Discover>,
        #[prost(message, optional, tag = "6")]
        pub discover_response: Option<DiscoverResponse>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Register {
        #[prost(string, optional, tag = "1")]
        pub ns: Option<String>,
        #[prost(bytes = "vec", optional, tag = "2")]
        pub signed_peer_record: Option<Vec<u8>>,
        #[prost(uint64, optional, tag = "3")]
        pub ttl: Option<u64>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct RegisterResponse {
        #[prost(int32, optional, tag = "1")]
        pub status: Option<i32>,
        #[prost(string, optional, tag = "2")]
        pub status_text: Option<String>,
        #[prost(uint64, optional, tag = "3")]
        pub ttl: Option<u64>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Unregister {
        #[prost(string, optional, tag = "1")]
        pub ns: Option<String>,
        #[prost(bytes = "vec", optional, tag = "2")]
        pub id: Option<Vec<u8>>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Discover {
        #[prost(string, optional, tag = "1")]
        pub ns: Option<String>,
        #[prost(uint64, optional, tag = "2")]
        pub limit: Option<u64>,
        #[prost(bytes = "vec", optional, tag = "3")]
        pub cookie: Option<Vec<u8>>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct DiscoverResponse {
        #[prost(message, repeated, tag = "1")]
        pub registrations: Vec<Register>,
        #[prost(bytes = "vec", optional, tag = "2")]
        pub cookie: Option<Vec<u8>>,
        #[prost(int32, optional, tag = "3")]
        pub status: Option<i32>,
        #[prost(string, optional, tag = "4")]
        pub status_text: Option<String>,
    }
}

const STATUSES: [Status; 8] = [
    Status::Ok,
    Status::InvalidNamespace,
    Status::InvalidSignedPeerRecord,
    Status::InvalidTtl,
    Status::InvalidCookie,
    Status::NotAuthorized,
    Status::InternalError,
    Status::Unavailable,
];

fn to_pb_register(r: &Register) -> pb::Register {
    pb::Register {
        ns: r.ns.clone(),
        signed_peer_record: r.signed_peer_record.clone(),
        ttl: r.ttl,
    }
}

fn to_pb(m: &Message) -> pb::Message {
    let mut out = pb::Message::default();
    match m {
        Message::Register(r) => {
            out.r#type = Some(0);
            out.register = Some(to_pb_register(r));
        }
        Message::RegisterResponse {
            status,
            status_text,
            ttl,
        } => {
            out.r#type = Some(1);
            out.register_response = Some(pb::RegisterResponse {
                status: status.map(|s| s.code() as i32),
                status_text: status_text.clone(),
                ttl: *ttl,
            });
        }
        Message::Unregister { ns, id } => {
            out.r#type = Some(2);
            out.unregister = Some(pb::Unregister {
                ns: ns.clone(),
                id: id.clone(),
            });
        }
        Message::Discover { ns, limit, cookie } => {
            out.r#type = Some(3);
            out.discover = Some(pb::Discover {
                ns: ns.clone(),
                limit: *limit,
                cookie: cookie.clone(),
            });
        }
        Message::DiscoverResponse {
            registrations,
            cookie,
            status,
            status_text,
        } => {
            out.r#type = Some(4);
            out.discover_response = Some(pb::DiscoverResponse {
                registrations: registrations.iter().map(to_pb_register).collect(),
                cookie: cookie.clone(),
                status: status.map(|s| s.code() as i32),
                status_text: status_text.clone(),
            });
        }
    }
    out
}

fn text(max: usize) -> impl Strategy<Value = Option<String>> {
    // At most 3 bytes a character: within `max` bytes.
    proptest::option::of(
        proptest::string::string_regex(&format!("[a-z0-9:é世]{{0,{}}}", max / 3)).expect("regex"),
    )
}

fn bytes(max: usize) -> impl Strategy<Value = Option<Vec<u8>>> {
    proptest::option::of(proptest::collection::vec(any::<u8>(), 0..=max))
}

fn register() -> impl Strategy<Value = Register> {
    (text(255), bytes(300), proptest::option::of(any::<u64>())).prop_map(|(ns, r, ttl)| Register {
        ns,
        signed_peer_record: r,
        ttl,
    })
}

fn status() -> impl Strategy<Value = Option<Status>> {
    proptest::option::of(proptest::sample::select(STATUSES.to_vec()))
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        register().prop_map(Message::Register),
        (status(), text(100), proptest::option::of(any::<u64>())).prop_map(|(status, t, ttl)| {
            Message::RegisterResponse {
                status,
                status_text: t,
                ttl,
            }
        }),
        (text(255), bytes(64)).prop_map(|(ns, id)| Message::Unregister { ns, id }),
        (
            text(255),
            proptest::option::of(any::<u64>()),
            bytes(MAX_COOKIE_BYTES)
        )
            .prop_map(|(ns, limit, cookie)| Message::Discover { ns, limit, cookie }),
        (
            proptest::collection::vec(register(), 0..8),
            bytes(MAX_COOKIE_BYTES),
            status(),
            text(100)
        )
            .prop_map(|(registrations, cookie, status, status_text)| {
                Message::DiscoverResponse {
                    registrations,
                    cookie,
                    status,
                    status_text,
                }
            }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Ours encodes exactly what prost encodes, and each decodes the
    /// other's bytes to the same message.
    #[test]
    fn codec_agrees_with_prost_both_ways(m in message()) {
        let ours = m.encode();
        let theirs = to_pb(&m).encode_to_vec();
        prop_assert_eq!(&ours, &theirs);
        prop_assert_eq!(pb::Message::decode(&ours[..]).unwrap(), to_pb(&m));
        prop_assert_eq!(Message::decode(&theirs).unwrap(), m);
    }

    /// Garbage: an error or a message, never a panic; what decodes
    /// re-encodes to something that decodes to the same.
    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(m) = Message::decode(&bytes) {
            prop_assert_eq!(Message::decode(&m.encode()).unwrap(), m);
        }
    }

    /// A valid message with bytes flipped or cut: never a panic.
    #[test]
    fn mutated_messages_never_panic(m in message(), at in any::<prop::sample::Index>(), cut in any::<bool>(), flip in any::<u8>()) {
        let mut bytes = m.encode();
        let i = at.index(bytes.len());
        if cut {
            bytes.truncate(i);
        } else {
            bytes[i] ^= flip | 1;
        }
        let _ = Message::decode(&bytes);
    }

    /// Cookies as rdht makes them (8 bytes, then the namespace) are what
    /// libp2p-rendezvous's `Cookie` reads and writes back unchanged.
    #[test]
    fn cookies_round_trip_through_the_stock_cookie(id in any::<[u8; 8]>(), ns in "[a-z0-9:]{1,100}") {
        let mut cookie = id.to_vec();
        cookie.extend_from_slice(ns.as_bytes());
        let stock = libp2p::rendezvous::Cookie::from_wire_encoding(cookie.clone()).unwrap();
        prop_assert_eq!(stock.namespace().map(|n| n.to_string()), Some(ns));
        prop_assert_eq!(stock.into_wire_encoding(), cookie);
    }
}

#[test]
fn unknown_fields_are_skipped_and_bad_ones_refused() {
    let m = Message::Discover {
        ns: Some("kind:farmer".into()),
        limit: Some(3),
        cookie: None,
    };
    // An unknown varint field (15) and an unknown bytes field (16) after
    // the known ones: skipped.
    let mut bytes = m.encode();
    // (16 << 3 | 2 = 130 is itself a two-byte varint.)
    bytes.extend_from_slice(&[15 << 3, 7, 0x82, 0x01, 0x82, 0x01]);
    bytes.extend_from_slice(&[0u8; 130]);
    assert_eq!(Message::decode(&bytes), Ok(m.clone()));
    // A group (wire type 3): refused.
    let mut bad = m.encode();
    bad.extend_from_slice(&[15 << 3 | 3]);
    assert!(Message::decode(&bad).is_err());
    // A length past the input: refused before allocating anything.
    let huge = [0x08, 0x03, 0x2a, 0xff, 0xff, 0xff, 0xff, 0x0f];
    assert!(Message::decode(&huge).is_err());
    // A namespace over 255 bytes, a cookie over its cap: refused.
    let long = Message::Discover {
        ns: Some("a".repeat(256)),
        limit: None,
        cookie: None,
    };
    assert!(Message::decode(&long.encode()).is_err());
    let long = Message::Discover {
        ns: None,
        limit: None,
        cookie: Some(vec![0; MAX_COOKIE_BYTES + 1]),
    };
    assert!(Message::decode(&long.encode()).is_err());
    // A type without its sub-message, an unknown type, an unknown status.
    assert!(Message::decode(&[0x08, 0x03]).is_err());
    assert!(Message::decode(&[0x08, 0x09, 0x2a, 0x00]).is_err());
    assert!(Message::decode(&[0x08, 0x01, 0x1a, 0x02, 0x08, 0x07]).is_err());
    // Invalid UTF-8 in a namespace.
    assert!(Message::decode(&[0x08, 0x03, 0x2a, 0x03, 0x0a, 0x01, 0xff]).is_err());
}
