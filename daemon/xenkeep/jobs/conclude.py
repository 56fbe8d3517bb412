"""How every run of a job ends: its status from its VMs', its report, its mail.

A backup run and a replication run end the same way: the run fails if any
VM did (its error sums them up), a run cut by a stop of the daemon is
*interrupted*, the report is built in the one format (:mod:`.report`) and
mailed when mail is set up; a mail that fails is said in the log and the
report, and never fails the run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from typing import Any

from xenkeep.mail import MailSettings, describe_smtp_error
from xenkeep.ops import OperationContext, OpStatus
from xenkeep.ops.manager import Outcome

from .report import build_report, failure_summary, overall_status, run_warnings, send_report


async def finish_run(
    ctx: OperationContext,
    *,
    vms: Sequence[Mapping[str, Any]],
    error: str,
    cancelled: bool,
    stopping: bool,
    mail: MailSettings,
    warnings: Sequence[str] = (),
    extra: Mapping[str, Any] | None = None,
    **report_fields: Any,
) -> Outcome:
    """The outcome of a run whose VMs ended as ``vms``; ``error`` is the run's
    own failure ("" if none), ``warnings`` its own warnings (each VM's are
    added, named); a run with warnings and no failure ends as *warning*.
    ``report_fields`` go to :func:`~.report.build_report` (job, pools,
    appliance, start, kind...); ``extra`` is stored in the report as is."""
    all_warnings = run_warnings(vms, warnings)
    status = overall_status(vms, cancelled=cancelled, warnings=all_warnings)
    if error:
        status = OpStatus.FAILED
    elif status is OpStatus.FAILED:
        # The run's own error says why, not only its VM rows and log.
        error = failure_summary(vms)
    if cancelled and stopping:
        status, error = OpStatus.INTERRUPTED, "the daemon stopped during this run"
    report = build_report(
        run_id=ctx.id,
        finished=time.time(),
        vms=vms,
        status=status,
        warnings=all_warnings,
        **report_fields,
    )
    report["error"] = error
    report.update(extra or {})
    await asyncio.shield(ctx.progress(int(report["bytes"]), force=True))
    await asyncio.shield(mail_report(ctx, mail, report))
    if cancelled:
        await asyncio.shield(ctx.log("run cancelled", level="warning"))
    return Outcome(
        report=report,
        status=status,
        error=error or ("cancelled" if cancelled else ""),
        warnings=all_warnings,
    )


async def mail_report(
    ctx: OperationContext,
    mail: MailSettings,
    report: dict[str, Any],
) -> None:
    """Mail a run's report when mail is set up (and, if it is set to mail
    only problems, when the run did not simply succeed)."""
    smtp = await mail.get()
    if smtp is None:
        return
    if smtp.only_problems and report.get("status") == OpStatus.SUCCESS.value:
        await ctx.log("report not mailed: only failures and warnings are mailed")
        return
    try:
        answer = await send_report(smtp, report)
        await ctx.log(f"report mailed to {', '.join(smtp.recipients)} (the server: {answer})")
    except Exception as exc:  # a mail failure must not fail the run
        # ...but must not pass unseen either: the log and the report say it.
        error = f"mail server {smtp.host}:{smtp.port}: {describe_smtp_error(exc)}"
        report["mail_error"] = error
        await ctx.log(f"could not mail the report: {error}", level="warning")
