"""Replication in the web UI (:mod:`.views`) and the JSON API (:mod:`.api`):
jobs, their runs, replicas with their RPO, failover and failback.

Thin handlers over :class:`~xenkeep.replication.manager.ReplicationManager`.
Each route's object is its path parameter: ``job_id`` (a replication job,
a grantable object sitting in its source pool) or ``replica_id`` (a
replica, which stands for its job). As for a backup job: VIEW on the job
to see it, its runs and replicas; RUN to run it now; MANAGE to change or
delete it. Creating or changing one needs MANAGE on the source pool and on
the destination SR (possibly of another pool); starting a replica
(failover), failing back and forgetting a replica need MANAGE on the job:
they start a VM in the destination pool or overwrite the source VM, what a
restore needs MANAGE on its target for. Lists are cut to what the user may
view. Runs, starts and failbacks are operations: their page is the
operation page.
"""
