"""Self-service VMs end to end over HTTPS against the simulator: SSH keys,
a resource set, a member creating a VM within quota (a grant makes it
theirs), refused over quota with the numbers, isolation, power, deletion
releasing the quota, and nothing left behind when a step fails."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.support.web import Browser, make_settings
from xapisim import RunningSimulator
from xenkeep.config import Settings
from xenkeep.pools.pool import Pool
from xenkeep.xapi.client import XapiClient

GiB = 1 << 30
PASSWORD = "member passphrase 1234"
CLOUD_TEMPLATE = "Debian 12 Cloud (cloud-init)"


def public_key() -> str:
    key = Ed25519PrivateKey.generate().public_key()
    return (
        key.public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        ).decode()
        + " dev@laptop"
    )


async def member(admin: Browser, name: str) -> Browser:
    status, body = await admin.api(
        "POST", "/api/v1/users", {"username": name, "password": PASSWORD, "role": "user"}
    )
    assert status == 201, body
    b = Browser(admin.server)
    status, body = await b.api("POST", "/api/v1/session", {"username": name, "password": PASSWORD})
    assert status == 200, body
    return b


async def objects(client: XapiClient) -> dict[str, str]:
    vms = await client.call("VM.get_all_records")
    template = next(r["uuid"] for r in vms.values() if r["name_label"] == CLOUD_TEMPLATE)
    srs = await client.call("SR.get_all_records")
    sr = next(r["uuid"] for r in srs.values() if r["shared"] and r["type"] != "iso")
    nets = await client.call("network.get_all_records")
    net = next(r["uuid"] for r in nets.values() if r["PIFs"])
    return {"template": template, "sr": sr, "network": net}


async def counts(client: XapiClient) -> tuple[int, int, int]:
    return (
        len(await client.call("VM.get_all")),
        len(await client.call("VDI.get_all")),
        len(await client.call("VBD.get_all")),
    )


@pytest.fixture
async def world(
    browser: Browser, admin_pool: tuple[Pool, XapiClient], pool_sim: RunningSimulator
) -> Any:
    pool, client = admin_pool
    objs = await objects(client)
    dev = await member(browser, "dev")
    other = await member(browser, "eve")
    _, me = await dev.api("GET", "/api/v1/account")
    status, made = await browser.api(
        "POST",
        "/api/v1/resource-sets",
        {
            "name": "developers",
            "limits": {"cpus": 4, "memory": 8 * GiB, "vms": 3},
            "subjects": [f"user:{me['user']['id']}"],
            "objects": {
                "template": [objs["template"]],
                "sr": [objs["sr"]],
                "network": [objs["network"]],
            },
        },
    )
    assert status == 201, made
    status, key = await dev.api(
        "POST", "/api/v1/account/ssh-keys", {"name": "laptop", "key": public_key()}
    )
    assert status == 201, key
    yield {
        "pool": pool,
        "client": client,
        "objs": objs,
        "dev": dev,
        "eve": other,
        "key": key,
        "set": made,
    }
    await dev.close()
    await other.close()


def body(w: dict[str, Any], **over: Any) -> dict[str, Any]:
    return {
        "pool": w["pool"].id,
        "template": w["objs"]["template"],
        "name": "web",
        "vcpus": 2,
        "memory_mib": 1024,
        "root_disk_gib": 20,
        "sr": w["objs"]["sr"],
        "network": w["objs"]["network"],
        "ssh_keys": [w["key"]["id"]],
        **over,
    }


def creation_form(w: dict[str, Any], **over: str) -> dict[str, str]:
    """The My VMs page's creation form, filled in."""
    return {
        "pool": str(w["pool"].id),
        "template": w["objs"]["template"],
        "vcpus": "1",
        "memory_mib": "512",
        "root_disk_gib": "10",
        "sr": w["objs"]["sr"],
        "network": w["objs"]["network"],
        "ssh_keys": str(w["key"]["id"]),
        **over,
    }


