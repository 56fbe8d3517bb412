-- Schema 5: one table of operations for every long task (backup runs,
-- restores, verifies, disk formats, and the kinds that come next), their
-- sub-tasks (per VM, per disk) and their log lines. Backup runs, tasks and
-- logs move over with their ids, so /backup/runs/<id> keeps pointing at the
-- same run. AUTOINCREMENT: an operation id is never given out twice, even
-- after the newest rows are deleted.
CREATE TABLE operations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    -- What it works on, as "<type>:<id>" (backup-job:3, vm:<uuid>, datastore, disk:xvdb).
    target TEXT NOT NULL DEFAULT '',
    -- What people read in lists: "nightly", "restore web-01", "verify all VMs".
    title TEXT NOT NULL DEFAULT '',
    trigger TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    stage TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    bytes INTEGER NOT NULL DEFAULT 0,
    total_bytes INTEGER,
    speed REAL NOT NULL DEFAULT 0,
    eta REAL,
    error TEXT NOT NULL DEFAULT '',
    -- The result once finished (JSON).
    report TEXT NOT NULL DEFAULT '{}',
    -- What it was started with (JSON): a restore request, a verify's VM...
    params TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX operations_kind ON operations(kind, id);
CREATE INDEX operations_target ON operations(target, id);
CREATE INDEX operations_status ON operations(status);

CREATE TABLE operation_tasks (
    id INTEGER PRIMARY KEY,
    op_id INTEGER NOT NULL REFERENCES operations(id) ON DELETE CASCADE,
    parent_id INTEGER REFERENCES operation_tasks(id) ON DELETE CASCADE,
    -- What the sub-task works on (a VM uuid), its readable name, and the part
    -- of it (a disk position) for nested sub-tasks.
    subject TEXT NOT NULL DEFAULT '',
    name TEXT NOT NULL DEFAULT '',
    part TEXT,
    status TEXT NOT NULL,
    stage TEXT NOT NULL DEFAULT '',
    bytes INTEGER NOT NULL DEFAULT 0,
    total_bytes INTEGER,
    speed REAL NOT NULL DEFAULT 0,
    eta REAL,
    started_at REAL,
    finished_at REAL,
    error TEXT NOT NULL DEFAULT '',
    -- Facts of the kind (JSON): a backup disk's transfer and reason...
    detail TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX operation_tasks_op ON operation_tasks(op_id, id);

CREATE TABLE operation_log (
    id INTEGER PRIMARY KEY,
    op_id INTEGER NOT NULL REFERENCES operations(id) ON DELETE CASCADE,
    task_id INTEGER,
    ts REAL NOT NULL,
    level TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX operation_log_op ON operation_log(op_id, id);

INSERT INTO operations (id, kind, target, title, trigger, status, stage, created_at,
                        started_at, finished_at, bytes, total_bytes, error, report, params)
SELECT id, kind,
       CASE
           WHEN kind = 'backup' AND job_id IS NOT NULL THEN 'backup-job:' || job_id
           WHEN kind = 'restore' THEN 'vm:' || coalesce(json_extract(params, '$.vm_uuid'), '')
           ELSE ''
       END,
       job_name, trigger, status, stage, created_at, started_at, finished_at, bytes,
       total_bytes, error, report, params
FROM backup_runs;

INSERT INTO operation_tasks (id, op_id, parent_id, subject, name, part, status, stage, bytes,
                             total_bytes, speed, eta, started_at, finished_at, error, detail)
SELECT id, run_id, parent_id, vm_uuid, vm_name, disk_key, status, stage, bytes, total_bytes,
       speed, eta, started_at, finished_at, error,
       json_object('transfer', transfer, 'reason', reason, 'merge_seconds', merge_seconds,
                   'point_id', point_id)
FROM backup_tasks;

INSERT INTO operation_log (id, op_id, task_id, ts, level, message)
SELECT id, run_id, task_id, ts, level, message FROM backup_log;

DROP TABLE backup_log;
DROP TABLE backup_tasks;
DROP TABLE backup_runs;

-- The last verify was one JSON value in the settings; it becomes the first
-- verify operation, so its findings stay on the storage page.
INSERT INTO operations (kind, target, title, trigger, status, created_at, started_at,
                        finished_at, error, report, params)
SELECT 'verify',
       CASE WHEN json_extract(value, '$.vm_uuid') IS NULL THEN 'datastore'
            ELSE 'vm:' || json_extract(value, '$.vm_uuid') END,
       'verify', coalesce(json_extract(value, '$.trigger'), ''),
       CASE json_extract(value, '$.status')
           WHEN 'ok' THEN 'success'
           WHEN 'damaged' THEN 'failed'
           WHEN 'failed' THEN 'failed'
           ELSE 'interrupted' END,
       coalesce(json_extract(value, '$.started'), 0),
       json_extract(value, '$.started'),
       coalesce(json_extract(value, '$.finished'), json_extract(value, '$.started')),
       CASE json_extract(value, '$.status')
           WHEN 'damaged' THEN 'damaged restore points found'
           WHEN 'ok' THEN ''
           ELSE coalesce(json_extract(value, '$.error'), 'the daemon stopped during the verify') END,
       CASE WHEN json_extract(value, '$.status') = 'running'
            THEN json_set(value, '$.status', 'interrupted') ELSE value END,
       json_object('vm_uuid', json_extract(value, '$.vm_uuid'))
FROM settings WHERE key = 'backup.verify.last' AND json_valid(value);
DELETE FROM settings WHERE key = 'backup.verify.last';
