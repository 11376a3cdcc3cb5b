-- depends: 0010.bounded_expiries

-- Gateways cache who a key is for a few seconds. Any change to a key or a user (a revocation, an expiry, a role,
-- a deactivation, a deletion), whoever makes it (the API, the CLI, SQL by hand), is announced at commit on
-- channel cfv_credentials with the workspace's id, and every gateway forgets what it cached at once.
CREATE FUNCTION cfv_credentials_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('cfv_credentials', (CASE WHEN TG_OP = 'DELETE' THEN OLD.workspace_id
                                               ELSE NEW.workspace_id END)::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER api_keys_changed AFTER UPDATE ON api_keys
    FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*) EXECUTE FUNCTION cfv_credentials_changed();
CREATE TRIGGER api_keys_deleted AFTER DELETE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION cfv_credentials_changed();
CREATE TRIGGER users_changed AFTER UPDATE ON users
    FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*) EXECUTE FUNCTION cfv_credentials_changed();
CREATE TRIGGER users_deleted AFTER DELETE ON users
    FOR EACH ROW EXECUTE FUNCTION cfv_credentials_changed();
