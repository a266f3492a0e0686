-- Secrets, encrypted at rest (AES-256-GCM; `ciphertext` is nonce || sealed value).

CREATE TABLE secrets (
    name        TEXT        PRIMARY KEY,
    ciphertext  BYTEA       NOT NULL,
    key_id      TEXT        NOT NULL,      -- which master key sealed it (for rotation)
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
