"""The job forms' VM picker and the selection preview, over HTTPS against a
daemon with two simulated pools whose VMs bear the same names (each demo
pool has a web-01), plus a second web-01 made in pool A."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.integration.backup.conftest import make_vm, storage_and_job
from tests.support.people import World, user_with_grant, world
from xenkeep.auth.permissions import ObjectRole
from xenkeep.units import local_time
from xenkeep.xapi.client import XapiClient

PREVIEW = "/api/v1/backup/jobs/preview"


async def _preview(w: World, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
    got, answer = await w.admin.api("POST", PREVIEW, body)
    assert got == status, answer
    return answer


async def test_the_preview_tells_same_named_vms_apart(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        a, b = str(w.a.pool.id), str(w.b.pool.id)
        web_a, web_b = w.a.vms["web-01"], w.b.vms["web-01"]
        assert web_a != web_b

        # The same name in two pools: each pool's preview takes its own VM.
        for pool_id, uuid in ((a, web_a), (b, web_b)):
            answer = await _preview(
                w, {"selector": "name", "targets": "web-01", "pool_id": pool_id}
            )
            assert [(v["name"], v["uuid"], v["pool_id"]) for v in answer["vms"]] == [
                ("web-01", uuid, pool_id)
            ]
            assert answer["errors"] == [] and answer["shared_names"] == {}

        # The same name twice in one pool: the name takes both, and says so.
        client = XapiClient(w.a.sim.url, "root", "demo")
        try:
            twin = (await make_vm(client, w.a.sim, "web-01")).uuid
        finally:
            await client.close()
        both = await _preview(w, {"selector": "name", "targets": ["web-01"], "pool_id": a})
        assert {v["uuid"] for v in both["vms"]} == {web_a, twin}
        assert both["shared_names"] == {"web-01": sorted([web_a, twin])}
        # By uuid, only that one.
        one = await _preview(w, {"selector": "name", "targets": [twin], "pool_id": a})
        assert [v["uuid"] for v in one["vms"]] == [twin] and one["errors"] == []

        # Exclusions by uuid (one of the two) and by name (both).
        by_uuid = await _preview(
            w, {"selector": "name", "targets": "web-01", "exclude": twin, "pool_id": a}
        )
        assert [v["uuid"] for v in by_uuid["vms"]] == [web_a]
        whole = await _preview(w, {"selector": "pool", "exclude": "web-01, db-01", "pool_id": a})
        taken = {v["name"] for v in whole["vms"]}
        assert "web-01" not in taken and "db-01" not in taken and "mail-01" in taken
        tagged = await _preview(
            w, {"selector": "tag", "targets": "prod", "exclude": [web_a], "pool_id": a}
        )
        assert web_a not in {v["uuid"] for v in tagged["vms"]}
        assert {"db-01", "mail-01"} <= {v["name"] for v in tagged["vms"]}

        # Unknown names are errors of the preview (it still answers what matches)...
        typo = await _preview(
            w,
            {"selector": "name", "targets": "web-01, web-1", "exclude": "gone", "pool_id": b},
        )
        assert [v["uuid"] for v in typo["vms"]] == [web_b]
        assert [(e["field"], e["names"]) for e in typo["errors"]] == [
            ("targets", ["web-1"]),
            ("exclude", ["gone"]),
        ]
        assert "no VM named 'web-1' in pool" in typo["errors"][0]["message"]
        # ... and refused when the job is saved, naming the field.
        job = {"name": "picked", "selector": "name", "pool_id": b, "schedule": ""}
        for fields, field in (
            ({"targets": "web-01, web-1"}, "targets"),
            ({"targets": "web-01", "exclude": "gone"}, "exclude"),
        ):
            status, refused = await w.admin.api("POST", "/api/v1/backup/jobs", {**job, **fields})
            assert status == 400 and refused["error"]["field"] == field, refused
        status, listed = await w.admin.api("GET", "/api/v1/backup/jobs")
        assert listed["jobs"] == []

        # A selection still being made previews as nothing, saying what it needs.
        empty = await _preview(w, {"selector": "name", "targets": "", "pool_id": a})
        assert empty["vms"] == [] and empty["errors"][0]["field"] == "targets"
        # Input that is no selection at all is refused.
        for bad, field in (
            ({"selector": "colour", "pool_id": a}, "selector"),
            ({"selector": "name", "targets": [1], "pool_id": a}, "targets"),
            ({"selector": "pool", "pool_id": ""}, "pool_id"),
        ):
            refused = await _preview(w, bad, status=400)
            assert refused["error"]["field"] == field, refused
        await _preview(w, {"selector": "pool", "pool_id": "99"}, status=404)

        # Saved by uuid: the job takes the one VM, and its page says so.
        status, saved = await w.admin.api(
            "POST", "/api/v1/backup/jobs", {**job, "pool_id": a, "targets": [twin, "db-01"]}
        )
        assert status == 201, saved
        status, page, _ = await w.admin.get(f"/backup/jobs/{saved['id']}")
        assert status == 200
        selected = page.split('id="job-selected"')[1].split("</section>")[0]
        assert f'data-vm-uuid="{twin}"' in selected
        assert f'data-vm-uuid="{w.a.vms["db-01"]}"' in selected
        assert f'data-vm-uuid="{web_a}"' not in selected

        # With "choices", the pool's VMs for a picker come along.
        listed = await _preview(w, {"selector": "pool", "pool_id": b, "choices": True})
        row = next(c for c in listed["choices"] if c["uuid"] == web_b)
        assert row["key"] == "web-01" and row["power_state"] == "Running"
        assert row["last_backup"] is None and row["last_backup_shown"] == "—"
        assert web_a not in {c["uuid"] for c in listed["choices"]}
        twins = await _preview(w, {"selector": "pool", "pool_id": a, "choices": True})
        assert {c["key"] for c in twins["choices"] if c["name"] == "web-01"} == {web_a, twin}
        assert "choices" not in await _preview(w, {"selector": "pool", "pool_id": a})
        refused = await _preview(
            w, {"selector": "pool", "pool_id": a, "choices": "yes"}, status=400
        )
        assert refused["error"]["field"] == "choices"

        # Replication's preview is the same rules.
        status, rep = await w.admin.api(
            "POST",
            "/api/v1/replication/jobs/preview",
            {"selector": "name", "targets": "web-01", "exclude": twin, "pool_id": a},
        )
        assert status == 200 and [v["uuid"] for v in rep["vms"]] == [web_a], rep


async def test_the_picker_and_the_preview_button_of_the_forms(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        b = str(w.b.pool.id)
        client = XapiClient(w.a.sim.url, "root", "demo")
        try:
            twin = (await make_vm(client, w.a.sim, "db-01")).uuid
            # A VM's name is the pool's data, never markup.
            await make_vm(client, w.a.sim, '<b>bold</b> & "quoted"')
        finally:
            await client.close()

        # The new form lists the first pool's VMs: uuid (short, full in its
        # title), power state badge, tags, last backup; a shared name picks by uuid.
        status, page, _ = await w.admin.get("/backup/jobs/new")
        assert status == 200 and 'id="picker-table"' in page and "vmpicker.js" in page
        row = page.split(f'<tr data-vm-uuid="{w.a.vms["web-01"]}"')[1].split("</tr>")[0]
        assert 'data-key="web-01"' in row and f'title="{w.a.vms["web-01"]}"' in row
        assert "data-power=" in row and "prod" in row and "—" in row
        twin_row = page.split(f'<tr data-vm-uuid="{twin}"')[1].split("</tr>")[0]
        assert f'data-key="{twin}"' in twin_row and "same name" in twin_row
        assert w.b.vms["web-01"] not in page
        assert "<b>bold</b>" not in page
        assert 'data-name="&lt;b&gt;bold&lt;/b&gt; &amp; &#34;quoted&#34;"' in page
        assert 'name="exclude"' in page and "Never back up" in page

        # Without JavaScript: the Preview button renders the form again with
        # the list, on the pool chosen, and saves nothing.
        form = {
            "name": "by hand",
            "pool_id": b,
            "selector": "name",
            "targets": "web-01, db-01",
            "exclude": "db-01",
            "schedule": "",
            "timezone": "UTC",
            "retention": "3",
            "concurrency": "1",
            "preview": "1",
        }
        status, page, _ = await w.admin.post_form("/backup/jobs", form)
        assert status == 200, page[:400]
        shown = page.split('id="selection-preview"')[1].split("</section>")[0]
        assert f'data-vm-uuid="{w.b.vms["web-01"]}"' in shown
        assert w.b.vms["db-01"] not in shown and "1</strong> VM selected now" in shown
        picker = page.split('id="picker-table"')[1]
        assert w.b.vms["mail-01"] in picker and w.a.vms["mail-01"] not in picker
        # The form keeps what was typed, the picker's ticks follow it.
        assert 'value="web-01, db-01"' in page and 'value="db-01"' in page
        ticked = picker.split(f'<tr data-vm-uuid="{w.b.vms["web-01"]}"')[1].split("</tr>")[0]
        assert 'class="pick" value="web-01" aria-label="take web-01' in ticked
        assert "checked" in ticked.split('class="exclude"')[0]
        status, listed = await w.admin.api("GET", "/api/v1/backup/jobs")
        assert listed["jobs"] == []
        # Saving it (no preview) keeps the exclusion.
        del form["preview"]
        status, _, resp = await w.admin.post_form("/backup/jobs", form)
        assert status == 303, resp
        status, listed = await w.admin.api("GET", "/api/v1/backup/jobs")
        [job] = listed["jobs"]
        assert job["exclude"] == ["db-01"] and job["targets"] == ["web-01", "db-01"]
        status, page, _ = await w.admin.get(f"/backup/jobs/{job['id']}/edit")
        assert 'value="db-01"' in page and 'id="preview-table"' in page

        # The replication form has the same picker and button.
        status, page, _ = await w.admin.get("/replication/jobs/new")
        assert status == 200 and 'id="picker-table"' in page and "Never replicate" in page


async def test_the_preview_is_for_administrators_of_the_pool(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        a, b = str(w.a.pool.id), str(w.b.pool.id)
        await user_with_grant(w.server, "pat", (w.a.ref, ObjectRole.ADMIN))
        await user_with_grant(w.server, "vic", (w.a.ref, ObjectRole.VIEWER))
        pat, vic = await w.browser("pat"), await w.browser("vic")
        body = {"selector": "name", "targets": "web-01", "pool_id": a}
        status, answer = await pat.api("POST", PREVIEW, body)
        assert status == 200 and [v["uuid"] for v in answer["vms"]] == [w.a.vms["web-01"]]
        status, refused = await pat.api("POST", PREVIEW, {**body, "pool_id": b})
        assert status == 403, refused
        status, refused = await vic.api("POST", PREVIEW, body)
        assert status == 403, refused
        # The form offers pat pool A only, and lists its VMs.
        status, page, _ = await pat.get("/backup/jobs/new")
        assert status == 200 and w.a.vms["web-01"] in page and w.b.vms["web-01"] not in page


async def test_the_picker_shows_the_last_backup_in_the_appliance_zone(tmp_path: Path) -> None:
    async with world(tmp_path) as w:
        status, body = await w.admin.api(
            "PUT", "/api/v1/appliance", {"name": "Paris", "timezone": "Europe/Paris"}
        )
        assert status == 200, body
        client = XapiClient(w.a.sim.url, "root", "demo")
        try:
            vm = await make_vm(client, w.a.sim, "picked-01")
        finally:
            await client.close()
        job = await storage_and_job(w.admin, w.a.pool.id, tmp_path / "store", "tagged")
        status, started = await w.admin.api("POST", f"/api/v1/backup/jobs/{job['id']}/run")
        assert status == 202, started
        run = await w.admin.until_finished(f"/api/v1/backup/runs/{started['run_id']}", tries=600)
        assert run["status"] == "success", run
        status, points = await w.admin.api("GET", f"/api/v1/backup/vms/{vm.uuid}/points")
        newest = points["points"][-1]["created"]

        answer = await _preview(
            w, {"selector": "pool", "pool_id": str(w.a.pool.id), "choices": True}
        )
        row = next(c for c in answer["choices"] if c["uuid"] == vm.uuid)
        shown = local_time(newest, "Europe/Paris")
        assert row["last_backup"] == newest and row["last_backup_shown"] == shown
        assert shown.endswith(("CET", "CEST")), shown
        never = next(c for c in answer["choices"] if c["uuid"] == w.a.vms["web-01"])
        assert never["last_backup"] is None
        status, page, _ = await w.admin.get("/backup/jobs/new")
        picked = page.split(f'<tr data-vm-uuid="{vm.uuid}"')[1].split("</tr>")[0]
        assert f"<td>{shown}</td>" in picked, picked
