"""Command line: ``python -m xapisim --state DIR --listen HOST:PORT [--demo]``.

Several pools can be served by one process with repeated
``--pool STATE_DIR=HOST:PORT``. Each pool prints one line once it listens::

    xapisim: pool <name> listening on http://HOST:PORT/ state=<dir>
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

from .server import RunningSimulator, start_simulator


def _hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def _pool_spec(text: str) -> tuple[Path, str, int]:
    state, sep, listen = text.rpartition("=")
    if not sep or not state:
        raise argparse.ArgumentTypeError(f"expected STATE_DIR=HOST:PORT, got {text!r}")
    host, port = _hostport(listen)
    return Path(state), host, port


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m xapisim", description=(__doc__ or "").split("\n")[0]
    )
    parser.add_argument("--state", type=Path, help="state directory of the pool")
    parser.add_argument(
        "--listen",
        type=_hostport,
        default=("127.0.0.1", 8090),
        help="HOST:PORT to serve on (default 127.0.0.1:8090)",
    )
    parser.add_argument(
        "--pool",
        type=_pool_spec,
        action="append",
        default=[],
        metavar="STATE_DIR=HOST:PORT",
        help="serve another pool (repeatable)",
    )
    parser.add_argument(
        "--demo", action="store_true", help="seed new state directories with the demo pool"
    )
    parser.add_argument("--password", default="demo", help="root password (default: demo)")
    parser.add_argument(
        "--partial-blocks",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="delta exports hold only the changed sectors of each block "
        "(default: XAPISIM_PARTIAL_BLOCKS=1 in the environment)",
    )
    parser.add_argument(
        "--qemu",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="VM.start boots the VM's disks under QEMU (TCG), SSH forwarded to "
        "127.0.0.1 (default: XAPISIM_QEMU=1 in the environment)",
    )
    parser.add_argument(
        "--cloud-image",
        type=Path,
        default=None,
        help="with --qemu --demo: a raw cloud disk (make cloud-template) seeded as the "
        "template 'Debian 12 Cloud (QEMU)' (default: XAPISIM_CLOUD_IMAGE)",
    )
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    if args.state is None and not args.pool:
        parser.error("give --state DIR or at least one --pool STATE_DIR=HOST:PORT")
    return args


async def serve(args: argparse.Namespace) -> None:
    specs = list(args.pool)
    if args.state is not None:
        specs.insert(0, (args.state, *args.listen))
    running: list[RunningSimulator] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        for state, host, port in specs:
            sim = await start_simulator(
                state,
                host,
                port,
                demo=args.demo,
                password=args.password,
                partial_blocks=args.partial_blocks,
                qemu=args.qemu,
                cloud_image=args.cloud_image,
            )
            running.append(sim)
            print(f"xapisim: pool {sim.pool.name} listening on {sim.url} state={state}", flush=True)
        await stop.wait()
    finally:
        for sim in running:
            with contextlib.suppress(Exception):
                await sim.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
