-- Ed25519 signing keys shared by every replica (assertions to backends, EdDSA access tokens).
-- One file for SQLite and PostgreSQL, like 0001. `kid` is the RFC 7638 thumbprint of the
-- public key. `seq` numbers keys in the order they were added and is UNIQUE so that the
-- database, not a read-then-write, decides between two replicas creating the first key (or two
-- rotations) at once: the loser's insert does nothing and it re-reads. Times are Unix ms;
-- `signs_from` is when the key starts signing (`created_at` + `auth.keys.publish_delay`).
-- `public_key` is the raw 32-byte key, base64url; `sealed` is the PKCS#8 private key encrypted
-- with AES-256-GCM under a key derived from GATEHOUSE_KEY_SECRET, with `kid` as associated data
-- (src/auth/sealing.rs). The private key itself is never stored.
CREATE TABLE signing_keys (
    kid        TEXT   PRIMARY KEY,
    seq        BIGINT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    signs_from BIGINT NOT NULL,
    public_key TEXT   NOT NULL,
    sealed     TEXT   NOT NULL
);
