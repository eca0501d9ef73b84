//! Driving a key rotation (`Start::Rotate`, PROTOCOL.md 15.6): the new
//! members run a fresh DKG (`dkg_run.rs`) and sign the new key's
//! namespace record (`namespace.rs`); the member that combined that
//! record (the coordinator) then asks the previous members for their
//! shares over a handover (old key -> new key, `Request::SignHandover`),
//! combines `previous_threshold` of them, checks the result under the old
//! key and publishes it at every rendezvous node
//! (`Request::PublishHandover`).
//!
//! A previous member answers `SignHandover` with its previous share
//! ([`crate::cosign::check_handover_request`] first). One that is only a
//! previous member (index 0) does nothing else: once it has given its
//! share it unregisters under its previous index and stops.

use dkg::{combine_signatures, SignatureShare};
use rendezvous_proto::handover::MAX_HANDOVER_TTL_MS;
use rendezvous_proto::HandoverRecord;

use crate::cosign::check_handover_request;

use super::*;

/// What a member that takes part in a key rotation starts with.
#[derive(Debug, Clone)]
pub struct RotateStart {
    /// The previous key's members, index order.
    pub previous_members: Vec<PeerId>,
    /// The previous key's threshold.
    pub previous_threshold: u32,
    /// This node's key share of the previous key, if it was a member: it
    /// co-signs the handover with it.
    pub previous_share: Option<KeyShare>,
    /// The previous quorum key, for a new member without a previous share
    /// (it names the key in the handover if it coordinates). A member
    /// with a previous share takes the key from it.
    pub previous_quorum_key: Option<QuorumKey>,
    /// The fresh DKG, for a member of the new quorum (`None` for a member
    /// that is only a previous one: `MemberConfig::index` 0).
    pub dkg: Option<DkgConfig>,
}

/// A key rotation under way.
pub(super) struct Rotation {
    pub(super) previous_members: Vec<PeerId>,
    pub(super) previous_threshold: u32,
    pub(super) previous_share: Option<KeyShare>,
    previous_quorum_key: Option<QuorumKey>,
    /// The coordinator's collection of handover shares, once it started.
    collecting: Option<HandoverCollection>,
}

/// A coordinator's collection of the previous members' shares over one
/// handover.
struct HandoverCollection {
    /// The handover (its signature filled in once combined).
    handover: HandoverRecord,
    /// The new key's signed namespace record, sent along.
    namespace: NamespaceRecord,
    message: Vec<u8>,
    /// Shares in, by previous index.
    shares: BTreeMap<u32, dkg::Signature>,
    /// Attempts per previous index (bounds the retries).
    attempts: BTreeMap<u32, u32>,
    /// Subsets of shares already combined without success.
    tried: BTreeSet<Vec<u32>>,
    /// Combined and verified.
    signed: bool,
    /// Publication attempts per rendezvous node.
    publish_attempts: BTreeMap<usize, u32>,
}

/// A previous member that refused or did not answer is asked again after
/// this, at most [`MAX_HANDOVER_ASKS`] times.
const HANDOVER_RETRY_MS: u64 = 500;
const MAX_HANDOVER_ASKS: u32 = 120;
/// A handover expires this long before the protocol's maximum (30 days),
/// so that clock skew between the coordinator and the nodes does not make
/// it `TtlTooLong`.
pub const HANDOVER_TTL_MARGIN_MS: u64 = 3_600_000;
/// A refused or unanswered publication is tried again after this, at most
/// [`MAX_PUBLISH_ATTEMPTS`] times per node.
const PUBLISH_RETRY_MS: u64 = 1_000;
const MAX_PUBLISH_ATTEMPTS: u32 = 10;
/// Most subsets of `previous_threshold` shares a coordinator without the
/// old key set combines before it waits for more shares.
const MAX_SUBSETS: usize = 64;

impl Rotation {
    pub(super) fn new(start: RotateStart) -> Self {
        Self {
            previous_members: start.previous_members,
            previous_threshold: start.previous_threshold,
            previous_share: start.previous_share,
            previous_quorum_key: start.previous_quorum_key,
            collecting: None,
        }
    }
}

impl Member {
    /// The previous key, if this member knows it (it holds a previous
    /// share).
    fn previous_key(&self) -> Option<QuorumKey> {
        let rotation = self.rotation.as_ref()?;
        match rotation.previous_share.as_ref() {
            Some(share) => Some(QuorumKey::from(share.quorum_key())),
            None => rotation.previous_quorum_key,
        }
    }

