//! The Joint-Feldman DKG (Pedersen's, with GJKR's complaints and the
//! drand/kyber phase structure), as a sans-IO state machine.
//!
//! Each member runs a [`DkgMember`]. Nothing here does I/O, reads a
//! clock or uses a global RNG: the caller passes `now` (milliseconds) and
//! an RNG, delivers messages, and sends what the member asks it to send.
//! Everything that reaches an output is ordered (`BTreeMap`, sorted
//! lists), so a run is reproducible from its RNG seeds and message order.
//!
//! Phases (deadlines `start + T`, `+ 2T`, `+ 3T`; each also ends as soon as
//! nothing more can arrive for it):
//!
//! 1. **Deal.** Each member, as a dealer, draws a random polynomial of
//!    degree `threshold - 1`, broadcasts a [`DealMessage`] (Feldman
//!    commitments and a Schnorr [`ProofOfKnowledge`] of its constant term,
//!    bound to the session id and its index), and sends every member `j`
//!    a [`ShareMessage`] with `f(j)`, to `j` only. The shares travel in
//!    the clear inside the message: the node transport is encrypted and
//!    authenticated, so only `j` reads its share.
//! 2. **Response.** Each member checks every proof and every share
//!    (`f_d(j) * G1` against `PK_j` from dealer `d`'s commitments; all
//!    dealers in one batch) and broadcasts a [`ResponseMessage`]: one
//!    [`DealerVerdict`] per dealer, carrying the hash of the deal it
//!    received, so a dealer who showed different commitments to different
//!    members is caught. If all `n` responses are all-valid with the same
//!    hashes, the run finishes at once ("fast sync").
//! 3. **Justification.** A dealer with complaints broadcasts a
//!    [`JustificationMessage`] revealing the complainers' shares.
//! 4. **Finish.** QUAL is every dealer with a deal, a valid proof, the same
//!    hash at every responder, no report of a missing deal, and every
//!    complaint answered with a correct share. The member's secret share
//!    is the sum of QUAL's shares to it, the group [`PublicKeySet`] the
//!    coefficient-wise sum of QUAL's commitments; with the sorted QUAL and
//!    a transcript hash they form the [`DkgOutput`]. Fewer than
//!    `threshold` qualified dealers is a [`DkgError`], not a key.
//!
//! What this does not give: Joint-Feldman assumes a broadcast channel,
//! and over point-to-point links the hashes in responses catch a dealer
//! that equivocates its deal, but not a member that equivocates its
//! *response* or a dealer that sends different *justifications* to
//! different members. Those split honest members into groups with
//! different QUAL; the transcript hash differs between the groups, so
//! the node must compare transcript hashes (e.g. by requiring `threshold`
//! signatures over the key set, as the namespace record does) before
//! using the key. Likewise a member can get an honest dealer excluded by
//! reporting a missing or different deal; the `QUAL >= threshold` rule
//! keeps at least one honest dealer in any key that is made, so such
//! lies can deny service but not learn the key.
//!
//! [`PublicKeySet`]: crate::PublicKeySet

mod config;
mod error;
mod finish;
mod member;
mod messages;
mod proof;
mod verify;
pub mod wire;

pub use config::{DkgConfig, SessionId, SESSION_DOMAIN};
pub use error::{ConfigError, DkgError, MessageError, WireError};
pub use finish::{Disqualification, DkgOutput, TRANSCRIPT_DOMAIN};
pub use member::{Destination, DkgMember, Phase, Transmit};
pub use messages::{
    DealMessage, DealerVerdict, Digest, DkgMessage, JustificationMessage, MessageKind,
    ResponseMessage, ShareMessage, DEAL_HASH_DOMAIN,
};
pub use proof::{ProofOfKnowledge, POK_DOMAIN};
pub use wire::{MAX_MESSAGE_BYTES, WIRE_VERSION};
