//! Writes the fuzz seed corpus: a few valid encodings per target, as
//! `fuzz/corpus/<target>/seed-<name>` (the only corpus files git keeps).
//!
//! ```text
//! cargo run -p rendezvous-proto --example gen_fuzz_seeds [corpus-dir]
//! ```
//!
//! Deterministic: fixed seeds and times, so rerunning rewrites the same
//! files.

use std::path::{Path, PathBuf};

use dkg::dkg::{
    DealMessage, DealerVerdict, Digest, DkgMessage, HelloMessage, JustificationMessage,
    ResponseMessage, SessionId, ShareMessage,
};
use dkg::{Polynomial, SecretKeyShare};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use rendezvous_proto::testkit::TestQuorum;
use rendezvous_proto::{Cookie, DiscoverAnswer, DiscoveredPeer, Request, Response, StatusCode};

/// The fuzz targets' validation time.
const NOW: u64 = 1_700_000_000_000;
const HOUR: u64 = 3_600_000;
/// Must equal `FIXTURE_SEED` in `fuzz/fuzz_targets/validate.rs`, so that
/// these records belong to that target's fixed quorum and validate.
const FIXTURE_SEED: u64 = 0xf022_0001;

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let dir = dir.join(target);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(format!("seed-{name}")), bytes)
}

