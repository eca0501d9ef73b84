//! Same seed and parameters, same run bit for bit (whatever the thread
//! count); another seed, another run.

use sim::{scenarios, Params, RunOptions};

fn params(name: &str, seed: u64) -> Params {
    let mut p = scenarios::default_params(name, seed).expect("known scenario");
    p.quorums = 3;
    p.members = 5;
    p.threshold = 3;
    p.rendezvous = 8;
    p.adversaries = 2;
    p
}

fn digest(p: Params) -> String {
    sim::run(p, RunOptions::default()).expect("runs").digest
}

#[test]
fn same_seed_same_digest() {
    for name in ["honest", "churn", "malicious-rendezvous"] {
        let a = digest(params(name, 11));
        let b = digest(params(name, 11));
        assert_eq!(a, b, "{name}: two runs with one seed differ");
        assert_eq!(a.len(), 64);
    }
}

#[test]
fn same_seed_same_digest_with_loss() {
    let mut p = params("partition", 5);
    p.loss = 0.1;
    assert_eq!(digest(p.clone()), digest(p));
}

#[test]
fn different_seeds_different_digests() {
    let digests: Vec<String> = (20..24).map(|s| digest(params("honest", s))).collect();
    for i in 0..digests.len() {
        for j in i + 1..digests.len() {
            assert_ne!(
                digests[i],
                digests[j],
                "seeds {} and {} collide",
                20 + i,
                20 + j
            );
        }
    }
}

/// The parallel instant loop gives the same trace as a single thread.
#[test]
fn thread_count_does_not_change_the_run() {
    let p = params("outsider", 3);
    let parallel = digest(p.clone());
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a one-thread pool");
    let sequential = pool.install(|| digest(p));
    assert_eq!(parallel, sequential);
}
