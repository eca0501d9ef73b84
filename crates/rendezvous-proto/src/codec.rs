//! The canonical, bounded binary encoding of [`Request`] and [`Response`].
//!
//! A frame is a version byte ([`WIRE_VERSION`]), a message tag byte, then
//! the body; a response body starts with its status code (big-endian u16).
//! Records inside messages use their own canonical encodings
//! ([`NamespaceRecord::encode_into`], [`PeerRecord::encode_into`]).
//! PROTOCOL.md specifies every frame byte for byte.
//!
//! Decoding is strict and bounded: the whole frame is checked against the
//! message cap before a single byte is parsed, every length prefix is
//! checked against its field's cap (and against the input left) before
//! anything is allocated, and bytes left after the last field are an
//! error, so every message has exactly one encoding.

use crate::error::{DecodeError, StatusCode};
use crate::handover::HandoverRecord;
use crate::limits::Limits;
use crate::messages::{
    Cookie, DiscoverAnswer, DiscoveredPeer, RegisterOutcome, Request, Response, MAX_COOKIE_BYTES,
    MAX_DISCOVER_LIMIT, MAX_REGISTER_BATCH,
};
use crate::records::{NamespaceRecord, PeerRecord, QuorumKey, G1_BYTES, G2_BYTES};
use crate::wire::{Reader, Writer};

/// The libp2p protocol id of the rendezvous request-response protocol:
/// one request frame and one response frame per substream, each delimited
/// by the end of its half of the stream.
pub const PROTOCOL_ID: &str = "/rdht/rendezvous/2.0.0";

/// Version byte that starts every request and response frame.
pub const WIRE_VERSION: u8 = 2;

/// Longest kind label in a `DiscoverKind` request, in bytes (the wire cap;
/// nodes accept only [`Limits::max_kind_bytes`]).
pub const MAX_KIND_WIRE_BYTES: usize = u8::MAX as usize;

/// Request tags (the second byte of a request frame).
pub mod request_tag {
    /// [`crate::Request::RegisterNamespace`].
    pub const REGISTER_NAMESPACE: u8 = 0x01;
    /// [`crate::Request::RegisterPeer`].
    pub const REGISTER_PEER: u8 = 0x02;
    /// [`crate::Request::Unregister`].
    pub const UNREGISTER: u8 = 0x03;
    /// [`crate::Request::Discover`].
    pub const DISCOVER: u8 = 0x04;
    /// [`crate::Request::DiscoverKind`].
    pub const DISCOVER_KIND: u8 = 0x05;
    /// [`crate::Request::Dkg`].
    pub const DKG: u8 = 0x06;
    /// [`crate::Request::SignNamespace`].
    pub const SIGN_NAMESPACE: u8 = 0x07;
    /// [`crate::Request::RegisterPeers`].
    pub const REGISTER_PEERS: u8 = 0x08;
    /// [`crate::Request::NamespaceReady`].
    pub const NAMESPACE_READY: u8 = 0x09;
    /// [`crate::Request::PublishHandover`].
    pub const PUBLISH_HANDOVER: u8 = 0x0a;
    /// [`crate::Request::SignHandover`].
    pub const SIGN_HANDOVER: u8 = 0x0b;
}

/// Response tags (the second byte of a response frame).
pub mod response_tag {
    /// [`crate::Response::Registered`].
    pub const REGISTERED: u8 = 0x01;
    /// [`crate::Response::Unregistered`].
    pub const UNREGISTERED: u8 = 0x02;
    /// [`crate::Response::Discovered`].
    pub const DISCOVERED: u8 = 0x03;
    /// [`crate::Response::Namespaces`].
    pub const NAMESPACES: u8 = 0x04;
    /// [`crate::Response::DkgAccepted`].
    pub const DKG_ACCEPTED: u8 = 0x05;
    /// [`crate::Response::NamespaceShare`].
    pub const NAMESPACE_SHARE: u8 = 0x06;
    /// [`crate::Response::RegisteredPeers`].
    pub const REGISTERED_PEERS: u8 = 0x07;
    /// [`crate::Response::Accepted`].
    pub const ACCEPTED: u8 = 0x08;
    /// [`crate::Response::HandedOver`].
    pub const HANDED_OVER: u8 = 0x09;
    /// [`crate::Response::Rejected`].
    pub const REJECTED: u8 = 0xff;
}

