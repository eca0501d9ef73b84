//! Round trips for both records and every request and response variant
//! (decode(encode(x)) == x, and re-encoding gives the same bytes), and
//! robustness of every decoder: arbitrary bytes, truncations and
//! single-byte mutations never panic, and whatever decodes re-encodes to
//! exactly the bytes it came from (one encoding per value).

use std::net::{Ipv4Addr, Ipv6Addr};

use libp2p_identity::Keypair;
use multiaddr::Protocol;
use proptest::collection::vec;
use proptest::prelude::*;
use rendezvous_proto::codec::{request_tag, response_tag, WIRE_VERSION};
use rendezvous_proto::messages::{MAX_COOKIE_BYTES, MAX_DISCOVER_LIMIT};
use rendezvous_proto::records::{G1_BYTES, G2_BYTES};
use rendezvous_proto::{
    Cookie, DecodeError, DiscoverAnswer, DiscoveredPeer, HandoverRecord, Limits, Multiaddr,
    NamespaceRecord, PeerId, PeerRecord, QuorumKey, Request, Response, StatusCode,
};

fn g1() -> impl Strategy<Value = [u8; G1_BYTES]> {
    vec(any::<u8>(), G1_BYTES).prop_map(|v| {
        let mut out = [0u8; G1_BYTES];
        out.copy_from_slice(&v);
        out
    })
}

fn g2() -> impl Strategy<Value = [u8; G2_BYTES]> {
    vec(any::<u8>(), G2_BYTES).prop_map(|v| {
        let mut out = [0u8; G2_BYTES];
        out.copy_from_slice(&v);
        out
    })
}

fn peer_id() -> impl Strategy<Value = PeerId> {
    any::<[u8; 32]>().prop_map(|seed| {
        Keypair::ed25519_from_bytes(seed)
            .unwrap()
            .public()
            .to_peer_id()
    })
}

fn multiaddr() -> impl Strategy<Value = Multiaddr> {
    prop_oneof![
        (any::<u32>(), any::<u16>()).prop_map(|(ip, port)| Multiaddr::empty()
            .with(Protocol::Ip4(Ipv4Addr::from(ip)))
            .with(Protocol::Tcp(port))),
        (any::<u128>(), any::<u16>()).prop_map(|(ip, port)| Multiaddr::empty()
            .with(Protocol::Ip6(Ipv6Addr::from(ip)))
            .with(Protocol::Udp(port))
            .with(Protocol::QuicV1)),
        ("[a-z0-9.-]{1,40}", any::<u16>()).prop_map(|(name, port)| Multiaddr::empty()
            .with(Protocol::Dns(name.into()))
            .with(Protocol::Tcp(port))),
        (any::<u32>(), any::<u16>(), peer_id()).prop_map(|(ip, port, p)| Multiaddr::empty()
            .with(Protocol::Ip4(Ipv4Addr::from(ip)))
            .with(Protocol::Tcp(port))
            .with(Protocol::P2p(p))),
        Just(Multiaddr::empty()),
    ]
}

fn kind() -> impl Strategy<Value = Option<String>> {
    // Any non-empty UTF-8 of at most 255 bytes (the wire cap): validation,
    // not the codec, decides what a good label is.
    prop::option::of(
        "\\PC{1,60}".prop_filter("at most 255 bytes", |s| s.len() <= 255 && !s.is_empty()),
    )
}

fn namespace_record() -> impl Strategy<Value = NamespaceRecord> {
    (
        vec(g1(), 1..6),
        any::<u32>(),
        any::<u64>(),
        kind(),
        prop::option::of(vec(peer_id(), 0..6)),
        any::<u64>(),
        any::<u64>(),
        g2(),
    )
        .prop_map(
            |(commitments, n, epoch, kind, members, issued_at_ms, expires_at_ms, signature)| {
                NamespaceRecord {
                    commitments,
                    n,
                    epoch,
                    kind,
                    members,
                    issued_at_ms,
                    expires_at_ms,
                    signature,
                }
            },
        )
}

