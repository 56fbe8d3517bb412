"""Bytes that crossed the wire, per transfer: what a client really sent and received.

Each ``export_raw_vdi`` and ``import_raw_vdi`` adds one entry once it ends
(however it ends): the VDI, the base of a delta, the format, and the body
bytes that went through the connection, counted where the handler admits
them (see ``transfer/meter.py``). Tests read them with
``sim.transfer_stats`` to check what a client moved, instead of trusting
the client's own count.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class WireCounter:
    """Every finished disk transfer of one pool since the last reset."""

    exports: list[dict[str, Any]] = field(default_factory=list)
    imports: list[dict[str, Any]] = field(default_factory=list)

    def exported(self, vdi: str, base: str | None, fmt: str, sent: int) -> None:
        self.exports.append({"vdi": vdi, "base": base or "", "format": fmt, "bytes": sent})

    def imported(self, vdi: str, fmt: str, received: int, ok: bool) -> None:
        self.imports.append({"vdi": vdi, "format": fmt, "bytes": received, "ok": ok})

    def reset(self) -> None:
        self.exports.clear()
        self.imports.clear()

    def as_dict(self) -> dict[str, Any]:
        return {
            "exports": list(self.exports),
            "imports": list(self.imports),
            "sent": sum(e["bytes"] for e in self.exports),
            "received": sum(i["bytes"] for i in self.imports),
        }
