"""The diagnostics through the daemon's API: a run is an operation with a
sub-task per check, the latest results come back, and the page shows them."""

from __future__ import annotations

from tests.support.web import Browser, complete_setup
from xenkeep.config import Settings


async def test_a_run_is_an_operation_and_its_results_are_the_latest(
    browser: Browser, settings: Settings
) -> None:
    await complete_setup(browser, settings)
    status, body = await browser.api("GET", "/api/v1/diagnostics")
    assert status == 200 and body["results"] == [] and body["running"] is None
    status, body = await browser.api("POST", "/api/v1/diagnostics/run")
    assert status == 202, body
    op = await browser.until_finished(f"/api/v1/operations/{body['operation_id']}")
    assert op["kind"] == "diagnostics" and op["status"] == "success"
    assert len(op["tasks"]) == len(op["report"]["results"]) >= 20 or len(op["tasks"]) >= 20
    status, body = await browser.api("GET", "/api/v1/diagnostics")
    ids = {r["id"] for r in body["results"]}
    assert {"disk.root", "disk.var", "dns", "version.schema", "tls.expiry"} <= ids
    for r in body["results"]:
        assert r["status"] in ("ok", "warning", "failure"), r
        assert r["value"], r
        if r["status"] != "ok":
            assert r["remedy"], r
    print({r["id"]: (r["status"], r["value"]) for r in body["results"]})
    status, page, _ = await browser.get("/diagnostics")
    assert status == 200 and 'id="check-version.schema"' in page
