"""Sign-in providers: administering them and signing people in through them."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from xenkeep.auth.audit import AuditLog
from xenkeep.auth.const import AuditEvent
from xenkeep.auth.errors import (
    AuthError,
    CredentialsRejectedError,
    ProviderConfigError,
    ProviderNotFoundError,
)
from xenkeep.auth.external import ExternalAccounts
from xenkeep.auth.manager import AuthManager, User
from xenkeep.auth.providers import catalog
from xenkeep.auth.providers.base import (
    Callback,
    CheckResult,
    FlowStyle,
    PasswordProvider,
    Provider,
    ProviderEnv,
    ProviderKind,
    ProviderRecord,
    RedirectProvider,
)
from xenkeep.auth.providers.store import GroupMapping, ProviderStore

log = logging.getLogger(__name__)

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
MAX_NAME = 64
#: The framework's own key in a flow's data: where to go after sign-in.
NEXT_KEY = "_next"
#: Setting: the address people and identity providers reach the appliance at.
PUBLIC_URL_KEY = "auth.public_url"
_PUBLIC_URL = re.compile(r"^https://[A-Za-z0-9.\-\[\]:]{1,253}(:[0-9]{1,5})?$")


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "on", "true", "yes"}


def slug_of(name: str) -> str:
    """A URL name from a display name: ``Corporate SSO`` -> ``corporate-sso``."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:32].strip("-")


@dataclass(frozen=True, slots=True)
class Finished:
    """A redirect sign-in that succeeded: who, and where they were going."""

    user: User
    next_path: str


