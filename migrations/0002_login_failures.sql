-- Failed-login counters shared by every replica (login back-off per account and per account +
-- client network). Keys are SHA-256 digests, never an email as typed: people type passwords
-- into email fields. Rows are forgotten a while after their last failure.
CREATE TABLE login_failures (
    key          TEXT   PRIMARY KEY,
    failures     BIGINT NOT NULL,
    last_failure BIGINT NOT NULL
);
CREATE INDEX login_failures_last_failure ON login_failures (last_failure);