/// Fewest bytes a namespace record can take: version, commitment count,
/// one commitment, n, epoch, empty kind, no member list, two times,
/// signature. Used to bound list counts against the input left.
pub const MIN_NAMESPACE_RECORD_BYTES: usize = 1 + 2 + G1_BYTES + 4 + 8 + 1 + 1 + 8 + 8 + G2_BYTES;

/// Fewest bytes a peer record can take (a lower bound: it counts an empty
/// PeerId, which never decodes).
pub const MIN_PEER_RECORD_BYTES: usize = 1 + G1_BYTES + 8 + 4 + 1 + 1 + 8 + 8 + G2_BYTES;

/// Fewest bytes one entry of a discover answer can take (a peer record
/// and the `last_seen` presence byte).
const MIN_DISCOVERED_PEER_BYTES: usize = MIN_PEER_RECORD_BYTES + 1;

impl Request {
    /// The canonical frame. Infallible: values outside the wire caps (a
    /// cookie over [`MAX_COOKIE_BYTES`], a kind over 255 bytes) encode to
    /// frames that [`Request::decode`] refuses rather than to something
    /// ambiguous.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(WIRE_VERSION);
        match self {
            Request::RegisterNamespace(record) => {
                w.u8(request_tag::REGISTER_NAMESPACE);
                record.encode_into(&mut w);
            }
            Request::RegisterPeer(record) => {
                w.u8(request_tag::REGISTER_PEER);
                record.encode_into(&mut w);
            }
            Request::Unregister { quorum_key, index } => {
                w.u8(request_tag::UNREGISTER);
                w.raw(&quorum_key.0);
                w.u32(*index);
            }
            Request::Discover {
                quorum_key,
                limit,
                cookie,
            } => {
                w.u8(request_tag::DISCOVER);
                w.raw(&quorum_key.0);
                w.u32(*limit);
                encode_optional_cookie(&mut w, cookie.as_ref());
            }
            Request::DiscoverKind {
                kind,
                limit,
                cookie,
            } => {
                w.u8(request_tag::DISCOVER_KIND);
                w.bytes8(kind.as_bytes());
                w.u32(*limit);
                encode_optional_cookie(&mut w, cookie.as_ref());
            }
            Request::Dkg(payload) => {
                w.u8(request_tag::DKG);
                w.bytes32(payload);
            }
            Request::SignNamespace(record) => {
                w.u8(request_tag::SIGN_NAMESPACE);
                record.encode_into(&mut w);
            }
            Request::NamespaceReady(record) => {
                w.u8(request_tag::NAMESPACE_READY);
                record.encode_into(&mut w);
            }
            Request::PublishHandover(record) => {
                w.u8(request_tag::PUBLISH_HANDOVER);
                record.encode_into(&mut w);
            }
            Request::SignHandover {
                handover,
                namespace,
            } => {
                w.u8(request_tag::SIGN_HANDOVER);
                handover.encode_into(&mut w);
                namespace.encode_into(&mut w);
            }
            Request::RegisterPeers(records) => {
                w.u8(request_tag::REGISTER_PEERS);
                w.u16(clamp_u16(records.len()));
                for record in records.iter().take(u16::MAX as usize) {
                    record.encode_into(&mut w);
                }
            }
        }
        w.into_bytes()
    }

    /// Decodes a whole frame strictly, within the default message cap
    /// ([`Limits::DEFAULT`]`.max_message_bytes`).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::decode_with_limit(bytes, Limits::DEFAULT.max_message_bytes)
    }

    /// Decodes a whole frame strictly, refusing frames over
    /// `max_message_bytes` before reading anything.
    pub fn decode_with_limit(bytes: &[u8], max_message_bytes: usize) -> Result<Self, DecodeError> {
        if bytes.len() > max_message_bytes {
            return Err(DecodeError::TooLarge);
        }
        let mut r = Reader::new(bytes);
        read_version(&mut r)?;
        let request = match r.u8()? {
            request_tag::REGISTER_NAMESPACE => {
                Request::RegisterNamespace(NamespaceRecord::decode_from(&mut r)?)
            }
            request_tag::REGISTER_PEER => Request::RegisterPeer(PeerRecord::decode_from(&mut r)?),
            request_tag::UNREGISTER => Request::Unregister {
                quorum_key: QuorumKey(r.array::<G1_BYTES>()?),
                index: r.u32()?,
            },
            request_tag::DISCOVER => Request::Discover {
                quorum_key: QuorumKey(r.array::<G1_BYTES>()?),
                limit: r.u32()?,
                cookie: decode_optional_cookie(&mut r)?,
            },
            request_tag::DISCOVER_KIND => {
                let kind = r.bytes8(MAX_KIND_WIRE_BYTES, "kind")?;
                let kind = std::str::from_utf8(kind)
                    .map_err(|_| DecodeError::InvalidValue("kind"))?
                    .to_owned();
                Request::DiscoverKind {
                    kind,
                    limit: r.u32()?,
                    cookie: decode_optional_cookie(&mut r)?,
                }
            }
            request_tag::DKG => {
                // The frame cap bounds the payload already; the explicit cap
                // keeps the bound local to the field.
                let payload = r.bytes32(max_message_bytes, "dkg payload")?;
                Request::Dkg(payload.to_vec())
            }
            request_tag::SIGN_NAMESPACE => {
                Request::SignNamespace(NamespaceRecord::decode_from(&mut r)?)
            }
            request_tag::NAMESPACE_READY => {
                Request::NamespaceReady(NamespaceRecord::decode_from(&mut r)?)
            }
            request_tag::PUBLISH_HANDOVER => {
                Request::PublishHandover(HandoverRecord::decode_from(&mut r)?)
            }
            request_tag::SIGN_HANDOVER => Request::SignHandover {
                handover: HandoverRecord::decode_from(&mut r)?,
                namespace: NamespaceRecord::decode_from(&mut r)?,
            },
            request_tag::REGISTER_PEERS => {
                let count =
                    r.list_len16(MAX_REGISTER_BATCH, MIN_PEER_RECORD_BYTES, "peer records")?;
                if count == 0 {
                    return Err(DecodeError::InvalidValue("peer records"));
                }
                let mut records = Vec::with_capacity(count);
                for _ in 0..count {
                    records.push(PeerRecord::decode_from(&mut r)?);
                }
                Request::RegisterPeers(records)
            }
            tag => return Err(DecodeError::UnknownTag(tag)),
        };
        r.finish()?;
        Ok(request)
    }
}

