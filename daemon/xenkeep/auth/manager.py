"""The authentication service: setup token, users, sessions, API tokens.

Everything a web handler needs to know who is asking, and every security
event written to the audit log.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from xenkeep.auth import passwords, totp
from xenkeep.auth.audit import AuditLog
from xenkeep.auth.const import AuditEvent, Role
from xenkeep.auth.errors import (
    AccountExistsError,
    AccountInputError,
    ApiTokenNotFoundError,
    AttemptsThrottledError,
    CredentialsRejectedError,
    CurrentPasswordError,
    NoLocalPasswordError,
    SessionNotFoundError,
    SetupAlreadyDoneError,
)
from xenkeep.auth.permissions import ObjectRole
from xenkeep.auth.recovery import RecoveryCodes, looks_like_code
from xenkeep.auth.secrets import (
    new_api_token,
    new_setup_token,
    normalize_setup_token,
    random_token,
    same,
    token_hash,
)
from xenkeep.auth.throttle import RESET_AFTER_SECONDS, retry_after
from xenkeep.config import Settings
from xenkeep.store import Database
from xenkeep.store.db import Row

log = logging.getLogger(__name__)

USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
SETUP_PENDING_KEY = "setup.pending"
SETUP_TOKEN_KEY = "setup.token_hash"
TOTP_LAST_STEP_PREFIX = "totp.last_step."
# A setup session (token accepted, admin not yet created) lasts this long.
SETUP_SESSION_SECONDS = 30 * 60


@dataclass(frozen=True, slots=True)
class User:
    """An account as the rest of the daemon sees it (no secrets)."""

    id: int
    username: str
    display_name: str
    role: Role
    #: 'local' (a password here) or the kind of sign-in provider that brought them.
    source: str
    totp_enabled: bool
    disabled: bool
    email: str = ""
    #: Signed in with a temporary password: nothing but changing it until done.
    must_change_password: bool = False
    last_sign_in: float | None = None
    created_at: float = 0.0

    @classmethod
    def from_row(cls, row: Row) -> User:
        """Build from a ``users`` row."""
        return cls(
            id=int(row["id"]),
            username=str(row["username"]),
            display_name=str(row["display_name"]),
            role=Role(row["role"]),
            source=str(row["source"]),
            totp_enabled=row["totp_secret"] is not None,
            disabled=bool(row["disabled"]),
            email=str(row["email"]),
            must_change_password=bool(row["must_change_password"]),
            last_sign_in=row["last_sign_in"],
            created_at=float(row["created_at"]),
        )

    @property
    def is_local(self) -> bool:
        """True for an account with a password here (not brought by a provider)."""
        return self.source == "local"


@dataclass(frozen=True, slots=True)
class SignIn:
    """A successful sign-in, and what the person should know about it."""

    user: User
    # Failed or refused sign-ins on this account since its previous sign-in:
    # the sign of an attack the owner is told about.
    failed_since_last_visit: int


# One throttle counter: (scope, key), e.g. ("ip", "192.0.2.7"), ("account", "alice").
ThrottleKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Session:
    """A signed-in browser."""

    id_hash: str
    user: User
    csrf_token: str
    created_at: float
    last_seen: float

    @property
    def handle(self) -> str:
        """How the owner names this session to end it (never the cookie, nor its hash)."""
        return session_handle(self.id_hash)


def session_handle(id_hash: str) -> str:
    """A short public name of a session, derived from the hash of its cookie."""
    return token_hash(f"session-handle:{id_hash}")[:16]


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """One of a user's sessions, as their account page lists it."""

    handle: str
    ip: str
    user_agent: str
    created_at: float
    last_seen: float
    current: bool


@dataclass(frozen=True, slots=True)
class ApiToken:
    """An API token's public facts (the token itself is shown once)."""

    id: int
    name: str
    created_at: float
    last_used: float | None
    #: At most this role on any object (None: the owner's rights).
    max_role: ObjectRole | None = None
    expires_at: float | None = None


@dataclass(frozen=True, slots=True)
class TokenUse:
    """Who an API token acts for, and the ceiling it carries."""

    user: User
    max_role: ObjectRole | None


def _write_token_file(path: Path, token: str | None) -> None:
    """Write (or remove) the setup token file, readable by its owner only."""
    if token is None:
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (token + "\n").encode())
    finally:
        os.close(fd)
    tmp.replace(path)


