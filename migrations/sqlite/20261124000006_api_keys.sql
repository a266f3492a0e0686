-- API keys. Only the public prefix (to find the record) and the SHA-256 of the whole key
-- (to check it) are kept; the key itself is shown once, when it is created.

CREATE TABLE api_keys (
    id            TEXT    PRIMARY KEY,
    name          TEXT    NOT NULL,
    role          TEXT    NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    prefix        TEXT    NOT NULL UNIQUE,
    hash          TEXT    NOT NULL,
    created_at    TEXT    NOT NULL,
    last_used_at  TEXT,
    revoked_at    TEXT
);
-- A name names one live key, so the audit trail's `key:<name>` is unambiguous.
CREATE UNIQUE INDEX api_keys_live_name_idx ON api_keys (name) WHERE revoked_at IS NULL;
