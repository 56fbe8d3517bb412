"""The pools XenKeep is connected to: their registrations and live connections.

``registry`` keeps the rows of the ``pools`` table, ``manager`` the service
the daemon runs (one XAPI client and event watcher per pool, the two-step
registration). :mod:`xenkeep.xapi` stays a pure client that knows nothing
of the database.
"""
