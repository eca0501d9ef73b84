//! #13 item 8 against real members over loopback: a DKG that cannot
//! finish (a member is down, so fewer than `threshold` answer) used to
//! stop every member with an error. Now the members that are up retry in
//! a fresh session, with backoff, and once the missing member starts all
//! of them finish with the same quorum key. Bounded in time, 127.0.0.1
//! only.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use libp2p::identity::Keypair;
use node::demo::{loopback, start_rendezvous_nodes};
use node::metrics::Metrics;
use node::quorum::{bind, MemberConfig};
use node::quorum_file::{Member, QuorumFile};

const PHASE: Duration = Duration::from_millis(400);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dkg_retry_a_run_that_cannot_finish_is_retried_until_the_missing_member_starts() {
    tokio::time::timeout(Duration::from_secs(90), async {
        let nodes = start_rendezvous_nodes(1, Duration::from_secs(3600), 3)
            .await
            .unwrap();
        let rendezvous = vec![nodes[0].addr()];
        let mut bound = Vec::new();
        let mut members = Vec::new();
        for _ in 0..3 {
            let b = bind(Keypair::generate_ed25519(), &[loopback()])
                .await
                .unwrap();
            members.push(Member {
                peer_id: b.peer_id,
                addr: b.listen_addrs[0].clone(),
            });
            bound.push(b);
        }
        let file = QuorumFile::first(3, None, members);
        let config = |metrics: &std::sync::Arc<Metrics>| {
            let mut c = MemberConfig::new(file.clone(), rendezvous.clone());
            c.dkg_phase_timeout = PHASE;
            c.metrics = metrics.clone();
            c
        };
        let metrics: Vec<_> = (0..3).map(|_| Metrics::new()).collect();
        let last = bound.pop().unwrap();
        let mut handles: Vec<_> = bound
            .into_iter()
            .zip(&metrics)
            .map(|(b, m)| b.start(config(m)).unwrap())
            .collect();
        // Member 3 is down: the first two fail their run, and retry.
        let deadline = Instant::now() + Duration::from_secs(30);
        while metrics[..2]
            .iter()
            .any(|m| m.dkg_retries.load(Ordering::Relaxed) == 0)
        {
            assert!(Instant::now() < deadline, "no run failed and was retried");
            for h in &handles {
                assert!(!h.is_finished(), "a failed DKG stopped a member");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(handles
            .iter()
            .all(|h| h.status.borrow().quorum_key.is_none()));
        // Member 3 starts: the next run finishes, with one key for all.
        handles.push(last.start(config(&metrics[2])).unwrap());
        let deadline = Instant::now() + Duration::from_secs(45);
        let keys = loop {
            let keys: Vec<_> = handles
                .iter()
                .map(|h| h.status.borrow().quorum_key)
                .collect();
            if keys.iter().all(Option::is_some) {
                break keys;
            }
            assert!(
                Instant::now() < deadline,
                "the retried DKG never finished: {keys:?}"
            );
            for h in &handles {
                assert!(!h.is_finished(), "a member stopped");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(keys.windows(2).all(|w| w[0] == w[1]), "{keys:?}");
        for h in handles {
            let _ = h.shutdown().await;
        }
    })
    .await
    .expect("test timed out");
}
