-- Schema 9: self-service. SSH keys in a user's profile; resource sets
-- (who, on which templates/SRs/networks, within which limits); and the
-- allocations charged to a set: one row per member's VM (or creation in
-- progress), so a check of the limits and the charge are one transaction
-- (BEGIN IMMEDIATE) and concurrent creations cannot together pass a limit.

CREATE TABLE ssh_keys (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    created_at REAL NOT NULL,
    UNIQUE (user_id, fingerprint)
);

CREATE TABLE resource_sets (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE COLLATE NOCASE,
    -- NULL: no limit on that resource.
    cpus INTEGER,
    memory INTEGER,
    disk INTEGER,
    disks INTEGER,
    vms INTEGER,
    -- Whether snapshots of members' VMs count (as in Xen Orchestra).
    count_snapshots INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL
);

CREATE TABLE resource_set_subjects (
    set_id INTEGER NOT NULL REFERENCES resource_sets(id) ON DELETE CASCADE,
    subject_kind TEXT NOT NULL CHECK (subject_kind IN ('user', 'group')),
    subject_id INTEGER NOT NULL,
    PRIMARY KEY (set_id, subject_kind, subject_id)
);

CREATE TABLE resource_set_objects (
    set_id INTEGER NOT NULL REFERENCES resource_sets(id) ON DELETE CASCADE,
    object_kind TEXT NOT NULL CHECK (object_kind IN ('template', 'sr', 'network')),
    object_ref TEXT NOT NULL,
    PRIMARY KEY (set_id, object_kind, object_ref)
);

CREATE TABLE resource_allocations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    set_id INTEGER NOT NULL REFERENCES resource_sets(id) ON DELETE CASCADE,
    user_id INTEGER NOT NULL,
    pool_id INTEGER NOT NULL,
    -- '' while the creation runs; the VM's uuid once it exists.
    vm_uuid TEXT NOT NULL DEFAULT '',
    name TEXT NOT NULL,
    cpus INTEGER NOT NULL,
    memory INTEGER NOT NULL,
    disk INTEGER NOT NULL,
    disks INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('reserved', 'active')),
    created_at REAL NOT NULL
);
CREATE INDEX resource_allocations_vm ON resource_allocations(vm_uuid);
-- A user's resources go with them (their VMs stay; an administrator sees them).
CREATE TRIGGER set_subjects_of_deleted_user AFTER DELETE ON users BEGIN
    DELETE FROM resource_set_subjects WHERE subject_kind = 'user' AND subject_id = old.id;
END;
CREATE TRIGGER set_subjects_of_deleted_group AFTER DELETE ON groups BEGIN
    DELETE FROM resource_set_subjects WHERE subject_kind = 'group' AND subject_id = old.id;
END;
