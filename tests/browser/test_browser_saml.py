"""Sign-in with SAML 2.0 in Chromium: an administrator adds the provider in
the admin pages (loading the IdP's metadata file), tests it, and a person
presses "Sign in with Corp SSO", signs in at SimpleSAMLphp's own page, is
posted back, and lands on the dashboard signed in."""

from __future__ import annotations

import ssl
import urllib.request
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as ec

from tests.browser.ui import UI, ChromeFactory, Daemon, spki_pin
from tests.support.idp_saml import USER, SamlIdp

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PASSWORD = "correct horse battery staple"


def sp_metadata(daemon: Daemon, slug: str) -> str:
    ctx = ssl.create_default_context(cafile=str(daemon.cert_path))
    url = f"{daemon.url}auth/{slug}/metadata"
    with urllib.request.urlopen(url, context=ctx, timeout=30) as resp:  # noqa: S310 - our daemon
        return str(resp.read().decode())


def test_sign_in_with_saml_in_chromium(
    chrome_factory: ChromeFactory, xenkeepd: Daemon, saml_idp: SamlIdp, tmp_path: Path
) -> None:
    # Chromium trusts exactly the daemon's and the IdP's certificate keys.
    pins = f"{spki_pin(xenkeepd.cert_path)},{spki_pin(saml_idp.tls.server.cert)}"
    screenshots = Path(__file__).resolve().parents[2] / "out" / "screenshots"
    screenshots.mkdir(parents=True, exist_ok=True)
    ui = UI(chrome_factory(pins), xenkeepd, screenshots)

    ui.set_up_through_api("root-admin", PASSWORD)

    # The administrator adds the provider, loading the IdP's metadata from a file.
    metadata_file = tmp_path / "idp-metadata.xml"
    metadata_file.write_text(saml_idp.metadata_xml())
    ui.open("/admin/providers/new?kind=saml")
    ui.fill("name", "Corp SSO")
    ui.wait_for("#f-idp_metadata_xml-file").send_keys(str(metadata_file))
    ui.wait.until(
        lambda d: (
            "IDPSSODescriptor" in d.find_element(By.ID, "f-idp_metadata_xml").get_property("value")
        ),
        "the metadata file was never read into the text box",
    )
    ui.driver.find_element(By.ID, "f-enabled").click()
    ui.submit(ui.driver.find_element(By.CSS_SELECTOR, "#provider-form button.primary"))
    addresses = ui.text("#provider-addresses")
    assert "/auth/corp-sso/callback" in addresses and "/auth/corp-sso/metadata" in addresses
    ui.submit(ui.driver.find_element(By.CSS_SELECTOR, "#provider-test button"))
    check = ui.wait_for("#provider-check")
    assert check.get_attribute("data-ok") == "true", check.text
    assert saml_idp.entity_id in check.text
    ui.shot("saml-provider-tested")

    # The IdP's administrator registers XenKeep from the metadata it serves.
    saml_idp.register_sp(sp_metadata(xenkeepd, "corp-sso"))

    ui.sign_out()
    ui.submit(ui.wait_for("#sign-in-corp-sso"))
    # SimpleSAMLphp's own sign-in page.
    ui.wait_for("#username")
    assert ui.driver.current_url.startswith(saml_idp.base_url), ui.driver.current_url
    alice = USER["alice"]
    ui.driver.find_element(By.ID, "username").send_keys(alice.username)
    ui.driver.find_element(By.ID, "password").send_keys(alice.password)
    ui.shot("saml-idp-sign-in")
    ui.driver.find_element(By.ID, "submit_button").click()
    # The IdP's page posts the answer back by itself; ours moves on to the dashboard.
    ui.wait.until(
        ec.url_to_be(xenkeepd.url), f"never reached the dashboard: {ui.driver.current_url}"
    )
    ui.wait_for("header nav a[href='/account']")
    assert ui.signed_in_as() == "alice"
    status, body = ui.fetch_json("GET", "/api/v1/session")
    assert status == 200 and body["user"]["role"] == "user", body
    ui.shot("saml-signed-in")
