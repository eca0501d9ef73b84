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
//! # Deferred subgroup checks
//!
//! Deal points (commitments `C_k` and the proof's `R`) are decoded on the
//! curve but not subgroup-checked ([`CommitmentPoint`],
//! [`DealCommitments`]). Every point of `E(Fp)` is uniquely `P_1 + T`,
//! `P_1` in G1 (prime order `r`) and `T` a torsion point (order dividing
//! the cofactor, coprime to `r`); write `A_k` for the G1 component of
//! `C_k`. The members then:
//!
//! - decide every relation (share `s * G = sum_k j^k C_k`, the same for
//!   a revealed share, proof `z * G = R + c * C_0`) on G1 components:
//!   the difference of the two sides must be a torsion point, tested as
//!   `h_eff * (lhs - rhs) == 0` with `h_eff = 1 - x` (hash-to-curve's G1
//!   cofactor clearing, which kills every torsion point and is injective
//!   on G1), in the batch and in the individual checks alike. A share
//!   relation therefore holds iff `s * G = sum_k j^k A_k`: exactly the
//!   Feldman check of the dealer's G1 polynomial. A batch (random
//!   non-zero 64-bit coefficients) passes a false relation with
//!   probability at most 2^-64, and a failed batch falls back to exact
//!   individual checks, so every member holding the same data reaches the
//!   same verdict. Whole-curve equalities could
//!   not be batched so: a random coefficient cancels a 3-torsion
//!   difference one time in three, and two members could then judge one
//!   broadcast proof differently. (blst's GLV scalar multiplication also
//!   gets only the G1 component of `c * C_0` right when `C_0` is outside
//!   G1.)
//! - sum QUAL's commitments (`S_k = sum_d C_{d,k}`) and subgroup-check
//!   the `threshold` sums, the only points that leave the DKG: they become
//!   the [`PublicKeySet`] of the [`KeyShare`](crate::KeyShare), whose keys
//!   are all in G1 and not the identity.
//! - if a sum is outside G1, fall back: subgroup-check every QUAL dealer's
//!   commitments and `R`, disqualify those with a point outside G1
//!   ([`Disqualification::NotInSubgroup`]), and sum again (points that
//!   are all checked now; the sums are checked again anyway), failing with
//!   [`DkgError::QualTooSmall`] if fewer than `threshold` dealers remain.
//!
//! Why this is sound:
//!
//! - *The key set is in G1*: it is checked.
//! - *Shares match it.* Member `j` accepts dealer `d`'s share `s_d` iff
//!   `s_d * G = sum_k j^k A_{d,k}`. If every `S_k` is in G1, the torsion
//!   components cancel in each sum, `S_k = sum_d A_{d,k}`, so
//!   `PK_j = sum_k j^k S_k = (sum_d s_d) * G`: the summed share matches
//!   the key set, as with checked points. So torsion in a dealer's
//!   commitments either cancels in the sums (colluding dealers; the key is
//!   then the sum of the G1 components, which every accepted share
//!   matches) or leaves a sum outside G1 and triggers the fallback, which
//!   removes that dealer. It never makes an honest member complain, nor
//!   accept a share that does not match the G1 polynomial.
//! - *Rogue keys.* The proof's G1 component `z * G = R_1 + c * A_0`, with
//!   `c` hashing the full encodings of `C_0` and `R`, is a Schnorr proof
//!   of knowledge of `a_0` for `A_0 = a_0 * G`: it binds the G1 component
//!   of `C_0`, which is all of `C_0` that can reach a key.
//! - *Secrecy* is Joint-Feldman's: honest dealers' points are in G1, and a
//!   torsion component can at most get its own dealer excluded.
//! - *Agreement.* Whether the fallback runs depends only on QUAL and the
//!   commitments (agreed through the deal hashes), and it checks only
//!   broadcast points, so honest members that agree on QUAL before it
//!   agree after it. Honest dealers' points are in G1: the fallback never
//!   excludes an honest dealer.
//!
//! Cost, for one member of `n = 64`, `threshold = 43` (63 deals of 44
//! points), measured here: decoding the 2,772 points would take about
//! 164 ms with a decompression and a subgroup check each (59 us a point),
//! 41 ms with decompression alone (15 us a point, blst's square root);
//! deals therefore carry them uncompressed (wire version 2), and the
//! curve equation alone takes 1.3 ms for all of them. The 43 checks of
//! the sums add about 2.5 ms to the finish. The fallback costs the 2,772 checks back (one run's worth
//! of the old decoding), and only runs when a dealer sent points outside
//! G1.
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
mod point;
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
pub use point::{CommitmentPoint, DealCommitments, G1_UNCOMPRESSED_BYTES};
pub use proof::{ProofOfKnowledge, POK_DOMAIN};
pub use wire::{MAX_MESSAGE_BYTES, WIRE_VERSION};