fn peer_record() -> impl Strategy<Value = PeerRecord> {
    (
        g1(),
        any::<u64>(),
        any::<u32>(),
        any::<[u8; 32]>(),
        vec(multiaddr(), 0..5),
        any::<u64>(),
        any::<u64>(),
        g2(),
    )
        .prop_map(
            |(key, epoch, index, secret, addrs, seq, expires_at_ms, signature)| {
                let identity = libp2p_identity::Keypair::ed25519_from_bytes(secret)
                    .expect("any 32 bytes are a key");
                let seat = rendezvous_proto::seat::Seat {
                    quorum_key: QuorumKey(key),
                    epoch,
                    index,
                    peer_id: identity.public().to_peer_id(),
                    signature,
                };
                PeerRecord::sign(seat, addrs, seq, expires_at_ms, &identity)
            },
        )
}

fn cookie() -> impl Strategy<Value = Cookie> {
    vec(any::<u8>(), 0..=MAX_COOKIE_BYTES).prop_map(Cookie)
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        namespace_record().prop_map(Request::RegisterNamespace),
        peer_record().prop_map(Request::RegisterPeer),
        (g1(), any::<u32>()).prop_map(|(k, index)| Request::Unregister {
            quorum_key: QuorumKey(k),
            index
        }),
        (g1(), any::<u32>(), prop::option::of(cookie())).prop_map(|(k, limit, cookie)| {
            Request::Discover {
                quorum_key: QuorumKey(k),
                limit,
                cookie,
            }
        }),
        (
            "\\PC{0,40}".prop_filter("at most 255 bytes", |s| s.len() <= 255),
            any::<u32>(),
            prop::option::of(cookie())
        )
            .prop_map(|(kind, limit, cookie)| Request::DiscoverKind {
                kind,
                limit,
                cookie
            }),
        vec(any::<u8>(), 0..300).prop_map(Request::Dkg),
        namespace_record().prop_map(Request::SignNamespace),
        namespace_record().prop_map(Request::NamespaceReady),
        vec(peer_record(), 1..4).prop_map(Request::RegisterPeers),
        handover_record().prop_map(Request::PublishHandover),
        (handover_record(), namespace_record()).prop_map(|(handover, namespace)| {
            Request::SignHandover {
                handover,
                namespace,
            }
        }),
    ]
}

fn handover_record() -> impl Strategy<Value = HandoverRecord> {
    (g1(), g1(), any::<u64>(), any::<u64>(), g2()).prop_map(|(old, new, issued, expires, sig)| {
        HandoverRecord {
            old_quorum_key: QuorumKey(old),
            new_quorum_key: QuorumKey(new),
            issued_at_ms: issued,
            expires_at_ms: expires,
            signature: sig,
        }
    })
}

fn rejection_code() -> impl Strategy<Value = StatusCode> {
    prop::sample::select(
        StatusCode::ALL
            .iter()
            .copied()
            .filter(|c| *c != StatusCode::Ok)
            .collect::<Vec<_>>(),
    )
}

fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        any::<u64>().prop_map(|ttl_ms| Response::Registered { ttl_ms }),
        Just(Response::Unregistered),
        (
            namespace_record(),
            vec((peer_record(), prop::option::of(any::<u64>())), 0..4),
            cookie()
        )
            .prop_map(
                |(namespace, peers, cookie)| Response::Discovered(DiscoverAnswer {
                    namespace,
                    peers: peers
                        .into_iter()
                        .map(|(record, last_seen_ms)| DiscoveredPeer {
                            record,
                            last_seen_ms
                        })
                        .collect(),
                    cookie,
                })
            ),
        (vec(namespace_record(), 0..4), cookie())
            .prop_map(|(namespaces, cookie)| Response::Namespaces { namespaces, cookie }),
        Just(Response::DkgAccepted),
        Just(Response::Accepted),
        (any::<u32>(), g2())
            .prop_map(|(index, signature)| Response::NamespaceShare { index, signature }),
        rejection_code().prop_map(Response::Rejected),
        vec(
            prop_oneof![any::<u64>().prop_map(Ok), rejection_code().prop_map(Err)],
            0..6
        )
        .prop_map(Response::RegisteredPeers),
        handover_record().prop_map(Response::HandedOver),
    ]
}

/// Every decoder under test, as "decode these bytes, and if that worked,
/// re-encode".
type Decoder = fn(&[u8]) -> Option<Vec<u8>>;

