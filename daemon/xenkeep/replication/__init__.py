"""Continuous replication: VMs copied to an SR of any connected pool, a full
copy first and only changed blocks after, replicas ready to start, failover
and failback. See :mod:`.manager` (the domain's one door) and
docs/architecture.md ("replication/")."""
