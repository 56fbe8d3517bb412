"""Redirect sign-ins in Chromium against a real xenkeepd: an administrator
configures the provider in the admin pages and tests it, then a person
presses "Sign in with ..." on the sign-in page, signs in at the identity
provider's own page and lands on the dashboard, signed in.

The OpenID provider is real (oidc-provider under Node); GitHub is the
stand-in (tests/support/github_standin.py). Chromium trusts the daemon's,
the provider's and the stand-in's keys by pin, nothing else.
"""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By

from tests.browser.conftest import SCREENSHOTS
from tests.browser.ui import UI, ChromeFactory, Daemon, spki_pin
from tests.support.github_standin import GitHubStandin
from tests.support.idp_oidc import OidcIdp

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PASSWORD = "correct horse battery staple"


def first_boot(ui: UI, xenkeepd: Daemon) -> None:
    """The wizard's token and administrator steps, from the page (signs alice in)."""
    ui.open("/login")
    status, body = ui.fetch_json("POST", "/api/v1/setup/token", {"token": xenkeepd.setup_token()})
    assert status == 200, body
    status, body = ui.fetch_json(
        "POST",
        "/api/v1/setup/admin",
        {"username": "alice", "password": PASSWORD, "confirm": PASSWORD},
    )
    assert status == 201, body


def add_provider_in_the_admin_pages(ui: UI, kind_label: str, values: dict[str, str]) -> None:
    """Admin, Sign-in providers, Add: fill the form, enable, save; then Test."""
    ui.open("/admin/providers")
    ui.choose("kind", kind_label)
    ui.submit(ui.wait_for("#provider-add button"))
    for name, value in values.items():
        if name == "teams_as_groups":
            ui.wait_for(f"#f-{name}").click()
            continue
        field = ui.wait_for(f"#f-{name}")
        if field.tag_name == "textarea":
            # A PEM typed key by key would take long: set it as a paste would.
            ui.driver.execute_script("arguments[0].value = arguments[1];", field, value)
        else:
            ui.fill(name, value)
    ui.wait_for("#f-enabled").click()
    ui.submit(ui.wait_for("#provider-form button.primary"))
    assert "was added" in ui.text(".flash"), ui.text("main")
    ui.submit(ui.wait_for("#provider-test button"))
    checks = ui.wait_for("#provider-check")
    assert checks.get_attribute("data-ok") == "true", checks.text


def test_sign_in_with_openid_connect(
    chrome_factory: ChromeFactory, xenkeepd: Daemon, oidc_idp: OidcIdp
) -> None:
    oidc_idp.untamper()
    driver = chrome_factory(f"{spki_pin(xenkeepd.cert_path)},{oidc_idp.cert.spki_pin}")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    ui = UI(driver, xenkeepd, SCREENSHOTS)
    first_boot(ui, xenkeepd)
    client = oidc_idp.register_client(xenkeepd.url + "auth/corp/callback")
    add_provider_in_the_admin_pages(
        ui,
        "OpenID Connect",
        {
            "name": "Corp SSO",
            "slug": "corp",
            "issuer": oidc_idp.issuer,
            "client_id": client.client_id,
            "client_secret": client.client_secret,
            "scopes": "openid profile email groups",
            "groups_claim": "groups",
            "ca_pem": oidc_idp.ca.ca_pem,
        },
    )
    assert xenkeepd.url + "auth/corp/callback" in ui.text("#provider-addresses")
    ui.shot("sign-in-oidc-provider-form")
    ui.sign_out()

    ui.open("/login?next=/operations")
    ui.shot("sign-in-oidc-login-page")
    button = ui.wait_for("#sign-in-corp")
    assert button.text == "Sign in with Corp SSO"
    ui.submit(button)
    ui.wait_for("#op-login")
    assert str(driver.current_url).startswith(oidc_idp.issuer + "/interaction/")
    login, password = oidc_idp.login_of("alice")
    ui.wait_for("#op-username").send_keys(login)
    ui.wait_for("#op-password").send_keys("not the password")
    ui.submit(ui.wait_for("#op-submit"))
    assert "Wrong user name or password" in ui.text("#op-login-error")
    ui.wait_for("#op-password").send_keys(password)
    ui.submit(ui.wait_for("#op-submit"))
    ui.wait.until(lambda d: ui.path() == "/operations" and ui.signed_in_as() is not None)
    assert ui.signed_in_as() == "alice@corp"
    ui.shot("sign-in-oidc-signed-in")
    status, body = ui.fetch_json("GET", "/api/v1/session")
    assert status == 200 and body["user"]["role"] == "user" and body["user"]["source"] == "oidc"


def test_sign_in_with_the_github_standin(
    chrome_factory: ChromeFactory, xenkeepd: Daemon, github_standin: GitHubStandin
) -> None:
    driver = chrome_factory(f"{spki_pin(xenkeepd.cert_path)},{github_standin.cert.spki_pin}")
    ui = UI(driver, xenkeepd, SCREENSHOTS)
    first_boot(ui, xenkeepd)
    app = github_standin.register_app(xenkeepd.url + "auth/github/callback")
    add_provider_in_the_admin_pages(
        ui,
        "GitHub",
        {
            "name": "GitHub",
            "slug": "github",
            "client_id": app.client_id,
            "client_secret": app.client_secret,
            "allowed_orgs": "acme",
            "teams_as_groups": "on",
            "web_url": github_standin.web_url,
            "api_url": github_standin.api_url,
            "ca_pem": github_standin.ca.ca_pem,
        },
    )
    ui.sign_out()

    # An attempt to send the person elsewhere afterwards: they stay here.
    ui.open("/auth/github/start?next=https://evil.example/")
    ui.wait_for("#login")
    ui.wait_for("#login_field").send_keys("mona")
    ui.wait_for("#password").send_keys(github_standin.accounts["mona"].password)
    ui.submit(ui.wait_for("#sign-in"))
    ui.shot("sign-in-github-authorize")
    ui.submit(ui.wait_for("#js-oauth-authorize-btn"))
    ui.wait.until(lambda d: ui.signed_in_as() is not None)
    assert ui.path() == "/"
    assert str(driver.current_url).startswith(xenkeepd.url)
    assert ui.signed_in_as() == "mona"
    assert not driver.find_elements(By.CSS_SELECTOR, "a[href*='evil']")
