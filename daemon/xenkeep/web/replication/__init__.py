"""Replication in the web UI (:mod:`.views`) and the JSON API (:mod:`.api`):
jobs, their runs, replicas with their RPO, failover and failback.

Thin handlers over :class:`~xenkeep.replication.manager.ReplicationManager`.
Each route's object is its path parameter: ``job_id`` (a replication job)
or ``replica_id`` (a replica). Every route is a super-administrator's
(``@admin``): a replication job spans two pools (source and target), so no
grant on one pool's objects can be enough for it. Runs, starts and
failbacks are operations: their page is the operation page.
"""
