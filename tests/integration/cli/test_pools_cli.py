"""``xenkeep pools`` lists what ``backup restore --sr`` takes; a run that
ends with a warning exits 2 and says what needs a look."""

from __future__ import annotations

import json

from tests.integration.cli.conftest import Appliance
from xenkeep.auth.const import AuditEvent
from xenkeep.web import keys


async def test_pools_lists_each_pools_srs_with_free_space(appliance: Appliance) -> None:
    app = appliance
    code, out, err = await app.xenkeep("pools")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"pool {app.pool_id}  Demo pool  connected  {app.sim.url.rstrip('/')}"
    header = lines[1]
    assert header.split() == ["SR", "NAME", "TYPE", "FREE", "SIZE"]
    default = await app.sr_uuid()
    [row] = [line for line in lines if line.startswith(default)]
    assert "Shared NFS storage" in row and "TiB" in row, row
    # Local SRs are told apart by their host; ISO libraries come last, marked.
    assert any("Local storage on xcp-host-1" in line for line in lines), out
    isos = [i for i, line in enumerate(lines) if "(no VM disks)" in line]
    disks = [i for i, line in enumerate(lines[2:], 2) if line and "(no VM disks)" not in line]
    assert all(i > max(disks) for i in isos), out

    code, out, err = await app.xenkeep("pools", "--json")
    assert code == 0, err
    [pool] = json.loads(out)["pools"]
    assert default in {sr["uuid"] for sr in pool["srs"]}
    assert await app.token_count() == 0
    entries = await keys.audit(app.server.app).entries()
    assert [e["detail"]["name"] for e in entries if e["event"] == AuditEvent.CONSOLE_COMMAND] == [
        "console: pools",
        "console: pools",
    ]


async def test_a_run_with_a_warning_exits_2(appliance: Appliance) -> None:
    app = appliance
    code, out, err = await app.xenkeep("backup", "run", "nightly")
    assert code == 0, out + err
    [old] = await app.client.call("VM.get_snapshots", app.vm.ref)
    await app.client.call(
        "sim.inject_fault",
        "fail_call",
        {"method": "VM.destroy", "error": ["OTHER_OPERATION_IN_PROGRESS", "VM", old]},
    )
    code, out, err = await app.xenkeep("backup", "run", "nightly")
    await app.client.call("sim.clear_faults")
    assert code == 2, out + err
    assert "warning: cli-backup-01: the previous reference snapshot" in out, out
    assert out.rstrip().endswith("result: warning (1 of 1 VMs succeeded)"), out
    code, out, err = await app.xenkeep("backup", "list")
    assert code == 0 and "warning" in out.splitlines()[1], out