async def test_member_creates_within_quota_and_owns_the_vm(world: dict[str, Any]) -> None:
    dev, eve, client = world["dev"], world["eve"], world["client"]
    status, answer = await dev.api("POST", "/api/v1/self/vms", body(world, extra_disks_gib=[5]))
    assert status == 202, answer
    op = await dev.until_finished(f"/api/v1/operations/{answer['operation']}")
    assert op["status"] == "success", op
    uuid = op["report"]["vm_uuid"]
    vm = await client.call("VM.get_by_uuid", uuid)
    rec = await client.call("VM.get_record", vm)
    assert rec["name_label"] == "web" and not rec["is_a_template"]
    assert int(rec["VCPUs_at_startup"]) == 2 and int(rec["memory_dynamic_max"]) == GiB
    assert rec["power_state"] == "Running"
    assert rec["other_config"]["xenkeep-owner"] == "dev"
    sizes = {}
    for vbd in rec["VBDs"]:
        v = await client.call("VBD.get_record", vbd)
        sizes[v["userdevice"]] = (
            int(await client.call("VDI.get_virtual_size", v["VDI"])),
            v["mode"],
        )
    assert sizes["0"] == (20 * GiB, "RW")
    # The config drive was removed once the guest reported its first boot.
    assert sorted(sizes.values()) == [(5 * GiB, "RW"), (20 * GiB, "RW")]
    assert "xenkeep-config-drive" not in rec["other_config"]
    assert [line["message"] for line in op["log"] if "config drive removed" in line["message"]]
    vifs = [await client.call("VIF.get_record", v) for v in rec["VIFs"]]
    assert [await client.call("network.get_uuid", v["network"]) for v in vifs] == [
        world["objs"]["network"]
    ]

    status, mine = await dev.api("GET", "/api/v1/self/vms")
    assert [v["uuid"] for v in mine["vms"]] == [uuid]
    status, usage = await dev.api("GET", "/api/v1/self/usage")
    used = usage["resource_sets"][0]["used"]
    assert (used["cpus"], used["memory"], used["vms"]) == (2, GiB, 1)
    # Isolation: another member sees nothing and may do nothing on it.
    _, theirs = await eve.api("GET", "/api/v1/self/vms")
    assert theirs["vms"] == []
    assert (await eve.api("POST", f"/api/v1/self/vms/{uuid}/stop"))[0] == 403
    assert (await eve.api("DELETE", f"/api/v1/self/vms/{uuid}"))[0] == 403
    assert (await eve.api("GET", f"/api/v1/operations/{answer['operation']}"))[0] == 403
    status, no_set = await eve.api("POST", "/api/v1/self/vms", body(world, ssh_keys=[]))
    assert status == 403, no_set
    # Over quota: refused with the numbers, nothing made.
    before = await counts(client)
    status, refused = await dev.api("POST", "/api/v1/self/vms", body(world, vcpus=3))
    assert status == 409 and "cpus: 2 used + 3 asked > 4 allowed" in refused["error"]["message"]
    assert await counts(client) == before
    # Power, then deletion releases the quota.
    assert (await dev.api("POST", f"/api/v1/self/vms/{uuid}/stop"))[0] == 200
    assert await client.call("VM.get_power_state", vm) == "Halted"
    assert (await dev.api("DELETE", f"/api/v1/self/vms/{uuid}"))[0] == 200
    _, usage = await dev.api("GET", "/api/v1/self/usage")
    assert usage["resource_sets"][0]["used"]["vms"] == 0


async def test_bad_requests_change_nothing(world: dict[str, Any]) -> None:
    dev, client = world["dev"], world["client"]
    before = await counts(client)
    for over, field in (
        ({"root_disk_gib": 2}, "root_disk_gib"),
        ({"cloud_config": "#cloud-config\npackages: htop\n"}, "cloud_config"),
        # A key XenKeep does not merge, checked by cloud-init's own schema.
        ({"cloud_config": "#cloud-config\nntp: {enabled: maybe}\n"}, "cloud_config"),
        ({"ssh_keys": [999]}, "ssh_keys"),
        ({"vcpus": 0}, "vcpus"),
    ):
        status, answer = await dev.api("POST", "/api/v1/self/vms", body(world, **over))
        assert status == 400 and answer["error"]["field"] == field, answer
    status, answer = await dev.api(
        "POST", "/api/v1/self/vms", body(world, template="00000000-0000-0000-0000-000000000000")
    )
    assert status == 404, answer
    assert await counts(client) == before


