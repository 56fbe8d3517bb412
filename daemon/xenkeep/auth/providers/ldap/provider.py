"""The LDAP / Active Directory provider type and provider: the framework's
side of :mod:`.directory`, which is synchronous and so runs in a thread."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

from xenkeep.auth.errors import ProviderConfigError
from xenkeep.auth.providers.base import (
    CheckResult,
    CheckStep,
    ExternalIdentity,
    PasswordProvider,
    ProviderEnv,
    ProviderKind,
    ProviderRecord,
    ProviderType,
)
from xenkeep.auth.providers.ldap import check as checking
from xenkeep.auth.providers.ldap.directory import Directory
from xenkeep.auth.providers.ldap.settings import FIELDS, LdapSettings, clean


class LdapProvider(PasswordProvider):
    """Signs people in with their directory password: search, then bind as them."""

    def __init__(self, record: ProviderRecord, env: ProviderEnv) -> None:
        super().__init__(record, env)
        try:
            self._settings: LdapSettings | None = LdapSettings.from_saved(
                record.config, record.secrets
            )
            self._fault = ""
        except ProviderConfigError as exc:
            # A saved record this version refuses: it signs nobody in, and
            # testing it says why.
            self._settings = None
            self._fault = exc.message

    def _directory(self) -> Directory:
        if self._settings is None:
            raise ProviderConfigError(
                f"{self.record.name}'s settings need fixing: {self._fault}", field="settings"
            )
        return Directory(self._settings, self.record.name)

    async def authenticate(self, username: str, password: str) -> ExternalIdentity:
        directory = self._directory()
        return await asyncio.to_thread(directory.authenticate, username, password)

    async def check(self, username: str = "", password: str = "") -> CheckResult:
        if self._settings is None:
            return CheckResult((CheckStep("Settings", False, self._fault),))
        directory = self._directory()
        return await asyncio.to_thread(checking.check, directory, username, password)


class LdapType(ProviderType):
    """LDAP / Active Directory: a password provider."""

    kind = ProviderKind.LDAP
    label = "LDAP / Active Directory"
    fields = FIELDS

    def clean(
        self, values: Mapping[str, str], stored_secrets: Mapping[str, str]
    ) -> tuple[dict[str, Any], dict[str, str]]:
        return clean(values, stored_secrets)

    def build(self, record: ProviderRecord, env: ProviderEnv) -> LdapProvider:
        return LdapProvider(record, env)
