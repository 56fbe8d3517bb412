-- Schema 8: replication jobs and the replicas they keep on a target SR.
-- Runs, failovers and failbacks are operations (schema 5). The replica's
-- points themselves live in the target pool (snapshots of the replica VM,
-- which carry what each one was copied from): these rows say which replica
-- belongs to which job and VM, and its state for the pages and the RPO.
CREATE TABLE replication_jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    -- The validated ReplicationSpec as JSON (xenkeep.replication.job).
    spec TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    -- The last scheduled time a run was started for; NULL = never.
    last_slot REAL,
    -- When the scheduler looks at this job again (persisted across restarts).
    next_run REAL,
    -- Why the schedule waits ('' = it does not): a replica was started.
    paused TEXT NOT NULL DEFAULT ''
);

CREATE TABLE replicas (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id INTEGER REFERENCES replication_jobs(id) ON DELETE SET NULL,
    -- Kept for the pages once the job is deleted (the replica stays).
    job_name TEXT NOT NULL DEFAULT '',
    source_pool_id TEXT NOT NULL,
    source_vm_uuid TEXT NOT NULL,
    source_vm_name TEXT NOT NULL DEFAULT '',
    target_pool_id TEXT NOT NULL,
    target_sr_uuid TEXT NOT NULL,
    -- The replica VM in the target pool ('' until the first run commits).
    vm_uuid TEXT NOT NULL DEFAULT '',
    vm_name TEXT NOT NULL DEFAULT '',
    -- replicating: the job keeps it current; started: failed over (the job
    -- waits); failing-back: a failback is copying it back to the source.
    state TEXT NOT NULL DEFAULT 'replicating'
        CHECK (state IN ('replicating', 'started', 'failing-back')),
    -- The VM a failover started (the replica, or a clone of an older point).
    started_vm_uuid TEXT NOT NULL DEFAULT '',
    started_point_uuid TEXT NOT NULL DEFAULT '',
    started_at REAL,
    -- The source VM's state before a failback, kept as a snapshot.
    safety_snapshot_uuid TEXT NOT NULL DEFAULT '',
    latest_point_uuid TEXT NOT NULL DEFAULT '',
    -- When the source snapshot behind the latest point was taken: its age is the RPO.
    latest_point_at REAL,
    points INTEGER NOT NULL DEFAULT 0,
    last_success_at REAL,
    last_attempt_at REAL,
    last_run_id INTEGER,
    last_bytes INTEGER NOT NULL DEFAULT 0,
    last_seconds REAL NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    UNIQUE (job_id, source_vm_uuid)
);
CREATE INDEX replicas_job ON replicas(job_id, id);
