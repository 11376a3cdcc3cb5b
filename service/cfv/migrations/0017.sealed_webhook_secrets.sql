-- depends: 0016.webhooks

-- Webhooks' signing secrets are now stored sealed with keys the database does not hold (CFV_SECRET_KEYS; see
-- docs/operating.md, "Secret keys"), not as they are as 0016 said. Nothing to change in the table: a secret stored
-- before keeps signing as it is until `cfv secrets reseal` seals it.
COMMENT ON COLUMN webhooks.secret IS
    'the signing secret: fernet:... sealed with CFV_SECRET_KEYS, or whsec_... as stored before sealing began';