impl Response {
    /// The canonical frame. Infallible: `Rejected(StatusCode::Ok)` and values
    /// outside the wire caps encode to frames that [`Response::decode`]
    /// refuses.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(WIRE_VERSION);
        w.u8(self.tag());
        w.u16(self.status().as_u16());
        match self {
            Response::Registered { ttl_ms } => w.u64(*ttl_ms),
            Response::Unregistered
            | Response::DkgAccepted
            | Response::Accepted
            | Response::Rejected(_) => {}
            Response::Discovered(answer) => {
                answer.namespace.encode_into(&mut w);
                w.u16(clamp_u16(answer.peers.len()));
                for peer in answer.peers.iter().take(u16::MAX as usize) {
                    peer.record.encode_into(&mut w);
                    match peer.last_seen_ms {
                        None => w.u8(0),
                        Some(t) => {
                            w.u8(1);
                            w.u64(t);
                        }
                    }
                }
                w.bytes8(&answer.cookie.0);
            }
            Response::Namespaces { namespaces, cookie } => {
                w.u16(clamp_u16(namespaces.len()));
                for record in namespaces.iter().take(u16::MAX as usize) {
                    record.encode_into(&mut w);
                }
                w.bytes8(&cookie.0);
            }
            Response::NamespaceShare { index, signature } => {
                w.u32(*index);
                w.raw(signature);
            }
            Response::HandedOver(record) => record.encode_into(&mut w),
            Response::RegisteredPeers(outcomes) => {
                w.u16(clamp_u16(outcomes.len()));
                for outcome in outcomes.iter().take(u16::MAX as usize) {
                    match outcome {
                        Ok(ttl_ms) => {
                            w.u16(StatusCode::Ok.as_u16());
                            w.u64(*ttl_ms);
                        }
                        // `Err(Ok)` has no meaning: written as a status no
                        // decoder accepts.
                        Err(StatusCode::Ok) => w.u16(u16::MAX),
                        Err(code) => w.u16(code.as_u16()),
                    }
                }
            }
        }
        w.into_bytes()
    }

    fn tag(&self) -> u8 {
        match self {
            Response::Registered { .. } => response_tag::REGISTERED,
            Response::Unregistered => response_tag::UNREGISTERED,
            Response::Discovered(_) => response_tag::DISCOVERED,
            Response::Namespaces { .. } => response_tag::NAMESPACES,
            Response::DkgAccepted => response_tag::DKG_ACCEPTED,
            Response::Accepted => response_tag::ACCEPTED,
            Response::HandedOver(_) => response_tag::HANDED_OVER,
            Response::NamespaceShare { .. } => response_tag::NAMESPACE_SHARE,
            Response::RegisteredPeers(_) => response_tag::REGISTERED_PEERS,
            Response::Rejected(_) => response_tag::REJECTED,
        }
    }

    /// Decodes a whole frame strictly, within the default message cap
    /// ([`Limits::DEFAULT`]`.max_message_bytes`).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::decode_with_limit(bytes, Limits::DEFAULT.max_message_bytes)
    }

    /// Decodes a whole frame strictly, refusing frames over
    /// `max_message_bytes` before reading anything.
    ///
    /// The status must agree with the tag: `Ok` for every tag but
    /// `Rejected`, a known non-`Ok` code for `Rejected`.
    pub fn decode_with_limit(bytes: &[u8], max_message_bytes: usize) -> Result<Self, DecodeError> {
        if bytes.len() > max_message_bytes {
            return Err(DecodeError::TooLarge);
        }
        let mut r = Reader::new(bytes);
        read_version(&mut r)?;
        let tag = r.u8()?;
        let status = StatusCode::from_u16(r.u16()?).ok_or(DecodeError::InvalidValue("status"))?;
        if tag == response_tag::REJECTED {
            if status == StatusCode::Ok {
                return Err(DecodeError::InvalidValue("status"));
            }
            r.finish()?;
            return Ok(Response::Rejected(status));
        }
        // Only `Rejected` carries a non-Ok status: anything else would give
        // one response two meanings.
        if status != StatusCode::Ok {
            return Err(DecodeError::InvalidValue("status"));
        }
        let response = match tag {
            response_tag::REGISTERED => Response::Registered { ttl_ms: r.u64()? },
            response_tag::UNREGISTERED => Response::Unregistered,
            response_tag::DISCOVERED => {
                let namespace = NamespaceRecord::decode_from(&mut r)?;
                let count = r.list_len16(
                    MAX_DISCOVER_LIMIT as usize,
                    MIN_DISCOVERED_PEER_BYTES,
                    "peers",
                )?;
                let mut peers = Vec::with_capacity(count);
                for _ in 0..count {
                    let record = PeerRecord::decode_from(&mut r)?;
                    let last_seen_ms = if r.bool()? { Some(r.u64()?) } else { None };
                    peers.push(DiscoveredPeer {
                        record,
                        last_seen_ms,
                    });
                }
                let cookie = decode_cookie(&mut r)?;
                Response::Discovered(DiscoverAnswer {
                    namespace,
                    peers,
                    cookie,
                })
            }
            response_tag::NAMESPACES => {
                let count = r.list_len16(
                    MAX_DISCOVER_LIMIT as usize,
                    MIN_NAMESPACE_RECORD_BYTES,
                    "namespaces",
                )?;
                let mut namespaces = Vec::with_capacity(count);
                for _ in 0..count {
                    namespaces.push(NamespaceRecord::decode_from(&mut r)?);
                }
                let cookie = decode_cookie(&mut r)?;
                Response::Namespaces { namespaces, cookie }
            }
            response_tag::DKG_ACCEPTED => Response::DkgAccepted,
            response_tag::ACCEPTED => Response::Accepted,
            response_tag::HANDED_OVER => Response::HandedOver(HandoverRecord::decode_from(&mut r)?),
            response_tag::NAMESPACE_SHARE => Response::NamespaceShare {
                index: r.u32()?,
                signature: r.array::<G2_BYTES>()?,
            },
            response_tag::REGISTERED_PEERS => {
                // Each outcome takes at least its two status bytes.
                let count = r.list_len16(MAX_REGISTER_BATCH, 2, "outcomes")?;
                let mut outcomes: Vec<RegisterOutcome> = Vec::with_capacity(count);
                for _ in 0..count {
                    let code = StatusCode::from_u16(r.u16()?)
                        .ok_or(DecodeError::InvalidValue("outcome status"))?;
                    outcomes.push(match code {
                        StatusCode::Ok => Ok(r.u64()?),
                        code => Err(code),
                    });
                }
                Response::RegisteredPeers(outcomes)
            }
            tag => return Err(DecodeError::UnknownTag(tag)),
        };
        r.finish()?;
        Ok(response)
    }
}