    /// Called when this member combined a namespace record: the first one
    /// of the new key starts the handover's collection.
    pub(super) fn after_namespace_signed(&mut self, now: u64, record: &NamespaceRecord) {
        let Some(rotation) = self.rotation.as_ref() else {
            return;
        };
        // Only for the new key's first record: a member that coordinates
        // a renewal adopted a record of the new key before.
        if rotation.collecting.is_some() || self.namespace.is_some() {
            return;
        }
        let Some(old_key) = self.previous_key() else {
            // A coordinator that was not a previous member and was not
            // told the old key cannot name it.
            self.events.push_back(Event::HandoverUnknownOldKey);
            return;
        };
        let Some(new_key) = record.commitments.first().map(|c| QuorumKey(*c)) else {
            return;
        };
        let handover = HandoverRecord {
            old_quorum_key: old_key,
            new_quorum_key: new_key,
            issued_at_ms: now,
            expires_at_ms: now + MAX_HANDOVER_TTL_MS - HANDOVER_TTL_MARGIN_MS,
            signature: [0; rendezvous_proto::records::G2_BYTES],
        };
        let message = handover.signing_bytes();
        let mut shares = BTreeMap::new();
        let own = rotation
            .previous_share
            .as_ref()
            .map(|s| s.secret.sign(&message));
        if let Some(own) = own {
            shares.insert(own.index, own.signature);
        }
        let previous_members = rotation.previous_members.clone();
        let own_index = own.map(|s| s.index);
        if let Some(rotation) = self.rotation.as_mut() {
            rotation.collecting = Some(HandoverCollection {
                handover,
                namespace: record.clone(),
                message,
                shares,
                attempts: BTreeMap::new(),
                tried: BTreeSet::new(),
                signed: false,
                publish_attempts: BTreeMap::new(),
            });
        }
        for index in 1..=previous_members.len() as u32 {
            if Some(index) != own_index {
                self.ask_handover_share(index);
            }
        }
        self.try_combine_handover(now);
    }

    /// Sends `SignHandover` to previous member `index`.
    fn ask_handover_share(&mut self, index: u32) {
        let Some(rotation) = self.rotation.as_mut() else {
            return;
        };
        let Some(peer) = rotation.previous_members.get(index as usize - 1).copied() else {
            return;
        };
        let Some(c) = rotation.collecting.as_mut() else {
            return;
        };
        if c.signed || c.shares.contains_key(&index) {
            return;
        }
        let asks = c.attempts.entry(index).or_insert(0);
        if *asks >= MAX_HANDOVER_ASKS {
            return;
        }
        *asks += 1;
        let request = Request::SignHandover {
            handover: c.handover.clone(),
            namespace: c.namespace.clone(),
        };
        let to = match self.config.quorum.index_of(&peer) {
            Some(j) => Peer::Member(j),
            None => Peer::Node(peer),
        };
        self.send(to, request, Pending::HandoverShare { previous: index });
    }

    /// A previous member's answer to `SignHandover`.
    pub(super) fn on_handover_share(
        &mut self,
        now: u64,
        previous: u32,
        response: Result<Response, TransportError>,
    ) {
        let Some(c) = self.rotation.as_mut().and_then(|r| r.collecting.as_mut()) else {
            return;
        };
        if c.signed {
            return;
        }
        match response {
            Ok(Response::NamespaceShare { index, signature }) if index == previous => {
                match dkg::Signature::from_bytes(&signature) {
                    Ok(signature) => {
                        c.shares.insert(index, signature);
                        self.try_combine_handover(now);
                    }
                    Err(_) => self.events.push_back(Event::InvalidShare { member: index }),
                }
            }
            _ => self.set_timer(now + HANDOVER_RETRY_MS, Timer::HandoverRetry { previous }),
        }
    }

    /// A timer: ask previous member `previous` again.
    pub(super) fn retry_handover_share(&mut self, previous: u32) {
        self.ask_handover_share(previous);
    }

    /// Once `previous_threshold` shares are in: combines them and checks
    /// the result under the old key. With the old key set (a coordinator
    /// that holds a previous share), every share is checked on its own
    /// first and bad ones are dropped; without it, subsets are combined
    /// until one verifies (or more shares are awaited).
    fn try_combine_handover(&mut self, now: u64) {
        let Some(rotation) = self.rotation.as_mut() else {
            return;
        };
        let threshold = rotation.previous_threshold;
        let n = rotation.previous_members.len() as u32;
        let key_set = rotation
            .previous_share
            .as_ref()
            .map(|s| s.public_key_set.clone());
        let Some(c) = rotation.collecting.as_mut() else {
            return;
        };
        if c.signed || (c.shares.len() as u32) < threshold {
            return;
        }
        let Ok(old_key) = dkg::PublicKey::from_bytes(&c.handover.old_quorum_key.0) else {
            return;
        };
        let mut bad = Vec::new();
        if let Some(set) = &key_set {
            let message = c.message.clone();
            c.shares.retain(|index, signature| {
                let ok = set.public_key_share(*index).verify(&message, signature);
                if !ok {
                    bad.push(*index);
                }
                ok
            });
        }
        let indices: Vec<u32> = c.shares.keys().copied().collect();
        let mut signature = None;
        for subset in subsets(&indices, threshold as usize).take(MAX_SUBSETS) {
            if c.tried.contains(&subset) {
                continue;
            }
            let shares: Vec<SignatureShare> = subset
                .iter()
                .filter_map(|i| {
                    c.shares.get(i).map(|s| SignatureShare {
                        index: *i,
                        signature: *s,
                    })
                })
                .collect();
            if let Ok(sig) = combine_signatures(threshold, n, &shares) {
                if old_key.verify(&c.message, &sig) {
                    signature = Some(sig);
                    break;
                }
            }
            c.tried.insert(subset);
        }
        for member in bad {
            self.events.push_back(Event::InvalidShare { member });
            self.set_timer(
                now + HANDOVER_RETRY_MS,
                Timer::HandoverRetry { previous: member },
            );
        }
        let Some(signature) = signature else {
            return;
        };
        let Some(c) = self.rotation.as_mut().and_then(|r| r.collecting.as_mut()) else {
            return;
        };
        c.signed = true;
        c.handover.signature = signature.to_bytes();
        let handover = c.handover.clone();
        self.events
            .push_back(Event::HandoverSigned(handover.clone()));
        for rendezvous in 0..self.slots.len() {
            self.publish_handover(rendezvous);
        }
    }

