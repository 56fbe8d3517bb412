""" "Test this configuration" for an LDAP provider: each step of a sign-in,
one line each, with what was found (blocking: runs in a thread).

Nothing here raises for what the directory answers: a server that cannot
be reached, a refused bind or a missing entry is a failed step that says
why, and the steps after it that depend on it are not tried.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from contextlib import ExitStack

from cryptography.x509.oid import NameOID

from xenkeep.auth.providers.base import CheckResult, CheckStep, ExternalIdentity
from xenkeep.auth.providers.ldap.directory import (
    Directory,
    DirectoryUnreachableError,
    Entry,
    Session,
)
from xenkeep.auth.providers.ldap.settings import (
    DisabledCheck,
    GroupSource,
    LdapSettings,
    Security,
    ca_certificates,
)


def _ca_steps(settings: LdapSettings, now: datetime.datetime) -> list[CheckStep]:
    if settings.security is Security.NONE:
        return [
            CheckStep("Connection security", True, "none: passwords cross the network readable")
        ]
    if not settings.ca_pem:
        return [CheckStep("Trusted CAs", True, "the appliance's list of public CAs")]
    steps = []
    for cert in ca_certificates(settings.ca_pem):
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        name = str(names[0].value) if names else cert.subject.rfc4514_string()
        until = cert.not_valid_after.replace(tzinfo=datetime.UTC)
        steps.append(
            CheckStep(
                f"Pinned CA {name}",
                until > now,
                f"valid until {until:%Y-%m-%d %H:%M} UTC"
                + ("" if until > now else ": expired, no certificate it signed is accepted"),
            )
        )
    return steps


class _Steps:
    """The steps so far; ``run`` records one and says whether it passed."""

    def __init__(self) -> None:
        self.steps: list[CheckStep] = []

    def add(self, label: str, ok: bool, detail: str = "") -> bool:
        self.steps.append(CheckStep(label, ok, detail))
        return ok

    def run(self, label: str, action: Callable[[], str]) -> bool:
        try:
            detail = action()
        except DirectoryUnreachableError as exc:
            return self.add(label, False, str(exc))
        return self.add(label, True, detail)


def check(
    directory: Directory,
    username: str,
    password: str,
    now: datetime.datetime | None = None,
) -> CheckResult:
    """Connect to every server, bind as the service account, read the base
    DNs, and for ``username``: find them, show their identity, account state
    and groups, and bind with ``password`` if one is given."""
    settings = directory.settings
    steps = _Steps()
    steps.steps += _ca_steps(settings, now or datetime.datetime.now(datetime.UTC))
    with ExitStack() as stack:
        session: Session | None = None
        for address in settings.servers:
            try:
                opened = directory.open(address)
            except DirectoryUnreachableError as exc:
                steps.add(f"Connect to {address.url}", False, str(exc))
                continue
            stack.callback(opened.close)
            steps.add(f"Connect to {address.url}", True, opened.tls)
            session = session or opened
        if session is None:
            return CheckResult(tuple(steps.steps))
        first = session

        def bind() -> str:
            directory.bind_service(first)
            return f"at {first.address.url}"

        label = f"Bind as {settings.bind_dn}" if settings.bind_dn else "Anonymous search"
        if not steps.run(label, bind):
            return CheckResult(tuple(steps.steps))

        def read(base: str) -> Callable[[], str]:
            def action() -> str:
                directory.read_base(first, base)
                return "readable"

            return action

        based = steps.run(f"Read {settings.base_dn}", read(settings.base_dn))
        if (
            settings.group_source is GroupSource.SEARCH
            and settings.group_base_dn != settings.base_dn
        ):
            steps.run(f"Read {settings.group_base_dn}", read(settings.group_base_dn))
        identity = None
        if username and based:
            identity = _check_user(directory, first, username, password, steps)
    return CheckResult(tuple(steps.steps), identity)


def _check_user(
    directory: Directory, session: Session, username: str, password: str, steps: _Steps
) -> ExternalIdentity | None:
    settings = directory.settings
    found: list[Entry] = []

    def find() -> str:
        entry = directory.find_user(session, username)
        if entry is None:
            raise DirectoryUnreachableError(
                f"no entry under {settings.base_dn} matches the user filter for {username[:64]!r}"
            )
        found.append(entry)
        return entry.dn

    if not steps.run(f"Find {username[:64]}", find):
        return None
    entry = found[0]
    subject = directory.subject(entry)
    if subject == entry.dn:
        absent = f"{settings.attr_subject} is absent, so " if settings.attr_subject else ""
        steps.add(
            "Stable identifier",
            True,
            f"{absent}the DN: renaming the entry later makes a new account here",
        )
    else:
        steps.add("Stable identifier", True, f"{settings.attr_subject} {subject}")
    if settings.disabled_check is not DisabledCheck.NONE:
        steps.run("Account enabled", lambda: _enabled(directory, session, entry))
    groups: list[tuple[str, ...]] = []

    def read_groups() -> str:
        groups.append(directory.groups(session, entry, directory.username(entry, username)))
        return ", ".join(groups[0]) or "none"

    if settings.group_source is GroupSource.NONE:
        steps.add("Groups", True, "not read (no group sync)")
    else:
        steps.run("Groups", read_groups)
    if password:

        def bind_as_user() -> str:
            if not directory.password_ok(session.address, entry.dn, password):
                raise DirectoryUnreachableError("the directory refused this password")
            return f"as {entry.dn}"

        steps.run("Sign in with the password", bind_as_user)
    return directory.identity(entry, username, groups[0] if groups else ())


def _enabled(directory: Directory, session: Session, entry: Entry) -> str:
    why = directory.disabled_because(session, entry)
    if why:
        raise DirectoryUnreachableError(f"disabled: {why}")
    return "yes"
