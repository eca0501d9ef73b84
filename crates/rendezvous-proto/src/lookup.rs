//! A client's discovery as sans-IO state machines: which request to send
//! next, and what an answer means. Every driver of a client (the `rdht
//! discover` CLI, the embeddable client `NetworkBehaviour`, a test) runs
//! these, so paging, handover following and verification have one
//! implementation.
//!
//! A lookup hands out one [`Request`] at a time and takes the node's
//! [`Response`] to it ([`QuorumLookup::handle_response`],
//! [`KindLookup::handle_response`]), which verifies what was served
//! (`now_ms` and the RNG are inputs) and says what comes next: another
//! request to the same node, or the result. Transport failures and
//! timeouts are the driver's; a lookup sees only answers.

use rand_core::RngCore;

use crate::client::{
    discover_answer_may_continue, verify_discover_answer, verify_namespaces_answer, ChainError,
    HandoverChain, RejectedNamespace, VerifiedAnswer,
};
use crate::error::StatusCode;
use crate::limits::Limits;
use crate::messages::{Cookie, Request, Response};
use crate::records::QuorumKey;

/// Most pages one quorum's discovery follows. A node cuts an answer to fit
/// one frame and hands a cookie for the rest; a 1,024-member namespace
/// takes a few pages at most, and the cap stops a node that pages
/// forever.
pub const MAX_DISCOVER_PAGES: usize = 64;

/// Why a lookup ended without an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// The node refused the request.
    #[error("refused: {0}")]
    Rejected(StatusCode),
    /// The namespace record served does not verify.
    #[error("the rendezvous served a namespace record that does not verify: {0}")]
    Unverified(StatusCode),
    /// The key asked for is retired and this lookup does not follow
    /// handovers: the node's handover (not verified).
    #[error("the quorum key was handed over to {}", .0.new_quorum_key)]
    HandedOver(Box<crate::handover::HandoverRecord>),
    /// A handover could not be followed (forged, expired, a loop, a chain
    /// over the bound).
    #[error("handover not followed: {0}")]
    Chain(#[from] ChainError),
    /// The node answered with a response of another kind (its name).
    #[error("unexpected answer: {0}")]
    Unexpected(&'static str),
}

/// What a lookup wants after an answer.
// One step per answer, moved once: boxing the request buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Step<T> {
    /// Send this request to the same node and hand its answer back.
    Send(Request),
    /// The lookup is over.
    Done(Result<T, LookupError>),
}

/// Runs `step` on an answer unless the lookup has ended (then the answer
/// is refused as unexpected), and marks the lookup ended when the step
/// ends it: the rule both kinds of lookup share.
fn once_done<L, T>(
    lookup: &mut L,
    done: fn(&mut L) -> &mut bool,
    response: Response,
    step: impl FnOnce(&mut L, Response) -> Step<T>,
) -> Step<T> {
    if *done(lookup) {
        return Step::Done(Err(LookupError::Unexpected(response.name())));
    }
    let outcome = step(lookup, response);
    *done(lookup) = matches!(outcome, Step::Done(_));
    outcome
}

/// A quorum found by a [`QuorumLookup`].
#[derive(Debug, Clone)]
pub struct Found {
    /// The verified answer, every page merged (each member once, its
    /// highest seq, never two epochs).
    pub answer: VerifiedAnswer,
    /// The handovers followed to reach it, each verified under the key it
    /// retires (empty when the key asked for is not retired).
    pub chain: HandoverChain,
}

/// The discovery of one quorum's members: `Discover` pages until the node
/// has nothing more, and, if asked to, the handovers of a retired key
/// (PROTOCOL.md 15.5).
#[derive(Debug, Clone)]
pub struct QuorumLookup {
    chain: HandoverChain,
    follow_handovers: bool,
    merged: Option<VerifiedAnswer>,
    pages: usize,
    max_pages: usize,
    done: bool,
}

