-- Secrets, encrypted at rest (AES-256-GCM; `ciphertext` is nonce || sealed value).

CREATE TABLE secrets (
    name        TEXT    PRIMARY KEY,
    ciphertext  BLOB    NOT NULL,
    key_id      TEXT    NOT NULL,
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL
);
