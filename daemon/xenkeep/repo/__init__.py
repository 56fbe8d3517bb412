"""The backup repository: a datastore of per-VM chains of VHD restore points.

See ``docs/repository.md`` for the on-disk layout. :class:`Datastore` is the
service; the modules below it hold the pure parts (retention, merge plan) and
the I/O they drive (writer, merge, verify, restore reads).
"""