async def test_concurrent_creations_at_the_limit(world: dict[str, Any]) -> None:
    dev = world["dev"]
    answers = await asyncio.gather(
        *(dev.api("POST", "/api/v1/self/vms", body(world, name=f"c{i}", vcpus=1)) for i in range(8))
    )
    accepted = [a for s, a in answers if s == 202]
    assert len(accepted) == 3  # the set's vms limit
    assert all(s == 409 for s, _ in answers if s != 202)
    for a in accepted:
        op = await dev.until_finished(f"/api/v1/operations/{a['operation']}")
        assert op["status"] == "success", op
    _, usage = await dev.api("GET", "/api/v1/self/usage")
    assert usage["resource_sets"][0]["used"]["vms"] == 3


@pytest.mark.parametrize(
    "method",
    [
        "VM.clone",
        "VDI.resize",
        "VDI.create",
        "VIF.create",
        "VBD.create",
        "VM.add_to_other_config",
        "VM.start",
    ],
)
async def test_a_failing_step_leaves_nothing(
    browser: Browser, world: dict[str, Any], method: str
) -> None:
    dev, client = world["dev"], world["client"]
    before = await counts(client)
    await client.call(
        "sim.inject_fault", "fail_call", {"method": method, "error": ["SR_FULL", "x"]}
    )
    status, answer = await dev.api("POST", "/api/v1/self/vms", body(world, extra_disks_gib=[1]))
    assert status == 202, answer
    # The VM never came to be the member's: an administrator watches the operation.
    op = await browser.until_finished(f"/api/v1/operations/{answer['operation']}")
    assert op["status"] == "failed" and "storage repository is full" in op["error"], op
    assert await counts(client) == before
    _, usage = await dev.api("GET", "/api/v1/self/usage")
    assert usage["resource_sets"][0]["used"] == {
        "cpus": 0,
        "memory": 0,
        "disk": 0,
        "disks": 0,
        "vms": 0,
    }
    _, mine = await dev.api("GET", "/api/v1/self/vms")
    assert mine["vms"] == []


async def test_pages_quota_bars_keys_and_the_creation_form(
    browser: Browser, world: dict[str, Any]
) -> None:
    dev = world["dev"]
    status, html, _ = await dev.get("/account")
    assert status == 200 and world["key"]["fingerprint"] in html
    status, html, _ = await dev.get("/self")
    assert status == 200 and 'id="create-form"' in html and CLOUD_TEMPLATE in html
    assert 'data-resource="cpus" data-used="0" data-limit="4"' in html
    form = creation_form(world, name="page{index}", count="2")
    status, _, resp = await dev.post_form("/self/vms", form)
    assert status == 303, await resp.text()
    op_path = "/api/v1" + resp.headers["Location"].split("?")[0]
    op = await dev.until_finished(op_path)
    assert op["status"] == "success" and [v["name"] for v in op["report"]["vms"]] == [
        "page1",
        "page2",
    ]
    status, html, _ = await dev.get("/self")
    assert 'data-resource="cpus" data-used="2" data-limit="4"' in html and "page2" in html
    # Over quota from the form: the page says so with the numbers.
    status, html, _ = await dev.post_form("/self/vms", {**form, "count": "1", "vcpus": "3"})
    assert status == 409 and "cpus: 2 used + 3 asked &gt; 4 allowed" in html
    status, html, _ = await browser.get("/admin/resource-sets")
    assert status == 200 and "developers" in html


async def _used(dev: Browser) -> dict[str, int]:
    _, usage = await dev.api("GET", "/api/v1/self/usage")
    return dict(usage["resource_sets"][0]["used"])


