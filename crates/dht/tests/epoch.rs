//! Epoch switches (#14 item 2): once a replica holds the namespace record
//! of epoch e + 1, seats and peer records of epoch e are refused
//! (`StaleEpoch`) on every path, and nothing of epoch e stays in storage,
//! liveness, paging or the values served, nor comes back through a late
//! kad value. A seat of a later epoch than the namespace held stays
//! `EpochMismatch`.
//!
//! The namespace records of both epochs here carry the same key set, so an
//! old seat still verifies cryptographically: only the epoch rule can
//! refuse it (a reshared key set would refuse it twice over).

use dht::{NamespaceStore, NamespaceValue, PeerRegistration, StoreConfig};
use libp2p_kad::store::RecordStore;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use rendezvous_proto::testkit::TestQuorum;
use rendezvous_proto::{Limits, PeerRecord, StatusCode};

const NOW: u64 = 1_700_000_000_000;
const HOUR: u64 = 3_600_000;

fn quorum(seed: u64) -> TestQuorum {
    TestQuorum::deal(4, 3, &mut ChaCha20Rng::seed_from_u64(seed))
}

fn reg(q: &TestQuorum, record: PeerRecord) -> PeerRegistration {
    let remote = Some(q.peer_id(record.index()));
    PeerRegistration { record, remote }
}

/// A store holding `q`'s namespace of epoch 1 and every member's epoch-1
/// record at `seq`.
fn at_epoch_1(q: &TestQuorum, seq: u64) -> NamespaceStore {
    let mut s = NamespaceStore::new(StoreConfig::default(), [7; 32]);
    let ns = q.namespace(1, Some("farmer"), NOW, NOW + 2 * HOUR);
    assert!(s.register_namespace(ns, Some(q.peer_id(1)), NOW).is_ok());
    let regs = (1..=4)
        .map(|i| reg(q, q.peer(i, 1, seq, NOW + HOUR)))
        .collect();
    assert_eq!(s.register_peers(regs, NOW), vec![Ok(HOUR); 4]);
    s
}

fn epoch_2(q: &TestQuorum) -> rendezvous_proto::NamespaceRecord {
    q.namespace(2, Some("farmer"), NOW + 1, NOW + 2 * HOUR)
}

/// The epochs of the peer records `s` serves for `q`: by discover, by
/// its replication pages and by its kad store.
fn served_epochs(s: NamespaceStore, q: &TestQuorum) -> Vec<u64> {
    served_by(dht::Server::new(dht::ServerConfig::default(), s), q)
}

/// [`served_epochs`] of a server core's store.
fn served_by(server: dht::Server, q: &TestQuorum) -> Vec<u64> {
    let qk = q.quorum_key();
    let s = server.store();
    let mut epochs: Vec<u64> = s
        .discover(&qk, 0, None, NOW)
        .unwrap()
        .peers
        .iter()
        .map(|p| p.record.seat.epoch)
        .collect();
    for page in s.namespace_value_pages(&qk, NOW, Limits::DEFAULT.max_message_bytes) {
        epochs.extend(page.peers.iter().map(|p| p.seat.epoch));
    }
    let kad = dht::KadStore::new(server, Box::new(|| NOW));
    let key = libp2p_kad::RecordKey::new(&dht::namespace_key(&qk));
    let record = kad.get(&key).expect("served").into_owned();
    let value = NamespaceValue::decode(&record.value, &Limits::DEFAULT).unwrap();
    epochs.extend(value.peers.iter().map(|p| p.seat.epoch));
    for r in kad.records().filter(|r| r.key == key) {
        let v = NamespaceValue::decode(&r.value, &Limits::DEFAULT).unwrap();
        epochs.extend(v.peers.iter().map(|p| p.seat.epoch));
    }
    epochs
}

#[test]
fn epoch_switch_drops_every_old_record_from_storage_liveness_and_answers() {
    let q = quorum(41);
    let mut s = at_epoch_1(&q, 1);
    assert_eq!(s.stats().peer_records, 4);
    assert_eq!(s.stats().tracked_peers, 4);
    assert_eq!(s.register_namespace(epoch_2(&q), None, NOW), Ok(2 * HOUR));
    assert_eq!(s.namespace(&q.quorum_key()).unwrap().record().epoch, 2);
    let stats = s.stats();
    assert_eq!(stats.peer_records, 0, "epoch-1 records stay stored");
    assert_eq!(stats.tracked_peers, 0, "epoch-1 records stay in liveness");
    assert!(
        s.due_pings(NOW + HOUR / 2).is_empty(),
        "epoch-1 peers pinged"
    );
    assert_eq!(s.peer_seq(&q.quorum_key(), 1), None);
    assert!(served_epochs(s, &q).is_empty());
}

