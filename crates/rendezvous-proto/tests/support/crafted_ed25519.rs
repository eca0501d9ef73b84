//! Ed25519 signatures crafted with the curve arithmetic itself: honest
//! ones, and the edge cases where verification rules differ (torsion
//! components in `R` or `A`, small-order keys and nonces, non-canonical
//! encodings of points and of `S`). Shared by the batch tests and the
//! record test vectors.

#![allow(dead_code)]

use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT as B, EIGHT_TORSION};
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use sha2::{Digest, Sha512};

/// The group order `l`, little-endian.
pub const L_BYTES: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10,
];

/// A scalar from a label (deterministic).
pub fn scalar(label: &[u8]) -> Scalar {
    wide(&Sha512::digest(label))
}

/// A 64-byte hash reduced mod `l`.
fn wide(hash: &[u8]) -> Scalar {
    let mut w = [0u8; 64];
    w.copy_from_slice(hash);
    Scalar::from_bytes_mod_order_wide(&w)
}

/// Ed25519's secret scalar of a 32-byte secret key (RFC 8032: the
/// clamped first half of SHA-512 of the seed).
pub fn secret_scalar(seed: &[u8]) -> Scalar {
    let h = Sha512::digest(seed);
    let mut a = [0u8; 32];
    a.copy_from_slice(&h[..32]);
    a[0] &= 248;
    a[31] &= 127;
    a[31] |= 64;
    Scalar::from_bytes_mod_order(a)
}

/// The challenge `k = SHA-512(R || A || M) mod l`, over the bytes given.
pub fn challenge(r: &[u8; 32], a: &[u8; 32], message: &[u8]) -> Scalar {
    let mut h = Sha512::new();
    h.update(r);
    h.update(a);
    h.update(message);
    wide(&h.finalize())
}

/// A signature `(R, S)` by the secret scalar `a` under the key bytes
/// `key` (which should encode `[a]B`, plus any torsion the caller chose),
/// with nonce point `[r]B + r_torsion`: `S = r + k a`. With no torsion
/// this is an ordinary Ed25519 signature.
pub fn sign(
    a: &Scalar,
    key: &[u8; 32],
    message: &[u8],
    r: &Scalar,
    r_torsion: &EdwardsPoint,
) -> [u8; 64] {
    let big_r = (r * B + r_torsion).compress().to_bytes();
    let s = r + challenge(&big_r, key, message) * a;
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(&big_r);
    sig[32..].copy_from_slice(s.as_bytes());
    sig
}

/// The key bytes of `[a]B + torsion`.
pub fn key(a: &Scalar, torsion: &EdwardsPoint) -> [u8; 32] {
    (a * B + torsion).compress().to_bytes()
}

/// Every encoding of a point of small order (order dividing 8): the 8
/// canonical ones, and the 6 non-canonical ones (a sign bit on `x = 0`,
/// `y + p` for `y` in {0, 1}), as in ZIP-215's and `ed25519-zebra`'s
/// test vectors.
pub fn small_order_encodings() -> Vec<[u8; 32]> {
    let mut out: Vec<[u8; 32]> = EIGHT_TORSION
        .iter()
        .map(|p| p.compress().to_bytes())
        .collect();
    // (0, 1) and (0, -1) with the sign bit set.
    let mut y1 = [0u8; 32];
    y1[0] = 1;
    y1[31] = 0x80;
    out.push(y1);
    let mut ym1 = [0xff; 32];
    ym1[0] = 0xec;
    out.push(ym1);
    // y + p for y = 0 and y = 1, with either sign bit.
    for low in [0xed, 0xee] {
        let mut e = [0xff; 32];
        e[0] = low;
        e[31] = 0x7f;
        out.push(e);
        e[31] = 0xff;
        out.push(e);
    }
    for e in &out {
        let p = CompressedEdwardsY(*e).decompress().expect("a point");
        assert!(p.is_small_order(), "{}", hex::encode(e));
    }
    out
}

/// 32 bytes that are not the encoding of any curve point.
pub fn not_a_point() -> [u8; 32] {
    (2u8..)
        .map(|y| {
            let mut e = [0u8; 32];
            e[0] = y;
            e
        })
        .find(|e| CompressedEdwardsY(*e).decompress().is_none())
        .expect("some y is not on the curve")
}

/// `S + l` as 32 bytes (a non-canonical `S`, when it fits).
pub fn s_plus_l(s: &[u8]) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    let mut carry = 0u16;
    for i in 0..32 {
        let v = u16::from(s[i]) + u16::from(L_BYTES[i]) + carry;
        out[i] = v as u8;
        carry = v >> 8;
    }
    (carry == 0).then_some(out)
}

/// `sig` with the low bit of byte `at` flipped.
fn flip(mut sig: [u8; 64], at: usize) -> [u8; 64] {
    sig[at] ^= 1;
    sig
}

/// One signature to check, with what the rules say of it.
#[derive(Clone, Debug)]
pub struct Crafted {
    /// What it is.
    pub name: String,
    /// The key bytes.
    pub key: [u8; 32],
    /// `R || S`.
    pub signature: [u8; 64],
    /// The signed bytes.
    pub message: Vec<u8>,
}

