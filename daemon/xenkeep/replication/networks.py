"""Which target network each VIF of a replica goes on. Pure.

A job may map networks explicitly (source network → target network, names
or uuids in the form, uuids once saved); any other network goes to the
target network of the same name. In the same pool a network maps to
itself. A VIF whose network has no counterpart is not created, and the log
says so: a replica without that NIC starts; one on a wrong network could
put a copy of a server on a LAN where the original lives.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from xenkeep.errors import ValidationError


def _find(name_or_uuid: str, networks: Mapping[str, str], where: str) -> str:
    """The uuid of the network called or identified ``name_or_uuid`` among
    ``networks`` (uuid → name), or ValidationError."""
    if name_or_uuid in networks:
        return name_or_uuid
    named = [u for u, n in networks.items() if n == name_or_uuid]
    if len(named) == 1:
        return named[0]
    if named:
        raise ValidationError(
            f"several networks of {where} are named {name_or_uuid!r}: give its uuid",
            field="networks",
        )
    known = ", ".join(sorted(repr(n) for n in networks.values())[:10]) or "none"
    raise ValidationError(
        f"{where} has no network {name_or_uuid!r}", field="networks", hint=f"its networks: {known}"
    )


def resolve_pairs(
    pairs: Sequence[tuple[str, str]],
    source: Mapping[str, str],
    target: Mapping[str, str],
    *,
    source_pool: str,
    target_pool: str,
) -> tuple[tuple[str, str], ...]:
    """Explicit pairs of names or uuids as uuid pairs, or ValidationError."""
    out = []
    for s, t in pairs:
        out.append(
            (_find(s, source, f"pool {source_pool}"), _find(t, target, f"pool {target_pool}"))
        )
    sources = [s for s, _ in out]
    if len(set(sources)) != len(sources):
        raise ValidationError("a source network is mapped twice", field="networks")
    return tuple(out)


def target_network(
    source_uuid: str,
    source_name: str,
    *,
    pairs: Mapping[str, str],
    target: Mapping[str, str],
    same_pool: bool,
) -> tuple[str | None, str]:
    """The target network uuid for a VIF on ``source_uuid`` (None: no VIF),
    and how it was chosen, for the log."""
    if source_uuid in pairs and pairs[source_uuid] in target:
        return pairs[source_uuid], "mapped by the job"
    if same_pool and source_uuid in target:
        return source_uuid, "the same network (same pool)"
    named = [u for u, n in target.items() if n == source_name]
    if len(named) == 1:
        return named[0], f"the network of the same name ({source_name!r})"
    if named:
        return None, f"several target networks are named {source_name!r}; map it in the job"
    return None, f"no network named {source_name!r} in the target pool; map it in the job"
