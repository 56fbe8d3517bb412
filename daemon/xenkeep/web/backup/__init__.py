"""Backups in the web UI (:mod:`.views`) and the JSON API (:mod:`.api`):
storage, jobs, runs, restores, verify, mail.

Thin handlers over :class:`~xenkeep.backup.manager.BackupManager`; every
route is for administrators. A run is an operation: its page is the
operation page, and ``/api/v1/backup/runs/{id}`` shows it in the words of
backups (job, VM, disk).
"""
