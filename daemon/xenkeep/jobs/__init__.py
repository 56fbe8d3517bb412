"""What every kind of job (backups, replications) shares.

:mod:`.vmselect` (which VMs a job takes), :mod:`.schedule` (cron schedules),
:mod:`.fields` (checks of the fields a job form shares), :mod:`.snapshots`
(snapshot names and the sweep of what dead runs left), :mod:`.streams`
(transfer plumbing: pipe, bandwidth limit, progress) and :mod:`.report`
(one run report and mail format). Pure, or thin over the XAPI client: no
domain's storage, no SQL.
"""
