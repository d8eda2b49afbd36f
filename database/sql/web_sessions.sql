-- name: insert_session
-- A new dashboard session for a live token; nothing when the token is unknown or revoked.
INSERT INTO web_sessions (session_sha256, token_name, csrf_token, expires_at)
SELECT %(session_sha256)s, name, %(csrf_token)s, now() + make_interval(secs => %(lifetime)s)
FROM api_tokens WHERE name = %(token_name)s AND revoked_at IS NULL
RETURNING token_name, csrf_token, expires_at;

-- name: get_session
-- A live session: not expired, its token not revoked; with the token's role.
SELECT s.token_name, t.role, s.csrf_token, s.expires_at
FROM web_sessions AS s JOIN api_tokens AS t ON t.name = s.token_name
WHERE s.session_sha256 = %(session_sha256)s AND s.expires_at > now() AND t.revoked_at IS NULL;

-- name: delete_session
-- Log out.
DELETE FROM web_sessions WHERE session_sha256 = %(session_sha256)s;

-- name: delete_expired_sessions
-- Forget sessions that can no longer be used.
DELETE FROM web_sessions WHERE expires_at <= now();
