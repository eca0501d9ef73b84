//! A quorum member: runs the real DKG (`dkg::DkgMember`) over the
//! simulated network, co-signs the namespace record, registers its peer
//! record on the namespace's replicas, refreshes it, answers pings.
//!
//! Protocol, as the simulator models the node:
//! 1. DKG: every transmit is encoded with the DKG wire format and decoded
//!    again before it travels (a broadcast is encoded and decoded once and
//!    the decoded message shared by its recipients: the bytes are the same
//!    for all of them, so decoding them once per recipient would only
//!    repeat identical work).
//! 2. Co-signing: the lowest index of QUAL (the collector) builds the
//!    namespace record, asks every member for a signature share, combines
//!    `threshold` of them with `dkg::combine_signatures`, checks the result
//!    under the quorum key (on failure it names the bad shares with a
//!    batch bisection and waits for others), and registers the record on
//!    the k replicas. Once they answered (or after a timeout) it sends the
//!    record to every member.
//! 3. Registration: each member sends its signed peer record to each of
//!    the k replicas directly (no forwarding), resends to those that did
//!    not acknowledge (backing off), re-registers the namespace record at a
//!    replica that does not know it, and refreshes at TTL/2 with a new seq.
//!    Seqs are virtual-time stamps, so they keep increasing across restarts.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use blstrs::Scalar;
use dkg::{
    combine_signatures, find_invalid, BatchItem, DealMessage, Destination, DkgConfig, DkgError,
    DkgMember, DkgMessage, DkgOutput, KeyShare, Phase, Polynomial, PublicKey, SecretKeyShare,
    ShareMessage, SignatureShare, Transmit,
};
use ff::Field;
use libp2p_identity::{Keypair, PeerId};
use rand_chacha::ChaCha20Rng;
use rendezvous_proto::{NamespaceRecord, PeerRecord, QuorumKey, StatusCode};

use crate::msg::{AckKind, Addr, Ctx, DkgSummary, EventKind, Msg, Note, Timer};

/// How a faulty dealer misbehaves in the DKG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Sends wrong shares to half the members and never justifies them.
    BadShares,
    /// Sends nothing at all.
    Silent,
    /// Shows one deal (and matching shares) to half the members and
    /// another to the other half.
    Equivocate,
}

/// Namespace co-signing state of the collector.
struct Cosign {
    record: NamespaceRecord,
    message: Vec<u8>,
    shares: BTreeMap<u32, SignatureShare>,
    done: bool,
    announced: bool,
    acked: BTreeSet<u32>,
}

/// One quorum member.
pub struct Member {
    /// The quorum.
    pub quorum: u32,
    /// The member index (1-based).
    pub index: u32,
    /// Flat index (its address).
    pub flat: u32,
    /// Its libp2p identity.
    pub peer_id: PeerId,
    #[allow(dead_code)]
    keypair: Keypair,
    /// Up (false while crashed).
    pub alive: bool,
    /// Bumped at each restart: timers of an earlier life are ignored.
    pub incarnation: u32,
    /// DKG misbehaviour, for faulty dealers (who then do nothing else).
    pub fault: Option<Fault>,
    rng: ChaCha20Rng,
    dkg: Option<DkgMember>,
    dkg_timer: Option<u64>,
    alternate: Option<(DealMessage, Polynomial)>,
    /// The key share, once the DKG succeeded.
    pub key: Option<KeyShare>,
    /// QUAL as this member saw it.
    pub qual: Vec<u32>,
    quorum_key: Option<QuorumKey>,
    replicas: Vec<u32>,
    pending_sign: Vec<(Addr, Arc<NamespaceRecord>)>,
    pending_ready: Option<Arc<NamespaceRecord>>,
    cosign: Option<Cosign>,
    /// The namespace record this member registers under.
    pub namespace: Option<Arc<NamespaceRecord>>,
    /// The latest signed peer record.
    pub record: Option<Arc<PeerRecord>>,
    acked: BTreeMap<u32, u64>,
    refresh_generation: u32,
    retry_generation: u32,
    retry_attempt: u32,
    last_seq: u64,
}

