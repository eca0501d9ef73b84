//! Hex helpers shared by the serde implementations.

use crate::error::DecodeError;

/// Decodes hex (with or without a `0x` prefix) into exactly `N` bytes,
/// checking the length before decoding so hostile input allocates nothing.
pub(crate) fn hex_to_array<const N: usize>(s: &str) -> Result<[u8; N], DecodeError> {
    let s = s.strip_prefix("0x").unwrap_or(s);
    if s.len() != 2 * N {
        return Err(DecodeError::Length {
            expected: N,
            got: s.len() / 2,
        });
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).map_err(|_| DecodeError::Hex)?;
    Ok(out)
}

/// Implements `Serialize`/`Deserialize` as a hex string, `Display` as hex
/// and `FromStr` from hex for a type with `to_bytes`/`from_bytes`.
macro_rules! hex_serde {
    ($ty:ty, $len:expr) => {
        impl $ty {
            /// Lowercase hex of the compressed encoding.
            pub fn to_hex(&self) -> String {
                hex::encode(self.to_bytes())
            }

            /// Decodes from hex (optionally `0x`-prefixed), with every check of
            /// [`Self::from_bytes`].
            pub fn from_hex(s: &str) -> Result<Self, $crate::error::DecodeError> {
                let bytes = $crate::encoding::hex_to_array::<{ $len }>(s)?;
                Self::from_bytes(&bytes)
            }
        }

        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str> as serde::Deserialize>::deserialize(d)?;
                Self::from_hex(&s).map_err(serde::de::Error::custom)
            }
        }

        impl std::str::FromStr for $ty {
            type Err = $crate::error::DecodeError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::from_hex(s)
            }
        }
    };
}
pub(crate) use hex_serde;
