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
//!
//! The file of a later epoch (`rdht quorum --quorum next.toml`) names the
//! epoch, how it follows the previous one, and the previous epoch's
//! members and threshold:
//!
//! ```toml
//! epoch = 1
//! mode = "reshare"         # or "rotate"
//! threshold = 3
//! kind = "farmer"
//! [[member]]               # the members of epoch 1
//! peer_id = "12D3KooW..."
//! addr = "/ip4/127.0.0.1/tcp/7001"
//! [previous]
//! threshold = 3
//! quorum_key = "a1b2..."   # optional: what a newcomer checks epoch 0 by
//! [[previous.member]]      # the members of epoch 0
//! peer_id = "12D3KooW..."
//! addr = "/ip4/127.0.0.1/tcp/7000"
//! ```
//!
//! `reshare` keeps the quorum key (the previous members reshare it to the
//! new ones); `rotate` runs a new DKG and hands the old key over to the new
//! one. `epoch` defaults to 0, which takes no `mode` and no `previous`;
//! any later epoch needs both. A member that joins at a resharing has no
//! key share to learn the quorum key from: it needs `quorum_key` (hex),
//! and takes the previous epoch's key set from the namespace record the
//! rendezvous nodes hold, verified under that key.

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
    /// `[previous] quorum_key` is not a 48-byte hex key.
    #[error("previous.quorum_key: {0}")]
    QuorumKey(String),
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
    /// `epoch`, `mode` and `[previous]` do not go together: a later epoch
    /// needs both `mode` and `[previous]`, epoch 0 takes neither.
    #[error("{0}")]
    Transition(&'static str),
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
    /// The epoch these members and this threshold are for (0: the first).
    pub epoch: u64,
    /// Shares needed to sign.
    pub threshold: u32,
    /// Optional kind label of the namespace.
    pub kind: Option<String>,
    /// The members, index order (entry `i - 1` is member `i`).
    pub members: Vec<Member>,
    /// For a later epoch: how it follows the previous one.
    pub transition: Option<Transition>,
}

/// How epoch `e + 1` follows epoch `e`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The previous members reshare the key: the quorum key stays.
    Reshare,
    /// A new DKG makes a new key, and the previous members sign a
    /// handover from the old key to it.
    Rotate,
}

