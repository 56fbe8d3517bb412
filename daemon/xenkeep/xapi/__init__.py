"""The async XAPI client: calls, the object cache, tasks, transfers, pools."""
