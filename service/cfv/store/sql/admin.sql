-- name: create_workspace
INSERT INTO workspaces (slug, name) VALUES ($1, $2) ON CONFLICT (slug) DO NOTHING RETURNING id;

-- name: workspace_id
SELECT id FROM workspaces WHERE slug = $1;
