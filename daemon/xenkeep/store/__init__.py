"""SQLite state: one database file, numbered migrations, serialized access."""

from xenkeep.store.db import Database, latest_schema_version, migrate_sync, open_database

__all__ = ["Database", "latest_schema_version", "migrate_sync", "open_database"]
