//! Secret bytes: zeroized on drop, `[redacted]` under `Debug`.

use zeroize::{Zeroize, ZeroizeOnDrop};

/// A 32-byte secret (base keys, step keys, invite secrets).
#[derive(Clone, Zeroize, ZeroizeOnDrop, PartialEq, Eq)]
pub struct Secret32(pub(crate) [u8; 32]);

impl Secret32 {
    /// Wraps bytes.
    pub fn new(b: [u8; 32]) -> Self {
        Self(b)
    }

    /// Fresh random bytes.
    pub fn random(rng: &mut impl rand_core::CryptoRng) -> Self {
        let mut b = [0u8; 32];
        rng.fill_bytes(&mut b);
        Self(b)
    }

    /// The bytes; handle with care.
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for Secret32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret32([redacted])")
    }
}
