//! The Joint-Feldman DKG (Pedersen's, with GJKR's complaints and the
//! drand/kyber phase structure), as a sans-IO state machine.
//!
//! Each member runs a [`DkgMember`]. Nothing here does I/O, reads a
//! clock or uses a global RNG: the caller passes `now` (milliseconds) and
//! an RNG, delivers messages, and sends what the member asks it to send.
//! Everything that reaches an output is ordered (`BTreeMap`, sorted
//! lists), so a run is reproducible from its RNG seeds and message order.
//!
//! Phases (deadlines `start + T`, `+ 2T`, `+ 3T`, `start` the end of the
//! hello round; each also ends as soon as nothing more can arrive for it):
//!
//! 0. **Hello** (runs started with [`DkgMember::with_hello`], which is how
//!    a quorum member runs them). Each member broadcasts a
//!    [`HelloMessage`]: the run's attempt number and 32 fresh random bytes,
//!    under the quorum's *base* session id. The round ends when every
//!    member's nonce is in, or after `T`; the run's session id is then
//!    [`SessionId::for_run`] of the base id, the attempt and every nonce
//!    received, so every run has a session id of its own and nothing of
//!    an earlier run (a delayed deal, a resent share) is taken for this
//!    one. A member that hears of a higher attempt moves to it, so members
//!    that retry a failed run at different times meet. Fewer than
//!    `threshold` nonces end the run at once: only their senders can be in
//!    this session. Messages that carry a run id before this member's
//!    round ended wait for it (four per member at most).
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
//! 3. **Justification.** Every verdict other than `Valid` with the hash of
//!    the dealer's deal is a complaint (a bad or missing share, a missing
//!    deal, another deal's hash). A dealer with complaints, fewer than
//!    `threshold`, broadcasts a [`JustificationMessage`] revealing the
//!    complainers' shares, and its deal too when a complainer lacks it or
//!    names another (as drand's resharing answers a missing deal).
//! 4. **Finish.** QUAL is every dealer whose deal (the one all responses
//!    name, or the revealed one) has a valid proof, with fewer than
//!    `threshold` complaints, each answered with a correct share (the
//!    rules and why they are deterministic: `finish.rs`). The member's
//!    secret share is the sum of QUAL's shares to it, the group
//!    [`PublicKeySet`] the coefficient-wise sum of QUAL's commitments;
//!    with the sorted QUAL and a transcript hash they form the
//!    [`DkgOutput`]. Fewer than `threshold` qualified dealers is a
//!    [`DkgError`], not a key; [`DkgMember::disqualified`] names the
//!    dealers left out and why, whatever the outcome.
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
//! using the key. In the same way, members whose hello rounds end with
//! different nonces (a member that sends its hello to some members only,
//! or one that starts after the others' round ended) get different
//! session ids: each side sees the other's messages as of another session,
//! and the side with fewer than `threshold` members fails its run and
//! retries. A complaint, on the other hand, true or false, cannot remove
//! an honest dealer: it answers every complaint (unless `threshold`
//! members complain, which a coalition below the threshold cannot make
//! happen), and the `QUAL >= threshold` rule keeps at least one honest
//! dealer in any key that is made.
//!
//! [`PublicKeySet`]: crate::PublicKeySet

mod config;
mod error;
mod finish;
mod member;
mod messages;
mod point;
mod proof;
pub mod reshare;
mod verify;
pub mod wire;

pub use config::{DkgConfig, SessionId, RUN_DOMAIN, SESSION_DOMAIN};
pub use error::{ConfigError, DkgError, MessageError, WireError};
pub use finish::{Disqualification, DkgOutput, RESHARE_TRANSCRIPT_DOMAIN, TRANSCRIPT_DOMAIN};
pub use member::{Destination, DkgMember, Phase, Transmit};
pub use messages::{
    DealMessage, DealerVerdict, Digest, DkgMessage, HelloMessage, JustificationMessage,
    MessageKind, ResponseMessage, ShareMessage, DEAL_HASH_DOMAIN,
};
pub use point::{CommitmentPoint, DealCommitments, G1_UNCOMPRESSED_BYTES};
pub use proof::{ProofOfKnowledge, POK_DOMAIN};
pub use reshare::{
    Participant, ReshareConfig, ReshareMember, ReshareOutput, RESHARE_SESSION_DOMAIN,
};
pub use wire::{MAX_MESSAGE_BYTES, WIRE_VERSION};
