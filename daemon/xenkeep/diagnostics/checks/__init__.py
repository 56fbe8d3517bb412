"""The checks, one module per area; :func:`default_checks` lists them in order."""

from __future__ import annotations

from xenkeep.diagnostics.check import Check
from xenkeep.diagnostics.sources import run_kinds

from . import backups, clock, disks, network, pools, system


def default_checks() -> list[Check]:
    """Every check of the appliance, in the order the page shows them."""
    return [
        *disks.CHECKS,
        *backups.checks_for(run_kinds()),
        *clock.CHECKS,
        *network.CHECKS,
        *pools.CHECKS,
        *system.CHECKS,
    ]


__all__ = ["default_checks"]
