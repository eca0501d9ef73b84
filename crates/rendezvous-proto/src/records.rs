//! The self-certifying records and their canonical encodings.
//!
//! A record's encoding is canonical (one encoding per value, strict
//! decoding), so its signing bytes are simply a domain separation tag
//! followed by the encoding of every field but the signature. Points are
//! kept as raw compressed bytes until validation: decompressing and
//! subgroup-checking costs 40-60 us per point, and garbage must be
//! rejected for less than that.

use std::fmt;

use libp2p_identity::PeerId;
use multiaddr::Multiaddr;

use crate::error::DecodeError;
use crate::limits::MAX_PEER_ID_BYTES;
use crate::wire::{Reader, Writer};

/// Version byte of the namespace record's encoding (protocol version 2).
pub const RECORD_VERSION: u8 = 2;
/// Domain separation tag of a namespace record's signing bytes.
pub const NAMESPACE_RECORD_DST: &[u8] = b"rdht/namespace-record/v2";

/// A member's registration: its seat and its signed envelope (see
/// [`crate::seated`]).
pub use crate::seated::PeerRecord;
/// Bytes of a compressed G1 point.
pub const G1_BYTES: usize = dkg::G1_BYTES;
/// Bytes of a compressed G2 point.
pub const G2_BYTES: usize = dkg::G2_BYTES;
/// Protocol maximum of addresses in a peer record (nodes apply a lower
/// configured limit, [`crate::Limits::max_addrs`]).
pub const WIRE_MAX_ADDRS: usize = 64;
/// Protocol maximum of one encoded multiaddr.
pub const WIRE_MAX_ADDR_BYTES: usize = 1024;

/// The methods the signed records share, built on each record's `encode_body`
/// (every field but the signature) and `decode_from`.
macro_rules! record_codec {
    ($ty:ty, $dst:expr, $what:literal) => {
        impl $ty {
            #[doc = concat!("The bytes ", $what, " covers: the DST, then every field but the signature.")]
            pub fn signing_bytes(&self) -> Vec<u8> {
                let mut w = Writer::new();
                w.bytes8($dst);
                self.encode_body(&mut w);
                w.into_bytes()
            }

            /// Writes the canonical encoding into `w`.
            pub fn encode_into(&self, w: &mut Writer) {
                self.encode_body(w);
                w.raw(&self.signature);
            }

            /// The canonical encoding.
            pub fn encode(&self) -> Vec<u8> {
                let mut w = Writer::new();
                self.encode_into(&mut w);
                w.into_bytes()
            }

            /// Decodes a whole buffer strictly.
            pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
                let mut r = Reader::new(bytes);
                let record = Self::decode_from(&mut r)?;
                r.finish()?;
                Ok(record)
            }
        }
    };
}

pub(crate) use record_codec;

record_codec!(
    NamespaceRecord,
    NAMESPACE_RECORD_DST,
    "the threshold signature"
);

/// A quorum key as raw compressed bytes: the namespace's name.
///
/// Kept raw so that lookups and cheap rejections need no point
/// decompression; [`QuorumKey::decode`] does the full check.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QuorumKey(pub [u8; G1_BYTES]);

impl QuorumKey {
    /// Decodes into a subgroup-checked, non-identity public key.
    pub fn decode(&self) -> Result<dkg::PublicKey, DecodeError> {
        Ok(dkg::PublicKey::from_bytes(&self.0)?)
    }

    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses hex (optionally `0x`-prefixed) of exactly 48 bytes. It does
    /// not check that the bytes are a point: [`QuorumKey::decode`] does.
    pub fn from_hex(s: &str) -> Result<Self, DecodeError> {
        let s = s.strip_prefix("0x").unwrap_or(s);
        if s.len() != 2 * G1_BYTES {
            return Err(DecodeError::InvalidValue("quorum key length"));
        }
        let mut out = [0u8; G1_BYTES];
        hex::decode_to_slice(s, &mut out)
            .map_err(|_| DecodeError::InvalidValue("quorum key hex"))?;
        Ok(Self(out))
    }
}

impl From<dkg::PublicKey> for QuorumKey {
    fn from(pk: dkg::PublicKey) -> Self {
        Self(pk.to_bytes())
    }
}

impl fmt::Display for QuorumKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for QuorumKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "QuorumKey({}..)", &self.to_hex()[..16])
    }
}

impl std::str::FromStr for QuorumKey {
    type Err = DecodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_hex(s)
    }
}