fn main() -> std::io::Result<()> {
    let dir = std::env::args_os().nth(1).map_or_else(
        || PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/corpus")),
        PathBuf::from,
    );
    let q = TestQuorum::deal(5, 3, &mut ChaCha20Rng::seed_from_u64(FIXTURE_SEED));
    let ns = q.namespace(1, Some("farmer"), NOW - HOUR, NOW + HOUR);
    let ns_plain = q.namespace(2, None, NOW - HOUR, NOW + HOUR);
    let peers: Vec<_> = (1..=q.n()).map(|i| q.peer(i, 1, 1, NOW + HOUR)).collect();
    let mut tampered = q.peer(2, 1, 1, NOW + HOUR);
    let mut payload = tampered.envelope.payload.clone();
    payload.seq = 7;
    tampered.envelope.replace_payload_unsigned(payload);

    // Records.
    write(&dir, "namespace_record", "members", &ns.encode())?;
    write(&dir, "namespace_record", "plain", &ns_plain.encode())?;
    write(&dir, "peer_record", "member1", &peers[0].encode())?;
    write(&dir, "peer_record", "member5", &peers[4].encode())?;
    // A handover from the fixture quorum to another one (valid at NOW).
    let successor = TestQuorum::deal(3, 2, &mut ChaCha20Rng::seed_from_u64(FIXTURE_SEED + 1));
    let handover = q.handover(successor.quorum_key(), NOW - HOUR, NOW + 24 * HOUR);
    write(&dir, "handover_record", "valid", &handover.encode())?;

    // Requests.
    let key = q.quorum_key();
    let requests = [
        ("register-namespace", Request::RegisterNamespace(ns.clone())),
        ("register-peer", Request::RegisterPeer(peers[0].clone())),
        (
            "unregister",
            Request::Unregister {
                quorum_key: key,
                index: 3,
            },
        ),
        (
            "discover",
            Request::Discover {
                quorum_key: key,
                limit: 10,
                cookie: Some(Cookie(vec![1; 16])),
            },
        ),
        (
            "discover-kind",
            Request::DiscoverKind {
                kind: "farmer".into(),
                limit: 0,
                cookie: None,
            },
        ),
        ("dkg", Request::Dkg(vec![1, 2, 3, 4])),
        ("sign-namespace", Request::SignNamespace(ns_plain.clone())),
        ("namespace-ready", Request::NamespaceReady(ns_plain.clone())),
        (
            "publish-handover",
            Request::PublishHandover(handover.clone()),
        ),
        (
            "sign-handover",
            Request::SignHandover {
                handover: handover.clone(),
                namespace: ns_plain.clone(),
            },
        ),
    ];
    for (name, request) in &requests {
        write(&dir, "request", name, &request.encode())?;
    }

    // Responses.
    let answer = DiscoverAnswer {
        namespace: ns.clone(),
        peers: peers
            .iter()
            .map(|r| DiscoveredPeer {
                record: r.clone(),
                last_seen_ms: Some(NOW - 1000),
            })
            .chain(std::iter::once(DiscoveredPeer {
                record: tampered,
                last_seen_ms: None,
            }))
            .collect(),
        cookie: Cookie(vec![9; 8]),
    };
    let responses = [
        ("registered", Response::Registered { ttl_ms: 2 * HOUR }),
        ("unregistered", Response::Unregistered),
        ("discovered", Response::Discovered(answer)),
        (
            "namespaces",
            Response::Namespaces {
                namespaces: vec![ns.clone(), ns_plain.clone()],
                cookie: Cookie(vec![]),
            },
        ),
        ("dkg-accepted", Response::DkgAccepted),
        ("accepted", Response::Accepted),
        (
            "namespace-share",
            Response::NamespaceShare {
                index: 2,
                signature: peers[1].seat.signature,
            },
        ),
        (
            "rejected",
            Response::Rejected(StatusCode::InvalidShareSignature),
        ),
        ("handed-over", Response::HandedOver(handover.clone())),
    ];
    for (name, response) in &responses {
        write(&dir, "response", name, &response.encode())?;
    }

    // Validation: a mode byte (see the target), then the bytes.
    let with_mode = |mode: u8, bytes: Vec<u8>| [vec![mode], bytes].concat();
    write(&dir, "validate", "namespace", &with_mode(0, ns.encode()))?;
    write(&dir, "validate", "peer", &with_mode(1, peers[2].encode()))?;
    write(
        &dir,
        "validate",
        "discovered",
        &with_mode(2, responses[2].1.encode()),
    )?;
    write(
        &dir,
        "validate",
        "namespaces",
        &with_mode(2, responses[3].1.encode()),
    )?;
    write(
        &dir,
        "validate",
        "register-peer",
        &with_mode(3, requests[1].1.encode()),
    )?;

    // DKG messages, built with the DKG's own types and encoder.
    let mut rng = ChaCha20Rng::seed_from_u64(FIXTURE_SEED + 1);
    let session_id = SessionId([7; 32]);
    let poly = Polynomial::random(3, &mut rng);
    let share = |i: u32| SecretKeyShare::new(i, poly.evaluate(i)).expect("non-zero share");
    let mut dkg_messages = Vec::new();
    let deal = DealMessage::new(session_id, 1, &poly, &mut rng);
    if let Some(deal) = deal.clone() {
        dkg_messages.push(("deal", DkgMessage::Deal(deal)));
    }
    dkg_messages.push((
        "share",
        DkgMessage::Share(ShareMessage {
            session_id,
            dealer: 1,
            share: share(2),
        }),
    ));
    dkg_messages.push((
        "response",
        DkgMessage::Response(ResponseMessage {
            session_id,
            member: 2,
            verdicts: vec![
                DealerVerdict::Valid(Digest([1; 32])),
                DealerVerdict::BadShare(Digest([2; 32])),
                DealerVerdict::MissingShare(Digest([3; 32])),
                DealerVerdict::InvalidDeal(Digest([4; 32])),
                DealerVerdict::MissingDeal,
            ],
        }),
    ));
    dkg_messages.push((
        "justification",
        DkgMessage::Justification(JustificationMessage {
            session_id,
            dealer: 1,
            revealed: vec![share(2), share(4)],
            deal: None,
        }),
    ));
    dkg_messages.push((
        "justification-with-deal",
        DkgMessage::Justification(JustificationMessage {
            session_id,
            dealer: 1,
            revealed: vec![share(3)],
            deal,
        }),
    ));
    dkg_messages.push((
        "hello",
        DkgMessage::Hello(HelloMessage {
            session_id,
            member: 2,
            attempt: 1,
            nonce: [9; 32],
        }),
    ));
    for (name, message) in &dkg_messages {
        write(&dir, "dkg_message", name, &message.encode())?;
    }

    // Every seed of a decoder target decodes (a seed that does not is
    // useless as a starting point).
    assert!(requests
        .iter()
        .all(|(_, r)| Request::decode(&r.encode()).is_ok()));
    assert!(responses
        .iter()
        .all(|(_, r)| Response::decode(&r.encode()).is_ok()));
    assert!(dkg_messages
        .iter()
        .all(|(_, m)| DkgMessage::decode(&m.encode()).is_ok()));
    eprintln!("seeds written under {}", dir.display());
    Ok(())
}
