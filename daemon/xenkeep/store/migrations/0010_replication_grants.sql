-- Schema 10: replication jobs are grantable objects ("replication-job:4"), as
-- backup jobs are (schema 7): a job's grants go with it. Ids are never
-- reused (AUTOINCREMENT), so a grant cannot pass to a later job either.
CREATE TRIGGER grants_of_deleted_replication_job AFTER DELETE ON replication_jobs BEGIN
    DELETE FROM grants
    WHERE object_kind = 'replication-job' AND object_ref = CAST(old.id AS TEXT);
END;