impl Member {
    /// A member that has not started its DKG.
    pub fn new(quorum: u32, index: u32, flat: u32, keypair: Keypair, rng: ChaCha20Rng) -> Self {
        Self {
            quorum,
            index,
            flat,
            peer_id: keypair.public().to_peer_id(),
            keypair,
            alive: true,
            incarnation: 0,
            fault: None,
            rng,
            dkg: None,
            dkg_timer: None,
            alternate: None,
            key: None,
            qual: Vec::new(),
            quorum_key: None,
            replicas: Vec::new(),
            pending_sign: Vec::new(),
            pending_ready: None,
            cosign: None,
            namespace: None,
            record: None,
            acked: BTreeMap::new(),
            refresh_generation: 0,
            retry_generation: 0,
            retry_attempt: 0,
            last_seq: 0,
        }
    }

    /// Whether some replica acknowledged one of its registrations.
    pub fn acked_anywhere(&self) -> bool {
        !self.acked.is_empty()
    }

    /// The seq replica `rdv` last acknowledged.
    pub fn acked_seq(&self, rdv: u32) -> Option<u64> {
        self.acked.get(&rdv).copied()
    }

    /// The replicas that acknowledged the current record.
    pub fn acked_current(&self) -> usize {
        let Some(seq) = self.record.as_ref().map(|r| r.seq) else {
            return 0;
        };
        self.acked.values().filter(|s| **s == seq).count()
    }

    /// Handles one event.
    pub fn handle(&mut self, ctx: &mut Ctx<'_>, event: EventKind) {
        if !self.alive {
            return;
        }
        match event {
            EventKind::Timer(timer) => self.on_timer(ctx, timer),
            EventKind::Deliver { from, msg } => self.on_message(ctx, from, msg),
        }
    }

    fn on_timer(&mut self, ctx: &mut Ctx<'_>, timer: Timer) {
        match timer {
            Timer::DkgStart => self.start_dkg(ctx),
            Timer::DkgDeadline { incarnation } if incarnation == self.incarnation => {
                self.dkg_timer = None;
                if let Some(dkg) = self.dkg.as_mut() {
                    dkg.handle_timeout(ctx.now);
                }
                self.pump(ctx);
            }
            Timer::Cosign { epoch } => self.start_cosign(ctx, epoch),
            Timer::NamespaceAckTimeout { issued_at_ms } => {
                let matches = self
                    .cosign
                    .as_ref()
                    .is_some_and(|c| c.done && c.record.issued_at_ms == issued_at_ms);
                if matches {
                    self.announce(ctx);
                }
            }
            Timer::Refresh {
                incarnation,
                generation,
            } if incarnation == self.incarnation && generation == self.refresh_generation => {
                self.register(ctx);
            }
            Timer::RegisterRetry {
                incarnation,
                generation,
            } if incarnation == self.incarnation && generation == self.retry_generation => {
                self.retry(ctx);
            }
            Timer::Restart => self.register(ctx),
            _ => {}
        }
    }

    fn on_message(&mut self, ctx: &mut Ctx<'_>, from: Addr, msg: Msg) {
        let n = ctx.shared.n();
        // A fellow member of this quorum, by index (None for anyone else).
        let peer_index = match from {
            Addr::Member(f) if f / n == self.quorum => Some(f % n + 1),
            _ => None,
        };
        match (msg, peer_index) {
            (Msg::Dkg { message, .. }, Some(j)) => {
                if let Some(dkg) = self.dkg.as_mut() {
                    // A rejected message changes nothing in the DKG; the
                    // reason is the DKG's own business.
                    let _ = dkg.handle_message(ctx.now, j, (*message).clone());
                }
                self.pump(ctx);
            }
            (Msg::SignRequest(record), Some(_)) if self.fault.is_none() => {
                if self.key.is_some() {
                    self.answer_sign(ctx, from, &record);
                } else {
                    self.pending_sign.push((from, record));
                }
            }
            (
                Msg::SignShare {
                    issued_at_ms,
                    share,
                },
                Some(j),
            ) if share.index == j => self.on_share(ctx, issued_at_ms, share),
            (Msg::NamespaceReady(record), Some(_)) if self.fault.is_none() => {
                if self.key.is_some() {
                    self.adopt(ctx, record);
                } else {
                    self.pending_ready = Some(record);
                }
            }
            (Msg::Ack { kind, seq, result }, None) => {
                if let Addr::Rdv(r) = from {
                    self.on_ack(ctx, r, kind, seq, result);
                }
            }
            (Msg::Ping, None) => {
                if matches!(from, Addr::Rdv(_)) {
                    ctx.send(from, Msg::Pong);
                }
            }
            _ => {}
        }
    }

