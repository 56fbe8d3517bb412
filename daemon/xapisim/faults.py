"""Fault injection: the ways a real pool misbehaves, on demand.

Kinds (``sim.inject_fault(session, kind, params)`` or ``POST /sim/faults``):

``drop_transfer``  ``{"bytes": N, "count": 1, "path": "/export_raw_vdi"}``
    close the TCP connection of the next ``count`` HTTP transfers (optionally
    only those on ``path``) once ``N`` body bytes have gone through.
``throttle``       ``{"bytes_per_second": N}``
    pace every transfer body to ``N`` bytes/s until cleared.
``fail_call``      ``{"method": "VM.snapshot", "error": ["SR_FULL", "1", "0"], "count": 1}``
    the next ``count`` calls of the method fail with that error list.
``delay_call``     ``{"method": "VM.snapshot", "seconds": 2.0}``
    calls of the method (and their Async task) take that long, with task
    progress moving meanwhile, so cancellation and progress can be observed.
``sr_full``        ``{"sr": "<SR ref>"}``
    every allocation on that SR fails with ``SR_FULL``.
``clock_skew``     ``{"seconds": S}``
    the hosts' clocks run ``S`` seconds ahead (negative: behind), as
    ``host.get_servertime`` reports them, until cleared.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from .errors import INVALID_VALUE, XapiError

KINDS = ("drop_transfer", "throttle", "fail_call", "delay_call", "sr_full", "clock_skew")


@dataclass
class Fault:
    """One injected fault."""

    id: str
    kind: str
    params: dict[str, Any]
    remaining: int | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"id": self.id, "kind": self.kind, "params": self.params}
        if self.remaining is not None:
            out["remaining"] = self.remaining
        return out


@dataclass
class Faults:
    """The faults armed on one simulated pool."""

    active: list[Fault] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def inject(self, kind: str, params: dict[str, Any]) -> Fault:
        """Arm a fault after checking its parameters."""
        if kind not in KINDS:
            raise XapiError(INVALID_VALUE, "kind", kind)
        p = dict(params)
        remaining: int | None = None
        try:
            if kind == "drop_transfer":
                p["bytes"] = int(p.get("bytes", 0))
                remaining = int(p.pop("count", 1))
            elif kind == "throttle":
                p["bytes_per_second"] = int(p["bytes_per_second"])
                if p["bytes_per_second"] <= 0:
                    raise ValueError("bytes_per_second")
            elif kind == "fail_call":
                p["method"] = str(p["method"])
                error = p.get("error") or ["INTERNAL_ERROR", "injected fault"]
                p["error"] = [str(e) for e in error]
                remaining = int(p.pop("count", 1))
            elif kind == "delay_call":
                p["method"] = str(p["method"])
                p["seconds"] = float(p["seconds"])
            elif kind == "sr_full":
                p["sr"] = str(p["sr"])
            elif kind == "clock_skew":
                p["seconds"] = float(p["seconds"])
        except (KeyError, TypeError, ValueError) as e:
            raise XapiError(INVALID_VALUE, "params", f"{kind}: {e!r}") from e
        fault = Fault(f"fault-{next(self._ids)}", kind, p, remaining)
        self.active.append(fault)
        return fault

    def clear(self, fault_id: str | None = None) -> None:
        """Disarm one fault, or all of them."""
        self.active = [f for f in self.active if fault_id is not None and f.id != fault_id]

    def _consume(self, fault: Fault) -> None:
        if fault.remaining is not None:
            fault.remaining -= 1
            if fault.remaining <= 0:
                self.active.remove(fault)

    def failing_call(self, method: str) -> list[str] | None:
        """The error to raise for this call, if a ``fail_call`` fault matches."""
        for f in self.active:
            if f.kind == "fail_call" and f.params["method"] == method:
                self._consume(f)
                return list(f.params["error"])
        return None

    def raise_if_failing(self, method: str) -> None:
        """Raise the error of a matching ``fail_call`` fault, if one is armed."""
        error = self.failing_call(method)
        if error is not None:
            raise XapiError(error[0], *error[1:])

    def call_delay(self, method: str) -> float:
        for f in self.active:
            if f.kind == "delay_call" and f.params["method"] == method:
                return float(f.params["seconds"])
        return 0.0

    def sr_is_full(self, sr: str) -> bool:
        return any(f.kind == "sr_full" and f.params["sr"] == sr for f in self.active)

    def take_drop(self, path: str) -> int | None:
        """Byte count after which this transfer is cut, if one is armed."""
        for f in self.active:
            if f.kind == "drop_transfer" and f.params.get("path") in (None, "", path):
                self._consume(f)
                return int(f.params["bytes"])
        return None

    def clock_skew(self) -> float:
        """Seconds the hosts' clocks are off (0 unless a ``clock_skew`` is armed)."""
        return sum(float(f.params["seconds"]) for f in self.active if f.kind == "clock_skew")

    def throttle(self) -> int | None:
        rates = [int(f.params["bytes_per_second"]) for f in self.active if f.kind == "throttle"]
        return min(rates) if rates else None
