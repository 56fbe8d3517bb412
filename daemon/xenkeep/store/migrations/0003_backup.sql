-- Schema 3: backup jobs, their runs (and restores), per-VM and per-disk
-- tasks with live progress, and the log lines of each run.
CREATE TABLE backup_jobs (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    -- The validated JobSpec as JSON (xenkeep.backup.job).
    spec TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    -- The last scheduled time a run was started for; NULL = never.
    last_slot REAL,
    -- When the scheduler looks at this job again (persisted across restarts).
    next_run REAL
);

CREATE TABLE backup_runs (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('backup', 'restore')),
    job_id INTEGER REFERENCES backup_jobs(id) ON DELETE SET NULL,
    job_name TEXT NOT NULL DEFAULT '',
    trigger TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    stage TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    bytes INTEGER NOT NULL DEFAULT 0,
    total_bytes INTEGER,
    error TEXT NOT NULL DEFAULT '',
    -- The report (JSON) once finished; the restore request for restores.
    report TEXT NOT NULL DEFAULT '{}',
    params TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX backup_runs_job ON backup_runs(job_id, id);

CREATE TABLE backup_tasks (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES backup_runs(id) ON DELETE CASCADE,
    -- NULL for the VM-level task; the disk key (VBD userdevice) otherwise.
    parent_id INTEGER REFERENCES backup_tasks(id) ON DELETE CASCADE,
    vm_uuid TEXT NOT NULL,
    vm_name TEXT NOT NULL DEFAULT '',
    disk_key TEXT,
    status TEXT NOT NULL,
    stage TEXT NOT NULL,
    transfer TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL DEFAULT '',
    bytes INTEGER NOT NULL DEFAULT 0,
    total_bytes INTEGER,
    speed REAL NOT NULL DEFAULT 0,
    eta REAL,
    started_at REAL,
    finished_at REAL,
    merge_seconds REAL,
    point_id TEXT NOT NULL DEFAULT '',
    error TEXT NOT NULL DEFAULT ''
);
CREATE INDEX backup_tasks_run ON backup_tasks(run_id, id);

CREATE TABLE backup_log (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES backup_runs(id) ON DELETE CASCADE,
    task_id INTEGER,
    ts REAL NOT NULL,
    level TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX backup_log_run ON backup_log(run_id, id);
