-- Accounts and revocations. One file for SQLite and PostgreSQL: only types and syntax both
-- accept. Case-insensitive uniqueness uses `*_key` columns that Gatehouse fills with the
-- lowercased value, so both databases fold case the same way (SQLite's lower() is ASCII-only).
CREATE TABLE accounts (
    id               TEXT    PRIMARY KEY,
    username         TEXT    NOT NULL,
    username_key     TEXT    NOT NULL,
    email            TEXT    NOT NULL,
    email_key        TEXT    NOT NULL,
    password_hash    TEXT    NOT NULL,
    role             TEXT    NOT NULL DEFAULT 'user' CHECK (role IN ('user', 'admin')),
    disabled         BOOLEAN NOT NULL DEFAULT FALSE,
    token_generation BIGINT  NOT NULL DEFAULT 0,
    created_at       BIGINT  NOT NULL
);
CREATE UNIQUE INDEX accounts_username_key ON accounts (username_key);
CREATE UNIQUE INDEX accounts_email_key ON accounts (email_key);
CREATE INDEX accounts_created_at ON accounts (created_at, id);

CREATE TABLE revoked_tokens (
    jti        TEXT   PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX revoked_tokens_expires_at ON revoked_tokens (expires_at);
