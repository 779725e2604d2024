-- Refresh-token families. One file for SQLite and PostgreSQL, as 0001 explains. A family is
-- one login (or one browser session): it ends at `expires_at` (auth.refresh.ttl, or the
-- session's ttl) or when revoked; access tokens issued from it carry its id (`fam`), so a
-- revoked family is broadcast like a logged-out token and remembered until `tokens_until`,
-- the last second any of its access tokens could still be accepted. `tokens_until` is in Unix
-- seconds (as `revoked_tokens.expires_at`); every other time here is in Unix milliseconds, so a
-- lifetime of a few seconds is not rounded to whole ones.
CREATE TABLE refresh_families (
    id           TEXT   PRIMARY KEY,
    account_id   TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    tokens_until BIGINT NOT NULL,
    revoked_at   BIGINT
);
CREATE INDEX refresh_families_account ON refresh_families (account_id);
CREATE INDEX refresh_families_tokens_until ON refresh_families (tokens_until);

-- Refresh tokens, only as SHA-256 hashes (hex). A token is spent by the one conditional
-- UPDATE that rotates it; a spent token presented again revokes its family.
CREATE TABLE refresh_tokens (
    hash       TEXT   PRIMARY KEY,
    family_id  TEXT   NOT NULL,
    issued_at  BIGINT NOT NULL,
    idle_until BIGINT NOT NULL,
    spent_at   BIGINT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
