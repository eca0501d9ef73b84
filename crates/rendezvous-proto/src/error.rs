//! Rejection reasons and their stable wire status codes.

use thiserror::Error;

/// Why bytes could not be decoded. All of these map to
/// [`StatusCode::Decode`] on the wire except [`DecodeError::TooLarge`]
/// (`RecordTooLarge`) and [`DecodeError::Version`] (`UnsupportedVersion`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The input ended inside a field.
    #[error("unexpected end of input")]
    UnexpectedEnd,
    /// Bytes were left after the last field.
    #[error("trailing bytes")]
    TrailingBytes,
    /// A length prefix exceeds the field's cap.
    #[error("field {0} too long")]
    TooLong(&'static str),
    /// The whole message exceeds the protocol's size cap.
    #[error("message too large")]
    TooLarge,
    /// An unknown version byte.
    #[error("unsupported version {0}")]
    Version(u8),
    /// An unknown message or variant tag.
    #[error("unknown tag {0}")]
    UnknownTag(u8),
    /// A field holds a value outside its domain.
    #[error("invalid value for {0}")]
    InvalidValue(&'static str),
    /// A point or scalar failed its curve or subgroup checks.
    #[error("invalid key or signature: {0}")]
    Crypto(#[from] dkg::DecodeError),
}

/// A stable status code: the numeric value is the wire contract (see
/// PROTOCOL.md) and never changes meaning. Modelled on libp2p rendezvous:
/// 0 is OK, 1xx are problems with the request or record, 2xx
/// authorization, 3xx internal, 4xx unavailability (quotas).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u16)]
pub enum StatusCode {
    /// Accepted / answered.
    Ok = 0,
    /// The bytes did not decode (truncated, trailing, bad tag, bad point).
    Decode = 100,
    /// The message or record exceeds a size cap.
    RecordTooLarge = 101,
    /// The record's expiry is not in the future.
    Expired = 102,
    /// The record's expiry is further away than the maximum TTL.
    TtlTooLong = 103,
    /// A discover cookie that this node did not issue, or issued for another query.
    InvalidCookie = 104,
    /// A frame or record of another protocol version (version 1 is no
    /// longer accepted).
    UnsupportedVersion = 105,
    /// No valid namespace record is stored for the quorum key.
    UnknownNamespace = 110,
    /// The namespace record's threshold signature does not verify under its quorum key.
    InvalidNamespaceSignature = 111,
    /// n, threshold or the commitment count are out of range or inconsistent.
    InvalidParameters = 112,
    /// The namespace record's epoch is lower than the stored one (or the same
    /// epoch is not newer); or a seat (peer record) is of an older epoch
    /// than the namespace record it is checked against.
    StaleEpoch = 113,
    /// The kind label is not a short lowercase label.
    InvalidKind = 114,
    /// The member index is 0 or above n.
    IndexOutOfRange = 120,
    /// The signature share does not verify under the member's public key share.
    InvalidShareSignature = 121,
    /// The sequence number is not higher than the stored one (a replay).
    StaleSequence = 122,
    /// The record's PeerId is not the authenticated remote peer.
    PeerIdMismatch = 123,
    /// The namespace lists its members and the PeerId is not the one at this index.
    NotAMember = 124,
    /// The peer record was made for a later epoch than the namespace
    /// record it is checked against (an older one is `StaleEpoch`).
    EpochMismatch = 125,
    /// The envelope is signed with a key type other than Ed25519.
    UnsupportedKeyType = 126,
    /// The envelope's signature does not verify under its key.
    InvalidEnvelopeSignature = 127,
    /// The envelope names another seat than the one it came with.
    SeatMismatch = 128,
    /// The standard signed peer record carried with the envelope names
    /// another key, PeerId, seq or address list than the envelope.
    StandardRecordMismatch = 129,
    /// The handover's threshold signature does not verify under the old
    /// quorum key it retires.
    InvalidHandoverSignature = 130,
    /// The quorum key is retired: a valid handover to another key is
    /// stored, so nothing is registered under it any more.
    NamespaceRetired = 131,
    /// A handover of the same old key that wins the order (later
    /// issued-at, then larger encoding) is stored already, or this very one.
    StaleHandover = 132,
    /// The node's admission policy refuses this namespace or kind.
    NotAuthorized = 200,
    /// The node failed internally.
    Internal = 300,
    /// A quota is full (namespaces, registrations per peer, peers per namespace).
    QuotaExceeded = 400,
    /// The node does not hold the namespace and its lookup in the DHT
    /// reached its deadline without finding it: not found *yet* (a
    /// partition, a slow network), unlike `UnknownNamespace` (the lookup
    /// ended without finding it). Worth asking again, or another node.
    LookupTimedOut = 401,
}

impl StatusCode {
    /// Every code, in ascending order.
    pub const ALL: [StatusCode; 29] = [
        StatusCode::Ok,
        StatusCode::Decode,
        StatusCode::RecordTooLarge,
        StatusCode::Expired,
        StatusCode::TtlTooLong,
        StatusCode::InvalidCookie,
        StatusCode::UnsupportedVersion,
        StatusCode::UnknownNamespace,
        StatusCode::InvalidNamespaceSignature,
        StatusCode::InvalidParameters,
        StatusCode::StaleEpoch,
        StatusCode::InvalidKind,
        StatusCode::IndexOutOfRange,
        StatusCode::InvalidShareSignature,
        StatusCode::StaleSequence,
        StatusCode::PeerIdMismatch,
        StatusCode::NotAMember,
        StatusCode::EpochMismatch,
        StatusCode::UnsupportedKeyType,
        StatusCode::InvalidEnvelopeSignature,
        StatusCode::SeatMismatch,
        StatusCode::StandardRecordMismatch,
        StatusCode::InvalidHandoverSignature,
        StatusCode::NamespaceRetired,
        StatusCode::StaleHandover,
        StatusCode::NotAuthorized,
        StatusCode::Internal,
        StatusCode::QuotaExceeded,
        StatusCode::LookupTimedOut,
    ];

    /// The numeric wire value.
    pub fn as_u16(self) -> u16 {
        self as u16
    }

    /// The code for a wire value; unknown values are `None`.
    pub fn from_u16(v: u16) -> Option<Self> {
        Self::ALL.iter().copied().find(|c| c.as_u16() == v)
    }

    /// The stable name (used in logs, metrics labels, JSON and test vectors).
    pub fn name(self) -> &'static str {
        match self {
            StatusCode::Ok => "Ok",
            StatusCode::Decode => "Decode",
            StatusCode::RecordTooLarge => "RecordTooLarge",
            StatusCode::Expired => "Expired",
            StatusCode::TtlTooLong => "TtlTooLong",
            StatusCode::InvalidCookie => "InvalidCookie",
            StatusCode::UnsupportedVersion => "UnsupportedVersion",
            StatusCode::UnknownNamespace => "UnknownNamespace",
            StatusCode::InvalidNamespaceSignature => "InvalidNamespaceSignature",
            StatusCode::InvalidParameters => "InvalidParameters",
            StatusCode::StaleEpoch => "StaleEpoch",
            StatusCode::InvalidKind => "InvalidKind",
            StatusCode::IndexOutOfRange => "IndexOutOfRange",
            StatusCode::InvalidShareSignature => "InvalidShareSignature",
            StatusCode::StaleSequence => "StaleSequence",
            StatusCode::PeerIdMismatch => "PeerIdMismatch",
            StatusCode::NotAMember => "NotAMember",
            StatusCode::EpochMismatch => "EpochMismatch",
            StatusCode::UnsupportedKeyType => "UnsupportedKeyType",
            StatusCode::InvalidEnvelopeSignature => "InvalidEnvelopeSignature",
            StatusCode::SeatMismatch => "SeatMismatch",
            StatusCode::StandardRecordMismatch => "StandardRecordMismatch",
            StatusCode::InvalidHandoverSignature => "InvalidHandoverSignature",
            StatusCode::NamespaceRetired => "NamespaceRetired",
            StatusCode::StaleHandover => "StaleHandover",
            StatusCode::NotAuthorized => "NotAuthorized",
            StatusCode::Internal => "Internal",
            StatusCode::QuotaExceeded => "QuotaExceeded",
            StatusCode::LookupTimedOut => "LookupTimedOut",
        }
    }
}

impl std::fmt::Display for StatusCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.name(), self.as_u16())
    }
}