class AuthManager:
    """Sign-in, sessions and the first-boot setup token."""

    def __init__(
        self,
        db: Database,
        audit: AuditLog,
        settings: Settings,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._db = db
        self._audit = audit
        self._settings = settings
        self._clock = clock
        self.recovery = RecoveryCodes(db, clock)

    async def audit(
        self, event: AuditEvent, *, username: str = "", ip: str = "", **detail: Any
    ) -> None:
        """Record a security event in the audit log."""
        await self._audit.record(event, username=username, ip=ip, **detail)

    # --- first-boot setup --------------------------------------------------

    async def admin_exists(self) -> bool:
        """True when an enabled administrator account exists."""
        row = await self._db.fetchone(
            "SELECT 1 FROM users WHERE role = 'admin' AND disabled = 0 LIMIT 1"
        )
        return row is not None

    async def setup_required(self) -> bool:
        """True while the wizard must create an administrator."""
        if await self._db.get_setting(SETUP_PENDING_KEY) == "1":
            return True
        return not await self.admin_exists()

    async def issue_setup_token(self, *, reason: str) -> str:
        """Make a new one-time setup token, replacing any earlier one."""
        token = new_setup_token()
        async with self._db.transaction() as tx:
            await tx.execute(
                "INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value, "
                "updated_at = excluded.updated_at",
                (SETUP_TOKEN_KEY, token_hash(token), self._clock()),
            )
            await tx.execute("DELETE FROM setup_sessions")
        await asyncio.to_thread(_write_token_file, self._settings.setup_token_path, token)
        await self.audit(AuditEvent.SETUP_TOKEN_CREATED, reason=reason)
        return token

    async def ensure_setup_token(self) -> str | None:
        """At start: a fresh token while setup is required, else none."""
        if await self.setup_required():
            return await self.issue_setup_token(reason="daemon start")
        await asyncio.to_thread(_write_token_file, self._settings.setup_token_path, None)
        return None

    async def reset_admin(self) -> str:
        """Let a new administrator be created (console recovery).

        Existing accounts and all other data stay, but the administrators
        being replaced are disabled and lose their API tokens: whoever holds
        their password or a token may be why the admin is being reset. They
        stay disabled until the new administrator decides. Every session of
        every account is ended for the same reason.
        """
        async with self._db.transaction() as tx:
            await tx.execute(
                "INSERT INTO settings (key, value, updated_at) VALUES (?, '1', ?) "
                "ON CONFLICT(key) DO UPDATE SET value = '1', updated_at = excluded.updated_at",
                (SETUP_PENDING_KEY, self._clock()),
            )
            # (Transaction has no fetchall: one row holding every name.)
            names = await tx.fetchone(
                "SELECT group_concat(username, char(10)) AS names FROM users "
                "WHERE role = 'admin' AND disabled = 0"
            )
            tokens = await tx.execute(
                "DELETE FROM api_tokens WHERE user_id IN "
                "(SELECT id FROM users WHERE role = 'admin' AND disabled = 0)"
            )
            await tx.execute("UPDATE users SET disabled = 1 WHERE role = 'admin' AND disabled = 0")
            await tx.execute("DELETE FROM sessions")
        await self.audit(
            AuditEvent.ADMIN_RESET,
            disabled=sorted(str(names["names"] or "").split()) if names else [],
            api_tokens_revoked=tokens,
        )
        return await self.issue_setup_token(reason="reset-admin")

    async def _reserve_attempt(
        self,
        counters: Sequence[ThrottleKey],
        *,
        username: str,
        ip: str,
        may_pass_scope: str | None = None,
    ) -> int:
        """Count this attempt as a failure before it is checked, or refuse it.

        The check and the count are one transaction, taken before the slow
        password hash: attempts in flight are already counted, so a hundred
        parallel guesses meet the limit as a hundred sequential ones would.
        A success gives back only its own reservation (:meth:`_release_attempt`).
        ``may_pass_scope`` names a counter that may be over its limit without
        refusing the attempt (the account's, when the owner brings a TOTP
        code); the attempt is still counted there. Returns the wait that
        counter would have imposed (0 when none was passed over), so that a
        failure can be answered as the refusal it would have been.
        """
        now = self._clock()
        refused: tuple[str, int] | None = None
        passed_over: tuple[str, int] | None = None
        async with self._db.transaction() as tx:
            for scope, key in counters:
                row = await tx.fetchone(
                    "SELECT failures, last_failure FROM auth_failures WHERE scope = ? AND key = ?",
                    (scope, key),
                )
                wait = (
                    0
                    if row is None
                    else retry_after(int(row["failures"]), float(row["last_failure"]), now)
                )
                if wait > 0 and scope == may_pass_scope:
                    passed_over = (scope, wait)
                elif wait > 0:
                    refused = (scope, wait)
                    break
            if refused is None:
                for scope, key in counters:
                    await tx.execute(
                        "INSERT INTO auth_failures (scope, key, failures, last_failure) "
                        "VALUES (?, ?, 1, ?) ON CONFLICT(scope, key) DO UPDATE SET "
                        "failures = CASE WHEN ? - last_failure > ? THEN 1 "
                        "ELSE failures + 1 END, last_failure = excluded.last_failure",
                        (scope, key, now, now, RESET_AFTER_SECONDS),
                    )
        if refused is not None:
            scope, wait = refused
            await self.audit(AuditEvent.SIGN_IN_THROTTLED, username=username, ip=ip, scope=scope)
            raise AttemptsThrottledError(
                f"too many failed attempts; try again in {wait} seconds", retry_after=wait
            )
        if passed_over is None:
            return 0
        # Still evidence of the attack: the administrator reads it in the log.
        await self.audit(
            AuditEvent.SIGN_IN_THROTTLED,
            username=username,
            ip=ip,
            scope=passed_over[0],
            passed="with a TOTP code",
        )
        return passed_over[1]

    async def _release_attempt(self, counters: Sequence[ThrottleKey]) -> None:
        """Give back a successful attempt's reservation, and only that.

        Failures of other attempts, concurrent or earlier, stay counted: a
        success in the middle of an attack must not wipe its evidence.
        """
        async with self._db.transaction() as tx:
            for scope, key in counters:
                await tx.execute(
                    "UPDATE auth_failures SET failures = failures - 1 "
                    "WHERE scope = ? AND key = ? AND failures > 0",
                    (scope, key),
                )
                await tx.execute(
                    "DELETE FROM auth_failures WHERE scope = ? AND key = ? AND failures <= 0",
                    (scope, key),
                )

    async def begin_setup(self, token: str, ip: str) -> str:
        """Check the setup token; return a setup session id for the wizard.

        The token is consumed only when the administrator is created, so a
        browser closed halfway does not lock the admin out.
        """
        counters = [("setup", ip)]
        await self._reserve_attempt(counters, username="", ip=ip)
        stored = await self._db.get_setting(SETUP_TOKEN_KEY)
        given = normalize_setup_token(token)
        if not (await self.setup_required()) or stored is None or not given:
            await self.audit(AuditEvent.SETUP_TOKEN_REJECTED, ip=ip, why="no setup pending")
            raise CredentialsRejectedError(
                "this setup token is not valid (it may have been used already)",
                hint="run xenkeep setup-token on the appliance console",
            )
        if not same(stored, token_hash(given)):
            await self.audit(AuditEvent.SETUP_TOKEN_REJECTED, ip=ip, why="mismatch")
            raise CredentialsRejectedError(
                "this setup token is not valid",
                hint="copy it from the appliance console or run xenkeep setup-token",
            )
        await self._release_attempt(counters)
        setup_id = random_token()
        await self._db.insert(
            "INSERT INTO setup_sessions (id_hash, token_hash, created_at) VALUES (?, ?, ?)",
            (token_hash(setup_id), stored, self._clock()),
        )
        await self.audit(AuditEvent.SETUP_TOKEN_USED, ip=ip)
        return setup_id

    async def setup_session_valid(self, setup_id: str | None) -> bool:
        """True when ``setup_id`` came from :meth:`begin_setup` with the current token."""
        if not setup_id:
            return False
        row = await self._db.fetchone(
            "SELECT s.created_at FROM setup_sessions s JOIN settings t "
            "ON t.key = ? AND t.value = s.token_hash WHERE s.id_hash = ?",
            (SETUP_TOKEN_KEY, token_hash(setup_id)),
        )
        if row is None:
            return False
        return self._clock() - float(row["created_at"]) < SETUP_SESSION_SECONDS

    async def create_first_admin(
        self, setup_id: str | None, username: str, password: str, confirm: str, ip: str
    ) -> User:
        """Create the administrator and retire the setup token, atomically."""
        if not await self.setup_session_valid(setup_id):
            raise CredentialsRejectedError(
                "the setup session has expired or the token was already used",
                hint="enter the setup token again",
            )
        username = username.strip()
        self._check_username(username)
        if password != confirm:
            raise AccountInputError("the two passwords differ", field="confirm")
        await passwords.check_new_password(password, username)
        password_hash = await asyncio.to_thread(passwords.hash_password, password)
        now = self._clock()
        async with self._db.transaction() as tx:
            # Checked again inside the transaction that retires the token: of
            # requests racing with one setup session, the first one wins and
            # the others find the token gone.
            current = await tx.fetchone(
                "SELECT 1 FROM setup_sessions s JOIN settings t "
                "ON t.key = ? AND t.value = s.token_hash WHERE s.id_hash = ?",
                (SETUP_TOKEN_KEY, token_hash(setup_id or "")),
            )
            if current is None:
                raise SetupAlreadyDoneError(
                    "an administrator was just created with this setup token",
                    hint="sign in, or run xenkeep reset-admin on the console",
                )
            existing = await tx.fetchone("SELECT id FROM users WHERE username = ?", (username,))
            if existing is not None:
                raise AccountExistsError(
                    f"an account named {username!r} already exists", hint="choose another name"
                )
            user_id = await tx.insert(
                "INSERT INTO users (username, password_hash, role, created_at, "
                "password_changed_at) VALUES (?, ?, 'admin', ?, ?)",
                (username, password_hash, now, now),
            )
            await tx.execute(
                "DELETE FROM settings WHERE key IN (?, ?)", (SETUP_TOKEN_KEY, SETUP_PENDING_KEY)
            )
            await tx.execute("DELETE FROM setup_sessions")
        await asyncio.to_thread(_write_token_file, self._settings.setup_token_path, None)
        await self.audit(AuditEvent.ADMIN_CREATED, username=username, ip=ip)
        user = await self.get_user(user_id)
        assert user is not None
        return user

    # --- users --------------------------------------------------------------

    @staticmethod
    def _check_username(username: str) -> None:
        if not USERNAME_RE.match(username):
            raise AccountInputError(
                "a user name is 1-64 letters, digits or . _ @ -, starting with a letter or digit",
                field="username",
            )

    async def create_user(
        self,
        username: str,
        password: str,
        role: Role,
        *,
        display_name: str = "",
        email: str = "",
        must_change_password: bool = False,
        actor: str = "",
        ip: str = "",
    ) -> User:
        """Create a local account (the wizard creates the first admin).

        ``must_change_password``: the password is a temporary one, which
        only lets its owner choose their own (see the auth middleware).
        """
        username = username.strip()
        self._check_username(username)
        await passwords.check_new_password(password, username)
        password_hash = await asyncio.to_thread(passwords.hash_password, password)
        now = self._clock()
        async with self._db.transaction() as tx:
            if await tx.fetchone("SELECT id FROM users WHERE username = ?", (username,)):
                raise AccountExistsError(f"an account named {username!r} already exists")
            user_id = await tx.insert(
                "INSERT INTO users (username, display_name, email, password_hash, role, "
                "created_at, password_changed_at, must_change_password) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    username,
                    display_name,
                    email,
                    password_hash,
                    str(Role(role)),
                    now,
                    now,
                    int(must_change_password),
                ),
            )
        await self.audit(
            AuditEvent.USER_CREATED,
            username=actor,
            ip=ip,
            account=username,
            role=str(role),
            temporary_password=must_change_password,
        )
        user = await self.get_user(user_id)
        assert user is not None
        return user

    async def get_user(self, user_id: int) -> User | None:
        """An account by id."""
        row = await self._db.fetchone("SELECT * FROM users WHERE id = ?", (user_id,))
        return None if row is None else User.from_row(row)

    async def list_users(self) -> list[User]:
        """Every account."""
        rows = await self._db.fetchall("SELECT * FROM users ORDER BY username")
        return [User.from_row(r) for r in rows]

    async def authenticate(
        self, username: str, password: str, code: str = "", *, ip: str = ""
    ) -> SignIn:
        """Check credentials (and the TOTP code when enrolled), throttled.

        Throttled per address and per account. Rotating addresses can push
        the account over its limit, which must not lock its owner out: an
        account with TOTP still takes the right password together with a
        valid code while it is throttled (the address's own limit still
        applies, the attempt still counts on the account, and a failure is
        answered as throttled, so guessing learns nothing there).
        """
        username = username.strip()
        row = await self._db.fetchone(
            "SELECT * FROM users WHERE username = ? AND source = 'local'", (username,)
        )
        has_totp = row is not None and row["totp_secret"] is not None
        counters = [("ip", ip), ("account", username.lower())]
        throttled = await self._reserve_attempt(
            counters,
            username=username,
            ip=ip,
            may_pass_scope="account" if has_totp and code.strip() else None,
        )
        stored = None if row is None else row["password_hash"]
        ok = await asyncio.to_thread(passwords.verify_password, stored, password)
        used_recovery = False
        if ok and row is not None and has_totp:
            ok = await self._second_factor(int(row["id"]), str(row["totp_secret"]), code)
            used_recovery = ok and looks_like_code(code)
        if not ok or row is None or row["disabled"]:
            # The reservation stays: it is this failure's count.
            await self.audit(AuditEvent.SIGN_IN_FAILED, username=username, ip=ip)
            if throttled:
                # Past a throttled account only a success tells anything: a
                # failure looks like the refusal it would have been.
                raise AttemptsThrottledError(
                    f"too many failed attempts; try again in {throttled} seconds",
                    retry_after=throttled,
                )
            raise CredentialsRejectedError("wrong user name, password or code")
        await self._release_attempt(counters)
        user = User.from_row(row)
        if used_recovery:
            await self.audit(
                AuditEvent.RECOVERY_CODE_USED,
                username=user.username,
                ip=ip,
                remaining=await self.recovery.remaining(user.id),
            )
        failed = await self._failures_since_last_sign_in(user)
        if failed:
            await self.audit(
                AuditEvent.SIGN_IN_AFTER_FAILURES, username=user.username, ip=ip, failed=failed
            )
        if passwords.needs_rehash(str(stored)):
            new_hash = await asyncio.to_thread(passwords.hash_password, password)
            await self._db.execute(
                "UPDATE users SET password_hash = ? WHERE id = ?", (new_hash, row["id"])
            )
        return SignIn(user, failed)

    async def _failures_since_last_sign_in(self, user: User) -> int:
        """Failed and refused sign-ins on ``user``'s name since its last sign-in.

        Read from the audit log, which holds every attempt with the name
        typed (in any case); repeats from one address are one row with a
        count (``_count``, the newest at ``_last``); called before this
        sign-in is recorded.
        """
        row = await self._db.fetchone(
            "SELECT coalesce(sum(coalesce(json_extract(detail, '$._count'), 1)), 0) AS n "
            "FROM audit_log WHERE event IN (?, ?) AND username = ? COLLATE NOCASE "
            "AND max(ts, coalesce(json_extract(detail, '$._last'), ts)) > "
            "coalesce((SELECT max(ts) FROM audit_log WHERE event = ? AND username = ? "
            "COLLATE NOCASE), 0)",
            (
                str(AuditEvent.SIGN_IN_FAILED),
                str(AuditEvent.SIGN_IN_THROTTLED),
                user.username,
                str(AuditEvent.SIGN_IN),
                user.username,
            ),
        )
        return 0 if row is None else int(row["n"])

    async def _second_factor(self, user_id: int, secret: str, code: str) -> bool:
        """A TOTP code, or in its place one of the user's recovery codes (each once)."""
        if looks_like_code(code):
            return await self.recovery.use(user_id, code)
        return await self.accept_totp(user_id, secret, code)

    async def accept_totp(self, user_id: int, secret: str, code: str) -> bool:
        """Check a code and burn its time step: each code works once.

        The burn is one conditional write, so of several requests carrying
        the same code at once exactly one gets it.
        """
        step = totp.matching_step(secret, code, self._clock())
        if step is None:
            return False
        burnt = await self._db.execute(
            "INSERT INTO settings (key, value, updated_at) VALUES (?, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value, "
            "updated_at = excluded.updated_at "
            "WHERE CAST(settings.value AS INTEGER) < CAST(excluded.value AS INTEGER)",
            (f"{TOTP_LAST_STEP_PREFIX}{user_id}", str(step), self._clock()),
        )
        return burnt == 1

    async def enable_totp(self, user: User, secret: str, code: str, *, ip: str = "") -> None:
        """Enrol an authenticator after checking one code from it."""
        if not await self.accept_totp(user.id, secret, code):
            raise AccountInputError(
                "that code does not match; check the phone's clock and try the next code",
                field="code",
            )
        await self._db.execute("UPDATE users SET totp_secret = ? WHERE id = ?", (secret, user.id))
        await self.audit(AuditEvent.TOTP_ENABLED, username=user.username, ip=ip)

    async def new_recovery_codes(self, user: User, password: str, *, ip: str = "") -> list[str]:
        """A new set of recovery codes (the old set stops working), shown once.

        Only for an account with an authenticator (the codes stand in for
        it), and with the account's password: codes made from a session
        left open would be a second factor for whoever sat down at it.
        """
        if not user.totp_enabled:
            raise AccountInputError("recovery codes stand in for an authenticator: enrol one first")
        await self.check_own_password(user, password, ip=ip)
        codes = await self.recovery.replace(user.id)
        await self.audit(
            AuditEvent.RECOVERY_CODES_CREATED, username=user.username, ip=ip, codes=len(codes)
        )
        return codes

    # --- sessions -------------------------------------------------------------

    async def create_session(self, user: User, *, ip: str = "", user_agent: str = "") -> str:
        """Start a session; return the cookie value (only its hash is kept).

        Always a new random id, whatever cookie the browser came with: a
        session id planted before sign-in never becomes a signed-in one.
        Every sign-in (local or through a provider) comes through here, so
        this is where the account's last sign-in is kept.
        """
        cookie = random_token()
        now = self._clock()
        async with self._db.transaction() as tx:
            await tx.insert(
                "INSERT INTO sessions (id_hash, user_id, csrf_token, created_at, last_seen, ip, "
                "user_agent) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (token_hash(cookie), user.id, random_token(), now, now, ip, user_agent[:200]),
            )
            await tx.execute("UPDATE users SET last_sign_in = ? WHERE id = ?", (now, user.id))
        await self.audit(AuditEvent.SIGN_IN, username=user.username, ip=ip)
        return cookie

    async def load_session(self, cookie: str | None) -> Session | None:
        """The live session behind a cookie, refreshing its idle timer."""
        if not cookie:
            return None
        id_hash = token_hash(cookie)
        row = await self._db.fetchone(
            "SELECT u.*, s.csrf_token, s.created_at AS session_created_at, "
            "s.last_seen AS session_last_seen FROM sessions s "
            "JOIN users u ON u.id = s.user_id WHERE s.id_hash = ?",
            (id_hash,),
        )
        if row is None:
            return None
        now = self._clock()
        idle = self._settings.session_idle_minutes * 60
        absolute = self._settings.session_absolute_hours * 3600
        if (
            row["disabled"]
            or now - float(row["session_last_seen"]) > idle
            or now - float(row["session_created_at"]) > absolute
        ):
            await self._db.execute("DELETE FROM sessions WHERE id_hash = ?", (id_hash,))
            return None
        # Writing last_seen on every request costs a fsync; a minute of
        # precision is plenty for an idle timeout.
        if now - float(row["session_last_seen"]) > 60:
            await self._db.execute(
                "UPDATE sessions SET last_seen = ? WHERE id_hash = ?", (now, id_hash)
            )
        return Session(
            id_hash=id_hash,
            user=User.from_row(row),
            csrf_token=str(row["csrf_token"]),
            created_at=float(row["session_created_at"]),
            last_seen=now,
        )

    async def end_session(self, session: Session, *, ip: str = "") -> None:
        """Sign one browser out."""
        await self._db.execute("DELETE FROM sessions WHERE id_hash = ?", (session.id_hash,))
        await self.audit(AuditEvent.SIGN_OUT, username=session.user.username, ip=ip)

    async def end_all_sessions(self, user: User, *, ip: str = "") -> int:
        """Sign a user out everywhere; return how many sessions ended."""
        count = await self._db.execute("DELETE FROM sessions WHERE user_id = ?", (user.id,))
        await self.audit(AuditEvent.SIGN_OUT_ALL, username=user.username, ip=ip, sessions=count)
        return count

    async def list_sessions(self, user: User, current: Session | None = None) -> list[SessionInfo]:
        """The user's live sessions, the most recently seen first."""
        rows = await self._db.fetchall(
            "SELECT id_hash, ip, user_agent, created_at, last_seen FROM sessions "
            "WHERE user_id = ? ORDER BY last_seen DESC",
            (user.id,),
        )
        now = self._clock()
        idle = self._settings.session_idle_minutes * 60
        absolute = self._settings.session_absolute_hours * 3600
        return [
            SessionInfo(
                handle=session_handle(str(r["id_hash"])),
                ip=str(r["ip"]),
                user_agent=str(r["user_agent"]),
                created_at=float(r["created_at"]),
                last_seen=float(r["last_seen"]),
                current=current is not None and r["id_hash"] == current.id_hash,
            )
            for r in rows
            if now - float(r["last_seen"]) <= idle and now - float(r["created_at"]) <= absolute
        ]

    async def revoke_session(self, user: User, handle: str, *, ip: str = "") -> None:
        """End one of the user's sessions, named by its handle."""
        rows = await self._db.fetchall(
            "SELECT id_hash, ip FROM sessions WHERE user_id = ?", (user.id,)
        )
        found = [r for r in rows if same(session_handle(str(r["id_hash"])), handle)]
        if not found:
            raise SessionNotFoundError("no such session of yours (it may have ended already)")
        await self._db.execute("DELETE FROM sessions WHERE id_hash = ?", (found[0]["id_hash"],))
        await self.audit(
            AuditEvent.SESSION_REVOKED, username=user.username, ip=ip, session_ip=found[0]["ip"]
        )

    # --- passwords --------------------------------------------------------------

    async def change_password(
        self,
        user: User,
        old: str,
        new: str,
        confirm: str,
        *,
        keep: Session | None = None,
        ip: str = "",
    ) -> None:
        """The owner changes their own password; the old one is required.

        Throttled like a sign-in (the old password is a guess otherwise).
        Every other session of the user ends: whoever else was signed in
        with the old password is signed out. A temporary password stops
        being one.
        """
        if not user.is_local:
            raise NoLocalPasswordError(
                f"your account signs in through {user.source}: there is no password "
                "to change here; change it where you sign in"
            )
        if new != confirm:
            raise AccountInputError("the two new passwords differ", field="confirm")
        if new == old:
            raise AccountInputError("choose a password other than the current one", field="new")
        await passwords.check_new_password(new, user.username, user.display_name)
        await self.check_own_password(user, old, ip=ip, field="old")
        new_hash = await asyncio.to_thread(passwords.hash_password, new)
        await self._set_password(user, new_hash, temporary=False, keep=keep)
        await self.audit(AuditEvent.PASSWORD_CHANGED, username=user.username, ip=ip)

    async def check_own_password(
        self, user: User, password: str, *, ip: str = "", field: str = "password"
    ) -> None:
        """CurrentPasswordError unless ``password`` is the user's own, before a
        change a stolen session alone must not make (a new password, a new
        authenticator). Throttled like a sign-in: it is a guess otherwise."""
        counters = [("ip", ip), ("account", user.username.lower())]
        await self._reserve_attempt(counters, username=user.username, ip=ip)
        row = await self._db.fetchone(
            "SELECT password_hash FROM users WHERE id = ? AND disabled = 0 AND source = 'local'",
            (user.id,),
        )
        stored = None if row is None else row["password_hash"]
        if not await asyncio.to_thread(passwords.verify_password, stored, password):
            await self.audit(
                AuditEvent.SIGN_IN_FAILED, username=user.username, ip=ip, why="own password"
            )
            raise CurrentPasswordError("the current password is not right", field=field)
        await self._release_attempt(counters)

    async def _set_password(
        self, user: User, password_hash: str, *, temporary: bool, keep: Session | None
    ) -> int:
        """Store a password hash; end the user's sessions but ``keep``; how many ended."""
        async with self._db.transaction() as tx:
            await tx.execute(
                "UPDATE users SET password_hash = ?, password_changed_at = ?, "
                "must_change_password = ? WHERE id = ?",
                (password_hash, self._clock(), int(temporary), user.id),
            )
            return await tx.execute(
                "DELETE FROM sessions WHERE user_id = ? AND id_hash != ?",
                (user.id, keep.id_hash if keep else ""),
            )

    async def set_temporary_password(self, user: User, password: str) -> int:
        """An administrator's reset: a temporary password to be changed at the
        next sign-in; every session of the user ends. How many sessions ended."""
        if not user.is_local:
            raise NoLocalPasswordError(
                f"{user.username} signs in through {user.source}: there is no password here"
            )
        # Made by the appliance (100 random bits): the length and character
        # rules are the whole check it needs.
        passwords.check_policy(password, user.username)
        new_hash = await asyncio.to_thread(passwords.hash_password, password)
        return await self._set_password(user, new_hash, temporary=True, keep=None)

    # --- API tokens -------------------------------------------------------------

    async def create_api_token(
        self,
        user: User,
        name: str,
        *,
        ip: str = "",
        lifetime: float | None = None,
        max_role: ObjectRole | None = None,
        audit: bool = True,
    ) -> str:
        """Make an API token for ``user``; the caller shows it once.

        With ``lifetime`` (seconds) the token stops working after it and is
        deleted at the next look-up of any token. With ``max_role`` it acts
        with at most that role on the objects its owner reaches, and on
        nothing appliance-wide (see :class:`~.permissions.Principal`).
        deleted at the next look-up of any token. ``audit=False``: the caller
        records the entry that says what the token is for (a console command).
        """
        name = name.strip()
        if not 1 <= len(name) <= 64 or not name.isprintable():
            raise AccountInputError(
                "a token name is 1 to 64 characters, none of them a control character",
                field="name",
            )
        token = new_api_token()
        now = self._clock()
        await self._db.insert(
            "INSERT INTO api_tokens (user_id, name, token_hash, created_at, expires_at, "
            "max_role) VALUES (?, ?, ?, ?, ?, ?)",
            (
                user.id,
                name,
                token_hash(token),
                now,
                None if lifetime is None else now + lifetime,
                None if max_role is None else str(max_role),
            ),
        )
        if audit:
            await self.audit(
                AuditEvent.API_TOKEN_CREATED,
                username=user.username,
                ip=ip,
                name=name,
                max_role=None if max_role is None else str(max_role),
            )
        return token

    async def list_api_tokens(self, user: User) -> list[ApiToken]:
        """The user's tokens (names and dates only)."""
        rows = await self._db.fetchall(
            "SELECT id, name, created_at, last_used, max_role, expires_at FROM api_tokens "
            "WHERE user_id = ? ORDER BY id",
            (user.id,),
        )
        return [
            ApiToken(
                int(r["id"]),
                str(r["name"]),
                r["created_at"],
                r["last_used"],
                None if r["max_role"] is None else ObjectRole(r["max_role"]),
                r["expires_at"],
            )
            for r in rows
        ]

    async def revoke_api_token(
        self, user: User, token_id: int, *, ip: str = "", audit: bool = True
    ) -> None:
        """Delete one of the user's tokens (``audit=False``: as for its creation)."""
        count = await self._db.execute(
            "DELETE FROM api_tokens WHERE id = ? AND user_id = ?", (token_id, user.id)
        )
        if not count:
            raise ApiTokenNotFoundError(f"no API token {token_id}")
        if audit:
            await self.audit(
                AuditEvent.API_TOKEN_REVOKED, username=user.username, ip=ip, id=token_id
            )

    async def user_for_api_token(self, token: str) -> TokenUse | None:
        """The enabled user an API token acts for, and its ceiling (None for
        an unknown or expired token)."""
        await self._db.execute(
            "DELETE FROM api_tokens WHERE expires_at IS NOT NULL AND expires_at <= ?",
            (self._clock(),),
        )
        row = await self._db.fetchone(
            "SELECT u.*, t.id AS token_id, t.max_role AS token_max_role FROM api_tokens t "
            "JOIN users u ON u.id = t.user_id WHERE t.token_hash = ?",
            (token_hash(token),),
        )
        if row is None or row["disabled"]:
            return None
        await self._db.execute(
            "UPDATE api_tokens SET last_used = ? WHERE id = ?", (self._clock(), row["token_id"])
        )
        cap = row["token_max_role"]
        return TokenUse(User.from_row(row), None if cap is None else ObjectRole(cap))

    # --- throttling for other ways of signing in --------------------------------

    async def reserve_sign_in(self, username: str, *, ip: str) -> list[ThrottleKey]:
        """Count a sign-in through a password provider (LDAP) before it is
        checked, as :meth:`authenticate` does; give the counters back to
        :meth:`release_sign_in` when it succeeds."""
        counters = [("ip", ip), ("account", username.strip().lower())]
        await self._reserve_attempt(counters, username=username, ip=ip)
        return counters

    async def release_sign_in(self, counters: Sequence[ThrottleKey]) -> None:
        """Give back a successful sign-in's reservation."""
        await self._release_attempt(counters)
