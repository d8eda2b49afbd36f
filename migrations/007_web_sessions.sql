-- 007: dashboard sessions. A login exchanges an API token for a session: the browser keeps a
-- random 256-bit session id in an HttpOnly, SameSite=Strict cookie; this table keeps only its
-- SHA-256 (a copy of the database opens no session), the token it was made from, and the CSRF
-- token its forms carry. Revoking the token ends its sessions at once (the lookup joins
-- api_tokens); so does deleting the token row.

CREATE TABLE web_sessions (
    session_sha256 TEXT NOT NULL,
    token_name     TEXT NOT NULL REFERENCES api_tokens (name) ON DELETE CASCADE,
    csrf_token     TEXT NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at     TIMESTAMPTZ NOT NULL,
    CONSTRAINT web_sessions_pkey PRIMARY KEY (session_sha256),
    CONSTRAINT web_sessions_sha256_is_hex CHECK (session_sha256 ~ '^[0-9a-f]{64}$')
);

CREATE INDEX web_sessions_expires_idx ON web_sessions (expires_at);
