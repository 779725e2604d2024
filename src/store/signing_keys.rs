//! Signing keys as the store holds them: public half in the clear, private half sealed by
//! `auth::sealing` (the store never sees it unsealed, and never needs to).

/// One row of `signing_keys`.
#[derive(Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredKey {
    /// RFC 7638 thumbprint of the public key; the JWT header's `kid`.
    pub kid: String,
    /// Order of creation, unique: the database decides between racing inserts.
    pub seq: i64,
    /// When it was added, Unix ms.
    #[sqlx(rename = "created_at")]
    pub created_at_ms: i64,
    /// When it starts signing, Unix ms (published from `created_at_ms` on).
    #[sqlx(rename = "signs_from")]
    pub signs_from_ms: i64,
    /// The raw Ed25519 public key, base64url without padding (the JWK's `x`).
    pub public_key: String,
    /// The sealed PKCS#8 private key (`auth::sealing` format).
    pub sealed: String,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The sealed half is useless without the secret, but it stays out of logs anyway.
        f.debug_struct("StoredKey")
            .field("kid", &self.kid)
            .field("seq", &self.seq)
            .field("created_at_ms", &self.created_at_ms)
            .field("signs_from_ms", &self.signs_from_ms)
            .finish_non_exhaustive()
    }
}
