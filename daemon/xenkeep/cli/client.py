"""The console's way to the running daemon: its JSON API over HTTPS pinned
to the appliance's own certificate, and the short-lived API token it uses.

The console user is root on the appliance (or the daemon's user), already
trusted with the database. Rather than reach around the daemon, a command
mints a short-lived API token for the first active administrator, named for
what the console does (``console: backup run nightly``: the audit log has
one entry for the command), talks to the daemon's API with it, and revokes
it when it ends — also on errors and Ctrl-C.
"""

from __future__ import annotations

import contextlib
import json
import signal
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO, Final

from xenkeep.auth.const import AuditEvent, Role
from xenkeep.auth.manager import AuthManager, User
from xenkeep.auth.secrets import token_hash
from xenkeep.backup.const import FINISHED
from xenkeep.cli.context import Context, State
from xenkeep.cli.errors import ConsoleError, DaemonDownError
from xenkeep.config import Settings
from xenkeep.system.tls import CERT_NAME

HTTP_TIMEOUT: Final = 30.0
#: `xenkeep status` only asks whether the daemon answers: it gives up sooner.
HEALTH_TIMEOUT: Final = 5.0
#: Bytes read at a time from a download (the support bundle).
DOWNLOAD_CHUNK: Final = 1 << 16
#: Seconds between polls of a followed run.
POLL_SECONDS: Final = 0.5
#: The token name column allows 64 characters.
TOKEN_NAME_MAX: Final = 64
#: The token is revoked when the command ends; if the command is killed
#: outright, it still stops working after a day (longer than any run).
CONSOLE_TOKEN_LIFETIME: Final = 24 * 3600.0

_FINISHED_NAMES: Final = frozenset(s.value for s in FINISHED)


# --- the API client -----------------------------------------------------------------


def daemon_url(settings: Settings) -> str:
    """The daemon's HTTPS base URL on this machine."""
    host = "127.0.0.1" if settings.listen in ("::", "0.0.0.0", "") else settings.listen  # noqa: S104
    if ":" in host:
        host = f"[{host}]"
    return f"https://{host}:{settings.https_port}"


