"""People, for super-administrators: users, groups and grants, in the web UI
(:mod:`.views`, under ``/admin/users``, ``/admin/groups``, ``/admin/grants``)
and the JSON API (:mod:`.api`, ``/api/v1/users``, ``/groups``, ``/grants``).

Objects are picked from the live pools and the backup jobs, by name; grants
name them by uuid (or job id), so a rename changes nothing. Every change of
a grant, a group or an account goes to the audit log (the services write it).
"""