const DECODERS: [(&str, Decoder); 5] = [
    ("namespace", |b| {
        NamespaceRecord::decode(b).ok().map(|v| v.encode())
    }),
    ("peer", |b| PeerRecord::decode(b).ok().map(|v| v.encode())),
    ("request", |b| Request::decode(b).ok().map(|v| v.encode())),
    ("response", |b| Response::decode(b).ok().map(|v| v.encode())),
    ("handover", |b| {
        HandoverRecord::decode(b).ok().map(|v| v.encode())
    }),
];

/// Decodes with every decoder; whatever decodes must re-encode to the same
/// bytes.
fn check_all_decoders(bytes: &[u8]) -> Result<(), TestCaseError> {
    for (name, decode) in DECODERS {
        if let Some(again) = decode(bytes) {
            prop_assert_eq!(&again[..], bytes, "{} is not canonical", name);
        }
    }
    Ok(())
}

/// Every prefix of a valid encoding fails (strict framing) without
/// panicking, and every single-byte mutation decodes canonically or fails.
fn check_truncations_and_mutations(
    bytes: &[u8],
    decode: Decoder,
    mutation: (usize, u8),
) -> Result<(), TestCaseError> {
    for len in 0..bytes.len() {
        prop_assert!(decode(&bytes[..len]).is_none(), "prefix {} decoded", len);
    }
    let mut longer = bytes.to_vec();
    longer.push(0);
    prop_assert!(decode(&longer).is_none(), "trailing byte accepted");
    if !bytes.is_empty() {
        let (at, xor) = mutation;
        let mut mutated = bytes.to_vec();
        mutated[at % bytes.len()] ^= xor.max(1);
        check_all_decoders(&mutated)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn namespace_record_round_trips(record in namespace_record(), m in (any::<usize>(), any::<u8>())) {
        let bytes = record.encode();
        let decoded = NamespaceRecord::decode(&bytes).unwrap();
        prop_assert_eq!(&decoded, &record);
        prop_assert_eq!(decoded.encode(), bytes.clone());
        // The signing bytes are the DST and the encoding minus the signature.
        let signing = record.signing_bytes();
        let dst = rendezvous_proto::records::NAMESPACE_RECORD_DST;
        prop_assert_eq!(signing[0] as usize, dst.len());
        prop_assert_eq!(&signing[1..=dst.len()], dst);
        prop_assert_eq!(&signing[1 + dst.len()..], &bytes[..bytes.len() - G2_BYTES]);
        check_truncations_and_mutations(&bytes, DECODERS[0].1, m)?;
    }

    #[test]
    fn handover_record_round_trips(record in handover_record(), m in (any::<usize>(), any::<u8>())) {
        let bytes = record.encode();
        prop_assert_eq!(bytes.len(), rendezvous_proto::handover::HANDOVER_BYTES);
        let decoded = HandoverRecord::decode(&bytes).unwrap();
        prop_assert_eq!(&decoded, &record);
        prop_assert_eq!(decoded.encode(), bytes.clone());
        let signing = record.signing_bytes();
        let dst = rendezvous_proto::handover::HANDOVER_DST;
        prop_assert_eq!(signing[0] as usize, dst.len());
        prop_assert_eq!(&signing[1..=dst.len()], dst);
        prop_assert_eq!(&signing[1 + dst.len()..], &bytes[..bytes.len() - G2_BYTES]);
        check_truncations_and_mutations(&bytes, DECODERS[4].1, m)?;
    }

    #[test]
    fn peer_record_round_trips(record in peer_record(), m in (any::<usize>(), any::<u8>())) {
        let bytes = record.encode();
        let decoded = PeerRecord::decode(&bytes).unwrap();
        prop_assert_eq!(&decoded, &record);
        prop_assert_eq!(decoded.encode(), bytes.clone());
        // The seat comes first; its signing bytes are the DST, then the
        // seat's encoding without its signature.
        let seat = record.seat.encode();
        prop_assert_eq!(&bytes[..seat.len()], &seat[..]);
        let signing = record.seat.signing_bytes();
        let dst = rendezvous_proto::seat::SEAT_DST;
        prop_assert_eq!(signing[0] as usize, dst.len());
        prop_assert_eq!(&signing[1..=dst.len()], dst);
        prop_assert_eq!(&signing[1 + dst.len()..], &seat[..seat.len() - G2_BYTES]);
        prop_assert!(record.envelope.verify());
        check_truncations_and_mutations(&bytes, DECODERS[1].1, m)?;
    }

    #[test]
    fn request_round_trips(request in request(), m in (any::<usize>(), any::<u8>())) {
        let bytes = request.encode();
        prop_assert_eq!(bytes[0], WIRE_VERSION);
        let decoded = Request::decode(&bytes).unwrap();
        prop_assert_eq!(&decoded, &request);
        prop_assert_eq!(decoded.encode(), bytes.clone());
        check_truncations_and_mutations(&bytes, DECODERS[2].1, m)?;
    }

    #[test]
    fn response_round_trips(response in response(), m in (any::<usize>(), any::<u8>())) {
        let bytes = response.encode();
        prop_assert_eq!(bytes[0], WIRE_VERSION);
        prop_assert_eq!(u16::from_be_bytes([bytes[2], bytes[3]]), response.status().as_u16());
        let decoded = Response::decode(&bytes).unwrap();
        prop_assert_eq!(&decoded, &response);
        prop_assert_eq!(decoded.encode(), bytes.clone());
        check_truncations_and_mutations(&bytes, DECODERS[3].1, m)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..512)) {
        check_all_decoders(&bytes)?;
    }

    /// Arbitrary bodies behind every valid version and tag byte, so that the
    /// decoders get past their first two checks.
    #[test]
    fn arbitrary_bodies_never_panic(
        tag in prop::sample::select(vec![
            request_tag::REGISTER_NAMESPACE, request_tag::REGISTER_PEER, request_tag::UNREGISTER,
            request_tag::DISCOVER, request_tag::DISCOVER_KIND, request_tag::DKG,
            request_tag::SIGN_NAMESPACE, response_tag::REJECTED, 0, 8, 0x80,
        ]),
        status in prop::sample::select(vec![0u16, 100, 121, 400, 999]),
        body in vec(any::<u8>(), 0..400),
    ) {
        let mut request = vec![WIRE_VERSION, tag];
        request.extend_from_slice(&body);
        check_all_decoders(&request)?;
        let mut response = vec![WIRE_VERSION, tag];
        response.extend_from_slice(&status.to_be_bytes());
        response.extend_from_slice(&body);
        check_all_decoders(&response)?;
        let mut record = vec![1u8];
        record.extend_from_slice(&body);
        check_all_decoders(&record)?;
    }
}