/// A quorum's namespace: its public key set and parameters, signed by the
/// quorum itself (a threshold signature under `commitments[0]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NamespaceRecord {
    /// Feldman commitments `C_0..C_{threshold-1}` (compressed G1);
    /// `C_0` is the quorum key and the count is the threshold.
    pub commitments: Vec<[u8; G1_BYTES]>,
    /// Quorum size.
    pub n: u32,
    /// Increases when the quorum changes its key set or membership.
    pub epoch: u64,
    /// Optional short lowercase label, e.g. `farmer`.
    pub kind: Option<String>,
    /// Optional member list: entry `i - 1` is member `i`'s PeerId.
    pub members: Option<Vec<PeerId>>,
    /// When the quorum signed it (ms since the Unix epoch); orders records
    /// of the same epoch.
    pub issued_at_ms: u64,
    /// When it expires (ms since the Unix epoch).
    pub expires_at_ms: u64,
    /// The combined threshold signature over [`NamespaceRecord::signing_bytes`].
    pub signature: [u8; G2_BYTES],
}

impl NamespaceRecord {
    /// The quorum key (`commitments[0]`), or `None` for a record with no
    /// commitments (which never decodes or validates).
    pub fn quorum_key(&self) -> Option<QuorumKey> {
        self.commitments.first().map(|c| QuorumKey(*c))
    }

    /// The threshold (number of commitments).
    pub fn threshold(&self) -> u32 {
        self.commitments.len() as u32
    }

    fn encode_body(&self, w: &mut Writer) {
        w.u8(RECORD_VERSION);
        w.u16(self.commitments.len() as u16);
        for c in &self.commitments {
            w.raw(c);
        }
        w.u32(self.n);
        w.u64(self.epoch);
        w.bytes8(self.kind.as_deref().unwrap_or("").as_bytes());
        match &self.members {
            None => w.u8(0),
            Some(members) => {
                w.u8(1);
                w.u16(members.len() as u16);
                for m in members {
                    w.bytes8(&m.to_bytes());
                }
            }
        }
        w.u64(self.issued_at_ms);
        w.u64(self.expires_at_ms);
    }

    /// Decodes one record from `r`. Checks structure only (points stay
    /// raw): validation does the rest.
    pub fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.expect_version(RECORD_VERSION)?;
        let count = r.list_len16(u16::MAX as usize, G1_BYTES, "commitments")?;
        if count == 0 {
            return Err(DecodeError::InvalidValue("commitments"));
        }
        let mut commitments = Vec::with_capacity(count);
        for _ in 0..count {
            commitments.push(r.array::<G1_BYTES>()?);
        }
        let n = r.u32()?;
        let epoch = r.u64()?;
        let kind = r.bytes8(u8::MAX as usize, "kind")?;
        let kind = if kind.is_empty() {
            None
        } else {
            Some(
                std::str::from_utf8(kind)
                    .map_err(|_| DecodeError::InvalidValue("kind"))?
                    .to_owned(),
            )
        };
        let members = if r.bool()? {
            let count = r.list_len16(u16::MAX as usize, 2, "members")?;
            let mut members = Vec::with_capacity(count);
            for _ in 0..count {
                members.push(decode_peer_id(r)?);
            }
            Some(members)
        } else {
            None
        };
        let issued_at_ms = r.u64()?;
        let expires_at_ms = r.u64()?;
        let signature = r.array::<G2_BYTES>()?;
        Ok(Self {
            commitments,
            n,
            epoch,
            kind,
            members,
            issued_at_ms,
            expires_at_ms,
            signature,
        })
    }
}

/// Decodes a length-prefixed PeerId and insists on its canonical bytes.
pub(crate) fn decode_peer_id(r: &mut Reader<'_>) -> Result<PeerId, DecodeError> {
    let bytes = r.bytes8(MAX_PEER_ID_BYTES, "peer id")?;
    let peer_id = PeerId::from_bytes(bytes).map_err(|_| DecodeError::InvalidValue("peer id"))?;
    if peer_id.to_bytes() != bytes {
        return Err(DecodeError::InvalidValue("peer id"));
    }
    Ok(peer_id)
}

/// Writes an address list: `list8<bytes16>`, at most [`WIRE_MAX_ADDRS`]
/// (validation refuses records with more, so nothing signed is cut).
pub(crate) fn encode_addrs(w: &mut Writer, addrs: &[Multiaddr]) {
    w.u8(addrs.len().min(WIRE_MAX_ADDRS) as u8);
    for a in addrs.iter().take(WIRE_MAX_ADDRS) {
        w.bytes16(a.as_ref());
    }
}

/// Reads an address list, each a multiaddr that parses.
pub(crate) fn decode_addrs(r: &mut Reader<'_>) -> Result<Vec<Multiaddr>, DecodeError> {
    let count = r.list_len8(WIRE_MAX_ADDRS, 2, "addrs")?;
    let mut addrs = Vec::with_capacity(count);
    for _ in 0..count {
        let bytes = r.bytes16(WIRE_MAX_ADDR_BYTES, "addr")?;
        let addr = Multiaddr::try_from(bytes.to_vec())
            .map_err(|_| DecodeError::InvalidValue("multiaddr"))?;
        addrs.push(addr);
    }
    Ok(addrs)
}
