"""The aiohttp application of one simulated pool, and how to start it.

``create_app(pool)`` builds the routes (RPC and transfers);
``start_simulator(...)`` opens a state directory, seeds it if new, and serves
it on a TCP port (port 0 picks a free one), returning a handle whose
``close()`` stops the server and saves the state.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from . import dispatch
from .pool import DEMO_PASSWORD, SimPool
from .rpc import make_handlers
from .transfer.routes import make_transfer_routes

MAX_RPC_BODY = 256 * 1024 * 1024


def create_app(pool: SimPool) -> web.Application:
    """The aiohttp application serving one pool."""
    app = web.Application(client_max_size=MAX_RPC_BODY)
    xmlrpc_handler, jsonrpc_handler = make_handlers(pool)
    app.router.add_post("/", xmlrpc_handler)
    app.router.add_post("/RPC2", xmlrpc_handler)
    app.router.add_post("/jsonrpc", jsonrpc_handler)
    app.router.add_routes(make_transfer_routes(pool))
    return app


@dataclass
class RunningSimulator:
    """A pool being served: its URL, its model and how to stop it."""

    pool: SimPool
    runner: web.AppRunner
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    @property
    def state_dir(self) -> Path:
        return self.pool.state_dir

    async def call(self, method: str, params: list[Any]) -> Any:
        """Call an API method on the pool directly, without the wire."""
        return await dispatch.call(self.pool, method, params)

    async def close(self) -> None:
        """Stop serving, finish background work and save the state."""
        await self.runner.cleanup()
        await self.pool.close()


async def start_simulator(
    state_dir: Path | str,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    demo: bool = False,
    password: str = DEMO_PASSWORD,
    partial_blocks: bool | None = None,
    qemu: bool | None = None,
    cloud_image: Path | None = None,
) -> RunningSimulator:
    """Open (or seed) ``state_dir`` and serve it on ``host:port``.

    ``partial_blocks``: delta exports hold only the changed sectors of each
    block (None: as the XAPISIM_PARTIAL_BLOCKS environment variable says).
    ``qemu``: VMs boot under QEMU (None: XAPISIM_QEMU=1); ``cloud_image``: a
    raw disk the demo seed registers as a bootable CloudInit template.
    """
    pool = SimPool(
        Path(state_dir),
        password=password,
        partial_blocks=partial_blocks,
        qemu=qemu,
        cloud_image=cloud_image,
    )
    await pool.open(demo=demo)
    runner = web.AppRunner(create_app(pool), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, shutdown_timeout=1.0)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        await pool.close()
        raise
    server = site._server
    assert server is not None
    bound = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    return RunningSimulator(pool, runner, host, int(bound))
