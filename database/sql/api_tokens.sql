-- name: insert_token
-- Create one token (its SHA-256 only); a name already taken violates api_tokens_name_key.
INSERT INTO api_tokens (name, token_sha256, role)
VALUES (%(name)s, %(token_sha256)s, %(role)s)
RETURNING name, role, created_at, last_used_at, revoked_at;

-- name: list_tokens
-- Every token without its hash, oldest first.
SELECT name, role, created_at, last_used_at, revoked_at FROM api_tokens ORDER BY created_at, name;

-- name: revoke_token
-- Revoke one token (once: a revoked token keeps its first revoked_at).
UPDATE api_tokens SET revoked_at = now() WHERE name = %(name)s AND revoked_at IS NULL;

-- name: token_exists
-- Whether a token of that name exists, revoked or not.
SELECT EXISTS (SELECT 1 FROM api_tokens WHERE name = %(name)s) AS found;

-- name: authenticate_token
-- The live token with this SHA-256, stamping last_used_at at most once a minute (so a busy
-- client does not cost a write per request).
WITH found AS (
    SELECT name, role, created_at, last_used_at, revoked_at
    FROM api_tokens WHERE token_sha256 = %(token_sha256)s AND revoked_at IS NULL
), touched AS (
    UPDATE api_tokens AS t SET last_used_at = now()
    FROM found
    WHERE t.name = found.name
      AND (found.last_used_at IS NULL OR found.last_used_at < now() - interval '1 minute')
    RETURNING t.last_used_at
)
SELECT found.name, found.role, found.created_at,
       coalesce((SELECT last_used_at FROM touched), found.last_used_at) AS last_used_at,
       found.revoked_at
FROM found;
