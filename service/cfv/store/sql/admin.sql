-- name: create_workspace
INSERT INTO workspaces (slug, name) VALUES ($1, $2) ON CONFLICT (slug) DO NOTHING RETURNING id;

-- name: workspace_id
SELECT id FROM workspaces WHERE slug = $1;

-- name: create_key
INSERT INTO api_keys (workspace_id, prefix, secret_hash, name) VALUES ($1, $2, $3, $4) RETURNING id;
