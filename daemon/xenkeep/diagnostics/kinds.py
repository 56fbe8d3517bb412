"""The operation kind of a diagnostics run and its one rule: one run at a time."""

from __future__ import annotations

from typing import Final

from xenkeep.ops import Claim, OperationKind, OpKind

from .const import DiagnosticsStage

DIAGNOSTICS: Final = OperationKind(OpKind.DIAGNOSTICS, "diagnostics", DiagnosticsStage)
#: Two runs at once would only race to the same answers.
ONE_RUN: Final = Claim.sole("diagnostics", "one diagnostics run at a time")
#: What the runs work on.
TARGET: Final = "appliance"
