"""xapisim: a faithful simulator of a XenServer / XCP-ng pool's XAPI.

It speaks XML-RPC at ``/`` and JSON-RPC at ``/jsonrpc``, keeps real disk
content in sparse files, serves the HTTP transfer handlers (raw and VHD
disks, XVA) and injects faults on demand. It never imports ``xenkeep``.

Start one from Python with :func:`start_simulator`, from synchronous code
(threads, the XenAPI SDK) with :class:`xapisim.testing.SimulatorThread`, or
from a shell with ``python -m xapisim --state DIR --listen HOST:PORT --demo``.
"""

from .server import RunningSimulator, start_simulator

__all__ = ["RunningSimulator", "start_simulator"]