async def _until(dev: Browser, check: Any) -> dict[str, int]:
    for _ in range(600):
        used = await _used(dev)
        if check(used):
            return used
        await asyncio.sleep(0.05)
    raise AssertionError(f"usage never matched: {await _used(dev)}")


async def test_snapshots_count_when_the_set_says_so_backup_snapshots_never(
    browser: Browser, world: dict[str, Any]
) -> None:
    dev, client = world["dev"], world["client"]
    status, answer = await dev.api("POST", "/api/v1/self/vms", body(world))
    assert status == 202, answer
    op = await dev.until_finished(f"/api/v1/operations/{answer['operation']}")
    vm = await client.call("VM.get_by_uuid", op["report"]["vm_uuid"])
    base = await _until(dev, lambda u: u["disk"] > 0)
    # The root disk (20 GiB), as the pool's records have it (the config
    # drive is gone after the first boot).
    assert base["disk"] == 20 * GiB and base["disks"] == 1
    await client.call("VM.snapshot", vm, "mine")
    backup = await client.call("VM.snapshot", vm, "backup")
    await client.call("VM.add_to_other_config", backup, "xenkeep-backup-job", "1")
    # Not counted while the set says no.
    assert await _used(dev) == base
    s = world["set"]
    status, saved = await browser.api(
        "PUT",
        f"/api/v1/resource-sets/{s['id']}",
        {**{k: s[k] for k in ("name", "limits", "subjects", "objects")}, "count_snapshots": True},
    )
    assert status == 200, saved
    counted = await _until(dev, lambda u: u["disks"] > base["disks"])
    # One snapshot's disks count; the backup snapshot's never.
    assert counted["disks"] == 2 * base["disks"] and counted["disk"] == 2 * base["disk"]


async def test_an_administrator_creates_onto_another_sr_by_copy_and_a_failed_copy_leaves_nothing(
    browser: Browser, world: dict[str, Any]
) -> None:
    client = world["client"]
    srs = await client.call("SR.get_all_records")
    other = next(
        r["uuid"]
        for r in srs.values()
        if r["uuid"] != world["objs"]["sr"]
        and r["content_type"] != "iso"
        and r["type"] != "iso"
        and int(r["physical_size"]) > 0
    )
    status, key = await browser.api(
        "POST", "/api/v1/account/ssh-keys", {"name": "admin", "key": public_key()}
    )
    assert status == 201, key
    request = body(world, sr=other, ssh_keys=[key["id"]], name="copied")
    before = await counts(client)
    await client.call("sim.inject_fault", "fail_call", {"method": "VM.copy", "error": ["SR_FULL"]})
    status, answer = await browser.api("POST", "/api/v1/self/vms", request)
    assert status == 202, answer
    op = await browser.until_finished(f"/api/v1/operations/{answer['operation']}")
    assert op["status"] == "failed" and "storage repository is full" in op["error"], op
    assert await counts(client) == before
    # Not in any set: a super-administrator's VM is charged to none.
    status, answer = await browser.api("POST", "/api/v1/self/vms", request)
    assert status == 202, answer
    op = await browser.until_finished(f"/api/v1/operations/{answer['operation']}")
    assert op["status"] == "success", op
    vm = await client.call("VM.get_by_uuid", op["report"]["vm_uuid"])
    for vbd in await client.call("VM.get_VBDs", vm):
        vdi = await client.call("VBD.get_VDI", vbd)
        assert await client.call("SR.get_uuid", await client.call("VDI.get_SR", vdi)) == other


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """A short wait for a first boot: the guest without an agent gives up soon."""
    return dataclasses.replace(make_settings(tmp_path), first_boot_seconds=2)


async def _drive_of(client: XapiClient, vm: str) -> list[tuple[int, str]]:
    out = []
    for vbd in await client.call("VM.get_VBDs", vm):
        v = await client.call("VBD.get_record", vbd)
        out.append((int(await client.call("VDI.get_virtual_size", v["VDI"])), v["mode"]))
    return [d for d in out if d[1] == "RO"]


