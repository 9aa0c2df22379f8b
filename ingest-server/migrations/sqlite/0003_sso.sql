-- Single sign-on through OpenID Connect (issue 9), SQLite flavour. Kept in
-- step with ../postgres/0003_sso.sql.
--
-- One row per sign-in started at /console/sso/login, so that the callback
-- may land on any server replica. The state is kept as its SHA-256 only
-- (like session tokens); used_at makes it single use (the callback marks it
-- in the same statement that reads it); rows are purged a day after they
-- expire, so a late or replayed callback is still told apart from a forged
-- one. browser_sha256 is the digest of the cookie given to the browser that
-- started the sign-in: a callback from any other browser is refused
-- (login CSRF).

CREATE TABLE sso_logins (
    state_sha256   TEXT PRIMARY KEY,
    nonce          TEXT NOT NULL,
    code_verifier  TEXT NOT NULL,
    browser_sha256 TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    used_at        INTEGER
);
CREATE INDEX sso_logins_expires ON sso_logins (expires_at);