#[test]
fn epoch_switch_refuses_old_seats_on_direct_registrations() {
    let q = quorum(42);
    let mut s = at_epoch_1(&q, 1);
    // A refresh of member 1 checked before the switch, applied after it
    // (a verification job in flight across the switch).
    let in_flight = s.precheck_peers(vec![reg(&q, q.peer(1, 1, 2, NOW + HOUR))], NOW);
    let in_flight: Vec<_> = in_flight.into_iter().map(Result::unwrap).collect();
    // Its seat was verified here: the cache knows it.
    assert!(in_flight[0].seat_known());
    assert!(s.register_namespace(epoch_2(&q), None, NOW).is_ok());
    let before = s.fingerprint();

    // RegisterPeer: the known seat's refresh, and a fresh seat, of epoch 1.
    assert_eq!(
        s.register_peer(reg(&q, q.peer(1, 1, 3, NOW + HOUR)), NOW),
        Err(StatusCode::StaleEpoch)
    );
    assert_eq!(
        s.register_peer(reg(&q, q.peer(2, 1, 9, NOW + HOUR)), NOW),
        Err(StatusCode::StaleEpoch)
    );
    // The precheck alone refuses it, before any verification job.
    let checked = s.precheck_peers(vec![reg(&q, q.peer(3, 1, 4, NOW + HOUR))], NOW);
    assert_eq!(checked[0].as_ref().err(), Some(&StatusCode::StaleEpoch));
    // The one in flight is checked again against epoch 2 and refused.
    let verdicts = in_flight
        .into_iter()
        .map(|c| {
            let p = c.prepare(NOW, &Limits::DEFAULT);
            let v = p.and_then(|p| p.verify());
            (c, v)
        })
        .collect();
    assert_eq!(
        s.apply_peers(verdicts, NOW),
        vec![Err(StatusCode::StaleEpoch)]
    );
    // A later epoch than the namespace held is the node lagging behind.
    assert_eq!(
        s.register_peer(reg(&q, q.peer(4, 3, 1, NOW + HOUR)), NOW),
        Err(StatusCode::EpochMismatch)
    );
    assert_eq!(
        s.fingerprint(),
        before,
        "a refused record changed the store"
    );

    // RegisterPeers: one record per epoch, each decided on its own.
    let results = s.register_peers(
        vec![
            reg(&q, q.peer(1, 2, 1, NOW + HOUR)),
            reg(&q, q.peer(2, 1, 10, NOW + HOUR)),
            reg(&q, q.peer(3, 3, 1, NOW + HOUR)),
        ],
        NOW,
    );
    assert_eq!(
        results,
        vec![
            Ok(HOUR),
            Err(StatusCode::StaleEpoch),
            Err(StatusCode::EpochMismatch)
        ]
    );
    assert_eq!(served_epochs(s, &q), vec![2, 2, 2, 2]);
}

#[test]
fn epoch_switch_a_late_kad_value_of_the_old_epoch_brings_nothing_back() {
    let q = quorum(43);
    let mut s = at_epoch_1(&q, 1);
    // What a replica that has not switched yet still serves.
    let old = s
        .namespace_value(&q.quorum_key(), NOW)
        .expect("epoch 1 value");
    assert_eq!(old.peers.len(), 4);
    assert!(s.register_namespace(epoch_2(&q), None, NOW).is_ok());
    assert!(s
        .register_peer(reg(&q, q.peer(1, 2, 1, NOW + HOUR)), NOW)
        .is_ok());
    let before = s.fingerprint();

    // The old value as it was, and with newer seqs (which would win a
    // merge by seq alone).
    let newer_seqs = NamespaceValue {
        namespace: old.namespace.clone(),
        peers: (1..=4).map(|i| q.peer(i, 1, 50, NOW + HOUR)).collect(),
    };
    for value in [old.clone(), newer_seqs] {
        let report = s.merge_value(value, NOW);
        assert!(!report.namespace_updated);
        assert_eq!(report.peers_stored, 0);
        assert_eq!(
            report.peers_rejected,
            (1..=4)
                .map(|i| (i, StatusCode::StaleEpoch))
                .collect::<Vec<_>>()
        );
        assert_eq!(
            s.fingerprint(),
            before,
            "an epoch-1 value changed the store"
        );
    }
    // Epoch-1 peers inside a value of the epoch-2 namespace.
    let mixed = NamespaceValue {
        namespace: epoch_2(&q),
        peers: vec![q.peer(2, 1, 60, NOW + HOUR), q.peer(3, 2, 1, NOW + HOUR)],
    };
    let report = s.merge_value(mixed, NOW);
    assert_eq!(report.peers_rejected, vec![(2, StatusCode::StaleEpoch)]);
    assert_eq!(report.peers_stored, 1);

    // Through the server core, as a kad PUT from another node.
    let mut server = dht::Server::new(
        dht::ServerConfig {
            dial_policy: dht::AddressPolicy::LOCAL,
            ..dht::ServerConfig::default()
        },
        s,
    );
    let key = dht::namespace_key(&q.quorum_key());
    server
        .handle_value(NOW, None, &key, &old.encode())
        .expect("decodes");
    let mut rejected = Vec::new();
    while let Some(output) = server.poll_output() {
        match output {
            dht::Output::Verify(job) => {
                let done = job.run(&mut ChaCha20Rng::seed_from_u64(1), None);
                server.handle_verified(NOW, done);
            }
            dht::Output::Merged { report, .. } => rejected.extend(report.peers_rejected),
            _ => {}
        }
    }
    assert_eq!(
        rejected,
        (1..=4)
            .map(|i| (i, StatusCode::StaleEpoch))
            .collect::<Vec<_>>()
    );
    assert_eq!(served_by(server, &q), vec![2; 8]);
}

