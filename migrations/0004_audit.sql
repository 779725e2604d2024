-- The audit trail of credential events (logins, sign-ins, logouts, account changes). One file
-- for SQLite and PostgreSQL, like 0001. `id` is a UUID v7 whose timestamp is `time` (Unix ms),
-- so (time, id) orders events and an id is a paging cursor. `detail` is a small JSON object as
-- text. Never a password, token, hash or an identifier typed for no account.
CREATE TABLE audit_events (
    id       TEXT   PRIMARY KEY,
    time     BIGINT NOT NULL,
    event    TEXT   NOT NULL,
    username TEXT,
    client   TEXT,
    detail   TEXT   NOT NULL
);
CREATE INDEX audit_events_time ON audit_events (time, id);
