"""The first-boot wizard and sign-in, driven in Chromium against a real xenkeepd."""

from __future__ import annotations

import base64
import hashlib
import time

import pyotp
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from selenium.webdriver.common.by import By

from tests.browser.ui import UI, ChromeFactory, Daemon, spki_pin

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PASSWORD = "correct horse battery staple"
APPLIANCE = "Backup Lab 7"
TIMEZONE = "Europe/Paris"


def next_totp_code(secret: str) -> str:
    """The code of the next 30 s step.

    The enrolment used the current step's code; an authenticator shows a new
    code later, and a daemon refusing replays (as RFC 6238 asks) must still
    accept this one: it is within the one step of drift allowed.
    """
    totp = pyotp.TOTP(secret)
    return str(totp.at(int(time.time()) + totp.interval))


def test_whole_wizard_then_sign_in_again(ui: UI, xenkeepd: Daemon) -> None:
    # A person opens the appliance's address and lands on the token step.
    ui.open("/")
    ui.wait_step("token")
    assert "setup token" in ui.text("#step-token").lower()
    ui.shot("wizard-01-token")

    ui.enter_setup_token("ABCD-EFGH-JKLM-NPQR-STUV-WXYZ-2345")
    ui.wait_step("token")
    assert "not valid" in ui.error()
    ui.shot("wizard-02-token-wrong")

    token = xenkeepd.setup_token()
    ui.enter_setup_token(token)
    ui.wait_step("admin")
    ui.shot("wizard-03-admin")

    # Long enough for the browser's own minlength check, so the server judges it.
    ui.create_admin("alice", "adminadminadmin")
    ui.wait_step("admin")
    assert "too easy to guess" in ui.error()
    ui.shot("wizard-04-admin-weak")

    ui.create_admin("alice", PASSWORD)
    ui.wait_step("totp")
    assert not xenkeepd.token_path.exists(), "the setup token file outlived its use"
    secret = ui.text("#totp-secret").strip()
    assert ui.has(".qr svg"), "no QR code on the two-factor step"
    ui.shot("wizard-05-totp")
    ui.fill("code", pyotp.TOTP(secret).now())
    ui.submit(ui.driver.find_element(By.CSS_SELECTOR, "button[value=enable]"))

    # A first appliance has nothing to restore (tests/browser/test_browser_appliance_backup.py).
    ui.wait_step("restore")
    ui.submit(ui.driver.find_element(By.CSS_SELECTOR, "#step-skip-form button"))

    ui.wait_step("appliance")
    ui.fill("name", APPLIANCE)
    ui.choose("timezone", TIMEZONE)
    ui.shot("wizard-06-appliance")
    ui.click_primary()

    # "Connect a pool" is covered by tests/integration/web/test_pools_wizard.py.
    ui.wait_step("pool")
    ui.submit(ui.driver.find_element(By.CSS_SELECTOR, "button[value=skip]"))

    ui.wait_step("summary")
    assert ui.text("#summary-name") == APPLIANCE
    summary = ui.text("#step-summary")
    assert "alice (two-factor on)" in summary
    assert TIMEZONE in summary
    ui.shot("wizard-07-summary")
    ui.click_primary()

    # Finish leads to the dashboard, which shows the new name.
    ui.wait_for("main h1")
    assert ui.path() == "/", ui.path()
    assert ui.heading() == APPLIANCE
    assert not ui.has(".flash-info"), "the dashboard still says the wizard has steps left"
    assert ui.signed_in_as() == "alice"
    ui.shot("dashboard")

    ui.sign_out()
    assert ui.signed_in_as() is None
    ui.sign_in("alice", PASSWORD + "!", next_totp_code(secret))
    assert "wrong user name, password or code" in ui.error()
    assert ui.signed_in_as() is None
    ui.shot("login-wrong-password")

    ui.sign_in("alice", PASSWORD, next_totp_code(secret))
    ui.wait_for("main h1")
    assert ui.path() == "/", ui.path()
    assert ui.heading() == APPLIANCE
    assert ui.signed_in_as() == "alice"


def create_admin_through_wizard(ui: UI, xenkeepd: Daemon, username: str) -> str:
    """Token and administrator steps; returns the token that was used."""
    ui.open("/")
    ui.wait_step("token")
    token = xenkeepd.setup_token()
    ui.enter_setup_token(token)
    ui.wait_step("admin")
    ui.create_admin(username, PASSWORD)
    ui.wait_step("totp")
    return token


def test_default_credentials_never_sign_in(ui: UI, xenkeepd: Daemon) -> None:
    admin_name = "admin"
    # Before setup there is no sign-in form at all, only the token step.
    ui.open("/login")
    ui.wait_step("token")

    # Even with the administrator named "admin", its password is not "admin".
    create_admin_through_wizard(ui, xenkeepd, admin_name)
    ui.sign_out()
    for username, password in [("admin", "admin"), ("admin@admin.net", "admin")]:
        ui.sign_in(username, password)
        assert "wrong user name, password or code" in ui.error(), username
        assert ui.signed_in_as() is None
        assert ui.path().startswith("/login"), ui.path()

    # The form itself works: the real administrator gets in.
    ui.sign_in(admin_name, PASSWORD)
    ui.wait_for("main h1")
    assert ui.signed_in_as() == admin_name


def test_setup_token_is_dead_once_the_admin_exists(ui: UI, xenkeepd: Daemon) -> None:
    token = create_admin_through_wizard(ui, xenkeepd, "alice")
    ui.sign_out()

    # The wizard's token step is gone: the address now leads to sign-in.
    ui.open("/setup/token")
    ui.wait_for("form input#f-username")
    assert ui.path().startswith("/login"), ui.path()
    assert not ui.has("#step-token")

    # Posting the used token to the wizard page starts no setup session...
    ui.driver.execute_script(
        """
        const f = document.createElement('form');
        f.method = 'post'; f.action = '/setup/token';
        for (const [k, v] of [['token', arguments[0]],
                              ['_csrf', document.querySelector('meta[name=csrf-token]').content]]) {
          const i = document.createElement('input'); i.type = 'hidden'; i.name = k; i.value = v;
          f.appendChild(i);
        }
        const b = document.createElement('button'); b.type = 'submit'; b.id = 'replay';
        b.textContent = 'Replay'; f.appendChild(b); document.body.appendChild(f);
        """,
        token,
    )
    ui.submit(ui.driver.find_element(By.CSS_SELECTOR, "#replay"))
    ui.wait_for("form input#f-username")
    assert ui.path().startswith("/login"), ui.path()
    assert ui.signed_in_as() is None

    # ...and the JSON API refuses it outright.
    status, body = ui.fetch_json("POST", "/api/v1/setup/token", {"token": token})
    assert status == 401, body
    assert "not valid" in body["error"]["message"]
    status, body = ui.fetch_json("GET", "/api/v1/setup")
    assert status == 200 and body["setup_required"] is False, body


def test_only_the_pinned_key_is_trusted(chrome_factory: ChromeFactory, xenkeepd: Daemon) -> None:
    """The harness trusts the daemon's key, not every certificate: pin another key and
    Chromium must refuse the page."""
    other = ec.generate_private_key(ec.SECP256R1()).public_key()
    other_pin = base64.b64encode(
        hashlib.sha256(other.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).digest()
    ).decode()
    assert other_pin != spki_pin(xenkeepd.cert_path)
    driver = chrome_factory(other_pin)
    driver.get(xenkeepd.url + "api/v1/health")
    page = driver.page_source
    assert '"status"' not in page, page[:500]
    assert "ERR_CERT" in page or "not private" in page.lower(), page[:500]
