//! The standard `/rendezvous/1.0.0` DISCOVER, answered from the store
//! (PROTOCOL.md 16): which members, in which order, how a page is cut,
//! what the cookie says and what TTL each registration gets. The node
//! only translates protobuf to these types and back.
//!
//! - Namespaces: `<lowercase hex of the 48-byte quorum key>` (one
//!   quorum's members) and `kind:<kind>` (the members of every quorum of
//!   that kind). Anything else is `InvalidNamespace`; so is a DISCOVER
//!   without a namespace (rdht does not list everything it holds).
//! - Members: exactly those rdht's own discover serves (the namespace
//!   record is live, the record is unexpired, liveness has not found the
//!   PeerId unreachable), and only those whose registration carries a
//!   standard signed peer record (members of older software are skipped:
//!   a rendezvous cannot sign for them). Each answer is that record, as
//!   the member signed it, under the member's quorum's hex namespace,
//!   with its remaining lifetime in whole seconds as TTL.
//! - Order and cookies: by the store-wide version of each record (a
//!   refresh gets a new one), so a cookie returns what changed since it
//!   was issued, as the spec's cookies do. A cookie is what
//!   rust-libp2p's `Cookie::from_wire_encoding` reads: 8 bytes, then the
//!   namespace as UTF-8. The 8 bytes are 2 bytes of this store's random
//!   node tag (a cookie of another node, or from before a restart, is
//!   `InvalidCookie`) and the 48-bit version the page stopped at; the
//!   namespace must be the one asked for. Stateless: no memory per client.
//! - Pages: at most `limit` registrations (0, absent or above
//!   [`MAX_STANDARD_LIMIT`] means that maximum) and at most
//!   [`crate::ANSWER_BYTES`] of them.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rendezvous_proto::records::G1_BYTES;
use rendezvous_proto::QuorumKey;

use super::{NamespaceEntry, NamespaceStore, ANSWER_BYTES};

/// The prefix of a kind namespace.
pub const KIND_PREFIX: &str = "kind:";
/// The longest namespace the standard protocol allows.
pub const MAX_STANDARD_NAMESPACE: usize = 255;
/// The most registrations in one answer.
pub const MAX_STANDARD_LIMIT: usize = 1024;
/// Positions are 48-bit versions.
const VERSION_MASK: u64 = (1 << 48) - 1;

/// What a standard namespace names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StandardScope {
    /// One quorum's members.
    Quorum(QuorumKey),
    /// The members of every quorum of this kind.
    Kind(String),
}

impl StandardScope {
    /// Reads a namespace: 96 lowercase hex digits, or `kind:` and a valid
    /// kind (at most `max_kind_bytes`).
    pub fn parse(namespace: &str, max_kind_bytes: usize) -> Result<Self, StandardRefusal> {
        if let Some(kind) = namespace.strip_prefix(KIND_PREFIX) {
            if rendezvous_proto::validate::is_valid_kind(kind, max_kind_bytes) {
                return Ok(Self::Kind(kind.to_owned()));
            }
            return Err(StandardRefusal::InvalidNamespace("not a valid kind"));
        }
        let lowercase_hex = namespace.len() == 2 * G1_BYTES
            && namespace
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !lowercase_hex {
            return Err(StandardRefusal::InvalidNamespace(
                "a namespace is the lowercase hex of a 48-byte quorum key, or kind:<kind>",
            ));
        }
        let mut key = [0u8; G1_BYTES];
        hex::decode_to_slice(namespace, &mut key)
            .map_err(|_| StandardRefusal::InvalidNamespace("not hex"))?;
        Ok(Self::Quorum(QuorumKey(key)))
    }
}

/// A standard request, decoded by the driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StandardRequest {
    /// `REGISTER`: always refused.
    Register {
        /// The namespace it asked for.
        namespace: String,
    },
    /// `UNREGISTER`: ignored (the spec has no answer to it).
    Unregister,
    /// `DISCOVER`.
    Discover {
        /// The namespace (absent: all, which rdht refuses).
        namespace: Option<String>,
        /// At most this many registrations.
        limit: Option<u64>,
        /// Where the previous page stopped.
        cookie: Option<Vec<u8>>,
    },
}

/// One registration of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandardRegistration {
    /// The member's quorum's namespace (lowercase hex of its key).
    pub namespace: String,
    /// The member's standard signed peer record (an encoded envelope).
    pub record: Vec<u8>,
    /// Seconds the record remains valid.
    pub ttl_s: u64,
}

/// A page of registrations and the cookie of the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StandardPage {
    /// The registrations, oldest change first.
    pub registrations: Vec<StandardRegistration>,
    /// Where this page stopped (give it back for the next one).
    pub cookie: Vec<u8>,
}

/// Why a standard request is refused; each maps to one standard status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StandardRefusal {
    /// `E_INVALID_NAMESPACE`, with the reason.
    InvalidNamespace(&'static str),
    /// `E_INVALID_COOKIE`: not a cookie of this node for this namespace.
    InvalidCookie,
    /// `E_NOT_AUTHORIZED`, with the reason (every `REGISTER`).
    NotAuthorized(&'static str),
    /// `E_UNAVAILABLE`, with the reason (a penalized sender).
    Unavailable(&'static str),
}

impl StandardRefusal {
    /// The human-readable reason (the response's `statusText`).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidNamespace(r) | Self::NotAuthorized(r) | Self::Unavailable(r) => r,
            Self::InvalidCookie => "not a cookie of this node for this namespace",
        }
    }
}

