//! Wire messages: what clients, members and rendezvous nodes say to each
//! other. The codec (`codec.rs`) gives them their canonical, bounded
//! encoding; PROTOCOL.md specifies it.

use crate::error::StatusCode;
use crate::handover::HandoverRecord;
use crate::records::{NamespaceRecord, PeerRecord, QuorumKey, G2_BYTES};

/// Longest discover cookie, in bytes.
pub const MAX_COOKIE_BYTES: usize = 64;
/// Most records one discover answer may carry (servers cap `limit` to it).
pub const MAX_DISCOVER_LIMIT: u32 = 1024;
/// Most peer records one [`Request::RegisterPeers`] may carry.
pub const MAX_REGISTER_BATCH: usize = 256;

/// The outcome of one record of a [`Request::RegisterPeers`]: the TTL
/// granted (ms), or why it was refused.
pub type RegisterOutcome = Result<u64, StatusCode>;

/// An opaque paging cookie issued by a rendezvous node. Clients hand it back
/// unchanged to get only what they have not seen yet.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Cookie(pub Vec<u8>);

/// A request to a rendezvous node (or, for `Dkg`, `SignNamespace`,
/// `NamespaceReady` and `SignHandover`, to a fellow quorum member).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Create or update a namespace (threshold-signed by the quorum).
    RegisterNamespace(NamespaceRecord),
    /// Register or refresh one member (signed with its key share).
    RegisterPeer(PeerRecord),
    /// Remove member `index`'s record; only the record's own PeerId,
    /// authenticated by the connection, may do this.
    Unregister {
        /// The namespace.
        quorum_key: QuorumKey,
        /// The member index.
        index: u32,
    },
    /// The namespace record and its live peers.
    Discover {
        /// The namespace.
        quorum_key: QuorumKey,
        /// Most peer records to return (0 means the server's maximum).
        limit: u32,
        /// Return only what this cookie has not seen.
        cookie: Option<Cookie>,
    },
    /// Namespace records of one kind.
    DiscoverKind {
        /// The kind label.
        kind: String,
        /// Most namespace records to return (0 means the server's maximum).
        limit: u32,
        /// Return only what this cookie has not seen.
        cookie: Option<Cookie>,
    },
    /// A DKG message between quorum members (the `dkg` crate's encoding,
    /// carried opaquely).
    Dkg(Vec<u8>),
    /// Ask a fellow member for its signature share over a namespace record
    /// (the signature field is ignored).
    SignNamespace(NamespaceRecord),
    /// Register or refresh several peer records at once (1 to
    /// [`MAX_REGISTER_BATCH`]): each is judged on its own, exactly as a
    /// [`Request::RegisterPeer`] over the same connection would be (its
    /// PeerId must be the connection's), and answered by
    /// [`Response::RegisteredPeers`], one outcome per record, in order.
    RegisterPeers(Vec<PeerRecord>),
    /// Tell a fellow member that this threshold-signed namespace record is
    /// registered at the rendezvous nodes: it may register its own peer
    /// record at once (answered by [`Response::Accepted`]). The receiver
    /// checks the record describes its own quorum and verifies its
    /// signature before it uses it.
    NamespaceReady(NamespaceRecord),
    /// Publish a handover (key rotation): the old quorum key, with its
    /// threshold signature, names its successor. Anybody may send it: the
    /// signature is the authorization. Answered by
    /// [`Response::Registered`] (the handover is stored for `ttl_ms`) or
    /// [`Response::Rejected`].
    PublishHandover(HandoverRecord),
    /// Ask a member of the OLD quorum for its signature share over a
    /// handover's signing bytes (key rotation; the handover's signature
    /// field is ignored). `namespace` is the NEW key's threshold-signed
    /// namespace record: the member checks it verifies under
    /// `handover.new_quorum_key` and describes the quorum it was
    /// configured with before it signs. Answered by
    /// [`Response::NamespaceShare`] or [`Response::Rejected`].
    SignHandover {
        /// The handover to co-sign (old key -> new key).
        handover: HandoverRecord,
        /// The new key's signed namespace record.
        namespace: NamespaceRecord,
    },
}

/// One peer in a discover answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiscoveredPeer {
    /// The self-certifying record; clients verify it.
    pub record: PeerRecord,
    /// When the answering node last saw the peer alive (ms since the Unix
    /// epoch), if it has pinged it yet.
    pub last_seen_ms: Option<u64>,
}

/// The answer to [`Request::Discover`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiscoverAnswer {
    /// The namespace record (always included, so the answer can be
    /// verified on its own).
    pub namespace: NamespaceRecord,
    /// Live peer records not covered by the request's cookie.
    pub peers: Vec<DiscoveredPeer>,
    /// Cookie for the next page / the next poll.
    pub cookie: Cookie,
}

/// A response. Every response has a [`StatusCode`]: `Ok` for every variant
/// but `Rejected`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// A registration was accepted; the record is kept for `ttl_ms`.
    Registered {
        /// Milliseconds until the accepted record expires.
        ttl_ms: u64,
    },
    /// An unregistration was done (or there was nothing to remove).
    Unregistered,
    /// The answer to `Discover`.
    Discovered(DiscoverAnswer),
    /// The answer to `DiscoverKind`.
    Namespaces {
        /// Valid namespace records of the kind.
        namespaces: Vec<NamespaceRecord>,
        /// Cookie for the next page.
        cookie: Cookie,
    },
    /// A DKG message was taken.
    DkgAccepted,
    /// A member's signature share over the requested record: the
    /// namespace record of a [`Request::SignNamespace`], or the handover
    /// of a [`Request::SignHandover`] (over its signing bytes either way).
    NamespaceShare {
        /// The signer's member index.
        index: u32,
        /// Its signature share (compressed G2).
        signature: [u8; G2_BYTES],
    },
    /// The request was refused.
    Rejected(StatusCode),
    /// The answer to `RegisterPeers`: one outcome per record, in the
    /// request's order. One refused record never refuses the others.
    RegisteredPeers(Vec<RegisterOutcome>),
    /// A member-to-member notice ([`Request::NamespaceReady`]) was taken.
    Accepted,
    /// The answer to `Discover` for a retired quorum key: the handover
    /// the node holds for it, instead of a namespace. The client verifies
    /// it under the key it asked for and discovers the new key.
    HandedOver(HandoverRecord),
}

impl Response {
    /// The response's status code.
    pub fn status(&self) -> StatusCode {
        match self {
            Response::Rejected(code) => *code,
            _ => StatusCode::Ok,
        }
    }

    /// The variant's name, for logs and errors.
    pub fn name(&self) -> &'static str {
        match self {
            Response::Registered { .. } => "Registered",
            Response::Unregistered => "Unregistered",
            Response::Discovered(_) => "Discovered",
            Response::Namespaces { .. } => "Namespaces",
            Response::DkgAccepted => "DkgAccepted",
            Response::NamespaceShare { .. } => "NamespaceShare",
            Response::Rejected(_) => "Rejected",
            Response::RegisteredPeers(_) => "RegisteredPeers",
            Response::Accepted => "Accepted",
            Response::HandedOver(_) => "HandedOver",
        }
    }
}
