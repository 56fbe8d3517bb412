"""``GET /pool/xmldbdump``: the pool's database as XML, as ``xe pool-dump-database`` saves it.

XAPI answers 200 with no length (the dump is written as it is walked) and
closes the connection. The document is XAPI's ``Db_xml`` shape:

    <?xml version="1.0" encoding="UTF-8"?>
    <database><manifest><pair key="schema_major_vsn" value="5"/>...</manifest>
    <table name="VM"><row ref="OpaqueRef:..." uuid="..." name_label="..." .../></table>
    ...</database>

one ``row`` per object, every stored field an attribute; sets and maps in
XAPI's S-expression form (``('a' 'b')``, ``(('key' 'value'))``). Field names
are the simulator's (the API's); XAPI's own database spells namespaced ones
with ``__`` (``name__label``). Sessions and tasks are not dumped, as the
simulator does not persist them. The dump goes through the transfer meter,
so drop and throttle faults apply to it like to any export.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from xml.sax.saxutils import quoteattr

from aiohttp import web

from ..pool import SimPool
from .meter import Meter

#: Bytes gathered before a piece goes out.
_PIECE = 64 * 1024
_NOT_DUMPED = frozenset({"session", "task"})
#: The database schema XCP-ng 8.2 reports in its dump's manifest.
SCHEMA_MAJOR, SCHEMA_MINOR = 5, 604


def _sexpr_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _value(value: Any) -> str:
    """A field's value as XAPI's database writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        pairs = " ".join(
            f"({_sexpr_string(str(k))} {_sexpr_string(_value(v))})" for k, v in value.items()
        )
        return f"({pairs})"
    if isinstance(value, list):
        return "(" + " ".join(_sexpr_string(_value(v)) for v in value) + ")"
    if value is None:
        return ""
    return str(value)


def dump_pieces(pool: SimPool) -> Iterator[bytes]:
    """The XML document in pieces of about 64 KiB."""
    db = pool.db
    buf: list[str] = [
        '<?xml version="1.0" encoding="UTF-8"?>\n<database><manifest>'
        f'<pair key="schema_major_vsn" value="{SCHEMA_MAJOR}"/>'
        f'<pair key="schema_minor_vsn" value="{SCHEMA_MINOR}"/>'
        f'<pair key="generation_count" value="{db.gen}"/></manifest>'
    ]
    size = len(buf[0])
    for cls in sorted(db.tables):
        if cls in _NOT_DUMPED:
            continue
        buf.append(f"<table name={quoteattr(cls)}>")
        # items() takes a list of the table first: objects made or destroyed
        # while the dump is read do not break it.
        for ref, record in db.items(cls):
            attrs = " ".join(f"{name}={quoteattr(_value(v))}" for name, v in sorted(record.items()))
            row = f"<row ref={quoteattr(ref)} {attrs}/>"
            buf.append(row)
            size += len(row)
            if size >= _PIECE:
                yield "".join(buf).encode()
                buf, size = [], 0
        buf.append("</table>")
    buf.append("</database>\n")
    yield "".join(buf).encode()


async def pool_xmldbdump(
    pool: SimPool, request: web.Request, task: str | None
) -> web.StreamResponse:
    """Stream the database as XML."""
    resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    resp.enable_chunked_encoding()
    # XAPI closes the connection after a dump (no keep-alive).
    resp.force_close()
    await resp.prepare(request)
    # The length is not known beforehand: progress counts against a guess.
    meter = Meter(pool, request, task, 1 << 20)
    for piece in dump_pieces(pool):
        await meter.send(resp, piece)
    await resp.write_eof()
    if task is not None:
        pool.tasks.task_done(task, "")
    return resp
