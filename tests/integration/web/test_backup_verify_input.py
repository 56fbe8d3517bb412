"""A verify of one VM names a directory of the datastore: anything but a
uuid is refused before an operation exists."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.web import Browser, complete_setup
from xenkeep.config import Settings


@pytest.mark.parametrize(
    "vm_uuid", ["../../../etc", "/etc", "5b0e5f4e", "5b0e5f4e-2f0c-4d9e-9a57-8c3c2a1d0e11/.."]
)
async def test_a_verify_of_no_uuid_is_refused_and_stores_nothing(
    browser: Browser, settings: Settings, tmp_path: Path, vm_uuid: str
) -> None:
    await complete_setup(browser, settings)
    store = tmp_path / "store"
    store.mkdir()
    status, body = await browser.api("POST", "/api/v1/backup/storage", {"path": str(store)})
    assert status == 200, body

    status, body = await browser.api("POST", "/api/v1/backup/verify", {"vm_uuid": vm_uuid})
    assert status == 400, body
    assert body["error"]["code"] == "invalid_input" and body["error"]["field"] == "vm_uuid"
    status, body = await browser.api("GET", "/api/v1/operations?kind=verify")
    assert status == 200 and body["operations"] == [], body
    status, body = await browser.api("GET", "/api/v1/backup/verify")
    assert status == 200 and body["status"] == "never", body
