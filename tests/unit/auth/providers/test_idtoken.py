"""ID token checks on tokens made here with authlib: the key is chosen by the
verifier, never by the token; the claims must be exactly this sign-in's."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from authlib.jose import JsonWebKey, JsonWebSignature, JsonWebToken

from xenkeep.auth.errors import CredentialsRejectedError
from xenkeep.auth.providers import idtoken

ISSUER = "https://sso.example.com"
CLIENT = "xenkeep"
SECRET = "a-shared-client-secret-of-some-length"
NOW = 1_800_000_000.0

RSA = JsonWebKey.generate_key("RSA", 2048, is_private=True)
EC = JsonWebKey.generate_key("EC", "P-256", is_private=True)
OTHER_RSA = JsonWebKey.generate_key("RSA", 2048, is_private=True)


def public(key: Any, kid: str) -> dict[str, Any]:
    return {**key.as_dict(), "kid": kid, "use": "sig"}


KEYS = [public(RSA, "rsa-1"), public(EC, "ec-1")]


def expected(**changes: Any) -> idtoken.Expected:
    values: dict[str, Any] = {
        "issuers": (ISSUER,),
        "client_id": CLIENT,
        "client_secret": SECRET,
        "nonce": "n-0S6_WzA2Mj",
        "algorithms": ("RS256", "ES256"),
    }
    return idtoken.Expected(**{**values, **changes})


def claims(**changes: Any) -> dict[str, Any]:
    values = {
        "iss": ISSUER,
        "sub": "248289761001",
        "aud": CLIENT,
        "exp": NOW + 300,
        "iat": NOW,
        "nonce": "n-0S6_WzA2Mj",
        "jti": "id-1",
    }
    return {k: v for k, v in {**values, **changes}.items() if v is not None}


def sign(payload: dict[str, Any], alg: str = "RS256", key: Any = RSA, **header: Any) -> str:
    head = {"alg": alg, "kid": {"RS256": "rsa-1", "ES256": "ec-1"}.get(alg), **header}
    head = {k: v for k, v in head.items() if v is not None}
    return JsonWebToken([alg]).encode(head, payload, key).decode()


def b64(obj: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def refusal(
    token: str, exp: idtoken.Expected | None = None, keys: list[dict[str, Any]] = KEYS
) -> str:
    with pytest.raises(CredentialsRejectedError) as caught:
        idtoken.verify(token, keys, exp or expected(), "Corp", now=NOW)
    return caught.value.message


@pytest.mark.parametrize("alg", ["RS256", "ES256"])
def test_a_valid_token(alg: str) -> None:
    token = sign(claims(), alg, RSA if alg == "RS256" else EC)
    found = idtoken.verify(token, KEYS, expected(), "Corp", now=NOW)
    assert found["sub"] == "248289761001"
    assert idtoken.replay_id(token, found) == f"jti:{ISSUER}:id-1"


def test_hs256_only_with_the_client_secret_and_when_listed() -> None:
    token = sign(claims(), "HS256", SECRET)
    assert "does not list" in refusal(token)
    found = idtoken.verify(token, KEYS, expected(algorithms=("RS256", "HS256")), "Corp", now=NOW)
    assert found["aud"] == CLIENT
    # Signed with the RSA public key as the HMAC secret: the confusion fails.
    pem = RSA.as_pem(is_private=False)
    assert "wrong signature" in refusal(
        sign(claims(), "HS256", pem), expected(algorithms=("RS256", "HS256"))
    )


def test_alg_none_is_never_accepted() -> None:
    body = b64(claims())
    for alg in ("none", "None", "NONE"):
        token = f"{b64({'alg': alg})}.{body}."
        assert "is not signed (alg none)" in refusal(token, expected(algorithms=("none", "RS256")))


def test_the_key_comes_from_the_key_set_only() -> None:
    # A key embedded in the header (jwk) is no key of the provider's.
    forged = sign(claims(), "RS256", OTHER_RSA, jwk=OTHER_RSA.as_dict(), kid="rsa-1")
    assert "wrong signature" in refusal(forged)
    assert "not among the provider's published keys" in refusal(sign(claims(), kid="rsa-2"))
    # No kid and two keys of the type: which one is not guessed.
    two = [*KEYS, public(OTHER_RSA, "rsa-2")]
    assert "names no key" in refusal(sign(claims(), kid=None), keys=two)
    assert idtoken.verify(sign(claims(), kid=None), KEYS, expected(), "Corp", now=NOW)
    # An encryption key of the set does not verify signatures.
    assert "not among" in refusal(sign(claims()), keys=[{**public(RSA, "rsa-1"), "use": "enc"}])


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"iss": "https://evil.example"}, "(iss)"),
        ({"aud": "another-client"}, "another application (aud)"),
        ({"aud": [CLIENT, "another-client"]}, "another application (azp)"),
        ({"aud": [CLIENT, "another-client"], "azp": "another-client"}, "another application (azp)"),
        ({"nonce": "replayed"}, "(nonce)"),
        ({"nonce": None}, "(nonce)"),
        ({"sub": None}, "(sub)"),
        ({"sub": ""}, "(sub)"),
        ({"sub": 12345}, "(sub)"),
        ({"exp": NOW - 3600}, "has expired"),
        ({"exp": None}, "(exp)"),
        ({"exp": "tomorrow"}, "(exp)"),
        ({"iat": NOW + 3600}, "issued in the future"),
        ({"iat": None}, "(iat)"),
        ({"nbf": NOW + 3600}, "not valid yet"),
    ],
)
def test_claims_of_another_sign_in_are_refused(changes: dict[str, Any], words: str) -> None:
    assert words in refusal(sign(claims(**changes)))


def test_several_audiences_with_our_azp_are_accepted() -> None:
    token = sign(claims(aud=[CLIENT, "another-client"], azp=CLIENT))
    assert idtoken.verify(token, KEYS, expected(), "Corp", now=NOW)["azp"] == CLIENT


def test_malformed_and_foreign_tokens() -> None:
    assert "malformed" in refusal("only.two")
    assert "malformed header" in refusal("%%%.e30.")
    assert "encrypted (JWE)" in refusal("a.b.c.d.e")
    assert "longer than" in refusal("a" * (idtoken.MAX_ID_TOKEN + 1))
    # authlib's JWT encoder always writes typ JWT: sign this one as a plain JWS.
    logout = JsonWebSignature(["RS256"]).serialize_compact(
        {"alg": "RS256", "kid": "rsa-1", "typ": "logout+jwt"}, json.dumps(claims()).encode(), RSA
    )
    assert "not an ID token" in refusal(logout.decode())
    assert "does not list" in refusal(sign(claims(), "ES256", EC), expected(algorithms=("RS256",)))
    token = sign(claims())
    head, body, sig = token.split(".")
    flipped = bytearray(base64.urlsafe_b64decode(sig + "=="))
    flipped[10] ^= 1
    tampered = f"{head}.{body}.{base64.urlsafe_b64encode(bytes(flipped)).rstrip(b'=').decode()}"
    assert "wrong signature" in refusal(tampered)
    assert "wrong signature" in refusal(f"{head}.{b64(claims(sub='mallory'))}.{sig}")


def test_the_access_token_hash_is_checked() -> None:
    token = sign(claims(at_hash="AAAAAAAAAAAAAAAAAAAAAA"))
    assert "at_hash" in refusal(token, expected(access_token="the-real-token"))


def test_without_jti_the_replay_id_is_the_hash() -> None:
    token = sign(claims(jti=None))
    found = idtoken.verify(token, KEYS, expected(), "Corp", now=NOW)
    assert idtoken.replay_id(token, found).startswith("sha256:")
