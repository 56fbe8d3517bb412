"""What a simulated pool is made of, beneath the XAPI classes that use it.

- ``disks``: VDI files, SR space accounting, changed-block tracking.
- ``vms``: power states, allowed operations, metrics, snapshot/clone/copy.
- ``tasks``: task records and the ``Async.*`` jobs behind them.
- ``records``: small rules on records (copies, create arguments, MACs).
- ``wire``: the bytes each disk transfer moved, for tests to check a client.

``pool.SimPool`` builds one of each and hands them to whoever needs them.
"""
