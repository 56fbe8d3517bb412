"""Every JSON API route that takes a body, fed generated bad input over HTTPS.

Whatever arrives (wrong types, huge or control-laden strings, lone
surrogates, deep nesting, non-objects, broken JSON, the wrong content type,
hostile path parameters), the answer is a clear refusal in the JSON error
envelope: never a 500 and never a traceback.

Each route gets its own daemon, signed in as the administrator, shared by
that route's examples. Hypothesis runs derandomized and without its example
database, so every run sends the same cases and the test cannot flake.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote

import hypothesis
import pytest
from hypothesis import HealthCheck, given
from hypothesis import strategies as st
from yarl import URL

from tests.integration.web.test_access_matrix import app_routes
from tests.support.web import ADMIN_PASSWORD, Browser, complete_setup
from xenkeep.config import Settings
from xenkeep.web import keys
from xenkeep.web.server import RunningServer

PARAM = re.compile(r"\{([^}:]+)(:[^}]+)?\}")
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

#: A plausible body for each route: the fuzz breaks one part of it at a time,
#: so the refusal comes from the check of that part, not from a missing field.
#: A body route missing here fails test_every_body_route_is_fuzzed.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/api/v1/setup/token"): {"token": "x" * 32},
    ("POST", "/api/v1/setup/admin"): {"username": "bob", "password": "p" * 12, "confirm": "p"},
    ("POST", "/api/v1/session"): {"username": "alice", "password": "wrong", "code": "123456"},
    ("DELETE", "/api/v1/session"): {},
    ("DELETE", "/api/v1/sessions"): {},
    ("POST", "/api/v1/tokens"): {"name": "ci"},
    ("DELETE", "/api/v1/tokens/{token_id}"): {},
    ("PUT", "/api/v1/appliance"): {"name": "Keep", "timezone": "Europe/Berlin"},
    # The signed-in administrator is user 1, whom these routes refuse to
    # delete, disable, demote or reset: the examples keep their session.
    ("PUT", "/api/v1/account/password"): {
        "old": "not the password",
        "new": "another long passphrase",
        "confirm": "another long passphrase",
    },
    ("POST", "/api/v1/account/totp"): {},
    ("POST", "/api/v1/account/totp/confirm"): {"code": "123456", "password": "not it"},
    ("POST", "/api/v1/account/recovery-codes"): {"password": "not the password"},
    ("DELETE", "/api/v1/account/sessions/{session_id}"): {},
    ("POST", "/api/v1/users"): {
        "username": "bob",
        "role": "user",
        "display_name": "Bob",
        "email": "bob@example.org",
        "password": "a long enough passphrase",
    },
    ("PATCH", "/api/v1/users/{user_id}"): {
        "display_name": "Alice",
        "email": "alice@example.org",
        "role": "admin",
        "disabled": False,
    },
    ("DELETE", "/api/v1/users/{user_id}"): {},
    ("POST", "/api/v1/users/{user_id}/password"): {},
    ("POST", "/api/v1/groups"): {"name": "ops", "description": "the operators"},
    ("PATCH", "/api/v1/groups/{group_id}"): {"name": "ops", "description": "d"},
    ("DELETE", "/api/v1/groups/{group_id}"): {},
    ("POST", "/api/v1/groups/{group_id}/members"): {"user_id": 1},
    ("DELETE", "/api/v1/groups/{group_id}/members/{user_id}"): {},
    ("POST", "/api/v1/grants"): {"subject": "user:1", "object": "all", "role": "viewer"},
    ("DELETE", "/api/v1/grants/{grant_id}"): {},
    ("POST", "/api/v1/account/ssh-keys"): {
        "name": "laptop",
        "key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHb4UkBmxOWqq3tBEzKPL/c9c2uQMHl16wG0lYvXwOIF",
    },
    ("DELETE", "/api/v1/account/ssh-keys/{key_id}"): {},
    ("POST", "/api/v1/resource-sets"): {
        "name": "developers",
        "limits": {"cpus": 8, "memory": 8 << 30, "disk": 100 << 30, "disks": 8, "vms": 4},
        "subjects": ["user:1", "group:1"],
        "objects": {"template": ["t"], "sr": ["s"], "network": ["n"]},
        "count_snapshots": False,
    },
    ("PUT", "/api/v1/resource-sets/{set_id}"): {"name": "developers", "limits": {"vms": 2}},
    ("DELETE", "/api/v1/resource-sets/{set_id}"): {},
    # No pool is connected in the fuzz: a well-formed request ends in 404.
    ("POST", "/api/v1/self/vms"): {
        "pool": 1,
        "template": "0b4a3f39-8a4e-4c43-9c2b-1f1f1f1f1f1f",
        "name": "web{index}",
        "count": 2,
        "vcpus": 2,
        "memory_mib": 1024,
        "root_disk_gib": 20,
        "extra_disks_gib": [5],
        "sr": "0b4a3f39-8a4e-4c43-9c2b-2f2f2f2f2f2f",
        "network": "0b4a3f39-8a4e-4c43-9c2b-3f3f3f3f3f3f",
        "ssh_keys": [],
        "cloud_config": "#cloud-config\npackages: [htop]\n",
        "network_config": {"address": "192.0.2.10/24", "gateway": "192.0.2.1", "dns": []},
    },
    ("POST", "/api/v1/self/vms/{vm_uuid}/start"): {},
    ("POST", "/api/v1/self/vms/{vm_uuid}/stop"): {},
    ("POST", "/api/v1/self/vms/{vm_uuid}/reboot"): {},
    ("DELETE", "/api/v1/self/vms/{vm_uuid}"): {},
    ("POST", "/api/v1/auth/providers"): {"kind": "oidc", "name": "Corp", "enabled": False},
    ("PUT", "/api/v1/auth/providers/settings"): {"public_url": "https://keep.example:8443"},
    ("PUT", "/api/v1/auth/providers/{provider_id}"): {"name": "Corp", "mappings": []},
    ("DELETE", "/api/v1/auth/providers/{provider_id}"): {},
    ("POST", "/api/v1/auth/providers/{provider_id}/test"): {"username": "alice"},
    ("PUT", "/api/v1/network"): {
        "mode": "static",
        "address": "192.0.2.10/24",
        "gateway": "192.0.2.1",
        "dns": ["192.0.2.53"],
        "timeout": 120,
    },
    ("PUT", "/api/v1/network/ntp"): {"servers": ["ntp.example.org"], "timeout": 60},
    ("POST", "/api/v1/network/confirm"): {"checkpoint": "0123456789abcdef"},
    ("POST", "/api/v1/network/revert"): {"checkpoint": "0123456789abcdef"},
    ("POST", "/api/v1/pools"): {
        "url": "https://127.0.0.1:1",
        "username": "root",
        "password": "demo",
        "fingerprint": "AA:BB",
    },
    ("POST", "/api/v1/pools/probe"): {"url": "https://127.0.0.1:1"},
    ("DELETE", "/api/v1/pools/{pool_id}"): {},
    ("POST", "/api/v1/operations/{op_id}/cancel"): {},
    # Takes no body: whatever is sent is ignored (a run starts, or 409 while one runs).
    ("POST", "/api/v1/diagnostics/run"): {},
    ("POST", "/api/v1/backup/verify"): {"vm_uuid": "0b4a3f39-8a4e-4c43-9c2b-1f1f1f1f1f1f"},
    ("PUT", "/api/v1/backup/verify/schedule"): {"schedule": "daily 03:00"},
    # The path is replaced only by values naming no existing directory (see
    # storage_paths): the daemon runs as root here and would initialise it.
    ("POST", "/api/v1/backup/storage"): {"path": "relative/dir"},
    ("POST", "/api/v1/backup/disks/detach"): {},
    ("POST", "/api/v1/backup/disks/{device}/format"): {"confirm": "sdb"},
    ("POST", "/api/v1/backup/disks/{device}/attach"): {},
    ("POST", "/api/v1/backup/jobs"): {
        "name": "nightly",
        "selector": "name",
        "targets": ["web"],
        "pool_id": "1",
        "schedule": "daily 02:00",
        "timezone": "UTC",
        "retention": 7,
        "concurrency": 2,
        "bandwidth_limit_mib": 10,
        "full_every": 7,
        "enabled": True,
    },
    ("PUT", "/api/v1/backup/jobs/{job_id}"): {"name": "nightly", "selector": "pool"},
    ("POST", "/api/v1/backup/jobs/preview"): {
        "selector": "name",
        "targets": ["web-01"],
        "exclude": ["db-01"],
        "pool_id": "1",
        "choices": True,
    },
    ("DELETE", "/api/v1/backup/jobs/{job_id}"): {},
    ("POST", "/api/v1/backup/jobs/{job_id}/run"): {},
    ("POST", "/api/v1/backup/jobs/{job_id}/prune"): {},
    ("POST", "/api/v1/backup/runs/{run_id}/cancel"): {},
    ("DELETE", "/api/v1/backup/vms/{vm_uuid}/points/{point_id}"): {},
    ("POST", "/api/v1/backup/restore"): {
        "pool_id": "1",
        "vm_uuid": "0b4a3f39-8a4e-4c43-9c2b-1f1f1f1f1f1f",
        "point_id": "20261125T125013Z-000004",
        "sr_uuid": "0b4a3f39-8a4e-4c43-9c2b-2f2f2f2f2f2f",
        "name": "restored",
        "networks": {"a": "b"},
        "with_networks": True,
    },
    ("PUT", "/api/v1/appliance-backup/passphrase"): {
        "passphrase": "quiet orange tractor meadow",
        "confirm": "quiet orange tractor meadow",
    },
    ("POST", "/api/v1/appliance-backup/recovery-key"): {},
    ("PUT", "/api/v1/appliance-backup/retention"): {"retention": 5},
    ("POST", "/api/v1/appliance-backup/run"): {},
    ("POST", "/api/v1/appliance-backup/copies/{copy_id}/open"): {"secret": "a passphrase"},
    ("POST", "/api/v1/appliance-backup/restore"): {"confirm": "RESTORE"},
    ("POST", "/api/v1/backup/vms/{vm_uuid}/points/delete"): {"confirm": "web-01"},
    ("POST", "/api/v1/backup/vms/{vm_uuid}/points/{point_id}/health-check"): {
        "pool_id": "1",
        "sr_uuid": "0b4a3f39-8a4e-4c43-9c2b-2f2f2f2f2f2f",
        "health_check_timeout": 60,
    },
    # Without a host (and none stored in the route's own daemon): every
    # variant is refused before anything connects, so no random name is
    # ever looked up or mailed to.
    ("POST", "/api/v1/backup/smtp/test"): {},
    ("POST", "/api/v1/replication/jobs"): {
        "name": "dr",
        "selector": "name",
        "targets": ["web"],
        "exclude": ["db"],
        "pool_id": "1",
        "target_pool_id": "2",
        "target_sr_uuid": "0b4a3f39-8a4e-4c43-9c2b-1f1f1f1f1f1f",
        "schedule": "*/10 * * * *",
        "timezone": "UTC",
        "retention": 3,
        "concurrency": 2,
        "bandwidth_limit_mib": 10,
        "networks": [{"source": "LAN", "target": "DR LAN"}],
        "enabled": True,
    },
    ("PUT", "/api/v1/replication/jobs/{job_id}"): {
        "name": "dr",
        "selector": "pool",
        "pool_id": "1",
        "target_pool_id": "1",
        "target_sr_uuid": "x",
    },
    ("DELETE", "/api/v1/replication/jobs/{job_id}"): {},
    ("POST", "/api/v1/replication/jobs/preview"): {
        "selector": "tag",
        "targets": "prod",
        "exclude": "web-01",
        "pool_id": "1",
    },
    ("POST", "/api/v1/replication/jobs/{job_id}/run"): {},
    ("DELETE", "/api/v1/replication/replicas/{replica_id}"): {"remove_vm": False},
    ("POST", "/api/v1/replication/replicas/{replica_id}/start"): {"point_uuid": "p"},
    ("POST", "/api/v1/replication/replicas/{replica_id}/failback"): {"start_source": True},
    ("PUT", "/api/v1/backup/smtp"): {
        "host": "mail.example",
        "port": 587,
        "username": "u",
        "password": "p",
        "sender": "keep@example.org",
        "recipients": ["ops@example.org"],
        "starttls": True,
        "verify_tls": True,
    },
}

#: Routes that end the caller's session when they succeed: sign in again
#: after them so the next example still reaches the route as an administrator.
SIGNS_OUT = frozenset({("DELETE", "/api/v1/session"), ("DELETE", "/api/v1/sessions")})

#: Answers at or above 500 that are not bugs: the disk and network operations
#: ask a privileged helper that no test starts (503), a pool behind the appliance
#: may fail (502). Each must still be a deliberate, enveloped refusal.
DELIBERATE_5XX = frozenset({502, 503})

#: A huge string, placed in one field at a time (kind "huge"): anywhere in
#: generated values it could add up past MAX_JSON_BYTES, and a body the
#: server refuses unread ends the connection while the client still writes.
HUGE = "x" * 200_000
HOSTILE_STRINGS = [
    "",
    " ",
    "a\r\nInjected: yes",
    "\x00",
    "line\nbreak",
    "\x1b[31mred",
    "\u202egnp.exe",  # right-to-left override
    "\ufeff",
    "\ud800",  # a lone surrogate: valid JSON, not encodable as UTF-8
    "\udfff tail",
    "../../../etc/passwd",
    "%00",
    "😀" * 1000,
    "1e400",
    "NaN",
]

#: Literal JSON values no Python value produces through json.dumps.
RAW_VALUES = [
    b"1" + b"0" * 5_000,  # more digits than Python converts by default
    b"-" + b"9" * 400,
    b"1e999",
    b"NaN",
    b"-Infinity",
    b"1" + b"0" * 30,
]

MALFORMED = [
    b"",
    b"{",
    b'{"a": }',
    b"\xff\xfe\x00",
    b'{"a": "\xff"}',
    b"{'single': 'quotes'}",
    b'{"a": 1,}',
    b"[" * 200 + b"]" * 200,
    b'{"a":' * 200 + b"1" + b"}" * 200,
    b"\x00" * 64,
]

CONTENT_TYPES = [
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=xk",
    "application/json; charset=latin-1",
    "application/xml",
    "",
]

HOSTILE_PARAMS = [
    "..",
    "../..",
    "%2e%2e",
    "%2e%2e%2f%2e%2e%2fetc",
    "%00",
    "1%00",
    "9" * 30,
    "9" * 400,
    "9" * 5_000,
    "-1",
    "0",
    "1.5",
    "%20",
    "%0d%0aX:%20y",
    quote("١٢", safe=""),  # Arabic-Indic digits: int() reads them
    quote("𝟗𝟗", safe=""),
    quote("\u202e", safe=""),
    quote("😀", safe=""),
    "%ff",
    "%",
]

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(HOSTILE_STRINGS),
    st.text(max_size=40),
)
json_values = st.recursive(
    json_leaf,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


def nested(depth: int) -> Any:
    value: Any = "deep"
    for n in range(depth):
        value = {"k": value} if n % 2 else [value]
    return value


def storage_paths() -> st.SearchStrategy[Any]:
    """Bad ``path`` values that can never name an existing directory."""
    return st.one_of(
        json_values.filter(lambda v: not (isinstance(v, str) and v.strip().startswith("/"))),
        st.text(max_size=30).map(lambda s: "/nonexistent-xenkeep-fuzz/" + s),
    )


def field_value(route: tuple[str, str], field: str) -> st.SearchStrategy[Any]:
    if route == ("POST", "/api/v1/backup/storage") and field == "path":
        return storage_paths()
    return st.one_of(json_values, st.integers(1, 40).map(nested))


@st.composite
def bodies(draw: st.DrawFn, route: tuple[str, str]) -> tuple[str, bytes]:
    """A content type and the raw bytes of a bad body for ``route``."""
    base = BODIES[route]
    fields = sorted(base) or ["name"]
    kinds = ["field", "raw", "extra", "nonobject", "malformed", "ctype"]
    if base and not params_of(route[1]):
        # Only where the body is surely read (a bad path parameter is refused
        # first): the server lingers just 2 s over an unread body, then
        # closes the connection under the still-writing client.
        kinds.append("huge")
    kind = draw(st.sampled_from(kinds))
    ctype = "application/json"
    if kind in ("field", "huge"):
        body = dict(base)
        field = draw(st.sampled_from(fields))
        body[field] = HUGE if kind == "huge" else draw(field_value(route, field))
        return ctype, json.dumps(body).encode()
    if kind == "raw":
        field = draw(st.sampled_from(fields))
        rest = {k: v for k, v in base.items() if k != field}
        raw = json.dumps(rest).encode()[:-1]
        sep = b", " if rest else b""
        return ctype, raw + sep + json.dumps(field).encode() + b": " + draw(
            st.sampled_from(RAW_VALUES)
        ) + b"}"
    if kind == "extra":
        body = dict(base)
        body.update(draw(st.dictionaries(st.text(max_size=12), json_values, max_size=5)))
        return ctype, json.dumps(body).encode()
    if kind == "nonobject":
        value = draw(json_values.filter(lambda v: not isinstance(v, dict)))
        return ctype, json.dumps(value).encode()
    if kind == "malformed":
        return ctype, draw(st.sampled_from(MALFORMED))
    return draw(st.sampled_from(CONTENT_TYPES)), json.dumps(base).encode()


def params_of(path: str) -> list[str]:
    return [m.group(1) for m in PARAM.finditer(path)]


def fill(path: str, values: dict[str, str]) -> str:
    return PARAM.sub(lambda m: values.get(m.group(1), "1"), path)


def path_values(path: str) -> st.SearchStrategy[dict[str, str]]:
    """A hostile (already percent-encoded) value for one of the path's
    parameters; the others stay plausible. One at a time keeps the request
    line under aiohttp's 8 KB limit, which refuses longer ones (and closes
    the connection) before the application sees them."""
    value = st.one_of(
        st.sampled_from(HOSTILE_PARAMS),
        st.text(min_size=1, max_size=20).map(lambda s: quote(s, safe="")),
    )
    return st.builds(lambda name, v: {name: v}, st.sampled_from(params_of(path)), value)


def body_routes(server: RunningServer) -> set[tuple[str, str]]:
    return {
        (method, path)
        for method, path, _ in app_routes(server.app)
        if path.startswith("/api/v1/") and method in BODY_METHODS
    }


async def test_every_body_route_is_fuzzed(daemon: RunningServer) -> None:
    live = body_routes(daemon)
    assert live == set(BODIES), (
        f"add to BODIES: {sorted(live - set(BODIES))}; gone: {sorted(set(BODIES) - live)}"
    )


async def sign_in(browser: Browser) -> None:
    browser.csrf = ""  # the old session's token went with it
    status, body = await browser.api(
        "POST", "/api/v1/session", {"username": "alice", "password": ADMIN_PASSWORD}
    )
    assert status == 200, body


async def send(
    browser: Browser, method: str, path: str, ctype: str, raw: bytes
) -> tuple[int, bytes, str]:
    headers = {"X-CSRF-Token": browser.csrf}
    if ctype:
        headers["Content-Type"] = ctype
    # encoded=True: the hostile parameters reach the server byte for byte.
    url = URL(browser.url(path), encoded=True)
    async with browser.session.request(
        method, url, data=raw, headers=headers, allow_redirects=False
    ) as resp:
        return resp.status, await resp.read(), resp.headers.get("Content-Type", "")


def check_answer(what: str, status: int, raw: bytes, ctype: str) -> None:
    text = raw.decode("utf-8", "replace")
    assert "Traceback" not in text, f"{what}: a traceback in the answer: {text[:400]}"
    assert status < 500 or status in DELIBERATE_5XX, f"{what} -> {status}: {text[:400]}"
    if status < 400:
        return
    assert ctype.startswith("application/json"), f"{what} -> {status} as {ctype}: {text[:200]}"
    error = json.loads(raw)["error"]
    assert isinstance(error["code"], str) and error["code"], f"{what}: {error}"
    assert isinstance(error["message"], str) and error["message"], f"{what}: {error}"
    assert error["code"] != "internal_error", f"{what}: {error}"


@pytest.mark.parametrize("route", sorted(BODIES), ids=lambda r: f"{r[0]} {r[1]}")
@hypothesis.settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    database=None,
    # The signed-in daemon is shared by the route's examples on purpose.
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)
@given(data=st.data())
async def test_bad_input_is_refused_clearly(
    browser: Browser, settings: Settings, route: tuple[str, str], data: st.DataObject
) -> None:
    if await keys.auth(browser.server.app).setup_required():  # this daemon's first example
        await complete_setup(browser, settings)
    method, pattern = route
    ctype, raw = data.draw(bodies(route), label="body")
    values = data.draw(path_values(pattern), label="path") if params_of(pattern) else {}
    path = fill(pattern, values)
    status, answer, answer_type = await send(browser, method, path, ctype, raw)
    check_answer(f"{method} {path} [{ctype}] {raw[:120]!r}", status, answer, answer_type)
    if route in SIGNS_OUT and status == 200:
        await sign_in(browser)
