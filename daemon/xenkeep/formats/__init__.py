"""Pure, streaming codecs for the disk and VM formats XenKeep reads and writes.

Each module opens with a description of the on-disk layout it handles. None of
them imports anything else from ``xenkeep``: they take file objects and paths,
never settings, services or the event loop, and they never hold a whole disk in
memory.
"""
