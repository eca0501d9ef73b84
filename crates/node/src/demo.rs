//! `rdht demo` (and `just node`): the whole system on loopback, narrated,
//! plus the in-process helpers the demo, the integration tests and the
//! discover benchmark (`rdht-bench bench-discover`) share: local
//! rendezvous networks and quorums that run a real DKG over the network.

use std::time::{Duration, Instant};

use libp2p::identity::Keypair;
use libp2p::Multiaddr;
use rendezvous_proto::seat::Seat;
use rendezvous_proto::{PeerRecord, QuorumKey, Request, Response};

use crate::behaviour::now_ms;
use crate::discover::{answer_table, Client};
use crate::quorum::{bind, MemberConfig, MemberError, MemberHandle};
use crate::quorum_file::{Member, Mode, QuorumFile, Transition};
use crate::rendezvous::{start, RendezvousConfig, RendezvousHandle};

/// Why the demo (or one of its helpers) stopped.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A rendezvous node did not start.
    #[error("starting a rendezvous node: {0}")]
    Rendezvous(#[from] crate::rendezvous::StartError),
    /// A member could not listen.
    #[error("a member could not listen: {0}")]
    Listen(#[from] crate::behaviour::SwarmError),
    /// A member listened but reported no address.
    #[error("a member has no listen address")]
    NoListenAddress,
    /// A member failed to start or stopped with an error.
    #[error(transparent)]
    Member(#[from] MemberError),
    /// A member's task ended while it was awaited.
    #[error("member {0} stopped")]
    MemberStopped(libp2p::PeerId),
    /// A member had no key share when one was needed.
    #[error("member {0} has no key share")]
    NoKeyShare(u32),
    /// A key share could not be altered (a scalar that does not decode).
    #[error("altering a key share: {0}")]
    KeyShare(#[from] dkg::DecodeError),
    /// A request of the client failed.
    #[error(transparent)]
    Client(#[from] crate::discover::ClientError),
    /// Something did not happen in time.
    #[error("timed out waiting for {what}; last seen: {last}")]
    Timeout {
        /// What was awaited.
        what: &'static str,
        /// The last state or answer seen.
        last: String,
    },
    /// A node accepted what it must refuse (the demo's claims are checked,
    /// not only printed).
    #[error("{what} was not refused: {answer:?}")]
    NotRefused {
        /// What was sent.
        what: &'static str,
        /// What the node answered.
        answer: Box<Response>,
    },
    /// A member started with a key share that does not match its public
    /// key set.
    #[error("member 3 started with an altered share")]
    AlteredShareAccepted,
}

/// `/ip4/127.0.0.1/tcp/0`: loopback, ephemeral port.
pub fn loopback() -> Multiaddr {
    "/ip4/127.0.0.1/tcp/0"
        .parse()
        .unwrap_or_else(|_| Multiaddr::empty())
}

/// Starts `count` rendezvous nodes on loopback; every node after the first
/// bootstraps from the first.
pub async fn start_rendezvous_nodes(
    count: usize,
    ping_interval: Duration,
    ping_misses: u32,
) -> Result<Vec<RendezvousHandle>, DemoError> {
    let mut nodes: Vec<RendezvousHandle> = Vec::new();
    for _ in 0..count {
        let mut config = RendezvousConfig {
            listen: vec![loopback()],
            bootstrap: nodes.first().map(|n| vec![n.addr()]).unwrap_or_default(),
            ..RendezvousConfig::default()
        };
        config.store.liveness.ping_interval_ms = ping_interval.as_millis().max(1) as u64;
        config.store.liveness.max_misses = ping_misses;
        let node = start(Keypair::generate_ed25519(), config).await?;
        nodes.push(node);
    }
    Ok(nodes)
}

/// A quorum running in this process.
pub struct LocalQuorum {
    /// Its quorum file.
    pub file: QuorumFile,
    /// Members' identities, index order.
    pub keypairs: Vec<Keypair>,
    /// Running members, index order (`None` once stopped).
    pub members: Vec<Option<MemberHandle>>,
    /// The rendezvous nodes its members register at.
    pub rendezvous: Vec<Multiaddr>,
    /// TTL of its records.
    pub ttl: Duration,
}

/// Binds `n` members on loopback, writes their quorum file and starts them
/// all: with no key share they run the DKG with each other, then register.
pub async fn start_quorum(
    n: u32,
    threshold: u32,
    kind: Option<&str>,
    rendezvous: Vec<Multiaddr>,
    ttl: Duration,
    dkg_phase_timeout: Duration,
) -> Result<LocalQuorum, DemoError> {
    let mut keypairs = Vec::new();
    let mut bound = Vec::new();
    let mut members = Vec::new();
    for _ in 0..n {
        let keypair = Keypair::generate_ed25519();
        let b = bind(keypair.clone(), &[loopback()]).await?;
        let addr = b
            .listen_addrs
            .first()
            .cloned()
            .ok_or(DemoError::NoListenAddress)?;
        members.push(Member {
            peer_id: b.peer_id,
            addr,
        });
        keypairs.push(keypair);
        bound.push(b);
    }
    let file = QuorumFile::first(threshold, kind.map(str::to_owned), members);
    let mut handles = Vec::new();
    for b in bound {
        let mut config = MemberConfig::new(file.clone(), rendezvous.clone());
        config.ttl = ttl;
        config.dkg_phase_timeout = dkg_phase_timeout;
        handles.push(Some(b.start(config)?));
    }
    Ok(LocalQuorum {
        file,
        keypairs,
        members: handles,
        rendezvous,
        ttl,
    })
}

impl LocalQuorum {
    /// Waits until every running member has its key share and is
    /// registered at `at_least` rendezvous nodes; returns the quorum key.
    pub async fn wait_registered(
        &self,
        at_least: usize,
        timeout: Duration,
    ) -> Result<QuorumKey, DemoError> {
        let deadline = Instant::now() + timeout;
        loop {
            let mut key = None;
            let mut ready = true;
            for m in self.members.iter().flatten() {
                if m.is_finished() {
                    return Err(DemoError::MemberStopped(m.peer_id));
                }
                let s = m.status.borrow().clone();
                key = key.or(s.quorum_key);
                ready &= s.quorum_key.is_some() && s.registered_at >= at_least;
            }
            if let (true, Some(key)) = (ready, key) {
                return Ok(key);
            }
            if Instant::now() > deadline {
                let registered: Vec<usize> = self
                    .members
                    .iter()
                    .flatten()
                    .map(|m| m.status.borrow().registered_at)
                    .collect();
                return Err(DemoError::Timeout {
                    what: "the quorum to register",
                    last: format!("registered at {registered:?} nodes"),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Member `index`'s key share (from its status).
    pub fn key_share(&self, index: u32) -> Option<dkg::KeyShare> {
        let m = self
            .members
            .get((index as usize).checked_sub(1)?)?
            .as_ref()?;
        let share = m.status.borrow().key_share.clone();
        share
    }

    /// Moves the quorum to its next epoch by resharing, as operators would
    /// with `rdht quorum --quorum next.toml`: every old member is
    /// restarted (same identity, a new port) with the next epoch's file
    /// and its share of this epoch (`shares`, old index order); the old
    /// members `stay` (1-based) keep a seat, `join` newcomers join, the
    /// other old members deal and leave. The old processes are killed
    /// first, so the old epoch's records stay listed until the new
    /// namespace record replaces them. Returns the new epoch's quorum
    /// (members in new index order: those who stay, then the newcomers)
    /// and the leaving members' handles (they stop on their own).
    pub async fn reshare(
        &mut self,
        shares: &[dkg::KeyShare],
        stay: &[u32],
        join: usize,
        threshold: u32,
        rendezvous: Vec<Multiaddr>,
    ) -> Result<(LocalQuorum, Vec<MemberHandle>), DemoError> {
        self.next_epoch(
            Mode::Reshare,
            shares,
            stay,
            join,
            threshold,
            rendezvous,
            None,
        )
        .await
    }

    /// Moves the quorum to its next epoch by key rotation (`mode =
    /// "rotate"`), as operators would with `rdht quorum --quorum
    /// next.toml`: every old member is restarted as in
    /// [`LocalQuorum::reshare`]; the new members (`stay`, then `join`
    /// newcomers) run a fresh DKG (phase timeout `phase`) for a new key, and
    /// the old members sign the handover from the old key to it. Returns
    /// the new quorum and the leaving members' handles (they co-sign, then
    /// unregister and stop on their own).
    pub async fn rotate(
        &mut self,
        shares: &[dkg::KeyShare],
        stay: &[u32],
        join: usize,
        threshold: u32,
        rendezvous: Vec<Multiaddr>,
        phase: Duration,
    ) -> Result<(LocalQuorum, Vec<MemberHandle>), DemoError> {
        self.next_epoch(
            Mode::Rotate,
            shares,
            stay,
            join,
            threshold,
            rendezvous,
            Some(phase),
        )
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn next_epoch(
        &mut self,
        mode: Mode,
        shares: &[dkg::KeyShare],
        stay: &[u32],
        join: usize,
        threshold: u32,
        rendezvous: Vec<Multiaddr>,
        phase: Option<Duration>,
    ) -> Result<(LocalQuorum, Vec<MemberHandle>), DemoError> {
        let quorum_key = shares
            .first()
            .map(|s| QuorumKey::from(s.quorum_key()))
            .ok_or(DemoError::NoKeyShare(1))?;
        let newcomers: Vec<Keypair> = (0..join).map(|_| Keypair::generate_ed25519()).collect();
        let mut bound = Vec::new();
        for keypair in self.keypairs.iter().chain(&newcomers) {
            bound.push(bind(keypair.clone(), &[loopback()]).await?);
        }
        let entry = |b: &crate::quorum::BoundMember| -> Result<Member, DemoError> {
            let addr = b.listen_addrs.first().cloned();
            Ok(Member {
                peer_id: b.peer_id,
                addr: addr.ok_or(DemoError::NoListenAddress)?,
            })
        };
        let old_count = self.keypairs.len();
        let previous = bound[..old_count]
            .iter()
            .map(entry)
            .collect::<Result<Vec<_>, _>>()?;
        let mut members = Vec::new();
        let mut new_order = Vec::new();
        for &i in stay {
            let position = (i as usize)
                .checked_sub(1)
                .ok_or(DemoError::NoKeyShare(i))?;
            members.push(
                previous
                    .get(position)
                    .cloned()
                    .ok_or(DemoError::NoKeyShare(i))?,
            );
            new_order.push(position);
        }
        for (position, b) in bound.iter().enumerate().skip(old_count) {
            members.push(entry(b)?);
            new_order.push(position);
        }
        let file = QuorumFile {
            epoch: self.file.epoch + 1,
            threshold,
            kind: self.file.kind.clone(),
            members,
            transition: Some(Transition {
                mode,
                previous_threshold: self.file.threshold,
                previous,
                quorum_key: Some(quorum_key),
            }),
        };
        for m in self.members.iter().flatten() {
            m.kill();
        }
        self.members.clear();
        let mut started: Vec<Option<MemberHandle>> = Vec::new();
        for (position, b) in bound.into_iter().enumerate() {
            let mut config = MemberConfig::new(file.clone(), rendezvous.clone());
            config.ttl = self.ttl;
            if let Some(phase) = phase {
                config.dkg_phase_timeout = phase;
            }
            if let Some(share) = shares.get(position) {
                config.key_share = Some(share.clone());
                config.epoch = self.file.epoch;
            }
            started.push(Some(b.start(config)?));
        }
        let members = new_order
            .iter()
            .map(|&p| started.get_mut(p).and_then(Option::take))
            .collect();
        let keypairs = new_order
            .iter()
            .filter_map(|&p| self.keypairs.iter().chain(&newcomers).nth(p).cloned())
            .collect();
        let leavers = started.into_iter().flatten().collect();
        let next = LocalQuorum {
            file,
            keypairs,
            members,
            rendezvous,
            ttl: self.ttl,
        };
        Ok((next, leavers))
    }

    /// Starts a member with the given identity and key share. A share
    /// that does not match its public key set is refused here, before any
    /// rendezvous node is asked (`MemberError::Member(KeyShareMismatch)`).
    pub async fn start_member_with(
        &self,
        keypair: Keypair,
        key_share: dkg::KeyShare,
    ) -> Result<MemberHandle, MemberError> {
        let b = bind(keypair, &[loopback()])
            .await
            .map_err(MemberError::Listen)?;
        let mut config = MemberConfig::new(self.file.clone(), self.rendezvous.clone());
        config.key_share = Some(key_share);
        config.ttl = self.ttl;
        b.start(config)
    }
}

/// What an attacker does without any member software: seats
/// `keypair`'s PeerId at `share`'s index of `quorum_key` with `share`
/// (forged, or someone else's), signs the envelope with `keypair`, and
/// sends the record straight to `at` over a connection authenticated as
/// that PeerId. Returns the node's answer.
pub async fn register_raw(
    at: &Multiaddr,
    keypair: Keypair,
    quorum_key: QuorumKey,
    share: &dkg::SecretKeyShare,
) -> Result<Response, DemoError> {
    let now = now_ms();
    let seat = Seat::sign(quorum_key, 0, keypair.public().to_peer_id(), share);
    let record = PeerRecord::sign(seat, vec![loopback()], now, now + 600_000, &keypair);
    let mut client = Client::new(keypair)?;
    Ok(client
        .request(at, Request::RegisterPeer(record), Duration::from_secs(5))
        .await?)
}

/// A key share for `seat` of the same quorum key set whose secret is not
/// the member's: what an outsider (or a corrupted file) would have.
pub fn forged_share(real: &dkg::KeyShare, seat: u32) -> Result<dkg::KeyShare, DemoError> {
    let mut bytes = *real.secret.scalar_bytes();
    // Change the low byte: still a canonical, non-zero scalar.
    if let Some(last) = bytes.last_mut() {
        *last ^= 0x01;
    }
    let secret = dkg::SecretKeyShare::from_bytes(seat, &bytes)?;
    Ok(dkg::KeyShare {
        n: real.n,
        public_key_set: real.public_key_set.clone(),
        secret,
    })
}

/// Discovers and verifies, retrying until `accept` holds or time runs out.
pub async fn discover_until(
    client: &mut Client,
    at: &Multiaddr,
    quorum_key: QuorumKey,
    timeout: Duration,
    accept: impl Fn(&rendezvous_proto::VerifiedAnswer) -> bool,
) -> Result<rendezvous_proto::VerifiedAnswer, DemoError> {
    let deadline = Instant::now() + timeout;
    let mut last;
    loop {
        match client
            .discover(at, quorum_key, Duration::from_secs(5))
            .await
        {
            Ok(a) if accept(&a) => return Ok(a),
            Ok(a) => {
                last = format!(
                    "{} peers: {:?}",
                    a.peers.len(),
                    a.peers.iter().map(|p| p.record.index()).collect::<Vec<_>>()
                )
            }
            Err(e) => last = e.to_string(),
        }
        if Instant::now() > deadline {
            return Err(DemoError::Timeout {
                what: "a discover answer that passes",
                last,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn step(n: u32, text: &str) {
    println!("\n=== {n}. {text}");
}

fn indices(a: &rendezvous_proto::VerifiedAnswer) -> Vec<u32> {
    a.peers.iter().map(|p| p.record.index()).collect()
}

/// The narrated demo.
pub async fn run() -> Result<(), DemoError> {
    let started = Instant::now();
    let ping_interval = Duration::from_millis(500);
    let misses = 2;
    let ttl = Duration::from_secs(60);
    let dkg_phase = Duration::from_secs(3);
    let wait = Duration::from_secs(30);

    step(1, "Three rendezvous nodes form a Kademlia DHT on loopback");
    let nodes = start_rendezvous_nodes(3, ping_interval, misses).await?;
    for (i, n) in nodes.iter().enumerate() {
        println!("  R{} {}", i + 1, n.addr());
    }
    let (r1, r2, r3) = (nodes[0].addr(), nodes[1].addr(), nodes[2].addr());

    step(2, "Two quorums run a real DKG over the network (no dealer)");
    println!("  'farmer':    n = 4, threshold 3, registers at R1 only");
    println!("  'harvester': n = 3, threshold 2, registers at R2 only");
    let mut farmer = start_quorum(4, 3, Some("farmer"), vec![r1.clone()], ttl, dkg_phase).await?;
    let harvester = start_quorum(3, 2, Some("harvester"), vec![r2.clone()], ttl, dkg_phase).await?;
    let farmer_key = farmer.wait_registered(1, wait).await?;
    // Kept for step 8 (member 4's process is killed in step 6).
    let farmer_shares = (1..=4)
        .map(|i| farmer.key_share(i))
        .collect::<Option<Vec<_>>>();
    let harvester_key = harvester.wait_registered(1, wait).await?;
    println!("  farmer quorum key    {farmer_key}");
    println!("  harvester quorum key {harvester_key}");
    println!("  each namespace record carries a threshold signature made from 3 (resp. 2) members' shares;");
    println!("  each member registered its own record, signed with its secret share");

    step(
        3,
        "Discovery from R3, a rendezvous neither quorum ever talked to",
    );
    let mut client = Client::ephemeral()?;
    let a = discover_until(&mut client, &r3, farmer_key, wait, |a| a.peers.len() == 4).await?;
    print!("{}", answer_table(&a));
    let b = discover_until(&mut client, &r3, harvester_key, wait, |a| {
        a.peers.len() == 3
    })
    .await?;
    print!("{}", answer_table(&b));
    println!("  every record above was verified by this client against the quorum key (R3 is not trusted)");

    step(
        4,
        "An outsider with a fresh identity claims seat 2 of 'farmer' with a share it made up",
    );
    let real = farmer.key_share(2).ok_or(DemoError::NoKeyShare(2))?;
    let forged = forged_share(&real, 2)?;
    match register_raw(&r1, Keypair::generate_ed25519(), farmer_key, &forged.secret).await? {
        Response::Rejected(code) => println!("  refused by R1: {code}"),
        other => {
            return Err(DemoError::NotRefused {
                what: "the outsider's record",
                answer: Box::new(other),
            })
        }
    }
    let mut raw = Client::ephemeral()?;
    let answer = raw
        .request(
            &r1,
            Request::Discover {
                quorum_key: farmer_key,
                limit: 0,
                cookie: None,
            },
            Duration::from_secs(5),
        )
        .await?;
    if let Response::Discovered(d) = answer {
        let mut seats: Vec<u32> = d.peers.iter().map(|p| p.record.index()).collect();
        seats.sort_unstable();
        println!("  R1 still lists seats {seats:?} (the outsider is not among them)");
    }

    step(
        5,
        "Member 3 of 'farmer' restarts with an altered secret share",
    );
    let keypair3 = farmer.keypairs[2].clone();
    let real3 = farmer.key_share(3).ok_or(DemoError::NoKeyShare(3))?;
    if let Some(m) = farmer.members[2].take() {
        m.shutdown().await?;
        println!("  member 3 stopped gracefully (unregistered)");
    }
    let tampered = forged_share(&real3, 3)?;
    match farmer
        .start_member_with(keypair3.clone(), tampered.clone())
        .await
    {
        Err(e) => println!("  member 3 refuses to start: {e}"),
        Ok(_) => return Err(DemoError::AlteredShareAccepted),
    }
    // Sent to R2, where 'farmer' does not register: the sender of an
    // invalid signature is refused there for a while (10 s at first).
    match register_raw(&r2, keypair3.clone(), farmer_key, &tampered.secret).await? {
        Response::Rejected(code) => {
            println!("  the same record sent by hand to R2, from member 3's own identity: refused: {code}");
            println!("  (R2 now refuses member 3's identity for 10 s: a sender of invalid signatures pays)")
        }
        other => {
            return Err(DemoError::NotRefused {
                what: "the tampered record",
                answer: Box::new(other),
            })
        }
    }
    println!("  ...and with its real key share it is listed again after its next registration:");
    farmer.members[2] = Some(farmer.start_member_with(keypair3, real3).await?);
    // R1 forgot member 3 when it unregistered: seat 3 there is the new
    // registration.
    let a = discover_until(&mut client, &r1, farmer_key, wait, |a| a.peers.len() == 4).await?;
    println!("  R1 lists seats {:?}", indices(&a));

    step(
        6,
        "Kill member 4 of 'farmer' (no goodbye): every rendezvous stops listing it on its own",
    );
    if let Some(m) = farmer.members[3].take() {
        m.kill();
    }
    let killed_at = Instant::now();
    for (i, at) in [&r1, &r2, &r3].into_iter().enumerate() {
        let a = discover_until(&mut client, at, farmer_key, wait, |a| {
            !indices(a).contains(&4)
        })
        .await?;
        println!(
            "  R{} lists seats {:?} after {} ms",
            i + 1,
            indices(&a),
            killed_at.elapsed().as_millis()
        );
    }
    println!(
        "  (ping interval {} ms x {misses} misses)",
        ping_interval.as_millis()
    );

    step(
        7,
        "Kill R1, where 'farmer' registered: its peers stay discoverable from R2 and R3",
    );
    nodes[0].kill();
    for (name, at) in [("R2", &r2), ("R3", &r3)] {
        let a = discover_until(&mut client, at, farmer_key, wait, |a| a.peers.len() == 3).await?;
        println!("  {name} lists seats {:?}", indices(&a));
    }
    step(
        8,
        "'farmer' changes members by resharing: member 1 leaves, member 4 comes back, a newcomer joins",
    );
    let shares = farmer_shares.ok_or(DemoError::NoKeyShare(1))?;
    // Member 4's process is gone (step 6): it restarts for the new epoch.
    let (next, leavers) = farmer
        .reshare(&shares, &[2, 3, 4], 1, 3, vec![r2.clone(), r3.clone()])
        .await?;
    println!("  epoch 1: members 2, 3, 4 of epoch 0 and a newcomer, threshold 3, registering at R2 and R3;");
    println!("  the old members re-deal their shares to the new ones: no new DKG, no dealer");
    let resharing_started = Instant::now();
    let a = discover_until(&mut client, &r3, farmer_key, wait, |a| {
        a.epoch() == 1 && a.peers.len() == 4
    })
    .await?;
    println!(
        "  R3, asked by the same quorum key, lists epoch {} after {} ms:",
        a.epoch(),
        resharing_started.elapsed().as_millis()
    );
    print!("{}", answer_table(&a));
    let newcomer = next
        .file
        .members
        .last()
        .map(|m| m.peer_id.to_string())
        .unwrap_or_default();
    println!("  (the newcomer is seat 4, {newcomer})");
    for leaver in leavers {
        leaver.join().await?;
        println!("  member 1 dealt its share, unregistered and stopped");
    }
    let departed = farmer.keypairs[0].clone();
    match register_raw(&r2, departed, farmer_key, &shares[0].secret).await? {
        Response::Rejected(code) => {
            println!("  member 1 tries to register with its old share: refused by R2: {code}")
        }
        other => {
            return Err(DemoError::NotRefused {
                what: "the departed member's old share",
                answer: Box::new(other),
            })
        }
    }
    drop(next);
    let _ = now_ms();
    println!("\nDone in {:.1} s.", started.elapsed().as_secs_f64());
    Ok(())
}
