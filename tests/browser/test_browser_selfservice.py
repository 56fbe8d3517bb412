"""Self-service in Chromium against a real xenkeepd and the simulator: an
administrator gives a member a resource set; the member adds an SSH key on
their account page, sees their quota as used/limit bars, creates a VM from
the form, follows the operation to its end and sees the quota used."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from selenium.webdriver.common.by import By

from tests.browser.ui import UI, Daemon
from xapisim.testing import SimulatorThread

pytestmark = [pytest.mark.browser, pytest.mark.slow]

PASSWORD = "correct horse battery staple"
MEMBER_PASSWORD = "member passphrase 1234"
CLOUD_TEMPLATE = "Debian 12 Cloud (cloud-init)"


def pool_objects(ui: UI) -> dict[str, list[tuple[str, str]]]:
    """kind → (uuid, label) of the pool's objects, once the live cache has them."""
    for _ in range(300):
        status, body = ui.fetch_json("GET", "/api/v1/grants/objects")
        assert status == 200, body
        found: dict[str, list[tuple[str, str]]] = {}
        for group in body["groups"]:
            for o in group["objects"]:
                kind, _, ref = o["object"].partition(":")
                found.setdefault(kind, []).append((ref, o["name"]))
        if "template" in found:
            return found
        time.sleep(0.1)
    raise AssertionError("the pool's objects never showed")


def test_member_creates_a_vm_from_the_form_within_quota(
    ui: UI, xenkeepd: Daemon, tmp_path: Path
) -> None:
    with SimulatorThread(tmp_path / "pool", demo=True) as sim:
        ui.set_up_through_api("alice", PASSWORD)
        ui.add_pool(sim.url)
        status, made = ui.fetch_json(
            "POST", "/api/v1/users", {"username": "dev", "password": MEMBER_PASSWORD}
        )
        assert status == 201, made
        by_kind = pool_objects(ui)
        template = next(r for r, n in by_kind["template"] if n.endswith(CLOUD_TEMPLATE))
        status, body = ui.fetch_json(
            "POST",
            "/api/v1/resource-sets",
            {
                "name": "developers",
                "limits": {"cpus": 4, "vms": 2},
                "subjects": [f"user:{made['user']['id']}"],
                "objects": {
                    "template": [template],
                    "sr": [r for r, _ in by_kind["sr"]],
                    "network": [r for r, _ in by_kind["network"]],
                },
            },
        )
        assert status == 201, body
        ui.open("/")
        ui.sign_out()

        ui.sign_in("dev", MEMBER_PASSWORD)
        ui.open("/account")
        key = Ed25519PrivateKey.generate().public_key()
        line = key.public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        ).decode()
        ui.fill("key-name", "laptop")
        ui.fill("key", line + " dev@laptop")
        ui.submit(ui.driver.find_element(By.CSS_SELECTOR, "#ssh-key-form button"))
        assert "laptop" in ui.text("#ssh-keys-table")
        ui.shot("self-01-ssh-key")

        ui.open("/self")
        cpus = ui.wait_for('.quota-bars tr[data-resource="cpus"]')
        assert (cpus.get_attribute("data-used"), cpus.get_attribute("data-limit")) == ("0", "4")
        ui.choose("template", CLOUD_TEMPLATE)
        ui.fill("name", "web")
        ui.fill("vcpus", "2")
        ui.fill("root", "20")
        ui.shot("self-02-form")
        ui.submit(ui.driver.find_element(By.ID, "create-submit"))
        assert ui.wait_text("#run-status", "success", "failed") == "success"
        ui.shot("self-03-created")

        ui.open("/self")
        cpus = ui.wait_for('.quota-bars tr[data-resource="cpus"]')
        assert cpus.get_attribute("data-used") == "2"
        assert "web" in ui.text("#my-vms-table")
        # Over quota: the form says so with the numbers.
        ui.fill("name", "big")
        ui.fill("vcpus", "3")
        ui.submit(ui.driver.find_element(By.ID, "create-submit"))
        assert "cpus: 2 used + 3 asked > 4 allowed" in ui.error()
        ui.shot("self-04-over-quota")
