-- name: list_channels
-- Every channel, by name.
SELECT name, kind, target, enabled, created_at, updated_at
FROM notification_channels ORDER BY name;

-- name: get_channel
-- One channel by name.
SELECT name, kind, target, enabled, created_at, updated_at
FROM notification_channels WHERE name = %(name)s;

-- name: channels_named
-- The channels among the given names.
SELECT name, kind, target, enabled, created_at, updated_at
FROM notification_channels WHERE name = ANY(%(names)s::text[]);

-- name: insert_channel
-- A new channel; a taken name is a unique violation (notification_channels_pkey).
INSERT INTO notification_channels (name, kind, target, enabled)
VALUES (%(name)s, %(kind)s, %(target)s, %(enabled)s)
RETURNING name, kind, target, enabled, created_at, updated_at;

-- name: delete_channel
-- Remove a channel (its outbox rows go with it).
DELETE FROM notification_channels WHERE name = %(name)s RETURNING name;
