-- depends: 0012.message_attempts

-- Users get a UUID beside their integer id: work-item properties (Plane) name users by UUID, Kantata fields by
-- id, and a user relation must name a user of the workspace either way (the worker looks them up).
ALTER TABLE users ADD COLUMN uuid uuid NOT NULL DEFAULT gen_random_uuid();
CREATE UNIQUE INDEX users_uuid ON users (workspace_id, uuid);
