"""What every OAuth 2 sign-in shares (OpenID Connect, Google, GitHub).

The authorization code flow of RFC 6749 with PKCE (RFC 7636, S256) and a
one-time ``state``: starting it (:func:`new_flow`, :func:`authorize_url`),
reading the callback (:func:`callback_code`: the provider's refusal or the
code) and trading the code for tokens (:func:`exchange_code`), with the
client authenticated by HTTP Basic or in the body.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from authlib.common.security import generate_token
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from xenkeep.auth.errors import CredentialsRejectedError, ProviderUnavailableError
from xenkeep.auth.providers.base import Callback, CheckStep, FieldSpec
from xenkeep.auth.providers.http import IdpHttp, printable

#: Keys of a flow's saved data.
VERIFIER = "code_verifier"
REDIRECT_URI = "redirect_uri"
#: Longest authorization code accepted from a callback.
MAX_CODE = 2048

ClientAuth = Literal["client_secret_basic", "client_secret_post"]

#: A token request refused because of the client's own credentials or
#: registration, not because of the person: an administrator must act.
CLIENT_ERRORS = frozenset(
    {
        "invalid_client",
        "unauthorized_client",
        "incorrect_client_credentials",
        "redirect_uri_mismatch",
    }
)


def client_fields(where: str) -> tuple[FieldSpec, FieldSpec]:
    """The client id and secret every OAuth sign-in is registered with;
    ``where`` says where the administrator finds them."""
    return (
        FieldSpec("client_id", "Client ID", required=True, max_length=256, help=where),
        FieldSpec("client_secret", "Client secret", "secret", required=True, max_length=1024),
    )


@dataclass(frozen=True, slots=True)
class Flow:
    """A started sign-in: its state, and the PKCE verifier and challenge."""

    state: str
    verifier: str
    challenge: str


def new_flow() -> Flow:
    """Fresh, unguessable values for one sign-in."""
    verifier = generate_token(64)
    return Flow(generate_token(43), verifier, create_s256_code_challenge(verifier))


def authorize_url(endpoint: str, params: Mapping[str, str]) -> str:
    """``endpoint`` with ``params`` added to its query (keeping any it has)."""
    parts = urlsplit(endpoint)
    query = [*parse_qsl(parts.query, keep_blank_values=True), *params.items()]
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


def callback_code(callback: Callback, name: str) -> str:
    """The authorization code of a callback, or why there is none.

    An ``error`` there is the identity provider's refusal (RFC 6749 4.1.2.1):
    ``access_denied`` when the person (or a policy) said no.
    """
    params = callback.params
    error = printable(params.get("error", ""), 64)
    if error:
        description = printable(params.get("error_description", ""), 200)
        said = f" ({description})" if description else ""
        if error == "access_denied":
            raise CredentialsRejectedError(
                f"the sign-in was declined at {name}{said}",
                hint="start again from the sign-in page and allow it",
            )
        raise CredentialsRejectedError(f"{name} refused the sign-in: {error}{said}")
    code = params.get("code", "")
    if not code or len(code) > MAX_CODE or not code.isprintable():
        raise CredentialsRejectedError(f"{name} sent no usable authorization code")
    return code


class TokenRefusedError(CredentialsRejectedError):
    """The token endpoint refused the code (``error`` says why)."""

    def __init__(self, message: str, error: str, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.error = error


async def exchange_code(
    http: IdpHttp,
    token_url: str,
    *,
    client_id: str,
    client_secret: str,
    code: str,
    redirect_uri: str,
    verifier: str,
    auth: ClientAuth,
) -> dict[str, Any]:
    """The token endpoint's answer for ``code`` (RFC 6749 4.1.3).

    TokenRefusedError when it refuses (a used or expired code, a wrong PKCE
    verifier, the client's credentials), ProviderUnavailableError when it
    answers nothing usable. GitHub answers refusals with HTTP 200 and an
    ``error``: that is a refusal too.
    """
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": verifier,
    }
    headers: dict[str, str] = {}
    if auth == "client_secret_basic":
        # RFC 6749 2.3.1: each part form-encoded before the Basic encoding.
        pair = f"{quote(client_id, safe='')}:{quote(client_secret, safe='')}"
        headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode("ascii")
    else:
        form |= {"client_id": client_id, "client_secret": client_secret}
    answer = await http.request(
        "POST", token_url, what="token endpoint", headers=headers, data=form
    )
    body = answer.json("token answer", http.name) if answer.body else {}
    if not isinstance(body, dict):
        raise ProviderUnavailableError(f"{http.name}'s token answer is not a JSON object")
    error = body.get("error")
    if answer.status >= 500 and not isinstance(error, str):
        raise ProviderUnavailableError(
            f"{http.name}'s token endpoint failed (HTTP {answer.status})",
            hint="try again later; if it persists, the identity provider has a problem",
        )
    if isinstance(error, str) or answer.status != 200:
        words = printable(error if isinstance(error, str) else f"HTTP {answer.status}", 64)
        description = body.get("error_description")
        said = f" ({printable(description, 200)})" if isinstance(description, str) else ""
        if words in CLIENT_ERRORS or answer.status == 401:
            raise TokenRefusedError(
                f"{http.name} refused XenKeep's client credentials or registration: {words}{said}",
                words,
                hint="an administrator must check the provider's client id, secret "
                "and redirect address",
            )
        raise TokenRefusedError(
            f"{http.name} refused the sign-in code: {words}{said}",
            words,
            hint="start again from the sign-in page",
        )
    token = body.get("access_token")
    if not isinstance(token, str) or not token:
        raise ProviderUnavailableError(f"{http.name}'s token answer has no access token")
    token_type = body.get("token_type")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        raise ProviderUnavailableError(
            f"{http.name} issued a {printable(str(token_type), 32)!r} token, not a bearer token"
        )
    return body


async def client_steps(
    http: IdpHttp,
    token_url: str,
    *,
    client_id: str,
    client_secret: str,
    redirect_uri: str,
    auth: ClientAuth,
    redirect_label: str,
) -> list[CheckStep]:
    """What "test this configuration" says of the client: whether the token
    endpoint accepts its credentials, and the redirect address to register.

    A code that cannot exist is refused as a bad code once the client is
    authenticated, and as a bad client before.
    """
    try:
        await exchange_code(
            http,
            token_url,
            client_id=client_id,
            client_secret=client_secret,
            code="xenkeep-configuration-test-" + generate_token(16),
            redirect_uri=redirect_uri,
            verifier=generate_token(64),
            auth=auth,
        )
    except TokenRefusedError as exc:
        if exc.error in CLIENT_ERRORS or exc.error.startswith("HTTP "):
            ok, detail = False, exc.message
        else:
            ok, detail = True, f"accepted (a made-up code was refused as {exc.error})"
    except ProviderUnavailableError as exc:
        ok, detail = False, exc.with_hint
    else:
        ok, detail = False, "a made-up code was accepted: this is no trustworthy token endpoint"
    return [
        CheckStep("Client id and secret", ok, detail),
        CheckStep(
            redirect_label,
            redirect_uri.startswith("https://"),
            f"register {redirect_uri} at {http.name}",
        ),
    ]
