-- API keys: long-lived credentials of an account for scripts and CI jobs. One file for SQLite
-- and PostgreSQL, like 0001. The key itself is never stored: `hash` is the lower-case hex
-- SHA-256 of the whole key (`gh_…`, 256 random bits), which is enough for a key nobody chose
-- (see src/auth/api_keys.rs). Times are Unix milliseconds. A revoked key keeps its row (listed
-- with `revoked_at`) until the minute loop prunes it; `expires_at` NULL means it never expires.
CREATE TABLE api_keys (
    id           TEXT   PRIMARY KEY,
    account_id   TEXT   NOT NULL,
    name         TEXT   NOT NULL,
    hash         TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    revoked_at   BIGINT,
    last_used_at BIGINT
);
CREATE UNIQUE INDEX api_keys_hash ON api_keys (hash);
CREATE INDEX api_keys_account ON api_keys (account_id, created_at);
CREATE INDEX api_keys_revoked_at ON api_keys (revoked_at);
