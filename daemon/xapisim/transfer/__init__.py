"""HTTP transfer handlers: disks and VMs in and out of the simulated pool.

``GET /export_raw_vdi``, ``PUT /import_raw_vdi``, ``GET /export`` and
``PUT /import`` behave like XAPI's handlers of the same names:
authentication by ``session_id`` query parameter or HTTP basic auth, an
optional ``task_id`` whose progress follows the bytes moved and which ends
with the result or the error. Bodies stream in pieces; injected faults
(dropped connections, throttling) apply to every body byte. One job per
module:

- ``routes``: the route table of one pool, and ``/sim/faults``.
- ``guard``: authentication, query refs, the request's task, error answers.
- ``meter``: body bytes under faults and into task progress.
- ``vdi``: ``/export_raw_vdi`` and ``/import_raw_vdi`` (raw and VHD).
- ``xva``: ``/export`` and ``/import`` (whole VMs as XVA).
"""
