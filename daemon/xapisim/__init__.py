"""xapisim: a faithful simulator of a XenServer / XCP-ng pool's XAPI.

It speaks XML-RPC at ``/`` and JSON-RPC at ``/jsonrpc``, keeps real disk
content in sparse files, serves the HTTP transfer handlers (raw and VHD
disks, XVA) and injects faults on demand. It never imports ``xenkeep``.

Start one from Python with :func:`start_simulator`, from synchronous code
(threads, the XenAPI SDK) with :class:`xapisim.testing.SimulatorThread`, or
from a shell with ``python -m xapisim --state DIR --listen HOST:PORT --demo``.

Where things live: ``dispatch.py`` routes ``"Class.method"`` to the handlers
of ``classes/`` (one module per XAPI class: ``vm.py``, ``vdi.py``,
``vbd_vif.py``, ``sr_pbd.py``, ``network.py``, ``host_pool.py``,
``session.py``, ``task.py``, ``message.py``, ``event.py``, ``sim.py``, and
``generic.py`` for the accessors all classes share); ``pool.py`` holds a
pool's state, ``model/`` the rules handlers share (disks, VMs, tasks);
``transfer/`` serves the HTTP transfers; ``vhdio/`` and ``xvaio/`` are the
simulator's own codecs. README.md has the full map.
"""

from .server import RunningSimulator, start_simulator

__all__ = ["RunningSimulator", "start_simulator"]
