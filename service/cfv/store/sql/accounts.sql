-- Users, project memberships and API keys (the admin API and the command line).

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

-- name: user_in_workspace
SELECT id, kind, name, email, account_role, deactivated_at FROM users WHERE workspace_id = $1 AND id = $2;

-- name: create_user
INSERT INTO users (workspace_id, kind, name, email, account_role) VALUES ($1, $2, $3, $4, $5)
RETURNING id, kind, name, email, account_role, created_at, updated_at, deactivated_at;

-- name: create_key
INSERT INTO api_keys (workspace_id, user_id, prefix, secret_hash, public_key, name, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $7)
RETURNING id, created_at;

-- name: set_membership
INSERT INTO project_memberships (workspace_id, user_id, project, permission) VALUES ($1, $2, $3, $4)
ON CONFLICT (workspace_id, user_id, project) DO UPDATE SET permission = EXCLUDED.permission, updated_at = now()
RETURNING project, permission, created_at, updated_at;
