"""The appliance's own backup: its configuration (and its pools' databases)
copied, encrypted, into the backup storage, and restored on a new appliance.

- :mod:`.catalog` declares every table and column and how each is carried;
- :mod:`.keys` makes the backup key (passphrase or recovery key);
- :mod:`.payload` writes and reads the JSON lines inside a copy;
- :mod:`.copies` keeps the sealed files in the datastore (atomic, retention);
- :mod:`.restore` opens a copy into a scratch database and applies it;
- :mod:`.service` is the service (:class:`ApplianceBackup`).
"""

from .service import ApplianceBackup

__all__ = ["ApplianceBackup"]
