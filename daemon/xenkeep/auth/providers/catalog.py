"""The provider types XenKeep knows, by kind.

Each kind's module is imported once, by :func:`load` in a thread when the
daemon starts (importing reads files: never on the event loop); a module
exposes ``TYPES``, a mapping of the kinds it implements to their type. A
kind whose module or library is missing is not offered, and says why.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping

from xenkeep.auth.errors import ProviderConfigError
from xenkeep.auth.providers.base import ProviderKind, ProviderType

#: Which module implements which kinds.
MODULES: Mapping[ProviderKind, str] = {
    ProviderKind.LDAP: "xenkeep.auth.providers.ldap",
    ProviderKind.OIDC: "xenkeep.auth.providers.oidc",
    ProviderKind.GOOGLE: "xenkeep.auth.providers.oidc",
    ProviderKind.GITHUB: "xenkeep.auth.providers.github",
    ProviderKind.SAML: "xenkeep.auth.providers.saml",
}


# kind -> its type, or why it is not available.
_loaded: dict[ProviderKind, ProviderType | str] = {}


def load() -> None:
    """Import every kind's module (blocking: call it in a thread)."""
    for kind, name in MODULES.items():
        if kind in _loaded:
            continue
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            _loaded[kind] = f"{exc.name} is missing"
            continue
        types: Mapping[ProviderKind, ProviderType] = module.TYPES
        _loaded[kind] = types[kind]


def provider_type(kind: ProviderKind | str) -> ProviderType:
    """The type of ``kind``; ProviderConfigError for an unknown or missing kind."""
    try:
        kind = ProviderKind(kind)
    except ValueError:
        raise ProviderConfigError(
            f"unknown kind of sign-in provider {str(kind)[:40]!r}; "
            f"known: {', '.join(k.value for k in ProviderKind)}",
            field="kind",
        ) from None
    found = _loaded.get(kind, "its module was not loaded")
    if isinstance(found, str):
        raise ProviderConfigError(
            f"sign-in with {kind.value} is not available in this build ({found})", field="kind"
        )
    return found


def available() -> list[ProviderType]:
    """Every provider type this build offers, in the order of the kinds."""
    return [t for k in ProviderKind if not isinstance(t := _loaded.get(k, ""), str)]