/// A pool of signatures over `message`: honest ones, ZIP-215-valid edge
/// cases, and invalid ones (every kind of defect), each named.
pub fn pool(message: &[u8]) -> Vec<Crafted> {
    let mut out = Vec::new();
    let mut push = |name: String, key: [u8; 32], signature: [u8; 64], message: &[u8]| {
        out.push(Crafted {
            name,
            key,
            signature,
            message: message.to_vec(),
        })
    };
    let zero = EdwardsPoint::default();
    for i in 0..4u8 {
        let a = scalar(&[b'a', i]);
        let r = scalar(&[b'r', i]);
        let honest_key = key(&a, &zero);
        let sig = sign(&a, &honest_key, message, &r, &zero);
        push(format!("honest {i}"), honest_key, sig, message);
        // Tampered: another message, a flipped bit of R, of S, of the key.
        push(
            format!("honest {i}, other message"),
            honest_key,
            sig,
            b"another message",
        );
        push(
            format!("honest {i}, R flipped"),
            honest_key,
            flip(sig, 3),
            message,
        );
        push(
            format!("honest {i}, S flipped"),
            honest_key,
            flip(sig, 40),
            message,
        );
        let mut other_key = honest_key;
        other_key[5] ^= 1;
        push(format!("honest {i}, key flipped"), other_key, sig, message);
        // Non-canonical S: S + l (same S mod l), and the top bits set.
        let mut s_big = sig;
        if let Some(s) = s_plus_l(&sig[32..]) {
            s_big[32..].copy_from_slice(&s);
            push(format!("honest {i}, S + l"), honest_key, s_big, message);
        }
        let mut s_top = sig;
        s_top[63] |= 0xe0;
        push(
            format!("honest {i}, S top bits"),
            honest_key,
            s_top,
            message,
        );
        // R or A not a point.
        let mut r_bad = sig;
        r_bad[..32].copy_from_slice(&not_a_point());
        push(
            format!("honest {i}, R not a point"),
            honest_key,
            r_bad,
            message,
        );
        push(
            format!("honest {i}, key not a point"),
            not_a_point(),
            sig,
            message,
        );
        // Torsion components (mixed-order points), made by the key's owner.
        for (t, torsion) in EIGHT_TORSION.iter().enumerate().skip(1) {
            let t_key = key(&a, torsion);
            push(
                format!("{i}: R with torsion {t}"),
                honest_key,
                sign(&a, &honest_key, message, &r, torsion),
                message,
            );
            push(
                format!("{i}: key with torsion {t}"),
                t_key,
                sign(&a, &t_key, message, &r, &zero),
                message,
            );
            let both = sign(
                &a,
                &t_key,
                message,
                &r,
                &EIGHT_TORSION[(t + i as usize) % 8],
            );
            push(
                format!("{i}: key and R with torsion {t}"),
                t_key,
                both,
                message,
            );
            let name = format!("{i}: key and R with torsion {t}, S flipped");
            push(name, t_key, flip(both, 40), message);
        }
    }
    // Small-order keys and nonces, S = 0 (valid under ZIP-215 for any
    // message), and S = 1 (never valid: [8]B is not the identity).
    let small = small_order_encodings();
    for (x, key_bytes) in small.iter().enumerate() {
        for (y, r_bytes) in small.iter().enumerate().step_by(3) {
            let mut sig = [0u8; 64];
            sig[..32].copy_from_slice(r_bytes);
            push(
                format!("small-order key {x}, R {y}, S = 0"),
                *key_bytes,
                sig,
                message,
            );
            sig[32] = 1;
            push(
                format!("small-order key {x}, R {y}, S = 1"),
                *key_bytes,
                sig,
                message,
            );
        }
    }
    out
}

/// Re-signs `envelope` with `keypair` (its own key's, Ed25519) so that
/// its `R` carries the torsion point `EIGHT_TORSION[t]`: valid under
/// ZIP-215's cofactored equation, refused by libp2p's cofactorless one
/// (for `t != 0`). Only the key's owner can make such a signature.
pub fn resign_with_torsion(
    envelope: &mut rendezvous_proto::envelope::PeerEnvelope,
    keypair: &libp2p_identity::Keypair,
    t: usize,
) {
    let ed = keypair
        .clone()
        .try_into_ed25519()
        .expect("an Ed25519 identity");
    let a = secret_scalar(ed.secret().as_ref());
    let key_bytes: [u8; 32] = envelope.key.as_slice().try_into().expect("32 bytes");
    assert_eq!(
        key(&a, &EdwardsPoint::default()),
        key_bytes,
        "the envelope's own key"
    );
    let nonce = scalar(&[&key_bytes[..], &[t as u8]].concat());
    envelope.signature = sign(
        &a,
        &key_bytes,
        &envelope.signing_bytes(),
        &nonce,
        &EIGHT_TORSION[t % 8],
    )
    .to_vec();
}
