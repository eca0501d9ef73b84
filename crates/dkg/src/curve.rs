//! Group helpers shared by the crate's modules.

use group::Curve;

/// `points` in affine form, converted together: one field inversion for
/// all of them (Montgomery's trick) instead of one per point.
pub(crate) fn to_affine_all<C: Curve>(points: &[C]) -> Vec<C::AffineRepr>
where
    C::AffineRepr: Default + Copy,
{
    let mut affine = vec![C::AffineRepr::default(); points.len()];
    C::batch_normalize(points, &mut affine);
    affine
}