@dataclass
class Api:
    """Blocking JSON calls to the daemon, pinned to the appliance certificate."""

    base: str
    context: ssl.SSLContext
    token: str = ""
    timeout: float = HTTP_TIMEOUT
    _zone: str = ""

    @classmethod
    def for_settings(cls, settings: Settings, *, timeout: float = HTTP_TIMEOUT) -> Api:
        """A client of the daemon these settings describe; DaemonDownError without a certificate."""
        base = daemon_url(settings)
        cert = settings.tls_dir / CERT_NAME
        if not cert.exists():
            raise DaemonDownError(base, f"no certificate at {cert} yet")
        ctx = ssl.create_default_context(cafile=str(cert))
        ctx.check_hostname = False  # pinned to the exact certificate instead
        return cls(base, ctx, timeout=timeout)

    def call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """One request; the decoded JSON answer, or ConsoleError with the envelope's text."""
        headers = {"Accept": "application/json"}
        data = None
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(  # noqa: S310 - our own https URL
            self.base + path, data=data, headers=headers, method=method
        )
        try:
            with urllib.request.urlopen(  # noqa: S310
                request, context=self.context, timeout=self.timeout
            ) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:
            raise _api_error(exc) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DaemonDownError(self.base, str(reason)) from None
        except ValueError:
            raise ConsoleError(f"the daemon sent an answer that is not JSON for {path}") from None

    def download(self, path: str, out: BinaryIO) -> tuple[str, int]:
        """GET ``path`` and copy the body to ``out`` a chunk at a time; the
        file name the daemon suggests and the bytes copied."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        request = urllib.request.Request(self.base + path, headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(  # noqa: S310
                request, context=self.context, timeout=self.timeout
            ) as response:
                name = response.headers.get_filename() or ""
                size = 0
                while chunk := response.read(DOWNLOAD_CHUNK):
                    out.write(chunk)
                    size += len(chunk)
                return name, size
        except urllib.error.HTTPError as exc:
            raise _api_error(exc) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DaemonDownError(self.base, str(reason)) from None

    def get(self, path: str) -> Any:
        """GET ``path``."""
        return self.call("GET", path)

    def timezone(self) -> str:
        """The appliance's time zone, which the console shows times in
        (asked once: the console's own system zone may be another)."""
        if not self._zone:
            self._zone = str(self.get("/api/v1/appliance").get("timezone") or "UTC")
        return self._zone

    def post(self, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """POST ``body`` as JSON to ``path``."""
        return self.call("POST", path, body if body is not None else {})


def _api_error(exc: urllib.error.HTTPError) -> ConsoleError:
    try:
        envelope = json.loads(exc.read() or b"{}")
        error = envelope.get("error") or {}
        message = str(error.get("message") or exc.reason)
        hint = error.get("hint")
    except (ValueError, AttributeError, OSError):
        message, hint = f"HTTP {exc.code} {exc.reason}", None
    finally:
        exc.close()
    return ConsoleError(message, hint=str(hint) if hint else None)


def health(settings: Settings) -> dict[str, Any] | None:
    """The daemon's health answer, or None when it does not answer (or has no certificate)."""
    try:
        answer = Api.for_settings(settings, timeout=HEALTH_TIMEOUT).get("/api/v1/health")
    except ConsoleError:
        return None
    return dict(answer) if isinstance(answer, dict) else None


# --- following a run --------------------------------------------------------------------


def run_finished(run: Mapping[str, Any]) -> bool:
    """Whether a run's state is final (succeeded, failed, cancelled...)."""
    return run.get("status") in _FINISHED_NAMES


#: Where backup runs and restores are read, in the words of backups.
BACKUP_RUNS: Final = "/api/v1/backup/runs"
#: Where any operation is read (replication runs, replica starts, failbacks).
OPERATIONS: Final = "/api/v1/operations"


def _in_run_words(run: dict[str, Any]) -> dict[str, Any]:
    """An operation's sub-tasks named as a run's (VM, disk), as the backup API names them."""
    for t in run.get("tasks") or []:
        t.setdefault("vm_name", t.get("name"))
        t.setdefault("vm_uuid", t.get("subject"))
        t.setdefault("disk_key", t.get("part"))
    return run


def poll_run(
    api: Api, run_id: int, *, deadline: float | None = None, base: str = BACKUP_RUNS
) -> Iterator[dict[str, Any]]:
    """A run's state every POLL_SECONDS until it finishes; the last one yielded is final.

    Each state's ``log`` holds only the lines no earlier state held. With a
    ``deadline`` (a ``time.monotonic()`` value) polling also stops once it
    passes. ``base`` is :data:`BACKUP_RUNS` or :data:`OPERATIONS` (any kind).
    """
    after = 0
    while deadline is None or time.monotonic() < deadline:
        run: dict[str, Any] = _in_run_words(api.get(f"{base}/{run_id}?log_after={after}"))
        for line in run.get("log") or []:
            after = max(after, int(line.get("id") or 0))
        yield run
        if run_finished(run):
            return
        time.sleep(POLL_SECONDS)


def cancel_run(api: Api, run_id: int, *, base: str = BACKUP_RUNS) -> None:
    """Ask the daemon to cancel a run; it ends on its own soon after."""
    api.post(f"{base}/{run_id}/cancel")


# --- the console's API token ----------------------------------------------------------


async def _first_admin(auth: AuthManager) -> User | None:
    admins = [u for u in await auth.list_users() if u.role is Role.ADMIN and not u.disabled]
    return min(admins, key=lambda u: u.id) if admins else None


async def _mint(state: State, name: str) -> tuple[str, User, int]:
    user = await _first_admin(state.auth)
    if user is None:
        raise ConsoleError(
            "there is no administrator yet: finish the setup wizard first",
            hint="open the web interface with the token from `xenkeep setup-token`",
        )
    name = name[:TOKEN_NAME_MAX]
    # One audit entry for the command, not one for the token made and one
    # for the token revoked: the token lives only as long as the command.
    token = await state.auth.create_api_token(
        user, name, ip="console", lifetime=CONSOLE_TOKEN_LIFETIME, audit=False
    )
    row = await state.db.fetchone(
        "SELECT id FROM api_tokens WHERE token_hash = ?", (token_hash(token),)
    )
    assert row is not None  # just inserted
    await state.auth.audit(
        AuditEvent.CONSOLE_COMMAND, username=user.username, ip="console", name=name
    )
    return token, user, int(row["id"])


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    # Ctrl-C between creating the token and recording its id, or during the
    # revoke, would leave the console's token behind.
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler if previous is None else previous)


@contextlib.contextmanager
def console_token(ctx: Context, name: str) -> Iterator[str]:
    """An API token of the first administrator for the duration of one command."""
    if not ctx.settings.database_path.exists():
        raise ConsoleError(
            f"no database at {ctx.settings.database_path}",
            hint="start xenkeepd and finish the setup wizard",
        )
    with _sigint_ignored():
        token, user, token_id = ctx.with_state(lambda state: _mint(state, name))
    try:
        yield token
    finally:
        with _sigint_ignored():
            ctx.with_state(
                lambda state: state.auth.revoke_api_token(user, token_id, ip="console", audit=False)
            )
