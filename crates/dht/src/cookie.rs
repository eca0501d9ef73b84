//! Discover paging cookies.
//!
//! Stateless and bounded: a cookie is `node_tag (8) || scope_tag (8) ||
//! position`, where the node tag is random per store (a cookie from another
//! node, or from before a restart, is refused as `InvalidCookie`), the scope
//! tag binds it to one namespace or kind (a cookie used for another query
//! is `InvalidCookie`), and the position is where the caller stopped: the
//! store-wide version of the last peer record it saw (u64), or the last
//! quorum key of a kind listing (48 bytes). The node remembers nothing per
//! client, so cookies cost no memory however many clients there are.

use rendezvous_proto::messages::Cookie;
use rendezvous_proto::records::G1_BYTES;
use rendezvous_proto::{QuorumKey, StatusCode};

use crate::keys::DhtKey;

fn scope_tag(key: &DhtKey) -> [u8; 8] {
    let mut tag = [0u8; 8];
    tag.copy_from_slice(&key[..8]);
    tag
}

fn split<'a>(
    cookie: &'a Cookie,
    node_tag: &[u8; 8],
    scope: &DhtKey,
) -> Result<&'a [u8], StatusCode> {
    let bytes = cookie.0.as_slice();
    if bytes.len() < 16 || bytes[..8] != node_tag[..] || bytes[8..16] != scope_tag(scope)[..] {
        return Err(StatusCode::InvalidCookie);
    }
    Ok(&bytes[16..])
}

/// A cookie for a namespace's peers, positioned after `version`.
pub fn peers_cookie(node_tag: &[u8; 8], scope: &DhtKey, version: u64) -> Cookie {
    let mut bytes = Vec::with_capacity(24);
    bytes.extend_from_slice(node_tag);
    bytes.extend_from_slice(&scope_tag(scope));
    bytes.extend_from_slice(&version.to_be_bytes());
    Cookie(bytes)
}

/// The version a peers cookie stops at.
pub fn parse_peers_cookie(
    cookie: &Cookie,
    node_tag: &[u8; 8],
    scope: &DhtKey,
) -> Result<u64, StatusCode> {
    let rest = split(cookie, node_tag, scope)?;
    let array: [u8; 8] = rest.try_into().map_err(|_| StatusCode::InvalidCookie)?;
    Ok(u64::from_be_bytes(array))
}

/// A cookie for a kind listing, positioned after `last`.
pub fn kind_cookie(node_tag: &[u8; 8], scope: &DhtKey, last: Option<&QuorumKey>) -> Cookie {
    let mut bytes = Vec::with_capacity(16 + G1_BYTES);
    bytes.extend_from_slice(node_tag);
    bytes.extend_from_slice(&scope_tag(scope));
    if let Some(last) = last {
        bytes.extend_from_slice(&last.0);
    }
    Cookie(bytes)
}

/// The quorum key a kind cookie stops after (`None`: from the start).
pub fn parse_kind_cookie(
    cookie: &Cookie,
    node_tag: &[u8; 8],
    scope: &DhtKey,
) -> Result<Option<QuorumKey>, StatusCode> {
    let rest = split(cookie, node_tag, scope)?;
    if rest.is_empty() {
        return Ok(None);
    }
    let array: [u8; G1_BYTES] = rest.try_into().map_err(|_| StatusCode::InvalidCookie)?;
    Ok(Some(QuorumKey(array)))
}