/// Why a record was rejected: a status code and, for decode failures,
/// the detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Rejection {
    /// The record did not decode.
    #[error("decode: {0}")]
    Decode(#[from] DecodeError),
    /// The record decoded but failed validation.
    #[error("{0}")]
    Invalid(StatusCode),
}

impl Rejection {
    /// The wire status code of this rejection.
    pub fn code(&self) -> StatusCode {
        match self {
            Rejection::Decode(DecodeError::TooLarge) => StatusCode::RecordTooLarge,
            Rejection::Decode(DecodeError::Version(_)) => StatusCode::UnsupportedVersion,
            Rejection::Decode(_) => StatusCode::Decode,
            Rejection::Invalid(code) => *code,
        }
    }
}

impl From<StatusCode> for Rejection {
    fn from(code: StatusCode) -> Self {
        Rejection::Invalid(code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        let mut seen = std::collections::BTreeSet::new();
        for code in StatusCode::ALL {
            assert!(seen.insert(code.as_u16()), "duplicate {code}");
            assert_eq!(StatusCode::from_u16(code.as_u16()), Some(code));
        }
        assert_eq!(StatusCode::from_u16(999), None);
        assert_eq!(StatusCode::QuotaExceeded.as_u16(), 400);
        assert_eq!(StatusCode::InvalidShareSignature.as_u16(), 121);
        assert_eq!(StatusCode::InvalidHandoverSignature.as_u16(), 130);
        assert_eq!(StatusCode::NamespaceRetired.as_u16(), 131);
        assert_eq!(StatusCode::StaleHandover.as_u16(), 132);
        assert_eq!(StatusCode::LookupTimedOut.as_u16(), 401);
    }
}
