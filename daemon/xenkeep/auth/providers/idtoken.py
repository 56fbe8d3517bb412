"""Checking an OpenID Connect ID token (OIDC Core 3.1.3.7), pure.

The signature first, with a key chosen by us and never by the token: an
asymmetric algorithm the provider's discovery lists (RS*, PS*, ES*) with the
key of that ``kid`` and type from its key set, or HS* only when discovery
lists it, and then with the client secret as the key (never a public key:
that is the classic confusion). ``none`` is always refused, so is an
encrypted (JWE) token. Then the claims, with authlib's
:class:`CodeIDToken`: ``iss`` one of the expected issuers, ``aud`` holding
the client id (``azp`` it too when there are several), ``exp`` in the
future, ``iat`` not in the future, and the flow's own ``nonce``.
"""

from __future__ import annotations

import hashlib
import json
import time
from base64 import urlsafe_b64decode
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from authlib.jose import JsonWebKey, JsonWebToken, Key, OctKey
from authlib.jose.errors import (
    BadSignatureError,
    DecodeError,
    ExpiredTokenError,
    InvalidClaimError,
    InvalidTokenError,
    JoseError,
    MissingClaimError,
)
from authlib.oidc.core import CodeIDToken

from xenkeep.auth.errors import CredentialsRejectedError

#: Clock difference tolerated between the identity provider and us.
LEEWAY_SECONDS = 120
#: Longest ID token read (they are a few KiB).
MAX_ID_TOKEN = 64 * 1024
#: Signature algorithms checked with the provider's public keys, by key type.
ASYMMETRIC: Mapping[str, str] = {
    "RS256": "RSA",
    "RS384": "RSA",
    "RS512": "RSA",
    "PS256": "RSA",
    "PS384": "RSA",
    "PS512": "RSA",
    "ES256": "EC",
    "ES384": "EC",
    "ES512": "EC",
}
_EC_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
#: Checked with the client secret, only when discovery lists them.
SYMMETRIC = frozenset({"HS256", "HS384", "HS512"})
#: What an ID token's claims say where the words of authlib are too terse.
_CLAIM_WORDS = {
    "iss": "was issued by someone other than the configured issuer (iss)",
    "aud": "was issued to another application (aud)",
    "azp": "was issued to another application (azp)",
    "nonce": "does not belong to this sign-in (nonce)",
    "sub": "names no user (sub)",
    "exp": "has no valid expiry (exp)",
    "iat": "has no valid issue time (iat)",
}


@dataclass(frozen=True, slots=True)
class Expected:
    """What an ID token must say to be accepted."""

    issuers: tuple[str, ...]
    client_id: str
    client_secret: str
    nonce: str
    #: ``id_token_signing_alg_values_supported`` of the discovery document.
    algorithms: tuple[str, ...]
    access_token: str = ""


class UnknownKeyError(CredentialsRejectedError):
    """The token names a key the key set does not have (it may have rotated)."""


def _refuse(name: str, why: str) -> CredentialsRejectedError:
    return CredentialsRejectedError(f"the ID token from {name} {why}")


