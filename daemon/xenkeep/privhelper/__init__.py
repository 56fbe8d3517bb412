"""The privileged helper, root's side: the few root operations the daemon needs.

``xenkeepd`` runs as the ``xenkeep`` user with no capability but binding low
ports. What needs root goes through this small service instead, which systemd
starts on demand (``xenkeep-privhelper.socket``). It accepts a closed list of
operations, each with validated arguments, and nothing else: no paths, no
commands, no user names come from the caller. The wire protocol and the list
of operations are in :mod:`xenkeep.system.helper_protocol`; the daemon's
client is :mod:`xenkeep.system.helper`. The daemon process never imports this
package (a test starts the daemon's app and checks).

    request.py   decoding and validating a request line
    applier.py   carrying it out: network, NTP (and, for the first boot only,
                 the console password: no socket operation sets it)
    storage.py   ... and the backup disk (list, format, attach, detach)
    files.py     the file changes, atomic
    server.py    the socket: peer credentials, what each uid may call, one at a time
    __main__.py  the entry point of xenkeep-privhelper.service
"""