    /// Sends the signed handover to rendezvous node `rendezvous`.
    fn publish_handover(&mut self, rendezvous: usize) {
        let Some(c) = self.rotation.as_mut().and_then(|r| r.collecting.as_mut()) else {
            return;
        };
        if !c.signed {
            return;
        }
        let attempts = c.publish_attempts.entry(rendezvous).or_insert(0);
        if *attempts >= MAX_PUBLISH_ATTEMPTS {
            return;
        }
        *attempts += 1;
        let handover = c.handover.clone();
        self.send(
            Peer::Rendezvous(rendezvous),
            Request::PublishHandover(handover),
            Pending::PublishHandover { rendezvous },
        );
    }

    /// A rendezvous node's answer to `PublishHandover`.
    pub(super) fn on_publish_answer(
        &mut self,
        now: u64,
        rendezvous: usize,
        response: Result<Response, TransportError>,
    ) {
        match response {
            Ok(Response::Registered { .. }) => {
                self.events
                    .push_back(Event::HandoverPublished { rendezvous });
            }
            // It holds this handover (or a later one) already.
            Ok(Response::Rejected(StatusCode::StaleHandover)) => {
                self.events
                    .push_back(Event::HandoverPublished { rendezvous });
            }
            _ => self.set_timer(now + PUBLISH_RETRY_MS, Timer::PublishRetry { rendezvous }),
        }
    }

    /// A timer: publish at `rendezvous` again.
    pub(super) fn retry_publish(&mut self, rendezvous: usize) {
        self.publish_handover(rendezvous);
    }

    /// A `SignHandover` from fellow member `from`: a previous member
    /// checks it and answers with its previous share's signature share
    /// over the handover; one that is only a previous member then
    /// unregisters and stops.
    pub(super) fn on_sign_handover(
        &mut self,
        now: u64,
        from: u32,
        handover: &HandoverRecord,
        namespace: &NamespaceRecord,
    ) -> Response {
        let Some(share) = self
            .rotation
            .as_ref()
            .and_then(|r| r.previous_share.as_ref())
        else {
            return Response::Rejected(StatusCode::NotAuthorized);
        };
        if let Err(refusal) = check_handover_request(
            handover,
            namespace,
            share,
            &self.config.quorum,
            self.config.epoch,
            now,
            &self.config.limits,
        ) {
            let code = refusal.code();
            self.events
                .push_back(Event::SignRefused { member: from, code });
            return Response::Rejected(code);
        }
        let signature = share.secret.sign(&handover.signing_bytes());
        let previous_index = signature.index;
        self.events
            .push_back(Event::HandoverCosigned { previous_index });
        if self.key_share.is_none() && self.dkg_config.is_none() && self.shutting_down.is_none() {
            // Only a previous member: its part is done.
            self.shutdown(now);
        }
        Response::NamespaceShare {
            index: signature.index,
            signature: signature.signature.to_bytes(),
        }
    }
}

/// The `k`-element subsets of `items`, in lexicographic order.
fn subsets(items: &[u32], k: usize) -> impl Iterator<Item = Vec<u32>> + '_ {
    let n = items.len();
    let mut positions: Option<Vec<usize>> = (k <= n && k > 0).then(|| (0..k).collect());
    std::iter::from_fn(move || {
        let current = positions.as_mut()?;
        let out: Vec<u32> = current.iter().map(|p| items[*p]).collect();
        // Advance.
        let mut i = k;
        loop {
            if i == 0 {
                positions = None;
                break;
            }
            i -= 1;
            if current[i] < n - k + i {
                current[i] += 1;
                for j in i + 1..k {
                    current[j] = current[j - 1] + 1;
                }
                break;
            }
        }
        Some(out)
    })
}

#[cfg(test)]
mod tests {
    use super::subsets;

    #[test]
    fn subsets_are_every_combination_once() {
        let all: Vec<Vec<u32>> = subsets(&[1, 2, 3, 4], 3).collect();
        assert_eq!(
            all,
            vec![vec![1, 2, 3], vec![1, 2, 4], vec![1, 3, 4], vec![2, 3, 4]]
        );
        assert_eq!(subsets(&[1, 2], 3).count(), 0);
        assert_eq!(subsets(&[5], 1).collect::<Vec<_>>(), vec![vec![5]]);
    }
}
