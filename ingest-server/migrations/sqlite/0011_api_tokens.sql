-- Personal admin API tokens (issue 8), SQLite flavour. Kept in step with ../postgres/0011_api_tokens.sql.
--
-- The admin API's one shared token (admin.token) cannot say who used it.
-- A personal token belongs to one administrator's account: the audit log
-- names that person for every change made with it, it stops working when
-- the account is disabled or the token is revoked or expires, and only the
-- SHA-256 of its secret is kept (the secret is 32 random bytes, so a slow
-- password hash adds nothing).

CREATE TABLE api_tokens (
    token_id     TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (user_id),
    secret_hash  TEXT NOT NULL,
    label        TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT,
    revoked_at   BIGINT,
    last_used_at BIGINT
);
CREATE INDEX api_tokens_user ON api_tokens (user_id);