/// A value bringing epoch 2 to a replica that holds members' epoch-1
/// records with higher seqs: seqs compare within an epoch, so the new
/// epoch's records are stored (a member's seq need not carry over).
#[test]
fn epoch_switch_by_replication_stores_the_new_epoch_whatever_the_old_seqs() {
    let q = quorum(44);
    let mut s = at_epoch_1(&q, 100);
    let value = NamespaceValue {
        namespace: epoch_2(&q),
        peers: (1..=4).map(|i| q.peer(i, 2, 1, NOW + HOUR)).collect(),
    };
    let report = s.merge_value(value, NOW);
    assert!(report.namespace_updated);
    assert_eq!(report.peers_stored, 4, "{report:?}");
    assert_eq!(report.peers_rejected, vec![]);
    assert_eq!(s.peer_seq(&q.quorum_key(), 1), Some(1));
}

/// A member that unregistered in epoch 1 (its seq remembered so that
/// replication cannot bring the record back) registers afresh in epoch 2,
/// with a lower seq: the withdrawn seq was the old epoch's.
#[test]
fn epoch_switch_forgets_the_old_epochs_withdrawn_seqs() {
    let q = quorum(45);
    let mut s = at_epoch_1(&q, 100);
    assert!(s.unregister(&q.quorum_key(), 1, &q.peer_id(1), NOW).is_ok());
    // Still refused within epoch 1.
    let replayed = s.merge_value(
        NamespaceValue {
            namespace: q.namespace(1, Some("farmer"), NOW, NOW + 2 * HOUR),
            peers: vec![q.peer(1, 1, 100, NOW + HOUR)],
        },
        NOW,
    );
    assert_eq!(replayed.peers_stored, 0);
    assert!(s.register_namespace(epoch_2(&q), None, NOW).is_ok());
    assert_eq!(
        s.register_peer(reg(&q, q.peer(1, 2, 1, NOW + HOUR)), NOW),
        Ok(HOUR)
    );
    let report = s.merge_value(
        NamespaceValue {
            namespace: epoch_2(&q),
            peers: vec![q.peer(2, 2, 1, NOW + HOUR)],
        },
        NOW,
    );
    assert_eq!(report.peers_stored, 1);
}

/// Cookies handed out in epoch 1 page on into epoch 2 without any epoch-1
/// record.
#[test]
fn epoch_switch_old_cookies_page_only_the_new_epoch() {
    let q = quorum(46);
    let mut s = at_epoch_1(&q, 1);
    let first = s.discover(&q.quorum_key(), 2, None, NOW).unwrap();
    assert_eq!(first.peers.len(), 2);
    assert!(s.register_namespace(epoch_2(&q), None, NOW).is_ok());
    for i in [2, 3] {
        assert!(s
            .register_peer(reg(&q, q.peer(i, 2, 1, NOW + HOUR)), NOW)
            .is_ok());
    }
    let next = s
        .discover(&q.quorum_key(), 0, Some(&first.cookie), NOW)
        .unwrap();
    assert_eq!(next.namespace.epoch, 2);
    let got: Vec<(u32, u64)> = next
        .peers
        .iter()
        .map(|p| (p.record.index(), p.record.seat.epoch))
        .collect();
    assert_eq!(got, vec![(2, 2), (3, 2)]);
}
