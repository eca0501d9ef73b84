//! The Joint-Feldman DKG (being written).
