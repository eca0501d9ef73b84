//! The quorum file (TOML): who the members are and the threshold.
//!
//! ```toml
//! threshold = 3
//! kind = "farmer"          # optional
//! [[member]]
//! peer_id = "12D3KooW..."
//! addr = "/ip4/127.0.0.1/tcp/7001"
//! ```
//!
//! A member's index is its 1-based position in the list.

use std::path::Path;

use libp2p::{Multiaddr, PeerId};
use serde::Deserialize;

/// Why a quorum file was refused.
#[derive(Debug, thiserror::Error)]
pub enum QuorumFileError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not the expected TOML (syntax, unknown or missing fields).
    #[error("{0}")]
    Toml(#[from] toml::de::Error),
    /// A member's `peer_id` is not a PeerId.
    #[error("member {index}: peer_id: {reason}")]
    PeerId {
        /// The member's index.
        index: usize,
        /// The parser's words.
        reason: String,
    },
    /// A member's `addr` is not a multiaddr.
    #[error("member {index}: addr: {reason}")]
    Addr {
        /// The member's index.
        index: usize,
        /// The parser's words.
        reason: String,
    },
    /// A PeerId is listed twice.
    #[error("member {index}: peer_id listed twice")]
    Duplicate {
        /// The second listing's index.
        index: usize,
    },
    /// The threshold is 0 or above the number of members.
    #[error("threshold {threshold} must be between 1 and the number of members ({n})")]
    Threshold {
        /// The threshold given.
        threshold: u32,
        /// The number of members.
        n: u64,
    },
    /// The kind is not a short lowercase label.
    #[error("kind {kind:?} must be 1 to {max} bytes of a-z, 0-9 and -")]
    Kind {
        /// The kind given.
        kind: String,
        /// The longest label allowed.
        max: usize,
    },
    /// A refusal of [`QuorumFile::parse`], for this file.
    #[error("{path}: {source}")]
    In {
        /// The file.
        path: std::path::PathBuf,
        /// The refusal.
        source: Box<QuorumFileError>,
    },
}

/// One `[[member]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The member's libp2p identity.
    pub peer_id: PeerId,
    /// Where the other members reach it.
    pub addr: Multiaddr,
}

/// A parsed, checked quorum file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumFile {
    /// Shares needed to sign.
    pub threshold: u32,
    /// Optional kind label of the namespace.
    pub kind: Option<String>,
    /// The members, index order (entry `i - 1` is member `i`).
    pub members: Vec<Member>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    threshold: u32,
    kind: Option<String>,
    #[serde(default)]
    member: Vec<RawMember>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMember {
    peer_id: String,
    addr: String,
}

impl QuorumFile {
    /// Parses and checks TOML text: `1 <= threshold <= n`, PeerIds and
    /// addresses parse, no PeerId twice, the kind is a label.
    pub fn parse(text: &str) -> Result<Self, QuorumFileError> {
        let raw: RawFile = toml::from_str(text)?;
        let mut members = Vec::with_capacity(raw.member.len());
        for (position, m) in raw.member.iter().enumerate() {
            let index = position + 1;
            let peer_id: PeerId =
                m.peer_id
                    .parse()
                    .map_err(|e: libp2p::identity::ParseError| QuorumFileError::PeerId {
                        index,
                        reason: e.to_string(),
                    })?;
            let addr: Multiaddr =
                m.addr
                    .parse()
                    .map_err(|e: libp2p::multiaddr::Error| QuorumFileError::Addr {
                        index,
                        reason: e.to_string(),
                    })?;
            if members.iter().any(|x: &Member| x.peer_id == peer_id) {
                return Err(QuorumFileError::Duplicate { index });
            }
            members.push(Member { peer_id, addr });
        }
        let n = members.len() as u64;
        if raw.threshold == 0 || u64::from(raw.threshold) > n {
            return Err(QuorumFileError::Threshold {
                threshold: raw.threshold,
                n,
            });
        }
        if let Some(kind) = &raw.kind {
            let max = rendezvous_proto::Limits::DEFAULT.max_kind_bytes;
            if !rendezvous_proto::validate::is_valid_kind(kind, max) {
                return Err(QuorumFileError::Kind {
                    kind: kind.clone(),
                    max,
                });
            }
        }
        Ok(Self {
            threshold: raw.threshold,
            kind: raw.kind,
            members,
        })
    }

    /// Reads and parses a file.
    pub fn load(path: &Path) -> Result<Self, QuorumFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| QuorumFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|e| QuorumFileError::In {
            path: path.to_owned(),
            source: Box::new(e),
        })
    }

    /// Renders the file as TOML (what [`QuorumFile::parse`] reads back).
    pub fn to_toml(&self) -> String {
        let mut out = format!("threshold = {}\n", self.threshold);
        if let Some(kind) = &self.kind {
            out.push_str(&format!("kind = {kind:?}\n"));
        }
        for m in &self.members {
            out.push_str(&format!(
                "\n[[member]]\npeer_id = \"{}\"\naddr = \"{}\"\n",
                m.peer_id, m.addr
            ));
        }
        out
    }

    /// Quorum size.
    pub fn n(&self) -> u32 {
        self.members.len() as u32
    }

    /// The index (1-based) of `peer_id`, if it is a member.
    pub fn index_of(&self, peer_id: &PeerId) -> Option<u32> {
        self.members
            .iter()
            .position(|m| m.peer_id == *peer_id)
            .map(|p| p as u32 + 1)
    }

    /// Member `index` (1-based).
    pub fn member(&self, index: u32) -> Option<&Member> {
        self.members.get((index as usize).checked_sub(1)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> PeerId {
        libp2p::identity::Keypair::generate_ed25519()
            .public()
            .to_peer_id()
    }

    #[test]
    fn round_trips_and_checks() {
        let file = QuorumFile {
            threshold: 2,
            kind: Some("farmer".into()),
            members: (0..3)
                .map(|i| Member {
                    peer_id: peer(),
                    addr: format!("/ip4/127.0.0.1/tcp/{}", 7000 + i).parse().unwrap(),
                })
                .collect(),
        };
        let parsed = QuorumFile::parse(&file.to_toml()).unwrap();
        assert_eq!(parsed, file);
        assert_eq!(parsed.index_of(&file.members[2].peer_id), Some(3));
        assert!(matches!(
            QuorumFile::parse("threshold = 0"),
            Err(QuorumFileError::Threshold { threshold: 0, n: 0 })
        ));
        assert!(matches!(
            QuorumFile::parse("threshold = 1"),
            Err(QuorumFileError::Threshold { threshold: 1, n: 0 })
        ));
        let bad_kind = file.to_toml().replace("farmer", "Farmer!");
        assert!(matches!(
            QuorumFile::parse(&bad_kind),
            Err(QuorumFileError::Kind { .. })
        ));
        assert!(matches!(
            QuorumFile::parse(
                "threshold = 1\n[[member]]\npeer_id = \"x\"\naddr = \"/ip4/1.2.3.4\""
            ),
            Err(QuorumFileError::PeerId { index: 1, .. })
        ));
        let twice = file.to_toml().replace(
            &file.members[1].peer_id.to_string(),
            &file.members[0].peer_id.to_string(),
        );
        assert!(matches!(
            QuorumFile::parse(&twice),
            Err(QuorumFileError::Duplicate { index: 2 })
        ));
        assert!(matches!(
            QuorumFile::parse("garbage = ["),
            Err(QuorumFileError::Toml(_))
        ));
        let missing = QuorumFile::load(Path::new("/nonexistent/quorum.toml"));
        assert!(matches!(missing, Err(QuorumFileError::Read { .. })));
    }
}