fn read_version(r: &mut Reader<'_>) -> Result<(), DecodeError> {
    match r.u8()? {
        WIRE_VERSION => Ok(()),
        other => Err(DecodeError::Version(other)),
    }
}

/// `0` for none, `1` and the cookie for some: an empty cookie and no cookie
/// stay distinct values with distinct encodings.
fn encode_optional_cookie(w: &mut Writer, cookie: Option<&Cookie>) {
    match cookie {
        None => w.u8(0),
        Some(c) => {
            w.u8(1);
            w.bytes8(&c.0);
        }
    }
}

fn decode_optional_cookie(r: &mut Reader<'_>) -> Result<Option<Cookie>, DecodeError> {
    if r.bool()? {
        Ok(Some(decode_cookie(r)?))
    } else {
        Ok(None)
    }
}

fn decode_cookie(r: &mut Reader<'_>) -> Result<Cookie, DecodeError> {
    Ok(Cookie(r.bytes8(MAX_COOKIE_BYTES, "cookie")?.to_vec()))
}

fn clamp_u16(len: usize) -> u16 {
    u16::try_from(len).unwrap_or(u16::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::TestQuorum;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn records(count: u32) -> Vec<PeerRecord> {
        let q = TestQuorum::deal(count.max(1), 1, &mut ChaCha20Rng::seed_from_u64(3));
        (1..=count).map(|i| q.peer(i, 1, 1, 1_000)).collect()
    }

    #[test]
    fn register_peers_frames() {
        let request = Request::RegisterPeers(records(3));
        let bytes = request.encode();
        assert_eq!(
            &bytes[..4],
            &[WIRE_VERSION, request_tag::REGISTER_PEERS, 0x00, 0x03]
        );
        assert_eq!(Request::decode(&bytes), Ok(request));
        // An empty list and a list over the cap do not decode.
        assert_eq!(
            Request::decode(&[WIRE_VERSION, request_tag::REGISTER_PEERS, 0, 0]),
            Err(DecodeError::InvalidValue("peer records"))
        );
        let many =
            Request::RegisterPeers(vec![records(1).remove(0); MAX_REGISTER_BATCH + 1]).encode();
        assert!(Request::decode(&many).is_err());
        let most = Request::RegisterPeers(vec![records(1).remove(0); MAX_REGISTER_BATCH]);
        assert_eq!(Request::decode(&most.encode()), Ok(most));

        let response = Response::RegisteredPeers(vec![
            Ok(7_200_000),
            Err(StatusCode::InvalidShareSignature),
            Err(StatusCode::PeerIdMismatch),
        ]);
        let bytes = response.encode();
        assert_eq!(
            bytes,
            [
                &[
                    WIRE_VERSION,
                    response_tag::REGISTERED_PEERS,
                    0x00,
                    0x00,
                    0x00,
                    0x03
                ][..],
                &[0x00, 0x00, 0, 0, 0, 0, 0, 0x6d, 0xdd, 0x00],
                &[0x00, 0x79],
                &[0x00, 0x7b],
            ]
            .concat()
        );
        assert_eq!(Response::decode(&bytes), Ok(response));
        // Unknown per-record status, truncated TTL, `Err(Ok)`: refused.
        let mut bad = Response::RegisteredPeers(vec![Err(StatusCode::Decode)]).encode();
        let last = bad.len() - 1;
        bad[last] = 0x01;
        assert!(Response::decode(&bad).is_err());
        let mut cut = Response::RegisteredPeers(vec![Ok(1)]).encode();
        cut.pop();
        assert!(Response::decode(&cut).is_err());
        let err_ok = Response::RegisteredPeers(vec![Err(StatusCode::Ok)]).encode();
        assert!(Response::decode(&err_ok).is_err());
    }
}