// ------------------------------------------------------- fixed edge cases

fn sample_peer() -> PeerRecord {
    let identity = Keypair::ed25519_from_bytes([1; 32]).unwrap();
    let seat = rendezvous_proto::seat::Seat {
        quorum_key: QuorumKey([7; G1_BYTES]),
        epoch: 1,
        index: 1,
        peer_id: identity.public().to_peer_id(),
        signature: [9; G2_BYTES],
    };
    PeerRecord::sign(
        seat,
        vec!["/ip4/127.0.0.1/tcp/1".parse().unwrap()],
        1,
        2,
        &identity,
    )
}

fn sample_namespace() -> NamespaceRecord {
    NamespaceRecord {
        commitments: vec![[3; G1_BYTES]],
        n: 1,
        epoch: 0,
        kind: None,
        members: None,
        issued_at_ms: 0,
        expires_at_ms: 1,
        signature: [4; G2_BYTES],
    }
}

#[test]
fn oversized_frames_are_too_large_before_parsing() {
    let cap = Limits::DEFAULT.max_message_bytes;
    // Garbage of one byte over the cap: TooLarge, not a parse error.
    let big = vec![0xffu8; cap + 1];
    assert_eq!(Request::decode(&big), Err(DecodeError::TooLarge));
    assert_eq!(Response::decode(&big), Err(DecodeError::TooLarge));
    // A DKG payload that makes the frame exactly the cap is fine; one more
    // byte is not.
    let payload = vec![0u8; cap - 2 - 4];
    let exact = Request::Dkg(payload.clone()).encode();
    assert_eq!(exact.len(), cap);
    assert_eq!(Request::decode(&exact), Ok(Request::Dkg(payload)));
    let over = Request::Dkg(vec![0u8; cap - 2 - 4 + 1]).encode();
    assert_eq!(Request::decode(&over), Err(DecodeError::TooLarge));
    // A node with a lower cap applies its own.
    assert_eq!(
        Request::decode_with_limit(&exact, 1000),
        Err(DecodeError::TooLarge)
    );
}

