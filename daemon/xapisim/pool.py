"""One simulated pool: its state directory, database, disks, tasks and faults.

``SimPool`` owns what a pool is made of and hands each part to whoever needs
it: ``db`` (the records, saved to ``db.json``), ``faults``, ``disks``
(``model/disks.py``), ``vms`` (``model/vms.py``) and ``tasks``
(``model/tasks.py``). It also holds the credentials and sessions. It answers
no XAPI call itself: ``dispatch.call(pool, method, params)`` does, with the
handlers of ``classes/``.

``open()`` loads the saved state or seeds a new pool (``demo.py``); while
open, a background loop saves the database whenever it changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path
from typing import Any

from .db import Database, now
from .demo import seed_demo, seed_minimal
from .errors import SESSION_AUTHENTICATION_FAILED, SESSION_INVALID, XapiError
from .faults import Faults
from .model import records
from .model.disks import Disks
from .model.tasks import Tasks
from .model.vms import Vms
from .model.wire import WireCounter
from .qemu import FORWARD_HOST, SSH_PORT_KEY, QemuBackend, enabled_by_env

#: The root password of a pool started without ``--password``.
DEMO_PASSWORD = "demo"
#: Set to "1": pools export deltas with partial blocks unless told otherwise.
PARTIAL_BLOCKS_ENV = "XAPISIM_PARTIAL_BLOCKS"
#: A raw cloud image the demo seed registers as a bootable template.
CLOUD_IMAGE_ENV = "XAPISIM_CLOUD_IMAGE"


class SimPool:
    """One simulated pool: its database, disks, sessions, tasks and faults."""

    def __init__(
        self,
        state_dir: Path,
        *,
        password: str = DEMO_PASSWORD,
        user: str = "root",
        partial_blocks: bool | None = None,
        qemu: bool | None = None,
        cloud_image: Path | None = None,
    ) -> None:
        self.state_dir = state_dir
        #: Delta exports hold partial blocks (only the changed sectors in a
        #: block's bitmap) rather than every changed block whole. Default:
        #: the environment's XAPISIM_PARTIAL_BLOCKS=1 (set by the test suite).
        self.partial_blocks = (
            os.environ.get(PARTIAL_BLOCKS_ENV) == "1" if partial_blocks is None else partial_blocks
        )
        state_dir.mkdir(parents=True, exist_ok=True)
        self.db = Database(state_dir / "db.json")
        self.faults = Faults()
        self.disks = Disks(self.db, self.faults, state_dir)
        self.vms = Vms(self.db, self.disks)
        self.tasks = Tasks(self.db, self.faults)
        #: Bytes each disk transfer moved (``sim.transfer_stats``).
        self.wire = WireCounter()
        self.user = user
        self.password = password
        #: ``event.register`` subscriptions by session: {"subs": set, "gen": int}.
        self.registrations: dict[str, dict[str, Any]] = {}
        self._saver: asyncio.Task[None] | None = None
        #: VMs boot under QEMU (``qemu.py``); default: XAPISIM_QEMU=1.
        self.qemu: QemuBackend | None = None
        if enabled_by_env() if qemu is None else qemu:
            self.qemu = QemuBackend(state_dir / "qemu", self.guest_exited, self.guest_reported)
        #: A raw cloud disk the demo seed makes a bootable template of
        #: (default: XAPISIM_CLOUD_IMAGE, only with the QEMU backend on).
        if cloud_image is None and os.environ.get(CLOUD_IMAGE_ENV):
            cloud_image = Path(os.environ[CLOUD_IMAGE_ENV])
        self.cloud_image = cloud_image if self.qemu is not None else None

    # -- lifecycle -----------------------------------------------------
    async def open(self, *, demo: bool = False) -> None:
        """Load the saved state, or seed a new pool."""
        if not self.db.load():
            if demo:
                await seed_demo(self)
            else:
                await seed_minimal(self)
            self.db.save()
        if self.qemu is not None:
            # QEMUs never outlive a simulator: VMs it left Running are not.
            for ref, vm in list(self.db.items("VM")):
                if SSH_PORT_KEY in vm["other_config"]:
                    self.guest_exited(ref)
        self._saver = asyncio.create_task(self._save_loop())

    async def close(self) -> None:
        """Stop background work, kill the QEMUs, and save."""
        await self.tasks.close()
        if self.qemu is not None:
            await self.qemu.close()
            for ref, vm in list(self.db.items("VM")):
                if SSH_PORT_KEY in vm["other_config"]:
                    self.guest_exited(ref)
        if self._saver is not None:
            self._saver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._saver
        self.db.save()

    def guest_reported(self, vm_ref: str) -> None:
        """A VM's guest is up under QEMU: it reports, at the forwarded address."""
        if self.db.exists("VM", vm_ref):
            self.vms.report_guest(vm_ref, {"0/ip": FORWARD_HOST, "0/ipv4/0": FORWARD_HOST})

    def guest_exited(self, vm_ref: str) -> None:
        """A VM's QEMU is gone: the VM is Halted and its forward forgotten."""
        if not self.db.exists("VM", vm_ref):
            return
        other = dict(self.db.get("VM", vm_ref)["other_config"])
        if other.pop(SSH_PORT_KEY, None) is not None:
            self.db.set("VM", vm_ref, other_config=other)
        if self.db.get("VM", vm_ref)["power_state"] != "Halted":
            self.vms.set_power(vm_ref, "Halted")

    async def _save_loop(self) -> None:
        while True:
            await asyncio.sleep(0.2)
            if self.db.dirty:
                self.db.save()

    @property
    def pool_ref(self) -> str:
        return records.pool_ref(self.db)

    @property
    def master_ref(self) -> str:
        return records.master_ref(self.db)

    @property
    def name(self) -> str:
        return str(self.db.get("pool", self.pool_ref)["name_label"])

    def vdi_path(self, vdi_ref: str) -> Path:
        """The sparse file behind a VDI."""
        return self.disks.vdi_path(vdi_ref)

    # -- sessions ------------------------------------------------------
    def login(self, uname: Any, pwd: Any, originator: str = "") -> str:
        if uname != self.user or pwd != self.password:
            raise XapiError(SESSION_AUTHENTICATION_FAILED, uname, "Authentication failure")
        return self.db.create(
            "session",
            {
                "this_host": self.master_ref,
                "last_active": now(),
                "validation_time": now(),
                "is_local_superuser": True,
                "auth_user_name": uname,
                "originator": originator,
                "rbac_permissions": [],
            },
        )

    def check_session(self, ref: Any) -> str:
        if not isinstance(ref, str) or not self.db.exists("session", ref):
            raise XapiError(SESSION_INVALID, ref)
        return ref