impl QuorumLookup {
    /// A lookup of `quorum_key` and its first request. With
    /// `follow_handovers`, a retired key's handover is verified and its
    /// new key looked up in turn; without, it ends the lookup
    /// ([`LookupError::HandedOver`]).
    pub fn new(quorum_key: QuorumKey, follow_handovers: bool) -> (Self, Request) {
        Self::with_max_pages(quorum_key, follow_handovers, MAX_DISCOVER_PAGES)
    }

    /// [`QuorumLookup::new`] following at most `max_pages` pages per key.
    pub fn with_max_pages(
        quorum_key: QuorumKey,
        follow_handovers: bool,
        max_pages: usize,
    ) -> (Self, Request) {
        let lookup = Self {
            chain: HandoverChain::new(quorum_key),
            follow_handovers,
            merged: None,
            pages: 0,
            max_pages: max_pages.max(1),
            done: false,
        };
        let first = lookup.page_request(None);
        (lookup, first)
    }

    /// The key being looked up now (the last one a handover led to).
    pub fn current(&self) -> QuorumKey {
        self.chain.current()
    }

    fn page_request(&self, cookie: Option<Cookie>) -> Request {
        Request::Discover {
            quorum_key: self.chain.current(),
            limit: 0,
            cookie,
        }
    }

    /// Takes the node's answer to the last request. Once the lookup is
    /// done, further answers are refused as unexpected.
    pub fn handle_response<R: RngCore>(
        &mut self,
        response: Response,
        now_ms: u64,
        limits: &Limits,
        rng: &mut R,
    ) -> Step<Found> {
        once_done(
            self,
            |l| &mut l.done,
            response,
            |l, r| l.step(r, now_ms, limits, rng),
        )
    }

    fn step<R: RngCore>(
        &mut self,
        response: Response,
        now_ms: u64,
        limits: &Limits,
        rng: &mut R,
    ) -> Step<Found> {
        let answer = match response {
            Response::Discovered(answer) => answer,
            Response::Rejected(code) => return Step::Done(Err(LookupError::Rejected(code))),
            Response::HandedOver(record) if !self.follow_handovers => {
                return Step::Done(Err(LookupError::HandedOver(Box::new(record))))
            }
            Response::HandedOver(record) => {
                if let Err(e) = self.chain.follow(&record, now_ms) {
                    return Step::Done(Err(e.into()));
                }
                // A new key: its pages start afresh.
                self.merged = None;
                self.pages = 0;
                return Step::Send(self.page_request(None));
            }
            other => return Step::Done(Err(LookupError::Unexpected(other.name()))),
        };
        let more = discover_answer_may_continue(&answer);
        let page = match verify_discover_answer(&answer, &self.chain.current(), now_ms, limits, rng)
        {
            Ok(page) => page,
            Err(code) => return Step::Done(Err(LookupError::Unverified(code))),
        };
        let cookie = page.cookie.clone();
        // Pages never mix epochs: if the node moved to a new epoch between
        // two pages, `absorb` keeps only the later epoch's peers.
        self.merged = Some(match self.merged.take() {
            None => page,
            Some(mut all) => {
                all.absorb(page);
                all
            }
        });
        self.pages += 1;
        if more && self.pages < self.max_pages {
            return Step::Send(self.page_request(Some(cookie)));
        }
        match self.merged.take() {
            Some(answer) => Step::Done(Ok(Found {
                answer,
                chain: self.chain.clone(),
            })),
            None => Step::Done(Err(LookupError::Rejected(StatusCode::Internal))),
        }
    }
}

/// What a [`KindLookup`] found.
#[derive(Debug, Clone, Default)]
pub struct KindFound {
    /// Each namespace of the kind that verified, with its members, in
    /// ascending quorum key order.
    pub answers: Vec<VerifiedAnswer>,
    /// Namespace records served for the kind that did not verify.
    pub rejected: Vec<RejectedNamespace>,
    /// Namespaces whose own lookup failed, and why.
    pub failed: Vec<(QuorumKey, LookupError)>,
}