class ProviderService:
    """The one door to sign-in providers (the web layer and API call it)."""

    def __init__(
        self,
        store: ProviderStore,
        accounts: ExternalAccounts,
        auth: AuthManager,
        audit: AuditLog,
        state_dir: Path,
    ) -> None:
        self._store = store
        self._accounts = accounts
        self._auth = auth
        self._audit = audit
        self._state_dir = state_dir
        # Built providers, reused while their record and address are the same
        # (an OIDC provider keeps its discovery document and keys).
        self._built: dict[int, tuple[tuple[float, str], Provider]] = {}

    # --- administering --------------------------------------------------------

    async def all(self) -> list[ProviderRecord]:
        """Every configured provider."""
        return await self._store.all()

    async def enabled(self) -> list[ProviderRecord]:
        """The providers the sign-in page offers, the default first."""
        return [p for p in await self._store.all() if p.enabled]

    async def get(self, provider_id: int) -> ProviderRecord:
        """One provider."""
        return await self._store.get(provider_id)

    async def mappings(self, provider_id: int) -> list[GroupMapping]:
        """The provider's group mappings."""
        return await self._store.mappings(provider_id)

    async def user_count(self, provider_id: int) -> int:
        """How many accounts the provider brought."""
        return await self._store.user_count(provider_id)

    @staticmethod
    def _name(values: Mapping[str, str]) -> str:
        name = (values.get("name") or "").strip()
        if not 1 <= len(name) <= MAX_NAME or not name.isprintable():
            raise ProviderConfigError(
                f"a provider's name is 1 to {MAX_NAME} printable characters "
                "(it is shown on the sign-in page)",
                field="name",
            )
        return name

    async def create(
        self, kind: str, values: Mapping[str, str], *, actor: str, ip: str = ""
    ) -> ProviderRecord:
        """Save a new provider from the admin form's values (disabled unless
        ``enabled`` is given)."""
        ptype = catalog.provider_type(kind)
        name = self._name(values)
        slug = (values.get("slug") or "").strip() or slug_of(name)
        if not SLUG_RE.match(slug):
            raise ProviderConfigError(
                "the short name is 1 to 32 lower-case letters, digits or -, used in the "
                "provider's addresses (/auth/<short name>/callback)",
                field="slug",
            )
        config, secrets = ptype.clean(values, {})
        provider_id = await self._store.create(
            ptype.kind,
            name,
            slug,
            enabled=_truthy(values.get("enabled")),
            config=config,
            secrets=secrets,
        )
        await self._audit.record(
            AuditEvent.PROVIDER_CREATED, username=actor, ip=ip, provider=name, kind=str(kind)
        )
        return await self._store.get(provider_id)

    async def update(
        self, provider_id: int, values: Mapping[str, str], *, actor: str, ip: str = ""
    ) -> ProviderRecord:
        """Change a provider's settings; secrets left empty stay as stored."""
        record = await self._store.get(provider_id)
        ptype = catalog.provider_type(record.kind)
        name = self._name(values)
        config, secrets = ptype.clean(values, record.secrets)
        enabled = _truthy(values.get("enabled"))
        await self._store.update(
            provider_id, name=name, enabled=enabled, config=config, secrets=secrets
        )
        self._built.pop(provider_id, None)
        changed = sorted(
            k for k in {*config, *record.config} if config.get(k) != record.config.get(k)
        )
        await self._audit.record(
            AuditEvent.PROVIDER_CHANGED,
            username=actor,
            ip=ip,
            provider=name,
            enabled=enabled,
            changed=changed,
            secrets_changed=sorted(k for k in secrets if secrets[k] != record.secrets.get(k)),
        )
        return await self._store.get(provider_id)

    async def delete(self, provider_id: int, *, actor: str, ip: str = "") -> int:
        """Remove a provider and the accounts it brought (their sessions,
        tokens, memberships and grants go with them); how many accounts."""
        record = await self._store.get(provider_id)
        users = await self._store.delete(provider_id)
        self._built.pop(provider_id, None)
        await self._audit.record(
            AuditEvent.PROVIDER_DELETED,
            username=actor,
            ip=ip,
            provider=record.name,
            accounts_removed=users,
        )
        return users

    async def set_default(self, provider_id: int | None, *, actor: str, ip: str = "") -> None:
        """The provider the sign-in page puts first (None: local accounts)."""
        await self._store.set_default(provider_id)
        name = "local accounts"
        if provider_id is not None:
            name = (await self._store.get(provider_id)).name
        await self._audit.record(
            AuditEvent.PROVIDER_CHANGED, username=actor, ip=ip, provider=name, default=True
        )

    async def set_mappings(
        self,
        provider_id: int,
        pairs: Iterable[tuple[str, int]],
        *,
        actor: str,
        ip: str = "",
    ) -> None:
        """Replace the provider's group mappings (external group, XenKeep group id)."""
        record = await self._store.get(provider_id)
        wanted = [(e.strip(), g) for e, g in pairs]
        for external, _ in wanted:
            if not 1 <= len(external) <= 512 or not external.isprintable():
                raise ProviderConfigError(
                    "a provider's group is 1 to 512 printable characters", field="mappings"
                )
        await self._store.set_mappings(provider_id, wanted)
        await self._audit.record(
            AuditEvent.GROUP_MAPPINGS_CHANGED,
            username=actor,
            ip=ip,
            provider=record.name,
            mappings=len(wanted),
        )

    async def public_url(self) -> str:
        """The appliance's address as identity providers know it ('' when not set)."""
        return await self._store.setting(PUBLIC_URL_KEY) or ""

    async def set_public_url(self, url: str, *, actor: str, ip: str = "") -> None:
        """Set (or clear, with '') the address redirect sign-ins come back to."""
        url = url.strip().rstrip("/")
        if url and not _PUBLIC_URL.match(url):
            raise ProviderConfigError(
                "the appliance's address is https://name or https://name:port, nothing after",
                field="public_url",
            )
        await self._store.set_setting(PUBLIC_URL_KEY, url)
        self._built.clear()
        await self._audit.record(
            AuditEvent.SETTINGS_CHANGED, username=actor, ip=ip, sign_in_address=url or "(derived)"
        )

    async def set_mappings_text(
        self, provider_id: int, text: str, *, actor: str, ip: str = ""
    ) -> None:
        """Mappings typed one a line as ``provider group = XenKeep group``."""
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if len(lines) > 500:
            raise ProviderConfigError("at most 500 group mappings", field="mappings")
        parsed: list[tuple[str, str]] = []
        for n, line in enumerate(lines, 1):
            external, sep, group = line.rpartition("=")
            if not sep or not external.strip() or not group.strip():
                raise ProviderConfigError(
                    f"line {n}: write 'provider group = XenKeep group'", field="mappings"
                )
            parsed.append((external.strip(), group.strip()))
        ids = await self._store.group_ids(g for _, g in parsed)
        missing = sorted({g for _, g in parsed if g.casefold() not in ids})
        if missing:
            raise ProviderConfigError(
                f"no XenKeep group named {', '.join(repr(m[:64]) for m in missing[:5])}",
                field="mappings",
                hint="create the group first (Users and groups)",
            )
        await self.set_mappings(
            provider_id, [(e, ids[g.casefold()]) for e, g in parsed], actor=actor, ip=ip
        )

    def env(self, record: ProviderRecord, base_url: str) -> ProviderEnv:
        """What a provider needs from the appliance, at ``base_url``."""
        base = base_url.rstrip("/")
        return ProviderEnv(
            callback_url=f"{base}/auth/{record.slug}/callback",
            metadata_url=f"{base}/auth/{record.slug}/metadata",
            state_dir=self._state_dir / "auth" / record.slug,
        )

    def _provider(self, record: ProviderRecord, base_url: str) -> Provider:
        key = (record.updated_at, base_url)
        cached = self._built.get(record.id)
        if cached is not None and cached[0] == key:
            return cached[1]
        provider = catalog.provider_type(record.kind).build(record, self.env(record, base_url))
        self._built[record.id] = (key, provider)
        return provider

    async def check(
        self,
        provider_id: int,
        base_url: str,
        *,
        username: str = "",
        password: str = "",
        actor: str,
        ip: str = "",
    ) -> CheckResult:
        """Test a provider's configuration (and look a user up, for LDAP)."""
        record = await self._store.get(provider_id)
        result = await self._provider(record, base_url).check(username, password)
        await self._audit.record(
            AuditEvent.PROVIDER_TESTED,
            username=actor,
            ip=ip,
            provider=record.name,
            ok=result.ok,
            user=username[:64],
        )
        return result

    async def metadata(self, slug: str, base_url: str) -> tuple[str, bytes]:
        """The document a provider publishes (SAML SP metadata)."""
        record = await self._store.by_slug(slug)
        document = self._provider(record, base_url).metadata()
        if document is None:
            raise ProviderNotFoundError(f"{record.name} publishes no metadata")
        return document

    # --- signing in -------------------------------------------------------------

    async def _enabled(self, slug: str, style: FlowStyle) -> ProviderRecord:
        try:
            record = await self._store.by_slug(slug)
        except ProviderNotFoundError:
            record = None
        if record is None or not record.enabled or record.style is not style:
            raise ProviderNotFoundError(
                "that way of signing in is not offered here", hint="pick one on the sign-in page"
            )
        return record

    async def password_sign_in(
        self, slug: str, username: str, password: str, base_url: str, *, ip: str
    ) -> User:
        """Sign in through a password provider (LDAP), throttled as local sign-ins are."""
        record = await self._enabled(slug, FlowStyle.PASSWORD)
        provider = self._provider(record, base_url)
        assert isinstance(provider, PasswordProvider)
        counters = await self._auth.reserve_sign_in(username, ip=ip)
        if not username.strip() or not password:
            await self._failed(record, username, ip, "empty user name or password")
            raise CredentialsRejectedError("wrong user name or password")
        try:
            identity = await provider.authenticate(username.strip(), password)
            user, created = await self._accounts.sign_in(record, identity)
        except AuthError as exc:
            # The reservation stays: it is this failure's count.
            await self._failed(record, username, ip, exc.message)
            raise
        await self._auth.release_sign_in(counters)
        await self._succeeded(record, user, created, ip)
        return user

    async def start(self, slug: str, base_url: str, next_path: str) -> str:
        """Begin a redirect sign-in: the URL to send the browser to."""
        record = await self._enabled(slug, FlowStyle.REDIRECT)
        provider = self._provider(record, base_url)
        assert isinstance(provider, RedirectProvider)
        begun = await provider.start()
        await self._store.save_flow(
            record.id, begun.flow_id, {**begun.flow_data, NEXT_KEY: next_path}
        )
        return begun.url

    async def finish(self, slug: str, callback: Callback, base_url: str, *, ip: str) -> Finished:
        """Complete a redirect sign-in from its callback."""
        record = await self._enabled(slug, FlowStyle.REDIRECT)
        provider = self._provider(record, base_url)
        assert isinstance(provider, RedirectProvider)
        try:
            flow_id = provider.flow_id(callback)
            data = await self._store.take_flow(record.id, flow_id) if flow_id else None
            if data is None:
                raise CredentialsRejectedError(
                    f"this sign-in with {record.name} expired or was already used",
                    hint="start again from the sign-in page",
                )
            next_path = data.pop(NEXT_KEY, "/")
            identity = await provider.finish(callback, data)
            replay = provider.replay_key(callback)
            if replay is not None and not await self._store.first_use(record.id, *replay):
                raise CredentialsRejectedError(
                    f"{record.name}'s answer was already used once (a replay)",
                    hint="start again from the sign-in page",
                )
            user, created = await self._accounts.sign_in(record, identity)
        except AuthError as exc:
            await self._failed(record, "", ip, exc.message)
            raise
        await self._succeeded(record, user, created, ip)
        return Finished(user, next_path)

    async def _failed(self, record: ProviderRecord, username: str, ip: str, why: str) -> None:
        await self._audit.record(
            AuditEvent.PROVIDER_SIGN_IN_FAILED,
            username=username[:64],
            ip=ip,
            provider=record.name,
            why=why[:200],
        )

    async def _succeeded(self, record: ProviderRecord, user: User, created: bool, ip: str) -> None:
        if created:
            await self._audit.record(
                AuditEvent.USER_CREATED,
                username=user.username,
                ip=ip,
                account=user.username,
                provider=record.name,
                role=str(user.role),
            )
        await self._audit.record(
            AuditEvent.PROVIDER_SIGN_IN, username=user.username, ip=ip, provider=record.name
        )


async def load_catalog() -> None:
    """Import the provider modules (reads files: in a thread)."""
    await asyncio.to_thread(catalog.load)


__all__ = ["Finished", "ProviderKind", "ProviderService", "load_catalog", "slug_of"]
