"""IdP metadata fetched from an https address: kept on disk, fetched again
once old, an older copy used (and said so) while the address is down, and
what is refused: another CA, a redirect, too large a document, a document
that is not usable metadata.

The address is served by a small aiohttp server on loopback (a stand-in
for the IdP's web server that a test can stop), serving the real
SimpleSAMLphp IdP's metadata."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from tests.support.idp_saml import SamlIdp
from tests.support.pki import LoopbackCA, loopback_ca
from xenkeep.auth.providers.saml_metadata import (
    MAX_METADATA_BYTES,
    REFRESH_SECONDS,
    STALE_SECONDS,
    MetadataFetcher,
    MetadataUnavailable,
    parse_idp_metadata,
)


@dataclass
class MetadataHost:
    """The stand-in web server: what it answers, and whether it is up."""

    url: str
    ca: LoopbackCA
    document: bytes
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    hits: int = 0
    runner: web.AppRunner | None = None

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


@pytest.fixture
async def host(tmp_path: Path, saml_idp: SamlIdp) -> AsyncIterator[MetadataHost]:
    ca = loopback_ca(tmp_path / "tls", "metadata-host")
    served = MetadataHost("", ca, saml_idp.metadata_xml().encode())

    async def metadata(request: web.Request) -> web.Response:
        served.hits += 1
        return web.Response(body=served.document, status=served.status, headers=served.headers)

    app = web.Application()
    app.router.add_get("/metadata", metadata)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(ca.server.cert), str(ca.server.key))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
    await site.start()
    port = runner.addresses[0][1]
    served.url = f"https://127.0.0.1:{port}/metadata"
    served.runner = runner
    yield served
    await served.stop()


def fetcher(host: MetadataHost, tmp_path: Path, ca: str | None = None) -> MetadataFetcher:
    return MetadataFetcher(host.url, host.ca.ca.cert_pem if ca is None else ca, tmp_path / "state")


async def test_fetched_kept_and_fetched_again_once_old(host: MetadataHost, tmp_path: Path) -> None:
    now = 1_000_000.0
    first = await fetcher(host, tmp_path).get(now=now)
    assert first.document == host.document and not first.stale_because
    assert parse_idp_metadata(first.document).entity_id.endswith("/saml2/idp/metadata.php")
    (copy,) = (tmp_path / "state").glob("idp-metadata-*.xml")
    assert copy.read_bytes() == host.document
    # A new fetcher (a restarted daemon) starts from the copy on disk: the
    # file's time says when it was fetched.
    restarted = fetcher(host, tmp_path)
    hits = host.hits
    kept = await restarted.get()
    assert kept.document == host.document and host.hits == hits
    assert (await restarted.get(now=kept.fetched_at + REFRESH_SECONDS + 1)).document
    assert host.hits == hits + 1
    # Refresh on demand (what "test this configuration" does).
    await restarted.get(refresh=True)
    assert host.hits == hits + 2


async def test_an_older_copy_is_used_while_the_address_is_down(
    host: MetadataHost, tmp_path: Path
) -> None:
    source = fetcher(host, tmp_path)
    fetched = await source.get()
    await host.stop()
    later = fetched.fetched_at + REFRESH_SECONDS + 60
    stale = await source.get(now=later)
    assert stale.document == fetched.document
    assert "cannot fetch" in stale.stale_because
    # Right after a failure the address is not tried again (a sign-in does not
    # wait for it), and the copy says why.
    assert (await source.get(now=later + 1)).stale_because == "the address failed recently"
    # Asked to refresh, the failure is the answer.
    with pytest.raises(MetadataUnavailable, match="cannot fetch"):
        await source.get(refresh=True, now=later + 2)
    # A copy older than a week is not used any more.
    with pytest.raises(MetadataUnavailable, match="cannot fetch"):
        await source.get(now=fetched.fetched_at + STALE_SECONDS + 1)


async def test_no_copy_and_the_address_down_says_so(host: MetadataHost, tmp_path: Path) -> None:
    await host.stop()
    with pytest.raises(MetadataUnavailable, match="cannot fetch"):
        await fetcher(host, tmp_path).get()
    assert not list((tmp_path / "state").glob("idp-metadata-*"))


async def test_another_ca_is_refused(host: MetadataHost, tmp_path: Path) -> None:
    other = loopback_ca(tmp_path / "other", "other").ca.cert_pem
    with pytest.raises(MetadataUnavailable, match="is not trusted"):
        await fetcher(host, tmp_path, other).get()
    # Without a pinned CA the appliance's trusted CAs decide: not this one.
    with pytest.raises(MetadataUnavailable, match="give the CA that signed it"):
        await fetcher(host, tmp_path, "").get()


async def test_a_redirect_is_not_followed(host: MetadataHost, tmp_path: Path) -> None:
    host.status = 302
    host.headers = {"Location": "https://elsewhere.example/metadata"}
    with pytest.raises(MetadataUnavailable, match=r"redirect to https://elsewhere\.example"):
        await fetcher(host, tmp_path).get()


async def test_an_error_status_is_refused(host: MetadataHost, tmp_path: Path) -> None:
    host.status = 500
    with pytest.raises(MetadataUnavailable, match="HTTP 500"):
        await fetcher(host, tmp_path).get()


async def test_too_large_a_document_is_refused(host: MetadataHost, tmp_path: Path) -> None:
    host.document = b" " * (MAX_METADATA_BYTES + 1)
    with pytest.raises(MetadataUnavailable, match="more than"):
        await fetcher(host, tmp_path).get()


async def test_a_document_that_is_not_metadata_is_not_kept(
    host: MetadataHost, tmp_path: Path
) -> None:
    source = fetcher(host, tmp_path)
    good = await source.get()
    host.document = b"<html>maintenance</html>"
    stale = await source.get(now=good.fetched_at + REFRESH_SECONDS + 1)
    assert stale.document == good.document
    assert "not SAML metadata" in stale.stale_because
    (copy,) = (tmp_path / "state").glob("idp-metadata-*.xml")
    assert b"maintenance" not in copy.read_bytes()
