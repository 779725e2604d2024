//! Encryption at rest of the signing keys' private halves.
//!
//! Construction: HKDF-SHA256 (RFC 5869) turns `GATEHOUSE_KEY_SECRET` (or `auth.keys.secret_file`)
//! into a 256-bit AES-GCM key, with a fixed salt and the info `gatehouse signing key v1`; each
//! private key is sealed with AES-256-GCM under a fresh random 96-bit nonce, with its `kid` as
//! associated data. Why this one:
//! - aws-lc-rs is already linked (rustls and jsonwebtoken use it), so no new crypto crate and
//!   one implementation to keep patched; AES-GCM runs on AES-NI there.
//! - HKDF, not a password hash: the secret is required to be ≥ 32 random bytes, so there is
//!   nothing to stretch, and deriving (not using the secret directly) keeps the key bound to this
//!   one purpose, so the same secret reused elsewhere yields an unrelated key.
//! - A random nonce per key is safe here: a few keys per year are sealed under one key, far from
//!   the 2^32 messages where random 96-bit nonces start to risk a collision.
//! - The `kid` as associated data: a sealed key copied onto another row (a database edit
//!   swapping which public key is advertised for which private key) fails to open.
//! - The tag makes a wrong secret a clear error (the first key fails to open), never garbage.
//!
//! Stored form: `v1.` + base64url(nonce ‖ ciphertext ‖ tag), so a later construction can be
//! told apart.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use aws_lc_rs::hkdf::{Salt, HKDF_SHA256};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::engine::{general_purpose::URL_SAFE_NO_PAD, Engine};

/// Shortest key secret accepted: 256 bits, the strength of the key derived from it.
pub const MIN_KEY_SECRET_BYTES: usize = 32;

/// Fixed salt (RFC 5869 §3.1 allows a non-secret constant); it only separates this
/// derivation from any other use of HKDF with the same secret.
const SALT: &[u8] = b"gatehouse/signing-keys";
/// The derivation's purpose and version.
const INFO: &[u8] = b"gatehouse signing key v1";
/// Marks the stored format.
const PREFIX: &str = "v1.";

/// A sealed key could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// Not this format, or not base64.
    #[error("the sealed key is malformed")]
    Malformed,
    /// The tag did not verify: another secret sealed it, or the row was altered or moved.
    #[error("the sealed key does not open with this secret (or it was altered)")]
    WrongSecret,
}

/// The key that seals and opens private keys. Holds no copy of the secret.
pub struct Sealer {
    key: LessSafeKey,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    /// The sealing key derived from `secret` (its length is checked by the caller).
    pub fn new(secret: &[u8]) -> Self {
        let prk = Salt::new(HKDF_SHA256, SALT).extract(secret);
        let okm = prk
            .expand(&[INFO], &AES_256_GCM)
            // Fails only for an output longer than 255 hash lengths; 32 bytes never is.
            .expect("HKDF-SHA256 yields 32 bytes");
        Sealer {
            key: LessSafeKey::new(UnboundKey::from(okm)),
        }
    }

    /// `plain` sealed for the key `kid`, in the stored form.
    pub fn seal(&self, kid: &str, plain: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .expect("the system random source works");
        let mut sealed = plain.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(kid.as_bytes()),
                &mut sealed,
            )
            .expect("AES-GCM seals any key-sized input");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(out))
    }

    /// The plain bytes of `sealed`, if this secret sealed it for `kid`.
    pub fn open(&self, kid: &str, sealed: &str) -> Result<Vec<u8>, SealError> {
        let text = sealed.strip_prefix(PREFIX).ok_or(SealError::Malformed)?;
        let mut bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| SealError::Malformed)?;
        if bytes.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(SealError::Malformed);
        }
        let mut ciphertext = bytes.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&bytes).map_err(|_| SealError::Malformed)?;
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(kid.as_bytes()), &mut ciphertext)
            .map_err(|_| SealError::WrongSecret)?;
        Ok(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn a_sealed_key_opens_with_the_same_secret_and_kid() {
        let sealer = Sealer::new(SECRET);
        let sealed = sealer.seal("kid-1", b"private bytes");
        assert!(sealed.starts_with("v1."));
        assert_eq!(sealer.open("kid-1", &sealed).unwrap(), b"private bytes");
        // A fresh nonce each time: the same key sealed twice never looks the same.
        assert_ne!(sealed, sealer.seal("kid-1", b"private bytes"));
    }

    #[test]
    fn the_plain_bytes_do_not_appear_in_the_sealed_form() {
        let sealer = Sealer::new(SECRET);
        let plain = [0x42u8; 48];
        let sealed = sealer.seal("kid-1", &plain);
        let raw = URL_SAFE_NO_PAD.decode(&sealed[3..]).unwrap();
        assert!(!raw.windows(8).any(|w| w == &plain[..8]));
    }

    #[test]
    fn another_secret_cannot_open_it() {
        let sealed = Sealer::new(SECRET).seal("kid-1", b"private bytes");
        let other = Sealer::new(b"another secret of thirty-two byt");
        assert_eq!(other.open("kid-1", &sealed), Err(SealError::WrongSecret));
    }

    #[test]
    fn a_sealed_key_moved_to_another_kid_does_not_open() {
        let sealer = Sealer::new(SECRET);
        let sealed = sealer.seal("kid-1", b"private bytes");
        assert_eq!(sealer.open("kid-2", &sealed), Err(SealError::WrongSecret));
    }

    #[test]
    fn any_altered_byte_is_refused() {
        let sealer = Sealer::new(SECRET);
        let sealed = sealer.seal("kid-1", b"private bytes");
        let mut raw = URL_SAFE_NO_PAD.decode(&sealed[3..]).unwrap();
        for i in 0..raw.len() {
            raw[i] ^= 1;
            let tampered = format!("v1.{}", URL_SAFE_NO_PAD.encode(&raw));
            assert_eq!(
                sealer.open("kid-1", &tampered),
                Err(SealError::WrongSecret),
                "byte {i}"
            );
            raw[i] ^= 1;
        }
    }

    #[test]
    fn malformed_text_is_malformed() {
        let sealer = Sealer::new(SECRET);
        for text in ["", "v2.AAAA", "v1.***", "v1.AAAA"] {
            assert_eq!(sealer.open("k", text), Err(SealError::Malformed), "{text}");
        }
    }
}