#[test]
fn hostile_counts_fail_without_allocating() {
    // A Namespaces answer claiming 1024 records in a few bytes.
    let mut frame = vec![WIRE_VERSION, response_tag::NAMESPACES, 0, 0];
    frame.extend_from_slice(&(MAX_DISCOVER_LIMIT as u16).to_be_bytes());
    assert_eq!(Response::decode(&frame), Err(DecodeError::UnexpectedEnd));
    // Over the cap.
    let mut frame = vec![WIRE_VERSION, response_tag::NAMESPACES, 0, 0];
    frame.extend_from_slice(&(MAX_DISCOVER_LIMIT as u16 + 1).to_be_bytes());
    assert_eq!(
        Response::decode(&frame),
        Err(DecodeError::TooLong("namespaces"))
    );
    // A DKG payload length of 4 GiB.
    let frame = [WIRE_VERSION, request_tag::DKG, 0xff, 0xff, 0xff, 0xff];
    assert_eq!(
        Request::decode(&frame),
        Err(DecodeError::TooLong("dkg payload"))
    );
    // A DKG payload length beyond the input.
    let frame = [WIRE_VERSION, request_tag::DKG, 0, 0, 1, 0, 1];
    assert_eq!(Request::decode(&frame), Err(DecodeError::UnexpectedEnd));
}

#[test]
fn caps_are_enforced_exactly() {
    // Cookie of exactly the cap decodes; one more byte is TooLong.
    for (len, ok) in [(MAX_COOKIE_BYTES, true), (MAX_COOKIE_BYTES + 1, false)] {
        let request = Request::Discover {
            quorum_key: QuorumKey([1; G1_BYTES]),
            limit: 0,
            cookie: Some(Cookie(vec![5; len])),
        };
        let decoded = Request::decode(&request.encode());
        if ok {
            assert_eq!(decoded, Ok(request));
        } else {
            assert_eq!(decoded, Err(DecodeError::TooLong("cookie")));
        }
    }
    // 1024 peers decode; 1025 are TooLong.
    for (count, ok) in [
        (MAX_DISCOVER_LIMIT as usize, true),
        (MAX_DISCOVER_LIMIT as usize + 1, false),
    ] {
        let response = Response::Discovered(DiscoverAnswer {
            namespace: sample_namespace(),
            peers: vec![
                DiscoveredPeer {
                    record: sample_peer(),
                    last_seen_ms: Some(5)
                };
                count
            ],
            cookie: Cookie::default(),
        });
        let decoded = Response::decode(&response.encode());
        if ok {
            assert_eq!(decoded, Ok(response));
        } else {
            assert_eq!(decoded, Err(DecodeError::TooLong("peers")));
        }
    }
    // Kinds: 255 bytes of UTF-8 decode; invalid UTF-8 does not.
    let request = Request::DiscoverKind {
        kind: "k".repeat(255),
        limit: 1,
        cookie: None,
    };
    assert_eq!(Request::decode(&request.encode()), Ok(request));
    let frame = [
        WIRE_VERSION,
        request_tag::DISCOVER_KIND,
        1,
        0xff,
        0,
        0,
        0,
        0,
        0,
    ];
    assert_eq!(
        Request::decode(&frame),
        Err(DecodeError::InvalidValue("kind"))
    );
}

