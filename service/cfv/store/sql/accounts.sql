-- Users, project memberships and API keys (the admin API and the command line). Every change runs in a
-- transaction holding the workspace's lock (lock_workspace, in gateway.sql): see cfv.store.accounts.

-- name: owner_user
-- The workspace's administrator service account 'owner', made on first use: keys issued without a user
-- belong to it.
WITH made AS (
    INSERT INTO users (workspace_id, kind, name, account_role)
    VALUES ($1, 'service', 'owner', 'account_admin')
    ON CONFLICT (workspace_id, name) WHERE kind = 'service' DO NOTHING
    RETURNING id
)
SELECT id FROM made
UNION ALL
SELECT id FROM users WHERE workspace_id = $1 AND kind = 'service' AND name = 'owner'
LIMIT 1;

-- name: admin_caller
-- The calling key as it is now (read under the workspace lock): still valid, and still an administrator's?
SELECT k.revoked_at IS NULL AND u.deactivated_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now())
           AS valid,
       u.account_role = 'account_admin' AS admin
FROM api_keys k
JOIN users u ON (u.workspace_id, u.id) = (k.workspace_id, k.user_id)
WHERE k.id = $1 AND k.workspace_id = $2;

-- name: get_user
SELECT id, uuid, kind, name, email, account_role, created_at, updated_at, deactivated_at
FROM users WHERE workspace_id = $1 AND id = $2;

-- name: user_by_email
SELECT id, uuid, kind, name, email, account_role, created_at, updated_at, deactivated_at
FROM users WHERE workspace_id = $1 AND lower(email) = lower($2::text);

-- name: service_by_name
SELECT id, uuid, kind, name, email, account_role, created_at, updated_at, deactivated_at
FROM users WHERE workspace_id = $1 AND kind = 'service' AND name = $2;

-- name: list_users
-- $2 the page size (NULL: all), $3 the offset.
SELECT id, uuid, kind, name, email, account_role, created_at, updated_at, deactivated_at
FROM users WHERE workspace_id = $1 ORDER BY id LIMIT $2 OFFSET $3;

-- name: count_users
SELECT count(*) FROM users WHERE workspace_id = $1;

-- name: create_user
INSERT INTO users (workspace_id, kind, name, email, account_role) VALUES ($1, $2, $3, $4, $5)
RETURNING id, uuid, kind, name, email, account_role, created_at, updated_at, deactivated_at;

-- name: update_user
-- NULL leaves a column as it is; $4 says whether to set the email to $5 (NULL clears it); $7 true
-- reactivates, false deactivates (keeping the first deactivation's time), NULL leaves it.
UPDATE users
SET name = coalesce($3, name),
    email = CASE WHEN $4::boolean THEN $5::text ELSE email END,
    account_role = coalesce($6, account_role),
    deactivated_at = CASE WHEN $7::boolean IS NULL THEN deactivated_at
                          WHEN $7::boolean THEN NULL
                          ELSE coalesce(deactivated_at, now()) END,
    updated_at = now()
WHERE workspace_id = $1 AND id = $2
RETURNING id, uuid, kind, name, email, account_role, created_at, updated_at, deactivated_at;

-- name: other_active_admins
SELECT count(*) FROM users
WHERE workspace_id = $1 AND id <> $2 AND account_role = 'account_admin' AND deactivated_at IS NULL;

-- name: create_key
INSERT INTO api_keys (workspace_id, user_id, prefix, secret_hash, public_key, name, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
RETURNING id, created_at;

-- name: list_keys
-- Never the hash nor the public key. $2 one user's keys (NULL: all), $3 one key (NULL: all), $4 the page
-- size (NULL: all), $5 the offset.
SELECT id, user_id, prefix, name, created_at, expires_at, revoked_at
FROM api_keys
WHERE workspace_id = $1 AND ($2::bigint IS NULL OR user_id = $2) AND ($3::bigint IS NULL OR id = $3)
ORDER BY id LIMIT $4 OFFSET $5;

-- name: count_keys
SELECT count(*) FROM api_keys WHERE workspace_id = $1 AND ($2::bigint IS NULL OR user_id = $2);

-- name: revoke_key
UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
WHERE workspace_id = $1 AND id = $2
RETURNING id, user_id, prefix, name, created_at, expires_at, revoked_at;

-- name: update_key
-- $3 whether to set expires_at to $4 (NULL: never expires), $5 whether to set the name to $6.
UPDATE api_keys
SET expires_at = CASE WHEN $3::boolean THEN $4::timestamptz ELSE expires_at END,
    name = CASE WHEN $5::boolean THEN $6::text ELSE name END
WHERE workspace_id = $1 AND id = $2
RETURNING id, user_id, prefix, name, created_at, expires_at, revoked_at;

-- name: set_membership
-- Made or changed; created: whether it is new.
INSERT INTO project_memberships (workspace_id, user_id, project, permission) VALUES ($1, $2, $3, $4)
ON CONFLICT (workspace_id, user_id, project) DO UPDATE SET permission = EXCLUDED.permission, updated_at = now()
RETURNING user_id, project, permission, created_at, updated_at, (xmax = 0) AS created;

-- name: list_memberships
SELECT user_id, project, permission, created_at, updated_at
FROM project_memberships WHERE workspace_id = $1 AND user_id = $2
ORDER BY project LIMIT $3 OFFSET $4;

-- name: count_memberships
SELECT count(*) FROM project_memberships WHERE workspace_id = $1 AND user_id = $2;

-- name: delete_membership
DELETE FROM project_memberships WHERE workspace_id = $1 AND user_id = $2 AND project = $3 RETURNING project;