    // ----- DKG ---------------------------------------------------------------

    fn start_dkg(&mut self, ctx: &mut Ctx<'_>) {
        if self.dkg.is_some() || self.key.is_some() {
            return;
        }
        let p = &ctx.shared.config.params;
        let session = ctx.shared.sessions[self.quorum as usize];
        let config = match DkgConfig::from_session(
            session,
            p.members,
            p.threshold,
            self.index,
            ctx.shared.config.dkg_phase_ms,
        ) {
            Ok(c) => c,
            Err(e) => {
                ctx.note(Note::DkgDone {
                    quorum: self.quorum,
                    index: self.index,
                    result: Err(e.to_string()),
                });
                return;
            }
        };
        if self.fault == Some(Fault::Equivocate) {
            let poly = Polynomial::random(p.threshold, &mut self.rng);
            if let Some(deal) = DealMessage::new(session, self.index, &poly, &mut self.rng) {
                self.alternate = Some((deal, poly));
            }
        }
        self.dkg = Some(DkgMember::new(config, ctx.now, &mut self.rng));
        self.pump(ctx);
    }

    /// Sends what the DKG queued, then either takes its outcome or arms
    /// its next deadline.
    fn pump(&mut self, ctx: &mut Ctx<'_>) {
        let Some(dkg) = self.dkg.as_mut() else {
            return;
        };
        let mut transmits = Vec::new();
        while let Some(t) = dkg.poll_transmit() {
            transmits.push(t);
        }
        let finished = dkg.phase() == Phase::Finished;
        let outcome = if finished { dkg.take_outcome() } else { None };
        let deadline = dkg.poll_deadline();
        for t in transmits {
            self.transmit(ctx, t);
        }
        if finished {
            self.dkg = None;
            if let Some(outcome) = outcome {
                self.dkg_finished(ctx, outcome);
            }
        } else if let Some(d) = deadline {
            if self.dkg_timer != Some(d) {
                self.dkg_timer = Some(d);
                ctx.timer(
                    d,
                    Timer::DkgDeadline {
                        incarnation: self.incarnation,
                    },
                );
            }
        }
    }

    /// What a faulty dealer sends to member `j` instead of `message`
    /// (`None`: nothing).
    fn tamper(&self, j: u32, message: &DkgMessage, n: u32) -> Option<DkgMessage> {
        let upper_half = j > n / 2;
        match (self.fault, message) {
            (Some(Fault::Silent), _) => None,
            (Some(Fault::BadShares), DkgMessage::Share(s)) if j.is_multiple_of(2) => {
                let wrong = SecretKeyShare::new(j, *s.share.scalar() + Scalar::ONE).ok()?;
                Some(DkgMessage::Share(ShareMessage {
                    session_id: s.session_id,
                    dealer: s.dealer,
                    share: wrong,
                }))
            }
            (Some(Fault::BadShares), DkgMessage::Justification(_)) => None,
            (Some(Fault::Equivocate), DkgMessage::Deal(_)) if upper_half => {
                let (deal, _) = self.alternate.as_ref()?;
                Some(DkgMessage::Deal(deal.clone()))
            }
            (Some(Fault::Equivocate), DkgMessage::Share(s)) if upper_half => {
                let (_, poly) = self.alternate.as_ref()?;
                Some(DkgMessage::Share(ShareMessage {
                    session_id: s.session_id,
                    dealer: s.dealer,
                    share: SecretKeyShare::new(j, poly.evaluate(j)).ok()?,
                }))
            }
            _ => Some(message.clone()),
        }
    }

