"""Claims on a VM that runs of different job kinds share.

A backup run and a replication run may read the same VM at once (each
snapshots it and exports its own snapshot); a failback, which overwrites
the VM's disks with its replica's, may not run while anything reads it.
Runs take these once they have selected their VMs
(:meth:`~xenkeep.ops.context.OperationContext.claim`).
"""

from __future__ import annotations

from xenkeep.ops import Claim


def vm_key(vm_uuid: str) -> str:
    """The claim key of a VM."""
    return f"vm:{vm_uuid}"


def reads_vm(vm_uuid: str) -> Claim:
    """Held while a run snapshots and exports the VM."""
    return Claim.shared(vm_key(vm_uuid))


def overwrites_vm(vm_uuid: str) -> Claim:
    """Held while a failback writes the VM's disks."""
    return Claim.sole(vm_key(vm_uuid), "nothing reads a VM while a failback overwrites its disks")
