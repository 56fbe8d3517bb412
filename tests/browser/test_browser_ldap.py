"""LDAP sign-in in Chromium against a real xenkeepd and a real OpenLDAP: an
administrator adds the provider in the UI, tests it with a person from the
form (and sees their groups), enables it, and that person signs in by
choosing it on the sign-in page."""

from __future__ import annotations

import pytest
from selenium.webdriver.common.by import By

from tests.browser.ui import UI
from tests.support.slapd import BASE_DN, PASSWORDS, SERVICE_DN, SERVICE_PASSWORD, RunningSlapd

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ADMIN_PASSWORD = "correct horse battery staple"
NAME = "Corp Directory"


def test_admin_adds_tests_and_enables_ldap_then_a_person_signs_in(
    ui: UI, slapd: RunningSlapd
) -> None:
    ui.set_up_through_api("admin", ADMIN_PASSWORD)

    # Add: the kind, then its form.
    ui.open("/admin/providers")
    ui.choose("kind", "LDAP / Active Directory")
    ui.submit(ui.wait_for("#provider-add button"))
    assert ui.path() == "/admin/providers/new?kind=ldap", ui.path()
    ui.fill("name", NAME)
    ui.fill("slug", "corp")
    ui.fill("servers", slapd.ldap_url)
    ui.choose_value("security", "starttls")
    ui.fill("ca_pem", slapd.ca_pem)
    ui.fill("bind_dn", SERVICE_DN)
    ui.fill("bind_password", SERVICE_PASSWORD)
    ui.fill("base_dn", f"ou=people,{BASE_DN}")
    ui.choose_value("group_source", "search")
    ui.fill("group_base_dn", f"ou=groups,{BASE_DN}")
    ui.choose_value("disabled_check", "filter")
    ui.shot("ldap-01-new-provider")
    ui.click_primary()
    assert "was added" in ui.text(".flash"), ui.text("main")
    assert not ui.driver.find_element(By.CSS_SELECTOR, "#f-enabled").is_selected()

    # Test it with a person from the form: every step passes, their groups show.
    ui.fill("username", "alice")
    ui.fill("password", PASSWORDS["alice"])
    ui.submit(ui.wait_for("#provider-test button"))
    check = ui.wait_for("#provider-check")
    assert check.get_attribute("data-ok") == "true", check.text
    assert "Sign in with the password" in check.text
    identity = ui.text("#provider-identity")
    assert "backup-admins, staff" in identity and "Alice Archer" in identity
    ui.shot("ldap-02-tested")

    # Enable it (the stored service password stays, the field left empty).
    enabled = ui.driver.find_element(By.CSS_SELECTOR, "#f-enabled")
    enabled.click()
    ui.click_primary()
    assert "Saved." in ui.text(".flash")
    assert ui.driver.find_element(By.CSS_SELECTOR, "#f-enabled").is_selected()
    ui.sign_out()

    # The person chooses the directory on the sign-in page.
    ui.choose("provider", NAME)
    ui.fill("username", "alice")
    ui.fill("password", "not her password")
    ui.click_primary()
    assert "wrong user name or password" in ui.error()
    ui.shot("ldap-03-refused")
    assert ui.driver.find_element(By.CSS_SELECTOR, "#f-provider option:checked").text == NAME
    ui.fill("username", "alice")
    ui.fill("password", PASSWORDS["alice"])
    ui.click_primary()
    assert ui.path() == "/", ui.path()
    assert ui.signed_in_as() == "alice"
    ui.shot("ldap-04-signed-in")
    status, session = ui.fetch_json("GET", "/api/v1/session")
    assert status == 200 and session["user"]["source"] == "ldap"
    assert session["user"]["display_name"] == "Alice Archer"