    fn transmit(&mut self, ctx: &mut Ctx<'_>, t: Transmit) {
        let n = ctx.shared.n();
        let recipients: Vec<u32> = match t.to {
            Destination::Member(j) => vec![j],
            Destination::All => (1..=n).filter(|&j| j != self.index).collect(),
        };
        let send = |ctx: &mut Ctx<'_>, quorum: u32, j: u32, message: &DkgMessage| {
            // Through the real codec: what arrives is what decodes.
            let bytes = message.encode();
            if let Ok(decoded) = DkgMessage::decode(&bytes) {
                (
                    Arc::new(decoded),
                    bytes.len() as u32,
                    ctx.shared.member(quorum, j),
                )
            } else {
                (Arc::new(message.clone()), 0, ctx.shared.member(quorum, j))
            }
        };
        if self.fault.is_none() {
            if let Some(&first) = recipients.first() {
                let (decoded, len, _) = send(ctx, self.quorum, first, &t.message);
                for j in recipients {
                    ctx.send(
                        ctx.shared.member(self.quorum, j),
                        Msg::Dkg {
                            message: decoded.clone(),
                            bytes: len,
                        },
                    );
                }
            }
            return;
        }
        for j in recipients {
            if let Some(message) = self.tamper(j, &t.message, n) {
                let (decoded, len, to) = send(ctx, self.quorum, j, &message);
                ctx.send(
                    to,
                    Msg::Dkg {
                        message: decoded,
                        bytes: len,
                    },
                );
            }
        }
    }

    fn dkg_finished(&mut self, ctx: &mut Ctx<'_>, outcome: Result<DkgOutput, DkgError>) {
        match outcome {
            Ok(out) => {
                let summary = DkgSummary {
                    qual: out.qual.clone(),
                    key_set: out
                        .key_share
                        .public_key_set
                        .commitments()
                        .iter()
                        .map(PublicKey::to_bytes)
                        .collect(),
                    transcript: out.transcript_hash.0,
                };
                ctx.note(Note::DkgDone {
                    quorum: self.quorum,
                    index: self.index,
                    result: Ok(summary),
                });
                let key = QuorumKey::from(out.key_share.quorum_key());
                self.quorum_key = Some(key);
                self.replicas = ctx.shared.replicas(&key);
                self.qual = out.qual;
                self.key = Some(out.key_share);
                if self.fault.is_some() {
                    return;
                }
                for (from, record) in std::mem::take(&mut self.pending_sign) {
                    self.answer_sign(ctx, from, &record);
                }
                if self.qual.first() == Some(&self.index) {
                    self.start_cosign(ctx, 0);
                }
                if let Some(record) = self.pending_ready.take() {
                    self.adopt(ctx, record);
                }
            }
            Err(e) => ctx.note(Note::DkgDone {
                quorum: self.quorum,
                index: self.index,
                result: Err(e.to_string()),
            }),
        }
    }

    // ----- namespace co-signing ---------------------------------------------------

    fn commitment_bytes(&self) -> Vec<[u8; 48]> {
        self.key
            .as_ref()
            .map(|k| {
                k.public_key_set
                    .commitments()
                    .iter()
                    .map(PublicKey::to_bytes)
                    .collect()
            })
            .unwrap_or_default()
    }

    fn start_cosign(&mut self, ctx: &mut Ctx<'_>, epoch: u64) {
        if self.fault.is_some() {
            return;
        }
        let Some(key) = self.key.as_ref() else {
            return;
        };
        let n = ctx.shared.n();
        let record = NamespaceRecord {
            commitments: self.commitment_bytes(),
            n,
            epoch,
            kind: Some("sim".to_owned()),
            members: None,
            issued_at_ms: ctx.now,
            expires_at_ms: ctx.now + ctx.shared.config.namespace_ttl_ms,
            signature: [0; 96],
        };
        let message = record.signing_bytes();
        let own = key.secret.sign(&message);
        let request = Arc::new(record.clone());
        for j in (1..=n).filter(|&j| j != self.index) {
            ctx.send(
                ctx.shared.member(self.quorum, j),
                Msg::SignRequest(request.clone()),
            );
        }
        let mut shares = BTreeMap::new();
        shares.insert(self.index, own);
        self.cosign = Some(Cosign {
            record,
            message,
            shares,
            done: false,
            announced: false,
            acked: BTreeSet::new(),
        });
        self.try_combine(ctx);
    }

    fn answer_sign(&mut self, ctx: &mut Ctx<'_>, to: Addr, record: &NamespaceRecord) {
        let Some(key) = self.key.as_ref() else {
            return;
        };
        // Sign only the quorum's own key set: a member is not an oracle.
        if record.commitments != self.commitment_bytes() || record.n != ctx.shared.n() {
            return;
        }
        let share = key.secret.sign(&record.signing_bytes());
        ctx.send(
            to,
            Msg::SignShare {
                issued_at_ms: record.issued_at_ms,
                share,
            },
        );
    }

    fn on_share(&mut self, ctx: &mut Ctx<'_>, issued_at_ms: u64, share: SignatureShare) {
        let Some(c) = self.cosign.as_mut() else {
            return;
        };
        if c.done || c.record.issued_at_ms != issued_at_ms {
            return;
        }
        c.shares.insert(share.index, share);
        self.try_combine(ctx);
    }

    fn try_combine(&mut self, ctx: &mut Ctx<'_>) {
        let (Some(c), Some(key)) = (self.cosign.as_mut(), self.key.as_ref()) else {
            return;
        };
        let threshold = key.threshold();
        if c.done || (c.shares.len() as u32) < threshold {
            return;
        }
        let shares: Vec<SignatureShare> = c.shares.values().copied().collect();
        let combined = combine_signatures(threshold, key.n, &shares).ok();
        match combined {
            Some(sig) if key.quorum_key().verify(&c.message, &sig) => {
                c.record.signature = sig.to_bytes();
                c.done = true;
            }
            _ => {
                // Name the bad shares and wait for others.
                let keys: Vec<PublicKey> = shares
                    .iter()
                    .map(|s| key.public_key_set.public_key_share(s.index))
                    .collect();
                let items: Vec<BatchItem<'_>> = shares
                    .iter()
                    .zip(&keys)
                    .map(|(s, pk)| BatchItem {
                        public_key: pk,
                        message: &c.message,
                        signature: &s.signature,
                    })
                    .collect();
                for bad in find_invalid(&items, &mut self.rng) {
                    c.shares.remove(&shares[bad].index);
                }
                return;
            }
        }
        let record = Arc::new(c.record.clone());
        ctx.note(Note::NamespaceSigned {
            quorum: self.quorum,
            record: record.clone(),
        });
        for &r in &self.replicas {
            ctx.send(
                Addr::Rdv(r),
                Msg::RegisterNamespace {
                    record: record.clone(),
                    remote: self.peer_id,
                },
            );
        }
        ctx.timer(
            ctx.now + 2_000,
            Timer::NamespaceAckTimeout {
                issued_at_ms: record.issued_at_ms,
            },
        );
    }

    fn announce(&mut self, ctx: &mut Ctx<'_>) {
        let Some(c) = self.cosign.as_mut() else {
            return;
        };
        if c.announced || !c.done {
            return;
        }
        c.announced = true;
        let record = Arc::new(c.record.clone());
        let n = ctx.shared.n();
        for j in (1..=n).filter(|&j| j != self.index) {
            ctx.send(
                ctx.shared.member(self.quorum, j),
                Msg::NamespaceReady(record.clone()),
            );
        }
        self.adopt(ctx, record);
    }

    /// Takes a (newer) namespace record and registers under it.
    fn adopt(&mut self, ctx: &mut Ctx<'_>, record: Arc<NamespaceRecord>) {
        if record.commitments != self.commitment_bytes() {
            return;
        }
        let newer = self
            .namespace
            .as_ref()
            .is_none_or(|ns| (record.epoch, record.issued_at_ms) > (ns.epoch, ns.issued_at_ms));
        if newer {
            self.namespace = Some(record);
            self.register(ctx);
        }
    }

    // ----- registration --------------------------------------------------------

    fn register(&mut self, ctx: &mut Ctx<'_>) {
        if self.fault.is_some() {
            return;
        }
        let (Some(key), Some(ns), Some(qk)) =
            (self.key.as_ref(), self.namespace.as_ref(), self.quorum_key)
        else {
            return;
        };
        let seq = ctx.now.max(self.last_seq + 1);
        self.last_seq = seq;
        let ttl = ctx.shared.config.peer_ttl_ms;
        let record = Arc::new(PeerRecord::sign(
            qk,
            ns.epoch,
            self.peer_id,
            vec![ctx.shared.member_addrs[self.flat as usize].clone()],
            seq,
            ctx.now + ttl,
            &key.secret,
        ));
        ctx.note(Note::PeerSigned {
            member: self.flat,
            record: record.clone(),
        });
        for &r in &self.replicas {
            ctx.send(
                Addr::Rdv(r),
                Msg::RegisterPeer {
                    record: record.clone(),
                    remote: self.peer_id,
                },
            );
        }
        self.record = Some(record);
        self.retry_generation += 1;
        self.retry_attempt = 0;
        ctx.timer(
            ctx.now + 3_000,
            Timer::RegisterRetry {
                incarnation: self.incarnation,
                generation: self.retry_generation,
            },
        );
        self.refresh_generation += 1;
        ctx.timer(
            ctx.now + ttl / 2,
            Timer::Refresh {
                incarnation: self.incarnation,
                generation: self.refresh_generation,
            },
        );
    }

    fn on_ack(
        &mut self,
        ctx: &mut Ctx<'_>,
        rdv: u32,
        kind: AckKind,
        seq: u64,
        result: Result<u64, StatusCode>,
    ) {
        match kind {
            AckKind::Namespace => {
                let all = if let Some(c) = self.cosign.as_mut() {
                    if c.record.issued_at_ms == seq {
                        c.acked.insert(rdv);
                    }
                    self.replicas.iter().all(|r| c.acked.contains(r))
                } else {
                    false
                };
                if all {
                    self.announce(ctx);
                }
            }
            AckKind::Peer => {
                let Some(current) = self.record.as_ref().map(|r| r.seq) else {
                    return;
                };
                if seq != current {
                    return;
                }
                match result {
                    // StaleSequence for the current seq: a resend of a
                    // registration whose first copy already got through.
                    Ok(_) | Err(StatusCode::StaleSequence) => {
                        self.acked.insert(rdv, seq);
                    }
                    // The replica lacks the namespace, or holds an older
                    // epoch of it (its update was lost): give it ours.
                    Err(StatusCode::UnknownNamespace) | Err(StatusCode::EpochMismatch) => {
                        if let Some(ns) = self.namespace.clone() {
                            ctx.send(
                                Addr::Rdv(rdv),
                                Msg::RegisterNamespace {
                                    record: ns,
                                    remote: self.peer_id,
                                },
                            );
                            self.retry_generation += 1;
                            ctx.timer(
                                ctx.now + 300,
                                Timer::RegisterRetry {
                                    incarnation: self.incarnation,
                                    generation: self.retry_generation,
                                },
                            );
                        }
                    }
                    // Refused for good: resending the same record cannot help.
                    Err(_) => {
                        self.acked.insert(rdv, seq);
                    }
                }
            }
            AckKind::Garbage => {}
        }
    }

    fn retry(&mut self, ctx: &mut Ctx<'_>) {
        let Some(record) = self.record.clone() else {
            return;
        };
        if record.expires_at_ms <= ctx.now {
            return;
        }
        let missing: Vec<u32> = self
            .replicas
            .iter()
            .copied()
            .filter(|r| self.acked.get(r) != Some(&record.seq))
            .collect();
        if missing.is_empty() || self.retry_attempt >= 30 {
            return;
        }
        for r in missing {
            ctx.send(
                Addr::Rdv(r),
                Msg::RegisterPeer {
                    record: record.clone(),
                    remote: self.peer_id,
                },
            );
        }
        self.retry_attempt += 1;
        let backoff = (3_000u64 << self.retry_attempt.min(3)).min(12_000);
        ctx.timer(
            ctx.now + backoff,
            Timer::RegisterRetry {
                incarnation: self.incarnation,
                generation: self.retry_generation,
            },
        );
    }
}
