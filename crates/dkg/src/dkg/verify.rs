//! Batch verification of linear relations in G1.
//!
//! Both checks of the deal phase are linear relations over G1: a share
//! `s` matches its commitments iff `s * G = PK_j`, and a proof of
//! knowledge verifies iff `z * G = c * C_0 + R`. A member checks one
//! relation per dealer for each, so it checks them all at once: with
//! random non-zero 64-bit coefficients `rho_k`, `(sum rho_k g_k) * G`
//! against multi-exponentiations of the right-hand sides (on the calling
//! thread). A false relation makes the batch fail except with probability
//! about 2^-64 (the coefficients are the member's own secret randomness, as
//! in BLS batch verification); then each relation is checked alone to name
//! the culprits (only a faulty dealer pays for that).
//!
//! Relations are decided on G1 components: `lhs - rhs` must be a torsion
//! point, tested as `h_eff * (lhs - rhs) == 0` ([`is_torsion`]). The
//! points come from DKG messages without subgroup checks (see
//! [`crate::dkg`] for why that is sound), and for points outside G1 a
//! whole-curve equality cannot be batched: a difference `T` of order 3
//! survives `rho * T` only when 3 does not divide `rho`, so a random
//! combination would pass a false relation with probability 1/3, and two
//! honest members could judge one broadcast proof differently. The G1
//! component, by contrast, is decided exactly by one batch (error
//! probability about 2^-64) and by the individual check, so every member reaches
//! the same verdict on the same data. (blst's GLV scalar multiplication
//! also gets only the G1 component right for such points.)

use blstrs::{G1Projective, Scalar};
use ff::Field;
use group::Group;
use rand_core::RngCore;

use super::point::is_torsion;
use crate::blst_raw::g1_msm;
use crate::curve::to_affine_all;

/// The relation `g * G1 = sum(s_i * P_i) + sum(Q_j)`, on G1 components.
pub(crate) struct Relation {
    /// The coefficient of the generator.
    pub(crate) g: Scalar,
    /// Points with a scalar coefficient.
    pub(crate) scaled: Vec<(G1Projective, Scalar)>,
    /// Points with coefficient one.
    pub(crate) plain: Vec<G1Projective>,
}

impl Relation {
    /// `s * G1 = point`: a share against its public key share.
    pub(crate) fn share(share: &Scalar, public: G1Projective) -> Self {
        Self {
            g: *share,
            scaled: Vec::new(),
            plain: vec![public],
        }
    }

    /// Checks this relation alone (on G1 components).
    pub(crate) fn holds(&self) -> bool {
        let lhs = crate::fixed_base::generator_mul(&self.g);
        let rhs = self
            .scaled
            .iter()
            .map(|(p, s)| p * s)
            .chain(self.plain.iter().copied())
            .fold(G1Projective::identity(), |acc, p| acc + p);
        is_torsion(&(lhs - rhs))
    }
}

/// A share relation's generator coefficient is a secret share: overwrite
/// it when the relation goes (`Scalar` has no `Zeroize`).
impl Drop for Relation {
    fn drop(&mut self) {
        crate::wipe::scalar(&mut self.g);
    }
}

/// Whether each relation holds, in order.
///
/// One batch check when all hold (the honest case); individual checks
/// otherwise. `rng` only has to be unpredictable to whoever chose the
/// relations.
pub(crate) fn check_relations<R: RngCore>(relations: &[Relation], rng: &mut R) -> Vec<bool> {
    if relations.len() <= 1 {
        return relations.iter().map(Relation::holds).collect();
    }
    if batch_holds(relations, rng) {
        return vec![true; relations.len()];
    }
    relations.iter().map(Relation::holds).collect()
}

fn batch_holds<R: RngCore>(relations: &[Relation], rng: &mut R) -> bool {
    // Plain points get the bare 64-bit coefficient (a quarter of the work
    // of a full scalar in the multi-exponentiation); scaled points need
    // `rho * s`, a full scalar.
    let mut short_points = Vec::new();
    let mut short_scalars: Vec<[u8; 8]> = Vec::new();
    let mut long_points = Vec::new();
    let mut long_scalars: Vec<[u8; 32]> = Vec::new();
    let mut g = Scalar::ZERO;
    for relation in relations {
        let rho = rng.next_u64() | 1;
        let rho_scalar = Scalar::from(rho);
        g += rho_scalar * relation.g;
        for (p, s) in &relation.scaled {
            long_points.push(*p);
            long_scalars.push((rho_scalar * s).to_bytes_le());
        }
        for p in &relation.plain {
            short_points.push(*p);
            short_scalars.push(rho.to_le_bytes());
        }
    }
    let lhs = crate::fixed_base::generator_mul(&g);
    crate::wipe::scalar(&mut g);
    let rhs = g1_msm(&to_affine_all(&short_points), &short_scalars, 64)
        + g1_msm(&to_affine_all(&long_points), &long_scalars, 255);
    is_torsion(&(lhs - rhs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn batch_names_exactly_the_false_relations() {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let g = G1Projective::generator();
        let mut relations: Vec<Relation> = (1..=6u64)
            .map(|i| Relation::share(&Scalar::from(i), g * Scalar::from(i)))
            .collect();
        assert_eq!(check_relations(&relations, &mut rng), vec![true; 6]);
        // Two errors that cancel in an unweighted sum are still caught.
        relations[1] = Relation::share(&Scalar::from(2u64), g * Scalar::from(3u64));
        relations[4] = Relation::share(&Scalar::from(5u64), g * Scalar::from(4u64));
        assert_eq!(
            check_relations(&relations, &mut rng),
            vec![true, false, true, true, false, true]
        );
        assert!(check_relations(&[], &mut rng).is_empty());
    }

    /// A torsion difference does not fail a relation, in a batch or
    /// alone, whatever the coefficients: verdicts do not depend on the
    /// member's randomness. A difference with a G1 component always fails.
    #[test]
    fn relations_are_decided_on_g1_components() {
        use crate::dkg::point::testing::{off_subgroup_point, torsion_point};
        let g = G1Projective::generator();
        let relations = |tainted: G1Projective| -> Vec<Relation> {
            (1..=5u64)
                .map(|i| {
                    let public = g * Scalar::from(i);
                    let public = if i == 3 { public + tainted } else { public };
                    Relation::share(&Scalar::from(i), public)
                })
                .collect()
        };
        let torsion = torsion_point();
        let off = off_subgroup_point();
        for seed in 0..24 {
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let with_torsion = relations(torsion);
            assert!(with_torsion[2].holds());
            assert_eq!(check_relations(&with_torsion, &mut rng), vec![true; 5]);
            let with_off = relations(off);
            assert!(!with_off[2].holds());
            assert_eq!(
                check_relations(&with_off, &mut rng),
                vec![true, true, false, true, true]
            );
        }
    }
}
