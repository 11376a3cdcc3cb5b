-- depends: 0009.lean_writes

-- Key expiries from 1970 to the end of 9999 (UTC), as the API now takes them. One before 1970 (an expiry of
-- 0001-01-01 could be saved) is read back by asyncpg as a naive datetime, which broke listing and using every
-- key; such a key had expired anyway, so it keeps expired, at the start of 1970.
UPDATE api_keys SET expires_at = '1970-01-01 00:00:00+00' WHERE expires_at < '1970-01-01 00:00:00+00';
UPDATE api_keys SET expires_at = '9999-12-31 23:59:59+00' WHERE expires_at > '9999-12-31 23:59:59+00';
ALTER TABLE api_keys ADD CONSTRAINT api_keys_expiry_range
    CHECK (expires_at BETWEEN '1970-01-01 00:00:00+00' AND '9999-12-31 23:59:59+00');
