-- Schema 7: one permission model. A user's global role is 'admin' (the
-- super-administrator: people, grants, providers, the appliance), 'support'
-- (diagnostics and logs, nothing else) or 'user' (only what grants give).
-- The old global 'operator' and 'viewer' become 'user' with a grant of the
-- same role on every pool object ('all'), so nobody loses access.
--
-- Tables are rebuilt the way SQLite asks (create, copy, drop, rename; the
-- migration runs with foreign keys off and checks them before it commits),
-- each with AUTOINCREMENT: a grant, an operation target or a bookmark that
-- names user 7, pool 3 or backup job 12 must never come to mean another one
-- after the newest was deleted.

-- Users: the new CHECK, every column of schemas 1 and 6 kept.
CREATE TABLE users_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    username TEXT NOT NULL UNIQUE COLLATE NOCASE,
    display_name TEXT NOT NULL DEFAULT '',
    password_hash TEXT,
    role TEXT NOT NULL CHECK (role IN ('admin', 'support', 'user')),
    source TEXT NOT NULL DEFAULT 'local',
    totp_secret TEXT,
    disabled INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    password_changed_at REAL,
    email TEXT NOT NULL DEFAULT '',
    provider_id INTEGER REFERENCES auth_providers(id),
    external_id TEXT,
    must_change_password INTEGER NOT NULL DEFAULT 0,
    last_sign_in REAL
);
INSERT INTO users_new (id, username, display_name, password_hash, role, source, totp_secret,
                       disabled, created_at, password_changed_at, email, provider_id,
                       external_id, must_change_password, last_sign_in)
SELECT id, username, display_name, password_hash,
       CASE WHEN role IN ('operator', 'viewer') THEN 'user' ELSE role END,
       source, totp_secret, disabled, created_at, password_changed_at, email, provider_id,
       external_id, must_change_password, last_sign_in
FROM users;
INSERT INTO grants (subject_kind, subject_id, object_kind, object_ref, role, created_at,
                    created_by)
SELECT 'user', id, 'all', '', role, CAST(strftime('%s', 'now') AS REAL), 'schema 7'
FROM users WHERE role IN ('operator', 'viewer')
ON CONFLICT (subject_kind, subject_id, object_kind, object_ref) DO NOTHING;
DROP TABLE users;
ALTER TABLE users_new RENAME TO users;
CREATE UNIQUE INDEX users_external ON users(provider_id, external_id)
    WHERE provider_id IS NOT NULL;
-- Dropped with the old table: a user's grants still go with the user.
CREATE TRIGGER grants_of_deleted_user AFTER DELETE ON users BEGIN
    DELETE FROM grants WHERE subject_kind = 'user' AND subject_id = old.id;
END;

-- API tokens may carry less than their owner's rights: at most this role on
-- the objects the owner reaches (NULL: the owner's rights, no more).
ALTER TABLE api_tokens ADD COLUMN max_role TEXT
    CHECK (max_role IS NULL OR max_role IN ('admin', 'operator', 'viewer'));

-- Pools: named in grants by their XAPI uuid (filled when the pool is added
-- or connected; '' until then). One pool is registered once, whatever URL
-- reaches its master.
CREATE TABLE pools_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid TEXT NOT NULL DEFAULT '',
    name TEXT NOT NULL,
    url TEXT NOT NULL UNIQUE,
    username TEXT NOT NULL,
    password_enc TEXT NOT NULL,
    fingerprint TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    last_error TEXT NOT NULL DEFAULT '',
    last_error_at REAL,
    last_connected_at REAL
);
INSERT INTO pools_new (id, name, url, username, password_enc, fingerprint, created_at,
                       updated_at, last_error, last_error_at, last_connected_at)
SELECT id, name, url, username, password_enc, fingerprint, created_at, updated_at,
       last_error, last_error_at, last_connected_at
FROM pools;
DROP TABLE pools;
ALTER TABLE pools_new RENAME TO pools;
CREATE UNIQUE INDEX pools_uuid ON pools(uuid) WHERE uuid != '';

-- Backup jobs: grants and operation targets name them by id ("backup-job:12").
CREATE TABLE backup_jobs_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    spec TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    last_slot REAL,
    next_run REAL
);
INSERT INTO backup_jobs_new (id, name, spec, created_at, updated_at, last_slot, next_run)
SELECT id, name, spec, created_at, updated_at, last_slot, next_run FROM backup_jobs;
DROP TABLE backup_jobs;
ALTER TABLE backup_jobs_new RENAME TO backup_jobs;
-- A job's grants go with it.
CREATE TRIGGER grants_of_deleted_backup_job AFTER DELETE ON backup_jobs BEGIN
    DELETE FROM grants WHERE object_kind = 'backup-job' AND object_ref = CAST(old.id AS TEXT);
END;

CREATE INDEX grants_subject ON grants(subject_kind, subject_id);