async def test_the_config_drive_stays_when_the_guest_never_reports_or_an_administrator_keeps_it(
    browser: Browser, world: dict[str, Any]
) -> None:
    dev, client = world["dev"], world["client"]
    template = await client.call("VM.get_by_uuid", world["objs"]["template"])
    # A guest without an agent never says it booted: the drive stays, and
    # the operation ends with a warning that says why.
    await client.call("VM.add_to_other_config", template, "xapisim-guest-agent", "none")
    try:
        status, answer = await dev.api("POST", "/api/v1/self/vms", body(world, name="quiet"))
        assert status == 202, answer
        op = await dev.until_finished(f"/api/v1/operations/{answer['operation']}")
    finally:
        await client.call("VM.remove_from_other_config", template, "xapisim-guest-agent")
    assert op["status"] == "warning", op
    assert "did not report within 2 s" in " ".join(op["report"]["warnings"]), op
    vm = await client.call("VM.get_by_uuid", op["report"]["vm_uuid"])
    assert await _drive_of(client, vm) == [(1440 * 1024, "RO")]
    assert "xenkeep-config-drive" in await client.call("VM.get_other_config", vm)
    # Keeping it is an administrator's choice, refused to a member...
    status, refused = await dev.api(
        "POST", "/api/v1/self/vms", body(world, name="kept", keep_config_drive=True)
    )
    assert status == 403 and "administrator" in refused["error"]["message"], refused
    status, bad = await dev.api(
        "POST", "/api/v1/self/vms", body(world, name="kept", keep_config_drive="yes")
    )
    assert status == 400 and bad["error"]["field"] == "keep_config_drive", bad
    # ... and honoured for one, whose guest reports at once.
    status, key = await browser.api(
        "POST", "/api/v1/account/ssh-keys", {"name": "admin", "key": public_key()}
    )
    assert status == 201, key
    status, answer = await browser.api(
        "POST",
        "/api/v1/self/vms",
        body(world, name="kept", ssh_keys=[key["id"]], keep_config_drive=True),
    )
    assert status == 202, answer
    op = await browser.until_finished(f"/api/v1/operations/{answer['operation']}")
    assert op["status"] == "success", op
    vm = await client.call("VM.get_by_uuid", op["report"]["vm_uuid"])
    assert await _drive_of(client, vm) == [(1440 * 1024, "RO")]


async def test_my_vms_page_powers_and_deletes_after_a_typed_confirmation(
    world: dict[str, Any],
) -> None:
    dev, eve, client = world["dev"], world["eve"], world["client"]
    status, answer = await dev.api("POST", "/api/v1/self/vms", body(world, name="box"))
    assert status == 202, answer
    op = await dev.until_finished(f"/api/v1/operations/{answer['operation']}")
    uuid = op["report"]["vm_uuid"]
    vm = await client.call("VM.get_by_uuid", uuid)
    status, html, _ = await dev.get("/self")
    assert status == 200 and f"/self/vms/{uuid}/power" in html and 'value="stop"' in html
    # Another member's button press is refused and changes nothing.
    status, _, _ = await eve.post_form(f"/self/vms/{uuid}/power", {"action": "stop"})
    assert status == 403 and await client.call("VM.get_power_state", vm) == "Running"
    status, _, resp = await dev.post_form(f"/self/vms/{uuid}/power", {"action": "stop"})
    assert status == 303, await resp.text()
    assert await client.call("VM.get_power_state", vm) == "Halted"
    status, html, _ = await dev.post_form(f"/self/vms/{uuid}/power", {"action": "explode"})
    assert status == 400 and "start, stop or reboot" in html
    status, html, _ = await dev.get("/self")
    assert 'value="start"' in html
    # Deletion: a confirmation page; the wrong name deletes nothing.
    status, html, _ = await dev.get(f"/self/vms/{uuid}/delete")
    assert status == 200 and "Type the VM&#39;s name to confirm: box" in html
    status, html, _ = await dev.post_form(f"/self/vms/{uuid}/delete", {"confirm": "bo"})
    assert status == 400 and "type the VM&#39;s name" in html
    assert await client.call("VM.get_uuid", vm) == uuid
    status, _, _ = await eve.post_form(f"/self/vms/{uuid}/delete", {"confirm": "box"})
    assert status == 403
    status, _, resp = await dev.post_form(f"/self/vms/{uuid}/delete", {"confirm": "box"})
    assert status == 303, await resp.text()
    assert uuid not in [r["uuid"] for r in (await client.call("VM.get_all_records")).values()]
    _, usage = await dev.api("GET", "/api/v1/self/usage")
    assert usage["resource_sets"][0]["used"]["vms"] == 0


