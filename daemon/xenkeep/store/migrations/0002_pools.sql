-- Schema 2: the pools XenKeep is connected to.
-- The password is Fernet-encrypted with the key in <state>/secret.key, so a
-- copy of the database alone does not give access to the pools.
CREATE TABLE pools (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    url TEXT NOT NULL UNIQUE,
    username TEXT NOT NULL,
    password_enc TEXT NOT NULL,
    -- SHA-256 of the certificate the admin confirmed; '' for plain http.
    fingerprint TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    last_error TEXT NOT NULL DEFAULT '',
    last_error_at REAL,
    last_connected_at REAL
);