/// The discovery of every quorum of a kind: `DiscoverKind` for the
/// namespace records (each verified), then a [`QuorumLookup`] of each
/// (without following handovers: a kind lists current namespaces).
#[derive(Debug, Clone)]
pub struct KindLookup {
    kind: String,
    listed: bool,
    queue: std::collections::VecDeque<QuorumKey>,
    current: Option<QuorumLookup>,
    found: KindFound,
    done: bool,
}

impl KindLookup {
    /// A lookup of the namespaces of `kind` and its first request.
    pub fn new(kind: &str) -> (Self, Request) {
        let lookup = Self {
            kind: kind.to_owned(),
            listed: false,
            queue: Default::default(),
            current: None,
            found: KindFound::default(),
            done: false,
        };
        let first = Request::DiscoverKind {
            kind: kind.to_owned(),
            limit: 0,
            cookie: None,
        };
        (lookup, first)
    }

    /// Takes the node's answer to the last request.
    pub fn handle_response<R: RngCore>(
        &mut self,
        response: Response,
        now_ms: u64,
        limits: &Limits,
        rng: &mut R,
    ) -> Step<KindFound> {
        once_done(
            self,
            |l| &mut l.done,
            response,
            |l, r| l.step(r, now_ms, limits, rng),
        )
    }

    fn step<R: RngCore>(
        &mut self,
        response: Response,
        now_ms: u64,
        limits: &Limits,
        rng: &mut R,
    ) -> Step<KindFound> {
        if !self.listed {
            let namespaces = match response {
                Response::Namespaces { namespaces, .. } => namespaces,
                Response::Rejected(code) => return Step::Done(Err(LookupError::Rejected(code))),
                other => return Step::Done(Err(LookupError::Unexpected(other.name()))),
            };
            self.listed = true;
            let verified = verify_namespaces_answer(&namespaces, &self.kind, now_ms, limits, rng);
            self.found.rejected = verified.rejected;
            self.queue = verified
                .namespaces
                .iter()
                .map(|ns| ns.quorum_key())
                .collect();
            return self.next_namespace();
        }
        let Some(current) = self.current.as_mut() else {
            return Step::Done(Err(LookupError::Unexpected(response.name())));
        };
        match current.handle_response(response, now_ms, limits, rng) {
            Step::Send(request) => Step::Send(request),
            Step::Done(Ok(found)) => {
                self.found.answers.push(found.answer);
                self.next_namespace()
            }
            Step::Done(Err(e)) => {
                let key = current.current();
                self.found.failed.push((key, e));
                self.next_namespace()
            }
        }
    }

    fn next_namespace(&mut self) -> Step<KindFound> {
        match self.queue.pop_front() {
            Some(key) => {
                let (lookup, request) = QuorumLookup::new(key, false);
                self.current = Some(lookup);
                Step::Send(request)
            }
            None => {
                self.current = None;
                Step::Done(Ok(std::mem::take(&mut self.found)))
            }
        }
    }
}

/// What a client makes of the answers of the several nodes it asks for
/// one quorum, one after the other (PROTOCOL.md 6.3): a node whose
/// answer verified entirely ends the search; one that also served
/// records that do not verify lied, so what verified of it is kept and
/// the next node is asked; when no node is left, everything that
/// verified anywhere is the answer. Every client driver (the embeddable
/// behaviour, the simulator's clients) runs this, so the rule has one
/// implementation.
#[derive(Debug, Clone, Default)]
pub struct Gathered {
    merged: Option<Found>,
}

/// What to do after a node's verified answer ([`Gathered::add`]).
#[derive(Debug)]
pub enum Gather {
    /// The node's answer verified entirely: here is everything verified
    /// so far, this answer merged in. Stop asking.
    Done(Box<Found>),
    /// The node also served records that do not verify (their codes):
    /// what did verify is kept; ask another node.
    Forged(Vec<StatusCode>),
}

