"""Sign-in with LDAP / Active Directory (ldap3).

``settings`` is the admin form and its checks, ``directory`` the
conversation with the servers (TLS pinned, filters escaped, search then
bind as the person), ``check`` the "test this configuration" steps,
``provider`` the framework's type and provider.
"""

from __future__ import annotations

from collections.abc import Mapping

from xenkeep.auth.providers.base import ProviderKind, ProviderType
from xenkeep.auth.providers.ldap.provider import LdapProvider, LdapType

TYPES: Mapping[ProviderKind, ProviderType] = {ProviderKind.LDAP: LdapType()}

__all__ = ["TYPES", "LdapProvider", "LdapType"]
