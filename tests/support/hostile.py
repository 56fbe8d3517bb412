"""Hostile input the attack tests share."""

from __future__ import annotations

# Each of these is read by a browser as another host (or a script).
HOSTILE_REDIRECTS: list[str | None] = [
    "//evil.example/phish",
    "/\t/evil.example/phish",  # the browser drops tab, CR and LF anywhere
    "/\n/evil.example/phish",
    "/\r/evil.example/phish",
    "\t//evil.example/",
    " //evil.example/",  # leading spaces and C0 controls are stripped
    "\x00//evil.example/",
    "/\\evil.example/phish",  # a backslash is a slash to the browser
    "\\\\evil.example/phish",
    "/%2F/evil.example",  # encoded: decoded once by a proxy or the next hop
    "/%2f%2fevil.example",
    "%2F%2Fevil.example",
    "/%5Cevil.example",
    "/%09/evil.example",
    "/%0a/evil.example",
    "/%252F%252Fevil.example",  # encoded twice
    "https://evil.example/",
    "http:evil.example",
    "https:/evil.example",
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "evil.example/phish",
    "/\u3000/evil.example",  # not ASCII: a Location header cannot carry it as sent
    "/ok\x7f",
    "",
    None,
]