async def test_the_form_refuses_an_extra_disk_size_that_is_no_number(world: dict[str, Any]) -> None:
    dev, client = world["dev"], world["client"]
    before = await counts(client)
    form = creation_form(world, name="odd", extra_disks_gib="5 ten")
    status, html, _ = await dev.post_form("/self/vms", form)
    assert status == 400 and "extra disk size &#39;ten&#39; is no whole number" in html
    assert await counts(client) == before


async def test_administrators_edit_a_set_from_lists_and_delete_it_only_once_empty(
    browser: Browser, world: dict[str, Any]
) -> None:
    dev, client, s = world["dev"], world["client"], world["set"]
    status, html, _ = await browser.get("/admin/resource-sets")
    # The form offers names, not uuids to type: users, templates, SRs, networks.
    assert status == 200 and 'value="user:' in html and "dev" in html
    assert f'value="{world["objs"]["template"]}"' in html and CLOUD_TEMPLATE in html
    status, html, _ = await browser.get(f"/admin/resource-sets/{s['id']}")
    assert status == 200 and f'value="{world["objs"]["sr"]}" selected' in html
    assert 'name="cpus" id="f-set-cpus" type="number" min="0" value="4"' in html
    assert 'name="memory" id="f-set-memory" type="number" min="0" value="8"' in html
    form = {
        "name": "developers",
        "subjects": s["subjects"][0],
        "template": world["objs"]["template"],
        "sr": world["objs"]["sr"],
        "network": world["objs"]["network"],
        "cpus": "6",
        "memory": "8",
        "vms": "3",
    }
    status, _, resp = await browser.post_form(f"/admin/resource-sets/{s['id']}", form)
    assert status == 303, await resp.text()
    _, usage = await dev.api("GET", "/api/v1/self/usage")
    assert usage["resource_sets"][0]["limits"]["cpus"] == 6
    # A bad value changes nothing and says why.
    status, html, _ = await browser.post_form(
        f"/admin/resource-sets/{s['id']}", {**form, "cpus": "many"}
    )
    assert status == 400 and "whole number" in html
    _, usage = await dev.api("GET", "/api/v1/self/usage")
    assert usage["resource_sets"][0]["limits"]["cpus"] == 6
    # Deletion is refused while a VM is charged to the set, naming it.
    status, answer = await dev.api("POST", "/api/v1/self/vms", body(world, name="held"))
    assert status == 202, answer
    op = await dev.until_finished(f"/api/v1/operations/{answer['operation']}")
    status, html, _ = await browser.get(f"/admin/resource-sets/{s['id']}/delete")
    assert status == 200 and "held" in html and "disabled" in html
    status, html, _ = await browser.post_form(f"/admin/resource-sets/{s['id']}/delete", {})
    assert status == 409 and "delete them first" in html
    assert (await dev.api("DELETE", f"/api/v1/self/vms/{op['report']['vm_uuid']}"))[0] == 200
    status, _, resp = await browser.post_form(f"/admin/resource-sets/{s['id']}/delete", {})
    assert status == 303, await resp.text()
    _, usage = await dev.api("GET", "/api/v1/self/usage")
    assert usage["resource_sets"] == []
    assert await client.call("VM.get_all")  # the pool itself is untouched