/// What the driver sends back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StandardAnswer {
    /// A `REGISTER_RESPONSE` with this refusal.
    Registered(StandardRefusal),
    /// A `DISCOVER_RESPONSE`.
    Discovered(Result<StandardPage, StandardRefusal>),
    /// Nothing (an `UNREGISTER`).
    None,
}

/// The reason every standard `REGISTER` is refused.
pub const REGISTER_REFUSED: &str = "rdht lists only members of a quorum, who register with \
     /rdht/rendezvous/2.0.0 and a seat signed with their key share; standard registration \
     is not accepted";

impl NamespaceStore {
    /// Answers a standard DISCOVER of `namespace` (see the module docs).
    pub fn standard_discover(
        &self,
        namespace: &str,
        limit: Option<u64>,
        cookie: Option<&[u8]>,
        now_ms: u64,
    ) -> Result<StandardPage, StandardRefusal> {
        let scope = StandardScope::parse(namespace, self.config.limits.max_kind_bytes)?;
        let after = match cookie {
            Some(c) => self.parse_standard_cookie(c, namespace)?,
            None => 0,
        };
        let limit = match limit {
            Some(l) if l > 0 && l < MAX_STANDARD_LIMIT as u64 => l as usize,
            _ => MAX_STANDARD_LIMIT,
        };
        let live = |e: &(&QuorumKey, &NamespaceEntry)| e.1.verified.record().expires_at_ms > now_ms;
        let entries: Vec<(&QuorumKey, &NamespaceEntry)> = match &scope {
            StandardScope::Quorum(key) => self
                .namespaces
                .get_key_value(key)
                .filter(live)
                .into_iter()
                .collect(),
            StandardScope::Kind(kind) => self
                .by_kind
                .get(kind)
                .into_iter()
                .flatten()
                .filter_map(|qk| self.namespaces.get_key_value(qk))
                .filter(live)
                .collect(),
        };
        // Merge the entries' records by version (one entry for a quorum).
        let mut ranges: Vec<_> = entries
            .iter()
            .map(|(_, e)| e.by_version.range(after.saturating_add(1)..))
            .collect();
        let mut heads = BinaryHeap::new();
        for (i, range) in ranges.iter_mut().enumerate() {
            if let Some((&version, &index)) = range.next() {
                heads.push(Reverse((version, i, index)));
            }
        }
        let mut budget = ANSWER_BYTES;
        let mut registrations = Vec::new();
        let mut last = after;
        while let Some(Reverse((version, i, index))) = heads.pop() {
            if registrations.len() >= limit {
                break;
            }
            let (key, entry) = entries[i];
            let served = entry
                .peers
                .get(&index)
                .filter(|p| self.is_served(p, now_ms))
                .and_then(|p| Some((p, p.record.standard.as_ref()?)));
            if let Some((peer, standard)) = served {
                let namespace = hex::encode(key.0);
                // The record, the namespace and the protobuf around them.
                let size = standard.encoded().len() + namespace.len() + 24;
                if size > budget {
                    break;
                }
                budget -= size;
                registrations.push(StandardRegistration {
                    namespace,
                    record: standard.encoded().to_vec(),
                    ttl_s: peer.record.expires_at_ms().saturating_sub(now_ms) / 1000,
                });
            }
            last = version;
            if let Some((&version, &index)) = ranges[i].next() {
                heads.push(Reverse((version, i, index)));
            }
        }
        Ok(StandardPage {
            registrations,
            cookie: self.standard_cookie(namespace, last),
        })
    }

    fn standard_cookie(&self, namespace: &str, version: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + namespace.len());
        out.extend_from_slice(&self.node_tag[..2]);
        out.extend_from_slice(&(version & VERSION_MASK).to_be_bytes()[2..]);
        out.extend_from_slice(namespace.as_bytes());
        out
    }

    fn parse_standard_cookie(
        &self,
        cookie: &[u8],
        namespace: &str,
    ) -> Result<u64, StandardRefusal> {
        if cookie.len() != 8 + namespace.len()
            || cookie[..2] != self.node_tag[..2]
            || &cookie[8..] != namespace.as_bytes()
        {
            return Err(StandardRefusal::InvalidCookie);
        }
        let mut version = [0u8; 8];
        version[2..].copy_from_slice(&cookie[2..8]);
        Ok(u64::from_be_bytes(version))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_parse() {
        let key = "ab".repeat(48);
        assert_eq!(
            StandardScope::parse(&key, 64),
            Ok(StandardScope::Quorum(QuorumKey([0xab; 48])))
        );
        assert_eq!(
            StandardScope::parse("kind:farmer", 64),
            Ok(StandardScope::Kind("farmer".into()))
        );
        for bad in [
            "",
            "kind:",
            "farmer",
            &"AB".repeat(48),
            &"ab".repeat(47),
            &"ab".repeat(49),
            &format!("{}g", "a".repeat(95)),
        ] {
            assert!(
                matches!(
                    StandardScope::parse(bad, 64),
                    Err(StandardRefusal::InvalidNamespace(_))
                ),
                "{bad:?}"
            );
        }
    }
}
