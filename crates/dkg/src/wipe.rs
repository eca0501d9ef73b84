//! Overwriting secret scalars so that the store cannot be optimised away.
//!
//! `blstrs::Scalar` does not implement `Zeroize`, and a plain
//! `*s = Scalar::ZERO` before a value goes out of scope is a dead store
//! the optimiser may remove (a compiler fence or `black_box` does not
//! forbid that). A volatile write may not be removed: it is what
//! `zeroize` itself does for the types it supports, done here for
//! `Scalar`, which `zeroize`'s safe API cannot reach.
//!
//! Limitation: `Scalar` is `Copy`, so copies made by moves and by
//! arithmetic (registers, temporaries, callee frames) are not reached;
//! this wipes the places the crate keeps secrets in.

// The crate's second audited `unsafe` (after `blst_raw`): one volatile
// write of a valid value through an exclusive reference.
#![allow(unsafe_code)]

use std::sync::atomic::{compiler_fence, Ordering};

use blstrs::Scalar;
use ff::Field;

/// Overwrites `s` with zero; the write is not removed as dead.
pub(crate) fn scalar(s: &mut Scalar) {
    // SAFETY: `s` is an exclusive reference, so the pointer is valid,
    // aligned and unaliased for the write; `Scalar` is `Copy` (no drop
    // glue skipped) and `Scalar::ZERO` is a valid value of it.
    unsafe { std::ptr::write_volatile(s, Scalar::ZERO) };
    compiler_fence(Ordering::SeqCst);
}

/// Overwrites every scalar in `s` with zero (see [`scalar`]).
pub(crate) fn scalars(s: &mut [Scalar]) {
    for x in s {
        scalar(x);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_on_disk_wiped_scalars_are_zero() {
        let mut one = Scalar::from(7u64);
        scalar(&mut one);
        assert_eq!(one, Scalar::ZERO);
        let mut many = [Scalar::from(1u64), Scalar::from(2u64), -Scalar::ONE];
        scalars(&mut many);
        assert!(many.iter().all(|s| *s == Scalar::ZERO));
    }
}
