"""Replication in the web UI (:mod:`.views`) and the JSON API (:mod:`.api`):
jobs, their runs, replicas with their RPO, failover and failback.

Thin handlers over :class:`~xenkeep.replication.manager.ReplicationManager`.
Each route's object is its path parameter: ``job_id`` (a replication job)
or ``replica_id`` (a replica). Administrators do everything; operators may
also run a job and start a replica (``@operator``). Runs, starts and
failbacks are operations: their page is the operation page.
"""