/// The previous epoch, as a later epoch's file names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// How the new epoch comes about.
    pub mode: Mode,
    /// The previous epoch's threshold.
    pub previous_threshold: u32,
    /// The previous epoch's members, index order.
    pub previous: Vec<Member>,
    /// The quorum key (the same in both epochs of a resharing), when the
    /// file names it.
    pub quorum_key: Option<rendezvous_proto::QuorumKey>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    epoch: u64,
    mode: Option<Mode>,
    threshold: u32,
    kind: Option<String>,
    #[serde(default)]
    member: Vec<RawMember>,
    previous: Option<RawPrevious>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrevious {
    threshold: u32,
    quorum_key: Option<String>,
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
        let members = parse_members(&raw.member, raw.threshold)?;
        let transition = match (raw.epoch, raw.mode, raw.previous) {
            (0, None, None) => None,
            (0, _, _) => {
                return Err(QuorumFileError::Transition(
                    "epoch 0 takes no `mode` and no [previous]",
                ))
            }
            (_, Some(mode), Some(previous)) => Some(Transition {
                mode,
                previous_threshold: previous.threshold,
                previous: parse_members(&previous.member, previous.threshold)?,
                quorum_key: previous
                    .quorum_key
                    .as_deref()
                    .map(|k| {
                        k.parse()
                            .map_err(|e| QuorumFileError::QuorumKey(format!("{e}")))
                    })
                    .transpose()?,
            }),
            (_, None, _) => {
                return Err(QuorumFileError::Transition(
                    "a later epoch needs `mode = \"reshare\"` or `mode = \"rotate\"`",
                ))
            }
            (_, Some(_), None) => {
                return Err(QuorumFileError::Transition(
                    "a later epoch needs the previous epoch's [previous] threshold and members",
                ))
            }
        };
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
            epoch: raw.epoch,
            threshold: raw.threshold,
            kind: raw.kind,
            members,
            transition,
        })
    }

    /// The file of a first epoch (epoch 0): these members and threshold.
    pub fn first(threshold: u32, kind: Option<String>, members: Vec<Member>) -> Self {
        Self {
            epoch: 0,
            threshold,
            kind,
            members,
            transition: None,
        }
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
        let mut out = String::new();
        if let Some(t) = &self.transition {
            let mode = match t.mode {
                Mode::Reshare => "reshare",
                Mode::Rotate => "rotate",
            };
            out.push_str(&format!("epoch = {}\nmode = \"{mode}\"\n", self.epoch));
        }
        out.push_str(&format!("threshold = {}\n", self.threshold));
        if let Some(kind) = &self.kind {
            out.push_str(&format!("kind = {kind:?}\n"));
        }
        for m in &self.members {
            out.push_str(&format!(
                "\n[[member]]\npeer_id = \"{}\"\naddr = \"{}\"\n",
                m.peer_id, m.addr
            ));
        }
        if let Some(t) = &self.transition {
            out.push_str(&format!(
                "\n[previous]\nthreshold = {}\n",
                t.previous_threshold
            ));
            if let Some(key) = &t.quorum_key {
                out.push_str(&format!("quorum_key = \"{key}\"\n"));
            }
            for m in &t.previous {
                out.push_str(&format!(
                    "\n[[previous.member]]\npeer_id = \"{}\"\naddr = \"{}\"\n",
                    m.peer_id, m.addr
                ));
            }
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

    /// Where the member `peer_id` of either epoch listens.
    pub fn address_of(&self, peer_id: &PeerId) -> Option<&Multiaddr> {
        let previous = self.transition.iter().flat_map(|t| &t.previous);
        self.members
            .iter()
            .chain(previous)
            .find(|m| m.peer_id == *peer_id)
            .map(|m| &m.addr)
    }

    /// Member `index` (1-based).
    pub fn member(&self, index: u32) -> Option<&Member> {
        self.members.get((index as usize).checked_sub(1)?)
    }
}

/// Parses a member list: PeerIds and addresses parse, no PeerId twice,
/// `1 <= threshold <= n`.
fn parse_members(raw: &[RawMember], threshold: u32) -> Result<Vec<Member>, QuorumFileError> {
    let mut members = Vec::with_capacity(raw.len());
    for (position, m) in raw.iter().enumerate() {
        let index = position + 1;
        let peer_id: PeerId = m
            .peer_id
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
    if threshold == 0 || u64::from(threshold) > n {
        return Err(QuorumFileError::Threshold { threshold, n });
    }
    Ok(members)
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
            epoch: 0,
            threshold: 2,
            kind: Some("farmer".into()),
            members: members(3),
            transition: None,
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

    fn members(n: u16) -> Vec<Member> {
        (0..n)
            .map(|i| Member {
                peer_id: peer(),
                addr: format!("/ip4/127.0.0.1/tcp/{}", 7000 + i).parse().unwrap(),
            })
            .collect()
    }

    /// A later epoch's file names the mode and the previous epoch, round
    /// trips, and refuses the combinations that cannot be run.
    #[test]
    fn epochs_a_later_epoch_names_its_mode_and_previous_members() {
        for mode in [Mode::Reshare, Mode::Rotate] {
            let file = QuorumFile {
                epoch: 1,
                threshold: 3,
                kind: Some("farmer".into()),
                members: members(4),
                transition: Some(Transition {
                    mode,
                    previous_threshold: 2,
                    previous: members(3),
                    quorum_key: (mode == Mode::Reshare)
                        .then_some(rendezvous_proto::QuorumKey([0xa5; 48])),
                }),
            };
            let text = file.to_toml();
            assert_eq!(QuorumFile::parse(&text).unwrap(), file);
            let no_mode = text
                .replace("mode = \"reshare\"\n", "")
                .replace("mode = \"rotate\"\n", "");
            assert!(matches!(
                QuorumFile::parse(&no_mode),
                Err(QuorumFileError::Transition(_))
            ));
            let epoch_zero = text.replace("epoch = 1", "epoch = 0");
            assert!(matches!(
                QuorumFile::parse(&epoch_zero),
                Err(QuorumFileError::Transition(_))
            ));
            let bad_previous =
                text.replace("[previous]\nthreshold = 2", "[previous]\nthreshold = 4");
            assert!(matches!(
                QuorumFile::parse(&bad_previous),
                Err(QuorumFileError::Threshold { threshold: 4, n: 3 })
            ));
        }
        let no_previous = "epoch = 2\nmode = \"reshare\"\nthreshold = 1\n[[member]]\npeer_id = \"12D3KooWAbc\"\naddr = \"/ip4/1.2.3.4\"";
        assert!(QuorumFile::parse(no_previous).is_err());
        assert!(matches!(
            QuorumFile::parse("epoch = 1\nmode = \"sideways\"\nthreshold = 1"),
            Err(QuorumFileError::Toml(_))
        ));
    }
}
