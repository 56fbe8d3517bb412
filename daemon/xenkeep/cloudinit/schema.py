"""cloud-init's own JSON schema of ``#cloud-config``, found on this machine.

Custom user-data is checked against the schema the guests' cloud-init
checks it with, not against a list kept here. The appliance image carries
the file from Debian's ``cloud-init`` package (only the schema: cloud-init
itself never runs on the appliance); a machine with cloud-init installed has
it among its modules; a development machine has the package unpacked by
``scripts/deps.sh test``. ``XENKEEP_CLOUD_INIT_SCHEMA`` names another file.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Final

from xenkeep.formats.cloudinit import SchemaChecker, schema_checker

log = logging.getLogger(__name__)

SCHEMA_NAME: Final = "schema-cloud-config-v1.json"
_MODULE_DIR: Final = Path("usr/lib/python3/dist-packages/cloudinit/config/schemas")
#: Where the schema is looked for, in this order (the first one found wins).
SEARCH: Final = (
    Path("/usr/share/xenkeep/cloud-init") / SCHEMA_NAME,
    Path("/") / _MODULE_DIR / SCHEMA_NAME,
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    / "xenkeep/cloud-init"
    / _MODULE_DIR
    / SCHEMA_NAME,
)


def schema_path() -> Path | None:
    """The schema file to use, or None when this machine has none."""
    named = os.environ.get("XENKEEP_CLOUD_INIT_SCHEMA")
    candidates = (Path(named),) if named else SEARCH
    return next((p for p in candidates if p.is_file()), None)


def load_schema() -> SchemaChecker | None:
    """cloud-init's schema, ready to check with (blocking: call it in a
    thread), or None, logged."""
    path = schema_path()
    if path is None:
        log.warning(
            "cloud-init's schema (%s) is not on this machine: custom #cloud-config is "
            "checked as YAML and for the types of the keys XenKeep merges only",
            SCHEMA_NAME,
        )
        return None
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.error("cloud-init's schema %s cannot be read: %s", path, exc)
        return None
    if not isinstance(schema, dict):
        log.error("cloud-init's schema %s is no JSON object", path)
        return None
    log.info("custom #cloud-config is checked against %s", path)
    return schema_checker(schema)