#[test]
fn framing_errors_are_precise() {
    let ok = Request::Unregister {
        quorum_key: QuorumKey([1; G1_BYTES]),
        index: 3,
    }
    .encode();
    assert_eq!(ok.len(), 2 + G1_BYTES + 4);
    // A version-1 frame is refused, with its own status code.
    let mut wrong_version = ok.clone();
    wrong_version[0] = 1;
    assert_eq!(
        Request::decode(&wrong_version),
        Err(DecodeError::Version(1))
    );
    assert_eq!(
        rendezvous_proto::Rejection::Decode(DecodeError::Version(1)).code(),
        StatusCode::UnsupportedVersion
    );
    let mut unknown = ok.clone();
    unknown[1] = 0x42;
    assert_eq!(
        Request::decode(&unknown),
        Err(DecodeError::UnknownTag(0x42))
    );
    let mut trailing = ok.clone();
    trailing.push(0);
    assert_eq!(Request::decode(&trailing), Err(DecodeError::TrailingBytes));
    assert_eq!(Request::decode(&[]), Err(DecodeError::UnexpectedEnd));
    assert_eq!(Request::decode(&ok[..1]), Err(DecodeError::UnexpectedEnd));
    // Cookie presence flag must be 0 or 1.
    let mut bad_flag = Request::Discover {
        quorum_key: QuorumKey([1; G1_BYTES]),
        limit: 0,
        cookie: None,
    }
    .encode();
    *bad_flag.last_mut().unwrap() = 2;
    assert_eq!(
        Request::decode(&bad_flag),
        Err(DecodeError::InvalidValue("bool"))
    );
}

#[test]
fn response_status_must_match_the_tag() {
    let registered = Response::Registered { ttl_ms: 5 }.encode();
    assert_eq!(
        &registered[..4],
        &[WIRE_VERSION, response_tag::REGISTERED, 0, 0]
    );
    // An OK tag with an error status.
    let mut bad = registered.clone();
    bad[3] = 100;
    assert_eq!(
        Response::decode(&bad),
        Err(DecodeError::InvalidValue("status"))
    );
    // Rejected with OK.
    let frame = [WIRE_VERSION, response_tag::REJECTED, 0, 0];
    assert_eq!(
        Response::decode(&frame),
        Err(DecodeError::InvalidValue("status"))
    );
    // An unknown status code.
    let frame = [WIRE_VERSION, response_tag::REJECTED, 0x03, 0xe7];
    assert_eq!(
        Response::decode(&frame),
        Err(DecodeError::InvalidValue("status"))
    );
    // Every error code as a rejection, exactly four bytes.
    for code in StatusCode::ALL.into_iter().filter(|c| *c != StatusCode::Ok) {
        let bytes = Response::Rejected(code).encode();
        let [hi, lo] = code.as_u16().to_be_bytes();
        assert_eq!(bytes, vec![WIRE_VERSION, response_tag::REJECTED, hi, lo]);
        assert_eq!(Response::decode(&bytes), Ok(Response::Rejected(code)));
        assert_eq!(Response::Rejected(code).status(), code);
    }
}

#[test]
fn empty_and_absent_cookies_stay_distinct() {
    let with = |cookie| Request::Discover {
        quorum_key: QuorumKey([1; G1_BYTES]),
        limit: 7,
        cookie,
    };
    let none = with(None).encode();
    let empty = with(Some(Cookie::default())).encode();
    assert_ne!(none, empty);
    assert_eq!(Request::decode(&none), Ok(with(None)));
    assert_eq!(Request::decode(&empty), Ok(with(Some(Cookie::default()))));
}

/// The example frames printed in PROTOCOL.md section 10.4.
#[test]
fn protocol_md_examples() {
    let q = QuorumKey([0xab; G1_BYTES]);
    let hex = |bytes: Vec<u8>| hex::encode(bytes);
    assert_eq!(
        hex(Response::Registered { ttl_ms: 7_200_000 }.encode()),
        "0201000000000000006ddd00"
    );
    assert_eq!(
        hex(Response::Rejected(StatusCode::InvalidShareSignature).encode()),
        "02ff0079"
    );
    assert_eq!(
        hex(Request::Unregister {
            quorum_key: q,
            index: 3
        }
        .encode()),
        format!("0203{}00000003", "ab".repeat(48))
    );
    assert_eq!(
        hex(Request::Discover {
            quorum_key: q,
            limit: 10,
            cookie: None
        }
        .encode()),
        format!("0204{}0000000a00", "ab".repeat(48))
    );
}
