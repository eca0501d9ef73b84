//! Secret polynomials over the scalar field.

use std::fmt;

use blstrs::{G1Projective, Scalar};
use ff::Field;
use rand_core::{CryptoRng, RngCore};

use crate::curve::to_affine_all;
use crate::public_key_set::PublicKeySet;

/// A secret polynomial `f(x) = a_0 + a_1 x + .. + a_{k-1} x^{k-1}` of
/// degree `threshold - 1`. `f(0)` is the secret, `f(i)` is member `i`'s
/// share.
///
/// Coefficients are overwritten on drop and never printed.
#[derive(Clone)]
pub struct Polynomial {
    coefficients: Vec<Scalar>,
}

impl Polynomial {
    /// A uniformly random polynomial for the given threshold (>= 1).
    ///
    /// Coefficients are drawn non-zero: a zero constant term would make the
    /// commitment the identity, which decoders refuse.
    pub fn random<R: RngCore + CryptoRng>(threshold: u32, rng: &mut R) -> Self {
        let coefficients = (0..threshold.max(1))
            .map(|_| loop {
                let s = Scalar::random(&mut *rng);
                if !bool::from(s.is_zero()) {
                    break s;
                }
            })
            .collect();
        Self { coefficients }
    }

    /// A random polynomial for the given threshold (>= 1) whose secret
    /// `f(0)` is `secret`: how a resharing dealer re-deals its share.
    /// The other coefficients are drawn as in [`Polynomial::random`].
    pub fn random_with_secret<R: RngCore + CryptoRng>(
        secret: &Scalar,
        threshold: u32,
        rng: &mut R,
    ) -> Self {
        let mut polynomial = Self::random(threshold, rng);
        if let Some(constant) = polynomial.coefficients.first_mut() {
            *constant = *secret;
        }
        polynomial
    }

    /// Builds a polynomial from its coefficients, lowest degree first.
    pub fn from_coefficients(coefficients: Vec<Scalar>) -> Self {
        Self { coefficients }
    }

    /// The number of coefficients (the threshold).
    pub fn threshold(&self) -> u32 {
        self.coefficients.len() as u32
    }

    /// `f(x)` by Horner's rule.
    pub fn evaluate(&self, x: u32) -> Scalar {
        let x = Scalar::from(u64::from(x));
        self.coefficients
            .iter()
            .rev()
            .fold(Scalar::ZERO, |acc, c| acc * x + c)
    }

    /// The secret `f(0)`.
    pub fn secret(&self) -> Scalar {
        self.coefficients.first().copied().unwrap_or(Scalar::ZERO)
    }

    /// The Feldman commitments `a_j * G1`.
    ///
    /// Returns `None` only if a coefficient is zero (never for
    /// [`Polynomial::random`]).
    pub fn commitments(&self) -> Option<PublicKeySet> {
        // Fixed-base multiplications (see `fixed_base`), one shared
        // inversion for all the affine conversions.
        let projective: Vec<G1Projective> = self
            .coefficients
            .iter()
            .map(crate::fixed_base::generator_mul)
            .collect();
        let points = to_affine_all(&projective)
            .into_iter()
            .map(|a| crate::keys::PublicKey::from_point(a.into()).ok())
            .collect::<Option<Vec<_>>>()?;
        PublicKeySet::new(points).ok()
    }
}

impl fmt::Debug for Polynomial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Polynomial {{ threshold: {}, coefficients: <redacted> }}",
            self.coefficients.len()
        )
    }
}

impl Drop for Polynomial {
    fn drop(&mut self) {
        crate::wipe::scalars(&mut self.coefficients);
    }
}