impl Gathered {
    /// Nothing gathered yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one node's result of a [`QuorumLookup`]. Records served that
    /// do not verify, other than stale sequence numbers (an honest node
    /// may lag), make the node a liar.
    pub fn add(&mut self, found: Found) -> Gather {
        let forged: Vec<StatusCode> = found.answer.forged_codes().collect();
        let merged = match self.merged.take() {
            None => found,
            Some(mut all) => {
                all.answer.absorb(found.answer);
                all
            }
        };
        if forged.is_empty() {
            Gather::Done(Box::new(merged))
        } else {
            self.merged = Some(merged);
            Gather::Forged(forged)
        }
    }

    /// What verified so far, merged.
    pub fn answer(&self) -> Option<&VerifiedAnswer> {
        self.merged.as_ref().map(|f| &f.answer)
    }

    /// No node is left to ask: everything that verified anywhere, if
    /// anything did (the forgeries are in its `answer.rejected`).
    pub fn finish(self) -> Option<Found> {
        self.merged
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{DiscoverAnswer, DiscoveredPeer, MAX_DISCOVER_LIMIT};
    use crate::testkit::TestQuorum;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    const NOW: u64 = 1_700_000_000_000;
    const LATER: u64 = NOW + 3_600_000;

    /// A page of `members`' records, each repeated `copies` times (a
    /// page of `MAX_DISCOVER_LIMIT` records may have been cut short).
    fn page(q: &TestQuorum, members: &[u32], copies: usize, cookie: &[u8]) -> Response {
        let mut response = answer(q, members, cookie);
        if let Response::Discovered(a) = &mut response {
            a.peers = a
                .peers
                .iter()
                .cycle()
                .take(a.peers.len() * copies)
                .cloned()
                .collect();
        }
        response
    }

    fn answer(q: &TestQuorum, members: &[u32], cookie: &[u8]) -> Response {
        Response::Discovered(DiscoverAnswer {
            namespace: q.namespace(0, Some("demo"), NOW, LATER),
            peers: members
                .iter()
                .map(|&i| DiscoveredPeer {
                    record: q.peer(i, 0, 1, LATER),
                    last_seen_ms: None,
                })
                .collect(),
            cookie: Cookie(cookie.to_vec()),
        })
    }

    fn quorum(seed: u64) -> TestQuorum {
        TestQuorum::deal(4, 3, &mut ChaCha20Rng::seed_from_u64(seed))
    }

    #[test]
    fn pages_are_followed_and_merged() {
        let q = quorum(1);
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let (mut lookup, first) = QuorumLookup::new(q.quorum_key(), true);
        assert!(matches!(first, Request::Discover { cookie: None, .. }));
        // A full page (it may have been cut short) asks for the next page
        // with its cookie.
        let full = MAX_DISCOVER_LIMIT as usize / 2;
        let step = lookup.handle_response(
            page(&q, &[1, 2], full, b"c1"),
            NOW,
            &Limits::DEFAULT,
            &mut rng,
        );
        match step {
            Step::Send(Request::Discover {
                cookie: Some(c), ..
            }) => assert_eq!(c.0, b"c1"),
            other => panic!("expected the next page, got {other:?}"),
        }
        // A short page is the whole rest: every member once.
        let step =
            lookup.handle_response(answer(&q, &[3, 4], b"c2"), NOW, &Limits::DEFAULT, &mut rng);
        let Step::Done(Ok(found)) = step else {
            panic!("expected the end, got {step:?}");
        };
        let indices: Vec<u32> = found
            .answer
            .peers
            .iter()
            .map(|p| p.record.index())
            .collect();
        assert_eq!(indices, vec![1, 2, 3, 4]);
        assert!(found.chain.is_empty());
        // Done means done.
        assert!(matches!(
            lookup.handle_response(answer(&q, &[1], b""), NOW, &Limits::DEFAULT, &mut rng),
            Step::Done(Err(LookupError::Unexpected(_)))
        ));
    }

    #[test]
    fn a_forged_namespace_ends_the_lookup_unverified() {
        let q = quorum(3);
        let other = quorum(4);
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let (mut lookup, _) = QuorumLookup::new(q.quorum_key(), true);
        let mut forged = q.namespace(0, None, NOW, LATER);
        forged.signature = other.threshold_sign(&forged.signing_bytes());
        let response = Response::Discovered(DiscoverAnswer {
            namespace: forged,
            peers: vec![],
            cookie: Cookie::default(),
        });
        let step = lookup.handle_response(response, NOW, &Limits::DEFAULT, &mut rng);
        assert!(matches!(
            step,
            Step::Done(Err(LookupError::Unverified(
                StatusCode::InvalidNamespaceSignature
            )))
        ));
    }

    #[test]
    fn handovers_are_followed_only_when_asked() {
        let old = quorum(6);
        let new = quorum(7);
        let mut rng = ChaCha20Rng::seed_from_u64(8);
        let handover = old.handover(new.quorum_key(), NOW, LATER);

        let (mut strict, _) = QuorumLookup::new(old.quorum_key(), false);
        assert!(matches!(
            strict.handle_response(
                Response::HandedOver(handover.clone()),
                NOW,
                &Limits::DEFAULT,
                &mut rng
            ),
            Step::Done(Err(LookupError::HandedOver(_)))
        ));

        let (mut following, _) = QuorumLookup::new(old.quorum_key(), true);
        let step = following.handle_response(
            Response::HandedOver(handover),
            NOW,
            &Limits::DEFAULT,
            &mut rng,
        );
        match step {
            Step::Send(Request::Discover {
                quorum_key,
                cookie: None,
                ..
            }) => {
                assert_eq!(quorum_key, new.quorum_key())
            }
            other => panic!("expected a discover of the new key, got {other:?}"),
        }
        let step = following.handle_response(
            answer(&new, &[1, 2, 3], b""),
            NOW,
            &Limits::DEFAULT,
            &mut rng,
        );
        let Step::Done(Ok(found)) = step else {
            panic!("expected the new key's answer, got {step:?}");
        };
        assert_eq!(
            found.chain.hops(),
            vec![(old.quorum_key(), new.quorum_key())]
        );
        assert_eq!(found.answer.namespace.quorum_key(), new.quorum_key());

        // A handover signed by another key is refused, not followed.
        let (mut fooled, _) = QuorumLookup::new(old.quorum_key(), true);
        let forged = new.handover(old.quorum_key(), NOW, LATER);
        assert!(matches!(
            fooled.handle_response(
                Response::HandedOver(forged),
                NOW,
                &Limits::DEFAULT,
                &mut rng
            ),
            Step::Done(Err(LookupError::Chain(ChainError::WrongKey { .. })))
        ));
    }

    #[test]
    fn a_node_that_pages_forever_is_cut_off() {
        let q = quorum(9);
        let mut rng = ChaCha20Rng::seed_from_u64(10);
        let (mut lookup, _) = QuorumLookup::with_max_pages(q.quorum_key(), false, 3);
        let full = page(&q, &[1], MAX_DISCOVER_LIMIT as usize, b"again");
        let mut pages = 0;
        loop {
            pages += 1;
            match lookup.handle_response(full.clone(), NOW, &Limits::DEFAULT, &mut rng) {
                Step::Send(_) => assert!(pages < 3, "still paging after the cap"),
                Step::Done(result) => {
                    assert!(result.is_ok());
                    break;
                }
            }
        }
        assert_eq!(pages, 3);
    }

    #[test]
    fn a_kind_lookup_discovers_each_verified_namespace() {
        let a = quorum(11);
        let b = quorum(12);
        let outsider = quorum(13);
        let mut rng = ChaCha20Rng::seed_from_u64(14);
        let (mut lookup, first) = KindLookup::new("demo");
        assert!(matches!(first, Request::DiscoverKind { .. }));
        let mut forged = outsider.namespace(0, Some("demo"), NOW, LATER);
        forged.signature = a.threshold_sign(&forged.signing_bytes());
        let listing = Response::Namespaces {
            namespaces: vec![
                a.namespace(0, Some("demo"), NOW, LATER),
                forged,
                b.namespace(0, Some("demo"), NOW, LATER),
            ],
            cookie: Cookie::default(),
        };
        let mut step = lookup.handle_response(listing, NOW, &Limits::DEFAULT, &mut rng);
        let mut asked = Vec::new();
        let found = loop {
            match step {
                Step::Send(Request::Discover { quorum_key, .. }) => {
                    asked.push(quorum_key);
                    let response = if quorum_key == a.quorum_key() {
                        answer(&a, &[1, 2, 3, 4], b"")
                    } else {
                        Response::Rejected(StatusCode::UnknownNamespace)
                    };
                    step = lookup.handle_response(response, NOW, &Limits::DEFAULT, &mut rng);
                }
                Step::Send(other) => panic!("unexpected request {other:?}"),
                Step::Done(result) => break result.expect("a kind lookup ends with what it found"),
            }
        };
        let mut expected = vec![a.quorum_key(), b.quorum_key()];
        expected.sort();
        assert_eq!(
            asked, expected,
            "each verified namespace asked once, in key order"
        );
        assert_eq!(found.answers.len(), 1);
        assert_eq!(found.answers[0].peers.len(), 4);
        assert_eq!(found.rejected.len(), 1, "the forged record is reported");
        assert_eq!(
            found.failed,
            vec![(
                b.quorum_key(),
                LookupError::Rejected(StatusCode::UnknownNamespace)
            )]
        );
    }

    #[test]
    fn a_liar_is_merged_and_passed_over_and_a_clean_answer_ends_the_search() {
        let q = quorum(9);
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let limits = Limits::default();
        let found = |response: Response, rng: &mut ChaCha20Rng| {
            let (mut lookup, _) = QuorumLookup::new(q.quorum_key(), false);
            match lookup.handle_response(response, NOW, &limits, rng) {
                Step::Done(Ok(found)) => found,
                other => panic!("unexpected {other:?}"),
            }
        };
        // Node A serves member 1 and a forged record of member 2.
        let forged = crate::testkit::with_seq_unsigned(q.peer(2, 0, 5, LATER), 6);
        let mut liar = answer(&q, &[1], b"");
        if let Response::Discovered(a) = &mut liar {
            a.peers.push(DiscoveredPeer {
                record: forged,
                last_seen_ms: None,
            });
        }
        let mut gathered = Gathered::new();
        match gathered.add(found(liar, &mut rng)) {
            Gather::Forged(codes) => assert_eq!(codes, vec![StatusCode::InvalidEnvelopeSignature]),
            Gather::Done(_) => panic!("a forged record was not noticed"),
        }
        assert_eq!(gathered.answer().map(|a| a.peers.len()), Some(1));
        // Node B answers cleanly with member 3: both are reported.
        match gathered.add(found(answer(&q, &[3], b""), &mut rng)) {
            Gather::Done(all) => {
                let mut indices: Vec<u32> =
                    all.answer.peers.iter().map(|p| p.record.index()).collect();
                indices.sort_unstable();
                assert_eq!(indices, vec![1, 3]);
            }
            Gather::Forged(codes) => panic!("a clean answer was called forged: {codes:?}"),
        }
        // Only liars: what verified is still the answer.
        let mut only_liars = Gathered::new();
        let mut liar = answer(&q, &[1], b"");
        if let Response::Discovered(a) = &mut liar {
            a.peers.push(DiscoveredPeer {
                record: crate::testkit::with_seq_unsigned(q.peer(2, 0, 5, LATER), 6),
                last_seen_ms: None,
            });
        }
        assert!(matches!(
            only_liars.add(found(liar, &mut rng)),
            Gather::Forged(_)
        ));
        let finished = only_liars.finish().expect("what verified");
        assert_eq!(finished.answer.peers.len(), 1);
        assert!(!finished.answer.rejected.is_empty());
    }
}