def header_of(token: str, name: str) -> dict[str, Any]:
    """The JOSE header of a compact JWS, unverified (to choose the key)."""
    if len(token) > MAX_ID_TOKEN:
        raise _refuse(name, f"is longer than {MAX_ID_TOKEN // 1024} KiB")
    parts = token.split(".")
    if len(parts) == 5:
        raise _refuse(name, "is encrypted (JWE), which XenKeep does not accept")
    if len(parts) != 3:
        raise _refuse(name, "is malformed")
    try:
        header = json.loads(urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
    except (ValueError, UnicodeDecodeError):
        raise _refuse(name, "has a malformed header") from None
    if not isinstance(header, dict):
        raise _refuse(name, "has a malformed header")
    return header


def signing_key(
    header: Mapping[str, Any], keys: Iterable[Mapping[str, Any]], expected: Expected, name: str
) -> tuple[str, Key]:
    """The algorithm and the key to check this token's signature with."""
    alg = header.get("alg")
    if not isinstance(alg, str) or alg.lower() == "none":
        raise _refuse(name, "is not signed (alg none)")
    typ = header.get("typ")
    if typ is not None and (
        not isinstance(typ, str) or typ.lower() not in ("jwt", "application/jwt")
    ):
        raise _refuse(name, f"is a {str(typ)[:32]!r}, not an ID token")
    if alg not in expected.algorithms:
        raise _refuse(
            name, f"is signed with {alg[:16]}, which the provider's discovery does not list"
        )
    if alg in SYMMETRIC:
        if not expected.client_secret:
            raise _refuse(name, f"is signed with {alg}, but no client secret is configured")
        # The one key an HMAC token may be checked with: the shared secret.
        return alg, OctKey.import_key(expected.client_secret)
    kty = ASYMMETRIC.get(alg)
    if kty is None:
        raise _refuse(name, f"is signed with {alg[:16]}, which XenKeep does not accept")
    kid = header.get("kid")
    candidates = [
        k
        for k in keys
        if k.get("kty") == kty
        and k.get("use", "sig") == "sig"
        and (kty != "EC" or k.get("crv") == _EC_CURVES[alg])
        and (not isinstance(k.get("alg"), str) or k.get("alg") == alg)
    ]
    if kid is not None:
        candidates = [k for k in candidates if k.get("kid") == kid]
    if not candidates:
        raise UnknownKeyError(
            f"the ID token from {name} is signed with a key ({str(kid)[:64]!r}, {alg}) "
            "that is not among the provider's published keys"
        )
    if len(candidates) > 1:
        raise _refuse(name, "names no key (kid) and the provider publishes several")
    try:
        return alg, JsonWebKey.import_key(dict(candidates[0]))
    except (ValueError, KeyError, TypeError):
        raise _refuse(name, "is signed with a published key that cannot be read") from None


def verify(
    token: str,
    keys: Iterable[Mapping[str, Any]],
    expected: Expected,
    name: str,
    now: float | None = None,
) -> dict[str, Any]:
    """The claims of a valid ID token; CredentialsRejectedError saying why not
    (UnknownKeyError when its key is not in ``keys``)."""
    alg, key = signing_key(header_of(token, name), keys, expected, name)
    moment = int(time.time() if now is None else now)
    try:
        claims = JsonWebToken([alg]).decode(
            token,
            key,
            claims_cls=CodeIDToken,
            claims_options={
                "iss": {"essential": True, "values": list(expected.issuers)},
                "aud": {"essential": True, "value": expected.client_id},
                "sub": {"essential": True},
                "nonce": {"essential": True, "value": expected.nonce},
            },
            claims_params={
                "nonce": expected.nonce,
                "client_id": expected.client_id,
                "access_token": expected.access_token,
            },
        )
        claims.validate(now=moment, leeway=LEEWAY_SECONDS)
    except BadSignatureError:
        raise _refuse(name, "has a wrong signature (it was altered or forged)") from None
    except ExpiredTokenError:
        raise _refuse(name, "has expired (check the clocks of both)") from None
    except InvalidTokenError:
        raise _refuse(name, "is not valid yet (check the clocks of both)") from None
    except (MissingClaimError, InvalidClaimError) as exc:
        claim = str(exc.description).split('"')[1] if '"' in str(exc.description) else ""
        why = _CLAIM_WORDS.get(claim, f"has a missing or wrong claim {claim!r}")
        raise _refuse(name, why) from None
    except DecodeError:
        raise _refuse(name, "is malformed") from None
    except JoseError as exc:
        raise _refuse(name, f"was refused ({exc.error})") from None
    except ValueError:
        # authlib raises plain ValueError for keys that do not fit the algorithm.
        raise _refuse(name, "is signed with a key that does not fit its algorithm") from None
    found = dict(claims)
    iat = found.get("iat")
    if isinstance(iat, int | float) and iat > moment + LEEWAY_SECONDS:
        raise _refuse(name, "was issued in the future (check the clocks of both)")
    if not isinstance(found.get("exp"), int | float):
        raise _refuse(name, _CLAIM_WORDS["exp"])
    sub = found.get("sub")
    if not isinstance(sub, str) or not 1 <= len(sub) <= 255 or not sub.isprintable():
        raise _refuse(name, _CLAIM_WORDS["sub"])
    audience = found.get("aud")
    if isinstance(audience, list) and len(audience) > 1 and found.get("azp") != expected.client_id:
        raise _refuse(name, _CLAIM_WORDS["azp"])
    return found


def replay_id(token: str, claims: Mapping[str, Any]) -> str:
    """What identifies this token for the replay cache: its ``jti``, else its hash."""
    jti = claims.get("jti")
    if isinstance(jti, str) and 0 < len(jti) <= 256:
        return f"jti:{claims.get('iss')}:{jti}"
    return "sha256:" + hashlib.sha256(token.encode()).hexdigest()
