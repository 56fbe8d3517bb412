"""The async XAPI client: calls, the object cache, tasks, transfers. A pure client:
the registry of pools and their connections is :mod:`xenkeep.pools`."""
