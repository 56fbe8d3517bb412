"""Names of the diagnostics domain: a check's status, the run's stages, thresholds."""

from __future__ import annotations

from enum import StrEnum
from typing import Final


class CheckStatus(StrEnum):
    """What a check found, from best to worst."""

    OK = "ok"
    WARNING = "warning"
    FAILURE = "failure"


#: Worst first, for sorting and for the summary.
SEVERITY: Final = {CheckStatus.OK: 0, CheckStatus.WARNING: 1, CheckStatus.FAILURE: 2}


class DiagnosticsStage(StrEnum):
    """Stages of a diagnostics run."""

    CHECK = "check"


#: A check that takes longer than this is reported as failed, so one hung
#: look (a pool that accepts the connection and never answers) cannot hold
#: the run and every check after it.
CHECK_TIMEOUT: Final = 30.0
#: Scheduled runs: this often, and the first one this long after the start
#: (the pools connect first).
SCHEDULE_EVERY: Final = 3600.0
FIRST_RUN_AFTER: Final = 120.0
#: Diagnostics runs kept in the operations history (a day of scheduled runs).
KEEP_RUNS: Final = 24
