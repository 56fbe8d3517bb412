"""``xenkeep backup list|run|restore`` against the real daemon and simulator:
listing, following a run to its report, failures with their cause, restore,
Ctrl-C, and the console's API token always revoked."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

from tests.integration.backup.conftest import vdi_sha256
from tests.integration.cli.conftest import Appliance, Console, write_cli_config
from tests.support.web import Browser, complete_setup
from tests.unit.repo.repo_testlib import rot_block
from xenkeep.app import create_app
from xenkeep.auth.const import AuditEvent
from xenkeep.config import Settings
from xenkeep.web import keys
from xenkeep.web.server import start_server


async def audit_names(app: Appliance, event: AuditEvent) -> list[str]:
    entries = await keys.audit(app.server.app).entries()
    return [str(e["detail"].get("name", "")) for e in entries if e["event"] == str(event)]


async def test_list_run_and_restore(appliance: Appliance) -> None:
    app, xenkeep = appliance, appliance.xenkeep

    code, out, err = await xenkeep("backup", "list")
    assert code == 0, err
    header, row = out.splitlines()[:2]
    assert header.split() == ["ID", "NAME", "SCHEDULE", "NEXT", "RUN", "LAST", "RESULT"]
    assert row.startswith(f"{app.job_id}  ") and "nightly" in row and "never run" in row
    # Columns are aligned: every value starts under its heading.
    assert row.index("nightly") == header.index("NAME")
    assert row.index("0 3 * * *") == header.index("SCHEDULE")
    assert f"storage: {app.store}" in out and "reflink:" in out

    code, out, err = await xenkeep("backup", "list", "--json")
    assert code == 0, err
    listed = json.loads(out)
    assert [j["name"] for j in listed["jobs"]] == ["nightly"]
    assert listed["storage"]["path"] == str(app.store)

    want = await app.vm.sha256()
    code, out, err = await xenkeep("backup", "run", "nightly")
    assert code == 0, out + err
    assert "run " in out.splitlines()[0] and "'nightly' started" in out.splitlines()[0]
    assert "first backup of this VM" in out  # why the disk went full
    assert "cli-backup-01" in out and "disk 0: full" in out  # the report
    assert out.rstrip().endswith("result: success (1 of 1 VMs succeeded)")
    assert await app.token_count() == 0

    code, out, err = await xenkeep("backup", "list")
    assert code == 0 and "success" in out.splitlines()[1], out

    code, out, err = await xenkeep("backup", "list", "cli-backup-01")
    assert code == 0, err
    assert out.startswith(f"VM cli-backup-01 ({app.vm.uuid}): 1 restore points")
    points = json.loads((await xenkeep("backup", "list", app.vm.uuid, "--json"))[1])["points"]
    [point] = points
    point_row = out.splitlines()[2]
    assert point_row.startswith(point["id"]) and " full " in point_row

    # Restore the newest point as a new VM; the simulator has it, byte-identical.
    sr = await app.sr_uuid()
    code, out, err = await xenkeep(
        "backup", "restore", "cli-backup-01", "--sr", sr, "--name", "restored by the console"
    )
    assert code == 0, out + err
    assert f"from point {point['id']}" in out and "result: success" in out
    [new_vm] = await app.client.call("VM.get_by_name_label", "restored by the console")
    new_uuid = await app.client.call("VM.get_uuid", new_vm)
    assert f"new VM:        {new_uuid}" in out
    vbd = (await app.client.call("VM.get_VBDs", new_vm))[0]
    assert await vdi_sha256(app.client, await app.client.call("VBD.get_VDI", vbd)) == want

    # Every command borrowed a token and gave it back: one audit entry per
    # command, named for what it did, not one for the token made and one
    # for the token revoked.
    assert await app.token_count() == 0
    commands = await audit_names(app, AuditEvent.CONSOLE_COMMAND)
    assert "console: backup run nightly" in commands
    assert "console: backup restore cli-backup-01" in commands
    assert await audit_names(app, AuditEvent.API_TOKEN_CREATED) == []
    assert await audit_names(app, AuditEvent.API_TOKEN_REVOKED) == []


async def test_failed_run_exits_1_with_the_cause(appliance: Appliance) -> None:
    app = appliance
    await app.client.call(
        "sim.inject_fault",
        "fail_call",
        {"method": "VM.snapshot", "error": ["SR_BACKEND_FAILURE_44", "", "no space"]},
    )
    code, out, err = await app.xenkeep("backup", "run", str(app.job_id))
    assert code == 1, out + err
    assert "SR_BACKEND_FAILURE_44" in out
    assert "result: failed" in out
    assert await app.token_count() == 0

    code, out, err = await app.xenkeep("backup", "list", "--json")
    assert code == 0
    assert json.loads(out)["jobs"][0]["last_run"]["status"] == "failed"


async def test_clear_errors_and_no_token_left(appliance: Appliance) -> None:
    app = appliance
    code, out, err = await app.xenkeep("backup", "run", "weekly")
    assert code == 1 and out == ""
    assert err.splitlines()[0] == "xenkeep: no backup job 'weekly'"
    assert f"{app.job_id} 'nightly'" in err  # the hint names the jobs there are

    code, _out, err = await app.xenkeep("backup", "list", "no-such-vm")
    assert code == 1 and "no restore points of a VM 'no-such-vm'" in err

    code, _out, err = await app.xenkeep("backup", "restore", "cli-backup-01", "--sr", "x")
    assert code == 1 and "no restore points of a VM 'cli-backup-01'" in err
    assert "hint: nothing has been backed up yet" in err

    code, out, err = await app.xenkeep("backup", "run", "nightly")
    assert code == 0, out + err
    code, _out, err = await app.xenkeep(
        "backup", "restore", "cli-backup-01", "--point", "nope", "--sr", "x"
    )
    assert code == 1 and "no restore point 'nope' of this VM" in err
    code, _out, err = await app.xenkeep("backup", "list", "other-vm")
    assert code == 1 and "hint: backed-up VMs: cli-backup-01" in err
    code, _out, err = await app.xenkeep(
        "backup", "restore", "cli-backup-01", "--disk", "7", "--sr", "x"
    )
    assert code == 1 and "has no disk '7'" in err and "its disks: 0" in err

    # A restore to an SR the pool does not have is refused before any run.
    _, before = await app.browser.api("GET", "/api/v1/backup/runs")
    code, out, err = await app.xenkeep(
        "backup", "restore", "cli-backup-01", "--sr", "00000000-0000-0000-0000-000000000000"
    )
    assert code == 1 and out == "", out + err
    assert "has no SR 00000000-0000-0000-0000-000000000000" in err, err
    assert "hint: `xenkeep pools` lists each pool's SRs" in err
    _, after = await app.browser.api("GET", "/api/v1/backup/runs")
    assert after["runs"] == before["runs"]
    assert await app.token_count() == 0


async def test_api_error_is_printed(appliance: Appliance) -> None:
    app = appliance
    await app.client.call("sim.inject_fault", "throttle", {"bytes_per_second": 256 * 1024})
    code, out, err = await app.xenkeep("backup", "run", "nightly", "--no-wait")
    assert code == 0, err
    run_id = int(out)
    # The daemon refuses a second run of a running job: its message is printed.
    code, out, err = await app.xenkeep("backup", "run", "nightly")
    assert code == 1 and out == ""
    assert err.strip() == f"xenkeep: job nightly is already running (run {run_id})"
    status, body = await app.browser.api("POST", f"/api/v1/backup/runs/{run_id}/cancel")
    assert status == 202, body
    await app.client.call("sim.clear_faults")
    assert await app.token_count() == 0


async def test_without_admin_and_without_storage(
    console: Console, browser: Browser, settings: Settings
) -> None:
    code, _out, err = await console("backup", "list")
    assert code == 1
    assert "finish the setup wizard first" in err

    await complete_setup(browser, settings)
    code, out, err = await console("backup", "list")
    assert code == 0, err
    assert "no backup jobs yet" in out and "storage: not configured" in out
    code, _out, err = await console("backup", "run", "1")
    assert code == 1 and "no backup job '1'" in err
    # The API's error envelope: its message and its hint.
    code, _out, err = await console("backup", "list", "some-vm")
    assert code == 1
    assert err.splitlines() == [
        "xenkeep: no backup storage is configured",
        "hint: initialise one on the storage page",
    ]


async def test_daemon_down_exits_3(tmp_path: Path, settings: Settings) -> None:
    async with start_server(create_app(settings)) as server:
        port = server.https_port
    console = Console(
        await asyncio.to_thread(write_cli_config, settings, port, tmp_path / "cli.toml")
    )
    code, out, err = await console("backup", "list")
    assert code == 3, out + err
    assert "the daemon is not answering" in err


async def test_ctrl_c_cancels_the_run(appliance: Appliance) -> None:
    app = appliance
    await app.client.call("sim.inject_fault", "throttle", {"bytes_per_second": 256 * 1024})
    config = await asyncio.to_thread(
        write_cli_config,
        app.settings,
        app.server.https_port,
        app.settings.state_dir.parent / "c.toml",
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "xenkeep.cli",
        "--config",
        str(config),
        "backup",
        "run",
        "nightly",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    seen: list[str] = []
    try:
        while True:
            line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
            assert line, f"the CLI ended before any progress: {seen}"
            seen.append(line)
            if line.startswith("progress") and "%" in line:
                break
        proc.send_signal(signal.SIGINT)
        rest, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    await app.client.call("sim.clear_faults")
    assert proc.returncode == 130, (seen, rest, err)
    assert b"asking the daemon to cancel run" in err
    status, runs = await app.browser.api("GET", "/api/v1/backup/runs")
    assert status == 200
    assert runs["runs"][0]["status"] == "cancelled", runs["runs"][0]
    assert await app.token_count() == 0


async def test_points_show_what_the_last_verify_found(appliance: Appliance) -> None:
    app = appliance
    manager = keys.backup(app.server.app)
    code, out, err = await app.xenkeep("backup", "run", "nightly")
    assert code == 0, out + err
    [point] = await asyncio.to_thread(manager.datastore.points, app.vm.uuid)

    await manager.start_verify()
    assert (await manager.wait_verify() or {})["status"] == "ok"
    code, out, err = await app.xenkeep("backup", "list", "cli-backup-01")
    assert code == 0, err
    assert out.splitlines()[2].split()[-4] == "ok", out

    # Flip one byte of block 0's data in the full: the next verify names the point.
    full = manager.datastore.vmdir(app.vm.uuid).vhd_path("0", point.disks[0].file)
    await asyncio.to_thread(rot_block, full, 0, at=777, mask=0xFF)
    await manager.start_verify()
    assert (await manager.wait_verify() or {})["status"] == "damaged"
    code, out, err = await app.xenkeep("backup", "list", "cli-backup-01")
    assert code == 0, err
    row = out.splitlines()[2]
    assert row.startswith(point.id) and row.endswith("DAMAGED disk 0 blocks 0"), out

    # A restore of it stops at the damaged block and says so; with --salvage
    # it restores what can be read and lists the zeroed block (still exit 1).
    sr = await app.sr_uuid()
    code, out, err = await app.xenkeep("backup", "restore", "cli-backup-01", "--sr", sr)
    assert code == 1, out + err
    assert f"restore point {point.id}" in out + err and "block 0 of" in out + err
    code, out, err = await app.xenkeep(
        "backup", "restore", "cli-backup-01", "--sr", sr, "--disk", "0", "--salvage"
    )
    assert code == 1, out + err
    assert "damaged:       disk 0 blocks 0 written as zeros" in out, out
    assert "restored what could be read" in out + err

    # A point newer than the last verify is not claimed either way.
    await app.vm.scribble()
    code, out, err = await app.xenkeep("backup", "run", "nightly")
    assert code == 0, out + err
    code, out, err = await app.xenkeep("backup", "list", "cli-backup-01")
    assert out.splitlines()[-1].endswith("not yet"), out


async def test_a_reader_that_quits_is_not_an_error(appliance: Appliance) -> None:
    """`xenkeep backup run nightly | head -1`: the CLI ends quietly with the
    shell's SIGPIPE status, its temporary token gone; the run goes on."""
    app = appliance
    await app.client.call("sim.inject_fault", "throttle", {"bytes_per_second": 512 * 1024})
    config = await asyncio.to_thread(
        write_cli_config,
        app.settings,
        app.server.https_port,
        app.settings.state_dir.parent / "c.toml",
    )
    read_end, write_end = os.pipe()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "xenkeep.cli",
        "--config",
        str(config),
        "backup",
        "run",
        "nightly",
        stdout=write_end,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    os.close(write_end)
    try:
        reader = os.fdopen(read_end, "rb")
        first = await asyncio.to_thread(reader.readline)
        assert first, "the CLI printed nothing"
        reader.close()  # like head: the pipe has no reader any more
        _, err = await asyncio.wait_for(proc.communicate(), 120)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    await app.client.call("sim.clear_faults")
    assert proc.returncode == 141, err
    assert b"Traceback" not in err and b"BrokenPipe" not in err, err
    assert await app.token_count() == 0
    status, runs = await app.browser.api("GET", "/api/v1/backup/runs")
    assert status == 200 and runs["runs"][0]["status"] in {"running", "success"}
