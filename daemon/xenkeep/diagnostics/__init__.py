"""Diagnostics: health checks of the appliance, its storage, its pools and its
backups; the support bundle.

Each check is a small unit (:mod:`.check`, the checks in :mod:`.checks`)
looking at the daemon's services and the OS through :class:`~.sources.Sources`
(the OS's own facts through the :class:`~.host.HostOS` interface). A run of
every check is an operation (:mod:`.manager`); the support bundle
(:mod:`.bundle`) packs configuration without secrets, logs, results and
versions into one streamed ``tar.gz``.
"""

from .check import Check, CheckRegistry, Finding, Result
from .const import CheckStatus
from .manager import DiagnosticsService, summarize
from .sources import Sources

__all__ = [
    "Check",
    "CheckRegistry",
    "CheckStatus",
    "DiagnosticsService",
    "Finding",
    "Result",
    "Sources",
    "summarize",
]
