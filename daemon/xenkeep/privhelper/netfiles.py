"""networkd's and timesyncd's files on the appliance, and telling those services.

The two *parts* a change can touch, each one file and the service that
reads it (:data:`PARTS`):

- ``network``: ``/etc/systemd/network/10-xenkeep.network`` (absent: DHCP,
  from the image's ``90-xenkeep-dhcp.network``), then ``networkctl reload``,
  which reconfigures every interface whose ``.network`` file is new, changed
  or gone (networkd 244 and later): one reconfiguration, where an explicit
  ``networkctl reconfigure`` after it would drop the addresses a second time;
- ``ntp``: ``/etc/systemd/timesyncd.conf.d/50-xenkeep.conf`` (absent: the
  image's default servers), then ``systemctl try-restart
  systemd-timesyncd.service``.

Files are rendered by :mod:`xenkeep.system.netconf` and read back through
it (every value validated again); a file that does not read back is
reported as edited by hand rather than guessed at. A checkpoint
(:mod:`.checkpoint`) keeps the bytes of a part's file as they were, absent
included, and puts exactly those back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path, PurePosixPath
from typing import Final

from xenkeep.privhelper.files import write_atomic
from xenkeep.system.helper_protocol import RequestError
from xenkeep.system.netconf import (
    NETWORK_FILE,
    TIMESYNCD_FILE,
    NetconfError,
    NetworkSettings,
    UnrepresentableError,
    read_network_file,
    read_timesyncd_file,
    render_network,
    render_timesyncd,
)
from xenkeep.system.run import Run

NETWORK: Final = "network"
NTP: Final = "ntp"
#: Each part a change can touch and the file that holds it.
PARTS: Final[Mapping[str, PurePosixPath]] = {NETWORK: NETWORK_FILE, NTP: TIMESYNCD_FILE}
#: The appliance's one NIC: enX0 under XenServer, enp0s*/ens* under QEMU,
#: eth* on old kernels (as netconf.MATCH_NAMES).
NIC_PREFIXES: Final = ("en", "eth")

#: A part's file as a checkpoint keeps it: its text, or None when absent.
Snapshot = dict[str, str | None]


class NetworkFiles:
    """Reads, writes and applies the network and NTP files under a root.

    ``path`` maps an absolute path of the appliance to where it is (``root``
    joined, see :class:`~xenkeep.privhelper.applier.Applier`); ``live`` says
    whether running services are told (the first boot writes before they
    start).
    """

    def __init__(self, path: Callable[[PurePosixPath], Path], run: Run, *, live: bool) -> None:
        self._path = path
        self._run = run
        self._live = live

    async def read(self) -> tuple[NetworkSettings, list[str]]:
        """The settings the files hold, and the paths of those edited by hand.

        A hand-edited part reads as its default (DHCP, default NTP servers)
        in the settings; the list says not to trust that.
        """
        texts = await asyncio.to_thread(self._read_texts, PARTS)
        hand_edited: list[str] = []
        static = None
        ntp: tuple[str, ...] = ()
        try:
            if texts[NETWORK] is not None:
                static = read_network_file(texts[NETWORK] or "")
        except NetconfError:
            hand_edited.append(str(NETWORK_FILE))
        try:
            if texts[NTP] is not None:
                ntp = read_timesyncd_file(texts[NTP] or "")
        except NetconfError:
            hand_edited.append(str(TIMESYNCD_FILE))
        return NetworkSettings(static, ntp), hand_edited

    async def snapshot(self, parts: Iterable[str]) -> Snapshot:
        """The files of ``parts`` as they are now."""
        return await asyncio.to_thread(self._read_texts, list(parts))

    async def write(self, settings: NetworkSettings, parts: Iterable[str]) -> None:
        """Write the files of ``parts`` for ``settings`` (or remove them, for the defaults).

        Rendering comes first for every part, so a value the serializer
        refuses changes no file.
        """
        texts: Snapshot = {}
        try:
            for part in parts:
                if part == NETWORK:
                    static = settings.static
                    texts[part] = None if static is None else render_network(static)
                else:
                    texts[part] = render_timesyncd(settings.ntp) if settings.ntp else None
        except (UnrepresentableError, NetconfError) as exc:
            # Validation lets nothing through that gets here; if it did,
            # refusing beats writing a file networkd would read otherwise.
            raise RequestError(str(exc)) from None
        await self.restore(texts)

    async def restore(self, snapshot: Mapping[str, str | None]) -> None:
        """Put each part's file back as ``snapshot`` has it (None: removed)."""
        await asyncio.to_thread(self._write_texts, dict(snapshot))

    async def reload(self, parts: Iterable[str], *, block: bool = True) -> None:
        """Tell the services reading ``parts`` (nothing unless ``live``).

        ``block=False`` only queues timesyncd's restart: the first boot
        runs while the boot's own jobs are still being carried out.
        """
        if not self._live:
            return
        wanted = set(parts)
        if NETWORK in wanted:
            await self._run(["networkctl", "reload"], None)
        if NTP in wanted:
            no_block = [] if block else ["--no-block"]
            await self._run(
                ["systemctl", "try-restart", *no_block, "systemd-timesyncd.service"], None
            )

    def _read_texts(self, parts: Iterable[str]) -> Snapshot:
        texts: Snapshot = {}
        for part in parts:
            try:
                texts[part] = self._path(PARTS[part]).read_text()
            except FileNotFoundError:
                texts[part] = None
        return texts

    def _write_texts(self, texts: Snapshot) -> None:
        for part, text in texts.items():
            path = self._path(PARTS[part])
            if text is None:
                path.unlink(missing_ok=True)
            else:
                write_atomic(path, text)
